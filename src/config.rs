//! The experiment file of `gcse train`: one TOML document, saved next to the
//! checkpoints. Every default lives here, in the `Default` impls and the
//! `default_*` functions, and is stated in the field's doc comment;
//! `gcse train --print-config` prints a file with every value filled in.
//! Unknown keys and missing required keys are errors that name the key.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::corpus::SourceSpec;
use crate::error::{Error, Result};
use crate::eval::sts::StsTask;
use crate::loss::gaussian_decay::{Decay, DecayMode};
use crate::model::pooling::Pooling;
use crate::train::model::Objective;
use crate::triplets::candidates::CandidateSpec;
use crate::triplets::filter::FilterSection;
use crate::triplets::triplet::TripletSpec;

/// A whole experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Directory of the run: checkpoints, metrics, plots, the best model.
    /// Required.
    pub run_dir: PathBuf,
    /// `simcse` (stage 1: sentences, two dropout views) or `gcse` (stage 2:
    /// triplets, Gaussian-decayed hard negatives, `model.path` a stage-1 run
    /// or model that also serves, frozen, as the evaluation model).
    /// Default `simcse`.
    #[serde(default)]
    pub stage: Stage,
    /// The encoder to start from.
    pub model: ModelSection,
    /// Training sentences.
    pub data: DataSection,
    /// Optimisation.
    #[serde(default)]
    pub train: TrainSection,
    /// Evaluation during and after training.
    #[serde(default)]
    pub eval: EvalSection,
    /// Checkpoints.
    #[serde(default)]
    pub checkpoint: CheckpointSection,
    /// Stage 2: the decay.
    #[serde(default)]
    pub stage2: Stage2Section,
    /// Stage 2: how `data.candidates` become triplets.
    #[serde(default)]
    pub filter: FilterSection,
}

/// Which stage a run trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Unsupervised SimCSE on sentences.
    #[default]
    Simcse,
    /// GCSE on triplets with a frozen evaluation model.
    Gcse,
}

/// `[stage2]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage2Section {
    /// `official` (the authors' code: detached additive term, only where the
    /// student scores the own hard negative no higher than the frozen model,
    /// s <= s'), `paper` (Eq. 13: both sides, gradient through the decay) or
    /// `none` (InfoNCE with hard negatives: ablation "w/o decay").
    /// Default `official`.
    #[serde(default)]
    pub decay: DecayMode,
    /// Gaussian width in logit units (cosine / tau). Default 0.17 for
    /// `official` (the authors' code), 0.01 / tau for `paper` (the paper's
    /// sigma = 0.01 in cosine units).
    #[serde(default)]
    pub decay_width: Option<f64>,
    /// The frozen evaluation model (scores batches and candidates).
    /// Default: `model.path`.
    #[serde(default)]
    pub frozen: Option<String>,
}

impl Default for Stage2Section {
    fn default() -> Self {
        toml::from_str("").expect("every [stage2] key has a default")
    }
}

/// `[model]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Model directory or hub id to start from. Required.
    pub path: String,
    /// Pooling in training. Default `cls` (CLS state through the MLP).
    #[serde(default = "default_train_pooling")]
    pub pooling: Pooling,
    /// Pooling for evaluation and export. Default `cls_before_pooler`
    /// (SimCSE's "MLP only in training").
    #[serde(default = "default_eval_pooling")]
    pub eval_pooling: Pooling,
    /// Where the `cls` pooler's MLP starts: `random` (SimCSE: a fresh layer,
    /// normal(0, 0.02) weights) or `pretrained` (the checkpoint's pooler).
    /// Default `random` in stage 1, `pretrained` in stage 2 (the stage-1
    /// MLP carries over, as in the authors' code).
    #[serde(default)]
    pub mlp_init: Option<MlpInit>,
    /// Longest tokenized sentence in training, special tokens included.
    /// Default 32.
    #[serde(default = "default_max_len")]
    pub max_len: usize,
    /// Dropout probability (hidden and attention) in training; default: the
    /// checkpoint's config.json (0.1 for BERT). 0 disables SimCSE's noise.
    #[serde(default)]
    pub dropout: Option<f64>,
}

