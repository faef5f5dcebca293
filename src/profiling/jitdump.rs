//! The jitdump file: `jit-<pid>.dump` in the current directory, in the format of the
//! Linux kernel's `tools/perf/Documentation/jitdump-specification.txt`, which
//! `perf inject --jit` turns into one small ELF per function so `perf report` names them.
//!
//! Invariants owned here:
//! - records are appended whole (one `writev` under a lock, `O_APPEND`), in order of
//!   their `CLOCK_MONOTONIC` timestamps and code indexes;
//! - the marker mapping, the `mmap` of the file that makes `perf record` log the file's
//!   name and so lets `perf inject` find it, is `PROT_READ|PROT_EXEC` and never writable,
//!   and it maps one page at file offset 1 TiB, past the end of the file: no byte of the
//!   file (no name or code byte a caller supplied) is ever visible through an executable
//!   mapping, even as the file grows.

use super::name::MAX_NAME_LEN;
use super::perf_map::decimal;
use crate::sys::{self, Errno, PAGE_SIZE};

/// `JiTD` read as a little-endian u32.
pub(super) const MAGIC: u32 = 0x4A69_5444;
/// The jitdump version perf understands.
pub(super) const VERSION: u32 = 1;
/// `EM_X86_64`.
pub(super) const ELF_MACH_X86_64: u32 = 62;
/// The header's size. (perf up to at least 6.1 fails on a larger, padded header: its
/// `jit_open` reads the extra bytes with a zero length.)
pub(super) const HEADER_SIZE: usize = 40;
/// Where in the file the marker maps: 1 TiB, far past any byte a dump will hold, so the
/// executable marker mapping never shows a byte of the file (mapping past the end is
/// allowed; only touching it would fault, and nothing does).
pub(super) const MARKER_OFFSET: u64 = 1 << 40;
/// `JIT_CODE_LOAD`, the record type of a new function.
pub(super) const JIT_CODE_LOAD: u32 = 0;
/// Record prefix (id, total_size, timestamp) plus the `JIT_CODE_LOAD` fields before the
/// name (pid, tid, vma, code_addr, code_size, code_index).
pub(super) const LOAD_FIXED: usize = 16 + 40;

/// An open dump.
struct Dump {
    fd: i32,
    pid: i32,
    next_index: u64,
    /// The marker mapping's address, kept for the life of the process (`perf record`
    /// must see it, and unmapping it gains nothing); never dereferenced.
    _marker: usize,
}

static DUMP: spin::Mutex<Option<Dump>> = spin::Mutex::new(None);

/// `jit-<pid>.dump` with its NUL, in `buf`; returns the used length.
pub(super) fn path(pid: i32, buf: &mut [u8; 32]) -> usize {
    let mut len = 0;
    let mut put = |bytes: &[u8]| {
        buf[len..len + bytes.len()].copy_from_slice(bytes);
        len += bytes.len();
    };
    put(b"jit-");
    let mut digits = [0u8; 10];
    let n = decimal(pid as u32, &mut digits);
    put(&digits[10 - n..]);
    put(b".dump\0");
    len
}

