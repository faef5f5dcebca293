//! The arena's public handles, [`Arena`], [`FnId`] and [`Entry`], and the raw-surface
//! lookups of arena functions.
//!
//! Invariant owned here: an [`Entry`] exists only for a published, unretired function of
//! a live arena, and that stays true for as long as it lives (it borrows the arena, and
//! retiring its function is refused while it lives).
//!
//! This module needs `unsafe` to call into published code, to read its bytes for
//! hashing, and to assert that the handles may cross threads.

#![allow(unsafe_code)]

use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;

use super::shared::{Gate, Shared, try_with_table, with_arena};
use super::table::{self, FN_ALIGN, Rec, RecState, SLOT_ALIGN};

use crate::error::Error;
use crate::hash::fnv1a64;
use crate::page::PageInfo;
use crate::registry::State;
use crate::sys::PAGE_SIZE;
use crate::typed::{FnRef, SafeSignature, Signature};

/// Functions pushed into live arenas and not yet retired, process-wide: the sum of the
/// registered arenas' counts, read under the registry lock `reg` (which keeps them
/// registered, hence mapped).
pub(crate) fn live_functions(reg: &crate::registry::Registry) -> usize {
    reg.arena_spans()
        .iter()
        .map(|span| {
            // SAFETY: a registered arena's state is live while the registry lock is held
            // (unregistering takes the write lock, and comes before the unmap).
            let shared = unsafe { span.shared.as_ref() };
            // Relaxed: a statistic.
            shared.live.load(core::sync::atomic::Ordering::Relaxed)
        })
        .sum()
}

/// One reserved range of address space holding many functions.
///
/// Pages become R|W (filled with `0xCC`) as pushes need them; [`Arena::publish`] hashes
/// everything pushed since the last publish and makes it R|X with one `mprotect`; later
/// pushes continue on fresh pages. The quota counts accessible pages, not the
/// reservation. Every method takes `&self` and synchronises inside: one thread can push
/// and publish while others call published functions. Dropping the arena unmaps it all.
///
/// See the [module docs](crate::arena) for an example.
#[must_use = "dropping an Arena unmaps all its functions"]
pub struct Arena {
    shared: NonNull<Shared>,
}

// SAFETY: the arena's state is `Sync` (a lock and atomics) and lives in its own mapping;
// the handle is just its address.
unsafe impl Send for Arena {}
// SAFETY: as for Send: every method synchronises on the state's lock.
unsafe impl Sync for Arena {}

/// A function in an arena: which arena, and which function. `Copy`, compared by value;
/// an id from one arena is refused by every other ([`Error::ForeignFn`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FnId {
    arena: u64,
    index: u32,
}

/// A function [`Arena::push_checked`] validated as signature `F`: its [`FnId`] with the
/// signature the validator proved, for [`Arena::checked_entry`].
#[cfg(feature = "validate")]
#[derive(Debug)]
pub struct CheckedFn<F> {
    id: FnId,
    sig: PhantomData<F>,
}

#[cfg(feature = "validate")]
impl<F> Clone for CheckedFn<F> {
    fn clone(&self) -> Self {
        *self
    }
}

#[cfg(feature = "validate")]
impl<F> Copy for CheckedFn<F> {}

#[cfg(feature = "validate")]
impl<F> CheckedFn<F> {
    /// The function's id (for `retire`, `verify`, `addr`).
    #[must_use]
    pub fn id(self) -> FnId {
        self.id
    }
}

impl Arena {
    /// Reserves `capacity` bytes (rounded up to whole pages) of address space,
    /// inaccessible until pushes need it. Syscalls: `mmap` (the reservation and one page
    /// for the arena's state).
    ///
    /// # Errors
    /// [`Error::ZeroLength`] for 0, [`Error::LengthOverflow`] if rounding passes
    /// `isize::MAX`, [`Error::Os`] if the kernel refuses the reservation,
    /// [`Error::RegistryStorage`] if wildx's own tables cannot grow.
    pub fn new(capacity: usize) -> Result<Arena, Error> {
        Ok(Arena { shared: Shared::create(capacity)? })
    }

