//! Raw x86-64 Linux syscalls, one small typed function per call.
//!
//! Invariant owned here: nothing above this module issues a syscall or sees the kernel's
//! `usize` return convention; every wrapper returns `Result<_, Errno>`.
//!
//! This module needs `unsafe` because a syscall is an `asm!` block the compiler cannot
//! check: each wrapper states which arguments the kernel dereferences and why they are
//! valid. The wrappers that can only fail (never corrupt memory the caller does not own)
//! are safe functions; the ones that change or drop mappings are `unsafe fn`.

#![allow(unsafe_code)]

use core::fmt;
use core::ptr::NonNull;

use syscalls::Sysno;

/// The size of one page on x86-64 Linux; wildx maps whole pages.
pub const PAGE_SIZE: usize = 4096;

/// `PROT_READ`: pages may be read.
pub const PROT_READ: u32 = 0x1;
/// `PROT_WRITE`: pages may be written.
pub const PROT_WRITE: u32 = 0x2;
/// `PROT_EXEC`: pages may be executed.
pub const PROT_EXEC: u32 = 0x4;
/// `MAP_PRIVATE`: copy-on-write mapping private to this process.
pub const MAP_PRIVATE: u32 = 0x02;
/// `MAP_ANONYMOUS`: the mapping is not backed by a file.
pub const MAP_ANONYMOUS: u32 = 0x20;
/// `SIGABRT`, the signal the verify-on-call failure path raises.
pub const SIGABRT: i32 = 6;
/// `SIG_UNBLOCK` for `rt_sigprocmask`.
pub const SIG_UNBLOCK: i32 = 1;
/// Standard error's file descriptor.
pub const STDERR: i32 = 2;

/// A kernel error code (`errno`), e.g. `ENOMEM` = 12.
///
/// A newtype rather than an enum, so that a code this crate does not name is still
/// representable and round-trips unchanged.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(i32);

impl Errno {
    /// `EPERM`: operation not permitted.
    pub const EPERM: Errno = Errno(1);
    /// `EINTR`: interrupted system call.
    pub const EINTR: Errno = Errno(4);
    /// `EAGAIN`: try again.
    pub const EAGAIN: Errno = Errno(11);
    /// `ENOMEM`: out of memory (or address space, or a map-count limit).
    pub const ENOMEM: Errno = Errno(12);
    /// `EACCES`: permission denied (e.g. `PROT_EXEC` refused by SELinux `execmem`).
    pub const EACCES: Errno = Errno(13);
    /// `EFAULT`: bad address.
    pub const EFAULT: Errno = Errno(14);
    /// `EINVAL`: invalid argument.
    pub const EINVAL: Errno = Errno(22);

    /// Wraps a raw, positive errno value.
    pub const fn from_raw(code: i32) -> Errno {
        Errno(code)
    }

    /// The raw, positive errno value.
    pub const fn raw(self) -> i32 {
        self.0
    }

    /// The symbolic name of the common codes (`"ENOMEM"`), or `None`.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            1 => "EPERM",
            4 => "EINTR",
            11 => "EAGAIN",
            12 => "ENOMEM",
            13 => "EACCES",
            14 => "EFAULT",
            22 => "EINVAL",
            _ => return None,
        })
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "Errno({name})"),
            None => write!(f, "Errno({})", self.0),
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} (errno {})", self.0),
            None => write!(f, "errno {}", self.0),
        }
    }
}

fn check(ret: Result<usize, syscalls::Errno>) -> Result<usize, Errno> {
    ret.map_err(|e| Errno(e.into_raw()))
}

/// Maps `len` bytes of fresh, zeroed, anonymous private memory with protection `prot`
/// (`mmap(NULL, len, prot, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)`).
///
/// Creating a new mapping at an address the kernel chooses cannot disturb existing
/// memory, so this is safe.
///
/// # Errors
/// `EINVAL` for a zero length, `ENOMEM` when the address space, `RLIMIT_AS` or the map
/// count is exhausted, `EACCES`/`EPERM` when a security policy refuses `prot`.
pub fn mmap_anonymous(len: usize, prot: u32) -> Result<NonNull<u8>, Errno> {
    // SAFETY: with a null hint and without MAP_FIXED the kernel picks an unused range, so
    // no existing mapping is replaced; no pointer argument is dereferenced.
    let ret = unsafe {
        syscalls::syscall6(
            Sysno::mmap,
            0,
            len,
            prot as usize,
            (MAP_PRIVATE | MAP_ANONYMOUS) as usize,
            usize::MAX, // fd -1
            0,
        )
    };
    let addr = check(ret)?;
    // A successful mmap never returns address 0 without MAP_FIXED (mmap_min_addr).
    NonNull::new(addr as *mut u8).ok_or(Errno::ENOMEM)
}

