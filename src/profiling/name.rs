//! Function names as the profilers see them: sanitised, bounded, never empty.
//!
//! Invariant owned here: a name that leaves this module is valid UTF-8 of at most
//! [`MAX_NAME_LEN`] bytes with no control character (so no newline to split a perf map
//! line, no NUL to end a jitdump or ELF string early), and is not empty: an unnamed or
//! empty name becomes `wildx_0x<address>`.
//!
//! Also [`Names`], the store an owner of many functions (the arena) keeps their names in
//! until they are published: one growing block wildx maps itself, never the allocator.
//!
//! This module needs `unsafe` for [`Names`]: it reads and writes a block it mapped.

#![allow(unsafe_code)]

use core::alloc::Layout;
use core::ptr::NonNull;

use crate::error::Error;
use crate::global::MmapAlloc;
use crate::sys::Errno;

/// The longest name, in bytes, that wildx hands to a profiler; longer names are cut at
/// the last whole character that fits.
pub const MAX_NAME_LEN: usize = 128;

/// A sanitised name in a fixed buffer on the stack.
pub(crate) struct NameBuf {
    bytes: [u8; MAX_NAME_LEN],
    len: usize,
}

impl NameBuf {
    /// `name` sanitised: every control character (`char::is_control`, which covers
    /// `\0`, `\n`, `\r`, `\t`, DEL and the C1 controls) becomes `_`, and the result is cut
    /// to [`MAX_NAME_LEN`] bytes at a character boundary. `None` or an empty name becomes
    /// `wildx_0x<addr in hex>`.
    pub(crate) fn new(name: Option<&str>, addr: usize) -> NameBuf {
        let mut buf = NameBuf { bytes: [0; MAX_NAME_LEN], len: 0 };
        for c in name.unwrap_or("").chars() {
            let c = if c.is_control() { '_' } else { c };
            let mut utf8 = [0u8; 4];
            let encoded = c.encode_utf8(&mut utf8).as_bytes();
            if !buf.push(encoded) {
                break;
            }
        }
        if buf.len == 0 {
            buf.push(b"wildx_0x");
            buf.push_hex(addr as u64);
        }
        buf
    }

    /// Appends `bytes` whole, or returns `false` and appends nothing if they do not fit.
    fn push(&mut self, bytes: &[u8]) -> bool {
        let Some(dst) = self.bytes.get_mut(self.len..self.len + bytes.len()) else {
            return false;
        };
        dst.copy_from_slice(bytes);
        self.len += bytes.len();
        true
    }

    fn push_hex(&mut self, value: u64) {
        let mut digits = [0u8; 16];
        let n = hex(value, &mut digits);
        self.push(&digits[..n]);
    }

    /// The sanitised name.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Writes `value` in lower-case hex without leading zeros (`0` for zero) into `out`,
/// returning the number of digits.
pub(crate) fn hex(value: u64, out: &mut [u8; 16]) -> usize {
    let digits = (64 - (value | 1).leading_zeros()).div_ceil(4) as usize;
    for (i, slot) in out[..digits].iter_mut().enumerate() {
        let nibble = (value >> (4 * (digits - 1 - i))) & 0xf;
        *slot = b"0123456789abcdef"[nibble as usize];
    }
    digits
}

/// Where a name lives in a [`Names`] store. Six bytes of payload; `Copy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NameRef {
    start: u32,
    len: u16,
}

/// An append-only store of sanitised names in one block wildx maps itself (grown by
/// mapping a larger block and copying, like a vector), for an owner of many functions
/// to keep their names until it publishes them. Never the global allocator.
pub(crate) struct Names {
    block: Option<(NonNull<u8>, usize)>,
    used: usize,
}

// SAFETY: a `Names` owns its block outright; `&Names` only reads it.
unsafe impl Send for Names {}
// SAFETY: as Send: shared access never writes.
unsafe impl Sync for Names {}

impl Names {
    /// An empty store; maps nothing until the first push.
    pub(crate) const fn new() -> Names {
        Names { block: None, used: 0 }
    }

    /// Copies `name`, sanitised as [`NameBuf::new`] does for a function at `addr`.
    ///
    /// # Errors
    /// [`Error::Os`] (`ENOMEM`) if a larger block cannot be mapped or the store passes
    /// 4 GiB; the store is unchanged.
    pub(crate) fn push(&mut self, name: Option<&str>, addr: usize) -> Result<NameRef, Error> {
        let name = NameBuf::new(name, addr);
        let bytes = name.as_bytes();
        let start = u32::try_from(self.used).map_err(|_| Error::Os(Errno::ENOMEM))?;
        let needed = self.used + bytes.len();
        if u32::try_from(needed).is_err() {
            return Err(Error::Os(Errno::ENOMEM));
        }
        let capacity = self.block.map_or(0, |(_, len)| len);
        if needed > capacity {
            self.grow(needed)?;
        }
        let (ptr, _) = self.block.ok_or(Error::Os(Errno::ENOMEM))?;
        // SAFETY: the block is a live R|W mapping of at least `needed` bytes (just
        // checked or grown), owned by `self`, and `&mut self` makes this the only access.
        unsafe { ptr.as_ptr().add(self.used).copy_from_nonoverlapping(bytes.as_ptr(), bytes.len()) };
        self.used = needed;
        Ok(NameRef { start, len: bytes.len() as u16 })
    }

