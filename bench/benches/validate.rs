//! The validator's speed on real compiler output (the gcc -O2 / rustc -O fixture),
//! beside FNV-1a over the same bytes (what seal already costs per byte), and on
//! mid-size code (the fixture back to back).
//! `cargo bench --features validate --bench validate`; criterion reports bytes/s.

#![allow(missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

type U2 = extern "sysv64" fn(u64, u64) -> u64;

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

criterion_group!(benches, bench);
criterion_main!(benches);
