//! An mmap-backed allocator: every block is its own anonymous read-write mapping.
//!
//! Invariant owned here: a block handed out is a whole, page-aligned, zeroed mapping of
//! its size rounded up to pages, and is returned to the kernel with `munmap`.
//!
//! Two users: the registry's table storage (through [`crate::registry`]) and
//! freestanding binaries, which must name a `#[global_allocator]` because hashbrown
//! links `liballoc` even though wildx never calls the global allocator.
//!
//! This module needs `unsafe` to implement `GlobalAlloc` (an `unsafe trait`) and to
//! unmap blocks.

#![allow(unsafe_code)]

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};

use crate::sys::{self, PAGE_SIZE};

/// A global allocator for freestanding binaries: each allocation is one anonymous
/// private mapping (whole pages, zeroed), each deallocation one `munmap`.
///
/// It is simple and has no shared state, but page-granular: every allocation costs at
/// least 4 KiB and two syscalls. Meant for `#![no_std]` binaries that allocate rarely,
/// not as a general-purpose heap. Alignments above 4096 are refused (null).
///
/// ```no_run
/// #[global_allocator]
/// static ALLOC: wildx::MmapAlloc = wildx::MmapAlloc;
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct MmapAlloc;

/// `size` rounded up to whole pages (at least one), or `None` on overflow.
fn block_len(size: usize) -> Option<usize> {
    let size = size.max(1);
    if size > isize::MAX as usize - (PAGE_SIZE - 1) {
        return None;
    }
    Some((size + PAGE_SIZE - 1) & !(PAGE_SIZE - 1))
}

impl MmapAlloc {
    /// Maps a block for `layout`, returning it and its mapped length.
    pub(crate) fn map(layout: Layout) -> Option<(NonNull<u8>, usize)> {
        if layout.align() > PAGE_SIZE {
            return None;
        }
        let len = block_len(layout.size())?;
        let ptr = sys::mmap_anonymous(len, sys::PROT_READ | sys::PROT_WRITE).ok()?;
        Some((ptr, len))
    }

    /// Moves a block from [`MmapAlloc::map`] to one for `new` (grown or shrunk in place or
    /// moved by the kernel, contents kept, no copy), returning it and its mapped length;
    /// `None` leaves the old block as it was.
    ///
    /// # Safety
    /// `ptr` must have come from `map` with `old`; on success only the returned block may
    /// be used.
    pub(crate) unsafe fn remap(ptr: NonNull<u8>, old: Layout, new: Layout) -> Option<(NonNull<u8>, usize)> {
        if new.align() > PAGE_SIZE {
            return None;
        }
        let (old_len, new_len) = (block_len(old.size())?, block_len(new.size())?);
        if old_len == new_len {
            return Some((ptr, old_len));
        }
        // SAFETY: by the caller's contract `ptr` starts our mapping of `old_len` bytes,
        // and the caller switches to the returned block.
        let moved = unsafe { sys::mremap(ptr, old_len, new_len) }.ok()?;
        Some((moved, new_len))
    }

    /// Unmaps a block from [`MmapAlloc::map`], returning its mapped length, or `None`
    /// if the kernel refused (the block then stays mapped).
    ///
    /// # Safety
    /// `ptr` must have come from `map` with the same `layout`, and must not be used again.
    pub(crate) unsafe fn unmap(ptr: NonNull<u8>, layout: Layout) -> Option<usize> {
        let len = block_len(layout.size())?;
        // SAFETY: by the caller's contract `ptr` starts a mapping of exactly `len` bytes
        // that nobody uses any more.
        unsafe { sys::munmap(ptr, len) }.ok()?;
        Some(len)
    }
}

// SAFETY: `alloc` returns null or a fresh mapping of at least `layout.size()` bytes
// aligned to a page (>= `layout.align()`, larger alignments are refused), owned by the
// caller until `dealloc`; the mapping is zeroed, so `alloc_zeroed` may return it as is.
unsafe impl GlobalAlloc for MmapAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        MmapAlloc::map(layout).map_or(ptr::null_mut(), |(p, _)| p.as_ptr())
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as `alloc`; fresh anonymous mappings are zero-filled.
        unsafe { self.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: GlobalAlloc's contract: `ptr` came from `alloc` with `layout` and
            // is not used again. A refused munmap leaves the block mapped (a leak, not
            // unsoundness); a deallocation has no way to report it.
            let _ = unsafe { MmapAlloc::unmap(p, layout) };
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if block_len(layout.size()) == block_len(new_size) {
            // Same number of pages: the block already holds `new_size` bytes.
            return ptr;
        }
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        // SAFETY: `new_layout` has the caller's (valid) alignment and a non-zero size.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are live, distinct mappings, each at least
            // min(old, new) bytes long.
            unsafe { ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
            // SAFETY: `ptr` came from `alloc` with `layout` (GlobalAlloc's contract for
            // realloc) and the caller uses `new` from here on.
            unsafe { self.dealloc(ptr, layout) };
        }
        new
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn blocks_are_zeroed_page_aligned_and_reallocate_keeping_their_bytes() {
        let a = MmapAlloc;
        let small = Layout::from_size_align(100, 8).unwrap();
        // SAFETY: a valid non-zero layout; the block is freed below.
        let p = unsafe { a.alloc_zeroed(small) };
        assert!(!p.is_null() && p as usize % PAGE_SIZE == 0);
        // SAFETY: `p` is a live block of one whole page.
        let block = unsafe { core::slice::from_raw_parts_mut(p, PAGE_SIZE) };
        assert!(block.iter().all(|&b| b == 0));
        block[..100].fill(0x5a);
        // SAFETY: `p` came from `alloc_zeroed` with `small`; 4000 bytes is non-zero.
        let same = unsafe { a.realloc(p, small, 4000) };
        assert_eq!(same, p, "same page count: the block is reused as is");
        // SAFETY: `same` is the live block, now of 4000 bytes.
        let grown = unsafe { a.realloc(same, Layout::from_size_align(4000, 8).unwrap(), 10_000) };
        assert!(!grown.is_null() && grown != p, "more pages: a new block");
        // SAFETY: `grown` is a live block of at least 10 000 bytes; `p` is freed.
        let grown_bytes = unsafe { core::slice::from_raw_parts_mut(grown, 10_000) };
        assert!(grown_bytes[..100].iter().all(|&b| b == 0x5a), "realloc kept the bytes");
        grown_bytes[9_999] = 1;
        // SAFETY: `grown` came from `realloc` with size 10 000 and is not used again.
        unsafe { a.dealloc(grown, Layout::from_size_align(10_000, 8).unwrap()) };
    }

    #[test]
    fn alignments_above_a_page_and_overflowing_sizes_are_refused() {
        let a = MmapAlloc;
        // SAFETY: a valid layout; a null result allocates nothing to free.
        let aligned = unsafe { a.alloc(Layout::from_size_align(64, 2 * PAGE_SIZE).unwrap()) };
        assert!(aligned.is_null());
        // SAFETY: as above.
        let huge = unsafe { a.alloc(Layout::from_size_align(isize::MAX as usize - 100, 1).unwrap()) };
        assert!(huge.is_null());
    }
}
