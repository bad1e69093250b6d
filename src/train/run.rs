//! The training loop: data order, dropout seeds, optimizer and schedule,
//! evaluation on the dev sets every N steps, the best model exported, and
//! atomic checkpoints from which `--resume` continues exactly (same losses as
//! an uninterrupted run on the same backend).
//!
//! The step itself is Burn's [`TrainStep`]; optimizers and the schedule are
//! burn-optim's; progress goes to a burn-train [`MetricsRendererTraining`].
//! burn-train's own `Learner` loop is not used: it checkpoints per epoch and
//! cannot resume mid-epoch, evaluate a whole-dev-set Spearman every N steps,
//! or write checkpoints atomically.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use burn::data::dataloader::Progress;
use burn::module::AutodiffModule;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::lr_scheduler::LrScheduler;
use burn::optim::{AdamConfig, AdamWConfig, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::train::metric::{MetricEntry, MetricId, NumericEntry, SerializedEntry};
use burn::train::renderer::{MetricState, MetricsRendererTraining, TrainingProgress};
use burn::train::{Interrupter, ItemLazy, TrainStep};

use super::checkpoint::{Checkpoints, TrainState};
use super::clip::clip_global_norm;
use super::examples::{self, Examples};
use super::frozen::FrozenModel;
use super::metric;
use super::metrics_log::MetricsLog;
use super::model::{ContrastiveModel, StepItem};
use super::schedule::LinearWarmupDecay;
use crate::atomic::write_atomic;
use crate::config::{MlpInit, OptimizerKind, Stage, TrainConfig};
use crate::data::data_root;
use crate::data::mix::{epoch_order, stream};
use crate::data::tokenizer::SentenceTokenizer;
use crate::embed::embedder::Embedder;
use crate::error::{Error, Result};
use crate::eval::sts::{evaluate, StsReport, StsTask};
use crate::model::bert::hf_linear;
use crate::model::encoder::SentenceEncoder;
use crate::model::export::{recover_dir, write_model_folder, FolderMeta};
use crate::model::hub::resolve_model;
use crate::model::lazy::materialise;
use crate::model::load::{LoadOptions, LoadedModel};
use crate::rng::SplitMix64;

/// File names inside a run directory.
pub mod files {
    /// The experiment file as the run uses it.
    pub const CONFIG: &str = crate::model::hub::RUN_CONFIG;
    /// Per-step and per-evaluation metrics.
    pub const METRICS: &str = "metrics.jsonl";
    /// The best model so far, as a Hugging Face / sentence-transformers folder.
    pub const BEST: &str = crate::model::hub::RUN_BEST;
    /// Test-suite results of the best model.
    pub const TEST_RESULTS: &str = "test_results.json";
    /// Stage 2: the triplets filtered from the candidates.
    pub const TRIPLETS: &str = "triplets.jsonl";
    /// Stage 2: the filter's report.
    pub const FILTER_REPORT: &str = "filter_report.json";
}

/// A run ready to train: model, data and (on resume) where to continue.
pub struct Trainer<B: AutodiffBackend> {
    config: TrainConfig,
    model_dir: PathBuf,
    model: ContrastiveModel<B>,
    tokenizer: SentenceTokenizer,
    pad_id: u32,
    examples: Examples,
    /// Stage 2: the frozen evaluation model.
    frozen: Option<FrozenModel<B::InnerBackend>>,
    /// One line on the training data.
    pub data_summary: String,
    /// Stage 2 with candidates: the filter's report.
    pub filter_report: Option<crate::triplets::report::FilterReport>,
    /// The checkpoint a resume continues from.
    pub resume_from: Option<usize>,
    /// Optimizer steps of the whole run.
    pub total_steps: usize,
    /// Optimizer steps per epoch (the last, incomplete batch is dropped).
    pub steps_per_epoch: usize,
    backend: String,
    device: B::Device,
    /// Stop cleanly (checkpoint, then return) once this many steps are done.
    pub stop_after: Option<usize>,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// Optimizer steps taken in all.
    pub steps: usize,
    /// Best selection score and its step.
    pub best: Option<(f64, usize)>,
    /// Whether a stop request ended the run before its last step.
    pub interrupted: bool,
}

impl<B: AutodiffBackend> Trainer<B> {
    /// Loads the model and the data and checks the run directory: a new run
    /// needs a directory without a run in it; `resume` needs the same
    /// experiment file as the run was started with.
    /// `backend` describes the device for the logs.
    pub fn prepare(
        config: TrainConfig,
        resume: bool,
        backend: &str,
        device: &B::Device,
    ) -> Result<Self> {
        let run_dir = config.run_dir.clone();
        let saved = run_dir.join(files::CONFIG);
        if saved.exists() {
            if !resume {
                return Err(Error::Usage(format!(
                    "{} already holds a run; pass --resume to continue it, or choose another run_dir",
                    run_dir.display()
                )));
            }
            let previous = TrainConfig::load(&saved)?;
            if previous != config {
                return Err(Error::Config {
                    path: saved,
                    message: "the experiment file differs from the one this run started with; \
                              an exact resume needs the same settings"
                        .into(),
                });
            }
        }

        let model_dir = resolve_model(&config.model.path)?;
        let options = LoadOptions {
            max_len: Some(config.model.max_len),
            dropout: config.model.dropout,
        };
        let loaded = LoadedModel::<B>::from_dir(&model_dir, &options, device)?;
        let mut encoder = loaded.encoder;
        if config.mlp_init() == MlpInit::Pretrained
            && config.stage == Stage::Gcse
            && !loaded.report.has_pooler()
        {
            return Err(Error::Usage(format!(
                "{}: no pooler (MLP) weights to continue from; stage 2 starts from a stage-1 run or model folder that has them",
                loaded.report.weights.display()
            )));
        }
        if config.mlp_init() == MlpInit::Random || !loaded.report.has_pooler() {
            B::seed(
                device,
                SplitMix64::derived(config.train.seed, &[stream::MLP_INIT]).next_u64(),
            );
            let h = loaded.config.hidden_size;
            let init = burn::module::Initializer::Normal {
                mean: 0.0,
                std: loaded.config.initializer_range,
            };
            encoder.pooler = hf_linear(h, h, &init, device);
            materialise(&encoder.pooler);
        }
        let (data, frozen) = match config.stage {
            Stage::Simcse => (examples::sentences(&config, &loaded.tokenizer)?, None),
            Stage::Gcse => {
                let frozen = FrozenModel::<B::InnerBackend>::load(&config, device)?;
                let data = examples::triplets(&config, &loaded.tokenizer, &frozen, device)?;
                (data, Some(frozen))
            }
        };
        let batch = config.train.batch_size;
        let steps_per_epoch = data.examples.len() / batch;
        if steps_per_epoch == 0 {
            return Err(Error::Usage(format!(
                "{} training examples make no batch of {batch} (train.batch_size)",
                data.examples.len()
            )));
        }
        let all_steps = steps_per_epoch * config.train.epochs;
        let total_steps = config
            .train
            .max_steps
            .map_or(all_steps, |m| m.min(all_steps));
        // The run directory is claimed only once the model and data loaded.
        std::fs::create_dir_all(&run_dir).map_err(|e| Error::io(&run_dir, e))?;
        write_atomic(&saved, |w| {
            std::io::Write::write_all(w, config.to_toml().as_bytes())
        })?;
        recover_dir(&run_dir.join(files::BEST))?;
        let filter_report = match data.filtered {
            Some((triplets, report)) => {
                crate::triplets::triplet::write_triplets(
                    &run_dir.join(files::TRIPLETS),
                    &triplets,
                )?;
                report.save(&run_dir.join(files::FILTER_REPORT))?;
                Some(report)
            }
            None => None,
        };
        let resume_from = if resume {
            Checkpoints::new(&run_dir).complete()?.last().copied()
        } else {
            None
        };
        Ok(Self {
            model: ContrastiveModel::new(encoder, &config),
            pad_id: loaded.config.pad_token_id as u32,
            tokenizer: loaded.tokenizer,
            model_dir,
            examples: data.examples,
            frozen,
            data_summary: data.summary,
            filter_report,
            resume_from,
            total_steps,
            steps_per_epoch,
            config,
            backend: backend.to_string(),
            device: device.clone(),
            stop_after: None,
        })
    }

    /// Trains until the last step or a stop request, reporting to `renderer`.
    pub fn run(
        self,
        renderer: &mut dyn MetricsRendererTraining,
        interrupter: &Interrupter,
    ) -> Result<TrainOutcome> {
        let t = &self.config.train;
        match t.optimizer {
            OptimizerKind::Adamw => {
                let optim = AdamWConfig::new()
                    .with_epsilon(t.adam_epsilon as f32)
                    .with_weight_decay(t.weight_decay as f32)
                    .init();
                self.run_with(optim, renderer, interrupter)
            }
            OptimizerKind::Adam => {
                let decay =
                    (t.weight_decay > 0.0).then(|| WeightDecayConfig::new(t.weight_decay as f32));
                let optim = AdamConfig::new()
                    .with_epsilon(t.adam_epsilon as f32)
                    .with_weight_decay(decay)
                    .init();
                self.run_with(optim, renderer, interrupter)
            }
        }
    }

    fn run_with<O: Optimizer<ContrastiveModel<B>, B>>(
        self,
        optim: O,
        renderer: &mut dyn MetricsRendererTraining,
        interrupter: &Interrupter,
    ) -> Result<TrainOutcome> {
        let config = &self.config;
        let run_dir = &config.run_dir;
        let checkpoints = Checkpoints::new(run_dir);
        let (mut model, mut optim, mut state) = match self.resume_from {
            Some(step) => checkpoints.load(step, self.model.clone(), optim, &self.device)?,
            None => (
                self.model.clone(),
                optim,
                TrainState {
                    step: 0,
                    best: None,
                },
            ),
        };
        let mut schedule = LinearWarmupDecay::new(
            config.train.lr,
            config.train.warmup_steps,
            config.train.schedule_steps.unwrap_or(self.total_steps),
        )
        .load_record::<B>(state.step);
        let mut log = MetricsLog::open(&run_dir.join(files::METRICS), state.step)?;
        log.write(&serde_json::json!({
            "kind": "start", "step": state.step, "total_steps": self.total_steps, "backend": self.backend,
        }))?;
        let batch_size = config.train.batch_size;
        let mut order = (usize::MAX, Vec::new());
        let mut saved_at = state.step;
        let mut interrupted = false;
        let mut rate = Rate::default();
        if state.step == 0 && config.eval.at_start && !config.eval.tasks.is_empty() {
            self.evaluate_and_select(&model, &mut state, &mut log, renderer)?;
        }
        while state.step < self.total_steps {
            if interrupter.should_stop() || self.stop_after.is_some_and(|n| state.step >= n) {
                interrupted = true;
                break;
            }
            let started = Instant::now();
            let step = state.step;
            let epoch = step / self.steps_per_epoch;
            if order.0 != epoch {
                order = (
                    epoch,
                    epoch_order(self.examples.len(), config.train.seed, epoch),
                );
            }
            let at = (step % self.steps_per_epoch) * batch_size;
            let batch = self.examples.batch::<B>(
                &order.1[at..at + batch_size],
                self.pad_id,
                self.frozen.as_ref(),
                SplitMix64::derived(config.train.seed, &[stream::DROPOUT, step as u64]).next_u64(),
                &self.device,
            );
            let output = model.step(batch);
            let mut grads = output.grads;
            let grad_norm = (config.train.max_grad_norm > 0.0)
                .then(|| clip_global_norm::<B, _>(&model, &mut grads, config.train.max_grad_norm));
            let lr = schedule.step();
            model = model.optimize(&mut optim, lr, grads);
            let StepItem { loss, decay } = output.item.sync();
            if !loss.is_finite() {
                return Err(Error::Usage(format!(
                    "the loss became {loss} at step {} (learning rate {lr:e}); the last checkpoint is step {saved_at}",
                    step + 1
                )));
            }
            state.step += 1;
            let per_second = rate.add(
                batch_size * self.examples.sentences_per_example(),
                started.elapsed().as_secs_f64(),
            );
            log.write(&serde_json::json!({
                "kind": "step", "step": state.step, "epoch": epoch, "loss": loss, "lr": lr,
                "grad_norm": grad_norm, "sentences_per_second": per_second,
            }))?;
            renderer.update_train(numeric(metric::LOSS, loss, format!("{loss:.4}")));
            renderer.update_train(numeric(metric::LR, lr, format!("{lr:.2e}")));
            renderer.update_train(numeric(
                metric::THROUGHPUT,
                per_second,
                format!("{per_second:.1}"),
            ));
            if let Some((gap, weight)) = decay {
                let stats = DecayStats::of(&gap, &weight);
                log.write(&serde_json::json!({
                    "kind": "decay", "step": state.step, "mean_weight": stats.mean_weight,
                    "fraction_decayed": stats.fraction_decayed, "mean_gap": stats.mean_gap,
                    "weights": stats.histogram,
                }))?;
                stats.report(renderer);
            }
            renderer.render_train(self.progress(state.step), Vec::new());

            let last = state.step == self.total_steps;
            if !config.eval.tasks.is_empty() && (state.step % config.eval.every_steps == 0 || last)
            {
                self.evaluate_and_select(&model, &mut state, &mut log, renderer)?;
            }
            if state.step % config.checkpoint_every() == 0 || last {
                checkpoints.save::<B, _, _>(&model, &optim, &state, config.checkpoint.keep_last)?;
                saved_at = state.step;
            }
        }
        if interrupted && saved_at != state.step {
            renderer.update_train(status("stopping: writing a checkpoint"));
            checkpoints.save::<B, _, _>(&model, &optim, &state, config.checkpoint.keep_last)?;
        }
        if !interrupted && config.eval.tasks.is_empty() {
            self.export_best(&model.valid().encoder, state.step, f64::NAN)?;
        }
        Ok(TrainOutcome {
            steps: state.step,
            best: state.best,
            interrupted,
        })
    }

    /// Evaluates on the dev tasks, keeps the model if it is the best so far,
    /// and reports the scores.
    fn evaluate_and_select(
        &self,
        model: &ContrastiveModel<B>,
        state: &mut TrainState,
        log: &mut MetricsLog,
        renderer: &mut dyn MetricsRendererTraining,
    ) -> Result<()> {
        let config = &self.config;
        renderer.update_train(status("evaluating on the dev sets"));
        renderer.render_train(self.progress(state.step), Vec::new());
        let inference = model.valid();
        let report = self.evaluate_dev(&inference.encoder)?;
        let score = report.spearman(config.eval.select_by).unwrap_or(f64::NAN);
        let improved = state.best.is_none_or(|(best, _)| score > best);
        if improved {
            state.best = Some((score, state.step));
            self.export_best(&inference.encoder, state.step, score)?;
        }
        let scores: serde_json::Map<String, serde_json::Value> = report
            .scores
            .iter()
            .map(|s| (s.task.clone(), serde_json::json!(s.spearman)))
            .collect();
        log.write(&serde_json::json!({
            "kind": "eval", "step": state.step, "spearman": scores, "best": improved,
        }))?;
        for s in &report.scores {
            renderer.update_valid(numeric(
                &metric::dev(&s.task),
                s.spearman,
                format!("{:.2}", s.spearman),
            ));
        }
        renderer.render_valid(self.progress(state.step), Vec::new());
        Ok(())
    }

    fn progress(&self, step: usize) -> TrainingProgress {
        TrainingProgress {
            progress: Some(Progress {
                items_processed: step,
                items_total: self.total_steps,
            }),
            global_progress: Progress {
                items_processed: step.saturating_sub(1) / self.steps_per_epoch + 1,
                items_total: self.total_steps.div_ceil(self.steps_per_epoch),
            },
            iteration: Some(step),
        }
    }

    fn embedder<'a>(
        &'a self,
        encoder: &'a SentenceEncoder<B::InnerBackend>,
    ) -> Embedder<'a, B::InnerBackend> {
        Embedder {
            encoder,
            tokenizer: &self.tokenizer,
            pad_id: self.pad_id,
            pooling: self.config.model.eval_pooling,
            batch_size: self.config.eval.batch_size,
            device: self.device.clone(),
        }
    }

    fn evaluate_dev(&self, encoder: &SentenceEncoder<B::InnerBackend>) -> Result<StsReport> {
        evaluate(
            &self.embedder(encoder),
            &self.config.eval.tasks,
            &senteval_dir(&self.config),
        )
    }

    fn export_best(
        &self,
        encoder: &SentenceEncoder<B::InnerBackend>,
        step: usize,
        score: f64,
    ) -> Result<()> {
        let meta = FolderMeta {
            pooling: self.config.model.eval_pooling,
            max_len: self.config.model.max_len,
            provenance: serde_json::json!({
                "run_dir": self.config.run_dir, "step": step,
                "selected_by": self.config.eval.select_by.key(), "spearman": score,
                "source_model": self.config.model.path,
            }),
        };
        write_model_folder(
            encoder,
            &self.model_dir,
            &self.config.run_dir.join(files::BEST),
            &meta,
        )
    }
}

