//! `gcse train`: a stage-1 or stage-2 run with the dashboard (or log lines), then the
//! test-suite table of the best model.

use std::io::IsTerminal;

use burn::tensor::backend::AutodiffBackend;
use burn::train::renderer::MetricsRendererTraining;
use burn::train::Interrupter;

use crate::backend::BackendTask;
use crate::config::TrainConfig;
use crate::dashboard::renderer::{LogRenderer, TuiRenderer};
use crate::dashboard::state::DashboardState;
use crate::error::{Error, Result};
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
        let config = self.config;
        let mut trainer =
            Trainer::<B>::prepare(config.clone(), self.resume, &self.backend, &device)?;
        trainer.stop_after = self.stop_after;
        if let Some(report) = &trainer.filter_report {
            print!("{report}");
        }
        println!("data: {}", trainer.data_summary);
        match trainer.resume_from {
            Some(step) => println!("resuming from the checkpoint of step {step}"),
            None if self.resume => println!("no checkpoint to resume from: starting afresh"),
            None => {}
        }
        println!(
            "{} steps ({} per epoch, batch {}), run directory {}",
            trainer.total_steps,
            trainer.steps_per_epoch,
            config.train.batch_size,
            config.run_dir.display()
        );
        let state = DashboardState::new(
            config.run_dir.display().to_string(),
            self.backend,
            config.eval.select_by.key().to_string(),
            &config
                .eval
                .tasks
                .iter()
                .map(|t| t.key().to_string())
                .collect::<Vec<_>>(),
        );
        let interrupter = Interrupter::new();
        let outcome = if !self.no_tui && std::io::stdout().is_terminal() {
            let mut tui = TuiRenderer::start(state, interrupter.clone())
                .map_err(|e| Error::Backend(format!("cannot start the dashboard: {e}")))?;
            let outcome = trainer.run(&mut tui as &mut dyn MetricsRendererTraining, &interrupter);
            tui.finish();
            outcome?
        } else {
            let mut log = LogRenderer::new(state, config.train.log_every, std::io::stdout());
            trainer.run(&mut log, &interrupter)?
        };
        let best = outcome.best.map_or("none".into(), |(score, step)| {
            format!("{} {score:.2} at step {step}", config.eval.select_by)
        });
        if outcome.interrupted {
            println!(
                "stopped at step {} (checkpoint written; continue with --resume); best so far: {best}",
                outcome.steps
            );
            return Ok(());
        }
        println!("finished {} steps; best: {best}", outcome.steps);
        crate::train::plots::write_run_plots(&config.run_dir)?;
        if config.eval.final_test {
            let report = final_test::<B::InnerBackend>(&config, &device)?;
            println!("test suite, best model ({}):", config.model.eval_pooling);
            println!("{}", report.table());
        }
        Ok(())
    }
}
