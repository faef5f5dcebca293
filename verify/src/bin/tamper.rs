//! verify-on-call, freestanding: compile the add page, call it once (it verifies), then
//! change one of its sealed bytes through `/proc/self/mem` (which bypasses page
//! protections, so the page stays `R|X` and EXECUTABLE) and call it again. The runtime
//! must notice, write one line to stderr and kill the process with SIGABRT: the
//! expected outcome of this program is death by SIGABRT, never an exit.
//!
//! Built only with the package's `verify-on-call` feature (`required-features`).
//!
//! Exit codes: 60 compile_add_i32 returned null, 61 the first call did not return 42,
//! 62 `/proc/self/mem` could not be opened, 63 the write through it failed, 64 the
//! explicit verify did not report the change, 65 the call into the tampered page
//! returned (verify-on-call let it run), 101 a panic. Each failure also writes one line
//! to stderr.
//!
//! `unsafe` is needed for the calls into the page and the raw syscalls that open and
//! write `/proc/self/mem` (and by `rt`).

#![no_std]
#![no_main]
#![allow(unsafe_code)]

#[path = "../rt.rs"]
mod rt;

use syscalls::Sysno;

const AT_FDCWD: isize = -100;
const O_RDWR: usize = 0o2;
const O_CLOEXEC: usize = 0o2000000;

/// The `add eax, esi` opcode (`01`) at offset 2 becomes `sub eax, esi` (`29`).
const OFFSET: usize = 2;
const PATCH: u8 = 0x29;

fn run() -> i32 {
    let f = wildx::jit::compile_add_i32();
    if f.is_null() {
        rt::fail(60, "tamper: compile_add_i32 returned null\n");
    }
    // SAFETY: `f` is a live add page from compile_add_i32 and is never freed.
    if unsafe { wildx::jit::call_i32_i32(f, 7, 35) } != 42 {
        rt::fail(61, "tamper: add(7, 35) did not return 42 before tampering\n");
    }

    // SAFETY: openat reads the NUL-terminated path, a static; it touches no other memory.
    let fd = unsafe {
        syscalls::syscall4(Sysno::openat, AT_FDCWD as usize, c"/proc/self/mem".as_ptr() as usize, O_RDWR | O_CLOEXEC, 0)
    };
    let Ok(fd) = fd else { rt::fail(62, "tamper: cannot open /proc/self/mem read-write\n") };
    let patch = [PATCH];
    // SAFETY: the kernel reads one byte from `patch` and writes it at `f + OFFSET`, inside
    // the page this program owns and only ever calls (the point of the test); no Rust
    // reference to the page's bytes exists.
    let written = unsafe { syscalls::syscall4(Sysno::pwrite64, fd, patch.as_ptr() as usize, 1, f as usize + OFFSET) };
    if written != Ok(1) {
        rt::fail(63, "tamper: the write through /proc/self/mem failed\n");
    }
    // SAFETY: close takes a descriptor this program opened and touches no memory.
    let _ = unsafe { syscalls::syscall1(Sysno::close, fd) };

    if wildx::raw::verify(f) != -1 {
        rt::fail(64, "tamper: verify did not report the changed byte\n");
    }
    // Must not return: the runtime re-hashes, sees the mismatch and aborts.
    // SAFETY: `f` is still a live page holding (tampered) code of this signature; with
    // verify-on-call the bytes are checked before they could run.
    let _ = unsafe { wildx::jit::call_i32_i32(f, 7, 35) };
    rt::fail(65, "tamper: the call into the tampered page returned\n")
}
