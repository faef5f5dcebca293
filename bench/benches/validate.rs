//! The validator's speed on real compiler output (the gcc -O2 / rustc -O fixture),
//! beside FNV-1a over the same bytes (what seal already costs per byte), and on
//! mid-size code (the fixture back to back).
//! `cargo bench --features validate --bench validate`; criterion reports bytes/s.
//!
//! A steadier figure outside criterion: with `WILDX_VALIDATE_STEADY=MODE` (one of
//! `structural`, `function_u64_u64`, `function_own_signature`, `fnv1a64`), the binary
//! instead runs the best of 50 rounds of 400 passes over the fixture and prints ns per
//! byte (wall-clock; preemption drops out of the best round). With
//! `WILDX_VALIDATE_ROUNDS=1` and run under
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*steady_passes*'`,
//! the instructions counted are exactly the 400 passes' (divide by 400 × 557 bytes).
//! `WILDX_VALIDATE_ONLY=K` restricts the steady loop to the fixture's K-th function (in
//! the order of `own_signatures`); `WILDX_VALIDATE_EACH=1` prints, after the steady
//! figure for own signatures, each function's best time per check alone (the fixed
//! cost of a check shows in the shortest).

#![allow(missing_docs)]

use criterion::{Criterion, Throughput, criterion_group};
use std::hint::black_box;

type U2 = extern "sysv64" fn(u64, u64) -> u64;
type Check = fn(&[u8]) -> bool;

fn ok<F: wildx::validate::ValidSignature>(code: &[u8]) -> bool {
    wildx::validate::function::<F>(code).is_ok()
}

/// Each fixture function with the signature it implements (as in tests/validate.rs):
/// what `compile` checks on its way to accepting it.
fn own_signatures() -> Vec<(Vec<u8>, Check)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/validate");
    let read = |name: &str| std::fs::read(format!("{dir}/{name}.bin")).unwrap();
    type I = i64;
    let list: [(&str, Check); 20] = [
        ("add_i32.gcc", ok::<extern "sysv64" fn(i32, i32) -> i32>),
        ("mul_add.gcc", ok::<extern "sysv64" fn(I, I, I) -> I>),
        ("udiv.gcc", ok::<U2>),
        ("sdiv.gcc", ok::<extern "sysv64" fn(I, I) -> I>),
        ("sum_to.gcc", ok::<extern "sysv64" fn(u64) -> u64>),
        ("collatz.gcc", ok::<extern "sysv64" fn(u64) -> u32>),
        ("clamp.gcc", ok::<extern "sysv64" fn(i32, i32, i32) -> i32>),
        ("max6.gcc", ok::<extern "sysv64" fn(I, I, I, I, I, I) -> I>),
        ("lerp.gcc", ok::<extern "sysv64" fn(f64, f64, f64) -> f64>),
        ("mixf.gcc", ok::<extern "sysv64" fn(f32, f32, i32) -> f32>),
        ("poly.gcc", ok::<extern "sysv64" fn(f64, I) -> f64>),
        ("f64_to_i64.gcc", ok::<extern "sysv64" fn(f64) -> I>),
        ("popcount_loop.gcc", ok::<extern "sysv64" fn(u64) -> u64>),
        ("r_add_i32.rustc", ok::<extern "sysv64" fn(i32, i32) -> i32>),
        ("r_gcd.rustc", ok::<U2>),
        ("r_sum_sq.rustc", ok::<extern "sysv64" fn(u32) -> u64>),
        ("r_select.rustc", ok::<extern "sysv64" fn(I, I, I) -> I>),
        ("r_hypot2.rustc", ok::<extern "sysv64" fn(f64, f64) -> f64>),
        ("r_scale.rustc", ok::<extern "sysv64" fn(f32, i32) -> f32>),
        ("r_mix.rustc", ok::<extern "sysv64" fn(u64, u64, u64, u64) -> u64>),
    ];
    list.iter().map(|&(name, check)| (read(name), check)).collect()
}

fn fixture() -> Vec<Vec<u8>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/validate");
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    out.sort();
    out
}

