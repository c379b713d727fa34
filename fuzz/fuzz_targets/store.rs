//! What a node reads back from its data directory: records, the stored key and hint layouts,
//! and the metadata a core loads at start (actor epoch, saved ring members, range table).
//! Corrupted bytes must give an error (`Corrupt` for the layouts) or be served, never panic.
//!
//! The body is `ringkv_fuzz_targets::store::run`, which `cargo test` also replays over the corpus.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringkv_fuzz_targets::store::run(data));
