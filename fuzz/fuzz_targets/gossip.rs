//! Gossip datagrams (foca's postcard codec, ringkv's identity checks and status broadcasts)
//! fed to a node's membership, interleaved with the timers it arms.
//!
//! The body is `ringkv_fuzz_targets::gossip::run`, which `cargo test` also replays over the corpus.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringkv_fuzz_targets::gossip::run(data));
