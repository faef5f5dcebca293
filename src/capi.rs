//! The C ABI: `extern "C"` exports, declared
//! for C and C++ in `include/wildx.h`. Compiled only with the `capi` feature; the
//! `wildx-capi` package (`capi/`) turns it into `libwildx.a`.
//!
//! Invariant owned here: every export is a thin shim over the raw, jit or page layer, so
//! it keeps their contract exactly (null or -1 on refusal, nothing changed; the `*_ex`
//! variants also store the reason, a `WILDX_E_*` code, through `err`), and no pointer
//! that comes from C is dereferenced except through the registry-checked paths. The two
//! exceptions say so in their names and docs: [`wildx_stats`] writes through its
//! out-pointer, and [`wildx_call_i32_i32`] (and its compatibility name) jumps to its argument (after the
//! verify-on-call check when that feature is on).
//!
//! The numbers here are the ABI: they are repeated in `include/wildx.h`, and
//! `tests/capi.rs` compiles C programs that check the two agree.
//!
//! This module needs `unsafe` for `#[unsafe(no_mangle)]` (an exported symbol name must be
//! unique in the final link), to write a caller's `struct wildx_stats` and `int32_t *err`,
//! and to call into a page.

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
/// Linux, and [`crate::ExecMode`] is `#[repr(usize)]`, so the struct is 112 bytes,
/// 8-aligned, with no padding.
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

/// `int32_t npk_wildx_free(void *page)`: the same as [`wildx_free`], under a name kept
/// for compatibility (see `docs/c.md`).
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

/// `int32_t wildx_install_add_i32(void *page)`: [`crate::jit::install_add_i32`]. Writes
/// the five bytes of `add(i32, i32)` at the start of a live WRITABLE page of at least 5
/// bytes; 0, or -1 with nothing written.
#[unsafe(no_mangle)]
pub extern "C" fn wildx_install_add_i32(page: *mut u8) -> i32 {
    crate::jit::install_add_i32(page)
}

/// `int32_t wildx_call_i32_i32(void *f, int32_t a, int32_t b)`:
/// [`crate::jit::call_i32_i32`], so it runs the verify-on-call hook when that feature is
/// on (a tampered, unsealed, freed or foreign `f` aborts with SIGABRT before any byte
/// runs).
///
/// # Safety
/// `f` must be a live sealed page holding code for `int32_t (*)(int32_t, int32_t)` in
/// the System V AMD64 convention (as `wildx_install_add_i32` + `wildx_seal` make it),
/// not freed before the call returns. Without `verify-on-call` anything else is jumped to.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wildx_call_i32_i32(f: *mut u8, a: i32, b: i32) -> i32 {
    // SAFETY: forwarded from this function's contract, which is call_i32_i32's.
    unsafe { crate::jit::call_i32_i32(f, a, b) }
}

/// `int32_t npk_jit_install_add_i32(void *page)`: the same as [`wildx_install_add_i32`],
/// under a name kept for compatibility (see `docs/c.md`).
#[unsafe(no_mangle)]
pub extern "C" fn npk_jit_install_add_i32(page: *mut u8) -> i32 {
    crate::jit::install_add_i32(page)
}

/// `int32_t npk_jit_call_i32_i32(void *f, int32_t a, int32_t b)`: the same as
/// [`wildx_call_i32_i32`], under a name kept for compatibility (see `docs/c.md`).
///
/// # Safety
/// As [`wildx_call_i32_i32`].
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
/// (112 bytes, 8-aligned); nothing else is read or written.
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

/// `struct wildx_arena`: an opaque arena handle from [`wildx_arena_new`]. Every
/// `wildx_arena_*` function checks the handle against the registry before using it, so a
/// freed, null or foreign handle is refused (NULL, 0 or -1), never dereferenced.
#[repr(C)]
pub struct WildxArena {
    _opaque: [u8; 0],
}

/// Runs `f` on the arena behind a C handle; `Err(NotRegistered)` if it is not a live one.
fn with_arena<T>(
    arena: *const WildxArena,
    f: impl FnOnce(&crate::Arena) -> Result<T, crate::Error>,
) -> Result<T, crate::Error> {
    crate::arena::with_handle(arena.cast(), |shared| {
        // The handle is registered and referenced for the duration (with_handle); a
        // borrowed `Arena` over it must never be dropped, hence ManuallyDrop.
        let arena = core::mem::ManuallyDrop::new(crate::Arena::from_shared(shared));
        f(&arena)
    })
    .unwrap_or(Err(crate::Error::NotRegistered))
}

