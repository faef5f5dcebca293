//! Code arenas: real code at real addresses, the page lifecycle kept per page, the MMU
//! enforcing it (faults in child processes), `/proc/self/maps`, threads, bad input.
//!
//! Tests whose assertions depend on process-wide state (stats, quota, the exact list of
//! mappings) run their bodies in a child process of their own, where no other test can
//! move what they measure.
//!
//! `unsafe` is allowed here for the typed entries (whose contract the hand-assembled
//! bytes below meet) and for the faults under test: calling unpublished or retired code,
//! writing published code.

#![allow(unsafe_code)]

mod common;

use common::{Maps, RawMaps, assert_killed_by, assert_no_wx, child_output, is_child, poke, run_in_child};
use wildx::{Arena, Error, State, raw};

type I64 = extern "sysv64" fn(i64) -> i64;
type Ret = extern "sysv64" fn() -> i32;
type Add = extern "sysv64" fn(i32, i32) -> i32;

/// `lea eax, [rdi + rsi]; ret`
const ADD: [u8; 4] = [0x8d, 0x04, 0x37, 0xc3];

/// `mov eax, imm32; ret`
fn ret_const(value: i32) -> [u8; 6] {
    let v = value.to_le_bytes();
    [0xb8, v[0], v[1], v[2], v[3], 0xc3]
}

/// About 40 bytes: `mov eax, imm32`, 33 one-byte nops, `ret`.
fn ret_const_40(value: i32) -> Vec<u8> {
    let mut code = ret_const(value)[..5].to_vec();
    code.extend([0x90; 34]);
    code.push(0xc3);
    code
}

fn rel32(from_next: usize, to: usize) -> [u8; 4] {
    let d = i32::try_from(to as i64 - from_next as i64).expect("rel32 reach");
    d.to_le_bytes()
}

#[test]
fn push_publish_call_and_the_page_lifecycle() {
    let arena = Arena::new(1 << 20).unwrap();
    let at = arena.next_addr();
    assert_eq!(at % 16, 0);
    assert_eq!(at, arena.base());
    let add = arena.push(&ADD).unwrap();
    assert_eq!(arena.addr(add), Ok(at));
    assert_eq!(arena.next_addr(), at + 16);
    let maps = Maps::read();
    assert_eq!(maps.perms_of(at, 4096).map(|p| p.rwx()), Some("-w-".to_string()), "pending: writable, not X");
    assert_eq!(raw::state(at as *const u8), Some(State::Writable));
    // SAFETY: ADD implements Add.
    let unpublished = unsafe { arena.entry::<Add>(add) };
    assert_eq!(unpublished.err(), Some(Error::WrongState { expected: State::Executable, found: State::Writable }));
    arena.publish().unwrap();
    let maps = Maps::read();
    assert_eq!(maps.perms_of(at, 4096).map(|p| p.rwx()), Some("r-x".to_string()), "published: R|X");
    assert_no_wx("publish");
    // SAFETY: ADD implements Add.
    let entry = unsafe { arena.entry::<Add>(add) }.unwrap();
    assert_eq!(entry.call((40, 2)), 42);
    assert_eq!(entry.call((i32::MAX, 1)), i32::MIN);
    assert_eq!(entry.as_ptr() as usize, at);
    assert_eq!(entry.len(), 4);
    assert_eq!(entry.verify(), Ok(()));
    assert_eq!(arena.verify(add), Ok(()));
    assert_eq!(arena.verify_all(), Ok(()));
    // The next push lands on a fresh page: the published one is never writable again.
    let next = arena.next_addr();
    assert_eq!(next, at + 4096);
    let two = arena.push(&ret_const(2)).unwrap();
    assert_eq!(arena.addr(two), Ok(next));
    assert_eq!(Maps::read().perms_of(at, 4096).map(|p| p.rwx()), Some("r-x".to_string()));
    assert_eq!(arena.retire(add), Err(Error::EntryAlive { entries: 1 }));
    drop(entry);
    arena.retire(add).unwrap();
    assert_eq!(arena.retire(add), Err(Error::Retired));
    assert!(Maps::read().perms_of(at, 4096).is_some_and(|p| p.rwx() == "---"), "retired page released");
    assert_eq!(raw::state(at as *const u8), None);
    assert_eq!(arena.verify_all(), Ok(()), "released pages are skipped");
}

