//! Queries a signal handler may make: they never wait for a lock, so they cannot
//! deadlock on code their handler interrupted.
//!
//! Invariant owned here: every function in this module is async-signal-safe. It takes
//! the registry's read lock only if it can have it at once (one attempt, no spinning)
//! and never sleeps; where the registry is locked for writing, or the page is in
//! the middle of a seal or free, it returns [`Error::WouldBlock`] rather than wait: the
//! holder may be the very code the handler interrupted, on the same thread. The only
//! syscall it can make is a futex wake for a writer waiting on the lock.
//!
//! The complete list of async-signal-safe functions in wildx:
//! - [`state`], [`inspect`], [`verify`] (this module);
//! - [`crate::rt::exit`], [`crate::rt::abort`], [`crate::rt::abort_with_message`] (raw
//!   syscalls only; `abort_with_message` never blocks on stderr);
//! - [`crate::fnv1a64`] (pure).
//!
//! Nothing else is: [`crate::inspect`], [`crate::raw::state`], [`crate::raw::verify`] and
//! every operation that allocates, seals, writes or frees may wait for the registry lock,
//! which the interrupted code may hold. A JIT's SIGSEGV handler asking "is this fault in
//! one of my pages?" calls [`inspect`] here.
//!
//! Each query also answers for the functions of an [`crate::Arena`] (by their entry
//! address), trying the arena's lock once as well: while that lock is held (a push,
//! publish or retire under way, possibly the code the signal interrupted) the answer is
//! [`Error::WouldBlock`]. In memfd mode they make one `getpid`.
//!
//! ```
//! let f = wildx::jit::compile_add_i32();
//! let info = wildx::signal_safe::inspect(f).unwrap().unwrap();
//! assert_eq!(info.state, wildx::State::Executable);
//! assert_eq!(wildx::signal_safe::verify(f), Ok(64));
//! assert_eq!(wildx::jit::free(f), 0);
//! assert_eq!(wildx::signal_safe::state(f), Ok(None));
//! ```

use crate::error::Error;
use crate::page::{self, PageInfo};
use crate::registry::State;

/// The state of the page starting at `ptr`: `Ok(Some(..))`, `Ok(None)` for anything that
/// is not a live wildx page. Never waits. Syscalls: at most a futex wake.
///
/// # Errors
/// [`Error::WouldBlock`] if the registry is locked for writing (nothing was looked at).
pub fn state(ptr: *const u8) -> Result<Option<State>, Error> {
    page::try_inspect(ptr).map(|info| info.map(|info| info.state))
}

/// What the registry knows about the page starting at `ptr` (as [`crate::inspect`]),
/// `Ok(None)` for anything that is not a live wildx page. Never waits. Syscalls: at most
/// a futex wake.
///
/// # Errors
/// [`Error::WouldBlock`] if the registry is locked for writing (nothing was looked at).
pub fn inspect(ptr: *const u8) -> Result<Option<PageInfo>, Error> {
    page::try_inspect(ptr)
}

/// Re-hashes the sealed page at `ptr` and compares with its seal hash (as
/// [`crate::raw::verify`]); the page's length on a match. Never waits. Syscalls: at most
/// a futex wake.
///
/// # Errors
/// [`Error::WouldBlock`] if the registry is locked for writing or the page is being
/// sealed or freed; [`Error::Null`], [`Error::NotRegistered`], [`Error::WrongState`],
/// [`Error::IntegrityMismatch`] as [`crate::Code::verify`].
pub fn verify(ptr: *const u8) -> Result<usize, Error> {
    page::try_verify(ptr)
}
