//! The Redis front's request decoder: bytes as a client sends them, whole or in pieces.
//! Both ways must give the same requests and the same verdict, within the front's bounds.
//!
//! The body is `ringkv_fuzz_targets::resp::run`, which `cargo test` also replays over the corpus.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringkv_fuzz_targets::resp::run(data));
