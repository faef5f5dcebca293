//! Helpers shared by the lead's integration tests: running a test in a child process
//! and reading `/proc/self/maps`.

#![allow(dead_code)]

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};

/// The environment variable that tells a re-run test binary which test should do the
/// dangerous part.
pub const CHILD_ENV: &str = "WILDX_TEST_CHILD";

/// True in the child process started by [`run_child`] for the test `name`.
pub fn in_child(name: &str) -> bool {
    std::env::var(CHILD_ENV).as_deref() == Ok(name)
}

/// Re-runs this test binary with only the test `name`, marked as the child, with
/// `extra` environment variables, and returns its output.
pub fn run_child(name: &str, extra: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"]).env(CHILD_ENV, name);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.output().expect("spawn child test process")
}

/// Asserts the child died by `signal`, showing its output if not.
pub fn assert_killed_by(out: &Output, signal: i32) {
    assert_eq!(
        out.status.signal(),
        Some(signal),
        "expected death by signal {signal}, got {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One line of `/proc/self/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub start: usize,
    pub end: usize,
    pub perms: String,
    pub path: String,
}

impl Mapping {
    pub fn writable(&self) -> bool {
        self.perms.as_bytes()[1] == b'w'
    }
    pub fn executable(&self) -> bool {
        self.perms.as_bytes()[2] == b'x'
    }
    pub fn contains(&self, addr: usize) -> bool {
        (self.start..self.end).contains(&addr)
    }
}

/// The process's mappings now.
pub fn maps() -> Vec<Mapping> {
    let text = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
    text.lines()
        .map(|line| {
            let mut f = line.split_whitespace();
            let range = f.next().unwrap();
            let perms = f.next().unwrap().to_string();
            let path = f.nth(3).unwrap_or("").to_string();
            let (s, e) = range.split_once('-').unwrap();
            Mapping {
                start: usize::from_str_radix(s, 16).unwrap(),
                end: usize::from_str_radix(e, 16).unwrap(),
                perms,
                path,
            }
        })
        .collect()
}

/// Panics if any mapping of the process is both writable and executable.
pub fn assert_no_wx(step: &str) {
    for m in maps() {
        assert!(!(m.writable() && m.executable()), "after {step}: W|X mapping {m:?}");
    }
}

/// Bytes of anonymous executable mappings (no path), the kind sealed pages are.
pub fn anon_exec_bytes() -> usize {
    maps().iter().filter(|m| m.executable() && m.path.is_empty()).map(|m| m.end - m.start).sum()
}

/// The permissions of the mapping containing `addr`.
pub fn perms_of(addr: *const u8) -> Option<String> {
    maps().into_iter().find(|m| m.contains(addr as usize)).map(|m| m.perms)
}

/// Overwrites bytes at `addr` through `/proc/self/mem`, which bypasses page protection
/// (the way a debugger or an attacker with that file would).
pub fn poke(addr: *const u8, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let mem = std::fs::OpenOptions::new().write(true).open("/proc/self/mem").expect("open /proc/self/mem");
    mem.write_all_at(bytes, addr as u64).expect("write /proc/self/mem");
}
