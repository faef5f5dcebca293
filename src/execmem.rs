//! Where executable memory comes from, and the page-range primitives built on it: map a
//! page writable, turn it executable, give it back; reserve an arena's range and move its
//! pages through the same states.
//!
//! Invariants owned here: no range is ever writable and executable at once (every
//! transition is `PROT_NONE` → `R|W` → `R|X` → gone, through wrappers that refuse W|X),
//! no writable view of a range exists once it is executable (in memfd mode the writable
//! mapping is *replaced* by the executable one, at the same address, in one `mmap`), a
//! released range keeps no memory and no access (a stale pointer into it faults), and a
//! child made by `fork` never inherits a view of this process's code file.
//!
//! **Two modes, detected once.** At the first page or arena, wildx maps one page `R|W`
//! and `mprotect`s it `R|X`, as every seal does. If the kernel allows it, wildx uses
//! anonymous memory ([`ExecMode::Anonymous`]: `mmap` `R|W`, `mprotect` `R|X`, `munmap`).
//! If a policy refuses it with `EACCES` or `EPERM` (SELinux `deny_execmem`, PaX
//! MPROTECT, a seccomp filter), wildx falls back to memory backed by one memfd
//! ([`ExecMode::Memfd`]): a page is a `MAP_SHARED` `R|W` mapping of the file, and
//! sealing replaces it, with `MAP_FIXED`, by an `R|X` mapping of the same file range;
//! SELinux checks such a mapping as the execution of a file, not as `execmem` (the
//! tests stand in for SELinux with a seccomp filter refusing what `execmem` refuses:
//! this machine has no SELinux). If that
//! is refused too, every allocation fails with [`Error::ExecDenied`], which names both
//! refusals ([`ExecMode::Denied`]). The result is remembered: no probe is made again.
//!
//! **The file.** One memfd per process (`MFD_CLOEXEC`, and `MFD_EXEC` where the kernel
//! knows `vm.memfd_noexec`), sparse, [`FILE_SIZE`] bytes long: a page at address `a` uses
//! the file range at offset `a`. Live mappings never overlap, so neither do their file
//! ranges, and no offset allocator is needed; one descriptor serves however many pages
//! are live. Freeing a page first replaces it by an inaccessible anonymous mapping
//! (the address stays taken), then punches its range out of the file (its memory goes
//! back to the system), then unmaps: a new page the kernel puts at the same address can
//! never see the old bytes, nor lose its own to a late punch.
//!
//! **fork in memfd mode.** A `MAP_SHARED` view would be shared with a child: a child
//! forked while a page is writable would keep a writable view of bytes the parent then
//! seals, and a page the parent frees would read as zeros in the child. So every view of
//! the file is `MADV_DONTFORK`: a child does not inherit the parent's code at all. In
//! the child, wildx opens a file of its own at its first call (or in
//! [`crate::atfork_child`]), forgets the parent's pages (their addresses are plugged with
//! inaccessible mappings, so a stale call faults), and refuses every operation on an
//! inherited arena with [`Error::Inherited`].
//!
//! This module needs `unsafe` because changing the protection of, or replacing, a range
//! is only sound for ranges the caller owns with no live references into them.

#![allow(unsafe_code)]

use core::ptr::NonNull;
use core::sync::atomic::{AtomicI32, AtomicU8, Ordering};

use crate::error::Error;
use crate::placement;
use crate::sys::{self, Errno, PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE};

/// Where wildx's executable memory comes from in this process (see the module docs and
/// `docs/hardening.md`). Shown in [`crate::Stats::exec_mode`].
#[repr(usize)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ExecMode {
    /// Nothing was mapped yet: the mode is chosen at the first page or arena.
    #[default]
    Undetected = 0,
    /// Anonymous memory: `mmap` `R|W`, `mprotect` `R|X`.
    Anonymous = 1,
    /// The kernel refused `PROT_EXEC` on anonymous memory: pages are views of a memfd,
    /// the writable view replaced by an executable one at seal.
    Memfd = 2,
    /// Both were refused: every allocation fails with [`Error::ExecDenied`].
    Denied = 3,
}

/// The memfd's size: every user-space address (below 2^47, or 2^56 with five-level page
/// tables) is a valid offset. Sparse: it costs nothing until a page is written.
pub(crate) const FILE_SIZE: u64 = 1 << 56;

