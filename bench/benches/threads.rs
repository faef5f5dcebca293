//! Scaling from one thread to two. Each configuration runs `iters` operations on every
//! thread, started together behind a barrier, and is timed from the first thread's start
//! to the last thread's end; criterion's throughput (elements/s) is then operations per
//! second across all threads, and the 2-thread/1-thread ratio of it is the scaling.
//!
//! - `threads_page_cycle`: wildx's raw page cycle and the libc floor (the kernel's
//!   `mmap_lock` and TLB shootdowns bound both);
//! - `threads_call_direct`: plain calls into sealed code, the control that shows the
//!   machine really gave us two cores at the time;
//! - `threads_verify`: the explicit verify query on a 64-byte page (the registry read
//!   path the verify-on-call hook takes), available in every build;
//! - `threads_verified_call` (with `verify-on-call`): verified calls, 64 and 4096 bytes.
//!
//! Run: `cargo bench -p wildx-bench --bench threads` and `cargo bench -p wildx-bench --bench threads --features
//! verify-on-call`.
//!
//! `unsafe` is allowed here to write code through raw page pointers and call into it.

#![allow(unsafe_code)]
// `criterion_group!` generates a public function that cannot carry a doc comment.
#![allow(missing_docs)]

mod common;

use std::hint::black_box;

use common::{ADD, to_fn};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const THREADS: [usize; 2] = [1, 2];

fn sealed_add_page(len: usize) -> *mut u8 {
    let p = wildx::raw::alloc(len);
    assert!(!p.is_null());
    // SAFETY: `p` starts a live WRITABLE page of `len >= 5` requested bytes.
    unsafe { p.copy_from_nonoverlapping(ADD.as_ptr(), ADD.len()) };
    assert_eq!(wildx::raw::seal(p), 0);
    p
}

fn free_page(p: *mut u8) {
    assert_eq!(wildx::raw::free(p), 0);
}

fn wildx_raw_cycle() -> i32 {
    let p = sealed_add_page(64);
    // SAFETY: `p` is sealed add code, freed only after the call.
    let r = unsafe { wildx::jit::call_i32_i32(p, black_box(7), black_box(35)) };
    free_page(p);
    r
}

fn page_cycle(c: &mut Criterion) {
    let mut g = c.benchmark_group("threads_page_cycle");
    for t in THREADS {
        g.throughput(Throughput::Elements(t as u64));
        g.bench_with_input(BenchmarkId::new("wildx_raw", t), &t, |b, &t| {
            b.iter_custom(|iters| {
                common::parallel(
                    t,
                    iters,
                    || (),
                    |_, n| {
                        for _ in 0..n {
                            black_box(wildx_raw_cycle());
                        }
                    },
                    drop,
                )
            })
        });
        g.bench_with_input(BenchmarkId::new("floor_libc", t), &t, |b, &t| {
            b.iter_custom(|iters| {
                common::parallel(
                    t,
                    iters,
                    || (),
                    |_, n| {
                        for _ in 0..n {
                            black_box(common::floor_cycle(true));
                        }
                    },
                    drop,
                )
            })
        });
    }
    g.finish();
}

/// Every thread calls its own sealed page of `len` bytes `iters` times through `call`.
fn calls_on_threads(t: usize, iters: u64, len: usize, call: fn(*mut u8) -> i32) -> std::time::Duration {
    common::parallel(
        t,
        iters,
        || sealed_add_page(len),
        |&p, n| {
            for _ in 0..n {
                black_box(call(p));
            }
        },
        free_page,
    )
}

fn direct_call(p: *mut u8) -> i32 {
    // SAFETY: `p` is a live sealed add page (see `calls_on_threads`).
    let f = unsafe { to_fn(p) };
    f(black_box(7), black_box(35))
}

fn verify_query(p: *mut u8) -> i32 {
    wildx::raw::verify(black_box(p))
}

/// One benchmark per thread count, named `id`: each thread calls `f` on its own sealed
/// add page of `len` bytes.
fn per_thread_count(g: &mut BenchmarkGroup<'_, WallTime>, id: &str, len: usize, f: fn(*mut u8) -> i32) {
    for t in THREADS {
        g.throughput(Throughput::Elements(t as u64));
        g.bench_with_input(BenchmarkId::new(id, t), &t, |b, &t| {
            b.iter_custom(|iters| calls_on_threads(t, iters, len, f))
        });
    }
}

fn call_direct(c: &mut Criterion) {
    let mut g = c.benchmark_group("threads_call_direct");
    per_thread_count(&mut g, "fn_ptr_64", 64, direct_call);
    g.finish();
}

fn verify(c: &mut Criterion) {
    let mut g = c.benchmark_group("threads_verify");
    per_thread_count(&mut g, "raw_verify_64", 64, verify_query);
    g.finish();
}

#[cfg(feature = "verify-on-call")]
fn verified_call(c: &mut Criterion) {
    fn jit_call(p: *mut u8) -> i32 {
        // SAFETY: `p` is a live sealed add page (see `calls_on_threads`).
        unsafe { wildx::jit::call_i32_i32(p, black_box(7), black_box(35)) }
    }
    let mut g = c.benchmark_group("threads_verified_call");
    for len in [64usize, 4096] {
        per_thread_count(&mut g, &format!("jit_call_i32_i32_{len}"), len, jit_call);
    }
    g.finish();
}

#[cfg(feature = "verify-on-call")]
criterion_group!(
    name = benches;
    config = common::config();
    targets = page_cycle, call_direct, verify, verified_call
);
#[cfg(not(feature = "verify-on-call"))]
criterion_group!(name = benches; config = common::config(); targets = page_cycle, call_direct, verify);
criterion_main!(benches);
