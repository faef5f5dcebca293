//! The typed surface: owned handles with the lifecycle in their types.
//!
//! Invariants owned here:
//! - a [`Page`] is a live WRITABLE page owned by exactly this handle, a [`Code<F>`] a
//!   live EXECUTABLE page owned by exactly this handle whose bytes implement `F`;
//! - sealing consumes the `Page`, so writing after sealing and sealing twice do not
//!   compile; dropping either handle frees the page;
//! - while a handle owns a page the registry marks it held, so the raw surface cannot
//!   free, seal or write it behind the handle's back.
//!
//! Double seal does not compile:
//! ```compile_fail,E0382
//! let mut page = wildx::Page::new(64).unwrap();
//! let code = unsafe { page.seal::<wildx::jit::AddI32>() }.unwrap();
//! let again = unsafe { page.seal::<wildx::jit::AddI32>() }; // use of moved value
//! ```
//! Nor does writing after the seal:
//! ```compile_fail,E0505
//! let mut page = wildx::Page::new(64).unwrap();
//! let bytes = page.as_mut_slice();
//! let code = unsafe { page.seal::<wildx::jit::AddI32>() }.unwrap();
//! bytes[0] = 0xc3; // the borrow outlives the move into seal
//! ```
//! Nor does writing through sealed code, which has no mutable view:
//! ```compile_fail,E0599
//! let code = wildx::jit::compile_add().unwrap();
//! code.as_mut_slice()[0] = 0xc3; // no such method
//! ```
//!
//! This module needs `unsafe` to build slices over pages and to call sealed code.

#![allow(unsafe_code)]

use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;
use core::slice;

use crate::error::Error;
use crate::page::{self, Access};
use crate::registry::{Gen, State};

/// A live WRITABLE page owned by this handle: fill it, then [`Page::seal`] it.
///
/// Dropping it frees the page.
///
/// ```
/// use wildx::Page;
/// let mut page = Page::new(64)?;
/// page.as_mut_slice()[..5].copy_from_slice(&[0x89, 0xf8, 0x01, 0xf0, 0xc3]);
/// // SAFETY: those bytes are `mov eax, edi; add eax, esi; ret`, i.e. add(i32, i32).
/// let add = unsafe { page.seal::<extern "sysv64" fn(i32, i32) -> i32>() }?;
/// assert_eq!(add.call((7, 35)), 42);
/// # Ok::<(), wildx::Error>(())
/// ```
#[must_use = "dropping a Page frees it"]
pub struct Page {
    ptr: NonNull<u8>,
    len: usize,
    /// The registry generation of the page this handle owns (see `page::Access`).
    generation: Gen,
}

// SAFETY: a Page is the only owner of its mapping (registry `held` flag); moving it to
// another thread moves that ownership. `&Page` only reads.
unsafe impl Send for Page {}
// SAFETY: shared references only give read access to bytes nobody else can write.
unsafe impl Sync for Page {}

impl Page {
    /// Maps a WRITABLE page of at least `len` bytes (whole 4096-byte pages, `R|W`, every
    /// byte `0xCC`). Syscalls: `mmap`.
    ///
    /// # Errors
    /// [`Error::ZeroLength`], [`Error::LengthOverflow`], [`Error::QuotaExceeded`],
    /// [`Error::Os`] if `mmap` fails, [`Error::RegistryStorage`]. Nothing changes.
    pub fn new(len: usize) -> Result<Page, Error> {
        let (ptr, generation) = page::alloc(len, Access::Handle(0))?;
        Ok(Page { ptr, len, generation })
    }

    /// A page holding exactly `code` (the rest of the last page stays `0xCC`).
    ///
    /// # Errors
    /// As [`Page::new`] with `code.len()`.
    pub fn with_code(code: &[u8]) -> Result<Page, Error> {
        let mut page = Page::new(code.len())?;
        page.as_mut_slice().copy_from_slice(code);
        Ok(page)
    }

