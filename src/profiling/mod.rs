//! Profilers and debuggers see JIT code: the perf map, the jitdump file, and (feature
//! `gdb-jit`) the GDB JIT interface.
//!
//! Invariant owned here: **profiling never changes what it describes and costs nothing
//! when off.** With no profiler enabled (and `gdb-jit` not compiled in) every hook is one
//! relaxed atomic load and a branch; a profiler that cannot write drops the record rather
//! than fail the seal or publish it describes; and nothing here maps anything both
//! writable and executable (the only executable mapping is the jitdump marker, read-only,
//! over the header page).
//!
//! Inside the crate, the code that makes memory executable calls the hooks of this module
//! after the code it names is executable and before anything could call it:
//! - `code_published` with a batch of `CodeSym`s (one publish of many functions), keeping
//!   the returned `Registration` until the batch's code goes away, then `code_retired`
//!   with it;
//! - `page_sealed` when a page is sealed, and `page_freed` when it is unmapped.
//!
//! See `docs/profiling.md` for how to use each profiler.

mod jitdump;
mod name;
mod perf_map;

#[cfg(feature = "gdb-jit")]
mod gdb_jit;

use core::sync::atomic::{AtomicU8, Ordering};

use crate::error::Error;
use crate::sys;

pub use name::MAX_NAME_LEN;
// For the arena, which keeps names from push to publish.
pub(crate) use name::{NameRef, Names};

const PERF_MAP: u8 = 1;
const JITDUMP: u8 = 2;

/// Which profilers are on (bits). Only ever gains bits.
static ENABLED: AtomicU8 = AtomicU8::new(0);
/// Serialises enabling, so each file is opened once.
static ENABLE: spin::Mutex<()> = spin::Mutex::new(());

/// Starts the perf map: creates (or truncates) `/tmp/perf-<pid>.map` and from then on
/// appends a `START SIZE name` line for every sealed page and published function, so
/// `perf report` names samples in them. Calling it again does nothing.
///
/// Syscalls: `getpid`, `openat` (`O_CREAT|O_TRUNC|O_APPEND|O_NOFOLLOW`, mode 0644), then
/// one `write` per line at each seal or publish. Code sealed before this call is not in
/// the map. A forked child writes nothing (the file is named for its parent).
///
/// # Errors
/// [`Error::Os`] if the file cannot be created (`EACCES`, `ELOOP` when a symbolic link
/// sits at that name, `EMFILE`, ...); the map stays off.
///
/// ```
/// wildx::profiling::enable_perf_map()?;
/// let mut page = wildx::Page::with_code(&[0x89, 0xf8, 0x01, 0xf0, 0xc3])?;
/// // SAFETY: mov eax, edi; add eax, esi; ret is add(i32, i32).
/// let add = unsafe { page.seal_named::<extern "sysv64" fn(i32, i32) -> i32>("add") }?;
/// let map = std::fs::read_to_string(format!("/tmp/perf-{}.map", std::process::id())).unwrap();
/// assert!(map.contains(&format!("{:x} 5 add\n", add.as_ptr() as usize)));
/// # std::fs::remove_file(format!("/tmp/perf-{}.map", std::process::id())).unwrap();
/// # Ok::<(), wildx::Error>(())
/// ```
pub fn enable_perf_map() -> Result<(), Error> {
    enable(PERF_MAP, perf_map::open)
}

/// Starts the jitdump: creates (or truncates) `jit-<pid>.dump` in the current directory,
/// writes its header, maps its first page `PROT_READ|PROT_EXEC` (the marker `perf
/// record` logs so that `perf inject --jit` finds the file; never writable, and holding
/// only the header), and from then on appends a `JIT_CODE_LOAD` record with the code
/// bytes for every sealed page and published function. Calling it again does nothing.
///
/// Use with `perf record -k mono` (the records carry `CLOCK_MONOTONIC` timestamps), then
/// `perf inject --jit`, then `perf report`. Enable it after the process starts under
/// `perf record`, so the marker mapping is recorded.
///
/// Syscalls: `getpid`, `openat`, `clock_gettime`, `writev`, `mmap`; then per function
/// `clock_gettime`, `writev`.
///
/// # Errors
/// [`Error::Os`] if the file cannot be created or written, or the marker cannot be
/// mapped (`EPERM` on a `noexec` mount); the dump stays off.
pub fn enable_jitdump() -> Result<(), Error> {
    enable(JITDUMP, jitdump::open)
}

fn enable(bit: u8, open: fn() -> Result<(), sys::Errno>) -> Result<(), Error> {
    let _guard = ENABLE.lock();
    if ENABLED.load(Ordering::Relaxed) & bit != 0 {
        return Ok(());
    }
    open().map_err(Error::Os)?;
    // Relaxed: the profiler's own state was published by `open` with its own ordering
    // (an Acquire/Release descriptor, or a lock); this bit only says "look there".
    ENABLED.fetch_or(bit, Ordering::Relaxed);
    Ok(())
}

/// One function of a published batch: its executable bytes (whose address is the
/// function's) and its name (`None`: named after its address).
#[derive(Clone, Copy, Debug)]
pub(crate) struct CodeSym<'a> {
    /// The function's bytes, readable (R|X) at their final address.
    pub(crate) code: &'a [u8],
    /// The name given at push or seal, sanitised on the way out.
    pub(crate) name: Option<&'a str>,
}

