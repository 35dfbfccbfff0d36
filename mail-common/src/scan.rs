//! Word-at-a-time byte search for the dot-stuffing codecs (`pop3-proto`'s body decoder,
//! `smtp-submit`'s body encoder).
//!
//! Why not only `memchr`: in a body where every line is a few bytes long and starts with a dot,
//! the codecs stop every few bytes. Each `memchr` call costs a dispatch and a vector set-up that
//! is worth it over long runs but dominates when the next stop is five bytes away. These helpers
//! look at eight bytes at a time in plain integer registers (no `unsafe`, no target features),
//! and copy each word they look at into the output as they go, so a short line costs one load,
//! one store and a few integer operations. The codecs use them only while lines are short and
//! hand long runs to `memchr`/`memmem`, which stay faster there.

/// Bytes in one word.
pub const WORD: usize = 8;

/// The high bit of every byte: where the masks of this module keep their flags.
pub const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
const LOW_BITS: u64 = 0x0101_0101_0101_0101;
const LOW_SEVEN: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// The eight bytes at `at..at + 8` as a little-endian word (byte `at` is the lowest).
///
/// # Panics
/// If fewer than eight bytes follow `at`.
#[inline]
#[must_use]
pub fn load(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0; WORD];
    word.copy_from_slice(&bytes[at..at + WORD]);
    u64::from_le_bytes(word)
}

/// Writes `word` to `out[at..at + 8]` (the inverse of [`load`]).
///
/// # Panics
/// If fewer than eight bytes follow `at`.
#[inline]
pub fn store(out: &mut [u8], at: usize, word: u64) {
    out[at..at + WORD].copy_from_slice(&word.to_le_bytes());
}

/// A mask with the high bit of each byte of `word` that equals `byte` set, and no other bit.
///
/// Exact (no false positives from borrows between bytes), so masks of neighbouring words can be
/// combined with `&`.
///
/// ```
/// use mail_common::scan::{equal_bytes, first_set_byte};
/// let word = u64::from_le_bytes(*b"ab\r\ncd\r\n");
/// let lf = equal_bytes(word, b'\n');
/// assert_eq!(first_set_byte(lf), Some(3));
/// assert_eq!(lf.count_ones(), 2);
/// ```
#[inline]
#[must_use]
pub const fn equal_bytes(word: u64, byte: u8) -> u64 {
    let diff = word ^ (LOW_BITS * byte as u64);
    // A byte's high bit ends up set iff the byte of `diff` is zero: adding 0x7f to the low seven
    // bits sets the high bit for any non-zero low part, and `| diff` covers a set high bit.
    !(((diff & LOW_SEVEN) + LOW_SEVEN) | diff | LOW_SEVEN)
}

/// The complement of [`equal_bytes`], one operation cheaper: the high bit of each byte of
/// `word` that differs from `byte` is set. The low seven bits of each byte are left over from
/// the computation and mean nothing: mask with [`HIGH_BITS`] before looking at the result.
///
/// Exact like [`equal_bytes`]. Where the flags are combined before they are looked at (an
/// "is not" test shifted and `|`-ed with another), this saves the `!` and the mask of each.
///
/// ```
/// use mail_common::scan::{HIGH_BITS, differ_bytes};
/// let word = u64::from_le_bytes(*b"ab\r\ncd\r\n");
/// assert_eq!(!differ_bytes(word, b'\n') & HIGH_BITS, 0x8000_0000_8000_0000);
/// ```
#[inline]
#[must_use]
pub const fn differ_bytes(word: u64, byte: u8) -> u64 {
    // A byte's high bit ends up set iff the byte differs from `byte`: adding 0x7f to the low
    // seven bits of their difference sets it for any non-zero one, and the `|` for differing
    // high bits. Written so that the `&` is shared between calls on the same word, and the
    // last `^` vanishes for an ASCII `byte`.
    let low = (word & LOW_SEVEN) ^ (LOW_BITS * (byte & 0x7f) as u64);
    (low + LOW_SEVEN) | (word ^ (LOW_BITS * (byte & 0x80) as u64))
}

/// The index (0 to 7) of the lowest byte whose high bit is set in `mask`, if any.
#[inline]
#[must_use]
pub const fn first_set_byte(mask: u64) -> Option<usize> {
    if mask == 0 {
        None
    } else {
        Some((mask.trailing_zeros() / 8) as usize)
    }
}

