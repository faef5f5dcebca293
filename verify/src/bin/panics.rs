//! The panic handler, freestanding: a deliberate panic must write one line naming the
//! file and line of the panic, then exit with 101. Nothing unwinds (`panic = "abort"`
//! and the handler in `rt` ends the process itself).
//!
//! Exit codes: 101 the expected panic, 70 the panic did not happen.

#![no_std]
#![no_main]

#[path = "../rt.rs"]
mod rt;

fn run() -> i32 {
    // Opaque to the optimiser, so that the panic stays a run-time event.
    if core::hint::black_box(true) {
        panic!("deliberate");
    }
    rt::fail(70, "panics: the deliberate panic did not happen\n")
}
