//! An arena's state and the syscalls that move its pages along: the reservation, the
//! lock around its [`Table`], and the bridges to the registry (quota, raw lookups).
//!
//! Invariants owned here:
//! - pages change protection only forwards: `PROT_NONE` → R|W (a push needs them) → R|X
//!   (publish) → `PROT_NONE` and released (every record on them retired); the `mprotect`
//!   to R|X covers only pages below which nothing will ever be placed again, so no page
//!   is ever writable and executable, and none is writable again after it was
//!   executable;
//! - accessible pages are counted in the registry's `live_bytes` (the quota) and
//!   `arena_bytes` from the moment they become accessible until they are released;
//! - lock order: an arena's lock may be held while the registry lock is taken, never the
//!   other way round. Raw-pointer lookups find the arena under the registry lock, take a
//!   reference (`refs`), drop the registry lock and only then lock the arena; dropping
//!   an arena unregisters it first and waits for those references to end before it
//!   unmaps anything.
//!
//! This module needs `unsafe` to build the state in its own mapping, to `mprotect`,
//! `madvise` and `munmap` the reservation, and to read and write the bytes of records.

#![allow(unsafe_code)]

use core::alloc::Layout;

use allocator_api2::alloc::Allocator;
use core::ptr::NonNull;
use core::slice;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use super::table::{Placement, Rec, Table};
use crate::error::Error;
use crate::execmem::{self, Backing};
use crate::global::MmapAlloc;
use crate::hash::fnv1a64;
use crate::registry::{ArenaSpan, REGISTRY};
use crate::sys::{self, PAGE_SIZE};

/// Arena serial numbers, so that an id from one arena is refused by every other (a
/// dropped arena's address may be reused by a new one; its serial never is).
static SERIALS: AtomicU64 = AtomicU64::new(1);

/// The least and the most a push commits at once (see `Shared::commit`).
const COMMIT_AHEAD_MIN: usize = 16 * PAGE_SIZE;
const COMMIT_AHEAD_MAX: usize = 64 * PAGE_SIZE;

/// One arena's state. It lives in a mapping of its own so that its address never
/// changes: the registry points at it.
pub(crate) struct Shared {
    /// Never reused within the process; part of every `FnId`.
    pub(crate) serial: u64,
    /// The reservation's start.
    pub(crate) base: NonNull<u8>,
    /// The reservation's length (whole pages).
    pub(crate) capacity: usize,
    /// How its pages are backed (see `crate::execmem`).
    backing: Backing,
    /// In memfd mode, the process whose file backs the pages (0 for anonymous memory):
    /// in a forked child the arena is inherited and refuses everything but its drop.
    owner: i32,
    /// Raw-surface lookups that found this arena in the registry and have not finished.
    refs: AtomicU32,
    /// The thread id running a `push_with` closure under the lock, 0 if none.
    emitter: AtomicI32,
    /// Whether `atfork_prepare` locked the table (and the fork hooks must release it);
    /// false when the forking thread already held it inside its own closure.
    fork_locked: AtomicBool,
    /// Functions pushed and not retired. Written only under the table lock (a load and a
    /// store, no read-modify-write on the push path), read by `wildx::stats` under the
    /// registry lock, which keeps the arena registered and mapped while it reads.
    pub(crate) live: AtomicUsize,
    /// Live `Entry` handles per record, outside the lock so that dropping an entry is one
    /// atomic decrement (see [`Gates`]).
    pub(crate) gates: Gates,
    table: crate::lock::Mutex<Table>,
}

/// Records counted in [`Gates`]' inline array; chunk `c` after it holds `INLINE << c`.
const GATES_INLINE: usize = 1024;
/// Enough chunks for every `u32` index.
const GATE_CHUNKS: usize = 23;

/// One record's entries: how many were made and how many have ended (both wrap); the
/// difference is how many are alive. Only a holder of the table lock makes one (a plain
/// load and store of `made`, no atomic read-modify-write), and dropping one is a single
/// `fetch_add` of `ended`, without the lock.
pub(crate) struct Gate {
    made: AtomicU32,
    ended: AtomicU32,
}

impl Gate {
    /// Counts a new entry; call under the table lock, after checking the record may be
    /// entered. [`Error::EntryAlive`] if `u32::MAX` are alive already.
    #[inline]
    pub(crate) fn enter(&self) -> Result<(), Error> {
        // Relaxed: `made` is written only under the lock we hold; `ended` can only grow
        // meanwhile, which makes the count we see an overestimate (a refusal at worst).
        let made = self.made.load(Ordering::Relaxed);
        let alive = made.wrapping_sub(self.ended.load(Ordering::Relaxed));
        if alive == u32::MAX {
            return Err(Error::EntryAlive { entries: alive });
        }
        // Relaxed: read back under the lock (the lock orders it), or by `alive`.
        self.made.store(made.wrapping_add(1), Ordering::Relaxed);
        Ok(())
    }

    /// Ends an entry (no lock). Release: the calls made through it happen before a retire
    /// that sees it ended.
    #[inline]
    pub(crate) fn leave(&self) {
        self.ended.fetch_add(1, Ordering::Release);
    }

