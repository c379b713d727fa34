//! Requests in, replies out: bounds on what a client may send, and replies encoded as RESP2
//! or RESP3 by the `redis-protocol` crate.

use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::types::BytesFrame as Frame2;
use redis_protocol::resp3::types::{BytesFrame as Frame3, FrameMap};

use super::Limits;

/// A request that breaks the protocol or the front's bounds: answered with `-ERR Protocol
/// error: ...`, then the connection closes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("Protocol error: {0}")]
pub struct ProtocolError(pub String);

/// The longest header line (`*COUNT` or `$LEN`) accepted; Redis allows the same order.
const MAX_HEADER_LINE: usize = 32;

/// Takes requests (arrays of bulk strings) off the front of a connection's buffer as they
/// complete, remembering how far the headers of the pending one were checked, so a large
/// request sent slowly is checked once, not again at each arrival.
#[derive(Debug, Default)]
pub struct RequestDecoder {
    /// The request at the front of the buffer, once its `*COUNT` line has arrived.
    pending: Option<Pending>,
    /// Header lines looked at so far (each complete one once; an incomplete one again when
    /// more bytes arrive): what checking costs, which tests compare with the bytes fed.
    header_scans: u64,
}

/// How far the request at the front of the buffer was checked.
#[derive(Clone, Copy, Debug)]
struct Pending {
    /// Arguments it declared.
    count: usize,
    /// Arguments whose `$LEN` line was checked.
    checked: usize,
    /// Where the next argument's `$LEN` line starts; once all are checked, the request's end.
    pos: usize,
}