/// The mode, as an [`ExecMode`] discriminant.
static MODE: AtomicU8 = AtomicU8::new(ExecMode::Undetected as u8);
/// The memfd in memfd mode (-1 otherwise), and the process it belongs to.
#[cfg(feature = "memfd")]
static FD: AtomicI32 = AtomicI32::new(-1);
#[cfg(feature = "memfd")]
static OWNER: AtomicI32 = AtomicI32::new(0);
/// Why anonymous memory, and then a memfd, were refused (raw errnos, 0 if not).
static ANON_REFUSED: AtomicI32 = AtomicI32::new(0);
static MEMFD_REFUSED: AtomicI32 = AtomicI32::new(0);
/// Serialises detection (and a forked child's new file).
static DETECTING: crate::lock::Mutex<()> = crate::lock::Mutex::new(());

/// How one mapping is backed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backing {
    /// Anonymous private memory.
    Anonymous,
    /// A view of this process's memfd (the descriptor), at offset = address.
    #[cfg(feature = "memfd")]
    Memfd(i32),
}

/// The mode in force, without detecting it.
pub fn exec_mode() -> ExecMode {
    // Acquire: pairs with the Release in `detect`, so FD and OWNER are visible.
    match MODE.load(Ordering::Acquire) {
        1 => ExecMode::Anonymous,
        2 => ExecMode::Memfd,
        3 => ExecMode::Denied,
        _ => ExecMode::Undetected,
    }
}

/// Chooses the memfd mode before anything is mapped, without first trying anonymous
/// memory (whose refusal a system may log: SELinux writes an AVC denial for each
/// `execmem` probe). Returns the mode in force afterwards: [`ExecMode::Memfd`], or
/// [`ExecMode::Anonymous`] if wildx had already mapped pages anonymously (the mode is
/// chosen once per process and does not change).
///
/// Without the `memfd` feature (on by default) this chooses nothing and returns the mode
/// in force.
///
/// ```
/// match wildx::use_memfd() {
///     Ok(wildx::ExecMode::Memfd) => {}     // every page from now on is a memfd view
///     Ok(_) => {}                          // too late: anonymous pages already exist
///     Err(error) => panic!("{error}"),     // memfds cannot be executable here either
/// }
/// let code = wildx::jit::compile_add()?;
/// assert_eq!(code.call((2, 3)), 5);
/// # Ok::<(), wildx::Error>(())
/// ```
///
/// # Errors
/// [`Error::ExecDenied`] if an executable memfd mapping is refused too (the mode is then
/// [`ExecMode::Denied`]); [`Error::Os`] for a passing failure (`EMFILE`, `ENOMEM`),
/// remembering nothing.
pub fn use_memfd() -> Result<ExecMode, Error> {
    let _detecting = DETECTING.lock();
    match exec_mode() {
        ExecMode::Undetected => {}
        ExecMode::Denied => return Err(denied()),
        mode => return Ok(mode),
    }
    #[cfg(feature = "memfd")]
    memfd_fallback()?;
    Ok(exec_mode())
}

/// The backing for new mappings, detecting the mode at the first call. In memfd mode,
/// the child of a `fork` gets a file of its own here (see the module docs).
///
/// Call it holding no registry or arena lock: a forked child's first call takes both.
///
/// # Errors
/// [`Error::ExecDenied`] in denied mode; [`Error::Os`] if the probe failed for a passing
/// reason (`ENOMEM`, `EMFILE`), in which case nothing is remembered.
pub(crate) fn backing() -> Result<Backing, Error> {
    match exec_mode() {
        ExecMode::Anonymous => Ok(Backing::Anonymous),
        #[cfg(feature = "memfd")]
        ExecMode::Memfd => {
            // Relaxed: written before MODE's Release (or by this process in `forked`).
            let fd = FD.load(Ordering::Relaxed);
            if OWNER.load(Ordering::Relaxed) == sys::getpid() {
                return Ok(Backing::Memfd(fd));
            }
            forked()
        }
        ExecMode::Undetected => detect(),
        _ => Err(denied()),
    }
}

