//! A reference model of wildx's contract, and a harness that runs each operation against
//! both the model and the real library and compares everything observable: return codes,
//! typed errors, states, seal hashes, the quota, every `stats()` counter, the bytes a
//! call computes, and (every few operations) `/proc/self/maps`. Code arenas are
//! modelled too ([`ModelArena`]): where each push lands, which pages are committed
//! (ahead, and exactly when the quota has no room), published, released, what every
//! function hashes to and returns, and how they share the quota with pages.
//!
//! The model is plain data and plain rules taken from the contract (`docs/contract.md`),
//! written without looking
//! at how `src/page.rs` does it: its own FNV-1a, its own quota arithmetic, its own idea of
//! which pointer is which page. The kernel chooses addresses, so the model takes the
//! address an allocation returned as an input and only checks it is plausible (page
//! aligned, overlapping no live page).
//!
//! Used by `tests/model.rs` (operations from proptest strategies) and by the cargo-fuzz
//! target in `fuzz/` (operations decoded from the fuzzer's bytes with [`Op::decode`]).
//! The registry is process-wide: a [`Harness`] assumes it is the only user of wildx in
//! its process while it lives (its process runs nothing else, or a lock says so).
//!
//! This module needs `unsafe` to do what a JIT does with the raw surface: write through
//! page pointers the model says are WRITABLE and owned by no handle, call sealed add
//! pages, take pages into typed handles (`Page::from_raw`, `Code::from_raw`), and unmap
//! the foreign mapping it made itself; for arenas, to take entries on generated
//! functions and call them, keep entries alive across operations (their borrow of the
//! boxed arena extended), and read pending bytes back. Each block says which model fact
//! makes it sound.

#![allow(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::ptr::NonNull;

/// Set by a test that put the process in memfd mode (`wildx::use_memfd`) before the
/// model ran: the mode the stats must show.
pub static MEMFD_MODE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

use wildx::jit::{ADD_I32, ADD_PAGE_LEN, AddI32};
use wildx::{Arena, Code, DEFAULT_QUOTA, Entry, Error, FnId, Page, State, Stats};

use crate::common::{Maps, Perms, RawMaps};

/// The page size wildx maps in.
pub const PAGE: usize = 4096;

/// The largest length whose rounding to pages stays within `isize::MAX`.
pub const LARGEST_ROUNDABLE: usize = isize::MAX as usize - (PAGE - 1);

/// FNV-1a 64, written out again so the model does not trust `wildx::fnv1a64`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// `len` in whole pages, or `None` past `isize::MAX`.
pub fn pages_for(len: usize) -> Option<usize> {
    if len > LARGEST_ROUNDABLE { None } else { Some(len.div_ceil(PAGE) * PAGE) }
}

// ---------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------

/// A length to allocate: the edges of the contract, and a free choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// 0: refused.
    Zero,
    /// 1 byte.
    One,
    /// 4 bytes: one too few for the add code.
    Four,
    /// 5 bytes: exactly the add code.
    Five,
    /// 4095.
    PageMinusOne,
    /// 4096.
    Page,
    /// 4097: two pages mapped.
    PagePlusOne,
    /// Any length from 1 to 3 pages.
    Small(u16),
    /// `(n % 16 + 1) * 64 KiB`: up to 1 MiB.
    Large(u8),
    /// 1 TiB: always over any quota the model sets.
    Huge,
    /// The largest length that still rounds: over the quota.
    LargestRoundable,
    /// One more: rounding overflows.
    FirstOverflow,
    /// `usize::MAX`.
    Max,
}

impl Size {
    /// The length in bytes.
    pub fn bytes(self) -> usize {
        match self {
            Size::Zero => 0,
            Size::One => 1,
            Size::Four => 4,
            Size::Five => 5,
            Size::PageMinusOne => PAGE - 1,
            Size::Page => PAGE,
            Size::PagePlusOne => PAGE + 1,
            Size::Small(n) => usize::from(n) % (3 * PAGE) + 1,
            Size::Large(n) => (usize::from(n) % 16 + 1) << 16,
            Size::Huge => 1 << 40,
            Size::LargestRoundable => LARGEST_ROUNDABLE,
            Size::FirstOverflow => LARGEST_ROUNDABLE + 1,
            Size::Max => usize::MAX,
        }
    }
}

/// An offset added to a page's start to make an interior (or neighbouring) pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offset {
    /// +1.
    One,
    /// +5: just past the add code.
    Five,
    /// +4095: the last byte of the first page.
    LastOfPage,
    /// +4096: the second page of a long mapping, or the next mapping.
    NextPage,
    /// +8192.
    TwoPages,
}

impl Offset {
    /// The offset in bytes.
    pub fn bytes(self) -> usize {
        match self {
            Offset::One => 1,
            Offset::Five => 5,
            Offset::LastOfPage => PAGE - 1,
            Offset::NextPage => PAGE,
            Offset::TwoPages => 2 * PAGE,
        }
    }
}

/// Which pointer an operation is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The `n`-th most recent page start this run has seen (0 = the newest), live or
    /// freed (a freed address may have been handed out again: the model goes by
    /// address, as the library must).
    Recent(u8),
    /// A recent page's start plus an offset: interior, or a neighbour's start.
    Interior(u8, Offset),
    /// Null.
    Null,
    /// A local variable of the harness.
    Stack,
    /// A heap allocation of the harness.
    Heap,
    /// A static.
    Static,
    /// The start of a page-aligned anonymous mapping wildx did not make.
    ForeignMap,
    /// A page-aligned kernel-half address.
    Kernel,
}

/// A quota to set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quota {
    /// `n` pages (0 refuses everything).
    Pages(u8),
    /// wildx's default, 256 MiB.
    Default,
    /// Exactly the bytes mapped now: the next allocation is refused.
    Live,
    /// The bytes mapped now plus `n` pages.
    LivePlus(u8),
}

/// One step of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `raw::alloc`.
    Alloc(Size),
    /// `Page::new` (the page is then held by a typed handle).
    AllocTyped(Size),
    /// `jit::compile_add_i32`.
    CompileAdd,
    /// `jit::compile_add` (typed).
    CompileAddTyped,
    /// `jit::install_add_i32`.
    Install(Target),
    /// The caller writes `len` bytes of `byte` at `offset` into a page the model says is
    /// WRITABLE (through the pointer, or the handle's slice if a `Page` holds it);
    /// nothing otherwise.
    Write {
        /// The page.
        target: Target,
        /// Where (modulo the page's length).
        offset: u16,
        /// How many bytes (clipped to the page).
        len: u8,
        /// The value.
        byte: u8,
    },
    /// `raw::seal`.
    Seal(Target),
    /// `Page::seal::<AddI32>` on the handle holding the page (after writing the add code
    /// through it), if a `Page` holds it.
    SealTyped(Target),
    /// Calls the page as `add(a, b)` if the model says it is sealed, intact add code.
    Call {
        /// The page.
        target: Target,
        /// First argument.
        a: i32,
        /// Second argument.
        b: i32,
    },
    /// `raw::verify` (and `Code::verify` if a `Code` holds the page).
    Verify(Target),
    /// Overwrites one byte of a sealed page through `/proc/self/mem` (which ignores page
    /// protection), as an attacker or a stray debugger would.
    Tamper {
        /// The page.
        target: Target,
        /// Where (modulo the mapped length: may hit the int3 tail the hash does not cover).
        offset: u16,
        /// The new value.
        byte: u8,
    },
    /// `raw::free`.
    Free(Target),
    /// `Page::from_raw`.
    FromRawPage(Target),
    /// `Code::<AddI32>::from_raw` (skipped where it would succeed on bytes that are not
    /// intact add code, which its safety contract forbids).
    FromRawCode(Target),
    /// `into_raw` on the handle holding the page, if any.
    IntoRaw(Target),
    /// Drops the handle holding the page, if any (which frees it).
    DropHandle(Target),
    /// `set_quota`.
    SetQuota(Quota),
    /// `Arena::new`.
    ArenaNew(Cap),
    /// `Arena::push` of a generated function (`Arena::push_with` if `with`, or if the
    /// length is too large to build a slice for), into a live arena.
    ArenaPush {
        /// Which live arena (counting back from the newest).
        arena: u8,
        /// How long.
        size: FnSize,
        /// What the function returns (`push_with` functions return their own address).
        value: u64,
        /// Through `push_with`.
        with: bool,
    },
    /// `Arena::import` of `target`.
    ArenaImport {
        /// Which live arena.
        arena: u8,
        /// The address stored in the slot.
        target: u64,
    },
    /// `Arena::publish`.
    ArenaPublish(u8),
    /// `Arena::entry`, then (if the model knows what it returns and its bytes are
    /// intact) `Entry::call`, `Entry::verify`, and the entry dropped.
    ArenaCall {
        /// Which live arena.
        arena: u8,
        /// Which of its functions (counting back from the newest).
        f: u8,
    },
    /// `Arena::entry`, kept alive across later operations.
    ArenaHold {
        /// Which live arena.
        arena: u8,
        /// Which of its functions.
        f: u8,
    },
    /// Drops the `n`-th entry held (counting back from the newest).
    ArenaRelease(u8),
    /// `Arena::verify` (and `Arena::addr`).
    ArenaVerify {
        /// Which live arena.
        arena: u8,
        /// Which of its functions.
        f: u8,
    },
    /// `Arena::verify_all`.
    ArenaVerifyAll(u8),
    /// Overwrites one published, still mapped byte through `/proc/self/mem`: of a
    /// function (`f`), or anywhere below the published end (functions, import slots,
    /// padding, the rest of a page).
    ArenaTamper {
        /// Which live arena.
        arena: u8,
        /// Which function, or `None` for anywhere.
        f: Option<u8>,
        /// Where (modulo the function's length or the published end).
        offset: u32,
        /// The new value.
        byte: u8,
    },
    /// `Arena::retire`.
    ArenaRetire {
        /// Which live arena.
        arena: u8,
        /// Which of its functions.
        f: u8,
    },
    /// Drops the arena (after the entries held on it).
    ArenaDrop(u8),
    /// The raw surface on an arena address: `wildx::inspect`, `raw::state`,
    /// `raw::verify`, `Arena::id_at`, and `raw::free` / `raw::seal` (refused).
    ArenaRaw {
        /// Which live arena.
        arena: u8,
        /// Which address in it.
        at: ArenaAddr,
    },
    /// An id from another arena (live or dropped) given to `verify`, `retire`, `entry`
    /// and `addr`: all refused.
    ArenaForeign {
        /// Which live arena is asked.
        arena: u8,
        /// Which foreign id.
        f: u8,
    },
}

impl Op {
    /// The operation's name, for tallies.
    pub fn name(&self) -> &'static str {
        match self {
            Op::ArenaNew(_) => "new",
            Op::ArenaPush { with: false, .. } => "push",
            Op::ArenaPush { with: true, .. } => "push_with",
            Op::ArenaImport { .. } => "import",
            Op::ArenaPublish(_) => "publish",
            Op::ArenaCall { .. } => "entry+call",
            Op::ArenaHold { .. } => "entry held",
            Op::ArenaRelease(_) => "entry dropped",
            Op::ArenaVerify { .. } => "verify",
            Op::ArenaVerifyAll(_) => "verify_all",
            Op::ArenaTamper { .. } => "tamper",
            Op::ArenaRetire { .. } => "retire",
            Op::ArenaDrop(_) => "drop",
            Op::ArenaRaw { .. } => "raw queries",
            Op::ArenaForeign { .. } => "foreign id",
            _ => "page operation",
        }
    }

    /// Whether this is an arena operation.
    pub fn is_arena(&self) -> bool {
        !matches!(
            self,
            Op::Alloc(_)
                | Op::AllocTyped(_)
                | Op::CompileAdd
                | Op::CompileAddTyped
                | Op::Install(_)
                | Op::Write { .. }
                | Op::Seal(_)
                | Op::SealTyped(_)
                | Op::Call { .. }
                | Op::Verify(_)
                | Op::Tamper { .. }
                | Op::Free(_)
                | Op::FromRawPage(_)
                | Op::FromRawCode(_)
                | Op::IntoRaw(_)
                | Op::DropHandle(_)
                | Op::SetQuota(_)
        )
    }
}

