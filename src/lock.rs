//! A sharded, writer-preferring spin reader-writer lock for the registry.
//!
//! Invariant owned here: while a [`WriteGuard`] exists no [`ReadGuard`] or other
//! `WriteGuard` exists, and any number of `ReadGuard`s may exist otherwise.
//!
//! Why not `spin::RwLock`: its readers all increment one counter, so two threads making
//! verified calls bounce that cache line on every lock and unlock, which costs about as
//! much as hashing a 64-byte page and kept two threads at ~1.1x the throughput of one.
//! Here each reader increments a counter in one of [`SHARDS`] cache-line-padded slots
//! chosen from its stack address (threads' stacks are megabytes apart), so readers on
//! different threads touch different lines. Writers (alloc, seal and free, each for a few
//! table updates; their syscalls run outside the lock) are serialised by a `spin::Mutex`, raise a flag, and wait for every slot to
//! drain; readers that see the flag back off, so writers are not starved.
//!
//! This module needs `unsafe` to hand out references into the `UnsafeCell` it guards.

#![allow(unsafe_code)]

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Reader slots. More than the cores of most machines running JITs; a collision only
/// costs contention, never correctness.
pub(crate) const SHARDS: usize = 16;

/// One reader counter on its own pair of cache lines (the adjacent-line prefetcher
/// pulls lines in pairs).
#[repr(align(128))]
struct Slot(AtomicUsize);

/// The reader counters of one lock. A separate, all-zero static, so that it lands in
/// `.bss` and costs a freestanding binary no file bytes.
pub(crate) struct ReaderSlots([Slot; SHARDS]);

impl ReaderSlots {
    /// Counters with no readers.
    pub(crate) const fn new() -> Self {
        ReaderSlots([const { Slot(AtomicUsize::new(0)) }; SHARDS])
    }
}

/// The lock. See the module docs.
pub(crate) struct ShardedRwLock<T> {
    writer: spin::Mutex<()>,
    writing: AtomicBool,
    readers: &'static ReaderSlots,
    data: UnsafeCell<T>,
}

// SAFETY: the lock hands out `&T` to many threads at once (needs `T: Sync`) and `&mut T`
// to one thread at a time, which may then move values out or in (needs `T: Send`).
unsafe impl<T: Send + Sync> Sync for ShardedRwLock<T> {}
// SAFETY: owning the lock is owning the `T`.
unsafe impl<T: Send> Send for ShardedRwLock<T> {}

/// The slot for the calling thread: a hash of its stack address at 2 MiB granularity.
#[inline]
fn shard() -> usize {
    let marker = 0u8;
    let addr = core::ptr::addr_of!(marker) as usize;
    ((addr >> 21).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (usize::BITS - SHARDS.trailing_zeros())) % SHARDS
}

impl<T> ShardedRwLock<T> {
    /// A new, unlocked lock around `data`, counting readers in `readers` (which no
    /// other lock may use).
    pub(crate) const fn new(data: T, readers: &'static ReaderSlots) -> Self {
        ShardedRwLock {
            writer: spin::Mutex::new(()),
            writing: AtomicBool::new(false),
            readers,
            data: UnsafeCell::new(data),
        }
    }

    /// Shared access; spins while a writer holds or waits for the lock.
    #[inline]
    pub(crate) fn read(&self) -> ReadGuard<'_, T> {
        let slot = &self.readers.0[shard()].0;
        loop {
            // SeqCst on both sides of the Dekker-style handshake with `write`: either this
            // increment is seen by the writer's scan, or this load sees `writing`.
            slot.fetch_add(1, Ordering::SeqCst);
            if !self.writing.load(Ordering::SeqCst) {
                return ReadGuard { lock: self, slot };
            }
            // SeqCst, not just Release: nothing was read, but under Miri's weak-memory
            // emulation a Release decrement here let the writer's scan miss the order of
            // this slot's updates (a reported race); on x86-64 both are one `lock xadd`.
            slot.fetch_sub(1, Ordering::SeqCst);
            while self.writing.load(Ordering::Relaxed) {
                core::hint::spin_loop();
            }
        }
    }

    /// Exclusive access; spins until every reader has left.
    pub(crate) fn write(&self) -> WriteGuard<'_, T> {
        let writer = self.writer.lock();
        // SeqCst: pairs with the readers' increment-then-check (see `read`).
        self.writing.store(true, Ordering::SeqCst);
        for slot in &self.readers.0 {
            // SeqCst (acquire): seeing 0 synchronises with the last reader's Release
            // decrement, so its reads happen before our writes.
            while slot.0.load(Ordering::SeqCst) != 0 {
                core::hint::spin_loop();
            }
        }
        WriteGuard { lock: self, _writer: writer }
    }
}

/// Shared access to the data; dropping it leaves the lock.
pub(crate) struct ReadGuard<'a, T> {
    lock: &'a ShardedRwLock<T>,
    slot: &'a AtomicUsize,
}

impl<T> Deref for ReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard's count in `slot` keeps writers out (see `write`) until
        // the guard drops, and readers only get `&T`.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> Drop for ReadGuard<'_, T> {
    fn drop(&mut self) {
        // SeqCst (includes Release): our reads of the data happen before a writer that
        // sees the count fall. SeqCst to stay in the single total order the handshake in
        // `read`/`write` relies on (Miri's weak-memory mode reports a race with Release);
        // the same `lock xadd` on x86-64.
        self.slot.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Exclusive access to the data; dropping it unlocks.
pub(crate) struct WriteGuard<'a, T> {
    lock: &'a ShardedRwLock<T>,
    _writer: spin::MutexGuard<'a, ()>,
}

impl<T> Deref for WriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: `write` waited until no reader was left and holds the writer mutex, so
        // this guard is the only access until it drops.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for WriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference from the guard.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for WriteGuard<'_, T> {
    fn drop(&mut self) {
        // Release: our writes happen before any reader that then sees `writing` false
        // (its SeqCst load acquires). The writer mutex is released after this field.
        self.lock.writing.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    #[test]
    fn writers_exclude_readers_and_each_other() {
        static SLOTS: ReaderSlots = ReaderSlots::new();
        static LOCK: ShardedRwLock<(u64, u64)> = ShardedRwLock::new((0, 0), &SLOTS);
        // Miri interprets every step: a few hundred operations still interleave.
        const N: u64 = if cfg!(miri) { 50 } else { 20_000 };
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..N {
                        let mut w = LOCK.write();
                        w.0 += 1;
                        w.1 += 1;
                    }
                });
                s.spawn(|| {
                    for _ in 0..N {
                        let r = LOCK.read();
                        // A torn view would show a writer in the middle of its update.
                        assert_eq!(r.0, r.1);
                    }
                });
            }
        });
        assert_eq!(*LOCK.read(), (4 * N, 4 * N));
    }

    #[test]
    // Miri's thread stacks are not laid out as the kernel's (megabytes apart).
    #[cfg_attr(miri, ignore)]
    fn threads_spread_over_shards() {
        // Threads alive at the same time (a finished thread's stack may be reused).
        let barrier = std::sync::Barrier::new(8);
        let shards: Vec<usize> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        shard()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let distinct = shards.iter().collect::<std::collections::BTreeSet<_>>().len();
        assert!(distinct >= 4, "8 live threads share too few shards: {shards:?}");
    }

    #[test]
    fn readers_share() {
        static SLOTS: ReaderSlots = ReaderSlots::new();
        let lock = ShardedRwLock::new(5, &SLOTS);
        let a = lock.read();
        let b = lock.read();
        assert_eq!(*a + *b, 10);
    }
}
