//! Training objectives as plug-ins. An objective is one type implementing
//! [`Objective`]: it owns its section of the experiment file, its examples
//! and how a batch of them is laid out (the token rows the student encodes
//! and the constants its loss reads), its loss (a [`BatchLoss`]: a pure
//! function of the batch's embeddings and those constants, which is what
//! lets GradCache serve every objective), and the statistics it reports.
//!
//! The loop, checkpoints, resume, the metrics log, the dashboard and the
//! plots know an objective only through this trait; [`registry`] is the one
//! place that names the objectives an experiment file can choose.
//!
//! Determinism contract, which keeps `--resume` exact for every objective:
//! an objective draws randomness only from the seeds it is handed (the
//! run's seed in [`Setup`], the step's seed in [`Objective::batch`]),
//! teachers without dropout give the same vectors every time, and what it
//! carries from step to step ([`Objective::observe`]) is in
//! [`Objective::state`], which every checkpoint saves.

pub mod cross;
pub mod distillcse;
pub mod gcse;
pub mod group_shuffle;
pub mod negative_buffer;
pub mod pairs;
pub mod rank;
pub mod rankgen;
pub mod registry;
pub mod scored_pairs;
pub mod sentences;
pub mod simcse;
pub mod stats;
pub mod teacher;
pub mod triplet_examples;

use std::fmt::Debug;

use burn::tensor::backend::AutodiffBackend;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::{DataSection, MlpInit, ModelSection, ObjectiveSection, TrainConfig};
use crate::data::tokenizer::{Encoded, SentenceTokenizer};
use crate::error::Result;
use crate::loss::BatchLoss;
use crate::model::cross_encoder::ModelKind;
use crate::run_dir::RunDir;
use crate::triplets::rule::FilterSection;
use stats::{Readings, Stats, StatsPanel};

/// What an objective may read while it loads its examples: the experiment's
/// shared sections (not the whole experiment), the student's tokenizer, the
/// run directory (for caches) and the device.
pub struct Setup<'a, B: AutodiffBackend> {
    /// `[model]`: the student's start, pooling and length.
    pub model: &'a ModelSection,
    /// `[data]`: where the training text comes from.
    pub data: &'a DataSection,
    /// `[filter]`: how candidate files become triplets.
    pub filter: &'a FilterSection,
    /// The run's seed (`train.seed`).
    pub seed: u64,
    /// The softmax temperature (`train.temperature`).
    pub temperature: f64,
    /// Examples per optimizer step (`train.batch_size`).
    pub batch_size: usize,
    /// Sentences per forward pass when encoding without a graph
    /// (`eval.batch_size`).
    pub inference_batch: usize,
    /// The student's tokenizer.
    pub tokenizer: &'a SentenceTokenizer,
    /// The run directory (not yet claimed: write caches only).
    pub run: &'a RunDir,
    /// Where tensors live.
    pub device: &'a B::Device,
}

/// The constants a batch of objective `O` carries on backend `B`.
pub type Constants<O, B> = <<O as Objective>::Loss as BatchLoss>::Constants<B>;

/// A training objective. See the module documentation.
pub trait Objective: Sized + Send + Sync + 'static {
    /// The objective's own section of the experiment file, `[NAME]`: every
    /// key has a default and unknown keys are refused
    /// (`#[serde(deny_unknown_fields)]`); an objective without keys uses an
    /// empty struct.
    type Config: Clone + Debug + PartialEq + Default + Serialize + DeserializeOwned;
    /// The loss of a batch.
    type Loss: BatchLoss;

    /// What `objective = "..."` says to choose it; also its section's name.
    const NAME: &'static str;
    /// Where the `cls` pooler's MLP starts unless `model.mlp_init` says:
    /// `Random` for an objective that starts from any checkpoint,
    /// `Pretrained` for one that continues a trained model and needs its MLP
    /// (then a checkpoint without one is an error).
    const MLP_INIT: MlpInit;
    /// What it trains: a bi-encoder (rows are sentences, the loss reads
    /// their vectors) or a cross-encoder (rows are sentence pairs, the loss
    /// reads their logits, `[rows, 1]`; evaluated by scoring pairs).
    const MODEL: ModelKind = ModelKind::BiEncoder;
    /// The smallest `train.batch_size` it trains with, and why: 2 for the
    /// objectives whose examples are each other's negatives.
    const MIN_BATCH: (usize, &'static str) = (2, "in-batch negatives");

    /// Checks `config` against the rest of the experiment; the message names
    /// the key at fault.
    fn validate(config: &Self::Config, experiment: &TrainConfig)
        -> std::result::Result<(), String>;

    /// How the dashboard and the plots show [`Objective::stats`]; `None`
    /// for an objective that reports none.
    fn panel(_config: &Self::Config) -> Option<StatsPanel> {
        None
    }

    /// Loads the examples (and teachers) of a run.
    fn prepare<B: AutodiffBackend>(config: &Self::Config, setup: &Setup<'_, B>) -> Result<Self>;

    /// Lines for the console on what [`Objective::prepare`] loaded.
    fn summary(&self) -> Vec<String>;

    /// Writes what [`Objective::prepare`] made into the run directory, once
    /// the run has claimed it.
    fn save(&self, _run: &RunDir) -> Result<()> {
        Ok(())
    }

    /// How many training examples there are.
    fn examples(&self) -> usize;

    /// Distinct sentences in one example, for throughput.
    fn sentences_per_example(&self) -> usize;

    /// The loss.
    fn loss(&self) -> &Self::Loss;

    /// The batch of examples `indices`: the token rows the student encodes,
    /// in the layout the loss expects, and the loss's constants. `seed` is
    /// the step's own (for teachers with dropout and other per-step noise).
    fn batch<B: AutodiffBackend>(
        &self,
        indices: &[usize],
        seed: u64,
        device: &B::Device,
    ) -> Result<(Vec<&Encoded>, Constants<Self, B>)>;

    /// The step's statistics from the loss's readings, under the keys of
    /// [`Objective::panel`].
    fn stats(&self, _readings: &Readings) -> Stats {
        Stats::default()
    }

    /// Told after each optimizer step which examples it trained on and what
    /// the loss read: where an objective with state across steps (a buffer
    /// of earlier batches) updates it.
    fn observe(&mut self, _indices: &[usize], _readings: &Readings) {}

    /// The state across steps, saved with every checkpoint; `None` for an
    /// objective without any.
    fn state(&self) -> Option<serde_json::Value> {
        None
    }

    /// Restores what [`Objective::state`] saved, on resume; the message
    /// says what does not fit.
    fn restore(&mut self, _state: serde_json::Value) -> std::result::Result<(), String> {
        Ok(())
    }
}

/// The settings of `section` as `O`'s configuration; the message names the
/// section.
pub fn parse_section<O: Objective>(
    section: &ObjectiveSection,
) -> std::result::Result<O::Config, String> {
    serde_path_to_error::deserialize(toml::Value::Table(section.settings.clone())).map_err(|e| {
        let key = match e.path().to_string() {
            path if path == "." => O::NAME.to_string(),
            path => format!("{}.{path}", O::NAME),
        };
        format!("`{key}`: {}", e.inner().message().trim_end())
    })
}

/// The section holding `config`, every default written out.
pub fn section_of<O: Objective>(config: &O::Config) -> ObjectiveSection {
    ObjectiveSection {
        name: O::NAME.to_string(),
        settings: toml::Table::try_from(config)
            .expect("an objective's configuration serialises to a table"),
    }
}
