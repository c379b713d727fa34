//! A node of a three-node cluster running primary mode (a leader of some shards, a follower
//! of the others), fed hostile replication traffic between honest steps: peer requests
//! (appends, snapshot pages, votes, pre-votes, collects, and every other peer request) as
//! the wire carries them, forged answers to its own calls, and gossip datagrams.
//!
//! The body is `ringkv_fuzz_targets::replication::run`, which `cargo test` also replays over the corpus.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringkv_fuzz_targets::replication::run(data));
