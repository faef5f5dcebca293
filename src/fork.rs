//! `fork` while other threads use wildx: hooks for `pthread_atfork`.
//!
//! Invariant owned here: between [`atfork_prepare`] and [`atfork_parent`] /
//! [`atfork_child`], the forking thread holds the registry write lock and no page is
//! BUSY, so the child's copy of the registry is consistent (no half-done operation, no
//! reader count of a thread that does not exist there), and the child can use wildx at
//! once.
//!
//! Without the hooks, `fork` copies whatever state other threads left: reader counts of
//! readers that do not exist in the child, a writer's lock, BUSY marks of seals and
//! frees under way. A child forked at such a moment that then calls wildx can wait
//! forever. A child that only calls `execve` (or `_exit`) is unaffected either way.
//!
//! ```
//! // Once, before the first fork (libc is only the example's; wildx needs none):
//! // libc::pthread_atfork(Some(wildx::atfork_prepare), Some(wildx::atfork_parent),
//! //                      Some(wildx::atfork_child));
//! let f: extern "C" fn() = wildx::atfork_prepare;
//! # let _ = f;
//! ```
//!
//! The hooks are safe to call in any order: each acts only for the thread (parent) or
//! process (child) that ran `atfork_prepare`, and does nothing otherwise.
//!
//! This module needs `unsafe` to release and reset the registry lock outside a guard.

#![allow(unsafe_code)]

use core::sync::atomic::{AtomicI32, Ordering};

use crate::page;
use crate::registry::REGISTRY;
use crate::sys;

/// The thread (tid) and process (pid) that ran `atfork_prepare` and holds the registry
/// for the fork, or 0.
static HOLDER_TID: AtomicI32 = AtomicI32::new(0);
static HOLDER_PID: AtomicI32 = AtomicI32::new(0);

/// The `prepare` hook: waits until no seal or free is under way (no page BUSY), then
/// takes and keeps the registry write lock (and wildx's other locks) so that `fork`
/// copies a quiet registry. Every other thread's wildx call waits until
/// [`atfork_parent`] releases it.
pub extern "C" fn atfork_prepare() {
    loop {
        let reg = REGISTRY.write();
        if reg.busy_pages() != 0 {
            drop(reg);
            page::sleep_until_busy_ends(|| REGISTRY.read().busy_pages() != 0);
            continue;
        }
        // Every arena's table too, so no push, publish or retire is half done in the
        // child. The order elsewhere is arena, then registry: here the registry is held
        // first, so the arenas are only tried; if one is busy, everything is let go
        // (its holder may be waiting for the registry) and tried again.
        if !lock_arenas(&reg) {
            drop(reg);
            sys::sched_yield();
            continue;
        }
        // Kept held across the fork; `atfork_parent` / `atfork_child` release it.
        core::mem::forget(reg);
        break;
    }
    crate::jit::orphans_lock_for_fork();
    // Relaxed: only this thread (parent) or its copy (child) reads these while the lock
    // is held.
    HOLDER_TID.store(sys::gettid(), Ordering::Relaxed);
    HOLDER_PID.store(sys::getpid(), Ordering::Relaxed);
}

/// The `parent` hook: releases what [`atfork_prepare`] took. Does nothing unless the
/// calling thread ran `atfork_prepare`.
pub extern "C" fn atfork_parent() {
    if HOLDER_TID.load(Ordering::Relaxed) != sys::gettid() || HOLDER_PID.load(Ordering::Relaxed) != sys::getpid() {
        return;
    }
    HOLDER_TID.store(0, Ordering::Relaxed);
    HOLDER_PID.store(0, Ordering::Relaxed);
    // SAFETY: this thread took the orphan list's lock, every arena's table it did not
    // already hold and the registry write lock in `atfork_prepare` (checked above) and
    // forgot their guards; the registry, still held, keeps the arena list as it was.
    unsafe {
        crate::jit::orphans_unlock_after_fork();
        for span in REGISTRY.data_unguarded().arenas() {
            span.shared.as_ref().release_after_fork(false);
        }
        REGISTRY.unlock_exclusive_unguarded();
    }
}

/// The `child` hook: in the new process, resets the registry lock and wildx's other
/// locks to unlocked with no readers (the other threads do not exist here). Does nothing
/// unless the calling process was forked by a thread inside `atfork_prepare`.
pub extern "C" fn atfork_child() {
    let holder = HOLDER_PID.load(Ordering::Relaxed);
    if holder == 0 || holder == sys::getpid() {
        return;
    }
    HOLDER_TID.store(0, Ordering::Relaxed);
    HOLDER_PID.store(0, Ordering::Relaxed);
    // SAFETY: this is the child of a fork made by the thread that ran `atfork_prepare`
    // (a different pid than the holder's), so it is the only thread, and it holds no
    // guard: its copy of the locks is the parent's holder's, forgotten in prepare.
    unsafe {
        REGISTRY.reset_in_child();
        crate::jit::orphans_reset_in_child();
        for span in REGISTRY.write().arenas() {
            span.shared.as_ref().release_after_fork(true);
        }
    }
    page::reset_sleepers_in_child();
    // A sequence of its own: the child must not place pages where the parent will.
    crate::placement::reseed();
    // In memfd mode: a file of its own, the parent's code forgotten (crate::execmem).
    crate::execmem::settle_fork();
}

/// Tries to lock every arena's table for the fork, holding the registry; on a busy one,
/// releases those taken and returns `false`.
fn lock_arenas(reg: &crate::registry::Registry) -> bool {
    let spans = reg.arenas();
    for (i, span) in spans.iter().enumerate() {
        // SAFETY: a registered arena's state is live while the registry is held.
        if !unsafe { span.shared.as_ref() }.lock_for_fork() {
            for taken in &spans[..i] {
                // SAFETY: this thread ran lock_for_fork on it just above; no guard.
                unsafe { taken.shared.as_ref().release_after_fork(false) };
            }
            return false;
        }
    }
    true
}

#[cfg(feature = "memfd")]
/// In a forked child in memfd mode (see `crate::execmem`): forgets every page of the
/// parent (none is mapped here: views of the file are not inherited), plugging their
/// addresses, and plugs the arenas' views the same way (the arenas themselves refuse
/// everything but their drop, with [`crate::Error::Inherited`]).
pub(crate) fn forget_inherited() {
    let mut reg = REGISTRY.write();
    reg.forget_all_pages(plug);
    for span in reg.arenas() {
        // SAFETY: a registered arena's state is live while the registry is held.
        unsafe { span.shared.as_ref() }.plug_inherited();
    }
}

#[cfg(feature = "memfd")]
/// Maps an inaccessible stand-in at `[addr, addr + len)` where a view of the parent's
/// file was not inherited, so nothing else lands there and a stale call faults. Leaves
/// alone anything mapped there already.
pub(crate) fn plug(addr: usize, len: usize) {
    let _ = crate::placement::fence(addr, len);
}
