//! Reading training sentences: one sentence a line, columns of a CSV/TSV
//! file (by index or by header name; CSV through the `csv` crate, so quoted
//! fields may hold commas, quotes and newlines), or string fields of JSONL
//! objects; any of them gzip-compressed (`.gz`). Paths may start with
//! `$GCSE_DATA` (the shared data root, see [`super::data_root`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::data_file::{extension, read_bytes};
use crate::error::{Error, Result};

/// How a source file is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    /// One sentence a line.
    Text,
    /// Tab-separated columns (quotes are text).
    Tsv,
    /// Comma-separated columns (RFC 4180 quoting; a quoted field may span
    /// lines).
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
    /// Layout. Default: from the extension (.tsv, .csv, .jsonl, .ndjson;
    /// `.gz` after it is read compressed), else text.
    #[serde(default)]
    pub format: Option<SourceFormat>,
    /// Columns holding sentences, for tsv/csv: 0-based indices or names in
    /// the header line (`columns = ["sentence1", "sentence2"]`). Default [0].
    #[serde(default)]
    pub columns: Vec<Column>,
    /// Fields holding sentences, for jsonl. Default ["text"].
    #[serde(default)]
    pub fields: Vec<String>,
    /// The first line is a header, for tsv/csv (implied by a column given
    /// by name). Default false.
    #[serde(default)]
    pub header: bool,
    /// What to do with a line that lacks a column or field: "error" or
    /// "skip" (counted). Default "error".
    #[serde(default)]
    pub on_bad_line: OnBadLine,
}

/// A column of a TSV/CSV file: its 0-based index, or its name in the
/// header line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Column {
    /// 0-based index.
    Index(usize),
    /// Name in the header line.
    Name(String),
}

impl std::str::FromStr for Column {
    type Err = std::convert::Infallible;

    /// A number is an index, anything else a name.
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(s.parse()
            .map_or_else(|_| Column::Name(s.to_string()), Column::Index))
    }
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
        self.format.unwrap_or_else(|| SourceFormat::of_path(path))
    }

    /// Reads the source's sentences; whitespace is trimmed, empty ones dropped.
    pub fn read(&self) -> Result<SourceSentences> {
        let path = self.resolved_path();
        let columns = if self.columns.is_empty() {
            vec![Column::Index(0)]
        } else {
            self.columns.clone()
        };
        let fields = if self.fields.is_empty() {
            vec!["text".to_string()]
        } else {
            self.fields.clone()
        };
        let layout = Layout {
            format: self.format(&path),
            columns: &columns,
            fields: &fields,
            header: self.header,
        };
        let mut out = SourceSentences::default();
        for row in read_rows(&path, &layout)? {
            match row.cells {
                Ok(sentences) => out.sentences.extend(
                    sentences
                        .into_iter()
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty()),
                ),
                Err(_) if self.on_bad_line == OnBadLine::Skip => out.skipped += 1,
                Err(message) => return Err(Error::data(&path, row.line, message)),
            }
        }
        Ok(out)
    }
}

impl SourceFormat {
    /// The layout a file's name says (`.gz` aside): `.tsv`, `.csv`,
    /// `.jsonl`/`.ndjson`, else text.
    pub fn of_path(path: &Path) -> Self {
        match extension(path).as_deref() {
            Some("tsv") => SourceFormat::Tsv,
            Some("csv") => SourceFormat::Csv,
            Some("jsonl" | "ndjson") => SourceFormat::Jsonl,
            _ => SourceFormat::Text,
        }
    }
}

/// What to take from each record of a file.
#[derive(Debug, Clone, Copy)]
pub struct Layout<'a> {
    /// The file's layout.
    pub format: SourceFormat,
    /// Columns, for tsv/csv.
    pub columns: &'a [Column],
    /// Fields, for jsonl.
    pub fields: &'a [String],
    /// Whether a tsv/csv file starts with a header line (implied by a
    /// column given by name).
    pub header: bool,
}

/// One record of a file: the 1-based line it starts on, and the cells asked
/// for (none for a blank line) or what is wrong with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Line the record starts on.
    pub line: usize,
    /// The cells, in the order asked for.
    pub cells: std::result::Result<Vec<String>, String>,
}

/// Every record of `path` (plain or `.gz`) laid out as `layout` says. A
/// file that cannot be read, a header without a named column, and a CSV
/// quote never closed are errors; a bad record is a [`Row`] with its
/// message.
pub fn read_rows(path: &Path, layout: &Layout) -> Result<Vec<Row>> {
    let bytes = read_bytes(path)?;
    match layout.format {
        SourceFormat::Text | SourceFormat::Jsonl => Ok(lines(&bytes)
            .map(|(line, text)| Row {
                line,
                cells: text.and_then(|text| match layout.format {
                    _ if text.trim().is_empty() => Ok(Vec::new()),
                    SourceFormat::Jsonl => pick_fields(text, layout.fields),
                    _ => Ok(vec![text.to_string()]),
                }),
            })
            .collect()),
        SourceFormat::Tsv => table_rows(path, &bytes, b'\t', false, layout),
        SourceFormat::Csv => {
            if let Some(line) = unclosed_quote(&bytes) {
                return Err(Error::data(
                    path,
                    line,
                    "a quoted field starts here and is never closed",
                ));
            }
            table_rows(path, &bytes, b',', true, layout)
        }
    }
}

