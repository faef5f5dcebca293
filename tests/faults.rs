//! Fault injection: the kernel says no, and wildx must refuse cleanly, change nothing,
//! leak nothing and carry on.
//!
//! Each fault runs in a child process (an address-space limit or a seccomp filter cannot
//! be taken back, and must not reach the other tests); the parent asserts that the child
//! ran its body to the end and exited 0.
//!
//! - `RLIMIT_AS` (raw `prlimit64`): `mmap` refused, `ENOMEM`; and the case where the
//!   user's page maps but the registry's own table cannot grow (`RegistryStorage`).
//! - seccomp (raw `prctl` + `seccomp` with a small BPF program): `mprotect` with
//!   `PROT_EXEC` refused with `EACCES`, as SELinux `execmem` or a hardened kernel does;
//!   `munmap` of one odd length refused with `EPERM`.
//! - `Display` of every error variant.
//!
//! `unsafe` is needed for the raw syscalls (`prlimit64`, `prctl`, `seccomp`, and
//! `mmap`/`mprotect`/`munmap` through libc to check that a filter bites) and for writing
//! through and calling the pages under test.

#![allow(unsafe_code)]

mod common;

use std::ptr::NonNull;

use common::{Maps, Perms, RawMaps, run_in_child};
use wildx::jit::{ADD_I32, AddI32};
use wildx::{Errno, Error, Page, SealError, State};

const PAGE: usize = 4096;

// ---------------------------------------------------------------------------------------
// Address-space limit
// ---------------------------------------------------------------------------------------

