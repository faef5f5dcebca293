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

/// Sets the `READ_IMPLIES_EXEC` personality in this (child) process and returns the old
/// one, after checking that it bites: a plain libc `R|W` mapping made now is `rwx`.
fn switch_on_read_implies_exec() -> libc::c_int {
    // SAFETY: 0xffffffff only queries the personality.
    let persona = unsafe { libc::personality(0xffff_ffff) };
    // SAFETY: changes how this (child) process maps memory from now on; nothing else.
    assert_ne!(unsafe { libc::personality((persona | libc::READ_IMPLIES_EXEC) as libc::c_ulong) }, -1);
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
    persona
}

/// Runs the bytes at `code` in a forked grandchild and returns the signal that killed it
/// (`None` if it returned).
fn signal_when_run(code: *const u8) -> Option<i32> {
    common::in_grandchild(|| {
        // SAFETY: `code` starts a wildx page holding only its int3 fill: executable, the
        // call would trap at its first byte (SIGTRAP); not executable, the jump faults
        // (SIGSEGV). Either way this grandchild dies before any code of ours runs, and
        // only how it died is looked at.
        let f: extern "C" fn() = unsafe { std::mem::transmute(code) };
        f();
    })
    .signal()
}

/// Under `READ_IMPLIES_EXEC` the kernel adds `PROT_EXEC` to every mapping asked for with
/// `PROT_READ`. wildx asks for writable memory with `PROT_WRITE` alone, so its pages,
/// arena pages and its own tables stay non-executable, and everything works as usual.
#[test]
fn read_implies_exec_cannot_make_a_wildx_mapping_executable() {
    run_in_child("read_implies_exec_cannot_make_a_wildx_mapping_executable", || {
        let sealed = wildx::jit::compile_add_i32();
        let earlier = wildx::raw::alloc(64);
        // Everything this test allocates from the heap is allocated before the switch,
        // so that libc maps nothing new (it would be rwx) while the personality is on;
        // then any W|X mapping in the snapshot below is wildx's.
        let mut pages: Vec<*mut u8> = Vec::with_capacity(3000);
        let mut snapshot = common::RawMaps::with_capacity(1 << 20);
        let persona = switch_on_read_implies_exec();
        let registry_before = wildx::stats().registry_bytes;

        // Enough pages that the registry's table grows (its new storage is mapped now).
        for _ in 0..3000 {
            let p = wildx::raw::alloc(64);
            assert!(!p.is_null());
            pages.push(p);
        }
        let page = Page::new(64).unwrap();
        let arena = wildx::Arena::new(1 << 20).unwrap();
        let id = arena.push(&[0xb8, 42, 0, 0, 0, 0xc3]).unwrap(); // mov eax, 42; ret
        snapshot.snapshot();
        assert!(wildx::stats().registry_bytes > registry_before, "the table grew under the personality");

        // A WRITABLE page is not executable: running it faults (SIGSEGV, not the int3's
        // SIGTRAP it would raise if it ran).
        assert_eq!(signal_when_run(pages[0]), Some(libc::SIGSEGV));
        assert_eq!(signal_when_run(earlier), Some(libc::SIGSEGV));
        // Sealing, calling and publishing work as without the personality.
        assert_eq!(wildx::jit::install_add_i32(pages[1]), 0);
        assert_eq!(wildx::raw::seal(pages[1]), 0);
        // SAFETY: pages[1] and `sealed` hold the sealed add.
        assert_eq!(unsafe { wildx::jit::call_i32_i32(pages[1], 40, 2) + wildx::jit::call_i32_i32(sealed, 0, 0) }, 42);
        arena.publish().unwrap();
        // SAFETY: the function is `mov eax, 42; ret`.
        let entry = unsafe { arena.entry::<extern "C" fn() -> i32>(id) }.unwrap();
        assert_eq!(entry.call(()), 42);
        let mut page = page;
        page.as_mut_slice()[..4].copy_from_slice(&[0x8d, 0x04, 0x37, 0xc3]); // lea eax, [rdi+rsi]; ret
        assert_eq!(page.as_slice()[4], 0xCC, "readable, and filled with int3");
        // SAFETY: the bytes are `lea eax, [rdi+rsi]; ret`, an `extern "C" fn(i32, i32) -> i32`.
        let code = unsafe { page.seal::<extern "C" fn(i32, i32) -> i32>() }.unwrap();
        assert_eq!(code.call((40, 2)), 42);
        drop(entry);
        drop(arena);

        // Back to the default personality before parsing (which allocates).
        // SAFETY: restores the personality read above.
        unsafe { libc::personality(persona as libc::c_ulong) };
        let maps = snapshot.parse();
        let wx: Vec<_> =
            maps.writable_and_executable().into_iter().filter(|m| m.path != "[heap]" && m.path != "[stack]").collect();
        assert!(wx.is_empty(), "writable and executable mappings under READ_IMPLIES_EXEC: {wx:#x?}");
        for &p in &pages {
            assert_eq!(maps.perms_of(p as usize, 4096), Some(common::Perms::W), "{p:?}");
        }
        for p in pages {
            assert_eq!(wildx::raw::free(p), 0);
        }
        assert_eq!(wildx::raw::free(earlier) + wildx::raw::free(sealed), 0);
        code.free().unwrap();
    });
}

