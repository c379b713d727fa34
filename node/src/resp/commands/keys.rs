//! Iteration over the whole key space: `SCAN`, `KEYS` and `DBSIZE`, by walking the token
//! space from 0 to `u64::MAX` one ring range at a time (see [`ClientRequest::Keys`]).
//!
//! A page is complete through a token, so the walk's position is one token: the `SCAN`
//! cursor is the next token to read, 0 to start, and 0 again once the walk passed
//! `u64::MAX`. It names a place in the token space, not in any node's state, so it survives
//! ring changes and node restarts and may be passed to any node's front.

use crate::limits::Limit;
use bytes::Bytes;

use super::strings::Target;
use super::{upper, Step};
use crate::api::Api;
use crate::proto::KeyPage;
use crate::resp::codec::Reply;
use crate::resp::{errors, glob, Limits};
use crate::Error;

/// Ring spans one `SCAN` call reads at most before it answers (with fewer keys than its
/// `COUNT`, as Redis may).
const SPANS_PER_SCAN: usize = 16;
/// Stored entries each replica reads per page for `KEYS` and `DBSIZE`.
const WALK_PAGE: u32 = 1000;
/// Keys `DBSIZE` counts exactly; past them it extrapolates from the share of the token space
/// walked.
pub(crate) const DBSIZE_EXACT: u64 = 100_000;
/// Keys `KEYS` examines at most, per key it may answer.
const KEYS_EXAMINED_PER_ANSWER: usize = 100;

/// The next token to read, from a client's cursor.
///
/// ```text
/// "0" -> 0 (the start); "123" -> 123; "-1", "x", "" -> an error naming the cursor
/// ```
pub(crate) fn parse_cursor(arg: &[u8]) -> Result<u64, Reply> {
    std::str::from_utf8(arg)
        .ok()
        .filter(|s| !s.starts_with('+'))
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| {
            Reply::err(format!(
                "invalid cursor '{}': a SCAN cursor is the unsigned integer an earlier SCAN answered (0 to start)",
                String::from_utf8_lossy(&arg[..arg.len().min(64)])
            ))
        })
}

/// The cursor after a page complete through `through`: the next token, or 0 when the walk
/// is done.
pub(crate) fn next_cursor(through: u64) -> u64 {
    through.wrapping_add(1)
}

async fn page(node: &Target, from: u64, limit: u32) -> Result<KeyPage, Error> {
    node.keys(from, limit).await
}

/// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`.
pub(super) fn scan(node: &Target, args: &[Bytes], limits: &Limits) -> Step {
    let mut cursor = match parse_cursor(&args[1]) {
        Ok(c) => c,
        Err(e) => return e.into(),
    };
    let (mut pattern, mut count, mut other_type) = (None, 10usize, false);
    let mut opts = args[2..].chunks(2);
    for opt in opts.by_ref() {
        let [name, value] = opt else {
            return Reply::err("syntax error").into();
        };
        match upper(name).as_str() {
            "MATCH" => pattern = Some(value.clone()),
            "COUNT" => match std::str::from_utf8(value).ok().and_then(|s| s.parse().ok()) {
                Some(n) if n >= 1 => count = n,
                _ => return Reply::err("value is not an integer or out of range").into(),
            },
            "TYPE" => match String::from_utf8_lossy(value).to_ascii_lowercase().as_str() {
                "string" => other_type = false,
                "list" | "set" | "zset" | "hash" | "stream" => other_type = true,
                t => return Reply::err(format!("unknown type name '{t}'")).into(),
            },
            _ => return Reply::err("syntax error").into(),
        }
    }
    if other_type {
        // ringkv stores strings only: no key of another type exists anywhere.
        return Reply::Array(vec![Reply::text("0"), Reply::Array(vec![])]).into();
    }
    if count > limits.max_keys {
        limits.limit_hits.hit(
            Limit::RedisKeys,
            format_args!("SCAN COUNT {count} cut to {}", limits.max_keys),
        );
    }
    let count = count.min(limits.max_keys);
    let node = node.clone();
    Step::Later(Box::pin(async move {
        let mut keys = Vec::new();
        let mut examined = 0;
        for _ in 0..SPANS_PER_SCAN {
            let limit = u32::try_from(count - examined).unwrap_or(u32::MAX);
            let p = match page(&node, cursor, limit).await {
                Ok(p) => p,
                Err(e) => return errors::reply(&e),
            };
            examined += p.keys.len();
            let wanted = |k: &Vec<u8>| pattern.as_ref().is_none_or(|p| glob::matches(p, k));
            keys.extend(p.keys.into_iter().filter(wanted).map(Reply::bulk));
            cursor = next_cursor(p.through);
            if cursor == 0 || examined >= count {
                break;
            }
        }
        Reply::Array(vec![Reply::text(cursor.to_string()), Reply::Array(keys)])
    }))
}

