//! The process-wide page registry: one spin reader-writer lock ([`crate::lock`]) around a `hashbrown`
//! map from a mapping's start address to its slot, plus the quota and the statistics.
//!
//! Invariants owned here:
//! - every live wildx mapping is in the map, keyed by its page-aligned start, and
//!   nothing else is;
//! - `live_bytes` is the sum of the mapped lengths in the map, and `live_bytes +
//!   reserved_bytes` never passes the quota at the moment a reservation is taken;
//! - the map's own storage comes from `mmap` through [`Storage`], never from the global
//!   allocator, so the crate works where no heap exists.
//!
//! This module needs `unsafe` for one reason: [`Storage`] implements hashbrown's
//! `Allocator` trait (an `unsafe trait`) over `mmap`/`munmap`.

#![allow(unsafe_code)]

use core::alloc::Layout;
use core::hash::{BuildHasher, Hasher};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use allocator_api2::alloc::{AllocError, Allocator};
use hashbrown::{HashMap, TryReserveError};

use crate::global::MmapAlloc;
use crate::lock::{ReaderSlots, ShardedRwLock};
use crate::sys::PAGE_SIZE;

/// The quota a process starts with: 256 MiB of mapped bytes.
pub const DEFAULT_QUOTA: usize = 256 << 20;

/// Where a registered page is in its one-way lifecycle.
///
/// A freed page is not in the registry at all: the kernel may hand its address out
/// again, so "freed" is reported as "not registered" (`None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Mapped `PROT_READ|PROT_WRITE`, never executable: fill it with code.
    Writable,
    /// Mapped `PROT_READ|PROT_EXEC`, hash recorded: callable, any write traps.
    Executable,
}

/// What the registry keeps per live mapping: 16 bytes, so a hashbrown slot with its
/// 8-byte key and 1 control byte costs 25 bytes.
///
/// `meta` packs three flags (bits 0-2), the requested length (bits 3-47: a page holds
/// at most [`MAX_PAGE_LEN`] bytes, 32 TiB, more than a 47-bit address space can map
/// twice over) and the entry's generation (bits 48-63). Flag bit 0 is set once sealed,
/// bit 1 while a typed handle ([`crate::Page`] or [`crate::Code`]) owns the page, bit 2
/// while one thread is sealing or freeing the page outside the registry lock (nobody
/// else may act on it then; see `crate::page`).
///
/// The generation tells two occupants of one address apart: every insert takes the next
/// value of a 16-bit counter, and a typed handle remembers the generation of its page,
/// so a handle whose page was unmapped behind wildx's back never frees or seals the page
/// the kernel later put at the same address (unless exactly a multiple of 65 536 pages
/// were registered in between).
/// The mapped length is the requested length rounded up to whole pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    meta: u64,
    hash: u64,
}

const SEALED: u64 = 1;
const HELD: u64 = 2;
const BUSY: u64 = 4;
const FLAG_BITS: u32 = 3;
const LEN_BITS: u32 = 45;
const GEN_SHIFT: u32 = FLAG_BITS + LEN_BITS;

/// The most bytes one page may hold: 32 TiB (the length field of [`Slot`]).
pub(crate) const MAX_PAGE_LEN: usize = 1 << LEN_BITS;

/// An entry's generation: which occupant of an address it is.
pub(crate) type Gen = u16;

impl Slot {
    /// A WRITABLE page of `len` bytes (`len < MAX_PAGE_LEN`) of generation `generation`.
    pub(crate) const fn writable(len: usize, generation: Gen) -> Slot {
        Slot { meta: ((len as u64) << FLAG_BITS) | ((generation as u64) << GEN_SHIFT), hash: 0 }
    }

    pub(crate) const fn len(self) -> usize {
        ((self.meta >> FLAG_BITS) & ((1 << LEN_BITS) - 1)) as usize
    }

    /// Which occupant of its address this entry is.
    pub(crate) const fn generation(self) -> Gen {
        (self.meta >> GEN_SHIFT) as Gen
    }

    pub(crate) const fn mapped_len(self) -> usize {
        // Cannot overflow: alloc refused lengths whose rounding overflows.
        round_to_pages(self.len())
    }

    pub(crate) const fn state(self) -> State {
        if self.meta & SEALED != 0 { State::Executable } else { State::Writable }
    }

    /// Whether a typed handle owns the page (the raw surface may then not free,
    /// seal or write it).
    pub(crate) const fn held(self) -> bool {
        self.meta & HELD != 0
    }

