//! The tour, run as a test: every step checks what it prints (the compiled function's
//! results, verify passing on the sealed bytes, verify reporting `IntegrityMismatch`
//! after the tamper, nothing left mapped) and returns an error otherwise.
//!
//! Its own test binary with this one test, so the stats it reads move only with it.

#[path = "../tour.rs"]
#[allow(dead_code)]
mod tour;

#[test]
fn the_tour_runs_every_step() {
    if let Err(message) = tour::tour() {
        panic!("{message}");
    }
}
