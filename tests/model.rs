//! Model-based random testing of the whole contract.
//!
//! - `random_operations_match_the_model`: proptest generates sequences of operations
//!   (allocs of edge sizes, installs, writes, seals, calls, verifies, tampering, frees,
//!   double seals and frees, foreign/interior/freed pointers, typed handle hand-offs,
//!   quota changes) and `common/model.rs` runs each against wildx and the reference
//!   model, comparing return codes, errors, states, hashes and stats after every
//!   operation, and `/proc/self/maps` (no W+X, every live page's protection, anonymous
//!   executable bytes = sealed pages, freed ranges unmapped) after every 8th. At least a
//!   million operations per run; a failure shrinks to a minimal sequence and prints the
//!   seed to replay it.
//!
//!   About a third of the operations are on code arenas, interleaved with the page
//!   operations so that both share the quota: `Arena::new` (capacities of 0, 1 byte,
//!   whole pages, pages less 100 bytes, 1-4 MiB, 1 GiB (more than the default quota,
//!   which counts only accessible bytes), a reservation too large for the address space,
//!   rounding overflow, `usize::MAX`); `push` and `push_with` of generated functions
//!   (`mov rax, imm64; ret` padded to the length, so every call's result is known;
//!   `push_with`'s return their own address, checking the address `emit` is handed)
//!   of 0, 1, 11, 40 and up to 512 bytes, straddling a page boundary, a page and one,
//!   three pages, 64-256 KiB, exactly the rest of the reservation, one byte past it,
//!   and over the length limit; `import`; `publish`; `entry` + `call` +
//!   `Entry::verify`; entries held across operations and dropped later; `verify`;
//!   `verify_all`; tampering with one published byte (of a function, a slot, padding or
//!   the rest of a page) through `/proc/self/mem`; `retire` (twice, unpublished, with
//!   entries alive); dropping the arena (with entries held: they are dropped first, as
//!   the borrow checker requires); the raw surface on arena addresses (function starts,
//!   interior bytes, import slots, the reservation's first, next, last and one-past-end
//!   bytes: `wildx::inspect`, `raw::state`, `raw::verify`, `Arena::id_at`, and
//!   `raw::free` / `raw::seal`, which must refuse and count a refusal); ids of other
//!   live or dropped arenas. The model places records exactly (16-byte functions,
//!   8-byte slots, a fresh page after each publish) and commits exactly: as much again
//!   as is committed (at least a page, at most 64), capped by the reservation, or only
//!   what the push needs when the quota has no room for more. After every operation the
//!   stats (`arenas`, `arena_functions`, `arena_bytes`, `live_bytes`, `peak_bytes`)
//!   and `next_addr` must match, and with each maps check every arena page must have
//!   the protection the model gives it (published R|X, committed but unpublished R|W,
//!   released and never committed `---p`), every arena function's `inspect` must match,
//!   anonymous executable bytes must be the sealed pages plus the published arena pages,
//!   and a dropped arena's whole reservation must be unmapped. The run prints how many
//!   arena operations of each kind succeeded, were refused (as the model predicted) or
//!   found nothing to act on.
//! - `decoded_byte_sequences_match_the_model`: the fuzz target's byte decoding (arena
//!   operations included), on random bytes, through the same harness.
//!
//! Environment: `PROPTEST_RNG_SEED` replays a seed (every test prints its own);
//! `WILDX_MODEL_CASES` (default 2400 cases of up to 900 operations),
//! `WILDX_MODEL_MAPS_EVERY` (default 8), `WILDX_DECODE_CASES` (48) and
//! `WILDX_MT_CASES` (2) make a run longer or shorter.
//! - `threads_hand_pages_off`: threads pass pages through a shared pool with atomic
//!   ownership hand-off while a monitor thread watches `/proc/self/maps` for W+X; every
//!   outcome must be one the contract allows, and the stats must balance at the end.
//! - `threads_race_on_shared_pages`: threads race seal/free/install/verify on the same
//!   pages; each page is freed exactly once and the counts add up.
//! - `registry_footprint_returns_to_baseline` (in a child process): the registry's own
//!   mappings and the anonymous executable mappings, read from `/proc/self/maps`, are
//!   back to their baseline after every page is freed; prints the footprint.
//!
//! The registry is process-wide, so every test here holds `LOCK` (this file is its own
//! test binary: nothing else allocates wildx pages in this process).
//!
//! `unsafe` is needed for what the threads do with pages they own: write through the
//! pointer, call sealed add code, take pages into typed handles, and map placeholders
//! over freed addresses with `libc::mmap` to prove a stale free touches nothing.
//!
//! Known limits of the arena model: `Error::Os` and `Error::RegistryStorage` never
//! happen here (the kernel does not refuse), so their "nothing changes" paths are
//! not covered here; a `push_with` closure
//! that panics is tested in `tests/arena.rs`; `verify_all` skips a retired function
//! that straddles a released page, as the library does, so its bytes on a page still
//! mapped are not compared; threads on arenas are in `tests/arena.rs`.

#![allow(unsafe_code)]

mod common;
#[path = "common/model.rs"]
mod model;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex, PoisonError};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, RngSeed, TestCaseError, TestError, TestRunner};
use wildx::jit::{ADD_I32, AddI32};
use wildx::{Code, Error, Page, State};

use common::{Maps, Perms, RawMaps};
use model::{ArenaAddr, Cap, FnSize, Harness, Offset, Op, PAGE, Quota, Size, Target};

/// Serialises the tests of this binary: they all count on the registry's stats.
static LOCK: Mutex<()> = Mutex::new(());