    /// Entries alive now; call under the table lock (no entry can be made meanwhile).
    #[inline]
    pub(crate) fn alive(&self) -> u32 {
        // Acquire: pairs with `leave`'s Release (see there). Relaxed for `made`: written
        // only under the lock we hold.
        let ended = self.ended.load(Ordering::Acquire);
        self.made.load(Ordering::Relaxed).wrapping_sub(ended)
    }
}

/// Live-entry counts, one [`Gate`] per record, at addresses that never change while
/// the arena lives: the first [`GATES_INLINE`] in the state itself, the rest in chunks
/// that double in size, mapped (zeroed, from the registry's storage) by pushes under the table lock and unmapped only
/// when the arena goes. An [`super::Entry`] keeps a reference to its gate and ends it
/// without the lock.
///
/// Entries are made only under the table lock (in `Arena::entry`, after checking the
/// record is published and not retired), and `Arena::retire` reads the count under the
/// same lock: 0 alive there means no entry is alive and none can be made (the record is
/// retired before the lock is released). Ends are `Release` and the retire's read
/// `Acquire`, so every call made through an entry happens before its pages are released.
pub(crate) struct Gates {
    inline: [Gate; GATES_INLINE],
    chunks: [AtomicPtr<Gate>; GATE_CHUNKS],
}

impl Gates {
    const fn new() -> Gates {
        Gates {
            inline: [const { Gate { made: AtomicU32::new(0), ended: AtomicU32::new(0) } }; GATES_INLINE],
            chunks: [const { AtomicPtr::new(core::ptr::null_mut()) }; GATE_CHUNKS],
        }
    }

    /// Chunk and offset of record `index` (past the inline array).
    fn locate(index: usize) -> (usize, usize) {
        let c = (usize::BITS - 1 - (index / GATES_INLINE).leading_zeros()) as usize;
        (c, index - (GATES_INLINE << c))
    }

    fn chunk_layout(c: usize) -> Layout {
        // Cannot fail: at most 2^32 counts of 4 bytes.
        Layout::array::<Gate>(GATES_INLINE << c).expect("gate chunk layout")
    }

    /// The count of record `index`, if its chunk is mapped (always, for a pushed record).
    #[inline]
    pub(crate) fn get(&self, index: usize) -> Option<&Gate> {
        if index < GATES_INLINE {
            return self.inline.get(index);
        }
        let (c, off) = Gates::locate(index);
        // Acquire: pairs with the Release store in `ensure`, so the mapping is seen whole.
        let chunk = self.chunks.get(c)?.load(Ordering::Acquire);
        if chunk.is_null() {
            return None;
        }
        // SAFETY: a non-null chunk `c` is a live mapping of `INLINE << c` zeroed counts,
        // unmapped only in `release_chunks` when the arena goes (nothing borrows it then),
        // and `off < INLINE << c`.
        Some(unsafe { &*chunk.add(off) })
    }

    /// Maps the chunk holding record `index` if it is not yet. Call under the table lock.
    ///
    /// # Errors
    /// [`Error::RegistryStorage`] if the `mmap` fails; nothing changes then.
    fn ensure(&self, index: usize) -> Result<(), Error> {
        if index < GATES_INLINE {
            return Ok(());
        }
        let (c, _) = Gates::locate(index);
        let slot = self.chunks.get(c).ok_or(Error::RegistryStorage)?;
        // Relaxed: only lock holders store, and we hold the lock.
        if !slot.load(Ordering::Relaxed).is_null() {
            return Ok(());
        }
        // From the registry's storage, so `stats().registry_bytes` counts it.
        let chunk = crate::registry::Storage.allocate(Gates::chunk_layout(c)).map_err(|_| Error::RegistryStorage)?;
        // Release: see `get`. The mapping is zero-filled: every count starts at 0.
        slot.store(chunk.as_ptr().cast(), Ordering::Release);
        Ok(())
    }

    /// Unmaps every chunk and zeroes the inline counts, for an arena going away (or its
    /// state being kept for the next arena): no entry is alive.
    fn reset(&mut self) {
        for gate in &mut self.inline {
            *gate.made.get_mut() = 0;
            *gate.ended.get_mut() = 0;
        }
        for (c, slot) in self.chunks.iter_mut().enumerate() {
            let chunk = core::mem::replace(slot.get_mut(), core::ptr::null_mut());
            if let Some(chunk) = NonNull::new(chunk) {
                // SAFETY: chunk `c` came from `Storage::allocate` with this layout, and
                // nothing references it (`&mut self`: no entry is alive).
                unsafe { crate::registry::Storage.deallocate(chunk.cast(), Gates::chunk_layout(c)) };
            }
        }
    }
}

// SAFETY: every mutable part is behind `table`'s lock or an atomic; `base` names a
// reservation this state owns, valid from any thread.
unsafe impl Sync for Shared {}
// SAFETY: as for Sync; nothing in it is tied to a thread.
unsafe impl Send for Shared {}

