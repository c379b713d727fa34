//! Replays every committed corpus file (`fuzz/corpus/TARGET/*`) through its target's body, as
//! libFuzzer does when a run starts, in an ordinary `cargo test`: a decoder or state machine
//! that panics on (or breaks a checked promise for) a known input fails here, with the files
//! named, without the nightly toolchain or an instrumented build.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

/// Runs `name`'s body over each file of its corpus; fails naming every file that panicked.
fn replay(name: &str) {
    let (_, body) = ringkv_fuzz_targets::TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .expect("a target of that name");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../corpus")
        .join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    let mut failed = Vec::new();
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        if catch_unwind(AssertUnwindSafe(|| body(&data))).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} {name} corpus files failed (each panic's message is above): {failed:#?}",
        failed.len(),
        files.len()
    );
}

/// Every libFuzzer binary but `seeds` is a body of [`ringkv_fuzz_targets::TARGETS`], replayed
/// by one of the tests below.
#[test]
fn every_fuzz_binary_is_replayed() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz_targets");
    let mut binaries: Vec<String> = std::fs::read_dir(&dir)
        .expect("fuzz/fuzz_targets")
        .filter_map(|e| {
            let name = e.expect("an entry").file_name().into_string().ok()?;
            Some(name.strip_suffix(".rs")?.to_string())
        })
        .filter(|name| name != "seeds")
        .collect();
    binaries.sort();
    let mut names: Vec<&str> = ringkv_fuzz_targets::TARGETS
        .iter()
        .map(|(n, _)| *n)
        .collect();
    names.sort();
    assert_eq!(binaries, names);
    assert_eq!(
        names,
        [
            "gossip",
            "merkle",
            "replication",
            "resp",
            "store",
            "tokens",
            "wire"
        ],
        "a test below per target"
    );
}

#[test]
fn wire_corpus_replays() {
    replay("wire");
}

#[test]
fn gossip_corpus_replays() {
    replay("gossip");
}

#[test]
fn merkle_corpus_replays() {
    replay("merkle");
}

#[test]
fn replication_corpus_replays() {
    replay("replication");
}

#[test]
fn resp_corpus_replays() {
    replay("resp");
}

#[test]
fn tokens_corpus_replays() {
    replay("tokens");
}

#[test]
fn store_corpus_replays() {
    replay("store");
}
