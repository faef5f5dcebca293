//! The memfd fallback (issue: hostile environments): where the kernel refuses
//! `PROT_EXEC` on anonymous memory, wildx backs pages and arenas with one memfd, writes
//! through a shared `R|W` view, and at seal or publish replaces that view, at the same
//! address, by an `R|X` view of the same bytes.
//!
//! Every test runs in a child process: the mode is chosen once per process, and a
//! seccomp filter ([`common::seccomp::refuse_anonymous_exec`], what SELinux
//! `deny_execmem` refuses) cannot be removed. Each checks the kernel's view, not only
//! wildx's: `/proc/self/maps` (no W|X, no writable view of sealed bytes, views of
//! `/memfd:wildx`), `/proc/self/fd`, faults in grandchildren, and real calls.
//!
//! `unsafe` is needed to seal and call code, to fork, and to fault on purpose.

#![allow(unsafe_code)]
#![cfg(feature = "memfd")]

mod common;

use std::os::unix::process::ExitStatusExt;

use common::seccomp::{install_filter, refuse_anonymous_exec, refuse_prot_exec};
use common::{Maps, run_in_child};
use wildx::jit::{ADD_I32, AddI32};
use wildx::{Arena, Errno, Error, ExecMode, Page, State};

const PAGE: usize = 4096;
/// `mov eax, 42; ret`.
const RET42: [u8; 6] = [0xb8, 42, 0, 0, 0, 0xc3];
type Ret42 = extern "sysv64" fn() -> i32;

/// The `/proc/self/maps` lines of views of wildx's memfd.
fn memfd_views() -> Vec<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines().filter(|l| l.contains("/memfd:wildx")).map(String::from).collect()
}

/// `(start, end, perms, offset)` of the mapping containing `addr`.
fn mapping_at(addr: usize) -> Option<(usize, usize, String, u64)> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines().find_map(|line| {
        let mut f = line.split_whitespace();
        let (lo, hi) = f.next()?.split_once('-')?;
        let (lo, hi) = (usize::from_str_radix(lo, 16).ok()?, usize::from_str_radix(hi, 16).ok()?);
        let perms = f.next()?.to_string();
        let offset = u64::from_str_radix(f.next()?, 16).ok()?;
        (lo <= addr && addr < hi).then_some((lo, hi, perms, offset))
    })
}

/// Asserts that no mapping of the memfd is writable over `[addr, addr + len)`'s file
/// range (offset = address), anywhere in the process: the sealed bytes have no
/// writable view.
fn assert_no_writable_view_of(addr: usize, len: usize) {
    for line in memfd_views() {
        let mut f = line.split_whitespace();
        let (lo, hi) = f.next().unwrap().split_once('-').unwrap();
        let (lo, hi) = (usize::from_str_radix(lo, 16).unwrap(), usize::from_str_radix(hi, 16).unwrap());
        let perms = f.next().unwrap();
        let offset = usize::from_str_radix(f.next().unwrap(), 16).unwrap();
        let file_range = offset..offset + (hi - lo);
        let overlaps = file_range.start < addr + len && addr < file_range.end;
        assert!(!(overlaps && perms.contains('w')), "writable view of sealed bytes: {line}");
    }
}

/// The lines of `/proc/self/maps` that differ from `before`.
fn maps_diff(before: &str) -> String {
    let now = std::fs::read_to_string("/proc/self/maps").unwrap();
    let gone = before.lines().filter(|l| !now.contains(l)).map(|l| format!("- {l}\n"));
    let new = now.lines().filter(|l| !before.contains(l)).map(|l| format!("+ {l}\n"));
    gone.chain(new).collect()
}