/// Stores the reason for `result` through `err` and returns `result`'s value or `none`.
///
/// # Safety
/// `err` must be null or valid for writing one `int32_t`.
unsafe fn answer<T>(result: Result<T, crate::Error>, err: *mut i32, none: T) -> T {
    // SAFETY: forwarded from the caller's contract.
    unsafe { report(err, result_code(&result)) };
    result.unwrap_or(none)
}

fn arena_import(arena: *mut WildxArena, target: Option<extern "C" fn()>) -> Result<*mut u8, crate::Error> {
    let target = target.ok_or(crate::Error::Null)?;
    with_arena(arena, |a| a.import(target as usize)).map(|addr| addr as *mut u8)
}

fn arena_retire(arena: *mut WildxArena, function: *const u8) -> Result<(), crate::Error> {
    with_arena(arena, |a| a.id_at(function as usize).and_then(|id| a.retire(id)))
}

/// `wildx_arena *wildx_arena_new(size_t capacity)`: [`crate::Arena::new`]. Reserves
/// `capacity` bytes of address space; NULL for 0, `SIZE_MAX`, or a refused reservation.
#[unsafe(no_mangle)]
pub extern "C" fn wildx_arena_new(capacity: usize) -> *mut WildxArena {
    crate::Arena::new(capacity).map_or(core::ptr::null_mut(), |arena| arena.into_shared().cast())
}

/// `wildx_arena *wildx_arena_new_ex(size_t capacity, int32_t *err)`: [`wildx_arena_new`]
/// and the reason in `*err` (`WILDX_E_ZERO_LENGTH`, `WILDX_E_LENGTH_OVERFLOW`,
/// `WILDX_E_NO_MEMORY`, `WILDX_E_REGISTRY_STORAGE`). `err` may be NULL.
///
/// # Safety
/// `err` must be null or valid for writing one `int32_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wildx_arena_new_ex(capacity: usize, err: *mut i32) -> *mut WildxArena {
    let result = crate::Arena::new(capacity).map(|arena| arena.into_shared().cast());
    // SAFETY: forwarded from this function's contract.
    unsafe { answer(result, err, core::ptr::null_mut()) }
}

/// `uintptr_t wildx_arena_next_addr(const wildx_arena *arena)`: where the next push
/// lands (16-byte aligned); 0 for a handle that is not a live arena.
#[unsafe(no_mangle)]
pub extern "C" fn wildx_arena_next_addr(arena: *const WildxArena) -> usize {
    with_arena(arena, |a| Ok(a.next_addr())).unwrap_or(0)
}

/// `void *wildx_arena_push(wildx_arena *arena, const void *code, size_t len)`: copies a
/// function in at `wildx_arena_next_addr`; returns its address, or NULL (bad handle, null
/// `code`, zero length, no room, quota) with nothing changed. Callable after the next
/// `wildx_arena_publish`.
///
/// # Safety
/// `code` must be null or point to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wildx_arena_push(arena: *mut WildxArena, code: *const u8, len: usize) -> *mut u8 {
    // SAFETY: forwarded; a null `err` is never written.
    unsafe { wildx_arena_push_ex(arena, code, len, core::ptr::null_mut()) }
}

/// `void *wildx_arena_push_ex(wildx_arena *arena, const void *code, size_t len,
/// int32_t *err)`: [`wildx_arena_push`] and the reason in `*err` (`WILDX_E_NOT_REGISTERED`
/// for a bad handle, `WILDX_E_NULL`, `WILDX_E_ZERO_LENGTH`, `WILDX_E_ARENA_FULL`,
/// `WILDX_E_QUOTA`, `WILDX_E_NO_MEMORY`, ...). `err` may be NULL.
///
/// # Safety
/// `code` must be null or point to `len` readable bytes; `err` null or valid for writing
/// one `int32_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wildx_arena_push_ex(
    arena: *mut WildxArena,
    code: *const u8,
    len: usize,
    err: *mut i32,
) -> *mut u8 {
    let result = if code.is_null() {
        Err(crate::Error::Null)
    } else {
        // SAFETY: non-null, and readable for `len` bytes by the caller's contract.
        let bytes = unsafe { core::slice::from_raw_parts(code, len) };
        with_arena(arena, |a| a.push(bytes).and_then(|id| a.addr(id))).map(|addr| addr as *mut u8)
    };
    // SAFETY: forwarded from this function's contract.
    unsafe { answer(result, err, core::ptr::null_mut()) }
}