/// Cases per run of the single-threaded model, and the longest sequence in one.
/// 2400 cases of 1..=900 operations: about 1.08 million operations (the test asserts at least 1M).
const CASES: u32 = 2400;
const MAX_OPS: usize = 900;
/// The test fails unless at least this many operations ran (with the default counts).
const MIN_OPS: u64 = 1_000_000;
/// `/proc/self/maps` is read (and every live page's registry entry compared) after every
/// `MAPS_EVERY`-th operation; the operation's own page and the stats after every one.
const MAPS_EVERY: u64 = 8;

// ---------------------------------------------------------------------------------------
// Strategies. Earlier alternatives are simpler: proptest shrinks towards them.
// ---------------------------------------------------------------------------------------

fn size() -> impl Strategy<Value = Size> {
    prop_oneof![
        4 => Just(Size::One),
        3 => Just(Size::Five),
        2 => Just(Size::Page),
        2 => Just(Size::PageMinusOne),
        2 => Just(Size::PagePlusOne),
        1 => Just(Size::Four),
        1 => Just(Size::Zero),
        6 => any::<u16>().prop_map(Size::Small),
        1 => any::<u8>().prop_map(Size::Large),
        1 => Just(Size::Huge),
        1 => Just(Size::LargestRoundable),
        1 => Just(Size::FirstOverflow),
        1 => Just(Size::Max),
    ]
}

fn offset() -> impl Strategy<Value = Offset> {
    prop_oneof![
        Just(Offset::One),
        Just(Offset::Five),
        Just(Offset::LastOfPage),
        Just(Offset::NextPage),
        Just(Offset::TwoPages),
    ]
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        14 => (0u8..6).prop_map(Target::Recent),
        2 => any::<u8>().prop_map(Target::Recent),
        3 => (0u8..6, offset()).prop_map(|(n, o)| Target::Interior(n, o)),
        1 => Just(Target::Null),
        1 => Just(Target::Stack),
        1 => Just(Target::Heap),
        1 => Just(Target::Static),
        1 => Just(Target::ForeignMap),
        1 => Just(Target::Kernel),
    ]
}

fn quota() -> impl Strategy<Value = Quota> {
    prop_oneof![
        3 => Just(Quota::Default),
        2 => (0u8..=64).prop_map(Quota::Pages),
        1 => Just(Quota::Live),
        2 => (0u8..4).prop_map(Quota::LivePlus),
    ]
}

/// Arena strategies are plain numbers mapped to choices, low values to the simple ones
/// (proptest shrinks numbers towards 0): a `prop_oneof!` union makes a fresh RNG for
/// each of its alternatives every time it generates a value, which for the arena
/// operations' nested choices cost more than running them.
fn cap(k: u8, n: u8) -> Cap {
    match k {
        0..=109 => Cap::Pages(n),
        110..=139 => Cap::PagesLess(n),
        140..=154 => Cap::Tiny,
        155..=209 => Cap::Large(n),
        210..=224 => Cap::Huge,
        225..=234 => Cap::Zero,
        235..=244 => Cap::LargestRoundable,
        245..=249 => Cap::FirstOverflow,
        _ => Cap::Max,
    }
}

/// One byte picks the size (low values are the simple ones, so shrinking goes there),
/// two more give it its parameter. A union of twelve would cost a fresh RNG per
/// alternative for every push proptest generates.
fn fn_size() -> impl Strategy<Value = FnSize> {
    (any::<u8>(), any::<u16>()).prop_map(|(k, n)| match k {
        0..=89 => FnSize::Forty,
        90..=109 => FnSize::One,
        110..=129 => FnSize::Eleven,
        130..=179 => FnSize::Small(n),
        180..=204 => FnSize::Straddle,
        205..=214 => FnSize::PagePlusOne,
        215..=228 => FnSize::ThreePages,
        229..=232 => FnSize::Large(n as u8),
        233..=238 => FnSize::Rest,
        239..=244 => FnSize::PastCapacity,
        245..=250 => FnSize::Zero,
        _ => FnSize::TooLong,
    })
}

fn arena_addr(k: u8, f: u8, n: u8) -> ArenaAddr {
    match k {
        0..=109 => ArenaAddr::Fn(f),
        110..=149 => ArenaAddr::Interior(f, n),
        150..=189 => ArenaAddr::Import(n % 4),
        190..=205 => ArenaAddr::Base,
        206..=221 => ArenaAddr::Next,
        222..=237 => ArenaAddr::Last,
        _ => ArenaAddr::End,
    }
}