    /// Whether a thread is sealing or freeing the page right now, outside the lock.
    pub(crate) const fn busy(self) -> bool {
        self.meta & BUSY != 0
    }

    /// The seal hash, once sealed.
    pub(crate) const fn hash(self) -> Option<u64> {
        match self.state() {
            State::Executable => Some(self.hash),
            State::Writable => None,
        }
    }

    /// Sealed with `hash`, and no longer busy.
    const fn sealed(self, hash: u64) -> Slot {
        Slot { meta: (self.meta | SEALED) & !BUSY, hash }
    }

    const fn with_busy(self, busy: bool) -> Slot {
        Slot { meta: if busy { self.meta | BUSY } else { self.meta & !BUSY }, hash: self.hash }
    }

    const fn with_held(self, held: bool) -> Slot {
        Slot { meta: if held { self.meta | HELD } else { self.meta & !HELD }, hash: self.hash }
    }
}

/// `len` rounded up to whole pages; the caller has checked it does not overflow.
pub(crate) const fn round_to_pages(len: usize) -> usize {
    (len + (PAGE_SIZE - 1)) & !(PAGE_SIZE - 1)
}

/// `len` rounded up to whole pages, or `None` if that passes `isize::MAX` (the most a
/// Rust allocation, and a slice over it, may span).
pub(crate) const fn checked_round_to_pages(len: usize) -> Option<usize> {
    if len > isize::MAX as usize - (PAGE_SIZE - 1) { None } else { Some(round_to_pages(len)) }
}

/// A hasher for page addresses: a folded 64x64->128 multiply of the page number, so
/// both the low bits (bucket index) and the top 7 (hashbrown's tag) vary with it.
#[derive(Clone, Copy, Default)]
pub(crate) struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        let wide = (self.0 >> 12) as u128 * 0x9e37_79b9_7f4a_7c15u128;
        (wide as u64) ^ ((wide >> 64) as u64)
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `usize` keys are hashed; this path exists for completeness.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ b as u64;
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = n as u64;
    }
}

/// A const-constructible `BuildHasher` for [`AddrHasher`].
#[derive(Clone, Copy, Default)]
pub(crate) struct AddrHashBuilder;

impl BuildHasher for AddrHashBuilder {
    type Hasher = AddrHasher;
    fn build_hasher(&self) -> AddrHasher {
        AddrHasher(0)
    }
}

/// Bytes the registry's own storage has mapped right now.
static STORAGE_BYTES: AtomicUsize = AtomicUsize::new(0);

/// The registry's allocator: every table hashbrown asks for is its own anonymous
/// read-write mapping, returned with `munmap`. Never the global allocator.
#[derive(Clone, Copy, Default)]
pub(crate) struct Storage;

// SAFETY: `allocate` returns a fresh mapping of at least `layout.size()` bytes, page
// aligned (alignments above a page are refused), valid until `deallocate` unmaps it;
// the unit struct has no state, so clones are interchangeable and a block from one may
// be freed by another.
unsafe impl Allocator for Storage {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let (ptr, len) = MmapAlloc::map(layout).ok_or(AllocError)?;
        // Relaxed: a statistic; the registry lock orders it with the table it counts.
        STORAGE_BYTES.fetch_add(len, Ordering::Relaxed);
        Ok(NonNull::slice_from_raw_parts(ptr, len))
    }

    unsafe fn grow(&self, ptr: NonNull<u8>, old: Layout, new: Layout) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: `ptr` came from `allocate` (or `grow`) with `old` (the trait's
        // contract), i.e. from `MmapAlloc::map` with that layout's size; on success the
        // caller uses only the returned block.
        let (moved, len) = unsafe { MmapAlloc::remap(ptr, old, new) }.ok_or(AllocError)?;
        let old_len = crate::registry::round_to_pages(old.size().max(1));
        // Relaxed: a statistic (see `allocate`).
        STORAGE_BYTES.fetch_add(len - old_len, Ordering::Relaxed);
        Ok(NonNull::slice_from_raw_parts(moved, len))
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: `ptr` came from `allocate` with this layout, i.e. from
        // `MmapAlloc::map`, and hashbrown no longer uses it (the trait's contract).
        // A refused munmap (a seccomp policy, or the map-count limit) leaves the block
        // mapped and still counted.
        if let Some(len) = unsafe { MmapAlloc::unmap(ptr, layout) } {
            STORAGE_BYTES.fetch_sub(len, Ordering::Relaxed);
        }
    }
}

