//! The lifecycle's refusals, freestanding: what the state machine must say no to, and
//! that saying no changes nothing.
//!
//! - foreign (static, stack, null) and interior pointers: seal and free give -1, and the
//!   page they point into is unchanged;
//! - a second seal gives -1, a write after seal gives -1;
//! - a double free gives -1, and so does sealing a freed page;
//! - quota exhaustion: with room for two pages a third allocation is refused, and
//!   succeeds again once one page is freed;
//! - the typed surface in the same program: `compile_add`, a call, `Drop` frees;
//! - at the end nothing is live, and exactly the refusals above were counted;
//! - and the runtime glue's `memset`, `memmove` (both directions, overlapping),
//!   `memcpy` and `memcmp`/`bcmp` give the right bytes (wildx's own copies and fills
//!   go through them).
//!
//! Exit codes 30 to 59, one per check (see each `rt::fail`), 101 a panic. Each failure
//! also writes one line to stderr.
//!
//! `unsafe` is needed for the calls into sealed pages (and by `rt`).

#![no_std]
#![no_main]
#![allow(unsafe_code)]

#[path = "../rt.rs"]
mod rt;

use wildx::PAGE_SIZE;
use wildx::State;
use wildx::raw::{alloc, free, seal, state, verify};

/// A byte that is not a wildx page.
static FOREIGN: u8 = 0;

/// Refusals this program provokes, each a -1 or a null the state machine must count.
const EXPECTED_REFUSALS: u64 = 12;

fn run() -> i32 {
    let before = wildx::stats();

    // WRITABLE: foreign and interior pointers are refused and change nothing.
    let p = alloc(64);
    if p.is_null() {
        rt::fail(30, "lifecycle: alloc(64) returned null\n");
    }
    if state(p) != Some(State::Writable) {
        rt::fail(31, "lifecycle: a fresh page is not WRITABLE\n");
    }
    if wildx::jit::install_add_i32(p) != 0 {
        rt::fail(32, "lifecycle: install_add_i32 on a WRITABLE page did not return 0\n");
    }
    let interior = p.wrapping_add(1);
    if seal(interior) != -1 || free(interior) != -1 {
        rt::fail(33, "lifecycle: seal or free of an interior pointer did not return -1\n");
    }
    let foreign = &FOREIGN as *const u8 as *mut u8;
    if seal(foreign) != -1 || free(foreign) != -1 {
        rt::fail(34, "lifecycle: seal or free of a static's address did not return -1\n");
    }
    let mut local = 0u8;
    let stack = &mut local as *mut u8;
    if free(stack) != -1 || free(core::ptr::null_mut()) != -1 {
        rt::fail(35, "lifecycle: free of a stack or null pointer did not return -1\n");
    }
    if state(p) != Some(State::Writable) || state(interior).is_some() || state(foreign).is_some() {
        rt::fail(36, "lifecycle: a refused seal or free changed a page's state\n");
    }

    // EXECUTABLE: a second seal and a write are refused; the page still runs.
    if seal(p) != 0 {
        rt::fail(37, "lifecycle: seal of a WRITABLE page did not return 0\n");
    }
    if seal(p) != -1 {
        rt::fail(38, "lifecycle: a second seal did not return -1\n");
    }
    if wildx::jit::install_add_i32(p) != -1 {
        rt::fail(39, "lifecycle: a write into a sealed page did not return -1\n");
    }
    if free(interior) != -1 {
        rt::fail(40, "lifecycle: free of an interior pointer into a sealed page did not return -1\n");
    }
    // SAFETY: `p` holds the add bytes, is sealed, and is freed only below.
    if state(p) != Some(State::Executable) || verify(p) != 0 || unsafe { wildx::jit::call_i32_i32(p, 40, 2) } != 42 {
        rt::fail(41, "lifecycle: the sealed page is not EXECUTABLE, intact and callable\n");
    }

    // FREED: a double free and a seal after free are refused.
    if free(p) != 0 {
        rt::fail(42, "lifecycle: free of a sealed page did not return 0\n");
    }
    if free(p) != -1 {
        rt::fail(43, "lifecycle: a double free did not return -1\n");
    }
    if seal(p) != -1 || state(p).is_some() {
        rt::fail(44, "lifecycle: a freed page could be sealed or is still registered\n");
    }

    // Quota: room for exactly two pages; a third is refused until one is freed.
    wildx::set_quota(2 * PAGE_SIZE);
    let a = alloc(1);
    let b = alloc(PAGE_SIZE);
    if a.is_null() || b.is_null() {
        rt::fail(45, "lifecycle: two one-page allocs under a two-page quota were refused\n");
    }
    if !alloc(1).is_null() {
        rt::fail(46, "lifecycle: an alloc past the quota was not refused\n");
    }
    if free(a) != 0 {
        rt::fail(47, "lifecycle: free under the quota did not return 0\n");
    }
    let c = alloc(1);
    if c.is_null() {
        rt::fail(48, "lifecycle: an alloc after freeing room under the quota was refused\n");
    }
    if free(b) != 0 || free(c) != 0 {
        rt::fail(49, "lifecycle: freeing the quota pages did not return 0\n");
    }
    wildx::set_quota(wildx::DEFAULT_QUOTA);

    // The typed surface: Result, a typed call, Drop frees.
    match wildx::jit::compile_add() {
        Ok(add) => {
            if add.call((20, 22)) != 42 || add.verify().is_err() {
                rt::fail(50, "lifecycle: typed add did not return 42 or did not verify\n");
            }
        }
        Err(_) => rt::fail(51, "lifecycle: compile_add returned Err\n"),
    }

    let after = wildx::stats();
    check_mem_functions();
    if after.live_pages != 0 || after.live_bytes != 0 {
        rt::fail(52, "lifecycle: pages are still live at the end (a leak, or Drop did not free)\n");
    }
    if after.refusals - before.refusals != EXPECTED_REFUSALS {
        rt::fail(53, "lifecycle: the refusal count does not match the refusals made\n");
    }
    if after.allocs - before.allocs != 5 || after.seals - before.seals != 2 || after.frees - before.frees != 5 {
        rt::fail(54, "lifecycle: the alloc, seal or free counts do not match the operations made\n");
    }
    0
}

