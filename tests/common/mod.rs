//! Helpers shared by the reliability tests (and any other test binary that wants them):
//!
//! - [`Maps`]: `/proc/self/maps` parsed, with the checks the suite runs after
//!   operations: no mapping is ever writable and executable ([`Maps::assert_no_wx`]),
//!   the protection of a page ([`Maps::perms_of`]), whether a range is unmapped
//!   ([`Maps::is_unmapped`]), and the anonymous bytes by protection
//!   ([`Maps::anon_bytes`]) that footprint checks compare with `wildx::stats()`.
//! - [`RawMaps`]: an allocation-free snapshot of the same file, for byte-exact
//!   before/after comparisons in a process where the test itself must not disturb the
//!   address space (a heap allocation may `mmap` or grow a malloc arena).
//! - The child-process runner: [`run_in_child`] re-runs the current test binary with
//!   only one test selected (`--exact`) and [`CHILD_ENV`] set, so that the test's body
//!   runs in a process of its own (rlimits, seccomp filters and signals then stay
//!   there), and the parent asserts how the child ended. A child that is meant to die
//!   by a signal never prints the "done" marker [`run_in_child`] requires: such tests
//!   check [`is_child`] themselves, start the child with [`child_output`] and assert
//!   the signal with [`assert_killed_by`].
//! - [`assert_no_wx`]: the W^X check on a fresh read of the maps, naming the step it
//!   follows; [`poke`]: tampering with sealed code through `/proc/self/mem`.
//!
//! A test binary declares `mod common;` and uses what it needs, so any one binary
//! leaves most of this unused; hence the `dead_code` allowance.

#![allow(dead_code)]

pub mod seccomp;

use std::fs::File;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};

/// The environment variable that tells a re-run test binary which test is to run its
/// body for real (its value is the test's name).
pub const CHILD_ENV: &str = "WILDX_TEST_CHILD";

/// What a child prints when its body returned; the parent requires it, so a filter
/// that matched no test (and "passed" by running nothing) is caught.
pub const CHILD_DONE: &str = "wildx-test-child-done: ";

/// Whether this process is the child started by [`run_in_child`] / [`child_output`] for
/// the test `name`.
pub fn is_child(name: &str) -> bool {
    std::env::var(CHILD_ENV).as_deref() == Ok(name)
}

/// Re-runs this test binary with only the test `name` selected (`--exact`, `--nocapture`,
/// `--test-threads=1`), [`CHILD_ENV`] set to `name` and the `extra` environment
/// variables, and returns how it ended and what it printed.
///
/// `name` is the test's path inside its binary, e.g. `"seal_refused"` or
/// `"module::seal_refused"`.
pub fn child_output(name: &str, extra: &[(&str, &str)]) -> Output {
    let exe = std::env::current_exe().expect("the test binary's own path");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"]).env(CHILD_ENV, name);
    for (key, value) in extra {
        cmd.env(key, value);
    }
    cmd.output().expect("spawn the child test process")
}

/// Runs `body` in a child process and asserts that the child ran it to the end and
/// exited 0. In the child (see [`is_child`]) it runs `body` and prints [`CHILD_DONE`];
/// in the parent it spawns the child and checks it. Returns the child's output in the
/// parent, `None` in the child.
///
/// ```ignore
/// #[test]
/// fn refused_under_seccomp() {
///     common::run_in_child("refused_under_seccomp", || {
///         install_filter();
///         assert_eq!(wildx::raw::seal(page), -1);
///     });
/// }
/// ```
pub fn run_in_child(name: &str, body: impl FnOnce()) -> Option<Output> {
    if is_child(name) {
        body();
        println!("{CHILD_DONE}{name}");
        return None;
    }
    let out = child_output(name, &[]);
    assert_child_passed(name, &out);
    Some(out)
}

/// Asserts that the child for test `name` exited 0 after printing [`CHILD_DONE`],
/// showing everything it printed if not.
pub fn assert_child_passed(name: &str, out: &Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(&format!("{CHILD_DONE}{name}")),
        "child for {name} did not pass: {:?} (signal {:?})\n{}",
        out.status,
        out.status.signal(),
        describe(out)
    );
}

