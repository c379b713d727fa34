//! The Merkle exchange state machine against a peer that follows the protocol until the
//! fuzzer makes it lie. The first step sets up both sides' items; each later step delivers
//! the honest peer's next message, a message of the fuzzer's (postcard, as a frame carries
//! it), or a wrong answer to a leaf scan. Honest runs must repair every difference.
//!
//! The body is `ringkv_fuzz_targets::merkle::run`, which `cargo test` also replays over the corpus.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringkv_fuzz_targets::merkle::run(data));
