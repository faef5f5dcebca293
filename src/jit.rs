//! The pinned JIT signature, `add(i32, i32) -> i32`, and the runtime call helpers.
//!
//! Invariant owned here: every call this module makes into a page goes through the
//! verify-on-call hook when that feature is on, and compiles to a plain indirect call
//! when it is off.
//!
//! The five bytes: `89 f8` (mov eax, edi), `01 f0` (add eax, esi), `c3`
//! (ret): the System V AMD64 `int32_t add(int32_t, int32_t)` with wrapping overflow.
//!
//! ```
//! let f = wildx::jit::compile_add_i32();
//! assert!(!f.is_null());
//! // SAFETY: `f` came from compile_add_i32 and is freed only after the call.
//! assert_eq!(unsafe { wildx::jit::call_i32_i32(f, 7, 35) }, 42);
//! assert_eq!(wildx::jit::free(f), 0);
//! ```
//!
//! This module needs `unsafe` to turn a page pointer into a function pointer and call it.

#![allow(unsafe_code)]

use crate::error::Error;
use crate::page::{self, Access};
use crate::typed::{Code, Page};

/// `mov eax, edi; add eax, esi; ret`.
pub const ADD_I32: [u8; 5] = [0x89, 0xf8, 0x01, 0xf0, 0xc3];

/// The bytes [`compile_add_i32`] allocates (one page is mapped).
pub const ADD_PAGE_LEN: usize = 64;

/// The type of the add page's code.
pub type AddI32 = extern "sysv64" fn(i32, i32) -> i32;

/// Allocates a 64-byte page, writes [`ADD_I32`] and seals it. Syscalls: `mmap`,
/// `mprotect`, and `munmap` on failure.
///
/// Returns the sealed page, or null if any step fails (quota, `mmap`, `PROT_EXEC`
/// refused, the map-count limit). It never returns a page it has
/// freed.
///
/// On failure nothing is left mapped, except in one case: at the `vm.max_map_count`
/// limit the kernel can refuse the `munmap` of the page whose seal it just refused (both
/// split a kernel mapping). That page is then kept, registered and counted in
/// [`crate::stats`], on a list of pages this function owns, and the next call seals and
/// returns it (or frees it) before mapping anything new; no page is ever left that
/// nobody can name.
#[must_use]
pub fn compile_add_i32() -> *mut u8 {
    let page = match orphans::pop() {
        Some(page) => page,
        None => crate::raw::alloc(ADD_PAGE_LEN),
    };
    if page.is_null() {
        return page;
    }
    if install_add_i32(page) != 0 || crate::raw::seal(page) != 0 {
        if crate::raw::free(page) != 0 {
            // SAFETY: `page` is a live WRITABLE page of ADD_PAGE_LEN bytes that this
            // function allocated (or took off the list) and nobody else has been given.
            unsafe { orphans::push(page) };
        }
        return core::ptr::null_mut();
    }
    page
}

/// Takes the orphan list's lock and keeps it (the `fork` prepare hook).
pub(crate) fn orphans_lock_for_fork() {
    core::mem::forget(orphans::HEAD.lock());
}

/// Releases the lock [`orphans_lock_for_fork`] took.
///
/// # Safety
/// The calling thread ran `orphans_lock_for_fork` and has not released it since.
pub(crate) unsafe fn orphans_unlock_after_fork() {
    // SAFETY: locked by this thread with its guard forgotten (see # Safety).
    unsafe { orphans::HEAD.unlock_unguarded() };
}

/// Resets the orphan list's lock in the child of a `fork`.
///
/// # Safety
/// Only the calling thread exists and it holds no guard of the lock.
pub(crate) unsafe fn orphans_reset_in_child() {
    // SAFETY: see # Safety.
    unsafe { orphans::HEAD.reset_in_child() };
}

/// Pages [`compile_add_i32`] could neither seal nor free, so that none is lost: an
/// intrusive list threaded through the pages' own bytes (at [`orphans::LINK`], after the
/// code), guarded by a lock held for two pointer moves.
mod orphans {
    /// Where in an orphan page the pointer to the next one is kept.
    pub(super) const LINK: usize = 16;

    /// The first orphan, or null.
    pub(super) struct Head(*mut u8);
    // SAFETY: the pointer is only an address handed between threads under the lock.
    unsafe impl Send for Head {}

    pub(super) static HEAD: crate::lock::Mutex<Head> = crate::lock::Mutex::new(Head(core::ptr::null_mut()));

    /// Adds `page` to the list.
    ///
    /// # Safety
    /// `page` must be a live, registered, WRITABLE page of at least `LINK + 8` bytes,
    /// owned by the caller and given up by it.
    pub(super) unsafe fn push(page: *mut u8) {
        let mut head = HEAD.lock();
        // SAFETY: the page is writable and holds LINK + 8 bytes (see # Safety).
        unsafe { page.add(LINK).cast::<*mut u8>().write_unaligned(head.0) };
        head.0 = page;
    }

    /// Takes a page off the list, restoring its link bytes to int3.
    pub(super) fn pop() -> Option<*mut u8> {
        let mut head = HEAD.lock();
        let page = head.0;
        if page.is_null() {
            return None;
        }
        // SAFETY: every page on the list is live, WRITABLE and owned by the list (see
        // `push`); the lock makes this thread the only one touching it.
        unsafe {
            head.0 = page.add(LINK).cast::<*mut u8>().read_unaligned();
            page.add(LINK).write_bytes(0xCC, 8);
        }
        Some(page)
    }
}

