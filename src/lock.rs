//! The locks: a sharded, writer-preferring reader-writer lock for the registry, and a
//! small mutex for state of wildx's own (the arena's tables, lists). Both spin briefly
//! and then sleep on a futex.
//!
//! Invariants owned here: while a [`WriteGuard`] exists no [`ReadGuard`] or other
//! `WriteGuard` exists, and any number of `ReadGuard`s may exist otherwise; a
//! [`MutexGuard`] is the only access to its data; and no wait spins for more than
//! [`SPIN_ROUNDS`] rounds before it sleeps in the kernel, so a waiter with a real-time
//! priority never starves a preempted holder on the same CPU.
//!
//! Why not `spin::RwLock`: its readers all increment one counter, so two threads making
//! verified calls bounce that cache line on every lock and unlock, which costs about as
//! much as hashing a 64-byte page and kept two threads at ~1.1x the throughput of one.
//! Here each reader increments a counter in one of [`SHARDS`] cache-line-padded slots
//! chosen from its stack address (threads' stacks are megabytes apart), so readers on
//! different threads touch different lines. Writers (alloc, seal and free, each for a
//! few table updates; their syscalls run outside the lock) take one word from idle to
//! writing with a compare-exchange, which both excludes other writers and tells readers
//! to back off, then wait for every slot to drain; readers that see the word raised back
//! off, so writers are not starved. An uncontended write lock and unlock are two atomic
//! read-modify-writes (a page cycle takes the lock six times; a separate writer mutex
//! would double that).
//!
//! Why sleep at all: a pure spin lock is fine while every thread runs, but a SCHED_FIFO
//! waiter that preempted the holder on the holder's CPU spins until the kernel's
//! real-time throttling steps in (a full second here). After a short spin every wait
//! here sleeps on a futex word that the releasing side wakes; the releasing side issues
//! the wake syscall only when someone sleeps, so uncontended paths stay syscall-free.
//!
//! This module needs `unsafe` to hand out references into the `UnsafeCell`s it guards.

#![allow(unsafe_code)]

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use crate::sys;

/// Reader slots. More than the cores of most machines running JITs; a collision only
/// costs contention, never correctness.
pub(crate) const SHARDS: usize = 16;
// One bit per slot in `Used`.
const _: () = assert!(SHARDS <= 32);

/// How many `pause` rounds a wait spins before it sleeps on a futex: a few
/// microseconds, longer than the registry's critical sections (a few table updates).
pub(crate) const SPIN_ROUNDS: u32 = 200;

/// One reader counter on its own pair of cache lines (the adjacent-line prefetcher
/// pulls lines in pairs).
#[repr(align(128))]
struct Slot(AtomicUsize);

/// Which slots have ever had a reader: bit `i` for slot `i`. On a line of its own, read
/// by every reader and writer and written once per slot, so it stays shared in every
/// cache and costs a reader one load of a clean line.
#[repr(align(128))]
struct Used(AtomicU32);

/// The reader counters of one lock. A separate, all-zero static, so that it lands in
/// `.bss` and costs a freestanding binary no file bytes.
pub(crate) struct ReaderSlots {
    used: Used,
    slots: [Slot; SHARDS],
}

impl ReaderSlots {
    /// Counters with no readers.
    pub(crate) const fn new() -> Self {
        ReaderSlots { used: Used(AtomicU32::new(0)), slots: [const { Slot(AtomicUsize::new(0)) }; SHARDS] }
    }
}

/// `writing`: no writer.
const IDLE: u32 = 0;
/// `writing`: a writer holds the lock or waits for readers to drain.
const WRITING: u32 = 1;
/// `writing`: as `WRITING`, and at least one reader or writer may sleep until it ends.
const WRITING_WITH_SLEEPERS: u32 = 2;

