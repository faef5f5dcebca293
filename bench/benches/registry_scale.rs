//! The registry under load: the cost of alloc, seal, free and verify on one 64-byte page
//! while 1, 1 000 or 100 000 other sealed pages are live, and the registry's own bytes
//! per live page (`wildx::stats().registry_bytes / live_pages`, printed per count). Beside
//! them, the same `mprotect` and `munmap` through libc at each count, to tell the
//! kernel's share of any growth from the registry's.
//!
//! 100 000 pages map 400 MiB, past the 256 MiB default quota, so the quota is raised with
//! `wildx::set_quota`. The kernel caps a process at `vm.max_map_count` mappings (65 530 by
//! default); adjacent anonymous pages with equal protection share one VMA, so the count
//! of VMAs (printed from `/proc/self/maps`) stays far below the count of pages. If an
//! allocation is refused anyway, the bench says so and measures the count it reached.
//!
//! Run: `cargo bench -p wildx-bench --bench registry_scale`.
//!
//! `unsafe` is allowed here to write the add code through raw page pointers and to seal
//! typed pages as add code.

#![allow(unsafe_code)]
// `criterion_group!` generates a public function that cannot carry a doc comment.
#![allow(missing_docs)]

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::{ADD, AddFn};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

const LIVE: [usize; 3] = [1, 1_000, 100_000];

/// Seals `n` 64-byte add pages, stopping early (and saying why) if one is refused.
fn live_pages(n: usize) -> Vec<wildx::Code<AddFn>> {
    let mut pages = Vec::with_capacity(n);
    for i in 0..n {
        let code = wildx::Page::new(64).and_then(|mut page| {
            wildx::jit::install_add(&mut page)?;
            // SAFETY: the page starts with ADD, which implements AddFn; the rest is int3.
            Ok(unsafe { page.seal::<AddFn>() }?)
        });
        match code {
            Ok(code) => pages.push(code),
            Err(e) => {
                println!("registry_scale: page {i} of {n} refused: {e}; measuring with {i} live pages");
                break;
            }
        }
    }
    pages
}

fn vma_count() -> usize {
    std::fs::read_to_string("/proc/self/maps").map_or(0, |m| m.lines().count())
}

fn writable_page() -> *mut u8 {
    let p = wildx::raw::alloc(64);
    assert!(!p.is_null());
    // SAFETY: `p` starts a live WRITABLE page of 64 requested bytes.
    unsafe { p.copy_from_nonoverlapping(ADD.as_ptr(), ADD.len()) };
    p
}

fn sealed_page() -> *mut u8 {
    let p = writable_page();
    assert_eq!(wildx::raw::seal(p), 0);
    p
}

/// A page mapped through libc, touched whole as wildx's int3 fill does, holding ADD.
fn libc_page() -> *mut u8 {
    let p = common::libc_map(4096);
    // SAFETY: a fresh R|W mapping of 4096 bytes.
    unsafe { p.write_bytes(0xCC, 4096) };
    // SAFETY: as above; 5 <= 4096.
    unsafe { p.copy_from_nonoverlapping(ADD.as_ptr(), ADD.len()) };
    p
}

fn free_page(p: *mut u8) {
    assert_eq!(wildx::raw::free(p), 0);
}

fn registry_scale(c: &mut Criterion) {
    wildx::set_quota(2 << 30);
    println!("registry_scale: vm.max_map_count = {}", {
        std::fs::read_to_string("/proc/sys/vm/max_map_count").map_or_else(|e| e.to_string(), |s| s.trim().to_owned())
    });
    let mut g = c.benchmark_group("registry_scale");
    for n in LIVE {
        let live = live_pages(n);
        let s = wildx::stats();
        println!(
            "registry_scale: {} live pages ({} VMAs in /proc/self/maps): registry {} bytes, capacity {}, {:.1} bytes per live page",
            s.live_pages,
            vma_count(),
            s.registry_bytes,
            s.registry_capacity,
            s.registry_bytes as f64 / s.live_pages.max(1) as f64
        );
        let n = live.len();
        g.bench_function(BenchmarkId::new("alloc", n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let p = wildx::raw::alloc(64);
                    total += start.elapsed();
                    assert!(!p.is_null());
                    free_page(p);
                }
                total
            })
        });
        g.bench_function(BenchmarkId::new("seal", n), |b| {
            b.iter_custom(|iters| {
                common::time_each(iters, writable_page, |&p| assert_eq!(wildx::raw::seal(p), 0), free_page)
            })
        });
        g.bench_function(BenchmarkId::new("free", n), |b| {
            b.iter_custom(|iters| common::time_each(iters, sealed_page, |&p| free_page(p), drop))
        });
        // The same mprotect and munmap straight through libc, beside the same live pages:
        // what the kernel alone charges for them at this count.
        g.bench_function(BenchmarkId::new("floor_libc_mprotect", n), |b| {
            b.iter_custom(|iters| {
                // SAFETY: our own fresh mappings, no references into them.
                common::time_each(
                    iters,
                    libc_page,
                    |&p| unsafe { common::libc_seal(p, 4096) },
                    |p| {
                        // SAFETY: our own mapping, not used again.
                        unsafe { common::libc_unmap(p, 4096) }
                    },
                )
            })
        });
        g.bench_function(BenchmarkId::new("floor_libc_munmap", n), |b| {
            b.iter_custom(|iters| {
                let sealed = || {
                    let p = libc_page();
                    // SAFETY: our own fresh mapping, no references into it.
                    unsafe { common::libc_seal(p, 4096) };
                    p
                };
                // SAFETY: our own mapping, not used again.
                common::time_each(iters, sealed, |&p| unsafe { common::libc_unmap(p, 4096) }, drop)
            })
        });
        let p = sealed_page();
        g.bench_function(BenchmarkId::new("verify", n), |b| b.iter(|| assert_eq!(wildx::raw::verify(black_box(p)), 0)));
        free_page(p);
        drop(live);
    }
    g.finish();
    wildx::set_quota(wildx::DEFAULT_QUOTA);
}

criterion_group!(name = benches; config = common::config(); targets = registry_scale);
criterion_main!(benches);