/// The error of denied mode.
fn denied() -> Error {
    // Relaxed: written before MODE's Release.
    let memfd = MEMFD_REFUSED.load(Ordering::Relaxed);
    Error::ExecDenied {
        anonymous: Errno::from_raw(ANON_REFUSED.load(Ordering::Relaxed)),
        memfd: (memfd != 0).then(|| Errno::from_raw(memfd)),
    }
}

/// Whether `errno` is a policy's refusal (rather than a passing shortage).
fn is_refusal(errno: Errno) -> bool {
    errno == Errno::EACCES || errno == Errno::EPERM
}

fn detect() -> Result<Backing, Error> {
    #[cfg(not(feature = "memfd"))]
    {
        // Nothing to fall back to: anonymous memory, and a refused seal says so
        // (`Error::ExecDenied` with `memfd: None`).
        // Release: pairs with `exec_mode`'s Acquire.
        MODE.store(ExecMode::Anonymous as u8, Ordering::Release);
        Ok(Backing::Anonymous)
    }
    #[cfg(feature = "memfd")]
    {
        let _detecting = DETECTING.lock();
        if exec_mode() != ExecMode::Undetected {
            drop(_detecting);
            return backing();
        }
        match probe_anonymous() {
            Ok(()) => {
                // Release: pairs with `exec_mode`'s Acquire.
                MODE.store(ExecMode::Anonymous as u8, Ordering::Release);
                Ok(Backing::Anonymous)
            }
            Err(errno) if is_refusal(errno) => {
                ANON_REFUSED.store(errno.raw(), Ordering::Relaxed);
                memfd_fallback()
            }
            Err(errno) => Err(Error::Os(errno)),
        }
    }
}

#[cfg(feature = "memfd")]
/// Opens the memfd and enters memfd mode, or enters denied mode. Holds `DETECTING`.
fn memfd_fallback() -> Result<Backing, Error> {
    match open_file() {
        Ok(fd) => {
            FD.store(fd, Ordering::Relaxed);
            OWNER.store(sys::getpid(), Ordering::Relaxed);
            // Release: FD and OWNER before the mode.
            MODE.store(ExecMode::Memfd as u8, Ordering::Release);
            Ok(Backing::Memfd(fd))
        }
        Err(errno) if is_refusal(errno) || errno == Errno::ENOSYS => {
            MEMFD_REFUSED.store(errno.raw(), Ordering::Relaxed);
            // Release: the errnos before the mode.
            MODE.store(ExecMode::Denied as u8, Ordering::Release);
            Err(denied())
        }
        Err(errno) => Err(Error::Os(errno)),
    }
}

/// What a seal does, once, on a page of its own: `mmap` `R|W`, `mprotect` `R|X`.
#[cfg(feature = "memfd")]
fn probe_anonymous() -> Result<(), Errno> {
    let page = sys::mmap_anonymous(sys::PAGE_SIZE, PROT_READ | PROT_WRITE)?;
    // SAFETY: a fresh page only this function knows.
    let result = unsafe { sys::mprotect(page, sys::PAGE_SIZE, PROT_READ | PROT_EXEC) };
    // SAFETY: as above; nothing uses it.
    let _ = unsafe { sys::munmap(page, sys::PAGE_SIZE) };
    result
}

#[cfg(feature = "memfd")]
/// Creates this process's memfd and checks, on one page, that a view of it can be
/// replaced by an executable one. Returns the descriptor.
fn open_file() -> Result<i32, Errno> {
    let fd = match sys::memfd_create(b"wildx\0", sys::MFD_CLOEXEC | sys::MFD_EXEC) {
        // A kernel before 6.3 does not know MFD_EXEC (and makes every memfd executable).
        Err(Errno::EINVAL) => sys::memfd_create(b"wildx\0", sys::MFD_CLOEXEC)?,
        other => other?,
    };
    let checked = sys::ftruncate(fd, FILE_SIZE).and_then(|()| {
        let page = sys::mmap_anonymous(sys::PAGE_SIZE, PROT_NONE)?;
        let offset = page.as_ptr() as u64;
        // SAFETY: `page` is a fresh mapping only this function knows; it is replaced twice
        // and unmapped, never read or written.
        let writable = unsafe { sys::mmap_shared_fixed(page, sys::PAGE_SIZE, PROT_READ | PROT_WRITE, fd, offset) };
        // SAFETY: as above: the writable view just made, never written, replaced.
        let result = writable
            .and_then(|()| unsafe { sys::mmap_shared_fixed(page, sys::PAGE_SIZE, PROT_READ | PROT_EXEC, fd, offset) });
        // SAFETY: as above.
        let _ = unsafe { sys::munmap(page, sys::PAGE_SIZE) };
        result
    });
    match checked {
        Ok(()) => Ok(fd),
        Err(errno) => {
            let _ = sys::close(fd);
            Err(errno)
        }
    }
}