/// `void *wildx_arena_import(wildx_arena *arena, void (*target)(void))`: stores `target`
/// (any function, cast to `void (*)(void)`) in an 8-byte slot inside the arena (read-only
/// from the next publish) and returns the slot's address for `call [rip + disp32]`; NULL
/// on a bad handle, a NULL target or no room.
#[unsafe(no_mangle)]
pub extern "C" fn wildx_arena_import(arena: *mut WildxArena, target: Option<extern "C" fn()>) -> *mut u8 {
    arena_import(arena, target).unwrap_or(core::ptr::null_mut())
}

/// `void *wildx_arena_import_ex(wildx_arena *arena, void (*target)(void), int32_t *err)`:
/// [`wildx_arena_import`] and the reason in `*err` (`WILDX_E_NOT_REGISTERED`,
/// `WILDX_E_NULL`, `WILDX_E_ARENA_FULL`, `WILDX_E_QUOTA`, ...). `err` may be NULL.
///
/// # Safety
/// `err` must be null or valid for writing one `int32_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wildx_arena_import_ex(
    arena: *mut WildxArena,
    target: Option<extern "C" fn()>,
    err: *mut i32,
) -> *mut u8 {
    // SAFETY: forwarded from this function's contract.
    unsafe { answer(arena_import(arena, target), err, core::ptr::null_mut()) }
}

/// `int32_t wildx_arena_publish(wildx_arena *arena)`: hashes and seals everything pushed
/// since the last publish (one mprotect). 0, or -1 (bad handle, mprotect refused: the
/// functions stay pending).
#[unsafe(no_mangle)]
pub extern "C" fn wildx_arena_publish(arena: *mut WildxArena) -> i32 {
    if with_arena(arena, |a| a.publish()).is_ok() { 0 } else { -1 }
}

/// `int32_t wildx_arena_publish_ex(wildx_arena *arena, int32_t *err)`:
/// [`wildx_arena_publish`] and the reason in `*err` (`WILDX_E_NOT_REGISTERED`,
/// `WILDX_E_DENIED` when `PROT_EXEC` is forbidden, `WILDX_E_NO_MEMORY`, `WILDX_E_OS`).
/// `err` may be NULL.
///
/// # Safety
/// `err` must be null or valid for writing one `int32_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wildx_arena_publish_ex(arena: *mut WildxArena, err: *mut i32) -> i32 {
    let result = with_arena(arena, |a| a.publish()).map(|()| 0);
    // SAFETY: forwarded from this function's contract.
    unsafe { answer(result, err, -1) }
}

/// `int32_t wildx_arena_retire(wildx_arena *arena, const void *fn)`: retires the published
/// function starting at `fn`; pages left holding only retired functions go back to the
/// kernel. 0, or -1 with nothing changed (bad handle, not a function start, not
/// published, already retired).
#[unsafe(no_mangle)]
pub extern "C" fn wildx_arena_retire(arena: *mut WildxArena, function: *const u8) -> i32 {
    if arena_retire(arena, function).is_ok() { 0 } else { -1 }
}

/// `int32_t wildx_arena_retire_ex(wildx_arena *arena, const void *fn, int32_t *err)`:
/// [`wildx_arena_retire`] and the reason in `*err` (`WILDX_E_NOT_REGISTERED` for a bad
/// handle or an address no function starts at, `WILDX_E_WRONG_STATE` if unpublished,
/// `WILDX_E_RETIRED`, `WILDX_E_ENTRY_ALIVE`, `WILDX_E_OS`). `err` may be NULL.
///
/// # Safety
/// `err` must be null or valid for writing one `int32_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wildx_arena_retire_ex(arena: *mut WildxArena, function: *const u8, err: *mut i32) -> i32 {
    // SAFETY: forwarded from this function's contract.
    unsafe { answer(arena_retire(arena, function).map(|()| 0), err, -1) }
}

