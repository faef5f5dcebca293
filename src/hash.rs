//! FNV-1a, 64-bit: the seal hash.
//!
//! Invariant owned here: the hash covers exactly the bytes it is given, in order, with
//! the standard offset basis and prime, so a hash recorded at seal time can be
//! recomputed by anyone (and checked against the published test vectors).
//!
//! FNV-1a detects accidental or careless corruption; it is not a MAC, and someone who
//! can write a page can also forge a collision.

/// The FNV-1a 64-bit offset basis.
pub const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// The FNV-1a 64-bit prime.
pub const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a 64 of `bytes`.
///
/// ```
/// assert_eq!(wildx::fnv1a64(b"foobar"), 0x85944171f73967e8);
/// const EMPTY: u64 = wildx::fnv1a64(b"");
/// assert_eq!(EMPTY, 0xcbf29ce484222325);
/// ```
#[must_use]
pub const fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash = FNV_OFFSET_BASIS;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(FNV_PRIME);
        i += 1;
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::fnv1a64;

    #[test]
    fn published_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn every_single_byte_change_changes_the_hash() {
        let base = [0x89u8, 0xf8, 0x01, 0xf0, 0xc3];
        let h = fnv1a64(&base);
        for i in 0..base.len() {
            for v in 0..=255u8 {
                if v == base[i] {
                    continue;
                }
                let mut m = base;
                m[i] = v;
                assert_ne!(fnv1a64(&m), h, "offset {i} value {v:#x}");
            }
        }
    }
}