/// In memfd mode, the first call of a forked child: the parent's pages and arenas
/// forgotten (see `crate::fork::forget_inherited`), and a file of its own.
#[cfg(feature = "memfd")]
#[cold]
fn forked() -> Result<Backing, Error> {
    let detecting = DETECTING.lock();
    // Relaxed: DETECTING orders these.
    if OWNER.load(Ordering::Relaxed) == sys::getpid() {
        return Ok(Backing::Memfd(FD.load(Ordering::Relaxed)));
    }
    // The parent's descriptor: this process never maps or punches the parent's file.
    let _ = sys::close(FD.load(Ordering::Relaxed));
    let opened = open_file();
    FD.store(*opened.as_ref().unwrap_or(&-1), Ordering::Relaxed);
    OWNER.store(sys::getpid(), Ordering::Relaxed);
    drop(detecting);
    crate::fork::forget_inherited();
    Ok(Backing::Memfd(opened.map_err(Error::Os)?))
}

/// In memfd mode, makes a forked child forget its parent's pages before anything looks
/// them up (see the module docs). Elsewhere one atomic load; in memfd mode a `getpid`.
pub(crate) fn settle_fork() {
    #[cfg(feature = "memfd")]
    if exec_mode() == ExecMode::Memfd {
        // Relaxed: as in `backing`.
        if OWNER.load(Ordering::Relaxed) != sys::getpid() {
            let _ = forked();
        }
    }
}

/// Whether this is a forked child in memfd mode that has not yet forgotten its parent's
/// pages: the registry still names pages that are not mapped here. Async-signal-safe
/// (an atomic load and, in memfd mode, `getpid`).
pub(crate) fn unsettled_child() -> bool {
    // Relaxed: as in `backing`.
    #[cfg(feature = "memfd")]
    return exec_mode() == ExecMode::Memfd && OWNER.load(Ordering::Relaxed) != sys::getpid();
    #[cfg(not(feature = "memfd"))]
    false
}

/// In memfd mode, whether this process is the one whose file backs mappings made for
/// `owner` (a pid recorded at creation): false in a forked child.
pub(crate) fn owns(owner: i32) -> bool {
    owner == 0 || owner == sys::getpid()
}

/// The pid recorded for a mapping made with `backing` (0 for anonymous memory).
pub(crate) fn owner_of(backing: Backing) -> i32 {
    match backing {
        Backing::Anonymous => 0,
        // Relaxed: set by this process before any of its mappings.
        #[cfg(feature = "memfd")]
        Backing::Memfd(_) => OWNER.load(Ordering::Relaxed),
    }
}

#[cfg(feature = "memfd")]
/// Marks a file view not to be inherited by `fork` (see the module docs). A fresh view
/// is one whole kernel mapping, so this cannot split one and fails only if the range is
/// not mapped.
fn dont_fork(addr: NonNull<u8>, len: usize) -> Result<(), Errno> {
    sys::madvise_dontfork(addr, len)
}

/// A refused `PROT_EXEC`, as the error that says so.
fn exec_refused(errno: Errno, backing: Backing) -> Error {
    if !is_refusal(errno) {
        return Error::Os(errno);
    }
    match backing {
        // The probe passed but a policy installed since refuses: memfd not tried.
        Backing::Anonymous => Error::ExecDenied { anonymous: errno, memfd: None },
        #[cfg(feature = "memfd")]
        Backing::Memfd(_) => Error::ExecDenied {
            // Relaxed: written before MODE's Release.
            anonymous: Errno::from_raw(ANON_REFUSED.load(Ordering::Relaxed)),
            memfd: Some(errno),
        },
    }
}

// ---- pages ----