    /// A handle over an arena's state, for the C surface (which must never drop it).
    #[cfg(feature = "capi")]
    pub(crate) fn from_shared(shared: &Shared) -> Arena {
        Arena { shared: NonNull::from(shared) }
    }

    /// Gives up the handle without unmapping: the C surface keeps the state's address.
    #[cfg(feature = "capi")]
    pub(crate) fn into_shared(self) -> *mut Shared {
        let shared = self.shared.as_ptr();
        core::mem::forget(self);
        shared
    }

    pub(crate) fn shared(&self) -> &Shared {
        // SAFETY: the state lives until this handle drops (it is destroyed only in Drop).
        unsafe { self.shared.as_ref() }
    }

    /// The reservation's start address.
    #[must_use]
    pub fn base(&self) -> usize {
        self.shared().base.as_ptr() as usize
    }

    /// The reservation's length in bytes (whole pages).
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.shared().capacity
    }

    /// Where the next [`Arena::push`] will land: 16-byte aligned. Assemble
    /// position-dependent code (rel32 calls, RIP-relative constants) for this address,
    /// then push it, from one thread; with several pushing threads use
    /// [`Arena::push_with`], which hands the closure the address it will land at.
    ///
    /// # Panics
    /// If called from inside a [`Arena::push_with`] closure of the same arena (the
    /// closure is given that address already).
    #[must_use]
    pub fn next_addr(&self) -> usize {
        let table = self.shared().lock().expect("Arena::next_addr called inside this arena's push_with closure");
        self.shared().addr(table.next_offset(FN_ALIGN))
    }

    /// Copies `code` in as a new function at [`Arena::next_addr`]. It is not callable
    /// until the next [`Arena::publish`]. Syscalls: `mprotect` when it needs a fresh page.
    ///
    /// # Errors
    /// [`Error::ZeroLength`], [`Error::LengthOverflow`] (over 512 MiB),
    /// [`Error::ArenaFull`], [`Error::QuotaExceeded`] for the pages it needs,
    /// [`Error::Os`], [`Error::RegistryStorage`], [`Error::Reentrant`]. Nothing changes.
    pub fn push(&self, code: &[u8]) -> Result<FnId, Error> {
        let (index, _) =
            self.shared().push(code.len(), FN_ALIGN, false, false, None, |_, dst| dst.copy_from_slice(code))?;
        Ok(self.id(index))
    }

    /// [`Arena::push`] with a name for profilers and debuggers: the perf map, the jitdump
    /// file and gdb (see [`crate::profiling`]) show `name` for this function once it is
    /// published. The name is copied (into memory wildx maps itself), control bytes
    /// become `_`, and it is cut to [`crate::profiling::MAX_NAME_LEN`] bytes. Unnamed
    /// functions are named after their address (`wildx_0x...`).
    ///
    /// ```
    /// let arena = wildx::Arena::new(4096)?;
    /// let id = arena.push_named("answer", &[0xb8, 42, 0, 0, 0, 0xc3])?;
    /// arena.publish()?;
    /// # let _ = id;
    /// # Ok::<(), wildx::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Arena::push`]; [`Error::Os`] if the name store cannot grow.
    pub fn push_named(&self, name: &str, code: &[u8]) -> Result<FnId, Error> {
        let (index, _) =
            self.shared().push(code.len(), FN_ALIGN, false, false, Some(name), |_, dst| dst.copy_from_slice(code))?;
        Ok(self.id(index))
    }

    /// Reserves `len` bytes for a new function, calls `emit(addr, bytes)` with the
    /// address they will have and the writable bytes (all `0xCC`), and commits what it
    /// wrote as one function; atomic with respect to other pushing threads.
    ///
    /// The arena is locked while `emit` runs: other threads' pushes wait, calls into
    /// published functions do not. Calling this arena's methods from inside `emit`
    /// returns [`Error::Reentrant`] (`next_addr` panics) instead of deadlocking. If `emit`
    /// panics, nothing is pushed.
    ///
    /// ```
    /// let arena = wildx::Arena::new(4096)?;
    /// // call rel32 to itself would need its own address: emit gets it.
    /// let id = arena.push_with(5, |addr, bytes| {
    ///     // mov eax, imm32 (the low half of our own address); ret
    ///     let imm = (addr as u32).to_le_bytes();
    ///     bytes.copy_from_slice(&[0xb8, imm[0], imm[1], imm[2], imm[3]]);
    /// })?;
    /// # let _ = id;
    /// # Ok::<(), wildx::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Arena::push`] with `len`.
    pub fn push_with(&self, len: usize, emit: impl FnOnce(usize, &mut [u8])) -> Result<FnId, Error> {
        let (index, _) = self.shared().push(len, FN_ALIGN, false, true, None, emit)?;
        Ok(self.id(index))
    }

    /// Stores `target` (a host function's address) in an 8-byte slot inside the arena and
    /// returns the slot's address, so arena code reaches it with
    /// `call qword ptr [rip + disp32]` wherever the kernel put the host. The slot becomes
    /// read-only at the next [`Arena::publish`]. May move [`Arena::next_addr`].
    ///
    /// # Errors
    /// [`Error::ArenaFull`], [`Error::QuotaExceeded`], [`Error::Os`],
    /// [`Error::RegistryStorage`], [`Error::Reentrant`]. Nothing changes.
    pub fn import(&self, target: usize) -> Result<usize, Error> {
        let bytes = (target as u64).to_le_bytes();
        let (_, addr) = self.shared().push(8, SLOT_ALIGN, true, false, None, |_, dst| dst.copy_from_slice(&bytes))?;
        Ok(addr)
    }

    /// Makes everything pushed or imported since the last publish callable: records each
    /// new function's FNV-1a 64 hash over its own bytes, then turns their pages R|X with
    /// one `mprotect`. Later pushes go to fresh pages. Publishing nothing is a no-op.
    ///
    /// # Errors
    /// [`Error::Os`] if the kernel refuses the `mprotect` (the functions stay pending),
    /// [`Error::Reentrant`].
    pub fn publish(&self) -> Result<(), Error> {
        let mut table = self.shared().lock()?;
        self.shared().publish(&mut table).map(drop)
    }

    /// Validates `code` as a function of signature `F` (every rule of
    /// [`crate::jit::compile`]: decoding, control flow, forbidden instructions, its own
    /// stack frame only, the ABI) and pushes it. The returned [`CheckedFn`] gives a
    /// typed [`Entry`] without `unsafe` once published: [`Arena::checked_entry`].
    ///
    /// Validated code is position-independent (its only memory operands are its frame
    /// and its own bytes, its only call is to its own start), so where it lands does not
    /// change what the validator proved.
    ///
    /// ```
    /// let arena = wildx::Arena::new(4096)?;
    /// // lea eax, [rdi + rsi]; ret
    /// let add = arena.push_checked::<extern "sysv64" fn(i32, i32) -> i32>(&[0x8d, 0x04, 0x37, 0xc3])?;
    /// arena.publish()?;
    /// assert_eq!(arena.checked_entry(add)?.call((40, 2)), 42);
    /// // Writing through a pointer argument is refused:
    /// assert!(arena.push_checked::<extern "sysv64" fn(i64)>(&[0x89, 0x07, 0xc3]).is_err());
    /// # Ok::<(), wildx::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Rejected`] with the offset and the rule broken (nothing pushed), and
    /// those of [`Arena::push`].
    #[cfg(feature = "validate")]
    pub fn push_checked<F: crate::validate::ValidSignature>(&self, code: &[u8]) -> Result<CheckedFn<F>, Error> {
        crate::validate::function::<F>(code).map_err(Error::Rejected)?;
        Ok(CheckedFn { id: self.push(code)?, sig: PhantomData })
    }

    /// A typed handle to a function [`Arena::push_checked`] validated: safe, because the
    /// validator proved its bytes implement `F`.
    ///
    /// # Errors
    /// As [`Arena::entry`].
    #[cfg(feature = "validate")]
    pub fn checked_entry<F: crate::validate::ValidSignature>(&self, f: CheckedFn<F>) -> Result<Entry<'_, F>, Error> {
        // SAFETY: `push_checked` validated these exact bytes as `F` before copying them
        // in, and published bytes never change (a tampered page is what verify finds).
        unsafe { self.entry::<F>(f.id) }
    }

    /// The address of function `id` (its first byte).
    ///
    /// # Errors
    /// [`Error::ForeignFn`], [`Error::Reentrant`].
    pub fn addr(&self, id: FnId) -> Result<usize, Error> {
        let table = self.shared().lock()?;
        let rec = self.rec(&table, id)?;
        Ok(self.shared().addr(rec.off))
    }

    /// The id of the function starting at `addr` (an address [`Arena::push`]ed code
    /// landed at).
    ///
    /// # Errors
    /// [`Error::NotRegistered`] if no function of this arena starts there;
    /// [`Error::Reentrant`].
    pub fn id_at(&self, addr: usize) -> Result<FnId, Error> {
        let table = self.shared().lock()?;
        let off = addr.checked_sub(self.base()).ok_or(Error::NotRegistered)?;
        match table.index_at(off) {
            Some(index) if table.get(index).is_some_and(|r| !r.is_import()) => Ok(self.id(index)),
            _ => Err(Error::NotRegistered),
        }
    }

    /// A typed handle to published function `id`, through which it is called.
    ///
    /// While the entry lives the function cannot be retired ([`Arena::retire`] returns
    /// [`Error::EntryAlive`]), and the entry borrows the arena, so calling through it
    /// always runs the published bytes.
    ///
    /// # Safety
    /// The function's bytes must implement `F` as [`crate::Page::seal`] requires: read
    /// the arguments `F` defines, return a valid `F` return value, preserve callee-saved
    /// registers, and touch no memory safe Rust calling `F` could not.
    ///
    /// # Errors
    /// [`Error::ForeignFn`]; [`Error::WrongState`] for a pushed but unpublished function;
    /// [`Error::Retired`]; [`Error::Reentrant`].
    pub unsafe fn entry<F: Signature>(&self, id: FnId) -> Result<Entry<'_, F>, Error> {
        let table = self.shared().lock()?;
        let rec = *self.rec(&table, id)?;
        callable(&rec)?;
        let ptr = NonNull::new(self.shared().addr(rec.off) as *mut u8).ok_or(Error::Null)?;
        // Every pushed record has its count mapped (see `Gates`).
        let gate = self.shared().gates.get(id.index as usize).ok_or(Error::ForeignFn)?;
        gate.enter()?;
        drop(table);
        Ok(Entry { gate, ptr, len: rec.len(), hash: rec.hash, sig: PhantomData })
    }

    /// Re-hashes function `id` and compares with the hash recorded at publish.
    ///
    /// # Errors
    /// [`Error::IntegrityMismatch`] if its bytes changed, and the errors of
    /// [`Arena::entry`].
    pub fn verify(&self, id: FnId) -> Result<(), Error> {
        let table = self.shared().lock()?;
        let rec = *self.rec(&table, id)?;
        callable(&rec)?;
        // SAFETY: a published, unretired record's pages are R|X and stay so while we hold
        // the lock.
        let now = fnv1a64(unsafe { self.shared().bytes(rec.off, rec.len()) });
        if now != rec.hash {
            return Err(Error::IntegrityMismatch { sealed: rec.hash, now });
        }
        Ok(())
    }

    /// Verifies every published byte of the arena that is still mapped: each function and
    /// import slot against its hash, and every byte between them (alignment padding, the
    /// rest of a published page) against `0xCC`. One exception: a retired function some of
    /// whose pages went back to the kernel cannot be re-hashed whole, so the part of it
    /// left on a page shared with a live function is not checked (it is no longer
    /// enterable through wildx; only a stale raw pointer reaches it).
    ///
    /// # Errors
    /// The first [`Error::IntegrityMismatch`] found (for padding, `sealed` is the hash of
    /// the `0xCC` run and `now` that of its bytes now); [`Error::Reentrant`].
    pub fn verify_all(&self) -> Result<(), Error> {
        let shared = self.shared();
        let table = shared.lock()?;
        let end = table.published_end();
        let mut cursor = 0;
        let check_gap = |from: usize, to: usize| -> Result<(), Error> {
            let mut at = from;
            while at < to {
                let page = at & !(PAGE_SIZE - 1);
                let stop = to.min(page + PAGE_SIZE);
                if !table.page_released(page) {
                    // SAFETY: a published page that is not released is R|X, and the lock
                    // keeps it so.
                    let bytes = unsafe { shared.bytes(at, stop - at) };
                    if bytes.iter().any(|&b| b != 0xCC) {
                        let sealed = fnv1a64_of_int3(stop - at);
                        return Err(Error::IntegrityMismatch { sealed, now: fnv1a64(bytes) });
                    }
                }
                at = stop;
            }
            Ok(())
        };
        for rec in table.records().iter().take_while(|r| r.off < end) {
            check_gap(cursor, rec.off)?;
            let released = (rec.off & !(PAGE_SIZE - 1)..rec.end()).step_by(PAGE_SIZE).any(|p| table.page_released(p));
            if !released {
                // SAFETY: none of the record's pages is released, and they are below
                // `published_end`: R|X, kept so by the lock.
                let now = fnv1a64(unsafe { shared.bytes(rec.off, rec.len()) });
                if now != rec.hash {
                    return Err(Error::IntegrityMismatch { sealed: rec.hash, now });
                }
            }
            cursor = rec.end();
        }
        check_gap(cursor, end)
    }

    /// Retires function `id`: it can no longer be entered or verified through wildx, and
    /// every page left holding only retired functions goes back to the kernel
    /// (inaccessible, memory released), so a stale pointer into it faults. Syscalls:
    /// `mprotect` and `madvise` when a page is released.
    ///
    /// # Errors
    /// [`Error::EntryAlive`] while entries on it live; [`Error::WrongState`] if it was
    /// never published; [`Error::Retired`] the second time; [`Error::ForeignFn`];
    /// [`Error::Os`] if the kernel refuses the release (then nothing changed);
    /// [`Error::Reentrant`].
    pub fn retire(&self, id: FnId) -> Result<(), Error> {
        let mut table = self.shared().lock()?;
        let rec = *self.rec(&table, id)?;
        callable(&rec)?;
        // Entries end without the lock, and `alive` orders their calls before the release
        // of the pages below (see `Gate`).
        let entries = self.shared().gates.get(id.index as usize).map_or(0, Gate::alive);
        if entries != 0 {
            return Err(Error::EntryAlive { entries });
        }
        let (from, to) = table.retire(id.index as usize);
        if let Err(error) = self.shared().release(from, to) {
            table.unretire(id.index as usize);
            return Err(error);
        }
        if let Some(registration) = table.batch_retired(id.index as usize) {
            crate::profiling::code_retired(registration);
        }
        self.shared().count_live(&table, usize::MAX);
        Ok(())
    }

    fn id(&self, index: usize) -> FnId {
        // Cannot truncate: the table refuses a record past index u32::MAX - 1.
        FnId { arena: self.shared().serial, index: index as u32 }
    }

    fn rec<'t>(&self, table: &'t table::Table, id: FnId) -> Result<&'t Rec, Error> {
        if id.arena != self.shared().serial {
            return Err(Error::ForeignFn);
        }
        match table.get(id.index as usize) {
            Some(rec) if !rec.is_import() => Ok(rec),
            _ => Err(Error::ForeignFn),
        }
    }
}