/// `int32_t wildx_arena_free(wildx_arena *arena)`: unmaps the arena and everything in it.
/// 0, or -1 touching nothing for a handle that is not a live arena (freed twice, null,
/// foreign).
///
/// # Safety
/// No thread may be running code of the arena, or use its function pointers afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wildx_arena_free(arena: *mut WildxArena) -> i32 {
    let Some(shared) = core::ptr::NonNull::new(arena.cast::<crate::arena::Shared>()) else {
        return -1;
    };
    // SAFETY: if registered, the handle was made by wildx_arena_new and the caller
    // guarantees nothing uses it after this call; if not, nothing is touched.
    if unsafe { crate::arena::Shared::unregister_and_destroy(shared) } { 0 } else { -1 }
}

// Why a call was refused, for C: the `*_ex` variants below take an `int32_t *err` and
// store one of these codes in it (WILDX_OK on success). A per-call out-parameter rather
// than a last-error slot: it needs no thread-local storage (unavailable to a `no_std`
// library on stable) and cannot be overwritten by another thread or a signal handler.
// The values are ABI, repeated in `include/wildx.h` and compared by `tests/capi.rs`.

/// No error: the call succeeded.
pub const WILDX_OK: i32 = 0;
/// `wildx_alloc_ex(0, ..)`: a page holds at least one byte.
pub const WILDX_E_ZERO_LENGTH: i32 = 1;
/// The size, rounded up to whole pages, overflows (`SIZE_MAX`, or above `PTRDIFF_MAX`).
pub const WILDX_E_LENGTH_OVERFLOW: i32 = 2;
/// The allocation would pass the process-wide quota (`wildx_set_quota`).
pub const WILDX_E_QUOTA: i32 = 3;
/// The page pointer is NULL.
pub const WILDX_E_NULL: i32 = 4;
/// Not the start of a live wildx page: foreign, interior or already freed.
pub const WILDX_E_NOT_REGISTERED: i32 = 5;
/// A live page in the wrong state: sealing a sealed page, verifying or installing into
/// the wrong kind.
pub const WILDX_E_WRONG_STATE: i32 = 6;
/// The page is smaller than what was to be written into it.
pub const WILDX_E_TOO_SMALL: i32 = 7;
/// The page is owned by a Rust handle (`wildx::Page` / `wildx::Code`) in the same process.
pub const WILDX_E_HELD_BY_HANDLE: i32 = 8;
/// `wildx_verify_ex`: the sealed page's bytes no longer hash to the seal hash.
pub const WILDX_E_INTEGRITY: i32 = 9;
/// The registry's own table could not grow (its `mmap` failed); nothing was allocated.
pub const WILDX_E_REGISTRY_STORAGE: i32 = 10;
/// The kernel refused with `ENOMEM`: out of memory, or of mappings (`vm.max_map_count`).
pub const WILDX_E_NO_MEMORY: i32 = 11;
/// The kernel refused with `EACCES` or `EPERM`: a security policy (SELinux `execmem`,
/// seccomp, a hardened kernel) forbids executable memory or this memory operation.
pub const WILDX_E_DENIED: i32 = 12;
/// The kernel refused with another errno.
pub const WILDX_E_OS: i32 = 13;
/// An arena push or import: no room left in the arena's reservation.
pub const WILDX_E_ARENA_FULL: i32 = 14;
/// An arena function of another arena.
pub const WILDX_E_FOREIGN_FN: i32 = 15;
/// An arena function that was retired.
pub const WILDX_E_RETIRED: i32 = 16;
/// An arena function with live Rust `Entry` handles cannot be retired.
pub const WILDX_E_ENTRY_ALIVE: i32 = 17;
/// An arena used from inside its own Rust `push_with` closure.
pub const WILDX_E_REENTRANT: i32 = 18;
/// The validator rejected the code (Rust `jit::compile`, `Arena::push_checked`).
pub const WILDX_E_REJECTED: i32 = 19;
/// The `READ_IMPLIES_EXEC` personality would make a writable page executable. No longer
/// returned (wildx maps writable memory without `PROT_READ`, which the personality never
/// makes executable); kept so that C code naming it compiles.
pub const WILDX_E_READ_IMPLIES_EXEC: i32 = 20;
/// The registry was busy and the call (a signal-safe query) does not wait.
pub const WILDX_E_WOULD_BLOCK: i32 = 21;
/// Executable memory is denied by the system: anonymous memory and the memfd fallback
/// were both refused (see [`crate::ExecMode`]).
pub const WILDX_E_EXEC_DENIED: i32 = 22;
/// An arena inherited across `fork` in memfd mode: only `wildx_arena_free` is allowed.
pub const WILDX_E_INHERITED: i32 = 23;