/// `KEYS pattern`: the whole walk, refused past `max_keys` matching keys (use `SCAN`).
pub(super) fn keys(node: &Target, args: &[Bytes], limits: &Limits) -> Step {
    let pattern = args[1].clone();
    let (node, max, hits) = (node.clone(), limits.max_keys, limits.limit_hits.clone());
    let max_examined = max.saturating_mul(KEYS_EXAMINED_PER_ANSWER);
    Step::Later(Box::pin(async move {
        let (mut keys, mut examined, mut cursor) = (Vec::new(), 0usize, 0u64);
        loop {
            let p = match page(&node, cursor, WALK_PAGE).await {
                Ok(p) => p,
                Err(e) => return errors::reply(&e),
            };
            examined += p.keys.len();
            keys.extend(p.keys.into_iter().filter(|k| glob::matches(&pattern, k)));
            if keys.len() > max {
                hits.hit(
                    Limit::RedisKeys,
                    format_args!("KEYS matched over {max} keys"),
                );
                return Reply::err(format!(
                    "KEYS answers at most {max} keys and more match: use SCAN"
                ));
            }
            if examined > max_examined {
                hits.hit(
                    Limit::RedisKeys,
                    format_args!("KEYS examined over {max_examined} keys"),
                );
                return Reply::err(format!(
                    "KEYS examines at most {max_examined} keys and there are more: use SCAN"
                ));
            }
            cursor = next_cursor(p.through);
            if cursor == 0 {
                break;
            }
        }
        Reply::Array(keys.into_iter().map(Reply::bulk).collect())
    }))
}

/// `DBSIZE`: the keys counted by a walk of the token space, exact up to [`DBSIZE_EXACT`];
/// past it, an estimate from the share of the token space walked (tokens are uniform).
pub(super) fn dbsize(node: &Target) -> Step {
    let node = node.clone();
    Step::Later(Box::pin(async move {
        let (mut count, mut cursor) = (0u64, 0u64);
        loop {
            let p = match page(&node, cursor, WALK_PAGE).await {
                Ok(p) => p,
                Err(e) => return errors::reply(&e),
            };
            count += p.keys.len() as u64;
            cursor = next_cursor(p.through);
            if cursor == 0 {
                return Reply::Int(i64::try_from(count).unwrap_or(i64::MAX));
            }
            if count >= DBSIZE_EXACT {
                return Reply::Int(estimate(count, p.through));
            }
        }
    }))
}

/// Keys in the whole token space, from `count` keys in tokens `0..=through`.
pub(crate) fn estimate(count: u64, through: u64) -> i64 {
    let share = (through as f64 + 1.0) / 2f64.powi(64);
    let total = count as f64 / share;
    if total >= i64::MAX as f64 {
        i64::MAX
    } else {
        total.round() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_tokens_and_bad_ones_are_refused() {
        assert_eq!(parse_cursor(b"0").ok(), Some(0));
        assert_eq!(
            parse_cursor(b"18446744073709551615").ok(),
            Some(u64::MAX),
            "every token is a place to resume from"
        );
        for bad in [
            &b"-1"[..],
            b"x",
            b"",
            b"+5",
            b"18446744073709551616",
            b"1.5",
        ] {
            match parse_cursor(bad) {
                Err(Reply::Error(e)) => assert!(e.contains("invalid cursor"), "{e}"),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
        // A page complete through token t resumes at t + 1; through the last token, 0: done.
        assert_eq!(next_cursor(0), 1);
        assert_eq!(next_cursor(41), 42);
        assert_eq!(next_cursor(u64::MAX), 0);
        let c = next_cursor(12_345);
        assert_eq!(parse_cursor(c.to_string().as_bytes()).ok(), Some(c));
    }

    #[test]
    fn dbsize_extrapolates_from_the_share_walked() {
        assert_eq!(estimate(100, u64::MAX), 100);
        assert_eq!(estimate(100, u64::MAX / 2), 200);
        assert_eq!(estimate(100, u64::MAX / 4), 400);
    }
}
