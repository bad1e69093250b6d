//! `gcse train`: a run of the objective the experiment file chooses, with
//! the dashboard (or log lines), then the test-suite table of the best model.

use std::io::IsTerminal;

use burn::tensor::backend::AutodiffBackend;
use burn::train::renderer::MetricsRendererTraining;
use burn::train::Interrupter;

use crate::backend::BackendTask;
use crate::config::TrainConfig;
use crate::dashboard::renderer::{LogRenderer, TuiRenderer};
use crate::error::{Error, Result};
use crate::eval::registry::{self as tasks, TEST_SUITE};
use crate::model::cross_encoder::ModelKind;
use crate::objective::registry::{self, ObjectiveTask};
use crate::objective::Objective;
use crate::run_dir::RunDir;
use crate::signals;
use crate::train::plots::write_run_plots;
use crate::train::run::{final_test, Trainer};

/// `gcse train` on a chosen backend.
pub struct TrainTask {
    /// The experiment.
    pub config: TrainConfig,
    /// Continue from the newest checkpoint.
    pub resume: bool,
    /// Plain log lines even on a terminal.
    pub no_tui: bool,
    /// Stop cleanly after this many steps in all.
    pub stop_after: Option<usize>,
    /// The backend, as printed.
    pub backend: String,
}

impl BackendTask for TrainTask {
    type Output = Result<()>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<()> {
        let section = self.config.objective.clone();
        registry::dispatch(&section, WithObjective::<B> { task: self, device })
            .map_err(Error::Usage)?
    }
}

/// [`TrainTask`] with its backend chosen, waiting for its objective.
struct WithObjective<B: AutodiffBackend> {
    task: TrainTask,
    device: B::Device,
}

impl<B: AutodiffBackend> ObjectiveTask for WithObjective<B> {
    type Output = Result<()>;

    fn run<O: Objective>(self, objective: O::Config) -> Result<()> {
        let (task, device) = (self.task, self.device);
        let config = task.config;
        let run = RunDir::new(&config.run_dir);
        let _lock = run.lock()?;
        let evaluators = tasks::load(&config.eval.tasks, &config.eval.eval_data())?;
        // The test suite's files are read now, so that missing ones stop
        // the run before it starts, not after it trained.
        let test_suite = if config.eval.final_test {
            let names: Vec<String> = TEST_SUITE.iter().map(|t| t.to_string()).collect();
            tasks::load(&names, &config.eval.eval_data())?
        } else {
            Vec::new()
        };
        let mut trainer = Trainer::<B, O>::prepare(
            config.clone(),
            &objective,
            evaluators,
            task.resume,
            &task.backend,
            &device,
        )?;
        trainer.stop_after = task.stop_after;
        for line in trainer.summary() {
            println!("{line}");
        }
        match trainer.resume_from {
            Some(step) => println!("resuming from the checkpoint of step {step}"),
            None if task.resume => println!("no checkpoint to resume from: starting afresh"),
            None => {}
        }
        println!(
            "{} steps ({} per epoch, batch {}), run directory {}",
            trainer.total_steps,
            trainer.steps_per_epoch,
            config.train.batch_size,
            config.run_dir.display()
        );
        let state = trainer.dashboard()?;
        let interrupter = Interrupter::new();
        let signals_stop = signals::stop_on_signals(&interrupter)?;
        let outcome = if !task.no_tui && std::io::stdout().is_terminal() {
            let mut tui = TuiRenderer::start(state, interrupter.clone())
                .map_err(|e| Error::Backend(format!("cannot start the dashboard: {e}")))?;
            let outcome = trainer.run(&mut tui as &mut dyn MetricsRendererTraining, &interrupter);
            tui.finish();
            outcome?
        } else {
            let mut log = LogRenderer::new(state, config.train.log_every, std::io::stdout());
            trainer.run(&mut log, &interrupter)?
        };
        // From here on a signal ends gcse at once, as without a handler.
        drop(signals_stop);
        let best = outcome.best.map_or("none".into(), |(score, step)| {
            format!("{} {score:.2} at step {step}", config.eval.select_by)
        });
        if outcome.interrupted {
            let by =
                signals::received().map_or(String::new(), |s| format!(" by {}", signals::name(s)));
            println!(
                "stopped{by} at step {} (checkpoint written; continue with --resume); best so far: {best}",
                outcome.steps
            );
            return Ok(());
        }
        println!("finished {} steps; best: {best}", outcome.steps);
        write_run_plots(&run, &config, O::panel(&objective))?;
        if config.eval.final_test {
            let report = final_test::<B::InnerBackend>(
                &run,
                &config.model,
                &config.eval,
                &test_suite,
                &device,
            )?;
            let how = match O::MODEL {
                ModelKind::BiEncoder => config.model.eval_pooling.to_string(),
                ModelKind::CrossEncoder => "cross-encoder".to_string(),
            };
            println!("test suite, best model ({how}):");
            println!("{}", report.table());
        }
        Ok(())
    }
}