/// Open file descriptors of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn pages_fall_back_to_a_memfd_where_anonymous_exec_is_refused() {
    run_in_child("pages_fall_back_to_a_memfd_where_anonymous_exec_is_refused", || {
        assert_eq!(wildx::exec_mode(), ExecMode::Undetected);
        install_filter(&refuse_anonymous_exec());
        let mut page = Page::new(100).expect("page in memfd mode");
        assert_eq!(wildx::exec_mode(), ExecMode::Memfd);
        assert_eq!(wildx::stats().exec_mode, ExecMode::Memfd);
        let addr = page.as_ptr() as usize;
        // The writable view: shared, of the memfd, at offset = address, never executable.
        let (_, _, perms, offset) = mapping_at(addr).unwrap();
        assert_eq!((perms.as_str(), offset), ("-w-s", addr as u64));
        assert!(page.as_slice().iter().all(|&b| b == 0xcc), "int3-filled like an anonymous page");
        page.as_mut_slice()[..RET42.len()].copy_from_slice(&RET42);
        // SAFETY: the page holds `mov eax, 42; ret`.
        let code = unsafe { page.seal::<Ret42>() }.expect("seal in memfd mode");
        assert_eq!(code.as_ptr() as usize, addr, "the address never changes");
        assert_eq!(code.call(()), 42);
        assert_eq!(code.verify(), Ok(()));
        let (lo, hi, perms, offset) = mapping_at(addr).unwrap();
        assert_eq!((perms.as_str(), offset), ("r-xs", lo as u64));
        assert!(lo <= addr && addr + PAGE <= hi);
        assert_no_writable_view_of(addr, PAGE);
        Maps::read().assert_no_wx();
        assert_eq!(wildx::raw::state(code.as_ptr()), Some(State::Executable));
        // The sealed page cannot be written, the writable one cannot be run.
        let status = common::in_grandchild(|| {
            // SAFETY: a write into sealed code, on purpose: it must fault.
            unsafe { (addr as *mut u8).write_volatile(0xc3) };
        });
        assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status:?}");
        let pending = Page::new(16).unwrap();
        let at = pending.as_ptr() as usize;
        let status = common::in_grandchild(|| {
            // SAFETY: a call into a WRITABLE page, on purpose: it must fault. (The
            // grandchild inherits no view of the file, so even the address is empty.)
            let f: extern "C" fn() = unsafe { std::mem::transmute(at) };
            f();
        });
        assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status:?}");
        drop(pending);
        // Free: the address is gone, the file range punched.
        drop(code);
        assert!(mapping_at(addr).is_none_or(|(_, _, p, _)| p == "---p"), "{:?}", mapping_at(addr));
        assert_eq!(wildx::stats().live_pages, 0);
        // The other surfaces: jit and raw.
        let f = wildx::jit::compile_add_i32();
        assert!(!f.is_null());
        // SAFETY: `f` is a sealed add(i32, i32).
        assert_eq!(unsafe { wildx::jit::call_i32_i32(f, 40, 2) }, 42);
        assert_eq!(wildx::raw::verify(f), 0);
        assert_eq!(wildx::jit::free(f), 0);
        let add = wildx::jit::compile_add().unwrap();
        assert_eq!(add.call((2, 3)), 5);
        drop(add);
        // Mode is remembered: no probe again (an anonymous W->X attempt would be refused
        // by the filter; the mode would not change anyway).
        assert_eq!(wildx::use_memfd(), Ok(ExecMode::Memfd));
        Maps::read().assert_no_wx();
        assert!(memfd_views().is_empty(), "every view unmapped: {:?}", memfd_views());
    });
}

#[test]
fn many_live_pages_share_one_descriptor_and_free_their_memory() {
    run_in_child("many_live_pages_share_one_descriptor_and_free_their_memory", || {
        install_filter(&refuse_anonymous_exec());
        let first = wildx::jit::compile_add().unwrap();
        let fds = open_fds();
        let mut code = Vec::new();
        for i in 0..2000u32 {
            let mut page = Page::new(64).unwrap();
            page.as_mut_slice()[..ADD_I32.len()].copy_from_slice(&ADD_I32);
            if i % 2 == 0 {
                // SAFETY: the page holds ADD_I32.
                code.push(unsafe { page.seal::<AddI32>() }.unwrap());
            } else {
                let _writable_raw = page.into_raw(); // stays live, WRITABLE
            }
        }
        assert_eq!(open_fds(), fds, "2000 live pages, no new descriptor");
        for (i, c) in code.iter().enumerate() {
            assert_eq!(c.call((i as i32, 1)), i as i32 + 1);
        }
        let s = wildx::stats();
        assert_eq!((s.live_pages, s.exec_mode), (2001, ExecMode::Memfd));
        Maps::read().assert_no_wx();
        for c in &code {
            assert_no_writable_view_of(c.as_ptr() as usize, PAGE);
        }
        // Freed pages give their memory back: the process's shared memory (the memfd's
        // pages) shrinks to what is still live.
        let shmem = || -> usize {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let line = status.lines().find(|l| l.starts_with("RssShmem:")).unwrap().to_string();
            line.split_whitespace().nth(1).unwrap().parse::<usize>().unwrap() * 1024
        };
        let with_all = shmem();
        assert!(with_all >= 1000 * PAGE, "{with_all}");
        drop(code);
        let after = shmem();
        assert!(after + 900 * PAGE <= with_all, "frees released memory: {with_all} -> {after}");
        drop(first);
        assert_eq!(open_fds(), fds);
    });
}