pub(crate) type Guard<'a> = crate::lock::MutexGuard<'a, Table>;

impl Shared {
    /// Reserves `capacity` bytes (rounded up to pages) at a random address and registers
    /// the arena. Syscalls: `getrandom` and `mmap` (the reservation, the record table and
    /// the state's own page), `prctl` (the mapping's name), `munmap` on failure.
    pub(crate) fn create(capacity: usize) -> Result<NonNull<Shared>, Error> {
        if capacity == 0 {
            return Err(Error::ZeroLength);
        }
        let capacity = crate::registry::checked_round_to_pages(capacity).ok_or(Error::LengthOverflow)?;
        // At a random address (crate::placement), named `wildx-arena` where the kernel
        // names mappings; refused under READ_IMPLIES_EXEC.
        let (base, backing) = execmem::reserve(capacity)?;
        let state = match take_spare() {
            Some(state) => state,
            None => match MmapAlloc::map(state_layout()) {
                Some((state, _)) => state,
                None => {
                    // SAFETY: the reservation was made above and nobody else knows it.
                    let _ = unsafe { sys::munmap(base, capacity) };
                    return Err(Error::RegistryStorage);
                }
            },
        };
        // SAFETY: the block after the state lies inside the state's mapping
        // (`state_layout`), and is used by this arena's table alone.
        let block = unsafe { state.add(size_of::<Shared>().next_multiple_of(64)) };
        let table = match Table::with_alloc(capacity, RecAlloc { inline: Some((block, INLINE_RECS_BYTES)) }) {
            Ok(table) => table,
            Err(error) => {
                // SAFETY: the reservation was made above and nobody else knows it; the
                // state mapping holds nothing live.
                let _ = unsafe { sys::munmap(base, capacity) };
                // SAFETY: as above.
                unsafe { put_spare(state) };
                return Err(error);
            }
        };
        let shared = state.cast::<Shared>();
        // Relaxed: a unique number is all that is needed, no ordering.
        let serial = SERIALS.fetch_add(1, Ordering::Relaxed);
        let value = Shared {
            serial,
            base,
            capacity,
            backing,
            owner: execmem::owner_of(backing),
            refs: AtomicU32::new(0),
            emitter: AtomicI32::new(0),
            fork_locked: AtomicBool::new(false),
            live: AtomicUsize::new(0),
            gates: Gates::new(),
            table: crate::lock::Mutex::new(table),
        };
        // SAFETY: `state` is a fresh page-aligned mapping of at least size_of::<Shared>()
        // bytes, aligned for it (a page is more than its alignment), owned by nobody else.
        unsafe { shared.as_ptr().write(value) };
        let span = ArenaSpan { start: base.as_ptr() as usize, end: base.as_ptr() as usize + capacity, shared };
        if REGISTRY.write().add_arena(span).is_err() {
            // SAFETY: never published; the state and the reservation are ours to drop.
            unsafe { Shared::destroy(shared) };
            return Err(Error::RegistryStorage);
        }
        Ok(shared)
    }

    /// Unregisters the arena, waits for raw lookups in flight, then unmaps the
    /// reservation and the state, giving its accessible bytes back to the quota. Returns
    /// `false`, touching nothing, if `shared` is not a registered arena (a C handle freed
    /// twice).
    ///
    /// # Safety
    /// If `shared` is registered, nothing may use it afterwards except through the
    /// registry-checked paths (no `Entry` is alive: they borrow the `Arena`).
    pub(crate) unsafe fn unregister_and_destroy(shared: NonNull<Shared>) -> bool {
        if !REGISTRY.write().remove_arena(shared) {
            return false;
        }
        // SAFETY: it was registered, hence live, and only we could unregister it.
        let this = unsafe { shared.as_ref() };
        let mut rounds = 0u32;
        // SeqCst: pairs with the decrement in `end_lookup` (which then bumps the busy
        // futex), so the lookup's reads of the arena happen before we unmap it and a
        // sleep here cannot miss the wake.
        while this.refs.load(Ordering::SeqCst) != 0 {
            rounds += 1;
            if rounds < 64 {
                core::hint::spin_loop();
            } else {
                // The page layer's "a busy mark ended" futex: a static word, so the last
                // lookup never touches this arena's memory after its decrement.
                crate::page::sleep_until_busy_ends(|| this.refs.load(Ordering::SeqCst) != 0);
            }
        }
        // SAFETY: unregistered and unreferenced: we are the last user.
        unsafe { Shared::destroy(shared) };
        true
    }