    /// The requested length: the bytes the seal hash will cover.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always `false`: pages hold at least one byte.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The start of the page.
    #[must_use]
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// The requested bytes.
    #[must_use]
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the handle owns a live R|W mapping of at least `len` bytes; `&self`
        // rules out a concurrent `&mut` from this handle, and the raw surface may not
        // write a held page.
        unsafe { slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The requested bytes, to write code into.
    #[must_use]
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as `as_slice`, and `&mut self` makes this the only view.
        unsafe { slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Seals the page as code of signature `F`: records the FNV-1a 64 hash of the
    /// requested bytes, then `mprotect`s the page `R|X`. Syscalls: `mprotect`.
    ///
    /// # Safety
    /// The first `len()` bytes must be x86-64 machine code that, entered at the start of
    /// the page, behaves as a function of type `F` under the System V AMD64 calling
    /// convention: it reads its arguments from the registers/stack `F` says, returns a
    /// valid value of `F`'s return type, preserves callee-saved registers, and touches
    /// no memory and performs no action that safe Rust calling `F` could not. Every
    /// later [`Code::call`] relies on this.
    ///
    /// # Errors
    /// [`Error::Os`] if the kernel refuses `PROT_EXEC` (SELinux `execmem`, seccomp, a
    /// hardened kernel). The page comes back, still WRITABLE, inside the [`SealError`].
    pub unsafe fn seal<F: Signature>(self) -> Result<Code<F>, SealError> {
        match page::seal(self.as_ptr(), self.access()) {
            Ok(_) => {
                let code = Code { ptr: self.ptr, len: self.len, generation: self.generation, sig: PhantomData };
                core::mem::forget(self);
                Ok(code)
            }
            Err(error) => Err(SealError { error, page: self }),
        }
    }

    /// Frees the page now (what dropping it does), reporting a refusal.
    ///
    /// Syscalls: `munmap`.
    ///
    /// # Errors
    /// [`Error::Os`] if the kernel refuses the `munmap` (a seccomp policy, or the
    /// `vm.max_map_count` limit when the unmap splits a kernel mapping);
    /// the page is then still mapped, registered and WRITABLE, and comes back with the
    /// error so the caller can retry, or drop it.
    ///
    /// ```
    /// let page = wildx::Page::new(64)?;
    /// let p = page.as_ptr();
    /// page.free().map_err(|(error, _page)| error)?;
    /// assert_eq!(wildx::raw::state(p), None);
    /// # Ok::<(), wildx::Error>(())
    /// ```
    pub fn free(self) -> Result<(), (Error, Page)> {
        match page::free(self.as_ptr(), self.access()) {
            Ok(()) => {
                core::mem::forget(self);
                Ok(())
            }
            Err(error) => Err((error, self)),
        }
    }

    /// Gives up the handle and returns the page's pointer for the raw surface (the page
    /// stays mapped and WRITABLE; free it with [`crate::raw::free`]).
    #[must_use]
    pub fn into_raw(self) -> NonNull<u8> {
        let ptr = self.ptr;
        // Fails only if the page was unmapped behind wildx's back (then nothing changes).
        let _ = page::set_held(ptr.as_ptr(), State::Writable, self.access());
        core::mem::forget(self);
        ptr
    }

    /// Takes ownership of a WRITABLE page from the raw surface.
    ///
    /// # Safety
    /// No raw pointer to the page may be used to write it while the `Page` lives (the
    /// handle hands out `&mut [u8]` over it). Raw frees and seals are refused anyway.
    ///
    /// # Errors
    /// [`Error::Null`], [`Error::NotRegistered`], [`Error::WrongState`] if the page is
    /// sealed, [`Error::HeldByHandle`] if another handle owns it.
    pub unsafe fn from_raw(ptr: *mut u8) -> Result<Page, Error> {
        let slot = page::set_held(ptr, State::Writable, Access::Raw)?;
        let ptr = NonNull::new(ptr).ok_or(Error::Null)?;
        Ok(Page { ptr, len: slot.len(), generation: slot.generation() })
    }
}

/// What dropping a handle does: free the page, and if the kernel refuses the `munmap`
/// (a seccomp policy, or the `vm.max_map_count` limit when the unmap splits a kernel
/// mapping), hand the page back to the raw surface instead of losing it: it stays registered, in `state`, counted in the stats (the refusal too), and
/// [`crate::raw::free`] on its address can free it later. Never panics.
///
/// A handle whose page was unmapped behind wildx's back (with libc) finds its entry
/// gone or replaced by a later page of another generation: both calls are then refused
/// and nothing is touched.
fn drop_handle(ptr: NonNull<u8>, generation: Gen, state: State) {
    if let Err(Error::Os(_)) = page::free(ptr.as_ptr(), Access::Handle(generation)) {
        let _ = page::set_held(ptr.as_ptr(), state, Access::Handle(generation));
    }
}

impl Page {
    fn access(&self) -> Access {
        Access::Handle(self.generation)
    }
}

impl<F: Signature> Code<F> {
    fn access(&self) -> Access {
        Access::Handle(self.generation)
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        drop_handle(self.ptr, self.generation, State::Writable);
    }
}

impl fmt::Debug for Page {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Page").field("ptr", &self.ptr).field("len", &self.len).finish()
    }
}

/// A refused [`Page::seal`]: the reason, and the page, still WRITABLE and usable.
#[derive(Debug)]
pub struct SealError {
    /// Why the seal was refused.
    pub error: Error,
    /// The page, unchanged.
    pub page: Page,
}

impl SealError {
    /// The page, still WRITABLE.
    pub fn into_page(self) -> Page {
        self.page
    }
}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seal refused: {}", self.error)
    }
}

