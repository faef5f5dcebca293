//! Scratch memory for one check, without the global allocator: room on the stack for
//! short code, an anonymous mapping for longer code.
//!
//! Invariant owned here: a [`Buf`] hands out exactly the elements pushed into it, never
//! uninitialised memory; [`padded`] hands out exactly the bytes it wrote; a [`Mapped`]
//! hands out room for one node per code byte, a zeroed bitmap word and a zeroed rank per
//! 64 code bytes, to one check at a time, and when dropped either keeps its mapping (at
//! most one, of at most 1 MiB, process-wide) for the next check or unmaps it.
//!
//! This file needs `unsafe` to copy code into `MaybeUninit` memory, to view written
//! `MaybeUninit` memory and a fresh mapping as slices, and to unmap it.

#![allow(unsafe_code)]

use core::mem::MaybeUninit;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, Ordering};

use super::rules::{Node, State};
use crate::sys;

/// Code up to this length is first checked with scratch on the stack (it falls back to
/// a mapping if it holds more than [`STACK_NODES`] instructions).
pub(crate) const STACK_LEN: usize = 512;
/// Instructions the stack scratch holds (a node of 64 bytes and a state of 52 each).
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

    /// Appends `v` and returns it in place; `None` if there is no room.
    #[inline(always)]
    pub(crate) fn push_mut(&mut self, v: T) -> Option<&mut T> {
        let slot = self.mem.get_mut(self.len)?;
        self.len += 1;
        Some(slot.write(v))
    }

    /// The elements pushed so far.
    #[inline(always)]
    pub(crate) fn as_slice(&self) -> &[T] {
        // SAFETY: `mem[..len]` was initialised by `push`/`push_mut`, and `MaybeUninit<T>`
        // has `T`'s layout.
        unsafe { &*(ptr::from_ref(&self.mem[..self.len]) as *const [T]) }
    }

    /// How many elements were pushed.
    #[inline(always)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Element `i`, which must have been pushed: panics otherwise.
    #[inline(always)]
    pub(crate) fn at_mut(&mut self, i: usize) -> &mut T {
        let slot = &mut self.mem[..self.len][i];
        // SAFETY: `i < len` (the index above panics otherwise) and `mem[..len]` was
        // initialised by `push`/`push_mut`.
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

/// Bytes after the code that [`padded`] adds: a 16-byte read from any offset inside the
/// code stays in bounds.
pub(crate) const PAD: usize = 16;

/// `code` followed by [`PAD`] zero bytes, written into `mem` (nothing else is zeroed);
/// `None` if `mem` is shorter than that.
#[inline(always)]
pub(crate) fn padded<'a>(mem: &'a mut [MaybeUninit<u8>], code: &[u8]) -> Option<&'a [u8]> {
    let n = code.len();
    let room = mem.get_mut(..n.checked_add(PAD)?)?;
    let (head, tail) = room.split_at_mut(n);
    // SAFETY: `head` has room for exactly `n` bytes, `code` is `n` bytes long, the two
    // cannot overlap (`mem` is borrowed mutably, `code` shared), and `MaybeUninit<u8>`
    // has `u8`'s layout.
    unsafe { ptr::copy_nonoverlapping(code.as_ptr(), head.as_mut_ptr().cast::<u8>(), n) };
    tail.fill(MaybeUninit::new(0));
    // SAFETY: all `n + PAD` bytes of `room` were written just above, `MaybeUninit<u8>`
    // has `u8`'s layout, and the result borrows `mem` for `'a`, so nothing writes them
    // while it is read.
    Some(unsafe { core::slice::from_raw_parts(room.as_ptr().cast::<u8>(), n + PAD) })
}

/// A mapping up to this size is kept for the next check rather than unmapped: checks of
/// mid-size code (up to about 9 KiB) then make no syscall and take no page fault once
/// the first has run.
const KEEP_BYTES: usize = 1 << 20;

/// The mapping kept between checks, or null. Its first 8 bytes hold its size. Taking it
/// is a swap with null, so at most one check uses it at a time (signal handlers and
/// other threads that find it taken map their own).
static KEPT: AtomicPtr<u8> = AtomicPtr::new(ptr::null_mut());

/// Bytes before the nodes: the mapping's size.
const HEADER: usize = 8;

/// A mapping holding room for `len` nodes and `len` states, then `len / 64` (rounded
/// up) bitmap words and as many ranks, zeroed.
pub(crate) struct Mapped {
    ptr: NonNull<u8>,
    /// Code bytes it is laid out for.
    len: usize,
    /// Byte offset of the states (8-aligned).
    states_at: usize,
    /// Byte offset of the bitmap words (8-aligned).
    words_at: usize,
    /// Size of the whole mapping (at least what `len` needs; more if reused).
    bytes: usize,
}

