//! Building triplets from candidates (paper Eq. 10-11, docs/method.md
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

use burn::tensor::backend::Backend;

use super::candidates::{Candidate, CandidateGroup};
use super::report::FilterReport;
use super::rule::{Fallback, FilterMode, FilterSection, GroupScores};
use super::triplet::Triplet;
use crate::embed::embedder::{distinct, Embedder, SentenceVectors};
use crate::error::{Error, Result};
use crate::rng::SplitMix64;

/// Every distinct sentence of `groups` (sources and candidates), in the
/// order they first appear.
pub fn sentences(groups: &[CandidateGroup]) -> Vec<&str> {
    distinct(groups.iter().flat_map(|g| {
        std::iter::once(g.source.as_str())
            .chain(g.positives.iter().map(|c| c.text.as_str()))
            .chain(g.negatives.iter().map(|c| c.text.as_str()))
    }))
}

/// The cosine of every candidate with its source, from `vectors` (which
/// hold every sentence of `groups`: a frozen model's, no dropout).
pub fn score_with(groups: &[CandidateGroup], vectors: &SentenceVectors) -> Vec<GroupScores> {
    let scores = |source: &str, candidates: &[Candidate]| -> Vec<f64> {
        candidates
            .iter()
            .map(|c| vectors.cosine(source, &c.text))
            .collect()
    };
    groups
        .iter()
        .map(|g| GroupScores {
            positives: scores(&g.source, &g.positives),
            negatives: scores(&g.source, &g.negatives),
        })
        .collect()
}

/// Scores every candidate against its source with `embedder` (a frozen
/// model: inference backend, no dropout). Each distinct sentence is embedded
/// once.
pub fn score<B: Backend>(
    groups: &[CandidateGroup],
    embedder: &Embedder<'_, B>,
) -> Result<Vec<GroupScores>> {
    let texts = sentences(groups);
    let bar = crate::progress::items(texts.len() as u64, "scoring sentences");
    let embeddings = embedder.embed(&texts, &bar)?;
    bar.finish_and_clear();
    Ok(score_with(
        groups,
        &SentenceVectors::new(&texts, embeddings),
    ))
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
