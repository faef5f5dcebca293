//! The arena JIT, run as a test: every function it compiles is called and compared with
//! an interpreter, the tampered function must be caught, and everything must be unmapped
//! at the end (it panics otherwise).
//!
//! Its own test binary with this one test, so the stats it reads move only with it.

#[path = "../jit.rs"]
mod jit;

#[test]
fn the_arena_jit_runs_every_step() {
    jit::main().expect("every wildx step succeeds");
    let s = wildx::stats();
    assert_eq!((s.arenas, s.arena_functions, s.live_bytes), (0, 0, 0), "everything went back");
}
