//! Reading training sentences: one sentence a line, columns of a CSV/TSV
//! file, or string fields of JSONL objects. Paths may start with `$GCSE_DATA`
//! (the shared data root, see [`super::data_root`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How a source file is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    /// One sentence a line.
    Text,
    /// Tab-separated columns.
    Tsv,
    /// Comma-separated columns (RFC 4180 quoting).
    Csv,
    /// One JSON object a line.
    Jsonl,
}

/// One file of sentences (`[[data.domain]]` / `[[data.general]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// The file. Required.
    pub path: String,
    /// Layout. Default: from the extension (.tsv, .csv, .jsonl), else text.
    #[serde(default)]
    pub format: Option<SourceFormat>,
    /// Columns holding sentences (0-based), for tsv/csv. Default [0].
    #[serde(default)]
    pub columns: Vec<usize>,
    /// Fields holding sentences, for jsonl. Default ["text"].
    #[serde(default)]
    pub fields: Vec<String>,
    /// Skip the first line (a header), for tsv/csv. Default false.
    #[serde(default)]
    pub header: bool,
    /// What to do with a line that lacks a column or field: "error" or
    /// "skip" (counted). Default "error".
    #[serde(default)]
    pub on_bad_line: OnBadLine,
}

/// `path` with a leading `$GCSE_DATA` replaced by the shared data root.
pub fn expand_data_path(path: &str) -> PathBuf {
    match path.strip_prefix("$GCSE_DATA") {
        Some(rest) => super::data_root().join(rest.trim_start_matches(['/', '\\'])),
        None => PathBuf::from(path),
    }
}

/// Policy for malformed lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OnBadLine {
    /// Stop with an error naming the line.
    #[default]
    Error,
    /// Skip the line and count it.
    Skip,
}

/// Sentences read from one source.
#[derive(Debug, Clone, Default)]
pub struct SourceSentences {
    /// Non-empty sentences in file order (possibly repeated).
    pub sentences: Vec<String>,
    /// Lines skipped as malformed (under `on_bad_line = "skip"`).
    pub skipped: usize,
}

impl SourceSpec {
    /// The file path with `$GCSE_DATA` expanded.
    pub fn resolved_path(&self) -> PathBuf {
        expand_data_path(&self.path)
    }

    fn format(&self, path: &Path) -> SourceFormat {
        self.format
            .unwrap_or_else(|| match path.extension().and_then(|e| e.to_str()) {
                Some("tsv") => SourceFormat::Tsv,
                Some("csv") => SourceFormat::Csv,
                Some("jsonl" | "ndjson") => SourceFormat::Jsonl,
                _ => SourceFormat::Text,
            })
    }

    /// Reads the source's sentences; whitespace is trimmed, empty ones dropped.
    pub fn read(&self) -> Result<SourceSentences> {
        let path = self.resolved_path();
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let format = self.format(&path);
        let columns = if self.columns.is_empty() {
            vec![0]
        } else {
            self.columns.clone()
        };
        let fields = if self.fields.is_empty() {
            vec!["text".to_string()]
        } else {
            self.fields.clone()
        };
        let mut out = SourceSentences::default();
        let skip_header = self.header && matches!(format, SourceFormat::Tsv | SourceFormat::Csv);
        for (i, raw) in bytes
            .split(|&b| b == b'\n')
            .enumerate()
            .skip(skip_header as usize)
        {
            let line_no = i + 1;
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let parsed = std::str::from_utf8(raw)
                .map_err(|_| "not valid UTF-8".to_string())
                .and_then(|line| {
                    if line.trim().is_empty() {
                        return Ok(Vec::new());
                    }
                    match format {
                        SourceFormat::Text => Ok(vec![line.to_string()]),
                        SourceFormat::Tsv => {
                            pick_columns(line.split('\t').map(str::to_string).collect(), &columns)
                        }
                        SourceFormat::Csv => pick_columns(split_csv(line)?, &columns),
                        SourceFormat::Jsonl => pick_fields(line, &fields),
                    }
                });
            match parsed {
                Ok(sentences) => out.sentences.extend(
                    sentences
                        .into_iter()
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty()),
                ),
                Err(_) if self.on_bad_line == OnBadLine::Skip => out.skipped += 1,
                Err(message) => return Err(Error::data(&path, line_no, message)),
            }
        }
        Ok(out)
    }
}