#[test]
fn raw_surface_answers_for_arena_functions_and_refuses_to_free_or_seal_them() {
    let arena = Arena::new(64 << 10).unwrap();
    let id = arena.push(&wildx::jit::ADD_I32).unwrap();
    let p = arena.addr(id).unwrap() as *mut u8;
    assert_eq!(raw::seal(p), -1);
    arena.publish().unwrap();
    assert_eq!(raw::state(p), Some(State::Executable));
    let info = wildx::inspect(p).unwrap();
    assert_eq!((info.len, info.mapped_len, info.held_by_handle), (5, 4096, true));
    assert_eq!(info.seal_hash, Some(wildx::fnv1a64(&wildx::jit::ADD_I32)));
    assert_eq!(raw::verify(p), 0);
    assert_eq!(raw::free(p), -1);
    assert_eq!(raw::seal(p), -1);
    // SAFETY: `p` is a published add(i32, i32) that nothing retires during the call.
    assert_eq!(unsafe { wildx::jit::call_i32_i32(p, 7, 35) }, 42);
    // Interior addresses and the slack after the function are not functions.
    assert_eq!(raw::state(p.wrapping_add(1)), None);
    assert_eq!(raw::verify(p.wrapping_add(16)), -1);
    assert_eq!(raw::state(p), Some(State::Executable));
    drop(arena);
    assert_eq!(raw::state(p), None);
    assert_eq!(raw::verify(p), -1);
}

#[test]
fn rel32_calls_rip_relative_constants_imports_and_a_three_page_function() {
    extern "sysv64" fn host_triple(x: i64) -> i64 {
        x * 3
    }
    let arena = Arena::new(1 << 20).unwrap();
    // g(x) = x + 1: lea rax, [rdi + 1]; ret
    let g = arena.push(&[0x48, 0x8d, 0x47, 0x01, 0xc3]).unwrap();
    let g_addr = arena.addr(g).unwrap();
    // f(x) = g(x) * 2: sub rsp, 8; call g; add rsp, 8; add rax, rax; ret
    let f = arena
        .push_with(17, |at, b| {
            let mut code = vec![0x48, 0x83, 0xec, 0x08, 0xe8];
            code.extend(rel32(at + 9, g_addr));
            code.extend([0x48, 0x83, 0xc4, 0x08, 0x48, 0x01, 0xc0, 0xc3]);
            b[..code.len()].copy_from_slice(&code);
        })
        .unwrap();
    // k() = the 8-byte constant after its ret: mov rax, [rip + 1]; ret; <const>
    let mut k_code = vec![0x48, 0x8b, 0x05, 0x01, 0x00, 0x00, 0x00, 0xc3];
    k_code.extend(0x1234_5678_9abc_def0u64.to_le_bytes());
    let k = arena.push(&k_code).unwrap();
    // h(x) = host_triple(x) + 1 through an import slot: sub rsp, 8; call [rip + d];
    // add rsp, 8; add rax, 1; ret
    let slot = arena.import(host_triple as *const () as usize).unwrap();
    assert_eq!(slot % 8, 0);
    let h = arena
        .push_with(20, |at, b| {
            let mut code = vec![0x48, 0x83, 0xec, 0x08, 0xff, 0x15];
            code.extend(rel32(at + 10, slot));
            code.extend([0x48, 0x83, 0xc4, 0x08, 0x48, 0x83, 0xc0, 0x01, 0xc3]);
            b[..code.len()].copy_from_slice(&code);
        })
        .unwrap();
    // big() = 7 after three pages of nops.
    let mut big_code = vec![0x90; 3 * 4096];
    big_code.extend(ret_const(7));
    let big = arena.push(&big_code).unwrap();
    arena.publish().unwrap();
    assert_no_wx("publish");
    // SAFETY: each function implements the type it is entered as (see the comments).
    unsafe {
        assert_eq!(arena.entry::<I64>(f).unwrap().call((20,)), 42);
        assert_eq!(arena.entry::<extern "sysv64" fn() -> u64>(k).unwrap().call(()), 0x1234_5678_9abc_def0);
        assert_eq!(arena.entry::<I64>(h).unwrap().call((-5,)), -14);
        assert_eq!(arena.entry::<Ret>(big).unwrap().call(()), 7);
    }
    // The slot is read-only now.
    let maps = Maps::read();
    assert_eq!(maps.perms_of(slot & !4095, 4096).map(|p| p.rwx()), Some("r-x".to_string()));
    assert_eq!(wildx::inspect(arena.addr(big).unwrap() as *const u8).unwrap().mapped_len, 4 * 4096);
    assert_eq!(arena.verify_all(), Ok(()));
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    assert_eq!(Arena::new(0).err(), Some(Error::ZeroLength));
    assert_eq!(Arena::new(usize::MAX).err(), Some(Error::LengthOverflow));
    let arena = Arena::new(4096).unwrap();
    let other = Arena::new(4096).unwrap();
    assert_eq!(arena.capacity(), 4096);
    assert_eq!(arena.push(&[]), Err(Error::ZeroLength));
    assert_eq!(arena.push_with(0, |_, _| unreachable!()), Err(Error::ZeroLength));
    assert_eq!(arena.push(&[0xc3; 4097]), Err(Error::ArenaFull { needed: 4097, available: 4096 }));
    let a = arena.push(&[0xc3; 4000]).unwrap();
    let before = arena.next_addr();
    assert_eq!(arena.push(&[0xc3; 100]), Err(Error::ArenaFull { needed: 100, available: 96 }));
    assert_eq!(arena.next_addr(), before);
    // The last 8 bytes take one import slot, then nothing fits.
    arena.push(&[0xc3; 88]).unwrap();
    assert_eq!(arena.import(0x1234), Ok(arena.base() + 4088));
    assert_eq!(arena.import(1), Err(Error::ArenaFull { needed: 8, available: 0 }));
    assert_eq!(arena.push(&[0xc3]), Err(Error::ArenaFull { needed: 1, available: 0 }));
    // Ids from another arena.
    let b = other.push(&ADD).unwrap();
    assert_eq!(arena.verify(b), Err(Error::ForeignFn));
    assert_eq!(arena.retire(b), Err(Error::ForeignFn));
    // SAFETY: refused before any call.
    assert_eq!(unsafe { arena.entry::<Add>(b) }.err(), Some(Error::ForeignFn));
    // Unpublished, then retired twice.
    assert_eq!(arena.retire(a), Err(Error::WrongState { expected: State::Executable, found: State::Writable }));
    assert_eq!(arena.verify(a), Err(Error::WrongState { expected: State::Executable, found: State::Writable }));
    arena.publish().unwrap();
    arena.publish().unwrap(); // nothing pending: a no-op
    arena.retire(a).unwrap();
    assert_eq!(arena.retire(a), Err(Error::Retired));
    assert_eq!(arena.verify(a), Err(Error::Retired));
    // SAFETY: refused before any call.
    assert_eq!(unsafe { arena.entry::<Ret>(a) }.err(), Some(Error::Retired));
    assert_eq!(arena.id_at(arena.base() + 1), Err(Error::NotRegistered));
    assert_eq!(arena.id_at(0), Err(Error::NotRegistered));
}