/// Changes the protection of the pages covering `[addr, addr + len)` to `prot`.
///
/// # Safety
/// `addr` must be page-aligned and `[addr, addr + len)` must lie in mappings the caller
/// owns, with no live Rust reference to those bytes that the new protection would
/// invalidate (removing `PROT_WRITE` under a `&mut [u8]` that is still used faults).
///
/// # Errors
/// `EINVAL` for a misaligned address, `ENOMEM` for an unmapped range, `EACCES` when a
/// security policy (SELinux `execmem`, PaX, seccomp) refuses the protection.
pub unsafe fn mprotect(addr: NonNull<u8>, len: usize, prot: u32) -> Result<(), Errno> {
    // SAFETY: the caller owns the range (see # Safety); mprotect dereferences nothing.
    let ret = unsafe { syscalls::syscall3(Sysno::mprotect, addr.as_ptr() as usize, len, prot as usize) };
    check(ret).map(drop)
}

/// Unmaps `[addr, addr + len)`.
///
/// # Safety
/// `addr` must be page-aligned, the range must be a mapping (or part of one) that the
/// caller owns, and nothing may use those bytes afterwards.
///
/// # Errors
/// `EINVAL` for a misaligned address or zero length; `ENOMEM` if splitting a mapping
/// would pass the map-count limit.
pub unsafe fn munmap(addr: NonNull<u8>, len: usize) -> Result<(), Errno> {
    // SAFETY: the caller owns the range and no longer uses it (see # Safety).
    let ret = unsafe { syscalls::syscall2(Sysno::munmap, addr.as_ptr() as usize, len) };
    check(ret).map(drop)
}

/// Writes `buf` to file descriptor `fd`, returning how many bytes the kernel took.
///
/// # Errors
/// `EBADF` for a closed descriptor, `EINTR`, `EAGAIN`, `EPIPE` and the usual `write(2)`
/// errors.
pub fn write(fd: i32, buf: &[u8]) -> Result<usize, Errno> {
    // SAFETY: the kernel reads at most buf.len() bytes from buf, which the slice owns.
    let ret = unsafe { syscalls::syscall3(Sysno::write, fd as usize, buf.as_ptr() as usize, buf.len()) };
    check(ret)
}

