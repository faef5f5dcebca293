//! The GDB JIT interface: each published batch becomes a small in-memory ELF object
//! carrying one `STT_FUNC` symbol per function, linked into the list gdb reads from
//! `__jit_debug_descriptor`, announced by calling `__jit_debug_register_code` (on which
//! gdb keeps a breakpoint), and unlinked and announced again when its code goes away.
//!
//! Invariants owned here:
//! - the entry list is only changed under [`LIST`], and every change is followed by a
//!   call to `__jit_debug_register_code` with `relevant_entry` and `action_flag` saying
//!   what changed, before the lock is released;
//! - an entry's block (the entry and its ELF object) is unmapped only after it is
//!   unlinked and announced, so gdb never reads a freed object;
//! - one entry per batch: gdb re-reads every object's symbols on each registration, so
//!   entries are kept few.
//!
//! This module defines the process-wide `__jit_debug_descriptor` and
//! `__jit_debug_register_code` symbols, which is why it sits behind the `gdb-jit`
//! feature: two JIT runtimes in one process defining them would not link.
//!
//! It needs `unsafe` to export those unmangled symbols and to build, link and free the
//! entry blocks through raw pointers.

#![allow(unsafe_code)]

use core::alloc::Layout;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering};

use super::CodeSym;
use super::name::NameBuf;
use crate::global::MmapAlloc;

/// `struct jit_code_entry` of gdb's `jit.h`.
#[repr(C)]
struct JitCodeEntry {
    next: *mut JitCodeEntry,
    prev: *mut JitCodeEntry,
    symfile_addr: *const u8,
    symfile_size: u64,
}

/// `struct jit_descriptor` of gdb's `jit.h`; atomics have the layout of the plain types.
#[repr(C)]
pub struct JitDescriptor {
    version: u32,
    action_flag: AtomicU32,
    relevant_entry: AtomicPtr<JitCodeEntry>,
    first_entry: AtomicPtr<JitCodeEntry>,
}

const JIT_NOACTION: u32 = 0;
const JIT_REGISTER_FN: u32 = 1;
const JIT_UNREGISTER_FN: u32 = 2;

/// The descriptor gdb finds by name. Changed only under [`LIST`].
#[unsafe(no_mangle)]
#[allow(non_upper_case_globals)]
pub static __jit_debug_descriptor: JitDescriptor = JitDescriptor {
    version: 1,
    action_flag: AtomicU32::new(JIT_NOACTION),
    relevant_entry: AtomicPtr::new(ptr::null_mut()),
    first_entry: AtomicPtr::new(ptr::null_mut()),
};

/// gdb sets a breakpoint here and reads the descriptor when it is hit. It must not be
/// inlined or optimised away: the empty `asm!` is an opaque side effect.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn __jit_debug_register_code() {
    // SAFETY: an empty instruction sequence: touches no register or memory.
    unsafe { core::arch::asm!("", options(nostack, preserves_flags)) };
}

/// Serialises every change to the entry list.
static LIST: spin::Mutex<()> = spin::Mutex::new(());
/// Entries registered for single sealed pages (retired by address range at free).
static PAGE_ENTRIES: AtomicUsize = AtomicUsize::new(0);

/// One mapped block: the entry, wildx's own bookkeeping, then the ELF object.
#[repr(C)]
struct Block {
    entry: JitCodeEntry,
    mapped: usize,
    lo: usize,
    hi: usize,
    by_page: bool,
}

const ELF_AT: usize = (size_of::<Block>() + 15) & !15;
const EHDR: usize = 64;
const SHDR: usize = 64;
const SYM: usize = 24;
const SECTIONS: usize = 5;
const SHSTRTAB: &[u8] = b"\0.text\0.symtab\0.strtab\0.shstrtab\0";

/// A registered batch: the entry block, unregistered and unmapped by [`unregister`].
pub(super) struct Entry(NonNull<Block>);

// SAFETY: the block is owned by whoever holds the `Entry` (and linked in a list only
// changed under LIST); moving the handle moves that ownership.
unsafe impl Send for Entry {}
// SAFETY: `&Entry` gives no access to the block.
unsafe impl Sync for Entry {}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

