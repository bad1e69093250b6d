//! Building triplets from candidates (paper Eq. 10-11, method.md
//! "Filtering"). With `s(x, c)` the frozen model's cosine similarity:
//! - positive: the first positive candidate with `s >= alpha`, else the
//!   source itself (a dropout positive);
//! - negative: the first negative candidate with `s < beta`, else another
//!   source sentence chosen by the fallback rule;
//! - a negative candidate with `s >= beta` (too close to be a negative) is,
//!   with `extra_rows`, kept as an extra row `(c, c, fallback negative)`
//!   the way the authors' code keeps it.
//!
//! The rule is a pure function of the groups and their scores ([`select`]);
//! [`score`] computes the scores with a frozen encoder.

use std::collections::BTreeMap;

use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use super::candidates::CandidateGroup;
use super::report::FilterReport;
use super::triplet::Triplet;
use crate::embed::embedder::Embedder;
use crate::error::{Error, Result};
use crate::rng::SplitMix64;

/// Which rule builds the triplets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FilterMode {
    /// Eq. 10-11: thresholds alpha and beta on the frozen model's scores.
    #[default]
    Threshold,
    /// No filtering (ablation "w/o filtering"): the first candidate of each
    /// role, whatever its score; fallbacks only where a role has none.
    None,
    /// Ablation "w/ random": the source as its own positive and a fallback
    /// source sentence (use `fallback = "random"`) as negative; candidates
    /// unused.
    Random,
}

/// Which other source sentence a missing negative falls back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Fallback {
    /// The source `fallback_offset` rows later, or as many earlier near the
    /// end (the authors' code, offset 6).
    #[default]
    Offset,
    /// A seeded uniform choice among the other sources.
    Random,
}

/// `[filter]` of an experiment file, and the options of `gcse filter`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSection {
    /// Default `threshold`.
    #[serde(default)]
    pub mode: FilterMode,
    /// Lowest cosine for a positive. Default 0.80 (the authors' code; the
    /// paper reports 0.9).
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// A negative must score below this cosine. Default 0.75 (paper and code).
    #[serde(default = "default_beta")]
    pub beta: f64,
    /// Default `offset`.
    #[serde(default)]
    pub fallback: Fallback,
    /// Rows between a source and its fallback negative. Default 6.
    #[serde(default = "default_offset")]
    pub fallback_offset: usize,
    /// Keep rejected negative candidates as extra rows `(c, c, fallback)`.
    /// Default true (the authors' code).
    #[serde(default = "default_true")]
    pub extra_rows: bool,
    /// Seed of the random fallback. Default: the run's `train.seed` (42 for
    /// `gcse filter`).
    #[serde(default)]
    pub seed: Option<u64>,
}

fn default_alpha() -> f64 {
    0.80
}
fn default_beta() -> f64 {
    0.75
}
fn default_offset() -> usize {
    6
}
fn default_true() -> bool {
    true
}

impl Default for FilterSection {
    fn default() -> Self {
        toml::from_str("").expect("every [filter] key has a default")
    }
}

impl FilterSection {
    /// Checks values serde cannot; the message names the key.
    pub fn validate(&self) -> std::result::Result<(), String> {
        for (key, v) in [("filter.alpha", self.alpha), ("filter.beta", self.beta)] {
            if !(-1.0..=1.0).contains(&v) {
                return Err(format!("`{key}` is a cosine, in [-1, 1], not {v}"));
            }
        }
        if self.fallback == Fallback::Offset && self.fallback_offset == 0 {
            return Err("`filter.fallback_offset` must be at least 1".into());
        }
        Ok(())
    }

    /// Whether the rule reads the frozen model's scores.
    pub fn needs_scores(&self) -> bool {
        self.mode == FilterMode::Threshold
    }
}

/// Frozen-model cosines of one group's candidates with its source, in the
/// candidates' order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupScores {
    /// One per positive candidate.
    pub positives: Vec<f64>,
    /// One per negative candidate.
    pub negatives: Vec<f64>,
}

/// Scores every candidate against its source with `embedder` (a frozen
/// model: inference backend, no dropout). Each distinct sentence is embedded
/// once.
pub fn score<'a, B: Backend>(
    groups: &'a [CandidateGroup],
    embedder: &Embedder<'_, B>,
) -> Result<Vec<GroupScores>> {
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    let mut texts: Vec<&str> = Vec::new();
    let mut id_of = |t: &'a str| -> usize {
        *index.entry(t).or_insert_with(|| {
            texts.push(t);
            texts.len() - 1
        })
    };
    let ids: Vec<(usize, Vec<usize>, Vec<usize>)> = groups
        .iter()
        .map(|g| {
            (
                id_of(&g.source),
                g.positives.iter().map(|c| id_of(&c.text)).collect(),
                g.negatives.iter().map(|c| id_of(&c.text)).collect(),
            )
        })
        .collect();
    let bar = crate::progress::items(texts.len() as u64, "scoring sentences");
    let embeddings = embedder.embed(&texts, &bar)?;
    bar.finish_and_clear();
    Ok(ids
        .into_iter()
        .map(|(s, pos, neg)| GroupScores {
            positives: pos
                .iter()
                .map(|&c| embeddings.cosine(s, &embeddings, c))
                .collect(),
            negatives: neg
                .iter()
                .map(|&c| embeddings.cosine(s, &embeddings, c))
                .collect(),
        })
        .collect())
}