/// Initialisation of the `cls` pooler's MLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MlpInit {
    /// A fresh layer (SimCSE).
    #[default]
    Random,
    /// The checkpoint's `pooler.dense`.
    Pretrained,
}

/// `[data]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// In-domain sentence sources (`[[data.domain]]`). At least one of
    /// `domain` and `general` is required.
    #[serde(default)]
    pub domain: Vec<SourceSpec>,
    /// General sentence sources (`[[data.general]]`).
    #[serde(default)]
    pub general: Vec<SourceSpec>,
    /// Stage 2: candidate files (`[[data.candidates]]`), made into triplets
    /// by `[filter]` with the frozen model when the run starts.
    #[serde(default)]
    pub candidates: Vec<CandidateSpec>,
    /// Stage 2: triplet files (`[[data.triplets]]`, e.g. from `gcse filter`).
    #[serde(default)]
    pub triplets: Vec<TripletSpec>,
    /// Sentences (stage 2: triplets, by origin) per domain : per general
    /// one, as "1:3" (method.md). General ones beyond the ratio are left out
    /// (a seeded sample); with no domain data all general ones are used.
    /// Default "1:3".
    #[serde(default = "default_ratio")]
    pub ratio: String,
    /// Cap on the number of training sentences (stage 2: triplets) after
    /// mixing (a seeded sample keeping the ratio). Default: no cap.
    #[serde(default)]
    pub max_sentences: Option<usize>,
}

/// Which optimizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Adam with decoupled weight decay.
    #[default]
    Adamw,
    /// Adam; `weight_decay` is an L2 penalty added to the gradient.
    Adam,
}

/// `[train]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    /// Sentences per batch (each encoded twice); stage 2: triplets per batch.
    /// Default 64.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Passes over the data. Default 1.
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Stop after this many optimizer steps; 0 only evaluates (and exports)
    /// the starting model (ablation "w/o stage 2"). Default: all epochs.
    #[serde(default)]
    pub max_steps: Option<usize>,
    /// Peak learning rate. Default 3e-5.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Default `adamw`.
    #[serde(default)]
    pub optimizer: OptimizerKind,
    /// Default 0.
    #[serde(default)]
    pub weight_decay: f64,
    /// Adam's epsilon. Default 1e-8 (PyTorch's).
    #[serde(default = "default_adam_epsilon")]
    pub adam_epsilon: f64,
    /// Steps of linear warm-up from 0; the rate then decays linearly to 0 at
    /// the last step (or at `schedule_steps`). Default 0.
    #[serde(default)]
    pub warmup_steps: usize,
    /// The step at which the linear decay reaches 0, if not the run's last
    /// (the GCSE authors' code fixes it at 80000, far past its runs, so their
    /// rate barely decays). Default: the last step.
    #[serde(default)]
    pub schedule_steps: Option<usize>,
    /// Clip the global gradient L2 norm to this value (PyTorch's
    /// `clip_grad_norm_`, which Hugging Face's Trainer applies at 1.0);
    /// `0` disables. Default 1.0.
    #[serde(default = "default_grad_clip")]
    pub max_grad_norm: f64,
    /// InfoNCE temperature tau. Default 0.05.
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    /// Seed of data order, sampling, MLP init and dropout. Default 42.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Write a plain log line every this many steps (no dashboard). Default 10.
    #[serde(default = "default_log_every")]
    pub log_every: usize,
    /// GradCache: encode the batch this many sequences at a time (stage 1:
    /// `2 * batch_size` sequences, stage 2: `3 * batch_size`), holding one
    /// chunk's activations at a time, at the cost of encoding every sequence
    /// twice. The loss and gradients are those of one pass over the same
    /// chunks (each chunk draws its own dropout masks; with dropout off,
    /// those of the plain step). Default: off (the whole batch in one pass).
    #[serde(default)]
    pub grad_cache_chunk: Option<usize>,
}

