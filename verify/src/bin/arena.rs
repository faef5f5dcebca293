//! A code arena in a freestanding static binary, with no heap: push three functions (one
//! calling another by rel32, one reaching a host function through an import slot),
//! publish, call them, verify them, retire one, and drop the arena; the stats must come
//! back to zero.
//!
//! Exit codes: 110 `Arena::new` failed, 111-115 a push, `addr` or import failed, 116
//! publish failed, 117 an entry was refused, 118 a call returned the wrong value, 119
//! verify failed, 120 retire failed or a retired function was still enterable, 121 the
//! stats did not balance, 101 a panic. Each failure also writes one line to stderr.
//!
//! `unsafe` is needed for the typed entries into the pushed code (and by `rt`).

#![no_std]
#![no_main]
#![allow(unsafe_code)]

#[path = "../rt.rs"]
mod rt;

use wildx::Arena;

type Fn1 = extern "sysv64" fn(i64) -> i64;

extern "sysv64" fn host_double(x: i64) -> i64 {
    x * 2
}

fn run() -> i32 {
    let Ok(arena) = Arena::new(1 << 16) else { rt::fail(110, "arena: Arena::new failed\n") };
    // g(x) = x + 1: lea rax, [rdi + 1]; ret
    let Ok(g) = arena.push(&[0x48, 0x8d, 0x47, 0x01, 0xc3]) else { rt::fail(111, "arena: push g failed\n") };
    let Ok(g_at) = arena.addr(g) else { rt::fail(112, "arena: addr of g failed\n") };
    // f(x) = g(x): jmp rel32 g (a tail call)
    let Ok(f) = arena.push_with(5, |at, b| {
        let rel = (g_at as i64 - (at as i64 + 5)) as i32;
        b[0] = 0xe9;
        b[1..].copy_from_slice(&rel.to_le_bytes());
    }) else {
        rt::fail(113, "arena: push f failed\n")
    };
    // h(x) = host_double(x): jmp [rip + disp32] through the import slot
    let Ok(slot) = arena.import(host_double as *const () as usize) else { rt::fail(114, "arena: import failed\n") };
    let Ok(h) = arena.push_with(6, |at, b| {
        let rel = (slot as i64 - (at as i64 + 6)) as i32;
        b[..2].copy_from_slice(&[0xff, 0x25]);
        b[2..].copy_from_slice(&rel.to_le_bytes());
    }) else {
        rt::fail(115, "arena: push h failed\n")
    };
    if arena.publish().is_err() {
        rt::fail(116, "arena: publish failed\n");
    }
    // SAFETY: f, g and h are System V `fn(i64) -> i64` touching no memory but their
    // stack (host_double is a safe Rust function of that type).
    let (Ok(ef), Ok(eh)) = (unsafe { arena.entry::<Fn1>(f) }, unsafe { arena.entry::<Fn1>(h) }) else {
        rt::fail(117, "arena: entry refused\n")
    };
    if ef.call((41,)) != 42 || eh.call((21,)) != 42 {
        rt::fail(118, "arena: a call returned the wrong value\n");
    }
    if arena.verify_all().is_err() || arena.verify(g).is_err() {
        rt::fail(119, "arena: verify failed\n");
    }
    drop(ef);
    // SAFETY: refused before any call.
    if arena.retire(f).is_err() || unsafe { arena.entry::<Fn1>(f) }.is_ok() {
        rt::fail(120, "arena: retire failed or the retired function was still enterable\n");
    }
    drop(eh);
    let live = wildx::stats();
    drop(arena);
    let after = wildx::stats();
    if live.arenas != 1
        || live.arena_functions != 2
        || after.arenas != 0
        || after.arena_bytes != 0
        || after.live_bytes != 0
    {
        rt::fail(121, "arena: the stats did not balance\n");
    }
    0
}
