//! Rewrite chains for ranking-sentence generation (docs/methods-extensions.md
//! §3): from each source sentence `s_0`, `n` rewrites in a chain, step
//! `t + 1` rewriting `s_t`, greedy. With an engine that [`Llm::guides`],
//! each token is chosen by classifier-free guidance between the rewrite
//! prompt on `s_t` (positive) and on `s_{t-1}` (negative; `s_{-1} = s_0`,
//! so the first step is plain greedy), which pushes every step away from
//! the previous one: the chain drifts from `s_0` and its order ranks the
//! list. Over HTTP only the unguided chain is possible.
//!
//! Steps are asked for all chains at once, one step after another, each
//! answer kept in the answer store as it arrives: a killed run resumes with
//! no request repeated. Filters (each drop counted in the report): a step
//! with a newline, a chain cut short (an empty or unreadable answer), a
//! last or second-to-last sentence that occurs `max_repeats` times or more
//! in the list (a loop), and ours, with a frozen model: the Spearman
//! correlation of the step index with the similarity to `s_0` above
//! `monotonicity` ([`filter_monotone`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::answers::{AnswerStore, Sampling};
use super::config::SynthConfig;
use super::generate::{read_candidate, CandidateRead};
use super::http::UNGUIDED;
use super::llm::{answer_all, Guidance, Llm, Request, RunStats};
use super::prompt::PromptKind;
use super::shape;
use crate::check;
use crate::embed::embedder::{cosine, Embeddings};
use crate::error::{Error, Result};
use crate::eval::spearman::spearman;
use crate::model::pooling::Pooling;

/// `[chains]` of a synthesis config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainsConfig {
    /// Rewrites per chain, `n` (a list holds `n + 1` sentences). Default 32.
    #[serde(default = "defaults::length")]
    pub length: usize,
    /// Classifier-free guidance (the embedded engine only). Default true.
    #[serde(default = "defaults::yes")]
    pub guided: bool,
    /// The guidance scale `g`. Default 1.5.
    #[serde(default = "defaults::guidance")]
    pub guidance: f32,
    /// Longest rewrite, in tokens. Default 64.
    #[serde(default = "defaults::max_tokens")]
    pub max_tokens: u32,
    /// A list whose last or second-to-last sentence occurs this many times
    /// or more is a loop. Default 3.
    #[serde(default = "defaults::max_repeats")]
    pub max_repeats: usize,
    /// The frozen model of the monotonicity filter (a model directory, a
    /// run directory or a hub id); none: no such filter.
    #[serde(default)]
    pub filter_model: Option<String>,
    /// Its pooling. Default `avg`.
    #[serde(default = "defaults::pooling")]
    pub filter_pooling: Pooling,
    /// A chain is kept when the Spearman correlation of the step index
    /// (1..n) with the similarity of `s_t` to `s_0` is at most this.
    /// Default -0.7.
    #[serde(default = "defaults::monotonicity")]
    pub monotonicity: f64,
}

mod defaults {
    use crate::model::pooling::Pooling;

    pub fn length() -> usize {
        32
    }
    pub fn yes() -> bool {
        true
    }
    pub fn guidance() -> f32 {
        1.5
    }
    pub fn max_tokens() -> u32 {
        64
    }
    pub fn max_repeats() -> usize {
        3
    }
    pub fn pooling() -> Pooling {
        Pooling::Avg
    }
    pub fn monotonicity() -> f64 {
        -0.7
    }
}

impl Default for ChainsConfig {
    fn default() -> Self {
        toml::from_str("").expect("every [chains] key has a default")
    }
}

impl ChainsConfig {
    /// Checks the keys; the message names the one at fault.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.length == 0 {
            return Err("`chains.length` must be at least 1".into());
        }
        if self.max_tokens == 0 {
            return Err("`chains.max_tokens` must be at least 1".into());
        }
        if self.max_repeats < 2 {
            return Err("`chains.max_repeats` must be at least 2".into());
        }
        check::within("chains.guidance", self.guidance.into(), 0.0, 100.0)?;
        check::within("chains.monotonicity", self.monotonicity, -1.0, 1.0)
    }
}

/// Why a chain is left out of training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// A step's answer holds a newline.
    Newline,
    /// A step's request failed (a rerun asks again) or its answer held no
    /// sentence.
    Incomplete,
    /// The last or second-to-last sentence repeats `max_repeats` times.
    Loop,
    /// The similarity to `s_0` does not fall with the step.
    NotMonotone,
}

/// One line of `lists.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainRecord {
    /// The source's index among the config's source sentences.
    pub id: String,
    /// `s_0`.
    pub source: String,
    /// The rewrites `s_1, s_2, ...` in order (as far as they came, for a
    /// dropped chain).
    pub chain: Vec<String>,
    /// The guidance scale, or `null` for an unguided chain.
    pub guidance: Option<f32>,
    /// Why the chain is left out; absent for a kept one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped_reason: Option<DropReason>,
    /// The monotonicity filter's Spearman correlation, where it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spearman: Option<f64>,
}

