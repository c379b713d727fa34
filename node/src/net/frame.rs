//! Length-prefixed frames on QUIC streams: a `u32` big-endian body length, then the body.
//!
//! A request stream carries one request frame then FIN; the response comes back as one frame
//! then FIN. A stream that breaks these rules is reset with one of the [`codes`]. (Protocol
//! version 3 also carries many calls on one stream: see [`super::mux`].)

use quinn::{ReadError, ReadExactError, RecvStream, SendStream, VarInt, WriteError};

/// Bytes of the length prefix.
pub(crate) const HEADER_LEN: usize = 4;

/// Stream error codes (QUIC application error codes on RESET_STREAM / STOP_SENDING).
pub(crate) mod codes {
    use quinn::VarInt;

    /// The receiver dropped the request without responding.
    pub const NO_RESPONSE: VarInt = VarInt::from_u32(1);
    /// The request frame was truncated or otherwise malformed.
    pub const BAD_FRAME: VarInt = VarInt::from_u32(2);
    /// The frame announced a body larger than the receiver's limit.
    pub const TOO_LARGE: VarInt = VarInt::from_u32(3);
    /// The node's inbound queue stayed full for the whole call timeout.
    pub const BUSY: VarInt = VarInt::from_u32(4);
    /// The request frame did not arrive within the call timeout.
    pub const TOO_SLOW: VarInt = VarInt::from_u32(5);

    /// What a peer meant by resetting a stream with `code`.
    pub fn describe(code: VarInt) -> String {
        match code.into_inner() {
            1 => "it dropped the request without responding".to_string(),
            2 => "malformed frame".to_string(),
            3 => "frame too large".to_string(),
            4 => "it is busy (inbound queue full)".to_string(),
            5 => "the request did not arrive in time".to_string(),
            other => format!("stream reset with code {other}"),
        }
    }
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    /// The announced (or given) body is over the limit.
    #[error("frame of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge { size: u64, max: usize },
    /// The stream ended inside the frame.
    #[error("stream ended after {got} of {expected} bytes of a frame")]
    Truncated { got: usize, expected: usize },
    /// Reading failed (reset, connection lost).
    #[error("{0}")]
    Read(ReadError),
    /// Writing failed (stopped, connection lost).
    #[error("{0}")]
    Write(WriteError),
    /// A frame, once begun, did not arrive (or could not be written) within the bound.
    #[error("frame not complete in time")]
    Stalled,
    /// A multiplexed frame of a kind the receiver does not take there.
    #[error("unexpected frame kind {0}")]
    BadKind(u8),
}

impl FrameError {
    /// The code to reset a stream with after this error.
    pub(crate) fn code(&self) -> VarInt {
        match self {
            FrameError::TooLarge { .. } => codes::TOO_LARGE,
            FrameError::Stalled => codes::TOO_SLOW,
            _ => codes::BAD_FRAME,
        }
    }
}

/// The length prefix of a `len`-byte body, or `TooLarge` when over `max`.
pub(crate) fn encode_header(len: usize, max: usize) -> Result<[u8; HEADER_LEN], FrameError> {
    match u32::try_from(len) {
        Ok(n) if len <= max => Ok(n.to_be_bytes()),
        _ => Err(FrameError::TooLarge {
            size: len as u64,
            max,
        }),
    }
}

/// The body length a header announces, or `TooLarge` when over `max`.
pub(crate) fn decode_header(header: [u8; HEADER_LEN], max: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header);
    match usize::try_from(len) {
        Ok(n) if n <= max => Ok(n),
        _ => Err(FrameError::TooLarge {
            size: u64::from(len),
            max,
        }),
    }
}

/// Writes one frame (the caller finishes the stream).
pub(crate) async fn write_frame(
    send: &mut SendStream,
    body: &[u8],
    max: usize,
) -> Result<(), FrameError> {
    let header = encode_header(body.len(), max)?;
    send.write_all(&header).await.map_err(FrameError::Write)?;
    send.write_all(body).await.map_err(FrameError::Write)
}

/// Reads one frame of at most `max` bytes. Memory grows with the bytes that actually
/// arrive, not with the announced length.
pub(crate) async fn read_frame(recv: &mut RecvStream, max: usize) -> Result<Vec<u8>, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    recv.read_exact(&mut header).await.map_err(|e| match e {
        ReadExactError::FinishedEarly(got) => FrameError::Truncated {
            got,
            expected: HEADER_LEN,
        },
        ReadExactError::ReadError(e) => FrameError::Read(e),
    })?;
    read_frame_after(recv, header, max).await
}

/// Reads the body of a frame whose `header` was already read.
pub(crate) async fn read_frame_after(
    recv: &mut RecvStream,
    header: [u8; HEADER_LEN],
    max: usize,
) -> Result<Vec<u8>, FrameError> {
    let len = decode_header(header, max)?;
    read_body(recv, len, HEADER_LEN).await
}

/// Reads exactly `len` body bytes (after a header of `header_len` bytes, for the error).
/// Memory grows with the bytes that actually arrive, not with the announced length.
pub(crate) async fn read_body(
    recv: &mut RecvStream,
    len: usize,
    header_len: usize,
) -> Result<Vec<u8>, FrameError> {
    let mut body = Vec::with_capacity(len.min(64 * 1024));
    while body.len() < len {
        match recv
            .read_chunk(len - body.len(), true)
            .await
            .map_err(FrameError::Read)?
        {
            Some(chunk) => body.extend_from_slice(&chunk.bytes),
            None => {
                return Err(FrameError::Truncated {
                    got: header_len + body.len(),
                    expected: header_len + len,
                })
            }
        }
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn header_round_trips_within_the_limit(len in 0usize..=1 << 24, slack in 0usize..1024) {
            let max = len + slack;
            let header = encode_header(len, max).unwrap();
            prop_assert_eq!(decode_header(header, max).unwrap(), len);
        }

        #[test]
        fn headers_over_the_limit_are_refused_both_ways(max in 0usize..1 << 20, over in 1usize..1024) {
            let len = max + over;
            let too_large = |r: Result<_, FrameError>| matches!(
                r, Err(FrameError::TooLarge { size, max: m }) if size == len as u64 && m == max
            );
            prop_assert!(too_large(encode_header(len, max).map(|_| ())));
            let header = (len as u32).to_be_bytes();
            prop_assert!(too_large(decode_header(header, max).map(|_| ())));
        }
    }

    #[test]
    fn header_is_big_endian() {
        assert_eq!(
            encode_header(0x0102_0304, usize::MAX).unwrap(),
            [1, 2, 3, 4]
        );
    }

    #[test]
    fn every_code_has_a_description() {
        for code in [
            codes::NO_RESPONSE,
            codes::BAD_FRAME,
            codes::TOO_LARGE,
            codes::BUSY,
            codes::TOO_SLOW,
        ] {
            assert!(!codes::describe(code).contains("reset with code"));
        }
        assert!(codes::describe(VarInt::from_u32(99)).contains("99"));
    }
}
