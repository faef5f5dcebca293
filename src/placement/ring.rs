//! The ring: single pages go into holes.
//!
//! Mapping a page into a one-page hole between two existing mappings is cheaper for the
//! kernel than mapping it into open space, and unmapping it leaves the hole as it was:
//! the whole page cycle (`mmap`, fill, `mprotect`, call, `munmap`) takes 6-9 % less
//! time (`cargo bench -p wildx-bench --bench page_cycle -- page_cycle_paired`, the
//! `floor_libc_int3_fill_holed` and `_placed` rows; `docs/performance.md`). The kernel
//! then stores the page in the hole's place rather than split a gap around it.
//!
//! So one window is a *ring*: its even pages are `PROT_NONE` fences, never accessible
//! and never unmapped, and its [`HOLES`] odd pages but the last are holes between them.
//! A one-page mapping takes the ring's next hole if that hole is free, and a window slot
//! otherwise. A hole the ring handed out is marked taken until [`released`] says its
//! page was unmapped, so a full ring costs no failed syscalls. The ring's base is random
//! like a window's; a freed hole is handed out again only after the cursor has gone once
//! round the ring ([`HOLES`] single-page allocations later, where a window takes about
//! 511). A hole's upper fence is made when the cursor first reaches it (the one below is
//! the previous hole's, or the window's anchor): one more `mmap` in each of the process's
//! first [`HOLES`] single-page allocations, where making all fences at once cost the
//! first allocation 0.66-0.88 ms here (one-off, three runs of a program not kept).
//! Fences, like anchors, stay when the page that brought them is freed or refused. The
//! price: up to [`HOLES`] + 1 kernel mappings and 1 MiB of address space (no memory) for
//! the fences, which count against `RLIMIT_AS` like any mapping; and the pages in the
//! ring do not merge (up to [`HOLES`] more mappings). A forked child inherits the ring,
//! fences and marks included, and goes on using it: the pages in it are the parent's,
//! inherited, and their holes stay taken until the child frees them (`tests/hostile.rs`,
//! `a_forked_child_goes_on_using_the_ring`; the ring is not used in memfd mode, whose
//! pages are views of a file).
//!
//! Invariants owned here: a hole is asked for only by the thread that set its mark in
//! [`TAKEN`] (so two threads never ask for one hole), and a mark is cleared only when the
//! page in that hole has been unmapped or was never mapped there; fences are mapped
//! `PROT_NONE` with `MAP_FIXED_NOREPLACE` and never changed or unmapped. Neither is
//! needed for soundness (the kernel refuses a taken address), only for never asking in
//! vain.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::{WINDOW, anchored_window, fence};
use crate::sys::{self, Errno};

/// How many holes the ring has: a window's odd pages but the last (the hole needs a
/// fence above it, and the window's last page has none).
const HOLES: usize = WINDOW / sys::PAGE_SIZE / 2 - 1;
/// Words of the ring's bitmaps.
const RING_WORDS: usize = HOLES.div_ceil(64);

/// The ring's base (its window's, whose anchor is the first fence); or [`UNDRAWN`],
/// [`DRAWING`] or [`NO_RING`].
static RING: AtomicUsize = AtomicUsize::new(UNDRAWN);
/// [`RING`] before the first single page.
const UNDRAWN: usize = 0;
/// [`RING`] while one thread draws it (the others' single pages go to windows meanwhile;
/// a child forked just then never uses a ring, which costs it only speed).
const DRAWING: usize = 1;
/// [`RING`] once drawing it failed: single pages always go to windows.
const NO_RING: usize = 2;
/// The ring's cursor: the number of holes ever asked for; the next is this modulo HOLES.
static RING_NEXT: AtomicUsize = AtomicUsize::new(0);
/// Bit `i`: hole `i` was handed out and not yet [`released`] (or holds someone else's
/// mapping).
static TAKEN: [AtomicU64; RING_WORDS] = [const { AtomicU64::new(0) }; RING_WORDS];

