//! Hostile environments: a process that is not quiet and default. Each case runs in a
//! child process (a personality, a signal disposition, a redirected stderr or a
//! scheduling policy must not reach the other tests), and every child that could hang
//! without the fix under test runs under a deadline.
//!
//! `unsafe` is needed for the libc calls that set such a process up (`personality`,
//! `pipe2`, `dup2`, `munmap` behind wildx's back, ...).

#![allow(unsafe_code)]

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{describe, is_child, run_in_child};
use wildx::{Error, Page, State};

/// Runs test `name` in a child (as [`common::child_output`]) but kills it if it is not
/// done after `deadline`, so a hang fails the test instead of hanging the suite.
/// Returns the output and whether the deadline killed it.
fn child_with_deadline(name: &str, deadline: Duration) -> (Output, bool) {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(common::CHILD_ENV, name)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut killed = false;
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > deadline {
            let _ = child.kill();
            killed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    (child.wait_with_output().unwrap(), killed)
}

/// Asserts the child finished in time and passed.
fn assert_passed_in_time(name: &str, deadline: Duration) -> Output {
    let (out, killed) = child_with_deadline(name, deadline);
    assert!(!killed, "{name}: still running after {deadline:?}, killed\n{}", describe(&out));
    common::assert_child_passed(name, &out);
    out
}

// ---------------------------------------------------------------------------------------
// READ_IMPLIES_EXEC
// ---------------------------------------------------------------------------------------

#[test]
fn read_implies_exec_is_refused() {
    run_in_child("read_implies_exec_is_refused", || {
        let sealed = wildx::jit::compile_add_i32();
        let writable = wildx::raw::alloc(64);
        // SAFETY: 0xffffffff only queries the personality.
        let persona = unsafe { libc::personality(0xffff_ffff) };
        // SAFETY: changes how this (child) process maps memory from now on; nothing else.
        assert_ne!(unsafe { libc::personality((persona | libc::READ_IMPLIES_EXEC) as libc::c_ulong) }, -1);
        // The personality bites: a plain R|W mapping made now is executable.
        // SAFETY: a fresh anonymous mapping at an address the kernel picks.
        let probe = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(common::Maps::read().perms_of(probe as usize, 4096).unwrap().exec, "READ_IMPLIES_EXEC is on");
        // SAFETY: our own probe, unmapped once.
        unsafe { libc::munmap(probe, 4096) };

        let before = wildx::stats();
        assert!(wildx::raw::alloc(64).is_null());
        assert_eq!(Page::new(64).unwrap_err(), Error::ReadImpliesExec);
        assert!(wildx::jit::compile_add_i32().is_null());
        let after = wildx::stats();
        assert_eq!((after.live_pages, after.allocs), (before.live_pages, before.allocs), "no page mapped");
        assert_eq!(after.refusals, before.refusals + 3);
        assert_eq!(
            Error::ReadImpliesExec.to_string(),
            "the READ_IMPLIES_EXEC personality would make writable pages executable"
        );
        // Pages mapped before the change keep working: seal, call, free.
        assert_eq!(wildx::jit::install_add_i32(writable), 0);
        assert_eq!(wildx::raw::seal(writable), 0);
        // SAFETY: both pages hold the sealed add.
        assert_eq!(unsafe { wildx::jit::call_i32_i32(writable, 40, 2) + wildx::jit::call_i32_i32(sealed, 0, 0) }, 42);
        assert_eq!(wildx::raw::free(writable) + wildx::raw::free(sealed), 0);
        // Back to the default personality: allocation works again.
        // SAFETY: restores the personality read above.
        unsafe { libc::personality(persona as libc::c_ulong) };
        let add = wildx::jit::compile_add().unwrap();
        assert_eq!(add.call((40, 2)), 42);
    });
}

// ---------------------------------------------------------------------------------------
// A stale typed handle
// ---------------------------------------------------------------------------------------

#[test]
fn stale_handle_never_acts_on_a_later_page_at_its_address() {
    run_in_child("stale_handle_never_acts_on_a_later_page_at_its_address", || {
        let stale = Page::new(64).unwrap();
        let addr = stale.as_ptr();
        // SAFETY: the attack under test: unmap a wildx page behind wildx's back. The
        // handle is never used to touch the bytes again.
        assert_eq!(unsafe { libc::munmap(addr as *mut libc::c_void, 4096) }, 0);
        // The kernel hands the address out again (it usually does at once); keep every
        // page until one lands there, as a typed page and then as a raw one.
        let mut others = Vec::new();
        let fresh = loop {
            let page = Page::new(64).unwrap();
            if page.as_ptr() == addr {
                break page;
            }
            others.push(page);
            assert!(others.len() < 10_000, "the kernel never reused {addr:p}");
        };
        // The stale handle's drop is refused: the fresh page stays live and owned.
        drop(stale);
        let info = wildx::inspect(addr).expect("the fresh page is still registered");
        assert!(info.held_by_handle && info.state == State::Writable);
        let mut fresh = fresh;
        wildx::jit::install_add(&mut fresh).unwrap();
        // SAFETY: the page holds the add.
        let add = unsafe { fresh.seal::<wildx::jit::AddI32>() }.unwrap();
        assert_eq!(add.call((40, 2)), 42);
        let before = wildx::stats();
        drop(add);
        assert_eq!(wildx::stats().frees, before.frees + 1, "the owner's own drop frees it");
        assert_eq!(wildx::raw::state(addr), None);
    });
}

// ---------------------------------------------------------------------------------------
// The abort path
// ---------------------------------------------------------------------------------------

/// How a child sets up its stderr before aborting.
#[derive(Clone, Copy)]
enum Stderr {
    /// A pipe whose buffer is full and whose reader never reads.
    FullPipe,
    /// A pipe whose read end is closed.
    BrokenPipe,
    /// fd 2 closed.
    Closed,
}

fn redirect_stderr(how: Stderr) {
    let mut fds = [0; 2];
    match how {
        Stderr::FullPipe => {
            // SAFETY: pipe2 writes two descriptors into `fds`; the writes go to our own
            // pipe from a live buffer; fcntl and dup2 only change descriptors we own.
            unsafe {
                assert_eq!(libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK), 0);
                let chunk = [b'x'; 4096];
                while libc::write(fds[1], chunk.as_ptr().cast(), chunk.len()) > 0 {}
                assert_eq!(libc::fcntl(fds[1], libc::F_SETFL, 0), 0, "blocking again");
                assert_eq!(libc::dup2(fds[1], 2), 2);
                // fds[0] stays open and unread: the pipe stays full, not broken.
            }
        }
        Stderr::BrokenPipe => {
            // SAFETY: as above; SIGPIPE back to its default (the Rust runtime ignores it,
            // a C program does not), so a write to the broken pipe would kill us by it.
            unsafe {
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
                libc::close(fds[0]);
                assert_eq!(libc::dup2(fds[1], 2), 2);
            }
        }
        Stderr::Closed => {
            // SAFETY: closes our own stderr.
            unsafe { libc::close(2) };
        }
    }
}

