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
    /// hardened kernel). The page comes back, still WRITABLE, inside the [`SealError`];
    /// `?` turns it into the [`Error`] and frees the page.
    ///
    /// ```
    /// use wildx::{Code, Page};
    /// let page = Page::with_code(&[0x8d, 0x47, 0x01, 0xc3])?; // lea eax, [rdi + 1]; ret
    /// // SAFETY: the bytes return their i32 argument plus one, touching nothing else.
    /// let inc: Code<extern "C" fn(i32) -> i32> = unsafe { page.seal() }?;
    /// assert_eq!(inc.call((41,)), 42);
    /// assert_eq!(inc.seal_hash(), wildx::fnv1a64(&[0x8d, 0x47, 0x01, 0xc3]));
    /// # Ok::<(), wildx::Error>(())
    /// ```
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

    /// [`Page::seal`], naming the code for the profilers: with the perf map or jitdump
    /// enabled ([`crate::profiling`]) or the `gdb-jit` feature on, the sealed page shows
    /// up as `name` in `perf report` and in gdb backtraces (and drops out of gdb when
    /// freed). The name is copied, sanitised (control characters become `_`) and cut to
    /// [`crate::profiling::MAX_NAME_LEN`] bytes; an empty one becomes `wildx_0x<addr>`.
    /// Plain [`Page::seal`] names the code after its address.
    ///
    /// # Safety
    /// As [`Page::seal`].
    ///
    /// # Errors
    /// As [`Page::seal`]. Profiling never makes a seal fail: a record that cannot be
    /// written is dropped.
    pub unsafe fn seal_named<F: Signature>(self, name: &str) -> Result<Code<F>, SealError> {
        match page::seal_named(self.as_ptr(), self.access(), name) {
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
    /// the page is then still mapped, registered and WRITABLE, and comes back inside the
    /// [`FreeError`] so the caller can retry, or drop it. `?` turns the `FreeError` into
    /// its [`Error`] (dropping the page, which tries the `munmap` once more).
    ///
    /// ```
    /// let page = wildx::Page::new(64)?;
    /// let p = page.as_ptr();
    /// page.free()?;
    /// assert_eq!(wildx::raw::state(p), None);
    /// # Ok::<(), wildx::Error>(())
    /// ```
    pub fn free(self) -> Result<(), FreeError<Page>> {
        match page::free(self.as_ptr(), self.access()) {
            Ok(()) => {
                core::mem::forget(self);
                Ok(())
            }
            Err(error) => Err(FreeError { error, handle: self }),
        }
    }

    /// Gives up the handle and returns the page's pointer for the raw surface (the page
    /// stays mapped and WRITABLE; free it with [`crate::raw::free`]).
    ///
    /// ```
    /// let page = wildx::Page::new(64)?;
    /// let p = page.into_raw().as_ptr();
    /// assert_eq!(wildx::jit::install_add_i32(p), 0); // the raw surface may write it now
    /// // SAFETY: nothing writes `p` through the raw surface while the handle lives.
    /// let page = unsafe { wildx::Page::from_raw(p) }?;
    /// assert_eq!(page.as_slice()[..5], wildx::jit::ADD_I32);
    /// assert_eq!(wildx::raw::free(p), -1); // refused: a handle owns it again
    /// # Ok::<(), wildx::Error>(())
    /// ```
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
///
/// `?` keeps only the reason (and drops the page, which frees it); match on it to get the
/// page back, for example to hand its bytes to an interpreter instead:
///
/// ```
/// use wildx::{Error, Page, SealError};
/// let page = Page::with_code(&wildx::jit::ADD_I32)?;
/// // SAFETY: the bytes are add(i32, i32).
/// match unsafe { page.seal::<wildx::jit::AddI32>() } {
///     Ok(add) => assert_eq!(add.call((2, 3)), 5),
///     // Refused (say, a policy forbids executable memory): the page is still
///     // WRITABLE, with the same bytes.
///     Err(SealError { error, page }) => {
///         assert!(matches!(error, Error::Os(_)));
///         assert_eq!(page.as_slice(), &wildx::jit::ADD_I32);
///     }
/// }
/// # Ok::<(), wildx::Error>(())
/// ```
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

/// A refused [`Page::free`] or [`Code::free`]: the reason, and the handle, still owning
/// its live page. `T` is [`Page`] or [`Code<F>`].
///
/// `?` converts it into its [`Error`] (the handle is dropped, which tries the `munmap`
/// once more and, if that is refused too, leaves the page to the raw surface).
///
/// ```
/// fn rebuild() -> Result<(), wildx::Error> {
///     let old = wildx::jit::compile_add()?;
///     old.free()?; // a refusal comes back as wildx::Error::Os(errno)
///     Ok(())
/// }
/// rebuild()?;
/// # Ok::<(), wildx::Error>(())
/// ```
#[derive(Debug)]
pub struct FreeError<T> {
    /// Why the free was refused.
    pub error: Error,
    /// The handle, still owning its page, unchanged.
    pub handle: T,
}

impl<T> FreeError<T> {
    /// The handle, still owning its page.
    pub fn into_inner(self) -> T {
        self.handle
    }
}

impl<T> fmt::Display for FreeError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "free refused: {}", self.error)
    }
}

