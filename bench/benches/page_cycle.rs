//! One function's whole life, side by side in one run: alloc 64 bytes, write the 5 add
//! bytes, seal (make executable), call once, free. wildx's raw, typed and jit surfaces
//! against the syscall floor (the same syscalls through `libc`) and the peer crates
//! `region`, `memmap2`, `dynasmrt` and `jit-allocator`. Then the seal alone by size,
//! beside its two parts (the FNV-1a hash and the `mprotect`).
//!
//! Run: `cargo bench -p wildx-bench --bench page_cycle` (without `verify-on-call`: with it, the wildx
//! calls also re-hash the page).
//!
//! Instructions per cycle: with `WILDX_PAGE_CYCLE_LOOP=N` the binary only runs `N` of
//! wildx's raw cycles (in `cycle_loop`) and exits, for
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*cycle_loop*'`
//! (`docs/performance.md` has the whole command).
//!
//! `unsafe` is allowed here because every variant ends in a call into JIT code through a
//! function pointer, and the floor and peers hand out raw pointers to write the code.

#![allow(unsafe_code)]
// `criterion_group!` generates a public function that cannot carry a doc comment.
#![allow(missing_docs)]

mod common;

use std::hint::black_box;

use common::{ADD, AddFn, to_fn};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

fn wildx_typed() -> i32 {
    let mut page = wildx::Page::new(64).expect("Page::new");
    wildx::jit::install_add(&mut page).expect("install_add");
    // SAFETY: the page starts with ADD, which implements AddFn; the rest is int3.
    let code = unsafe { page.seal::<AddFn>() }.expect("seal");
    code.call((black_box(7), black_box(35)))
}

fn wildx_jit() -> i32 {
    let f = wildx::jit::compile_add_i32();
    assert!(!f.is_null());
    // SAFETY: `f` came from compile_add_i32 and is freed only after the call.
    let r = unsafe { wildx::jit::call_i32_i32(f, black_box(7), black_box(35)) };
    assert_eq!(wildx::jit::free(f), 0);
    r
}

fn region_cycle() -> i32 {
    let mut a = region::alloc(64, region::Protection::READ_WRITE).expect("region::alloc");
    let p = a.as_mut_ptr::<u8>();
    // SAFETY: `p` starts a fresh R|W allocation of at least 64 bytes.
    unsafe { p.copy_from_nonoverlapping(ADD.as_ptr(), ADD.len()) };
    // SAFETY: the allocation is ours and no reference points into it.
    unsafe { region::protect(p, 64, region::Protection::READ_EXECUTE) }.expect("region::protect");
    // SAFETY: R|X, holds ADD, and `a` keeps it mapped until the drop below.
    let r = unsafe { to_fn(p) }(black_box(7), black_box(35));
    drop(a);
    r
}

fn memmap2_cycle() -> i32 {
    let mut m = memmap2::MmapMut::map_anon(64).expect("map_anon");
    m[..ADD.len()].copy_from_slice(&ADD);
    let x = m.make_exec().expect("make_exec");
    // SAFETY: R|X, holds ADD, and `x` keeps it mapped until it drops at the end.
    let f = unsafe { to_fn(x.as_ptr()) };
    f(black_box(7), black_box(35))
}

fn dynasmrt_cycle() -> i32 {
    let mut buf = dynasmrt::mmap::MutableBuffer::new(64).expect("MutableBuffer::new");
    buf.set_len(ADD.len());
    buf.copy_from_slice(&ADD);
    let exec = buf.make_exec().expect("make_exec");
    // SAFETY: R|X, holds ADD, and `exec` keeps it mapped until it drops at the end.
    let f = unsafe { to_fn(exec.ptr(dynasmrt::AssemblyOffset(0))) };
    f(black_box(7), black_box(35))
}

fn jit_allocator_cycle(jit: &mut jit_allocator::JitAllocator) -> i32 {
    let (rx, rw) = jit.alloc(64).expect("JitAllocator::alloc");
    // SAFETY: `rw` is the writable view of a fresh 64-byte span.
    unsafe { rw.copy_from_nonoverlapping(ADD.as_ptr(), ADD.len()) };
    // SAFETY: `rx` is the executable view of the same bytes (dual mapping), live until
    // the release below.
    let r = unsafe { to_fn(rx) }(black_box(7), black_box(35));
    // SAFETY: `rx` came from this allocator's `alloc` and is not used again.
    unsafe { jit.release(rx) }.expect("JitAllocator::release");
    r
}

/// A random, 2 MiB-aligned address between 1 TiB and 64 TiB with a PROT_NONE anchor
/// page mapped at it, as wildx's placement makes a window; returns the first slot.
fn placed_region_base() -> usize {
    let mut r = [0u8; 8];
    // SAFETY: getrandom writes at most 8 bytes into `r`.
    assert_eq!(unsafe { libc::getrandom(r.as_mut_ptr().cast(), 8, 0) }, 8);
    let base = (1usize << 40) + ((u64::from_ne_bytes(r) as usize % (((1 << 46) - (1 << 40)) >> 21)) << 21);
    common::libc_map_at(base, libc::PROT_NONE); // the anchor, never unmapped
    base + 4096
}