fn abort_under(name: &str, how: Stderr, abort: fn()) {
    if is_child(name) {
        redirect_stderr(how);
        abort();
        println!("the abort path returned");
        return;
    }
    let (out, killed) = child_with_deadline(name, Duration::from_secs(20));
    assert!(!killed, "{name}: the abort path blocked\n{}", describe(&out));
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{name}: {:?}\n{}", out.status, describe(&out));
}

fn rt_abort() {
    wildx::rt::abort_with_message(b"wildx-test: aborting\n");
}

#[test]
fn abort_with_a_full_stderr_pipe() {
    abort_under("abort_with_a_full_stderr_pipe", Stderr::FullPipe, rt_abort);
}

#[test]
fn abort_with_a_broken_stderr_pipe() {
    abort_under("abort_with_a_broken_stderr_pipe", Stderr::BrokenPipe, rt_abort);
}

#[test]
fn abort_with_stderr_closed() {
    abort_under("abort_with_stderr_closed", Stderr::Closed, rt_abort);
}

#[cfg(feature = "verify-on-call")]
mod tampered {
    use super::*;

    /// A sealed add, tampered through /proc/self/mem, then called.
    fn tampered_call() {
        let f = wildx::jit::compile_add_i32();
        common::poke(f.wrapping_add(2), &[0x29]);
        // SAFETY: none needed: the call must abort before the bytes run.
        let r = unsafe { wildx::jit::call_i32_i32(f, 7, 35) };
        println!("tampered code ran and returned {r}");
    }

