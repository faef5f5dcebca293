//! wildx never calls the global allocator: this test binary installs a counting one and
//! counts the allocations made on the watching thread while it drives every surface
//! (pages raw and typed, the pinned add, arenas with imports, entries, verify, retire,
//! stats, refusals). The count must be zero.
//!
//! `unsafe` is allowed here to implement `GlobalAlloc` (forwarding to `System`) and for
//! the typed seal and entries of known code.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    // Per thread, so that tests running in parallel do not count each other's.
    static WATCHING: Cell<bool> = const { Cell::new(false) };
    static WATCHED: Cell<usize> = const { Cell::new(0) };
}

fn note() {
    if WATCHING.with(Cell::get) {
        WATCHED.with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds the contract.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note();
        // SAFETY: forwarded; `ptr` came from `System` through `alloc`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` with this thread's allocations counted; returns how many there were.
fn allocations_during(f: impl FnOnce()) -> usize {
    let before = WATCHED.with(Cell::get);
    WATCHING.with(|w| w.set(true));
    f();
    WATCHING.with(|w| w.set(false));
    WATCHED.with(Cell::get) - before
}

#[test]
fn the_counter_sees_an_allocation() {
    // The test must be able to fail: a Box on the watched thread is counted.
    assert!(allocations_during(|| drop(std::hint::black_box(Box::new(7u64)))) >= 1);
}

#[test]
fn no_surface_calls_the_global_allocator() {
    type Ret = extern "sysv64" fn() -> i64;
    extern "sysv64" fn host(x: i64) -> i64 {
        x + 1
    }
    let count = allocations_during(|| {
        // Pages: raw, typed, the pinned add, refusals.
        for _ in 0..200 {
            let p = wildx::raw::alloc(100);
            assert!(!p.is_null() && wildx::raw::seal(p) == 0 && wildx::raw::verify(p) == 0);
            assert_eq!(wildx::raw::free(p), 0);
            assert_eq!(wildx::raw::free(p), -1);
        }
        let f = wildx::jit::compile_add_i32();
        // SAFETY: a live add page, freed after the call.
        assert_eq!(unsafe { wildx::jit::call_i32_i32(f, 40, 2) }, 42);
        assert_eq!(wildx::jit::free(f), 0);
        let add = wildx::jit::compile_add().unwrap();
        assert_eq!(add.call((1, 2)), 3);
        assert!(wildx::Page::new(0).is_err());
        drop(add);
        // Arenas: enough functions that the record table grows.
        let arena = wildx::Arena::new(1 << 20).unwrap();
        let slot = arena.import(host as *const () as usize).unwrap();
        let mut last = None;
        for i in 0..2000i32 {
            let id = arena.push(&[0xb8, i as u8, (i >> 8) as u8, 0, 0, 0xc3]).unwrap();
            last = Some((id, i));
            if i % 500 == 499 {
                arena.publish().unwrap();
            }
        }
        // h() = host(41) through the slot: sub rsp, 8; mov edi, 41; call [rip+d];
        // add rsp, 8; ret
        let h = arena
            .push_with(20, |at, b| {
                b[..9].copy_from_slice(&[0x48, 0x83, 0xec, 0x08, 0xbf, 41, 0, 0, 0]);
                b[9..11].copy_from_slice(&[0xff, 0x15]);
                let d = (slot as i64 - (at as i64 + 15)) as i32;
                b[11..15].copy_from_slice(&d.to_le_bytes());
                b[15..].copy_from_slice(&[0x48, 0x83, 0xc4, 0x08, 0xc3]);
            })
            .unwrap();
        arena.publish().unwrap();
        let (id, value) = last.unwrap();
        // SAFETY: mov eax, imm32; ret, and h above, are `fn() -> i64`-compatible (the
        // value is read from eax as the low half).
        unsafe {
            assert_eq!(arena.entry::<Ret>(id).unwrap().call(()) & 0xffff_ffff, i64::from(value));
            assert_eq!(arena.entry::<Ret>(h).unwrap().call(()), 42);
        }
        assert_eq!(arena.verify_all(), Ok(()));
        assert_eq!(wildx::raw::verify(arena.addr(id).unwrap() as *const u8), 0);
        arena.retire(id).unwrap();
        assert!(arena.retire(id).is_err());
        let _ = wildx::stats();
        let _ = wildx::inspect(arena.addr(h).unwrap() as *const u8);
        drop(arena);
    });
    assert_eq!(count, 0, "wildx called the global allocator {count} times");
}