impl RequestDecoder {
    /// Takes one request off the front of `buf` (which must only have grown, at its end,
    /// since the last call), if it is complete.
    ///
    /// Before the crate's decoder sees the bytes, the array's and each bulk string's declared
    /// lengths are checked against `limits`, so an oversized or ill-formed request is refused
    /// as soon as its header arrives instead of being buffered. After an error the connection
    /// is closed; the decoder is not used again.
    pub fn decode(
        &mut self,
        buf: &mut BytesMut,
        limits: &Limits,
    ) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        if buf.is_empty() || !self.check_bounds(buf, limits)? {
            return Ok(None);
        }
        let frame = match redis_protocol::resp2::decode::decode_bytes_mut(buf) {
            Ok(Some((frame, _, _))) => frame,
            Ok(None) => return Ok(None),
            Err(e) => return Err(ProtocolError(e.details().to_string())),
        };
        // The request is off the buffer: the next one starts at its front.
        self.pending = None;
        let Frame2::Array(items) = frame else {
            return Err(ProtocolError("expected an array of bulk strings".into()));
        };
        items
            .into_iter()
            .map(|item| match item {
                Frame2::BulkString(b) => Ok(b),
                _ => Err(ProtocolError("expected '$' in a request".into())),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// Header lines looked at since the decoder was made.
    pub fn header_scans(&self) -> u64 {
        self.header_scans
    }

    /// Checks the headers of the request at the front of `buf` from where the last call
    /// stopped, as far as they arrived; `true` once the whole request is in the buffer.
    fn check_bounds(&mut self, buf: &[u8], limits: &Limits) -> Result<bool, ProtocolError> {
        if self.pending.is_none() {
            if buf[0] != b'*' {
                return Err(ProtocolError(format!(
                    "expected '*', got '{}' (inline commands are not supported)",
                    char::from(buf[0]).escape_default()
                )));
            }
            let Some((count, pos)) = self.header(buf, 0, "multibulk")? else {
                return Ok(false);
            };
            if count < 1 || count > limits.max_args as i64 {
                return Err(ProtocolError(format!(
                    "invalid multibulk length {count} (1 to {} arguments)",
                    limits.max_args
                )));
            }
            self.pending = Some(Pending {
                count: count as usize,
                checked: 0,
                pos,
            });
        }
        let Some(Pending {
            count,
            mut checked,
            mut pos,
        }) = self.pending
        else {
            return Ok(false);
        };
        let done = loop {
            if checked == count {
                break pos <= buf.len();
            }
            if pos >= buf.len() {
                break false;
            }
            if buf[pos] != b'$' {
                return Err(ProtocolError(format!(
                    "expected '$', got '{}'",
                    char::from(buf[pos]).escape_default()
                )));
            }
            let Some((len, body)) = self.header(buf, pos, "bulk")? else {
                break false;
            };
            if len < 0 || len > limits.max_bulk as i64 {
                return Err(ProtocolError(format!(
                    "invalid bulk length {len} (at most {} bytes)",
                    limits.max_bulk
                )));
            }
            pos = body + len as usize + 2;
            if pos > limits.max_request {
                return Err(ProtocolError(format!(
                    "request larger than {} bytes",
                    limits.max_request
                )));
            }
            checked += 1;
        };
        self.pending = Some(Pending {
            count,
            checked,
            pos,
        });
        Ok(done)
    }

    /// [`header`], counted.
    fn header(
        &mut self,
        buf: &[u8],
        at: usize,
        what: &str,
    ) -> Result<Option<(i64, usize)>, ProtocolError> {
        self.header_scans += 1;
        header(buf, at, what)
    }
}

/// The number on the header line at `at` (after its type byte) and where the line ends.
fn header(buf: &[u8], at: usize, what: &str) -> Result<Option<(i64, usize)>, ProtocolError> {
    let window = &buf[at + 1..buf.len().min(at + 1 + MAX_HEADER_LINE)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        if window.len() >= MAX_HEADER_LINE {
            return Err(ProtocolError(format!("invalid {what} length")));
        }
        return Ok(None);
    };
    let n = std::str::from_utf8(&window[..end])
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| ProtocolError(format!("invalid {what} length")))?;
    Ok(Some((n, at + 1 + end + 2)))
}

/// One reply, encoded for the connection's protocol version when it is written.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// `+OK`.
    Simple(&'static str),
    /// `-KIND message`.
    Error(String),
    /// `:n`.
    Int(i64),
    /// A bulk string.
    Bulk(Bytes),
    /// A nil bulk string (RESP3 null).
    Nil,
    /// An array.
    Array(Vec<Reply>),
    /// A map in RESP3; a flat array of keys and values in RESP2.
    Map(Vec<(Reply, Reply)>),
}

impl Reply {
    /// `+OK`.
    pub const OK: Reply = Reply::Simple("OK");

    /// A bulk string from anything byte-like.
    pub fn bulk(b: impl Into<Bytes>) -> Reply {
        Reply::Bulk(b.into())
    }

    /// A bulk string holding `s`.
    pub fn text(s: impl Into<String>) -> Reply {
        Reply::Bulk(Bytes::from(s.into()))
    }

    /// `-ERR message`.
    pub fn err(msg: impl std::fmt::Display) -> Reply {
        Reply::Error(format!("ERR {msg}"))
    }

    /// Append this reply to `out` in RESP2 (`resp3 == false`) or RESP3.
    pub fn encode(&self, resp3: bool, out: &mut BytesMut) {
        // Encoding an in-memory frame into a growable buffer cannot fail.
        let _ = if resp3 {
            redis_protocol::resp3::encode::complete::extend_encode(out, &self.to_resp3(), false)
                .map(drop)
        } else {
            redis_protocol::resp2::encode::extend_encode(out, &self.to_resp2(), false).map(drop)
        };
    }