impl ChainRecord {
    /// The list trained on: the source, then the chain.
    pub fn items(&self) -> Vec<String> {
        std::iter::once(self.source.clone())
            .chain(self.chain.iter().cloned())
            .collect()
    }
}

/// Reads a `lists.jsonl`; an error names the line at fault.
pub fn read_lists(path: &Path) -> Result<Vec<ChainRecord>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line)
                .map_err(|e| Error::data(path, i + 1, format!("not a chain record: {e}")))
        })
        .collect()
}

/// What a chains run did: `chains.report.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChainsReport {
    /// Source sentences.
    pub sources: usize,
    /// Rewrites asked for per chain.
    pub length: usize,
    /// The guidance scale, or `null` (unguided).
    pub guidance: Option<f32>,
    /// Chains kept.
    pub kept: usize,
    /// Chains dropped, by reason.
    pub dropped: BTreeMap<DropReason, usize>,
    /// The requests of every step together.
    pub requests: RunStats,
    /// The monotonicity filter, where it ran.
    pub monotonicity: Option<MonotonicityReport>,
}

/// The monotonicity filter's settings and what it saw.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonotonicityReport {
    /// The frozen model and its pooling.
    pub model: String,
    /// The largest Spearman correlation kept.
    pub threshold: f64,
    /// The mean correlation over the chains it judged.
    pub mean_spearman: f64,
}

/// The requests of step `t` of every live chain, and which chain each is.
struct Step {
    chains: Vec<usize>,
    requests: Vec<Request>,
}

/// Runs the chains of `config` through `llm`, every answer kept in `store`:
/// the records in source order, dropped chains marked (all but the
/// monotonicity filter's drops), and the report.
pub fn generate_chains(
    config: &SynthConfig,
    llm: &dyn Llm,
    store: &mut AnswerStore,
) -> Result<(Vec<ChainRecord>, ChainsReport)> {
    let c = &config.chains;
    if c.guided && !llm.guides() {
        return Err(Error::Usage(format!("`chains.guided = true`: {UNGUIDED}")));
    }
    let sources = config.source_sentences()?;
    let template = config.template(PromptKind::Rewrite)?;
    let sampling = Sampling {
        temperature: 0.0,
        top_p: 1.0,
        max_tokens: c.max_tokens,
        seed: Some(config.seed),
        stop: Vec::new(),
    };
    let guidance = c.guided.then_some(c.guidance);
    let mut records: Vec<ChainRecord> = sources
        .iter()
        .enumerate()
        .map(|(i, (source, _))| ChainRecord {
            id: i.to_string(),
            source: source.clone(),
            chain: Vec::new(),
            guidance,
            dropped_reason: None,
            spearman: None,
        })
        .collect();
    let mut total = RunStats::default();
    for t in 0..c.length {
        let mut step = Step {
            chains: Vec::new(),
            requests: Vec::new(),
        };
        for (i, record) in records.iter().enumerate() {
            if record.dropped_reason.is_some() {
                continue;
            }
            let current = record.chain.last().unwrap_or(&record.source);
            let previous = match record.chain.len() {
                0 | 1 => &record.source,
                k => &record.chain[k - 2],
            };
            let negative = match guidance {
                Some(scale) if previous != current => Some(Guidance {
                    negative: template.render(&[("sentence", previous)])?,
                    scale,
                }),
                _ => None,
            };
            step.chains.push(i);
            step.requests.push(Request {
                prompt: template.render(&[("sentence", current)])?,
                sampling: sampling.clone(),
                shape: Some(shape::candidate()),
                guidance: negative,
            });
        }
        if step.chains.is_empty() {
            break;
        }
        let what = format!("chains step {}/{}", t + 1, c.length);
        let (answers, stats) = answer_all(llm, store, &step.requests, &what)?;
        stats.check_failures(&what, config.llm.max_failed_fraction)?;
        total.add(&stats);
        for (&i, answer) in step.chains.iter().zip(&answers) {
            let record = &mut records[i];
            let text = match read_candidate(answer.as_ref()) {
                CandidateRead::Json(text) | CandidateRead::PlainText(text) => text,
                CandidateRead::Dropped(_) => {
                    record.dropped_reason = Some(DropReason::Incomplete);
                    continue;
                }
            };
            let raw = answer.as_ref().map_or("", |a| a.text.trim());
            if text.contains('\n') || raw.contains('\n') {
                record.dropped_reason = Some(DropReason::Newline);
            }
            record.chain.push(text);
        }
    }
    for record in &mut records {
        if record.dropped_reason.is_none() && loops(&record.items(), c.max_repeats) {
            record.dropped_reason = Some(DropReason::Loop);
        }
    }
    let report = ChainsReport {
        sources: records.len(),
        length: c.length,
        guidance,
        requests: total,
        ..ChainsReport::default()
    };
    Ok((records, report))
}

