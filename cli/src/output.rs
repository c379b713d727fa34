//! How results reach the terminal: text or JSON, tables, values that may not be UTF-8, and
//! writes to stdout that never panic on a closed pipe.

use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Output format of the commands that print results (`-o`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// For people.
    Text,
    /// One JSON document per command, for scripts.
    Json,
}

/// Writes `text` to stdout. A closed pipe (`ringctl members | head -1`) is not an error.
pub fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("cannot write to stdout"))
        }
        _ => Ok(()),
    }
}

/// Writes `value` to stdout as one line of JSON.
pub fn emit_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_string(value)?;
    text.push('\n');
    emit(&text)
}

/// A note on stderr (never fails: there is nowhere left to report to).
pub fn note(text: &str) {
    let _ = writeln!(io::stderr().lock(), "{text}");
}

/// The final error line: `error: ...` on stderr, always one line.
pub fn error_line(message: &str) {
    note(&format!("error: {}", one_line(message)));
}

/// An error as one JSON object on stderr (`-o json`): the message, a stable `kind` and the
/// exit status.
pub fn error_json(message: &str, kind: &str, status: u8) {
    let doc = serde_json::json!({ "error": one_line(message), "kind": kind, "status": status });
    note(&doc.to_string());
}

/// An error and its causes as `outer: inner: ...`, skipping a cause whose text the message
/// before it already ends with (errors that print their source as part of their own text).
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// Folds line breaks so a multi-line message still prints as one line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A stored value on one line of text: lossy UTF-8, with control characters (line breaks,
/// escapes) shown escaped so one value never spans or repaints several lines.
pub fn one_line_value(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for c in String::from_utf8_lossy(bytes).chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A ring token as 16 hex digits, so tokens line up and sort as text.
pub fn token_hex(token: u64) -> String {
    format!("{token:016x}")
}

/// How long before `now_ms` the time `then_ms` was (both Unix-epoch milliseconds), in its
/// largest whole unit: `3s ago`, `5m ago`, `2h ago`, `4d ago`. A time after `now_ms` (the
/// node's clock runs ahead of this machine's) reads `0s ago`.
pub fn age(now_ms: u64, then_ms: u64) -> String {
    let secs = now_ms.saturating_sub(then_ms) / 1000;
    match secs {
        s if s < 120 => format!("{s}s ago"),
        s if s < 120 * 60 => format!("{}m ago", s / 60),
        s if s < 48 * 3600 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86_400),
    }
}

/// This machine's wall clock in Unix-epoch milliseconds (0 if it is set before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `label: value` lines with the values aligned, ending with a newline.
pub fn fields(rows: &[(&str, String)]) -> String {
    let width = rows
        .iter()
        .map(|(label, _)| label.chars().count())
        .max()
        .unwrap_or(0);
    rows.iter()
        .map(|(label, value)| {
            let pad = width - label.chars().count();
            let line = format!("{label}:{}  {value}", " ".repeat(pad));
            format!("{}\n", line.trim_end())
        })
        .collect()
}

/// A stored value as JSON: a string when it is UTF-8, else hex with `"hex": true`.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct JsonBytes {
    /// The value, as text or hex digits.
    pub value: String,
    /// Whether `value` holds hex digits.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub hex: bool,
}

impl JsonBytes {
    /// Text when possible, hex otherwise.
    pub fn new(bytes: &[u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(s) => JsonBytes {
                value: s.to_owned(),
                hex: false,
            },
            Err(_) => JsonBytes {
                value: bytes.iter().map(|b| format!("{b:02x}")).collect(),
                hex: true,
            },
        }
    }
}

/// A plain text table: a header row, then rows, columns padded to their widest cell.
#[derive(Debug)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are blank, extra cells are dropped.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, one line per row, ending with a newline.
    pub fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = row.get(i).map_or("", String::as_str);
                line.push_str(cell);
                if i + 1 < columns {
                    let pad = width.saturating_sub(cell.chars().count()) + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_values_stay_text_and_others_become_flagged_hex() {
        assert_eq!(
            serde_json::to_string(&JsonBytes::new(b"caf\xc3\xa9")).unwrap(),
            r#"{"value":"café"}"#
        );
        assert_eq!(
            serde_json::to_string(&JsonBytes::new(&[0x00, 0xff, 0x10])).unwrap(),
            r#"{"value":"00ff10","hex":true}"#
        );
    }

    #[test]
    fn tables_pad_columns_to_the_widest_cell() {
        let mut t = Table::new(&["NAME", "ADDRESS"]);
        t.row(vec!["n1".into(), "127.0.0.1:7000".into()]);
        t.row(vec!["node-long".into(), "h:1".into()]);
        t.row(vec!["short".into()]);
        assert_eq!(
            t.render(),
            "NAME       ADDRESS\n\
             n1         127.0.0.1:7000\n\
             node-long  h:1\n\
             short\n"
        );
    }

    #[test]
    fn error_chains_join_causes_without_repeating_them() {
        #[derive(Debug)]
        struct Wraps(std::io::Error);
        impl std::fmt::Display for Wraps {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "socket error: {}", self.0)
            }
        }
        impl std::error::Error for Wraps {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let io = std::io::Error::other("address in use");
        let e = anyhow::Error::new(Wraps(io)).context("cannot start node n1");
        assert_eq!(
            error_chain(&e),
            "cannot start node n1: socket error: address in use"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_chain(&plain), "outer: inner");
    }

    #[test]
    fn error_messages_fold_to_one_line() {
        assert_eq!(one_line("a\n  b\n\nc"), "a b c");
        assert_eq!(one_line("single"), "single");
    }

    #[test]
    fn values_print_on_one_line_with_controls_escaped() {
        assert_eq!(one_line_value(b"plain value"), "plain value");
        assert_eq!(one_line_value(b"two\nlines\t!"), "two\\nlines\\t!");
        assert_eq!(one_line_value(b"\x1b[2J"), "\\u{1b}[2J");
        assert_eq!(one_line_value(b"caf\xc3\xa9 \xff"), "caf\u{e9} \u{fffd}");
    }

    #[test]
    fn tokens_are_sixteen_hex_digits() {
        assert_eq!(token_hex(0), "0000000000000000");
        assert_eq!(token_hex(0xab), "00000000000000ab");
        assert_eq!(token_hex(u64::MAX), "ffffffffffffffff");
    }

    #[test]
    fn ages_use_the_largest_whole_unit() {
        let now = 10_000_000_000;
        assert_eq!(age(now, now), "0s ago");
        assert_eq!(age(now, now - 3_400), "3s ago");
        assert_eq!(age(now, now - 119_999), "119s ago");
        assert_eq!(age(now, now - 120_000), "2m ago");
        assert_eq!(age(now, now - 90 * 60_000), "90m ago");
        assert_eq!(age(now, now - 3 * 3_600_000), "3h ago");
        assert_eq!(age(now, now - 5 * 86_400_000), "5d ago");
        // The node's clock ahead of ours: no negative ages.
        assert_eq!(age(now, now + 5_000), "0s ago");
    }

    #[test]
    fn fields_align_values_after_their_labels() {
        let text = fields(&[("node", "n1".into()), ("keys repaired", "42".into())]);
        assert_eq!(text, "node:           n1\nkeys repaired:  42\n");
        assert_eq!(fields(&[]), "");
        assert_eq!(fields(&[("empty", String::new())]), "empty:\n");
    }
}
