//! Reading sentences to embed: a text file (one sentence a line) or JSONL
//! (a string field of each object, or a bare JSON string a line).

use std::path::Path;

use crate::error::{Error, Result};

/// How an input file is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// One sentence a line.
    Text,
    /// One JSON object (or string) a line.
    Jsonl,
}

impl InputFormat {
    /// JSONL for `.jsonl`/`.json`/`.ndjson` files, text otherwise.
    pub fn from_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some("jsonl" | "json" | "ndjson") => InputFormat::Jsonl,
            _ => InputFormat::Text,
        }
    }
}

/// Sentences read from a file, with where each came from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InputSentences {
    /// The sentences.
    pub texts: Vec<String>,
    /// 1-based line number of each sentence.
    pub lines: Vec<usize>,
    /// Blank lines passed over.
    pub skipped_blank: usize,
}

/// Reads `path`. Blank lines are skipped (and counted); a line that is not
/// UTF-8, not JSON, or lacks `field` is an error naming the line.
pub fn read_input(path: &Path, format: InputFormat, field: &str) -> Result<InputSentences> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut out = InputSentences::default();
    let mut pieces: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    if pieces.last().is_some_and(|p| p.is_empty()) {
        // The final newline ends the last line; it does not start a blank one.
        pieces.pop();
    }
    for (i, raw) in pieces.into_iter().enumerate() {
        let line_no = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line =
            std::str::from_utf8(raw).map_err(|_| Error::data(path, line_no, "not valid UTF-8"))?;
        if line.trim().is_empty() {
            out.skipped_blank += 1;
            continue;
        }
        let text = match format {
            InputFormat::Text => line.to_string(),
            InputFormat::Jsonl => {
                json_text(line, field).map_err(|m| Error::data(path, line_no, m))?
            }
        };
        out.texts.push(text);
        out.lines.push(line_no);
    }
    if out.texts.is_empty() {
        return Err(Error::data(path, 1, "no sentences in this file"));
    }
    Ok(out)
}

fn json_text(line: &str, field: &str) -> std::result::Result<String, String> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    match value {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Object(map) => match map.get(field) {
            Some(serde_json::Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(format!("field `{field}` is not a string but {other}")),
            None => Err(format!("no field `{field}` (use --field to pick another)")),
        },
        other => Err(format!("expected an object or a string, found {other}")),
    }
}