impl<T: fmt::Debug> core::error::Error for FreeError<T> {}

impl<T> From<FreeError<T>> for Error {
    /// Keeps the reason; the handle is dropped.
    fn from(e: FreeError<T>) -> Error {
        e.error
    }
}

/// Sealed, executable code of signature `F`, owned by this handle. Dropping it frees
/// the page.
///
/// There is no way to write through it. Calls go through [`Code::call`] (safe
/// signatures), [`Code::call_unchecked`] (`unsafe extern` signatures), or a
/// [`FnRef`] borrowed from it with [`Code::as_fn`]: all of them are runtime call paths,
/// which re-hash the page first under the `verify-on-call` feature. A bare function
/// pointer that could outlive the code only comes out of the `unsafe`
/// [`FnRef::into_fn`].
///
/// ```
/// use wildx::{Code, Page};
/// // mov rax, rdi; imul rax, rsi; ret
/// let mul = [0x48, 0x89, 0xf8, 0x48, 0x0f, 0xaf, 0xc6, 0xc3];
/// // SAFETY: the bytes multiply the two i64 arguments and return the product.
/// let mul: Code<extern "C" fn(i64, i64) -> i64> = unsafe { Page::with_code(&mul)?.seal() }?;
/// assert_eq!(mul.call((6, 7)), 42);
/// mul.verify()?; // the bytes are still the ones sealed
/// # Ok::<(), wildx::Error>(())
/// ```
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
    /// Calls the code with `args` as a tuple: `code.call((7, 35))`, `code.call(())` for
    /// no arguments, `code.call((x,))` for one.
    ///
    /// Only for safe signatures ([`SafeSignature`]); code typed as an `unsafe extern` fn
    /// is called with the `unsafe` [`Code::call_unchecked`]:
    /// ```compile_fail,E0277
    /// let page = wildx::Page::with_code(&[0x89, 0xf8, 0xc3])?; // mov eax, edi; ret
    /// // SAFETY: the bytes return their argument.
    /// let id = unsafe { page.seal::<unsafe extern "C" fn(i32) -> i32>() }?;
    /// id.call((1,)); // an unsafe fn type: no safe call
    /// # Ok::<(), wildx::Error>(())
    /// ```
    ///
    /// With the `verify-on-call` feature the page is first re-hashed and the process
    /// aborts (SIGABRT, one line on stderr) on a mismatch; without it this costs what a
    /// call through a function pointer costs.
    #[inline]
    pub fn call(&self, args: F::Args) -> F::Ret
    where
        F: SafeSignature,
    {
        // SAFETY: `F` is a safe fn type, so the call has no precondition of its own
        // beyond what `Page::seal`'s contract already guarantees for these bytes.
        unsafe { self.call_unchecked(args) }
    }

    /// Calls the code with `args` as a tuple, for any signature, `unsafe extern` ones
    /// included. The same runtime call path as [`Code::call`] (verify-on-call hooks in).
    ///
    /// # Safety
    /// Whatever calling a function of type `F` with `args` requires: for an
    /// `unsafe extern` signature, the preconditions of the code itself (valid pointers,
    /// ranges, and so on, as the code's author documented them when sealing it). For a
    /// safe signature there are none; use [`Code::call`].
    ///
    /// ```
    /// use wildx::{Code, Page};
    /// // movzx eax, byte ptr [rdi]; ret
    /// let load = [0x0f, 0xb6, 0x07, 0xc3];
    /// // SAFETY: the bytes read one byte at their pointer argument and return it; the
    /// // signature is unsafe because the pointer must be valid.
    /// let load: Code<unsafe extern "C" fn(*const u8) -> u8> =
    ///     unsafe { Page::with_code(&load)?.seal() }?;
    /// let byte = 0x2a_u8;
    /// // SAFETY: `&byte` is valid for reading one byte.
    /// assert_eq!(unsafe { load.call_unchecked((&byte,)) }, 0x2a);
    /// # Ok::<(), wildx::Error>(())
    /// ```
    #[inline]
    pub unsafe fn call_unchecked(&self, args: F::Args) -> F::Ret {
        #[cfg(feature = "verify-on-call")]
        page::verify_before_call(self.ptr.as_ptr());
        // SAFETY: the page is live and EXECUTABLE while `self` is (held flag: nobody
        // else can free it), `Page::seal`'s contract says its bytes implement `F`, and
        // the caller meets `F`'s own preconditions.
        unsafe { F::call_at(self.ptr, args) }
    }

    /// A typed function reference borrowed from this code: `Copy`, callable, and unable
    /// to outlive the `Code` (so the code cannot be freed while it exists).
    ///
    /// ```
    /// let add = wildx::jit::compile_add()?;
    /// let f = add.as_fn();
    /// let table = [f, f];
    /// assert_eq!(table.iter().map(|f| f.call((20, 1))).sum::<i32>(), 42);
    /// # Ok::<(), wildx::Error>(())
    /// ```
    ///
    /// Freeing the code while the reference lives does not compile:
    /// ```compile_fail,E0505
    /// let add = wildx::jit::compile_add()?;
    /// let f = add.as_fn();
    /// drop(add); // the borrow is still in use below
    /// f.call((1, 2));
    /// # Ok::<(), wildx::Error>(())
    /// ```
    #[must_use]
    pub fn as_fn(&self) -> FnRef<'_, F> {
        FnRef { ptr: self.ptr, code: PhantomData }
    }

    /// Re-hashes the code and compares with the hash recorded at seal. Syscalls: none.
    ///
    /// # Errors
    /// [`Error::IntegrityMismatch`] with both hashes if the bytes changed (through
    /// `/proc/self/mem`, ptrace, or someone re-`mprotect`ing the page).
    ///
    /// ```
    /// use std::os::unix::fs::FileExt;
    /// let add = wildx::jit::compile_add()?;
    /// add.verify()?;
    /// // Tamper the way a debugger or an attacker with a write primitive would:
    /// // /proc/self/mem writes through the page protection.
    /// let mem = std::fs::OpenOptions::new().write(true).open("/proc/self/mem").unwrap();
    /// mem.write_all_at(&[0x29], add.as_ptr() as u64 + 2).unwrap(); // add -> sub
    /// let sealed = add.seal_hash();
    /// assert!(matches!(add.verify(), Err(wildx::Error::IntegrityMismatch { sealed: s, .. }) if s == sealed));
    /// # Ok::<(), wildx::Error>(())
    /// ```
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
    /// the code is then still mapped, registered and callable, and comes back inside the
    /// [`FreeError`]. `?` turns it into its [`Error`].
    ///
    /// ```
    /// let add = wildx::jit::compile_add()?;
    /// let p = add.as_ptr();
    /// add.free()?;
    /// assert_eq!(wildx::raw::state(p), None);
    /// # Ok::<(), wildx::Error>(())
    /// ```
    pub fn free(self) -> Result<(), FreeError<Code<F>>> {
        match page::free(self.as_ptr(), self.access()) {
            Ok(()) => {
                core::mem::forget(self);
                Ok(())
            }
            Err(error) => Err(FreeError { error, handle: self }),
        }
    }

    /// Gives up the handle and returns the pointer for the raw surface (the page stays
    /// mapped and EXECUTABLE; free it with [`crate::raw::free`]).
    ///
    /// ```
    /// use wildx::{jit::AddI32, Code};
    /// let p = wildx::jit::compile_add()?.into_raw().as_ptr();
    /// // SAFETY: p holds the add code, which implements AddI32.
    /// let add: Code<AddI32> = unsafe { Code::from_raw(p) }?;
    /// assert_eq!(add.call((40, 2)), 42);
    /// # Ok::<(), wildx::Error>(())
    /// ```
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