    fn to_resp2(&self) -> Frame2 {
        match self {
            Reply::Simple(s) => Frame2::SimpleString(Bytes::from_static(s.as_bytes())),
            Reply::Error(e) => Frame2::Error(e.as_str().into()),
            Reply::Int(i) => Frame2::Integer(*i),
            Reply::Bulk(b) => Frame2::BulkString(b.clone()),
            Reply::Nil => Frame2::Null,
            Reply::Array(items) => Frame2::Array(items.iter().map(Reply::to_resp2).collect()),
            Reply::Map(pairs) => Frame2::Array(
                pairs
                    .iter()
                    .flat_map(|(k, v)| [k.to_resp2(), v.to_resp2()])
                    .collect(),
            ),
        }
    }

    fn to_resp3(&self) -> Frame3 {
        let attributes = None;
        match self {
            Reply::Simple(s) => Frame3::SimpleString {
                data: Bytes::from_static(s.as_bytes()),
                attributes,
            },
            Reply::Error(e) => Frame3::SimpleError {
                data: e.as_str().into(),
                attributes,
            },
            Reply::Int(i) => Frame3::Number {
                data: *i,
                attributes,
            },
            Reply::Bulk(b) => Frame3::BlobString {
                data: b.clone(),
                attributes,
            },
            Reply::Nil => Frame3::Null,
            Reply::Array(items) => Frame3::Array {
                data: items.iter().map(Reply::to_resp3).collect(),
                attributes,
            },
            Reply::Map(pairs) => {
                let mut data = FrameMap::with_capacity(pairs.len());
                for (k, v) in pairs {
                    data.insert(k.to_resp3(), v.to_resp3());
                }
                Frame3::Map { data, attributes }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_args: 4,
            max_bulk: 10,
            max_request: 64,
            ..Limits::default()
        }
    }

    fn run(bytes: &[u8]) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        RequestDecoder::default().decode(&mut BytesMut::from(bytes), &limits())
    }

    #[test]
    fn decodes_pipelined_requests_one_at_a_time() {
        let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n"[..]);
        let mut decoder = RequestDecoder::default();
        let first = decoder.decode(&mut buf, &limits()).unwrap().unwrap();
        assert_eq!(first, vec![Bytes::from("GET"), Bytes::from("k")]);
        let second = decoder.decode(&mut buf, &limits()).unwrap().unwrap();
        assert_eq!(second, vec![Bytes::from("PING")]);
        assert!(buf.is_empty());
    }

    #[test]
    fn waits_for_an_incomplete_request() {
        assert_eq!(run(b"*2\r\n$3\r\nGET\r\n$1\r"), Ok(None));
        assert_eq!(run(b"*2\r\n$3"), Ok(None));
    }

    #[test]
    fn refuses_oversized_and_malformed_headers_at_once() {
        let bulk = run(b"*2\r\n$3\r\nSET\r\n$11\r\n").unwrap_err();
        assert!(bulk.0.contains("invalid bulk length 11"), "{bulk}");
        let args = run(b"*5\r\n").unwrap_err();
        assert!(args.0.contains("invalid multibulk length 5"), "{args}");
        assert!(run(b"PING\r\n").unwrap_err().0.contains("inline"));
        assert!(run(b"*1\r\n:1\r\n").unwrap_err().0.contains("expected '$'"));
        assert!(run(b"*x\r\n").unwrap_err().0.contains("invalid multibulk"));
        assert!(run(&[b'*'; 40]).is_err());
        let big = Limits {
            max_request: 20,
            ..limits()
        };
        let total = RequestDecoder::default()
            .decode(
                &mut BytesMut::from(&b"*3\r\n$9\r\n123456789\r\n$9\r\n"[..]),
                &big,
            )
            .unwrap_err();
        assert!(total.0.contains("larger than 20"), "{total}");
    }

    /// A request of `n` arguments (`MSET` and key-value pairs, some values long), and the
    /// arguments it carries.
    fn large_request(n: usize) -> (Vec<u8>, Vec<Bytes>) {
        let args: Vec<Bytes> = (0..n)
            .map(|i| match i {
                0 => Bytes::from("MSET"),
                i if i % 50 == 0 => Bytes::from(vec![b'v'; 300]),
                i => Bytes::from(format!("k{i}")),
            })
            .collect();
        let mut bytes = format!("*{n}\r\n").into_bytes();
        for arg in &args {
            bytes.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            bytes.extend_from_slice(arg);
            bytes.extend_from_slice(b"\r\n");
        }
        (bytes, args)
    }