/// An arena operation: one byte picks which (weights in the ranges), the others are its
/// arguments. Mostly on the newest arena and its newest functions, sometimes further
/// back.
fn arena_op() -> impl Strategy<Value = Op> {
    let arena = any::<u8>().prop_map(|n| match n {
        0..=149 => 0,
        150..=229 => n % 4,
        _ => n,
    });
    let f = any::<u8>().prop_map(|n| match n {
        0..=149 => n % 4,
        150..=219 => n % 16,
        _ => n,
    });
    let args = (any::<u8>(), any::<u8>(), any::<u64>(), any::<u32>());
    (0u8..50, arena, f, fn_size(), args).prop_map(|(which, arena, f, size, (k, n, value, offset))| match which {
        0..=13 => Op::ArenaPush { arena, size, value, with: k >= 192 },
        14..=19 => Op::ArenaPublish(arena),
        20..=27 => Op::ArenaCall { arena, f },
        28..=29 => Op::ArenaNew(cap(k, n)),
        30..=31 => Op::ArenaImport { arena, target: value },
        32..=35 => Op::ArenaRetire { arena, f },
        36..=38 => Op::ArenaVerify { arena, f },
        39..=40 => Op::ArenaHold { arena, f },
        41 => Op::ArenaRelease(n),
        42 => Op::ArenaVerifyAll(arena),
        43..=44 => Op::ArenaTamper { arena, f: (k < 128).then_some(f), offset, byte: n },
        45..=46 => Op::ArenaRaw { arena, at: arena_addr(k, f, n) },
        47 => Op::ArenaDrop(arena),
        _ => Op::ArenaForeign { arena, f },
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        14 => size().prop_map(Op::Alloc),
        5 => size().prop_map(Op::AllocTyped),
        4 => Just(Op::CompileAdd),
        2 => Just(Op::CompileAddTyped),
        7 => target().prop_map(Op::Install),
        8 => (target(), any::<u16>(), any::<u8>(), any::<u8>())
            .prop_map(|(target, offset, len, byte)| Op::Write { target, offset, len, byte }),
        10 => target().prop_map(Op::Seal),
        3 => target().prop_map(Op::SealTyped),
        8 => (target(), any::<i32>(), any::<i32>()).prop_map(|(target, a, b)| Op::Call { target, a, b }),
        7 => target().prop_map(Op::Verify),
        2 => (target(), any::<u16>(), any::<u8>()).prop_map(|(target, offset, byte)| Op::Tamper { target, offset, byte }),
        12 => target().prop_map(Op::Free),
        3 => target().prop_map(Op::FromRawPage),
        3 => target().prop_map(Op::FromRawCode),
        3 => target().prop_map(Op::IntoRaw),
        3 => target().prop_map(Op::DropHandle),
        2 => quota().prop_map(Op::SetQuota),
        40 => arena_op(),
    ]
}

/// `PROPTEST_RNG_SEED` if set (to replay a failure), else a fresh random seed.
fn seed() -> u64 {
    if let Some(seed) = std::env::var("PROPTEST_RNG_SEED").ok().and_then(|s| s.parse().ok()) {
        return seed;
    }
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom writes at most 8 bytes into `bytes`.
    assert_eq!(unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), 8, 0) }, 8, "getrandom");
    u64::from_le_bytes(bytes)
}

fn env_u32(name: &str) -> Option<u32> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

#[test]
fn random_operations_match_the_model() {
    let _serial = lock();
    random_operations(env_u32("WILDX_MODEL_CASES").unwrap_or(CASES));
}

/// The same in memfd mode (the fallback where anonymous memory may not be executable),
/// in a process of its own: every page and arena is a view of wildx's memfd, shared
/// (`rw-s`, `r-xs`), with the same states, protections and accounting.
#[cfg(feature = "memfd")]
#[test]
fn random_operations_match_the_model_in_memfd_mode() {
    common::run_in_child("random_operations_match_the_model_in_memfd_mode", || {
        assert_eq!(wildx::use_memfd(), Ok(wildx::ExecMode::Memfd));
        model::MEMFD_MODE.store(true, Ordering::Relaxed);
        random_operations(env_u32("WILDX_MODEL_CASES").map_or(CASES / 8, |c| c / 8));
    });
}

fn random_operations(cases: u32) {
    let seed = seed();
    let config = Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        // ChaCha costs more than the operations themselves in a debug build.
        rng_algorithm: RngAlgorithm::XorShift,
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..Config::default()
    };
    let maps_every = std::env::var("WILDX_MODEL_MAPS_EVERY").ok().and_then(|s| s.parse().ok()).unwrap_or(MAPS_EVERY);
    let ops = AtomicU64::new(0);
    let maps_checks = AtomicU64::new(0);
    let tally = Mutex::new(BTreeMap::new());
    let mut runner = TestRunner::new(config);
    let started = std::time::Instant::now();
    let result = runner.run(&vec(op(), 1..=MAX_OPS), |seq| {
        let (outcome, n, checks, t) = run_sequence(&seq, maps_every);
        ops.fetch_add(n, Ordering::Relaxed);
        maps_checks.fetch_add(checks, Ordering::Relaxed);
        let mut total = tally.lock().unwrap_or_else(PoisonError::into_inner);
        for (k, v) in t {
            *total.entry(k).or_insert(0u64) += v;
        }
        outcome.map_err(TestCaseError::fail)
    });
    let (ops, maps_checks) = (ops.into_inner(), maps_checks.into_inner());
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, seq)) => {
            let minimal = delete_until_minimal(seq, maps_every);
            let again = run_sequence(&minimal, maps_every).0.err().unwrap_or_default();
            panic!(
                "{reason}\nminimal failing sequence ({} operations): {minimal:#?}\nwhich fails with: {again}\n\
                 model seed {seed}: replay with PROPTEST_RNG_SEED={seed} cargo test --test model",
                minimal.len()
            );
        }
        Err(e) => panic!("{e}\nmodel seed {seed}"),
    }
    println!(
        "model: {cases} cases, {ops} operations, {maps_checks} /proc/self/maps checks, seed {seed}, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let tally = tally.into_inner().unwrap_or_else(PoisonError::into_inner);
    let arena_ops: u64 = tally.values().sum();
    let lines: Vec<String> = tally.iter().map(|((name, outcome), n)| format!("{name} {outcome}: {n}")).collect();
    println!("model: {arena_ops} arena operations: {}", lines.join(", "));
    if cases >= CASES {
        assert!(ops >= MIN_OPS, "only {ops} operations ran; raise CASES or MAX_OPS");
    } else if cases >= CASES / 8 {
        assert!(ops >= MIN_OPS / 8, "only {ops} operations ran; raise CASES or MAX_OPS");
    }
}

/// Runs `seq` through a fresh harness: the first difference from the model, the
/// operations applied and the `/proc/self/maps` checks made.
fn run_sequence(seq: &[Op], maps_every: u64) -> (Result<(), String>, u64, u64, model::Tally) {
    let mut harness = Harness::new(maps_every);
    let mut outcome = Ok(());
    for (i, &op) in seq.iter().enumerate() {
        if let Err(e) = harness.apply(op) {
            outcome = Err(format!("operation {i}: {e}"));
            break;
        }
    }
    let (ops, checks) = (harness.ops, harness.maps_checks);
    let tally = std::mem::take(&mut harness.tally);
    if outcome.is_ok() {
        outcome = harness.finish().map(drop);
    }
    (outcome, ops, checks, tally)
}

