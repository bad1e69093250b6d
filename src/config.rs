//! The experiment file of `gcse train`: one TOML document, saved next to the
//! checkpoints. Every default of the shared sections lives here, in the
//! `Default` impls and the `default_*` functions, and is stated in the
//! field's doc comment; the objective's own section is the objective's
//! (see [`crate::objective`]), carried here as its name and raw settings.
//! `gcse train --print-config` prints a file with every value filled in.
//! Unknown keys and missing required keys are errors that name the key.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::backend::Precision;
use crate::check;
use crate::data::corpus::SourceSpec;
use crate::data::data_root;
use crate::error::{Error, Result};
use crate::eval::evaluator::EvalData;
use crate::eval::registry;
use crate::model::pooling::Pooling;
use crate::triplets::candidates::CandidateSpec;
use crate::triplets::rule::FilterSection;
use crate::triplets::triplet::TripletSpec;

/// A whole experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Directory of the run: checkpoints, metrics, plots, the best model.
    /// Required.
    pub run_dir: PathBuf,
    /// The training objective (`objective = "..."`) and its section.
    #[serde(skip)]
    pub objective: ObjectiveSection,
    /// The encoder to start from.
    pub model: ModelSection,
    /// Training sentences (none for the objectives that read their own
    /// examples, such as scored pairs).
    #[serde(default)]
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
    /// How `data.candidates` become triplets.
    #[serde(default)]
    pub filter: FilterSection,
}

/// Which objective trains, and its section of the file (`[<name>]`) as
/// written; the objective reads the settings (see
/// [`crate::objective::registry`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectiveSection {
    /// The objective's name.
    pub name: String,
    /// Its section's keys.
    pub settings: toml::Table,
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
    /// Default: the objective's (`random` for `simcse`, `pretrained` for
    /// `gcse`, whose stage-1 MLP carries over as in the authors' code).
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
    /// Candidate files (`[[data.candidates]]`), made into triplets by
    /// `[filter]` with the objective's frozen model when the run starts.
    #[serde(default)]
    pub candidates: Vec<CandidateSpec>,
    /// Triplet files (`[[data.triplets]]`, e.g. from `gcse filter`).
    #[serde(default)]
    pub triplets: Vec<TripletSpec>,
    /// Sentences (or triplets, by origin) per domain : per general one, as
    /// "1:3" (docs/method.md "Stage 1"). General ones beyond the ratio are left out
    /// (a seeded sample); with no domain data all general ones are used.
    /// Default "1:3".
    #[serde(default = "default_ratio")]
    pub ratio: String,
    /// Cap on the number of training sentences (or triplets) after mixing
    /// (a seeded sample keeping the ratio). Default: no cap.
    #[serde(default)]
    pub max_sentences: Option<usize>,
}

impl Default for DataSection {
    fn default() -> Self {
        Self {
            domain: Vec::new(),
            general: Vec::new(),
            candidates: Vec::new(),
            triplets: Vec::new(),
            ratio: default_ratio(),
            max_sentences: None,
        }
    }
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
    /// Examples per batch: sentences for SimCSE (each encoded twice),
    /// triplets for GCSE. Default 64.
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
    /// GradCache: encode the batch this many sequences at a time (SimCSE:
    /// `2 * batch_size` sequences, GCSE: `3 * batch_size`), holding one
    /// chunk's activations at a time, at the cost of encoding every sequence
    /// twice. The loss and gradients are those of one pass over the same
    /// chunks (each chunk draws its own dropout masks; with dropout off,
    /// those of the plain step). Default: off (the whole batch in one pass).
    #[serde(default)]
    pub grad_cache_chunk: Option<usize>,
    /// `f32` (default), `bf16-mixed` (CUDA) or `f16-mixed` (CUDA, WGPU
    /// adapters with 16-bit shader floats): with a mixed precision the
    /// encoder's matrix products run in the half type while weights,
    /// gradients, AdamW state and checkpoints stay f32; `f16-mixed` scales
    /// the loss dynamically.
    #[serde(default)]
    pub precision: Precision,
}

/// `[eval]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSection {
    /// Evaluate every this many steps (and after the last). Default 125.
    #[serde(default = "default_eval_every")]
    pub every_steps: usize,
    /// Tasks evaluated during training (any registered evaluation task,
    /// `rerank:PATH`, `retrieval:DIR`, `pairclass:PATH` and `pairs:PATH`
    /// among them). Default ["stsb-dev", "sickr-dev"]. Empty: no evaluation during
    /// training, and the last model is exported as the run's model.
    #[serde(default = "default_dev_tasks")]
    pub tasks: Vec<String>,
    /// Evaluate the starting model before the first step too (step 0 on the
    /// curves; it competes for "best"). Default true.
    #[serde(default = "default_true")]
    pub at_start: bool,
    /// What picks the best checkpoint: a task (its primary metric, e.g. an
    /// STS task's Spearman), "task/metric" (e.g.
    /// "rerank:dev.jsonl/ndcg_at_10") or "mean" (the mean of every task's
    /// primary metric, e.g. mean(STS-B dev, SICK-R dev)). Default "stsb-dev".
    #[serde(default = "default_select_by")]
    pub select_by: String,
    /// Evaluate the best model on the seven STS test tasks at the end.
    /// Default true.
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

