//! verify-on-call: with the feature, a call through any runtime call path into a page
//! whose sealed bytes changed (or that is not sealed) aborts with SIGABRT and one line on
//! stderr; without it, the tampered code runs and only the explicit verify notices.
//!
//! Tampering is real: writes through `/proc/self/mem` (which bypass page protection),
//! and a raw `mprotect` to R|W, a write and a restore to R|X. Aborts happen in child
//! processes; the parent asserts the signal and the diagnostic.
//!
//! Run both ways: `cargo test --test verify` (feature off) and
//! `cargo test --test verify --features verify-on-call`.
//!
//! `unsafe` is allowed here to call tampered code and to re-`mprotect` a sealed page,
//! which is the attack under test.

#![allow(unsafe_code)]

mod common;

use common::poke;
use wildx::jit::{ADD_I32, ADD_PAGE_LEN};
use wildx::{Error, raw};

/// The byte to write at `offset` of the add page: different from what is there.
fn tampered_byte(offset: usize) -> u8 {
    let original = if offset < ADD_I32.len() { ADD_I32[offset] } else { 0xCC };
    original ^ 0x5a
}

#[test]
fn explicit_verify_detects_a_change_at_every_offset() {
    for offset in 0..ADD_PAGE_LEN {
        let f = wildx::jit::compile_add_i32();
        assert_eq!(raw::verify(f), 0);
        poke(f.wrapping_add(offset), &[tampered_byte(offset)]);
        assert_eq!(raw::verify(f), -1, "offset {offset}: tamper not detected");
        assert_eq!(raw::free(f), 0);
    }
    let code = wildx::jit::compile_add().unwrap();
    let sealed = code.seal_hash();
    poke(code.as_ptr().wrapping_add(3), &[0x00]);
    let now = wildx::fnv1a64(code.as_slice());
    assert_eq!(code.verify(), Err(Error::IntegrityMismatch { sealed, now }));
}

#[test]
fn a_change_past_the_requested_length_is_not_detected_by_design() {
    // The hash covers the bytes the caller owns (64 here); the rest of the page is int3
    // that correct code never reaches.
    let f = wildx::jit::compile_add_i32();
    for offset in [ADD_PAGE_LEN, 100, 4095] {
        poke(f.wrapping_add(offset), &[0x90]);
    }
    assert_eq!(raw::verify(f), 0);
    // SAFETY: the add bytes are intact; with verify-on-call this call is verified too.
    assert_eq!(unsafe { wildx::jit::call_i32_i32(f, 7, 35) }, 42);
    assert_eq!(raw::free(f), 0);
}

#[test]
fn verify_refuses_pages_that_are_not_sealed() {
    let p = raw::alloc(64);
    assert_eq!(raw::verify(p), -1);
    assert_eq!(raw::free(p), 0);
    assert_eq!(raw::verify(p), -1);
    assert_eq!(raw::verify(std::ptr::null()), -1);
}

#[cfg(not(feature = "verify-on-call"))]
mod feature_off {
    use super::*;

    #[test]
    fn a_tampered_call_runs_the_tampered_bytes() {
        let f = wildx::jit::compile_add_i32();
        // `01 f0` (add eax, esi) becomes `29 f0` (sub eax, esi).
        poke(f.wrapping_add(2), &[0x29]);
        // SAFETY: the tampered bytes are still a valid (i32, i32) -> i32 function.
        assert_eq!(unsafe { wildx::jit::call_i32_i32(f, 7, 35) }, -28, "feature off: no check before the call");
        assert_eq!(raw::verify(f), -1, "the explicit verify reports the mismatch");
        assert_eq!(raw::free(f), 0);

        let code = wildx::jit::compile_add().unwrap();
        poke(code.as_ptr().wrapping_add(2), &[0x29]);
        assert_eq!(code.call((7, 35)), -28);
        assert!(matches!(code.verify(), Err(Error::IntegrityMismatch { .. })));
    }
}

#[cfg(feature = "verify-on-call")]
mod feature_on {
    use std::ptr::NonNull;

    use super::*;
    use common::{assert_killed_by, child_output, is_child};

    const OFFSET_ENV: &str = "WILDX_TAMPER_OFFSET";

    /// The page's requested bytes as they are now.
    fn bytes_of(f: *const u8) -> Vec<u8> {
        // SAFETY: f is a live sealed page of ADD_PAGE_LEN readable bytes.
        unsafe { std::slice::from_raw_parts(f, ADD_PAGE_LEN) }.to_vec()
    }

    /// Parses the child's stdout line `expect sealed 0x.. now 0x..` and checks the
    /// diagnostic on its stderr carries the same values.
    fn assert_diagnostic(out: &std::process::Output, offset: usize) {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let expect = stdout.lines().find_map(|l| l.split_once("expect ").map(|(_, e)| e)).unwrap_or_else(|| {
            panic!("offset {offset}: child printed no expectation\nstdout: {stdout}\nstderr: {stderr}")
        });
        let line = stderr
            .lines()
            .find(|l| l.starts_with("wildx: "))
            .unwrap_or_else(|| panic!("offset {offset}: no diagnostic on stderr\nstderr: {stderr}"));
        assert!(line.starts_with("wildx: integrity check failed for page 0x"), "offset {offset}: {line}");
        assert!(line.ends_with(&format!("{expect} ({ADD_PAGE_LEN} bytes)")), "offset {offset}: {line} / {expect}");
        assert!(!stderr.contains("tampered code ran"), "offset {offset}: the tampered bytes ran");
    }

