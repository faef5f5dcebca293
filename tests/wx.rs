//! Hardware W^X: the MMU, not a runtime check, stops writes to sealed code and
//! execution of unsealed pages; `/proc/self/maps` never shows a W|X mapping.
//!
//! Faults run in a child process (this test binary re-run with one test selected) and
//! the parent asserts the signal. The tests that compare `/proc/self/maps` before and
//! after run in a child process too: in the parent, the test harness starts a thread for
//! each test (a new stack mapping, perhaps a malloc arena) whenever another test ends, and
//! that would show up between "before" and "after".
//!
//! `unsafe` is allowed here because the faults under test are exactly the unsafe
//! operations: writing to sealed code, calling unsealed bytes.

#![allow(unsafe_code)]

mod common;

use std::sync::Mutex;

use common::{Maps, assert_killed_by, assert_no_wx, child_output, is_child};
use wildx::{Page, State, raw};

static LOCK: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn write_to_sealed_code_dies_by_sigsegv() {
    const NAME: &str = "write_to_sealed_code_dies_by_sigsegv";
    let _guard = lock();
    if is_child(NAME) {
        let f = wildx::jit::compile_add_i32();
        assert!(!f.is_null());
        eprintln!("child: writing to sealed page {f:p}");
        // SAFETY: none; this write is the fault under test and must trap.
        unsafe { f.write_volatile(0xc3) };
        eprintln!("child: the write to sealed code did not trap");
        std::process::exit(3);
    }
    let out = child_output(NAME, &[]);
    assert_killed_by(&out, libc::SIGSEGV);
    assert!(String::from_utf8_lossy(&out.stderr).contains("child: writing"), "the child did not reach the write");
}

#[test]
fn typed_write_after_seal_through_a_stale_raw_pointer_dies_by_sigsegv() {
    const NAME: &str = "typed_write_after_seal_through_a_stale_raw_pointer_dies_by_sigsegv";
    let _guard = lock();
    if is_child(NAME) {
        let mut page = Page::new(64).unwrap();
        wildx::jit::install_add(&mut page).unwrap();
        let stale = page.as_mut_slice().as_mut_ptr();
        // SAFETY: the add bytes implement AddI32.
        let code = unsafe { page.seal::<wildx::jit::AddI32>() }.unwrap();
        assert_eq!(code.call((1, 1)), 2);
        eprintln!("child: writing through a stale pointer");
        // SAFETY: none; the write is the fault under test.
        unsafe { stale.add(1).write_volatile(0x90) };
        std::process::exit(3);
    }
    let out = child_output(NAME, &[]);
    assert_killed_by(&out, libc::SIGSEGV);
}

#[test]
fn calling_a_page_before_it_is_sealed_dies_by_sigsegv() {
    const NAME: &str = "calling_a_page_before_it_is_sealed_dies_by_sigsegv";
    let _guard = lock();
    if is_child(NAME) {
        let p = raw::alloc(64);
        assert_eq!(wildx::jit::install_add_i32(p), 0);
        assert_eq!(raw::state(p), Some(State::Writable));
        eprintln!("child: calling unsealed page {p:p}");
        // SAFETY: none; the page is R|W only, so this call is the fault under test.
        let f = unsafe { std::mem::transmute::<*mut u8, extern "sysv64" fn(i32, i32) -> i32>(p) };
        let r = f(1, 2);
        eprintln!("child: unsealed page executed and returned {r}");
        std::process::exit(3);
    }
    let out = child_output(NAME, &[]);
    assert_killed_by(&out, libc::SIGSEGV);
    assert!(String::from_utf8_lossy(&out.stderr).contains("child: calling"));
}

#[test]
fn executing_the_int3_padding_traps() {
    const NAME: &str = "executing_the_int3_padding_traps";
    if is_child(NAME) {
        // A page whose only written byte is a `nop`: execution falls into the 0xCC fill.
        let page = Page::with_code(&[0x90]).unwrap();
        // SAFETY: none; running into int3 is the fault under test.
        let code = unsafe { page.seal::<extern "sysv64" fn()>() }.unwrap();
        code.call(());
        std::process::exit(3);
    }
    let out = child_output(NAME, &[]);
    assert_killed_by(&out, libc::SIGTRAP);
}

#[test]
fn no_mapping_is_ever_writable_and_executable_through_a_lifecycle() {
    common::run_in_child("no_mapping_is_ever_writable_and_executable_through_a_lifecycle", || {
        assert_no_wx("start");
        let baseline = Maps::read().anon_exec_bytes();

        let mut pages = Vec::new();
        for size in [5, 64, 4096, 4097, 3 * 4096] {
            let p = raw::alloc(size);
            assert!(!p.is_null());
            assert_no_wx("alloc");
            assert_eq!(wildx::jit::install_add_i32(p), 0);
            assert_no_wx("install");
            pages.push(p);
        }
        for &p in &pages {
            assert_eq!(raw::seal(p), 0);
            assert_no_wx("seal");
            assert_eq!(Maps::read().containing(p as usize).map(|m| m.perms.rwx()).as_deref(), Some("r-x"));
            // SAFETY: p holds sealed add code.
            assert_eq!(unsafe { wildx::jit::call_i32_i32(p, 2, 3) }, 5);
            assert_no_wx("call");
            assert_eq!(raw::verify(p), 0);
            assert_eq!(raw::seal(p), -1);
            assert_no_wx("refused seal");
        }
        assert!(Maps::read().anon_exec_bytes() > baseline);
        let typed = wildx::jit::compile_add().unwrap();
        assert_no_wx("typed compile");
        drop(typed);
        assert_no_wx("typed drop");
        for &p in &pages {
            assert_eq!(raw::free(p), 0);
            assert_no_wx("free");
            assert!(Maps::read().containing(p as usize).is_none(), "freed page {p:p} is still mapped");
        }
        assert_eq!(Maps::read().anon_exec_bytes(), baseline, "anonymous executable mappings are not back at baseline");
    });
}

#[test]
fn refused_operations_leave_the_address_space_unchanged() {
    common::run_in_child("refused_operations_leave_the_address_space_unchanged", || {
        // The reads themselves may grow the C heap; only wildx's mappings matter here.
        let snapshot = || Maps::read().mappings.into_iter().filter(|m| m.path != "[heap]").collect::<Vec<_>>();
        let _warm_up = snapshot();
        let before = snapshot();
        assert!(raw::alloc(0).is_null());
        assert!(raw::alloc(usize::MAX).is_null());
        let mut local = [0u8; 16];
        assert_eq!(raw::seal(local.as_mut_ptr()), -1);
        assert_eq!(raw::free(local.as_mut_ptr()), -1);
        assert_eq!(snapshot(), before);
    });
}