/// Builds and registers one ELF object for `batch`. Returns `None` (nothing registered)
/// for an empty batch or if the block cannot be mapped: gdb then shows bare addresses.
pub(super) fn register<'a>(batch: impl Iterator<Item = CodeSym<'a>> + Clone, by_page: bool) -> Option<Entry> {
    let (mut count, mut names_len, mut lo, mut hi) = (0usize, 0usize, usize::MAX, 0usize);
    for sym in batch.clone() {
        let addr = sym.code.as_ptr() as usize;
        count += 1;
        names_len += NameBuf::new(sym.name, addr).as_bytes().len() + 1;
        lo = lo.min(addr);
        hi = hi.max(addr + sym.code.len());
    }
    if count == 0 {
        return None;
    }
    let shdrs = EHDR;
    let symtab = shdrs + SECTIONS * SHDR;
    let symtab_len = (count + 1) * SYM;
    let shstrtab = symtab + symtab_len;
    let strtab = shstrtab + SHSTRTAB.len();
    let strtab_len = 1 + names_len;
    let elf_len = strtab + strtab_len;
    let layout = Layout::from_size_align(ELF_AT + elf_len, 16).ok()?;
    let (ptr, mapped) = MmapAlloc::map(layout)?;
    // SAFETY: a fresh, zeroed R|W mapping of `mapped >= ELF_AT + elf_len` bytes that only
    // this function knows about.
    let elf = unsafe { core::slice::from_raw_parts_mut(ptr.as_ptr().add(ELF_AT), elf_len) };

    // ELF header: ELFCLASS64, little-endian, version 1, ET_REL, EM_X86_64.
    put(elf, 0, &[0x7f, b'E', b'L', b'F', 2, 1, 1]);
    put(elf, 16, &1u16.to_le_bytes()); // e_type ET_REL
    put(elf, 18, &62u16.to_le_bytes()); // e_machine
    put(elf, 20, &1u32.to_le_bytes()); // e_version
    put(elf, 40, &(shdrs as u64).to_le_bytes()); // e_shoff
    put(elf, 52, &(EHDR as u16).to_le_bytes()); // e_ehsize
    put(elf, 58, &(SHDR as u16).to_le_bytes()); // e_shentsize
    put(elf, 60, &(SECTIONS as u16).to_le_bytes()); // e_shnum
    put(elf, 62, &4u16.to_le_bytes()); // e_shstrndx

    // Section headers: [0] null, [1] .text, [2] .symtab, [3] .strtab, [4] .shstrtab.
    let section = |elf: &mut [u8], i: usize, name: u32, kind: u32, flags: u64, addr: u64, off: usize, size: usize| {
        let at = shdrs + i * SHDR;
        put(elf, at, &name.to_le_bytes());
        put(elf, at + 4, &kind.to_le_bytes());
        put(elf, at + 8, &flags.to_le_bytes());
        put(elf, at + 16, &addr.to_le_bytes());
        put(elf, at + 24, &(off as u64).to_le_bytes());
        put(elf, at + 32, &(size as u64).to_le_bytes());
    };
    // .text: SHT_NOBITS (the code is in memory already, at its address), SHF_ALLOC|EXEC.
    section(elf, 1, 1, 8, 0x6, lo as u64, 0, hi - lo);
    put(elf, shdrs + SHDR + 48, &16u64.to_le_bytes()); // sh_addralign
    section(elf, 2, 7, 2, 0, 0, symtab, symtab_len); // SHT_SYMTAB
    put(elf, shdrs + 2 * SHDR + 40, &3u32.to_le_bytes()); // sh_link: .strtab
    put(elf, shdrs + 2 * SHDR + 44, &1u32.to_le_bytes()); // sh_info: first global
    put(elf, shdrs + 2 * SHDR + 48, &8u64.to_le_bytes()); // sh_addralign
    put(elf, shdrs + 2 * SHDR + 56, &(SYM as u64).to_le_bytes()); // sh_entsize
    section(elf, 3, 15, 3, 0, 0, strtab, strtab_len); // SHT_STRTAB
    section(elf, 4, 23, 3, 0, 0, shstrtab, SHSTRTAB.len());
    put(elf, shstrtab, SHSTRTAB);

    // Symbols: global functions in .text, values relative to the section (ET_REL).
    let mut name_at = 1;
    for (i, sym) in batch.enumerate() {
        let addr = sym.code.as_ptr() as usize;
        let name = NameBuf::new(sym.name, addr);
        let at = symtab + (i + 1) * SYM;
        put(elf, at, &(name_at as u32).to_le_bytes()); // st_name
        elf[at + 4] = 0x12; // st_info: STB_GLOBAL, STT_FUNC
        put(elf, at + 6, &1u16.to_le_bytes()); // st_shndx: .text
        put(elf, at + 8, &((addr - lo) as u64).to_le_bytes());
        put(elf, at + 16, &(sym.code.len() as u64).to_le_bytes());
        put(elf, strtab + name_at, name.as_bytes());
        name_at += name.as_bytes().len() + 1;
    }

    let block = ptr.cast::<Block>();
    let symfile = elf.as_ptr();
    // SAFETY: the mapping is page-aligned and at least size_of::<Block>() bytes, and
    // nobody else knows it yet.
    unsafe {
        block.as_ptr().write(Block {
            entry: JitCodeEntry {
                next: ptr::null_mut(),
                prev: ptr::null_mut(),
                symfile_addr: symfile,
                symfile_size: elf_len as u64,
            },
            mapped,
            lo,
            hi,
            by_page,
        })
    };
    let _guard = LIST.lock();
    let entry = block.as_ptr().cast::<JitCodeEntry>();
    let d = &__jit_debug_descriptor;
    // Relaxed everywhere below: gdb reads the list only while the process is stopped at
    // the breakpoint, and other wildx threads touch it only under LIST.
    let first = d.first_entry.load(Ordering::Relaxed);
    // SAFETY: `entry` is our fresh block; `first`, if non-null, is a live linked block
    // (blocks are unmapped only after unlinking, under LIST, which we hold).
    unsafe {
        (*entry).next = first;
        if !first.is_null() {
            (*first).prev = entry;
        }
    }
    d.first_entry.store(entry, Ordering::Relaxed);
    announce(entry, JIT_REGISTER_FN);
    if by_page {
        PAGE_ENTRIES.fetch_add(1, Ordering::Relaxed);
    }
    Some(Entry(block))
}