/// The shortest `max_len` (`model.max_len`, `--max-len`) accepted: BERT
/// and RoBERTa tokenizers add a special token on each side of a sentence.
pub const MIN_MAX_LEN: usize = 3;

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
fn default_dev_tasks() -> Vec<String> {
    registry::DEV.iter().map(|t| t.to_string()).collect()
}
fn default_select_by() -> String {
    registry::DEV[0].into()
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

impl EvalSection {
    /// Where the evaluation data is: `data`, else `$GCSE_DATA/senteval`.
    pub fn eval_data(&self) -> EvalData {
        EvalData {
            senteval: self
                .data
                .clone()
                .unwrap_or_else(|| data_root().join("senteval")),
        }
    }
}

impl Default for CheckpointSection {
    fn default() -> Self {
        toml::from_str("").expect("every [checkpoint] key has a default")
    }
}

impl DataSection {
    /// Domain : general weights from `ratio`.
    pub fn ratio(&self) -> (u32, u32) {
        parse_ratio(&self.ratio).expect("validated")
    }

    /// Whether any sentence source is given.
    pub fn has_sentences(&self) -> bool {
        !(self.domain.is_empty() && self.general.is_empty())
    }

    /// Whether any candidate or triplet file is given.
    pub fn has_triplets(&self) -> bool {
        !(self.candidates.is_empty() && self.triplets.is_empty())
    }
}

impl TrainConfig {
    /// Reads an experiment from its parsed TOML `table` (`path` names it in
    /// errors): the shared sections checked (evaluation task names are
    /// checked by [`TrainConfig::check_tasks`]), the key `objective` (else
    /// `default_objective`) and the section it names set aside for the
    /// objective.
    ///
    /// `text` is the file's text, where errors find the line of the key
    /// they name.
    pub fn from_table(
        mut table: toml::Table,
        text: &str,
        path: &Path,
        default_objective: &str,
    ) -> Result<Self> {
        let config_error = |message: String| located(path, text, message);
        let name = match table.remove("objective") {
            None => default_objective.to_string(),
            Some(toml::Value::String(name)) => name,
            Some(other) => {
                return Err(config_error(format!(
                    "`objective` must be a name (a string), not {other}"
                )))
            }
        };
        let settings = match table.remove(&name) {
            None => toml::Table::new(),
            Some(toml::Value::Table(t)) => t,
            Some(_) => {
                return Err(config_error(format!(
                    "`{name}` must be a section, [{name}]"
                )))
            }
        };
        let mut config: TrainConfig = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| {
            let message = e.inner().message().trim_end().to_string();
            config_error(match e.path().to_string() {
                key if key == "." => message,
                key => format!("`{key}`: {message}"),
            })
        })?;
        config.objective = ObjectiveSection { name, settings };
        config.validate().map_err(config_error)?;
        Ok(config)
    }

    /// Checks the evaluation tasks against the registered ones and writes
    /// them (and `select_by`) by their registered names; the message names
    /// what is unknown.
    pub fn check_tasks(&mut self) -> std::result::Result<(), String> {
        for task in &mut self.eval.tasks {
            *task = registry::canonical(task)?.to_string();
        }
        if !self.eval.tasks.is_empty() {
            self.eval.select_by =
                registry::check_selection(&self.eval.select_by, &self.eval.tasks)?;
        }
        Ok(())
    }

    /// The file text of this configuration, every value written out:
    /// `objective`, the shared sections, then the objective's.
    pub fn to_toml(&self) -> String {
        let mut text = format!(
            "objective = {}\n{}",
            toml::Value::String(self.objective.name.clone()),
            toml::to_string_pretty(self).expect("the configuration serialises")
        );
        if !self.objective.settings.is_empty() {
            let section = toml::Table::from_iter([(
                self.objective.name.clone(),
                toml::Value::Table(self.objective.settings.clone()),
            )]);
            text.push('\n');
            text.push_str(&toml::to_string_pretty(&section).expect("the section serialises"));
        }
        text
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
        if self.model.max_len < MIN_MAX_LEN {
            return Err(format!(
                "`model.max_len` must be at least {MIN_MAX_LEN} (a special token on each side and a word), not {}",
                self.model.max_len
            ));
        }
        check::positive("train.lr", t.lr)?;
        check::positive("train.temperature", t.temperature)?;
        check::non_negative("train.weight_decay", t.weight_decay)?;
        check::non_negative("train.max_grad_norm", t.max_grad_norm)?;
        // The optimizer takes epsilon as an f32: it must stay positive there.
        check::positive("train.adam_epsilon", t.adam_epsilon)?;
        if !(t.adam_epsilon as f32 > 0.0 && (t.adam_epsilon as f32).is_finite()) {
            return Err(format!(
                "`train.adam_epsilon` {} is outside the range of 32-bit floats",
                t.adam_epsilon
            ));
        }
        if !t.precision.keeps_f32_weights() {
            return Err(format!(
                "`train.precision` {} would keep the weights and AdamW's state in half \
                 precision, where small updates round away: training takes `f32`, `bf16-mixed` \
                 or `f16-mixed`",
                t.precision
            ));
        }
        if let Some(end) = t.schedule_steps {
            if end <= t.warmup_steps {
                return Err(format!(
                    "`train.schedule_steps` ({end}) must be greater than `train.warmup_steps` ({}): \
                     the learning rate would be 0 from then on",
                    t.warmup_steps
                ));
            }
        }
        if self.data.max_sentences == Some(0) {
            return Err("`data.max_sentences` must be at least 1".into());
        }
        if let Some(p) = self.model.dropout {
            if !(0.0..1.0).contains(&p) {
                return Err(format!("`model.dropout` must be in [0, 1), not {p}"));
            }
        }
        self.filter.validate()?;
        parse_ratio(&self.data.ratio).map_err(|m| format!("`data.ratio`: {m}"))?;
        Ok(())
    }

    /// Steps between resumable checkpoints.
    pub fn checkpoint_every(&self) -> usize {
        self.checkpoint.every_steps.unwrap_or(self.eval.every_steps)
    }
}

