//! The page state machine: alloc → WRITABLE → seal → EXECUTABLE → free, on top of the
//! registry and the raw syscalls. Every surface (raw, typed, jit, C) goes through here.
//!
//! Invariants owned here:
//! - no page is ever writable and executable at once: a page is mapped `R|W` and only
//!   ever `mprotect`ed to `R|X`, once, from WRITABLE;
//! - a refused operation changes nothing (no mapping, no entry, no quota, no stats but
//!   the refusal count);
//! - no operation acts on a mapping another thread has freed: an operation that touches
//!   a page's bytes or protection either holds the registry lock from the lookup that
//!   found the page until it is done (write, verify), or first marks the page BUSY under
//!   the lock and works on it with the lock dropped (seal's hash and `mprotect`, free's
//!   `munmap`); nobody else acts on a BUSY page, and its entry is removed only after its
//!   `munmap` succeeded. A new mapping the kernel hands out at the address of a page
//!   still being freed waits for that entry to go before it is registered.
//!
//! Why drop the lock around the syscalls: the kernel serialises `mmap`, `mprotect` and
//! `munmap` of one process, and the thread that loses often sleeps. With the registry
//! lock held across the syscall, every other thread then spun on it, even to call or
//! verify unrelated pages.
//!
//! This module needs `unsafe` to read, write, `mprotect` and `munmap` the pages the
//! registry vouches for.

#![allow(unsafe_code)]

use core::ptr::NonNull;
use core::slice;

use crate::error::Error;
use crate::execmem;
use crate::hash::fnv1a64;
use crate::lock::SPIN_ROUNDS;
use crate::registry::{self, Gen, REFUSALS, REGISTRY, Reserve, Slot, State};
use crate::sys;
use core::sync::atomic::{AtomicU32, Ordering};

/// Who is asking: the raw surface may not touch a page a typed handle owns, and a
/// handle may touch only the page it owns (its generation: not a later page the kernel
/// put at the same address after its own was unmapped behind wildx's back).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Access {
    /// The raw or C surface, or `jit` helpers on raw pointers.
    Raw,
    /// The typed handle that owns the page, with the generation it was given.
    Handle(Gen),
    /// A query that does not act for an owner (verify).
    Any,
}

/// What the registry knows about one live page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageInfo {
    /// The start of the mapping (the pointer `alloc` returned).
    pub start: NonNull<u8>,
    /// The length the caller asked for; the seal hash covers exactly these bytes.
    pub len: usize,
    /// The mapped length: `len` rounded up to whole 4096-byte pages.
    pub mapped_len: usize,
    /// Where the page is in its lifecycle.
    pub state: State,
    /// The FNV-1a 64 hash of the first `len` bytes, recorded at seal.
    pub seal_hash: Option<u64>,
    /// Whether a typed handle ([`crate::Page`] / [`crate::Code`]) owns the page.
    pub held_by_handle: bool,
}

// SAFETY: a PageInfo is a copied snapshot: `start` is only an address, never
// dereferenced through the PageInfo, and every other field is plain data. Sending or
// sharing it gives no access to the page. (The only unsafe in this file; an item-level
// allowance keeps the file's logic free of unsafe.)
#[allow(unsafe_code)]
unsafe impl Send for PageInfo {}
// SAFETY: as Send: `&PageInfo` only reads copied values.
#[allow(unsafe_code)]
unsafe impl Sync for PageInfo {}

/// A snapshot of the registry's accounting.
///
/// `#[repr(C)]`: with the `capi` feature this is `struct wildx_stats` of
/// `include/wildx.h`, field for field; reordering or retyping a field breaks the C ABI
/// (`tests/capi.rs` compares the layouts).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Pages allocated and not yet freed.
    pub live_pages: usize,
    /// Bytes mapped by live pages (whole pages).
    pub live_bytes: usize,
    /// The most `live_bytes` has ever been.
    pub peak_bytes: usize,
    /// The process-wide quota on `live_bytes`.
    pub quota: usize,
    /// Successful allocations.
    pub allocs: u64,
    /// Successful seals.
    pub seals: u64,
    /// Successful frees.
    pub frees: u64,
    /// Refused allocs, seals, frees, writes and handle conversions (each a -1, a null
    /// or an `Err`). Verify results are not counted.
    pub refusals: u64,
    /// Bytes the registry's own table has mapped (its footprint).
    pub registry_bytes: usize,
    /// Entries the registry's table can hold before it must grow.
    pub registry_capacity: usize,
    /// Live [`crate::Arena`]s.
    pub arenas: usize,
    /// Functions pushed into live arenas and not retired (pending ones included).
    pub arena_functions: usize,
    /// Accessible bytes of all arenas (part of `live_bytes`; reservations not counted).
    pub arena_bytes: usize,
    /// Where executable memory comes from in this process (C: `size_t`, one of the
    /// `WILDX_EXEC_*` values).
    pub exec_mode: crate::ExecMode,
}