#[test]
fn push_with_is_atomic_reentry_is_an_error_and_a_panicking_emit_pushes_nothing() {
    let arena = Arena::new(1 << 16).unwrap();
    let first = arena.next_addr();
    let id = arena
        .push_with(6, |at, bytes| {
            assert_eq!(at, first);
            assert!(bytes.iter().all(|&b| b == 0xcc));
            assert_eq!(arena.push(&ADD), Err(Error::Reentrant));
            assert_eq!(arena.publish(), Err(Error::Reentrant));
            assert_eq!(arena.import(1), Err(Error::Reentrant));
            bytes.copy_from_slice(&ret_const(5));
        })
        .unwrap();
    let after = arena.next_addr();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = arena.push_with(64, |_, bytes| {
            bytes.fill(0x90);
            panic!("emit fails half-way");
        });
    }));
    assert!(caught.is_err());
    assert_eq!(arena.next_addr(), after, "nothing pushed");
    arena.publish().unwrap();
    // The bytes the failed emit wrote are int3 again: the whole-arena check sees padding.
    assert_eq!(arena.verify_all(), Ok(()));
    // SAFETY: ret_const implements Ret.
    assert_eq!(unsafe { arena.entry::<Ret>(id) }.unwrap().call(()), 5);
}

#[test]
fn verify_catches_a_tampered_function_and_tampered_padding() {
    let arena = Arena::new(1 << 16).unwrap();
    let a = arena.push(&ret_const(1)).unwrap();
    let b = arena.push(&ret_const(2)).unwrap();
    arena.publish().unwrap();
    assert_eq!(arena.verify_all(), Ok(()));
    let b_addr = arena.addr(b).unwrap();
    poke((b_addr + 1) as *const u8, &[9]);
    assert!(matches!(arena.verify(b), Err(Error::IntegrityMismatch { .. })));
    assert_eq!(arena.verify(a), Ok(()), "the other function is untouched");
    assert!(matches!(arena.verify_all(), Err(Error::IntegrityMismatch { .. })));
    assert_eq!(raw::verify(b_addr as *const u8), -1);
    poke((b_addr + 1) as *const u8, &[2]);
    assert_eq!(arena.verify_all(), Ok(()));
    // One byte of the padding between a and b, then one in the rest of the page.
    let pad = arena.addr(a).unwrap() + 8;
    poke(pad as *const u8, &[0x90]);
    assert!(matches!(arena.verify_all(), Err(Error::IntegrityMismatch { .. })));
    assert_eq!((arena.verify(a), arena.verify(b)), (Ok(()), Ok(())));
    poke(pad as *const u8, &[0xcc]);
    poke((arena.base() + 4000) as *const u8, &[0]);
    assert!(matches!(arena.verify_all(), Err(Error::IntegrityMismatch { .. })));
}

/// Runs `body` in a child expected to die by `signal`; the parent asserts it.
fn dies_by(name: &str, signal: i32, body: impl FnOnce()) {
    if is_child(name) {
        body();
        eprintln!("child: survived");
        std::process::exit(3);
    }
    assert_killed_by(&child_output(name, &[]), signal);
}