    #[test]
    fn a_tampered_call_aborts_for_every_byte_offset_of_the_add_page() {
        const NAME: &str = "feature_on::a_tampered_call_aborts_for_every_byte_offset_of_the_add_page";
        if is_child(NAME) {
            let offset: usize = std::env::var(OFFSET_ENV).unwrap().parse().unwrap();
            let f = wildx::jit::compile_add_i32();
            let sealed = wildx::inspect(f).unwrap().seal_hash.unwrap();
            poke(f.wrapping_add(offset), &[tampered_byte(offset)]);
            let now = wildx::fnv1a64(&bytes_of(f));
            println!("expect sealed {sealed:#018x}, now {now:#018x}");
            // SAFETY: none needed for the check: the call must abort before the bytes run.
            let r = unsafe { wildx::jit::call_i32_i32(f, 7, 35) };
            eprintln!("tampered code ran and returned {r}");
            std::process::exit(3);
        }
        // One child per offset, all started before any is waited for.
        let children: Vec<_> = (0..ADD_PAGE_LEN)
            .map(|offset| {
                let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
                cmd.args(["--exact", NAME, "--nocapture", "--test-threads=1"])
                    .env(common::CHILD_ENV, NAME)
                    .env(OFFSET_ENV, offset.to_string())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped());
                (offset, cmd.spawn().unwrap())
            })
            .collect();
        for (offset, child) in children {
            let out = child.wait_with_output().unwrap();
            assert_killed_by(&out, libc::SIGABRT);
            assert_diagnostic(&out, offset);
        }
    }

    #[test]
    fn a_tampered_typed_call_aborts() {
        const NAME: &str = "feature_on::a_tampered_typed_call_aborts";
        if is_child(NAME) {
            let code = wildx::jit::compile_add().unwrap();
            let sealed = code.seal_hash();
            poke(code.as_ptr().wrapping_add(2), &[0x29]);
            println!("expect sealed {sealed:#018x}, now {:#018x}", wildx::fnv1a64(code.as_slice()));
            let r = code.call((7, 35));
            eprintln!("tampered code ran and returned {r}");
            std::process::exit(3);
        }
        let out = child_output(NAME, &[]);
        assert_killed_by(&out, libc::SIGABRT);
        assert_diagnostic(&out, 2);
    }

    #[test]
    fn tamper_by_re_mprotect_aborts() {
        const NAME: &str = "feature_on::tamper_by_re_mprotect_aborts";
        if is_child(NAME) {
            let f = wildx::jit::compile_add_i32();
            let sealed = wildx::inspect(f).unwrap().seal_hash.unwrap();
            let page = NonNull::new(f).unwrap();
            // SAFETY: the attack under test: make the sealed page R|W (never W|X),
            // patch `add` into `sub`, and restore R|X so the protection looks intact.
            unsafe {
                assert_eq!(libc::mprotect(page.as_ptr().cast(), 4096, libc::PROT_READ | libc::PROT_WRITE), 0);
                f.add(2).write_volatile(0x29);
                assert_eq!(libc::mprotect(page.as_ptr().cast(), 4096, libc::PROT_READ | libc::PROT_EXEC), 0);
            }
            println!("expect sealed {sealed:#018x}, now {:#018x}", wildx::fnv1a64(&bytes_of(f)));
            // SAFETY: none needed: the call must abort before the bytes run.
            let r = unsafe { wildx::jit::call_i32_i32(f, 7, 35) };
            eprintln!("tampered code ran and returned {r}");
            std::process::exit(3);
        }
        let out = child_output(NAME, &[]);
        assert_killed_by(&out, libc::SIGABRT);
        assert_diagnostic(&out, 2);
    }

    /// Runs `NAME`'s child, which calls into a page in `kind` state, and checks the
    /// abort and its diagnostic.
    fn assert_call_refused(name: &str, needle: &str) {
        let out = child_output(name, &[]);
        assert_killed_by(&out, libc::SIGABRT);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.lines().any(|l| l.starts_with("wildx: refusing call into") && l.contains(needle)), "{stderr}");
        assert!(!stderr.contains("ran and returned"), "{stderr}");
    }

    #[test]
    fn calling_a_freed_page_aborts() {
        const NAME: &str = "feature_on::calling_a_freed_page_aborts";
        if is_child(NAME) {
            let f = wildx::jit::compile_add_i32();
            assert_eq!(raw::free(f), 0);
            // SAFETY: none needed: the call must abort before jumping.
            let r = unsafe { wildx::jit::call_i32_i32(f, 7, 35) };
            eprintln!("freed page ran and returned {r}");
            std::process::exit(3);
        }
        assert_call_refused(NAME, "not a live wildx page");
    }

    #[test]
    fn calling_a_writable_page_aborts() {
        const NAME: &str = "feature_on::calling_a_writable_page_aborts";
        if is_child(NAME) {
            let p = raw::alloc(64);
            assert_eq!(wildx::jit::install_add_i32(p), 0);
            // SAFETY: none needed: the call must abort before jumping.
            let r = unsafe { wildx::jit::call_i32_i32(p, 7, 35) };
            eprintln!("writable page ran and returned {r}");
            std::process::exit(3);
        }
        assert_call_refused(NAME, "Writable, not sealed");
    }

    #[test]
    fn calling_a_foreign_pointer_aborts() {
        const NAME: &str = "feature_on::calling_a_foreign_pointer_aborts";
        if is_child(NAME) {
            let mut stack = ADD_I32;
            // SAFETY: none needed: the call must abort before jumping.
            let r = unsafe { wildx::jit::call_i32_i32(stack.as_mut_ptr(), 7, 35) };
            eprintln!("stack bytes ran and returned {r}");
            std::process::exit(3);
        }
        assert_call_refused(NAME, "not a live wildx page");
    }
}
