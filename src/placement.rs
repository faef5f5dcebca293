//! Where wildx's mappings land: at random addresses, and named.
//!
//! Invariants owned here: a mapping made here never replaces an existing one (the
//! address is only ever asked for with `MAP_FIXED_NOREPLACE`, which fails with `EEXIST`
//! rather than clobber, and on kernels without it the flag is ignored and the address
//! is a plain hint); and no mapping is ever writable and executable (the `sys` wrappers
//! refuse it).
//!
//! **Why randomize.** The kernel hands a freed address straight back (10 000 of 10 000
//! mmap-after-munmap cycles returned the same address), so a stale raw pointer names the
//! next page, and JIT code sits at predictable addresses.
//!
//! **The price, and the choice.** Pages scattered one by one at random addresses never
//! merge with their neighbours: each is its own kernel mapping, and `vm.max_map_count`
//! (65 530 by default) then caps live pages well below what wildx holds today (100 000
//! live pages fit in a few dozen mappings because adjacent pages with the same
//! protection merge). So wildx randomizes the *base of a window* instead, as
//! SpiderMonkey randomizes inside a reservation: pages are placed one after another from
//! a cursor in a 2 MiB window (one page table's span) whose base is drawn at random
//! (from `getrandom`, in [`LOW`, `HIGH`)); at the window's end the cursor wraps to its
//! first slot, and when a slot is taken (`EEXIST`) a new window is drawn. Consecutive
//! pages are adjacent and merge exactly as before, a freed address is handed out again
//! only after the cursor has gone once round the window (about 500 allocations later),
//! and the window's base, hence every page's address, is not predictable from outside
//! the process. Each window keeps one `PROT_NONE` anchor page mapped (see
//! `new_window`), so 100 000 live pages cost about 200 more kernel mappings. Arena
//! reservations up to [`BUMP_MAX`] take window slots too; larger mappings and
//! reservations get a random address of their own. After a few collisions in a row
//! placement falls back to the kernel's choice.
//!
//! **Single pages go into holes** (feature `page-ring`, on by default): one window is
//! a ring of 255 one-page holes between `PROT_NONE` fences, and a one-page mapping takes
//! the ring's next free hole, which the kernel maps and unmaps faster than a page in
//! open space (see `ring`). For single pages this changes two figures above: a freed
//! single page's address comes back after 255 single-page allocations (not about 500),
//! and the ring adds up to 511 kernel mappings (its fences, and its pages, which do not
//! merge).
//!
//! **Names.** Every page is named `wildx` (arena reservations `wildx-arena`) with
//! `prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME)`, so `/proc/<pid>/maps` and crash dumps show
//! `[anon:wildx]`. Kernels built without `CONFIG_ANON_VMA_NAME` (this one) refuse with
//! `EINVAL`: wildx remembers that after the first refusal and stops asking.
//!
//! This module needs no `unsafe` of its own beyond calling the `sys` wrappers that
//! create mappings at an address the kernel checks is free.

#![allow(unsafe_code)]

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};

use crate::sys::{self, Errno};

#[cfg(feature = "page-ring")]
mod ring;
#[cfg(feature = "page-ring")]
pub(crate) use ring::released;

/// Without the ring (feature `page-ring` off) there is nothing to tell.
#[cfg(not(feature = "page-ring"))]
#[inline(always)]
pub(crate) fn released(_addr: usize, _len: usize) {}

/// The size of one placement window (the span of one page table): pages are bumped
/// through it, round and round, from a random base.
pub(crate) const WINDOW: usize = 2 << 20;
/// Mappings above this size get a random address of their own, not a slot in a window.
pub(crate) const BUMP_MAX: usize = WINDOW / 8;
/// The lowest address a region or a standalone mapping is placed at (1 TiB): above
/// the executable, its heap and the usual low mappings.
pub(crate) const LOW: usize = 1 << 40;
/// The end of the range placements are drawn from (64 TiB): below where the kernel puts
/// `mmap`s and stacks top-down (near 128 TiB) and PIE executables (near 85 TiB).
pub(crate) const HIGH: usize = 1 << 46;
/// How many addresses are tried before the kernel's choice is taken.
const ATTEMPTS: u32 = 4;