/// Writes all of `buf` to `fd`, retrying on short writes and `EINTR`.
///
/// # Errors
/// The first error other than `EINTR` that `write` reports.
pub fn write_all(fd: i32, mut buf: &[u8]) -> Result<(), Errno> {
    while !buf.is_empty() {
        match write(fd, buf) {
            Ok(0) => return Err(Errno::EFAULT),
            Ok(n) => buf = &buf[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Fills `buf` from the kernel's random number generator (`getrandom(buf, len, 0)`),
/// returning how many bytes were written.
///
/// # Errors
/// `EINTR` if a signal arrived, `EAGAIN` before the pool is initialised with
/// `GRND_NONBLOCK` (not used here).
pub fn getrandom(buf: &mut [u8]) -> Result<usize, Errno> {
    // SAFETY: the kernel writes at most buf.len() bytes into buf, which the slice owns
    // exclusively.
    let ret = unsafe { syscalls::syscall3(Sysno::getrandom, buf.as_mut_ptr() as usize, buf.len(), 0) };
    check(ret)
}

/// The calling process's id.
pub fn getpid() -> i32 {
    // SAFETY: getpid takes no arguments, touches no memory and cannot fail.
    let ret = unsafe { syscalls::syscall0(Sysno::getpid) };
    ret.unwrap_or(0) as i32
}

/// The calling thread's id.
pub fn gettid() -> i32 {
    // SAFETY: gettid takes no arguments, touches no memory and cannot fail.
    let ret = unsafe { syscalls::syscall0(Sysno::gettid) };
    ret.unwrap_or(0) as i32
}

/// Sends signal `sig` to thread `tid` of process `tgid`.
///
/// Sending a signal does not touch this process's memory, but its disposition may end
/// the process; that is what callers use it for.
///
/// # Errors
/// `ESRCH` for no such thread, `EINVAL` for a bad signal number.
pub fn tgkill(tgid: i32, tid: i32, sig: i32) -> Result<(), Errno> {
    // SAFETY: tgkill dereferences no pointers.
    let ret = unsafe { syscalls::syscall3(Sysno::tgkill, tgid as usize, tid as usize, sig as usize) };
    check(ret).map(drop)
}

/// Removes `sig` from the calling thread's blocked-signal mask.
///
/// # Errors
/// `EINVAL` for a bad signal number.
pub fn unblock_signal(sig: i32) -> Result<(), Errno> {
    let set: u64 = 1 << (sig - 1);
    // SAFETY: the kernel reads 8 bytes (the sigsetsize argument) from `set`, a live local;
    // the old-set pointer is null, so nothing is written.
    let ret =
        unsafe { syscalls::syscall4(Sysno::rt_sigprocmask, SIG_UNBLOCK as usize, &set as *const u64 as usize, 0, 8) };
    check(ret).map(drop)
}

/// Resets the disposition of `sig` to its default action (`SIG_DFL`).
///
/// # Errors
/// `EINVAL` for a bad signal number or `SIGKILL`/`SIGSTOP`.
pub fn reset_signal(sig: i32) -> Result<(), Errno> {
    // struct kernel_sigaction { handler, flags, restorer, mask }: all zero is SIG_DFL,
    // no flags, no restorer, an empty mask.
    let action = [0u64; 4];
    // SAFETY: the kernel reads one kernel_sigaction (32 bytes) from `action`, a live
    // local of that size; the old-action pointer is null, so nothing is written.
    let ret = unsafe { syscalls::syscall4(Sysno::rt_sigaction, sig as usize, action.as_ptr() as usize, 0, 8) };
    check(ret).map(drop)
}

/// Ends the whole process (every thread) with `code`. Never returns.
pub fn exit_group(code: i32) -> ! {
    // SAFETY: exit_group dereferences no pointers and does not return.
    unsafe {
        let _ = syscalls::syscall1(Sysno::exit_group, code as usize);
    }
    // The kernel never returns from exit_group; spin rather than invent UB if it did.
    loop {
        core::hint::spin_loop();
    }
}

/// Kills the process with `SIGABRT` the way `abort(3)` does, without libc: unblock
/// `SIGABRT`, send it to the calling thread, and if a handler returned, reset the
/// handler to the default and send it again; if the process is somehow still alive,
/// `exit_group(134)` (128 + SIGABRT). Never unwinds, never returns.
pub fn abort() -> ! {
    let (pid, tid) = (getpid(), gettid());
    let _ = unblock_signal(SIGABRT);
    let _ = tgkill(pid, tid, SIGABRT);
    let _ = reset_signal(SIGABRT);
    let _ = unblock_signal(SIGABRT);
    let _ = tgkill(pid, tid, SIGABRT);
    exit_group(128 + SIGABRT)
}

/// Gives up the CPU to another runnable thread (`sched_yield`). Cannot fail on Linux.
pub fn sched_yield() {
    // SAFETY: sched_yield takes no arguments and touches no memory.
    let _ = unsafe { syscalls::syscall0(Sysno::sched_yield) };
}

// ---- profiling: files and clocks ----
// Used by `crate::profiling` to write the perf map and the jitdump file and to map the
// jitdump marker. Crate-internal: nothing outside wildx needs them.

/// `AT_FDCWD`: resolve a relative path against the current directory.
pub(crate) const AT_FDCWD: i32 = -100;
/// `O_WRONLY`: open for writing only.
pub(crate) const O_WRONLY: u32 = 0o1;
/// `O_RDWR`: open for reading and writing.
pub(crate) const O_RDWR: u32 = 0o2;
/// `O_CREAT`: create the file if it does not exist.
pub(crate) const O_CREAT: u32 = 0o100;
/// `O_TRUNC`: truncate an existing file to length 0.
pub(crate) const O_TRUNC: u32 = 0o1000;
/// `O_APPEND`: every write goes to the end of the file, atomically.
pub(crate) const O_APPEND: u32 = 0o2000;
/// `O_CLOEXEC`: close the descriptor on `execve`.
pub(crate) const O_CLOEXEC: u32 = 0o2000000;
/// `O_NOFOLLOW`: refuse to open a symbolic link as the last path component.
pub(crate) const O_NOFOLLOW: u32 = 0o400000;
/// `CLOCK_MONOTONIC`, the clock `perf record -k mono` stamps samples with.
pub(crate) const CLOCK_MONOTONIC: u32 = 1;

/// Opens `path` (a NUL-terminated byte string) relative to `dirfd` with `flags` and, for
/// a created file, permission bits `mode`; returns the new descriptor.
///
/// # Errors
/// `EINVAL` if `path` is not NUL-terminated (checked here, before the kernel reads it),
/// and the usual `openat(2)` errors (`ENOENT`, `EACCES`, `ELOOP` for a symbolic link under
/// `O_NOFOLLOW`, `EMFILE`, ...).
pub(crate) fn openat(dirfd: i32, path: &[u8], flags: u32, mode: u32) -> Result<i32, Errno> {
    if path.last() != Some(&0) {
        return Err(Errno::EINVAL);
    }
    // SAFETY: the kernel reads the path up to its first NUL, which lies inside `path`
    // (checked above), a slice that lives across the call; nothing else is dereferenced.
    let ret = unsafe {
        syscalls::syscall4(Sysno::openat, dirfd as usize, path.as_ptr() as usize, flags as usize, mode as usize)
    };
    check(ret).map(|fd| fd as i32)
}

/// Closes `fd`.
///
/// # Errors
/// `EBADF` for a descriptor that is not open, `EINTR`, `EIO`.
pub(crate) fn close(fd: i32) -> Result<(), Errno> {
    // SAFETY: close dereferences no pointers; closing a descriptor wildx opened itself
    // cannot affect memory.
    let ret = unsafe { syscalls::syscall1(Sysno::close, fd as usize) };
    check(ret).map(drop)
}

/// Writes the buffers of `iov` to `fd` in order with one `writev`, returning the bytes
/// the kernel took. With `O_APPEND` on a regular file the whole write lands contiguously.
///
/// # Errors
/// As [`write`].
pub(crate) fn writev(fd: i32, iov: &[&[u8]]) -> Result<usize, Errno> {
    // struct iovec { void *base; size_t len; }, built on the stack: at most 4 buffers.
    let mut raw = [[0usize; 2]; 4];
    if iov.len() > raw.len() {
        return Err(Errno::EINVAL);
    }
    for (slot, buf) in raw.iter_mut().zip(iov) {
        *slot = [buf.as_ptr() as usize, buf.len()];
    }
    // SAFETY: the kernel reads `iov.len()` iovecs from `raw` (a live local) and from each
    // at most its length in bytes from a slice that lives across the call.
    let ret = unsafe { syscalls::syscall3(Sysno::writev, fd as usize, raw.as_ptr() as usize, iov.len()) };
    check(ret)
}

/// Nanoseconds on `CLOCK_MONOTONIC` (a raw `clock_gettime`, no vDSO).
///
/// # Errors
/// `EINVAL` only if the kernel lacks the clock (never on Linux 2.6+).
pub(crate) fn clock_monotonic_ns() -> Result<u64, Errno> {
    // struct timespec { time_t tv_sec; long tv_nsec; }
    let mut ts = [0i64; 2];
    // SAFETY: the kernel writes one 16-byte timespec into `ts`, a live local of that size.
    let ret = unsafe { syscalls::syscall2(Sysno::clock_gettime, CLOCK_MONOTONIC as usize, ts.as_mut_ptr() as usize) };
    check(ret)?;
    Ok((ts[0] as u64).wrapping_mul(1_000_000_000).wrapping_add(ts[1] as u64))
}

/// Maps `len` bytes of the file open at `fd` from byte `offset` (page-aligned), privately,
/// with protection `prot` (`mmap(NULL, len, prot, MAP_PRIVATE, fd, offset)`).
///
/// A new mapping at an address the kernel chooses cannot disturb existing memory, so this
/// is safe; what the mapping may be used for is the caller's business.
///
/// # Errors
/// `EACCES` if `fd` is not open for reading, `ENODEV`, `ENOMEM`, `EPERM` (e.g. `PROT_EXEC`
/// on a `noexec` mount).
pub(crate) fn mmap_file(len: usize, prot: u32, fd: i32, offset: u64) -> Result<NonNull<u8>, Errno> {
    // SAFETY: with a null hint and without MAP_FIXED the kernel picks an unused range, so
    // no existing mapping is replaced; no pointer argument is dereferenced.
    let ret = unsafe {
        syscalls::syscall6(Sysno::mmap, 0, len, prot as usize, MAP_PRIVATE as usize, fd as usize, offset as usize)
    };
    let addr = check(ret)?;
    NonNull::new(addr as *mut u8).ok_or(Errno::ENOMEM)
}

// ---- arena: reservations and releases ----

/// `MAP_NORESERVE`: do not reserve swap for the mapping (an arena's reservation is mostly
/// never touched).
pub const MAP_NORESERVE: u32 = 0x4000;
/// `MADV_DONTNEED`: drop the pages' contents; private anonymous memory reads back zero.
pub const MADV_DONTNEED: u32 = 4;
/// `PROT_NONE`: no access at all.
pub const PROT_NONE: u32 = 0;

/// Reserves `len` bytes of address space, inaccessible (`PROT_NONE`, private, anonymous,
/// `MAP_NORESERVE`): a range nothing else will be placed in until it is unmapped.
///
/// Creating a new mapping where the kernel chooses cannot disturb existing memory, so
/// this is safe.
///
/// # Errors
/// `EINVAL` for a zero length, `ENOMEM` when the address space or the map count is
/// exhausted.
pub fn mmap_reserve(len: usize) -> Result<NonNull<u8>, Errno> {
    // SAFETY: null hint, no MAP_FIXED: the kernel picks an unused range; nothing is
    // dereferenced.
    let ret = unsafe {
        syscalls::syscall6(
            Sysno::mmap,
            0,
            len,
            PROT_NONE as usize,
            (MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE) as usize,
            usize::MAX, // fd -1
            0,
        )
    };
    let addr = check(ret)?;
    NonNull::new(addr as *mut u8).ok_or(Errno::ENOMEM)
}

/// Tells the kernel it may drop the contents of the pages covering `[addr, addr + len)`
/// (`madvise(MADV_DONTNEED)`): their memory goes back to the system.
///
/// # Safety
/// `addr` must be page-aligned, the range must lie in private anonymous mappings the
/// caller owns, and nothing may rely on the bytes afterwards (they read back as zero if
/// the pages are still accessible).
///
/// # Errors
/// `EINVAL` for a misaligned address, `ENOMEM` for an unmapped range.
pub unsafe fn madvise_dontneed(addr: NonNull<u8>, len: usize) -> Result<(), Errno> {
    // SAFETY: the caller owns the range and gives up its contents (see # Safety).
    let ret = unsafe { syscalls::syscall3(Sysno::madvise, addr.as_ptr() as usize, len, MADV_DONTNEED as usize) };
    check(ret).map(drop)
}

/// `MREMAP_MAYMOVE`: the kernel may move the mapping to grow it.
pub const MREMAP_MAYMOVE: u32 = 1;

/// Grows or shrinks the private anonymous mapping `[addr, addr + old_len)` to `new_len`
/// bytes, moving it if needed (`mremap(addr, old_len, new_len, MREMAP_MAYMOVE)`): its
/// contents move with it, without a copy. Returns the mapping's (maybe new) start.
///
/// # Safety
/// `addr` must be page-aligned and start a whole mapping of `old_len` bytes the caller
/// owns; on success the old range must not be used again (only the returned one).
///
/// # Errors
/// `ENOMEM` when no range is free or the limits are reached, `EINVAL` for bad lengths;
/// the old mapping is then unchanged.
pub unsafe fn mremap(addr: NonNull<u8>, old_len: usize, new_len: usize) -> Result<NonNull<u8>, Errno> {
    // SAFETY: the caller owns the mapping and gives up the old range on success.
    let ret =
        unsafe { syscalls::syscall4(Sysno::mremap, addr.as_ptr() as usize, old_len, new_len, MREMAP_MAYMOVE as usize) };
    let new = check(ret)?;
    NonNull::new(new as *mut u8).ok_or(Errno::ENOMEM)
}
