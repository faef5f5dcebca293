//! The perf map: `/tmp/perf-<pid>.map`, one `START SIZE name` line per function, which
//! `perf report` reads to name samples in anonymous executable memory.
//!
//! Invariant owned here: each line reaches the file with one `write` on an `O_APPEND`
//! descriptor, so lines from concurrent publishers never interleave, and no line is
//! written by a forked child into its parent's file.

use core::sync::atomic::{AtomicI32, Ordering};

use super::name::{MAX_NAME_LEN, hex};
use crate::sys::{self, Errno};

/// The open map's descriptor, or -1.
static FD: AtomicI32 = AtomicI32::new(-1);
/// The pid the map was opened for (its name says whose samples it names).
static PID: AtomicI32 = AtomicI32::new(0);

/// `/tmp/perf-<pid>.map` with its NUL, in `buf`; returns the used length.
pub(super) fn path(pid: i32, buf: &mut [u8; 40]) -> usize {
    let mut len = 0;
    let mut put = |bytes: &[u8]| {
        buf[len..len + bytes.len()].copy_from_slice(bytes);
        len += bytes.len();
    };
    put(b"/tmp/perf-");
    let mut digits = [0u8; 10];
    let n = decimal(pid as u32, &mut digits);
    put(&digits[10 - n..]);
    put(b".map\0");
    len
}

/// Writes `value` in decimal right-aligned in `out`, returning the digit count.
pub(super) fn decimal(mut value: u32, out: &mut [u8; 10]) -> usize {
    let mut n = 0;
    loop {
        out[9 - n] = b'0' + (value % 10) as u8;
        value /= 10;
        n += 1;
        if value == 0 {
            return n;
        }
    }
}

/// Creates (or truncates) the map for this process. Called once, under the enable lock.
pub(super) fn open() -> Result<(), Errno> {
    let pid = sys::getpid();
    let mut buf = [0u8; 40];
    let len = path(pid, &mut buf);
    // O_NOFOLLOW: /tmp is shared, and a symbolic link planted at our name must not make
    // us truncate or append to another file. 0644 as perf's own JIT agents do.
    let flags = sys::O_WRONLY | sys::O_CREAT | sys::O_TRUNC | sys::O_APPEND | sys::O_CLOEXEC | sys::O_NOFOLLOW;
    let fd = sys::openat(sys::AT_FDCWD, &buf[..len], flags, 0o644)?;
    // Release: pairs with the Acquire in `write_line`; PID is stored first, so a writer
    // that sees the descriptor sees the pid it belongs to.
    PID.store(pid, Ordering::Relaxed);
    FD.store(fd, Ordering::Release);
    Ok(())
}

/// The descriptor to write to, or `None` when the map is off or this is a forked child
/// (whose pid names another file; it writes nothing).
pub(super) fn target(pid: i32) -> Option<i32> {
    // Acquire: see `open`.
    let fd = FD.load(Ordering::Acquire);
    (fd >= 0 && PID.load(Ordering::Relaxed) == pid).then_some(fd)
}

/// Appends `START SIZE name\n` (hex without `0x`, as perf parses it) with one `write`.
/// A failed write is dropped: profiling must never fail the publish it describes.
pub(super) fn write_line(fd: i32, addr: usize, len: usize, name: &[u8]) {
    let mut line = [0u8; 16 + 1 + 16 + 1 + MAX_NAME_LEN + 1];
    let mut at = 0;
    let mut digits = [0u8; 16];
    for (value, sep) in [(addr as u64, b' '), (len as u64, b' ')] {
        let n = hex(value, &mut digits);
        line[at..at + n].copy_from_slice(&digits[..n]);
        line[at + n] = sep;
        at += n + 1;
    }
    let name = &name[..name.len().min(MAX_NAME_LEN)];
    line[at..at + name.len()].copy_from_slice(name);
    at += name.len();
    line[at] = b'\n';
    at += 1;
    // One write: with O_APPEND the kernel places the whole line at the end atomically;
    // a regular file takes it whole (a short write only on a full disk).
    let _ = sys::write(fd, &line[..at]);
}
