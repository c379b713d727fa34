//! Tokens: positions on the ring, and the token of a user key.

use hashring::DefaultHashBuilder;
use std::hash::{BuildHasher, Hash, Hasher};

/// A position on the ring: the whole `u64` space, wrapping after `u64::MAX`.
pub type Token = u64;

/// Number of distinct tokens (2^64), the length of the whole ring.
pub const TOKEN_SPACE: u128 = 1 << 64;

/// Raw key bytes fed to the hasher as they are.
///
/// `[u8]`'s own `Hash` writes a `usize` length prefix first, whose width depends on the
/// platform; writing only the bytes keeps a key's token the same on every machine.
struct KeyBytes<'a>(&'a [u8]);

impl Hash for KeyBytes<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.0);
    }
}

/// Token of a user key: SipHash-2-4 (hashring's hasher, zero key) of the raw key bytes.
///
/// Deterministic across processes, platforms and Rust versions, so every node places a key
/// identically.
///
/// ```
/// use ringkv_ring::token;
/// assert_eq!(token(b"user:42"), token(b"user:42"));
/// assert_ne!(token(b"user:42"), token(b"user:43"));
/// ```
pub fn token(key: &[u8]) -> Token {
    DefaultHashBuilder.hash_one(KeyBytes(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_siphash_of_the_raw_bytes_without_length_prefix() {
        for key in [&b""[..], b"a", b"user:42", &[0u8; 100][..]] {
            let mut hasher = DefaultHashBuilder.build_hasher();
            hasher.write(key);
            assert_eq!(token(key), hasher.finish());
            // The slice's own Hash would add a length prefix and give another value.
            assert_ne!(token(key), DefaultHashBuilder.hash_one(key));
        }
    }

    #[test]
    fn token_values_are_pinned() {
        // Values from an independent SipHash-2-4 implementation (zero key). Changing them
        // re-shards every stored key: a breaking change.
        assert_eq!(token(b""), 0x1e92_4b9d_7377_00d7);
        assert_eq!(token(b"user:42"), 0xb420_0665_c772_3249);
    }
}
