//! Source sentences with their synthetic candidates: the JSONL that data
//! synthesis writes and `gcse filter` reads, or SNLI read as candidates
//! (entailment hypotheses as positive, contradictions as negative).
//!
//! One JSON object a line:
//! `{"id": "17", "source": "...", "origin": "domain",
//!   "positives": [{"text": "...", "kind": "rewrite"}],
//!   "negatives": [{"text": "...", "kind": "entity_revision"}]}`.
//! `id` (unique), `source` and each candidate's `text` and `kind` are
//! required non-empty strings; `origin` defaults to the file's; other fields
//! are provenance and ignored here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{id_field, json_object, origin_field, read_records, text_field, Origin};
use crate::data::corpus::OnBadLine;
use crate::data::data_file::read_text;
use crate::error::{Error, Result};

/// One synthetic sentence and how it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// The sentence.
    pub text: String,
    /// How it was made (prompt kind: `rewrite`, `antisense`, ...).
    pub kind: String,
}

/// A source sentence and its candidates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateGroup {
    /// Unique in the input.
    pub id: String,
    /// The source sentence (the anchor).
    pub source: String,
    /// Domain or general data.
    pub origin: Origin,
    /// Candidates meant as positives, in preference order.
    pub positives: Vec<Candidate>,
    /// Candidates meant as negatives, in preference order.
    pub negatives: Vec<Candidate>,
}

/// How a candidate file is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CandidateFormat {
    /// The JSONL of this module's docs.
    #[default]
    Jsonl,
    /// An SNLI directory in SentEval layout (`s1.<split>`, `s2.<split>`,
    /// `labels.<split>`): each premise is a source, its entailment
    /// hypotheses positive and its contradictions negative candidates
    /// (neutral ones are left out).
    Snli,
}

/// One candidate file (`[[data.candidates]]`, `gcse filter --input`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CandidateSpec {
    /// The file (or SNLI directory). Paths may start with `$GCSE_DATA`.
    /// Required.
    pub path: String,
    /// Layout. Default `jsonl`.
    #[serde(default)]
    pub format: CandidateFormat,
    /// SNLI splits to read (file suffixes, e.g. ["dev", "test"]); required
    /// for `snli`.
    #[serde(default)]
    pub splits: Vec<String>,
    /// Origin of sources whose line does not say. Default `general`.
    #[serde(default)]
    pub origin: Origin,
    /// A malformed line: "error" (naming the line) or "skip" (counted).
    /// Default "error".
    #[serde(default)]
    pub on_bad_line: OnBadLine,
}

/// Candidate groups read from files.
#[derive(Debug, Clone, Default)]
pub struct CandidateSet {
    /// Groups in file order.
    pub groups: Vec<CandidateGroup>,
    /// Malformed lines skipped under `on_bad_line = "skip"`.
    pub skipped: usize,
}

impl CandidateSpec {
    /// The path with `$GCSE_DATA` expanded.
    pub fn resolved_path(&self) -> PathBuf {
        crate::data::corpus::expand_data_path(&self.path)
    }

    /// Reads the file's groups; ids must be unique within `seen` too (ids of
    /// files read before, by file), which this call extends.
    pub fn read(&self, seen: &mut HashMap<String, PathBuf>) -> Result<CandidateSet> {
        let path = self.resolved_path();
        match self.format {
            CandidateFormat::Jsonl => self.read_jsonl(&path, seen),
            CandidateFormat::Snli => self.read_snli(&path, seen),
        }
    }

    fn read_jsonl(&self, path: &Path, seen: &mut HashMap<String, PathBuf>) -> Result<CandidateSet> {
        let (groups, skipped) = read_records(
            path,
            self.on_bad_line,
            seen,
            |l| parse_group(l, self.origin),
            |g| &g.id,
        )?;
        Ok(CandidateSet { groups, skipped })
    }