/// The lines of `bytes` (1-based; a final newline ends the last line, it
/// does not start a blank one; a trailing `\r` dropped), each as text or
/// "not valid UTF-8".
pub fn lines(bytes: &[u8]) -> impl Iterator<Item = (usize, std::result::Result<&str, String>)> {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(move |_| !bytes.is_empty())
        .map(|(i, raw)| {
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            (
                i + 1,
                std::str::from_utf8(raw).map_err(|_| "not valid UTF-8".to_string()),
            )
        })
}

/// The records of a TSV or CSV file, the columns picked from each.
fn table_rows(
    path: &Path,
    bytes: &[u8],
    delimiter: u8,
    quoting: bool,
    layout: &Layout,
) -> Result<Vec<Row>> {
    let named = layout.columns.iter().any(|c| matches!(c, Column::Name(_)));
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .quoting(quoting)
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut records = reader.byte_records();
    let header = if layout.header || named {
        match records.next() {
            Some(Ok(record)) => cells_of(&record).map_err(|m| Error::data(path, 1, m))?,
            Some(Err(e)) => return Err(Error::data(path, 1, e.to_string())),
            None => return Ok(Vec::new()),
        }
    } else {
        Vec::new()
    };
    let indices = layout
        .columns
        .iter()
        .map(|column| match column {
            Column::Index(i) => Ok(*i),
            Column::Name(name) => header.iter().position(|n| n.trim() == name).ok_or_else(|| {
                Error::data(
                    path,
                    1,
                    format!(
                        "no column named `{name}` in the header (it has: {})",
                        header.join(", ")
                    ),
                )
            }),
        })
        .collect::<Result<Vec<usize>>>()?;
    let mut rows = Vec::new();
    for record in records {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                rows.push(Row {
                    line,
                    cells: Err(e.to_string()),
                });
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line() as usize);
        let cells = cells_of(&record).and_then(|cells| {
            if cells.len() == 1 && cells[0].trim().is_empty() {
                return Ok(Vec::new());
            }
            indices
                .iter()
                .map(|&c| {
                    cells.get(c).cloned().ok_or_else(|| {
                        format!("no column {c} (the line has {} columns)", cells.len())
                    })
                })
                .collect()
        });
        rows.push(Row { line, cells });
    }
    Ok(rows)
}

fn cells_of(record: &csv::ByteRecord) -> std::result::Result<Vec<String>, String> {
    record
        .iter()
        .map(|cell| {
            std::str::from_utf8(cell)
                .map(str::to_string)
                .map_err(|_| "not valid UTF-8".to_string())
        })
        .collect()
}

/// The line of a CSV quote that opens a field and is never closed, if any
/// (the `csv` crate would read the rest of the file into that field).
fn unclosed_quote(bytes: &[u8]) -> Option<usize> {
    let (mut line, mut opened_on) = (1, None);
    let mut at_field_start = true;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match opened_on {
            Some(_) if b == b'"' && bytes.get(i + 1) == Some(&b'"') => i += 1,
            Some(_) if b == b'"' => opened_on = None,
            None if b == b'"' && at_field_start => opened_on = Some(line),
            _ => {}
        }
        if b == b'\n' {
            line += 1;
        }
        at_field_start = opened_on.is_none() && matches!(b, b',' | b'\n' | b'\r');
        i += 1;
    }
    opened_on
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
    fn csv_columns_by_name_quoted_newlines_and_gzip() {
        let csv = write(
            "h.csv",
            b"id,sentence1,sentence2\n1,\"first, with a comma\",\"spans\ntwo lines\"\n2,b,\"say \"\"hi\"\"\"\n",
        );
        let r = spec(&csv, "columns = [\"sentence2\", 1]").read().unwrap();
        assert_eq!(
            r.sentences,
            ["spans\ntwo lines", "first, with a comma", "say \"hi\"", "b"]
        );
        let err = spec(&csv, "columns = [\"s3\"]")
            .read()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("h.csv:1")
                && err.contains("no column named `s3`")
                && err.contains("sentence1"),
            "{err}"
        );
        let rows = read_rows(
            &csv,
            &Layout {
                format: SourceFormat::Csv,
                columns: &[Column::Index(0)],
                fields: &[],
                header: true,
            },
        )
        .unwrap();
        assert_eq!(
            rows.iter().map(|r| r.line).collect::<Vec<_>>(),
            [2, 4],
            "a record's line is where it starts"
        );
        let open = write("i.csv", b"a,b\nc,\"never closed\nd,e\n");
        let err = spec(&open, "").read().unwrap_err().to_string();
        assert!(
            err.contains("i.csv:2") && err.contains("never closed"),
            "{err}"
        );

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, b"x\ty\n1\tgzipped sentence\n").unwrap();
        let packed = write("j.tsv.gz", &gz.finish().unwrap());
        assert_eq!(
            spec(&packed, "columns = [\"y\"]").read().unwrap().sentences,
            ["gzipped sentence"]
        );
        assert_eq!(SourceFormat::of_path(&packed), SourceFormat::Tsv);
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