/// What `PROT_WRITE` alone (no `PROT_READ`) changes for a WRITABLE page: the process
/// reads it as usual, a debugger's forced read works, and only the kernel's unforced
/// page pinning refuses to read it (`process_vm_readv` here: `EFAULT`), as
/// `docs/hardening.md` says. Sealed code reads through both.
#[test]
fn a_writable_page_reads_back_and_only_unforced_kernel_reads_refuse_it() {
    use std::os::unix::fs::FileExt;
    let p = wildx::raw::alloc(64);
    assert!(!p.is_null());
    assert_eq!(wildx::jit::install_add_i32(p), 0);
    // SAFETY: a live WRITABLE page of 64 requested bytes; read only.
    let mine = unsafe { std::slice::from_raw_parts(p, 8) }.to_vec();
    assert_eq!(&mine[..5], &wildx::jit::ADD_I32[..], "the process reads its own writes");
    assert_eq!(mine[5], 0xCC);
    let mem = std::fs::File::open("/proc/self/mem").unwrap();
    let mut forced = [0u8; 8];
    mem.read_exact_at(&mut forced, p as u64).unwrap();
    assert_eq!(forced.to_vec(), mine, "a debugger's read (/proc/pid/mem forces it)");
    let vm_read = |addr: *const u8| {
        let mut out = [0u8; 8];
        let local = libc::iovec { iov_base: out.as_mut_ptr().cast(), iov_len: 8 };
        let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: 8 };
        // SAFETY: reads 8 bytes of this process at `addr` into `out`, which lives here.
        let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
        if n < 0 { Err(std::io::Error::last_os_error().raw_os_error()) } else { Ok(out) }
    };
    assert_eq!(vm_read(p), Err(Some(libc::EFAULT)), "unforced pinning does not read -w- memory");
    assert_eq!(wildx::raw::seal(p), 0);
    assert_eq!(vm_read(p).map(|b| b.to_vec()), Ok(mine), "sealed code is r-x: readable");
    assert_eq!(wildx::raw::free(p), 0);
}

// ---------------------------------------------------------------------------------------
// A stale typed handle
// ---------------------------------------------------------------------------------------

