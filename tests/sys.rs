//! The public runtime path (`wildx::rt`) and `Errno`. The syscall wrappers themselves are
//! private to the crate; their constants and behaviour are checked by the unit tests in
//! `src/sys.rs`.
//!
//! `unsafe` is allowed here for the libc calls that set up signal dispositions.

#![allow(unsafe_code)]

mod common;

use wildx::Errno;

#[test]
fn errno_round_trips_unknown_codes_and_formats() {
    assert_eq!(Errno::from_raw(4095).raw(), 4095);
    assert_eq!(Errno::from_raw(4095).name(), None);
    assert_eq!(format!("{}", Errno::ENOMEM), "ENOMEM (errno 12)");
    assert_eq!(format!("{:?}", Errno::EACCES), "Errno(EACCES)");
    assert_eq!(format!("{}", Errno::from_raw(200)), "errno 200");
    assert_eq!(format!("{:?}", Errno::from_raw(200)), "Errno(200)");
}

#[test]
fn abort_dies_by_sigabrt_even_when_sigabrt_is_blocked_and_handled() {
    const NAME: &str = "abort_dies_by_sigabrt_even_when_sigabrt_is_blocked_and_handled";
    if common::is_child(NAME) {
        extern "C" fn swallow(_: libc::c_int) {}
        // SAFETY: installs a handler that returns, and blocks SIGABRT: the two ways a
        // process can try to survive abort().
        unsafe {
            libc::signal(libc::SIGABRT, swallow as *const () as libc::sighandler_t);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGABRT);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
        wildx::rt::abort();
    }
    common::assert_killed_by(&common::child_output(NAME, &[]), libc::SIGABRT);
}

#[test]
fn abort_with_message_writes_the_line_then_dies_by_sigabrt() {
    const NAME: &str = "abort_with_message_writes_the_line_then_dies_by_sigabrt";
    if common::is_child(NAME) {
        wildx::rt::abort_with_message(b"wildx-test: the line\n");
    }
    let out = common::child_output(NAME, &[]);
    common::assert_killed_by(&out, libc::SIGABRT);
    assert!(String::from_utf8_lossy(&out.stderr).contains("wildx-test: the line\n"), "{}", common::describe(&out));
}

#[test]
fn exit_ends_with_the_code_and_write_stderr_reaches_stderr() {
    const NAME: &str = "exit_ends_with_the_code_and_write_stderr_reaches_stderr";
    if common::is_child(NAME) {
        wildx::rt::write_stderr(b"wildx-test: bye\n").unwrap();
        wildx::rt::exit(7);
    }
    let out = common::child_output(NAME, &[]);
    assert_eq!(out.status.code(), Some(7), "{}", common::describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wildx-test: bye\n"));
}
