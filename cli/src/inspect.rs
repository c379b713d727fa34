//! `ringctl inspect KEY`: what the one node named by `--node` holds for a key, tombstones
//! included, without coordinating with the key's other replicas. It is the operator's view of
//! a single replica: a replica that lacks a key the cluster has is what repair fixes.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use ringkv::hlc::Timestamp;
use ringkv::proto::{InspectHint, InspectResult, InspectSibling};
use ringkv::Api;
use serde::Serialize;

use crate::ops;
use crate::output::{self, JsonBytes, OutputFormat, Table};
use crate::Global;

/// `ringctl inspect KEY`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The key (UTF-8).
    pub key: String,
}

/// `ringctl inspect`: exit status 1 and `not held by NODE` on stderr when the node holds no
/// version of the key (not even a tombstone).
pub async fn run(g: &Global, a: InspectArgs) -> anyhow::Result<ExitCode> {
    let client = ops::connect(g).await?;
    let held = client
        .inspect(a.key.clone().into_bytes())
        .await
        .with_context(|| format!("inspect {:?} on {}", a.key, client.node()))?;
    match g.output {
        OutputFormat::Text => output::emit(&inspect_text(&held, output::now_ms()))?,
        OutputFormat::Json => output::emit_json(&InspectJson::new(&a.key, &held))?,
    }
    if held.siblings.is_empty() {
        output::note(&format!("not held by {}", held.node));
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// A sibling's value on one line, or `(tombstone)`.
fn sibling_value(s: &InspectSibling) -> String {
    match &s.data {
        Some(data) => output::one_line_value(data),
        None => "(tombstone)".to_owned(),
    }
}

/// One line per hint the node keeps for the key (empty when it keeps none).
fn hints_table(hints: &[InspectHint], now_ms: u64) -> String {
    if hints.is_empty() {
        return String::new();
    }
    let mut table = Table::new(&["HINT FOR", "STORED", "BYTES", "SIBLINGS"]);
    for h in hints {
        let values: Vec<String> = h.siblings.iter().map(sibling_value).collect();
        table.row(vec![
            h.owner.clone(),
            format!("{} ({})", h.stored_ms, output::age(now_ms, h.stored_ms)),
            h.bytes.to_string(),
            values.join(", "),
        ]);
    }
    table.render()
}

/// The node, whether it replicates the key, the token; then, when it holds the key, one line
/// per sibling and the context token; then the hints it keeps for the key, if any. Ages are
/// counted from `now_ms`.
fn inspect_text(held: &InspectResult, now_ms: u64) -> String {
    let replica = if held.replica {
        "yes".to_owned()
    } else {
        "no (not in the key's preference list)".to_owned()
    };
    let mut head = vec![
        ("node", held.node.clone()),
        ("replica", replica),
        ("token", output::token_hex(held.token)),
    ];
    if !held.siblings.is_empty() {
        head.push(("siblings", held.siblings.len().to_string()));
    }
    if !held.hints.is_empty() {
        head.push(("hints", held.hints.len().to_string()));
    }
    let hints = hints_table(&held.hints, now_ms);
    if held.siblings.is_empty() {
        return format!("{}{hints}", output::fields(&head));
    }
    let mut table = Table::new(&["VALUE", "WRITTEN", "ORIGIN"]);
    for s in &held.siblings {
        table.row(vec![
            sibling_value(s),
            format!("{} ({})", s.ts, output::age(now_ms, s.ts.millis)),
            s.origin.clone(),
        ]);
    }
    let context = output::fields(&[("context", held.context.to_token())]);
    format!(
        "{}{}{context}{hints}",
        output::fields(&head),
        table.render()
    )
}

#[derive(Debug, Serialize)]
struct InspectJson<'a> {
    key: &'a str,
    node: &'a str,
    replica: bool,
    token: u64,
    siblings: Vec<SiblingJson<'a>>,
    context: String,
    hints: Vec<HintJson<'a>>,
}

/// A hint the node keeps for the key on behalf of `owner`.
#[derive(Debug, Serialize)]
struct HintJson<'a> {
    owner: &'a str,
    stored_ms: u64,
    bytes: u64,
    siblings: Vec<SiblingJson<'a>>,
}