fn bench(c: &mut Criterion) {
    let funcs = fixture();
    let bytes: u64 = funcs.iter().map(|f| f.len() as u64).sum();
    let mut g = c.benchmark_group("validate_fixture");
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("structural", |b| {
        b.iter(|| {
            for f in &funcs {
                let _ = black_box(wildx::validate::structural(black_box(f)));
            }
        })
    });
    g.bench_function("function_u64_u64", |b| {
        b.iter(|| {
            for f in &funcs {
                let _ = black_box(wildx::validate::function::<U2>(black_box(f)));
            }
        })
    });
    // The same bytes, each under its own signature: every check accepts, so the data-flow
    // pass runs over every function (under `u64, u64` most are rejected early).
    let own = own_signatures();
    assert_eq!(own.iter().map(|(f, _)| f.len() as u64).sum::<u64>(), bytes);
    assert!(own.iter().all(|(f, check)| check(f)));
    g.bench_function("function_own_signature", |b| {
        b.iter(|| {
            for (f, check) in &own {
                black_box(check(black_box(f)));
            }
        })
    });
    g.bench_function("fnv1a64", |b| {
        b.iter(|| {
            for f in &funcs {
                black_box(wildx::fnv1a64(black_box(f)));
            }
        })
    });
    g.finish();

    // Mid-size code: the fixture's functions back to back, four times (2228 bytes; the
    // structural rules accept it, each function after the first being unreachable code
    // that is still decoded, so this measures mostly the sweep). Past the stack scratch:
    // the kept mapping's path.
    let all: Vec<u8> = (0..4).flat_map(|_| funcs.iter().flatten().copied()).collect();
    assert_eq!(wildx::validate::structural(&all), Ok(()));
    let mut g = c.benchmark_group("validate_midsize");
    g.throughput(Throughput::Bytes(all.len() as u64));
    g.bench_function("structural", |b| b.iter(|| black_box(wildx::validate::structural(black_box(&all)))));
    g.bench_function("fnv1a64", |b| b.iter(|| black_box(wildx::fnv1a64(black_box(&all)))));
    g.finish();
}

/// `passes` passes of `check` over the fixture (not inlined, so callgrind can count it alone).
#[inline(never)]
fn steady_passes(passes: usize, funcs: &[(Vec<u8>, Check)]) {
    for _ in 0..passes {
        for (f, check) in funcs {
            black_box(check(black_box(f)));
        }
    }
}

/// The steady loop (see the crate docs); prints `MODE: x ns/byte over N bytes`.
fn steady(mode: &str) {
    let own = own_signatures();
    let fnv: Check = |f| wildx::fnv1a64(f) != 1;
    let list: Vec<(Vec<u8>, Check)> = match mode {
        "structural" => {
            own.into_iter().map(|(f, _)| (f, (|f: &[u8]| wildx::validate::structural(f).is_ok()) as Check)).collect()
        }
        "function_u64_u64" => own.into_iter().map(|(f, _)| (f, ok::<U2> as Check)).collect(),
        "function_own_signature" => own,
        "fnv1a64" => own.into_iter().map(|(f, _)| (f, fnv)).collect(),
        _ => panic!("unknown WILDX_VALIDATE_STEADY mode {mode}"),
    };
    let list: Vec<(Vec<u8>, Check)> =
        match std::env::var("WILDX_VALIDATE_ONLY").ok().and_then(|k| k.parse::<usize>().ok()) {
            Some(k) => vec![list.get(k).expect("WILDX_VALIDATE_ONLY: the fixture has 20 functions, 0..=19").clone()],
            None => list,
        };
    let bytes: usize = list.iter().map(|(f, _)| f.len()).sum();
    let rounds: usize = std::env::var("WILDX_VALIDATE_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(50);
    let best = best_pass_ns(&list, rounds) / bytes as f64;
    println!("{mode}: {best:.2} ns/byte over {bytes} bytes (best of {rounds} rounds of {PASSES} passes)");
}

/// Passes over the list per timed round.
const PASSES: usize = 400;

/// The best time of one pass over `list`, in ns, over `rounds` rounds of [`PASSES`]
/// passes each (wall-clock; preemption drops out of the best round).
fn best_pass_ns(list: &[(Vec<u8>, Check)], rounds: usize) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..rounds {
        let t = std::time::Instant::now();
        steady_passes(PASSES, list);
        best = best.min(t.elapsed().as_nanos() as f64 / PASSES as f64);
    }
    best
}

criterion_group!(benches, bench);

fn main() {
    if std::env::var("WILDX_VALIDATE_EACH").is_ok() {
        steady("function_own_signature");
        for (k, one) in own_signatures().into_iter().enumerate() {
            let len = one.0.len();
            let best = best_pass_ns(&[one], 200);
            println!("{k:2} {len:4} bytes {best:7.1} ns {:5.2} ns/byte", best / len as f64);
        }
        return;
    }
    if let Ok(mode) = std::env::var("WILDX_VALIDATE_STEADY") {
        steady(&mode);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
