//! The page lifecycle on every surface: the state × operation matrix, sizes and
//! mapped lengths, the int3 fill, the seal hash, and the add page's arithmetic.
//!
//! `unsafe` is allowed here to call sealed code through the raw helper and to read
//! whole mappings, the two things these tests exist to check.

#![allow(unsafe_code)]

mod common;

use wildx::jit::{ADD_I32, ADD_PAGE_LEN, AddI32};
use wildx::{Code, Error, Page, State, raw};

/// The kinds of pointer every operation must be judged on.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Writable,
    Executable,
    Freed,
    Null,
    Interior,
    Stack,
    Heap,
    Static,
}

const KINDS: [Kind; 8] =
    [Kind::Writable, Kind::Executable, Kind::Freed, Kind::Null, Kind::Interior, Kind::Stack, Kind::Heap, Kind::Static];

static STATIC_BYTES: [u8; 64] = [0x5a; 64];

/// Builds a pointer of `kind`, runs `f` on it, cleans up; `f` gets the pointer.
fn with_pointer(kind: Kind, f: impl FnOnce(*mut u8)) {
    let mut stack = [0x5au8; 64];
    let mut heap = vec![0x5au8; 64];
    match kind {
        Kind::Writable | Kind::Executable | Kind::Freed | Kind::Interior => {
            let p = raw::alloc(ADD_PAGE_LEN);
            assert!(!p.is_null());
            assert_eq!(wildx::jit::install_add_i32(p), 0);
            if matches!(kind, Kind::Executable) {
                assert_eq!(raw::seal(p), 0);
            }
            if matches!(kind, Kind::Freed) {
                assert_eq!(raw::free(p), 0);
            }
            let target = if matches!(kind, Kind::Interior) { p.wrapping_add(1) } else { p };
            f(target);
            if !matches!(kind, Kind::Freed) {
                // Whatever f did, the page is freed exactly once by someone.
                let _ = raw::free(p);
                assert_eq!(raw::state(p), None);
            }
        }
        Kind::Null => f(std::ptr::null_mut()),
        Kind::Stack => {
            f(stack.as_mut_ptr());
            assert_eq!(stack, [0x5a; 64], "a refused operation touched stack memory");
        }
        Kind::Heap => {
            f(heap.as_mut_ptr());
            assert_eq!(heap, vec![0x5a; 64], "a refused operation touched heap memory");
        }
        Kind::Static => {
            f(STATIC_BYTES.as_ptr() as *mut u8);
            assert_eq!(STATIC_BYTES, [0x5a; 64]);
        }
    }
}

#[test]
fn state_by_operation_matrix() {
    for kind in KINDS {
        // Expected: (seal, free, install, verify, state).
        let (seal, free, install, verify, state) = match kind {
            Kind::Writable => (0, 0, 0, -1, Some(State::Writable)),
            Kind::Executable => (-1, 0, -1, 0, Some(State::Executable)),
            _ => (-1, -1, -1, -1, None),
        };
        with_pointer(kind, |p| assert_eq!(raw::state(p), state, "{kind:?}: state"));
        with_pointer(kind, |p| assert_eq!(raw::verify(p), verify, "{kind:?}: verify"));
        with_pointer(kind, |p| {
            assert_eq!(wildx::jit::install_add_i32(p), install, "{kind:?}: install");
            // A refused install leaves the state as it was.
            assert_eq!(raw::state(p), state, "{kind:?}: state after install");
        });
        with_pointer(kind, |p| {
            assert_eq!(raw::seal(p), seal, "{kind:?}: seal");
            let after = if seal == 0 { Some(State::Executable) } else { state };
            assert_eq!(raw::state(p), after, "{kind:?}: state after seal");
        });
        with_pointer(kind, |p| {
            assert_eq!(raw::free(p), free, "{kind:?}: free");
            let after = if free == 0 { None } else { state };
            assert_eq!(raw::state(p), after, "{kind:?}: state after free");
        });
        with_pointer(kind, |p| assert_eq!(wildx::jit::free(p), free, "{kind:?}: jit::free"));
    }
}

#[test]
fn a_second_seal_is_refused_and_changes_nothing() {
    let p = wildx::jit::compile_add_i32();
    assert!(!p.is_null());
    let before = wildx::inspect(p).unwrap();
    assert_eq!(raw::seal(p), -1);
    assert_eq!(wildx::inspect(p).unwrap(), before);
    // SAFETY: p is a live add page.
    assert_eq!(unsafe { wildx::jit::call_i32_i32(p, 40, 2) }, 42);
    assert_eq!(raw::free(p), 0);
}