/// An [`Error::Config`] of `path` with `message`, which starts with the
/// line of the key it names first (in backquotes) when `text` has it.
pub fn located(path: &Path, text: &str, message: String) -> Error {
    let key = message
        .strip_prefix('`')
        .and_then(|m| m.split_once('`'))
        .map(|(key, _)| key);
    let message = match key.and_then(|k| line_of(text, k)) {
        Some(line) => format!("line {line}: {message}"),
        None => message,
    };
    Error::Config {
        path: path.to_path_buf(),
        message,
    }
}

/// The line (1-based) of TOML `text` where dotted `key` is set or its
/// table starts (indices such as `[0]` in the key are ignored).
fn line_of(text: &str, key: &str) -> Option<usize> {
    let mut wanted = String::new();
    let mut skip = false;
    for c in key.chars() {
        match c {
            '[' => skip = true,
            ']' => skip = false,
            c if !skip => wanted.push(c),
            _ => {}
        }
    }
    let mut table = String::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        let header = line
            .strip_prefix("[[")
            .and_then(|h| h.split_once("]]"))
            .or_else(|| line.strip_prefix('[').and_then(|h| h.split_once(']')));
        let full = if let Some((name, _)) = header {
            table = name.trim().to_string();
            table.clone()
        } else if let Some((name, _)) = line.split_once('=') {
            let name = name.trim().trim_matches('"');
            if table.is_empty() {
                name.to_string()
            } else {
                format!("{table}.{name}")
            }
        } else {
            continue;
        };
        if full == wanted {
            return Some(i + 1);
        }
    }
    None
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
pub(crate) mod tests {
    use super::*;

    /// The smallest valid experiment file.
    pub(crate) const MINIMAL: &str = r#"
run_dir = "runs/x"
[model]
path = "models/m"
[[data.general]]
path = "corpus.txt"
"#;

    fn parse(text: &str) -> Result<TrainConfig> {
        crate::objective::registry::parse(text, Path::new("exp.toml"))
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
        assert_eq!(c.eval.tasks, vec!["stsb-dev", "sickr-dev"]);
        assert_eq!(c.data.ratio(), (1, 3));
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
    fn bad_values_are_named() {
        for (extra, key) in [
            ("[train]\nbatch_size = 1\n", "train.batch_size"),
            ("[model]\nmax_len = 2\n", "model.max_len"),
            ("[train]\nlr = -1.0\n", "train.lr"),
            ("[train]\nlr = nan\n", "train.lr"),
            ("[train]\nweight_decay = nan\n", "train.weight_decay"),
            ("[train]\nadam_epsilon = nan\n", "train.adam_epsilon"),
            ("[train]\nadam_epsilon = 1e-50\n", "train.adam_epsilon"),
            ("[train]\nmax_grad_norm = nan\n", "train.max_grad_norm"),
            ("[train]\nmax_grad_norm = inf\n", "train.max_grad_norm"),
            ("[train]\nschedule_steps = 0\n", "train.schedule_steps"),
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