/// Maps `len` bytes (whole pages) readable and writable, never executable, at a
/// randomized address (see `crate::placement`), named `wildx` where the kernel names
/// mappings. Detects the mode at the first call.
///
/// # Errors
/// [`Error::ExecDenied`] in denied mode; [`Error::Os`] if the kernel refuses.
///
/// Always inlined into its one caller, `page::alloc`, as `placement::map` is into it.
#[inline(always)]
pub(crate) fn map_page(len: usize) -> Result<(NonNull<u8>, Backing), Error> {
    let backing = backing()?;
    let ptr = match backing {
        Backing::Anonymous => {
            let ptr = placement::map(len, PROT_READ | PROT_WRITE).map_err(Error::Os)?;
            placement::name(ptr, len, placement::PAGE_NAME);
            ptr
        }
        #[cfg(feature = "memfd")]
        Backing::Memfd(fd) => {
            let ptr = placement::map_file(len, PROT_READ | PROT_WRITE, fd).map_err(Error::Os)?;
            if let Err(errno) = dont_fork(ptr, len) {
                // SAFETY: a fresh mapping only this function knows; never written.
                let _ = unsafe { sys::munmap(ptr, len) };
                return Err(Error::Os(errno));
            }
            ptr
        }
    };
    Ok((ptr, backing))
}

/// Turns the page `[addr, addr + len)` from [`map_page`] executable and no longer
/// writable: anonymous memory is `mprotect`ed; a memfd view is replaced, at the same
/// address, by an `R|X` view of the same bytes, so no writable view is left.
///
/// # Safety
/// `[addr, addr + len)` is a whole page from [`map_page`] of this process that the
/// caller owns, and no `&mut` into it is used afterwards.
///
/// # Errors
/// [`Error::ExecDenied`] if a policy refuses `PROT_EXEC`, [`Error::Os`] otherwise. The
/// page is unchanged (still `R|W`, same bytes) on an error.
pub(crate) unsafe fn seal_page(addr: NonNull<u8>, len: usize) -> Result<(), Error> {
    // A page of this process exists, so the mode is known and the file is ours (the
    // caller settled a fork before looking the page up).
    let backing = backing()?;
    // SAFETY: forwarded from the caller's contract.
    unsafe { make_rx(addr, len, backing) }
}

/// Unmaps the page `[addr, addr + len)` from [`map_page`]. In memfd mode its file range
/// is punched out first, while the address is still taken (see the module docs).
///
/// # Safety
/// `[addr, addr + len)` is a whole page from [`map_page`] of this process that the
/// caller owns and nothing uses any more.
///
/// # Errors
/// `ENOMEM` at the map-count limit; the page is then unchanged.
pub(crate) unsafe fn unmap_page(addr: NonNull<u8>, len: usize) -> Result<(), Errno> {
    match exec_mode() {
        #[cfg(feature = "memfd")]
        ExecMode::Memfd => {
            // Relaxed: this process's file, set before any of its mappings.
            let fd = FD.load(Ordering::Relaxed);
            // SAFETY: forwarded: the page is a view of this process's file, ours, unused.
            unsafe { release_file_view(addr, len, fd)? };
            // SAFETY: the inaccessible stand-in `release_file_view` left, ours.
            let _ = unsafe { sys::munmap(addr, len) };
            Ok(())
        }
        _ => {
            // SAFETY: forwarded: the page is ours and unused.
            unsafe { sys::munmap(addr, len) }?;
            // A hole of the ring is free again (`crate::placement`).
            placement::released(addr.as_ptr() as usize, len);
            Ok(())
        }
    }
}

#[cfg(feature = "memfd")]
/// Replaces a file view by an inaccessible anonymous mapping (the address stays taken),
/// then punches its range out of the file `fd`.
///
/// # Safety
/// The range is a view of the file `fd` of this process, at offset = address, that the
/// caller owns and nothing uses.
unsafe fn release_file_view(addr: NonNull<u8>, len: usize, fd: i32) -> Result<(), Errno> {
    // SAFETY: forwarded from the caller's contract.
    unsafe { sys::mmap_anonymous_fixed(addr, len, PROT_NONE)? };
    // SAFETY: the range was only ever mapped at this address, by this process (offset =
    // address), and that view is gone: nothing relies on its bytes. A refused punch
    // only keeps the memory until the file goes.
    let _ = unsafe { sys::punch_hole(fd, addr.as_ptr() as u64, len) };
    Ok(())
}

// ---- arenas ----