/// `wildx_exec_mode()` before the first page or arena: the mode is not chosen yet.
pub const WILDX_EXEC_UNDETECTED: usize = crate::ExecMode::Undetected as usize;
/// Executable memory is anonymous (`mmap` `R|W`, `mprotect` `R|X`).
pub const WILDX_EXEC_ANONYMOUS: usize = crate::ExecMode::Anonymous as usize;
/// Executable memory is a view of a memfd (the anonymous kind was refused).
pub const WILDX_EXEC_MEMFD: usize = crate::ExecMode::Memfd as usize;
/// Executable memory is denied: every allocation fails with `WILDX_E_EXEC_DENIED`.
pub const WILDX_EXEC_DENIED: usize = crate::ExecMode::Denied as usize;

/// The C code for an [`Error`](crate::Error): the one place where the typed surface's
/// reasons become the C surface's.
///
/// The `match` is exhaustive on purpose (inside the crate, `#[non_exhaustive]` does not
/// hide variants): a new `Error` variant does not compile until it is mapped here. To
/// extend, add a `WILDX_E_*` constant above (next free number; never reuse one), its arm
/// here, its message in [`wildx_strerror`], and the same `#define` and comment in
/// `include/wildx.h`; `tests/capi.rs` checks that the header and this file agree.
#[must_use]
pub fn error_code(error: crate::Error) -> i32 {
    use crate::{Errno, Error};
    match error {
        Error::ZeroLength => WILDX_E_ZERO_LENGTH,
        Error::LengthOverflow => WILDX_E_LENGTH_OVERFLOW,
        Error::QuotaExceeded { .. } => WILDX_E_QUOTA,
        Error::Null => WILDX_E_NULL,
        Error::NotRegistered => WILDX_E_NOT_REGISTERED,
        Error::WrongState { .. } => WILDX_E_WRONG_STATE,
        Error::TooSmall { .. } => WILDX_E_TOO_SMALL,
        Error::HeldByHandle => WILDX_E_HELD_BY_HANDLE,
        Error::IntegrityMismatch { .. } => WILDX_E_INTEGRITY,
        Error::RegistryStorage => WILDX_E_REGISTRY_STORAGE,
        Error::Os(Errno::ENOMEM) => WILDX_E_NO_MEMORY,
        Error::Os(Errno::EACCES | Errno::EPERM) => WILDX_E_DENIED,
        Error::Os(_) => WILDX_E_OS,
        Error::ArenaFull { .. } => WILDX_E_ARENA_FULL,
        Error::ForeignFn => WILDX_E_FOREIGN_FN,
        Error::Retired => WILDX_E_RETIRED,
        Error::EntryAlive { .. } => WILDX_E_ENTRY_ALIVE,
        Error::Reentrant => WILDX_E_REENTRANT,
        Error::Rejected(_) => WILDX_E_REJECTED,
        Error::ReadImpliesExec => WILDX_E_READ_IMPLIES_EXEC,
        Error::WouldBlock => WILDX_E_WOULD_BLOCK,
        Error::ExecDenied { .. } => WILDX_E_EXEC_DENIED,
        Error::Inherited => WILDX_E_INHERITED,
    }
}

