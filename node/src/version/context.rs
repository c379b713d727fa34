//! The causal context a client carries from a read to its next write.

use std::fmt::Write as _;

use super::{VersionError, VersionVector};

/// Opaque causal context handed to clients with a read and passed back with a write, so the
/// write replaces exactly the versions the client saw.
///
/// As text it is a token: lowercase hex of a format byte followed by the postcard encoding of
/// the version vector.
///
/// ```
/// use ringkv::version::{Context, VersionVector};
///
/// let vv: VersionVector = [("n1".to_string(), 3)].into_iter().collect();
/// let token = Context(vv).to_token();
/// assert_eq!(Context::from_token(&token).unwrap().0.get("n1"), 3);
/// assert!(Context::from_token("not a token").is_err());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Context(pub VersionVector);

/// The format byte at the start of every token.
const TOKEN_FORMAT: u8 = 1;

/// The largest decoded context accepted: 64 KiB (a token of twice as many hex digits).
pub const MAX_CONTEXT_BYTES: usize = 64 << 10;

/// The most actors a context may name; far more than any cluster's replicas.
pub const MAX_CONTEXT_ACTORS: usize = 1024;

const WHAT: &str = "context token";

impl Context {
    /// The token form: lowercase hex.
    #[must_use]
    pub fn to_token(&self) -> String {
        let mut bytes = vec![TOKEN_FORMAT];
        // Encoding a map of strings and integers into a Vec cannot fail; should it ever,
        // the token is just the format byte, which decodes to an error, never a wrong context.
        if let Ok(body) = postcard::to_allocvec(&self.0) {
            bytes.extend(body);
        }
        let mut token = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            let _ = write!(token, "{b:02x}");
        }
        token
    }

    /// Parses a token made by [`to_token`](Self::to_token).
    ///
    /// # Errors
    /// A token that is empty, too long (over [`MAX_CONTEXT_BYTES`] decoded), not lowercase
    /// hex, of an unknown format, malformed, or naming over [`MAX_CONTEXT_ACTORS`] actors.
    pub fn from_token(token: &str) -> Result<Context, VersionError> {
        if token.len() > 2 * MAX_CONTEXT_BYTES {
            return Err(VersionError::TooLarge {
                what: WHAT,
                len: token.len() / 2,
                max: MAX_CONTEXT_BYTES,
            });
        }
        if token.is_empty() {
            return Err(VersionError::Empty { what: WHAT });
        }
        let bytes = decode_hex(token)?;
        let (&format, body) = bytes
            .split_first()
            .ok_or(VersionError::Empty { what: WHAT })?;
        if format != TOKEN_FORMAT {
            return Err(VersionError::UnknownFormat {
                what: WHAT,
                found: format,
                expected: TOKEN_FORMAT,
            });
        }
        let (vv, rest) = postcard::take_from_bytes::<VersionVector>(body)
            .map_err(|source| VersionError::Decode { what: WHAT, source })?;
        if !rest.is_empty() {
            return Err(VersionError::TrailingBytes {
                what: WHAT,
                extra: rest.len(),
            });
        }
        if vv.len() > MAX_CONTEXT_ACTORS {
            return Err(VersionError::TooManyActors {
                count: vv.len(),
                max: MAX_CONTEXT_ACTORS,
            });
        }
        Ok(Context(vv))
    }
}

fn decode_hex(token: &str) -> Result<Vec<u8>, VersionError> {
    if !token.len().is_multiple_of(2) {
        return Err(VersionError::BadHex {
            reason: format!("odd length {}", token.len()),
        });
    }
    let digit = |pos: usize, c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => Err(VersionError::BadHex {
            reason: format!("unexpected byte 0x{c:02x} at position {pos}"),
        }),
    };
    token
        .as_bytes()
        .chunks_exact(2)
        .enumerate()
        .map(|(i, pair)| match pair {
            [hi, lo] => Ok(digit(2 * i, *hi)? << 4 | digit(2 * i + 1, *lo)?),
            _ => Err(VersionError::BadHex {
                reason: "odd length".to_owned(),
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vv(pairs: &[(&str, u64)]) -> VersionVector {
        pairs.iter().map(|&(a, n)| (a.to_owned(), n)).collect()
    }

    #[test]
    fn token_is_lowercase_hex_and_round_trips() {
        let c = Context(vv(&[("node-1", 7), ("node-2", u64::MAX)]));
        let token = c.to_token();
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_eq!(Context::from_token(&token).unwrap(), c);
        assert_eq!(
            Context::from_token(&Context::default().to_token()).unwrap(),
            Context::default()
        );
    }

    #[test]
    fn garbage_tokens_are_rejected_with_clear_errors() {
        let good = Context(vv(&[("z", 10)])).to_token(); // "010101" "7a" "0a"
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "empty"),
            ("abc".into(), "odd length"),
            ("zz".into(), "unexpected byte 0x7a at position 0"),
            (good.to_uppercase(), "not lowercase hex"),
            (format!("02{}", &good[2..]), "unknown format version 2"),
            (format!("{good}00"), "trailing bytes"),
            (good[..good.len() - 2].to_owned(), "malformed context token"),
            ("0".repeat(2 * MAX_CONTEXT_BYTES + 2), "over the limit"),
        ];
        for (token, message) in cases {
            let err = Context::from_token(&token).unwrap_err().to_string();
            assert!(err.contains(message), "{token:.20}: {err}");
        }
    }

    #[test]
    fn too_many_actors_are_rejected() {
        let many: VersionVector = (0..=MAX_CONTEXT_ACTORS)
            .map(|i| (format!("n{i}"), 1))
            .collect();
        let err = Context::from_token(&Context(many).to_token()).unwrap_err();
        assert!(matches!(
            err,
            VersionError::TooManyActors {
                count: 1025,
                max: 1024
            }
        ));
    }

    proptest! {
        #[test]
        fn any_context_round_trips(pairs in proptest::collection::btree_map("[a-z0-9-]{1,12}", 1u64.., 0..20)) {
            let c = Context(pairs.into_iter().collect());
            prop_assert_eq!(Context::from_token(&c.to_token()).unwrap(), c);
        }

        #[test]
        fn random_strings_never_panic(s in "\\PC{0,64}", hex in "[0-9a-f]{0,64}") {
            let _ = Context::from_token(&s);
            let _ = Context::from_token(&hex);
        }
    }
}