/// The SentEval directory of a run's configuration.
pub fn senteval_dir(config: &TrainConfig) -> PathBuf {
    config
        .eval
        .data
        .clone()
        .unwrap_or_else(|| data_root().join("senteval"))
}

/// Evaluates the run's best model on the seven test tasks and saves the
/// results in the run directory.
pub fn final_test<B: burn::tensor::backend::Backend>(
    config: &TrainConfig,
    device: &B::Device,
) -> Result<StsReport> {
    let best = config.run_dir.join(files::BEST);
    let model = LoadedModel::<B>::from_dir(&best, &LoadOptions::default(), device)?;
    let embedder = Embedder::of(
        &model,
        config.model.eval_pooling,
        config.eval.batch_size,
        device,
    );
    let report = evaluate(&embedder, &StsTask::TEST_SUITE, &senteval_dir(config))?;
    let path = config.run_dir.join(files::TEST_RESULTS);
    write_atomic(&path, |w| {
        serde_json::to_writer_pretty(&mut *w, &report)?;
        Ok(())
    })?;
    Ok(report)
}

/// What the decay did to one batch's own hard negatives.
#[derive(Debug, Clone, PartialEq)]
pub struct DecayStats {
    /// Mean weight left on the own hard negatives' logits (1: undecayed).
    pub mean_weight: f64,
    /// Fraction of own hard negatives with weight at most 0.5.
    pub fraction_decayed: f64,
    /// Mean student-minus-frozen logit `s - s'`.
    pub mean_gap: f64,
    /// Weights in 10 bins over [0, 1].
    pub histogram: Vec<u64>,
}