/// Counts a refusal (successes are counted in the registry, under its lock).
fn refused<T>(result: Result<T, Error>) -> Result<T, Error> {
    if result.is_err() {
        registry::count(&REFUSALS);
    }
    result
}

/// `ptr` as a non-null pointer and as its registry key, or why it cannot be one.
/// Touches no memory.
fn key(ptr: *const u8) -> Result<(NonNull<u8>, usize), Error> {
    let start = NonNull::new(ptr as *mut u8).ok_or(Error::Null)?;
    Ok((start, ptr as usize))
}

/// Looks `addr` up, refusing pages a handle owns unless `access` is that handle.
fn lookup(reg: &registry::Registry, addr: usize, access: Access) -> Result<Slot, Error> {
    let Some(slot) = reg.get(addr) else {
        // Inside an arena: its functions belong to the arena, not to the raw surface.
        return Err(if reg.arena_containing(addr).is_some() { Error::HeldByHandle } else { Error::NotRegistered });
    };
    match access {
        Access::Raw if slot.held() => Err(Error::HeldByHandle),
        // A stale handle: its page is gone and this is someone else's.
        Access::Handle(generation) if !slot.held() || slot.generation() != generation => Err(Error::NotRegistered),
        _ => Ok(slot),
    }
}

/// Bumped (after the registry lock is released) whenever a page stops being BUSY:
/// sealed, kept after a refusal, or freed. Threads waiting for a busy page sleep on it.
static BUSY_ENDED: AtomicU32 = AtomicU32::new(0);
/// How many threads sleep (or are about to) on [`BUSY_ENDED`]; the wake syscall is
/// issued only when this is non-zero.
static BUSY_SLEEPERS: AtomicU32 = AtomicU32::new(0);

/// Wakes the threads waiting for some page to stop being BUSY. Called after the
/// registry lock that cleared a busy mark (or removed a busy entry) is released.
///
/// The caller has just ended the busy state with a SeqCst read-modify-write (the
/// registry's unlock, or the arena's reference count falling): that is what lets this
/// skip the bump when nobody sleeps. If the SeqCst load below sees no sleeper, every
/// sleeper announces itself later in the single SeqCst order, hence after that
/// read-modify-write, and its `still_busy` check (SeqCst or under the lock) sees the
/// busy state ended and does not sleep. If it sees one, the bump and the wake follow,
/// and a futex wait on the old counter value returns at once or is woken.
pub(crate) fn busy_ended() {
    // SeqCst: the handshake with `sleep_until_busy_ends` (they count themselves, then
    // read the counter, then check).
    if BUSY_SLEEPERS.load(Ordering::SeqCst) != 0 {
        BUSY_ENDED.fetch_add(1, Ordering::SeqCst);
        sys::futex_wake(&BUSY_ENDED, i32::MAX as u32);
    }
}

/// Sleeps until a busy mark ends somewhere, if `still_busy` (run after announcing the
/// sleep) says the awaited condition still holds. A busy mark set under the registry
/// lock and cleared under it is seen by `still_busy` or wakes us.
pub(crate) fn sleep_until_busy_ends(still_busy: impl FnOnce() -> bool) {
    // SeqCst throughout: see `busy_ended`.
    BUSY_SLEEPERS.fetch_add(1, Ordering::SeqCst);
    let seen = BUSY_ENDED.load(Ordering::SeqCst);
    if still_busy() {
        sys::futex_wait(&BUSY_ENDED, seen);
    }
    BUSY_SLEEPERS.fetch_sub(1, Ordering::SeqCst);
}

