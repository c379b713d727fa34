//! Bounds shared by the layers that check them: the transport's handshake and the range
//! table both refuse a node name past this.

/// Longest accepted node name, in bytes.
pub const MAX_NODE_NAME: usize = 64;
