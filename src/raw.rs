//! The raw surface: pointers in; a pointer, null, 0 or -1 out. The C ABI's
//! `wildx_alloc` / `wildx_seal` / `wildx_free` in Rust, and the layer FFI glue uses.
//!
//! Every function here is safe to call with any pointer: a pointer that is not the
//! start of a live wildx page (null, stack, heap, static, interior, freed) is refused
//! with -1 before any memory is touched. Refusals are counted in
//! [`crate::Stats::refusals`]; [`crate::Page`] and [`crate::Code`] give the precise
//! reason as an [`crate::Error`].
//!
//! ```
//! let page = wildx::raw::alloc(64);
//! assert!(!page.is_null());
//! assert_eq!(wildx::raw::state(page), Some(wildx::State::Writable));
//! assert_eq!(wildx::raw::seal(page), 0);
//! assert_eq!(wildx::raw::seal(page), -1); // a second seal is refused
//! assert_eq!(wildx::raw::verify(page), 0);
//! assert_eq!(wildx::raw::free(page), 0);
//! assert_eq!(wildx::raw::free(page), -1); // double free refused, nothing touched
//! assert_eq!(wildx::raw::state(page), None);
//! ```

use crate::page::{self, Access};
use crate::registry::State;

// `alloc`, `seal` and `free` are `#[inline]`: each is a thin wrapper, and inlined into the
// caller it leaves one wildx function between the caller and the syscall, as libc's
// wrappers do. Measured: the page cycle is about 1 % faster than with the wrapper as a
// call of its own (`docs/performance.md`).

#[inline]
fn code<T>(result: Result<T, crate::Error>) -> i32 {
    if result.is_ok() { 0 } else { -1 }
}

/// Maps a WRITABLE page of at least `size` bytes (whole 4096-byte pages, `R|W`, never
/// executable, every byte `0xCC`) and registers it. Syscalls: `mmap`.
///
/// Returns null, changing nothing, for `size == 0`, a size whose rounding to pages
/// passes `isize::MAX` (e.g. `usize::MAX`), a size that would pass the quota, a
/// refused `mmap`, or a registry that cannot grow.
#[must_use]
#[inline]
pub fn alloc(size: usize) -> *mut u8 {
    page::alloc(size, Access::Raw).map_or(core::ptr::null_mut(), |(p, _)| p.as_ptr())
}

/// Seals a WRITABLE page: records the FNV-1a 64 hash of its requested bytes, then
/// `mprotect`s it `R|X`. Syscalls: `mprotect`.
///
/// Returns 0, or -1 changing nothing if `page` is not the start of a live WRITABLE
/// page (already sealed, freed, foreign, interior, null, owned by a typed handle) or
/// if the kernel refuses `PROT_EXEC` (the page then stays WRITABLE and usable).
///
/// The caller must not write the page from another thread while it is being sealed.
#[must_use]
#[inline]
pub fn seal(page: *mut u8) -> i32 {
    code(page::seal(page, Access::Raw))
}

/// Unmaps a WRITABLE or EXECUTABLE page and forgets it. Syscalls: `munmap`.
///
/// Returns 0, or -1 touching no memory for a double free, a foreign, interior or null
/// pointer, or a page owned by a typed handle. If the kernel refuses the `munmap`
/// (a seccomp policy, or the
/// `vm.max_map_count` limit), -1 and the page stays registered and usable.
///
/// No other thread may be calling into the page while it is freed.
#[must_use]
#[inline]
pub fn free(page: *mut u8) -> i32 {
    code(page::free(page, Access::Raw))
}

/// The state of the page starting at `page`: `Some(Writable)`, `Some(Executable)`, or
/// `None` for anything that is not a live wildx page (freed pages included).
#[must_use]
pub fn state(page: *const u8) -> Option<State> {
    page::state(page)
}

/// Re-hashes a sealed page's requested bytes and compares them with the hash recorded
/// at seal. Returns 0 on a match, -1 on a mismatch or if `page` is not a live sealed
/// page. Syscalls: none.
#[must_use]
pub fn verify(page: *const u8) -> i32 {
    code(page::verify(page))
}