type Map = HashMap<usize, Slot, AddrHashBuilder, Storage>;

/// One registered arena: its reservation `[start, end)` and where its shared state lives.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ArenaSpan {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) shared: NonNull<crate::arena::Shared>,
}

// SAFETY: `shared` points to an arena's state, which lives in its own mapping until the
// arena is unregistered and no lookup holds a reference (see `crate::arena`); the state is
// itself `Sync` (its mutable parts sit behind a lock and atomics).
unsafe impl Send for ArenaSpan {}
// SAFETY: as for Send; the span is plain data otherwise.
unsafe impl Sync for ArenaSpan {}

type Arenas = allocator_api2::vec::Vec<ArenaSpan, Storage>;

/// The registry's state, guarded by [`REGISTRY`].
pub(crate) struct Registry {
    map: Map,
    live_bytes: usize,
    reserved_bytes: usize,
    /// Allocations between `reserve` and `insert`: the table keeps room for all of them,
    /// so an insert never has to grow it (and a refused growth never leaves a mapping to
    /// undo).
    pending_inserts: usize,
    peak_bytes: usize,
    quota: usize,
    /// Live arenas, sorted by `start` (reservations never overlap).
    arenas: Arenas,
    /// Accessible arena bytes (part of `live_bytes`).
    arena_bytes: usize,
    /// The generation the next insert takes.
    next_generation: Gen,
    /// Pages marked BUSY (a seal or free under way outside the lock).
    busy_pages: usize,
    /// Successful allocations, seals and frees of pages. Counted here, under the lock
    /// each of them takes anyway, rather than in atomics (three atomic additions were a
    /// measurable part of a page cycle's bookkeeping).
    counts: Counts,
}

/// Successful page operations (see [`Registry::counts`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) allocs: u64,
    pub(crate) seals: u64,
    pub(crate) frees: u64,
}

/// The registry lock's reader counters (all zero: `.bss`).
static REGISTRY_READERS: ReaderSlots = ReaderSlots::new();

/// The one registry of the process.
pub(crate) static REGISTRY: ShardedRwLock<Registry> = ShardedRwLock::new(
    Registry {
        map: HashMap::with_hasher_in(AddrHashBuilder, Storage),
        live_bytes: 0,
        reserved_bytes: 0,
        pending_inserts: 0,
        peak_bytes: 0,
        quota: DEFAULT_QUOTA,
        arenas: Arenas::new_in(Storage),
        arena_bytes: 0,
        next_generation: 0,
        busy_pages: 0,
        counts: Counts { allocs: 0, seals: 0, frees: 0 },
    },
    &REGISTRY_READERS,
);

// Refused operations (the successful ones are counted in the registry, see
// `Registry::counts`). Relaxed: an independent statistic that no other memory access is
// ordered against.
pub(crate) static REFUSALS: AtomicU64 = AtomicU64::new(0);

