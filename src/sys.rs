//! Raw x86-64 Linux syscalls, one small typed function per call.
//!
//! Invariants owned here: nothing above this module issues a syscall or sees the kernel's
//! `usize` return convention; every wrapper returns `Result<_, Errno>`; and no wrapper
//! ever asks the kernel for memory that is writable and executable at once (`mmap` and
//! `mprotect` refuse `PROT_WRITE|PROT_EXEC` with `EINVAL` before any syscall), nor for a
//! writable mapping the kernel could make executable on its own: see [`writable_without_read`].
//!
//! The module is private to the crate: programs that need a syscall-level escape hatch
//! (freestanding binaries: exit, one line to stderr, abort) use [`crate::rt`].
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
/// `MAP_FIXED_NOREPLACE`: map exactly at the address given, or fail with `EEXIST` if
/// anything is mapped there (never replace). Kernels before 4.17 ignore it (the address
/// is then a hint).
pub const MAP_FIXED_NOREPLACE: u32 = 0x10_0000;
/// `MAP_FIXED`: map exactly at the address given, replacing what is there.
pub const MAP_FIXED: u32 = 0x10;
/// `PROT_NONE`: no access.
pub const PROT_NONE: u32 = 0;
/// `SIGABRT`, the signal the verify-on-call failure path raises.
pub const SIGABRT: i32 = 6;
/// `SIG_BLOCK` for `rt_sigprocmask`.
pub const SIG_BLOCK: i32 = 0;
/// `SIG_UNBLOCK` for `rt_sigprocmask`.
pub const SIG_UNBLOCK: i32 = 1;
/// `SIGPIPE`, raised by a write to a pipe nobody reads.
pub const SIGPIPE: i32 = 13;
/// The highest signal number on x86-64 Linux (`_NSIG`).
pub const NSIG: i32 = 64;
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
    /// `EEXIST`: something is already there (`MAP_FIXED_NOREPLACE`).
    pub const EEXIST: Errno = Errno(17);
    /// `ENOSYS`: the kernel (or a seccomp policy) does not provide the syscall.
    pub const ENOSYS: Errno = Errno(38);

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
            17 => "EEXIST",
            38 => "ENOSYS",
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

/// W^X at the lowest layer: whatever a caller above asks, no wrapper maps or protects
/// memory writable and executable at once.
#[inline]
const fn refuse_wx(prot: u32) -> Result<(), Errno> {
    if prot & PROT_WRITE != 0 && prot & PROT_EXEC != 0 { Err(Errno::EINVAL) } else { Ok(()) }
}

/// A writable request is sent to the kernel as `PROT_WRITE` alone, without `PROT_READ`.
///
/// x86-64 has no write-only pages: a `PROT_WRITE` mapping is readable and writable (its
/// page-table entries are present and user-accessible; a read fault on it is served), so
/// nothing changes for code that reads what it wrote. What changes is that the kernel
/// never adds `PROT_EXEC` to it: under the `READ_IMPLIES_EXEC` personality, `mmap` and
/// `mprotect` add `PROT_EXEC` only to requests holding `PROT_READ` (`do_mmap` in
/// `mm/mmap.c`, `do_mprotect_pkey` in `mm/mprotect.c`). So every writable mapping wildx
/// makes is non-executable whatever the calling thread's personality, with no syscall to
/// ask for it and no window between asking and mapping. `/proc/self/maps` shows such a
/// mapping as `-w-p` (`-w-s` for a shared one). The one thing a read-less mapping
/// refuses is a read through the kernel's page pinning without `FOLL_FORCE`
/// (`process_vm_readv`, tested; `O_DIRECT` writes from it and `vmsplice` take the same
/// path): `EFAULT`. Debuggers read it (`/proc/<pid>/mem` and ptrace force).
#[inline]
const fn writable_without_read(prot: u32) -> u32 {
    if prot & PROT_WRITE != 0 { prot & !PROT_READ } else { prot }
}

/// Whether `sig` names a signal the kernel has (1 to 64 on x86-64 Linux).
#[inline]
const fn signal_in_range(sig: i32) -> Result<(), Errno> {
    if sig >= 1 && sig <= NSIG { Ok(()) } else { Err(Errno::EINVAL) }
}

