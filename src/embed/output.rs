//! Writing embeddings: `.npy` (float32, `[rows, dim]`, see [`super::npy`])
//! or JSONL (one object a sentence with its line, text and vector). Files
//! are written atomically.

use std::path::Path;

use serde::Serialize;

use super::embedder::Embeddings;
use super::input::InputSentences;
use crate::error::{Error, Result};

/// The layout of an output file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// NumPy `.npy`, little-endian float32.
    Npy,
    /// One JSON object a line.
    Jsonl,
}

impl OutputFormat {
    /// The format named by the file extension.
    pub fn from_path(path: &Path) -> Result<Self> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("npy") => Ok(OutputFormat::Npy),
            Some("jsonl" | "json" | "ndjson") => Ok(OutputFormat::Jsonl),
            _ => Err(Error::Usage(format!(
                "{}: output format unknown; name the file .npy or .jsonl",
                path.display()
            ))),
        }
    }
}

#[derive(Serialize)]
struct Row<'a> {
    line: usize,
    text: &'a str,
    embedding: &'a [f32],
}

/// Writes one JSON object per sentence: `{"line", "text", "embedding"}`.
pub fn write_jsonl(path: &Path, embeddings: &Embeddings, input: &InputSentences) -> Result<()> {
    let rows: Vec<Row> = input
        .texts
        .iter()
        .zip(&input.lines)
        .enumerate()
        .map(|(i, (text, &line))| Row {
            line,
            text,
            embedding: embeddings.row(i),
        })
        .collect();
    crate::json_file::write_jsonl(path, &rows)
}