/// Writes [`ADD_I32`] at the start of a WRITABLE page. Syscalls: none.
///
/// Returns 0, or -1 changing nothing if `page` is not the start of a live WRITABLE page
/// of at least 5 bytes that no typed handle owns.
#[must_use]
pub fn install_add_i32(page: *mut u8) -> i32 {
    match page::write(page, 0, &ADD_I32, Access::Raw) {
        Ok(()) => 0,
        Err(_) => -1,
    }
}

/// Calls a sealed add page: `f(a, b)`.
///
/// With `verify-on-call`, the page is looked up and re-hashed first; if it is not a live
/// sealed page or its bytes changed, one line goes to stderr and the process aborts
/// with SIGABRT (never returns, never runs the bytes). Without the feature there is no
/// lookup: this is one indirect call.
///
/// # Safety
/// `f` must be a page returned by [`compile_add_i32`] (or sealed holding code with the
/// same signature), not freed before this call returns, and not freed concurrently by
/// another thread. Without `verify-on-call`, passing anything else jumps to it.
#[inline]
pub unsafe fn call_i32_i32(f: *mut u8, a: i32, b: i32) -> i32 {
    #[cfg(feature = "verify-on-call")]
    page::verify_before_call(f);
    // SAFETY: by the caller's contract `f` is live sealed code implementing `AddI32`;
    // code and function pointers share size and representation on x86-64.
    let add = unsafe { core::mem::transmute::<*mut u8, AddI32>(f) };
    add(a, b)
}

/// Frees a page from [`compile_add_i32`]: the same as [`crate::raw::free`].
#[must_use]
#[inline]
pub fn free(f: *mut u8) -> i32 {
    crate::raw::free(f)
}

/// The typed [`compile_add_i32`]: the add page as owned code. Dropping it frees it.
///
/// ```
/// let add = wildx::jit::compile_add()?;
/// assert_eq!(add.call((i32::MAX, 1)), i32::MIN);
/// # Ok::<(), wildx::Error>(())
/// ```
///
/// # Errors
/// Those of [`Page::new`] and [`Page::seal`]; on any of them nothing is left mapped.
pub fn compile_add() -> Result<Code<AddI32>, Error> {
    let mut page = Page::new(ADD_PAGE_LEN)?;
    install_add(&mut page)?;
    // SAFETY: the page starts with ADD_I32, which implements `AddI32` and touches no
    // memory; the rest is int3.
    Ok(unsafe { page.seal::<AddI32>() }?)
}

/// Writes [`ADD_I32`] at the start of a typed page.
///
/// # Errors
/// [`Error::TooSmall`] if the page holds fewer than 5 bytes.
pub fn install_add(page: &mut Page) -> Result<(), Error> {
    let bytes = page.as_mut_slice();
    let len = bytes.len();
    bytes.get_mut(..ADD_I32.len()).ok_or(Error::TooSmall { needed: ADD_I32.len(), len })?.copy_from_slice(&ADD_I32);
    Ok(())
}

/// Validates `code` as a function of signature `F` and seals it: safe JIT.
///
/// What acceptance proves (`docs/validator.md` has the full rules): the bytes decode,
/// from the first, into instructions of a subset of x86-64 (integer and scalar SSE
/// arithmetic, moves, compares, direct jumps, `ret`) that cover every byte; every jump
/// lands on one of those instructions inside the code; the only call is a recursive
/// call to the code's own start; no path reaches an `int3` or falls off the end; there
/// is no system, trapping or I/O instruction, no indirect transfer, no segment override,
/// `lock` or `rep`. Run as `F` (any arguments), the code touches only its own stack frame
/// (at most [`crate::validate::FRAME_LIMIT`] bytes below the return address, plus the
/// red zone) and reads only its own bytes besides; it returns with `rsp` balanced and
/// `rbx`, `rbp`, `r12`-`r15` restored, reads no argument register that `F` does not
/// define, and has written the return register. That is what [`Page::seal`]'s safety
/// contract asks for, so [`Code::call`] on the result is safe.
///
/// What it does not prove: that the code terminates (a loop may spin forever, a
/// recursion may run until the stack's guard page kills the process with SIGSEGV), that
/// it does not divide by zero (SIGFPE), or that it computes what you meant.
///
/// Syscalls: those of [`Page::with_code`] and the seal (`mmap`, `mprotect`), plus an
/// `mmap`/`munmap` of scratch memory for code longer than 256 bytes.
///
/// ```
/// // lea eax, [rdi + rsi]; ret
/// let add = wildx::jit::compile::<extern "sysv64" fn(i32, i32) -> i32>(&[0x8d, 0x04, 0x37, 0xc3])?;
/// assert_eq!(add.call((7, 35)), 42);
/// // mov [rdi], eax; ret: a store through an argument is refused.
/// let err = wildx::jit::compile::<extern "sysv64" fn(u64)>(&[0x89, 0x07, 0xc3]).unwrap_err();
/// assert_eq!(err.to_string(), "offset 0: memory operand outside the frame, the red zone and the function's own bytes");
/// # Ok::<(), wildx::Error>(())
/// ```
///
/// # Errors
/// [`Error::Rejected`] with the offset and rule the code broke (nothing is mapped then);
/// those of [`Page::with_code`] and [`Page::seal`].
#[cfg(feature = "validate")]
pub fn compile<F: crate::validate::ValidSignature>(code: &[u8]) -> Result<Code<F>, Error> {
    crate::validate::function::<F>(code).map_err(Error::Rejected)?;
    let page = Page::with_code(code)?;
    // SAFETY: `validate::function::<F>` accepted exactly these bytes (the page holds
    // `code` at its start; the int3 padding after it is unreachable by the control-flow
    // rules): they only touch their own frame and bytes, preserve the callee-saved
    // registers and rsp, define the return register and make no syscall or escape,
    // which is `Page::seal`'s contract for `F`.
    Ok(unsafe { page.seal::<F>() }?)
}
