//! The training loop, for any [`Objective`]: data order, dropout seeds,
//! optimizer and schedule, evaluation every N steps with the best model
//! exported, and atomic checkpoints from which `--resume` continues exactly
//! (same losses as an uninterrupted run on the same backend).
//!
//! The objective lays out each batch and computes its loss and statistics;
//! the evaluators score the dev sets; the loop knows neither by name.
//! Optimizers and the schedule are burn-optim's; progress goes to a
//! burn-train [`MetricsRendererTraining`]. burn-train's own `Learner` loop
//! is not used: it checkpoints per epoch and cannot resume mid-epoch,
//! evaluate a whole dev set every N steps, or write checkpoints atomically.

use std::path::PathBuf;
use std::time::Instant;

use burn::data::dataloader::Progress;
use burn::module::AutodiffModule;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::lr_scheduler::LrScheduler;
use burn::optim::{AdamConfig, AdamWConfig, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::train::renderer::{MetricsRendererTraining, TrainingProgress};
use burn::train::Interrupter;

use super::checkpoint::{Checkpoints, TrainState};
use super::clip::{clip_global_norm, global_norm, scale_grads};
use super::finite::weights_finite;
use super::loss_scale::{LossScale, Verdict};
use super::metric::{self, counts, numeric, status};
use super::metrics_log::{
    read_log, EvalEntry, LogEntry, MetricsLog, StartEntry, StatsEntry, StepEntry,
};
use super::plots::replay;
use super::schedule::LinearWarmupDecay;
use super::step::{ContrastiveModel, TrainBatch, Trained};
use super::student::Student;
use crate::config::{EvalSection, ModelSection, OptimizerKind, TrainConfig, TrainSection};
use crate::dashboard::state::DashboardState;
use crate::data::batcher::TokenBatch;
use crate::data::mix::{epoch_order, stream};
use crate::data::tokenizer::SentenceTokenizer;
use crate::embed::embedder::Embedder;
use crate::error::{Error, Result};
use crate::eval::evaluator::{
    evaluate, evaluate_pairs, DevTitles, EvalReport, Evaluator, MetricInfo, Selection, MEAN,
};
use crate::json_file::write_json;
use crate::loss::Readings;
use crate::model::autocast::with_products_in;
use crate::model::cross_encoder::{CrossEncoder, CrossScorer, LoadedCrossEncoder, ModelKind};
use crate::model::encoder::SentenceEncoder;
use crate::model::export::{write_cross_encoder_folder, write_model_folder, FolderMeta};
use crate::model::load::{LoadOptions, LoadedModel};
use crate::objective::registry;
use crate::objective::stats::StatsPanel;
use crate::objective::{section_of, Objective, Setup};
use crate::rng::SplitMix64;
use crate::run_dir::RunDir;

/// A run ready to train: model, objective with its data, evaluators and (on
/// resume) where to continue.
pub struct Trainer<B: AutodiffBackend, O: Objective> {
    config: TrainConfig,
    run: RunDir,
    model_dir: PathBuf,
    model: ContrastiveModel<B>,
    objective: O,
    panel: Option<StatsPanel>,
    evaluators: Vec<Box<dyn Evaluator>>,
    selection: Selection,
    /// The metric `selection` picks; `None` without evaluators.
    selected: Option<MetricInfo>,
    tokenizer: SentenceTokenizer,
    pad_id: u32,
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

impl<B: AutodiffBackend, O: Objective> Trainer<B, O> {
    /// Loads the model and the objective's data and checks the run
    /// directory: a new run needs a directory without a run in it; `resume`
    /// needs the same experiment as the run was started with. `config`'s
    /// objective section becomes `objective`'s; `evaluators` score the dev
    /// sets (their names are the dev tasks). `backend` describes the device
    /// for the logs.
    pub fn prepare(
        mut config: TrainConfig,
        objective: &O::Config,
        evaluators: Vec<Box<dyn Evaluator>>,
        resume: bool,
        backend: &str,
        device: &B::Device,
    ) -> Result<Self> {
        config.objective = section_of::<O>(objective);
        O::validate(objective, &config).map_err(Error::Usage)?;
        let names: Vec<&str> = evaluators.iter().map(|e| e.name()).collect();
        if names != config.eval.tasks {
            return Err(Error::Usage(format!(
                "`eval.tasks` is [{}] but the evaluators are [{}]",
                config.eval.tasks.join(", "),
                names.join(", ")
            )));
        }
        let (selection, selected) = select_by(&config.eval.select_by, &evaluators)?;
        let run = RunDir::new(&config.run_dir);
        run.check(resume, |saved| Ok(registry::read(saved)? == config))?;

        let student = Student::<B>::load(
            &config.model,
            O::MLP_INIT,
            O::MODEL,
            O::NAME,
            config.train.seed,
            device,
        )?;
        let setup = Setup::<B> {
            model: &config.model,
            data: &config.data,
            filter: &config.filter,
            seed: config.train.seed,
            temperature: config.train.temperature,
            batch_size: config.train.batch_size,
            inference_batch: config.eval.batch_size,
            tokenizer: &student.tokenizer,
            run: &run,
            device,
        };
        let prepared = O::prepare(objective, &setup)?;
        let (steps_per_epoch, total_steps) = steps(&config.train, prepared.examples())?;
        // The run directory is claimed only once the model and data loaded.
        run.claim(&config.to_toml())?;
        prepared.save(&run)?;
        let resume_from = if resume { run.resume_step()? } else { None };
        Ok(Self {
            model: student.model,
            pad_id: student.pad_id,
            tokenizer: student.tokenizer,
            model_dir: student.dir,
            panel: O::panel(objective),
            objective: prepared,
            evaluators,
            selection,
            selected,
            resume_from,
            total_steps,
            steps_per_epoch,
            run,
            config,
            backend: backend.to_string(),
            device: device.clone(),
            stop_after: None,
        })
    }

    /// Lines for the console on the objective's data.
    pub fn summary(&self) -> Vec<String> {
        self.objective.summary()
    }

    /// How the dashboard titles the dev curves.
    pub fn dev_titles(&self) -> DevTitles {
        DevTitles::of(&self.evaluators, &self.selection.to_string())
    }

    /// The dashboard of this run: empty for a new run; on resume, with the
    /// curves and evaluations logged up to the checkpoint, so that "best"
    /// counts the evaluations before the resume too.
    pub fn dashboard(&self) -> Result<DashboardState> {
        let mut state = match self.resume_from {
            Some(step) => {
                let entries: Vec<LogEntry> = read_log(&self.run.metrics())?
                    .into_iter()
                    .filter(|e| e.step() <= step)
                    .collect();
                let mut state = replay(&self.config, &entries, self.panel.clone());
                state.restart_clock();
                state
            }
            None => {
                let tasks: Vec<String> = self
                    .evaluators
                    .iter()
                    .map(|e| e.name().to_string())
                    .collect();
                DashboardState::new(
                    self.run.root().display().to_string(),
                    self.backend.clone(),
                    self.dev_titles(),
                    &tasks,
                    self.panel.clone(),
                )
            }
        };
        state.backend = self.backend.clone();
        state.dev_titles = self.dev_titles();
        Ok(state)
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

    fn run_with<Opt: Optimizer<ContrastiveModel<B>, B>>(
        mut self,
        optim: Opt,
        renderer: &mut dyn MetricsRendererTraining,
        interrupter: &Interrupter,
    ) -> Result<TrainOutcome> {
        let checkpoints = self.run.checkpoints();
        let (mut model, mut optim, mut state) = match self.resume_from {
            Some(step) => checkpoints.load(step, self.model.clone(), optim, &self.device)?,
            None => (
                self.model.clone(),
                optim,
                TrainState {
                    step: 0,
                    best: None,
                    objective: None,
                    loss_scale: None,
                    files: Default::default(),
                },
            ),
        };
        let kept = state.loss_scale.take();
        state.loss_scale = self
            .config
            .train
            .precision
            .scales_loss()
            .then(|| kept.unwrap_or_default());
        if let Some(saved) = state.objective.take() {
            self.objective
                .restore(saved)
                .map_err(|message| Error::Load {
                    path: checkpoints.state_file(state.step),
                    message: format!("`objective`: {message}"),
                })?;
        }
        let config = &self.config;
        let mut schedule = LinearWarmupDecay::new(
            config.train.lr,
            config.train.warmup_steps,
            config.train.schedule_steps.unwrap_or(self.total_steps),
        )
        .load_record::<B>(state.step);
        let mut log = MetricsLog::open(&self.run.metrics(), state.step)?;
        log.write(&LogEntry::Start(Box::new(StartEntry {
            step: state.step,
            total_steps: self.total_steps,
            backend: self.backend.clone(),
            objective: Some(O::NAME.to_string()),
            steps_per_epoch: Some(self.steps_per_epoch),
            dev: Some(self.dev_titles()),
            panel: self.panel.clone(),
        })))?;
        let mut order = EpochOrder::default();
        let mut saved_at = self.resume_from;
        let mut interrupted = false;
        let mut rate = Rate::default();
        if state.step == 0 && config.eval.at_start && !self.evaluators.is_empty() {
            self.evaluate_and_select(&model, &mut state, &mut log, renderer)?;
        }
        while state.step < self.total_steps {
            if interrupter.should_stop() || self.stop_after.is_some_and(|n| state.step >= n) {
                interrupted = true;
                break;
            }
            let started = Instant::now();
            let indices = order.batch(&self, state.step);
            let (next, done) = self
                .step(
                    model,
                    &mut optim,
                    &mut schedule,
                    state.step,
                    indices,
                    state.loss_scale.as_mut(),
                )
                .map_err(|diverged| diverged.error(saved_at))?;
            model = next;
            self.objective.observe(indices, &done.readings);
            state.step += 1;
            let seconds = started.elapsed().as_secs_f64();
            let per_second = rate.add(
                config.train.batch_size * self.objective.sentences_per_example(),
                seconds,
            );
            self.report(&done, state.step, seconds, per_second, &mut log, renderer)?;

            let last = state.step == self.total_steps;
            if !self.evaluators.is_empty() && (state.step % config.eval.every_steps == 0 || last) {
                self.evaluate_and_select(&model, &mut state, &mut log, renderer)?;
            }
            if state.step % config.checkpoint_every() == 0 || last {
                state.objective = self.objective.state();
                save_finite(&checkpoints, &model, &optim, &state, config, saved_at)?;
                saved_at = Some(state.step);
            }
        }
        if interrupted && saved_at != Some(state.step) && state.step > 0 {
            renderer.update_train(status("stopping: writing a checkpoint"));
            state.objective = self.objective.state();
            save_finite(&checkpoints, &model, &optim, &state, config, saved_at)?;
        }
        if !interrupted && self.evaluators.is_empty() {
            self.export_best(&model.valid().into(), state.step, f64::NAN)?;
        }
        Ok(TrainOutcome {
            steps: state.step,
            best: state.best,
            interrupted,
        })
    }

    /// Optimizer step `step + 1` on the examples `indices`: the batch the
    /// objective lays out, its dropout and objective noise seeded by the
    /// step, gradients clipped, the learning rate of the schedule.
    ///
    /// A loss or gradient norm that is not finite stops the step before the
    /// update, so the weights stay those of the step before. With
    /// `loss_scale` (f16-mixed) the gradients are those of the scaled loss,
    /// divided back before clipping, and gradients that overflowed skip the
    /// update and lower the scale instead, unless it is at its smallest.
    fn step<Opt: Optimizer<ContrastiveModel<B>, B>>(
        &self,
        model: ContrastiveModel<B>,
        optim: &mut Opt,
        schedule: &mut LinearWarmupDecay,
        step: usize,
        indices: &[usize],
        loss_scale: Option<&mut LossScale>,
    ) -> std::result::Result<(ContrastiveModel<B>, StepDone), StepFailed> {
        let train = &self.config.train;
        let seed = |purpose| SplitMix64::derived(train.seed, &[purpose, step as u64]).next_u64();
        let (rows, constants) =
            self.objective
                .batch::<B>(indices, seed(stream::OBJECTIVE), &self.device)?;
        let batch = TrainBatch {
            tokens: TokenBatch::new(&rows, self.pad_id, &self.device),
            constants,
            dropout_seed: seed(stream::DROPOUT),
        };
        let scale = loss_scale.as_ref().map(|s| s.scale);
        let output = with_products_in(train.precision.products(), || {
            model.step(
                self.objective.loss(),
                &batch,
                train.grad_cache_chunk,
                scale.unwrap_or(1.0),
            )
        });
        let mut grads = output.grads;
        if let Some(scale) = scale {
            scale_grads::<B, _>(&model, &mut grads, scale.recip());
        }
        let grad_norm = if train.max_grad_norm > 0.0 {
            clip_global_norm::<B, _>(&model, &mut grads, train.max_grad_norm)
        } else {
            global_norm::<B, _>(&model, &grads)
        };
        let lr = schedule.step();
        let (loss, readings) = output.item.read();
        let finite = loss.is_finite() && grad_norm.is_finite();
        let verdict = match loss_scale {
            Some(s) => s.observe(finite),
            None if finite => Verdict::Apply,
            None => Verdict::Diverged,
        };
        let done = StepDone {
            epoch: step / self.steps_per_epoch,
            loss,
            lr,
            grad_norm: Some(grad_norm),
            loss_scale: scale,
            readings,
        };
        if verdict == Verdict::Skip {
            return Ok((model, done));
        }
        if verdict == Verdict::Diverged {
            return Err(StepFailed::Diverged(Divergence {
                step: step + 1,
                loss,
                grad_norm,
                lr,
            }));
        }
        Ok((optim.step(lr, model, grads), done))
    }

    /// Logs a finished step and shows it: loss, rate, throughput, and the
    /// objective's statistics under its panel's name.
    fn report(
        &self,
        done: &StepDone,
        step: usize,
        seconds: f64,
        per_second: f64,
        log: &mut MetricsLog,
        renderer: &mut dyn MetricsRendererTraining,
    ) -> Result<()> {
        let StepDone {
            epoch,
            loss,
            lr,
            grad_norm,
            loss_scale,
            ..
        } = *done;
        log.write(&LogEntry::Step(StepEntry {
            step,
            epoch,
            loss,
            lr,
            grad_norm: grad_norm.filter(|g| g.is_finite()),
            sentences_per_second: per_second,
            seconds: Some(seconds),
            loss_scale,
        }))?;
        renderer.update_train(numeric(metric::LOSS, loss, format!("{loss:.4}")));
        renderer.update_train(numeric(metric::LR, lr, format!("{lr:.2e}")));
        renderer.update_train(numeric(
            metric::THROUGHPUT,
            per_second,
            format!("{per_second:.1}"),
        ));
        let stats = self.objective.stats(&done.readings);
        if let Some(panel) = self.panel.as_ref().filter(|_| !stats.is_empty()) {
            log.write(&LogEntry::Stats(StatsEntry::new(&panel.name, step, &stats)))?;
            for (key, v) in &stats.values {
                renderer.update_train(numeric(&panel.metric(key), *v, format!("{v:.3}")));
            }
            for (key, h) in &stats.histograms {
                renderer.update_train(counts(&panel.metric(key), h));
            }
        }
        renderer.render_train(self.progress(step), Vec::new());
        Ok(())
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
        renderer.update_train(status("evaluating on the dev sets"));
        renderer.render_train(self.progress(state.step), Vec::new());
        let inference: Trained<B::InnerBackend> = model.valid().into();
        let report = match &inference {
            Trained::Bi(encoder) => evaluate(&self.embedder(encoder), &self.evaluators)?,
            Trained::Cross(cross) => evaluate_pairs(&self.scorer(cross), &self.evaluators)?,
        };
        let score = report.selected(&self.selection);
        let higher_is_better = self.selected.is_none_or(|m| m.higher_is_better);
        let improved = improves(score, state.best.map(|b| b.0), higher_is_better);
        if improved {
            state.best = Some((score, state.step));
            self.export_best(&inference, state.step, score)?;
        }
        log.write(&LogEntry::Eval(EvalEntry::new(
            state.step,
            &report.scores,
            improved,
        )))?;
        for s in &report.scores {
            let v = s.primary_value();
            renderer.update_valid(numeric(&metric::dev(&s.task), v, format!("{v:.2}")));
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

    fn scorer<'a>(
        &'a self,
        model: &'a CrossEncoder<B::InnerBackend>,
    ) -> CrossScorer<'a, B::InnerBackend> {
        CrossScorer {
            model,
            tokenizer: &self.tokenizer,
            pad_id: self.pad_id,
            batch_size: self.config.eval.batch_size,
            device: self.device.clone(),
        }
    }

    /// Writes the run's model: provenance names the step and the selected
    /// score under its metric's name.
    fn export_best(&self, model: &Trained<B::InnerBackend>, step: usize, score: f64) -> Result<()> {
        let mut provenance = serde_json::json!({
            "run_dir": self.config.run_dir, "step": step,
            "selected_by": self.selection.to_string(),
            "source_model": self.config.model.path,
        });
        if let Some(metric) = self.selected {
            provenance[metric.name] = serde_json::json!(score);
        }
        let meta = FolderMeta {
            pooling: self.config.model.eval_pooling,
            max_len: self.config.model.max_len,
            provenance,
        };
        match model {
            Trained::Bi(encoder) => {
                write_model_folder(encoder, &self.model_dir, &self.run.best(), &meta, &[])
            }
            Trained::Cross(cross) => {
                write_cross_encoder_folder(cross, &self.model_dir, &self.run.best(), &meta, &[])
            }
        }
    }
}

/// Optimizer steps per epoch (the last, incomplete batch dropped) and in
/// all, for `examples` examples.
fn steps(train: &TrainSection, examples: usize) -> Result<(usize, usize)> {
    let batch = train.batch_size;
    let per_epoch = examples / batch;
    if per_epoch == 0 {
        return Err(Error::Usage(format!(
            "{examples} training examples make no batch of {batch} (train.batch_size)"
        )));
    }
    let all = per_epoch * train.epochs;
    Ok((per_epoch, train.max_steps.map_or(all, |m| m.min(all))))
}

/// The selection `select_by` names among `evaluators`, and its metric.
fn select_by(
    select_by: &str,
    evaluators: &[Box<dyn Evaluator>],
) -> Result<(Selection, Option<MetricInfo>)> {
    let selection = Selection::parse(select_by);
    if evaluators.is_empty() {
        return Ok((selection, None));
    }
    if selection.task == MEAN {
        return Ok((selection, Some(evaluators[0].metrics()[0])));
    }
    let names: Vec<&str> = evaluators.iter().map(|e| e.name()).collect();
    let task = evaluators
        .iter()
        .find(|e| e.name() == selection.task)
        .ok_or_else(|| {
            Error::Usage(format!(
                "`eval.select_by` (\"{select_by}\") names none of the tasks evaluated in training ({})",
                names.join(", ")
            ))
        })?;
    let metric = *selection.metric_of(task.metrics()).ok_or_else(|| {
        Error::Usage(format!(
            "`eval.select_by`: task {} reports no metric \"{}\"",
            selection.task,
            selection.metric.clone().unwrap_or_default()
        ))
    })?;
    Ok((selection, Some(metric)))
}

/// Evaluates `run`'s best model (embedded with `model.eval_pooling`; a
/// cross-encoder scoring each pair) on `test_suite` (the seven STS test
/// tasks) and saves the results in the run directory.
pub fn final_test<B: burn::tensor::backend::Backend>(
    run: &RunDir,
    model: &ModelSection,
    eval: &EvalSection,
    test_suite: &[Box<dyn Evaluator>],
    device: &B::Device,
) -> Result<EvalReport> {
    let dir = run.best();
    let report = match ModelKind::of(&dir) {
        ModelKind::BiEncoder => {
            let best = LoadedModel::<B>::from_dir(&dir, &LoadOptions::default(), device)?;
            let embedder = Embedder::of(&best, model.eval_pooling, eval.batch_size, device);
            evaluate(&embedder, test_suite)?
        }
        ModelKind::CrossEncoder => {
            let best = LoadedCrossEncoder::<B>::trained(&dir, &LoadOptions::default(), device)?;
            evaluate_pairs(&best.scorer(eval.batch_size, device), test_suite)?
        }
    };
    write_json(&run.test_results(), &report)?;
    Ok(report)
}

/// Whether `score` is the best so far after `best`: a score that is not a
/// finite number never is; a best that is not one (saved by an earlier
/// version) is always beaten.
fn improves(score: f64, best: Option<f64>, higher_is_better: bool) -> bool {
    score.is_finite()
        && best.is_none_or(|best| {
            !best.is_finite()
                || (higher_is_better && score > best)
                || (!higher_is_better && score < best)
        })
}

/// Saves a checkpoint of `model` unless a weight is not finite (an update
/// that overflowed): such a checkpoint could never be resumed, so the run
/// stops with an error naming the last good one (`saved_at`).
fn save_finite<B, Opt>(
    checkpoints: &Checkpoints,
    model: &ContrastiveModel<B>,
    optim: &Opt,
    state: &TrainState,
    config: &TrainConfig,
    saved_at: Option<usize>,
) -> Result<()>
where
    B: AutodiffBackend,
    Opt: Optimizer<ContrastiveModel<B>, B>,
{
    if !weights_finite::<B, _>(model) {
        return Err(StepFailed::WeightsNotFinite(state.step).error(saved_at));
    }
    checkpoints.save::<B, _, _>(model, optim, state, config.checkpoint.keep_last)
}

/// Why a step left the run unable to go on.
enum StepFailed {
    /// The loss or the gradient norm was not finite; no update was made.
    Diverged(Divergence),
    /// The weights after this step are not all finite.
    WeightsNotFinite(usize),
    /// Any other error.
    Other(Error),
}

/// A step whose loss or gradient norm was not finite.
struct Divergence {
    step: usize,
    loss: f64,
    grad_norm: f64,
    lr: f64,
}

impl From<Error> for StepFailed {
    fn from(e: Error) -> Self {
        StepFailed::Other(e)
    }
}

impl StepFailed {
    /// The error the run ends with; `saved_at` is the newest checkpoint.
    fn error(self, saved_at: Option<usize>) -> Error {
        let last = match saved_at {
            Some(step) => format!(
                "the last checkpoint is step {step} (`gcse export` with `--step {step}` writes its model; \
                 a lower `train.lr` in a new run avoids the divergence)"
            ),
            None => "no checkpoint was written".into(),
        };
        match self {
            StepFailed::Diverged(d) => Error::Diverged(format!(
                "training diverged at step {}: loss {}, gradient norm {} (learning rate {:e}); \
                 the step's update was not applied and nothing of it saved; {last}",
                d.step, d.loss, d.grad_norm, d.lr
            )),
            StepFailed::WeightsNotFinite(step) => Error::Diverged(format!(
                "training diverged: weights became NaN or infinite by step {step}; \
                 they were not saved; {last}"
            )),
            StepFailed::Other(e) => e,
        }
    }
}

/// What a step did, for the log and the renderer.
struct StepDone {
    epoch: usize,
    loss: f64,
    lr: f64,
    grad_norm: Option<f64>,
    /// The loss scale the step's gradients were taken at (f16-mixed).
    loss_scale: Option<f64>,
    readings: Readings,
}

/// The examples of each epoch in their seeded order, drawn when the epoch
/// begins.
#[derive(Default)]
struct EpochOrder {
    epoch: Option<usize>,
    order: Vec<usize>,
}

impl EpochOrder {
    /// The example indices of step `step + 1`'s batch.
    fn batch<B: AutodiffBackend, O: Objective>(
        &mut self,
        trainer: &Trainer<B, O>,
        step: usize,
    ) -> &[usize] {
        let epoch = step / trainer.steps_per_epoch;
        if self.epoch != Some(epoch) {
            self.order = epoch_order(
                trainer.objective.examples(),
                trainer.config.train.seed,
                epoch,
            );
            self.epoch = Some(epoch);
        }
        let size = trainer.config.train.batch_size;
        let at = (step % trainer.steps_per_epoch) * size;
        &self.order[at..at + size]
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

#[cfg(test)]
mod tests {
    use super::improves;

    #[test]
    fn nan_is_never_the_best_and_never_stays_it() {
        assert!(!improves(f64::NAN, None, true));
        assert!(!improves(f64::NAN, Some(80.0), true));
        assert!(improves(70.0, Some(f64::NAN), true));
        assert!(improves(70.0, None, false));
        assert!(improves(81.0, Some(80.0), true) && !improves(80.0, Some(80.0), true));
        assert!(improves(0.5, Some(0.6), false) && !improves(0.7, Some(0.6), false));
    }
}