impl DecayStats {
    /// Statistics of per-triplet `s - s'` and weights.
    pub fn of(gap: &[f64], weight: &[f64]) -> Self {
        let n = weight.len().max(1) as f64;
        let mut histogram = vec![0u64; 10];
        for &w in weight {
            histogram[((w * 10.0).floor().max(0.0) as usize).min(9)] += 1;
        }
        Self {
            mean_weight: weight.iter().sum::<f64>() / n,
            fraction_decayed: weight.iter().filter(|&&w| w <= 0.5).count() as f64 / n,
            mean_gap: gap.iter().sum::<f64>() / gap.len().max(1) as f64,
            histogram,
        }
    }

    /// Sends the statistics to the dashboard or log.
    pub fn report(&self, renderer: &mut dyn MetricsRendererTraining) {
        for (stat, v) in
            metric::DECAY_STATS
                .iter()
                .zip([self.mean_weight, self.fraction_decayed, self.mean_gap])
        {
            renderer.update_train(numeric(&metric::decay(stat), v, format!("{v:.3}")));
        }
        let counts = serde_json::to_string(&self.histogram).expect("numbers serialise");
        renderer.update_train(MetricState::Generic(entry(
            metric::DECAY_HISTOGRAM,
            counts.clone(),
            counts,
        )));
    }
}

/// Sentences per second over the last few steps.
#[derive(Default)]
struct Rate {
    recent: std::collections::VecDeque<(usize, f64)>,
}

impl Rate {
    fn add(&mut self, sentences: usize, seconds: f64) -> f64 {
        self.recent.push_back((sentences, seconds));
        if self.recent.len() > 20 {
            self.recent.pop_front();
        }
        let (n, s) = self
            .recent
            .iter()
            .fold((0, 0.0), |(n, s), (a, b)| (n + a, s + b));
        n as f64 / s.max(1e-9)
    }
}

/// A numeric metric update for the renderer.
pub fn numeric(name: &str, value: f64, formatted: String) -> MetricState {
    MetricState::Numeric(
        entry(name, formatted, value.to_string()),
        NumericEntry::Value(value),
    )
}

/// A status line for the renderer.
pub fn status(text: &str) -> MetricState {
    MetricState::Generic(entry(metric::STATUS, text.to_string(), text.to_string()))
}

fn entry(name: &str, formatted: String, serialized: String) -> MetricEntry {
    MetricEntry::new(
        MetricId::new(Arc::new(name.to_string())),
        SerializedEntry::new(formatted, serialized),
    )
}