    /// Unmaps the reservation and the state; counts the accessible bytes out.
    ///
    /// # Safety
    /// As [`Shared::unregister_and_destroy`], and the arena is not in the registry.
    unsafe fn destroy(shared: NonNull<Shared>) {
        // SAFETY: the caller guarantees `shared` is live and ours alone.
        let this = unsafe { shared.as_ref() };
        let table = this.table.lock();
        let accessible = accessible_bytes(&table);
        let mut table = table;
        for registration in table.take_registrations() {
            crate::profiling::code_retired(registration);
        }
        let committed = table.committed_end();
        drop(table);
        // An arena inherited across fork in memfd mode is not backed by this process's
        // file: only its reservation is unmapped, no file range is touched.
        let backing = if execmem::owns(this.owner) { this.backing } else { Backing::Anonymous };
        // SAFETY: the reservation is ours; no Entry or lookup uses it any more. A refused
        // munmap (a seccomp policy, or the map-count limit when splitting) leaves it
        // mapped but inaccessible to wildx: nothing better can be done in a drop.
        let unmapped = unsafe { execmem::unreserve(this.base, this.capacity, committed, backing) };
        debug_assert!(unmapped.is_ok(), "munmap of an arena reservation refused: {unmapped:?}");
        REGISTRY.write().release_arena_bytes(accessible);
        // SAFETY: the state is live and ours alone (the caller's contract): no entry (they
        // borrow the arena) or lookup references its counts.
        unsafe { (*shared.as_ptr()).gates.reset() };
        // SAFETY: the state is live and ours alone (the caller's contract); dropping it
        // drops the table, whose storage unmaps itself. Nothing reads it afterwards.
        unsafe { core::ptr::drop_in_place(shared.as_ptr()) };
        // SAFETY: the state's mapping came from MmapAlloc::map with this layout, its
        // contents were dropped above, and nothing uses it any more.
        unsafe { put_spare(shared.cast()) };
    }