/// Reserves `len` bytes (rounded up to whole pages) of address space, inaccessible, at a
/// random address (see `crate::placement`), named `wildx-arena`, and says how its pages
/// will be backed. One kernel mapping; no memory is committed and no quota should be
/// charged for it. Detects the mode at the first call.
///
/// # Errors
/// [`Error::ZeroLength`], [`Error::LengthOverflow`], [`Error::ExecDenied`] in denied
/// mode, [`Error::Os`] if the kernel refuses.
pub(crate) fn reserve(len: usize) -> Result<(NonNull<u8>, Backing), Error> {
    if len == 0 {
        return Err(Error::ZeroLength);
    }
    let len = crate::registry::checked_round_to_pages(len).ok_or(Error::LengthOverflow)?;
    let backing = backing()?;
    Ok((placement::reserve(len).map_err(Error::Os)?, backing))
}

/// Makes `[addr, addr + len)` readable and writable (never executable). The caller
/// fills it (with `0xCC` first, by wildx's convention).
///
/// # Safety
/// `addr` is page-aligned and `[addr, addr + len)` lies inside a reservation from
/// [`reserve`] with this `backing` that the caller owns, in pages that are `PROT_NONE`
/// (never published: a page that held published code must never become writable again).
///
/// # Errors
/// `ENOMEM` if the split passes the map-count limit; `EACCES`/`EPERM` from a policy.
pub(crate) unsafe fn make_rw(addr: NonNull<u8>, len: usize, backing: Backing) -> Result<(), Errno> {
    let prot = PROT_READ | PROT_WRITE;
    debug_assert!(prot & PROT_EXEC == 0, "W^X");
    match backing {
        // SAFETY: the caller owns the range and nothing references it (see # Safety).
        Backing::Anonymous => unsafe { sys::mprotect(addr, len, prot) },
        #[cfg(feature = "memfd")]
        Backing::Memfd(fd) => {
            // SAFETY: as above; the file range at offset = address is this range's alone.
            unsafe { sys::mmap_shared_fixed(addr, len, prot, fd, addr.as_ptr() as u64)? };
            dont_fork(addr, len)
        }
    }
}

/// Makes `[addr, addr + len)` readable and executable, no longer writable: the publish
/// of a run of pages (or a page's seal), one `mprotect`, or in memfd mode one `mmap` that
/// replaces the writable view by an executable view of the same bytes.
///
/// # Safety
/// As [`make_rw`], the range is `R|W` now, and no `&mut` to any byte of it is used
/// afterwards (writes fault from here on).
///
/// # Errors
/// [`Error::ExecDenied`] where executable memory is denied; [`Error::Os`] with `ENOMEM`
/// at the map-count limit. On an error the range is unchanged (still `R|W`).
pub(crate) unsafe fn make_rx(addr: NonNull<u8>, len: usize, backing: Backing) -> Result<(), Error> {
    let prot = PROT_READ | PROT_EXEC;
    debug_assert!(prot & PROT_WRITE == 0, "W^X");
    match backing {
        // SAFETY: the caller owns the range and will not write it again (see # Safety).
        Backing::Anonymous => unsafe { sys::mprotect(addr, len, prot) }.map_err(|e| exec_refused(e, backing)),
        #[cfg(feature = "memfd")]
        Backing::Memfd(fd) => {
            // SAFETY: as above. The kernel (seccomp, then the LSM) checks PROT_EXEC before
            // the old view is touched, so a refusal leaves it in place.
            unsafe { sys::mmap_shared_fixed(addr, len, prot, fd, addr.as_ptr() as u64) }
                .map_err(|e| exec_refused(e, backing))?;
            // A fresh view is one whole mapping: only an unmapped range fails, which the
            // mmap above rules out.
            let marked = dont_fork(addr, len);
            debug_assert!(marked.is_ok(), "MADV_DONTFORK on a fresh view: {marked:?}");
            Ok(())
        }
    }
}

