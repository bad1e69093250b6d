//! Post-training on LLM rewrite chains (docs/methods-extensions.md §3,
//! "ranking-sentence generation"): each example is one list, a source
//! sentence and its chain of rewrites from `gcse synth chains`; the
//! student's similarity matrix of the list learns, row by row, the order of
//! the teacher's matrix corrected towards the chain's order
//! ([`crate::loss::rankgen`]). No InfoNCE: this refines a model that is
//! already trained (lr 3e-6 in the paper), so its MLP carries over.
//!
//! The teacher is frozen: its vectors of every list sentence are computed
//! once and cached in the run directory, and the targets of every list are
//! fixed before the first step. ListMLE's tie-breaking permutation of a
//! list is drawn from the step's seed, so `--resume` repeats an
//! uninterrupted run.

use std::collections::HashMap;
use std::path::PathBuf;

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::stats::{mean, SeriesSpec, Stats, StatsPanel};
use super::teacher::frozen_vectors;
use super::{Objective, Readings, Setup};
use crate::config::{MlpInit, TrainConfig};
use crate::data::tokenizer::Encoded;
use crate::embed::embedder::distinct;
use crate::error::{Error, Result};
use crate::loss::rank::list_mle_order;
use crate::loss::rankgen::{list_targets, ListOrders, RankSign, RankgenLoss, LIST_LOSS};
use crate::model::pooling::Pooling;
use crate::rng::SplitMix64;
use crate::synth::chains::read_lists;

/// `[rankgen]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RankgenConfig {
    /// `lists.jsonl` files of `gcse synth chains`; lists with a
    /// `dropped_reason` are left out.
    #[serde(default)]
    pub lists: Vec<PathBuf>,
    /// Each list cut to its source and its first `max_items - 1` rewrites
    /// (shorter chains); default: whole lists.
    #[serde(default)]
    pub max_items: Option<usize>,
    /// The student's temperature. Default 0.05.
    #[serde(default = "defaults::tau")]
    pub tau: f64,
    /// The teacher's temperature, tau_T. Default 0.05.
    #[serde(default = "defaults::tau")]
    pub tau_t: f64,
    /// The ranking correction's strength omega (0: plain rank distillation
    /// of the teacher). Default 0.5.
    #[serde(default = "defaults::omega")]
    pub omega: f64,
    /// Which items count as ranked too high by the teacher: `"chain"`
    /// (default) or `"reference"` (the shipped code's test).
    #[serde(default)]
    pub rank_sign: RankSign,
    /// The teacher: a model directory, a training run directory or a hub
    /// id. Default `model.path` (the frozen start).
    #[serde(default)]
    pub teacher: Option<String>,
    /// The teacher's pooling. Default `model.eval_pooling`.
    #[serde(default)]
    pub teacher_pooling: Option<Pooling>,
}

mod defaults {
    pub fn tau() -> f64 {
        0.05
    }
    pub fn omega() -> f64 {
        0.5
    }
}

impl Default for RankgenConfig {
    fn default() -> Self {
        toml::from_str("").expect("every [rankgen] key has a default")
    }
}

/// One list: its sentences tokenized, in chain order, and its targets'
/// `[n, n]` values.
struct List {
    rows: Vec<Encoded>,
    targets: Vec<f64>,
}

/// The objective: the kept lists and their targets.
pub struct Rankgen {
    loss: RankgenLoss,
    lists: Vec<List>,
    /// Lists read, lists dropped by the synthesis, the files.
    read: usize,
    dropped: usize,
    files: Vec<PathBuf>,
    teacher: String,
    omega: f64,
    rank_sign: RankSign,
}

/// Statistic key: the mean of the step's lists' losses.
const L_LIST: &str = "l_list";