    /// The table, locked; [`Error::Reentrant`] instead of a deadlock when the calling
    /// thread is the one inside a `push_with` closure of this arena.
    #[inline]
    pub(crate) fn lock(&self) -> Result<Guard<'_>, Error> {
        if self.owner != 0 && !execmem::owns(self.owner) {
            // A forked child's first look at wildx: forget the parent's pages.
            execmem::settle_fork();
            return Err(Error::Inherited);
        }
        match self.table.try_lock() {
            Some(guard) => Ok(guard),
            None => self.lock_contended(),
        }
    }

    #[cold]
    fn lock_contended(&self) -> Result<Guard<'_>, Error> {
        // Relaxed: the emitter writes its own tid before running the closure on this
        // same thread when it matters (a re-entrant call reads its own earlier store);
        // another thread's tid never equals ours whatever it reads.
        let emitter = self.emitter.load(Ordering::Relaxed);
        if emitter != 0 && emitter == sys::gettid() {
            return Err(Error::Reentrant);
        }
        Ok(self.table.lock())
    }

    /// Adds `delta` (wrapping: -1 is `usize::MAX`) to the live function count. The
    /// guard proves the table lock is held, the only place the count is written.
    pub(crate) fn count_live(&self, _locked: &Guard<'_>, delta: usize) {
        // Relaxed: writers are serialised by the lock; readers want a statistic.
        self.live.store(self.live.load(Ordering::Relaxed).wrapping_add(delta), Ordering::Relaxed);
    }

    /// The address of offset `off`.
    pub(crate) fn addr(&self, off: usize) -> usize {
        self.base.as_ptr() as usize + off
    }

    fn ptr(&self, off: usize) -> NonNull<u8> {
        // SAFETY: callers pass offsets inside the reservation, so the result is inside it
        // and not null.
        unsafe { self.base.add(off) }
    }

    /// Places `len` bytes, makes their pages accessible, runs `fill` on them (with the
    /// thread marked as the emitter when `emitter` is set), and records them as pending.
    /// On any error, or if `fill` unwinds, nothing is recorded and the bytes are `0xCC`
    /// again.
    pub(crate) fn push(
        &self,
        len: usize,
        align: usize,
        import: bool,
        emitter: bool,
        name: Option<&str>,
        fill: impl FnOnce(usize, &mut [u8]),
    ) -> Result<(usize, usize), Error> {
        let mut table = self.lock()?;
        let placement = table.place(len, align)?;
        table.reserve_one()?;
        self.gates.ensure(table.records().len())?;
        self.commit(&mut table, placement)?;
        let addr = self.addr(placement.start);
        let name = match name {
            Some(name) => Some(table.prepare_name(name, addr)?),
            None => None,
        };
        // The alignment padding before the new bytes, and the bytes a closure is handed,
        // are int3 (pages are filled lazily, so that committing ahead costs nothing; the
        // rest of the last pending page is filled at publish).
        let pad_from = table.next_offset(1);
        if emitter {
            // SAFETY: `[pad_from, end)` lies in R|W pages at or after `published_end` and
            // past every record, where no reference exists.
            unsafe { self.ptr(pad_from).as_ptr().write_bytes(0xCC, placement.end - pad_from) };
        } else if pad_from + INT3_RUN.len() <= table.committed_end() {
            // The padding is shorter than the alignment (at most 15 bytes): one 16-byte
            // store covers it with no call. What it writes past `start` is overwritten by
            // the copy below or lies past the new record in pending bytes, where int3
            // belongs anyway.
            // SAFETY: `[pad_from, pad_from + 16)` lies in R|W pages (below
            // `committed_end`), at or after `published_end` and past every record: no
            // reference into it exists.
            unsafe { self.ptr(pad_from).as_ptr().cast::<[u8; 16]>().write_unaligned(INT3_RUN) };
        } else {
            // SAFETY: as in the emitter case, for `[pad_from, start)`.
            unsafe { self.ptr(pad_from).as_ptr().write_bytes(0xCC, placement.start - pad_from) };
        }
        // SAFETY: `[start, end)` lies in pages made R|W by `commit` (now or earlier) and
        // not yet published (placement starts at or after `published_end`); the lock
        // keeps every other push and the publish off them while the slice lives.
        let bytes = unsafe { slice::from_raw_parts_mut(addr as *mut u8, len) };
        let refill = Refill { bytes: addr as *mut u8, len, emitter: &self.emitter, armed: true };
        if emitter {
            // Relaxed: read back only by this thread (see `lock`).
            self.emitter.store(sys::gettid(), Ordering::Relaxed);
        }
        fill(addr, bytes);
        refill.disarm();
        let index = table.add(placement, import, name);
        if !import {
            self.count_live(&table, 1);
        }
        Ok((index, addr))
    }

    /// Makes the pages `placement` needs R|W, counting them against the quota. Their
    /// bytes are zero until a push or a publish writes them: every byte is `0xCC` or
    /// pushed code before its page can be published. Syscalls: `mprotect`. Nothing
    /// changes on an error.
    ///
    /// Commits ahead: as much again as is committed already, at least
    /// [`COMMIT_AHEAD_MIN`] and at most [`COMMIT_AHEAD_MAX`] (never past the reservation),
    /// so a growing arena makes a logarithmic number of `mprotect` calls; if the quota has
    /// no room for that, exactly what is needed. Untouched committed pages cost no
    /// memory, only quota.
    fn commit(&self, table: &mut Guard<'_>, placement: Placement) -> Result<(), Error> {
        let (from, to) = placement.commit;
        if from == to {
            return Ok(());
        }
        let ahead = (from + from.clamp(COMMIT_AHEAD_MIN, COMMIT_AHEAD_MAX)).min(self.capacity);
        let committed = match self.commit_range(from, to.max(ahead)) {
            Ok(()) => to.max(ahead),
            Err(Error::QuotaExceeded { .. }) if ahead > to => {
                self.commit_range(from, to)?;
                to
            }
            Err(error) => return Err(error),
        };
        table.committed(committed);
        Ok(())
    }

    fn commit_range(&self, from: usize, to: usize) -> Result<(), Error> {
        let bytes = to - from;
        {
            let mut reg = REGISTRY.write();
            if !reg.take_arena_bytes(bytes) {
                let (live, quota) = (reg.live_bytes() + reg.reserved(), reg.quota());
                return Err(Error::QuotaExceeded { requested: bytes, live, quota });
            }
        }
        // SAFETY: `[from, to)` are reserved pages above `committed_end`: never accessible
        // before, so no reference to them exists.
        if let Err(errno) = unsafe { execmem::make_rw(self.ptr(from), bytes, self.backing) } {
            REGISTRY.write().release_arena_bytes(bytes);
            return Err(Error::Os(errno));
        }
        Ok(())
    }

    /// Hashes every pending record and turns their pages R|X in one `mprotect`; returns
    /// the published index range. Syscalls: `mprotect`. If it is refused nothing is
    /// published and the error says why.
    pub(crate) fn publish(&self, table: &mut Guard<'_>) -> Result<core::ops::Range<usize>, Error> {
        let Some((from, to)) = table.pending_pages() else {
            return Ok(0..0);
        };
        // The rest of the last pending page is int3, like the padding between records.
        let tail = table.next_offset(1);
        // SAFETY: `[tail, to)` are pending R|W bytes after the last record; no reference
        // into them exists (pushes hold none past their lock).
        unsafe { self.ptr(tail).as_ptr().write_bytes(0xCC, to - tail) };
        let base = self.base;
        let bytes = |rec: &Rec| {
            // SAFETY: a pending record lies in R|W pages of the reservation that the lock
            // keeps from changing.
            unsafe { slice::from_raw_parts(base.as_ptr().add(rec.off), rec.len()) }
        };
        // Four records at a time: FNV-1a is one long dependency chain per function, so
        // hashing four independent functions side by side keeps the multiplier busy.
        let mut quads = table.pending_mut().chunks_exact_mut(LANES);
        for quad in &mut quads {
            let hashes = fnv1a64_lanes([bytes(&quad[0]), bytes(&quad[1]), bytes(&quad[2]), bytes(&quad[3])]);
            for (rec, hash) in quad.iter_mut().zip(hashes) {
                rec.hash = hash;
            }
        }
        for rec in quads.into_remainder() {
            rec.hash = fnv1a64(bytes(rec));
        }
        // SAFETY: `[from, to)` are this arena's pending R|W pages; no slice over them
        // outlives a push (each push's slice ends before its lock is released), so
        // removing PROT_WRITE invalidates no reference. Nothing is placed below `to` again.
        unsafe { execmem::make_rx(self.ptr(from), to - from, self.backing) }?;
        let range = table.published(to);
        // Executable now, and nothing can call it before we return: the profilers' turn.
        let bytes = |off, len| {
            // SAFETY: published records lie in R|X pages that the lock keeps from being
            // released while the hook reads them.
            unsafe { self.bytes(off, len) }
        };
        let registration = crate::profiling::code_published(table.syms(range.clone(), bytes));
        table.batch_published(range.clone(), registration);
        Ok(range)
    }

    /// Releases `[from, to)`: replaced by inaccessible fresh memory, its own memory back
    /// to the kernel. Syscalls: `mmap` (and `fallocate` in memfd mode). On a refused
    /// `mmap` nothing changed.
    pub(crate) fn release(&self, from: usize, to: usize) -> Result<(), Error> {
        if from == to {
            return Ok(());
        }
        // SAFETY: every record on these pages is retired and no Entry is alive for any
        // of them (checked by the caller under the lock), so no reference into them
        // exists; they lie in this arena's reservation, backed as `self.backing` says.
        unsafe { execmem::release(self.ptr(from), to - from, self.backing) }.map_err(Error::Os)?;
        REGISTRY.write().release_arena_bytes(to - from);
        Ok(())
    }

    #[cfg(feature = "memfd")]
    /// In a forked child (memfd mode), where the arena's views of the parent's file were
    /// not inherited: plugs their addresses with inaccessible mappings so nothing else
    /// lands there and a stale call faults. Does nothing if the table is locked (a
    /// fork without the hooks, while a thread of the parent held it).
    pub(crate) fn plug_inherited(&self) {
        let Some(table) = self.table.try_lock() else { return };
        let mut run = None;
        for page in (0..table.committed_end() + PAGE_SIZE).step_by(PAGE_SIZE) {
            let hole = page < table.committed_end() && !table.page_released(page);
            match (hole, run) {
                (true, None) => run = Some(page),
                (false, Some(from)) => {
                    crate::fork::plug(self.addr(from), page - from);
                    run = None;
                }
                _ => {}
            }
        }
    }

    /// For `atfork_prepare`: locks the table if that can be done at once (and remembers
    /// to release it after the fork), or finds that the calling thread holds it already
    /// (inside its own `push_with` closure, which releases it). `false` if another thread
    /// holds it.
    pub(crate) fn lock_for_fork(&self) -> bool {
        if let Some(guard) = self.table.try_lock() {
            core::mem::forget(guard);
            // Relaxed: read back by this thread (parent) or its only copy (child).
            self.fork_locked.store(true, Ordering::Relaxed);
            return true;
        }
        // Relaxed: as in `lock`.
        let emitter = self.emitter.load(Ordering::Relaxed);
        emitter != 0 && emitter == sys::gettid()
    }

    /// Releases what [`Shared::lock_for_fork`] took, if it took the table: unlocks it in
    /// the parent, or (`in_child`) resets it in the child.
    ///
    /// # Safety
    /// The calling thread ran `lock_for_fork` on this arena (or, `in_child`, is the only
    /// thread of the child of that thread's fork), and holds no guard of this table.
    pub(crate) unsafe fn release_after_fork(&self, in_child: bool) {
        // Relaxed: as in `lock_for_fork`.
        if !self.fork_locked.swap(false, Ordering::Relaxed) {
            return;
        }
        if in_child {
            // SAFETY: forwarded: one thread, no guard.
            unsafe { self.table.reset_in_child() }
        } else {
            // SAFETY: forwarded: this thread locked it and forgot the guard.
            unsafe { self.table.unlock_unguarded() }
        }
    }

    /// The bytes of record `off..off + len`.
    ///
    /// # Safety
    /// The record's pages must be accessible (not released) while the slice lives: hold
    /// the lock, or an `Entry` on a function on them.
    pub(crate) unsafe fn bytes(&self, off: usize, len: usize) -> &[u8] {
        // SAFETY: forwarded from the caller's contract.
        unsafe { slice::from_raw_parts(self.ptr(off).as_ptr(), len) }
    }
}

