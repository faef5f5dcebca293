//! The cost of a call into sealed code: a direct call through a function pointer vs the
//! runtime call paths (`wildx::jit::call_i32_i32`, `Code::call`), the explicit verify
//! query by size, and, with `verify-on-call`, the verified call on a 64-byte and a
//! 4096-byte allocation against an unverified call into the same page.
//!
//! Run: `cargo bench -p wildx-bench --bench call` (feature off: the runtime paths should cost what the
//! direct call costs) and `cargo bench -p wildx-bench --bench call --features verify-on-call`.
//!
//! `unsafe` is allowed here to call sealed code through function pointers and through
//! `wildx::jit::call_i32_i32`, whose contract (a live add page) each bench keeps.

#![allow(unsafe_code)]
// `criterion_group!` generates a public function that cannot carry a doc comment.
#![allow(missing_docs)]

mod common;

use std::hint::black_box;

#[cfg(feature = "verify-on-call")]
use common::AddFn;
use common::{ADD, to_fn};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

/// A sealed raw page of `len` requested bytes starting with ADD (the rest int3).
fn sealed_add_page(len: usize) -> *mut u8 {
    let p = wildx::raw::alloc(len);
    assert!(!p.is_null());
    // SAFETY: `p` starts a live WRITABLE page of `len >= 5` requested bytes.
    unsafe { p.copy_from_nonoverlapping(ADD.as_ptr(), ADD.len()) };
    assert_eq!(wildx::raw::seal(p), 0);
    p
}

/// The name says which build this is, so feature-on and feature-off results do not
/// overwrite each other in `target/criterion`.
const CALL_GROUP: &str = if cfg!(feature = "verify-on-call") { "call_verify_on" } else { "call" };

fn call(c: &mut Criterion) {
    let p = sealed_add_page(wildx::jit::ADD_PAGE_LEN);
    let code = wildx::jit::compile_add().expect("compile_add");
    let mut g = c.benchmark_group(CALL_GROUP);
    // SAFETY: `p` is sealed add code, freed only after this group.
    let f = unsafe { to_fn(p) };
    g.bench_function("direct_fn_ptr", |b| b.iter(|| f(black_box(7), black_box(35))));
    g.bench_function("jit_call_i32_i32", |b| {
        // SAFETY: as above.
        b.iter(|| unsafe { wildx::jit::call_i32_i32(p, black_box(7), black_box(35)) })
    });
    g.bench_function("typed_code_call", |b| b.iter(|| code.call((black_box(7), black_box(35)))));
    // Control: a direct call into the typed handle's page, to tell a cost of the typed
    // path from a cost of where that page landed.
    // SAFETY: `code` is live sealed add code for the whole group.
    let g_fn = unsafe { to_fn(code.as_ptr()) };
    g.bench_function("direct_fn_ptr_to_typed_page", |b| b.iter(|| g_fn(black_box(7), black_box(35))));
    g.finish();
    assert_eq!(wildx::raw::free(p), 0);
}

fn verify(c: &mut Criterion) {
    let mut g = c.benchmark_group("verify_query");
    for len in [64usize, 4096] {
        let p = sealed_add_page(len);
        g.bench_with_input(BenchmarkId::new("raw_verify", len), &p, |b, &p| {
            b.iter(|| assert_eq!(wildx::raw::verify(black_box(p)), 0))
        });
        assert_eq!(wildx::raw::free(p), 0);
    }
    g.finish();
}

#[cfg(feature = "verify-on-call")]
fn verified_call(c: &mut Criterion) {
    let mut g = c.benchmark_group("verified_call");
    for len in [64usize, 4096] {
        let p = sealed_add_page(len);
        // SAFETY: `p` is sealed add code, freed only after these benches.
        let f = unsafe { to_fn(p) };
        g.bench_with_input(BenchmarkId::new("unverified_fn_ptr", len), &len, |b, _| {
            b.iter(|| f(black_box(7), black_box(35)))
        });
        g.bench_with_input(BenchmarkId::new("verified_jit_call_i32_i32", len), &len, |b, _| {
            // SAFETY: as above.
            b.iter(|| unsafe { wildx::jit::call_i32_i32(p, black_box(7), black_box(35)) })
        });
        let code: wildx::Code<AddFn> = {
            let mut page = wildx::Page::new(len).expect("Page::new");
            wildx::jit::install_add(&mut page).expect("install_add");
            // SAFETY: the page starts with ADD, which implements AddFn; the rest is int3.
            unsafe { page.seal::<AddFn>() }.expect("seal")
        };
        g.bench_with_input(BenchmarkId::new("verified_typed_code_call", len), &len, |b, _| {
            b.iter(|| code.call((black_box(7), black_box(35))))
        });
        assert_eq!(wildx::raw::free(p), 0);
    }
    g.finish();
}

#[cfg(feature = "verify-on-call")]
criterion_group!(name = benches; config = common::config(); targets = call, verify, verified_call);
#[cfg(not(feature = "verify-on-call"))]
criterion_group!(name = benches; config = common::config(); targets = call, verify);
criterion_main!(benches);