/// Whether a function record may be entered: published and not retired.
fn callable(rec: &Rec) -> Result<(), Error> {
    match rec.state() {
        RecState::Published => Ok(()),
        RecState::Pending => Err(Error::WrongState { expected: State::Executable, found: State::Writable }),
        RecState::Retired => Err(Error::Retired),
    }
}

/// FNV-1a 64 of `len` bytes of `0xCC`.
fn fnv1a64_of_int3(len: usize) -> u64 {
    let mut hash = crate::hash::FNV_OFFSET_BASIS;
    for _ in 0..len {
        hash = (hash ^ 0xCC).wrapping_mul(crate::hash::FNV_PRIME);
    }
    hash
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: this handle owns the arena; entries borrow it, so none is alive.
        let destroyed = unsafe { Shared::unregister_and_destroy(self.shared) };
        debug_assert!(destroyed, "an Arena's state is registered until its drop");
    }
}

impl fmt::Debug for Arena {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Arena").field("base", &(self.base() as *const u8)).field("capacity", &self.capacity()).finish()
    }
}

/// A typed handle to a published arena function: call it with [`Entry::call`].
///
/// It borrows its [`Arena`] (so it cannot outlive it) and keeps the function from being
/// retired while it lives.
#[must_use]
pub struct Entry<'a, F: Signature> {
    /// The function's live-entry count, in the arena's state (so the borrow also keeps
    /// the arena alive).
    gate: &'a Gate,
    ptr: NonNull<u8>,
    len: usize,
    hash: u64,
    sig: PhantomData<F>,
}