/// Forgets the sleepers copied from the parent by `fork` (they do not exist in the
/// child; a stale count only costs spurious wake syscalls, but the count should be
/// true).
pub(crate) fn reset_sleepers_in_child() {
    // Relaxed: the child has one thread.
    BUSY_SLEEPERS.store(0, Ordering::Relaxed);
}

/// Waits before looking at the BUSY page at `addr` again: it is busy for one syscall or
/// one hash, so spin briefly, then sleep until some busy mark ends (never a bare
/// `sched_yield`, which does not let a preempted lower-priority holder run).
fn back_off(addr: usize, rounds: &mut u32) {
    *rounds += 1;
    if *rounds < SPIN_ROUNDS {
        core::hint::spin_loop();
    } else {
        sleep_until_busy_ends(|| REGISTRY.read().get(addr).is_some_and(|slot| slot.busy()));
    }
}

/// Runs `f` under the registry write lock on the page at `addr`, once no other thread
/// is sealing or freeing it.
fn with_idle_page<T>(
    addr: usize,
    access: Access,
    f: impl FnOnce(&mut registry::Registry, Slot) -> Result<T, Error>,
) -> Result<T, Error> {
    let mut rounds = 0;
    loop {
        let mut reg = REGISTRY.write();
        let slot = lookup(&reg, addr, access)?;
        if !slot.busy() {
            return f(&mut reg, slot);
        }
        drop(reg);
        back_off(addr, &mut rounds);
    }
}

/// Runs `f` under the registry read lock on the page at `addr`, once no other thread
/// is sealing or freeing it. The read lock keeps it so while `f` runs.
fn with_idle_page_read<T>(addr: usize, access: Access, f: impl FnOnce(Slot) -> Result<T, Error>) -> Result<T, Error> {
    let mut rounds = 0;
    loop {
        let reg = REGISTRY.read();
        let slot = lookup(&reg, addr, access)?;
        if !slot.busy() {
            return f(slot);
        }
        drop(reg);
        back_off(addr, &mut rounds);
    }
}

fn expect_state(slot: Slot, expected: State) -> Result<(), Error> {
    match slot.state() {
        found if found == expected => Ok(()),
        found => Err(Error::WrongState { expected, found }),
    }
}

/// Maps a fresh WRITABLE page of `len` bytes (whole pages, `R|W`, filled with `0xCC`)
/// and registers it, owned by a typed handle if `access` is [`Access::Handle`] (whose
/// generation is ignored: the page's own is returned).
///
/// Syscalls: `mmap` (at a randomized address, see `crate::placement`; writable without
/// `PROT_READ`, so never executable whatever the personality, see `crate::sys`), `prctl`
/// to name it (until the kernel says it cannot).
pub(crate) fn alloc(len: usize, access: Access) -> Result<(NonNull<u8>, Gen), Error> {
    refused(alloc_inner(len, access))
}

