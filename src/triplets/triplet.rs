//! (anchor, positive, hard negative) triplets: what `gcse filter` writes and
//! stage 2 trains on. One JSON object a line: `id`, `anchor`, `positive`,
//! `negative` (required non-empty strings, ids unique), `origin` (default:
//! the file's), and the provenance `gcse filter` adds (kinds and scores).

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{id_field, json_object, origin_field, read_records, text_field, Origin};
use crate::data::corpus::{expand_data_path, OnBadLine};
use crate::error::Result;

/// One training triplet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Triplet {
    /// Unique in the file: the source's id, or `<id>#extra<k>` for an extra
    /// row made from a rejected negative.
    pub id: String,
    /// The anchor x_i.
    pub anchor: String,
    /// The positive x_i^+ (the anchor itself when it fell back).
    pub positive: String,
    /// The hard negative x_i^-.
    pub negative: String,
    /// Domain or general data.
    pub origin: Origin,
    /// How the positive was made: a candidate kind, or `anchor` (fallback).
    #[serde(default)]
    pub positive_kind: String,
    /// How the negative was made: a candidate kind, or `fallback` (another
    /// source sentence).
    #[serde(default)]
    pub negative_kind: String,
    /// Frozen-model cosine of anchor and positive, when scored.
    #[serde(default)]
    pub positive_score: Option<f64>,
    /// Frozen-model cosine of anchor and negative, when scored.
    #[serde(default)]
    pub negative_score: Option<f64>,
}

/// One triplet file (`[[data.triplets]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TripletSpec {
    /// The JSONL file. Paths may start with `$GCSE_DATA`. Required.
    pub path: String,
    /// Origin of lines that do not say. Default `general`.
    #[serde(default)]
    pub origin: Origin,
    /// A malformed line: "error" (naming the line) or "skip" (counted).
    /// Default "error".
    #[serde(default)]
    pub on_bad_line: OnBadLine,
}

/// Triplets read from files.
#[derive(Debug, Clone, Default)]
pub struct TripletSet {
    /// Triplets in file order.
    pub triplets: Vec<Triplet>,
    /// Malformed lines skipped under `on_bad_line = "skip"`.
    pub skipped: usize,
}

/// Reads triplet files; ids must be unique across all of them.
pub fn read_triplets(specs: &[TripletSpec]) -> Result<TripletSet> {
    let mut seen: HashMap<String, PathBuf> = HashMap::new();
    let mut out = TripletSet::default();
    for spec in specs {
        let (triplets, skipped) = read_records(
            &expand_data_path(&spec.path),
            spec.on_bad_line,
            &mut seen,
            |l| parse_triplet(l, spec.origin),
            |t| &t.id,
        )?;
        out.triplets.extend(triplets);
        out.skipped += skipped;
    }
    Ok(out)
}

fn parse_triplet(line: &str, default_origin: Origin) -> std::result::Result<Triplet, String> {
    let value = json_object(line)?;
    let optional = |key: &str| value.get(key).and_then(|v| v.as_str()).unwrap_or_default();
    let score = |key: &str| value.get(key).and_then(|v| v.as_f64());
    Ok(Triplet {
        id: id_field(&value)?,
        anchor: text_field(&value, "anchor")?,
        positive: text_field(&value, "positive")?,
        negative: text_field(&value, "negative")?,
        origin: origin_field(&value, default_origin)?,
        positive_kind: optional("positive_kind").to_string(),
        negative_kind: optional("negative_kind").to_string(),
        positive_score: score("positive_score"),
        negative_score: score("negative_score"),
    })
}