/// The index of the source a missing negative of source `i` (of `n`) falls
/// back to; never `i`.
fn fallback_index(i: usize, n: usize, rule: &FilterSection, seed: u64) -> usize {
    match rule.fallback {
        Fallback::Offset => {
            let k = rule.fallback_offset;
            let j = if i + k < n {
                i + k
            } else if i >= k {
                i - k
            } else {
                (i + k) % n
            };
            if j == i {
                (i + 1) % n
            } else {
                j
            }
        }
        Fallback::Random => {
            let j = SplitMix64::derived(seed, &[FALLBACK_STREAM, i as u64]).below(n as u64 - 1)
                as usize;
            if j >= i {
                j + 1
            } else {
                j
            }
        }
    }
}

/// The random stream of fallback choices.
const FALLBACK_STREAM: u64 = 0x66616c6c;

/// Builds the triplets of `groups` under `rule`. `scores` (one per group) is
/// required by the `threshold` mode and recorded in the triplets and the
/// report when given. Needs at least two groups (a fallback negative is
/// another source).
pub fn select(
    groups: &[CandidateGroup],
    scores: Option<&[GroupScores]>,
    rule: &FilterSection,
    seed: u64,
) -> Result<(Vec<Triplet>, FilterReport)> {
    let n = groups.len();
    if n < 2 {
        return Err(Error::Usage(format!(
            "{n} source sentence(s): building triplets needs at least two (a missing negative falls back to another source)"
        )));
    }
    if let Some(s) = scores {
        assert_eq!(s.len(), n, "one score list per group");
    }
    let scores_of = |i: usize| scores.map(|s| &s[i]);
    if rule.needs_scores() && scores.is_none() {
        return Err(Error::Usage(
            "the threshold filter needs the frozen model's scores".into(),
        ));
    }
    let mut report = FilterReport::new(rule, n);
    let mut triplets = Vec::with_capacity(n);
    for (i, g) in groups.iter().enumerate() {
        let s = scores_of(i);
        report.count_candidates(g, s);
        let fallback = &groups[fallback_index(i, n, rule, seed)].source;
        let pos_score = |k: usize| s.map(|s| s.positives[k]);
        let neg_score = |k: usize| s.map(|s| s.negatives[k]);
        let (positive, negative) = match rule.mode {
            FilterMode::Threshold => (
                (0..g.positives.len()).find(|&k| pos_score(k).expect("scored") >= rule.alpha),
                (0..g.negatives.len()).find(|&k| neg_score(k).expect("scored") < rule.beta),
            ),
            FilterMode::None => (
                (!g.positives.is_empty()).then_some(0),
                (!g.negatives.is_empty()).then_some(0),
            ),
            FilterMode::Random => (None, None),
        };
        report.positives.record(positive.is_some());
        report.negatives.record(negative.is_some());
        triplets.push(Triplet {
            id: g.id.clone(),
            anchor: g.source.clone(),
            positive: positive.map_or(&g.source, |k| &g.positives[k].text).clone(),
            negative: negative.map_or(fallback, |k| &g.negatives[k].text).clone(),
            origin: g.origin,
            positive_kind: positive
                .map_or("anchor", |k| &g.positives[k].kind)
                .to_string(),
            negative_kind: negative
                .map_or("fallback", |k| &g.negatives[k].kind)
                .to_string(),
            positive_score: positive.and_then(pos_score),
            negative_score: negative.and_then(neg_score),
        });
        if rule.extra_rows && rule.mode == FilterMode::Threshold {
            let rejected =
                (0..g.negatives.len()).filter(|&k| neg_score(k).expect("scored") >= rule.beta);
            for (e, k) in rejected.enumerate() {
                let c = &g.negatives[k];
                report.extra_rows += 1;
                triplets.push(Triplet {
                    id: format!("{}#extra{}", g.id, e + 1),
                    anchor: c.text.clone(),
                    positive: c.text.clone(),
                    negative: fallback.clone(),
                    origin: g.origin,
                    positive_kind: format!("extra:{}", c.kind),
                    negative_kind: "fallback".into(),
                    positive_score: None,
                    negative_score: None,
                });
            }
        }
    }
    report.triplets = triplets.len();
    Ok((triplets, report))
}