/// The lock. See the module docs.
pub(crate) struct ShardedRwLock<T> {
    /// [`IDLE`], [`WRITING`] or [`WRITING_WITH_SLEEPERS`]: raised by the one writer that
    /// holds the lock; readers and waiting writers sleep on it.
    writing: AtomicU32,
    /// Bumped by a reader leaving while a writer sleeps waiting for the slots to drain;
    /// the writer sleeps on it.
    drained: AtomicU32,
    /// Non-zero while a writer sleeps on `drained`.
    writer_sleeps: AtomicU32,
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
            writing: AtomicU32::new(IDLE),
            drained: AtomicU32::new(0),
            writer_sleeps: AtomicU32::new(0),
            readers,
            data: UnsafeCell::new(data),
        }
    }

    /// Shared access; waits (spins briefly, then sleeps) while a writer holds or waits
    /// for the lock.
    #[inline]
    pub(crate) fn read(&self) -> ReadGuard<'_, T> {
        loop {
            if let Some(guard) = self.try_read() {
                return guard;
            }
            self.wait_while_writing();
        }
    }

    /// Shared access if no writer holds or waits for the lock; never waits.
    #[inline]
    pub(crate) fn try_read(&self) -> Option<ReadGuard<'_, T>> {
        let index = shard();
        let slot = &self.readers.slots[index].0;
        // The slot's bit in `used` is set before the first increment of the slot, so a
        // writer that scans only the slots `used` names still sees every reader. SeqCst
        // on this load (a plain load on x86-64) and on the set: the bit, whoever set it,
        // precedes our increment in the single SeqCst order, hence the writer's load of
        // `used` (see `write`). Bits are never cleared while threads run.
        let bit = 1 << index;
        if self.readers.used.0.load(Ordering::SeqCst) & bit == 0 {
            self.readers.used.0.fetch_or(bit, Ordering::SeqCst);
        }
        // SeqCst on both sides of the Dekker-style handshake with `write`: either this
        // increment is seen by the writer's scan, or this load sees `writing`.
        slot.fetch_add(1, Ordering::SeqCst);
        if self.writing.load(Ordering::SeqCst) == IDLE {
            return Some(ReadGuard { lock: self, slot });
        }
        // Nothing was read; give the writer its way (and wake it if it sleeps).
        self.leave(slot);
        None
    }

    /// Takes a reader's count back out of `slot` and wakes a writer sleeping on the
    /// drain.
    #[inline]
    fn leave(&self, slot: &AtomicUsize) {
        // SeqCst, not just Release: under Miri's weak-memory emulation a Release
        // decrement let a writer's scan miss the order of this slot's updates (a reported
        // race); on x86-64 both are one `lock xadd`. It also orders the decrement before
        // the `writer_sleeps` load in the handshake with `wait_for_drain`.
        slot.fetch_sub(1, Ordering::SeqCst);
        if self.writer_sleeps.load(Ordering::SeqCst) != 0 {
            // SeqCst: the writer re-reads the slot after reading this counter.
            self.drained.fetch_add(1, Ordering::SeqCst);
            sys::futex_wake(&self.drained, 1);
        }
    }

    /// Waits until no writer holds or waits for the lock: spins, then sleeps on
    /// `writing` after marking that a reader sleeps there.
    #[cold]
    fn wait_while_writing(&self) {
        for _ in 0..SPIN_ROUNDS {
            // Relaxed: only a hint; `try_read` re-checks with SeqCst.
            if self.writing.load(Ordering::Relaxed) == IDLE {
                return;
            }
            core::hint::spin_loop();
        }
        loop {
            // Relaxed is enough for these: the futex syscall re-reads the word itself, and
            // the caller re-checks with SeqCst in `try_read`.
            match self.writing.load(Ordering::Relaxed) {
                IDLE => return,
                WRITING
                    if self
                        .writing
                        .compare_exchange(WRITING, WRITING_WITH_SLEEPERS, Ordering::Relaxed, Ordering::Relaxed)
                        .is_err() =>
                {
                    continue;
                }
                _ => {}
            }
            sys::futex_wait(&self.writing, WRITING_WITH_SLEEPERS);
        }
    }

    /// Exclusive access; waits (spins briefly, then sleeps) until no other writer holds
    /// the lock, then until every reader has left.
    #[inline]
    pub(crate) fn write(&self) -> WriteGuard<'_, T> {
        // SeqCst: the compare-exchange pairs with the readers' increment-then-check (see
        // `try_read`), and acquires what the last writer released.
        if self.writing.compare_exchange(IDLE, WRITING, Ordering::SeqCst, Ordering::Relaxed).is_err() {
            self.write_contended();
        }
        // Only the slots that ever had a reader can have one now (see `try_read`): in a
        // process where one or two threads read, the scan reads one or two lines, not
        // all of them (each a likely cache miss after a syscall). SeqCst: after our
        // compare-exchange, so a reader whose check missed it has its bit set before.
        let mut used = self.readers.used.0.load(Ordering::SeqCst);
        while used != 0 {
            let index = used.trailing_zeros() as usize;
            used &= used - 1;
            self.wait_for_drain(&self.readers.slots[index].0);
        }
        WriteGuard { lock: self }
    }

    /// Takes the `writing` word from [`IDLE`] while another writer holds it: the same
    /// three-state protocol as [`Mutex`] (see [`take_contended`]), SeqCst as in `write`.
    #[cold]
    fn write_contended(&self) {
        take_contended(&self.writing, Ordering::SeqCst);
    }

    /// Waits until `slot` is zero. SeqCst loads: seeing 0 synchronises with the last
    /// reader's decrement, so its reads happen before our writes.
    #[inline]
    fn wait_for_drain(&self, slot: &AtomicUsize) {
        let mut rounds = 0;
        while slot.load(Ordering::SeqCst) != 0 {
            if rounds < SPIN_ROUNDS {
                rounds += 1;
                core::hint::spin_loop();
                continue;
            }
            // Announce the sleep, then read the wake counter, then re-check the slot: a
            // reader that leaves after our re-check sees `writer_sleeps` and bumps the
            // counter, so the futex wait returns at once or is woken (all SeqCst).
            self.writer_sleeps.store(1, Ordering::SeqCst);
            let seen = self.drained.load(Ordering::SeqCst);
            if slot.load(Ordering::SeqCst) != 0 {
                sys::futex_wait(&self.drained, seen);
            }
            self.writer_sleeps.store(0, Ordering::SeqCst);
        }
    }

    /// Releases a write lock whose guard was forgotten (`core::mem::forget`; the `fork`
    /// hooks lock in one function and unlock in another).
    ///
    /// # Safety
    /// The calling thread took the lock with [`ShardedRwLock::write`] and forgot the
    /// guard; no guard refers to it.
    pub(crate) unsafe fn unlock_exclusive_unguarded(&self) {
        self.end_write();
    }

    /// The data, read by the thread that holds the write lock with its guard forgotten
    /// (the `fork` hooks).
    ///
    /// # Safety
    /// The calling thread holds the write lock (guard forgotten) for as long as the
    /// reference is used, and makes no other reference to the data meanwhile.
    pub(crate) unsafe fn data_unguarded(&self) -> &T {
        // SAFETY: the write lock is held by this thread (see # Safety): nobody else
        // reads or writes the data.
        unsafe { &*self.data.get() }
    }

    /// Resets the lock to unlocked, with no readers, whatever state it was in: for the
    /// child of a `fork`, which has one thread, while counts and flags of threads that
    /// do not exist there were copied from the parent.
    ///
    /// # Safety
    /// Only the calling thread may exist (the child right after `fork`), and it must
    /// hold no guard of this lock.
    pub(crate) unsafe fn reset_in_child(&self) {
        for slot in &self.readers.slots {
            // Relaxed: one thread exists.
            slot.0.store(0, Ordering::Relaxed);
        }
        // Relaxed: as above. No slot has a reader now.
        self.readers.used.0.store(0, Ordering::Relaxed);
        self.writing.store(IDLE, Ordering::Relaxed);
        self.writer_sleeps.store(0, Ordering::Relaxed);
    }

    fn end_write(&self) {
        // SeqCst (includes Release): our writes happen before any reader that then sees
        // `writing` IDLE (its SeqCst load acquires).
        if self.writing.swap(IDLE, Ordering::SeqCst) == WRITING_WITH_SLEEPERS {
            sys::futex_wake(&self.writing, i32::MAX as u32);
        }
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
        // Our reads of the data happen before a writer that sees the count fall.
        self.lock.leave(self.slot);
    }
}

