//! Fuzz target: the fuzzer's bytes, decoded by `Op::decode` into a sequence of wildx
//! operations (allocs of edge sizes, installs, writes, seals, calls, verifies, tampering
//! through /proc/self/mem, frees, foreign/interior/stale pointers, typed handle
//! hand-offs, quota changes), each run against wildx and the reference model in
//! `tests/common/model.rs`, the same harness `cargo test --test model` uses. Any
//! difference in a return code, error, state, hash, stat or `/proc/self/maps` check
//! panics with a description of it.
//!
//! Run with `cargo +nightly fuzz run ops` from the repository root (see the README).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/common/mod.rs"]
mod common;
#[path = "../../tests/common/model.rs"]
mod model;

fuzz_target!(|data: &[u8]| {
    // `/proc/self/maps` after every 8th operation, as in the test suite.
    let mut harness = model::Harness::new(8);
    let mut bytes = model::Bytes::new(data);
    while let Some(op) = model::Op::decode(&mut bytes) {
        if let Err(e) = harness.apply(op) {
            panic!("operation {} ({op:?}): {e}", harness.ops);
        }
    }
    let ops = harness.ops;
    if let Err(e) = harness.finish() {
        panic!("after {ops} operations: {e}");
    }
});
