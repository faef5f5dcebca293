//! What the profilers cost: sealing (and dropping) 1000 named pages with profiling off,
//! with the perf map on, and with the perf map and the jitdump on, in one run.
//!
//! Enabling is one-way for the process, so the groups run in that order inside one
//! benchmark function. Each iteration seals 1000 pages with `Page::seal_named` and
//! drops them; "off" is the floor the others are compared with. The jitdump is written
//! into a temporary directory (the bench changes its current directory there).
//!
//! When the arena (issue 14) publishes through `profiling::code_published`, this bench
//! should gain "publish 1000 functions in one batch" beside these.
//!
//! Run: `cargo bench --bench profiling`.
//!
//! `unsafe` is allowed here to seal pages holding known code (`ret`).

#![allow(unsafe_code)]
// `criterion_group!` generates a public function that cannot carry a doc comment.
#![allow(missing_docs)]

mod common;

use criterion::{Criterion, criterion_group, criterion_main};
use wildx::Page;

const FUNCTIONS: usize = 1000;
type Nullary = extern "sysv64" fn() -> ();

fn seal_1000() {
    let mut pages = Vec::with_capacity(FUNCTIONS);
    for i in 0..FUNCTIONS {
        let page = Page::with_code(&[0xc3]).expect("map a page");
        let name = if i % 2 == 0 { "bench_even" } else { "bench_odd" };
        // SAFETY: the page holds `ret`, a function of type `fn()`.
        pages.push(unsafe { page.seal_named::<Nullary>(name) }.expect("seal"));
    }
    drop(pages);
}

/// 1000 named functions of 6 bytes pushed into one arena, published in one batch, and
/// dropped: one perf map line (one `write`) and one jitdump record per function, one gdb
/// object for the batch.
fn publish_1000() {
    let arena = wildx::Arena::new(FUNCTIONS * 16 + 4096).expect("Arena::new");
    for i in 0..FUNCTIONS {
        let name = if i % 2 == 0 { "bench_even" } else { "bench_odd" };
        arena.push_named(name, &[0xb8, 42, 0, 0, 0, 0xc3]).expect("push_named");
    }
    arena.publish().expect("publish");
}

fn both(c: &mut Criterion, group: &str) {
    let mut g = c.benchmark_group(group);
    g.sample_size(20);
    g.bench_function("seal_1000_named_pages", |b| b.iter(seal_1000));
    g.bench_function("publish_1000_named_arena_functions", |b| b.iter(publish_1000));
    g.finish();
}

fn profiling(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("wildx-bench-profiling-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::env::set_current_dir(&dir).expect("cd temp dir");
    // Enabling is one-way, so every "off" figure comes first.
    both(c, "profiling_off");
    wildx::profiling::enable_perf_map().expect("enable the perf map");
    both(c, "perf_map_on");
    wildx::profiling::enable_jitdump().expect("enable the jitdump");
    both(c, "perf_map_and_jitdump_on");
    let _ = std::fs::remove_file(format!("/tmp/perf-{}.map", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = profiling
}
criterion_main!(benches);