/// Asserts that the child died from `signal` (e.g. `libc::SIGSEGV`), showing its output
/// if not.
pub fn assert_killed_by(out: &Output, signal: i32) {
    assert_eq!(out.status.signal(), Some(signal), "expected death by signal {signal}, got {:?}\n{}", out.status, {
        describe(out)
    });
}

/// The child's stdout and stderr, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The protection and sharing flags of one mapping (`rwxp` / `rw-s`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Perms {
    /// `r`.
    pub read: bool,
    /// `w`.
    pub write: bool,
    /// `x`.
    pub exec: bool,
    /// `s` (shared) rather than `p` (private).
    pub shared: bool,
}

impl Perms {
    /// `rw-p`: an ordinary read-write mapping (made with libc, not wildx).
    pub const RW: Perms = Perms { read: true, write: true, exec: false, shared: false };
    /// `-w-p`: what a WRITABLE wildx page must be. wildx asks for `PROT_WRITE` without
    /// `PROT_READ`, so that the `READ_IMPLIES_EXEC` personality can never add `PROT_EXEC`;
    /// x86-64 pages cannot be write-only, so it reads as well.
    pub const W: Perms = Perms { read: false, write: true, exec: false, shared: false };
    /// `r-xp`: what an EXECUTABLE wildx page must be.
    pub const RX: Perms = Perms { read: true, write: false, exec: true, shared: false };

    fn parse(field: &str) -> Option<Perms> {
        let b = field.as_bytes();
        if b.len() != 4 {
            return None;
        }
        Some(Perms { read: b[0] == b'r', write: b[1] == b'w', exec: b[2] == b'x', shared: b[3] == b's' })
    }

    /// The protection as the first three characters of the maps field (`"r-x"`,
    /// `"rw-"`, ...), without the sharing flag.
    pub fn rwx(self) -> String {
        [(self.read, 'r'), (self.write, 'w'), (self.exec, 'x')]
            .iter()
            .map(|&(on, c)| if on { c } else { '-' })
            .collect()
    }
}

/// One line of `/proc/self/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// First address.
    pub start: usize,
    /// One past the last address.
    pub end: usize,
    /// Protection.
    pub perms: Perms,
    /// Offset into the backing file.
    pub offset: u64,
    /// Inode of the backing file, 0 for anonymous memory.
    pub inode: u64,
    /// The path or pseudo-name (`[heap]`, `[stack]`, `[vdso]`, `[anon:name]`), empty for
    /// plain anonymous memory such as wildx pages and the registry's table.
    pub path: String,
}

impl Mapping {
    /// Bytes covered.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Plain anonymous memory (no file, no pseudo-name): where `mmap(MAP_ANONYMOUS)`
    /// lands, and so where every wildx page and the registry's own table live.
    pub fn is_anonymous(&self) -> bool {
        self.inode == 0 && self.path.is_empty()
    }

    fn parse(line: &str) -> Option<Mapping> {
        // start-end perms offset dev inode [path]; the path may contain spaces.
        let mut fields = line.splitn(6, ' ');
        let (range, perms, offset, _dev, inode) =
            (fields.next()?, fields.next()?, fields.next()?, fields.next()?, fields.next()?);
        let path = fields.next().unwrap_or("").trim_start().to_owned();
        let (start, end) = range.split_once('-')?;
        Some(Mapping {
            start: usize::from_str_radix(start, 16).ok()?,
            end: usize::from_str_radix(end, 16).ok()?,
            perms: Perms::parse(perms)?,
            offset: u64::from_str_radix(offset, 16).ok()?,
            inode: inode.parse().ok()?,
            path,
        })
    }
}

/// `/proc/self/maps`, parsed, in address order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Maps {
    /// Every mapping, sorted by start address.
    pub mappings: Vec<Mapping>,
}

impl Maps {
    /// Reads and parses `/proc/self/maps`.
    pub fn read() -> Maps {
        let text = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
        Maps::parse(&text)
    }

