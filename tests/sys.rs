//! The syscall layer: constants checked against `libc`, and each wrapper against the
//! kernel's real behaviour.
//!
//! `unsafe` is allowed here to call the `unsafe fn` wrappers (`mprotect`, `munmap`) on
//! mappings the tests own.

#![allow(unsafe_code)]

mod common;

use std::ptr::NonNull;

use common::{Maps, Perms};
use wildx::Errno;
use wildx::sys;

#[test]
fn constants_match_libc() {
    assert_eq!(sys::PROT_READ, libc::PROT_READ as u32);
    assert_eq!(sys::PROT_WRITE, libc::PROT_WRITE as u32);
    assert_eq!(sys::PROT_EXEC, libc::PROT_EXEC as u32);
    assert_eq!(sys::MAP_PRIVATE, libc::MAP_PRIVATE as u32);
    assert_eq!(sys::MAP_ANONYMOUS, libc::MAP_ANONYMOUS as u32);
    assert_eq!(sys::SIGABRT, libc::SIGABRT);
    assert_eq!(sys::SIG_UNBLOCK, libc::SIG_UNBLOCK);
    assert_eq!(sys::STDERR, libc::STDERR_FILENO);
    // SAFETY: sysconf has no preconditions.
    assert_eq!(sys::PAGE_SIZE as libc::c_long, unsafe { libc::sysconf(libc::_SC_PAGESIZE) });
    for (ours, theirs) in [
        (Errno::EPERM, libc::EPERM),
        (Errno::EINTR, libc::EINTR),
        (Errno::EAGAIN, libc::EAGAIN),
        (Errno::ENOMEM, libc::ENOMEM),
        (Errno::EACCES, libc::EACCES),
        (Errno::EFAULT, libc::EFAULT),
        (Errno::EINVAL, libc::EINVAL),
    ] {
        assert_eq!(ours.raw(), theirs, "{ours:?}");
    }
}

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
fn mmap_mprotect_munmap_really_change_the_mapping() {
    let p = sys::mmap_anonymous(8192, sys::PROT_READ | sys::PROT_WRITE).unwrap();
    // The protection and sharing flags of the mapping containing `addr`, if any.
    let perms = |addr: usize| Maps::read().containing(addr).map(|m| m.perms);
    assert_eq!(perms(p.as_ptr() as usize), Some(Perms::RW), "rw-p");
    // SAFETY: p is a fresh mapping of 8192 bytes owned by this test.
    let zeroed = unsafe { std::slice::from_raw_parts(p.as_ptr(), 8192) }.iter().all(|&b| b == 0);
    assert!(zeroed, "fresh anonymous memory is zeroed");
    // SAFETY: as above; nothing holds a reference into the mapping.
    unsafe { sys::mprotect(p, 8192, sys::PROT_READ) }.unwrap();
    let read_only = Perms { read: true, write: false, exec: false, shared: false };
    assert_eq!(perms(p.as_ptr() as usize), Some(read_only), "r--p");
    // SAFETY: misaligned on purpose: the kernel refuses without touching anything.
    let misaligned = unsafe { sys::mprotect(NonNull::new(p.as_ptr().wrapping_add(1)).unwrap(), 1, sys::PROT_READ) };
    assert_eq!(misaligned, Err(Errno::EINVAL));
    // SAFETY: the mapping is ours and unused from here on.
    unsafe { sys::munmap(p, 8192) }.unwrap();
    assert_eq!(perms(p.as_ptr() as usize), None);
    assert_eq!(sys::mmap_anonymous(0, sys::PROT_READ), Err(Errno::EINVAL));
}

#[test]
fn write_reaches_the_file_descriptor() {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    sys::write_all(fds[1], b"wildx").unwrap();
    let mut buf = [0u8; 5];
    // SAFETY: buf has room for 5 bytes.
    assert_eq!(unsafe { libc::read(fds[0], buf.as_mut_ptr().cast(), 5) }, 5);
    assert_eq!(&buf, b"wildx");
    // SAFETY: both descriptors are ours.
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
    assert_eq!(sys::write(-1, b"x").map_err(|e| e.raw()), Err(libc::EBADF));
}

#[test]
fn getrandom_fills_the_buffer() {
    let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
    assert_eq!(sys::getrandom(&mut a), Ok(32));
    assert_eq!(sys::getrandom(&mut b), Ok(32));
    assert_ne!(a, b, "two 256-bit draws were equal");
}

#[test]
fn ids_match_libc() {
    // SAFETY: getpid and gettid have no preconditions.
    assert_eq!(sys::getpid(), unsafe { libc::getpid() });
    // SAFETY: as above.
    assert_eq!(sys::gettid(), unsafe { libc::gettid() });
    let other = std::thread::spawn(sys::gettid).join().unwrap();
    assert_ne!(other, sys::gettid());
    assert_eq!(sys::tgkill(sys::getpid(), sys::gettid(), 0), Ok(()), "signal 0 probes the thread");
    assert_eq!(sys::tgkill(sys::getpid(), -5, 0).map_err(|e| e.raw()), Err(libc::EINVAL));
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
        sys::abort();
    }
    common::assert_killed_by(&common::child_output(NAME, &[]), libc::SIGABRT);
}