#[test]
fn a_pushed_but_unpublished_function_cannot_run() {
    dies_by("a_pushed_but_unpublished_function_cannot_run", libc::SIGSEGV, || {
        let arena = Arena::new(1 << 16).unwrap();
        let id = arena.push(&ret_const(1)).unwrap();
        // SAFETY: none; executing a R|W page is the fault under test.
        let f: Ret = unsafe { std::mem::transmute(arena.addr(id).unwrap()) };
        f();
    });
}

#[test]
fn a_published_page_cannot_be_written() {
    dies_by("a_published_page_cannot_be_written", libc::SIGSEGV, || {
        let arena = Arena::new(1 << 16).unwrap();
        let id = arena.push(&ret_const(1)).unwrap();
        arena.publish().unwrap();
        // SAFETY: none; writing R|X code is the fault under test.
        unsafe { (arena.addr(id).unwrap() as *mut u8).write_volatile(0xc3) };
    });
}

#[test]
fn a_stale_pointer_into_a_retired_page_faults() {
    dies_by("a_stale_pointer_into_a_retired_page_faults", libc::SIGSEGV, || {
        let arena = Arena::new(1 << 16).unwrap();
        let id = arena.push(&ret_const(1)).unwrap();
        arena.publish().unwrap();
        let stale = arena.addr(id).unwrap();
        // SAFETY: the bytes implement Ret; the call runs while the function is published.
        let f: Ret = unsafe { std::mem::transmute(stale) };
        assert_eq!(f(), 1);
        arena.retire(id).unwrap();
        f();
    });
}

#[test]
fn a_function_on_a_shared_page_keeps_it_until_the_last_one_retires() {
    let arena = Arena::new(1 << 16).unwrap();
    let a = arena.push(&ret_const(1)).unwrap();
    let b = arena.push(&ret_const(2)).unwrap();
    arena.publish().unwrap();
    arena.retire(a).unwrap();
    assert_eq!(Maps::read().perms_of(arena.base(), 4096).map(|p| p.rwx()), Some("r-x".to_string()));
    // SAFETY: ret_const implements Ret.
    assert_eq!(unsafe { arena.entry::<Ret>(b) }.unwrap().call(()), 2);
    arena.retire(b).unwrap();
    assert_eq!(Maps::read().perms_of(arena.base(), 4096).map(|p| p.rwx()), Some("---".to_string()));
}

#[test]
fn maps_stay_few_and_return_to_baseline_with_stats_balanced() {
    run_in_child("maps_stay_few_and_return_to_baseline_with_stats_balanced", || {
        // Warm up: the registry's arena list keeps its storage once it has grown.
        drop(Arena::new(4096).unwrap());
        let mut maps = RawMaps::with_capacity(1 << 20);
        maps.snapshot();
        let baseline = maps.text().to_string();
        let base_count = baseline.lines().count();
        let stats0 = wildx::stats();
        let arena = Arena::new(16 << 20).unwrap();
        let code = ret_const_40(7);
        for batch in 0..100 {
            for _ in 0..1000 {
                arena.push(&code).unwrap();
            }
            arena.publish().unwrap();
            if batch % 25 == 0 {
                assert_no_wx("a publish");
            }
        }
        maps.snapshot();
        let count = maps.text().lines().count();
        let m = maps.parse();
        assert!(m.writable_and_executable().is_empty());
        // Inside the reservation: R|X runs merge into one, the R|W window of pages
        // committed ahead is one, the rest stays one PROT_NONE mapping.
        let (lo, hi) = (arena.base(), arena.base() + arena.capacity());
        let inside = m.mappings.iter().filter(|x| x.start < hi && x.end > lo).count();
        assert!(inside <= 3, "the reservation is split into {inside} mappings");
        // Outside it: the arena's state page and its record table, and the registry's
        // grown table. wildx maps its writable memory `-w-p` (`PROT_WRITE` alone, see
        // docs/hardening.md), so these no longer merge with libc's `rw-p` neighbours:
        // each may be a line of its own. (With `gdb-jit`, each publish also registers a
        // small ELF object of its own for gdb.)
        let added: Vec<&str> = maps.text().lines().filter(|l| !baseline.contains(*l)).collect();
        if !cfg!(feature = "gdb-jit") {
            assert!(
                count <= base_count + 7,
                "100 000 functions in 100 batches added {} mappings: {added:#?}",
                count - base_count
            );
        }
        let stats = wildx::stats();
        assert_eq!(stats.arenas, stats0.arenas + 1);
        assert_eq!(stats.arena_functions, stats0.arena_functions + 100_000);
        let accessible = stats.arena_bytes - stats0.arena_bytes;
        assert_eq!(stats.live_bytes - stats0.live_bytes, accessible);
        // 48 bytes a function plus the fresh page each publish starts on.
        assert!(accessible <= 100_000 * 48 + 101 * 4096, "{accessible}");
        let table = stats.registry_bytes - stats0.registry_bytes;
        println!("registry cost per live arena function: {:.1} bytes", table as f64 / 100_000.0);
        assert!(table <= 100_000 * 48, "table {table} bytes for 100 000 functions");
        drop(arena);
        maps.snapshot();
        assert_eq!(maps.text(), baseline, "back to the baseline mappings");
        let after = wildx::stats();
        assert_eq!(
            (after.arenas, after.arena_functions, after.arena_bytes, after.live_bytes),
            (stats0.arenas, stats0.arena_functions, stats0.arena_bytes, stats0.live_bytes)
        );
    });
}