    /// Parses the text of a maps file; panics on a line it cannot read.
    pub fn parse(text: &str) -> Maps {
        let mappings = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| Mapping::parse(l).unwrap_or_else(|| panic!("unreadable maps line {l:?}")))
            .collect();
        Maps { mappings }
    }

    /// Mappings that are both writable and executable. W^X says there are none.
    pub fn writable_and_executable(&self) -> Vec<&Mapping> {
        self.mappings.iter().filter(|m| m.perms.write && m.perms.exec).collect()
    }

    /// Panics, listing them, if any mapping is both writable and executable.
    pub fn assert_no_wx(&self) {
        let wx = self.writable_and_executable();
        assert!(wx.is_empty(), "W^X violated: writable and executable mappings {wx:#x?}");
    }

    /// Bytes of plain anonymous memory with exactly the protection `perms`.
    pub fn anon_bytes(&self, perms: Perms) -> usize {
        self.mappings.iter().filter(|m| m.is_anonymous() && m.perms == perms).map(Mapping::len).sum()
    }

    /// Bytes of plain anonymous memory that is executable (whatever else it is). In a
    /// test process nothing but sealed wildx pages (and JIT peers under test) is.
    pub fn anon_exec_bytes(&self) -> usize {
        self.mappings.iter().filter(|m| m.is_anonymous() && m.perms.exec).map(Mapping::len).sum()
    }

    /// Executable bytes that are views of wildx's memfd (memfd mode).
    pub fn memfd_exec_bytes(&self) -> usize {
        self.mappings.iter().filter(|m| m.path.starts_with("/memfd:wildx") && m.perms.exec).map(Mapping::len).sum()
    }

    /// The protection of `[start, start + len)` if that whole range is mapped with one
    /// protection (the kernel merges neighbouring anonymous mappings of equal protection
    /// into one line, or may keep them as adjacent lines; both count), else `None`.
    pub fn perms_of(&self, start: usize, len: usize) -> Option<Perms> {
        let end = start.checked_add(len)?;
        let first = self.mappings.iter().position(|m| m.start <= start && start < m.end)?;
        let perms = self.mappings[first].perms;
        let mut covered = self.mappings[first].end;
        for m in &self.mappings[first + 1..] {
            if covered >= end {
                break;
            }
            if m.start != covered || m.perms != perms {
                return None;
            }
            covered = m.end;
        }
        (covered >= end).then_some(perms)
    }

    /// Whether no mapping overlaps `[start, start + len)`.
    pub fn is_unmapped(&self, start: usize, len: usize) -> bool {
        let end = start.saturating_add(len);
        !self.mappings.iter().any(|m| m.start < end && start < m.end)
    }

    /// The mapping containing `addr`, if any.
    pub fn containing(&self, addr: usize) -> Option<&Mapping> {
        self.mappings.iter().find(|m| m.start <= addr && addr < m.end)
    }
}

/// The bytes of `/proc/self/maps`, read without allocating once the buffer has grown
/// to hold them: take several snapshots first, parse them after, and the snapshots show
/// only what the code under test did to the address space.
pub struct RawMaps {
    buf: Vec<u8>,
    len: usize,
}

impl RawMaps {
    /// A snapshot buffer with room for `capacity` bytes (a test process's maps are a
    /// few KiB; 1 MiB is plenty).
    pub fn with_capacity(capacity: usize) -> RawMaps {
        RawMaps { buf: vec![0; capacity], len: 0 }
    }

    /// Re-reads `/proc/self/maps` into the buffer. Allocates nothing (opening a short
    /// path uses a stack buffer). Panics if the file does not fit.
    pub fn snapshot(&mut self) {
        let mut file = File::open("/proc/self/maps").expect("open /proc/self/maps");
        self.len = 0;
        loop {
            assert!(self.len < self.buf.len(), "maps snapshot buffer too small");
            match file.read(&mut self.buf[self.len..]) {
                Ok(0) => break,
                Ok(n) => self.len += n,
                Err(e) => panic!("read /proc/self/maps: {e}"),
            }
        }
    }

    /// The snapshot's text.
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).expect("maps is text")
    }

    /// The snapshot, parsed.
    pub fn parse(&self) -> Maps {
        Maps::parse(self.text())
    }
}

