//! Redis's glob patterns (`KEYS`, `SCAN MATCH`), on bytes: `*`, `?`, `[abc]`, `[^a-z]`
//! and `\` escaping the next byte, as Redis's `stringmatchlen`.

/// Whether `key` matches `pattern`. Every token but `*` matches one byte, so one pass
/// that backtracks only to the last `*` decides it in `O(pattern × key)` steps.
pub(crate) fn matches(pattern: &[u8], key: &[u8]) -> bool {
    let (mut p, mut k) = (0, 0);
    // Where to go back to: the pattern after the last `*`, and the key byte it took up to.
    let mut star: Option<(usize, usize)> = None;
    while k < key.len() {
        if pattern.get(p) == Some(&b'*') {
            p += 1;
            star = Some((p, k));
            continue;
        }
        if let Some(next) = one(&pattern[p.min(pattern.len())..], key[k]) {
            p += next;
            k += 1;
            continue;
        }
        match star {
            Some((sp, sk)) => {
                p = sp;
                k = sk + 1;
                star = Some((sp, sk + 1));
            }
            None => return false,
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|b| *b == b'*')
}

/// Whether the pattern's first token (not `*`) matches byte `c`: the token's length if so.
fn one(p: &[u8], c: u8) -> Option<usize> {
    let (hit, len) = match p {
        [] | [b'*', ..] => return None,
        [b'?', ..] => (true, 1),
        [b'[', rest @ ..] => {
            let (hit, after) = class(rest, c);
            (hit, p.len() - after.len())
        }
        [b'\\', x, ..] => (*x == c, 2),
        [x, ..] => (*x == c, 1),
    };
    hit.then_some(len)
}

/// A `[...]` class (its `[` already taken) against byte `c`: whether it matched, and the
/// pattern after the class. An unterminated class runs to the pattern's end, as in Redis.
fn class(mut p: &[u8], c: u8) -> (bool, &[u8]) {
    let negate = p.first() == Some(&b'^');
    if negate {
        p = &p[1..];
    }
    let mut hit = false;
    loop {
        match p {
            [] => break,
            [b']', rest @ ..] => {
                p = rest;
                break;
            }
            [b'\\', x, rest @ ..] => {
                hit |= *x == c;
                p = rest;
            }
            [a, b'-', b, rest @ ..] if *b != b']' => {
                let (lo, hi) = if a <= b { (*a, *b) } else { (*b, *a) };
                hit |= (lo..=hi).contains(&c);
                p = rest;
            }
            [x, rest @ ..] => {
                hit |= *x == c;
                p = rest;
            }
        }
    }
    (hit != negate, p)
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn redis_glob_patterns() {
        let m = |p: &str, k: &str| matches(p.as_bytes(), k.as_bytes());
        assert!(m("*", "") && m("*", "anything"));
        assert!(m("user:*", "user:1") && !m("user:*", "usr:1"));
        assert!(m("h?llo", "hello") && m("h?llo", "hallo") && !m("h?llo", "hllo"));
        assert!(m("h[ae]llo", "hallo") && !m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo") && !m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo") && !m("h[a-b]llo", "hcllo"));
        assert!(
            m("h[b-a]llo", "hallo"),
            "a reversed range is the same range"
        );
        assert!(m("a\\*b", "a*b") && !m("a\\*b", "axb"));
        assert!(m("*a*b*", "xxaxxbxx") && !m("*a*b*", "xxbxxaxx"));
        assert!(!m("k[", "k") && m("k[x", "kx"));
        assert!(m("a*", "a") && m("**", "") && !m("?", ""));
        let long = "a".repeat(4000);
        assert!(
            !m("*a*a*a*a*a*a*a*a*a*a*b", &long),
            "no exponential backtracking"
        );
        assert!(!m("abc", "abcd") && !m("abcd", "abc"));
    }
}