/// One sibling: `value` (with `hex` when not UTF-8) is `null` for a tombstone.
#[derive(Debug, Serialize)]
struct SiblingJson<'a> {
    value: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    hex: bool,
    tombstone: bool,
    ts: Timestamp,
    origin: &'a str,
}

impl<'a> SiblingJson<'a> {
    fn new(s: &'a InspectSibling) -> Self {
        let bytes = s.data.as_deref().map(JsonBytes::new);
        SiblingJson {
            hex: bytes.as_ref().is_some_and(|b| b.hex),
            value: bytes.map(|b| b.value),
            tombstone: s.data.is_none(),
            ts: s.ts,
            origin: &s.origin,
        }
    }
}

impl<'a> InspectJson<'a> {
    fn new(key: &'a str, held: &'a InspectResult) -> Self {
        InspectJson {
            key,
            node: &held.node,
            replica: held.replica,
            token: held.token,
            siblings: held.siblings.iter().map(SiblingJson::new).collect(),
            context: held.context.to_token(),
            hints: held
                .hints
                .iter()
                .map(|h| HintJson {
                    owner: &h.owner,
                    stored_ms: h.stored_ms,
                    bytes: h.bytes,
                    siblings: h.siblings.iter().map(SiblingJson::new).collect(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringkv::version::Context;

    const NOW: u64 = 1_700_000_010_000;

    fn sibling(data: Option<&[u8]>, millis: u64, origin: &str) -> InspectSibling {
        InspectSibling {
            data: data.map(<[u8]>::to_vec),
            ts: Timestamp { millis, logical: 2 },
            origin: origin.into(),
        }
    }

    fn held(siblings: Vec<InspectSibling>, replica: bool) -> InspectResult {
        InspectResult {
            node: "n2".into(),
            replica,
            token: 0xbeef,
            siblings,
            context: Context::default(),
            hints: Vec::new(),
        }
    }

    fn hint(owner: &str, stored_ms: u64, siblings: Vec<InspectSibling>) -> InspectHint {
        InspectHint {
            owner: owner.into(),
            stored_ms,
            bytes: 57,
            siblings,
        }
    }

    #[test]
    fn text_lists_each_sibling_with_its_time_and_origin_then_the_context() {
        let h = held(
            vec![
                sibling(Some(b"hello\nworld"), NOW - 3_000, "n1"),
                sibling(None, NOW - 600_000, "n3"),
            ],
            true,
        );
        let text = inspect_text(&h, NOW);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "node:      n2");
        assert_eq!(lines[1], "replica:   yes");
        assert_eq!(lines[2], "token:     000000000000beef");
        assert_eq!(lines[3], "siblings:  2");
        assert!(lines[4].starts_with("VALUE") && lines[4].ends_with("ORIGIN"));
        assert!(lines[5].starts_with("hello\\nworld "), "{}", lines[5]);
        assert!(lines[5].contains(&format!("{}.2 (3s ago)", NOW - 3_000)));
        assert!(lines[5].ends_with(" n1"));
        assert!(lines[6].starts_with("(tombstone) "), "{}", lines[6]);
        assert!(lines[6].contains("(10m ago)") && lines[6].ends_with(" n3"));
        assert_eq!(
            lines[7],
            format!("context:  {}", Context::default().to_token())
        );
        assert_eq!(lines.len(), 8);
    }

    #[test]
    fn text_of_a_key_not_held_says_only_who_answered_and_whether_it_should_hold_it() {
        let text = inspect_text(&held(Vec::new(), false), NOW);
        assert_eq!(
            text,
            "node:     n2\n\
             replica:  no (not in the key's preference list)\n\
             token:    000000000000beef\n"
        );
    }

    #[test]
    fn json_marks_tombstones_and_hex_values() {
        let h = held(
            vec![
                sibling(Some(b"v"), 7, "n1"),
                sibling(Some(&[0xff]), 8, "n2"),
                sibling(None, 9, "n3"),
            ],
            true,
        );
        let json = serde_json::to_value(InspectJson::new("k", &h)).unwrap();
        assert_eq!(json["key"], "k");
        assert_eq!(json["node"], "n2");
        assert_eq!(json["replica"], true);
        assert_eq!(json["token"], 0xbeef);
        assert_eq!(json["context"], Context::default().to_token());
        let s = &json["siblings"];
        assert_eq!(s[0]["value"], "v");
        assert!(s[0].get("hex").is_none());
        assert_eq!(s[0]["tombstone"], false);
        assert_eq!(s[0]["ts"]["millis"], 7);
        assert_eq!(s[0]["origin"], "n1");
        assert_eq!(s[1]["value"], "ff");
        assert_eq!(s[1]["hex"], true);
        assert!(s[2]["value"].is_null());
        assert_eq!(s[2]["tombstone"], true);
        assert_eq!(s[2]["origin"], "n3");
    }

    #[test]
    fn text_lists_hints_kept_for_other_owners_even_without_a_copy_of_its_own() {
        let mut h = held(Vec::new(), false);
        h.hints = vec![
            hint(
                "n3",
                NOW - 5_000,
                vec![sibling(Some(b"a"), 1, "n1"), sibling(None, 2, "n2")],
            ),
            hint("n4", NOW - 180_000, vec![sibling(Some(b"b"), 3, "n1")]),
        ];
        let text = inspect_text(&h, NOW);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[2], "token:    000000000000beef");
        assert_eq!(lines[3], "hints:    2");
        assert!(lines[4].starts_with("HINT FOR") && lines[4].ends_with("SIBLINGS"));
        assert!(lines[5].starts_with("n3 "), "{}", lines[5]);
        assert!(lines[5].contains(&format!("{} (5s ago)", NOW - 5_000)));
        assert!(lines[5].contains(" 57 "), "{}", lines[5]);
        assert!(lines[5].ends_with(" a, (tombstone)"), "{}", lines[5]);
        assert!(lines[6].starts_with("n4 ") && lines[6].contains("(3m ago)"));
        assert_eq!(lines.len(), 7);

        // After its own copy, when it has one.
        let mut both = held(vec![sibling(Some(b"v"), NOW, "n1")], true);
        both.hints = vec![hint("n3", NOW, vec![sibling(Some(b"v"), NOW, "n1")])];
        let text = inspect_text(&both, NOW);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[3], "siblings:  1");
        assert_eq!(lines[4], "hints:     1");
        assert!(lines[7].starts_with("context:"), "{text}");
        assert!(lines[8].starts_with("HINT FOR"), "{text}");
        assert!(lines[9].starts_with("n3 "));
        assert_eq!(lines.len(), 10);
    }

    #[test]
    fn json_lists_hints_with_owner_time_bytes_and_siblings() {
        let mut h = held(vec![sibling(Some(b"v"), 7, "n1")], true);
        let json = serde_json::to_value(InspectJson::new("k", &h)).unwrap();
        assert_eq!(json["hints"], serde_json::json!([]));
        h.hints = vec![hint("n3", 11, vec![sibling(None, 9, "n2")])];
        let json = serde_json::to_value(InspectJson::new("k", &h)).unwrap();
        let hint = &json["hints"][0];
        assert_eq!(hint["owner"], "n3");
        assert_eq!(hint["stored_ms"], 11);
        assert_eq!(hint["bytes"], 57);
        assert_eq!(hint["siblings"][0]["tombstone"], true);
        assert_eq!(hint["siblings"][0]["origin"], "n2");
    }
}
