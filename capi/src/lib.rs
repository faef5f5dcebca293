//! `libwildx.a`: the wildx C ABI as a static library for C programs and language
//! runtimes, declared in `include/wildx.h`.
//!
//! The exports themselves live in the `wildx` crate (`src/capi.rs`, feature `capi`); this
//! crate only turns them into a `#![no_std]` staticlib, and so carries what every
//! `no_std` final artifact needs and a library crate must never provide:
//!
//! - a `#[panic_handler]`: one line on fd 2, then SIGABRT. Nothing unwinds across the C
//!   boundary (the exports report refusals as null / -1, not panics).
//! - a `#[global_allocator]`: [`wildx_lib::MmapAlloc`]. hashbrown links `liballoc`, so
//!   one must be named, although wildx never calls it (the registry allocates through
//!   hashbrown's allocator API, from `mmap` directly).
//! - a weak `rust_eh_personality`. Nothing here unwinds (`panic = "abort"`, and the
//!   handler aborts), but the precompiled `liballoc` was built to unwind and its landing
//!   pads name that symbol; `std` defines it, a `no_std` staticlib must. It is weak so
//!   that a program that also links a `std` Rust library keeps that one instead of
//!   failing on a duplicate symbol. If it is ever entered, it aborts.
//!
//! Putting the first two in the `wildx` crate behind a feature would give a `std` program
//! that enables the feature two panic handlers and two global allocators (a hard error),
//! and features must stay additive. A package of its own keeps them out of every Rust
//! build; it is also where the `verify-on-call` variant of the C library is chosen.
//!
//! This crate needs `unsafe` only for the `global_asm!` that defines the weak symbol
//! (weak linkage is not available to Rust items on stable).

// `cargo clippy --all-targets` checks this lib in test mode (with std) despite
// `test = false`; the lang items below would then duplicate std's.
#![cfg_attr(not(test), no_std)]
#![allow(unsafe_code)]

// This crate's own lib name is `wildx` (so the archive is `libwildx.a`); the library it
// wraps is renamed to `wildx_lib` in Cargo.toml so the two cannot be confused. Named
// here so that it is linked, exports and all, although no item of it is used by path.
extern crate wildx_lib;

#[cfg(not(test))]
#[global_allocator]
static ALLOC: wildx_lib::MmapAlloc = wildx_lib::MmapAlloc;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // No formatting: it would pull core::fmt into every C program for a path that should
    // never run. The location is lost; the abort is not.
    let _ = wildx_lib::rt::write_stderr(b"wildx: panic in libwildx.a, aborting\n");
    wildx_lib::rt::abort()
}

/// The body of the weak `rust_eh_personality`: wildx never unwinds, so a personality
/// query means something is badly wrong.
#[cfg(not(test))]
extern "C" fn eh_personality_abort() -> ! {
    let _ = wildx_lib::rt::write_stderr(b"wildx: unwinding through libwildx.a, aborting\n");
    wildx_lib::rt::abort()
}

// A weak definition in its own section: `--gc-sections` drops it when nothing refers to
// it, and a strong `rust_eh_personality` (from a `std` Rust library) overrides it.
#[cfg(not(test))]
core::arch::global_asm!(
    ".pushsection .text.rust_eh_personality,\"ax\",@progbits",
    ".weak rust_eh_personality",
    ".type rust_eh_personality,@function",
    "rust_eh_personality:",
    "    jmp {abort}",
    ".size rust_eh_personality, . - rust_eh_personality",
    ".popsection",
    abort = sym eh_personality_abort,
);