/// Sets this process's soft `RLIMIT_AS` to `bytes` (the hard limit stays as it is, so the
/// soft one can be raised again) with the raw `prlimit64` syscall.
fn set_address_space_limit(bytes: u64) {
    let mut old = libc::rlimit64 { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: prlimit64(0 = self, RLIMIT_AS, NULL, &old) writes one rlimit64 to `old`.
    let r = unsafe { libc::syscall(libc::SYS_prlimit64, 0, libc::RLIMIT_AS, std::ptr::null::<u8>(), &mut old) };
    assert_eq!(r, 0, "prlimit64 get: {}", std::io::Error::last_os_error());
    let new = libc::rlimit64 { rlim_cur: bytes, rlim_max: old.rlim_max };
    // SAFETY: prlimit64 reads one rlimit64 from `new`; the old-value pointer is null.
    let r = unsafe { libc::syscall(libc::SYS_prlimit64, 0, libc::RLIMIT_AS, &new, std::ptr::null_mut::<u8>()) };
    assert_eq!(r, 0, "prlimit64 set: {}", std::io::Error::last_os_error());
}

fn lift_address_space_limit() {
    set_address_space_limit(libc::RLIM64_INFINITY);
}

/// Allocates and frees `n` pages so the registry's table can take `n` entries without
/// growing (hashbrown does not shrink on remove).
fn give_registry_room(n: usize) {
    let pages: Vec<*mut u8> = (0..n).map(|_| wildx::raw::alloc(1)).collect();
    for p in pages {
        assert_eq!(wildx::raw::free(p), 0);
    }
}

/// Pages that fit under the limit in `mmap_refused_under_rlimit_as`.
const ROOM: usize = 8;

#[test]
fn mmap_refused_under_rlimit_as() {
    run_in_child("mmap_refused_under_rlimit_as", || {
        give_registry_room(64);
        // The ring's fences take address space once; not what is counted here.
        common::make_all_fences();
        let before = wildx::stats();
        let mut held: Vec<*mut u8> = Vec::with_capacity(64);
        // Room for exactly ROOM more pages: RLIMIT_AS is checked against the total
        // mapped size the kernel reports as VmSize. Nothing below allocates on the heap
        // until the limit is lifted again.
        set_address_space_limit((common::vm_size() + ROOM * PAGE) as u64);
        while held.len() < held.capacity() {
            let p = wildx::raw::alloc(1);
            if p.is_null() {
                break;
            }
            held.push(p);
        }
        let typed = Page::new(1).map(drop);
        let compiled = wildx::jit::compile_add_i32();
        let big = Page::new(32 << 20).map(drop); // within the quota, over the limit
        let limited = wildx::stats();
        lift_address_space_limit();

        assert_eq!(held.len(), ROOM, "pages that fit under the limit");
        assert_eq!(typed, Err(Error::Os(Errno::ENOMEM)));
        assert!(compiled.is_null());
        assert_eq!(big, Err(Error::Os(Errno::ENOMEM)));
        assert_eq!(limited.allocs, before.allocs + ROOM as u64);
        assert_eq!(limited.refusals, before.refusals + 4, "null, Page::new, compile_add_i32, Page::new(32 MiB)");
        assert_eq!((limited.seals, limited.frees), (before.seals, before.frees));
        assert_eq!(limited.live_pages, before.live_pages + ROOM);
        assert_eq!(limited.live_bytes, before.live_bytes + ROOM * PAGE);
        assert_eq!(limited.quota, before.quota, "a refused mmap must not touch the quota");
        assert_eq!(limited.registry_bytes, before.registry_bytes);

        // The process carries on: with the limit lifted everything works again.
        let f = wildx::jit::compile_add_i32();
        assert!(!f.is_null());
        // SAFETY: `f` is a live add page from compile_add_i32, freed below.
        assert_eq!(unsafe { wildx::jit::call_i32_i32(f, 40, 2) }, 42);
        assert_eq!(wildx::raw::free(f), 0);
        assert!(Page::new(32 << 20).is_ok());
        for p in held {
            assert_eq!(wildx::raw::seal(p), 0, "pages mapped under the limit are ordinary pages");
            assert_eq!(wildx::raw::free(p), 0);
        }
        let after = wildx::stats();
        assert_eq!((after.live_pages, after.live_bytes), (before.live_pages, before.live_bytes));
        Maps::read().assert_no_wx();
    });
}

#[test]
fn registry_storage_cannot_grow() {
    run_in_child("registry_storage_cannot_grow", || {
        // Fill the table exactly: with only inserts so far (no tombstones), the next
        // insert must allocate a bigger table. 112 entries fit 128 buckets (one page of
        // table); the next table, 256 buckets, needs two pages.
        let mut pages: Vec<*mut u8> = Vec::with_capacity(512);
        loop {
            let s = wildx::stats();
            if s.live_pages == s.registry_capacity && s.registry_capacity >= 100 {
                break;
            }
            let p = wildx::raw::alloc(64);
            assert!(!p.is_null());
            pages.push(p);
        }
        let before = wildx::stats();
        let mut maps = [RawMaps::with_capacity(1 << 20), RawMaps::with_capacity(1 << 20)];
        maps[0].snapshot();
        // One more page fits under the limit; the user's page takes it, so the table's
        // growth (two pages) is refused.
        set_address_space_limit((common::vm_size() + PAGE) as u64);
        let raw = wildx::raw::alloc(64);
        let typed = Page::new(64).map(drop);
        let compiled = wildx::jit::compile_add_i32();
        let limited = wildx::stats();
        maps[1].snapshot();
        lift_address_space_limit();

        assert!(raw.is_null() && compiled.is_null());
        assert_eq!(typed, Err(Error::RegistryStorage));
        assert_eq!(limited.refusals, before.refusals + 3);
        assert_eq!(
            (limited.allocs, limited.live_pages, limited.live_bytes, limited.peak_bytes),
            (before.allocs, before.live_pages, before.live_bytes, before.peak_bytes),
            "a refused insert leaves no page behind"
        );
        assert_eq!(
            (limited.registry_bytes, limited.registry_capacity),
            (before.registry_bytes, before.registry_capacity)
        );
        assert_eq!(limited.quota, before.quota);
        // Not one mapping changed: each user page was unmapped again.
        assert_eq!(maps[0].text(), maps[1].text(), "the address space after the refused inserts");

        // With the limit lifted the table grows and allocation carries on.
        let p = wildx::raw::alloc(64);
        assert!(!p.is_null());
        let grown = wildx::stats();
        assert!(grown.registry_capacity > before.registry_capacity && grown.registry_bytes > before.registry_bytes);
        pages.push(p);
        for p in pages {
            assert_eq!(wildx::raw::free(p), 0);
        }
        assert_eq!(wildx::stats().live_pages, 0);
    });
}

// ---------------------------------------------------------------------------------------
// seccomp
// ---------------------------------------------------------------------------------------

use common::seccomp::{install_filter, refuse_munmap_of_len, refuse_prot_exec};

/// An anonymous R|W mapping made with libc, to check what a filter does to it.
fn libc_map(len: usize) -> *mut libc::c_void {
    // SAFETY: a fresh anonymous mapping at an address the kernel picks; replaces nothing.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    p
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// A seal refused by a policy that appeared after wildx chose anonymous memory.
const DENIED_LATE: Error = Error::ExecDenied { anonymous: Errno::EACCES, memfd: None };

#[test]
fn prot_exec_refused_by_seccomp() {
    run_in_child("prot_exec_refused_by_seccomp", || {
        // wildx chooses anonymous memory at its first page, before the policy appears
        // (a program that sandboxes itself after start-up); the memfd fallback, chosen
        // only at that first page, is tested in tests/memfd.rs.
        drop(Page::new(1).expect("page"));
        assert_eq!(wildx::exec_mode(), wildx::ExecMode::Anonymous);
        // The ring's fences are made once and stay (placement state, like a window's
        // anchor); made now, the snapshots below compare only what a compile leaves.
        common::make_all_fences();
        let exec_before = Maps::read().anon_exec_bytes();
        let before = wildx::stats();
        install_filter(&refuse_prot_exec());
        // The filter bites: PROT_EXEC is refused, other protections are not.
        let probe = libc_map(PAGE);
        // SAFETY: `probe` is our own fresh mapping of one page.
        let (rx, r) = unsafe {
            (
                libc::mprotect(probe, PAGE, libc::PROT_READ | libc::PROT_EXEC),
                libc::mprotect(probe, PAGE, libc::PROT_READ),
            )
        };
        assert_eq!((rx, r), (-1, 0));
        // SAFETY: as above; unmapped once, never used again.
        unsafe { libc::munmap(probe, PAGE) };

        // Raw: seal is refused and the page stays WRITABLE, writable and freeable.
        let p = wildx::raw::alloc(64);
        assert!(!p.is_null());
        assert_eq!(wildx::jit::install_add_i32(p), 0);
        assert_eq!(wildx::raw::seal(p), -1);
        let info = wildx::inspect(p).expect("still registered");
        assert_eq!((info.state, info.seal_hash), (State::Writable, None));
        assert_eq!(Maps::read().perms_of(p as usize, PAGE), Some(Perms::W));
        // SAFETY: `p` is a live WRITABLE raw page of 64 bytes that nothing else uses.
        unsafe { p.add(10).write_bytes(0x90, 54) };
        assert_eq!(wildx::jit::install_add_i32(p), 0, "still writable through the raw surface");
        assert_eq!(wildx::raw::seal(p), -1, "refused again, not wedged");
        // C: the reason a C caller reads is "denied", not a bare -1.
        #[cfg(feature = "capi")]
        {
            let mut err = -99;
            // SAFETY: `err` is a valid i32.
            assert_eq!(unsafe { wildx::capi::wildx_seal_ex(p, &mut err) }, -1);
            assert_eq!(err, wildx::capi::WILDX_E_EXEC_DENIED);
        }
        assert_eq!(wildx::raw::verify(p), -1, "never sealed");
        assert_eq!(wildx::raw::free(p), 0);
        assert!(wildx::inspect(p).is_none());

        // Typed: the error says what the kernel refused, and hands the page back.
        let mut page = Page::new(16).expect("page");
        page.as_mut_slice()[..5].copy_from_slice(&ADD_I32);
        let addr = page.as_ptr();
        // SAFETY: the page holds the add code, which implements AddI32.
        let SealError { error, mut page } = unsafe { page.seal::<AddI32>() }.expect_err("PROT_EXEC is refused");
        assert_eq!(error, DENIED_LATE);
        let message = error.to_string();
        assert!(message.contains("EACCES") && message.contains("refused"), "{message}");
        assert!(message.starts_with("executable memory denied by the system"), "{message}");
        assert!(message.contains("wildx::use_memfd()"), "{message}");
        assert_eq!(page.as_ptr(), addr);
        let info = wildx::inspect(addr).expect("still registered");
        assert_eq!((info.state, info.held_by_handle), (State::Writable, true));
        page.as_mut_slice()[5] = 0xc3;
        assert_eq!(page.as_slice()[..7], [0x89, 0xf8, 0x01, 0xf0, 0xc3, 0xc3, 0xcc]);
        // SAFETY: as above.
        let again = unsafe { page.seal::<AddI32>() }.expect_err("still refused");
        assert!(again.to_string().starts_with("seal refused: executable memory denied by the system"), "{again}");
        assert_eq!(Error::from(again), DENIED_LATE); // drops (frees) the page
        assert!(wildx::inspect(addr).is_none());

        // compile_add_i32: null, and not one mapping changed.
        let mut maps = [RawMaps::with_capacity(1 << 20), RawMaps::with_capacity(1 << 20)];
        maps[0].snapshot();
        let f = wildx::jit::compile_add_i32();
        let typed = wildx::jit::compile_add().map(drop);
        maps[1].snapshot();
        assert!(f.is_null());
        assert_eq!(typed, Err(DENIED_LATE));
        assert_eq!(maps[0].text(), maps[1].text(), "compile under a PROT_EXEC ban left a mapping behind");

        let after = wildx::stats();
        assert_eq!(after.allocs - before.allocs, 4, "raw page, typed page, two compiles");
        assert_eq!(after.frees - before.frees, 4, "each freed");
        assert_eq!(after.seals, before.seals);
        let c_seal = u64::from(cfg!(feature = "capi"));
        assert_eq!(
            after.refusals - before.refusals,
            6 + c_seal,
            "two raw seals, a C seal, two typed seals, two compiles"
        );
        assert_eq!((after.live_pages, after.live_bytes), (before.live_pages, before.live_bytes));
        let maps = Maps::read();
        maps.assert_no_wx();
        assert_eq!(maps.anon_exec_bytes(), exec_before);
    });
}

/// A page's registry entry, comparable across threads.
fn entry(p: *const u8) -> (usize, usize, State, Option<u64>, bool) {
    let i = wildx::inspect(p).expect("registered");
    (i.len, i.mapped_len, i.state, i.seal_hash, i.held_by_handle)
}

/// A mapped length nothing else in the test process unmaps: 37 pages (the registry's
/// tables are 1, 2, 4, 7, 13, 26, 51, ... pages).
const ODD_PAGES: usize = 37;

#[test]
fn munmap_refused_keeps_the_page() {
    run_in_child("munmap_refused_keeps_the_page", || {
        let odd = ODD_PAGES * PAGE;
        let len = odd - 100;
        let before = wildx::stats();
        // A writable page and a sealed add page of the odd length, made before the filter.
        let w = wildx::raw::alloc(len);
        let x = wildx::raw::alloc(len);
        assert!(!w.is_null() && !x.is_null());
        assert_eq!(wildx::jit::install_add_i32(x), 0);
        assert_eq!(wildx::raw::seal(x), 0);
        let (w_info, x_info) = (entry(w), entry(x));
        let (wa, xa) = (w as usize, x as usize);

        // seccomp filters are per thread: this one refuses the munmap on one thread only,
        // so the test thread can show that freeing works once munmap is allowed.
        let held = std::thread::spawn(move || {
            let (w, x) = (wa as *mut u8, xa as *mut u8);
            install_filter(&refuse_munmap_of_len(odd));
            let probe = libc_map(odd);
            // SAFETY: our own fresh mapping of `odd` bytes.
            assert_eq!((unsafe { libc::munmap(probe, odd) }, errno()), (-1, libc::EPERM), "the filter bites");
            // SAFETY: still mapped (refused); unmapped in two parts of other lengths, which
            // the filter allows.
            assert_eq!(unsafe { (libc::munmap(probe, PAGE), libc::munmap(probe.byte_add(PAGE), odd - PAGE)) }, (0, 0));

            let mid = wildx::stats();
            assert_eq!(wildx::raw::free(w), -1);
            assert_eq!(wildx::raw::free(x), -1);
            // Kept: same entry, same state, still usable.
            assert_eq!(entry(w), w_info);
            assert_eq!(entry(x), x_info);
            // SAFETY: `w` is a live WRITABLE raw page of `len` bytes that only this test uses.
            unsafe { w.add(len - 1).write(0x42) };
            // SAFETY: `x` is live sealed add code.
            assert_eq!(unsafe { wildx::jit::call_i32_i32(x, 2, 3) }, 5);
            assert_eq!(wildx::raw::verify(x), 0);
            assert_eq!(wildx::raw::free(w), -1, "still refused, still kept");
            // The rest works: pages of other lengths free normally.
            let other = wildx::jit::compile_add_i32();
            assert_eq!(wildx::raw::free(other), 0);
            // A typed free that is refused hands the handle back with the kernel's errno.
            let page = Page::new(len).expect("page");
            let wildx::FreeError { error, handle: page } = page.free().expect_err("munmap of this length is refused");
            assert_eq!(error, Error::Os(Errno::EPERM));
            assert!(wildx::inspect(page.as_ptr()).expect("still registered").held_by_handle);
            // A typed handle whose munmap is refused in Drop keeps its page registered
            // (nothing lost from the accounting) and hands it to the raw surface, so that
            // raw::free can free it once munmap is allowed.
            let dropped = page.as_ptr() as usize;
            drop(page);
            let after = wildx::stats();
            assert_eq!(
                after.refusals - mid.refusals,
                5,
                "three refused raw frees, a refused typed free, a refused drop"
            );
            assert_eq!(after.frees - mid.frees, 1);
            assert_eq!(after.live_pages, mid.live_pages + 1, "the dropped page is still counted");
            let info = wildx::inspect(dropped as *const u8).expect("the dropped page stays registered");
            assert_eq!((info.state, info.held_by_handle), (State::Writable, false));
            assert_eq!(wildx::raw::free(dropped as *mut u8), -1, "still refused on this thread");
            dropped
        });
        let dropped = held.join().expect("filtered thread");
        let maps = Maps::read();
        assert_eq!(maps.perms_of(wa, odd), Some(Perms::W));
        assert_eq!(maps.perms_of(xa, odd), Some(Perms::RX));
        assert_eq!(maps.perms_of(dropped, odd), Some(Perms::W));

        // On this thread munmap is allowed: the kept pages free normally.
        // SAFETY: `w` is still our live WRITABLE page; the byte written above is there.
        assert_eq!(unsafe { w.add(len - 1).read() }, 0x42);
        assert_eq!(wildx::raw::free(w), 0);
        assert_eq!(wildx::raw::free(x), 0);
        assert_eq!(wildx::raw::free(dropped as *mut u8), 0, "the dropped handle's page is recoverable");
        let maps = Maps::read();
        assert!(maps.is_unmapped(wa, odd) && maps.is_unmapped(xa, odd) && maps.is_unmapped(dropped, odd));
        let after = wildx::stats();
        assert_eq!((after.live_pages, after.live_bytes), (before.live_pages, before.live_bytes), "nothing left");
    });
}

// ---------------------------------------------------------------------------------------
// Display
// ---------------------------------------------------------------------------------------

/// One value of every variant, with its exact message. The `match` has no wildcard: a new
/// variant does not compile here until it has a message test.
fn every_error() -> Vec<(Error, &'static str)> {
    let all = vec![
        (Error::ZeroLength, "zero-length allocation"),
        (Error::LengthOverflow, "length overflows when rounded up to whole pages"),
        (
            Error::QuotaExceeded { requested: 8192, live: 4096, quota: 8192 },
            "quota exceeded: 8192 more bytes with 4096 mapped would pass the quota of 8192",
        ),
        (Error::Null, "null pointer"),
        (Error::NotRegistered, "not the start of a live wildx page (foreign, interior or freed)"),
        (
            Error::WrongState { expected: State::Writable, found: State::Executable },
            "page is Executable, operation needs Writable",
        ),
        (Error::TooSmall { needed: 5, len: 4 }, "page holds 4 bytes, 5 needed"),
        (Error::HeldByHandle, "page is owned by a typed handle; use the handle or its into_raw"),
        (
            Error::IntegrityMismatch { sealed: 0xcbf2_9ce4_8422_2325, now: 0x1 },
            "integrity check failed: sealed 0xcbf29ce484222325, now 0x0000000000000001",
        ),
        (Error::RegistryStorage, "the page registry could not grow (mmap failed)"),
        (Error::Os(Errno::ENOMEM), "the kernel refused: ENOMEM (errno 12)"),
        (
            Error::Os(Errno::EACCES),
            "the kernel refused: EACCES (errno 13); a security policy (SELinux execmem, seccomp, \
             a hardened kernel) forbids executable memory or this memory operation",
        ),
        (
            Error::Os(Errno::EPERM),
            "the kernel refused: EPERM (errno 1); a security policy (SELinux execmem, seccomp, \
             a hardened kernel) forbids executable memory or this memory operation",
        ),
        (Error::Os(Errno::from_raw(75)), "the kernel refused: errno 75"),
        (Error::ArenaFull { needed: 100, available: 96 }, "arena full: 100 bytes needed, 96 left"),
        (Error::ForeignFn, "function id belongs to another arena"),
        (Error::Retired, "function is retired"),
        (Error::EntryAlive { entries: 2 }, "function has 2 live entries"),
        (Error::Reentrant, "arena used from inside its own push_with closure"),
        (
            Error::Rejected(wildx::validate::Violation {
                offset: 12,
                rule: wildx::validate::Rule::JumpIntoInstruction,
            }),
            "offset 12: jump into the middle of an instruction",
        ),
        (Error::ReadImpliesExec, "the READ_IMPLIES_EXEC personality would make writable pages executable"),
        (Error::WouldBlock, "the registry is busy and this call does not wait"),
        (
            Error::ExecDenied { anonymous: Errno::EACCES, memfd: Some(Errno::EPERM) },
            "executable memory denied by the system: anonymous memory refused (EACCES (errno 13)), \
             memfd refused (EPERM (errno 1))",
        ),
        (
            Error::ExecDenied { anonymous: Errno::EPERM, memfd: None },
            "executable memory denied by the system: anonymous memory refused (EPERM (errno 1)), \
             memfd not tried (chosen too late: call wildx::use_memfd() first; or built without it)",
        ),
        (Error::Inherited, "arena inherited across fork in memfd mode: its code is not mapped here"),
    ];
    for (e, _) in &all {
        match e {
            Error::ZeroLength
            | Error::LengthOverflow
            | Error::QuotaExceeded { .. }
            | Error::Null
            | Error::NotRegistered
            | Error::WrongState { .. }
            | Error::TooSmall { .. }
            | Error::HeldByHandle
            | Error::IntegrityMismatch { .. }
            | Error::RegistryStorage
            | Error::Os(_)
            | Error::ArenaFull { .. }
            | Error::ForeignFn
            | Error::Retired
            | Error::EntryAlive { .. }
            | Error::Reentrant
            | Error::Rejected(_)
            | Error::ReadImpliesExec
            | Error::WouldBlock
            | Error::ExecDenied { .. }
            | Error::Inherited => {}
            // `Error` is `#[non_exhaustive]`, so this match cannot be checked for
            // completeness here; inside the crate, `capi::error_code`'s match is, so a
            // new variant fails to compile there first. Add its case above and here.
            _ => panic!("a variant this list does not cover: {e:?}"),
        }
    }
    all
}

#[test]
fn every_error_variant_displays_exactly() {
    let all = every_error();
    for (error, message) in &all {
        assert_eq!(error.to_string(), *message, "{error:?}");
        // Short: one line, no trailing punctuation or whitespace.
        assert!(!message.contains('\n') && !message.ends_with(['.', ' ']), "{message:?}");
    }
    // Every variant is there (the match in every_error keeps this honest).
    let variants: std::collections::HashSet<_> = all.iter().map(|(e, _)| std::mem::discriminant(e)).collect();
    assert_eq!(variants.len(), 21);
}

#[test]
fn errors_from_real_refusals_display_what_happened() {
    // Not process-wide state: every call here is refused before it changes anything.
    let cases: Vec<(Result<(), Error>, &str)> = vec![
        (Page::new(0).map(drop), "zero-length allocation"),
        (Page::new(usize::MAX).map(drop), "length overflows"),
        (Page::new(1 << 50).map(drop), "quota exceeded: 1125899906842624 more bytes"),
        // SAFETY: refused (null) before any handle exists.
        (unsafe { Page::from_raw(std::ptr::null_mut()) }.map(drop), "null pointer"),
        // SAFETY: refused (not a wildx page) before any handle exists.
        (unsafe { Page::from_raw(NonNull::<u64>::dangling().as_ptr().cast()) }.map(drop), "not the start"),
    ];
    for (result, start) in cases {
        let message = result.expect_err("refused").to_string();
        assert!(message.starts_with(start), "{message:?} should start with {start:?}");
    }
    let errno = Errno::from_raw(12);
    assert_eq!((errno.to_string(), format!("{errno:?}")), ("ENOMEM (errno 12)".into(), "Errno(ENOMEM)".into()));
    assert_eq!(format!("{:?}", Errno::from_raw(4095)), "Errno(4095)");
}

// ---------------------------------------------------------------------------------------
// Refusals that leave a page behind (the map-count limit refuses mprotect and munmap of
// a page inside a merged mapping; a filter stands in for it)
// ---------------------------------------------------------------------------------------

#[test]
fn compile_add_keeps_a_page_it_cannot_free_and_reuses_it() {
    run_in_child("compile_add_keeps_a_page_it_cannot_free_and_reuses_it", || {
        // Anonymous memory chosen before the policy appears (see prot_exec_refused_by_seccomp).
        drop(Page::new(1).expect("page"));
        let before = wildx::stats();
        install_filter(&refuse_prot_exec());
        install_filter(&refuse_munmap_of_len(PAGE));
        for round in 0..5 {
            assert!(wildx::jit::compile_add_i32().is_null(), "round {round}");
            let now = wildx::stats();
            // One page, made in the first round, still registered and counted; every
            // later round took it back instead of mapping another.
            assert_eq!((now.live_pages, now.live_bytes), (before.live_pages + 1, before.live_bytes + PAGE), "{round}");
            assert_eq!(now.allocs, before.allocs + 1, "round {round}");
            common::assert_no_wx(&format!("compile_add_i32 round {round}"));
        }
    });
}

#[test]
fn registry_storage_refusal_maps_nothing_even_where_munmap_is_refused() {
    run_in_child("registry_storage_refusal_maps_nothing_even_where_munmap_is_refused", || {
        // Fill the table exactly, as in `registry_storage_cannot_grow`.
        let mut pages: Vec<*mut u8> = Vec::with_capacity(512);
        loop {
            let s = wildx::stats();
            if s.live_pages == s.registry_capacity && s.registry_capacity >= 100 {
                break;
            }
            pages.push(wildx::raw::alloc(64));
        }
        let before = wildx::stats();
        let mut maps = [RawMaps::with_capacity(1 << 20), RawMaps::with_capacity(1 << 20)];
        // A page's rollback munmap would be refused: a page mapped before the table
        // grows could not be undone.
        install_filter(&refuse_munmap_of_len(PAGE));
        maps[0].snapshot();
        set_address_space_limit((common::vm_size() + PAGE) as u64);
        let raw = wildx::raw::alloc(64);
        let limited = wildx::stats();
        maps[1].snapshot();
        lift_address_space_limit();
        assert!(raw.is_null());
        assert_eq!((limited.live_pages, limited.live_bytes), (before.live_pages, before.live_bytes));
        assert_eq!(maps[0].text(), maps[1].text(), "nothing mapped, nothing left uncounted");
    });
}