fn alloc_inner(len: usize, access: Access) -> Result<(NonNull<u8>, Gen), Error> {
    if len == 0 {
        return Err(Error::ZeroLength);
    }
    let mapped = registry::checked_round_to_pages(len).ok_or(Error::LengthOverflow)?;
    // The quota and the table's room are taken before anything is mapped, so a refusal
    // never has a mapping to undo (an undo could itself be refused: a seccomp filter on
    // `munmap`, `tests/faults.rs`).
    {
        let mut reg = REGISTRY.write();
        match reg.reserve(mapped) {
            Ok(()) => {}
            Err(Reserve::Quota) => {
                let (live, quota) = (reg.live_bytes() + reg.reserved(), reg.quota());
                return Err(Error::QuotaExceeded { requested: mapped, live, quota });
            }
            // Refused before anything is mapped: there is nothing to undo.
            Err(Reserve::Storage) => return Err(Error::RegistryStorage),
        }
    }
    if mapped > registry::MAX_PAGE_LEN {
        // No address space holds it anyway; the registry's length field cannot either.
        REGISTRY.write().unreserve(mapped);
        return Err(Error::Os(sys::Errno::ENOMEM));
    }
    // Map and fill outside the lock: nobody else knows this address yet. Placed at a
    // randomized address and named (see `crate::placement`), anonymous or a view of the
    // memfd (see `crate::execmem`).
    let ptr = match execmem::map_page(mapped) {
        Ok((ptr, _)) => ptr,
        Err(error) => {
            REGISTRY.write().unreserve(mapped);
            return Err(error);
        }
    };
    // SAFETY: `ptr` starts a fresh writable mapping of `mapped` bytes that only this
    // function knows about.
    unsafe { ptr.as_ptr().write_bytes(0xCC, mapped) };
    let addr = ptr.as_ptr() as usize;
    let mut rounds = 0;
    let mut reg = REGISTRY.write();
    while let Some(stale) = reg.get(addr) {
        if !stale.busy() {
            // An entry for an address the kernel just handed out, with no free under way:
            // someone unmapped a wildx page behind wildx's back (e.g. with libc). Its
            // mapping is gone, so its entry goes too; a handle still holding it has the
            // old generation and can no longer act on this address.
            reg.remove(addr);
            break;
        }
        // The kernel handed out the address of a page whose free has unmapped it but not
        // yet removed its entry; that free only needs the lock back.
        drop(reg);
        back_off(addr, &mut rounds);
        reg = REGISTRY.write();
    }
    // Cannot fail: `reserve` made room in the table for this entry.
    let generation = reg.insert(addr, len, matches!(access, Access::Handle(_)));
    Ok((ptr, generation))
}

/// Seals a WRITABLE page: hashes its requested bytes, `mprotect`s it `R|X`, records the
/// hash and marks it EXECUTABLE. Returns the hash.
///
/// Syscalls: `mprotect`. On any failure the page is unchanged (still WRITABLE).
pub(crate) fn seal(ptr: *const u8, access: Access) -> Result<u64, Error> {
    refused(seal_inner(ptr, access, None))
}

/// [`seal`], naming the code for the profilers (`crate::profiling`).
pub(crate) fn seal_named(ptr: *const u8, access: Access, name: &str) -> Result<u64, Error> {
    refused(seal_inner(ptr, access, Some(name)))
}

fn seal_inner(ptr: *const u8, access: Access, name: Option<&str>) -> Result<u64, Error> {
    let (start, addr) = key(ptr)?;
    execmem::settle_fork();
    let slot = with_idle_page(addr, access, |reg, slot| {
        expect_state(slot, State::Writable)?;
        reg.set_busy(addr, true);
        Ok(slot)
    })?;
    // The page is BUSY: no other thread may free, seal or write it until we clear that,
    // so it stays mapped and WRITABLE while we hash and mprotect without the lock.
    // SAFETY: the registry vouched for a live R|W mapping of at least `slot.len()` bytes,
    // and BUSY keeps it mapped. Its owner is either this call's typed handle (consumed by
    // sealing) or raw-surface code that must not write during a seal.
    let hash = fnv1a64(unsafe { slice::from_raw_parts(ptr, slot.len()) });
    // SAFETY: `start` is the page-aligned start of a registered mapping of `mapped_len`
    // bytes from `execmem::map_page` (registry invariant) that BUSY keeps alive; removing
    // PROT_WRITE cannot invalidate a Rust reference because no handle can be writing
    // (see above).
    let protected = unsafe { execmem::seal_page(start, slot.mapped_len()) };
    if protected.is_ok() {
        // SAFETY: as the hash above: BUSY keeps the page mapped; it is R|X now, readable.
        crate::profiling::page_sealed(unsafe { slice::from_raw_parts(ptr, slot.len()) }, name);
    }
    let mut reg = REGISTRY.write();
    let result = match protected {
        Ok(()) => {
            reg.mark_sealed(addr, hash);
            Ok(hash)
        }
        Err(error) => {
            // Still WRITABLE and usable: only the busy mark is undone.
            reg.set_busy(addr, false);
            Err(error)
        }
    };
    drop(reg);
    busy_ended();
    result
}

/// Unmaps a WRITABLE or EXECUTABLE page and removes its entry.
///
/// Syscalls: `munmap`. If the kernel refuses the `munmap`, the entry is kept (the page
/// stays registered, in its state, and may be freed again later) and `Os` is returned:
/// nothing is lost and the quota stays honest about what is mapped.
pub(crate) fn free(ptr: *const u8, access: Access) -> Result<(), Error> {
    refused(free_inner(ptr, access))
}

