//! The smoke test, freestanding: `compile_add_i32`, call it with 7 and
//! 35, free it. Exits 0 only if the sum is 42 and the free returned 0.
//!
//! Exit codes: 10 compile_add_i32 returned null, 11 the sum was not 42, 12 free did not
//! return 0, 101 a panic. Each failure also writes one line to stderr.
//!
//! `unsafe` is needed for the one call into the sealed page (and by `rt`).

#![no_std]
#![no_main]
#![allow(unsafe_code)]

#[path = "../rt.rs"]
mod rt;

fn run() -> i32 {
    let f = wildx::jit::compile_add_i32();
    if f.is_null() {
        rt::fail(10, "smoke: compile_add_i32 returned null\n");
    }
    // SAFETY: `f` is a live add page from compile_add_i32, freed only below.
    let sum = unsafe { wildx::jit::call_i32_i32(f, 7, 35) };
    if sum != 42 {
        rt::fail(11, "smoke: add(7, 35) did not return 42\n");
    }
    if wildx::jit::free(f) != 0 {
        rt::fail(12, "smoke: free of the add page did not return 0\n");
    }
    0
}
