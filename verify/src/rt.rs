//! The runtime glue a freestanding (`#![no_std]`, `#![no_main]`, no libc) program needs
//! to embed wildx, shared by every binary in this package through
//! `#[path = "../rt.rs"] mod rt;`. It is the library's job to need none of it and the
//! program's job to supply it once:
//!
//! - `_start`, the ELF entry point: calls the binary's `run()` and exits with its result;
//! - a panic handler that writes one line and exits with [`PANIC_EXIT`], never unwinding;
//! - `memcpy`, `memmove`, `memset`, `memcmp`, `bcmp`: the compiler emits calls to them and
//!   the precompiled `compiler_builtins` of x86_64-unknown-linux-gnu defines none (it
//!   expects libc's). Each is written so that it cannot compile into a call to itself
//!   (`rep movsb`/`rep stosb` in inline assembly, volatile byte reads);
//! - `rust_eh_personality`: the precompiled `liballoc` was built to unwind and its
//!   landing pads name this symbol. Nothing here unwinds (`panic = "abort"`), so it is
//!   never called; fat LTO drops the references, other builds need the definition;
//! - `#[global_allocator]`: [`wildx::MmapAlloc`]. wildx never calls the global
//!   allocator, but hashbrown links `liballoc`, which needs one named.
//!
//! It needs `unsafe` for what only unsafe code can do: exported unmangled symbols, a
//! naked entry point, inline assembly and raw-pointer memory routines.

#![allow(unsafe_code)]

use core::arch::{asm, naked_asm};
use core::panic::PanicInfo;
use core::ptr;

/// The exit code of a panic (as a Rust `std` program's).
pub const PANIC_EXIT: i32 = 101;

#[global_allocator]
static ALLOC: wildx::MmapAlloc = wildx::MmapAlloc;

/// Ends the process with `code` after writing `line` (one line, ending in `\n`) to
/// stderr (best effort: a closed stderr loses the line, not the exit code).
pub fn fail(code: i32, line: &str) -> ! {
    // Best effort: nothing can be done if stderr is closed; the exit code still tells.
    let _ = wildx::rt::write_stderr(line.as_bytes());
    wildx::rt::exit(code)
}

/// The ELF entry point. The kernel enters with `rsp` pointing at `argc` (16-byte
/// aligned) and no return address, so this is naked: clear the frame pointer (the
/// outermost frame), keep the stack 16-byte aligned for the call, and never return.
///
/// # Safety
/// Only the kernel may jump here, once, at process start.
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _start() -> ! {
    naked_asm!(
        "xor ebp, ebp",
        "mov rdi, rsp",
        "and rsp, -16",
        "call {entry}",
        "ud2",
        entry = sym entry,
    )
}

/// Runs the program and exits with its code. `_sp` is the initial stack pointer
/// (`argc`, `argv`, `envp`, auxv); no binary here needs it.
extern "C" fn entry(_sp: *const usize) -> ! {
    wildx::rt::exit(crate::run())
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    // One line, one write: "wildx-verify: panic at <file>:<line>\n", built on the stack.
    // No core::fmt and no indexing that could itself panic (only `get`, `zip`): either
    // would pull core's formatting machinery (about 1.5 KiB) into every binary.
    let mut line = Line { buf: [0; 160], len: 0 };
    line.push(b"wildx-verify: panic");
    if let Some(location) = info.location() {
        line.push(b" at ");
        line.push(location.file().as_bytes());
        line.push(b":");
        let mut digits = [0u8; 10];
        let mut n = location.line();
        let mut start = digits.len();
        for digit in digits.iter_mut().rev() {
            *digit = b'0' + (n % 10) as u8;
            n /= 10;
            start -= 1;
            if n == 0 {
                break;
            }
        }
        line.push(digits.get(start..).unwrap_or_default());
    }
    line.push(b"\n");
    let _ = wildx::rt::write_stderr(line.buf.get(..line.len).unwrap_or_default());
    wildx::rt::exit(PANIC_EXIT)
}

/// A fixed line buffer that truncates instead of panicking.
struct Line {
    buf: [u8; 160],
    len: usize,
}

impl Line {
    fn push(&mut self, bytes: &[u8]) {
        let free = self.buf.get_mut(self.len..).unwrap_or_default();
        let n = free.len().min(bytes.len());
        for (dst, src) in free.iter_mut().zip(bytes) {
            *dst = *src;
        }
        self.len += n;
    }
}

/// Never called: with `panic = "abort"` nothing unwinds. Exists because the precompiled
/// `liballoc`'s landing pads name it; aborts if anything ever does call it.
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {
    wildx::rt::abort()
}

/// Copies `n` bytes from `src` to `dest` (`rep movsb`). Returns `dest`.
///
/// # Safety
/// `src` must be valid for `n` bytes of reads, `dest` for `n` bytes of writes, and the
/// two ranges must not overlap (C's `memcpy` contract).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller's contract covers every byte `rep movsb` touches; the direction
    // flag is clear on entry to any function (System V ABI), so the copy runs forwards.
    unsafe {
        asm!(
            "rep movsb",
            inout("rcx") n => _,
            inout("rdi") dest => _,
            inout("rsi") src => _,
            options(nostack, preserves_flags),
        );
    }
    dest
}

/// Copies `n` bytes from `src` to `dest`, which may overlap. Returns `dest`.
///
/// # Safety
/// `src` must be valid for `n` bytes of reads and `dest` for `n` bytes of writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dest as usize).wrapping_sub(src as usize) >= n {
        // `dest` is before `src` or past its end: a forward copy never reads a byte it
        // has already overwritten.
        // SAFETY: the caller's contract; forward copying is correct for this overlap.
        unsafe { memcpy(dest, src, n) }
    } else {
        // `dest` starts inside `[src, src + n)`: copy backwards, from the last byte.
        // SAFETY: the caller's contract covers both ranges; `n > 0` here (the distance is
        // below `n`), so `n - 1` is the last byte of each. The direction flag is set only
        // for this instruction and cleared again, as the ABI requires on return.
        unsafe {
            asm!(
                "std",
                "rep movsb",
                "cld",
                inout("rcx") n => _,
                inout("rdi") dest.add(n - 1) => _,
                inout("rsi") src.add(n - 1) => _,
                options(nostack),
            );
        }
        dest
    }
}

/// Fills `n` bytes at `dest` with the byte `c` (`rep stosb`). Returns `dest`.
///
/// # Safety
/// `dest` must be valid for `n` bytes of writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dest: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller's contract covers the `n` bytes written; the direction flag is
    // clear on entry (System V ABI).
    unsafe {
        asm!(
            "rep stosb",
            inout("rcx") n => _,
            inout("rdi") dest => _,
            in("al") c as u8,
            options(nostack, preserves_flags),
        );
    }
    dest
}

/// Compares `n` bytes: negative, zero or positive as the first differing byte of `a`
/// is below, equal to or above `b`'s (as unsigned bytes).
///
/// # Safety
/// `a` and `b` must be valid for `n` bytes of reads.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: `i < n`, and the caller's contract makes both ranges readable. The reads
        // are volatile so the optimiser cannot turn this loop back into a memcmp call.
        let (x, y) = unsafe { (ptr::read_volatile(a.add(i)), ptr::read_volatile(b.add(i))) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

/// Zero if the `n` bytes at `a` and `b` are equal, non-zero otherwise.
///
/// # Safety
/// `a` and `b` must be valid for `n` bytes of reads.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as memcmp, which never calls bcmp.
    unsafe { memcmp(a, b, n) }
}