/// Gives `[addr, addr + len)` back to the kernel but keeps it reserved: a fresh
/// anonymous `PROT_NONE` mapping replaces it in one `MAP_FIXED` `mmap`, so its memory is
/// freed (in memfd mode its file range is punched out too), its old contents are gone,
/// and any access faults.
///
/// # Safety
/// `addr` is page-aligned, the range lies inside a reservation with this `backing` that
/// the caller owns, and nothing uses its bytes any more (no thread runs code in it, no
/// reference into it).
///
/// # Errors
/// `ENOMEM` at the map-count limit (the range is then unchanged).
pub(crate) unsafe fn release(addr: NonNull<u8>, len: usize, backing: Backing) -> Result<(), Errno> {
    match backing {
        // SAFETY: MAP_FIXED replaces exactly the caller's own, unused range (see # Safety).
        Backing::Anonymous => unsafe { sys::mmap_anonymous_fixed(addr, len, PROT_NONE) },
        // SAFETY: as above; the range is a view of this process's file.
        #[cfg(feature = "memfd")]
        Backing::Memfd(fd) => unsafe { release_file_view(addr, len, fd) },
    }
}

/// Unmaps a whole reservation (the arena's drop). In memfd mode the file range of its
/// first `committed` bytes is punched out first, while the address is still taken.
///
/// # Safety
/// `[addr, addr + len)` is a reservation from [`reserve`] (its rounded length) with this
/// `backing`, made by this process (`owns` its file), that the caller owns and nothing
/// uses any more; `committed <= len`.
///
/// # Errors
/// `ENOMEM` at the map-count limit.
pub(crate) unsafe fn unreserve(addr: NonNull<u8>, len: usize, committed: usize, backing: Backing) -> Result<(), Errno> {
    #[cfg(not(feature = "memfd"))]
    let _ = (committed, backing);
    #[cfg(feature = "memfd")]
    if let Backing::Memfd(fd) = backing {
        if committed > 0 {
            // SAFETY: the committed range is this arena's part of this process's file;
            // nothing uses it any more (see # Safety). Refused: memory kept until exit.
            let _ = unsafe { sys::punch_hole(fd, addr.as_ptr() as u64, committed) };
        }
    }
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
        // The last check (the range unmapped) and the W|X scan of the whole process hold
        // only where no other test thread maps memory: in a child running this alone.
        if !crate::test_support::in_child_alone("execmem::tests::a_page_goes_none_rw_rx_none_and_never_wx") {
            return;
        }
        let len = 16 * sys::PAGE_SIZE;
        let (base, _) = reserve(len - 100).unwrap();
        let backing = Backing::Anonymous;
        let at = |i: usize| NonNull::new(base.as_ptr().wrapping_add(i * sys::PAGE_SIZE)).unwrap();
        assert_eq!(perms(base.as_ptr() as usize), "---p");
        // SAFETY: pages 2..4 of our own reservation, never published.
        unsafe { make_rw(at(2), 2 * sys::PAGE_SIZE, backing) }.unwrap();
        assert_eq!(perms(at(2).as_ptr() as usize), "-w-p");
        // SAFETY: as above; the bytes are ours and written before the publish.
        unsafe { at(2).as_ptr().write_bytes(0xc3, 2 * sys::PAGE_SIZE) };
        // SAFETY: as above; never written after this.
        unsafe { make_rx(at(2), 2 * sys::PAGE_SIZE, backing) }.unwrap();
        assert_eq!(perms(at(3).as_ptr() as usize), "r-xp");
        // SAFETY: the page holds `ret`; calling it returns at once.
        let f: extern "C" fn() = unsafe { core::mem::transmute(at(3).as_ptr()) };
        f();
        // SAFETY: nothing uses pages 2..4 any more.
        unsafe { release(at(2), 2 * sys::PAGE_SIZE, backing) }.unwrap();
        assert_eq!(perms(at(2).as_ptr() as usize), "---p");
        // Released pages read back as zero if made readable again: memory was freed.
        // SAFETY: our own released page; made read-only, and only read below.
        unsafe { sys::mprotect(at(2), sys::PAGE_SIZE, PROT_READ) }.unwrap();
        // SAFETY: readable now, one page.
        assert_eq!(unsafe { at(2).as_ptr().read_volatile() }, 0);
        assert!(!std::fs::read_to_string("/proc/self/maps").unwrap().lines().any(|l| l.contains("rwx")));
        // SAFETY: the whole reservation, nothing uses it.
        unsafe { unreserve(base, len, 4 * sys::PAGE_SIZE, backing) }.unwrap();
        assert_eq!(perms(base.as_ptr() as usize), "unmapped");
    }
}