#[test]
fn double_free_and_seal_after_free_are_refused() {
    let p = raw::alloc(10);
    assert_eq!(raw::free(p), 0);
    assert_eq!(raw::free(p), -1);
    assert_eq!(raw::seal(p), -1);
    assert_eq!(raw::verify(p), -1);
    assert_eq!(raw::state(p), None);
}

#[test]
fn sizes_and_mapped_lengths() {
    assert!(raw::alloc(0).is_null());
    assert!(raw::alloc(usize::MAX).is_null());
    assert!(raw::alloc(isize::MAX as usize).is_null());
    assert_eq!(Page::new(0).unwrap_err(), Error::ZeroLength);
    assert_eq!(Page::new(usize::MAX).unwrap_err(), Error::LengthOverflow);
    for (size, mapped) in [(1, 4096), (5, 4096), (64, 4096), (4095, 4096), (4096, 4096), (4097, 8192), (8192, 8192)] {
        let p = raw::alloc(size);
        assert!(!p.is_null(), "alloc({size})");
        assert_eq!(p as usize % 4096, 0, "alloc({size}) is page aligned");
        let info = wildx::inspect(p).unwrap();
        assert_eq!((info.len, info.mapped_len, info.state, info.seal_hash), (size, mapped, State::Writable, None));
        let maps = common::Maps::read();
        let m = maps.containing(p as usize).unwrap();
        assert_eq!(m.perms.rwx(), "-w-", "alloc({size}) maps writable (PROT_WRITE alone), never X");
        assert!(m.end >= p as usize + mapped);
        assert_eq!(raw::free(p), 0);
    }
}

#[test]
fn the_whole_mapping_is_filled_with_int3() {
    for size in [1, 64, 4097] {
        let p = raw::alloc(size);
        let mapped = wildx::inspect(p).unwrap().mapped_len;
        // SAFETY: p starts a live R|W mapping of `mapped` bytes that nothing else uses.
        let bytes = unsafe { std::slice::from_raw_parts(p, mapped) };
        assert!(bytes.iter().all(|&b| b == 0xCC), "alloc({size}) has a byte that is not 0xCC");
        assert_eq!(raw::free(p), 0);
    }
}