/// A typed function reference into a [`Code<F>`], borrowed from it by [`Code::as_fn`]
/// (or into an arena function, by [`crate::Entry::as_fn`]): the lifetime `'a` ties it to
/// the code, so it cannot be called after the code is freed or retired.
///
/// Calls go through the same runtime call path as [`Code::call`] (re-hashed first under
/// `verify-on-call`).
pub struct FnRef<'a, F: Signature> {
    ptr: NonNull<u8>,
    code: PhantomData<&'a Code<F>>,
}

impl<F: Signature> Clone for FnRef<'_, F> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<F: Signature> Copy for FnRef<'_, F> {}

// SAFETY: an FnRef is a shared borrow of a `Code<F>`, which is Sync: sending or sharing
// it gives other threads what `&Code<F>` gives them, calls only.
unsafe impl<F: Signature> Send for FnRef<'_, F> {}
// SAFETY: as Send.
unsafe impl<F: Signature> Sync for FnRef<'_, F> {}

impl<'a, F: Signature> FnRef<'a, F> {
    /// A reference to the code at `ptr`, for as long as `'a`.
    ///
    /// # Safety
    /// `ptr` must start live executable code implementing `F` that stays so for `'a`.
    pub(crate) unsafe fn new(ptr: NonNull<u8>) -> FnRef<'a, F> {
        FnRef { ptr, code: PhantomData }
    }

    /// Calls the code with `args` as a tuple; as [`Code::call`].
    #[inline]
    pub fn call(self, args: F::Args) -> F::Ret
    where
        F: SafeSignature,
    {
        // SAFETY: `F` is a safe fn type; the borrow keeps the code live and sealed.
        unsafe { self.call_unchecked(args) }
    }

    /// Calls the code with `args` as a tuple, for any signature; as
    /// [`Code::call_unchecked`].
    ///
    /// # Safety
    /// As [`Code::call_unchecked`]: whatever calling a function of type `F` with `args`
    /// requires.
    #[inline]
    pub unsafe fn call_unchecked(self, args: F::Args) -> F::Ret {
        #[cfg(feature = "verify-on-call")]
        page::verify_before_call(self.ptr.as_ptr());
        // SAFETY: the borrow of the `Code` keeps the page live and EXECUTABLE for `'a`;
        // `Page::seal`'s contract says its bytes implement `F`; the caller meets `F`'s
        // own preconditions.
        unsafe { F::call_at(self.ptr, args) }
    }

    /// The start of the code.
    #[must_use]
    pub fn as_ptr(self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// The bare function pointer, for a table the borrow checker cannot follow or a C
    /// callback. Calls through it skip the verify-on-call check.
    ///
    /// # Safety
    /// The returned pointer must not be called after the [`Code`] it came from is freed
    /// (dropped, [`Code::free`]d, or freed through the raw surface after
    /// [`Code::into_raw`]): the address may by then be unmapped, or hold other code.
    ///
    /// ```
    /// let add = wildx::jit::compile_add()?;
    /// // SAFETY: `f` is only called while `add` is alive.
    /// let f: wildx::jit::AddI32 = unsafe { add.as_fn().into_fn() };
    /// assert_eq!(f(40, 2), 42);
    /// drop(add); // `f` must not be called from here on
    /// # Ok::<(), wildx::Error>(())
    /// ```
    #[must_use]
    pub unsafe fn into_fn(self) -> F {
        // SAFETY: `F` is a fn pointer type (sealed trait, implemented only by the macro
        // below), and code and function pointers have the same size and representation
        // on x86-64.
        unsafe { core::mem::transmute_copy::<*mut u8, F>(&self.ptr.as_ptr()) }
    }
}