/// What a published batch registered with gdb, to hand to [`code_retired`] when the
/// batch's code goes away. Empty (and free to drop) without the `gdb-jit` feature.
#[must_use = "hand it to profiling::code_retired when the code goes away, or gdb keeps stale symbols"]
#[derive(Default)]
pub(crate) struct Registration {
    #[cfg(feature = "gdb-jit")]
    entry: Option<gdb_jit::Entry>,
}

impl Registration {
    /// Whether nothing was registered (always, without `gdb-jit`).
    pub(crate) fn is_empty(&self) -> bool {
        #[cfg(feature = "gdb-jit")]
        return self.entry.is_none();
        #[cfg(not(feature = "gdb-jit"))]
        true
    }
}

/// Tells every enabled profiler about a batch of newly executable functions. Returns the
/// batch's gdb registration (one ELF object for the whole batch).
///
/// Costs one relaxed load when nothing is enabled and `gdb-jit` is off.
#[inline]
pub(crate) fn code_published<'a, I>(batch: I) -> Registration
where
    I: IntoIterator<Item = CodeSym<'a>>,
    I::IntoIter: Clone,
{
    // Relaxed: see `enable`.
    let on = ENABLED.load(Ordering::Relaxed);
    if on == 0 && !cfg!(feature = "gdb-jit") {
        return Registration::default();
    }
    publish_slow(on, batch.into_iter(), false)
}

/// Tells gdb that a batch's code is gone (no-op without `gdb-jit`). The perf map and the
/// jitdump have no removal records; an address reused later gets a new line or record.
#[inline]
pub(crate) fn code_retired(registration: Registration) {
    #[cfg(feature = "gdb-jit")]
    if let Some(entry) = registration.entry {
        gdb_jit::unregister(entry);
    }
    #[cfg(not(feature = "gdb-jit"))]
    let Registration {} = registration;
}

/// A single sealed page: as [`code_published`] with one function, its gdb registration
/// kept here and dropped by [`page_freed`].
#[inline]
pub(crate) fn page_sealed(code: &[u8], name: Option<&str>) {
    // Relaxed: see `enable`.
    let on = ENABLED.load(Ordering::Relaxed);
    if on == 0 && !cfg!(feature = "gdb-jit") {
        return;
    }
    // Dropping a Registration does not unregister (it has no Drop): the gdb entry stays
    // in the list, marked as a page's, and `page_freed` finds it again by address.
    let _kept_in_gdbs_list = publish_slow(on, core::iter::once(CodeSym { code, name }), true);
}

/// A page at `[start, start + len)` is being unmapped: drops its gdb registration. No-op
/// without `gdb-jit`.
#[inline]
pub(crate) fn page_freed(start: *const u8, len: usize) {
    #[cfg(feature = "gdb-jit")]
    gdb_jit::page_freed(start as usize, len);
    #[cfg(not(feature = "gdb-jit"))]
    let _ = (start, len);
}

#[cold]
#[inline(never)]
fn publish_slow<'a>(on: u8, batch: impl Iterator<Item = CodeSym<'a>> + Clone, by_page: bool) -> Registration {
    if on != 0 {
        let pid = sys::getpid();
        let perf_map_fd = if on & PERF_MAP != 0 { perf_map::target(pid) } else { None };
        if let Some(fd) = perf_map_fd {
            for sym in batch.clone() {
                let addr = sym.code.as_ptr() as usize;
                perf_map::write_line(fd, addr, sym.code.len(), name::NameBuf::new(sym.name, addr).as_bytes());
            }
        }
        if on & JITDUMP != 0 && jitdump::is_open_for(pid) {
            jitdump::write_loads(
                pid,
                batch.clone().map(|sym| (sym.code, name::NameBuf::new(sym.name, sym.code.as_ptr() as usize))),
            );
        }
    }
    let _ = by_page;
    Registration {
        #[cfg(feature = "gdb-jit")]
        entry: gdb_jit::register(batch, by_page),
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    /// Batches through the crate-internal hook: three functions, three perf map lines in
    /// order, with their addresses, lengths and sanitised names; one gdb object for the
    /// batch, gone after `code_retired`.
    #[test]
    fn a_batch_is_three_lines_and_one_gdb_object() {
        static CODE: [u8; 48] = [0xc3; 48];
        enable_perf_map().unwrap();
        let batch = [
            CodeSym { code: &CODE[0..16], name: Some("first") },
            CodeSym { code: &CODE[16..40], name: Some("sec\nond") },
            CodeSym { code: &CODE[40..48], name: None },
        ];
        #[cfg(feature = "gdb-jit")]
        let before = gdb_jit::registered();
        let registration = code_published(batch.iter().copied());
        #[cfg(feature = "gdb-jit")]
        assert_eq!(gdb_jit::registered(), before + 1);
        let map = std::fs::read_to_string(std::format!("/tmp/perf-{}.map", std::process::id())).unwrap();
        let base = CODE.as_ptr() as usize;
        let want = std::format!(
            "{:x} 10 first\n{:x} 18 sec_ond\n{:x} 8 wildx_0x{:x}\n",
            base,
            base + 16,
            base + 40,
            base + 40
        );
        assert!(map.contains(&want), "{map}");
        code_retired(registration);
        #[cfg(feature = "gdb-jit")]
        assert_eq!(gdb_jit::registered(), before);
        // Other tests in this process may still seal pages: the map stays open on an
        // unlinked file, which nobody reads again.
        let _ = std::fs::remove_file(std::format!("/tmp/perf-{}.map", std::process::id()));
    }
}