fn free_inner(ptr: *const u8, access: Access) -> Result<(), Error> {
    let (start, addr) = key(ptr)?;
    execmem::settle_fork();
    let slot = with_idle_page(addr, access, |reg, slot| {
        reg.set_busy(addr, true);
        Ok(slot)
    })?;
    // SAFETY: `start` starts a registered mapping of `mapped_len` bytes; its owner gives
    // it up by calling free, and BUSY keeps every other thread off it.
    let unmapped = unsafe { execmem::unmap_page(start, slot.mapped_len()) };
    if unmapped.is_ok() {
        // Still BUSY and registered: no new page at this address is registered (or
        // named to gdb) until the entry goes below.
        crate::profiling::page_freed(ptr, slot.mapped_len());
    }
    let mut reg = REGISTRY.write();
    let result = match unmapped {
        Ok(()) => {
            // Only now does the entry go: until here, an alloc that got this address
            // back from the kernel waits (see `alloc_inner`).
            reg.remove_freed(addr);
            Ok(())
        }
        Err(errno) => {
            // Kept, in its state, usable, and freeable later.
            reg.set_busy(addr, false);
            Err(Error::Os(errno))
        }
    };
    drop(reg);
    busy_ended();
    result
}

/// Copies `bytes` to `offset` in a WRITABLE page. Syscalls: none.
pub(crate) fn write(ptr: *mut u8, offset: usize, bytes: &[u8], access: Access) -> Result<(), Error> {
    refused(write_inner(ptr, offset, bytes, access))
}

fn write_inner(ptr: *mut u8, offset: usize, bytes: &[u8], access: Access) -> Result<(), Error> {
    let (_, addr) = key(ptr)?;
    execmem::settle_fork();
    // A read lock on an idle page suffices: seal and free must take the write lock to
    // mark it busy, so the page stays mapped and WRITABLE while we copy.
    with_idle_page_read(addr, access, |slot| {
        expect_state(slot, State::Writable)?;
        let needed = offset.checked_add(bytes.len()).ok_or(Error::LengthOverflow)?;
        if needed > slot.len() {
            return Err(Error::TooSmall { needed, len: slot.len() });
        }
        // SAFETY: `[ptr + offset, ptr + needed)` lies inside the requested length of a
        // live R|W mapping (checked above) that the lock keeps mapped; `bytes` is a Rust
        // slice, so it cannot overlap a page nobody has handed out as a slice.
        unsafe { ptr.add(offset).copy_from_nonoverlapping(bytes.as_ptr(), bytes.len()) };
        Ok(())
    })
}

/// The state of the page starting at `ptr`, or `None` for anything else.
pub(crate) fn state(ptr: *const u8) -> Option<State> {
    inspect(ptr).map(|info| info.state)
}

/// What the registry knows about the page starting at `ptr`; `None` if `ptr` is null,
/// foreign, interior or freed. Touches no page memory.
///
/// ```
/// let p = wildx::raw::alloc(100);
/// let info = wildx::inspect(p).unwrap();
/// assert_eq!((info.len, info.mapped_len, info.state), (100, 4096, wildx::State::Writable));
/// assert_eq!(wildx::raw::free(p), 0);
/// assert!(wildx::inspect(p).is_none());
/// ```
#[must_use]
pub fn inspect(ptr: *const u8) -> Option<PageInfo> {
    let (start, addr) = key(ptr).ok()?;
    execmem::settle_fork();
    let Some(slot) = REGISTRY.read().get(addr) else {
        return crate::arena::inspect(addr).flatten();
    };
    Some(page_info(start, slot))
}

fn page_info(start: NonNull<u8>, slot: Slot) -> PageInfo {
    PageInfo {
        start,
        len: slot.len(),
        mapped_len: slot.mapped_len(),
        state: slot.state(),
        seal_hash: slot.hash(),
        held_by_handle: slot.held(),
    }
}

