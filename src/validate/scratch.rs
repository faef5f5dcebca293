//! Scratch memory for one check, without the global allocator: room on the stack for
//! short code, an anonymous mapping for longer code.
//!
//! Invariant owned here: a [`Buf`] hands out exactly the elements pushed into it, never
//! uninitialised memory; a [`Mapped`] hands out room for one node per code byte, a
//! zeroed bitmap word and a zeroed rank per 64 code bytes, and unmaps what it mapped
//! when dropped.
//!
//! This file needs `unsafe` to view written `MaybeUninit` memory and a fresh mapping as
//! slices, and to unmap it.

#![allow(unsafe_code)]

use core::mem::MaybeUninit;
use core::ptr::NonNull;

use super::rules::Node;
use crate::sys;

/// Code up to this length is first checked with scratch on the stack (it falls back to
/// a mapping if it holds more than [`STACK_NODES`] instructions).
pub(crate) const STACK_LEN: usize = 512;
/// Instructions the stack scratch holds (112 bytes each).
pub(crate) const STACK_NODES: usize = 128;

/// A list of `T` written into uninitialised memory: no zeroing up front, so short code
/// pays only for the instructions it has.
pub(crate) struct Buf<'a, T: Copy> {
    mem: &'a mut [MaybeUninit<T>],
    /// `mem[..len]` is initialised.
    len: usize,
}

impl<'a, T: Copy> Buf<'a, T> {
    /// An empty list over `mem`.
    pub(crate) fn new(mem: &'a mut [MaybeUninit<T>]) -> Buf<'a, T> {
        Buf { mem, len: 0 }
    }

    /// Appends `v`; false if there is no room.
    #[inline(always)]
    pub(crate) fn push(&mut self, v: T) -> bool {
        match self.mem.get_mut(self.len) {
            Some(slot) => {
                slot.write(v);
                self.len += 1;
                true
            }
            None => false,
        }
    }

    /// The last element pushed.
    ///
    /// # Panics
    /// If nothing was pushed.
    #[inline(always)]
    pub(crate) fn last(&mut self) -> &mut T {
        let len = self.len;
        let slot = &mut self.mem[len - 1];
        // SAFETY: `mem[..len]` is initialised (see `into_slice`) and `len - 1` is in it
        // (the index above panics otherwise); the borrow of `self` keeps it unique.
        unsafe { slot.assume_init_mut() }
    }

    /// The elements pushed, in order.
    pub(crate) fn into_slice(self) -> &'a mut [T] {
        // SAFETY: `mem[..len]` was initialised by `push` (which only ever grows `len`
        // past a slot it wrote), `len <= mem.len()`, `MaybeUninit<T>` has `T`'s layout,
        // and the `&'a mut` borrow of `mem` moves into the result, so the view is unique.
        // `T: Copy`, so nothing needs dropping.
        unsafe { core::slice::from_raw_parts_mut(self.mem.as_mut_ptr().cast::<T>(), self.len) }
    }
}

/// A mapping holding room for `len` nodes, then `len / 64` (rounded up) bitmap words and
/// as many ranks, zeroed.
pub(crate) struct Mapped {
    ptr: NonNull<u8>,
    len: usize,
    /// Byte offset of the bitmap words (8-aligned).
    words_at: usize,
    bytes: usize,
}

impl Mapped {
    /// Maps room for the scratch of `len` code bytes. Syscalls: `mmap`.
    pub(crate) fn new(len: usize) -> Option<Mapped> {
        const { assert!(align_of::<Node>() <= 8) };
        let words = len.div_ceil(64);
        let words_at = len.checked_mul(size_of::<Node>())?.next_multiple_of(8);
        let bytes = words_at.checked_add(words.checked_mul(12)?)?;
        let ptr = sys::mmap_anonymous(bytes, sys::PROT_READ | sys::PROT_WRITE).ok()?;
        Some(Mapped { ptr, len, words_at, bytes })
    }

    /// Room for the nodes, the bitmap words and the ranks.
    pub(crate) fn parts(&mut self) -> (&mut [MaybeUninit<Node>], &mut [u64], &mut [u32]) {
        let words = self.len.div_ceil(64);
        let base = self.ptr.as_ptr();
        // SAFETY: the mapping is `bytes = words_at + 12 * words` bytes of zeroed,
        // page-aligned read-write memory owned by `self` until drop. The three views are
        // disjoint: nodes in `[0, len * size_of::<Node>()) ⊆ [0, words_at)`, words in
        // `[words_at, words_at + 8 * words)`, ranks after them up to `bytes`; each start
        // is aligned for its type (page-aligned base; `words_at` a multiple of 8 and
        // `Node`'s alignment at most 8). Any bytes are a valid `MaybeUninit<Node>`, and
        // zero bytes valid `u64`/`u32`. `&mut self` makes the views unique for their
        // lifetime.
        unsafe {
            (
                core::slice::from_raw_parts_mut(base.cast::<MaybeUninit<Node>>(), self.len),
                core::slice::from_raw_parts_mut(base.add(self.words_at).cast::<u64>(), words),
                core::slice::from_raw_parts_mut(base.add(self.words_at + 8 * words).cast::<u32>(), words),
            )
        }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`bytes` are exactly the mapping `new` made, owned by `self`; the
        // slices borrowed from it cannot outlive `self`.
        let result = unsafe { sys::munmap(self.ptr.cast(), self.bytes) };
        // munmap of a whole mapping we made cannot fail (no split); a leak if it did.
        debug_assert!(result.is_ok());
    }
}