/// Adds one to a counter.
pub(crate) fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Registry {
    pub(crate) fn get(&self, addr: usize) -> Option<Slot> {
        self.map.get(&addr).copied()
    }

    /// Takes `mapped` bytes of quota, and room for one more entry in the table, for an
    /// allocation about to be mapped. Nothing changes on an error.
    ///
    /// # Errors
    /// [`Reserve::Quota`] if the bytes would pass the quota, [`Reserve::Storage`] if the
    /// table must grow and its `mmap` fails.
    pub(crate) fn reserve(&mut self, mapped: usize) -> Result<(), Reserve> {
        let used = self.live_bytes + self.reserved_bytes;
        match used.checked_add(mapped) {
            Some(total) if total <= self.quota => {}
            _ => return Err(Reserve::Quota),
        }
        self.map.try_reserve(self.pending_inserts + 1).map_err(|_: TryReserveError| Reserve::Storage)?;
        self.reserved_bytes += mapped;
        self.pending_inserts += 1;
        Ok(())
    }

    /// Registers a fresh writable mapping at `addr` under its reservation (see
    /// [`Registry::reserve`], which made room: this never grows the table) and returns
    /// its generation.
    pub(crate) fn insert(&mut self, addr: usize, len: usize, held: bool) -> Gen {
        let generation = self.next_generation;
        self.next_generation = generation.wrapping_add(1);
        let slot = Slot::writable(len, generation).with_held(held);
        debug_assert!(self.map.capacity() > self.map.len(), "reserve made room");
        self.map.insert(addr, slot);
        self.reserved_bytes -= slot.mapped_len();
        self.pending_inserts -= 1;
        self.live_bytes += slot.mapped_len();
        self.peak_bytes = self.peak_bytes.max(self.live_bytes);
        self.counts.allocs += 1;
        generation
    }

    /// Marks the page at `addr` busy (a seal or free is under way outside the lock) or
    /// idle again.
    pub(crate) fn set_busy(&mut self, addr: usize, busy: bool) {
        if let Some(slot) = self.map.get_mut(&addr) {
            if slot.busy() != busy {
                if busy { self.busy_pages += 1 } else { self.busy_pages -= 1 }
            }
            *slot = slot.with_busy(busy);
        }
    }

    /// Marks a registered writable page executable with its seal hash (and idle).
    pub(crate) fn mark_sealed(&mut self, addr: usize, hash: u64) {
        if let Some(slot) = self.map.get_mut(&addr) {
            if slot.busy() {
                self.busy_pages -= 1;
            }
            *slot = slot.sealed(hash);
            self.counts.seals += 1;
        }
    }

    /// How many pages are BUSY right now.
    pub(crate) fn busy_pages(&self) -> usize {
        self.busy_pages
    }

    /// Records whether a typed handle owns the page at `addr`.
    pub(crate) fn set_held(&mut self, addr: usize, held: bool) {
        if let Some(slot) = self.map.get_mut(&addr) {
            *slot = slot.with_held(held);
        }
    }

    /// Gives back a reservation whose mapping failed or was undone.
    pub(crate) fn unreserve(&mut self, mapped: usize) {
        self.reserved_bytes -= mapped;
        self.pending_inserts -= 1;
    }

    /// Removes a page's entry after `free` unmapped it, and counts the free.
    pub(crate) fn remove_freed(&mut self, addr: usize) {
        self.counts.frees += 1;
        self.remove(addr);
    }

    /// Successful page allocations, seals and frees so far.
    pub(crate) fn counts(&self) -> Counts {
        self.counts
    }

    /// Removes a page's entry after its mapping is gone.
    pub(crate) fn remove(&mut self, addr: usize) {
        if let Some(slot) = self.map.remove(&addr) {
            self.live_bytes -= slot.mapped_len();
            if slot.busy() {
                self.busy_pages -= 1;
            }
        }
    }

    #[cfg(feature = "memfd")]
    /// Forgets every page (the child of a `fork` in memfd mode, where none of them is
    /// mapped: see `crate::execmem`), calling `gone(addr, mapped_len)` for each.
    pub(crate) fn forget_all_pages(&mut self, mut gone: impl FnMut(usize, usize)) {
        for (&addr, slot) in self.map.iter() {
            gone(addr, slot.mapped_len());
        }
        self.map.clear();
        // What is left mapped is the arenas' (they stay until their handles drop).
        self.live_bytes = self.arena_bytes;
        self.busy_pages = 0;
    }

    /// The live arenas, sorted by start.
    pub(crate) fn arenas(&self) -> &[ArenaSpan] {
        &self.arenas
    }

    /// Registers an arena. Fails only if the list must grow and its `mmap` fails.
    pub(crate) fn add_arena(&mut self, span: ArenaSpan) -> Result<(), allocator_api2::collections::TryReserveError> {
        self.arenas.try_reserve(1)?;
        let at = self.arenas.partition_point(|a| a.start < span.start);
        self.arenas.insert(at, span);
        Ok(())
    }

    /// Forgets the arena whose state is `shared`; returns whether it was registered.
    pub(crate) fn remove_arena(&mut self, shared: NonNull<crate::arena::Shared>) -> bool {
        match self.arenas.iter().position(|a| a.shared == shared) {
            Some(at) => {
                self.arenas.remove(at);
                true
            }
            None => false,
        }
    }

    /// The arena whose reservation contains `addr`.
    pub(crate) fn arena_containing(&self, addr: usize) -> Option<ArenaSpan> {
        let at = self.arenas.partition_point(|a| a.start <= addr);
        let span = *self.arenas.get(at.checked_sub(1)?)?;
        (addr < span.end).then_some(span)
    }

    /// Whether `shared` is a registered arena's state (a C handle check).
    #[cfg(feature = "capi")]
    pub(crate) fn arena_registered(&self, shared: NonNull<crate::arena::Shared>) -> bool {
        self.arenas.iter().any(|a| a.shared == shared)
    }

    pub(crate) fn arena_count(&self) -> usize {
        self.arenas.len()
    }

    /// The live arenas, sorted by start.
    pub(crate) fn arena_spans(&self) -> &[ArenaSpan] {
        &self.arenas
    }

    /// Counts `bytes` of an arena's pages, about to be made accessible, as live; `false`,
    /// changing nothing, if that would pass the quota. (No table entry is involved: arena
    /// functions live in the arena's own table.) [`Registry::release_arena_bytes`] gives
    /// them back, also when making them accessible fails.
    pub(crate) fn take_arena_bytes(&mut self, bytes: usize) -> bool {
        match (self.live_bytes + self.reserved_bytes).checked_add(bytes) {
            Some(total) if total <= self.quota => {
                self.live_bytes += bytes;
                self.arena_bytes += bytes;
                self.peak_bytes = self.peak_bytes.max(self.live_bytes);
                true
            }
            _ => false,
        }
    }

    /// Arena pages that went back to the kernel (or the whole arena on drop).
    pub(crate) fn release_arena_bytes(&mut self, bytes: usize) {
        self.live_bytes -= bytes;
        self.arena_bytes -= bytes;
    }

    pub(crate) fn arena_bytes(&self) -> usize {
        self.arena_bytes
    }

    pub(crate) fn set_quota(&mut self, bytes: usize) {
        self.quota = bytes;
    }

    pub(crate) fn quota(&self) -> usize {
        self.quota
    }

    pub(crate) fn live_pages(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn live_bytes(&self) -> usize {
        self.live_bytes
    }

    pub(crate) fn reserved(&self) -> usize {
        self.reserved_bytes
    }

    pub(crate) fn peak_bytes(&self) -> usize {
        self.peak_bytes
    }

    pub(crate) fn capacity(&self) -> usize {
        self.map.capacity()
    }
}

/// Why [`Registry::reserve`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reserve {
    /// The quota would be passed.
    Quota,
    /// The table could not grow.
    Storage,
}