/// `[eval]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSection {
    /// Evaluate every this many steps (and after the last). Default 125.
    #[serde(default = "default_eval_every")]
    pub every_steps: usize,
    /// Tasks evaluated during training. Default ["stsb-dev", "sickr-dev"].
    /// Empty: no evaluation during training, and the last model is exported
    /// as the run's model.
    #[serde(default = "default_dev_tasks", with = "task_names")]
    pub tasks: Vec<StsTask>,
    /// Evaluate the starting model before the first step too (step 0 on the
    /// curves; it competes for "best"). Default true.
    #[serde(default = "default_true")]
    pub at_start: bool,
    /// The task whose Spearman picks the best checkpoint. Default "stsb-dev".
    #[serde(default = "default_select_by", with = "task_name")]
    pub select_by: StsTask,
    /// Evaluate the best model on the seven test tasks at the end. Default true.
    #[serde(default = "default_true")]
    pub final_test: bool,
    /// Sentences per forward pass in evaluation. Default 128.
    #[serde(default = "default_eval_batch")]
    pub batch_size: usize,
    /// SentEval data directory. Default `$GCSE_DATA/senteval`.
    #[serde(default)]
    pub data: Option<PathBuf>,
}

/// `[checkpoint]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSection {
    /// Save a resumable checkpoint every this many steps. Default: with every
    /// evaluation.
    #[serde(default)]
    pub every_steps: Option<usize>,
    /// Resumable checkpoints kept (the newest). Default 2.
    #[serde(default = "default_keep_last")]
    pub keep_last: usize,
}

fn default_train_pooling() -> Pooling {
    Pooling::Cls
}
fn default_eval_pooling() -> Pooling {
    Pooling::ClsBeforePooler
}
fn default_max_len() -> usize {
    32
}
fn default_ratio() -> String {
    "1:3".into()
}
fn default_batch_size() -> usize {
    64
}
fn default_epochs() -> usize {
    1
}
fn default_lr() -> f64 {
    3e-5
}
fn default_adam_epsilon() -> f64 {
    1e-8
}
fn default_grad_clip() -> f64 {
    1.0
}
fn default_temperature() -> f64 {
    0.05
}
fn default_seed() -> u64 {
    42
}
fn default_log_every() -> usize {
    10
}
fn default_eval_every() -> usize {
    125
}
fn default_dev_tasks() -> Vec<StsTask> {
    StsTask::DEV.to_vec()
}
fn default_select_by() -> StsTask {
    StsTask::StsBDev
}
fn default_true() -> bool {
    true
}
fn default_eval_batch() -> usize {
    128
}
fn default_keep_last() -> usize {
    2
}

impl Default for TrainSection {
    fn default() -> Self {
        toml::from_str("").expect("every [train] key has a default")
    }
}

impl Default for EvalSection {
    fn default() -> Self {
        toml::from_str("").expect("every [eval] key has a default")
    }
}

impl Default for CheckpointSection {
    fn default() -> Self {
        toml::from_str("").expect("every [checkpoint] key has a default")
    }
}

/// STS tasks by name in TOML.
mod task_names {
    use super::StsTask;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(tasks: &[StsTask], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(tasks.iter().map(|t| t.key()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<StsTask>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|n| n.parse().map_err(serde::de::Error::custom))
            .collect()
    }
}

/// One STS task by name in TOML.
mod task_name {
    use super::StsTask;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(task: &StsTask, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(task.key())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<StsTask, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl TrainConfig {
    /// Reads and checks an experiment file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Parses an experiment file's text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let config: TrainConfig = toml::from_str(text).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        config.validate().map_err(|message| Error::Config {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(config)
    }

    /// The file text of this configuration, every value written out.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("the configuration serialises")
    }

    /// Domain : general weights from `data.ratio`.
    pub fn ratio(&self) -> (u32, u32) {
        parse_ratio(&self.data.ratio).expect("validated")
    }