/// `common::floor_cycle(true)` with the page mapped at `*cursor` (MAP_FIXED_NOREPLACE),
/// then the cursor moved on one page, as wildx's placement does.
fn placed_floor_cycle(cursor: &mut usize) -> i32 {
    let p = common::libc_map_at(*cursor, libc::PROT_READ | libc::PROT_WRITE);
    *cursor += 4096;
    if *cursor & ((2 << 20) - 1) == 0 {
        *cursor -= (2 << 20) - 4096; // wrap to the window's first slot
    }
    // SAFETY: a fresh R|W page of our own.
    unsafe { common::floor_cycle_on(p, true) }
}

/// A ring of one-page holes between `PROT_NONE` fences, as wildx's placement makes for
/// single pages: a random 2 MiB window whose even pages are fences; returns its base.
fn holed_region_base() -> usize {
    let base = placed_region_base() - 4096;
    for fence in (2..512).step_by(2) {
        common::libc_map_at(base + fence * 4096, libc::PROT_NONE); // never unmapped
    }
    base
}

/// `common::floor_cycle(true)` with the page mapped into the next hole of the ring at
/// `base` (`*next` counts the holes used), as wildx's placement does for single pages.
fn holed_floor_cycle(base: usize, next: &mut usize) -> i32 {
    let hole = base + (2 * (*next % 255) + 1) * 4096;
    *next += 1;
    let p = common::libc_map_at(hole, libc::PROT_READ | libc::PROT_WRITE);
    // SAFETY: a fresh R|W page of our own.
    unsafe { common::floor_cycle_on(p, true) }
}

fn page_cycle(c: &mut Criterion) {
    let mut g = c.benchmark_group("page_cycle");
    g.bench_function("floor_libc", |b| b.iter(|| common::floor_cycle(false)));
    g.bench_function("floor_libc_int3_fill", |b| b.iter(|| common::floor_cycle(true)));
    // The floor again with wildx's placement done by hand: each page at the next
    // address of a cursor in a region with a random base, MAP_FIXED_NOREPLACE. Its ratio
    // to floor_libc_int3_fill is what randomized placement costs the kernel.
    let mut cursor = placed_region_base();
    g.bench_function("floor_libc_int3_fill_placed", |b| b.iter(|| placed_floor_cycle(&mut cursor)));
    // And into a ring of one-page holes, as wildx places single pages.
    let (ring, mut next) = (holed_region_base(), 0);
    g.bench_function("floor_libc_int3_fill_holed", |b| b.iter(|| holed_floor_cycle(ring, &mut next)));
    g.bench_function("wildx_raw", |b| b.iter(common::wildx_raw_cycle));
    g.bench_function("wildx_typed", |b| b.iter(wildx_typed));
    g.bench_function("wildx_jit_compile_add_i32", |b| b.iter(wildx_jit));
    g.bench_function("region", |b| b.iter(region_cycle));
    g.bench_function("memmap2", |b| b.iter(memmap2_cycle));
    g.bench_function("dynasmrt", |b| b.iter(dynasmrt_cycle));
    // The allocator is built once, as a JIT would: it maps a pooled block on first use
    // and then sub-allocates from it, with no syscall per function.
    let mut jit = jit_allocator::JitAllocator::new(jit_allocator::JitAllocatorOptions::default());
    g.bench_function("jit_allocator", |b| b.iter(|| jit_allocator_cycle(&mut jit)));
    g.finish();
}

fn seal_by_size(c: &mut Criterion) {
    let mut g = c.benchmark_group("seal");
    for size in [64usize, 4096, 65536] {
        let mapped = size.next_multiple_of(4096);
        g.bench_with_input(BenchmarkId::new("wildx_raw", size), &size, |b, &size| {
            b.iter_custom(|iters| {
                common::time_each(
                    iters,
                    || {
                        let p = wildx::raw::alloc(size);
                        assert!(!p.is_null());
                        p
                    },
                    |&p| assert_eq!(wildx::raw::seal(p), 0),
                    |p| assert_eq!(wildx::raw::free(p), 0),
                )
            })
        });
        g.bench_with_input(BenchmarkId::new("floor_libc_mprotect", size), &size, |b, _| {
            b.iter_custom(|iters| {
                common::time_each(
                    iters,
                    || {
                        let p = common::libc_map(mapped);
                        // SAFETY: a fresh R|W mapping of `mapped` bytes; touching it all
                        // populates it as wildx's int3 fill does.
                        unsafe { p.write_bytes(0xCC, mapped) };
                        p
                    },
                    // SAFETY: our own mapping, no references into it.
                    |&p| unsafe { common::libc_seal(p, mapped) },
                    // SAFETY: our own mapping, not used again.
                    |p| unsafe { common::libc_unmap(p, mapped) },
                )
            })
        });
        let bytes = vec![0xCCu8; size];
        g.bench_with_input(BenchmarkId::new("fnv1a64", size), &size, |b, _| {
            b.iter(|| wildx::fnv1a64(black_box(&bytes)))
        });
    }
    g.finish();
}

