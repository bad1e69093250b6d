//! A user's own scored pairs as a task, `pairs:PATH`: the cosine similarity
//! of each pair against its score, Spearman x 100 (primary) and Pearson x 100,
//! as sentence-transformers' `EmbeddingSimilarityEvaluator` and the STS tasks
//! compute them, so a domain dev set can drive `eval.select_by`.
//!
//! Pair files (shared with `pairclass:`), plain or `.gz`:
//! - JSONL, one pair a line: the sentences under `a`/`b` (or `sentence1`/
//!   `sentence2`, `text1`/`text2`, `query`/`document`), the value under the
//!   family's keys (`score`, `label`, ...); or MTEB's layout, one line with
//!   lists under `sentence1`, `sentence2` and `labels`/`scores`.
//! - Tab-separated: `a`, `b`, value in the first three columns, or columns
//!   by name when the first line is a header (the sentence and value names
//!   above, SICK's `sentence_A`/`sentence_B`).

use std::path::Path;

use serde_json::Value;

use super::evaluator::TaskFamily;
use super::sts::{PairCorrelation, StsPairs, METRICS};
use super::task_files::{
    column_of, first_key, is_jsonl, lines, number, path_of, path_task, read_text, record,
    text_field, texts_field,
};
use crate::error::{Error, Result};

const PREFIX: &str = "pairs:";
const NAME: &str = "Pair scores";

/// The registry's entry: `pairs:PATH`.
pub const FAMILY: TaskFamily = TaskFamily {
    family: NAME,
    names: &["pairs:PATH"],
    resolve: |name| path_task(PREFIX, name),
    metrics: METRICS,
    load: |name, _| {
        let path = path_of(PREFIX, name);
        let (pairs, _) = read_pairs(&path, &["score", "scores", "label", "labels", "gold"])?;
        pairs.check_correlatable(&path)?;
        Ok(Box::new(PairCorrelation {
            name: name.to_string(),
            column: column_of(&path),
            family: NAME,
            pairs,
        }))
    },
};

const FIRST: &[&str] = &[
    "a",
    "sentence1",
    "sentence_a",
    "sentence_A",
    "text1",
    "query",
];
const SECOND: &[&str] = &[
    "b",
    "sentence2",
    "sentence_b",
    "sentence_B",
    "text2",
    "document",
];

/// The pairs of a pair file, each with its value (the first of `values`
/// a line has; none read, NaN, when `values` is empty), and the line each
/// pair is on; an error names the file and line, and a file with no pair.
pub fn read_pairs(path: &Path, values: &[&str]) -> Result<(StsPairs, Vec<usize>)> {
    let text = read_text(path)?;
    let mut pairs = StsPairs::default();
    let mut at = Vec::new();
    if is_jsonl(path) {
        for line in lines(&text) {
            let map = record(path, line)?;
            let n = line.0;
            let (Some(a), Some(b)) = (first_key(&map, FIRST), first_key(&map, SECOND)) else {
                return Err(Error::data(
                    path,
                    n,
                    format!("no sentence pair (fields {} and {})", FIRST[0], SECOND[0]),
                ));
            };
            if values.is_empty() {
                pairs.a.push(text_field(path, n, &map, a)?);
                pairs.b.push(text_field(path, n, &map, b)?);
                pairs.gold.push(f64::NAN);
                at.push(n);
                continue;
            }
            let Some(key) = first_key(&map, values) else {
                return Err(Error::data(
                    path,
                    n,
                    format!("no value (one of {})", values.join(", ")),
                ));
            };
            if let Value::Array(items) = &map[key] {
                let (first, second) = (
                    texts_field(path, n, &map, a)?,
                    texts_field(path, n, &map, b)?,
                );
                if first.len() != items.len() || second.len() != items.len() {
                    return Err(Error::data(
                        path,
                        n,
                        format!(
                            "lists of unequal length: {a} {}, {b} {}, {key} {}",
                            first.len(),
                            second.len(),
                            items.len()
                        ),
                    ));
                }
                for ((x, y), v) in first.into_iter().zip(second).zip(items) {
                    pairs.a.push(x);
                    pairs.b.push(y);
                    pairs.gold.push(number(path, n, key, v)?);
                    at.push(n);
                }
            } else {
                pairs.a.push(text_field(path, n, &map, a)?);
                pairs.b.push(text_field(path, n, &map, b)?);
                pairs.gold.push(number(path, n, key, &map[key])?);
                at.push(n);
            }
        }
    } else {
        let mut rows = lines(&text).peekable();
        let mut columns = [0, 1, 2];
        if let Some(&(n, first)) = rows.peek() {
            let fields: Vec<&str> = first.split('\t').collect();
            let named = |names: &[&str]| fields.iter().position(|f| names.contains(&f.trim()));
            if let (Some(a), Some(b), Some(v)) = (named(FIRST), named(SECOND), named(values)) {
                columns = [a, b, v];
                rows.next();
            } else if fields.len() >= 3 && fields[2].trim().parse::<f64>().is_err() {
                return Err(Error::data(
                    path,
                    n,
                    format!(
                        "a header must name the sentence columns ({}, {}) and the value ({})",
                        FIRST[0],
                        SECOND[0],
                        values.join(", ")
                    ),
                ));
            }
        }
        let read = if values.is_empty() { 2 } else { 3 };
        let needed = columns[..read].iter().max().copied().unwrap_or(2) + 1;
        for (n, line) in rows {
            let fields: Vec<&str> = line.split('\t').collect();
            if fields.len() < needed {
                return Err(Error::data(
                    path,
                    n,
                    format!(
                        "expected at least {needed} tab-separated columns, found {}",
                        fields.len()
                    ),
                ));
            }
            pairs.a.push(fields[columns[0]].trim().to_string());
            pairs.b.push(fields[columns[1]].trim().to_string());
            let value = Value::String(fields[columns[2]].to_string());
            pairs.gold.push(match values.is_empty() {
                true => f64::NAN,
                false => number(path, n, "value", &value)?,
            });
            at.push(n);
        }
    }
    if pairs.gold.is_empty() {
        return Err(Error::data(path, 1, "no sentence pair in the file"));
    }
    Ok((pairs, at))
}
