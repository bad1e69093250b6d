//! Reading sentences to embed: a text file (one sentence a line), JSONL (a
//! string field of each object, or a bare JSON string a line), or a column
//! of a TSV/CSV file; any of them gzip-compressed (`.gz`).

use std::path::Path;

use crate::data::corpus::{lines, read_rows, Column, Layout, SourceFormat};
use crate::data::data_file::read_bytes;
use crate::error::{Error, Result};

/// How an input file is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// One sentence a line.
    Text,
    /// One JSON object (or string) a line.
    Jsonl,
    /// Tab-separated columns.
    Tsv,
    /// Comma-separated columns (RFC 4180 quoting).
    Csv,
}

impl InputFormat {
    /// By the name, `.gz` aside: JSONL for `.jsonl`/`.json`/`.ndjson`, TSV,
    /// CSV, else text.
    pub fn from_path(path: &Path) -> Self {
        match crate::data::data_file::extension(path).as_deref() {
            Some("json") => InputFormat::Jsonl,
            _ => match SourceFormat::of_path(path) {
                SourceFormat::Text => InputFormat::Text,
                SourceFormat::Jsonl => InputFormat::Jsonl,
                SourceFormat::Tsv => InputFormat::Tsv,
                SourceFormat::Csv => InputFormat::Csv,
            },
        }
    }
}

/// Where the sentence is in each record.
#[derive(Debug, Clone, PartialEq)]
pub struct InputLayout {
    /// The file's layout.
    pub format: InputFormat,
    /// The JSONL field.
    pub field: String,
    /// The TSV/CSV column.
    pub column: Column,
    /// Whether a TSV/CSV file starts with a header line.
    pub header: bool,
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
/// UTF-8, not JSON, or lacks the field or column is an error naming the
/// line.
pub fn read_input(path: &Path, layout: &InputLayout) -> Result<InputSentences> {
    let mut out = InputSentences::default();
    let table = match layout.format {
        InputFormat::Tsv => Some(SourceFormat::Tsv),
        InputFormat::Csv => Some(SourceFormat::Csv),
        InputFormat::Text | InputFormat::Jsonl => None,
    };
    if let Some(format) = table {
        let columns = [layout.column.clone()];
        let rows = read_rows(
            path,
            &Layout {
                format,
                columns: &columns,
                fields: &[],
                header: layout.header,
            },
        )?;
        for row in rows {
            let mut cells = row.cells.map_err(|m| Error::data(path, row.line, m))?;
            match cells.pop() {
                Some(text) => {
                    out.texts.push(text);
                    out.lines.push(row.line);
                }
                None => out.skipped_blank += 1,
            }
        }
    } else {
        let bytes = read_bytes(path)?;
        for (line_no, line) in lines(&bytes) {
            let line = line.map_err(|m| Error::data(path, line_no, m))?;
            if line.trim().is_empty() {
                out.skipped_blank += 1;
                continue;
            }
            let text = match layout.format {
                InputFormat::Jsonl => {
                    json_text(line, &layout.field).map_err(|m| Error::data(path, line_no, m))?
                }
                _ => line.to_string(),
            };
            out.texts.push(text);
            out.lines.push(line_no);
        }
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
