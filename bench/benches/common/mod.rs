//! Helpers shared by the wildx benchmarks: the criterion settings, the add code, the
//! syscall floor issued through `libc`, and a barrier-started parallel runner.
//!
//! `unsafe` is allowed here because the floor calls `mmap`/`mprotect`/`munmap` through
//! `libc` and calls into the bytes it mapped through a function pointer.

#![allow(unsafe_code)]
// Each bench binary includes this module and uses a different part of it.
#![allow(dead_code)]

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::Criterion;

/// `mov eax, edi; add eax, esi; ret`.
pub const ADD: [u8; 5] = wildx::jit::ADD_I32;

/// The add code's signature.
pub type AddFn = wildx::jit::AddI32;

/// Short runs: the whole suite must finish in minutes on a shared 2-core machine.
pub fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
        .without_plots()
}

/// The add code at `code` as a function pointer.
///
/// # Safety
/// `code` must start executable memory holding [`ADD`] (or code of the same signature)
/// that stays mapped for as long as the returned pointer is called.
pub unsafe fn to_fn(code: *const u8) -> AddFn {
    // SAFETY: code and function pointers share size and representation on x86-64; the
    // caller vouches for the bytes.
    unsafe { std::mem::transmute::<*const u8, AddFn>(code) }
}

/// Maps `len` bytes `R|W` through libc, or panics.
pub fn libc_map(len: usize) -> *mut u8 {
    // SAFETY: a fresh anonymous private mapping at an address of the kernel's choosing
    // aliases nothing.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED, "mmap: {}", std::io::Error::last_os_error());
    p.cast()
}

/// `mprotect(p, len, R|X)` through libc, or panics.
///
/// # Safety
/// `[p, p + len)` must be a mapping this code owns and no Rust reference may point into it.
pub unsafe fn libc_seal(p: *mut u8, len: usize) {
    // SAFETY: the caller owns the mapping; dropping PROT_WRITE invalidates no reference.
    let rc = unsafe { libc::mprotect(p.cast(), len, libc::PROT_READ | libc::PROT_EXEC) };
    assert_eq!(rc, 0, "mprotect: {}", std::io::Error::last_os_error());
}

/// `munmap(p, len)` through libc, or panics.
///
/// # Safety
/// `[p, p + len)` must be a mapping this code owns and will not touch again.
pub unsafe fn libc_unmap(p: *mut u8, len: usize) {
    // SAFETY: the caller gives the mapping up.
    let rc = unsafe { libc::munmap(p.cast(), len) };
    assert_eq!(rc, 0, "munmap: {}", std::io::Error::last_os_error());
}

/// Maps one page with protection `prot` at exactly `addr` through libc
/// (`MAP_FIXED_NOREPLACE`: never over an existing mapping), or panics.
#[inline(always)]
pub fn libc_map_at(addr: usize, prot: libc::c_int) -> *mut u8 {
    // SAFETY: MAP_FIXED_NOREPLACE never replaces a mapping: a fresh anonymous page or an
    // error.
    let p = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            4096,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    assert_eq!(p as usize, addr, "mmap at {addr:#x}: {}", std::io::Error::last_os_error());
    p.cast()
}

/// The floor: one page per function with the same syscalls wildx issues, straight
/// through libc: mmap, write 5 bytes, mprotect R|X, call, munmap. With `fill`, the whole
/// page is first filled with int3 as wildx does.
pub fn floor_cycle(fill: bool) -> i32 {
    // SAFETY: a fresh R|W page of our own.
    unsafe { floor_cycle_on(libc_map(4096), fill) }
}

/// The floor's cycle after its `mmap`, on the page at `p`: (with `fill`, the int3 fill,)
/// write 5 bytes, mprotect R|X, call, munmap.
///
/// # Safety
/// `p` starts a fresh R|W mapping of 4096 bytes that the caller owns and gives up.
#[inline(always)]
pub unsafe fn floor_cycle_on(p: *mut u8, fill: bool) -> i32 {
    if fill {
        // SAFETY: `p` starts a fresh R|W mapping of 4096 bytes (the caller's contract).
        unsafe { p.write_bytes(0xCC, 4096) };
    }
    // SAFETY: as above; 5 <= 4096.
    unsafe { p.copy_from_nonoverlapping(ADD.as_ptr(), ADD.len()) };
    // SAFETY: our own mapping, no references into it.
    unsafe { libc_seal(p, 4096) };
    // SAFETY: the page is R|X and holds ADD until the munmap below.
    let r = unsafe { to_fn(p) }(black_box(7), black_box(35));
    // SAFETY: our own mapping, not used again.
    unsafe { libc_unmap(p, 4096) };
    r
}