/// `mmap(addr, len, prot, flags, fd, offset)` for every wrapper below, in one place:
/// W|X is refused here, before the kernel sees it, and a writable request goes without
/// `PROT_READ` ([`writable_without_read`]).
///
/// # Safety
/// With `MAP_FIXED` in `flags`, `[addr, addr + len)` must be memory the caller owns and
/// no longer uses as it was (it is replaced); without it the call only adds a mapping.
unsafe fn mmap_raw(addr: usize, len: usize, prot: u32, flags: u32, fd: i32, offset: u64) -> Result<NonNull<u8>, Errno> {
    refuse_wx(prot)?;
    let prot = writable_without_read(prot);
    // SAFETY: mmap dereferences no pointer argument; what MAP_FIXED may replace is the
    // caller's (see # Safety).
    let ret = unsafe {
        syscalls::syscall6(Sysno::mmap, addr, len, prot as usize, flags as usize, fd as usize, offset as usize)
    };
    // A successful mmap never returns address 0 (mmap_min_addr).
    NonNull::new(check(ret)? as *mut u8).ok_or(Errno::ENOMEM)
}

/// Maps `len` bytes of fresh, zeroed, anonymous private memory with protection `prot`
/// (`mmap(NULL, len, prot, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)`).
///
/// Creating a new mapping at an address the kernel chooses cannot disturb existing
/// memory, so this is safe.
///
/// # Errors
/// `EINVAL` for a zero length or for `prot` holding both `PROT_WRITE` and `PROT_EXEC`
/// (refused here, before any syscall), `ENOMEM` when the address space, `RLIMIT_AS` or
/// the map count is exhausted, `EACCES`/`EPERM` when a security policy refuses `prot`.
pub fn mmap_anonymous(len: usize, prot: u32) -> Result<NonNull<u8>, Errno> {
    // SAFETY: with a null hint and without MAP_FIXED the kernel picks an unused range, so
    // no existing mapping is replaced.
    unsafe { mmap_raw(0, len, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) }
}

/// Maps `len` bytes of fresh anonymous private memory with protection `prot` at exactly
/// `addr` if nothing is mapped anywhere in `[addr, addr + len)`
/// (`MAP_FIXED_NOREPLACE`), returning where the mapping is. On kernels before 4.17 the
/// flag is ignored and `addr` is only a hint, so the result may be elsewhere; it is a new
/// mapping either way, and no existing mapping is ever replaced, so this is safe.
///
/// # Errors
/// `EEXIST` if something is mapped in the range; otherwise as [`mmap_anonymous`]
/// (including `EINVAL` for W|X).
pub fn mmap_anonymous_noreplace(addr: usize, len: usize, prot: u32) -> Result<NonNull<u8>, Errno> {
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping (EEXIST instead),
    // and where the kernel does not know it the address is a mere hint.
    unsafe { mmap_raw(addr, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) }
}

/// Replaces `[addr, addr + len)` by a fresh anonymous private mapping with protection
/// `prot` (`MAP_FIXED`): whatever was mapped there is gone, its memory freed.
///
/// # Safety
/// `addr` is page-aligned and the range is memory the caller owns and no longer uses
/// (no reference into it, no thread running code in it).
///
/// # Errors
/// `EINVAL` for W|X (before any syscall) or a misaligned address; `ENOMEM` at the
/// map-count limit (nothing changed then).
pub unsafe fn mmap_anonymous_fixed(addr: NonNull<u8>, len: usize, prot: u32) -> Result<(), Errno> {
    // SAFETY: MAP_FIXED replaces only the caller's own, unused range (see # Safety).
    unsafe { mmap_raw(addr.as_ptr() as usize, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) }.map(drop)
}

/// `PR_SET_VMA` and its `PR_SET_VMA_ANON_NAME` operation.
const PR_SET_VMA: usize = 0x5356_4d41;
const PR_SET_VMA_ANON_NAME: usize = 0;