// SAFETY: an Entry names published, read-only code of a `Sync` arena; `F` is a plain
// function pointer type, and `Arena::entry`'s contract makes the code callable from any
// thread as a safe `F`.
unsafe impl<F: Signature> Send for Entry<'_, F> {}
// SAFETY: as for Send.
unsafe impl<F: Signature> Sync for Entry<'_, F> {}

impl<F: Signature> Entry<'_, F> {
    /// Calls the function with `args` as a tuple. Only for safe signatures
    /// ([`SafeSignature`]); an `unsafe extern` one is called with
    /// [`Entry::call_unchecked`].
    ///
    /// With `verify-on-call` this function's bytes are re-hashed first; on a mismatch one
    /// line naming its address goes to stderr and the process aborts (SIGABRT).
    #[inline]
    pub fn call(&self, args: F::Args) -> F::Ret
    where
        F: SafeSignature,
    {
        // SAFETY: `F` is a safe fn type: no precondition beyond `Arena::entry`'s contract.
        unsafe { self.call_unchecked(args) }
    }

    /// Calls the function with `args` as a tuple, for any signature; the same call path
    /// as [`Entry::call`].
    ///
    /// # Safety
    /// Whatever calling a function of type `F` with `args` requires: for an
    /// `unsafe extern` signature, the code's own preconditions.
    #[inline]
    pub unsafe fn call_unchecked(&self, args: F::Args) -> F::Ret {
        #[cfg(feature = "verify-on-call")]
        self.verify_or_abort();
        // SAFETY: the function is published and cannot be retired while this entry lives,
        // and the arena outlives the borrow, so its bytes are mapped R|X; `Arena::entry`'s
        // contract says they implement `F`; the caller meets `F`'s own preconditions.
        unsafe { F::call_at(self.ptr, args) }
    }

    /// A `Copy` typed function reference that cannot outlive this entry (so neither the
    /// arena nor the function's publication). Calls through it take the runtime call path
    /// of [`crate::Code::as_fn`] (with `verify-on-call`, a registry lookup and re-hash).
    #[must_use]
    pub fn as_fn(&self) -> FnRef<'_, F> {
        // SAFETY: the entry keeps the function published and the arena alive for the
        // borrow, and `Arena::entry`'s contract says the bytes implement `F`.
        unsafe { FnRef::new(self.ptr) }
    }

    #[cfg(feature = "verify-on-call")]
    #[inline]
    fn verify_or_abort(&self) {
        // SAFETY: as in `call`: mapped R|X while this entry lives.
        let now = fnv1a64(unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) });
        if now != self.hash {
            crate::page::call_refused(self.ptr.as_ptr(), self.len, Error::IntegrityMismatch { sealed: self.hash, now });
        }
    }

    /// Re-hashes the function and compares with the hash recorded at publish.
    ///
    /// # Errors
    /// [`Error::IntegrityMismatch`] if its bytes changed.
    pub fn verify(&self) -> Result<(), Error> {
        // SAFETY: as in `call`.
        let now = fnv1a64(unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) });
        if now == self.hash { Ok(()) } else { Err(Error::IntegrityMismatch { sealed: self.hash, now }) }
    }

    /// The function's first byte. Calling through it after the entry and the function
    /// are gone is the caller's risk: a retired page faults, a live one runs.
    #[must_use]
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// The function's length in bytes (what its hash covers).
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always `false`: functions hold at least one byte.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl<F: Signature> Drop for Entry<'_, F> {
    fn drop(&mut self) {
        // No lock: dropping an entry never waits, even inside this arena's push_with
        // closure; the calls made through it happen before a retire that sees it ended.
        self.gate.leave();
    }
}