/// wildx's raw page cycle, the one the floor is compared with: `raw::alloc` 64 bytes,
/// write the add code, `raw::seal`, `jit::call_i32_i32`, `raw::free`.
pub fn wildx_raw_cycle() -> i32 {
    let p = wildx::raw::alloc(64);
    assert!(!p.is_null());
    // SAFETY: `p` starts a live WRITABLE page of 64 requested bytes that nothing else
    // knows about; writing through the pointer is how the raw surface is used.
    unsafe { p.copy_from_nonoverlapping(ADD.as_ptr(), ADD.len()) };
    assert_eq!(wildx::raw::seal(p), 0);
    // SAFETY: `p` is sealed, holds ADD, and is freed only after the call.
    let r = unsafe { wildx::jit::call_i32_i32(p, black_box(7), black_box(35)) };
    assert_eq!(wildx::raw::free(p), 0);
    r
}

/// Runs `work(&state, iters)` on `threads` threads at once and returns the wall time
/// from the first thread's start to the last thread's end. Each thread builds its own
/// state with `setup` before the start barrier and tears it down after its end, so
/// neither thread creation nor setup is timed.
pub fn parallel<S>(
    threads: usize,
    iters: u64,
    setup: impl Fn() -> S + Sync,
    work: impl Fn(&S, u64) + Sync,
    teardown: impl Fn(S) + Sync,
) -> Duration {
    let barrier = Barrier::new(threads);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let state = setup();
                    barrier.wait();
                    let start = Instant::now();
                    work(&state, iters);
                    let end = Instant::now();
                    teardown(state);
                    (start, end)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("bench thread panicked")).collect()
    });
    let first = spans.iter().map(|s| s.0).min().expect("at least one thread");
    let last = spans.iter().map(|s| s.1).max().expect("at least one thread");
    last - first
}

/// Times `op` once per iteration, with `before` and `after` (allocation and freeing)
/// left out of the time. Each sample also carries two `Instant::now` calls (tens of ns),
/// the same for every variant compared, so they cancel in differences.
pub fn time_each<S>(iters: u64, before: impl Fn() -> S, op: impl Fn(&S), after: impl Fn(S)) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let s = before();
        let start = Instant::now();
        op(&s);
        total += start.elapsed();
        after(s);
    }
    total
}

/// A noise-resistant comparison: `rounds` rounds, each timing `reps` runs of every
/// variant back to back (in an order that rotates each round, so no variant always runs
/// first). Prints, for each variant, the median over rounds of its time per run divided
/// by `per` (per element), and the median over rounds of its ratio to the first variant
/// (the floor) in the same round. Machine-wide slowdowns hit both sides of a ratio within
/// a round, so the median ratio is much steadier than two separate criterion means.
/// Returns every variant's per-round times (ns per element), rounds in step.
pub fn paired(
    group: &str,
    per: u64,
    rounds: usize,
    reps: u32,
    variants: &mut [(&str, &mut dyn FnMut())],
) -> Vec<Vec<f64>> {
    let n = variants.len();
    let mut times = vec![Vec::with_capacity(rounds); n];
    // Warm up every variant (page tables, caches, lazily initialised state).
    for (_, run) in variants.iter_mut() {
        for _ in 0..reps {
            run();
        }
    }
    for round in 0..rounds {
        for k in 0..n {
            let v = (k + round) % n;
            let start = Instant::now();
            for _ in 0..reps {
                (variants[v].1)();
            }
            times[v].push(start.elapsed().as_nanos() as f64 / f64::from(reps) / per as f64);
        }
    }
    for v in 0..n {
        let ratio = median(times[v].iter().zip(&times[0]).map(|(t, f)| t / f).collect());
        let ns = median(times[v].clone());
        println!("{group}/{:<28} median {ns:9.1} ns   median ratio to {}: {ratio:.3}", variants[v].0, variants[0].0);
    }
    times
}

/// The median of `xs`.
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}