#[test]
fn quota_counts_accessible_pages_not_the_reservation() {
    run_in_child("quota_counts_accessible_pages_not_the_reservation", || {
        wildx::set_quota(2 * 4096);
        let arena = Arena::new(1 << 30).unwrap(); // 1 GiB reserved, nothing counted
        assert_eq!(wildx::stats().live_bytes, 0);
        arena.push(&[0xc3; 4096]).unwrap();
        arena.push(&[0xc3; 16]).unwrap();
        assert_eq!(wildx::stats().live_bytes, 2 * 4096);
        let before = arena.next_addr();
        assert!(matches!(arena.push(&[0xc3; 4096]), Err(Error::QuotaExceeded { requested: 4096, .. })));
        assert_eq!(arena.next_addr(), before);
        assert!(raw::alloc(1).is_null(), "pages share the quota");
        drop(arena);
        assert_eq!(wildx::stats().live_bytes, 0);
        let p = raw::alloc(1);
        assert!(!p.is_null());
        assert_eq!(raw::free(p), 0);
    });
}

#[test]
fn one_thread_publishes_while_others_call() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Mutex, RwLock};
    let arena = Arena::new(8 << 20).unwrap();
    let published: RwLock<Vec<(wildx::FnId, i32)>> = RwLock::new(Vec::new());
    let done = AtomicBool::new(false);
    let calls = Mutex::new(0u64);
    std::thread::scope(|s| {
        s.spawn(|| {
            for batch in 0..50 {
                let mut ids = Vec::new();
                for i in 0..100 {
                    let value = batch * 1000 + i;
                    ids.push((arena.push(&ret_const_40(value)).unwrap(), value));
                }
                arena.publish().unwrap();
                published.write().unwrap().extend(ids);
            }
            done.store(true, Ordering::Release);
        });
        for t in 0..2u64 {
            let (arena, published, done, calls) = (&arena, &published, &done, &calls);
            s.spawn(move || {
                let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ t;
                let mut n = 0;
                while !done.load(Ordering::Acquire) || n < 1000 {
                    let pick = {
                        let list = published.read().unwrap();
                        if list.is_empty() {
                            continue;
                        }
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        list[(seed % list.len() as u64) as usize]
                    };
                    // SAFETY: ret_const_40 implements Ret.
                    let entry = unsafe { arena.entry::<Ret>(pick.0) }.unwrap();
                    assert_eq!(entry.call(()), pick.1);
                    n += 1;
                }
                *calls.lock().unwrap() += n;
            });
        }
    });
    assert!(*calls.lock().unwrap() >= 2000);
    assert_eq!(arena.verify_all(), Ok(()));
    for &(id, value) in published.read().unwrap().iter().step_by(97) {
        // SAFETY: as above.
        assert_eq!(unsafe { arena.entry::<Ret>(id) }.unwrap().call(()), value);
        arena.retire(id).unwrap();
    }
    assert_no_wx("threads");
}