fn header(pid: i32, timestamp: u64) -> [u8; 40] {
    let mut h = [0u8; 40];
    h[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    h[4..8].copy_from_slice(&VERSION.to_le_bytes());
    h[8..12].copy_from_slice(&(HEADER_SIZE as u32).to_le_bytes());
    h[12..16].copy_from_slice(&ELF_MACH_X86_64.to_le_bytes());
    // 16..20: pad1, zero.
    h[20..24].copy_from_slice(&(pid as u32).to_le_bytes());
    h[24..32].copy_from_slice(&timestamp.to_le_bytes());
    // 32..40: flags, zero (timestamps are CLOCK_MONOTONIC, not the TSC).
    h
}

/// Creates (or truncates) the dump, writes its header and maps the marker. Called once,
/// under the enable lock. On failure the file may exist but nothing is enabled.
pub(super) fn open() -> Result<(), Errno> {
    let pid = sys::getpid();
    let mut buf = [0u8; 32];
    let len = path(pid, &mut buf);
    // O_RDWR: the marker mmap needs a readable descriptor. O_NOFOLLOW: never write
    // through a symbolic link planted at our name.
    let flags = sys::O_RDWR | sys::O_CREAT | sys::O_TRUNC | sys::O_APPEND | sys::O_CLOEXEC | sys::O_NOFOLLOW;
    let fd = sys::openat(sys::AT_FDCWD, &buf[..len], flags, 0o644)?;
    let result = (|| {
        let head = header(pid, sys::clock_monotonic_ns()?);
        write_all(fd, &[&head], HEADER_SIZE)?;
        let prot = sys::PROT_READ | sys::PROT_EXEC;
        debug_assert!(prot & sys::PROT_WRITE == 0, "the marker mapping is never writable");
        sys::mmap_file(PAGE_SIZE, prot, fd, MARKER_OFFSET)
    })();
    match result {
        Ok(marker) => {
            *DUMP.lock() = Some(Dump { fd, pid, next_index: 0, _marker: marker.as_ptr() as usize });
            Ok(())
        }
        Err(errno) => {
            let _ = sys::close(fd);
            Err(errno)
        }
    }
}

/// Writes `iov` (totalling `total` bytes) with one `writev`; a short write is an error
/// (`EIO`), since a torn record would corrupt every record after it.
fn write_all(fd: i32, iov: &[&[u8]], total: usize) -> Result<(), Errno> {
    loop {
        match sys::writev(fd, iov) {
            Ok(n) if n == total => return Ok(()),
            Ok(_) => return Err(Errno::from_raw(5)), // EIO
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Whether a dump is open for this process (a forked child's pid differs: it writes
/// nothing into its parent's file).
pub(super) fn is_open_for(pid: i32) -> bool {
    DUMP.lock().as_ref().is_some_and(|d| d.pid == pid)
}

/// Appends one `JIT_CODE_LOAD` record per function of `batch` (each `(code, name)`),
/// under the dump's lock so indexes and timestamps increase in file order. A failed
/// write is dropped: profiling never fails the publish it describes.
pub(super) fn write_loads<'a>(pid: i32, batch: impl Iterator<Item = (&'a [u8], super::name::NameBuf)>) {
    let mut guard = DUMP.lock();
    let Some(dump) = guard.as_mut().filter(|d| d.pid == pid) else { return };
    let tid = sys::gettid();
    for (code, name) in batch {
        let name = name.as_bytes();
        debug_assert!(name.len() <= MAX_NAME_LEN);
        let total = LOAD_FIXED + name.len() + 1 + code.len();
        let Ok(total32) = u32::try_from(total) else { continue };
        let timestamp = sys::clock_monotonic_ns().unwrap_or(0);
        let addr = code.as_ptr() as u64;
        let mut fixed = [0u8; LOAD_FIXED];
        fixed[0..4].copy_from_slice(&JIT_CODE_LOAD.to_le_bytes());
        fixed[4..8].copy_from_slice(&total32.to_le_bytes());
        fixed[8..16].copy_from_slice(&timestamp.to_le_bytes());
        fixed[16..20].copy_from_slice(&(pid as u32).to_le_bytes());
        fixed[20..24].copy_from_slice(&(tid as u32).to_le_bytes());
        fixed[24..32].copy_from_slice(&addr.to_le_bytes()); // vma
        fixed[32..40].copy_from_slice(&addr.to_le_bytes()); // code_addr
        fixed[40..48].copy_from_slice(&(code.len() as u64).to_le_bytes());
        fixed[48..56].copy_from_slice(&dump.next_index.to_le_bytes());
        if write_all(dump.fd, &[&fixed, name, b"\0", code], total).is_ok() {
            dump.next_index += 1;
        }
    }
}