#[test]
fn arenas_work_in_memfd_mode() {
    run_in_child("arenas_work_in_memfd_mode", || {
        install_filter(&refuse_anonymous_exec());
        // The registry's list of arenas keeps its storage once made: made here first.
        drop(Arena::new(PAGE).unwrap());
        let baseline = Maps::read().mappings.len();
        let before_text = std::fs::read_to_string("/proc/self/maps").unwrap();
        let arena = Arena::new(1 << 20).expect("arena in memfd mode");
        assert_eq!(wildx::exec_mode(), ExecMode::Memfd);
        let mut ids = Vec::new();
        for batch in 0..10 {
            for _ in 0..100 {
                ids.push(arena.push(&ADD_I32).unwrap());
            }
            arena.publish().unwrap();
            Maps::read().assert_no_wx();
            let last = arena.addr(*ids.last().unwrap()).unwrap();
            assert_no_writable_view_of(arena.base(), last + 16 - arena.base());
            assert!(Maps::read().mappings.len() <= baseline + 8, "batch {batch}: a handful of mappings");
        }
        for (i, &id) in ids.iter().enumerate() {
            // SAFETY: every function is ADD_I32.
            let entry = unsafe { arena.entry::<AddI32>(id) }.unwrap();
            assert_eq!(entry.call((i as i32, 2)), i as i32 + 2);
        }
        assert_eq!(arena.verify_all(), Ok(()));
        // A published function cannot be written; a pending one cannot be run.
        let published = arena.addr(ids[0]).unwrap();
        let status = common::in_grandchild(|| {
            // SAFETY: on purpose: it must fault.
            unsafe { (published as *mut u8).write_volatile(0) };
        });
        assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status:?}");
        let pending = arena.addr(arena.push(&RET42).unwrap()).unwrap();
        let status = common::in_grandchild(|| {
            // SAFETY: on purpose: it must fault.
            let f: extern "C" fn() = unsafe { std::mem::transmute(pending) };
            f();
        });
        assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status:?}");
        // Retire a whole page's functions: the page goes, its file range is punched.
        let first_page: Vec<_> =
            ids.iter().copied().filter(|&id| arena.addr(id).unwrap() < arena.base() + PAGE).collect();
        for id in first_page {
            arena.retire(id).unwrap();
        }
        assert_eq!(mapping_at(arena.base()).map(|m| m.2), Some("---p".to_string()));
        let status = common::in_grandchild(|| {
            // SAFETY: on purpose: a stale call into a released page must fault.
            let f: extern "C" fn() = unsafe { std::mem::transmute(published) };
            f();
        });
        assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status:?}");
        assert_eq!(arena.verify_all(), Ok(()));
        drop(arena);
        assert!(memfd_views().is_empty(), "{:?}", memfd_views());
        assert_eq!(Maps::read().mappings.len(), baseline, "{}", maps_diff(&before_text));
        assert_eq!(wildx::stats().arena_bytes, 0);
    });
}

