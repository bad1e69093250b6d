//! Stage-2 data: synthetic candidates in, (anchor, positive, hard negative)
//! triplets out, filtered by the frozen evaluation model (paper Eq. 10-11,
//! docs/method.md "Filtering").

pub mod candidates;
pub mod filter;
pub mod report;
pub mod rule;
pub mod triplet;

use serde::{Deserialize, Serialize};

/// Whether a source sentence is in-domain (STS-B / SICK-like) or general
/// (NLI-like) data; the ablations without either drop one kind.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// In-domain data.
    Domain,
    /// General data.
    #[default]
    General,
}

/// Reads the JSONL records of `path` with `parse`: ids (`id_of`) must be
/// unique across the files read into `seen` (id → first file); a bad line is
/// an error naming it, or under `OnBadLine::Skip` a count. Returns the
/// records and the lines skipped.
pub(crate) fn read_records<T>(
    path: &std::path::Path,
    on_bad_line: crate::data::corpus::OnBadLine,
    seen: &mut std::collections::HashMap<String, std::path::PathBuf>,
    parse: impl Fn(&str) -> std::result::Result<T, String>,
    id_of: impl Fn(&T) -> &str,
) -> crate::Result<(Vec<T>, usize)> {
    let bytes = crate::data::data_file::read_bytes(path)?;
    let (mut records, mut skipped) = (Vec::new(), 0);
    for (line_no, line) in utf8_lines(&bytes) {
        let parsed = line
            .and_then(&parse)
            .and_then(|r| match seen.get(id_of(&r)) {
                Some(first) => Err(format!(
                    "duplicate id \"{}\" (first seen in {})",
                    id_of(&r),
                    first.display()
                )),
                None => Ok(r),
            });
        match parsed {
            Ok(r) => {
                seen.insert(id_of(&r).to_string(), path.to_path_buf());
                records.push(r);
            }
            Err(_) if on_bad_line == crate::data::corpus::OnBadLine::Skip => skipped += 1,
            Err(message) => return Err(crate::Error::data(path, line_no, message)),
        }
    }
    Ok((records, skipped))
}

/// Reads `path` as lines of UTF-8: `(line number, text)` for every line that
/// is not blank; a line that is not UTF-8 is an `Err` naming its number.
fn utf8_lines(bytes: &[u8]) -> impl Iterator<Item = (usize, std::result::Result<&str, String>)> {
    bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, raw)| {
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            (
                i + 1,
                std::str::from_utf8(raw).map_err(|_| "not valid UTF-8".to_string()),
            )
        })
        .filter(|(_, line)| line.as_ref().map_or(true, |l| !l.trim().is_empty()))
}

/// A line parsed as one JSON object.
pub(crate) fn json_object(line: &str) -> std::result::Result<serde_json::Value, String> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    if !value.is_object() {
        return Err(format!("expected a JSON object, not {value}"));
    }
    Ok(value)
}

/// The required `id` of a record: a non-empty string or a number.
pub(crate) fn id_field(value: &serde_json::Value) -> std::result::Result<String, String> {
    match value.get("id") {
        Some(serde_json::Value::Number(n)) => Ok(n.to_string()),
        _ => text_field(value, "id"),
    }
}

/// A required, non-empty string field of a JSON object.
pub(crate) fn text_field(
    value: &serde_json::Value,
    key: &str,
) -> std::result::Result<String, String> {
    match value.get(key) {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        Some(serde_json::Value::String(_)) => Err(format!("field `{key}` is empty")),
        Some(other) => Err(format!("field `{key}` is not a string but {other}")),
        None => Err(format!("no field `{key}`")),
    }
}

/// The optional `origin` field of a JSON object, else `default`.
pub(crate) fn origin_field(
    value: &serde_json::Value,
    default: Origin,
) -> std::result::Result<Origin, String> {
    match value.get("origin") {
        None | Some(serde_json::Value::Null) => Ok(default),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|_| format!("field `origin` must be \"domain\" or \"general\", not {v}")),
    }
}