impl Mapped {
    /// Room for the scratch of `len` code bytes: the kept mapping if it is large
    /// enough, else a new one. Syscalls: none when the kept mapping fits; else `mmap`
    /// (and `munmap` of a kept mapping that is too small).
    pub(crate) fn new(len: usize) -> Option<Mapped> {
        const { assert!(align_of::<Node>() <= 8 && align_of::<State>() <= 8) };
        let words = len.div_ceil(64);
        let states_at = len.checked_mul(size_of::<Node>())?.checked_add(HEADER)?.next_multiple_of(8);
        let words_at = len.checked_mul(size_of::<State>())?.checked_add(states_at)?.next_multiple_of(8);
        let needed = words_at.checked_add(words.checked_mul(12)?)?;
        if let Some(kept) = NonNull::new(KEPT.swap(ptr::null_mut(), Ordering::Acquire)) {
            // SAFETY: a pointer in KEPT is a live read-write mapping whose first 8 bytes
            // hold its size, written before it was published with Release (paired with
            // the Acquire above); the swap made this check its only user.
            let size = unsafe { kept.cast::<usize>().read() };
            let mut mapped = Mapped { ptr: kept, len, states_at, words_at, bytes: size };
            if size >= needed {
                // Nodes need no zeroing (written before they are read); the bitmap and
                // ranks do.
                let (_, _, starts, ranks) = mapped.parts();
                starts.fill(0);
                ranks.fill(0);
                return Some(mapped);
            }
            // Too small: unmap it (a new, larger mapping replaces it).
            mapped.release();
        }
        let ptr = sys::mmap_anonymous(needed, sys::PROT_READ | sys::PROT_WRITE).ok()?;
        // SAFETY: `ptr` is a fresh, page-aligned read-write mapping of `needed >= 8`
        // bytes owned by this function.
        unsafe { ptr.cast::<usize>().write(needed) };
        Some(Mapped { ptr, len, states_at, words_at, bytes: needed })
    }

    /// Room for the nodes, the states, the bitmap words and the ranks.
    #[allow(clippy::type_complexity)]
    pub(crate) fn parts(&mut self) -> (&mut [MaybeUninit<Node>], &mut [MaybeUninit<State>], &mut [u64], &mut [u32]) {
        let words = self.len.div_ceil(64);
        let base = self.ptr.as_ptr();
        // SAFETY: the mapping is `bytes >= words_at + 12 * words` bytes of page-aligned
        // read-write memory owned by `self` until drop (a fresh mapping is zeroed; a
        // kept one had its words and ranks zeroed by `new`). The four views are
        // disjoint and after the 8-byte header: nodes in
        // `[HEADER, HEADER + len * size_of::<Node>()) ⊆ [HEADER, states_at)`, states in
        // `[states_at, states_at + len * size_of::<State>()) ⊆ [states_at, words_at)`,
        // words in `[words_at, words_at + 8 * words)`, ranks after them; each start is
        // aligned for its type (page-aligned base; `HEADER`, `states_at` and `words_at`
        // multiples of 8, and `Node`'s and `State`'s alignments at most 8). Any bytes are
        // a valid `MaybeUninit<Node>` or `MaybeUninit<State>`, and any bytes valid
        // `u64`/`u32`. `&mut self` makes the views unique for their
        // lifetime.
        unsafe {
            (
                core::slice::from_raw_parts_mut(base.add(HEADER).cast::<MaybeUninit<Node>>(), self.len),
                core::slice::from_raw_parts_mut(base.add(self.states_at).cast::<MaybeUninit<State>>(), self.len),
                core::slice::from_raw_parts_mut(base.add(self.words_at).cast::<u64>(), words),
                core::slice::from_raw_parts_mut(base.add(self.words_at + 8 * words).cast::<u32>(), words),
            )
        }
    }

    /// Unmaps the mapping.
    fn release(self) {
        let this = core::mem::ManuallyDrop::new(self);
        // SAFETY: `ptr`/`bytes` are exactly a whole mapping made by `new` (its size is
        // in its header), owned by `this`, which is not dropped; nothing borrowed from
        // it outlives `this`.
        let result = unsafe { sys::munmap(this.ptr, this.bytes) };
        // munmap of a whole mapping we made cannot fail (no split); a leak if it did.
        debug_assert!(result.is_ok());
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        if self.bytes <= KEEP_BYTES
            && KEPT.compare_exchange(ptr::null_mut(), self.ptr.as_ptr(), Ordering::Release, Ordering::Relaxed).is_ok()
        {
            // Kept for the next check; the slices borrowed from it ended with `self`'s
            // borrow.
            return;
        }
        // SAFETY: `ptr`/`bytes` are exactly a whole mapping made by `new`, owned by
        // `self`; the slices borrowed from it cannot outlive `self`.
        let result = unsafe { sys::munmap(self.ptr, self.bytes) };
        // munmap of a whole mapping we made cannot fail (no split); a leak if it did.
        debug_assert!(result.is_ok());
    }
}