#[cfg(feature = "verify-on-call")]
#[test]
fn verify_on_call_aborts_the_next_call_of_a_tampered_function_only() {
    const NAME: &str = "verify_on_call_aborts_the_next_call_of_a_tampered_function_only";
    if is_child(NAME) {
        let arena = Arena::new(1 << 16).unwrap();
        let a = arena.push(&ret_const(1)).unwrap();
        let b = arena.push(&ret_const(2)).unwrap();
        arena.publish().unwrap();
        // SAFETY: ret_const implements Ret.
        let (ea, eb) = unsafe { (arena.entry::<Ret>(a).unwrap(), arena.entry::<Ret>(b).unwrap()) };
        assert_eq!((ea.call(()), eb.call(())), (1, 2));
        poke(eb.as_ptr().wrapping_add(1), &[3]);
        assert_eq!(ea.call(()), 1, "the untouched function still runs");
        eprintln!("child: tampered {:p}", eb.as_ptr());
        eb.call(());
        eprintln!("child: the tampered call ran");
        std::process::exit(3);
    }
    let out = child_output(NAME, &[]);
    assert_killed_by(&out, libc::SIGABRT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let addr =
        stderr.lines().find_map(|l| l.strip_prefix("child: tampered ")).expect("child named the address").to_string();
    assert!(
        stderr.contains(&format!("wildx: integrity check failed for page {addr}")),
        "diagnostic names the function: {stderr}"
    );
}

#[test]
fn pushes_racing_publishes_keep_the_contract() {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let arena = Arena::new(16 << 20).unwrap();
    let pushed = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    // Publishes so far. Every 200 pushes a pusher waits for the next one, so publishes
    // land between pushes however the threads are scheduled (on a loaded machine the
    // pushers could otherwise finish before the publisher first runs).
    let publishes = AtomicUsize::new(0);
    // Stops the monitor however the scope's body ends: if a pusher or the publisher
    // panics, the body unwinds past `stop.store` and the scope would wait for the
    // monitor forever (a hang instead of a failure).
    struct StopOnDrop<'a>(&'a AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    std::thread::scope(|s| {
        let _stop_monitor = StopOnDrop(&stop);
        // A W^X monitor: reads /proc/self/maps for the whole race.
        let monitor = s.spawn(|| {
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) {
                let wx: Vec<_> = Maps::read().writable_and_executable().into_iter().map(|m| m.start).collect();
                assert!(wx.is_empty(), "W|X mapping during the race: {wx:x?}");
                reads += 1;
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            reads
        });
        let pushers: Vec<_> = (0..2)
            .map(|t| {
                let (arena, pushed, publishes) = (&arena, &pushed, &publishes);
                s.spawn(move || {
                    for i in 0..2000 {
                        if i % 200 == 100 {
                            let seen = publishes.load(Ordering::SeqCst);
                            while publishes.load(Ordering::SeqCst) == seen {
                                std::thread::sleep(std::time::Duration::from_micros(50));
                            }
                        }
                        let value = t * 100_000 + i;
                        // Sizes from 6 bytes to a little over a page, so functions straddle pages.
                        let len = 6 + (i as usize * 37) % 4200;
                        let id = arena
                            .push_with(len, |_, b| {
                                b[..5].copy_from_slice(&ret_const(value)[..5]);
                                b[5..len - 1].fill(0x90);
                                b[len - 1] = 0xc3;
                            })
                            .unwrap();
                        pushed.lock().unwrap().push((id, value));
                    }
                })
            })
            .collect();
        let (arena, publishes) = (&arena, &publishes);
        let publisher = s.spawn(move || {
            while !pushers.iter().all(|p| p.is_finished()) {
                arena.publish().unwrap();
                publishes.fetch_add(1, Ordering::SeqCst);
                // Let the pushers at the lock: a spinning publisher would starve them.
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
            for p in pushers {
                p.join().unwrap();
            }
        });
        publisher.join().unwrap();
        // Each pusher waited for a publish ten times in the middle of its pushes.
        assert!(publishes.load(Ordering::SeqCst) >= 10);
        stop.store(true, Ordering::Relaxed);
        assert!(monitor.join().unwrap() > 0);
    });
    arena.publish().unwrap();
    let pushed = pushed.into_inner().unwrap();
    assert_eq!(pushed.len(), 4000);
    for &(id, value) in &pushed {
        // SAFETY: each function is mov eax, value; nops; ret.
        assert_eq!(unsafe { arena.entry::<Ret>(id) }.unwrap().call(()), value);
        assert_eq!(arena.verify(id), Ok(()));
    }
    assert_eq!(arena.verify_all(), Ok(()));
}

#[cfg(feature = "validate")]
#[test]
fn checked_pushes_are_validated_and_enter_without_unsafe() {
    use wildx::validate::Rule;
    let arena = Arena::new(1 << 16).unwrap();
    // f(x) = x * 3 + 1: lea rax, [rdi + rdi*2]; add rax, 1; ret
    let f = arena
        .push_checked::<extern "sysv64" fn(i64) -> i64>(&[0x48, 0x8d, 0x04, 0x7f, 0x48, 0x83, 0xc0, 0x01, 0xc3])
        .unwrap();
    let before = arena.next_addr();
    // syscall; ret: refused with its offset and rule, nothing pushed.
    let refused = arena.push_checked::<extern "sysv64" fn() -> i64>(&[0x0f, 0x05, 0xc3]);
    match refused {
        Err(Error::Rejected(v)) => assert_eq!((v.offset, v.rule), (0, Rule::Forbidden)),
        other => panic!("syscall accepted: {other:?}"),
    }
    // Reads rdx in a one-argument function: refused.
    assert!(matches!(
        arena.push_checked::<extern "sysv64" fn(i64) -> i64>(&[0x48, 0x89, 0xd0, 0xc3]),
        Err(Error::Rejected(_))
    ));
    assert_eq!(arena.next_addr(), before);
    // Not published yet: the entry is refused like any other.
    assert!(matches!(arena.checked_entry(f), Err(Error::WrongState { .. })));
    arena.publish().unwrap();
    let entry = arena.checked_entry(f).unwrap();
    assert_eq!(entry.call((13,)), 40);
    drop(entry);
    arena.retire(f.id()).unwrap();
    assert_eq!(arena.checked_entry(f).err(), Some(Error::Retired));
}

/// Regression (found by the reference model in `tests/model.rs`): when the quota had no
/// room for the pages a push commits ahead, the push fell back to committing exactly
/// what it needed but recorded the ahead pages as committed too. Those pages stayed
/// `PROT_NONE` and uncounted: the next push onto one of them wrote into an inaccessible
/// page (SIGSEGV inside `push`), and dropping the arena gave back more bytes than it had
/// counted (`arena_bytes` and `live_bytes` fell below the truth, or overflowed).
#[test]
fn a_push_that_falls_back_to_an_exact_commit_records_only_what_it_committed() {
    run_in_child("a_push_that_falls_back_to_an_exact_commit_records_only_what_it_committed", || {
        const P: usize = 4096;
        let stats0 = wildx::stats();
        let arena = Arena::new(64 * P).unwrap();
        // A function filling pages 0..16 (committed at once: at least 16 pages), published.
        let mut long = vec![0x90; 15 * P + 100];
        long.extend(ret_const(1));
        arena.push(&long).unwrap();
        arena.publish().unwrap();
        assert_eq!(wildx::stats().arena_bytes - stats0.arena_bytes, 16 * P);
        // Room for one more page: the push at page 16 would commit pages 16..32 ahead,
        // cannot, and commits page 16 alone.
        wildx::set_quota(wildx::stats().live_bytes + P);
        let c = arena.push(&ret_const(3)).unwrap();
        assert_eq!(wildx::stats().arena_bytes - stats0.arena_bytes, 17 * P);
        arena.publish().unwrap();
        let page17 = arena.base() + 17 * P;
        assert_eq!(arena.next_addr(), page17);
        assert!(
            Maps::read().perms_of(page17, P).is_some_and(|p| p.rwx() == "---"),
            "page 17 was never made accessible"
        );
        // Page 17 must be committed (and counted) by the next push, or refused by the quota.
        assert!(matches!(arena.push(&ret_const(4)), Err(Error::QuotaExceeded { requested: P, .. })));
        wildx::set_quota(wildx::DEFAULT_QUOTA);
        let d = arena.push(&ret_const(4)).unwrap();
        arena.publish().unwrap();
        assert_eq!(arena.addr(d), Ok(page17));
        // SAFETY: ret_const implements Ret.
        unsafe {
            assert_eq!(arena.entry::<Ret>(c).unwrap().call(()), 3);
            assert_eq!(arena.entry::<Ret>(d).unwrap().call(()), 4);
        }
        let accessible = wildx::stats().arena_bytes - stats0.arena_bytes;
        assert_eq!(accessible % 4096, 0);
        assert!(accessible >= 18 * P);
        drop(arena);
        let after = wildx::stats();
        assert_eq!((after.arena_bytes, after.live_bytes), (stats0.arena_bytes, stats0.live_bytes));
    });
}

#[test]
fn arenas_stay_non_executable_under_read_implies_exec() {
    run_in_child("arenas_stay_non_executable_under_read_implies_exec", || {
        let old_arena = Arena::new(1 << 20).unwrap();
        let first = old_arena.push(&ret_const(1)).unwrap(); // commits pages before the switch
        let big = vec![0xc3; 1 << 17];
        let mut snapshot = RawMaps::with_capacity(1 << 20);
        // SAFETY: personality only changes how this (child) process's later mappings are
        // made; READ_IMPLIES_EXEC adds PROT_EXEC to every mapping asked for with PROT_READ.
        let old = unsafe { libc::personality(0xffff_ffff) };
        // SAFETY: as above.
        assert_ne!(unsafe { libc::personality((old as libc::c_ulong) | 0x0040_0000) }, -1);
        // wildx asks for writable pages without PROT_READ: new arenas and pushes that
        // commit fresh pages work, and nothing they map is executable until published.
        let arena = Arena::new(1 << 20).unwrap();
        let second = old_arena.push(&big).unwrap();
        let third = arena.push(&ret_const(3)).unwrap();
        snapshot.snapshot();
        old_arena.publish().unwrap();
        arena.publish().unwrap();
        // SAFETY: `ret_const` is `mov eax, imm32; ret`.
        let (one, three) = unsafe {
            (
                old_arena.entry::<extern "C" fn() -> i32>(first).unwrap(),
                arena.entry::<extern "C" fn() -> i32>(third).unwrap(),
            )
        };
        assert_eq!(one.call(()) + three.call(()), 4);
        // SAFETY: as above (the first byte of `big` is `ret`).
        assert_eq!(unsafe { old_arena.entry::<extern "C" fn()>(second) }.unwrap().call(()), ());
        // SAFETY: restores the personality read above.
        unsafe { libc::personality(old as libc::c_ulong) };
        let maps = snapshot.parse();
        for (a, what) in [(&old_arena, "arena made before"), (&arena, "arena made under the personality")] {
            let pending = maps.perms_of(a.base(), 4096).unwrap();
            assert_eq!(pending.rwx(), "-w-", "{what}: pending pages writable, not executable");
        }
        assert_eq!(maps.perms_of(old_arena.addr(second).unwrap(), 1 << 17).unwrap().rwx(), "-w-");
        assert_no_wx("READ_IMPLIES_EXEC");
    });
}

#[test]
fn a_new_arena_does_not_land_where_the_last_one_was() {
    run_in_child("a_new_arena_does_not_land_where_the_last_one_was", || {
        let mut same = 0;
        let mut last = Arena::new(1 << 16).unwrap().base();
        for _ in 0..1000 {
            let arena = Arena::new(1 << 16).unwrap();
            if arena.base() == last {
                same += 1;
            }
            last = arena.base();
        }
        println!("arena reuse of the address just dropped: {same} of 1000");
        assert!(same < 10, "{same} of 1000 arenas landed where the previous one was");
    });
}

/// The signal-safe queries answer for arena functions, and never wait for the arena's
/// lock: from inside a `push_with` closure (which holds it, as a signal handler's
/// interrupted code might) they say `WouldBlock` instead of deadlocking.
#[test]
fn signal_safe_queries_answer_for_arena_functions_without_waiting() {
    use wildx::signal_safe;
    let arena = Arena::new(64 << 10).unwrap();
    let id = arena.push(&wildx::jit::ADD_I32).unwrap();
    let p = arena.addr(id).unwrap() as *const u8;
    assert_eq!(signal_safe::state(p), Ok(Some(State::Writable)));
    arena.publish().unwrap();
    let info = signal_safe::inspect(p).unwrap().unwrap();
    assert_eq!(
        (info.state, info.len, info.seal_hash),
        (State::Executable, 5, Some(wildx::fnv1a64(&wildx::jit::ADD_I32)))
    );
    assert_eq!(signal_safe::verify(p), Ok(5));
    assert_eq!(signal_safe::verify(p.wrapping_add(1)), Err(Error::NotRegistered));
    assert_eq!(signal_safe::state(p.wrapping_add(1)), Ok(None));
    let mut inside = None;
    arena
        .push_with(5, |_, bytes| {
            bytes.copy_from_slice(&wildx::jit::ADD_I32);
            inside = Some((signal_safe::state(p), signal_safe::verify(p)));
        })
        .unwrap();
    assert_eq!(inside, Some((Err(Error::WouldBlock), Err(Error::WouldBlock))));
    arena.retire(id).unwrap();
    assert_eq!(signal_safe::state(p), Ok(None));
    drop(arena);
    assert_eq!(signal_safe::state(p), Ok(None));
    assert_eq!(signal_safe::verify(p), Err(Error::NotRegistered));
}

/// Dropping an `Entry` takes no lock (it adds to the function's count of ended entries),
/// so it works inside a `push_with` closure of the same arena, and `retire` still waits
/// for every entry: two threads make, call and drop entries of a function alone on its
/// page while the main thread retires it, which releases the page. Had `retire` ever
/// succeeded while an entry was alive, that entry's call would hit the released page
/// (SIGSEGV): the child dies and the test fails.
#[test]
fn entries_end_without_the_lock_and_retire_waits_for_every_one() {
    let _ = run_in_child("entries_end_without_the_lock_and_retire_waits_for_every_one", || {
        let arena = Arena::new(1 << 22).unwrap();
        let id = arena.push(&ret_const(7)).unwrap();
        arena.publish().unwrap();
        // SAFETY: ret_const implements Ret.
        let entry = unsafe { arena.entry::<Ret>(id) }.unwrap();
        assert_eq!(arena.retire(id), Err(Error::EntryAlive { entries: 1 }));
        arena
            .push_with(1, |_, b| {
                b[0] = 0xc3;
                drop(entry);
            })
            .unwrap();
        arena.retire(id).unwrap();
        arena.publish().unwrap();
        let mut refused = 0u64;
        for round in 0..100 {
            // Alone on a fresh page (the previous publish moved on), published.
            let id = arena.push(&ret_const(round)).unwrap();
            arena.publish().unwrap();
            let calls = std::sync::atomic::AtomicU64::new(0);
            std::thread::scope(|s| {
                for _ in 0..2 {
                    s.spawn(|| {
                        // SAFETY: ret_const implements Ret.
                        while let Ok(e) = unsafe { arena.entry::<Ret>(id) } {
                            assert_eq!(e.call(()), round);
                            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            drop(e);
                        }
                    });
                }
                // Retire only once both callers are busy with entries.
                while calls.load(std::sync::atomic::Ordering::Relaxed) < 1000 {
                    std::hint::spin_loop();
                }
                loop {
                    match arena.retire(id) {
                        Ok(()) => break,
                        Err(Error::EntryAlive { .. }) => {
                            refused += 1;
                            std::thread::sleep(std::time::Duration::from_micros(50));
                        }
                        Err(e) => panic!("retire: {e:?}"),
                    }
                }
            });
            // SAFETY: as above.
            assert_eq!(unsafe { arena.entry::<Ret>(id) }.err(), Some(Error::Retired));
        }
        println!("retire refused {refused} times while entries were alive");
    })
    .inspect(|out| print!("{}", String::from_utf8_lossy(&out.stdout)));
}
