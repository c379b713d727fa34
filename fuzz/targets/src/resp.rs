//! The Redis front's request decoder: bytes as a client sends them, whole or in pieces.
//! Both ways must give the same requests and the same verdict, within the front's bounds.

use bytes::{Bytes, BytesMut};
use ringkv::resp::{Limits, RequestDecoder};

/// Requests decoded from `pieces` arriving one after the other, and whether the stream was
/// refused.
fn decode_all(pieces: &[&[u8]], limits: &Limits) -> (Vec<Vec<Bytes>>, bool) {
    let mut decoder = RequestDecoder::default();
    let mut buf = BytesMut::new();
    let mut requests = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf, limits) {
                Ok(Some(request)) => {
                    assert!(!request.is_empty() && request.len() <= limits.max_args);
                    assert!(request.iter().all(|arg| arg.len() <= limits.max_bulk));
                    requests.push(request);
                }
                Ok(None) => break,
                Err(_) => return (requests, true),
            }
        }
    }
    (requests, false)
}

/// Feeds one fuzz input; panics on a broken promise of the code under test.
pub fn run(data: &[u8]) {
    let Some((&cut, data)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_args: 8,
        max_bulk: 64,
        max_request: 256,
        ..Limits::default()
    };
    let whole = decode_all(&[data], &limits);
    // The same bytes in pieces of `cut` bytes (1 to 16), as a slow client would send them.
    let size = usize::from(cut % 16) + 1;
    let pieces: Vec<&[u8]> = data.chunks(size).collect();
    let split = decode_all(&pieces, &limits);
    assert_eq!(whole, split, "pieces of {size} bytes decode differently");
}