#[test]
fn stale_handle_never_acts_on_a_later_page_at_its_address() {
    run_in_child("stale_handle_never_acts_on_a_later_page_at_its_address", || {
        // Placement never hands a freed address out again; make it fall back to the
        // kernel's choice (which does) by refusing every MAP_FIXED_NOREPLACE mmap.
        install_filter(&refuse_noreplace_and_name(libc::EEXIST, None));
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
/// they can and a third pushes, publishes, calls and retires arena functions. With the
/// atfork hooks registered, every child allocates, seals, calls and frees a page, uses
/// the arena, and exits 0 within its deadline (without them some children hang: the
/// fork copies a reader count, a held lock or a BUSY mark of a thread that does not
/// exist in the child).
#[test]
fn two_hundred_forks_while_two_threads_cycle_pages() {
    forks_while_threads_cycle("two_hundred_forks_while_two_threads_cycle_pages", false);
}

/// The same in memfd mode, where a child inherits none of the parent's code: each child
/// finds no page of the parent's registered, the arena refusing with `Inherited`, and
/// its own pages working.
#[cfg(feature = "memfd")]
#[test]
fn two_hundred_forks_in_memfd_mode() {
    forks_while_threads_cycle("two_hundred_forks_in_memfd_mode", true);
}

/// A fork made inside two nested `push_with` closures (the forking thread holds both
/// arenas' locks): the prepare hook leaves those to the closures instead of waiting for
/// them forever, takes a third arena's lock and releases it, and the child uses wildx.
#[test]
fn fork_inside_nested_push_with_closures() {
    const NAME: &str = "fork_inside_nested_push_with_closures";
    if !is_child(NAME) {
        assert_passed_in_time(NAME, Duration::from_secs(60));
        return;
    }
    let (prepare, parent, child) = (wildx::atfork_prepare, wildx::atfork_parent, wildx::atfork_child);
    // SAFETY: registers three functions that take and return nothing; wildx's hooks.
    assert_eq!(unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) }, 0);
    let (a, b, c) =
        (wildx::Arena::new(1 << 16).unwrap(), wildx::Arena::new(1 << 16).unwrap(), wildx::Arena::new(1 << 16).unwrap());
    let mut status = -1;
    a.push_with(1, |_, bytes| {
        bytes[0] = 0xc3;
        b.push_with(1, |_, bytes| {
            bytes[0] = 0xc3;
            // SAFETY: the child makes wildx calls only and _exits.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0);
            if pid == 0 {
                let f = wildx::jit::compile_add_i32();
                // SAFETY: f is null (checked first) or a sealed add.
                let ok = !f.is_null() && unsafe { wildx::jit::call_i32_i32(f, 40, 2) } == 42;
                let ok = ok && c.push(&wildx::jit::ADD_I32).is_ok() && c.publish().is_ok();
                // SAFETY: ends the child without running the parent's handlers.
                unsafe { libc::_exit(if ok { 0 } else { 1 }) };
            }
            // SAFETY: waits for our own child.
            assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
            // The parent hook released only what prepare took: both closures' arenas are
            // still held by this thread.
            assert_eq!(a.push(&[0xc3]), Err(Error::Reentrant));
            assert_eq!(b.push(&[0xc3]), Err(Error::Reentrant));
        })
        .unwrap();
    })
    .unwrap();
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child status {status:#x}");
    // The parent's locks were all released: every arena works.
    for arena in [&a, &b, &c] {
        arena.push(&wildx::jit::ADD_I32).unwrap();
        arena.publish().unwrap();
    }
    println!("{}{NAME}", common::CHILD_DONE);
}

fn forks_while_threads_cycle(name: &str, memfd: bool) {
    if !is_child(name) {
        assert_passed_in_time(name, Duration::from_secs(120));
        return;
    }
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    static STOP: AtomicBool = AtomicBool::new(false);
    if memfd {
        assert_eq!(wildx::use_memfd(), Ok(wildx::ExecMode::Memfd));
    }
    let (prepare, parent, child) = (wildx::atfork_prepare, wildx::atfork_parent, wildx::atfork_child);
    // SAFETY: registers three functions that take and return nothing; wildx's hooks.
    let registered = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    assert_eq!(registered, 0);
    let arena = std::sync::Arc::new(wildx::Arena::new(64 << 20).unwrap());
    let cyclers: Vec<_> = (0..3)
        .map(|i| {
            let arena = arena.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                // Arenas made and dropped across forks too (a published page is never
                // written again, so each push + publish takes a page).
                let mut mine = wildx::Arena::new(1 << 20).unwrap();
                while !STOP.load(Relaxed) {
                    if i == 0 {
                        let f = wildx::jit::compile_add_i32();
                        assert_eq!(wildx::raw::verify(f), 0);
                        // SAFETY: f is a sealed add, freed only after the call.
                        assert_eq!(unsafe { wildx::jit::call_i32_i32(f, 40, 2) }, 42);
                        assert_eq!(wildx::jit::free(f), 0);
                    } else if i == 1 {
                        let add = wildx::jit::compile_add().unwrap();
                        assert_eq!(add.call((40, 2)), 42);
                        assert!(add.verify().is_ok());
                    } else {
                        let target = if n % 64 == 0 { &*arena } else { &mine };
                        let id = match target.push(&wildx::jit::ADD_I32) {
                            Err(Error::ArenaFull { .. }) => {
                                mine = wildx::Arena::new(1 << 20).unwrap();
                                continue;
                            }
                            id => id.unwrap(),
                        };
                        target.publish().unwrap();
                        // SAFETY: the function is ADD_I32.
                        let entry = unsafe { target.entry::<wildx::jit::AddI32>(id) }.unwrap();
                        assert_eq!(entry.call((40, 2)), 42);
                        drop(entry);
                        target.retire(id).unwrap();
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
            let mut ok =
                !f.is_null() && unsafe { wildx::jit::call_i32_i32(f, 40, 2) } == 42 && wildx::jit::free(f) == 0;
            // The arena: usable in the child (its lock was held across the fork and
            // released), or in memfd mode inherited and refused.
            let pushed = arena.push(&wildx::jit::ADD_I32);
            ok &= if memfd {
                pushed == Err(Error::Inherited) && wildx::stats().live_pages == 0
            } else {
                pushed.is_ok() && arena.publish().is_ok()
            };
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
    println!("200 forks, {hung} children hung, {cycles} cycles by the three threads meanwhile");
    assert_eq!(hung, 0, "children hung");
    arena.verify_all().unwrap();
    println!("{}{name}", common::CHILD_DONE);
}

// ---------------------------------------------------------------------------------------
// Signals
// ---------------------------------------------------------------------------------------

mod prof {
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

    /// The page the handler asks about (the main thread's current one).
    pub static PAGE: AtomicUsize = AtomicUsize::new(0);
    pub static ANSWERS: AtomicU64 = AtomicU64::new(0);
    pub static WOULD_BLOCK: AtomicU64 = AtomicU64::new(0);
    pub static OTHER: AtomicU64 = AtomicU64::new(0);

    /// The SIGPROF handler: async-signal-safe queries only, counted in atomics.
    pub extern "C" fn on_prof(_: libc::c_int) {
        let p = PAGE.load(Relaxed) as *const u8;
        let counter = match (wildx::signal_safe::inspect(p), wildx::signal_safe::verify(p)) {
            (Err(wildx::Error::WouldBlock), _) | (_, Err(wildx::Error::WouldBlock)) => &WOULD_BLOCK,
            (
                Ok(_),
                Ok(_) | Err(wildx::Error::Null | wildx::Error::NotRegistered | wildx::Error::WrongState { .. }),
            ) => &ANSWERS,
            _ => &OTHER,
        };
        counter.fetch_add(1, Relaxed);
    }
}

/// A SIGPROF timer (`timer_create`, CLOCK_MONOTONIC, delivered to the main thread itself)
/// fires every 100 us while the main thread runs 1 M wildx operations (alloc + install + seal, verify, inspect, free, in turn) and a second
/// thread cycles pages (so writers are often pending). The handler asks
/// `signal_safe::inspect` and `signal_safe::verify` about the main thread's current
/// page: each answers or says `WouldBlock`, and the child finishes within its deadline
/// (with `wildx::inspect` in the handler it deadlocks).
#[test]
fn sigprof_every_100us_over_a_million_operations() {
    const NAME: &str = "sigprof_every_100us_over_a_million_operations";
    if !is_child(NAME) {
        let out = assert_passed_in_time(NAME, Duration::from_secs(180));
        println!("{}", String::from_utf8_lossy(&out.stdout));
        return;
    }
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    static STOP: AtomicBool = AtomicBool::new(false);
    let mut timer: libc::timer_t = std::ptr::null_mut();
    // SAFETY: installs a handler that only makes async-signal-safe calls and touches
    // atomics; creates and arms a timer that sends SIGPROF to this thread every 100 us.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = prof::on_prof as *const () as usize;
        action.sa_flags = libc::SA_RESTART;
        assert_eq!(libc::sigaction(libc::SIGPROF, &action, std::ptr::null_mut()), 0);
        let mut event: libc::sigevent = std::mem::zeroed();
        event.sigev_notify = libc::SIGEV_THREAD_ID;
        event.sigev_signo = libc::SIGPROF;
        event.sigev_notify_thread_id = libc::gettid();
        assert_eq!(libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, &mut timer), 0);
        let every = libc::timespec { tv_sec: 0, tv_nsec: 100_000 };
        let spec = libc::itimerspec { it_interval: every, it_value: every };
        assert_eq!(libc::timer_settime(timer, 0, &spec, std::ptr::null_mut()), 0);
    }
    let other = std::thread::spawn(|| {
        let mut n = 0u64;
        while !STOP.load(Relaxed) {
            let f = wildx::jit::compile_add_i32();
            assert_eq!(wildx::jit::free(f), 0);
            n += 1;
        }
        n
    });
    let mut f = std::ptr::null_mut();
    for op in 0..1_000_000u32 {
        match op % 4 {
            0 => {
                f = wildx::jit::compile_add_i32();
                assert!(!f.is_null());
                prof::PAGE.store(f as usize, Relaxed);
            }
            1 => assert_eq!(wildx::raw::verify(f), 0),
            2 => assert!(wildx::inspect(f).is_some()),
            _ => assert_eq!(wildx::jit::free(f), 0),
        }
    }
    STOP.store(true, Relaxed);
    let cycles = other.join().unwrap();
    // SAFETY: deletes the timer created above.
    unsafe { libc::timer_delete(timer) };
    let (answers, blocked, other) =
        (prof::ANSWERS.load(Relaxed), prof::WOULD_BLOCK.load(Relaxed), prof::OTHER.load(Relaxed));
    println!("SIGPROF: {answers} answers, {blocked} WouldBlock, {other} other; {cycles} cycles on the second thread");
    assert_eq!(other, 0, "only answers or WouldBlock");
    assert!(answers + blocked >= 1000, "the timer fired too rarely to mean anything");
    println!("{}{NAME}", common::CHILD_DONE);
}

// ---------------------------------------------------------------------------------------
// Placement and names
// ---------------------------------------------------------------------------------------

/// A seccomp filter (on the calling thread) that fails `mmap` with `MAP_FIXED_NOREPLACE`
/// with `noreplace_errno`, and `prctl(PR_SET_VMA, ..)` with `name_errno` (`Some(0)`:
/// pretend success, `None`: allow).
fn refuse_noreplace_and_name(noreplace_errno: i32, name_errno: Option<i32>) -> Vec<libc::sock_filter> {
    let stmt = |code: u32, k: u32| libc::sock_filter { code: code as u16, jt: 0, jf: 0, k };
    let jump = |code: u32, k: u32, jt: u8, jf: u8| libc::sock_filter { code: code as u16, jt, jf, k };
    let ld = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let jeq = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    let jset = libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K;
    let ret = libc::BPF_RET | libc::BPF_K;
    let errno = |e: i32| libc::SECCOMP_RET_ERRNO | (e as u32 & libc::SECCOMP_RET_DATA);
    let name_action = match name_errno {
        None => libc::SECCOMP_RET_ALLOW,
        Some(e) => errno(e),
    };
    vec![
        stmt(ld, 4),                             // 0: arch
        jump(jeq, 0xc000_003e, 0, 8),            // 1: x86-64, else -> 10 allow
        stmt(ld, 0),                             // 2: nr
        jump(jeq, libc::SYS_mmap as u32, 0, 3),  // 3: mmap -> 4, else -> 7
        stmt(ld, 16 + 8 * 3),                    // 4: flags (low word)
        jump(jset, 0x10_0000, 0, 4),             // 5: MAP_FIXED_NOREPLACE -> 6, else -> 10
        stmt(ret, errno(noreplace_errno)),       // 6
        jump(jeq, libc::SYS_prctl as u32, 0, 2), // 7: prctl -> 8, else -> 10
        stmt(ld, 16),                            // 8: option (low word)
        jump(jeq, 0x5356_4d41, 1, 0),            // 9: PR_SET_VMA -> 11, else -> 10
        stmt(ret, libc::SECCOMP_RET_ALLOW),      // 10
        stmt(ret, name_action),                  // 11
    ]
}

/// Installs `program` as a seccomp filter on the calling thread.
fn install_filter(program: &[libc::sock_filter]) {
    let prog = libc::sock_fprog { len: program.len() as u16, filter: program.as_ptr().cast_mut() };
    // SAFETY: PR_SET_NO_NEW_PRIVS takes no pointers; seccomp copies `prog` and the
    // program it points to (both live here) before returning.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &prog), 0);
    }
}

/// How often, over `cycles` alloc/free cycles, the next page lands on the address just
/// freed.
fn reuse_rate(cycles: u32) -> f64 {
    let mut last = std::ptr::null_mut();
    let mut reused = 0u32;
    for _ in 0..cycles {
        let p = wildx::raw::alloc(64);
        assert!(!p.is_null());
        if p == last {
            reused += 1;
        }
        assert_eq!(wildx::raw::free(p), 0);
        last = p;
    }
    f64::from(reused) / f64::from(cycles)
}

/// Over 100 000 alloc/free cycles the next page lands on the address just freed in
/// under 1% of them (measured here: 0). Without placement (every randomized mmap refused
/// by a filter, so the kernel chooses) it is close to 100%, which shows the measure
/// bites.
#[test]
fn freed_addresses_are_not_handed_straight_back() {
    let out = run_in_child("freed_addresses_are_not_handed_straight_back", || {
        let placed = reuse_rate(100_000);
        println!("reuse with placement: {:.4}%", placed * 100.0);
        assert!(placed < 0.01, "reuse rate {placed}");
        install_filter(&refuse_noreplace_and_name(libc::EEXIST, None));
        let kernel = reuse_rate(1000);
        println!("reuse with the kernel's choice: {:.1}%", kernel * 100.0);
        assert!(kernel > 0.5, "the kernel's own reuse rate was expected to be high: {kernel}");
    });
    // The rates, for the record (`cargo test --test hostile freed -- --nocapture`).
    for line in out
        .iter()
        .flat_map(|o| String::from_utf8_lossy(&o.stdout).into_owned().lines().map(String::from).collect::<Vec<_>>())
    {
        if let Some(at) = line.find("reuse with") {
            println!("{}", &line[at..]);
        }
    }
}

/// The ring of holes (feature `page-ring`, `src/placement/ring.rs`): `HOLES` of them,
/// one page each, two pages apart from the ring's base.
#[cfg(feature = "page-ring")]
use common::RING_HOLES as HOLES;

/// Whether the one-page mapping at `p` sits in a hole: one page of its own, between two
/// one-page `PROT_NONE` mappings (the fences).
#[cfg(feature = "page-ring")]
fn in_hole(maps: &common::Maps, p: usize) -> bool {
    let one_page_none = |m: Option<&common::Mapping>, start: usize| {
        m.is_some_and(|m| m.start == start && m.len() == 4096 && m.perms.rwx() == "---")
    };
    maps.containing(p).is_some_and(|m| m.start == p && m.len() == 4096)
        && one_page_none(maps.containing(p - 4096), p - 4096)
        && one_page_none(maps.containing(p + 4096), p + 4096)
}

/// A single page goes into a hole between two fences and stays there through its life;
/// its free leaves the hole and both fences as they were. Multi-page mappings do not.
#[cfg(feature = "page-ring")]
#[test]
fn single_pages_go_into_holes_between_fences() {
    run_in_child("single_pages_go_into_holes_between_fences", || {
        let p = wildx::raw::alloc(64);
        let maps = common::Maps::read();
        assert!(in_hole(&maps, p as usize), "{:#x?}", maps.containing(p as usize));
        assert_eq!(maps.perms_of(p as usize, 4096), Some(common::Perms::W));
        // SAFETY: the page's first 4 of 64 writable bytes: lea eax, [rdi + rsi]; ret.
        unsafe { p.copy_from_nonoverlapping([0x8d, 0x04, 0x37, 0xc3].as_ptr(), 4) };
        assert_eq!(wildx::raw::seal(p), 0);
        let maps = common::Maps::read();
        assert!(in_hole(&maps, p as usize));
        assert_eq!(maps.perms_of(p as usize, 4096), Some(common::Perms::RX));
        // SAFETY: sealed add code, freed below.
        assert_eq!(unsafe { wildx::jit::call_i32_i32(p, 40, 2) }, 42);
        assert_eq!(wildx::raw::free(p), 0);
        let maps = common::Maps::read();
        assert!(maps.is_unmapped(p as usize, 4096), "the hole is empty again");
        for fence in [p as usize - 4096, p as usize + 4096] {
            assert_eq!(maps.perms_of(fence, 4096).map(common::Perms::rwx).as_deref(), Some("---"), "{fence:#x}");
        }
        maps.assert_no_wx();
        // Two pages do not fit a hole: a window slot.
        let two = wildx::raw::alloc(4097);
        assert!(!in_hole(&common::Maps::read(), two as usize));
        assert_eq!(wildx::raw::free(two), 0);
    });
}

/// A freed hole is handed out again only after the cursor has gone once round the ring:
/// HOLES alloc/free cycles get HOLES different holes, two pages apart from the ring's
/// base, and the next cycle gets the first hole back. A freed page's address faults.
#[cfg(feature = "page-ring")]
#[test]
fn a_freed_hole_comes_back_after_the_whole_ring() {
    run_in_child("a_freed_hole_comes_back_after_the_whole_ring", || {
        let cycle = || {
            let p = wildx::raw::alloc(1);
            assert!(!p.is_null());
            assert!(in_hole(&common::Maps::read(), p as usize), "{p:?}");
            assert_eq!(wildx::raw::free(p), 0);
            p as usize
        };
        let first = cycle();
        let mut seen = vec![first];
        seen.extend((1..HOLES).map(|_| cycle()));
        let base = seen.iter().min().unwrap() - 4096;
        let mut sorted = seen.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..HOLES).map(|i| base + (2 * i + 1) * 4096).collect::<Vec<_>>(), "every hole once");
        assert_eq!(cycle(), first, "round again");
        assert!(common::Maps::read().is_unmapped(first, 4096));
    });
}

/// A full ring sends single pages to windows without asking for a taken hole: with all
/// HOLES holes live, a filter makes any `mmap` into the ring fail with EPERM, and a
/// thousand more single pages still allocate (in windows, merged), seal and free. Freeing
/// one ring page gives its hole back to the ring.
#[cfg(feature = "page-ring")]
#[test]
fn a_full_ring_sends_single_pages_to_windows() {
    run_in_child("a_full_ring_sends_single_pages_to_windows", || {
        let ring: Vec<*mut u8> = (0..HOLES).map(|_| wildx::raw::alloc(1)).collect();
        let maps = common::Maps::read();
        assert!(ring.iter().all(|&p| in_hole(&maps, p as usize)), "the ring is full");
        let base = ring.iter().map(|&p| p as usize).min().unwrap() - 4096;
        install_filter(&refuse_mmap_in(base, 2 << 20, libc::EPERM));
        let before = common::Maps::read().mappings.len();
        let more: Vec<*mut u8> = (0..1000).map(|_| wildx::raw::alloc(1)).collect();
        assert!(more.iter().all(|p| !p.is_null()), "no single page was refused: the ring asked for no hole");
        let during = common::Maps::read().mappings.len();
        assert!(during - before <= 8, "window pages merge: {before} -> {during} mappings");
        for &p in &more {
            assert_eq!(wildx::raw::seal(p), 0);
            assert_eq!(wildx::raw::free(p), 0);
        }
        // One hole freed while the filter stands: the ring asks for it when the cursor
        // comes round, and the filter's EPERM reaches the caller (nothing else would).
        assert_eq!(wildx::raw::free(ring[0]), 0);
        let refused = (0..HOLES).map(|_| wildx::raw::alloc(1)).position(|p| p.is_null());
        assert!(refused.is_some(), "the freed hole was asked for again within one round");
        common::assert_no_wx("after the full ring");
    });
}

/// A forked child inherits the ring, its fences and its marks, and goes on using it.
/// The parent fills the ring and forks. The child frees one inherited ring page, and a
/// single page it allocates then takes that hole within one round of the cursor (the
/// ring is used); with every hole taken again, a filter makes any `mmap` into the ring
/// fail, and a thousand more single pages still allocate: the child never asks for a
/// hole its parent's pages hold (the marks came with the fork). The parent's ring pages
/// are untouched by all this.
#[cfg(feature = "page-ring")]
#[test]
fn a_forked_child_goes_on_using_the_ring() {
    use std::os::unix::process::ExitStatusExt;
    run_in_child("a_forked_child_goes_on_using_the_ring", || {
        let ring: Vec<usize> = (0..HOLES).map(|_| wildx::raw::alloc(1) as usize).collect();
        let maps = common::Maps::read();
        assert!(ring.iter().all(|&p| in_hole(&maps, p)), "the ring is full");
        let base = ring.iter().min().unwrap() - 4096;
        let status = common::in_grandchild(|| {
            assert_eq!(wildx::raw::free(ring[7] as *mut u8), 0);
            let mut elsewhere = Vec::new();
            let again = loop {
                let p = wildx::raw::alloc(1) as usize;
                assert_ne!(p, 0);
                if p == ring[7] {
                    break p;
                }
                assert!(!ring.contains(&p), "{p:#x}: a hole holding an inherited page");
                elsewhere.push(p);
                assert!(elsewhere.len() < HOLES, "the freed hole did not come back within one round");
            };
            assert!(in_hole(&common::Maps::read(), again));
            install_filter(&refuse_mmap_in(base, 2 << 20, libc::EPERM));
            let more: Vec<usize> = (0..1000).map(|_| wildx::raw::alloc(1) as usize).collect();
            assert!(more.iter().all(|&p| p != 0), "a single page was refused: the child asked for a taken hole");
            for p in more.into_iter().chain(elsewhere).chain([again]) {
                assert_eq!(wildx::raw::free(p as *mut u8), 0);
            }
        });
        assert!(status.success(), "the child: {status:?} (signal {:?})", status.signal());
        let maps = common::Maps::read();
        assert!(ring.iter().all(|&p| in_hole(&maps, p)), "the parent's ring pages are as they were");
        for p in ring {
            assert_eq!(wildx::raw::free(p as *mut u8), 0);
        }
    });
}

/// A seccomp filter (on the calling thread) that fails `mmap` at an address in
/// `[start, start + len)` (within one 4 GiB-aligned span) with `errno`.
#[cfg(feature = "page-ring")]
fn refuse_mmap_in(start: usize, len: usize, errno: i32) -> Vec<libc::sock_filter> {
    let stmt = |code: u32, k: u32| libc::sock_filter { code: code as u16, jt: 0, jf: 0, k };
    let jump = |code: u32, k: u32, jt: u8, jf: u8| libc::sock_filter { code: code as u16, jt, jf, k };
    let ld = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let jeq = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    let jge = libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K;
    let jgt = libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K;
    let ret = libc::BPF_RET | libc::BPF_K;
    let (high, low) = ((start >> 32) as u32, start as u32);
    assert!(len > 0 && u64::from(low) + len as u64 <= 1 << 32, "one 4 GiB span");
    vec![
        stmt(ld, 4),                                                                  // 0: arch
        jump(jeq, 0xc000_003e, 0, 8),                                                 // 1: x86-64, else -> 10
        stmt(ld, 0),                                                                  // 2: nr
        jump(jeq, libc::SYS_mmap as u32, 0, 6),                                       // 3: mmap, else -> 10
        stmt(ld, 16 + 4),                                                             // 4: addr, high word
        jump(jeq, high, 0, 4),                                                        // 5: same span, else -> 10
        stmt(ld, 16),                                                                 // 6: addr, low word
        jump(jge, low, 0, 2),                                                         // 7: >= start, else -> 10
        jump(jgt, low + (len as u32 - 1), 1, 0),                                      // 8: past the end -> 10
        stmt(ret, libc::SECCOMP_RET_ERRNO | (errno as u32 & libc::SECCOMP_RET_DATA)), // 9
        stmt(ret, libc::SECCOMP_RET_ALLOW),                                           // 10
    ]
}

/// Pages from one placement window are adjacent and merge: 100 000 live pages take a
/// few hundred kernel mappings (two per 2 MiB window: its anchor and its pages; and, with
/// the ring, up to 256 fences and 255 pages that do not merge), far below
/// `vm.max_map_count` (65 530); the pages' mappings are gone after the frees.
#[test]
fn a_hundred_thousand_live_pages_fit_in_few_mappings() {
    run_in_child("a_hundred_thousand_live_pages_fit_in_few_mappings", || {
        wildx::set_quota(1 << 30);
        let count = || std::fs::read_to_string("/proc/self/maps").unwrap().lines().count();
        let before = count();
        let pages: Vec<*mut u8> = (0..100_000).map(|_| wildx::raw::alloc(64)).collect();
        assert!(pages.iter().all(|p| !p.is_null()));
        let during = count();
        println!("100 000 live pages: {before} -> {during} mappings");
        assert!(during - before < 1000, "{before} -> {during} mappings");
        for p in pages {
            assert_eq!(wildx::raw::free(p), 0);
        }
        // What stays: one PROT_NONE anchor page per window and the ring's fences (no
        // memory): at most 100 000 / 511 windows' anchors and 256 fences.
        let after = count();
        println!("after the frees: {after} mappings");
        assert!(after - before <= 100_000 / 511 + 2 + 256, "{before} -> {after} mappings");
    });
}

/// Names, as the kernel answers: on a kernel that names anonymous mappings, wildx pages
/// show `[anon:wildx]`; on one that refuses (this one: EINVAL) pages are made exactly
/// as before.
#[test]
fn mapping_names_as_the_kernel_answers() {
    run_in_child("mapping_names_as_the_kernel_answers", || {
        let add = wildx::jit::compile_add().unwrap();
        assert_eq!(add.call((40, 2)), 42);
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let probe = wildx::raw::alloc(1);
        // SAFETY: names our own page (a fresh R|W page); changes nothing else.
        let kernel_names = unsafe { libc::prctl(0x5356_4d41, 0, probe as libc::c_ulong, 4096, c"probe".as_ptr()) } == 0;
        println!("this kernel names anonymous mappings: {kernel_names}");
        assert_eq!(maps.contains("[anon:wildx]"), kernel_names, "named iff the kernel names");
        assert_eq!(wildx::raw::free(probe), 0);
    });
}

/// Names, with the other answers forced by a filter in a fresh process: success first
/// (wildx then keeps naming), then ENOMEM and EINVAL (ignored): every page still
/// allocates, seals, runs and frees, and nothing is W|X.
#[test]
fn mapping_names_degrade_quietly() {
    run_in_child("mapping_names_degrade_quietly", || {
        for errno in [0, libc::ENOMEM, libc::EINVAL] {
            install_filter(&refuse_noreplace_and_name(libc::EEXIST, Some(errno)));
            let add = wildx::jit::compile_add().unwrap();
            assert_eq!(add.call((40, errno)), 40 + errno, "pages work when naming says {errno}");
            let p = wildx::raw::alloc(100);
            assert_eq!(wildx::raw::seal(p), 0);
            assert_eq!(wildx::raw::free(p), 0);
        }
        common::assert_no_wx("after the naming cases");
    });
}
