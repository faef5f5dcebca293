//! Many small functions: 1000 functions of 40 bytes each, pushed, published, called once
//! each, and dropped, per batch, side by side in one run: a wildx [`wildx::Arena`], the
//! floor (one `mmap`, copy all, one `mprotect`, calls, `munmap` through `libc`),
//! `jit-allocator` fresh (one allocator per batch, created and dropped inside the timing
//! as an arena is) and warm (one allocator kept across batches), and `dynasmrt` (one
//! assembler, one commit). Criterion reports per-function throughput (1000 elements a
//! batch). Then one call of a 40-byte arena function, with and without its hash check.
//!
//! Run: `cargo bench --bench arena` (and with `--features verify-on-call`, where
//! `Entry::call` re-hashes first).
//!
//! `unsafe` is allowed here because every variant calls into JIT code through a function
//! pointer, and the floor and peers hand out raw pointers to write the code.

#![allow(unsafe_code)]
// `criterion_group!` generates a public function that cannot carry a doc comment.
#![allow(missing_docs)]

mod common;

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dynasmrt::DynasmApi;

const N: usize = 1000;
/// Functions land 16-byte aligned: 40 bytes take 48.
const STRIDE: usize = 48;

type Ret = extern "sysv64" fn() -> i32;

/// 40 bytes: `mov eax, imm32`, 34 one-byte nops, `ret`.
fn function(value: i32) -> [u8; 40] {
    let mut code = [0x90u8; 40];
    code[0] = 0xb8;
    code[1..5].copy_from_slice(&value.to_le_bytes());
    code[39] = 0xc3;
    code
}

/// # Safety
/// `p` must start live executable memory holding a [`function`].
unsafe fn call(p: *const u8) -> i32 {
    // SAFETY: forwarded; code and function pointers share their representation.
    let f = unsafe { std::mem::transmute::<*const u8, Ret>(p) };
    f()
}

fn wildx_arena(codes: &[[u8; 40]]) -> i64 {
    let arena = wildx::Arena::new(N * STRIDE + 4096).expect("Arena::new");
    let mut ids = [None; N];
    for (id, code) in ids.iter_mut().zip(codes) {
        *id = Some(arena.push(code).expect("push"));
    }
    arena.publish().expect("publish");
    let mut sum = 0i64;
    for id in ids.into_iter().flatten() {
        // SAFETY: every pushed function implements Ret.
        let entry = unsafe { arena.entry::<Ret>(id) }.expect("entry");
        sum += i64::from(entry.call(()));
    }
    sum
}

fn floor(codes: &[[u8; 40]]) -> i64 {
    let len = (N * STRIDE).next_multiple_of(4096);
    let p = common::libc_map(len);
    for (i, code) in codes.iter().enumerate() {
        // SAFETY: `p` is a fresh R|W mapping of `len` bytes, and i * STRIDE + 40 <= len.
        unsafe { p.add(i * STRIDE).copy_from_nonoverlapping(code.as_ptr(), code.len()) };
    }
    // SAFETY: our own mapping, no references into it.
    unsafe { common::libc_seal(p, len) };
    let mut sum = 0i64;
    for i in 0..N {
        // SAFETY: R|X, holds a function at each stride, mapped until the munmap below.
        sum += i64::from(unsafe { call(p.add(i * STRIDE)) });
    }
    // SAFETY: our own mapping, not used again.
    unsafe { common::libc_unmap(p, len) };
    sum
}

fn jit_allocator_batch(jit: &mut jit_allocator::JitAllocator, codes: &[[u8; 40]]) -> i64 {
    let mut spans = [std::ptr::null(); N];
    for (span, code) in spans.iter_mut().zip(codes) {
        let (rx, rw) = jit.alloc(code.len()).expect("JitAllocator::alloc");
        // SAFETY: `rw` is the writable view of a fresh span of 40 bytes.
        unsafe { rw.copy_from_nonoverlapping(code.as_ptr(), code.len()) };
        *span = rx;
    }
    let mut sum = 0i64;
    for &rx in &spans {
        // SAFETY: the executable view of a span holding a function, live until released.
        sum += i64::from(unsafe { call(rx) });
    }
    for rx in spans {
        // SAFETY: `rx` came from this allocator's `alloc` and is not used again.
        unsafe { jit.release(rx) }.expect("JitAllocator::release");
    }
    sum
}

fn dynasmrt_batch(codes: &[[u8; 40]]) -> i64 {
    let mut ops = dynasmrt::x64::Assembler::new().expect("Assembler::new");
    let mut offsets = [dynasmrt::AssemblyOffset(0); N];
    for (offset, code) in offsets.iter_mut().zip(codes) {
        while !ops.offset().0.is_multiple_of(16) {
            ops.extend([0xccu8]);
        }
        *offset = ops.offset();
        ops.extend(code.iter());
    }
    let buf = ops.finalize().expect("finalize");
    let mut sum = 0i64;
    for offset in offsets {
        // SAFETY: R|X, holds a function at each offset, mapped while `buf` lives.
        sum += i64::from(unsafe { call(buf.ptr(offset)) });
    }
    sum
}

