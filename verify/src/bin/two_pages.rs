//! "Two pages, one process", freestanding: two add pages compiled,
//! called with 20 + 22 and 17 + 25, freed in reverse order. Also checks that the pages
//! are independent: distinct, and the first still sealed, intact and callable after the
//! second is freed.
//!
//! Exit codes: 20/21 the first/second compile_add_i32 returned null, 22 both returned
//! the same page, 23/24 the first/second call did not return 42, 25/26 the second/first
//! free did not return 0, 27 the first page was not intact and callable after the
//! second was freed, 28 a freed page is still registered, 101 a panic. Each failure
//! also writes one line to stderr.
//!
//! `unsafe` is needed for the calls into the sealed pages (and by `rt`).

#![no_std]
#![no_main]
#![allow(unsafe_code)]

#[path = "../rt.rs"]
mod rt;

use wildx::State;
use wildx::jit::{call_i32_i32, compile_add_i32, free};

fn run() -> i32 {
    let f1 = compile_add_i32();
    if f1.is_null() {
        rt::fail(20, "two_pages: first compile_add_i32 returned null\n");
    }
    let f2 = compile_add_i32();
    if f2.is_null() {
        rt::fail(21, "two_pages: second compile_add_i32 returned null\n");
    }
    if f1 == f2 {
        rt::fail(22, "two_pages: both compiles returned the same page\n");
    }
    // SAFETY: f1 and f2 are live add pages from compile_add_i32, freed only below.
    let (r1, r2) = unsafe { (call_i32_i32(f1, 20, 22), call_i32_i32(f2, 17, 25)) };
    if r1 != 42 {
        rt::fail(23, "two_pages: add(20, 22) on the first page did not return 42\n");
    }
    if r2 != 42 {
        rt::fail(24, "two_pages: add(17, 25) on the second page did not return 42\n");
    }
    if free(f2) != 0 {
        rt::fail(25, "two_pages: free of the second page did not return 0\n");
    }
    // The first page is untouched by the second's free.
    if wildx::raw::state(f1) != Some(State::Executable)
        || wildx::raw::verify(f1) != 0
        // SAFETY: f1 is still live (only f2 was freed).
        || unsafe { call_i32_i32(f1, -1, 43) } != 42
    {
        rt::fail(27, "two_pages: the first page was not intact and callable after the second was freed\n");
    }
    if free(f1) != 0 {
        rt::fail(26, "two_pages: free of the first page did not return 0\n");
    }
    if wildx::raw::state(f1).is_some() || wildx::raw::state(f2).is_some() || wildx::stats().live_pages != 0 {
        rt::fail(28, "two_pages: a freed page is still registered\n");
    }
    0
}