fn announce(entry: *mut JitCodeEntry, action: u32) {
    let d = &__jit_debug_descriptor;
    d.relevant_entry.store(entry, Ordering::Relaxed);
    d.action_flag.store(action, Ordering::Relaxed);
    __jit_debug_register_code();
    d.action_flag.store(JIT_NOACTION, Ordering::Relaxed);
    d.relevant_entry.store(ptr::null_mut(), Ordering::Relaxed);
}

/// Unlinks the batch's object, tells gdb, and unmaps it.
pub(super) fn unregister(entry: Entry) {
    let guard = LIST.lock();
    // SAFETY: the `Entry` handle proves the block is live and linked; LIST is held.
    unsafe { unlink(entry.0) };
    drop(guard);
    // SAFETY: the block is unlinked and announced; nothing refers to it any more.
    unsafe { unmap(entry.0) };
}

/// # Safety
/// `block` must be live and linked, and LIST held.
unsafe fn unlink(block: NonNull<Block>) {
    let entry = block.as_ptr().cast::<JitCodeEntry>();
    // SAFETY: by the contract, `entry` and its neighbours are live linked blocks.
    unsafe {
        let (next, prev) = ((*entry).next, (*entry).prev);
        if prev.is_null() {
            __jit_debug_descriptor.first_entry.store(next, Ordering::Relaxed);
        } else {
            (*prev).next = next;
        }
        if !next.is_null() {
            (*next).prev = prev;
        }
        if (*block.as_ptr()).by_page {
            PAGE_ENTRIES.fetch_sub(1, Ordering::Relaxed);
        }
    }
    announce(entry, JIT_UNREGISTER_FN);
}

/// # Safety
/// `block` must be unlinked and never used again.
unsafe fn unmap(block: NonNull<Block>) {
    // SAFETY: the block is live until the unmap below (the contract).
    let mapped = unsafe { (*block.as_ptr()).mapped };
    let Ok(layout) = Layout::from_size_align(mapped, 16) else { return };
    // SAFETY: the block came from MmapAlloc::map with a layout of `mapped` bytes (which
    // rounds to the same pages), and nothing uses it again (the contract).
    unsafe { MmapAlloc::unmap(block.cast(), layout) };
}

/// Unregisters every single-page entry whose code lies in `[start, start + len)`.
pub(super) fn page_freed(start: usize, len: usize) {
    // Relaxed: a page's entry was added (under LIST) by the thread that sealed it, which
    // happened before the free that calls this (the registry lock orders them).
    if PAGE_ENTRIES.load(Ordering::Relaxed) == 0 {
        return;
    }
    let guard = LIST.lock();
    let mut cur = __jit_debug_descriptor.first_entry.load(Ordering::Relaxed);
    let mut found: Option<NonNull<Block>> = None;
    while let Some(block) = NonNull::new(cur.cast::<Block>()) {
        // SAFETY: linked blocks are live while LIST is held.
        let b = unsafe { &*block.as_ptr() };
        cur = b.entry.next;
        if b.by_page && b.lo >= start && b.hi <= start + len {
            // SAFETY: live and linked, LIST held.
            unsafe { unlink(block) };
            found = Some(block);
            break;
        }
    }
    drop(guard);
    if let Some(block) = found {
        // SAFETY: unlinked above; only this function knew it was there.
        unsafe { unmap(block) };
    }
}

/// How many objects are registered with gdb now (walks the list under the lock).
#[cfg(test)]
pub(super) fn registered() -> usize {
    let _guard = LIST.lock();
    let mut n = 0;
    let mut cur = __jit_debug_descriptor.first_entry.load(Ordering::Relaxed);
    while !cur.is_null() {
        n += 1;
        // SAFETY: linked blocks are live while LIST is held.
        cur = unsafe { (*cur).next };
    }
    n
}