impl<F: Signature> fmt::Debug for Entry<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry").field("ptr", &self.ptr).field("len", &self.len).finish()
    }
}

/// What the registry knows about the arena function starting at `addr`, for
/// [`crate::inspect`]: `None` if no arena holds `addr`; `Some(None)` if one does but no
/// live function starts there.
pub(crate) fn inspect(addr: usize) -> Option<Option<PageInfo>> {
    with_arena(addr, |shared| inspect_in(shared, &*shared.lock().ok()?, addr))
}

/// [`inspect`] that never waits, for [`crate::signal_safe::inspect`]: `Ok(None)` if no
/// live function of an arena starts at `addr`.
///
/// # Errors
/// [`Error::WouldBlock`] if the registry or the arena's table is locked.
pub(crate) fn try_inspect(addr: usize) -> Result<Option<PageInfo>, Error> {
    Ok(try_with_table(addr, |shared, table| inspect_in(shared, table, addr))?.flatten())
}

fn inspect_in(shared: &Shared, table: &table::Table, addr: usize) -> Option<PageInfo> {
    let rec = table.get(table.index_at(addr - shared.addr(0))?)?;
    let state = match rec.state() {
        _ if rec.is_import() => return None,
        RecState::Pending => State::Writable,
        RecState::Published => State::Executable,
        RecState::Retired => return None,
    };
    let first = rec.off & !(PAGE_SIZE - 1);
    let last = (rec.end() + PAGE_SIZE - 1) & !(PAGE_SIZE - 1);
    Some(PageInfo {
        start: NonNull::new(addr as *mut u8)?,
        len: rec.len(),
        mapped_len: last - first,
        state,
        seal_hash: (state == State::Executable).then_some(rec.hash),
        held_by_handle: true,
    })
}