    fn grow(&mut self, needed: usize) -> Result<(), Error> {
        let want = needed.max(self.block.map_or(0, |(_, len)| len * 2));
        let layout = Layout::from_size_align(want, 1).map_err(|_| Error::Os(Errno::ENOMEM))?;
        let (new, len) = MmapAlloc::map(layout).ok_or(Error::Os(Errno::ENOMEM))?;
        if let Some((old, old_len)) = self.block.replace((new, len)) {
            // SAFETY: both blocks are live, distinct mappings; `used <= old_len < len`.
            unsafe { new.as_ptr().copy_from_nonoverlapping(old.as_ptr(), self.used) };
            // SAFETY: `old` came from `MmapAlloc::map` with a layout of `old_len` bytes
            // (its mapped length rounds to the same pages) and is not used again.
            unsafe { MmapAlloc::unmap(old, Layout::from_size_align_unchecked(old_len, 1)) };
        }
        Ok(())
    }

    /// The name `r` refers to. `r` must come from this store since its last `clear`
    /// (a foreign `NameRef` reads an unrelated name, or panics if out of range).
    pub(crate) fn get(&self, r: NameRef) -> &str {
        let Some((ptr, _)) = self.block else { return "" };
        let end = r.start as usize + r.len as usize;
        assert!(end <= self.used, "NameRef from another Names store");
        // SAFETY: `[start, end)` lies inside the used part of the live block (checked).
        let bytes = unsafe { core::slice::from_raw_parts(ptr.as_ptr().add(r.start as usize), r.len as usize) };
        // Every push stores a whole sanitised name (valid UTF-8); a ref from this store
        // covers exactly one, so this never fails; a foreign ref gets an empty name.
        core::str::from_utf8(bytes).unwrap_or("")
    }

    /// Forgets every name (keeps the block for reuse).
    pub(crate) fn clear(&mut self) {
        self.used = 0;
    }
}

impl Drop for Names {
    fn drop(&mut self) {
        if let Some((ptr, len)) = self.block.take() {
            // SAFETY: the block came from `MmapAlloc::map` with `len` bytes and nothing
            // uses it after drop. A refused munmap (seccomp) leaks it; drop cannot report.
            unsafe { MmapAlloc::unmap(ptr, Layout::from_size_align_unchecked(len, 1)) };
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    fn clean(name: Option<&str>, addr: usize) -> std::string::String {
        std::string::String::from_utf8(NameBuf::new(name, addr).as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn control_bytes_become_underscores_and_length_is_bounded() {
        assert_eq!(clean(Some("a\nb\rc\0d\te\u{7f}f\u{85}g"), 0), "a_b_c_d_e_f_g");
        assert_eq!(clean(Some("spaces ok / ünïcode"), 0), "spaces ok / ünïcode");
        let long = "é".repeat(100); // 200 bytes; 'é' is 2 bytes
        let cut = clean(Some(&long), 0);
        assert_eq!(cut.len(), MAX_NAME_LEN);
        assert!(cut.chars().all(|c| c == 'é'));
        let odd = std::format!("x{}", "é".repeat(100)); // a 2-byte char straddles the bound
        assert_eq!(clean(Some(&odd), 0).len(), MAX_NAME_LEN - 1);
    }

    #[test]
    fn unnamed_and_empty_names_come_from_the_address() {
        assert_eq!(clean(None, 0x7f12_3456_7000), "wildx_0x7f1234567000");
        assert_eq!(clean(Some(""), 0x10), "wildx_0x10");
        assert_eq!(clean(None, 0), "wildx_0x0");
    }

    #[test]
    fn names_store_grows_and_keeps_every_name() {
        let mut names = Names::new();
        let refs: std::vec::Vec<_> =
            (0..5000).map(|i| names.push(Some(&std::format!("fn_{i}\n")), i).unwrap()).collect();
        for (i, r) in refs.iter().enumerate() {
            assert_eq!(names.get(*r), std::format!("fn_{i}_"));
        }
        names.clear();
        let r = names.push(None, 0xabc).unwrap();
        assert_eq!(names.get(r), "wildx_0xabc");
    }
}