#[test]
fn everything_refused_is_its_own_error() {
    run_in_child("everything_refused_is_its_own_error", || {
        // PROT_EXEC refused on every mmap and mprotect, file or not.
        install_filter(&refuse_prot_exec());
        let before_text = std::fs::read_to_string("/proc/self/maps").unwrap();
        let registry_before = wildx::stats().registry_bytes;
        let denied = Error::ExecDenied { anonymous: Errno::EACCES, memfd: Some(Errno::EACCES) };
        assert_eq!(Page::new(1).map(drop), Err(denied));
        assert_eq!(wildx::exec_mode(), ExecMode::Denied);
        assert_eq!(wildx::stats().exec_mode, ExecMode::Denied);
        let message = denied.to_string();
        assert!(message.starts_with("executable memory denied by the system"), "{message}");
        assert!(message.contains("anonymous memory refused (EACCES") && message.contains("memfd refused (EACCES"));
        assert_eq!(Arena::new(1 << 16).map(drop), Err(denied));
        assert_eq!(wildx::jit::compile_add().map(drop), Err(denied));
        assert!(wildx::jit::compile_add_i32().is_null());
        assert!(wildx::raw::alloc(1).is_null());
        assert_eq!(wildx::use_memfd(), Err(denied));
        #[cfg(feature = "capi")]
        {
            let mut err = -99;
            // SAFETY: `err` is a valid i32.
            assert!(unsafe { wildx::capi::wildx_alloc_ex(1, &mut err) }.is_null());
            assert_eq!(err, wildx::capi::WILDX_E_EXEC_DENIED);
            assert_eq!(wildx::capi::wildx_exec_mode(), wildx::capi::WILDX_EXEC_DENIED);
        }
        // Nothing was left behind: no mapping, no descriptor to the memfd.
        let s = wildx::stats();
        assert_eq!((s.live_pages, s.live_bytes, s.arenas), (0, 0, 0));
        // The one thing that may stay: the registry's own table, made room in before the
        // page was refused (it keeps its capacity, as after any allocation).
        let now = std::fs::read_to_string("/proc/self/maps").unwrap();
        let new_bytes: usize = now
            .lines()
            .filter(|l| !before_text.contains(l))
            .map(|l| {
                assert!(l.contains(" -w-p 00000000 00:00 0"), "not the registry's: {l}");
                let (lo, hi) = l.split_whitespace().next().unwrap().split_once('-').unwrap();
                usize::from_str_radix(hi, 16).unwrap() - usize::from_str_radix(lo, 16).unwrap()
            })
            .sum();
        assert_eq!(new_bytes, s.registry_bytes - registry_before, "{}", maps_diff(&before_text));
        let fds: Vec<_> = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .collect();
        assert!(!fds.iter().any(|p| p.to_string_lossy().contains("memfd:wildx")), "{fds:?}");
    });
}

#[test]
fn use_memfd_chooses_the_mode_up_front_and_only_once() {
    run_in_child("use_memfd_chooses_the_mode_up_front_and_only_once", || {
        assert_eq!(wildx::use_memfd(), Ok(ExecMode::Memfd));
        let code = wildx::jit::compile_add().unwrap();
        assert_eq!(code.call((20, 22)), 42);
        assert_eq!(mapping_at(code.as_ptr() as usize).unwrap().2, "r-xs");
        // The descriptor is close-on-exec.
        let fd = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| e.ok())
            .find(|e| std::fs::read_link(e.path()).is_ok_and(|p| p.to_string_lossy().contains("memfd:wildx")))
            .expect("the memfd")
            .file_name()
            .to_string_lossy()
            .parse::<i32>()
            .unwrap();
        // SAFETY: F_GETFD on a descriptor this process has open.
        assert_eq!(unsafe { libc::fcntl(fd, libc::F_GETFD) } & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
        drop(code);
    });
}

#[test]
fn use_memfd_after_anonymous_pages_keeps_the_mode() {
    run_in_child("use_memfd_after_anonymous_pages_keeps_the_mode", || {
        drop(Page::new(1).unwrap());
        assert_eq!(wildx::use_memfd(), Ok(ExecMode::Anonymous));
        let code = wildx::jit::compile_add().unwrap();
        assert_eq!(mapping_at(code.as_ptr() as usize).unwrap().2, "r-xp");
    });
}

