//! The page-range primitives a code arena is built from: reserve an inaccessible range
//! at a random address, make pages of it writable, turn runs of them executable, and
//! give pages back to the kernel while keeping the range reserved.
//!
//! Invariant owned here: no range is ever writable and executable at once (every
//! transition is `PROT_NONE` → `R|W` → `R|X` → `PROT_NONE`, through wrappers that refuse
//! W|X), and a released range keeps no memory and no access: a stale pointer into it
//! faults.
//!
//! Only the anonymous-memory mode exists so far; where the system denies `PROT_EXEC` on
//! anonymous memory, [`make_rx`] fails with `EACCES`/`EPERM` (the memfd fallback, which
//! replaces the range by an `R|X` mapping of the same file in one `MAP_FIXED` `mmap`, is
//! not built yet).
//!
//! This module needs `unsafe` because changing the protection of, or replacing, a range
//! is only sound for ranges the caller owns with no live references into them.

#![allow(unsafe_code)]

use core::ptr::NonNull;

use crate::error::Error;
use crate::placement;
use crate::sys::{self, Errno, PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE};

/// Reserves `len` bytes (rounded up to whole pages) of address space, inaccessible, at a
/// random address (see `crate::placement`), named `wildx-arena`. One kernel mapping;
/// no memory is committed and no quota should be charged for it.
///
/// # Errors
/// [`Error::ZeroLength`], [`Error::LengthOverflow`], [`Error::ReadImpliesExec`] (every
/// page later made `R|W` would be `rwx`), [`Error::Os`] if the kernel refuses.
pub(crate) fn reserve(len: usize) -> Result<NonNull<u8>, Error> {
    if len == 0 {
        return Err(Error::ZeroLength);
    }
    let len = crate::registry::checked_round_to_pages(len).ok_or(Error::LengthOverflow)?;
    if sys::read_implies_exec() {
        return Err(Error::ReadImpliesExec);
    }
    placement::reserve(len).map_err(Error::Os)
}

/// Makes `[addr, addr + len)` readable and writable (never executable). The caller
/// fills it (with `0xCC` first, by wildx's convention).
///
/// # Safety
/// `addr` is page-aligned and `[addr, addr + len)` lies inside a reservation from
/// [`reserve`] that the caller owns, in pages that are `PROT_NONE` (never published:
/// a page that held published code must never become writable again).
///
/// # Errors
/// `ENOMEM` if the split passes the map-count limit; `EACCES`/`EPERM` from a policy.
pub(crate) unsafe fn make_rw(addr: NonNull<u8>, len: usize) -> Result<(), Errno> {
    let prot = PROT_READ | PROT_WRITE;
    debug_assert!(prot & PROT_EXEC == 0, "W^X");
    // SAFETY: the caller owns the range and nothing references it (see # Safety).
    unsafe { sys::mprotect(addr, len, prot) }
}

/// Makes `[addr, addr + len)` readable and executable, no longer writable: the publish
/// of a run of pages, one `mprotect`.
///
/// # Safety
/// As [`make_rw`], and no `&mut` to any byte of the range is used afterwards (writes
/// fault from here on).
///
/// # Errors
/// `EACCES`/`EPERM` where executable memory is denied; `ENOMEM` at the map-count limit.
/// On an error the range is unchanged (still `R|W`).
pub(crate) unsafe fn make_rx(addr: NonNull<u8>, len: usize) -> Result<(), Errno> {
    let prot = PROT_READ | PROT_EXEC;
    debug_assert!(prot & PROT_WRITE == 0, "W^X");
    // SAFETY: the caller owns the range and will not write it again (see # Safety).
    unsafe { sys::mprotect(addr, len, prot) }
}

/// Gives `[addr, addr + len)` back to the kernel but keeps it reserved: a fresh
/// anonymous `PROT_NONE` mapping replaces it in one `MAP_FIXED` `mmap`, so its memory is
/// freed, its old contents are gone, and any access faults.
///
/// # Safety
/// `addr` is page-aligned, the range lies inside a reservation the caller owns, and
/// nothing uses its bytes any more (no thread runs code in it, no reference into it).
///
/// # Errors
/// `ENOMEM` at the map-count limit (the range is then unchanged).
pub(crate) unsafe fn release(addr: NonNull<u8>, len: usize) -> Result<(), Errno> {
    // SAFETY: MAP_FIXED replaces exactly the caller's own, unused range (see # Safety).
    unsafe { sys::mmap_anonymous_fixed(addr, len, PROT_NONE) }
}

/// Unmaps a whole reservation (the arena's drop).
///
/// # Safety
/// `[addr, addr + len)` is a reservation from [`reserve`] (its rounded length) that the
/// caller owns and nothing uses any more.
///
/// # Errors
/// `ENOMEM` at the map-count limit.
pub(crate) unsafe fn unreserve(addr: NonNull<u8>, len: usize) -> Result<(), Errno> {
    // SAFETY: see # Safety.
    unsafe { sys::munmap(addr, len) }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    /// The protection of the page at `addr` from /proc/self/maps.
    fn perms(addr: usize) -> std::string::String {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        for line in maps.lines() {
            let mut f = line.split_whitespace();
            let (lo, hi) = f.next().unwrap().split_once('-').unwrap();
            let (lo, hi) = (usize::from_str_radix(lo, 16).unwrap(), usize::from_str_radix(hi, 16).unwrap());
            if lo <= addr && addr < hi {
                return f.next().unwrap().into();
            }
        }
        "unmapped".into()
    }

    #[test]
    fn a_page_goes_none_rw_rx_none_and_never_wx() {
        let len = 16 * sys::PAGE_SIZE;
        let base = reserve(len - 100).unwrap();
        let at = |i: usize| NonNull::new(base.as_ptr().wrapping_add(i * sys::PAGE_SIZE)).unwrap();
        assert_eq!(perms(base.as_ptr() as usize), "---p");
        // SAFETY: pages 2..4 of our own reservation, never published.
        unsafe { make_rw(at(2), 2 * sys::PAGE_SIZE) }.unwrap();
        assert_eq!(perms(at(2).as_ptr() as usize), "rw-p");
        // SAFETY: as above; the bytes are ours and written before the publish.
        unsafe { at(2).as_ptr().write_bytes(0xc3, 2 * sys::PAGE_SIZE) };
        // SAFETY: as above; never written after this.
        unsafe { make_rx(at(2), 2 * sys::PAGE_SIZE) }.unwrap();
        assert_eq!(perms(at(3).as_ptr() as usize), "r-xp");
        // SAFETY: the page holds `ret`; calling it returns at once.
        let f: extern "C" fn() = unsafe { core::mem::transmute(at(3).as_ptr()) };
        f();
        // SAFETY: nothing uses pages 2..4 any more.
        unsafe { release(at(2), 2 * sys::PAGE_SIZE) }.unwrap();
        assert_eq!(perms(at(2).as_ptr() as usize), "---p");
        // Released pages read back as zero if made readable again: memory was freed.
        // SAFETY: our own released page; made read-only, and only read below.
        unsafe { sys::mprotect(at(2), sys::PAGE_SIZE, PROT_READ) }.unwrap();
        // SAFETY: readable now, one page.
        assert_eq!(unsafe { at(2).as_ptr().read_volatile() }, 0);
        assert!(!std::fs::read_to_string("/proc/self/maps").unwrap().lines().any(|l| l.contains("rwx")));
        // SAFETY: the whole reservation, nothing uses it.
        unsafe { unreserve(base, len) }.unwrap();
        assert_eq!(perms(base.as_ptr() as usize), "unmapped");
    }
}
