//! The hash of one stored item: a key and the version information of its record.

use std::sync::OnceLock;

use super::Hash;
use crate::version::{Record, Sibling};

/// blake3 key-derivation context: keeps item hashes apart from any other blake3 use.
const ITEM_CONTEXT: &str = "ringkv 2025 merkle item hash v1";

/// The keyed-hash key derived once from [`ITEM_CONTEXT`].
fn item_key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(|| blake3::derive_key(ITEM_CONTEXT, b""))
}

/// The hash anti-entropy compares for one key: blake3 over the key and a canonical encoding
/// of the record's causal identity.
///
/// Hashed, in this order: the key; for each actor of the version vector, in actor order, its
/// name and counter, then each of its live siblings newest first with its dot counter,
/// timestamp, tombstone flag and origin; then the anonymous siblings (those without a dot,
/// whose stored order may differ between replicas) as a sorted list of digests that also
/// cover their value bytes. Every field is length- or count-prefixed, so different records
/// never encode alike. Values with a dot are identified by the dot and not hashed, which
/// keeps a write's cost independent of its value size.
///
/// Two replicas holding the same record hash it identically, whatever order their merges
/// happened in.
///
/// ```
/// use ringkv::merkle::item_hash;
/// use ringkv::version::{Record, Sibling};
///
/// let sibling = Sibling { value: Some(b"v".to_vec()), ts: Default::default(), origin: "n1".into() };
/// let record = Record::update(&Record::new(sibling), &Record::empty(), "n1");
/// assert_eq!(item_hash(b"k", &record), item_hash(b"k", &record.clone()));
/// assert_ne!(item_hash(b"k", &record), item_hash(b"other", &record));
/// ```
#[must_use]
pub fn item_hash(key: &[u8], record: &Record) -> Hash {
    let mut h = blake3::Hasher::new_keyed(item_key());
    put_bytes(&mut h, key);
    put_u64(&mut h, record.entries().count() as u64);
    for (actor, counter, values) in record.entries() {
        put_bytes(&mut h, actor.as_bytes());
        put_u64(&mut h, counter);
        put_u64(&mut h, values.len() as u64);
        for (age, sibling) in values.iter().enumerate() {
            // The dot of the value at position `age` is (actor, counter - age).
            put_u64(&mut h, counter.saturating_sub(age as u64));
            put_sibling_meta(&mut h, sibling);
        }
    }
    let mut anonymous: Vec<Hash> = record.anonymous().iter().map(anonymous_digest).collect();
    anonymous.sort_unstable();
    put_u64(&mut h, anonymous.len() as u64);
    for digest in &anonymous {
        h.update(digest);
    }
    *h.finalize().as_bytes()
}

/// A sibling without a dot has nothing else naming it, so its value is part of its digest.
fn anonymous_digest(sibling: &Sibling) -> Hash {
    let mut h = blake3::Hasher::new_keyed(item_key());
    put_sibling_meta(&mut h, sibling);
    match &sibling.value {
        Some(value) => put_bytes(&mut h, value),
        None => put_u64(&mut h, 0),
    };
    *h.finalize().as_bytes()
}

fn put_sibling_meta(h: &mut blake3::Hasher, sibling: &Sibling) {
    put_u64(h, sibling.ts.millis);
    h.update(&sibling.ts.logical.to_le_bytes());
    h.update(&[u8::from(sibling.value.is_none())]);
    put_bytes(h, sibling.origin.as_bytes());
}

fn put_u64(h: &mut blake3::Hasher, n: u64) {
    h.update(&n.to_le_bytes());
}

fn put_bytes(h: &mut blake3::Hasher, bytes: &[u8]) {
    put_u64(h, bytes.len() as u64);
    h.update(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::Timestamp;

    fn sib(value: Option<&str>, millis: u64, origin: &str) -> Sibling {
        Sibling {
            value: value.map(|v| v.as_bytes().to_vec()),
            ts: Timestamp { millis, logical: 0 },
            origin: origin.to_owned(),
        }
    }

    /// A record written once through `actor`.
    fn written(value: Option<&str>, millis: u64, actor: &str) -> Record {
        Record::update(
            &Record::new(sib(value, millis, actor)),
            &Record::empty(),
            actor,
        )
    }

    #[test]
    fn merge_order_does_not_change_the_hash() {
        let a = written(Some("x"), 1, "a");
        let b = written(Some("y"), 2, "b");
        let c = written(None, 3, "c");
        let left = a.sync(&b).sync(&c);
        let right = c.sync(&a).sync(&b);
        assert_eq!(item_hash(b"k", &left), item_hash(b"k", &right));
    }

    #[test]
    fn anonymous_siblings_hash_alike_in_any_order() {
        let one = Record::new(sib(Some("p"), 1, "a"));
        let two = Record::new(sib(Some("q"), 1, "a"));
        // Concurrent anonymous values are unioned in the order the merge met them.
        let ab = one.sync(&two);
        let ba = two.sync(&one);
        assert_ne!(ab.anonymous(), ba.anonymous());
        assert_eq!(item_hash(b"k", &ab), item_hash(b"k", &ba));
    }

    #[test]
    fn key_timestamp_tombstone_origin_and_history_all_count() {
        let base = written(Some("x"), 1, "a");
        let h = item_hash(b"k", &base);
        assert_ne!(h, item_hash(b"k2", &base));
        assert_ne!(h, item_hash(b"k", &written(Some("x"), 2, "a")));
        assert_ne!(h, item_hash(b"k", &written(None, 1, "a")));
        assert_ne!(h, item_hash(b"k", &written(Some("x"), 1, "b")));
        let overwritten = Record::update(
            &Record::new_with_context(&base.join(), sib(Some("x"), 1, "a")),
            &base,
            "a",
        );
        assert_ne!(h, item_hash(b"k", &overwritten));
        assert_ne!(h, item_hash(b"k", &Record::empty()));
    }
}
