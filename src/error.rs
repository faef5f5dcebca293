//! The typed surface's error: what the caller did, or what the kernel refused.
//!
//! Invariant owned here: an `Error` is `Copy`, carries no strings and never allocates,
//! so it can be returned from any path, including out-of-memory ones.

use core::fmt;

use crate::registry::State;
use crate::sys::Errno;
use crate::validate::Violation;

/// Why a wildx operation was refused. Nothing changed when one is returned, except
/// where a variant says otherwise.
///
/// `#[non_exhaustive]`: later versions add variants (for example, for policies that
/// forbid executable memory in new ways), so a `match` needs a `_` arm:
///
/// ```
/// fn advice(e: wildx::Error) -> &'static str {
///     match e {
///         wildx::Error::QuotaExceeded { .. } => "free some code or raise wildx::set_quota",
///         wildx::Error::Os(_) => "the kernel or a security policy refused",
///         _ => "a bug in the caller: wrong pointer, state or length",
///     }
/// }
/// assert_eq!(advice(wildx::Page::new(0).unwrap_err()), "a bug in the caller: wrong pointer, state or length");
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// `alloc(0)`: a page must hold at least one byte.
    ZeroLength,
    /// The length, rounded up to whole pages, passes `isize::MAX`.
    LengthOverflow,
    /// Mapping this many more bytes would pass the process-wide quota.
    QuotaExceeded {
        /// Bytes the refused allocation would have mapped (whole pages).
        requested: usize,
        /// Bytes mapped by live pages (and allocations under way) at the time.
        live: usize,
        /// The quota at the time.
        quota: usize,
    },
    /// The pointer is null.
    Null,
    /// The pointer is not the start of a live wildx page: foreign (stack, heap, static,
    /// another allocator), interior to a page, or already freed.
    NotRegistered,
    /// The page is registered but not in the state the operation needs.
    WrongState {
        /// The state the operation needs.
        expected: State,
        /// The state the page is in.
        found: State,
    },
    /// The page is too small for what was to be written into it.
    TooSmall {
        /// Bytes needed.
        needed: usize,
        /// The page's requested length.
        len: usize,
    },
    /// The page is owned by a typed handle ([`crate::Page`] or [`crate::Code`]); the raw
    /// surface may not free, seal or write it. Use the handle, or take the pointer back
    /// with `into_raw` first.
    HeldByHandle,
    /// The sealed page's bytes no longer hash to the value recorded at seal.
    IntegrityMismatch {
        /// The hash recorded at seal.
        sealed: u64,
        /// The hash of the bytes now.
        now: u64,
    },
    /// The registry's own table could not grow (its `mmap` failed); the new page was
    /// unmapped again.
    RegistryStorage,
    /// The kernel refused a syscall (`mmap`, `mprotect` or `munmap`) with this errno.
    Os(Errno),
    /// The arena has no room left for what was pushed or imported.
    ArenaFull {
        /// Bytes the push or import needed from the arena's next free byte (alignment
        /// included).
        needed: usize,
        /// Bytes left before the end of the arena's reservation.
        available: usize,
    },
    /// The function id belongs to another arena.
    ForeignFn,
    /// The function was retired: it can no longer be entered or verified.
    Retired,
    /// The function still has live [`crate::Entry`] handles; drop them before retiring it.
    EntryAlive {
        /// How many entries are alive.
        entries: u32,
    },
    /// The call was made from inside a `push_with` closure on the same arena, which holds
    /// the arena while it runs; going on would deadlock.
    Reentrant,
    /// The validator rejected the code (`jit::compile`, feature `validate`): where, and
    /// which rule.
    Rejected(Violation),
    /// The process runs with the `READ_IMPLIES_EXEC` personality, under which the kernel
    /// maps every readable page executable.
    ///
    /// No longer returned: wildx requests writable memory with `PROT_WRITE` alone, which
    /// the personality never makes executable (see `docs/hardening.md`), so it works
    /// under it. Kept so that code matching on it, and its C code, stay valid.
    ReadImpliesExec,
    /// A [`crate::signal_safe`] query found the registry locked for writing, or the page
    /// in the middle of a seal or free, and did not wait (the holder may be the very code
    /// the signal handler interrupted). Nothing was looked at; ask again later.
    WouldBlock,
    /// Executable memory is denied by the system: the kernel refused `PROT_EXEC` on
    /// anonymous memory (SELinux `deny_execmem`, PaX MPROTECT, a seccomp filter), and
    /// then on a memfd mapping too (`vm.memfd_noexec = 2`, a `noexec` policy), so wildx
    /// can make nothing executable. Nothing changed. See [`crate::ExecMode`].
    ExecDenied {
        /// Why `PROT_EXEC` on anonymous memory was refused (`EACCES` or `EPERM`).
        anonymous: Errno,
        /// Why the memfd fallback was refused, or `None` if it was not tried (the policy
        /// appeared after wildx had chosen anonymous memory for this process, or wildx
        /// was built without its `memfd` feature).
        memfd: Option<Errno>,
    },
    /// The arena was inherited across `fork` in memfd mode: its code is the parent's and
    /// is not mapped in this process (see [`crate::ExecMode::Memfd`]). Only dropping it
    /// is allowed.
    Inherited,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::ZeroLength => f.write_str("zero-length allocation"),
            Error::LengthOverflow => f.write_str("length overflows when rounded up to whole pages"),
            Error::QuotaExceeded { requested, live, quota } => {
                write!(f, "quota exceeded: {requested} more bytes with {live} mapped would pass the quota of {quota}")
            }
            Error::Null => f.write_str("null pointer"),
            Error::NotRegistered => f.write_str("not the start of a live wildx page (foreign, interior or freed)"),
            Error::WrongState { expected, found } => {
                write!(f, "page is {found:?}, operation needs {expected:?}")
            }
            Error::HeldByHandle => f.write_str("page is owned by a typed handle; use the handle or its into_raw"),
            Error::TooSmall { needed, len } => write!(f, "page holds {len} bytes, {needed} needed"),
            Error::IntegrityMismatch { sealed, now } => {
                write!(f, "integrity check failed: sealed {sealed:#018x}, now {now:#018x}")
            }
            Error::RegistryStorage => f.write_str("the page registry could not grow (mmap failed)"),
            Error::Os(errno @ (Errno::EACCES | Errno::EPERM)) => write!(
                f,
                "the kernel refused: {errno}; a security policy (SELinux execmem, seccomp, \
                 a hardened kernel) forbids executable memory or this memory operation"
            ),
            Error::Os(errno) => write!(f, "the kernel refused: {errno}"),
            Error::ArenaFull { needed, available } => {
                write!(f, "arena full: {needed} bytes needed, {available} left")
            }
            Error::ForeignFn => f.write_str("function id belongs to another arena"),
            Error::Retired => f.write_str("function is retired"),
            Error::EntryAlive { entries } => write!(f, "function has {entries} live entries"),
            Error::Reentrant => f.write_str("arena used from inside its own push_with closure"),
            Error::Rejected(violation) => write!(f, "{violation}"),
            Error::WouldBlock => f.write_str("the registry is busy and this call does not wait"),
            Error::ReadImpliesExec => {
                f.write_str("the READ_IMPLIES_EXEC personality would make writable pages executable")
            }
            Error::ExecDenied { anonymous, memfd: Some(memfd) } => write!(
                f,
                "executable memory denied by the system: anonymous memory refused ({anonymous}), \
                 memfd refused ({memfd})"
            ),
            Error::ExecDenied { anonymous, memfd: None } => write!(
                f,
                "executable memory denied by the system: anonymous memory refused ({anonymous}), \
                 memfd not tried (chosen too late: call wildx::use_memfd() first; or built without it)"
            ),
            Error::Inherited => f.write_str("arena inherited across fork in memfd mode: its code is not mapped here"),
        }
    }
}

impl core::error::Error for Error {}