fn pick_columns(cells: Vec<String>, columns: &[usize]) -> std::result::Result<Vec<String>, String> {
    columns
        .iter()
        .map(|&c| {
            cells
                .get(c)
                .cloned()
                .ok_or_else(|| format!("no column {c} (the line has {} columns)", cells.len()))
        })
        .collect()
}

fn pick_fields(line: &str, fields: &[String]) -> std::result::Result<Vec<String>, String> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    fields
        .iter()
        .map(|f| match value.get(f) {
            Some(serde_json::Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(format!("field `{f}` is not a string but {other}")),
            None => Err(format!("no field `{f}`")),
        })
        .collect()
}

/// Splits one CSV line (RFC 4180 quoting: `"a, b"`, `""` for a quote).
fn split_csv(line: &str) -> std::result::Result<Vec<String>, String> {
    let mut cells = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        let cell = cells.last_mut().expect("one cell at least");
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cell.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if cell.is_empty() => quoted = true,
            (',', false) => cells.push(String::new()),
            (c, _) => cell.push(c),
        }
    }
    if quoted {
        return Err("unterminated quoted field".into());
    }
    Ok(cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(path: &Path, extra: &str) -> SourceSpec {
        toml::from_str(&format!("path = {:?}\n{extra}", path.to_str().unwrap())).unwrap()
    }

    fn write(name: &str, text: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gcse-corpus-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn reads_every_layout() {
        let text = write("a.txt", b"first one\n\n  second  \r\nthird\n");
        assert_eq!(
            spec(&text, "").read().unwrap().sentences,
            ["first one", "second", "third"]
        );
        let tsv = write("b.tsv", b"id\ts1\ts2\n1\ta b\tc d\n2\te f\tg h\n");
        let r = spec(&tsv, "columns = [1, 2]\nheader = true")
            .read()
            .unwrap();
        assert_eq!(r.sentences, ["a b", "c d", "e f", "g h"]);
        let csv = write("c.csv", b"x,\"hello, world\",\"say \"\"hi\"\"\"\n");
        assert_eq!(
            spec(&csv, "columns = [1, 2]").read().unwrap().sentences,
            ["hello, world", "say \"hi\""]
        );
        let jsonl = write(
            "d.jsonl",
            b"{\"text\": \"one\", \"n\": 1}\n{\"text\": \"two\"}\n",
        );
        assert_eq!(spec(&jsonl, "").read().unwrap().sentences, ["one", "two"]);
    }

    #[test]
    fn bad_lines_are_errors_naming_the_line_or_counted_skips() {
        let tsv = write("e.tsv", b"a\tb\nonly\nc\td\n");
        let err = spec(&tsv, "columns = [1]").read().unwrap_err().to_string();
        assert!(
            err.contains("e.tsv:2") && err.contains("no column 1"),
            "{err}"
        );
        let r = spec(&tsv, "columns = [1]\non_bad_line = \"skip\"")
            .read()
            .unwrap();
        assert_eq!(
            (r.sentences, r.skipped),
            (vec!["b".to_string(), "d".to_string()], 1)
        );
        let bin = write("f.txt", b"ok\n\xff\xfe\n");
        let err = spec(&bin, "").read().unwrap_err().to_string();
        assert!(err.contains("f.txt:2") && err.contains("UTF-8"), "{err}");
        let json = write("g.jsonl", b"{\"text\": 3}\n");
        let err = spec(&json, "").read().unwrap_err().to_string();
        assert!(
            err.contains("g.jsonl:1") && err.contains("not a string"),
            "{err}"
        );
        let missing = spec(Path::new("/no/such/file.txt"), "")
            .read()
            .unwrap_err()
            .to_string();
        assert!(missing.contains("/no/such/file.txt"), "{missing}");
    }
}