/// The page cycle interleaved (see [`common::paired`]): many short samples of each
/// variant in rotating order, reported as the median of same-round ratios to the floor.
/// Criterion's separate runs of each variant drift by +-10% on a shared machine, more than
/// the few percent compared here; a ratio taken within one round cancels that drift.
/// `n` of wildx's raw page cycles, nothing else: what callgrind counts (see the module
/// docs).
#[inline(never)]
fn cycle_loop(n: u64) {
    for _ in 0..n {
        assert_eq!(common::wildx_raw_cycle(), 42);
    }
}

fn paired_ratios(_: &mut Criterion) {
    if let Ok(n) = std::env::var("WILDX_PAGE_CYCLE_LOOP") {
        cycle_loop(n.parse().expect("WILDX_PAGE_CYCLE_LOOP is a number of cycles"));
        std::process::exit(0);
    }
    let mut cursor = placed_region_base();
    let (ring, mut next) = (holed_region_base(), 0);
    let t = common::paired(
        "page_cycle_paired",
        1,
        401,
        40,
        &mut [
            ("floor_libc", &mut || assert_eq!(common::floor_cycle(false), 42)),
            ("floor_libc_int3_fill", &mut || assert_eq!(common::floor_cycle(true), 42)),
            ("wildx_raw", &mut || assert_eq!(common::wildx_raw_cycle(), 42)),
            ("wildx_typed", &mut || assert_eq!(wildx_typed(), 42)),
            ("floor_libc_int3_fill_personality", &mut || {
                // The floor with the READ_IMPLIES_EXEC check an earlier wildx made before
                // each writable mapping (`personality(0xffffffff)` only reads it): what that
                // syscall cost, before wildx mapped writable memory without PROT_READ.
                // SAFETY: querying the personality changes nothing.
                assert!(unsafe { libc::personality(0xffff_ffff) } >= 0);
                assert_eq!(common::floor_cycle(true), 42)
            }),
            // The floor with the fill, each page placed as wildx places it (a cursor in a
            // 2 MiB window with an anchor, MAP_FIXED_NOREPLACE): the same kernel work as
            // wildx's cycle. The plain floor's page lands wherever the kernel puts it,
            // next to whatever mapping is there; when that is an anonymous R|W mapping the
            // kernel merges the page into it and splits it off again at the mprotect,
            // which makes the plain floor a few percent dearer or cheaper depending on
            // its neighbour. This one has no such neighbour.
            ("floor_libc_int3_fill_placed", &mut || assert_eq!(placed_floor_cycle(&mut cursor), 42)),
            // The floor with the fill, each page mapped into the next one-page hole of a
            // ring between PROT_NONE fences, as wildx places single pages: the same
            // kernel work as wildx's cycle, cheaper than the plain floor's (see
            // `src/placement.rs`). wildx over this is its bookkeeping alone.
            ("floor_libc_int3_fill_holed", &mut || assert_eq!(holed_floor_cycle(ring, &mut next), 42)),
        ],
    );
    let ratio = |a: usize, b: usize| common::median(t[a].iter().zip(&t[b]).map(|(x, y)| x / y).collect());
    println!(
        "page_cycle_paired: wildx_raw / floor_libc = {:.3} (goal <= 1.03); wildx_raw / floor_libc_int3_fill = {:.3}; \
         wildx_raw / floor_libc_int3_fill_personality = {:.3}; wildx_typed / floor_libc = {:.3}; \
         floor_libc_int3_fill_personality / floor_libc = {:.3}",
        ratio(2, 0),
        ratio(2, 1),
        ratio(2, 4),
        ratio(3, 0),
        ratio(4, 0),
    );
    println!(
        "page_cycle_paired: wildx_raw / floor_libc_int3_fill_placed = {:.3} (the same syscalls at the same kind of \
         address); floor_libc_int3_fill_placed / floor_libc = {:.3}",
        ratio(2, 5),
        ratio(5, 0),
    );
    println!(
        "page_cycle_paired: wildx_raw / floor_libc_int3_fill_holed = {:.3} (the same syscalls into the same kind of \
         hole: wildx's bookkeeping); floor_libc_int3_fill_holed / floor_libc = {:.3}",
        ratio(2, 6),
        ratio(6, 0),
    );
}

criterion_group!(name = benches; config = common::config(); targets = paired_ratios, page_cycle, seal_by_size);
criterion_main!(benches);