    /// Feeds `bytes` in pieces of `size` bytes, taking every request that completes.
    fn feed(bytes: &[u8], size: usize, limits: &Limits) -> (Vec<Vec<Bytes>>, RequestDecoder) {
        let mut decoder = RequestDecoder::default();
        let mut buf = BytesMut::new();
        let mut requests = Vec::new();
        for piece in bytes.chunks(size) {
            buf.extend_from_slice(piece);
            while let Some(request) = decoder.decode(&mut buf, limits).unwrap() {
                requests.push(request);
            }
        }
        assert!(buf.is_empty(), "bytes left over");
        (requests, decoder)
    }

    #[test]
    fn a_large_request_sent_slowly_is_checked_once() {
        let limits = Limits {
            max_args: 2000,
            max_bulk: 1000,
            max_request: 1 << 20,
            ..Limits::default()
        };
        let n = 2000;
        let (bytes, args) = large_request(n);
        // Two of them back to back: the second starts from a fresh state.
        let twice = [bytes.clone(), bytes.clone()].concat();
        for size in [1, 3, 7, 64] {
            let (requests, decoder) = feed(&twice, size, &limits);
            assert_eq!(
                requests,
                vec![args.clone(), args.clone()],
                "pieces of {size}"
            );
            // Each complete header line is scanned once; an incomplete one once more per call
            // (one per piece, one more after each request taken). Re-checking from the
            // request's start at every piece would scan about pieces × n / 2 lines.
            let pieces = twice.len().div_ceil(size) as u64;
            let headers = 2 * (n as u64 + 1);
            assert!(
                decoder.header_scans() <= pieces + 2 + headers,
                "pieces of {size}: {} header scans for {pieces} pieces and {headers} headers",
                decoder.header_scans()
            );
        }
        // Whole, the same requests, each header scanned exactly once.
        let (requests, decoder) = feed(&twice, twice.len(), &limits);
        assert_eq!(requests.len(), 2);
        assert_eq!(decoder.header_scans(), 2 * (n as u64 + 1));
    }

    #[test]
    fn a_slow_request_past_a_bound_is_refused_when_its_header_arrives() {
        let limits = limits();
        let bytes = b"*2\r\n$3\r\nGET\r\n$11\r\n";
        let mut decoder = RequestDecoder::default();
        let mut buf = BytesMut::new();
        for (i, &b) in bytes.iter().enumerate() {
            buf.extend_from_slice(&[b]);
            match decoder.decode(&mut buf, &limits) {
                Ok(None) => assert!(i + 1 < bytes.len(), "not refused at the end"),
                Err(e) => {
                    assert_eq!(i + 1, bytes.len(), "refused early: {e}");
                    assert!(e.0.contains("invalid bulk length 11"), "{e}");
                }
                Ok(Some(r)) => panic!("decoded {r:?}"),
            }
        }
    }

    #[test]
    fn replies_encode_in_both_protocols() {
        let reply = Reply::Map(vec![(Reply::text("a"), Reply::Int(1))]);
        let mut two = BytesMut::new();
        reply.encode(false, &mut two);
        assert_eq!(&two[..], b"*2\r\n$1\r\na\r\n:1\r\n");
        let mut three = BytesMut::new();
        reply.encode(true, &mut three);
        assert_eq!(&three[..], b"%1\r\n$1\r\na\r\n:1\r\n");
        let mut nil = BytesMut::new();
        Reply::Nil.encode(false, &mut nil);
        Reply::Nil.encode(true, &mut nil);
        assert_eq!(&nil[..], b"$-1\r\n_\r\n");
    }
}
