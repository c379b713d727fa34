//! What users hand a node as text or as a table: causal context tokens, session tokens
//! (`REPLID:OFFSET`), conflict policy and durability names, and range-table rules, set by a
//! client or merged from a peer's table.
//!
//! The body is `ringkv_fuzz_targets::tokens::run`, which `cargo test` also replays over the corpus.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringkv_fuzz_targets::tokens::run(data));