impl<F: Signature> fmt::Debug for FnRef<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnRef").field("ptr", &self.ptr).finish()
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A function-pointer type that sealed code can be typed as: a System V AMD64 function
/// of up to six arguments, written `extern "sysv64" fn(A, ..) -> R` or
/// `extern "C" fn(A, ..) -> R` (the same convention on x86-64 Linux), safe or `unsafe`.
///
/// Implemented by wildx only; you choose a signature by naming the fn type when
/// sealing. The arguments of a call are passed as a tuple (`()` for none, `(a,)` for
/// one). Safe fn types also implement [`SafeSignature`] and get the safe
/// [`Code::call`]; `unsafe extern` ones only the `unsafe` [`Code::call_unchecked`].
///
/// ```
/// use wildx::{Code, Page};
/// // A signature is a type alias; the bytes are `lea eax, [rdi + rsi*2]; ret`.
/// type Affine = extern "C" fn(i32, i32) -> i32;
/// // SAFETY: the bytes compute a + 2*b from the two i32 arguments.
/// let f: Code<Affine> = unsafe { Page::with_code(&[0x8d, 0x04, 0x77, 0xc3])?.seal() }?;
/// assert_eq!(f.call((2, 20)), 42);
/// # Ok::<(), wildx::Error>(())
/// ```
pub trait Signature: Copy + sealed::Sealed {
    /// The arguments, as a tuple (`()` for none, `(A,)` for one).
    type Args;
    /// The return type.
    type Ret;