/// Names the anonymous mappings in `[addr, addr + len)` `name` (NUL-terminated; shown as
/// `[anon:<name>]` in `/proc/<pid>/maps`). Changes no protection and no content.
///
/// # Errors
/// `EINVAL` on kernels without `CONFIG_ANON_VMA_NAME` (or for a bad name or range),
/// `ENOMEM` if splitting a mapping would pass the map-count limit.
pub fn name_anon_mapping(addr: NonNull<u8>, len: usize, name: &'static [u8]) -> Result<(), Errno> {
    if name.last() != Some(&0) {
        return Err(Errno::EINVAL);
    }
    // SAFETY: the kernel reads the NUL-terminated name (checked above, 'static) and only
    // relabels mappings in the range; no memory is written.
    let ret = unsafe {
        syscalls::syscall5(
            Sysno::prctl,
            PR_SET_VMA,
            PR_SET_VMA_ANON_NAME,
            addr.as_ptr() as usize,
            len,
            name.as_ptr() as usize,
        )
    };
    check(ret).map(drop)
}

/// Changes the protection of the pages covering `[addr, addr + len)` to `prot`.
///
/// # Safety
/// `addr` must be page-aligned and `[addr, addr + len)` must lie in mappings the caller
/// owns, with no live Rust reference to those bytes that the new protection would
/// invalidate (removing `PROT_WRITE` under a `&mut [u8]` that is still used faults).
///
/// # Errors
/// `EINVAL` for a misaligned address or for `prot` holding both `PROT_WRITE` and
/// `PROT_EXEC` (refused here, before any syscall), `ENOMEM` for an unmapped range or a
/// split past the map-count limit, `EACCES` when a security policy (SELinux `execmem`,
/// PaX, seccomp) refuses the protection.
pub unsafe fn mprotect(addr: NonNull<u8>, len: usize, prot: u32) -> Result<(), Errno> {
    refuse_wx(prot)?;
    let prot = writable_without_read(prot);
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
            // `get`, not indexing: no panic path (and no formatting code) in freestanding builds.
            Ok(n) => buf = buf.get(n..).unwrap_or_default(),
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
/// `EINVAL` for a signal number outside 1..=64 (checked here: the mask is built with a
/// shift that would otherwise overflow).
pub fn unblock_signal(sig: i32) -> Result<(), Errno> {
    change_signal_mask(SIG_UNBLOCK, sig)
}

/// Adds `sig` to the calling thread's blocked-signal mask.
///
/// # Errors
/// `EINVAL` for a signal number outside 1..=64.
pub fn block_signal(sig: i32) -> Result<(), Errno> {
    change_signal_mask(SIG_BLOCK, sig)
}

fn change_signal_mask(how: i32, sig: i32) -> Result<(), Errno> {
    signal_in_range(sig)?;
    let set: u64 = 1 << (sig - 1);
    // SAFETY: the kernel reads 8 bytes (the sigsetsize argument) from `set`, a live local;
    // the old-set pointer is null, so nothing is written.
    let ret = unsafe { syscalls::syscall4(Sysno::rt_sigprocmask, how as usize, &set as *const u64 as usize, 0, 8) };
    check(ret).map(drop)
}

/// Resets the disposition of `sig` to its default action (`SIG_DFL`).
///
/// # Errors
/// `EINVAL` for a signal number outside 1..=64 or `SIGKILL`/`SIGSTOP`.
pub fn reset_signal(sig: i32) -> Result<(), Errno> {
    signal_in_range(sig)?;
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

/// `POLLOUT` for `poll`.
const POLLOUT: i16 = 0x4;

/// Whether `fd` can take a write right now without blocking (`poll` with a zero
/// timeout reports `POLLOUT` and no error, hang-up or invalid descriptor).
pub fn writable_now(fd: i32) -> bool {
    // struct pollfd { int fd; short events; short revents; }
    #[repr(C)]
    struct PollFd {
        fd: i32,
        events: i16,
        revents: i16,
    }
    let mut pfd = PollFd { fd, events: POLLOUT, revents: 0 };
    // SAFETY: the kernel reads and writes one pollfd, a live local of the right layout.
    let ret = unsafe { syscalls::syscall3(Sysno::poll, &mut pfd as *mut PollFd as usize, 1, 0) };
    matches!(check(ret), Ok(1)) && pfd.revents == POLLOUT
}

/// `RWF_NOWAIT` for `pwritev2`: fail with `EAGAIN` rather than block.
const RWF_NOWAIT: usize = 0x8;

/// Writes `buf` to `fd` at its current position without ever blocking
/// (`pwritev2(fd, iov, 1, -1, RWF_NOWAIT)`), returning how many bytes were taken.
///
/// # Errors
/// `EAGAIN` when the write would block; `EOPNOTSUPP` or `EINVAL` where the kernel or the
/// file does not support `RWF_NOWAIT`; the usual `write(2)` errors.
pub fn write_nowait(fd: i32, buf: &[u8]) -> Result<usize, Errno> {
    let iov = [buf.as_ptr() as usize, buf.len()];
    // SAFETY: the kernel reads one iovec (a live local) and at most buf.len() bytes from
    // buf, which the slice owns; pos -1 means the current position (pipes allow it).
    let ret = unsafe {
        syscalls::syscall6(Sysno::pwritev2, fd as usize, iov.as_ptr() as usize, 1, usize::MAX, usize::MAX, RWF_NOWAIT)
    };
    check(ret)
}

/// Writes one diagnostic line to stderr without ever blocking and without ever raising
/// `SIGPIPE`, for paths that are about to end the process: `SIGPIPE` is blocked on the
/// calling thread first (a write to a pipe nobody reads then fails with `EPIPE`), the
/// line is written only if `poll` says stderr can take it now, and then with
/// `RWF_NOWAIT` (or, on kernels without it, one plain `write` of at most `PIPE_BUF`
/// bytes, which a pipe with room takes whole). A closed, full or broken stderr loses the
/// line; the caller's next step (abort) still happens.
pub fn write_stderr_nonblocking(line: &[u8]) {
    let _ = block_signal(SIGPIPE);
    if !writable_now(STDERR) {
        return;
    }
    let line = &line[..line.len().min(PIPE_BUF)];
    if let Err(Errno(95 /* EOPNOTSUPP */) | Errno::EINVAL) = write_nowait(STDERR, line) {
        let _ = write(STDERR, line);
    }
}

/// `PIPE_BUF`: a write of at most this many bytes to a pipe is atomic.
const PIPE_BUF: usize = 4096;

/// `FUTEX_WAIT_PRIVATE` and `FUTEX_WAKE_PRIVATE`: the word is private to this process
/// (cheaper; wildx's locks are never shared across processes).
const FUTEX_WAIT_PRIVATE: usize = 128;
const FUTEX_WAKE_PRIVATE: usize = 128 | 1;

/// Sleeps while `*word == expected` (`futex(word, FUTEX_WAIT_PRIVATE, expected)`), until
/// a [`futex_wake`] on `word`, a signal, or a spurious wake-up. Returns at once if the
/// word already differs. Callers re-check their condition in a loop.
pub fn futex_wait(word: &core::sync::atomic::AtomicU32, expected: u32) {
    // Miri runs no inline assembly: there a wait is a spurious wake-up (every caller
    // re-checks in a loop), and Miri's scheduler preempts the spinning thread.
    #[cfg(miri)]
    {
        let _ = (word, expected);
        core::hint::spin_loop();
    }
    #[cfg(not(miri))]
    // SAFETY: the kernel reads the 4-byte aligned word the reference points to (live for
    // the call); the timeout pointer is null (wait without a deadline).
    let _ =
        unsafe { syscalls::syscall4(Sysno::futex, word.as_ptr() as usize, FUTEX_WAIT_PRIVATE, expected as usize, 0) };
}

/// Wakes up to `count` threads sleeping in [`futex_wait`] on `word`. The kernel reads
/// `count` as an `int`: pass at most `i32::MAX` (a larger value wraps negative and wakes
/// one thread only); "all" is `i32::MAX`.
pub fn futex_wake(word: &core::sync::atomic::AtomicU32, count: u32) {
    let count = count.min(i32::MAX as u32);
    // Under Miri waits never sleep (see `futex_wait`), so there is nobody to wake.
    #[cfg(miri)]
    let _ = (word, count);
    #[cfg(not(miri))]
    // SAFETY: the kernel only uses the word's address as a key; no memory is written.
    let _ = unsafe { syscalls::syscall3(Sysno::futex, word.as_ptr() as usize, FUTEX_WAKE_PRIVATE, count as usize) };
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
    // no existing mapping is replaced.
    unsafe { mmap_raw(0, len, prot, MAP_PRIVATE, fd, offset) }
}

// ---- arena: reservations and releases ----

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

// ---- the memfd fallback (crate::execmem) ----

#[cfg(feature = "memfd")]
/// `MAP_SHARED`: writes go to the underlying file and every mapping of it sees them.
pub(crate) const MAP_SHARED: u32 = 0x01;
#[cfg(feature = "memfd")]
/// `MFD_CLOEXEC`: the memfd is closed on `execve`.
pub(crate) const MFD_CLOEXEC: u32 = 0x1;
#[cfg(feature = "memfd")]
/// `MFD_EXEC` (Linux 6.3+): the memfd may be mapped executable even where
/// `vm.memfd_noexec` asks new memfds to be non-executable by default. Older kernels
/// refuse the unknown flag with `EINVAL`.
pub(crate) const MFD_EXEC: u32 = 0x10;
#[cfg(feature = "memfd")]
/// `MADV_DONTFORK`: a child made by `fork` does not inherit the range.
pub(crate) const MADV_DONTFORK: u32 = 10;
#[cfg(feature = "memfd")]
/// `FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE`: free a file range's memory, keep the
/// file's size; the range reads back as zero.
const FALLOC_PUNCH_HOLE: u32 = 0x01 | 0x02;

#[cfg(feature = "memfd")]
/// Creates an anonymous memory file named `name` (NUL-terminated; shown as
/// `/memfd:<name> (deleted)` in `/proc/<pid>/maps`) with `flags`; returns its descriptor.
///
/// # Errors
/// `EINVAL` for a name without its NUL (checked here) or unknown flags (`MFD_EXEC` on
/// kernels before 6.3), `EACCES` where `vm.memfd_noexec = 2` refuses executable memfds,
/// `EMFILE`/`ENFILE`, `ENOMEM`, `ENOSYS` before Linux 3.17 or under a seccomp policy.
pub(crate) fn memfd_create(name: &'static [u8], flags: u32) -> Result<i32, Errno> {
    if name.last() != Some(&0) {
        return Err(Errno::EINVAL);
    }
    // SAFETY: the kernel reads the NUL-terminated name (checked above, 'static); nothing
    // else is dereferenced.
    let ret = unsafe { syscalls::syscall2(Sysno::memfd_create, name.as_ptr() as usize, flags as usize) };
    check(ret).map(|fd| fd as i32)
}

#[cfg(feature = "memfd")]
/// Sets the size of the file open at `fd` (`ftruncate`). A memfd grown this way is
/// sparse: no memory until a page is touched.
///
/// # Errors
/// `EBADF`, `EINVAL` (not a regular file, or past the file system's largest size),
/// `EPERM` (sealed).
pub(crate) fn ftruncate(fd: i32, len: u64) -> Result<(), Errno> {
    // SAFETY: ftruncate dereferences nothing; it changes a file wildx created itself,
    // whose mappings wildx only ever makes over offsets below the new size.
    let ret = unsafe { syscalls::syscall2(Sysno::ftruncate, fd as usize, len as usize) };
    check(ret).map(drop)
}

#[cfg(feature = "memfd")]
/// Frees the memory of the file range `[offset, offset + len)` of `fd`
/// (`fallocate(PUNCH_HOLE | KEEP_SIZE)`); the range reads back as zero afterwards.
///
/// # Safety
/// Nothing may rely on the range's contents afterwards: every mapping of it, in this
/// process or another, sees zeros from now on.
///
/// # Errors
/// `EBADF`, `EINTR`, `EOPNOTSUPP` on file systems that cannot punch holes.
pub(crate) unsafe fn punch_hole(fd: i32, offset: u64, len: usize) -> Result<(), Errno> {
    // SAFETY: fallocate dereferences nothing; the caller gives up the range's contents.
    let ret =
        unsafe { syscalls::syscall4(Sysno::fallocate, fd as usize, FALLOC_PUNCH_HOLE as usize, offset as usize, len) };
    check(ret).map(drop)
}

#[cfg(feature = "memfd")]
/// Maps `len` bytes of the file open at `fd`, from byte `offset`, shared, with protection
/// `prot` (never W|X), at exactly `addr` if nothing is mapped in `[addr, addr + len)`
/// (`MAP_SHARED | MAP_FIXED_NOREPLACE`). Returns where the mapping is: on kernels before
/// 4.17 the flag is ignored and `addr` is only a hint. No existing mapping is ever
/// replaced, so this is safe.
///
/// # Errors
/// `EINVAL` for W|X (before any syscall) or a misaligned offset; `EEXIST` if something is
/// mapped in the range; `EACCES`/`EPERM` where a policy refuses `prot`; `ENOMEM`.
pub(crate) fn mmap_shared_noreplace(
    addr: usize,
    len: usize,
    prot: u32,
    fd: i32,
    offset: u64,
) -> Result<NonNull<u8>, Errno> {
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping (EEXIST instead), and
    // where the kernel does not know it the address is a mere hint.
    unsafe { mmap_raw(addr, len, prot, MAP_SHARED | MAP_FIXED_NOREPLACE, fd, offset) }
}

#[cfg(feature = "memfd")]
/// Replaces `[addr, addr + len)` by a shared mapping of the file open at `fd` from byte
/// `offset`, with protection `prot` (never W|X), in one `mmap` with `MAP_FIXED`: the
/// address stays, and whatever was mapped there is gone.
///
/// # Safety
/// `addr` is page-aligned and the range is memory the caller owns; no Rust reference into
/// it may be used afterwards if the new mapping's contents or protection differ.
///
/// # Errors
/// `EINVAL` for W|X (before any syscall) or misalignment; `EACCES`/`EPERM` where a policy
/// refuses `prot` (checked by the kernel before the old mapping is touched); `ENOMEM`.
pub(crate) unsafe fn mmap_shared_fixed(
    addr: NonNull<u8>,
    len: usize,
    prot: u32,
    fd: i32,
    offset: u64,
) -> Result<(), Errno> {
    // SAFETY: MAP_FIXED replaces only the caller's own range (see # Safety).
    unsafe { mmap_raw(addr.as_ptr() as usize, len, prot, MAP_SHARED | MAP_FIXED, fd, offset) }.map(drop)
}

/// Gives the CPU to another runnable thread (`sched_yield`).
pub(crate) fn sched_yield() {
    // SAFETY: sched_yield takes no arguments and touches no memory.
    let _ = unsafe { syscalls::syscall0(Sysno::sched_yield) };
}

#[cfg(feature = "memfd")]
/// Marks `[addr, addr + len)` not to be inherited by a child of `fork`
/// (`madvise(MADV_DONTFORK)`). Changes nothing in this process.
///
/// # Errors
/// `EINVAL` for a misaligned address, `ENOMEM` for an unmapped range or a split past the
/// map-count limit.
pub(crate) fn madvise_dontfork(addr: NonNull<u8>, len: usize) -> Result<(), Errno> {
    // SAFETY: MADV_DONTFORK only sets a flag on the mappings, read at the next fork; it
    // changes no contents and no protection in this process.
    let ret = unsafe { syscalls::syscall3(Sysno::madvise, addr.as_ptr() as usize, len, MADV_DONTFORK as usize) };
    check(ret).map(drop)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::String;

    /// The `rw-p`-style permissions of the mapping containing `addr`, from /proc/self/maps.
    fn perms(addr: usize) -> Option<String> {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        maps.lines().find_map(|line| {
            let mut fields = line.split_whitespace();
            let (lo, hi) = fields.next()?.split_once('-')?;
            let (lo, hi) = (usize::from_str_radix(lo, 16).ok()?, usize::from_str_radix(hi, 16).ok()?);
            (lo <= addr && addr < hi).then(|| String::from(fields.next().unwrap()))
        })
    }

    #[test]
    fn constants_match_libc() {
        assert_eq!(PROT_READ, libc::PROT_READ as u32);
        assert_eq!(PROT_WRITE, libc::PROT_WRITE as u32);
        assert_eq!(PROT_EXEC, libc::PROT_EXEC as u32);
        assert_eq!(MAP_PRIVATE, libc::MAP_PRIVATE as u32);
        assert_eq!(MAP_ANONYMOUS, libc::MAP_ANONYMOUS as u32);
        assert_eq!(SIGABRT, libc::SIGABRT);
        assert_eq!(SIG_UNBLOCK, libc::SIG_UNBLOCK);
        assert_eq!(STDERR, libc::STDERR_FILENO);
        // SAFETY: sysconf has no preconditions.
        assert_eq!(PAGE_SIZE as libc::c_long, unsafe { libc::sysconf(libc::_SC_PAGESIZE) });
        for (ours, theirs) in [
            (Errno::EPERM, libc::EPERM),
            (Errno::EINTR, libc::EINTR),
            (Errno::EAGAIN, libc::EAGAIN),
            (Errno::ENOMEM, libc::ENOMEM),
            (Errno::EACCES, libc::EACCES),
            (Errno::EFAULT, libc::EFAULT),
            (Errno::EINVAL, libc::EINVAL),
        ] {
            assert_eq!(ours.raw(), theirs, "{ours:?}");
        }
    }

    #[test]
    fn mmap_mprotect_munmap_really_change_the_mapping() {
        // That the range is unmapped after `munmap` can only be seen where no other
        // thread maps memory (the kernel hands a freed address straight back): in a
        // child process running this test alone.
        if !crate::test_support::in_child_alone("sys::tests::mmap_mprotect_munmap_really_change_the_mapping") {
            return;
        }
        let p = mmap_anonymous(8192, PROT_READ | PROT_WRITE).unwrap();
        assert_eq!(perms(p.as_ptr() as usize).as_deref(), Some("-w-p"));
        // SAFETY: p is a fresh mapping of 8192 bytes owned by this test.
        let zeroed = unsafe { std::slice::from_raw_parts(p.as_ptr(), 8192) }.iter().all(|&b| b == 0);
        assert!(zeroed, "fresh anonymous memory is zeroed");
        // SAFETY: as above; nothing holds a reference into the mapping.
        unsafe { mprotect(p, 8192, PROT_READ) }.unwrap();
        assert_eq!(perms(p.as_ptr() as usize).as_deref(), Some("r--p"));
        // SAFETY: misaligned on purpose: the kernel refuses without touching anything.
        let misaligned = unsafe { mprotect(NonNull::new(p.as_ptr().wrapping_add(1)).unwrap(), 1, PROT_READ) };
        assert_eq!(misaligned, Err(Errno::EINVAL));
        // SAFETY: the mapping is ours and unused from here on.
        unsafe { munmap(p, 8192) }.unwrap();
        assert_eq!(perms(p.as_ptr() as usize), None);
        assert_eq!(mmap_anonymous(0, PROT_READ), Err(Errno::EINVAL));
    }

    #[test]
    fn write_reaches_the_file_descriptor() {
        let mut fds = [0; 2];
        // SAFETY: fds has room for the two descriptors pipe writes.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        write_all(fds[1], b"wildx").unwrap();
        let mut buf = [0u8; 5];
        // SAFETY: buf has room for 5 bytes.
        assert_eq!(unsafe { libc::read(fds[0], buf.as_mut_ptr().cast(), 5) }, 5);
        assert_eq!(&buf, b"wildx");
        // SAFETY: both descriptors are ours.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        assert_eq!(write(-1, b"x").map_err(|e| e.raw()), Err(libc::EBADF));
    }

    #[test]
    fn getrandom_fills_the_buffer() {
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        assert_eq!(getrandom(&mut a), Ok(32));
        assert_eq!(getrandom(&mut b), Ok(32));
        assert_ne!(a, b, "two 256-bit draws were equal");
    }

    #[test]
    fn ids_match_libc() {
        // SAFETY: getpid and gettid have no preconditions.
        assert_eq!(getpid(), unsafe { libc::getpid() });
        // SAFETY: as above.
        assert_eq!(gettid(), unsafe { libc::gettid() });
        let other = std::thread::spawn(gettid).join().unwrap();
        assert_ne!(other, gettid());
        assert_eq!(tgkill(getpid(), gettid(), 0), Ok(()), "signal 0 probes the thread");
        assert_eq!(tgkill(getpid(), -5, 0).map_err(|e| e.raw()), Err(libc::EINVAL));
    }

    #[test]
    fn wx_is_refused_before_the_kernel_sees_it() {
        let wx = PROT_READ | PROT_WRITE | PROT_EXEC;
        assert_eq!(mmap_anonymous(4096, wx), Err(Errno::EINVAL));
        assert_eq!(mmap_anonymous(4096, PROT_WRITE | PROT_EXEC), Err(Errno::EINVAL));
        let p = mmap_anonymous(4096, PROT_READ | PROT_WRITE).unwrap();
        // SAFETY: p is a fresh page owned by this test; nothing references it.
        assert_eq!(unsafe { mprotect(p, 4096, wx) }, Err(Errno::EINVAL));
        assert_eq!(perms(p.as_ptr() as usize).as_deref(), Some("-w-p"), "the refusal changed nothing");
        // SAFETY: as above.
        unsafe { munmap(p, 4096) }.unwrap();
    }

    #[test]
    fn signal_numbers_out_of_range_are_refused() {
        for sig in [0, -1, 65, 1000, i32::MIN, i32::MAX] {
            assert_eq!(unblock_signal(sig), Err(Errno::EINVAL), "unblock {sig}");
            assert_eq!(block_signal(sig), Err(Errno::EINVAL), "block {sig}");
            assert_eq!(reset_signal(sig), Err(Errno::EINVAL), "reset {sig}");
        }
        // 64 is the highest real signal; unblocking it (not blocked) changes nothing.
        assert_eq!(unblock_signal(NSIG), Ok(()));
        assert_eq!(unblock_signal(1), Ok(()));
    }

    #[test]
    fn signal_constants_match_libc() {
        assert_eq!(SIGPIPE, libc::SIGPIPE);
        assert_eq!(SIG_BLOCK, libc::SIG_BLOCK);
    }

    #[test]
    fn writable_requests_go_without_read_and_stay_readable() {
        assert_eq!(writable_without_read(PROT_READ | PROT_WRITE), PROT_WRITE);
        assert_eq!(writable_without_read(PROT_READ | PROT_EXEC), PROT_READ | PROT_EXEC);
        assert_eq!(writable_without_read(PROT_READ), PROT_READ);
        let p = mmap_anonymous(8192, PROT_READ | PROT_WRITE).unwrap();
        let addr = p.as_ptr() as usize;
        assert_eq!(perms(addr).as_deref(), Some("-w-p"), "requested without PROT_READ");
        // x86-64 has no write-only pages: what was written reads back, and an untouched
        // page reads as zeros.
        // SAFETY: our own fresh 8 KiB mapping.
        unsafe {
            p.as_ptr().write_bytes(0xCC, 4096);
            assert_eq!(core::ptr::read_volatile(p.as_ptr().add(4095)), 0xCC);
            assert_eq!(core::ptr::read_volatile(p.as_ptr().add(4096)), 0);
        }
        // SAFETY: our own mapping, no references into it.
        unsafe { mprotect(p, 8192, PROT_NONE) }.unwrap();
        // SAFETY: as above.
        unsafe { mprotect(p, 8192, PROT_READ | PROT_WRITE) }.unwrap();
        assert_eq!(perms(addr).as_deref(), Some("-w-p"), "mprotect too");
        // SAFETY: as above.
        unsafe { mprotect(p, 8192, PROT_READ | PROT_EXEC) }.unwrap();
        assert_eq!(perms(addr).as_deref(), Some("r-xp"));
        // SAFETY: our own mapping, unmapped once.
        unsafe { munmap(p, 8192) }.unwrap();
    }
}
