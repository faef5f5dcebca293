//! The narrow runtime path for programs that embed wildx without a libc: freestanding
//! (`#![no_std]`, `#![no_main]`) binaries and the C static library's panic glue need to
//! leave the process, say one line on stderr, and abort, and nothing else of the
//! syscall layer. That layer itself is private, so that no caller can ask it for a
//! writable and executable mapping.
//!
//! ```no_run
//! let _ = wildx::rt::write_stderr(b"fatal: giving up\n");
//! wildx::rt::exit(3);
//! ```

use crate::sys::{self, Errno};

/// Ends the whole process (every thread) with exit status `code` (`exit_group`). Runs
/// no destructors or `atexit` handlers. Never returns.
pub fn exit(code: i32) -> ! {
    sys::exit_group(code)
}

/// Writes all of `bytes` to standard error (fd 2) with raw `write` calls, retrying on
/// short writes and `EINTR`. This may block (a full pipe) and, like any write, may
/// raise `SIGPIPE` (a pipe nobody reads): use [`abort_with_message`] on a path that must
/// end the process whatever stderr is.
///
/// # Errors
/// The first error other than `EINTR`: `EBADF` if stderr is closed, `EPIPE`, `EAGAIN`...
pub fn write_stderr(bytes: &[u8]) -> Result<(), Errno> {
    sys::write_all(sys::STDERR, bytes)
}

/// Kills the process with `SIGABRT` as `abort(3)` does, without libc: unblocks
/// `SIGABRT` and sends it to the calling thread; if a handler returns, resets the
/// handler to the default and sends it again; if the process is somehow still alive,
/// `exit_group(134)`. Never unwinds, never returns.
pub fn abort() -> ! {
    sys::abort()
}

/// Writes `line` to stderr if it can be done at once, then [`abort`]s. The write never
/// blocks and never raises `SIGPIPE`: with stderr a full pipe, a pipe nobody reads, or
/// closed, the line is lost and the process still dies by `SIGABRT`. This is the path
/// `verify-on-call` takes on a tampered page. `line` is cut at 4096 bytes.
pub fn abort_with_message(line: &[u8]) -> ! {
    sys::write_stderr_nonblocking(line);
    sys::abort()
}
