//! A JIT that perf can profile: seals three named spinning functions, enables the perf
//! map (default) or the jitdump (`jitdump` argument), and runs them with different
//! weights, so `perf report` shows each by name with its share of the time.
//!
//! ```text
//! perf record -e cpu-clock -- cargo run --release --example perf_jit
//! perf report --stdio --sort sym
//!
//! perf record -k mono -e cpu-clock -o perf.data -- target/release/examples/perf_jit jitdump
//! perf inject --jit -i perf.data -o perf.jit.data
//! perf report -i perf.jit.data --stdio --sort sym
//! ```
//!
//! `unsafe` is needed to seal the code: its signature is a promise the bytes keep.

#![allow(unsafe_code)]

use wildx::Page;

/// `mov rax, rdi; 1: dec rax; jnz 1b; ret`: spins `n` times (`n > 0`), returns 0.
const SPIN: [u8; 9] = [0x48, 0x89, 0xf8, 0x48, 0xff, 0xc8, 0x75, 0xfb, 0xc3];

type Spin = extern "sysv64" fn(u64) -> u64;

fn main() -> Result<(), wildx::Error> {
    if std::env::args().nth(1).as_deref() == Some("jitdump") {
        wildx::profiling::enable_jitdump()?;
    } else {
        wildx::profiling::enable_perf_map()?;
    }
    let mut functions = Vec::new();
    for (name, weight) in [("jit_hot_loop", 6), ("jit_warm_loop", 3), ("jit_cold_loop", 1)] {
        let page = Page::with_code(&SPIN)?;
        // SAFETY: SPIN is a `fn(u64) -> u64` for any non-zero argument; we pass > 0.
        functions.push((unsafe { page.seal_named::<Spin>(name) }?, weight));
    }
    for _ in 0..10 {
        for (f, weight) in &functions {
            assert_eq!(f.call((weight * 30_000_000,)), 0);
        }
    }
    println!("ran {} named JIT functions", functions.len());
    Ok(())
}
