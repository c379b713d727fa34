//! What users hand a node as text or as a table: causal context tokens, session tokens
//! (`REPLID:OFFSET`), conflict policy and durability names, and range-table rules, set by a
//! client or merged from a peer's table.

use crate::Steps;
use ringkv::proto::Session;
use ringkv::store::Durability;
use ringkv::table::{Mode, RangeTable, TableLimits};
use ringkv::version::{ConflictPolicy, Context};

/// A token a user typed: every parser that takes one.
fn token(token: &str) {
    if let Ok(ctx) = Context::from_token(token) {
        // The context's own token parses back to it.
        let again = Context::from_token(&ctx.to_token()).expect("a context's token parses");
        assert_eq!(again, ctx, "context token does not round-trip");
    }
    if let Ok(session) = token.parse::<Session>() {
        let again: Session = session
            .to_string()
            .parse()
            .expect("a printed session parses");
        assert_eq!(again, session);
    }
    if let Ok(policy) = token.parse::<ConflictPolicy>() {
        assert_eq!(
            policy.to_string().parse::<ConflictPolicy>().ok(),
            Some(policy)
        );
    }
    if let Ok(durability) = token.parse::<Durability>() {
        assert_eq!(durability.to_string(), token);
    }
}

/// Merges a peer's table into `table`, checking what a merge promises.
fn merge(table: &mut RangeTable, peer: &RangeTable, limits: &TableLimits) {
    let before = table.clone();
    match table.merge_within(peer, limits) {
        Ok(_) => {
            table
                .check(limits)
                .expect("a merge within limits stays within them");
            // Merging is idempotent and converges whichever way it is done.
            assert!(!table.merge(peer), "a second merge changed the table");
            let mut other = peer.clone();
            other.merge(&before);
            assert_eq!(other.digest(), table.digest(), "merges do not commute");
        }
        Err(_) => assert_eq!(*table, before, "a refused merge changed the table"),
    }
    for (prefix, _) in peer.rules() {
        let _ = table.lookup(prefix);
    }
}

/// Feeds one fuzz input; panics on a broken promise of the code under test.
pub fn run(data: &[u8]) {
    let limits = TableLimits {
        max_rules: 8,
        max_prefix: 32,
        replicas: 3,
    };
    let mut table = RangeTable::new();
    for (kind, body) in Steps::new(data).take(64) {
        match kind % 3 {
            0 => {
                if let Ok(text) = std::str::from_utf8(body) {
                    token(text);
                }
            }
            // A rule a client sets: (prefix, mode, the node that stamps it).
            1 => {
                if let Ok((prefix, mode, node)) =
                    postcard::from_bytes::<(Vec<u8>, Mode, String)>(body)
                {
                    let _ = table.set(prefix, mode, &node, &limits);
                    table
                        .check(&limits)
                        .expect("a table built by set stays within its limits");
                }
            }
            // A peer's table.
            _ => {
                if let Ok(peer) = postcard::from_bytes::<RangeTable>(body) {
                    merge(&mut table, &peer, &limits);
                }
            }
        }
    }
}