/// The block after the state for the first records: 1365 records of 24 bytes, so the
/// table of an arena of up to about 64 KiB (one record per 48 bytes, see `Table::new`)
/// needs no mapping of its own.
const INLINE_RECS_BYTES: usize = 8 * PAGE_SIZE;

/// The state's mapping: the [`Shared`] itself, then a block for the first records.
fn state_layout() -> Layout {
    // Cannot fail: a few pages, aligned as `Shared`.
    Layout::from_size_align(size_of::<Shared>().next_multiple_of(64) + INLINE_RECS_BYTES, align_of::<Shared>().max(64))
        .expect("arena state layout")
}

/// The allocator of an arena's record table: a block inside the state's mapping for as
/// long as the records fit in it (the table of a short-lived arena then costs no
/// `mmap`, `munmap` or page faults: the block is kept with the state, see [`SPARE`]),
/// then the registry's [`Storage`](crate::registry::Storage). The default has no block.
#[derive(Default)]
pub(crate) struct RecAlloc {
    /// The block's start (8-aligned) and length; `None` for no block.
    inline: Option<(NonNull<u8>, usize)>,
}

impl RecAlloc {
    fn is_inline(&self, ptr: NonNull<u8>) -> bool {
        self.inline.is_some_and(|(block, _)| block == ptr)
    }
}