/// The address of hole `i`: page `2i + 1` of the ring, between fences `2i` and `2i + 2`.
const fn hole(base: usize, i: usize) -> usize {
    base + (2 * i + 1) * sys::PAGE_SIZE
}

/// Maps one page with protection `prot` into the ring's next hole: `None` if the hole is
/// taken or there is no ring (the page then goes to a window), else what `mmap` said.
#[inline(always)]
pub(crate) fn map_in_hole(prot: u32) -> Option<Result<NonNull<u8>, Errno>> {
    let hole = claim_hole()?;
    let mapped = sys::mmap_anonymous_noreplace(hole, sys::PAGE_SIZE, prot);
    match mapped {
        Ok(ptr) if ptr.as_ptr() as usize == hole => {}
        // Someone else's mapping is in the hole: it stays marked taken, so the ring never
        // asks for it again, and the page goes to a window.
        Err(Errno::EEXIST) => return None,
        // As at a window's slot: the kernel's own choice says whether memory is out.
        Err(Errno::ENOMEM) => {
            released(hole, sys::PAGE_SIZE);
            return None;
        }
        // A refusal; or, on a kernel without MAP_FIXED_NOREPLACE, a fresh mapping
        // elsewhere (the flag was ignored): either way the hole was not used.
        _ => released(hole, sys::PAGE_SIZE),
    }
    Some(mapped)
}

/// The ring's next hole if it is free, marked taken; `None` if it is taken (the page
/// then goes to a window) or there is no ring. Draws the ring on first use and makes the
/// hole's upper fence on the cursor's first visit.
#[inline(always)]
fn claim_hole() -> Option<usize> {
    // Relaxed throughout: the marks only steer which address is asked for; the kernel's
    // MAP_FIXED_NOREPLACE decides what is really free, and a thread that sees the ring's
    // base finds its fences mapped whatever it sees of them.
    let base = match RING.load(Ordering::Relaxed) {
        UNDRAWN => draw_ring()?,
        DRAWING | NO_RING => return None,
        base => base,
    };
    let n = RING_NEXT.fetch_add(1, Ordering::Relaxed);
    let i = n % HOLES;
    if n < HOLES {
        // The cursor's first visit to this hole (no other thread gets this `n`): its
        // upper fence. Only for speed: a hole without it is an ordinary slot.
        fence(hole(base, i) + sys::PAGE_SIZE, sys::PAGE_SIZE);
    }
    let bit = 1u64 << (i % 64);
    if TAKEN[i / 64].fetch_or(bit, Ordering::Relaxed) & bit != 0 {
        return None;
    }
    Some(hole(base, i))
}

/// Draws the ring's window (its anchor is the first fence) and publishes its base.
/// `None` if another thread is drawing it or no anchor could be mapped (then there is no
/// ring, for good).
#[cold]
fn draw_ring() -> Option<usize> {
    // Relaxed: see `claim_hole`.
    RING.compare_exchange(UNDRAWN, DRAWING, Ordering::Relaxed, Ordering::Relaxed).ok()?;
    let ring = anchored_window();
    RING.store(ring.unwrap_or(NO_RING), Ordering::Relaxed);
    ring
}

/// Tells the ring that `[addr, addr + len)`, which [`super::map`] returned, has been unmapped:
/// if it is a hole of the ring, the hole is free again. Anything else is ignored.
#[inline]
pub(crate) fn released(addr: usize, len: usize) {
    // Relaxed: see `claim_hole`.
    let base = RING.load(Ordering::Relaxed);
    let offset = addr.wrapping_sub(base);
    if len == sys::PAGE_SIZE && base > NO_RING && offset < WINDOW && (offset / sys::PAGE_SIZE) % 2 == 1 {
        let i = offset / sys::PAGE_SIZE / 2;
        TAKEN[i / 64].fetch_and(!(1u64 << (i % 64)), Ordering::Relaxed);
    }
}