/// An arena's capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cap {
    /// `(n % 16 + 1)` pages.
    Pages(u8),
    /// `(n % 16 + 1)` pages less 100 bytes: rounded up.
    PagesLess(u8),
    /// 1 byte: one page.
    Tiny,
    /// `(n % 4 + 1)` MiB.
    Large(u8),
    /// 1 GiB: more than the default quota, which counts only what becomes accessible.
    Huge,
    /// 0: refused.
    Zero,
    /// The largest length that rounds: no address space that large (`ENOMEM`).
    LargestRoundable,
    /// One more: rounding overflows.
    FirstOverflow,
    /// `usize::MAX`.
    Max,
}

impl Cap {
    /// The capacity in bytes.
    pub fn bytes(self) -> usize {
        match self {
            Cap::Pages(n) => (usize::from(n) % 16 + 1) * PAGE,
            Cap::PagesLess(n) => (usize::from(n) % 16 + 1) * PAGE - 100,
            Cap::Tiny => 1,
            Cap::Large(n) => (usize::from(n) % 4 + 1) << 20,
            Cap::Huge => 1 << 30,
            Cap::Zero => 0,
            Cap::LargestRoundable => LARGEST_ROUNDABLE,
            Cap::FirstOverflow => LARGEST_ROUNDABLE + 1,
            Cap::Max => usize::MAX,
        }
    }
}

/// The length of a pushed function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FnSize {
    /// 40 bytes, the typical function.
    Forty,
    /// 1 byte (`ret`).
    One,
    /// 11 bytes: exactly `mov rax, imm64; ret`.
    Eleven,
    /// Any length from 1 to 512 bytes.
    Small(u16),
    /// Starts 24 bytes before a page boundary (from where the next push lands) and
    /// ends 24 bytes past it.
    Straddle,
    /// 4097 bytes.
    PagePlusOne,
    /// Three pages and 40 bytes.
    ThreePages,
    /// `(n % 4 + 1) * 64` KiB: many pages committed at once, so that an arena grows past
    /// the 64 pages a push may commit ahead.
    Large(u8),
    /// Exactly what is left before the end of the reservation (0 if nothing).
    Rest,
    /// One byte more than is left.
    PastCapacity,
    /// 0: refused.
    Zero,
    /// Longer than an arena function may be.
    TooLong,
}

/// The longest function an arena takes (the library documents "over 512 MiB" as
/// `LengthOverflow`).
pub const MAX_FN_LEN: usize = (1 << 29) - 1;
/// Where a function starts.
pub const FN_ALIGN: usize = 16;
/// Where an import slot starts.
pub const SLOT_ALIGN: usize = 8;
/// The most a push commits ahead of what it needs.
pub const COMMIT_AHEAD_MAX: usize = 64 * PAGE;
/// The least a push commits at once.
pub const COMMIT_AHEAD_MIN: usize = 16 * PAGE;
/// The signature of every generated arena function.
pub type RetFn = extern "sysv64" fn() -> u64;

impl FnSize {
    /// The length in bytes for an arena of capacity `cap` whose next function lands at
    /// offset `next`.
    pub fn bytes(self, next: usize, cap: usize) -> usize {
        match self {
            FnSize::Forty => 40,
            FnSize::One => 1,
            FnSize::Eleven => 11,
            FnSize::Small(n) => usize::from(n) % 512 + 1,
            FnSize::Straddle => {
                let to_boundary = PAGE - next % PAGE;
                // Start 24 bytes before a boundary: pad up to it first.
                if to_boundary >= 24 { to_boundary + 24 } else { to_boundary + PAGE + 24 }
            }
            FnSize::PagePlusOne => PAGE + 1,
            FnSize::ThreePages => 3 * PAGE + 40,
            FnSize::Large(n) => (usize::from(n) % 4 + 1) << 16,
            FnSize::Rest => cap.saturating_sub(next),
            FnSize::PastCapacity => cap.saturating_sub(next) + 1,
            FnSize::Zero => 0,
            FnSize::TooLong => MAX_FN_LEN + 1,
        }
    }
}

/// An address in an arena, for the raw surface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArenaAddr {
    /// A function's first byte.
    Fn(u8),
    /// A function's first byte plus `1 + k % len` (interior, or just past its end).
    Interior(u8, u8),
    /// An import slot (counting back from the newest).
    Import(u8),
    /// The reservation's first byte.
    Base,
    /// Where the next push lands.
    Next,
    /// The reservation's last byte.
    Last,
    /// One past the reservation's end (another mapping, or nothing).
    End,
}

/// The bytes of a generated function of `len` bytes returning `value`, and what a call
/// returns if the harness knows it: `mov rax, imm64; ret` (11 bytes and up) or
/// `mov eax, imm32; ret` (6 to 10, which zero-extends), followed by data bytes that no
/// call reaches but the hash covers; below 6 bytes, `ret`s, returning whatever `rax`
/// held.
pub fn fn_code(len: usize, value: u64) -> (Vec<u8>, Option<u64>) {
    let (head, ret) = if len >= 11 {
        let mut c = vec![0x48, 0xb8];
        c.extend(value.to_le_bytes());
        c.push(0xc3);
        (c, Some(value))
    } else if len >= 6 {
        let mut c = vec![0xb8];
        c.extend((value as u32).to_le_bytes());
        c.push(0xc3);
        (c, Some(u64::from(value as u32)))
    } else {
        (vec![0xc3; len], None)
    };
    // `vec![byte; n]` is a memset even in a debug build.
    let mut code = vec![value.to_le_bytes()[7] ^ 0x5a; len];
    code[..head.len().min(len)].copy_from_slice(&head[..head.len().min(len)]);
    (code, ret)
}

/// Reads fuzzer bytes as numbers; past the end it reads zeros.
pub struct Bytes<'a> {
    data: &'a [u8],
}

impl<'a> Bytes<'a> {
    /// Reads from `data`.
    pub fn new(data: &'a [u8]) -> Bytes<'a> {
        Bytes { data }
    }

    /// Whether everything has been read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next byte.
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// The next two bytes, little-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    /// The next four bytes, little-endian.
    pub fn i32(&mut self) -> i32 {
        i32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
}

impl Size {
    /// Decodes a size from fuzzer bytes.
    pub fn decode(r: &mut Bytes<'_>) -> Size {
        match r.u8() % 16 {
            0 => Size::Zero,
            1 | 2 => Size::One,
            3 => Size::Four,
            4 => Size::Five,
            5 => Size::PageMinusOne,
            6 => Size::Page,
            7 => Size::PagePlusOne,
            8 => Size::Large(r.u8()),
            9 => Size::Huge,
            10 => Size::LargestRoundable,
            11 => Size::FirstOverflow,
            12 => Size::Max,
            _ => Size::Small(r.u16()),
        }
    }
}

impl Target {
    /// Decodes a target from fuzzer bytes.
    pub fn decode(r: &mut Bytes<'_>) -> Target {
        let tag = r.u8();
        match tag % 16 {
            0..=8 => Target::Recent(tag / 16),
            9 | 10 => {
                let offset = match r.u8() % 5 {
                    0 => Offset::One,
                    1 => Offset::Five,
                    2 => Offset::LastOfPage,
                    3 => Offset::NextPage,
                    _ => Offset::TwoPages,
                };
                Target::Interior(tag / 16, offset)
            }
            11 => Target::Null,
            12 => Target::Stack,
            13 => Target::Heap,
            14 => Target::Static,
            _ => [Target::ForeignMap, Target::Kernel][usize::from(tag / 16) % 2],
        }
    }
}

impl Op {
    /// Decodes one operation from fuzzer bytes, or `None` once they are used up.
    pub fn decode(r: &mut Bytes<'_>) -> Option<Op> {
        if r.is_empty() {
            return None;
        }
        Some(match r.u8() % 32 {
            0 | 1 => Op::Alloc(Size::decode(r)),
            2 => Op::AllocTyped(Size::decode(r)),
            3 => Op::CompileAdd,
            4 => Op::CompileAddTyped,
            5 => Op::Install(Target::decode(r)),
            6 => Op::Write { target: Target::decode(r), offset: r.u16(), len: r.u8(), byte: r.u8() },
            7 => Op::Seal(Target::decode(r)),
            8 => Op::SealTyped(Target::decode(r)),
            9 => Op::Call { target: Target::decode(r), a: r.i32(), b: r.i32() },
            10 => Op::Verify(Target::decode(r)),
            11 => Op::Tamper { target: Target::decode(r), offset: r.u16(), byte: r.u8() },
            12 | 13 => Op::Free(Target::decode(r)),
            14 => Op::FromRawPage(Target::decode(r)),
            15 => Op::FromRawCode(Target::decode(r)),
            16 => Op::IntoRaw(Target::decode(r)),
            17 => Op::DropHandle(Target::decode(r)),
            18 | 19 => Op::SetQuota(match r.u8() % 4 {
                0 => Quota::Pages(r.u8()),
                1 => Quota::Default,
                2 => Quota::Live,
                _ => Quota::LivePlus(r.u8()),
            }),
            20 => Op::ArenaNew(match r.u8() % 12 {
                0..=3 => Cap::Pages(r.u8()),
                4 => Cap::PagesLess(r.u8()),
                5 => Cap::Tiny,
                6 => Cap::Large(r.u8()),
                7 => Cap::Huge,
                8 => Cap::Zero,
                9 => Cap::LargestRoundable,
                10 => Cap::FirstOverflow,
                _ => Cap::Max,
            }),
            21 | 22 => {
                let arena = r.u8();
                let size = match r.u8() % 14 {
                    0..=2 => FnSize::Forty,
                    3 => FnSize::One,
                    4 => FnSize::Eleven,
                    5 => FnSize::Small(r.u16()),
                    6 => FnSize::Straddle,
                    7 => FnSize::PagePlusOne,
                    8 => FnSize::ThreePages,
                    9 => FnSize::Large(r.u8()),
                    10 => FnSize::Rest,
                    11 => FnSize::PastCapacity,
                    12 => FnSize::Zero,
                    _ => FnSize::TooLong,
                };
                let value = u64::from(r.u16()) | u64::from(r.u16()) << 48;
                Op::ArenaPush { arena, size, value, with: r.u8() % 2 == 1 }
            }
            23 => Op::ArenaImport { arena: r.u8(), target: u64::from(r.u16()) << 12 },
            24 => Op::ArenaPublish(r.u8()),
            25 => Op::ArenaCall { arena: r.u8(), f: r.u8() },
            26 => match r.u8() % 2 {
                0 => Op::ArenaHold { arena: r.u8(), f: r.u8() },
                _ => Op::ArenaRelease(r.u8()),
            },
            27 => match r.u8() % 2 {
                0 => Op::ArenaVerify { arena: r.u8(), f: r.u8() },
                _ => Op::ArenaVerifyAll(r.u8()),
            },
            28 => {
                let (arena, tag) = (r.u8(), r.u8());
                let f = (tag % 2 == 0).then_some(tag / 2);
                Op::ArenaTamper { arena, f, offset: u32::from(r.u16()), byte: r.u8() }
            }
            29 => Op::ArenaRetire { arena: r.u8(), f: r.u8() },
            30 => match r.u8() % 4 {
                0 => Op::ArenaDrop(r.u8()),
                1 => Op::ArenaForeign { arena: r.u8(), f: r.u8() },
                _ => Op::ArenaRaw {
                    arena: r.u8(),
                    at: match r.u8() % 7 {
                        0 => ArenaAddr::Fn(r.u8()),
                        1 => ArenaAddr::Interior(r.u8(), r.u8()),
                        2 => ArenaAddr::Import(r.u8()),
                        3 => ArenaAddr::Base,
                        4 => ArenaAddr::Next,
                        5 => ArenaAddr::Last,
                        _ => ArenaAddr::End,
                    },
                },
            },
            _ => Op::ArenaPush { arena: r.u8(), size: FnSize::Forty, value: u64::from(r.u16()), with: false },
        })
    }
}

// ---------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------

/// Who owns a live page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    /// Raw pointers: the raw surface may seal, write and free it.
    Raw,
    /// A typed `Page` handle.
    Page,
    /// A typed `Code` handle.
    Code,
}

/// Who asks for an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    /// The raw surface (or `jit` helpers on raw pointers).
    Raw,
    /// The typed handle holding the page.
    Handle,
}