fn thousand_functions(c: &mut Criterion) {
    let codes: Vec<[u8; 40]> = (0..N as i32).map(function).collect();
    let expected: i64 = (0..N as i64).sum();
    let mut g = c.benchmark_group("arena_1000_functions");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("floor_libc", |b| b.iter(|| assert_eq!(floor(black_box(&codes)), expected)));
    g.bench_function("wildx_arena", |b| b.iter(|| assert_eq!(wildx_arena(black_box(&codes)), expected)));
    g.bench_function("jit_allocator_fresh", |b| {
        b.iter(|| {
            let mut jit = jit_allocator::JitAllocator::new(jit_allocator::JitAllocatorOptions::default());
            assert_eq!(jit_allocator_batch(&mut jit, black_box(&codes)), expected);
        })
    });
    let mut warm = jit_allocator::JitAllocator::new(jit_allocator::JitAllocatorOptions::default());
    g.bench_function("jit_allocator_warm", |b| {
        b.iter(|| assert_eq!(jit_allocator_batch(&mut warm, black_box(&codes)), expected))
    });
    g.bench_function("dynasmrt", |b| b.iter(|| assert_eq!(dynasmrt_batch(black_box(&codes)), expected)));
    g.finish();

    let mut g = c.benchmark_group("fnv1a64_40_bytes");
    g.bench_function("hash", |b| b.iter(|| wildx::fnv1a64(black_box(&codes[7]))));
    g.finish();
}

fn one_call(c: &mut Criterion) {
    let arena = wildx::Arena::new(1 << 16).expect("Arena::new");
    let id = arena.push(&function(42)).expect("push");
    arena.publish().expect("publish");
    // SAFETY: the function implements Ret.
    let entry = unsafe { arena.entry::<Ret>(id) }.expect("entry");
    let raw = entry.as_ptr();
    let mut g = c.benchmark_group("arena_call_40_bytes");
    // The plain function pointer: what any JIT pays for a call.
    // SAFETY: the entry keeps the function published while it lives.
    g.bench_function("fn_pointer", |b| b.iter(|| unsafe { call(black_box(raw)) }));
    // Entry::call: with `--features verify-on-call` it re-hashes the 40 bytes first.
    g.bench_function("entry_call", |b| b.iter(|| black_box(&entry).call(())));
    // The check verify-on-call adds, made explicitly, then the call.
    g.bench_function("entry_verify_then_call", |b| {
        b.iter(|| {
            black_box(&entry).verify().expect("verify");
            black_box(&entry).call(())
        })
    });
    g.finish();
}

/// The same batches as [`thousand_functions`], interleaved (see [`common::paired`]):
/// median per-function times and median same-round ratios to the floor, which stay put
/// when the shared machine gets slower or faster between criterion's separate runs.
/// The last line checks the two goals: wildx at least 1.5x faster than fresh
/// jit-allocator, and at most the floor plus the hash plus 30 ns per function.
fn paired_ratios(_: &mut Criterion) {
    let codes: Vec<[u8; 40]> = (0..N as i32).map(function).collect();
    let expected: i64 = (0..N as i64).sum();
    let mut run_floor = || assert_eq!(floor(black_box(&codes)), expected);
    let mut run_wildx = || assert_eq!(wildx_arena(black_box(&codes)), expected);
    let mut run_fresh = || {
        let mut jit = jit_allocator::JitAllocator::new(jit_allocator::JitAllocatorOptions::default());
        assert_eq!(jit_allocator_batch(&mut jit, black_box(&codes)), expected);
    };
    // Where wildx's time goes: the same batch cut short. An empty arena made and dropped
    // (per-arena fixed costs, spread over 1000 functions); the pushes without a publish;
    // the pushes and the publish without entries and calls. `wildx_arena` minus the last
    // is what `entry`, the call and the entry's drop cost.
    let arena = || wildx::Arena::new(N * STRIDE + 4096).expect("Arena::new");
    let mut run_new_drop = || drop(black_box(arena()));
    let mut run_push_drop = || {
        let a = arena();
        for code in &codes {
            black_box(a.push(black_box(code)).expect("push"));
        }
    };
    let mut run_push_publish_drop = || {
        let a = arena();
        for code in &codes {
            black_box(a.push(black_box(code)).expect("push"));
        }
        a.publish().expect("publish");
    };
    let mut warm = jit_allocator::JitAllocator::new(jit_allocator::JitAllocatorOptions::default());
    let mut run_warm = || assert_eq!(jit_allocator_batch(&mut warm, black_box(&codes)), expected);
    let mut run_dynasmrt = || assert_eq!(dynasmrt_batch(black_box(&codes)), expected);
    let mut hash_all = || {
        for code in &codes {
            black_box(wildx::fnv1a64(black_box(code)));
        }
    };
    let t = common::paired(
        "arena_1000_functions_paired",
        N as u64,
        101,
        20,
        &mut [
            ("floor_libc", &mut run_floor),
            ("wildx_arena", &mut run_wildx),
            ("jit_allocator_fresh", &mut run_fresh),
            ("fnv1a64_each_40_bytes", &mut hash_all),
            ("jit_allocator_warm", &mut run_warm),
            ("dynasmrt", &mut run_dynasmrt),
            ("wildx_new_drop", &mut run_new_drop),
            ("wildx_push_all_drop", &mut run_push_drop),
            ("wildx_push_all_publish_drop", &mut run_push_publish_drop),
        ],
    );
    let speedup = common::median(t[2].iter().zip(&t[1]).map(|(fresh, w)| fresh / w).collect());
    let excess = common::median((0..t[0].len()).map(|r| t[1][r] - t[0][r] - t[3][r]).collect());
    println!(
        "arena_1000_functions_paired: fresh jit-allocator / wildx = {speedup:.2} (goal >= 1.5); \
         wildx - floor - hash = {excess:.1} ns per function (goal <= 30)"
    );
}

criterion_group!(name = benches; config = common::config(); targets = paired_ratios, thousand_functions, one_call);
criterion_main!(benches);