// SAFETY: the inline block lies in the arena's state mapping, which outlives the table
// (the table is dropped before the state is unmapped or kept), and is handed to the one
// vector this allocator serves only while that vector has no buffer (`allocate` is called
// only then); everything else is `Storage`'s, whose contract holds. Blocks are 8-aligned
// at least (the state block is 64-aligned, `Storage` page-aligned).
unsafe impl allocator_api2::alloc::Allocator for RecAlloc {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        match self.inline {
            Some((block, len)) if layout.size() <= len && layout.align() <= 64 => {
                Ok(NonNull::slice_from_raw_parts(block, len))
            }
            _ => crate::registry::Storage.allocate(layout),
        }
    }

    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        if !self.is_inline(ptr) {
            // SAFETY: not the inline block, so it came from `Storage` with `old`.
            return unsafe { crate::registry::Storage.grow(ptr, old, new) };
        }
        let moved = crate::registry::Storage.allocate(new)?;
        // SAFETY: `ptr` holds `old.size()` initialised-or-not bytes of the inline block
        // and `moved` is a fresh, disjoint block of at least `new.size() >= old.size()`.
        unsafe { moved.cast::<u8>().as_ptr().copy_from_nonoverlapping(ptr.as_ptr(), old.size()) };
        Ok(moved)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if !self.is_inline(ptr) {
            // SAFETY: not the inline block, so it came from `Storage` with `layout`.
            unsafe { crate::registry::Storage.deallocate(ptr, layout) };
        }
    }
}

/// The state mapping of the last arena dropped, kept for the next [`Shared::create`]:
/// an arena's state with its inline [`Gates`] and record block is eleven pages, and
/// mapping, faulting in and unmapping them (and a table of its own) was about a third of
/// what a short-lived arena of 1000 functions cost beyond the syscall floor. At most one
/// is kept (about 40 KiB, resident once used); null if none.
static SPARE: AtomicPtr<u8> = AtomicPtr::new(core::ptr::null_mut());

/// The kept state mapping, if any: `state_layout()` bytes, page-aligned, whose
/// previous contents were dropped (to be overwritten whole).
fn take_spare() -> Option<NonNull<u8>> {
    // Acquire: pairs with the Release in `put_spare`; the mapping is ours alone now.
    NonNull::new(SPARE.swap(core::ptr::null_mut(), Ordering::Acquire))
}

/// Keeps a state mapping for the next arena, or unmaps it if one is kept already.
///
/// # Safety
/// `state` came from `MmapAlloc::map(state_layout())`, its contents were dropped
/// and nothing uses it any more.
unsafe fn put_spare(state: NonNull<u8>) {
    // Release: our last writes to it happen before the next taker's use.
    if SPARE.compare_exchange(core::ptr::null_mut(), state.as_ptr(), Ordering::Release, Ordering::Relaxed).is_err() {
        // SAFETY: forwarded from the caller's contract.
        let _ = unsafe { MmapAlloc::unmap(state, state_layout()) };
    }
}

/// Sixteen int3: alignment padding, written with one store.
const INT3_RUN: [u8; 16] = [0xCC; 16];

/// How many functions [`fnv1a64_lanes`] hashes at once.
const LANES: usize = 4;

/// [`fnv1a64`] of each of `inputs`, computed side by side: the same values, in about the
/// time of one when the lengths are alike (each hash is a chain of dependent multiplies;
/// four chains overlap in the pipeline).
fn fnv1a64_lanes(inputs: [&[u8]; LANES]) -> [u64; LANES] {
    let common = inputs.iter().map(|bytes| bytes.len()).min().unwrap_or(0);
    let [a, b, c, d] = inputs.map(|bytes| bytes.split_at(common));
    let mut h = [crate::hash::FNV_OFFSET_BASIS; LANES];
    for (((&x, &y), &z), &w) in a.0.iter().zip(b.0).zip(c.0).zip(d.0) {
        h[0] = (h[0] ^ u64::from(x)).wrapping_mul(crate::hash::FNV_PRIME);
        h[1] = (h[1] ^ u64::from(y)).wrapping_mul(crate::hash::FNV_PRIME);
        h[2] = (h[2] ^ u64::from(z)).wrapping_mul(crate::hash::FNV_PRIME);
        h[3] = (h[3] ^ u64::from(w)).wrapping_mul(crate::hash::FNV_PRIME);
    }
    for (hash, rest) in h.iter_mut().zip([a.1, b.1, c.1, d.1]) {
        for &byte in rest {
            *hash = (*hash ^ u64::from(byte)).wrapping_mul(crate::hash::FNV_PRIME);
        }
    }
    h
}