/// `const char *wildx_strerror(int32_t code)`: a static, NUL-terminated English message
/// for a `WILDX_OK` / `WILDX_E_*` code; "unknown wildx error code" for anything else.
/// Never NULL; the caller must not free or write it.
#[unsafe(no_mangle)]
pub extern "C" fn wildx_strerror(code: i32) -> *const core::ffi::c_char {
    let message: &'static core::ffi::CStr = match code {
        WILDX_OK => c"no error",
        WILDX_E_ZERO_LENGTH => c"zero-length allocation",
        WILDX_E_LENGTH_OVERFLOW => c"size overflows when rounded up to whole pages",
        WILDX_E_QUOTA => c"the allocation would pass the process-wide quota (wildx_set_quota)",
        WILDX_E_NULL => c"null pointer",
        WILDX_E_NOT_REGISTERED => c"not the start of a live wildx page (foreign, interior or freed)",
        WILDX_E_WRONG_STATE => c"the page is not in the state the operation needs (already sealed, or not sealed)",
        WILDX_E_TOO_SMALL => c"the page is too small for what was to be written",
        WILDX_E_HELD_BY_HANDLE => c"the page is owned by a Rust handle",
        WILDX_E_INTEGRITY => c"the sealed page's bytes no longer match the hash recorded at seal",
        WILDX_E_REGISTRY_STORAGE => c"the page registry could not grow (mmap failed)",
        WILDX_E_NO_MEMORY => c"the kernel is out of memory or of mappings (ENOMEM)",
        WILDX_E_DENIED => {
            c"a security policy forbids executable memory or this memory operation (EACCES/EPERM: \
              SELinux execmem, seccomp, a hardened kernel)"
        }
        WILDX_E_OS => c"the kernel refused the memory operation",
        WILDX_E_ARENA_FULL => c"the arena has no room left",
        WILDX_E_FOREIGN_FN => c"the function belongs to another arena",
        WILDX_E_RETIRED => c"the arena function is retired",
        WILDX_E_ENTRY_ALIVE => c"the arena function has live entries",
        WILDX_E_REENTRANT => c"the arena was used from inside its own push_with closure",
        WILDX_E_REJECTED => c"the validator rejected the code",
        WILDX_E_READ_IMPLIES_EXEC => c"the READ_IMPLIES_EXEC personality would make writable pages executable",
        WILDX_E_WOULD_BLOCK => c"the registry is busy and this call does not wait",
        WILDX_E_EXEC_DENIED => {
            c"executable memory denied by the system: PROT_EXEC refused on anonymous memory and on the memfd fallback"
        }
        WILDX_E_INHERITED => c"the arena was inherited across fork in memfd mode: its code is not mapped here",
        _ => c"unknown wildx error code",
    };
    message.as_ptr()
}

/// Stores `code` through `err` unless it is null.
///
/// # Safety
/// `err` must be null or valid for writing one `int32_t`.
unsafe fn report(err: *mut i32, code: i32) {
    if !err.is_null() {
        // SAFETY: non-null, and by the caller's contract valid for one aligned write.
        unsafe { err.write(code) };
    }
}

/// The code of a result: `WILDX_OK`, or the error's.
fn result_code<T>(result: &Result<T, crate::Error>) -> i32 {
    match result {
        Ok(_) => WILDX_OK,
        Err(error) => error_code(*error),
    }
}

/// `void *wildx_alloc_ex(size_t size, int32_t *err)`: [`wildx_alloc`], and the reason in
/// `*err` (`WILDX_OK` with a page; `WILDX_E_ZERO_LENGTH`, `WILDX_E_LENGTH_OVERFLOW`,
/// `WILDX_E_QUOTA`, `WILDX_E_NO_MEMORY`, `WILDX_E_DENIED`, `WILDX_E_OS` or
/// `WILDX_E_REGISTRY_STORAGE` with NULL). `err` may be NULL.
///
/// # Safety
/// `err` must be null or valid for writing one `int32_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wildx_alloc_ex(size: usize, err: *mut i32) -> *mut u8 {
    let result = crate::page::alloc(size, crate::page::Access::Raw);
    // SAFETY: forwarded from this function's contract.
    unsafe { report(err, result_code(&result)) };
    result.map_or(core::ptr::null_mut(), |(p, _)| p.as_ptr())
}

/// `int32_t wildx_seal_ex(void *page, int32_t *err)`: [`wildx_seal`], and the reason in
/// `*err` (`WILDX_E_NULL`, `WILDX_E_NOT_REGISTERED`, `WILDX_E_WRONG_STATE`,
/// `WILDX_E_HELD_BY_HANDLE`, `WILDX_E_DENIED` when `PROT_EXEC` is forbidden,
/// `WILDX_E_NO_MEMORY`, `WILDX_E_OS`). `err` may be NULL.
///
/// # Safety
/// `err` must be null or valid for writing one `int32_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wildx_seal_ex(page: *mut u8, err: *mut i32) -> i32 {
    let result = crate::page::seal(page, crate::page::Access::Raw);
    let code = result_code(&result);
    // SAFETY: forwarded from this function's contract.
    unsafe { report(err, code) };
    if code == WILDX_OK { 0 } else { -1 }
}