/// What the model knows about one live page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelPage {
    /// Requested length.
    pub len: usize,
    /// Mapped length (whole pages).
    pub mapped: usize,
    /// Lifecycle state.
    pub state: State,
    /// Hash recorded at seal.
    pub hash: Option<u64>,
    /// The requested bytes as they are now (0xCC unless written or tampered with).
    pub bytes: Vec<u8>,
    /// Who owns it.
    pub holder: Holder,
}

impl ModelPage {
    /// Whether calling it as `add` is defined: sealed, starts with the add code, and the
    /// bytes still hash to the sealed value (so verify-on-call lets the call through).
    pub fn callable_add(&self) -> bool {
        self.state == State::Executable && self.bytes.starts_with(&ADD_I32) && self.hash == Some(fnv1a(&self.bytes))
    }
}

/// Successes and refusals the library must have counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Successful allocations.
    pub allocs: u64,
    /// Successful seals.
    pub seals: u64,
    /// Successful frees.
    pub frees: u64,
    /// Refused allocs, seals, frees, writes and handle conversions.
    pub refusals: u64,
}

/// The reference model: the registry as the contract describes it.
#[derive(Clone, Debug)]
pub struct Model {
    /// Live pages by start address.
    pub pages: HashMap<usize, ModelPage>,
    /// Bytes other users had mapped when the model started (0 in a model-only process).
    pub base_live: usize,
    /// Mapped bytes of the model's live pages.
    pub live_bytes: usize,
    /// The most `base_live + live_bytes` has been.
    pub peak_bytes: usize,
    /// The quota.
    pub quota: usize,
    /// What must have been counted.
    pub counts: Counts,
    /// Live arenas, oldest first.
    pub arenas: Vec<ModelArena>,
    /// Accessible bytes of the live arenas (part of the quota's live bytes).
    pub arena_bytes: usize,
    /// Functions in live arenas, not retired.
    pub arena_fns: usize,
}

/// One function or import slot of a model arena.
#[derive(Clone, Debug)]
pub struct ArenaRec {
    /// Offset from the arena's base.
    pub off: usize,
    /// Length.
    pub len: usize,
    /// An import slot rather than a function.
    pub import: bool,
    /// Its bytes as they are now (tampering included).
    pub bytes: Vec<u8>,
    /// The hash recorded at publish (`None` while pending).
    pub hash: Option<u64>,
    /// The hash of `bytes` now, once published (kept up to date by tampering).
    pub now: u64,
    /// Retired.
    pub retired: bool,
    /// Live entries on it.
    pub entries: u32,
    /// What a call returns, if known.
    pub ret: Option<u64>,
    /// The id the library gave it (functions only).
    pub id: Option<FnId>,
}

impl ArenaRec {
    fn end(&self) -> usize {
        self.off + self.len
    }

    /// Pages it overlaps, as offsets.
    fn pages(&self) -> impl Iterator<Item = usize> + use<> {
        (round_down(self.off, PAGE)..self.end()).step_by(PAGE)
    }

    /// Published, not retired, bytes intact, and the harness knows what it returns.
    pub fn callable(&self) -> Option<u64> {
        (self.intact() && !self.retired).then_some(self.ret).flatten()
    }

    /// Published, and its bytes still hash to the recorded value.
    pub fn intact(&self) -> bool {
        self.hash == Some(self.now)
    }
}

/// An arena as the issue describes it: a reservation, pushes at 16-byte aligned
/// offsets, pages committed ahead (doubling, at most 64 pages, exactly what is needed
/// when the quota has no room for more), published pages never written again, pages
/// released when the last record on them retires.
#[derive(Clone, Debug)]
pub struct ModelArena {
    /// The address `Arena::base` gave (the kernel chooses it).
    pub base: usize,
    /// The reservation's length (whole pages).
    pub cap: usize,
    /// The next free byte.
    pub bump: usize,
    /// Below this everything is published or released (page-aligned).
    pub published_end: usize,
    /// Below this pages are (or were, if released) accessible (page-aligned).
    pub committed_end: usize,
    /// Records by offset.
    pub recs: Vec<ArenaRec>,
    /// Indices into `recs` of the functions, oldest first.
    pub fns: Vec<usize>,
    /// Released pages (offsets).
    pub released: BTreeSet<usize>,
    /// Tampered bytes outside records (offset, value).
    pub gaps: BTreeMap<usize, u8>,
    /// The harness's number for it, to match held entries.
    pub serial: u64,
}

/// Where `verify_all` finds the first difference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// In a record: its hash and the hash of its bytes now.
    Rec(u64, u64),
    /// In the padding or the rest of a page.
    Gap,
}

const fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

const fn round_down(n: usize, to: usize) -> usize {
    n / to * to
}

impl ModelArena {
    /// Where the next record of alignment `align` would start.
    pub fn next_offset(&self, align: usize) -> usize {
        round_up(self.bump.max(self.published_end), align)
    }

    fn place(&self, len: usize, align: usize) -> Result<(usize, usize), Error> {
        if len == 0 {
            return Err(Error::ZeroLength);
        }
        if len > MAX_FN_LEN {
            return Err(Error::LengthOverflow);
        }
        let start = self.next_offset(align);
        match start.checked_add(len) {
            Some(end) if end <= self.cap => Ok((start, end)),
            _ => Err(Error::ArenaFull { needed: start + len - self.bump, available: self.cap - self.bump }),
        }
    }

    /// Accessible bytes: committed and not released.
    pub fn accessible(&self) -> usize {
        self.committed_end - self.released.len() * PAGE
    }

    /// The record whose id is `id`, as the arena's methods look it up.
    fn rec_of(&self, id: FnId) -> Result<usize, Error> {
        self.fns.iter().copied().find(|&i| self.recs[i].id == Some(id)).ok_or(Error::ForeignFn)
    }

    /// Whether a record may be entered: published, not retired.
    fn callable(rec: &ArenaRec) -> Result<(), Error> {
        if rec.hash.is_none() {
            Err(Error::WrongState { expected: State::Executable, found: State::Writable })
        } else if rec.retired {
            Err(Error::Retired)
        } else {
            Ok(())
        }
    }

    /// `Arena::verify` of record `i`.
    fn verify_rec(&self, i: usize) -> Result<(), Error> {
        let rec = &self.recs[i];
        ModelArena::callable(rec)?;
        let (sealed, now) = (rec.hash.unwrap_or(0), rec.now);
        if sealed == now { Ok(()) } else { Err(Error::IntegrityMismatch { sealed, now }) }
    }

    /// `Arena::verify_all`: every published byte still mapped, in address order.
    pub fn verify_all(&self) -> Result<(), Mismatch> {
        let gap = |from: usize, to: usize| {
            let bad =
                self.gaps.range(from..to).any(|(&o, &b)| b != 0xCC && !self.released.contains(&round_down(o, PAGE)));
            if bad { Err(Mismatch::Gap) } else { Ok(()) }
        };
        let mut cursor = 0;
        for rec in self.recs.iter().take_while(|r| r.off < self.published_end) {
            gap(cursor, rec.off)?;
            if !rec.pages().any(|p| self.released.contains(&p)) {
                let (sealed, now) = (rec.hash.unwrap_or(0), rec.now);
                if sealed != now {
                    return Err(Mismatch::Rec(sealed, now));
                }
            }
            cursor = rec.end();
        }
        gap(cursor, self.published_end)
    }

    /// The function record starting exactly at offset `off`.
    fn fn_at(&self, off: usize) -> Option<usize> {
        self.recs.iter().position(|r| r.off == off).filter(|&i| !self.recs[i].import)
    }

    /// The function record starting exactly at address `addr`.
    fn fn_at_addr(&self, addr: usize) -> Option<usize> {
        addr.checked_sub(self.base).filter(|&off| off < self.cap).and_then(|off| self.fn_at(off))
    }

    /// The record holding offset `off`.
    fn rec_holding(&self, off: usize) -> Option<usize> {
        let i = self.recs.partition_point(|r| r.end() <= off);
        (i < self.recs.len() && self.recs[i].off <= off).then_some(i)
    }
}

/// What `wildx::inspect` must say about an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelInfo {
    /// Requested length.
    pub len: usize,
    /// Pages it spans.
    pub mapped: usize,
    /// State.
    pub state: State,
    /// Seal hash.
    pub hash: Option<u64>,
    /// Held by a handle (arena functions always are).
    pub held: bool,
}

impl Model {
    /// A model of a registry with `base_live` bytes already mapped, a peak of
    /// `base_peak` and quota `quota`.
    pub fn new(base_live: usize, base_peak: usize, quota: usize) -> Model {
        Model {
            pages: HashMap::new(),
            base_live,
            live_bytes: 0,
            peak_bytes: base_peak.max(base_live),
            quota,
            counts: Counts::default(),
            arenas: Vec::new(),
            arena_bytes: 0,
            arena_fns: 0,
        }
    }

    /// Bytes the quota counts as live: other users', the model's pages and its arenas'
    /// accessible bytes.
    pub fn live(&self) -> usize {
        self.base_live + self.live_bytes + self.arena_bytes
    }

    /// The live arena whose reservation holds `addr`, and the offset.
    pub fn arena_at(&self, addr: usize) -> Option<(usize, usize)> {
        self.arenas
            .iter()
            .position(|a| a.base <= addr && addr - a.base < a.cap)
            .map(|i| (i, addr - self.arenas[i].base))
    }

    /// What `wildx::inspect` must say about `addr`.
    pub fn inspect(&self, addr: usize) -> Option<ModelInfo> {
        if let Some(p) = self.pages.get(&addr) {
            let held = p.holder != Holder::Raw;
            return Some(ModelInfo { len: p.len, mapped: p.mapped, state: p.state, hash: p.hash, held });
        }
        let (ai, off) = self.arena_at(addr)?;
        let a = &self.arenas[ai];
        let rec = &a.recs[a.fn_at(off)?];
        if rec.retired {
            return None;
        }
        let mapped = round_up(rec.end(), PAGE) - round_down(rec.off, PAGE);
        let state = if rec.hash.is_some() { State::Executable } else { State::Writable };
        Some(ModelInfo { len: rec.len, mapped, state, hash: rec.hash, held: true })
    }