    #[test]
    fn tampered_call_with_a_full_stderr_pipe() {
        abort_under("tampered::tampered_call_with_a_full_stderr_pipe", Stderr::FullPipe, tampered_call);
    }

    #[test]
    fn tampered_call_with_a_broken_stderr_pipe() {
        abort_under("tampered::tampered_call_with_a_broken_stderr_pipe", Stderr::BrokenPipe, tampered_call);
    }

    #[test]
    fn tampered_call_with_stderr_closed() {
        abort_under("tampered::tampered_call_with_stderr_closed", Stderr::Closed, tampered_call);
    }
}

// ---------------------------------------------------------------------------------------
// Bounded spinning
// ---------------------------------------------------------------------------------------

/// Pins the calling thread (and the threads it creates afterwards) to CPU 0.
fn pin_to_cpu0() {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        assert_eq!(libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set), 0);
    }
}

/// Makes the calling thread SCHED_FIFO priority 1 (needs CAP_SYS_NICE or RLIMIT_RTPRIO).
fn become_fifo() {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: sets the calling thread's policy from a live sched_param.
    let r = unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) };
    assert_eq!(r, 0, "SCHED_FIFO needs CAP_SYS_NICE or RLIMIT_RTPRIO");
}

/// A SCHED_FIFO thread verifies a page while another thread, preempted by it on the only
/// CPU, is sealing that page (BUSY while it hashes 4 MiB). A waiter that only spins
/// (or yields, which never lets a lower-priority thread run) would wait for the
/// kernel's RT throttling, about a second; the verify must sleep, let the seal finish,
/// and succeed. The same in the other direction: an alloc (registry writer) from the
/// FIFO thread while the preempted one holds the registry read lock for a long verify.
#[test]
fn fifo_waiters_behind_a_preempted_seal_or_verify_sleep() {
    const NAME: &str = "fifo_waiters_behind_a_preempted_seal_or_verify_sleep";
    if !is_child(NAME) {
        assert_passed_in_time(NAME, Duration::from_secs(30));
        return;
    }
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
    const LEN: usize = 4 << 20;
    static GO: AtomicBool = AtomicBool::new(false);
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    pin_to_cpu0();
    for case in ["verify behind a seal", "alloc behind a verify"] {
        GO.store(false, SeqCst);
        let page = wildx::raw::alloc(LEN);
        assert!(!page.is_null());
        if case == "alloc behind a verify" {
            assert_eq!(wildx::raw::seal(page), 0);
        }
        PAGE.store(page as usize, SeqCst);
        let waiter = std::thread::spawn(move || {
            become_fifo();
            while !GO.load(SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            // Let the other thread get well inside its hash, then preempt it.
            std::thread::sleep(Duration::from_millis(3));
            let start = Instant::now();
            let p = PAGE.load(SeqCst) as *mut u8;
            let ok = if case == "verify behind a seal" {
                wildx::raw::verify(p) == 0
            } else {
                let q = wildx::raw::alloc(1);
                !q.is_null() && wildx::raw::free(q) == 0
            };
            (ok, start.elapsed())
        });
        let start = Instant::now();
        GO.store(true, SeqCst);
        if case == "verify behind a seal" {
            assert_eq!(wildx::raw::seal(page), 0);
        } else {
            assert_eq!(wildx::raw::verify(page), 0);
        }
        let busy = start.elapsed();
        let (ok, waited) = waiter.join().unwrap();
        println!("{case}: the operation took {busy:?}, the FIFO waiter waited {waited:?}");
        assert!(ok, "{case}: the waiter's call failed");
        assert!(busy > Duration::from_millis(6), "{case}: the page must take longer to hash than the waiter sleeps");
        assert!(waited < Duration::from_millis(500), "{case}: the FIFO waiter waited {waited:?}");
        assert_eq!(wildx::raw::free(page), 0);
    }
    println!("{}{NAME}", common::CHILD_DONE);
}

// ---------------------------------------------------------------------------------------
// fork
// ---------------------------------------------------------------------------------------

/// 200 forks while two threads allocate, seal, call, verify and free pages as fast as
/// they can. With the atfork hooks registered, every child allocates, seals, calls and
/// frees a page and exits 0 within its deadline (without them some children hang: the
/// fork copies a reader count, a held lock or a BUSY mark of a thread that does not
/// exist in the child).
#[test]
fn two_hundred_forks_while_two_threads_cycle_pages() {
    const NAME: &str = "two_hundred_forks_while_two_threads_cycle_pages";
    if !is_child(NAME) {
        assert_passed_in_time(NAME, Duration::from_secs(120));
        return;
    }
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    static STOP: AtomicBool = AtomicBool::new(false);
    let (prepare, parent, child) = (wildx::atfork_prepare, wildx::atfork_parent, wildx::atfork_child);
    // SAFETY: registers three functions that take and return nothing; wildx's hooks.
    let registered = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    assert_eq!(registered, 0);
    let cyclers: Vec<_> = (0..2)
        .map(|i| {
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !STOP.load(Relaxed) {
                    if i == 0 {
                        let f = wildx::jit::compile_add_i32();
                        assert_eq!(wildx::raw::verify(f), 0);
                        // SAFETY: f is a sealed add, freed only after the call.
                        assert_eq!(unsafe { wildx::jit::call_i32_i32(f, 40, 2) }, 42);
                        assert_eq!(wildx::jit::free(f), 0);
                    } else {
                        let add = wildx::jit::compile_add().unwrap();
                        assert_eq!(add.call((40, 2)), 42);
                        assert!(add.verify().is_ok());
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut hung = 0;
    for round in 0..200 {
        // SAFETY: the child runs only wildx calls and _exit (no allocation, no locks of
        // the Rust runtime), which is what a forked child of a threaded process may do.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            let f = wildx::jit::compile_add_i32();
            // SAFETY: f is null (checked first) or a sealed add.
            let ok = !f.is_null() && unsafe { wildx::jit::call_i32_i32(f, 40, 2) } == 42 && wildx::jit::free(f) == 0;
            // SAFETY: ends the child without running the parent's atexit handlers.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let start = Instant::now();
        let mut status = 0;
        loop {
            // SAFETY: waits for our own child; writes one int.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if r == pid {
                break;
            }
            if start.elapsed() > Duration::from_secs(5) {
                // SAFETY: kills and reaps our own child.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &mut status, 0);
                }
                hung += 1;
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 || hung > 0,
            "child {round}: status {status:#x}"
        );
    }
    STOP.store(true, Relaxed);
    let cycles: u64 = cyclers.into_iter().map(|t| t.join().unwrap()).sum();
    println!("200 forks, {hung} children hung, {cycles} page cycles by the two threads meanwhile");
    assert_eq!(hung, 0, "children hung");
    println!("{}{NAME}", common::CHILD_DONE);
}