/// `int32_t wildx_free_ex(void *page, int32_t *err)`: [`wildx_free`], and the reason in
/// `*err` (`WILDX_E_NULL`, `WILDX_E_NOT_REGISTERED` for a double free, a foreign or an
/// interior pointer, `WILDX_E_HELD_BY_HANDLE`, `WILDX_E_DENIED` / `WILDX_E_OS` if the
/// kernel refuses the `munmap`). `err` may be NULL.
///
/// # Safety
/// `err` must be null or valid for writing one `int32_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wildx_free_ex(page: *mut u8, err: *mut i32) -> i32 {
    let result = crate::page::free(page, crate::page::Access::Raw);
    let code = result_code(&result);
    // SAFETY: forwarded from this function's contract.
    unsafe { report(err, code) };
    if code == WILDX_OK { 0 } else { -1 }
}

/// `int32_t wildx_verify_ex(const void *page, int32_t *err)`: [`wildx_verify`], and the
/// reason in `*err` (`WILDX_E_INTEGRITY` if the bytes changed since seal;
/// `WILDX_E_NULL`, `WILDX_E_NOT_REGISTERED`, `WILDX_E_WRONG_STATE` for anything but a
/// live sealed page). `err` may be NULL.
///
/// # Safety
/// `err` must be null or valid for writing one `int32_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wildx_verify_ex(page: *const u8, err: *mut i32) -> i32 {
    let result = crate::page::verify(page);
    let code = result_code(&result);
    // SAFETY: forwarded from this function's contract.
    unsafe { report(err, code) };
    if code == WILDX_OK { 0 } else { -1 }
}

/// `int32_t wildx_install_add_i32_ex(void *page, int32_t *err)`:
/// [`wildx_install_add_i32`], and the reason in `*err` (`WILDX_E_NULL`,
/// `WILDX_E_NOT_REGISTERED`, `WILDX_E_WRONG_STATE` for a sealed page,
/// `WILDX_E_TOO_SMALL`, `WILDX_E_HELD_BY_HANDLE`). `err` may be NULL.
///
/// # Safety
/// `err` must be null or valid for writing one `int32_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wildx_install_add_i32_ex(page: *mut u8, err: *mut i32) -> i32 {
    let result = crate::page::write(page, 0, &crate::jit::ADD_I32, crate::page::Access::Raw);
    let code = result_code(&result);
    // SAFETY: forwarded from this function's contract.
    unsafe { report(err, code) };
    if code == WILDX_OK { 0 } else { -1 }
}

/// `uint32_t wildx_version(void)`: the library's version as
/// `major << 16 | minor << 8 | patch`, to compare with the header's `WILDX_VERSION`.
#[unsafe(no_mangle)]
pub extern "C" fn wildx_version() -> u32 {
    VERSION
}

/// The crate version, `major << 16 | minor << 8 | patch`, parsed at compile time.
const VERSION: u32 = {
    let v = env!("CARGO_PKG_VERSION").as_bytes();
    let (mut parts, mut part, mut i) = ([0u32; 3], 0, 0);
    while i < v.len() && part < 3 {
        match v[i] {
            b'.' => part += 1,
            b'0'..=b'9' => parts[part] = parts[part] * 10 + (v[i] - b'0') as u32,
            _ => break, // a pre-release suffix such as `-rc.1`
        }
        i += 1;
    }
    parts[0] << 16 | parts[1] << 8 | parts[2]
};

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

/// `size_t wildx_exec_mode(void)`: [`crate::exec_mode`] as a `WILDX_EXEC_*` value.
#[unsafe(no_mangle)]
pub extern "C" fn wildx_exec_mode() -> usize {
    crate::exec_mode() as usize
}

/// `int32_t wildx_use_memfd(void)`: [`crate::use_memfd`]. `WILDX_OK` if the memfd mode is
/// in force afterwards, `WILDX_E_WRONG_STATE` if anonymous memory was chosen already,
/// `WILDX_E_EXEC_DENIED` if executable memfds are refused too, `WILDX_E_OS` (or
/// `WILDX_E_NO_MEMORY`) for a passing failure.
#[unsafe(no_mangle)]
pub extern "C" fn wildx_use_memfd() -> i32 {
    match crate::use_memfd() {
        Ok(crate::ExecMode::Memfd) => WILDX_OK,
        Ok(_) => WILDX_E_WRONG_STATE,
        Err(error) => error_code(error),
    }
}

/// `void wildx_atfork_child(void)`: [`crate::atfork_child`]; resets the registry's locks
/// in the child, which can then use wildx at once.
#[unsafe(no_mangle)]
pub extern "C" fn wildx_atfork_child() {
    crate::atfork_child()
}