/// Bytes the registry's own table has mapped now.
pub(crate) fn storage_bytes() -> usize {
    STORAGE_BYTES.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_packs_length_and_state() {
        let s = Slot::writable(4097, 0xbeef);
        assert_eq!(s.generation(), 0xbeef);
        assert_eq!(s.sealed(7).with_held(true).with_busy(true).generation(), 0xbeef);
        assert_eq!((s.len(), s.mapped_len(), s.state(), s.hash()), (4097, 8192, State::Writable, None));
        let t = s.sealed(0xdead_beef);
        assert_eq!((t.len(), t.state(), t.hash()), (4097, State::Executable, Some(0xdead_beef)));
        assert!(!t.held() && t.with_held(true).held() && !t.with_held(true).with_held(false).held());
        assert_eq!(t.with_held(true).hash(), Some(0xdead_beef));
        let b = s.with_busy(true);
        assert!(b.busy() && !b.held() && b.len() == 4097 && !b.with_busy(false).busy());
        assert!(!b.sealed(1).busy(), "sealing ends the busy period");
        let big = Slot::writable(MAX_PAGE_LEN - 1, Gen::MAX);
        assert_eq!((big.len(), big.generation()), (MAX_PAGE_LEN - 1, Gen::MAX));
        assert_eq!(core::mem::size_of::<(usize, Slot)>(), 24);
    }

    #[test]
    fn rounding() {
        assert_eq!(checked_round_to_pages(1), Some(4096));
        assert_eq!(checked_round_to_pages(4096), Some(4096));
        assert_eq!(checked_round_to_pages(4097), Some(8192));
        assert_eq!(checked_round_to_pages(isize::MAX as usize - 4095), Some(isize::MAX as usize - 4095));
        assert_eq!(checked_round_to_pages(isize::MAX as usize - 4094), None);
        assert_eq!(checked_round_to_pages(isize::MAX as usize), None);
        assert_eq!(checked_round_to_pages(usize::MAX), None);
    }

    #[test]
    fn hasher_spreads_consecutive_pages() {
        let hashes: [u64; 4] = core::array::from_fn(|i| AddrHashBuilder.hash_one(0x7f00_0000_0000usize + i * 4096));
        for i in 0..4 {
            for j in i + 1..4 {
                assert_ne!(hashes[i] >> 57, hashes[j] >> 57, "top-7-bit tags collide");
                assert_ne!(hashes[i] & 0xff, hashes[j] & 0xff, "bucket bits collide");
            }
        }
    }
}