    /// Checks values serde cannot; the message names the key.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let t = &self.train;
        let positive = [
            ("train.batch_size", t.batch_size),
            ("train.epochs", t.epochs),
            ("train.log_every", t.log_every),
            ("eval.every_steps", self.eval.every_steps),
            ("eval.batch_size", self.eval.batch_size),
            ("model.max_len", self.model.max_len),
            ("train.grad_cache_chunk", t.grad_cache_chunk.unwrap_or(1)),
            ("checkpoint.keep_last", self.checkpoint.keep_last),
            (
                "checkpoint.every_steps",
                self.checkpoint.every_steps.unwrap_or(1),
            ),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("`{key}` must be at least 1"));
        }
        if t.batch_size < 2 {
            return Err("`train.batch_size` must be at least 2 (in-batch negatives)".into());
        }
        if !(t.lr > 0.0 && t.lr.is_finite()) {
            return Err(format!("`train.lr` must be positive, not {}", t.lr));
        }
        if !(t.temperature > 0.0 && t.temperature.is_finite()) {
            return Err(format!(
                "`train.temperature` must be positive, not {}",
                t.temperature
            ));
        }
        if t.weight_decay < 0.0 || t.adam_epsilon <= 0.0 || t.max_grad_norm < 0.0 {
            return Err("`train.weight_decay` and `train.max_grad_norm` must be >= 0, `train.adam_epsilon` > 0".into());
        }
        if let Some(p) = self.model.dropout {
            if !(0.0..1.0).contains(&p) {
                return Err(format!("`model.dropout` must be in [0, 1), not {p}"));
            }
        }
        let sentences = !(self.data.domain.is_empty() && self.data.general.is_empty());
        let triplets = !(self.data.candidates.is_empty() && self.data.triplets.is_empty());
        match self.stage {
            Stage::Simcse if !sentences => {
                return Err(
                    "`data` needs at least one `[[data.domain]]` or `[[data.general]]` source"
                        .into(),
                )
            }
            Stage::Simcse if triplets => {
                return Err("`data.candidates` and `data.triplets` are for stage = \"gcse\"".into())
            }
            Stage::Gcse if !triplets => {
                return Err("stage = \"gcse\" needs `[[data.candidates]]` or `[[data.triplets]]`".into())
            }
            Stage::Gcse if sentences => {
                return Err("stage = \"gcse\" trains on triplets: use `[[data.candidates]]` or `[[data.triplets]]` (with `origin`), not `[[data.domain]]` / `[[data.general]]`".into())
            }
            _ => {}
        }
        if let Some(w) = self.stage2.decay_width {
            if !(w > 0.0 && w.is_finite()) {
                return Err(format!("`stage2.decay_width` must be positive, not {w}"));
            }
        }
        self.filter.validate()?;
        parse_ratio(&self.data.ratio).map_err(|m| format!("`data.ratio`: {m}"))?;
        if !self.eval.tasks.is_empty() && !self.eval.tasks.contains(&self.eval.select_by) {
            return Err(format!(
                "`eval.select_by` (\"{}\") must be one of `eval.tasks`",
                self.eval.select_by
            ));
        }
        Ok(())
    }

    /// The `cls` MLP's start: as configured, else by stage.
    pub fn mlp_init(&self) -> MlpInit {
        self.model.mlp_init.unwrap_or(match self.stage {
            Stage::Simcse => MlpInit::Random,
            Stage::Gcse => MlpInit::Pretrained,
        })
    }

    /// The training objective of the run's stage.
    pub fn objective(&self) -> Objective {
        match self.stage {
            Stage::Simcse => Objective::Simcse,
            Stage::Gcse => {
                let mode = self.stage2.decay;
                Objective::Gcse(Decay {
                    mode,
                    width: self
                        .stage2
                        .decay_width
                        .unwrap_or_else(|| mode.default_width(self.train.temperature)),
                })
            }
        }
    }

    /// The frozen evaluation model of stage 2.
    pub fn frozen_model(&self) -> &str {
        self.stage2.frozen.as_deref().unwrap_or(&self.model.path)
    }

    /// Steps between resumable checkpoints.
    pub fn checkpoint_every(&self) -> usize {
        self.checkpoint.every_steps.unwrap_or(self.eval.every_steps)
    }
}