/// Runs `body` in a forked child of this (test child) process and returns how it ended:
/// for a fault that must end the process (check it with `ExitStatusExt::signal`), or
/// exit status 0 if `body` returned and 101 if it panicked.
pub fn in_grandchild(body: impl FnOnce()) -> std::process::ExitStatus {
    // SAFETY: the child only runs `body` and `_exit`s; the test child is single-threaded
    // here (the harness runs it with one test thread and nothing else spawned).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // A panic must not unwind into the harness: the grandchild has only the forked
        // test thread, whose exit would end the process with status 0, as if `body` had
        // passed.
        let passed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).is_ok();
        // SAFETY: leaves the grandchild without running the parent's destructors.
        unsafe { libc::_exit(if passed { 0 } else { 101 }) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    std::process::ExitStatus::from_raw(status)
}

/// How many one-page holes wildx's ring has (feature `page-ring`,
/// `src/placement/ring.rs`): a 2 MiB window's odd pages but the last.
pub const RING_HOLES: usize = 255;

/// Takes every hole of wildx's ring once (feature `page-ring`, `src/placement/ring.rs`),
/// so that all its fences exist: a hole's fence is made when a single page first takes
/// the hole and stays, like a window's anchor. Tests that compare the mappings or the
/// address space before and after an allocation call this first, so the one-time
/// fences are not counted as the allocation's.
pub fn make_all_fences() {
    for _ in 0..RING_HOLES {
        let p = wildx::raw::alloc(1);
        assert!(!p.is_null());
        assert_eq!(wildx::raw::free(p), 0);
    }
}

/// Reads `/proc/self/maps` and panics if any mapping is both writable and executable,
/// naming `step` (the operation just done) and listing the offending mappings.
pub fn assert_no_wx(step: &str) {
    let maps = Maps::read();
    let wx = maps.writable_and_executable();
    assert!(wx.is_empty(), "after {step}: W^X violated: writable and executable mappings {wx:#x?}");
}

/// Overwrites the bytes at `addr` through `/proc/self/mem`, which bypasses page
/// protection (the way a debugger, or an attacker who can open that file, would): the
/// way to tamper with sealed R|X code without touching its protection.
pub fn poke(addr: *const u8, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let mem = std::fs::OpenOptions::new().write(true).open("/proc/self/mem").expect("open /proc/self/mem");
    mem.write_all_at(bytes, addr as u64).expect("write /proc/self/mem");
}

/// `/proc/self/status`'s `VmSize` in bytes: the address space `RLIMIT_AS` is checked
/// against (the kernel's `total_vm`).
pub fn vm_size() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmSize:")).expect("VmSize in /proc/self/status");
    let kib: usize = line.trim_start_matches("VmSize:").trim().trim_end_matches("kB").trim().parse().expect("VmSize");
    kib * 1024
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_maps_lines() {
        let maps = Maps::parse(
            "7f00000000-7f00001000 rw-p 00000000 00:00 0 \n\
             7f00001000-7f00003000 r-xp 00000000 00:00 0\n\
             7f00003000-7f00004000 rwxp 00000000 00:00 0 [anon:jit]\n\
             7ffd0000-7ffd1000 r--p 00001000 fd:01 1234    /usr/lib/a b.so\n",
        );
        assert_eq!(maps.mappings.len(), 4);
        assert_eq!(maps.mappings[3].path, "/usr/lib/a b.so");
        assert!(maps.mappings[0].is_anonymous() && !maps.mappings[2].is_anonymous());
        assert_eq!(maps.anon_exec_bytes(), 0x2000);
        assert_eq!(maps.anon_bytes(Perms::RW), 0x1000);
        assert_eq!(maps.writable_and_executable().len(), 1);
        assert_eq!(maps.perms_of(0x7f00001000, 0x2000), Some(Perms::RX));
        assert_eq!(maps.containing(0x7f00003000).map(|m| m.perms.rwx()).as_deref(), Some("rwx"));
        assert_eq!(Perms::RX.rwx(), "r-x");
        assert_eq!(Perms::RW.rwx(), "rw-");
        assert_eq!(Perms::W.rwx(), "-w-");
        assert_eq!(maps.perms_of(0x7f00000000, 0x2000), None);
        assert!(maps.is_unmapped(0x7f00004000, 0x1000) && !maps.is_unmapped(0x7f00003fff, 2));
    }
}