/// The cursor: the next free address in the current region, or 0 before the first.
static NEXT: AtomicUsize = AtomicUsize::new(0);
/// The secret of the random sequence (0 until drawn from `getrandom`).
static SEED: AtomicU64 = AtomicU64::new(0);
/// Draws taken from the sequence.
static DRAWS: AtomicU64 = AtomicU64::new(0);
/// Placements that fell back to the kernel's choice (read in a debugger or core dump).
static FALLBACKS: AtomicU64 = AtomicU64::new(0);

/// A random 64-bit value: SplitMix64 over a counter keyed with a seed from `getrandom`.
fn random() -> u64 {
    // Relaxed: the seed and the counter are independent values; any thread's view works.
    let mut seed = SEED.load(Ordering::Relaxed);
    if seed == 0 {
        seed = reseed();
    }
    let n = DRAWS.fetch_add(1, Ordering::Relaxed);
    let mut z = seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Draws a new seed from `getrandom` (or, if that is refused, from the stack address
/// and the process id) and forgets the current region: the child of a `fork` calls it
/// so that parent and child place differently.
pub(crate) fn reseed() -> u64 {
    let mut bytes = [0u8; 8];
    let seed = match sys::getrandom(&mut bytes) {
        Ok(8) => u64::from_ne_bytes(bytes),
        _ => (core::ptr::addr_of!(bytes) as u64).rotate_left(17) ^ sys::getpid() as u64,
    } | 1;
    // Relaxed: see `random`.
    SEED.store(seed, Ordering::Relaxed);
    NEXT.store(0, Ordering::Relaxed);
    seed
}

/// A random, `align`-aligned address in [`LOW`, `HIGH` - `len`).
fn random_address(len: usize, align: usize) -> usize {
    let slots = (HIGH - LOW - len.min(HIGH - LOW)) / align;
    LOW + (random() as usize % slots.max(1)) * align
}

/// The next `len` bytes at the cursor, drawing a new window first if `rebase` or the
/// current one cannot hold them; wraps to the window's first slot at its end.
fn take(len: usize, rebase: bool) -> usize {
    loop {
        // Relaxed: the cursor only hands out addresses; the mapping made there is what
        // counts, and the kernel serialises that.
        let cur = NEXT.load(Ordering::Relaxed);
        // The window the cursor is in: the cursor is never a window's base (the anchor
        // is there) but is its end once the window is used up, hence `cur - 1`.
        let window = cur.wrapping_sub(1) & !(WINDOW - 1);
        let start = if cur == 0 || rebase {
            new_window() + sys::PAGE_SIZE
        } else if cur + len <= window + WINDOW {
            cur
        } else {
            // Back to the first slot after the anchor: by now the pages freed near the
            // start are long gone, and the kernel refuses any slot still taken.
            window + sys::PAGE_SIZE
        };
        if NEXT.compare_exchange_weak(cur, start + len, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            return start;
        }
    }
}

/// Draws a window at a random address and maps its anchor (one `PROT_NONE` page at its
/// base), returning the base. The anchor keeps the kernel from freeing and re-allocating
/// the window's page table every time its last page is freed (measured: that cost the
/// page cycle a third more); it costs one kernel mapping and no memory per window, and
/// is never unmapped.
fn new_window() -> usize {
    anchored_window().unwrap_or_else(|| {
        // No anchor: the window still works, only its page table is not kept.
        random_address(WINDOW, WINDOW)
    })
}

/// [`new_window`], or `None` if no anchor could be mapped in [`ATTEMPTS`] draws.
pub(crate) fn anchored_window() -> Option<usize> {
    (0..ATTEMPTS).map(|_| random_address(WINDOW, WINDOW)).find(|&base| fence(base, sys::PAGE_SIZE))
}

/// Maps `len` bytes (whole pages) of inaccessible (`PROT_NONE`) memory at `addr` if
/// nothing is there; whether it did. Never replaces a mapping.
#[cfg_attr(feature = "page-ring", inline(never))]
pub(crate) fn fence(addr: usize, len: usize) -> bool {
    match sys::mmap_anonymous_noreplace(addr, len, sys::PROT_NONE) {
        Ok(p) if p.as_ptr() as usize == addr => true,
        Ok(p) => {
            // A kernel without MAP_FIXED_NOREPLACE put it elsewhere: no use there.
            // SAFETY: the mapping was just made and nobody else knows it.
            let _ = unsafe { sys::munmap(p, len) };
            false
        }
        Err(_) => false,
    }
}

/// Maps `len` bytes (whole pages) of fresh anonymous private memory with protection
/// `prot` (never W|X), at a randomized address as the module docs describe.
///
/// # Errors
/// As [`sys::mmap_anonymous`]: `ENOMEM` (address space, `RLIMIT_AS`, map count),
/// `EACCES`/`EPERM` (a policy refuses `prot`), `EINVAL` for W|X.
///
/// Always inlined into its one caller, `execmem::map_page`, itself inlined into
/// `page::alloc`: with the `mmap` two calls below `page::alloc` the page cycle was about
/// 2.5 % slower, for a few dozen instructions (measured, `docs/performance.md`).
#[inline(always)]
pub(crate) fn map(len: usize, prot: u32) -> Result<NonNull<u8>, Errno> {
    #[cfg(feature = "page-ring")]
    if len == sys::PAGE_SIZE {
        if let Some(mapped) = ring::map_in_hole(prot) {
            return mapped;
        }
    }
    for attempt in 0..ATTEMPTS {
        let hint = if len <= BUMP_MAX { take(len, attempt > 0) } else { random_address(len, sys::PAGE_SIZE) };
        match sys::mmap_anonymous_noreplace(hint, len, prot) {
            // At the address asked for; or, on a kernel without MAP_FIXED_NOREPLACE,
            // wherever it put the mapping (the flag is then ignored and the address was a
            // hint): a fresh mapping either way, nothing replaced.
            Ok(ptr) => return Ok(ptr),
            // Someone else's mapping is there: try elsewhere.
            Err(Errno::EEXIST) => {}
            // ENOMEM at a hint can mean the address is unusable here (a smaller address
            // space); the kernel's own choice below says whether memory is really out.
            Err(Errno::ENOMEM) => break,
            Err(errno) => return Err(errno),
        }
    }
    // Relaxed: a statistic.
    FALLBACKS.fetch_add(1, Ordering::Relaxed);
    sys::mmap_anonymous(len, prot)
}

#[cfg(feature = "memfd")]
/// Maps `len` bytes (whole pages) of the file `fd`, shared, with protection `prot`
/// (never W|X), at a randomized address as [`map`] places anonymous pages, always at the
/// file offset equal to the address (see `crate::execmem`). Never replaces a mapping
/// it did not just make.
///
/// # Errors
/// As [`map`].
pub(crate) fn map_file(len: usize, prot: u32, fd: i32) -> Result<NonNull<u8>, Errno> {
    for attempt in 0..ATTEMPTS {
        let hint = if len <= BUMP_MAX { take(len, attempt > 0) } else { random_address(len, sys::PAGE_SIZE) };
        match sys::mmap_shared_noreplace(hint, len, prot, fd, hint as u64) {
            Ok(ptr) if ptr.as_ptr() as usize == hint => return Ok(ptr),
            // A kernel without MAP_FIXED_NOREPLACE took the address as a hint and put the
            // mapping elsewhere, at the wrong offset: map the right one over it.
            Ok(ptr) => return remap_at_own_offset(ptr, len, prot, fd),
            Err(Errno::EEXIST) => {}
            Err(Errno::ENOMEM) => break,
            Err(errno) => return Err(errno),
        }
    }
    // Relaxed: a statistic.
    FALLBACKS.fetch_add(1, Ordering::Relaxed);
    // The kernel's choice of address, taken first with an inaccessible stand-in.
    let ptr = sys::mmap_anonymous(len, sys::PROT_NONE)?;
    remap_at_own_offset(ptr, len, prot, fd)
}

#[cfg(feature = "memfd")]
/// Replaces the fresh mapping `[ptr, ptr + len)` by a view of `fd` at offset `ptr`.
fn remap_at_own_offset(ptr: NonNull<u8>, len: usize, prot: u32, fd: i32) -> Result<NonNull<u8>, Errno> {
    // SAFETY: `ptr` is a mapping this module has just made and nobody else knows.
    match unsafe { sys::mmap_shared_fixed(ptr, len, prot, fd, ptr.as_ptr() as u64) } {
        Ok(()) => Ok(ptr),
        Err(errno) => {
            // SAFETY: as above.
            let _ = unsafe { sys::munmap(ptr, len) };
            Err(errno)
        }
    }
}

/// Reserves `len` bytes (whole pages) of address space, inaccessible (`PROT_NONE`), at
/// a randomized address (a window slot up to [`BUMP_MAX`], see the module docs), named
/// `wildx-arena`: the arena's reservation. Pages inside it are
/// made accessible later with `mprotect` (see [`crate::execmem`]).
///
/// # Errors
/// `EINVAL` for a zero or unaligned length; `ENOMEM` when no room is left.
pub(crate) fn reserve(len: usize) -> Result<NonNull<u8>, Errno> {
    if len == 0 || len % sys::PAGE_SIZE != 0 {
        return Err(Errno::EINVAL);
    }
    let mut placed = None;
    for attempt in 0..ATTEMPTS {
        // A small reservation takes the next slot of a window, as a page does: a
        // reservation at an address of its own costs the kernel a fresh set of page tables
        // to build and free each time (measured: a fifth of a 1000-function arena's
        // floor, `cargo bench -p wildx-bench --bench arena`).
        let hint = if len <= BUMP_MAX { take(len, attempt > 0) } else { random_address(len, sys::PAGE_SIZE) };
        match sys::mmap_anonymous_noreplace(hint, len, sys::PROT_NONE) {
            Ok(ptr) => {
                placed = Some(ptr);
                break;
            }
            Err(Errno::EEXIST) => {}
            Err(_) => break,
        }
    }
    let ptr = match placed {
        Some(ptr) => ptr,
        None => {
            // Relaxed: a statistic.
            FALLBACKS.fetch_add(1, Ordering::Relaxed);
            sys::mmap_anonymous(len, sys::PROT_NONE)?
        }
    };
    name(ptr, len, ARENA_NAME);
    Ok(ptr)
}

/// The name of a page's mapping, NUL-terminated.
pub(crate) const PAGE_NAME: &[u8] = b"wildx\0";
/// The name of an arena reservation, NUL-terminated.
pub(crate) const ARENA_NAME: &[u8] = b"wildx-arena\0";

/// Whether the kernel names anonymous mappings: unknown, yes, no.
static NAMING: AtomicU8 = AtomicU8::new(NAMING_UNKNOWN);
const NAMING_UNKNOWN: u8 = 0;
const NAMING_WORKS: u8 = 1;
const NAMING_UNSUPPORTED: u8 = 2;

/// Names `[ptr, ptr + len)` `name` in `/proc/self/maps` (`[anon:<name>]`), if the
/// kernel can. Quietly does nothing on kernels without `CONFIG_ANON_VMA_NAME` (the first
/// `EINVAL` is remembered and the syscall is not made again) and on any other refusal
/// (a name is a courtesy; the mapping is good without it).
pub(crate) fn name(ptr: NonNull<u8>, len: usize, name: &'static [u8]) {
    // Relaxed: a cache of a fact about the kernel; a stale read costs one syscall.
    if NAMING.load(Ordering::Relaxed) == NAMING_UNSUPPORTED {
        return;
    }
    match sys::name_anon_mapping(ptr, len, name) {
        Ok(()) => NAMING.store(NAMING_WORKS, Ordering::Relaxed),
        Err(Errno::EINVAL) if NAMING.load(Ordering::Relaxed) == NAMING_UNKNOWN => {
            NAMING.store(NAMING_UNSUPPORTED, Ordering::Relaxed)
        }
        Err(_) => {}
    }
}