/// Bytes of the reservation that are accessible now (committed minus released).
fn accessible_bytes(table: &Table) -> usize {
    let released =
        (0..table.published_end()).step_by(PAGE_SIZE).filter(|&page| table.page_released(page)).count() * PAGE_SIZE;
    table.committed_end() - released
}

/// Puts `0xCC` back over a push's bytes if its closure unwinds, and clears the emitter.
struct Refill<'a> {
    bytes: *mut u8,
    len: usize,
    emitter: &'a AtomicI32,
    armed: bool,
}

impl Refill<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Refill<'_> {
    fn drop(&mut self) {
        // Relaxed: read back only by this thread (see `Shared::lock`).
        self.emitter.store(0, Ordering::Relaxed);
        if self.armed {
            // SAFETY: the push's R|W bytes, still locked (the guard is dropped after
            // this); the closure's `&mut [u8]` is gone with its unwinding frame.
            unsafe { self.bytes.write_bytes(0xCC, self.len) };
        }
    }
}

/// Runs `f` on the arena whose reservation holds `addr`, if any, without holding the
/// registry lock while `f` runs (see the lock order in the module docs).
pub(crate) fn with_arena<T>(addr: usize, f: impl FnOnce(&Shared) -> T) -> Option<T> {
    let span = {
        let reg = REGISTRY.read();
        let span = reg.arena_containing(addr)?;
        // SAFETY: registered arenas are live; unregistering needs the write lock.
        let shared = unsafe { span.shared.as_ref() };
        // Relaxed: the registry lock orders this increment before the drop's unregister
        // (which takes the write lock), and the drop then waits for it to fall.
        shared.refs.fetch_add(1, Ordering::Relaxed);
        span
    };
    // SAFETY: `refs` keeps the arena's state and reservation mapped until we decrement.
    let shared = unsafe { span.shared.as_ref() };
    let result = f(shared);
    end_lookup(shared);
    Some(result)
}

/// For the signal-safe queries: runs `f` on the arena holding `addr` and its table,
/// never waiting: the registry's read lock (held throughout, so the arena cannot be
/// unregistered and unmapped meanwhile) and the table's lock are each tried once.
/// `Ok(None)` if no arena of this process holds `addr` (an arena inherited across a
/// fork in memfd mode is not mapped here). Syscalls: at most a futex wake (the registry
/// lock's) and, in memfd mode, `getpid`.
///
/// # Errors
/// [`Error::WouldBlock`] if either lock is held: the holder may be the code the signal
/// interrupted.
pub(crate) fn try_with_table<T>(addr: usize, f: impl FnOnce(&Shared, &Table) -> T) -> Result<Option<T>, Error> {
    let reg = REGISTRY.try_read().ok_or(Error::WouldBlock)?;
    let Some(span) = reg.arena_containing(addr) else { return Ok(None) };
    // SAFETY: registered arenas are live; unregistering needs the write lock, which the
    // read guard held until we return keeps out.
    let shared = unsafe { span.shared.as_ref() };
    if shared.owner != 0 && !execmem::owns(shared.owner) {
        return Ok(None);
    }
    let table = shared.table.try_lock().ok_or(Error::WouldBlock)?;
    Ok(Some(f(shared, &table)))
}

/// Ends a lookup's reference; the last one wakes a drop waiting for it.
fn end_lookup(shared: &Shared) {
    // SeqCst: our reads of the arena happen before its drop sees the count fall (and see
    // `unregister_and_destroy`). After it falls to 0 the arena may be unmapped at once, so
    // the wake goes through the page layer's static futex word, not this arena's memory.
    if shared.refs.fetch_sub(1, Ordering::SeqCst) == 1 {
        crate::page::busy_ended();
    }
}

/// Whether `shared` is a live arena's state; `f` runs on it with the same protection as
/// [`with_arena`]. For handles that come from C.
#[cfg(feature = "capi")]
pub(crate) fn with_handle<T>(shared: *const Shared, f: impl FnOnce(&Shared) -> T) -> Option<T> {
    let shared = NonNull::new(shared as *mut Shared)?;
    {
        let reg = REGISTRY.read();
        if !reg.arena_registered(shared) {
            return None;
        }
        // SAFETY: registered, hence live (see `with_arena`).
        unsafe { shared.as_ref() }.refs.fetch_add(1, Ordering::Relaxed);
    }
    // SAFETY: as in `with_arena`.
    let this = unsafe { shared.as_ref() };
    let result = f(this);
    end_lookup(this);
    Some(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_hash_as_fnv1a64_does() {
        let data: [u8; 300] = core::array::from_fn(|i| (i * 151 + 7) as u8);
        for lens in [[0, 0, 0, 0], [40, 40, 40, 40], [1, 40, 7, 300], [300, 0, 64, 65], [13, 200, 13, 2]] {
            let inputs = [&data[..lens[0]], &data[3..3 + lens[1].min(297)], &data[..lens[2]], &data[..lens[3]]];
            assert_eq!(fnv1a64_lanes(inputs), inputs.map(fnv1a64), "lengths {lens:?}");
        }
    }
}