/// `op` with its target (if it has one) changed by `f`.
fn map_target(op: Op, f: impl Fn(Target) -> Target) -> Op {
    match op {
        Op::Install(t) => Op::Install(f(t)),
        Op::Write { target, offset, len, byte } => Op::Write { target: f(target), offset, len, byte },
        Op::Seal(t) => Op::Seal(f(t)),
        Op::SealTyped(t) => Op::SealTyped(f(t)),
        Op::Call { target, a, b } => Op::Call { target: f(target), a, b },
        Op::Verify(t) => Op::Verify(f(t)),
        Op::Tamper { target, offset, byte } => Op::Tamper { target: f(target), offset, byte },
        Op::Free(t) => Op::Free(f(t)),
        Op::FromRawPage(t) => Op::FromRawPage(f(t)),
        Op::FromRawCode(t) => Op::FromRawCode(f(t)),
        Op::IntoRaw(t) => Op::IntoRaw(f(t)),
        Op::DropHandle(t) => Op::DropHandle(f(t)),
        _ => op,
    }
}

/// A target counting back `n(k)` pages instead of `k`.
fn count_back(t: Target, n: impl Fn(u8) -> u8) -> Target {
    match t {
        Target::Recent(k) => Target::Recent(n(k)),
        Target::Interior(k, o) => Target::Interior(n(k), o),
        other => other,
    }
}

/// proptest deletes each element once, before it simplifies the others; operations that
/// only became irrelevant later stay. This removes single operations for as long as the
/// sequence still fails, each time also trying the later targets one page less far back.
fn delete_until_minimal(mut seq: Vec<Op>, maps_every: u64) -> Vec<Op> {
    let mut budget = 20_000;
    let mut i = 0;
    while i < seq.len() && budget > 0 {
        budget -= 1;
        let mut without = seq.clone();
        without.remove(i);
        // Deleting an allocation shifts what later operations' targets count back to.
        let mut shifted = without.clone();
        shifted[i..].iter_mut().for_each(|op| *op = map_target(*op, |t| count_back(t, |k| k.saturating_sub(1))));
        match [without, shifted].into_iter().find(|c| !c.is_empty() && run_sequence(c, maps_every).0.is_err()) {
            Some(shorter) => {
                seq = shorter;
                i = 0;
            }
            None => i += 1,
        }
    }
    // Then the simplest target that still fails: the newest page.
    for i in 0..seq.len() {
        let mut newest = seq.clone();
        newest[i] = map_target(newest[i], |t| count_back(t, |_| 0));
        if newest != seq && run_sequence(&newest, maps_every).0.is_err() {
            seq = newest;
        }
    }
    seq
}

/// The fuzz target's path in CI: random bytes decoded into operations with `Op::decode`,
/// exactly as `fuzz/fuzz_targets/ops.rs` does, through the same harness.
#[test]
fn decoded_byte_sequences_match_the_model() {
    let _serial = lock();
    let seed = seed();
    let config = Config {
        cases: env_u32("WILDX_DECODE_CASES").unwrap_or(48),
        rng_seed: RngSeed::Fixed(seed),
        rng_algorithm: RngAlgorithm::XorShift,
        failure_persistence: None,
        ..Config::default()
    };
    let ops = AtomicU64::new(0);
    let result = TestRunner::new(config).run(&vec(any::<u8>(), 0..4096), |data| {
        let mut harness = Harness::new(MAPS_EVERY);
        let mut bytes = model::Bytes::new(&data);
        while let Some(op) = Op::decode(&mut bytes) {
            ops.fetch_add(1, Ordering::Relaxed);
            harness.apply(op).map_err(TestCaseError::fail)?;
        }
        harness.finish().map_err(TestCaseError::fail)?;
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}\nreplay with PROPTEST_RNG_SEED={seed} cargo test --test model decoded_byte_sequences");
    }
    println!("decoded: {} operations from random bytes, seed {seed}", ops.into_inner());
}

// ---------------------------------------------------------------------------------------
// Threads
// ---------------------------------------------------------------------------------------

const THREADS: usize = 4;
const THREAD_OPS: usize = 40_000;
const POOL: usize = 32;
const MAX_OWNED: usize = 6;
/// The quota during the hand-off test: less than the threads can hold at once, so some
/// allocations are refused under contention.
const MT_QUOTA: usize = 64 * PAGE;

/// Pool entries are `start | tag`: pages are 4096-aligned, so the low bits are free.
const SEALED: usize = 1;
const ADD: usize = 2;

/// A page a thread owns: nobody else touches it until it is published again.
#[derive(Clone, Copy, Debug)]
struct Owned {
    ptr: usize,
    len: usize,
    tag: usize,
}

impl Owned {
    fn p(self) -> *mut u8 {
        self.ptr as *mut u8
    }
    fn mapped(self) -> usize {
        self.len.div_ceil(PAGE) * PAGE
    }
}

/// What one thread saw the library count.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    allocs: u64,
    seals: u64,
    frees: u64,
    refusals: u64,
    ops: u64,
    stale_checks: u64,
}