/// Exclusive access to the data; dropping it unlocks.
pub(crate) struct WriteGuard<'a, T> {
    lock: &'a ShardedRwLock<T>,
}

impl<T> Deref for WriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: `write` raised `writing` from IDLE (no other writer can until it drops)
        // and waited until no reader was left, so this guard is the only access.
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
        self.lock.end_write();
    }
}

// The registry lock's `writing` word and a mutex's state follow one protocol.
const _: () = assert!(IDLE == UNLOCKED && WRITING == LOCKED && WRITING_WITH_SLEEPERS == CONTENDED);

/// Takes a three-state futex word ([`UNLOCKED`], [`LOCKED`], [`CONTENDED`]: held and
/// someone may sleep) after a first compare-exchange from `UNLOCKED` failed: spins for
/// [`SPIN_ROUNDS`], then sleeps on it. From the sleeping phase on the word says
/// `CONTENDED` whenever we hold or wait (Drepper's "Futexes Are Tricky"), so the release
/// that lets us in, and our own release, always wake whoever else sleeps. `order` is the
/// success ordering of the taking read-modify-write.
#[cold]
fn take_contended(word: &AtomicU32, order: Ordering) {
    for _ in 0..SPIN_ROUNDS {
        // Relaxed load: a hint; the compare-exchange decides, with `order`.
        if word.load(Ordering::Relaxed) == UNLOCKED
            && word.compare_exchange(UNLOCKED, LOCKED, order, Ordering::Relaxed).is_ok()
        {
            return;
        }
        core::hint::spin_loop();
    }
    while word.swap(CONTENDED, order) != UNLOCKED {
        sys::futex_wait(word, CONTENDED);
    }
}