#[test]
fn seal_hash_is_fnv1a_of_exactly_the_requested_bytes() {
    for size in [1, 5, 64, 4095, 4096, 5000] {
        let mut page = Page::new(size).unwrap();
        for (i, b) in page.as_mut_slice().iter_mut().enumerate() {
            *b = (i * 7 + size) as u8;
        }
        let expected = wildx::fnv1a64(page.as_slice());
        // SAFETY: the code is never called (the `()` signature is only a type tag here).
        let code = unsafe { page.seal::<extern "sysv64" fn()>() }.unwrap();
        let info = wildx::inspect(code.as_ptr()).unwrap();
        assert_eq!(info.seal_hash, Some(expected), "size {size}");
        assert_eq!(code.seal_hash(), expected);
        // The hash is not of the whole mapping (which also holds int3 padding).
        if size % 4096 != 0 {
            // SAFETY: the sealed mapping is readable for its mapped length.
            let whole = unsafe { std::slice::from_raw_parts(code.as_ptr(), info.mapped_len) };
            assert_ne!(wildx::fnv1a64(whole), expected);
        }
        assert_eq!(code.verify(), Ok(()));
    }
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn add_page_wraps_like_the_machine_for_random_and_extreme_inputs() {
    let f = wildx::jit::compile_add_i32();
    let typed = wildx::jit::compile_add().unwrap();
    let extremes = [i32::MIN, i32::MIN + 1, -1, 0, 1, i32::MAX - 1, i32::MAX];
    let mut pairs: Vec<(i32, i32)> = extremes.iter().flat_map(|&a| extremes.iter().map(move |&b| (a, b))).collect();
    let mut seed = std::process::id() as u64 | 1;
    for _ in 0..10_000 {
        let r = xorshift(&mut seed);
        pairs.push((r as i32, (r >> 32) as i32));
    }
    for (a, b) in pairs {
        // SAFETY: f is a live add page for the whole loop.
        assert_eq!(unsafe { wildx::jit::call_i32_i32(f, a, b) }, a.wrapping_add(b), "raw add({a}, {b})");
        assert_eq!(typed.call((a, b)), a.wrapping_add(b), "typed add({a}, {b})");
    }
    assert_eq!(raw::free(f), 0);
}

#[test]
fn compile_add_writes_exactly_the_five_bytes_then_int3() {
    let code = wildx::jit::compile_add().unwrap();
    assert_eq!(code.len(), ADD_PAGE_LEN);
    assert_eq!(&code.as_slice()[..5], &ADD_I32);
    assert!(code.as_slice()[5..].iter().all(|&b| b == 0xCC));
}

#[test]
fn typed_handles_free_on_drop_and_protect_their_pages_from_the_raw_surface() {
    let code = wildx::jit::compile_add().unwrap();
    let p = code.as_ptr() as *mut u8;
    assert!(wildx::inspect(p).unwrap().held_by_handle);
    assert_eq!(raw::free(p), -1, "raw free of a page a Code owns must be refused");
    assert_eq!(raw::seal(p), -1);
    assert_eq!(code.call((1, 2)), 3);
    drop(code);
    assert_eq!(raw::state(p), None, "dropping Code frees the page");

    let mut page = Page::new(64).unwrap();
    let q = page.as_ptr() as *mut u8;
    assert_eq!(wildx::jit::install_add_i32(q), -1, "raw writes into a held page are refused");
    wildx::jit::install_add(&mut page).unwrap();
    drop(page);
    assert_eq!(raw::state(q), None, "dropping Page frees the page");
}

#[test]
fn into_raw_and_from_raw_bridge_the_surfaces() {
    let mut page = Page::new(64).unwrap();
    wildx::jit::install_add(&mut page).unwrap();
    let p = page.into_raw().as_ptr();
    assert!(!wildx::inspect(p).unwrap().held_by_handle);
    assert_eq!(raw::seal(p), 0, "the raw surface owns it now");
    // SAFETY: p is sealed add code.
    let sealed_as_page = unsafe { Page::from_raw(p) };
    assert_eq!(sealed_as_page.unwrap_err(), Error::WrongState { expected: State::Writable, found: State::Executable });
    // SAFETY: p holds ADD_I32, sealed.
    let code = unsafe { Code::<AddI32>::from_raw(p) }.unwrap();
    assert_eq!(code.call((20, 22)), 42);
    // SAFETY: as above; a second handle to the same page is refused.
    assert_eq!(unsafe { Code::<AddI32>::from_raw(p) }.unwrap_err(), Error::HeldByHandle);
    let back = code.into_raw();
    assert_eq!(back.as_ptr(), p);
    assert_eq!(raw::free(p), 0);
    // SAFETY: p is freed; from_raw must refuse without touching it.
    assert_eq!(unsafe { Code::<AddI32>::from_raw(p) }.unwrap_err(), Error::NotRegistered);
    // SAFETY: null is refused.
    assert_eq!(unsafe { Page::from_raw(std::ptr::null_mut()) }.unwrap_err(), Error::Null);
}

#[test]
fn typed_errors_are_precise() {
    let mut tiny = Page::new(4).unwrap();
    assert_eq!(wildx::jit::install_add(&mut tiny), Err(Error::TooSmall { needed: 5, len: 4 }));
    let p = raw::alloc(4);
    assert_eq!(wildx::jit::install_add_i32(p), -1, "a 4-byte page cannot hold the 5 add bytes");
    assert_eq!(raw::free(p), 0);
}

#[test]
fn typed_signatures_of_several_arities_call_real_code() {
    // mov rax, rdi; add rax, rsi; add rax, rdx; add rax, rcx; add rax, r8; add rax, r9; ret
    let sum6: [u8; 19] = [
        0x48, 0x89, 0xf8, 0x48, 0x01, 0xf0, 0x48, 0x01, 0xd0, 0x48, 0x01, 0xc8, 0x4c, 0x01, 0xc0, 0x4c, 0x01, 0xc8,
        0xc3,
    ];
    let page = Page::with_code(&sum6).unwrap();
    // SAFETY: the bytes sum six u64 arguments in rdi, rsi, rdx, rcx, r8, r9 and return in rax.
    let code = unsafe { page.seal::<extern "sysv64" fn(u64, u64, u64, u64, u64, u64) -> u64>() }.unwrap();
    assert_eq!(code.call((1, 2, 3, 4, 5, 6)), 21);
    // mov eax, 7; ret
    let page = Page::with_code(&[0xb8, 7, 0, 0, 0, 0xc3]).unwrap();
    // SAFETY: returns 7 in eax, takes nothing.
    let seven = unsafe { page.seal::<extern "sysv64" fn() -> u32>() }.unwrap();
    assert_eq!(seven.call(()), 7);
}

#[test]
fn stats_count_what_happened_to_this_tests_pages() {
    // Other tests in this binary run concurrently, so only lower bounds are exact here;
    // tests/quota.rs checks exact deltas with nothing else running.
    let before = wildx::stats();
    let p = wildx::jit::compile_add_i32();
    assert_eq!(raw::seal(p), -1);
    assert_eq!(raw::free(p), 0);
    let after = wildx::stats();
    assert!(after.allocs > before.allocs);
    assert!(after.seals > before.seals);
    assert!(after.frees > before.frees);
    assert!(after.refusals > before.refusals);
    assert!(after.peak_bytes >= 4096);
    assert_eq!(after.quota, wildx::quota());
}