impl Tally {
    fn add(&mut self, o: Tally) {
        self.allocs += o.allocs;
        self.seals += o.seals;
        self.frees += o.frees;
        self.refusals += o.refusals;
        self.ops += o.ops;
        self.stale_checks += o.stale_checks;
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

/// After freeing `o`, maps a placeholder exactly over its old range (if no one else has
/// taken the address yet) and checks that a second free and a seal of the stale pointer
/// are refused without touching the placeholder.
fn stale_pointer_touches_nothing(o: Owned, tally: &mut Tally) -> Result<(), String> {
    let len = o.mapped();
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping: it either maps
    // exactly at the freed address (which then belongs to this thread) or fails.
    let ph = unsafe {
        libc::mmap(
            o.p().cast(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    if ph == libc::MAP_FAILED {
        return Ok(()); // someone else already holds (part of) the range
    }
    if ph as usize != o.ptr {
        // A kernel without MAP_FIXED_NOREPLACE put it elsewhere: give it back.
        // SAFETY: `ph` is the mapping just made, `len` bytes, used by nothing.
        unsafe { libc::munmap(ph, len) };
        return Ok(());
    }
    // SAFETY: the placeholder is ours: `len` bytes of fresh R|W memory at `ph`.
    unsafe { ph.cast::<u8>().write_bytes(0x77, len) };
    let (free, seal, state, verify) =
        (wildx::raw::free(o.p()), wildx::raw::seal(o.p()), wildx::raw::state(o.p()), wildx::raw::verify(o.p()));
    tally.refusals += 2;
    tally.stale_checks += 1;
    // SAFETY: still our placeholder (wildx must not have unmapped or protected it).
    let intact = unsafe { std::slice::from_raw_parts(ph.cast::<u8>(), len) }.iter().all(|&b| b == 0x77);
    // SAFETY: the placeholder made above.
    unsafe { libc::munmap(ph, len) };
    ensure!(
        free == -1 && seal == -1 && state.is_none() && verify == -1,
        "stale {o:?}: {free} {seal} {state:?} {verify}"
    );
    ensure!(intact, "stale free/seal of {o:?} changed the mapping now at that address");
    Ok(())
}

/// One thread of the hand-off test.
fn hand_off_worker(id: usize, seed: u64, pool: &[AtomicUsize]) -> Result<Tally, String> {
    let mut rng = Rng(seed ^ (id as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut owned: Vec<Owned> = Vec::with_capacity(MAX_OWNED + 1);
    let mut t = Tally::default();
    for _ in 0..THREAD_OPS {
        t.ops += 1;
        let pick = if owned.is_empty() { None } else { Some(rng.below(owned.len())) };
        match rng.below(100) {
            0..=14 if owned.len() < MAX_OWNED => {
                const SIZES: [usize; 9] = [0, 1, 5, 64, 4095, 4096, 4097, 3 * PAGE, usize::MAX];
                let len = SIZES[rng.below(SIZES.len())];
                match Page::new(len) {
                    Ok(page) => {
                        t.allocs += 1;
                        ensure!(page.len() == len && page.as_slice().iter().all(|&b| b == 0xCC), "fresh page");
                        owned.push(Owned { ptr: page.into_raw().as_ptr() as usize, len, tag: 0 });
                    }
                    Err(e) => {
                        t.refusals += 1;
                        let mapped = model::pages_for(len);
                        let allowed = match e {
                            Error::ZeroLength => len == 0,
                            Error::LengthOverflow => len == usize::MAX,
                            Error::QuotaExceeded { requested, live, quota } => {
                                Some(requested) == mapped
                                    && quota == MT_QUOTA
                                    && live <= quota
                                    && live + requested > quota
                            }
                            _ => false,
                        };
                        ensure!(allowed, "Page::new({len}) refused with {e:?}");
                    }
                }
            }
            15..=29 => {
                // Write: the add code at the start, or a byte pattern anywhere.
                let Some(i) = pick.filter(|&i| owned[i].tag & SEALED == 0) else { continue };
                let o = &mut owned[i];
                if o.len >= ADD_I32.len() && rng.below(2) == 0 {
                    ensure!(wildx::jit::install_add_i32(o.p()) == 0, "install on owned {o:?}");
                    o.tag |= ADD;
                } else {
                    let off = rng.below(o.len);
                    let n = (o.len - off).min(16);
                    // SAFETY: this thread owns the WRITABLE page (taken from the pool
                    // or allocated, not published since); `off + n <= len`.
                    unsafe { o.p().add(off).write_bytes(rng.next() as u8, n) };
                    if off < ADD_I32.len() {
                        o.tag &= !ADD;
                    }
                }
            }
            30..=39 => {
                let Some(i) = pick else { continue };
                let o = &mut owned[i];
                let got = wildx::raw::seal(o.p());
                if o.tag & SEALED == 0 {
                    ensure!(got == 0, "seal of owned writable {o:?}: {got}");
                    t.seals += 1;
                    o.tag |= SEALED;
                } else {
                    ensure!(got == -1, "second seal of {o:?}: {got}");
                    t.refusals += 1;
                }
                ensure!(wildx::raw::state(o.p()) == Some(State::Executable), "state after seal of {o:?}");
            }
            40..=49 => {
                let Some(i) = pick else { continue };
                let o = owned[i];
                let v = wildx::raw::verify(o.p());
                ensure!(v == if o.tag & SEALED != 0 { 0 } else { -1 }, "verify of owned {o:?}: {v}");
                if o.tag == SEALED | ADD {
                    let (a, b) = (rng.next() as i32, rng.next() as i32);
                    // SAFETY: this thread owns the page, sealed over intact add code.
                    let r = unsafe { wildx::jit::call_i32_i32(o.p(), a, b) };
                    ensure!(r == a.wrapping_add(b), "add({a}, {b}) = {r} on {o:?}");
                }
            }
            50..=61 => {
                let Some(i) = pick else { continue };
                let o = owned.swap_remove(i);
                ensure!(wildx::raw::free(o.p()) == 0, "free of owned {o:?}");
                t.frees += 1;
                if rng.below(4) == 0 {
                    stale_pointer_touches_nothing(o, &mut t)?;
                }
            }
            62..=73 => {
                // Publish: hand the page to whichever thread takes it next.
                let Some(i) = pick else { continue };
                let slot = &pool[rng.below(POOL)];
                let o = owned[i];
                // AcqRel: release our writes to the page (and its state) to the taker.
                if slot.compare_exchange(0, o.ptr | o.tag, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                    owned.swap_remove(i);
                }
            }
            74..=85 if owned.len() < MAX_OWNED => {
                // Take: the swap makes this thread the page's only owner.
                let v = pool[rng.below(POOL)].swap(0, Ordering::AcqRel);
                if v != 0 {
                    let (ptr, tag) = (v & !(PAGE - 1), v & (PAGE - 1));
                    let info = wildx::inspect(ptr as *const u8).ok_or_else(|| format!("taken {ptr:#x} not live"))?;
                    let state = if tag & SEALED != 0 { State::Executable } else { State::Writable };
                    ensure!(info.state == state && !info.held_by_handle, "taken {ptr:#x}: {info:?} tag {tag}");
                    owned.push(Owned { ptr, len: info.len, tag });
                }
            }
            86..=91 => {
                // Refusals that must touch nothing: interior pointers, wrong states, held pages.
                let Some(i) = pick else { continue };
                let o = owned[i];
                ensure!(wildx::raw::free(o.p().wrapping_add(1)) == -1, "interior free of {o:?}");
                ensure!(wildx::raw::seal(o.p().wrapping_add(PAGE - 1)) == -1, "interior seal of {o:?}");
                t.refusals += 2;
                if o.tag & SEALED != 0 {
                    ensure!(wildx::jit::install_add_i32(o.p()) == -1, "install into sealed {o:?}");
                    // SAFETY: refused (the page is sealed), so no handle is made.
                    let page = unsafe { Page::from_raw(o.p()) };
                    ensure!(
                        matches!(page, Err(Error::WrongState { found: State::Executable, .. })),
                        "Page::from_raw of sealed {o:?}: {page:?}"
                    );
                    t.refusals += 2;
                }
            }
            92..=96 => {
                // A typed round trip: while a handle holds the page, raw frees are refused.
                let Some(i) = pick else { continue };
                let o = owned[i];
                if o.tag & SEALED == 0 {
                    // SAFETY: this thread owns the page and writes it only through the
                    // handle while the handle lives.
                    let page = unsafe { Page::from_raw(o.p()) }.map_err(|e| format!("from_raw {o:?}: {e:?}"))?;
                    ensure!(wildx::raw::free(o.p()) == -1, "raw free of held {o:?}");
                    t.refusals += 1;
                    ensure!(page.into_raw().as_ptr() == o.p(), "into_raw of {o:?}");
                } else if o.tag & ADD != 0 {
                    // SAFETY: sealed, intact add code owned by this thread.
                    let code = unsafe { Code::<AddI32>::from_raw(o.p()) }.map_err(|e| format!("{o:?}: {e:?}"))?;
                    ensure!(code.call((2, 40)) == 42 && code.verify().is_ok(), "typed call of {o:?}");
                    ensure!(wildx::raw::seal(o.p()) == -1 && wildx::raw::free(o.p()) == -1, "held {o:?}");
                    t.refusals += 2;
                    ensure!(code.into_raw().as_ptr() == o.p(), "into_raw of {o:?}");
                }
            }
            _ => {
                // Peek at a page another thread may be freeing right now: verify and state
                // hold the registry lock while they look, so any answer is fine but a crash
                // is not. The quota is never passed.
                let v = pool[rng.below(POOL)].load(Ordering::Acquire) & !(PAGE - 1);
                if v != 0 {
                    let _ = wildx::raw::verify(v as *const u8);
                    let _ = wildx::raw::state(v as *const u8);
                }
                let s = wildx::stats();
                ensure!(s.live_bytes <= s.quota, "live {} over quota {}", s.live_bytes, s.quota);
            }
        }
    }
    for o in owned {
        ensure!(wildx::raw::free(o.p()) == 0, "final free of {o:?}");
        t.frees += 1;
    }
    Ok(t)
}

fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Reads `/proc/self/maps` until told to stop; fails on any W+X mapping.
fn wx_monitor(stop: &AtomicBool) -> Result<u64, String> {
    let mut reads = 0;
    while !stop.load(Ordering::Relaxed) {
        let maps = Maps::read();
        let wx = maps.writable_and_executable();
        ensure!(wx.is_empty(), "W^X violated while threads ran: {wx:#x?}");
        reads += 1;
    }
    Ok(reads)
}

fn hand_off_run(seed: u64) -> Result<(u64, u64), String> {
    wildx::set_quota(MT_QUOTA);
    let before = wildx::stats();
    let pool: Vec<AtomicUsize> = (0..POOL).map(|_| AtomicUsize::new(0)).collect();
    let stop = AtomicBool::new(false);
    let (results, reads) = std::thread::scope(|s| {
        let monitor = s.spawn(|| wx_monitor(&stop));
        let workers: Vec<_> = (0..THREADS)
            .map(|id| {
                s.spawn({
                    let pool = &pool;
                    move || hand_off_worker(id, seed, pool)
                })
            })
            .collect();
        // Joined without panicking, so the monitor is always told to stop.
        let results: Vec<_> = workers.into_iter().map(|w| w.join()).collect();
        stop.store(true, Ordering::Relaxed);
        (results, monitor.join())
    });
    let reads = reads.map_err(|_| "the maps monitor panicked".to_string())??;
    let mut total = Tally::default();
    for r in results {
        total.add(r.map_err(|p| format!("a worker panicked: {}", panic_message(&p)))??);
    }
    for slot in &pool {
        let v = slot.swap(0, Ordering::AcqRel) & !(PAGE - 1);
        if v != 0 {
            ensure!(wildx::raw::free(v as *mut u8) == 0, "drain free of {v:#x}");
            total.frees += 1;
        }
    }
    wildx::set_quota(wildx::DEFAULT_QUOTA);
    let after = wildx::stats();
    ensure!(
        after.allocs - before.allocs == total.allocs
            && after.seals - before.seals == total.seals
            && after.frees - before.frees == total.frees
            && after.refusals - before.refusals == total.refusals
            && total.allocs == total.frees
            && after.live_pages == before.live_pages
            && after.live_bytes == before.live_bytes,
        "stats do not balance: before {before:?}\nafter {after:?}\nthreads counted {total:?}"
    );
    let maps = Maps::read();
    ensure!(maps.anon_exec_bytes() == 0, "anonymous executable memory left: {}", maps.anon_exec_bytes());
    println!("hand-off: seed {seed}, {total:?}, {reads} concurrent maps reads");
    Ok((total.ops, total.stale_checks))
}

#[test]
fn threads_hand_pages_off() {
    let _serial = lock();
    let seed = seed();
    let config = Config {
        cases: env_u32("WILDX_MT_CASES").unwrap_or(2),
        rng_seed: RngSeed::Fixed(seed),
        // ChaCha costs more than the operations themselves in a debug build.
        rng_algorithm: RngAlgorithm::XorShift,
        failure_persistence: None,
        max_shrink_iters: 0,
        ..Config::default()
    };
    let result = TestRunner::new(config).run(&any::<u64>(), |s| hand_off_run(s).map(drop).map_err(TestCaseError::fail));
    if let Err(e) = result {
        panic!("{e}\nreplay with PROPTEST_RNG_SEED={seed} cargo test --test model threads_hand_pages_off");
    }
}

/// Pages the race test shares between all threads.
const RACE_PAGES: usize = 192;

#[test]
fn threads_race_on_shared_pages() {
    let _serial = lock();
    let seed = seed();
    for round in 0..3u64 {
        if let Err(e) = race_round(seed.wrapping_add(round)) {
            panic!("{e}\nseed {seed}, round {round}");
        }
    }
}

/// Per page, what the threads got.
#[derive(Default)]
struct PageOutcome {
    frees: AtomicU64,
    seals: AtomicU64,
    installs: AtomicU64,
    verified: AtomicU64,
    refusals: AtomicU64,
}

fn race_round(seed: u64) -> Result<(), String> {
    wildx::set_quota(wildx::DEFAULT_QUOTA);
    // Half sealed add pages, half writable: made before the race, so no thread maps
    // anything while others free (an address freed here cannot be handed out again
    // during the race, so a stale pointer can only be refused).
    let pages: Vec<(usize, bool)> = (0..RACE_PAGES)
        .map(|i| {
            let sealed = i % 2 == 0;
            let p = if sealed { wildx::jit::compile_add_i32() } else { wildx::raw::alloc(64) };
            assert!(!p.is_null());
            (p as usize, sealed)
        })
        .collect();
    let before = wildx::stats();
    let outcomes: Vec<PageOutcome> = (0..RACE_PAGES).map(|_| PageOutcome::default()).collect();
    let barrier = Barrier::new(THREADS);
    std::thread::scope(|s| {
        for id in 0..THREADS {
            let (pages, outcomes, barrier) = (&pages, &outcomes, &barrier);
            s.spawn(move || {
                let mut rng = Rng(seed ^ (id as u64 + 7).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
                let mut order: Vec<usize> = (0..RACE_PAGES).collect();
                for i in (1..order.len()).rev() {
                    order.swap(i, rng.below(i + 1));
                }
                barrier.wait();
                for &i in &order {
                    let (p, out) = (pages[i].0 as *mut u8, &outcomes[i]);
                    for _ in 0..4 {
                        match rng.below(4) {
                            0 => bump(&out.seals, &out.refusals, wildx::raw::seal(p)),
                            1 => bump(&out.frees, &out.refusals, wildx::raw::free(p)),
                            2 => bump(&out.installs, &out.refusals, wildx::jit::install_add_i32(p)),
                            _ => bump(&out.verified, &AtomicU64::new(0), wildx::raw::verify(p)),
                        }
                    }
                    // Everyone tries to free every page at least once.
                    bump(&out.frees, &out.refusals, wildx::raw::free(p));
                }
            });
        }
    });
    let after = wildx::stats();
    let (mut seals, mut refusals) = (0, 0);
    for (&(p, sealed), out) in pages.iter().zip(&outcomes) {
        let (f, s, i, v) = (
            out.frees.load(Ordering::Relaxed),
            out.seals.load(Ordering::Relaxed),
            out.installs.load(Ordering::Relaxed),
            out.verified.load(Ordering::Relaxed),
        );
        ensure!(f == 1, "page {p:#x} freed {f} times");
        ensure!(s <= 1 && (!sealed || s == 0), "page {p:#x} (sealed: {sealed}) sealed {s} times");
        ensure!(!sealed || i == 0, "sealed page {p:#x} written {i} times");
        ensure!(v == 0 || sealed || s == 1, "page {p:#x} verified {v} times, never sealed");
        seals += s;
        refusals += out.refusals.load(Ordering::Relaxed);
    }
    ensure!(
        after.frees - before.frees == RACE_PAGES as u64
            && after.seals - before.seals == seals
            && after.refusals - before.refusals == refusals
            && after.allocs == before.allocs
            && after.live_pages + RACE_PAGES == before.live_pages,
        "race stats: before {before:?}\nafter {after:?}\nseals {seals} refusals {refusals}"
    );
    let maps = Maps::read();
    maps.assert_no_wx();
    for &(p, _) in &pages {
        ensure!(maps.perms_of(p, PAGE) != Some(Perms::RX), "freed {p:#x} still executable");
    }
    ensure!(maps.anon_exec_bytes() == 0, "anonymous executable memory left after the race");
    Ok(())
}

fn bump(ok: &AtomicU64, refused: &AtomicU64, code: i32) {
    // Relaxed: plain counters, read after the threads are joined.
    match code {
        0 => ok.fetch_add(1, Ordering::Relaxed),
        _ => refused.fetch_add(1, Ordering::Relaxed),
    };
}

// ---------------------------------------------------------------------------------------
// Footprint
// ---------------------------------------------------------------------------------------

/// Pages per cycle in the footprint test.
const FOOTPRINT_PAGES: usize = 2000;

#[test]
fn registry_footprint_returns_to_baseline() {
    const NAME: &str = "registry_footprint_returns_to_baseline";
    let out = common::run_in_child(NAME, footprint_child);
    if let Some(out) = out {
        let stdout = String::from_utf8_lossy(&out.stdout);
        for line in stdout.lines().filter_map(|l| l.find("footprint:").map(|i| &l[i..])) {
            println!("{line}");
        }
    }
}

/// In a process of its own: two identical cycles of allocating (and sealing half of)
/// `FOOTPRINT_PAGES` pages and freeing them all, with allocation-free snapshots of
/// `/proc/self/maps` between the steps.
fn footprint_child() {
    let mut snaps: Vec<RawMaps> = (0..5).map(|_| RawMaps::with_capacity(1 << 20)).collect();
    let mut ptrs: Vec<*mut u8> = Vec::with_capacity(FOOTPRINT_PAGES);
    let mut levels = [(0usize, 0usize, 0usize); 8];
    let mut stats = [wildx::stats(); 5];
    snaps[0].snapshot();
    for cycle in 0..2 {
        let mut level = 0;
        for i in 0..FOOTPRINT_PAGES {
            let p = wildx::raw::alloc(64);
            assert!(!p.is_null());
            if i % 2 == 0 {
                assert_eq!(wildx::jit::install_add_i32(p), 0);
                assert_eq!(wildx::raw::seal(p), 0);
            }
            ptrs.push(p);
            if cycle == 0 && [1, 10, 100, 1000, FOOTPRINT_PAGES].contains(&(i + 1)) {
                let s = wildx::stats();
                levels[level] = (i + 1, s.registry_bytes, s.registry_capacity);
                level += 1;
            }
        }
        stats[1 + 2 * cycle] = wildx::stats();
        snaps[1 + 2 * cycle].snapshot();
        for p in ptrs.drain(..) {
            assert_eq!(wildx::raw::free(p), 0);
        }
        stats[2 + 2 * cycle] = wildx::stats();
        snaps[2 + 2 * cycle].snapshot();
    }
    // Everything below may allocate: the snapshots are taken.
    let maps: Vec<Maps> = snaps.iter().map(RawMaps::parse).collect();
    for m in &maps {
        m.assert_no_wx();
    }
    let sealed_bytes = FOOTPRINT_PAGES.div_ceil(2) * PAGE;
    let exec0 = maps[0].anon_exec_bytes();
    let rw = |i: usize| maps[i].anon_bytes(Perms::W) as isize;
    let growth = (stats[2].registry_bytes - stats[0].registry_bytes) as isize;
    assert_eq!(maps[1].anon_exec_bytes(), exec0 + sealed_bytes, "sealed pages in maps");
    assert_eq!(maps[3].anon_exec_bytes(), exec0 + sealed_bytes, "sealed pages in maps, second cycle");
    assert_eq!(maps[2].anon_exec_bytes(), exec0, "executable memory after freeing everything");
    // The only anonymous read-write memory left behind is the registry's grown table.
    assert_eq!(rw(2) - rw(0), growth, "anonymous R|W bytes after the first cycle vs registry growth");
    // A second cycle of the same size changes nothing at all: not one mapping.
    assert_eq!(stats[4].registry_bytes, stats[2].registry_bytes, "the registry grew on churn");
    // Except wildx's placement anchors: one inaccessible, memory-less page per 2 MiB
    // placement window, kept for the process's life (see src/placement.rs); a second
    // cycle draws new windows.
    let without_anchors = |text: &str| -> String {
        text.lines()
            .filter(|l| {
                let mut f = l.split_whitespace();
                let (range, perms) = (f.next().unwrap_or(""), f.next().unwrap_or(""));
                let anchor = range.split_once('-').is_some_and(|(a, b)| {
                    let (a, b) = (usize::from_str_radix(a, 16).unwrap_or(0), usize::from_str_radix(b, 16).unwrap_or(0));
                    b - a == PAGE && a % (2 << 20) == 0
                });
                !(perms == "---p" && anchor && l.split_whitespace().count() == 5)
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        without_anchors(snaps[4].text()),
        without_anchors(snaps[2].text()),
        "maps differ after an identical second cycle"
    );
    assert_eq!((stats[4].live_pages, stats[4].live_bytes), (stats[0].live_pages, stats[0].live_bytes));
    for &(n, bytes, cap) in levels.iter().filter(|l| l.0 > 0) {
        println!(
            "footprint: {n:>5} live pages -> registry table {bytes:>6} bytes mapped, capacity {cap:>5}, {:.1} bytes per live page",
            bytes as f64 / n as f64
        );
        assert!(bytes <= PAGE + 64 * n, "registry footprint {bytes} for {n} pages");
    }
    println!(
        "footprint: after freeing all {FOOTPRINT_PAGES}: registry keeps {} bytes (its high-water table), {} anonymous executable bytes beyond baseline, maps identical after a second cycle",
        stats[2].registry_bytes,
        maps[2].anon_exec_bytes() - exec0
    );
}