    /// `Arena::new` with `capacity`: its rounded capacity, or the refusal (not counted).
    pub fn arena_new(&self, capacity: usize) -> Result<usize, Error> {
        match capacity {
            0 => Err(Error::ZeroLength),
            _ => match pages_for(capacity) {
                None => Err(Error::LengthOverflow),
                // x86-64 user space is below 2^47 (2^56 with 5-level paging): no room.
                Some(rounded) if rounded >= 1 << 57 => Err(Error::Os(wildx::Errno::ENOMEM)),
                Some(rounded) => Ok(rounded),
            },
        }
    }

    /// Records an arena the library made.
    pub fn arena_insert(&mut self, base: usize, cap: usize, serial: u64) {
        self.arenas.push(ModelArena {
            base,
            cap,
            bump: 0,
            published_end: 0,
            committed_end: 0,
            recs: Vec::new(),
            fns: Vec::new(),
            released: BTreeSet::new(),
            gaps: BTreeMap::new(),
            serial,
        });
    }

    /// Makes pages up to `to` accessible in arena `ai`, committing ahead as the issue
    /// says: as much again as is committed (at least a page, at most 64), capped by the
    /// reservation; exactly what is needed if the quota has no room for that.
    fn arena_commit(&mut self, ai: usize, to: usize) -> Result<(), Error> {
        let a = &self.arenas[ai];
        let from = a.committed_end;
        if to <= from {
            return Ok(());
        }
        let ahead = (from + from.clamp(COMMIT_AHEAD_MIN, COMMIT_AHEAD_MAX)).min(a.cap);
        let live = self.live();
        let fits = |bytes: usize| live.checked_add(bytes).is_some_and(|total| total <= self.quota);
        let end = if fits(to.max(ahead) - from) {
            to.max(ahead)
        } else if fits(to - from) {
            to
        } else {
            return Err(Error::QuotaExceeded { requested: to - from, live, quota: self.quota });
        };
        self.arenas[ai].committed_end = end;
        self.arena_bytes += end - from;
        self.peak_bytes = self.peak_bytes.max(self.live());
        Ok(())
    }

    /// `Arena::push` (or `import`) of `len` bytes into arena `ai`; `code` gives the bytes
    /// and the return value for the address they land at. The record's index, or the
    /// refusal.
    pub fn arena_push(
        &mut self,
        ai: usize,
        len: usize,
        import: bool,
        code: impl FnOnce(usize) -> (Vec<u8>, Option<u64>),
    ) -> Result<usize, Error> {
        let align = if import { SLOT_ALIGN } else { FN_ALIGN };
        let (start, end) = self.arenas[ai].place(len, align)?;
        self.arena_commit(ai, round_up(end, PAGE))?;
        let a = &mut self.arenas[ai];
        let (bytes, ret) = code(a.base + start);
        a.recs.push(ArenaRec {
            off: start,
            len,
            import,
            bytes,
            hash: None,
            now: 0,
            retired: false,
            entries: 0,
            ret,
            id: None,
        });
        a.bump = end;
        if !import {
            a.fns.push(a.recs.len() - 1);
            self.arena_fns += 1;
        }
        Ok(a.recs.len() - 1)
    }

    /// `Arena::publish`: hashes every pending record; later pushes start on a fresh page.
    pub fn arena_publish(&mut self, ai: usize) {
        let a = &mut self.arenas[ai];
        let mut any = false;
        for rec in a.recs.iter_mut().filter(|r| r.hash.is_none()) {
            rec.now = fnv1a(&rec.bytes);
            rec.hash = Some(rec.now);
            any = true;
        }
        if any {
            a.published_end = round_up(a.bump, PAGE);
            a.bump = a.bump.max(a.published_end);
        }
    }

    /// `Arena::entry`: takes an entry on the function, or the refusal.
    pub fn arena_entry(&mut self, ai: usize, id: FnId) -> Result<usize, Error> {
        let a = &mut self.arenas[ai];
        let i = a.rec_of(id)?;
        ModelArena::callable(&a.recs[i])?;
        a.recs[i].entries += 1;
        Ok(i)
    }

    /// `Arena::verify`.
    pub fn arena_verify(&self, ai: usize, id: FnId) -> Result<(), Error> {
        let a = &self.arenas[ai];
        a.verify_rec(a.rec_of(id)?)
    }

    /// `Arena::retire`: releases the pages it leaves with only retired records.
    pub fn arena_retire(&mut self, ai: usize, id: FnId) -> Result<(), Error> {
        let a = &mut self.arenas[ai];
        let i = a.rec_of(id)?;
        ModelArena::callable(&a.recs[i])?;
        if a.recs[i].entries != 0 {
            return Err(Error::EntryAlive { entries: a.recs[i].entries });
        }
        a.recs[i].retired = true;
        self.arena_fns -= 1;
        for page in a.recs[i].pages() {
            let all_retired = a.recs.iter().filter(|r| r.off < page + PAGE && page < r.end()).all(|r| r.retired);
            if all_retired && a.released.insert(page) {
                self.arena_bytes -= PAGE;
            }
        }
        Ok(())
    }

    /// Drops arena `ai`.
    pub fn arena_drop(&mut self, ai: usize) -> ModelArena {
        let a = self.arenas.remove(ai);
        self.arena_bytes -= a.accessible();
        self.arena_fns -= a.recs.iter().filter(|r| !r.import && !r.retired).count();
        a
    }

    /// `raw::verify` of an arena address, if `addr` is in a live arena.
    fn arena_raw_verify(&self, addr: usize) -> Option<Result<(), Error>> {
        let (ai, off) = self.arena_at(addr)?;
        let a = &self.arenas[ai];
        Some(a.fn_at(off).ok_or(Error::NotRegistered).and_then(|i| a.verify_rec(i)))
    }

    fn refusal<T>(&mut self, result: Result<T, Error>) -> Result<T, Error> {
        if result.is_err() {
            self.counts.refusals += 1;
        }
        result
    }

    /// The page at `addr` as `who` may see it: null, not registered, or held by a
    /// handle when the raw surface asks.
    pub fn lookup(&self, addr: usize, who: Who) -> Result<&ModelPage, Error> {
        if addr == 0 {
            return Err(Error::Null);
        }
        let Some(page) = self.pages.get(&addr) else {
            // Inside an arena: its functions belong to the arena.
            return Err(if self.arena_at(addr).is_some() { Error::HeldByHandle } else { Error::NotRegistered });
        };
        if who == Who::Raw && page.holder != Holder::Raw {
            return Err(Error::HeldByHandle);
        }
        Ok(page)
    }

    fn expect_state(page: &ModelPage, expected: State) -> Result<(), Error> {
        if page.state == expected { Ok(()) } else { Err(Error::WrongState { expected, found: page.state }) }
    }

    /// Whether an allocation of `len` may proceed: its mapped length, or the refusal
    /// (counted). The caller then calls [`Model::insert`] with the address it got.
    pub fn alloc(&mut self, len: usize) -> Result<usize, Error> {
        let result = if len == 0 {
            Err(Error::ZeroLength)
        } else {
            match pages_for(len) {
                None => Err(Error::LengthOverflow),
                Some(mapped) => {
                    let live = self.live();
                    if live.checked_add(mapped).is_none_or(|total| total > self.quota) {
                        Err(Error::QuotaExceeded { requested: mapped, live, quota: self.quota })
                    } else {
                        Ok(mapped)
                    }
                }
            }
        };
        self.refusal(result)
    }

    /// Records a page the library allocated at `addr`.
    pub fn insert(&mut self, addr: usize, len: usize, holder: Holder) {
        let mapped = pages_for(len).expect("insert of an allocatable length");
        let page = ModelPage { len, mapped, state: State::Writable, hash: None, bytes: vec![0xCC; len], holder };
        self.pages.insert(addr, page);
        self.live_bytes += mapped;
        self.peak_bytes = self.peak_bytes.max(self.live());
        self.counts.allocs += 1;
    }

    /// Seals the page at `addr` for `who`: the hash, or the refusal (counted).
    pub fn seal(&mut self, addr: usize, who: Who) -> Result<u64, Error> {
        let result = self.lookup(addr, who).and_then(|p| Model::expect_state(p, State::Writable).map(|()| p));
        let result = match result {
            Ok(page) => Ok(fnv1a(&page.bytes)),
            Err(e) => Err(e),
        };
        if let Ok(hash) = result {
            let page = self.pages.get_mut(&addr).expect("looked up");
            page.state = State::Executable;
            page.hash = Some(hash);
            if page.holder == Holder::Page {
                page.holder = Holder::Code;
            }
            self.counts.seals += 1;
        }
        self.refusal(result)
    }

    /// Frees the page at `addr` for `who`, or the refusal (counted).
    pub fn free(&mut self, addr: usize, who: Who) -> Result<(), Error> {
        let result = self.lookup(addr, who).map(drop);
        if result.is_ok() {
            let page = self.pages.remove(&addr).expect("looked up");
            self.live_bytes -= page.mapped;
            self.counts.frees += 1;
        }
        self.refusal(result)
    }

    /// `install_add_i32`'s checked write of `bytes` at `offset`, or the refusal (counted).
    pub fn write(&mut self, addr: usize, who: Who, offset: usize, bytes: &[u8]) -> Result<(), Error> {
        let result = self.lookup(addr, who).and_then(|p| {
            Model::expect_state(p, State::Writable)?;
            let needed = offset.checked_add(bytes.len()).ok_or(Error::LengthOverflow)?;
            if needed > p.len { Err(Error::TooSmall { needed, len: p.len }) } else { Ok(()) }
        });
        if result.is_ok() {
            let page = self.pages.get_mut(&addr).expect("looked up");
            page.bytes[offset..offset + bytes.len()].copy_from_slice(bytes);
        }
        self.refusal(result)
    }

    /// What `verify` says about `addr` (never counted).
    pub fn verify(&self, addr: usize) -> Result<(), Error> {
        if let Some(verdict) = self.arena_raw_verify(addr) {
            return verdict;
        }
        let page = self.lookup(addr, Who::Handle)?;
        Model::expect_state(page, State::Executable)?;
        let now = fnv1a(&page.bytes);
        match page.hash {
            Some(sealed) if sealed == now => Ok(()),
            sealed => Err(Error::IntegrityMismatch { sealed: sealed.unwrap_or(0), now }),
        }
    }

    /// A typed handle takes the page (`from_raw`, which needs state `expected`): its
    /// length, or the refusal (counted).
    pub fn take(&mut self, addr: usize, expected: State) -> Result<usize, Error> {
        let result = self.lookup(addr, Who::Raw).and_then(|p| Model::expect_state(p, expected).map(|()| p.len));
        if result.is_ok() {
            let page = self.pages.get_mut(&addr).expect("looked up");
            page.holder = if expected == State::Writable { Holder::Page } else { Holder::Code };
        }
        self.refusal(result)
    }

    /// A typed handle gives the page back to raw pointers (`into_raw`; cannot fail).
    pub fn release(&mut self, addr: usize) {
        self.pages.get_mut(&addr).expect("released page is live").holder = Holder::Raw;
    }

