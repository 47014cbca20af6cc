//! Comparing secrets without leaking, through timing, where they differ.

use sha2::{Digest, Sha256};

/// Compares two secrets in time independent of where they differ and of their lengths
/// (both are hashed first, so only equal-length digests are compared).
pub fn eq(a: &[u8], b: &[u8]) -> bool {
    let (da, db) = (Sha256::digest(a), Sha256::digest(b));
    let diff = da
        .iter()
        .zip(db.iter())
        .fold(0u8, |acc, (x, y)| std::hint::black_box(acc | (x ^ y)));
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_contents_of_any_length_compare_equal_and_others_do_not() {
        assert!(eq(b"token", b"token"));
        assert!(!eq(b"token", b"tokem"));
        assert!(!eq(b"token", b"token-longer"));
        assert!(eq(b"", b""));
    }
}
