//! Every postcard message a node decodes from a peer or a client, and the version-1
//! transcoding of frames: the same bytes decoded as each type, each value round-tripped.
//!
//! The body is `ringkv_fuzz_targets::wire::run`, which `cargo test` also replays over the corpus.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringkv_fuzz_targets::wire::run(data));