    fn read_snli(&self, dir: &Path, seen: &mut HashMap<String, PathBuf>) -> Result<CandidateSet> {
        if self.splits.is_empty() {
            return Err(Error::Usage(format!(
                "{}: an SNLI candidate source needs `splits` (e.g. [\"dev\", \"test\"])",
                dir.display()
            )));
        }
        let mut out = CandidateSet::default();
        let mut by_premise: HashMap<String, usize> = HashMap::new();
        for split in &self.splits {
            let read = |name: &str| -> Result<(PathBuf, Vec<String>)> {
                let p = dir.join(format!("{name}.{split}"));
                let text = read_text(&p)?;
                Ok((p, text.lines().map(|l| l.trim().to_string()).collect()))
            };
            let (_, premises) = read("s1")?;
            let (_, hypotheses) = read("s2")?;
            let (labels_path, labels) = read("labels")?;
            if premises.len() != hypotheses.len() || premises.len() != labels.len() {
                return Err(Error::data(
                    &labels_path,
                    premises.len().min(hypotheses.len()).min(labels.len()) + 1,
                    format!(
                        "s1, s2 and labels of split {split} have {}, {} and {} lines",
                        premises.len(),
                        hypotheses.len(),
                        labels.len()
                    ),
                ));
            }
            for (k, ((premise, hypothesis), label)) in
                premises.iter().zip(&hypotheses).zip(&labels).enumerate()
            {
                if premise.is_empty() || hypothesis.is_empty() {
                    continue;
                }
                let role = match label.as_str() {
                    "entailment" => true,
                    "contradiction" => false,
                    _ => continue,
                };
                let at = *by_premise.entry(premise.clone()).or_insert_with(|| {
                    out.groups.push(CandidateGroup {
                        id: format!("snli-{split}-{}", k + 1),
                        source: premise.clone(),
                        origin: self.origin,
                        positives: Vec::new(),
                        negatives: Vec::new(),
                    });
                    out.groups.len() - 1
                });
                let candidate = Candidate {
                    text: hypothesis.clone(),
                    kind: format!("snli_{label}"),
                };
                let group = &mut out.groups[at];
                if role {
                    group.positives.push(candidate);
                } else {
                    group.negatives.push(candidate);
                }
            }
        }
        for g in &out.groups {
            if let Some(first) = seen.insert(g.id.clone(), dir.to_path_buf()) {
                return Err(Error::Usage(format!(
                    "{}: id \"{}\" is also used in {}",
                    dir.display(),
                    g.id,
                    first.display()
                )));
            }
        }
        Ok(out)
    }
}

/// Reads several candidate files; ids must be unique across all of them.
pub fn read_all(specs: &[CandidateSpec]) -> Result<CandidateSet> {
    let mut seen = HashMap::new();
    let mut all = CandidateSet::default();
    for spec in specs {
        let set = spec.read(&mut seen)?;
        all.groups.extend(set.groups);
        all.skipped += set.skipped;
    }
    Ok(all)
}

fn parse_group(line: &str, default_origin: Origin) -> std::result::Result<CandidateGroup, String> {
    let value = json_object(line)?;
    let id = id_field(&value)?;
    let candidates = |key: &str| -> std::result::Result<Vec<Candidate>, String> {
        let list = match value.get(key) {
            None | Some(serde_json::Value::Null) => return Ok(Vec::new()),
            Some(serde_json::Value::Array(list)) => list,
            Some(other) => return Err(format!("field `{key}` is not a list but {other}")),
        };
        list.iter()
            .enumerate()
            .map(|(i, c)| {
                let at = |m: String| format!("{key}[{i}]: {m}");
                let text = text_field(c, "text").map_err(at)?;
                let kind = text_field(c, "kind").map_err(at)?;
                Ok(Candidate { text, kind })
            })
            .collect()
    };
    Ok(CandidateGroup {
        source: text_field(&value, "source")?,
        origin: origin_field(&value, default_origin)?,
        positives: candidates("positives")?,
        negatives: candidates("negatives")?,
        id,
    })
}
