//! Profiling, freestanding: enable the perf map with raw syscalls only, seal a typed page
//! under a name (one with a newline in it), call it, and read `/tmp/perf-<pid>.map` back:
//! it must hold exactly the line `<addr hex> 6 wildx_verify_profile_x\n`. Then free the
//! page and remove the map.
//!
//! Exit codes: 80 enable_perf_map failed, 81 the page could not be mapped,
//! 82 the sealed code did not return 42, 83 the map could not be opened, 84 it could not
//! be read, 85 its contents are not the expected line, 86 the page could not be freed,
//! 87 the seal was refused,
//! 101 a panic. Each failure also writes one line to stderr.
//!
//! `unsafe` is needed to seal code (its signature is a promise) and for the raw syscalls
//! that read the map back (and by `rt`).

#![no_std]
#![no_main]
#![allow(unsafe_code)]

#[path = "../rt.rs"]
mod rt;

use syscalls::Sysno;

const AT_FDCWD: isize = -100;
const O_RDONLY: usize = 0;
const O_CLOEXEC: usize = 0o2000000;

/// `mov eax, 42; ret`.
const RET42: [u8; 6] = [0xb8, 42, 0, 0, 0, 0xc3];

/// Appends `value` in lower-case hex (no leading zeros) to `buf` at `*len`.
fn push_hex(buf: &mut [u8], len: &mut usize, value: usize) {
    let mut digits = [0u8; 16];
    let mut n = 0;
    let mut v = value;
    loop {
        if let Some(d) = digits.get_mut(n) {
            *d = b"0123456789abcdef"[v & 0xf];
        }
        v >>= 4;
        n += 1;
        if v == 0 {
            break;
        }
    }
    for i in (0..n).rev() {
        push(buf, len, &digits[i..i + 1]);
    }
}

fn push(buf: &mut [u8], len: &mut usize, bytes: &[u8]) {
    for &b in bytes {
        if let Some(slot) = buf.get_mut(*len) {
            *slot = b;
        }
        *len += 1;
    }
}

fn run() -> i32 {
    if wildx::profiling::enable_perf_map().is_err() {
        rt::fail(80, "profile: enable_perf_map failed\n");
    }
    let Ok(page) = wildx::Page::with_code(&RET42) else { rt::fail(81, "profile: cannot map a page\n") };
    // SAFETY: RET42 is `mov eax, 42; ret`, a function of type `fn() -> i32`.
    let Ok(code) = (unsafe { page.seal_named::<extern "sysv64" fn() -> i32>("wildx_verify_profile\nx") }) else {
        rt::fail(87, "profile: seal_named refused\n")
    };
    if code.call(()) != 42 {
        rt::fail(82, "profile: the named code did not return 42\n");
    }

    // "/tmp/perf-<pid>.map\0"
    let mut path = [0u8; 40];
    let mut plen = 0;
    push(&mut path, &mut plen, b"/tmp/perf-");
    let mut pid_digits = [0u8; 10];
    // SAFETY: getpid takes no arguments, touches no memory and cannot fail.
    let pid = unsafe { syscalls::syscall0(Sysno::getpid) }.unwrap_or(0);
    let (mut pid, mut n) = (pid as u32, 0);
    loop {
        pid_digits[9 - n] = b'0' + (pid % 10) as u8;
        pid /= 10;
        n += 1;
        if pid == 0 {
            break;
        }
    }
    push(&mut path, &mut plen, &pid_digits[10 - n..]);
    push(&mut path, &mut plen, b".map\0");

    // SAFETY: openat reads the NUL-terminated path from `path`, a live local.
    let fd = unsafe {
        syscalls::syscall4(Sysno::openat, AT_FDCWD as usize, path.as_ptr() as usize, O_RDONLY | O_CLOEXEC, 0)
    };
    let Ok(fd) = fd else { rt::fail(83, "profile: cannot open the perf map\n") };
    let mut got = [0u8; 256];
    // SAFETY: read writes at most got.len() bytes into `got`, a live local.
    let read = unsafe { syscalls::syscall3(Sysno::read, fd, got.as_mut_ptr() as usize, got.len()) };
    // SAFETY: closes the descriptor opened above; touches no memory.
    let _ = unsafe { syscalls::syscall1(Sysno::close, fd) };
    let Ok(read) = read else { rt::fail(84, "profile: cannot read the perf map\n") };

    let mut want = [0u8; 256];
    let mut wlen = 0;
    push_hex(&mut want, &mut wlen, code.as_ptr() as usize);
    push(&mut want, &mut wlen, b" 6 wildx_verify_profile_x\n");
    if got.get(..read) != want.get(..wlen) {
        rt::fail(85, "profile: the perf map is not the one expected line\n");
    }
    if code.free().is_err() {
        rt::fail(86, "profile: free refused\n");
    }
    // SAFETY: unlink reads the NUL-terminated path from `path`, a live local.
    let _ = unsafe { syscalls::syscall1(Sysno::unlink, path.as_ptr() as usize) };
    0
}
