//! FNV-1a 64, the one fingerprint used for data checksums, run ids and cache keys.

pub const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a over `bytes`, continuing from `h` (start from [`OFFSET`]).
pub fn bytes(mut h: u64, bytes: impl IntoIterator<Item = u8>) -> u64 {
    for b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(PRIME);
    }
    h
}

/// FNV-1a with one step per f32 bit pattern instead of per byte (a quarter of the steps, for
/// large tensors; not the same value as [`bytes`] over their bytes).
pub fn words(mut h: u64, v: &[f32]) -> u64 {
    for x in v {
        h = (h ^ u64::from(x.to_bits())).wrapping_mul(PRIME);
    }
    h
}