/// A child forked without the hooks, in memfd mode: it inherits no view of the parent's
/// file (so no writable view of bytes the parent seals later, and nothing the parent's
/// frees could zero under it), forgets the parent's pages at its first wildx call, finds
/// their addresses inaccessible, refuses the inherited arena, and has pages of its own.
/// The parent's code is untouched by anything the child does.
#[test]
fn a_forked_child_inherits_none_of_the_parents_code() {
    run_in_child("a_forked_child_inherits_none_of_the_parents_code", || {
        assert_eq!(wildx::use_memfd(), Ok(ExecMode::Memfd));
        let code = wildx::jit::compile_add().unwrap();
        let mut pending = Page::new(64).unwrap();
        let arena = Arena::new(1 << 20).unwrap();
        let add = arena.push(&ADD_I32).unwrap();
        arena.publish().unwrap();
        let unpublished = arena.push(&RET42).unwrap();
        let (code_at, pending_at) = (code.as_ptr() as usize, pending.as_ptr() as usize);
        let add_at = arena.addr(add).unwrap();
        let parent_fd_target = memfd_fd_targets();
        assert_eq!(parent_fd_target.len(), 1);

        let status = common::in_grandchild(|| {
            // Until its first wildx call the registry still names the parent's pages;
            // the signal-safe verify (which may not take locks to forget them) says
            // they are not this process's.
            assert_eq!(wildx::signal_safe::verify(code.as_ptr()), Err(Error::NotRegistered));
            assert_eq!(wildx::raw::state(code.as_ptr()), None, "forgotten at the first call");
            assert_eq!(wildx::stats().live_pages, 0);
            assert_eq!(code.verify(), Err(Error::NotRegistered));
            assert_eq!(arena.push(&ADD_I32), Err(Error::Inherited));
            assert_eq!(arena.publish(), Err(Error::Inherited));
            assert_eq!(arena.verify_all(), Err(Error::Inherited));
            // SAFETY: refused before any call.
            assert_eq!(unsafe { arena.entry::<AddI32>(add) }.map(drop), Err(Error::Inherited));
            for at in [code_at, pending_at, add_at] {
                assert_eq!(mapping_at(at).map(|m| m.2), Some("---p".into()), "{at:#x} plugged");
            }
            // Its own file, and the parent's descriptor closed.
            let mine = wildx::jit::compile_add().unwrap();
            assert_eq!(mine.call((1, 2)), 3);
            let targets = memfd_fd_targets();
            assert_eq!(targets.len(), 1);
            assert_ne!(targets, parent_fd_target, "a memfd of its own");
            drop(mine);
            // Dropping inherited handles touches nothing of the parent's.
            // SAFETY: this process's copy of the handle, dropped once here (the
            // grandchild `_exit`s without dropping the originals).
            drop(unsafe { std::ptr::read(&code) });
            // SAFETY: as above.
            drop(unsafe { std::ptr::read(&arena) });
            for at in [code_at, pending_at] {
                let status = common::in_grandchild(|| {
                    // SAFETY: on purpose: the parent's code is not here; this must fault.
                    let f: extern "C" fn() = unsafe { std::mem::transmute(at) };
                    f();
                });
                assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status:?}");
            }
            let status = common::in_grandchild(|| {
                // SAFETY: on purpose: no writable view of the parent's page is inherited.
                unsafe { (pending_at as *mut u8).write_volatile(0xc3) };
            });
            assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status:?}");
        });
        assert!(status.success(), "{status:?}");
        // The parent's code, pages and arena are as they were.
        assert_eq!(code.call((20, 22)), 42);
        assert_eq!(code.verify(), Ok(()));
        pending.as_mut_slice()[..RET42.len()].copy_from_slice(&RET42);
        // SAFETY: the page holds `mov eax, 42; ret`.
        let sealed = unsafe { pending.seal::<Ret42>() }.unwrap();
        assert_eq!(sealed.call(()), 42);
        arena.publish().unwrap();
        // SAFETY: the functions are ADD_I32 and RET42.
        assert_eq!(unsafe { arena.entry::<AddI32>(add) }.unwrap().call((2, 2)), 4);
        // SAFETY: as above.
        assert_eq!(unsafe { arena.entry::<Ret42>(unpublished) }.unwrap().call(()), 42);
        assert_eq!(arena.verify_all(), Ok(()));
        assert_eq!(memfd_fd_targets(), parent_fd_target);
    });
}

/// The inodes of this process's descriptors to a wildx memfd (`/memfd:wildx`).
fn memfd_fd_targets() -> Vec<u64> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            if !target.to_string_lossy().contains("memfd:wildx") {
                return None;
            }
            use std::os::unix::fs::MetadataExt;
            Some(std::fs::metadata(e.path()).ok()?.ino())
        })
        .collect()
}
