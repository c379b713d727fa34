//! The one frame encoding of wire messages and stored metadata: `postcard`.

use serde::{Deserialize, Serialize};

/// A frame could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("bad frame: {0}")]
pub struct CodecError(#[from] postcard::Error);

/// Encode a message as one frame.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, CodecError> {
    Ok(postcard::to_stdvec(msg)?)
}

/// Decode one frame; garbage gives an error, never a panic.
///
/// ```
/// use ringkv::proto::{decode, encode, ClientRequest, Request};
/// let req = Request::Client(ClientRequest::Members);
/// assert_eq!(decode::<Request>(&encode(&req).unwrap()).unwrap(), req);
/// assert!(decode::<Request>(&[0xff, 0xff, 0xff]).is_err());
/// ```
pub fn decode<'a, T: Deserialize<'a>>(frame: &'a [u8]) -> Result<T, CodecError> {
    Ok(postcard::from_bytes(frame)?)
}