    /// Calls the code at `code` as `Self`.
    ///
    /// # Safety
    /// `code` must be the start of live executable memory whose bytes implement `Self`
    /// (see [`Page::seal`]), and must stay mapped for the whole call; for an `unsafe`
    /// fn type, `args` must also meet that function's own preconditions.
    unsafe fn call_at(code: NonNull<u8>, args: Self::Args) -> Self::Ret;
}

/// The [`Signature`]s of safe fn types (`extern "sysv64" fn`, `extern "C" fn`): code of
/// such a type is called without `unsafe`, through [`Code::call`] and [`FnRef::call`].
pub trait SafeSignature: Signature {}

/// Implements [`Signature`] for one fn-pointer type of the given arity, and
/// [`SafeSignature`] too when `safe` is given.
macro_rules! signature_for {
    ($safety:ident, ($($qual:tt)*), $abi:literal, $($arg:ident),*) => {
        impl<R $(, $arg)*> sealed::Sealed for $($qual)* extern $abi fn($($arg),*) -> R {}

        impl<R $(, $arg)*> Signature for $($qual)* extern $abi fn($($arg),*) -> R {
            type Args = ($($arg,)*);
            type Ret = R;

            #[inline(always)]
            #[allow(non_snake_case)]
            #[allow(unused_unsafe)]
            unsafe fn call_at(code: NonNull<u8>, ($($arg,)*): Self::Args) -> R {
                // SAFETY: the caller guarantees `code` is live executable memory
                // implementing exactly this signature; code and function pointers have
                // the same size and representation on x86-64.
                let f: Self = unsafe { core::mem::transmute::<*mut u8, Self>(code.as_ptr()) };
                // SAFETY: for the `unsafe` fn types, the caller meets the function's own
                // preconditions (this function's contract); the safe ones have none.
                unsafe { f($($arg),*) }
            }
        }

        signature_for!(@$safety $($qual)* extern $abi fn($($arg),*) -> R; $($arg),*);
    };
    (@safe $ty:ty; $($arg:ident),*) => {
        impl<R $(, $arg)*> SafeSignature for $ty {}
    };
    (@unsafe $ty:ty; $($arg:ident),*) => {};
}

/// The four fn-pointer types of one arity: safe and `unsafe`, `"sysv64"` and `"C"`.
macro_rules! signature {
    ($($arg:ident),*) => {
        signature_for!(safe, (), "sysv64", $($arg),*);
        signature_for!(safe, (), "C", $($arg),*);
        signature_for!(unsafe, (unsafe), "sysv64", $($arg),*);
        signature_for!(unsafe, (unsafe), "C", $($arg),*);
    };
}

signature!();
signature!(A);
signature!(A, B);
signature!(A, B, C);
signature!(A, B, C, D);
signature!(A, B, C, D, E);
signature!(A, B, C, D, E, G);