/// [`inspect`] that never waits: `Err(WouldBlock)` where `inspect` would wait for a
/// writer. For [`crate::signal_safe::inspect`].
pub(crate) fn try_inspect(ptr: *const u8) -> Result<Option<PageInfo>, Error> {
    let Ok((start, addr)) = key(ptr) else { return Ok(None) };
    match try_with_slot(addr, false, |slot| Ok(page_info(start, slot)))? {
        Some(info) => Ok(Some(info)),
        None => crate::arena::try_inspect(addr),
    }
}

/// [`verify`] that never waits: `Err(WouldBlock)` where `verify` would wait for a
/// writer or a BUSY page. For [`crate::signal_safe::verify`].
pub(crate) fn try_verify(ptr: *const u8) -> Result<usize, Error> {
    let (_, addr) = key(ptr)?;
    if execmem::unsettled_child() {
        // A forked child in memfd mode: the registry still names the parent's pages,
        // which are not mapped here (forgetting them takes locks a handler may not).
        return Err(Error::NotRegistered);
    }
    match try_with_slot(addr, true, |slot| check_sealed(ptr, slot))? {
        Some(verdict) => Ok(verdict),
        None => crate::arena::try_verify(addr)?.unwrap_or(Err(Error::NotRegistered)),
    }
}

/// Runs `f` on the slot of the page at `addr` under the registry read lock, if the lock
/// can be had at once and the page is not BUSY (when `needs_idle`); never spins, never
/// sleeps, never waits for another holder: [`Error::WouldBlock`] instead. `Ok(None)` for
/// an address that is not a live page. For the async-signal-safe queries.
///
/// One attempt only: retrying would not help the case it exists for (the holder is the
/// code the signal interrupted), and each failed attempt touches the lock a waiting
/// writer is draining; a handler that retried for longer than its timer's period kept
/// a writer out forever.
pub(crate) fn try_with_slot<T>(
    addr: usize,
    needs_idle: bool,
    f: impl FnOnce(Slot) -> Result<T, Error>,
) -> Result<Option<T>, Error> {
    let reg = REGISTRY.try_read().ok_or(Error::WouldBlock)?;
    match reg.get(addr) {
        None => Ok(None),
        Some(slot) if needs_idle && slot.busy() => Err(Error::WouldBlock),
        Some(slot) => f(slot).map(Some),
    }
}

/// Re-hashes a sealed page's requested bytes and compares with the hash recorded at
/// seal. Returns the page's length on a match. Syscalls: none.
pub(crate) fn verify(ptr: *const u8) -> Result<usize, Error> {
    let (_, addr) = key(ptr)?;
    execmem::settle_fork();
    if let Some(verdict) = crate::arena::verify(addr) {
        return verdict;
    }
    // The read lock on an idle page keeps it mapped (free must take the write lock to
    // mark it busy) while we hash, and lets any number of verifying threads in at once.
    // A busy page is waited for: a seal in progress ends WRITABLE or EXECUTABLE, a free
    // in progress ends with the page gone or kept.
    with_idle_page_read(addr, Access::Any, |slot| check_sealed(ptr, slot))
}

/// Hashes the sealed page at `ptr` whose (idle) slot is `slot`, under a read lock the
/// caller holds, and compares with the seal hash.
fn check_sealed(ptr: *const u8, slot: Slot) -> Result<usize, Error> {
    expect_state(slot, State::Executable)?;
    // SAFETY: the registry vouches for a live R|X mapping of at least `slot.len()`
    // bytes, kept mapped by the read lock the caller holds on an idle page (free must
    // take the write lock to mark it busy); sealed bytes are read-only, so no Rust code
    // can be writing them.
    let now = fnv1a64(unsafe { slice::from_raw_parts(ptr, slot.len()) });
    match slot.hash() {
        Some(sealed) if sealed == now => Ok(slot.len()),
        sealed => Err(Error::IntegrityMismatch { sealed: sealed.unwrap_or(0), now }),
    }
}

/// Hands a page to a typed handle (`access` is [`Access::Raw`]: `from_raw`) or back to
/// raw pointers (`access` is the handle's [`Access::Handle`]: `into_raw`). Taking a page
/// that is already held, or is not in `expected` state, is refused.
pub(crate) fn set_held(ptr: *const u8, expected: State, access: Access) -> Result<Slot, Error> {
    refused(set_held_inner(ptr, expected, access))
}

