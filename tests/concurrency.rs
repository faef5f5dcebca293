//! Any thread may alloc, seal, call and free any page: threads cycling their own
//! pages, a compiler thread feeding a caller thread, and threads racing seal and free
//! on the same pointers while another thread allocates (so freed addresses come back).
//!
//! Each test holds `LOCK` so that the stats it balances are its own.
//!
//! `unsafe` is allowed here to call sealed add pages through the raw helper.

#![allow(unsafe_code)]

use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex, MutexGuard, mpsc};
use std::thread;

use wildx::raw;

static LOCK: Mutex<()> = Mutex::new(());

fn exclusive() -> MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

const THREADS: usize = 4;

#[test]
fn threads_cycling_their_own_pages() {
    let _x = exclusive();
    let before = wildx::stats();
    const ROUNDS: usize = 500;
    thread::scope(|s| {
        for t in 0..THREADS {
            s.spawn(move || {
                for i in 0..ROUNDS {
                    let (a, b) = (t as i32 * 1000, i as i32);
                    if i % 2 == 0 {
                        let f = wildx::jit::compile_add_i32();
                        assert!(!f.is_null());
                        // SAFETY: f is this thread's live add page.
                        assert_eq!(unsafe { wildx::jit::call_i32_i32(f, a, b) }, a + b);
                        assert_eq!(raw::verify(f), 0);
                        assert_eq!(raw::free(f), 0);
                    } else {
                        let add = wildx::jit::compile_add().unwrap();
                        assert_eq!(add.call((a, b)), a + b);
                    }
                }
            });
        }
    });
    let after = wildx::stats();
    let n = (THREADS * ROUNDS) as u64;
    assert_eq!(after.allocs - before.allocs, n);
    assert_eq!(after.seals - before.seals, n);
    assert_eq!(after.frees - before.frees, n);
    assert_eq!(after.refusals, before.refusals);
    assert_eq!((after.live_pages, after.live_bytes), (before.live_pages, before.live_bytes));
}

#[test]
fn one_thread_compiles_while_another_calls_and_frees() {
    let _x = exclusive();
    let before = wildx::stats();
    const PAGES: usize = 1000;
    let (tx, rx) = mpsc::sync_channel::<usize>(16);
    thread::scope(|s| {
        s.spawn(move || {
            for _ in 0..PAGES {
                let f = wildx::jit::compile_add_i32();
                assert!(!f.is_null());
                tx.send(f as usize).unwrap();
            }
        });
        s.spawn(move || {
            let mut n = 0;
            for addr in rx {
                let f = addr as *mut u8;
                // SAFETY: the compiler thread hands each live add page to this thread
                // alone, which frees it after the call.
                assert_eq!(unsafe { wildx::jit::call_i32_i32(f, n, 1) }, n + 1);
                assert_eq!(wildx::jit::free(f), 0);
                n += 1;
            }
            assert_eq!(n as usize, PAGES);
        });
    });
    let after = wildx::stats();
    assert_eq!(after.frees - before.frees, PAGES as u64);
    assert_eq!(after.live_pages, before.live_pages);
}

#[test]
fn racing_seal_and_free_on_the_same_pointers_each_transition_succeeds_once() {
    let _x = exclusive();
    let before = wildx::stats();
    const PAGES: usize = 2000;
    let pages: Vec<usize> = (0..PAGES)
        .map(|_| {
            let p = raw::alloc(64);
            assert_eq!(wildx::jit::install_add_i32(p), 0);
            p as usize
        })
        .collect();
    let seal_ok: Vec<AtomicI32> = (0..PAGES).map(|_| AtomicI32::new(0)).collect();
    let free_ok: Vec<AtomicI32> = (0..PAGES).map(|_| AtomicI32::new(0)).collect();
    let churn_done = AtomicUsize::new(0);
    let barrier = Barrier::new(THREADS + 1);
    thread::scope(|s| {
        for t in 0..THREADS {
            let (pages, seal_ok, free_ok, barrier) = (&pages, &seal_ok, &free_ok, &barrier);
            s.spawn(move || {
                barrier.wait();
                // Threads walk the pages in different orders and mix the operations.
                for k in 0..PAGES {
                    let i = if t % 2 == 0 { k } else { PAGES - 1 - k };
                    let p = pages[i] as *mut u8;
                    let seal_first = (i + t) % 2 == 0;
                    for step in 0..2 {
                        let sealing = (step == 0) == seal_first;
                        let rc = if sealing { raw::seal(p) } else { raw::free(p) };
                        assert!(rc == 0 || rc == -1);
                        if rc == 0 {
                            let counter = if sealing { &seal_ok[i] } else { &free_ok[i] };
                            counter.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
        // A churning thread maps and unmaps pages meanwhile, so freed addresses are
        // handed out again while the racers still hold them.
        let (barrier, churn_done) = (&barrier, &churn_done);
        s.spawn(move || {
            barrier.wait();
            for _ in 0..PAGES {
                let code = wildx::jit::compile_add().unwrap();
                assert_eq!(code.call((2, 2)), 4);
                churn_done.fetch_add(1, Ordering::Relaxed);
            }
        });
    });
    let mut sealed = 0;
    for i in 0..PAGES {
        let (s, f) = (seal_ok[i].load(Ordering::Relaxed), free_ok[i].load(Ordering::Relaxed));
        assert_eq!(f, 1, "page {i} was freed {f} times");
        assert!(s <= 1, "page {i} was sealed {s} times");
        sealed += s as u64;
    }
    let after = wildx::stats();
    let churn = churn_done.load(Ordering::Relaxed) as u64;
    assert_eq!(after.allocs - before.allocs, PAGES as u64 + churn);
    assert_eq!(after.frees - before.frees, PAGES as u64 + churn);
    assert_eq!(after.seals - before.seals, sealed + churn);
    assert_eq!((after.live_pages, after.live_bytes), (before.live_pages, before.live_bytes));
    // Every attempt that did not succeed was refused and counted.
    let attempts = (THREADS * PAGES * 2) as u64;
    assert_eq!(after.refusals - before.refusals, attempts - PAGES as u64 - sealed);
}

#[test]
fn concurrent_verified_calls_on_shared_pages() {
    let _x = exclusive();
    let shared = wildx::jit::compile_add().unwrap();
    let raw_page = wildx::jit::compile_add_i32();
    thread::scope(|s| {
        for t in 0..THREADS as i32 {
            let (shared, raw_page) = (&shared, raw_page as usize);
            s.spawn(move || {
                for i in 0..2000 {
                    assert_eq!(shared.call((t, i)), t + i);
                    assert_eq!(shared.verify(), Ok(()));
                    // SAFETY: the page is freed only after the scope ends.
                    assert_eq!(unsafe { wildx::jit::call_i32_i32(raw_page as *mut u8, i, t) }, t + i);
                }
            });
        }
    });
    assert_eq!(raw::free(raw_page), 0);
}