    /// The bytes `Quota` stands for now.
    pub fn quota_bytes(&self, q: Quota) -> usize {
        let live = self.live();
        match q {
            Quota::Pages(n) => usize::from(n) * PAGE,
            Quota::Default => DEFAULT_QUOTA,
            Quota::Live => live,
            Quota::LivePlus(n) => live + usize::from(n) * PAGE,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------------------

static STATIC_BYTES: [u8; 64] = [0x5a; 64];

/// The pattern the harness's foreign mapping holds; it must never change.
const FOREIGN_FILL: u8 = 0xa5;

/// Runs operations against wildx and the model side by side.
pub struct Harness {
    /// The model.
    pub model: Model,
    pages: HashMap<usize, Page>,
    codes: HashMap<usize, Code<AddI32>>,
    history: Vec<usize>,
    base: Stats,
    base_exec: usize,
    last: Stats,
    foreign: NonNull<u8>,
    heap: Box<[u8; 64]>,
    mem: File,
    /// Read into without allocating, so reading cannot map memory over a range the
    /// check is about (a fresh heap block may land where a page was just freed).
    maps: RawMaps,
    maps_every: u64,
    /// Operations applied.
    pub ops: u64,
    /// `/proc/self/maps` checks made.
    pub maps_checks: u64,
    /// Live arenas, in the model's order. Boxed: held entries point at them.
    #[allow(clippy::vec_box, reason = "held entries point at the Arena: it must not move with the Vec")]
    arenas: Vec<Box<Arena>>,
    /// Entries kept alive across operations.
    held: Vec<Held>,
    /// Ids of dropped arenas' functions: foreign to every live arena.
    dead_ids: Vec<FnId>,
    next_serial: u64,
    /// How the current arena operation ended: "ok", "refused" or "skipped".
    outcome: &'static str,
    /// Arena operations applied, by name and outcome.
    pub tally: Tally,
}

/// Arena operations applied, by name and outcome ("ok", "refused", "skipped").
pub type Tally = BTreeMap<(&'static str, &'static str), u64>;

/// "refused" if the library's error is the model's, else the difference.
fn refused(op: &Op, got: Error, model: Error) -> Result<&'static str, String> {
    if got == model { Ok("refused") } else { Err(format!("{op:?}: {got:?}, model {model:?}")) }
}

/// An entry the harness keeps alive across operations.
struct Held {
    /// The model serial of its arena.
    serial: u64,
    /// Its record in the model arena.
    rec: usize,
    /// Really borrows `Harness::arenas[..]`, which is boxed (it never moves) and dropped
    /// only after every entry on it (see `Harness::drop_arena`).
    entry: Entry<'static, RetFn>,
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

impl Harness {
    /// A harness over a registry nobody else in the process is using (panics if it has
    /// live pages), checking `/proc/self/maps` after every `maps_every`-th operation
    /// (0: only at the end). Sets the quota to the default.
    pub fn new(maps_every: u64) -> Harness {
        wildx::set_quota(DEFAULT_QUOTA);
        // The mode is chosen at the first page: choose it before the baseline, so every
        // check can expect it (a sequence of refused operations maps nothing).
        static CHOSEN: std::sync::Once = std::sync::Once::new();
        CHOSEN.call_once(|| drop(wildx::Page::new(1).expect("a first page")));
        let base = wildx::stats();
        assert_eq!(base.live_pages, 0, "the model needs a registry no one else is using");
        assert_eq!(base.arenas, 0, "the model needs a registry no one else is using");
        // SAFETY: a fresh anonymous mapping at an address the kernel picks disturbs nothing.
        let foreign = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(foreign, libc::MAP_FAILED, "map the foreign page");
        let foreign = std::ptr::NonNull::new(foreign.cast::<u8>()).expect("map the foreign page");
        // SAFETY: `foreign` is a fresh R|W mapping of PAGE bytes that only we know about.
        unsafe { foreign.as_ptr().write_bytes(FOREIGN_FILL, PAGE) };
        let mem = std::fs::OpenOptions::new().read(true).write(true).open("/proc/self/mem").expect("/proc/self/mem");
        let mut maps = RawMaps::with_capacity(1 << 20);
        maps.snapshot();
        let base_exec = if MEMFD_MODE.load(std::sync::atomic::Ordering::Relaxed) {
            maps.parse().memfd_exec_bytes()
        } else {
            maps.parse().anon_exec_bytes()
        };
        Harness {
            model: Model::new(base.live_bytes, base.peak_bytes, DEFAULT_QUOTA),
            pages: HashMap::new(),
            codes: HashMap::new(),
            history: Vec::new(),
            base,
            base_exec,
            last: base,
            foreign,
            heap: Box::new([0x3c; 64]),
            mem,
            maps,
            maps_every,
            ops: 0,
            maps_checks: 0,
            arenas: Vec::new(),
            held: Vec::new(),
            dead_ids: Vec::new(),
            next_serial: 0,
            outcome: "ok",
            tally: Tally::new(),
        }
    }

    /// The live arena `n` counts back to from the newest.
    fn pick_arena(&self, n: u8) -> Option<usize> {
        let len = self.arenas.len();
        (len > 0).then(|| len - 1 - usize::from(n) % len)
    }

    /// Function `f` (counting back from the newest) of arena `ai`: its record and id.
    fn pick_fn(&self, ai: usize, f: u8) -> Option<(usize, FnId)> {
        let fns = &self.model.arenas[ai].fns;
        let i = *fns.get(fns.len().checked_sub(1 + usize::from(f) % fns.len().max(1))?)?;
        Some((i, self.model.arenas[ai].recs[i].id.expect("functions have ids")))
    }

    /// Drops arena `ai` after the entries held on it, in the model too.
    fn drop_arena(&mut self, ai: usize) -> (usize, usize) {
        let serial = self.model.arenas[ai].serial;
        self.held.retain(|h| h.serial != serial);
        let gone = self.model.arena_drop(ai);
        self.dead_ids.extend(gone.recs.iter().filter_map(|r| r.id));
        drop(self.arenas.remove(ai));
        (gone.base, gone.cap)
    }

    /// Applies an arena operation: the address the checks should look at, and a range
    /// that must now be unmapped.
    fn apply_arena(&mut self, op: Op) -> Result<(usize, Option<(usize, usize)>), String> {
        self.outcome = "ok";
        let arena_of = |op: Op| match op {
            Op::ArenaPush { arena, .. }
            | Op::ArenaImport { arena, .. }
            | Op::ArenaCall { arena, .. }
            | Op::ArenaHold { arena, .. }
            | Op::ArenaVerify { arena, .. }
            | Op::ArenaTamper { arena, .. }
            | Op::ArenaRetire { arena, .. }
            | Op::ArenaRaw { arena, .. }
            | Op::ArenaForeign { arena, .. } => Some(arena),
            Op::ArenaPublish(arena) | Op::ArenaVerifyAll(arena) | Op::ArenaDrop(arena) => Some(arena),
            _ => None,
        };
        let ai = match arena_of(op) {
            Some(n) => match self.pick_arena(n) {
                Some(ai) => ai,
                None => return Ok(self.skipped()),
            },
            None => 0,
        };
        let mut addr = 0;
        match op {
            Op::ArenaNew(cap) => {
                let bytes = cap.bytes();
                let expected = self.model.arena_new(bytes);
                match (Arena::new(bytes), expected) {
                    (Ok(arena), Ok(rounded)) => {
                        let base = arena.base();
                        ensure!(arena.capacity() == rounded, "{op:?}: capacity {} != {rounded}", arena.capacity());
                        ensure!(base % PAGE == 0 && arena.next_addr() == base, "{op:?}: base {base:#x}");
                        let overlap = self.model.pages.iter().any(|(&a, p)| a < base + rounded && base < a + p.mapped)
                            || self.model.arenas.iter().any(|a| a.base < base + rounded && base < a.base + a.cap);
                        ensure!(!overlap, "{op:?}: {base:#x}+{rounded:#x} overlaps a live page or arena");
                        self.next_serial += 1;
                        self.model.arena_insert(base, rounded, self.next_serial);
                        self.arenas.push(Box::new(arena));
                        return self.arena_checked(self.arenas.len() - 1, &op, base);
                    }
                    (Err(g), Err(e)) => self.outcome = refused(&op, g, e)?,
                    (g, e) => return Err(format!("{op:?}: {g:?}, model {e:?}")),
                }
            }
            Op::ArenaPush { size, value, with, .. } => {
                let (next, cap) = (self.model.arenas[ai].next_offset(FN_ALIGN), self.model.arenas[ai].cap);
                let len = size.bytes(next, cap);
                let arena = &*self.arenas[ai];
                // No slice for a length the arena must refuse anyway, or that big.
                let with = with || len > 1 << 22;
                let got = if with {
                    let mut seen = None;
                    let got = arena.push_with(len, |at, bytes| {
                        let fresh = bytes.len() == len && bytes.iter().all(|&b| b == 0xCC);
                        let (code, _) = fn_code(len, at as u64);
                        bytes.copy_from_slice(&code);
                        seen = Some((at, fresh));
                    });
                    if let Ok(id) = got {
                        let (at, fresh) = seen.ok_or_else(|| format!("{op:?}: push_with never called emit"))?;
                        ensure!(fresh, "{op:?}: emit was handed bytes that are not {len} int3s");
                        ensure!(arena.addr(id) == Ok(at), "{op:?}: emit saw {at:#x}, addr {:?}", arena.addr(id));
                    } else {
                        ensure!(seen.is_none(), "{op:?}: emit ran for a refused push");
                    }
                    got
                } else {
                    arena.push(&fn_code(len, value).0)
                };
                let expected =
                    self.model.arena_push(ai, len, false, |at| fn_code(len, if with { at as u64 } else { value }));
                match (got, expected) {
                    (Ok(id), Ok(i)) => {
                        let a = &mut self.model.arenas[ai];
                        a.recs[i].id = Some(id);
                        addr = a.base + a.recs[i].off;
                        ensure!(
                            self.arenas[ai].addr(id) == Ok(addr),
                            "{op:?}: addr {:?}, model {addr:#x}",
                            self.arenas[ai].addr(id)
                        );
                        ensure!(self.arenas[ai].id_at(addr) == Ok(id), "{op:?}: id_at({addr:#x})");
                        // SAFETY: the library just copied the function there and it is
                        // pending: R|W, and nothing writes it while we read.
                        let now = unsafe { std::slice::from_raw_parts(addr as *const u8, len) };
                        ensure!(
                            now == a.recs[i].bytes.as_slice(),
                            "{op:?}: the bytes at {addr:#x} are not the pushed ones"
                        );
                    }
                    (Err(g), Err(e)) => self.outcome = refused(&op, g, e)?,
                    (g, e) => return Err(format!("{op:?} ({len} bytes): {g:?}, model {e:?}")),
                }
            }
            Op::ArenaImport { target, .. } => {
                let got = self.arenas[ai].import(target as usize);
                let expected = self.model.arena_push(ai, 8, true, |_| (target.to_le_bytes().to_vec(), None));
                match (got, expected) {
                    (Ok(slot), Ok(i)) => {
                        let a = &self.model.arenas[ai];
                        ensure!(
                            slot == a.base + a.recs[i].off,
                            "{op:?}: slot {slot:#x}, model {:#x}",
                            a.base + a.recs[i].off
                        );
                        // SAFETY: the slot is in a pending R|W page of the arena.
                        let stored = unsafe { (slot as *const u64).read() };
                        ensure!(stored == target, "{op:?}: slot holds {stored:#x}");
                    }
                    (Err(g), Err(e)) => self.outcome = refused(&op, g, e)?,
                    (g, e) => return Err(format!("{op:?}: {g:?}, model {e:?}")),
                }
            }
            Op::ArenaPublish(_) => {
                self.arenas[ai].publish().map_err(|e| format!("{op:?}: {e:?}"))?;
                self.model.arena_publish(ai);
            }
            Op::ArenaCall { f, .. } | Op::ArenaHold { f, .. } => {
                let Some((i, id)) = self.pick_fn(ai, f) else { return Ok(self.skipped()) };
                let arena = &*self.arenas[ai];
                // SAFETY: every generated function implements `RetFn` (it returns a u64
                // in rax and touches nothing); a tampered one is never called (below).
                let got = unsafe { arena.entry::<RetFn>(id) };
                let expected = self.model.arena_entry(ai, id);
                let rec = &self.model.arenas[ai].recs[i];
                addr = self.model.arenas[ai].base + rec.off;
                match (got, expected) {
                    (Ok(entry), Ok(_)) => {
                        ensure!(entry.as_ptr() as usize == addr && entry.len() == rec.len, "{op:?}: {entry:?}");
                        let intact = rec.intact();
                        let verified = entry.verify();
                        ensure!(verified.is_ok() == intact, "{op:?}: Entry::verify {verified:?}, intact {intact}");
                        if let Some(value) = rec.callable() {
                            let r = entry.call(());
                            ensure!(r == value, "{op:?}: call returned {r:#x}, model {value:#x}");
                        }
                        if matches!(op, Op::ArenaHold { .. }) {
                            let serial = self.model.arenas[ai].serial;
                            // SAFETY: only the lifetime changes: the entry borrows the boxed
                            // arena, which stays put and outlives it (`drop_arena` and
                            // `Drop` drop the entries first).
                            let entry =
                                unsafe { std::mem::transmute::<Entry<'_, RetFn>, Entry<'static, RetFn>>(entry) };
                            self.held.push(Held { serial, rec: i, entry });
                        } else {
                            drop(entry);
                            self.model.arenas[ai].recs[i].entries -= 1;
                        }
                    }
                    (Err(g), Err(e)) => self.outcome = refused(&op, g, e)?,
                    (g, e) => return Err(format!("{op:?}: {:?}, model {e:?}", g.map(drop))),
                }
            }
            Op::ArenaRelease(n) => {
                if self.held.is_empty() {
                    return Ok(self.skipped());
                }
                let h = self.held.remove(self.held.len() - 1 - usize::from(n) % self.held.len());
                let ai = self.model.arenas.iter().position(|a| a.serial == h.serial).expect("held on a live arena");
                drop(h.entry);
                self.model.arenas[ai].recs[h.rec].entries -= 1;
                return self.arena_checked(ai, &op, 0);
            }
            Op::ArenaVerify { f, .. } => {
                let Some((i, id)) = self.pick_fn(ai, f) else { return Ok(self.skipped()) };
                let a = &self.model.arenas[ai];
                addr = a.base + a.recs[i].off;
                let (got, expected) = (self.arenas[ai].verify(id), self.model.arena_verify(ai, id));
                ensure!(got == expected, "{op:?}: {got:?}, model {expected:?}");
                if got.is_err() {
                    self.outcome = "refused";
                }
                ensure!(
                    self.arenas[ai].addr(id) == Ok(addr),
                    "{op:?}: addr {:?} != {addr:#x}",
                    self.arenas[ai].addr(id)
                );
                for h in self.held.iter().filter(|h| h.serial == a.serial && h.rec == i) {
                    let intact = a.recs[i].intact();
                    ensure!(h.entry.verify().is_ok() == intact, "{op:?}: held Entry::verify, intact {intact}");
                }
            }
            Op::ArenaVerifyAll(_) => {
                let (got, expected) = (self.arenas[ai].verify_all(), self.model.arenas[ai].verify_all());
                let same = match (got, expected) {
                    (Ok(()), Ok(())) => true,
                    (Err(Error::IntegrityMismatch { sealed, now }), Err(Mismatch::Rec(s, n))) => {
                        (sealed, now) == (s, n)
                    }
                    (Err(Error::IntegrityMismatch { .. }), Err(Mismatch::Gap)) => true,
                    _ => false,
                };
                ensure!(same, "{op:?}: {got:?}, model {expected:?}");
                if got.is_err() {
                    self.outcome = "refused";
                }
            }
            Op::ArenaTamper { f, offset, byte, .. } => {
                let a = &self.model.arenas[ai];
                let at = match f {
                    Some(f) => match self.pick_fn(ai, f) {
                        Some((i, _)) if a.recs[i].hash.is_some() => a.recs[i].off + offset as usize % a.recs[i].len,
                        _ => return Ok(self.skipped()),
                    },
                    None if a.published_end > 0 => offset as usize % a.published_end,
                    None => return Ok(self.skipped()),
                };
                if a.released.contains(&round_down(at, PAGE)) {
                    return Ok(self.skipped());
                }
                if MEMFD_MODE.load(std::sync::atomic::Ordering::Relaxed) {
                    // A shared read-only view cannot be written even through
                    // /proc/self/mem (no private copy to break COW into): EIO, and the
                    // published bytes stay as they are.
                    let refused = self.mem.write_all_at(&[byte], (a.base + at) as u64);
                    ensure!(refused.as_ref().is_err_and(|e| e.raw_os_error() == Some(5)), "{op:?}: {refused:?}");
                    return Ok(self.skipped());
                }
                let a = &mut self.model.arenas[ai];
                match a.rec_holding(at) {
                    Some(i) => {
                        let rec = &mut a.recs[i];
                        rec.bytes[at - rec.off] = byte;
                        rec.now = fnv1a(&rec.bytes);
                    }
                    None => {
                        a.gaps.insert(at, byte);
                    }
                }
                self.mem
                    .write_all_at(&[byte], (a.base + at) as u64)
                    .map_err(|e| format!("{op:?}: write /proc/self/mem: {e}"))?;
            }
            Op::ArenaRetire { f, .. } => {
                let Some((i, id)) = self.pick_fn(ai, f) else { return Ok(self.skipped()) };
                let a = &self.model.arenas[ai];
                addr = a.base + a.recs[i].off;
                let (got, expected) = (self.arenas[ai].retire(id), self.model.arena_retire(ai, id));
                ensure!(got == expected, "{op:?}: {got:?}, model {expected:?}");
                if got.is_err() {
                    self.outcome = "refused";
                }
            }
            Op::ArenaDrop(_) => {
                let range = self.drop_arena(ai);
                return Ok((0, Some(range)));
            }
            Op::ArenaRaw { at, .. } => {
                let a = &self.model.arenas[ai];
                let fn_addr = |f: u8| self.pick_fn(ai, f).map(|(i, _)| (a.base + a.recs[i].off, a.recs[i].len));
                let imports: Vec<usize> = a.recs.iter().filter(|r| r.import).map(|r| a.base + r.off).collect();
                let target = match at {
                    ArenaAddr::Fn(f) => fn_addr(f).map(|(p, _)| p),
                    ArenaAddr::Interior(f, k) => fn_addr(f).map(|(p, len)| p + 1 + usize::from(k) % len),
                    ArenaAddr::Import(n) => {
                        imports.len().checked_sub(1 + usize::from(n) % imports.len().max(1)).map(|i| imports[i])
                    }
                    ArenaAddr::Base => Some(a.base),
                    ArenaAddr::Next => Some(a.base + a.next_offset(FN_ALIGN)),
                    ArenaAddr::Last => Some(a.base + a.cap - 1),
                    ArenaAddr::End => Some(a.base + a.cap),
                };
                let Some(target) = target else { return Ok(self.skipped()) };
                addr = target;
                let p = target as *mut u8;
                let want_state = self.model.inspect(target).map(|i| i.state);
                ensure!(
                    wildx::raw::state(p) == want_state,
                    "{op:?}: raw::state {:?}, model {want_state:?}",
                    wildx::raw::state(p)
                );
                let (verified, expected) = (wildx::raw::verify(p), self.model.verify(target));
                ensure!(verified == code(&expected), "{op:?}: raw::verify {verified}, model {expected:?}");
                let a = &self.model.arenas[ai];
                let id = a.fn_at_addr(target).map(|i| a.recs[i].id.expect("function"));
                let got_id = self.arenas[ai].id_at(target);
                ensure!(got_id.ok() == id, "{op:?}: id_at {got_id:?}, model {id:?}");
                if self.model.arena_at(target).is_some() {
                    let (free, expected) = (wildx::raw::free(p), self.model.free(target, Who::Raw));
                    ensure!(free == code(&expected) && free == -1, "{op:?}: raw::free {free}, model {expected:?}");
                    let (seal, expected) = (wildx::raw::seal(p), self.model.seal(target, Who::Raw));
                    ensure!(seal == code(&expected) && seal == -1, "{op:?}: raw::seal {seal}, model {expected:?}");
                }
            }
            Op::ArenaForeign { f, .. } => {
                let serial = self.model.arenas[ai].serial;
                let others: Vec<FnId> = self
                    .model
                    .arenas
                    .iter()
                    .filter(|a| a.serial != serial)
                    .flat_map(|a| a.recs.iter().filter_map(|r| r.id))
                    .chain(self.dead_ids.iter().copied())
                    .collect();
                if others.is_empty() {
                    return Ok(self.skipped());
                }
                let id = others[others.len() - 1 - usize::from(f) % others.len()];
                let arena = &*self.arenas[ai];
                // SAFETY: refused before anything is called.
                let entry = unsafe { arena.entry::<RetFn>(id) }.map(drop);
                let all = (arena.verify(id), arena.retire(id), entry, arena.addr(id).map(drop));
                let foreign = Err(Error::ForeignFn);
                ensure!(all == (foreign, foreign, foreign, foreign), "{op:?}: {all:?}");
            }
            _ => return Err(format!("{op:?} is not an arena operation")),
        }
        self.arena_checked(ai, &op, addr)
    }

    /// Notes that the operation found nothing to act on.
    fn skipped(&mut self) -> (usize, Option<(usize, usize)>) {
        self.outcome = "skipped";
        (0, None)
    }

    /// After an operation on arena `ai`: its base, capacity and next address as the model
    /// has them; passes `addr` on.
    fn arena_checked(&self, ai: usize, op: &Op, addr: usize) -> Result<(usize, Option<(usize, usize)>), String> {
        let (Some(arena), Some(a)) = (self.arenas.get(ai), self.model.arenas.get(ai)) else {
            return Ok((addr, None));
        };
        let next = a.base + a.next_offset(FN_ALIGN);
        ensure!(
            arena.base() == a.base && arena.capacity() == a.cap && arena.next_addr() == next,
            "after {op:?}: arena at {:#x}+{:#x} next {:#x}, model {:#x}+{:#x} next {next:#x}",
            arena.base(),
            arena.capacity(),
            arena.next_addr(),
            a.base,
            a.cap
        );
        Ok((addr, None))
    }

    fn resolve(&self, target: Target, stack: usize) -> usize {
        let recent = |n: u8| match self.history.len() {
            0 => 0,
            len => self.history[len - 1 - usize::from(n) % len],
        };
        match target {
            Target::Recent(n) => recent(n),
            Target::Interior(n, off) => recent(n).wrapping_add(off.bytes()),
            Target::Null => 0,
            Target::Stack => stack,
            Target::Heap => self.heap.as_ptr() as usize,
            Target::Static => STATIC_BYTES.as_ptr() as usize,
            Target::ForeignMap => self.foreign.as_ptr() as usize,
            Target::Kernel => 0xffff_ffff_ffff_f000,
        }
    }

    /// Applies one operation to wildx and to the model and compares what can be
    /// observed. `Err` describes the first difference.
    pub fn apply(&mut self, op: Op) -> Result<(), String> {
        let local = 0u64;
        let stack = &local as *const u64 as usize;
        self.ops += 1;
        let mut freed = None;
        let addr = match op {
            op if op.is_arena() => {
                let (addr, gone) = self.apply_arena(op)?;
                *self.tally.entry((op.name(), self.outcome)).or_default() += 1;
                freed = gone;
                addr
            }
            Op::Alloc(size) | Op::AllocTyped(size) => {
                let len = size.bytes();
                let expected = self.model.alloc(len);
                let got = if matches!(op, Op::Alloc(_)) {
                    let p = wildx::raw::alloc(len);
                    NonNull::new(p).ok_or(Error::Null).map(|p| (p, None))
                } else {
                    Page::new(len).map(|page| (NonNull::new(page.as_ptr() as *mut u8).expect("page"), Some(page)))
                };
                match (expected, got) {
                    (Err(e), Err(g)) => {
                        ensure!(matches!(op, Op::Alloc(_)) || e == g, "{op:?}: error {g:?}, model {e:?}");
                        0
                    }
                    (Ok(_), Ok((ptr, page))) => {
                        let holder = if page.is_some() { Holder::Page } else { Holder::Raw };
                        self.admit(ptr, len, holder)?;
                        if let Some(page) = page {
                            ensure!(page.len() == len, "{op:?}: Page::len {} != {len}", page.len());
                            self.pages.insert(ptr.as_ptr() as usize, page);
                        }
                        ptr.as_ptr() as usize
                    }
                    (e, g) => return Err(format!("{op:?}: got {:?}, model {e:?}", g.map(|(p, _)| p))),
                }
            }
            Op::CompileAdd | Op::CompileAddTyped => {
                let expected = self.model.alloc(ADD_PAGE_LEN);
                let got = if op == Op::CompileAdd {
                    NonNull::new(wildx::jit::compile_add_i32()).ok_or(Error::Null).map(|p| (p, None))
                } else {
                    wildx::jit::compile_add().map(|c| (NonNull::new(c.as_ptr() as *mut u8).expect("code"), Some(c)))
                };
                match (expected, got) {
                    (Err(e), Err(g)) => {
                        ensure!(op == Op::CompileAdd || e == g, "{op:?}: error {g:?}, model {e:?}");
                        0
                    }
                    (Ok(_), Ok((ptr, code))) => {
                        let addr = ptr.as_ptr() as usize;
                        let holder = if code.is_some() { Holder::Page } else { Holder::Raw };
                        let who = if code.is_some() { Who::Handle } else { Who::Raw };
                        self.admit_unchecked(ptr, ADD_PAGE_LEN, holder)?;
                        self.model.write(addr, who, 0, &ADD_I32).map_err(|e| format!("model install: {e:?}"))?;
                        self.model.seal(addr, who).map_err(|e| format!("model seal: {e:?}"))?;
                        if let Some(code) = code {
                            self.codes.insert(addr, code);
                        }
                        addr
                    }
                    (e, g) => return Err(format!("{op:?}: got {:?}, model {e:?}", g.map(|(p, _)| p))),
                }
            }
            Op::Install(t) => {
                let addr = self.resolve(t, stack);
                let expected = self.model.write(addr, Who::Raw, 0, &ADD_I32);
                let got = wildx::jit::install_add_i32(addr as *mut u8);
                ensure!(got == code(&expected), "{op:?} at {addr:#x}: {got}, model {expected:?}");
                addr
            }
            Op::Write { target, offset, len, byte } => {
                let addr = self.resolve(target, stack);
                if let Some(page) = self.model.pages.get_mut(&addr).filter(|p| p.state == State::Writable) {
                    let off = usize::from(offset) % page.len;
                    let n = usize::from(len).max(1).min(page.len - off);
                    page.bytes[off..off + n].fill(byte);
                    match page.holder {
                        // SAFETY: the model says `addr` starts a live WRITABLE page of
                        // `page.len` bytes that no handle owns; `off + n <= len`.
                        Holder::Raw => unsafe { (addr as *mut u8).add(off).write_bytes(byte, n) },
                        Holder::Page => {
                            self.pages.get_mut(&addr).expect("Page handle").as_mut_slice()[off..off + n].fill(byte)
                        }
                        Holder::Code => return Err(format!("{op:?}: model has a WRITABLE page held by Code")),
                    }
                }
                addr
            }
            Op::Seal(t) => {
                let addr = self.resolve(t, stack);
                let expected = self.model.seal(addr, Who::Raw);
                let got = wildx::raw::seal(addr as *mut u8);
                ensure!(got == code(&expected), "{op:?} at {addr:#x}: {got}, model {expected:?}");
                addr
            }
            Op::SealTyped(t) => {
                let addr = self.resolve(t, stack);
                if let Some(mut page) = self.pages.remove(&addr) {
                    if page.len() < ADD_I32.len() {
                        self.pages.insert(addr, page);
                    } else {
                        page.as_mut_slice()[..ADD_I32.len()].copy_from_slice(&ADD_I32);
                        self.model.write(addr, Who::Handle, 0, &ADD_I32).map_err(|e| format!("model: {e:?}"))?;
                        let expected = self.model.seal(addr, Who::Handle);
                        // SAFETY: the page starts with the add code, which implements
                        // `AddI32`; the rest of it is int3 or bytes no call reaches.
                        match (unsafe { page.seal::<AddI32>() }, expected) {
                            (Ok(code), Ok(_)) => {
                                self.codes.insert(addr, code);
                            }
                            (Err(e), Err(m)) if e.error == m => {
                                self.pages.insert(addr, e.page);
                            }
                            (got, m) => return Err(format!("{op:?}: {:?}, model {m:?}", got.map(drop))),
                        }
                    }
                }
                addr
            }
            Op::Call { target, a, b } => {
                let addr = self.resolve(target, stack);
                if let Some(page) = self.model.pages.get(&addr).filter(|p| p.callable_add()) {
                    let got = match page.holder {
                        Holder::Code => self.codes[&addr].call((a, b)),
                        // SAFETY: the model says `addr` is a live sealed page holding
                        // intact add code, and nothing frees it during the call.
                        Holder::Raw => unsafe { wildx::jit::call_i32_i32(addr as *mut u8, a, b) },
                        Holder::Page => return Err(format!("{op:?}: model has a sealed page held by Page")),
                    };
                    ensure!(got == a.wrapping_add(b), "{op:?}: add({a}, {b}) returned {got}");
                }
                addr
            }
            Op::Verify(t) => {
                let addr = self.resolve(t, stack);
                let expected = self.model.verify(addr);
                let got = wildx::raw::verify(addr as *const u8);
                ensure!(got == code(&expected), "{op:?} at {addr:#x}: {got}, model {expected:?}");
                if let Some(c) = self.codes.get(&addr) {
                    let typed = c.verify();
                    ensure!(typed == expected, "{op:?}: Code::verify {typed:?}, model {expected:?}");
                }
                addr
            }
            Op::Tamper { target, offset, byte } => {
                let addr = self.resolve(target, stack);
                if let Some(page) = self.model.pages.get_mut(&addr).filter(|p| p.state == State::Executable) {
                    let off = usize::from(offset) % page.mapped;
                    if MEMFD_MODE.load(std::sync::atomic::Ordering::Relaxed) {
                        // As for arenas: refused, nothing changes (see ArenaTamper).
                        let refused = self.mem.write_all_at(&[byte], (addr + off) as u64);
                        ensure!(refused.as_ref().is_err_and(|e| e.raw_os_error() == Some(5)), "{op:?}: {refused:?}");
                    } else {
                        if off < page.len {
                            page.bytes[off] = byte;
                        }
                        self.mem
                            .write_all_at(&[byte], (addr + off) as u64)
                            .map_err(|e| format!("{op:?}: write /proc/self/mem: {e}"))?;
                    }
                }
                addr
            }
            Op::Free(t) => {
                let addr = self.resolve(t, stack);
                let mapped = self.model.pages.get(&addr).map(|p| p.mapped);
                let expected = self.model.free(addr, Who::Raw);
                let got = wildx::raw::free(addr as *mut u8);
                ensure!(got == code(&expected), "{op:?} at {addr:#x}: {got}, model {expected:?}");
                if got == 0 {
                    freed = mapped.map(|m| (addr, m));
                }
                addr
            }
            Op::FromRawPage(t) => {
                let addr = self.resolve(t, stack);
                let expected = self.model.take(addr, State::Writable);
                // SAFETY: the harness writes a page through its raw pointer only while the
                // model says no handle holds it, so nothing writes behind this handle.
                let got = unsafe { Page::from_raw(addr as *mut u8) };
                match (got, expected) {
                    (Ok(page), Ok(len)) => {
                        ensure!(page.len() == len, "{op:?}: len {} != {len}", page.len());
                        self.pages.insert(addr, page);
                    }
                    (Err(g), Err(e)) => ensure!(g == e, "{op:?} at {addr:#x}: {g:?}, model {e:?}"),
                    (g, e) => return Err(format!("{op:?} at {addr:#x}: {:?}, model {e:?}", g.map(drop))),
                }
                addr
            }
            Op::FromRawCode(t) => {
                let addr = self.resolve(t, stack);
                // Taking a page that is not intact add code as `Code<AddI32>` would break
                // `from_raw`'s contract; the model knows when that call would succeed.
                let forbidden = self
                    .model
                    .pages
                    .get(&addr)
                    .is_some_and(|p| p.holder == Holder::Raw && p.state == State::Executable && !p.callable_add());
                if !forbidden {
                    let expected = self.model.take(addr, State::Executable);
                    // SAFETY: where this can succeed the model says the page is sealed,
                    // intact add code (checked just above), which implements `AddI32`.
                    let got = unsafe { Code::<AddI32>::from_raw(addr as *mut u8) };
                    match (got, expected) {
                        (Ok(code), Ok(len)) => {
                            ensure!(code.len() == len, "{op:?}: len {} != {len}", code.len());
                            self.codes.insert(addr, code);
                        }
                        (Err(g), Err(e)) => ensure!(g == e, "{op:?} at {addr:#x}: {g:?}, model {e:?}"),
                        (g, e) => return Err(format!("{op:?} at {addr:#x}: {:?}, model {e:?}", g.map(drop))),
                    }
                }
                addr
            }
            Op::IntoRaw(t) => {
                let addr = self.resolve(t, stack);
                let ptr = if let Some(page) = self.pages.remove(&addr) {
                    Some(page.into_raw())
                } else {
                    self.codes.remove(&addr).map(Code::into_raw)
                };
                if let Some(ptr) = ptr {
                    ensure!(ptr.as_ptr() as usize == addr, "{op:?}: into_raw gave {ptr:p}");
                    self.model.release(addr);
                }
                addr
            }
            Op::DropHandle(t) => {
                let addr = self.resolve(t, stack);
                let had = self.pages.remove(&addr).map(drop).or_else(|| self.codes.remove(&addr).map(drop));
                if had.is_some() {
                    let mapped = self.model.pages[&addr].mapped;
                    self.model.free(addr, Who::Handle).map_err(|e| format!("model drop: {e:?}"))?;
                    freed = Some((addr, mapped));
                }
                addr
            }
            Op::SetQuota(q) => {
                let bytes = self.model.quota_bytes(q);
                wildx::set_quota(bytes);
                self.model.quota = bytes;
                ensure!(wildx::quota() == bytes, "{op:?}: quota() {} != {bytes}", wildx::quota());
                0
            }
            // Arena operations are handled by the first arm.
            _ => return Err(format!("{op:?}: no case for it")),
        };
        let maps = self.maps_every > 0 && self.ops % self.maps_every == 0;
        if let Some((addr, mapped)) = freed.filter(|_| maps) {
            // Checked at once, before this harness maps anything that could land there.
            let maps = self.read_maps();
            ensure!(maps.is_unmapped(addr, mapped), "{op:?}: freed {addr:#x}+{mapped:#x} still mapped");
        }
        self.check(&op, addr, maps, op.is_arena())
    }

    /// Checks and records a fresh page from an allocation.
    fn admit(&mut self, ptr: NonNull<u8>, len: usize, holder: Holder) -> Result<(), String> {
        self.admit_unchecked(ptr, len, holder)?;
        let mapped = pages_for(len).expect("allocated");
        // SAFETY: the library just returned `ptr` as a live R|W mapping of `mapped` bytes;
        // reading it races with nothing (this harness is its only user).
        let bytes = unsafe { std::slice::from_raw_parts(ptr.as_ptr(), mapped) };
        ensure!(bytes.chunks(PAGE).all(|c| c == [0xCC; PAGE]), "fresh page {ptr:p} is not all 0xCC");
        Ok(())
    }

    fn admit_unchecked(&mut self, ptr: NonNull<u8>, len: usize, holder: Holder) -> Result<(), String> {
        let addr = ptr.as_ptr() as usize;
        let mapped = pages_for(len).expect("allocated");
        ensure!(addr % PAGE == 0, "alloc returned misaligned {addr:#x}");
        if let Some((&other, p)) = self.model.pages.iter().find(|&(&a, p)| a < addr + mapped && addr < a + p.mapped) {
            return Err(format!(
                "alloc returned {addr:#x}+{mapped:#x}, overlapping live page {other:#x}+{:#x}",
                p.mapped
            ));
        }
        self.model.insert(addr, len, holder);
        self.history.push(addr);
        Ok(())
    }

    /// Compares stats, every live page's registry entry, the operation's target, and
    /// (if `maps`) the address space with the model.
    fn check(&mut self, op: &dyn std::fmt::Debug, addr: usize, maps: bool, arena_op: bool) -> Result<(), String> {
        let s = wildx::stats();
        let (b, m) = (&self.base, &self.model);
        let expected = Stats {
            live_pages: b.live_pages + m.pages.len(),
            live_bytes: m.live(),
            peak_bytes: m.peak_bytes,
            quota: m.quota,
            allocs: b.allocs + m.counts.allocs,
            seals: b.seals + m.counts.seals,
            frees: b.frees + m.counts.frees,
            refusals: b.refusals + m.counts.refusals,
            registry_bytes: s.registry_bytes,
            registry_capacity: s.registry_capacity,
            arenas: b.arenas + m.arenas.len(),
            arena_functions: b.arena_functions + m.arena_fns,
            arena_bytes: b.arena_bytes + m.arena_bytes,
            exec_mode: if MEMFD_MODE.load(std::sync::atomic::Ordering::Relaxed) {
                wildx::ExecMode::Memfd
            } else {
                wildx::ExecMode::Anonymous
            },
        };
        ensure!(s == expected, "after {op:?}: stats {s:#?}\nmodel {expected:#?}");
        // The page table grows only when an insert finds it full, and never shrinks (arena
        // operations map and unmap arenas' record tables, which the figure includes).
        if s.registry_bytes != self.last.registry_bytes && !arena_op {
            ensure!(
                s.registry_bytes > self.last.registry_bytes && s.live_pages > self.last.registry_capacity,
                "after {op:?}: registry storage went {} -> {} bytes with {} live pages and capacity {}",
                self.last.registry_bytes,
                s.registry_bytes,
                s.live_pages,
                self.last.registry_capacity
            );
        }
        ensure!(s.registry_capacity >= s.live_pages, "capacity {} < live {}", s.registry_capacity, s.live_pages);
        self.last = s;
        // Every live page's entry with each address-space check, the operation's own page
        // every time (the others cannot have changed, and the stats above count them).
        let m = &self.model;
        let pages = m.pages.keys().copied();
        let fns = m.arenas.iter().flat_map(|a| a.fns.iter().map(|&i| a.base + a.recs[i].off));
        let sweep = maps.then_some(()).into_iter().flat_map(|()| pages.clone().chain(fns.clone()));
        let own = (addr != 0 && !maps).then_some(addr);
        for a in sweep.chain(own) {
            let want = m.inspect(a);
            let info = wildx::inspect(a as *const u8);
            let got = info.map(|i| ModelInfo {
                len: i.len,
                mapped: i.mapped_len,
                state: i.state,
                hash: i.seal_hash,
                held: i.held_by_handle,
            });
            ensure!(
                got == want && info.is_none_or(|i| i.start.as_ptr() as usize == a),
                "after {op:?}: inspect({a:#x}) = {info:?}, model {want:?}"
            );
        }
        if addr != 0 {
            let (state, want) = (wildx::raw::state(addr as *const u8), m.inspect(addr).map(|w| w.state));
            ensure!(state == want, "after {op:?}: raw::state({addr:#x}) = {state:?}, model {want:?}");
        }
        // SAFETY: the foreign page is our own live R|W mapping; nothing but this reads it.
        let foreign = unsafe { std::slice::from_raw_parts(self.foreign.as_ptr(), PAGE) };
        ensure!(foreign == [FOREIGN_FILL; PAGE], "after {op:?}: the foreign mapping changed");
        if maps {
            self.check_maps(op)?;
        }
        Ok(())
    }

    fn read_maps(&mut self) -> Maps {
        self.maps.snapshot();
        self.maps_checks += 1;
        self.maps.parse()
    }

    /// `/proc/self/maps` against the model: no W+X anywhere, every live page mapped with
    /// its state's protection, and anonymous executable memory exactly the sealed pages.
    fn check_maps(&mut self, op: &dyn std::fmt::Debug) -> Result<(), String> {
        let maps = self.read_maps();
        let wx = maps.writable_and_executable();
        ensure!(wx.is_empty(), "after {op:?}: W^X violated: {wx:#x?}");
        let mut exec = 0;
        // In memfd mode pages are shared views of the file.
        let shared = MEMFD_MODE.load(std::sync::atomic::Ordering::Relaxed);
        let (rx, rw) = (Perms { shared, ..Perms::RX }, Perms { shared, ..Perms::W });
        for (&a, p) in &self.model.pages {
            let want = if p.state == State::Executable { rx } else { rw };
            let got = maps.perms_of(a, p.mapped);
            ensure!(got == Some(want), "after {op:?}: {a:#x}+{:#x} is {got:?}, model {want:?}", p.mapped);
            if p.state == State::Executable {
                exec += p.mapped;
            }
        }
        // Arenas: published pages R|X (released ones inaccessible), the pages committed
        // past them R|W, the rest of the reservation inaccessible.
        const NONE: Perms = Perms { read: false, write: false, exec: false, shared: false };
        for a in &self.model.arenas {
            let mut runs: Vec<(usize, usize, Perms)> = Vec::new();
            let mut run = |from: usize, to: usize, perms: Perms| match runs.last_mut() {
                _ if from == to => {}
                Some(last) if last.1 == from && last.2 == perms => last.1 = to,
                _ => runs.push((from, to, perms)),
            };
            for page in (0..a.published_end).step_by(PAGE) {
                run(page, page + PAGE, if a.released.contains(&page) { NONE } else { rx });
            }
            run(a.published_end, a.committed_end, rw);
            run(a.committed_end, a.cap, NONE);
            for (from, to, want) in runs {
                let got = maps.perms_of(a.base + from, to - from);
                ensure!(
                    got == Some(want),
                    "after {op:?}: arena {:#x} offsets {from:#x}..{to:#x} are {got:?}, model {}",
                    a.base,
                    want.rwx()
                );
                if want == rx {
                    exec += to - from;
                }
            }
        }
        let anon_exec = if shared { maps.memfd_exec_bytes() } else { maps.anon_exec_bytes() };
        ensure!(
            anon_exec == self.base_exec + exec,
            "after {op:?}: {anon_exec} anonymous executable bytes, model {} sealed + {} before",
            exec,
            self.base_exec
        );
        ensure!(maps.perms_of(self.foreign.as_ptr() as usize, PAGE) == Some(Perms::RW), "foreign mapping changed");
        Ok(())
    }

    /// Frees every page the run left (dropping handles, raw-freeing the rest) and checks
    /// that the registry and the address space are back where they started: no live
    /// pages, no anonymous executable memory beyond the baseline, no W+X, and registry
    /// storage that only grew while pages were live.
    pub fn finish(mut self) -> Result<Stats, String> {
        while let Some(h) = self.held.pop() {
            let ai = self.model.arenas.iter().position(|a| a.serial == h.serial).expect("held on a live arena");
            drop(h.entry);
            self.model.arenas[ai].recs[h.rec].entries -= 1;
        }
        while !self.arenas.is_empty() {
            let (base, cap) = self.drop_arena(0);
            let maps = self.read_maps();
            ensure!(maps.is_unmapped(base, cap), "dropped arena {base:#x}+{cap:#x} still mapped");
        }
        let handles: Vec<usize> = self.pages.keys().chain(self.codes.keys()).copied().collect();
        for addr in handles {
            let had = self.pages.remove(&addr).map(drop).or_else(|| self.codes.remove(&addr).map(drop));
            ensure!(had.is_some(), "final drop: no handle for {addr:#x}");
            self.model.free(addr, Who::Handle).map_err(|e| format!("model drop of {addr:#x}: {e:?}"))?;
        }
        let raw: Vec<usize> = self.model.pages.keys().copied().collect();
        for addr in raw {
            let expected = self.model.free(addr, Who::Raw);
            let got = wildx::raw::free(addr as *mut u8);
            ensure!(got == 0 && expected.is_ok(), "final free of {addr:#x}: {got}, model {expected:?}");
        }
        self.check(&"the final frees", 0, true, true)?;
        let s = wildx::stats();
        ensure!(s.live_pages == self.base.live_pages && s.live_bytes == self.base.live_bytes, "leak: {s:?}");
        wildx::set_quota(DEFAULT_QUOTA);
        Ok(s)
    }
}

fn code<T>(r: &Result<T, Error>) -> i32 {
    if r.is_ok() { 0 } else { -1 }
}

impl Drop for Harness {
    /// Leaves the registry clean even when a check failed half-way (proptest then runs
    /// the shrunk sequences in the same process).
    fn drop(&mut self) {
        // Entries first: they borrow the arenas.
        self.held.clear();
        self.arenas.clear();
        // Handles free their pages; raw frees of those then find nothing and touch nothing.
        self.pages.clear();
        self.codes.clear();
        for &addr in self.model.pages.keys() {
            let _ = wildx::raw::free(addr as *mut u8);
        }
        wildx::set_quota(DEFAULT_QUOTA);
        // SAFETY: `foreign` is the mapping `new` made, PAGE bytes, used by nothing else.
        let _ = unsafe { libc::munmap(self.foreign.as_ptr().cast(), PAGE) };
    }
}
