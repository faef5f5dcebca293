//! Scratch memory for one check, without the global allocator: a small array on the
//! stack for short code, an anonymous mapping for longer code.
//!
//! Invariant owned here: a [`Scratch`] hands out one `&mut [State]` of exactly the
//! code's length, zeroed, and unmaps what it mapped when dropped.
//!
//! This file needs `unsafe` to view a fresh mapping as a slice and to unmap it.

#![allow(unsafe_code)]

use core::ptr::NonNull;

use super::rules::State;
use crate::sys;

/// Code up to this length is checked with scratch on the stack.
pub(crate) const STACK_LEN: usize = 256;

/// A mapping holding `len` zeroed `State`s.
pub(crate) struct Mapped {
    ptr: NonNull<State>,
    len: usize,
    bytes: usize,
}

impl Mapped {
    /// Maps room for `len` states. Syscalls: `mmap`.
    pub(crate) fn new(len: usize) -> Option<Mapped> {
        let bytes = len.checked_mul(size_of::<State>())?;
        let ptr = sys::mmap_anonymous(bytes, sys::PROT_READ | sys::PROT_WRITE).ok()?;
        Some(Mapped { ptr: ptr.cast(), len, bytes })
    }

    /// The states.
    pub(crate) fn states(&mut self) -> &mut [State] {
        // SAFETY: the mapping is `bytes >= len * size_of::<State>()` bytes of zeroed,
        // page-aligned read-write memory owned by `self` until drop; all-zero bytes are
        // a valid `State` (plain integers); `&mut self` makes the view unique.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`bytes` are exactly the mapping `new` made, owned by `self`; the
        // slice borrowed from it cannot outlive `self`.
        let result = unsafe { sys::munmap(self.ptr.cast(), self.bytes) };
        // munmap of a whole mapping we made cannot fail (no split); a leak if it did.
        debug_assert!(result.is_ok());
    }
}