fn parse_ratio(text: &str) -> std::result::Result<(u32, u32), String> {
    let parsed = text
        .split_once(':')
        .and_then(|(a, b)| Some((a.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?)));
    match parsed {
        Some((a, b)) if a > 0 && b > 0 => Ok((a, b)),
        _ => Err(format!(
            "expected two positive whole numbers like \"1:3\", not \"{text}\""
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
run_dir = "runs/x"
[model]
path = "models/m"
[[data.general]]
path = "corpus.txt"
"#;

    fn parse(text: &str) -> Result<TrainConfig> {
        TrainConfig::parse(text, Path::new("exp.toml"))
    }

    #[test]
    fn a_minimal_file_gets_the_documented_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.train.batch_size, 64);
        assert_eq!(c.train.lr, 3e-5);
        assert_eq!(c.train.temperature, 0.05);
        assert_eq!(c.model.max_len, 32);
        assert_eq!(c.model.pooling, Pooling::Cls);
        assert_eq!(c.model.eval_pooling, Pooling::ClsBeforePooler);
        assert_eq!(c.eval.every_steps, 125);
        assert_eq!(c.eval.tasks, vec![StsTask::StsBDev, StsTask::SickDev]);
        assert_eq!(c.ratio(), (1, 3));
        assert_eq!(c.checkpoint_every(), 125);
        // What --print-config writes reads back to the same configuration.
        assert_eq!(parse(&c.to_toml()).unwrap(), c);
    }

    #[test]
    fn unknown_and_missing_keys_are_named() {
        let err = parse(&format!("{MINIMAL}[train]\nlearning_rate = 1e-5\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("exp.toml") && err.contains("learning_rate"),
            "{err}"
        );
        let err =
            parse("run_dir = \"r\"\n[model]\npooling = \"avg\"\n[[data.general]]\npath = \"c\"\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("path"), "{err}");
        let err = parse(&MINIMAL.replace("run_dir = \"runs/x\"\n", ""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("run_dir"), "{err}");
    }

    #[test]
    fn stage_two_needs_triplet_data_and_picks_its_own_defaults() {
        let gcse = r#"
run_dir = "runs/x"
stage = "gcse"
[model]
path = "runs/stage1"
[[data.candidates]]
path = "c.jsonl"
"#;
        let c = parse(gcse).unwrap();
        assert_eq!(c.mlp_init(), MlpInit::Pretrained);
        assert_eq!(
            c.objective(),
            Objective::Gcse(Decay {
                mode: DecayMode::Official,
                width: 0.17
            })
        );
        assert_eq!(c.frozen_model(), "runs/stage1");
        assert_eq!(parse(&c.to_toml()).unwrap(), c);
        let paper = parse(&format!("{gcse}[stage2]\ndecay = \"paper\"\n")).unwrap();
        let Objective::Gcse(decay) = paper.objective() else {
            panic!("stage 2")
        };
        assert!((decay.width - 0.2).abs() < 1e-12, "sigma 0.01 / tau 0.05");
        assert_eq!(parse(MINIMAL).unwrap().mlp_init(), MlpInit::Random);
        assert_eq!(parse(MINIMAL).unwrap().objective(), Objective::Simcse);
        for (text, key) in [
            (
                gcse.replace("[[data.candidates]]\npath = \"c.jsonl\"\n", "[data]\n"),
                "data.candidates",
            ),
            (
                format!("{gcse}[[data.general]]\npath = \"s.txt\"\n"),
                "data.domain",
            ),
            (
                format!("{MINIMAL}[[data.triplets]]\npath = \"t.jsonl\"\n"),
                "stage = \"gcse\"",
            ),
            (format!("{gcse}[filter]\nalpha = 1.5\n"), "filter.alpha"),
            (
                format!("{gcse}[stage2]\ndecay_width = 0.0\n"),
                "stage2.decay_width",
            ),
            (
                format!("{gcse}[stage2]\ndecay = \"sometimes\"\n"),
                "sometimes",
            ),
        ] {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn bad_values_are_named() {
        for (extra, key) in [
            ("[train]\nbatch_size = 1\n", "train.batch_size"),
            ("[train]\nlr = -1.0\n", "train.lr"),
            ("[train]\ngrad_cache_chunk = 0\n", "train.grad_cache_chunk"),
            ("[data]\nratio = \"1-3\"\n", "data.ratio"),
            ("[eval]\nselect_by = \"sts12\"\n", "eval.select_by"),
            ("[eval]\ntasks = [\"sts99\"]\n", "sts99"),
            ("[model]\npooling = \"max\"\n", "max"),
        ] {
            let text = if extra.starts_with("[model]") {
                MINIMAL.replace("[model]\n", extra)
            } else if extra.starts_with("[data]") {
                MINIMAL.replace("[[data.general]]", &format!("{extra}[[data.general]]"))
            } else {
                format!("{MINIMAL}{extra}")
            };
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }
}