/// `Mutex::state`: unlocked.
const UNLOCKED: u32 = 0;
/// `Mutex::state`: locked, nobody sleeps.
const LOCKED: u32 = 1;
/// `Mutex::state`: locked, and someone may sleep on the word.
const CONTENDED: u32 = 2;

/// A small mutual-exclusion lock: an atomic word that waiters spin on for
/// [`SPIN_ROUNDS`] rounds and then sleep on with `futex` (the three-state futex mutex of
/// Drepper's "Futexes Are Tricky"). Uncontended lock and unlock are one atomic each and
/// no syscall. `const`-constructible, no allocation, usable in a `static`.
///
/// For state of wildx's own that must never be held across a page's syscalls by
/// another thread for long (the arena's tables, free lists).
pub(crate) struct Mutex<T> {
    state: AtomicU32,
    data: UnsafeCell<T>,
}

// SAFETY: the mutex hands `&mut T` to one thread at a time; `T: Send` lets it move.
unsafe impl<T: Send> Sync for Mutex<T> {}
// SAFETY: owning the mutex is owning the `T`.
unsafe impl<T: Send> Send for Mutex<T> {}

impl<T> Mutex<T> {
    /// An unlocked mutex around `data`.
    pub(crate) const fn new(data: T) -> Self {
        Mutex { state: AtomicU32::new(UNLOCKED), data: UnsafeCell::new(data) }
    }

    /// Locks, spinning briefly and then sleeping until the holder unlocks.
    #[inline]
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        // Acquire: the holder's writes (released by its unlock) happen before ours.
        if self.state.compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed).is_err() {
            self.lock_contended();
        }
        MutexGuard { mutex: self }
    }

    /// Locks if nobody holds the mutex; never waits.
    #[inline]
    #[cfg_attr(not(test), allow(dead_code))] // for the arena's signal-safe paths
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        // Acquire: as in `lock`.
        self.state
            .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| MutexGuard { mutex: self })
    }

    #[cold]
    fn lock_contended(&self) {
        // Acquire: as in `lock`.
        take_contended(&self.state, Ordering::Acquire);
    }

    /// Unlocks a mutex whose guard was forgotten.
    ///
    /// # Safety
    /// The calling thread locked the mutex and forgot the guard; nobody else uses it as
    /// locked by them.
    pub(crate) unsafe fn unlock_unguarded(&self) {
        // Release: our writes happen before the next holder's Acquire.
        if self.state.swap(UNLOCKED, Ordering::Release) == CONTENDED {
            sys::futex_wake(&self.state, 1);
        }
    }

    /// Forces the mutex unlocked (the child of a `fork`: a holder copied from the parent
    /// does not exist there).
    ///
    /// # Safety
    /// Only the calling thread may exist, and it holds no guard of this mutex.
    pub(crate) unsafe fn reset_in_child(&self) {
        // Relaxed: one thread exists.
        self.state.store(UNLOCKED, Ordering::Relaxed);
    }
}

