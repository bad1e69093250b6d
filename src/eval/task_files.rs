//! Reading the files evaluation tasks come in: plain or gzip-compressed
//! (a name ending in `.gz`), JSONL records or tab-separated rows, every error
//! naming the file and line at fault.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::data::corpus::expand_data_path;
use crate::data::data_file::extension;
pub use crate::data::data_file::read_text;
use crate::error::{Error, Result};

/// A task's file or directory as `eval.tasks` names it after its prefix
/// (`$GCSE_DATA/...` allowed).
pub fn task_path(spec: &str) -> PathBuf {
    expand_data_path(spec)
}

/// How result tables title a task read from `path`: its file name without
/// `.gz` and extension (a directory's name as it is).
pub fn column_of(path: &Path) -> String {
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    if path.is_dir() {
        return name;
    }
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    match name.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem.to_string(),
        _ => name.to_string(),
    }
}

/// Whether `path` holds JSONL (by its name, `.gz` aside) rather than
/// tab-separated rows.
pub fn is_jsonl(path: &Path) -> bool {
    matches!(extension(path).as_deref(), Some("jsonl" | "json"))
}

/// One non-blank line of a file: its 1-based number and its text.
pub type Line<'a> = (usize, &'a str);

/// The non-blank lines of `text`.
pub fn lines(text: &str) -> impl Iterator<Item = Line<'_>> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty())
}

/// Line `line` of `path` as a JSON object.
pub fn record(path: &Path, (line, text): Line<'_>) -> Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Error::data(path, line, "expected a JSON object")),
        Err(e) => Err(Error::data(path, line, format!("not valid JSON: {e}"))),
    }
}

/// Field `key` of a record as a string.
pub fn text_field(path: &Path, line: usize, map: &Map<String, Value>, key: &str) -> Result<String> {
    match map.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(_) => Err(Error::data(
            path,
            line,
            format!("field \"{key}\" is not a string"),
        )),
        None => Err(Error::data(path, line, format!("no field \"{key}\""))),
    }
}

/// Field `key` of a record as a list of strings (a single string counts as
/// a list of one).
pub fn texts_field(
    path: &Path,
    line: usize,
    map: &Map<String, Value>,
    key: &str,
) -> Result<Vec<String>> {
    match map.get(key) {
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(Error::data(
                    path,
                    line,
                    format!("item {i} of \"{key}\" is not a string"),
                )),
            })
            .collect(),
        Some(_) => Err(Error::data(
            path,
            line,
            format!("field \"{key}\" is not a list of strings"),
        )),
        None => Err(Error::data(path, line, format!("no field \"{key}\""))),
    }
}

/// The first of `keys` a record has.
pub fn first_key<'a>(map: &Map<String, Value>, keys: &[&'a str]) -> Option<&'a str> {
    keys.iter().copied().find(|k| map.contains_key(*k))
}

/// A number as a pair file gives it: a JSON number, boolean or numeric string.
pub fn number(path: &Path, line: usize, key: &str, value: &Value) -> Result<f64> {
    let parsed = match value {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match parsed {
        Some(x) if x.is_finite() => Ok(x),
        _ => Err(Error::data(
            path,
            line,
            format!("\"{key}\" ({value}) is not a finite number"),
        )),
    }
}

/// `name` itself when it is `prefix` followed by a path: how the families
/// of tasks read from files resolve their names.
pub fn path_task(prefix: &str, name: &str) -> Option<String> {
    name.strip_prefix(prefix)
        .filter(|path| !path.trim().is_empty())
        .map(|_| name.to_string())
}

/// The path of a task named `prefix` + path.
pub fn path_of(prefix: &str, name: &str) -> PathBuf {
    task_path(name.strip_prefix(prefix).unwrap_or(name))
}