impl core::error::Error for SealError {}

impl From<SealError> for Error {
    /// Keeps the reason; the page is dropped, which frees it.
    fn from(e: SealError) -> Error {
        e.error
    }
}

/// Sealed, executable code of signature `F`, owned by this handle. Dropping it frees
/// the page.
///
/// There is no way to write through it, and no way to get a function pointer that
/// outlives it: calls go through [`Code::call`], the runtime call path (which re-hashes
/// the page first under the `verify-on-call` feature).
#[must_use = "dropping a Code frees it"]
pub struct Code<F: Signature> {
    ptr: NonNull<u8>,
    len: usize,
    /// The registry generation of the page this handle owns (see `page::Access`).
    generation: Gen,
    sig: PhantomData<F>,
}

// SAFETY: sealed bytes are read-only (hardware-enforced) and owned by this handle alone
// (registry `held` flag); `F` is a plain function pointer type.
unsafe impl<F: Signature> Send for Code<F> {}
// SAFETY: as Send; concurrent calls are allowed because `Page::seal`'s contract says the
// code behaves as a safe Rust `F`, which is callable from any thread.
unsafe impl<F: Signature> Sync for Code<F> {}

impl<F: Signature> Code<F> {
    /// Calls the code with `args` as a tuple: `code.call((7, 35))`.
    ///
    /// With the `verify-on-call` feature the page is first re-hashed and the process
    /// aborts (SIGABRT, one line on stderr) on a mismatch; without it this costs what a
    /// call through a function pointer costs.
    #[inline]
    pub fn call(&self, args: F::Args) -> F::Ret {
        #[cfg(feature = "verify-on-call")]
        page::verify_before_call(self.ptr.as_ptr());
        // SAFETY: the page is live and EXECUTABLE while `self` is (held flag: nobody
        // else can free it), and `Page::seal`'s contract says its bytes implement `F`.
        unsafe { F::call_at(self.ptr, args) }
    }

    /// Re-hashes the code and compares with the hash recorded at seal. Syscalls: none.
    ///
    /// # Errors
    /// [`Error::IntegrityMismatch`] with both hashes if the bytes changed (through
    /// `/proc/self/mem`, ptrace, or someone re-`mprotect`ing the page).
    pub fn verify(&self) -> Result<(), Error> {
        page::verify(self.as_ptr()).map(drop)
    }

    /// The FNV-1a 64 hash recorded at seal.
    #[must_use]
    pub fn seal_hash(&self) -> u64 {
        page::inspect(self.as_ptr()).and_then(|info| info.seal_hash).unwrap_or(0)
    }