/// The `rt` memory functions, reached the way compiled code reaches them: through
/// `core`'s copies, fills and comparisons with lengths the optimiser cannot see.
fn check_mem_functions() {
    use core::hint::black_box;
    let n = black_box(40);
    let mut buf = [0u8; 64];
    // SAFETY: n + 1 <= 64: every range below lies inside `buf`.
    unsafe { core::ptr::write_bytes(buf.as_mut_ptr(), 0xAB, n) };
    if buf[..n].iter().any(|&b| b != 0xAB) || buf[n] != 0 {
        rt::fail(55, "lifecycle: memset wrote the wrong bytes\n");
    }
    for (i, b) in buf.iter_mut().enumerate() {
        *b = i as u8;
    }
    // Overlapping, destination after source: copied from the last byte down.
    // SAFETY: [0, n) and [1, n + 1) lie inside `buf`.
    unsafe { core::ptr::copy(buf.as_ptr(), buf.as_mut_ptr().add(1), n) };
    if buf[0] != 0 || (1..=n).any(|i| buf[i] != (i - 1) as u8) {
        rt::fail(56, "lifecycle: an overlapping memmove to a higher address corrupted the bytes\n");
    }
    // Overlapping, destination before source: copied from the first byte up.
    // SAFETY: as above.
    unsafe { core::ptr::copy(buf.as_ptr().add(1), buf.as_mut_ptr(), n) };
    if (0..n).any(|i| buf[i] != i as u8) {
        rt::fail(57, "lifecycle: an overlapping memmove to a lower address corrupted the bytes\n");
    }
    let mut same = [0u8; 64];
    same[..n].copy_from_slice(&buf[..n]);
    let mut changed = same;
    changed[n - 1] ^= 1; // 39 becomes 38: `buf` compares greater
    let (a, b, c) = (black_box(&buf[..n]), black_box(&same[..n]), black_box(&changed[..n]));
    if a != b || a == c || a.cmp(c) != core::cmp::Ordering::Greater {
        rt::fail(58, "lifecycle: memcpy or memcmp/bcmp gave the wrong result\n");
    }
}