/// How many bytes are flagged in `mask` (high bit of each byte, as [`equal_bytes`] makes
/// them). A multiply rather than `count_ones`, which without a POPCNT target feature (the
/// default x86-64 baseline) is a dozen instructions.
#[inline]
#[must_use]
pub const fn count_flags(mask: u64) -> usize {
    ((mask >> 7).wrapping_mul(LOW_BITS) >> 56) as usize
}

/// The bytes of `word` from byte `index` on, moved down to byte 0. An `index` of 8 (a missing
/// flag) gives scratch (the whole word), which the callers store past the bytes that count:
/// cheaper than a branch or a conditional move to make it zero.
#[inline]
const fn from_byte(word: u64, index: usize) -> u64 {
    word.wrapping_shr(8 * index as u32)
}

/// Writes `word` to the front of `out` without the bytes flagged in `mask` (high bit of each
/// byte, as [`equal_bytes`] makes them) and returns how many bytes that is (8 minus the flagged
/// ones). The rest of `out` is scratch.
///
/// The word is stored whole, then the part after each flagged byte is stored again one byte
/// further left; up to two flags take no branch.
///
/// ```
/// use mail_common::scan::{equal_bytes, squeeze_out};
/// let word = u64::from_le_bytes(*b"\n..\n..xy");
/// let mut out = [0; 16];
/// let stuffing = equal_bytes(word, b'.') & !equal_bytes(word << 8, b'.');
/// let kept = squeeze_out(&mut out, word, stuffing);
/// assert_eq!(&out[..kept], b"\n.\n.xy");
/// ```
#[inline]
pub fn squeeze_out(out: &mut [u8; 2 * WORD], word: u64, mask: u64) -> usize {
    let flagged = count_flags(mask);
    store(out, 0, word);
    if flagged <= 2 {
        // A missing flag counts as byte 8: its store lands past the kept bytes.
        let first = (mask.trailing_zeros() / 8) as usize;
        let second = ((mask & mask.wrapping_sub(1)).trailing_zeros() / 8) as usize;
        store(out, first, from_byte(word, first) >> 8);
        store(
            out,
            second + usize::from(flagged == 0) - 1,
            from_byte(word, second) >> 8,
        );
    } else {
        let mut rest = mask;
        let mut removed = 0;
        while let Some(byte) = first_set_byte(rest) {
            store(out, byte - removed, from_byte(word, byte) >> 8);
            removed += 1;
            rest &= rest - 1;
        }
    }
    WORD - flagged
}

#[cfg(test)]
mod tests {
    use super::{
        HIGH_BITS, count_flags, differ_bytes, equal_bytes, first_set_byte, load, squeeze_out, store,
    };
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn equal_bytes_is_exact(word in proptest::array::uniform8(any::<u8>()), byte in any::<u8>()) {
            let mask = equal_bytes(u64::from_le_bytes(word), byte);
            for (i, &b) in word.iter().enumerate() {
                prop_assert_eq!(mask >> (8 * i) & 0xff, if b == byte { 0x80 } else { 0 });
            }
            prop_assert_eq!(first_set_byte(mask), word.iter().position(|&b| b == byte));
            prop_assert_eq!(count_flags(mask), memchr::memchr_iter(byte, &word).count());
            prop_assert_eq!(!differ_bytes(u64::from_le_bytes(word), byte) & HIGH_BITS, mask);
        }
    }

    proptest! {
        #[test]
        fn squeeze_matches_a_byte_loop(word in proptest::array::uniform8(any::<u8>()), flags in any::<u8>()) {
            let mut mask = 0;
            for i in 0..8 {
                if flags >> i & 1 == 1 {
                    mask |= 0x80 << (8 * i);
                }
            }
            let value = u64::from_le_bytes(word);
            let kept: Vec<u8> = (0..8).filter(|i| flags >> i & 1 == 0).map(|i| word[i]).collect();
            let mut out = [0xee; 16];
            let len = squeeze_out(&mut out, value, mask);
            prop_assert_eq!(&out[..len], &kept[..]);
        }
    }

    #[test]
    fn load_and_store_round_trip() {
        let bytes = *b"0123456789";
        let mut out = [0; 9];
        store(&mut out, 1, load(&bytes, 2));
        assert_eq!(&out, b"\x0023456789");
    }
}
