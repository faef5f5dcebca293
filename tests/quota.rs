//! The process-wide quota and the exact statistics.
//!
//! Both are process-wide, so every test here holds `LOCK` and this file is its own test
//! binary: nothing else allocates while a test compares stats. The one test that depends
//! on where the kernel puts a mapping runs in a child process of its own (see
//! `common::run_in_child`), where no other thread maps anything.
//!
//! `unsafe` is allowed here to call sealed add pages through the raw helper.

#![allow(unsafe_code)]

mod common;

use std::sync::{Mutex, MutexGuard};

use wildx::{Error, Stats, raw};

static LOCK: Mutex<()> = Mutex::new(());

/// Serialises the tests and restores the default quota afterwards.
struct Exclusive(#[allow(dead_code)] MutexGuard<'static, ()>);

impl Drop for Exclusive {
    fn drop(&mut self) {
        wildx::set_quota(wildx::DEFAULT_QUOTA);
    }
}

fn exclusive() -> Exclusive {
    Exclusive(LOCK.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Stats without the refusal count and the registry's own footprint.
fn core_stats(s: Stats) -> (usize, usize, usize, usize, u64, u64, u64) {
    (s.live_pages, s.live_bytes, s.peak_bytes, s.quota, s.allocs, s.seals, s.frees)
}

#[test]
fn the_default_quota_is_256_mib() {
    let _x = exclusive();
    assert_eq!(wildx::DEFAULT_QUOTA, 256 << 20);
    assert_eq!(wildx::quota(), 256 << 20);
    assert_eq!(wildx::stats().quota, 256 << 20);
}

#[test]
fn stats_count_exactly_one_lifecycle() {
    let _x = exclusive();
    let before = wildx::stats();
    let p = wildx::jit::compile_add_i32();
    let during = wildx::stats();
    assert_eq!(during.live_pages, before.live_pages + 1);
    assert_eq!(during.live_bytes, before.live_bytes + 4096);
    assert!(during.peak_bytes >= during.live_bytes);
    assert_eq!(raw::seal(p), -1);
    assert_eq!(raw::free(p), 0);
    assert_eq!(raw::free(p), -1);
    let after = wildx::stats();
    assert_eq!(after.allocs - before.allocs, 1);
    assert_eq!(after.seals - before.seals, 1);
    assert_eq!(after.frees - before.frees, 1);
    assert_eq!(after.refusals - before.refusals, 2);
    assert_eq!((after.live_pages, after.live_bytes), (before.live_pages, before.live_bytes));
}

#[test]
fn allocate_until_refused_then_free_and_allocate_again() {
    let _x = exclusive();
    let base = wildx::stats();
    // Room for exactly 8 more pages beyond what is live.
    wildx::set_quota(base.live_bytes + 8 * 4096);
    let mut pages = Vec::new();
    loop {
        let p = wildx::jit::compile_add_i32();
        if p.is_null() {
            break;
        }
        pages.push(p);
        assert!(pages.len() <= 8, "the quota did not stop allocation");
    }
    assert_eq!(pages.len(), 8);

    // A refused alloc changes no stats but the refusal count, on every surface.
    let full = wildx::stats();
    assert!(raw::alloc(1).is_null());
    assert_eq!(
        wildx::Page::new(1).unwrap_err(),
        Error::QuotaExceeded { requested: 4096, live: full.live_bytes, quota: full.quota }
    );
    assert!(wildx::jit::compile_add().is_err());
    let refused = wildx::stats();
    assert_eq!(core_stats(refused), core_stats(full));
    assert_eq!(refused.refusals - full.refusals, 3);

    // Existing pages still work at the limit.
    for &p in &pages {
        // SAFETY: p is a live add page.
        assert_eq!(unsafe { wildx::jit::call_i32_i32(p, 40, 2) }, 42);
    }
    // Freeing one makes room for exactly one.
    assert_eq!(raw::free(pages.pop().unwrap()), 0);
    let p = raw::alloc(4096);
    assert!(!p.is_null(), "allocation did not resume after a free");
    assert!(raw::alloc(1).is_null());
    pages.push(p);
    for p in pages {
        assert_eq!(raw::free(p), 0);
    }
    assert_eq!(wildx::stats().live_bytes, base.live_bytes);
    let p = wildx::jit::compile_add_i32();
    assert!(!p.is_null(), "allocation did not resume after freeing everything");
    assert_eq!(raw::free(p), 0);
}

#[test]
fn a_multi_page_allocation_is_charged_its_mapped_length() {
    let _x = exclusive();
    let base = wildx::stats();
    wildx::set_quota(base.live_bytes + 3 * 4096);
    assert!(raw::alloc(3 * 4096 + 1).is_null(), "4 pages must not fit in a 3-page quota");
    let p = raw::alloc(2 * 4096 + 1);
    assert!(!p.is_null(), "3 pages fit");
    assert_eq!(wildx::stats().live_bytes, base.live_bytes + 3 * 4096);
    assert!(raw::alloc(1).is_null());
    assert_eq!(raw::free(p), 0);
}

#[test]
fn lowering_the_quota_below_live_bytes_refuses_allocs_but_live_pages_keep_working() {
    let _x = exclusive();
    let writable = raw::alloc(64);
    assert_eq!(wildx::jit::install_add_i32(writable), 0);
    let sealed = wildx::jit::compile_add_i32();
    let typed = wildx::jit::compile_add().unwrap();
    let before = wildx::stats();
    wildx::set_quota(0);
    assert_eq!(wildx::quota(), 0);
    assert!(raw::alloc(1).is_null());
    assert!(wildx::jit::compile_add_i32().is_null());
    // Nothing was unmapped; the live pages seal, call and free as usual.
    assert_eq!(wildx::stats().live_bytes, before.live_bytes);
    assert_eq!(raw::seal(writable), 0);
    // SAFETY: both are live sealed add pages.
    assert_eq!(unsafe { wildx::jit::call_i32_i32(writable, 1, 2) }, 3);
    // SAFETY: as above.
    assert_eq!(unsafe { wildx::jit::call_i32_i32(sealed, 3, 4) }, 7);
    assert_eq!(typed.call((5, 6)), 11);
    assert_eq!(raw::free(writable), 0);
    assert_eq!(raw::free(sealed), 0);
    drop(typed);
    assert_eq!(wildx::stats().live_bytes, before.live_bytes - 3 * 4096);
    wildx::set_quota(wildx::DEFAULT_QUOTA);
    let p = raw::alloc(1);
    assert!(!p.is_null());
    assert_eq!(raw::free(p), 0);
}

#[test]
fn peak_bytes_track_the_high_water_mark() {
    let _x = exclusive();
    let base = wildx::stats();
    let pages: Vec<_> = (0..4).map(|_| raw::alloc(4096)).collect();
    let high = base.live_bytes + 4 * 4096;
    assert!(wildx::stats().peak_bytes >= high);
    for p in pages {
        assert_eq!(raw::free(p), 0);
    }
    let after = wildx::stats();
    assert_eq!(after.live_bytes, base.live_bytes);
    assert!(after.peak_bytes >= high, "peak must not fall when pages are freed");
}

#[test]
fn huge_sizes_are_refused_by_the_quota_before_any_mapping() {
    let _x = exclusive();
    let before = wildx::stats();
    let huge = 1usize << 40;
    assert_eq!(
        wildx::Page::new(huge).unwrap_err(),
        Error::QuotaExceeded { requested: huge, live: before.live_bytes, quota: before.quota }
    );
    assert_eq!(core_stats(wildx::stats()), core_stats(before));
}

/// Depends on the kernel handing the hole back to the next small `mmap`, so it runs in a
/// child process where this is the only test and nothing else maps memory: in the
/// parent, another test's thread (its stack, a malloc arena) could take the hole, and a
/// failure here would leave a stale entry behind for the tests that follow.
#[test]
fn a_page_unmapped_behind_wildxs_back_does_not_wedge_a_later_alloc_at_its_address() {
    common::run_in_child("a_page_unmapped_behind_wildxs_back_does_not_wedge_a_later_alloc_at_its_address", || {
        let _x = exclusive();
        let base = wildx::stats();
        let p = raw::alloc(64);
        assert!(!p.is_null());
        // Misuse under test: unmap a wildx page with libc, leaving a stale registry entry.
        // SAFETY: p starts a 4096-byte mapping this test owns and never touches again.
        assert_eq!(unsafe { libc::munmap(p.cast(), 4096) }, 0);
        // If the address is handed out again, the alloc that gets it must replace the stale
        // entry, not wait for it forever. wildx's randomized placement never hands a freed
        // address straight back (the kernel's own choice would: tests/hostile.rs forces that
        // with a filter), so here the stale entry usually stays until it is freed.
        let mut pages = Vec::new();
        let reused = loop {
            let q = raw::alloc(100);
            assert!(!q.is_null());
            pages.push(q);
            if q == p {
                break true;
            }
            if pages.len() == 64 {
                break false;
            }
        };
        if reused {
            let info = wildx::inspect(p).unwrap();
            assert_eq!((info.len, info.state), (100, wildx::State::Writable), "a fresh entry, not the stale one");
        } else {
            // The stale entry can be freed (munmap of the hole succeeds) and leaves.
            assert_eq!(raw::free(p), 0);
        }
        for q in pages {
            assert_eq!(raw::free(q), 0);
        }
        // The stale entry's bytes left the accounting with it.
        assert_eq!(wildx::stats().live_bytes, base.live_bytes);
    });
}