/// Whether the last or the second-to-last of `items` occurs `max_repeats`
/// times or more among them.
pub fn loops(items: &[String], max_repeats: usize) -> bool {
    let count = |s: &String| items.iter().filter(|x| *x == s).count();
    items.iter().rev().take(2).any(|s| count(s) >= max_repeats)
}

/// The Spearman correlation of the step index `1..n` with the cosine of
/// `s_t` to `s_0`, from the vectors of a list (`s_0` first); `None` for a
/// list of fewer than three sentences.
pub fn monotonicity(vectors: &[&[f32]]) -> Option<f64> {
    if vectors.len() < 3 {
        return None;
    }
    let steps: Vec<f64> = (1..vectors.len()).map(|t| t as f64).collect();
    let similarity: Vec<f64> = vectors[1..].iter().map(|v| cosine(vectors[0], v)).collect();
    Some(spearman(&steps, &similarity))
}

/// Drops the kept chains whose [`monotonicity`] is above `threshold` (or
/// undefined: every similarity equal), given `embeddings` of `texts`.
/// Returns the mean correlation of the chains judged.
pub fn filter_monotone(
    records: &mut [ChainRecord],
    texts: &[&str],
    embeddings: &Embeddings,
    threshold: f64,
) -> f64 {
    let row: HashMap<&str, usize> = texts.iter().enumerate().map(|(i, &t)| (t, i)).collect();
    let mut judged = Vec::new();
    for record in records.iter_mut().filter(|r| r.dropped_reason.is_none()) {
        let items = record.items();
        let vectors: Vec<&[f32]> = items
            .iter()
            .map(|s| embeddings.row(row[s.as_str()]))
            .collect();
        let rho = monotonicity(&vectors);
        record.spearman = rho.filter(|r| r.is_finite());
        if let Some(r) = record.spearman {
            judged.push(r);
        }
        if !record.spearman.is_some_and(|r| r <= threshold) {
            record.dropped_reason = Some(DropReason::NotMonotone);
        }
    }
    judged.iter().sum::<f64>() / judged.len().max(1) as f64
}

/// Counts the kept chains and the drops by reason into `report`.
pub fn tally(records: &[ChainRecord], report: &mut ChainsReport) {
    report.kept = records
        .iter()
        .filter(|r| r.dropped_reason.is_none())
        .count();
    report.dropped.clear();
    for reason in records.iter().filter_map(|r| r.dropped_reason) {
        *report.dropped.entry(reason).or_default() += 1;
    }
}

/// Where a chains run writes: `<out_dir>/lists.jsonl` and
/// `chains.report.json`.
pub fn outputs(config: &SynthConfig) -> (PathBuf, PathBuf) {
    (
        config.out_dir.join("lists.jsonl"),
        config.out_dir.join("chains.report.json"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_loop_is_the_last_or_second_to_last_sentence_three_times() {
        assert!(loops(&strings(&["a", "b", "c", "b", "c", "b"]), 3));
        assert!(loops(&strings(&["c", "b", "c", "b", "c", "d"]), 3));
        assert!(!loops(&strings(&["a", "b", "a", "b", "a", "c", "d"]), 3));
        assert!(!loops(&strings(&["a", "b", "c", "b", "c"]), 3));
    }

    #[test]
    fn monotonicity_is_the_rank_correlation_of_step_and_similarity_to_the_source() {
        let v = |x: f32, y: f32| vec![x, y];
        let falling = [
            v(1.0, 0.0),
            v(1.0, 0.1),
            v(1.0, 0.5),
            v(1.0, 2.0),
            v(0.0, 1.0),
        ];
        let refs: Vec<&[f32]> = falling.iter().map(Vec::as_slice).collect();
        assert!((monotonicity(&refs).unwrap() + 1.0).abs() < 1e-12);
        let rising: Vec<&[f32]> = std::iter::once(refs[0])
            .chain(refs[1..].iter().rev().copied())
            .collect();
        assert!((monotonicity(&rising).unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(monotonicity(&refs[..2]), None);
    }

    #[test]
    fn records_read_back_and_a_bad_line_is_named() {
        let dir = std::env::temp_dir().join(format!("gcse-chains-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lists.jsonl");
        let record = ChainRecord {
            id: "0".into(),
            source: "a".into(),
            chain: strings(&["b", "c"]),
            guidance: Some(1.5),
            dropped_reason: Some(DropReason::NotMonotone),
            spearman: Some(-0.5),
        };
        let line = serde_json::to_string(&record).unwrap();
        assert!(
            line.contains("\"dropped_reason\":\"not_monotone\""),
            "{line}"
        );
        std::fs::write(&path, format!("{line}\n{{\"id\": 1}}\n")).unwrap();
        let err = read_lists(&path).unwrap_err().to_string();
        assert!(err.contains("lists.jsonl") && err.contains('2'), "{err}");
        std::fs::write(&path, format!("{line}\n")).unwrap();
        assert_eq!(read_lists(&path).unwrap(), vec![record.clone()]);
        assert_eq!(record.items(), strings(&["a", "b", "c"]));
    }
}
