//! A reference model of wildx's contract, and a harness that runs each operation against
//! both the model and the real library and compares everything observable: return codes,
//! typed errors, states, seal hashes, the quota, every `stats()` counter, the bytes a
//! call computes, and (every few operations) `/proc/self/maps`.
//!
//! The model is plain data and plain rules taken from DESIGN.md, written without looking
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
//! the foreign mapping it made itself. Each block says which model fact makes it sound.

#![allow(unsafe_code)]

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::ptr::NonNull;

use wildx::jit::{ADD_I32, ADD_PAGE_LEN, AddI32};
use wildx::{Code, DEFAULT_QUOTA, Error, Page, State, Stats};

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
        Some(match r.u8() % 20 {
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
            _ => Op::SetQuota(match r.u8() % 4 {
                0 => Quota::Pages(r.u8()),
                1 => Quota::Default,
                2 => Quota::Live,
                _ => Quota::LivePlus(r.u8()),
            }),
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
        }
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
        let page = self.pages.get(&addr).ok_or(Error::NotRegistered)?;
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
                    let live = self.base_live + self.live_bytes;
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
        self.peak_bytes = self.peak_bytes.max(self.base_live + self.live_bytes);
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
        let live = self.base_live + self.live_bytes;
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
        let base = wildx::stats();
        assert_eq!(base.live_pages, 0, "the model needs a registry no one else is using");
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
        let base_exec = maps.parse().anon_exec_bytes();
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
        }
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
                    if off < page.len {
                        page.bytes[off] = byte;
                    }
                    self.mem
                        .write_all_at(&[byte], (addr + off) as u64)
                        .map_err(|e| format!("{op:?}: write /proc/self/mem: {e}"))?;
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
        };
        let maps = self.maps_every > 0 && self.ops % self.maps_every == 0;
        if let Some((addr, mapped)) = freed.filter(|_| maps) {
            // Checked at once, before this harness maps anything that could land there.
            let maps = self.read_maps();
            ensure!(maps.is_unmapped(addr, mapped), "{op:?}: freed {addr:#x}+{mapped:#x} still mapped");
        }
        self.check(&op, addr, maps)
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
    fn check(&mut self, op: &dyn std::fmt::Debug, addr: usize, maps: bool) -> Result<(), String> {
        let s = wildx::stats();
        let (b, m) = (&self.base, &self.model);
        let expected = Stats {
            live_pages: b.live_pages + m.pages.len(),
            live_bytes: m.base_live + m.live_bytes,
            peak_bytes: m.peak_bytes,
            quota: m.quota,
            allocs: b.allocs + m.counts.allocs,
            seals: b.seals + m.counts.seals,
            frees: b.frees + m.counts.frees,
            refusals: b.refusals + m.counts.refusals,
            registry_bytes: s.registry_bytes,
            registry_capacity: s.registry_capacity,
        };
        ensure!(s == expected, "after {op:?}: stats {s:#?}\nmodel {expected:#?}");
        // The table grows only when an insert finds it full, and never shrinks.
        if s.registry_bytes != self.last.registry_bytes {
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
        let sweep = maps.then_some(()).into_iter().flat_map(|()| self.model.pages.iter());
        let own = self.model.pages.get_key_value(&addr).filter(|_| !maps);
        for (&a, p) in sweep.chain(own) {
            let info = wildx::inspect(a as *const u8).ok_or_else(|| format!("after {op:?}: live {a:#x} not found"))?;
            let ok = info.start.as_ptr() as usize == a
                && info.len == p.len
                && info.mapped_len == p.mapped
                && info.state == p.state
                && info.seal_hash == p.hash
                && info.held_by_handle == (p.holder != Holder::Raw);
            ensure!(ok, "after {op:?}: inspect({a:#x}) = {info:?}, model {p:?}");
        }
        if addr != 0 && !self.model.pages.contains_key(&addr) {
            ensure!(wildx::inspect(addr as *const u8).is_none(), "after {op:?}: {addr:#x} registered, model: not");
            ensure!(wildx::raw::state(addr as *const u8).is_none(), "after {op:?}: {addr:#x} has a state");
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
        for (&a, p) in &self.model.pages {
            let want = if p.state == State::Executable { Perms::RX } else { Perms::RW };
            let got = maps.perms_of(a, p.mapped);
            ensure!(got == Some(want), "after {op:?}: {a:#x}+{:#x} is {got:?}, model {want:?}", p.mapped);
            if p.state == State::Executable {
                exec += p.mapped;
            }
        }
        let anon_exec = maps.anon_exec_bytes();
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
        self.check(&"the final frees", 0, true)?;
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
