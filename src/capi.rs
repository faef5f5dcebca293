//! The C ABI: `extern "C"` exports with the seed runtime's names and contract, declared
//! for C and C++ in `include/wildx.h`. Compiled only with the `capi` feature; the
//! `wildx-capi` package (`capi/`) turns it into `libwildx.a`.
//!
//! Invariant owned here: every export is a thin shim over the raw or jit surface, so it
//! keeps their contract exactly (null or -1 on refusal, nothing changed), and no pointer
//! that comes from C is dereferenced except through the registry-checked paths. The two
//! exceptions say so in their names and docs: [`wildx_stats`] writes through its
//! out-pointer, and [`npk_jit_call_i32_i32`] jumps to its argument (after the
//! verify-on-call check when that feature is on).
//!
//! The numbers here are the ABI: they are repeated in `include/wildx.h`, and
//! `tests/capi.rs` compiles C programs that check the two agree.
//!
//! This module needs `unsafe` for `#[unsafe(no_mangle)]` (an exported symbol name must be
//! unique in the final link), to write a caller's `struct wildx_stats`, and to call into a
//! page.

#![allow(unsafe_code)]

use crate::registry::State;

/// `wildx_state` of anything that is not a live wildx page: null, foreign, interior, or
/// freed. It is -1, the C surface's refusal value; `wildx_state` never returns 0.
pub const WILDX_STATE_NOT_REGISTERED: i32 = -1;
/// `wildx_state` of a WRITABLE page (`R|W`, never executable).
pub const WILDX_STATE_WRITABLE: i32 = 1;
/// `wildx_state` of an EXECUTABLE page (sealed, `R|X`).
pub const WILDX_STATE_EXECUTABLE: i32 = 2;

/// `struct wildx_stats` in `include/wildx.h`: [`crate::Stats`] itself, which is
/// `#[repr(C)]` for this purpose. `size_t` is `usize` and `uint64_t` is `u64` on x86-64
/// Linux, so the struct is 80 bytes, 8-aligned, with no padding.
pub type WildxStats = crate::Stats;

/// `void *wildx_alloc(size_t size)`: [`crate::raw::alloc`]. A WRITABLE page of at least
/// `size` bytes filled with `0xCC`, or null (zero size, `SIZE_MAX`, over the quota,
/// `mmap` refused).
#[unsafe(no_mangle)]
pub extern "C" fn wildx_alloc(size: usize) -> *mut u8 {
    crate::raw::alloc(size)
}

/// `int32_t wildx_seal(void *page)`: [`crate::raw::seal`]. 0, or -1 with nothing changed.
#[unsafe(no_mangle)]
pub extern "C" fn wildx_seal(page: *mut u8) -> i32 {
    crate::raw::seal(page)
}

/// `int32_t wildx_free(void *page)`: [`crate::raw::free`]. 0, or -1 with nothing touched.
#[unsafe(no_mangle)]
pub extern "C" fn wildx_free(page: *mut u8) -> i32 {
    crate::raw::free(page)
}

/// `int32_t npk_wildx_free(void *page)`: the name the seed compiler's drop support emits
/// at scope end; the same as [`wildx_free`].
#[unsafe(no_mangle)]
pub extern "C" fn npk_wildx_free(page: *mut u8) -> i32 {
    crate::raw::free(page)
}

/// `int32_t wildx_verify(const void *page)`: [`crate::raw::verify`]. 0 if a sealed page
/// still hashes to its seal hash, -1 on a mismatch or for anything but a live sealed page.
#[unsafe(no_mangle)]
pub extern "C" fn wildx_verify(page: *const u8) -> i32 {
    crate::raw::verify(page)
}

/// `int32_t wildx_state(const void *page)`: [`WILDX_STATE_WRITABLE`],
/// [`WILDX_STATE_EXECUTABLE`] or [`WILDX_STATE_NOT_REGISTERED`]. Touches no page memory.
#[unsafe(no_mangle)]
pub extern "C" fn wildx_state(page: *const u8) -> i32 {
    match crate::raw::state(page) {
        Some(State::Writable) => WILDX_STATE_WRITABLE,
        Some(State::Executable) => WILDX_STATE_EXECUTABLE,
        None => WILDX_STATE_NOT_REGISTERED,
    }
}

/// `int32_t npk_jit_install_add_i32(void *page)`: [`crate::jit::install_add_i32`]. Writes
/// the five bytes of `add(i32, i32)` at the start of a live WRITABLE page of at least 5
/// bytes; 0, or -1 with nothing written.
#[unsafe(no_mangle)]
pub extern "C" fn npk_jit_install_add_i32(page: *mut u8) -> i32 {
    crate::jit::install_add_i32(page)
}

/// `int32_t npk_jit_call_i32_i32(void *f, int32_t a, int32_t b)`:
/// [`crate::jit::call_i32_i32`], so it runs the verify-on-call hook when that feature is
/// on (a tampered, unsealed, freed or foreign `f` aborts with SIGABRT before any byte
/// runs).
///
/// # Safety
/// `f` must be a live sealed page holding code for `int32_t (*)(int32_t, int32_t)` in
/// the System V AMD64 convention (as `npk_jit_install_add_i32` + `wildx_seal` make it),
/// not freed before the call returns. Without `verify-on-call` anything else is jumped to.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn npk_jit_call_i32_i32(f: *mut u8, a: i32, b: i32) -> i32 {
    // SAFETY: forwarded from this function's contract, which is call_i32_i32's.
    unsafe { crate::jit::call_i32_i32(f, a, b) }
}

/// `void wildx_set_quota(size_t bytes)`: [`crate::set_quota`].
#[unsafe(no_mangle)]
pub extern "C" fn wildx_set_quota(bytes: usize) {
    crate::set_quota(bytes);
}

/// `size_t wildx_quota(void)`: [`crate::quota`].
#[unsafe(no_mangle)]
pub extern "C" fn wildx_quota() -> usize {
    crate::quota()
}

/// `void wildx_stats(struct wildx_stats *out)`: writes a snapshot of [`crate::stats`] to
/// `*out`. Does nothing if `out` is null.
///
/// # Safety
/// `out` must be null or point to memory valid for writing one `struct wildx_stats`
/// (80 bytes, 8-aligned); nothing else is read or written.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wildx_stats(out: *mut WildxStats) {
    if out.is_null() {
        return;
    }
    let stats = crate::stats();
    // SAFETY: `out` is non-null and, by the caller's contract, valid and aligned for
    // one `WildxStats`; `write` does not read or drop the old contents.
    unsafe { out.write(stats) };
}

/// `void wildx_atfork_prepare(void)`: [`crate::atfork_prepare`], for `pthread_atfork`.
/// Waits for seals and frees under way, then holds the registry until the parent or
/// child hook.
#[unsafe(no_mangle)]
pub extern "C" fn wildx_atfork_prepare() {
    crate::atfork_prepare()
}

/// `void wildx_atfork_parent(void)`: [`crate::atfork_parent`]; releases the registry in
/// the parent.
#[unsafe(no_mangle)]
pub extern "C" fn wildx_atfork_parent() {
    crate::atfork_parent()
}

/// `void wildx_atfork_child(void)`: [`crate::atfork_child`]; resets the registry's locks
/// in the child, which can then use wildx at once.
#[unsafe(no_mangle)]
pub extern "C" fn wildx_atfork_child() {
    crate::atfork_child()
}