/// [`crate::raw::verify`] for an arena function: `None` if no arena holds `addr`,
/// otherwise the verdict (its length on a match).
pub(crate) fn verify(addr: usize) -> Option<Result<usize, Error>> {
    with_arena(addr, |shared| verify_in(shared, &*shared.lock()?, addr))
}

/// [`verify`] that never waits, for [`crate::signal_safe::verify`]: `Ok(None)` if no
/// arena holds `addr`.
///
/// # Errors
/// [`Error::WouldBlock`] if the registry or the arena's table is locked.
pub(crate) fn try_verify(addr: usize) -> Result<Option<Result<usize, Error>>, Error> {
    try_with_table(addr, |shared, table| verify_in(shared, table, addr))
}

fn verify_in(shared: &Shared, table: &table::Table, addr: usize) -> Result<usize, Error> {
    let rec = table.index_at(addr - shared.addr(0)).and_then(|i| table.get(i)).ok_or(Error::NotRegistered)?;
    if rec.is_import() {
        return Err(Error::NotRegistered);
    }
    callable(rec)?;
    // SAFETY: published and unretired: R|X while the caller holds the lock.
    let now = fnv1a64(unsafe { shared.bytes(rec.off, rec.len()) });
    if now == rec.hash { Ok(rec.len()) } else { Err(Error::IntegrityMismatch { sealed: rec.hash, now }) }
}