/// Exclusive access to a [`Mutex`]'s data; dropping it unlocks.
pub(crate) struct MutexGuard<'a, T> {
    mutex: &'a Mutex<T>,
}

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while its thread holds the mutex.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only reference.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: this guard's thread holds the mutex; the guard is going away.
        unsafe { self.mutex.unlock_unguarded() };
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
    fn a_reader_on_a_slot_never_used_before_is_seen_by_a_racing_writer() {
        // Each round starts with a fresh lock, so the reader's first `read` sets its
        // slot's bit in `used` while the writer may be scanning it: the race the mask
        // adds. A writer that missed the reader would update the pair while the reader
        // looks at it, and the reader would see it torn.
        const ROUNDS: usize = if cfg!(miri) { 5 } else { 2_000 };
        static FRESH: [ReaderSlots; ROUNDS] = [const { ReaderSlots::new() }; ROUNDS];
        for slots in &FRESH {
            let lock = &ShardedRwLock::new((0u64, 0u64), slots);
            let start = std::sync::Barrier::new(2);
            std::thread::scope(|s| {
                s.spawn(|| {
                    start.wait();
                    for _ in 0..20 {
                        let r = lock.read();
                        let first = r.0;
                        for _ in 0..50 {
                            core::hint::spin_loop();
                        }
                        assert_eq!(first, r.1, "a writer ran while a reader held the lock");
                    }
                });
                s.spawn(|| {
                    start.wait();
                    for _ in 0..20 {
                        let mut w = lock.write();
                        w.0 += 1;
                        for _ in 0..50 {
                            core::hint::spin_loop();
                        }
                        w.1 += 1;
                    }
                });
            });
        }
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

    /// Runs test `name` of this (unit-test) binary in a child process with `env` set
    /// and returns whether it passed, killing it after `deadline` (a hang fails).
    /// Pins the calling thread (and the threads it creates later) to CPU 0.
    fn pin_to_cpu0() {
        // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_setaffinity reads it.
        unsafe {
            let mut set: libc::cpu_set_t = core::mem::zeroed();
            libc::CPU_SET(0, &mut set);
            assert_eq!(libc::sched_setaffinity(0, core::mem::size_of_val(&set), &set), 0);
        }
    }

    /// Makes the calling thread SCHED_FIFO priority 1.
    fn become_fifo() {
        let param = libc::sched_param { sched_priority: 1 };
        // SAFETY: sets the calling thread's policy from a live sched_param.
        let r = unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) };
        assert_eq!(r, 0, "SCHED_FIFO needs CAP_SYS_NICE or RLIMIT_RTPRIO");
    }

    /// Burns the CPU for `ms` milliseconds (a holder that is busy, not asleep).
    fn busy_for(ms: u64) {
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(ms) {
            core::hint::spin_loop();
        }
    }

    /// A SCHED_FIFO waiter that preempts the holder of a lock on the holder's only CPU:
    /// with a pure spin it would spin until the kernel's RT throttling (about 950 ms
    /// here) lets the holder run; here it sleeps on the futex after a short spin, the
    /// holder finishes its 20 ms and unlocks, and the waiter gets the lock. The child
    /// asserts the waiter's wait stayed far under the throttling period.
    #[test]
    #[cfg_attr(miri, ignore)]
    fn fifo_waiter_behind_a_preempted_holder_sleeps() {
        if !crate::test_support::in_child_alone("lock::tests::fifo_waiter_behind_a_preempted_holder_sleeps") {
            return;
        }
        static MUTEX: Mutex<u64> = Mutex::new(0);
        static SLOTS: ReaderSlots = ReaderSlots::new();
        static RW: ShardedRwLock<u64> = ShardedRwLock::new(0, &SLOTS);
        static HELD: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
        pin_to_cpu0();
        // Four holders in turn: the mutex, a reader of the rw lock (the waiter
        // writes), a writer of the rw lock (the waiter reads), a writer of the rw lock
        // (the waiter writes too).
        for case in 0..4u32 {
            HELD.store(0, Ordering::SeqCst);
            let waiter = std::thread::spawn(move || {
                become_fifo();
                while HELD.load(Ordering::SeqCst) == 0 {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                // The holder is inside its 20 ms now and we preempted it.
                let start = std::time::Instant::now();
                match case {
                    0 => *MUTEX.lock() += 1,
                    1 | 3 => *RW.write() += 1,
                    _ => drop(RW.read()),
                }
                start.elapsed()
            });
            let holder = std::thread::spawn(move || match case {
                0 => {
                    let _guard = MUTEX.lock();
                    HELD.store(1, Ordering::SeqCst);
                    busy_for(20);
                }
                1 => {
                    let _guard = RW.read();
                    HELD.store(1, Ordering::SeqCst);
                    busy_for(20);
                }
                _ => {
                    let _guard = RW.write();
                    HELD.store(1, Ordering::SeqCst);
                    busy_for(20);
                }
            });
            holder.join().unwrap();
            let waited = waiter.join().unwrap();
            std::println!("case {case}: the FIFO waiter waited {waited:?}");
            assert!(waited < std::time::Duration::from_millis(400), "case {case}: waited {waited:?}");
        }
    }

    #[test]
    fn mutex_excludes_and_try_lock_fails_while_held() {
        static MUTEX: Mutex<(u64, u64)> = Mutex::new((0, 0));
        const N: u64 = if cfg!(miri) { 50 } else { 20_000 };
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..N {
                        let mut g = MUTEX.lock();
                        g.0 += 1;
                        g.1 += 1;
                        assert_eq!(g.0, g.1);
                    }
                });
            }
        });
        let held = MUTEX.lock();
        assert_eq!(*held, (4 * N, 4 * N));
        assert!(MUTEX.try_lock().is_none());
        drop(held);
        assert!(MUTEX.try_lock().is_some());
    }
}