fn set_held_inner(ptr: *const u8, expected: State, access: Access) -> Result<Slot, Error> {
    let (_, addr) = key(ptr)?;
    // Taking ownership needs a page nobody holds; giving it back is done by its holder.
    let held = access == Access::Raw;
    with_idle_page(addr, access, |reg, slot| {
        expect_state(slot, expected)?;
        reg.set_held(addr, held);
        Ok(slot)
    })
}

/// The verify-on-call hook: every runtime call path runs this before jumping into a
/// page. On a mismatch, or a page that is not EXECUTABLE, it writes one line to fd 2
/// and aborts the process with SIGABRT; it never returns in that case.
#[cfg(feature = "verify-on-call")]
#[inline]
pub(crate) fn verify_before_call(ptr: *const u8) {
    if let Err(error) = verify(ptr) {
        call_refused(ptr, inspect(ptr).map_or(0, |info| info.len), error)
    }
}

#[cfg(feature = "verify-on-call")]
#[cold]
#[inline(never)]
pub(crate) fn call_refused(ptr: *const u8, len: usize, error: Error) -> ! {
    use core::fmt::Write as _;
    let mut line = LineBuf { buf: [0; 192], len: 0 };
    let _ = match error {
        Error::IntegrityMismatch { sealed, now } => writeln!(
            line,
            "wildx: integrity check failed for page {ptr:p}: sealed {sealed:#018x}, now {now:#018x} ({len} bytes)"
        ),
        Error::WrongState { found, .. } => {
            writeln!(line, "wildx: refusing call into page {ptr:p}: page is {found:?}, not sealed")
        }
        _ => writeln!(line, "wildx: refusing call into {ptr:p}: not a live wildx page (freed or foreign)"),
    };
    // Never blocks and never turns into SIGPIPE: a full, broken or closed stderr loses
    // the line, and the process still dies by SIGABRT.
    crate::rt::abort_with_message(&line.buf[..line.len])
}

/// A fixed buffer that `write!` can fill without allocating; truncates when full.
#[cfg(feature = "verify-on-call")]
struct LineBuf {
    buf: [u8; 192],
    len: usize,
}

#[cfg(feature = "verify-on-call")]
impl core::fmt::Write for LineBuf {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// A snapshot of the registry's accounting.
///
/// ```
/// let before = wildx::stats();
/// let p = wildx::raw::alloc(1);
/// assert!(wildx::stats().allocs > before.allocs);
/// assert_eq!(wildx::raw::free(p), 0);
/// ```
#[must_use]
pub fn stats() -> Stats {
    use core::sync::atomic::Ordering::Relaxed;
    let reg = REGISTRY.read();
    let counts = reg.counts();
    Stats {
        live_pages: reg.live_pages(),
        live_bytes: reg.live_bytes(),
        peak_bytes: reg.peak_bytes(),
        quota: reg.quota(),
        allocs: counts.allocs,
        seals: counts.seals,
        frees: counts.frees,
        // Relaxed: an independent counter, read for reporting only.
        refusals: REFUSALS.load(Relaxed),
        registry_bytes: registry::storage_bytes(),
        registry_capacity: reg.capacity(),
        arenas: reg.arena_count(),
        arena_functions: crate::arena::live_functions(&reg),
        arena_bytes: reg.arena_bytes(),
        exec_mode: execmem::exec_mode(),
    }
}

/// Sets the process-wide quota on mapped bytes (default 256 MiB). Lowering it below the
/// bytes already mapped unmaps nothing: live pages still seal, run and free, and new
/// allocations are refused until enough is freed.
///
/// ```
/// let code = wildx::jit::compile_add()?;          // one live page
/// wildx::set_quota(0);                            // below what is mapped
/// assert!(matches!(wildx::Page::new(1), Err(wildx::Error::QuotaExceeded { .. })));
/// assert_eq!(code.call((1, 2)), 3);               // live code keeps working
/// drop(code);
/// wildx::set_quota(wildx::DEFAULT_QUOTA);
/// # Ok::<(), wildx::Error>(())
/// ```
pub fn set_quota(bytes: usize) {
    REGISTRY.write().set_quota(bytes);
}

/// The process-wide quota on mapped bytes.
#[must_use]
pub fn quota() -> usize {
    REGISTRY.read().quota()
}