impl Objective for Rankgen {
    type Config = RankgenConfig;
    type Loss = RankgenLoss;
    const NAME: &'static str = "rankgen";
    const MLP_INIT: MlpInit = MlpInit::Pretrained;
    const MIN_BATCH: (usize, &'static str) = (1, "a list");

    fn validate(
        config: &RankgenConfig,
        experiment: &TrainConfig,
    ) -> std::result::Result<(), String> {
        if config.lists.is_empty() {
            return Err(
                "`rankgen.lists` needs at least one lists.jsonl of `gcse synth chains`".into(),
            );
        }
        if experiment.data.has_sentences() || experiment.data.has_triplets() {
            return Err(
                "`rankgen` trains on `rankgen.lists`; remove the [data] sources, which it would not read"
                    .into(),
            );
        }
        for (key, value) in [("tau", config.tau), ("tau_t", config.tau_t)] {
            if !(value > 0.0 && value.is_finite()) {
                return Err(format!("`rankgen.{key}` must be positive, not {value}"));
            }
        }
        if !(config.omega >= 0.0 && config.omega.is_finite()) {
            return Err(format!(
                "`rankgen.omega` must be 0 or more, not {}",
                config.omega
            ));
        }
        if config.max_items.is_some_and(|m| m < 2) {
            return Err("`rankgen.max_items` must be at least 2 (a source and a rewrite)".into());
        }
        Ok(())
    }

    fn panel(_config: &RankgenConfig) -> Option<StatsPanel> {
        Some(StatsPanel {
            name: "rankgen".into(),
            title: "rewrite-chain ranking".into(),
            placeholder: "the mean ListMLE of the step's lists appears here after the first step."
                .into(),
            series: vec![SeriesSpec {
                key: L_LIST.into(),
                label: "ListMLE per list".into(),
                decimals: 3,
            }],
            histogram: None,
            plot: "rankgen.png".into(),
            smooth: 10,
        })
    }

    fn prepare<B: AutodiffBackend>(config: &RankgenConfig, setup: &Setup<'_, B>) -> Result<Self> {
        let mut kept = Vec::new();
        let (mut read, mut dropped) = (0, 0);
        for path in &config.lists {
            for record in read_lists(path)? {
                read += 1;
                if record.dropped_reason.is_some() {
                    dropped += 1;
                    continue;
                }
                let mut items = record.items();
                if let Some(max) = config.max_items {
                    items.truncate(max);
                }
                if items.len() >= 2 {
                    kept.push(items);
                }
            }
        }
        if kept.is_empty() {
            return Err(Error::Usage(format!(
                "`rankgen.lists`: no list kept in {} ({read} read, {dropped} dropped by the synthesis)",
                show(&config.lists)
            )));
        }
        let teacher = config
            .teacher
            .clone()
            .unwrap_or_else(|| setup.model.path.clone());
        let pooling = config.teacher_pooling.unwrap_or(setup.model.eval_pooling);
        let texts = distinct(kept.iter().flatten().map(String::as_str));
        let vectors = frozen_vectors(setup, &teacher, pooling, None, &texts, "rankgen")?;
        let row_of: HashMap<&str, usize> = texts.iter().enumerate().map(|(i, &t)| (t, i)).collect();
        let lists = kept
            .iter()
            .map(|items| {
                let n = items.len();
                let teacher: Vec<f64> = items
                    .iter()
                    .flat_map(|s| vectors.row(row_of[s.as_str()]))
                    .map(|&x| f64::from(x))
                    .collect();
                Ok(List {
                    rows: setup.tokenizer.encode(items)?,
                    targets: list_targets(
                        &teacher,
                        n,
                        config.tau_t,
                        config.omega,
                        config.rank_sign,
                    ),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            loss: RankgenLoss { tau: config.tau },
            lists,
            read,
            dropped,
            files: config.lists.clone(),
            teacher: format!("{teacher} ({pooling})"),
            omega: config.omega,
            rank_sign: config.rank_sign,
        })
    }

    fn summary(&self) -> Vec<String> {
        let sizes: Vec<usize> = self.lists.iter().map(|l| l.rows.len()).collect();
        vec![
            format!(
                "data: {} lists of {}-{} sentences from {} ({} read, {} dropped by the synthesis)",
                self.lists.len(),
                sizes.iter().min().unwrap_or(&0),
                sizes.iter().max().unwrap_or(&0),
                show(&self.files),
                self.read,
                self.dropped
            ),
            format!(
                "rankgen: ListMLE over targets of teacher {}, omega {}, rank_sign {:?}, tau {}",
                self.teacher, self.omega, self.rank_sign, self.loss.tau
            ),
        ]
    }

    fn examples(&self) -> usize {
        self.lists.len()
    }

    fn sentences_per_example(&self) -> usize {
        let total: usize = self.lists.iter().map(|l| l.rows.len()).sum();
        total / self.lists.len().max(1)
    }

    fn loss(&self) -> &RankgenLoss {
        &self.loss
    }

    /// The lists one after another, each in chain order (source first); the
    /// constants give each list's first row and ListMLE's order of its rows.
    fn batch<B: AutodiffBackend>(
        &self,
        indices: &[usize],
        seed: u64,
        device: &B::Device,
    ) -> Result<(Vec<&Encoded>, ListOrders<B>)> {
        let mut rng = SplitMix64::new(seed);
        let mut rows = Vec::new();
        let mut lists = Vec::with_capacity(indices.len());
        for &i in indices {
            let list = &self.lists[i];
            let n = list.rows.len();
            let mut perm: Vec<usize> = (0..n).collect();
            rng.shuffle(&mut perm);
            let order: Vec<i64> = list_mle_order(&list.targets, &perm)
                .into_iter()
                .map(|c| c as i64)
                .collect();
            lists.push((
                rows.len(),
                Tensor::<B, 2, Int>::from_data(
                    TensorData::new(order, [n, n]).convert::<B::IntElem>(),
                    device,
                ),
            ));
            rows.extend(list.rows.iter());
        }
        Ok((rows, ListOrders { lists }))
    }

    fn stats(&self, readings: &Readings) -> Stats {
        Stats {
            values: vec![(L_LIST.into(), mean(&readings[LIST_LOSS]))],
            histograms: Vec::new(),
        }
    }
}

fn show(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_has_the_papers_defaults_and_refuses_unknown_keys() {
        let config: RankgenConfig = toml::from_str("lists = [\"l.jsonl\"]\n").unwrap();
        assert_eq!((config.tau, config.tau_t, config.omega), (0.05, 0.05, 0.5));
        assert_eq!(config.rank_sign, RankSign::Chain);
        let reference: RankgenConfig = toml::from_str("rank_sign = \"reference\"\n").unwrap();
        assert_eq!(reference.rank_sign, RankSign::Reference);
        assert!(toml::from_str::<RankgenConfig>("omega_t = 1\n").is_err());
        assert!(toml::from_str::<RankgenConfig>("rank_sign = \"absolute\"\n").is_err());
    }

    #[test]
    fn an_experiment_trains_on_one_list_a_step_and_reads_no_data_section() {
        let parse = |text: &str| {
            crate::objective::registry::parse(text, std::path::Path::new("exp.toml"))
                .map_err(|e| e.to_string())
        };
        let base = "run_dir = \"r\"\nobjective = \"rankgen\"\n[model]\npath = \"m\"\n[train]\nbatch_size = 1\n";
        let config = parse(&format!("{base}[rankgen]\nlists = [\"l.jsonl\"]\n")).unwrap();
        assert_eq!(config.train.batch_size, 1);
        let err = parse(&format!("{base}[rankgen]\n")).unwrap_err();
        assert!(err.contains("rankgen.lists"), "{err}");
        let err = parse(&format!(
            "{base}[rankgen]\nlists = [\"l.jsonl\"]\n[[data.general]]\npath = \"s.txt\"\n"
        ))
        .unwrap_err();
        assert!(err.contains("[data]"), "{err}");
        let err = parse(
            &base
                .replace("\"rankgen\"", "\"simcse\"")
                .replace("[train]", "[[data.general]]\npath = \"s.txt\"\n[train]"),
        )
        .unwrap_err();
        assert!(
            err.contains("train.batch_size") && err.contains("in-batch"),
            "{err}"
        );
    }
}