    /// The requested length: the bytes the seal hash covers.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always `false`: pages hold at least one byte.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The start of the code.
    #[must_use]
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// The sealed bytes (readable: the page is `R|X`).
    #[must_use]
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the handle owns a live R|X mapping of at least `len` bytes, which no
        // Rust code can write.
        unsafe { slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Frees the code now (what dropping it does), reporting a refusal.
    ///
    /// Syscalls: `munmap`.
    ///
    /// # Errors
    /// [`Error::Os`] if the kernel refuses the `munmap` (a seccomp policy, or the
    /// `vm.max_map_count` limit when the unmap splits a kernel mapping);
    /// the code is then still mapped, registered and callable, and comes back with the
    /// error.
    ///
    /// ```
    /// let add = wildx::jit::compile_add()?;
    /// let p = add.as_ptr();
    /// add.free().map_err(|(error, _code)| error)?;
    /// assert_eq!(wildx::raw::state(p), None);
    /// # Ok::<(), wildx::Error>(())
    /// ```
    pub fn free(self) -> Result<(), (Error, Code<F>)> {
        match page::free(self.as_ptr(), self.access()) {
            Ok(()) => {
                core::mem::forget(self);
                Ok(())
            }
            Err(error) => Err((error, self)),
        }
    }

    /// Gives up the handle and returns the pointer for the raw surface (the page stays
    /// mapped and EXECUTABLE; free it with [`crate::raw::free`]).
    #[must_use]
    pub fn into_raw(self) -> NonNull<u8> {
        let ptr = self.ptr;
        // Fails only if the page was unmapped behind wildx's back (then nothing changes).
        let _ = page::set_held(ptr.as_ptr(), State::Executable, self.access());
        core::mem::forget(self);
        ptr
    }

    /// Takes ownership of an EXECUTABLE page from the raw surface as code of type `F`.
    ///
    /// # Safety
    /// The page's bytes must implement `F` exactly as [`Page::seal`] requires.
    ///
    /// # Errors
    /// [`Error::Null`], [`Error::NotRegistered`], [`Error::WrongState`] if the page is not
    /// sealed, [`Error::HeldByHandle`] if another handle owns it.
    pub unsafe fn from_raw(ptr: *mut u8) -> Result<Code<F>, Error> {
        let slot = page::set_held(ptr, State::Executable, Access::Raw)?;
        let ptr = NonNull::new(ptr).ok_or(Error::Null)?;
        Ok(Code { ptr, len: slot.len(), generation: slot.generation(), sig: PhantomData })
    }
}

impl<F: Signature> Drop for Code<F> {
    fn drop(&mut self) {
        drop_handle(self.ptr, self.generation, State::Executable);
    }
}

impl<F: Signature> fmt::Debug for Code<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Code").field("ptr", &self.ptr).field("len", &self.len).finish()
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A function-pointer type that sealed code can be typed as:
/// `extern "sysv64" fn(A, B, ..) -> R` with up to six arguments.
///
/// Implemented by wildx only; the arguments of a call are passed as a tuple.
pub trait Signature: Copy + sealed::Sealed {
    /// The arguments, as a tuple (`()` for none, `(A,)` for one).
    type Args;
    /// The return type.
    type Ret;

    /// Calls the code at `code` as `Self`.
    ///
    /// # Safety
    /// `code` must be the start of live executable memory whose bytes implement `Self`
    /// (see [`Page::seal`]), and must stay mapped for the whole call.
    unsafe fn call_at(code: NonNull<u8>, args: Self::Args) -> Self::Ret;
}

macro_rules! signature {
    ($($arg:ident),*) => {
        impl<R $(, $arg)*> sealed::Sealed for extern "sysv64" fn($($arg),*) -> R {}

        impl<R $(, $arg)*> Signature for extern "sysv64" fn($($arg),*) -> R {
            type Args = ($($arg,)*);
            type Ret = R;

            #[inline(always)]
            #[allow(non_snake_case)]
            unsafe fn call_at(code: NonNull<u8>, ($($arg,)*): Self::Args) -> R {
                // SAFETY: the caller guarantees `code` is live executable memory
                // implementing exactly this signature; code and function pointers have
                // the same size and representation on x86-64.
                let f: Self = unsafe { core::mem::transmute::<*mut u8, Self>(code.as_ptr()) };
                f($($arg),*)
            }
        }
    };
}

signature!();
signature!(A);
signature!(A, B);
signature!(A, B, C);
signature!(A, B, C, D);
signature!(A, B, C, D, E);
signature!(A, B, C, D, E, G);
