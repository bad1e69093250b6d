//! Writing embeddings: `.npy` (float32, `[rows, dim]`) or JSONL (one object a
//! sentence with its line, text and vector). Files are written atomically.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use super::embedder::Embeddings;
use super::input::InputSentences;
use crate::atomic::write_atomic;
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

/// Writes `embeddings` as a `.npy` file.
pub fn write_npy(path: &Path, embeddings: &Embeddings) -> Result<()> {
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
        embeddings.rows(),
        embeddings.dim
    );
    // Magic (6) + version (2) + length (2) + header + '\n' is a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    write_atomic(path, |w| {
        w.write_all(b"\x93NUMPY\x01\x00")?;
        w.write_all(&(header.len() as u16).to_le_bytes())?;
        w.write_all(header.as_bytes())?;
        for v in &embeddings.data {
            w.write_all(&v.to_le_bytes())?;
        }
        Ok(())
    })
}

#[derive(Serialize)]
struct Row<'a> {
    line: usize,
    text: &'a str,
    embedding: &'a [f32],
}

/// Writes one JSON object per sentence: `{"line", "text", "embedding"}`.
pub fn write_jsonl(path: &Path, embeddings: &Embeddings, input: &InputSentences) -> Result<()> {
    write_atomic(path, |w| {
        for (i, (text, &line)) in input.texts.iter().zip(&input.lines).enumerate() {
            let row = Row {
                line,
                text,
                embedding: embeddings.row(i),
            };
            serde_json::to_writer(&mut *w, &row)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    })
}
