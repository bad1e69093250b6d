//! Burn-train renderers for the training loop: the terminal dashboard (its
//! own drawing thread, keys, terminal restored on exit and on panic) and a
//! plain line log for non-terminals and `--no-tui`.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use burn::train::renderer::{MetricState, MetricsRendererTraining, ProgressType, TrainingProgress};
use burn::train::Interrupter;
use ratatui::crossterm::event::{self, Event, KeyEventKind};

use super::state::DashboardState;
use super::ui::{clock, render};

/// Set by the panic hook so that the drawing thread stops touching the
/// terminal ratatui's hook has just restored.
static PANICKED: AtomicBool = AtomicBool::new(false);

/// The live terminal dashboard.
pub struct TuiRenderer {
    state: Arc<Mutex<DashboardState>>,
    started: Instant,
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TuiRenderer {
    /// Takes over the terminal and starts drawing `state`. `q` (or Ctrl-C)
    /// asks `interrupter` to stop; tab and 1-4 switch views.
    pub fn start(state: DashboardState, interrupter: Interrupter) -> std::io::Result<Self> {
        let mut terminal = ratatui::try_init()?;
        crate::progress::dashboard_owns_terminal(true);
        let ratatui_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICKED.store(true, Ordering::SeqCst);
            ratatui_hook(info);
        }));
        let state = Arc::new(Mutex::new(state));
        let done = Arc::new(AtomicBool::new(false));
        let (shared, finished) = (state.clone(), done.clone());
        let thread = std::thread::spawn(move || {
            while !finished.load(Ordering::SeqCst) && !PANICKED.load(Ordering::SeqCst) {
                {
                    let mut s = shared.lock().expect("dashboard state");
                    s.work = crate::progress::work_line();
                    if terminal.draw(|f| render(f, &s)).is_err() {
                        break;
                    }
                }
                if event::poll(Duration::from_millis(200)).unwrap_or(false) {
                    if let Ok(Event::Key(key)) = event::read() {
                        if key.kind != KeyEventKind::Press {
                            continue;
                        }
                        let mut s = shared.lock().expect("dashboard state");
                        if s.press(key.code, key.modifiers) {
                            interrupter.stop(Some("stopped from the dashboard"));
                        }
                    }
                }
            }
            if !PANICKED.load(Ordering::SeqCst) {
                ratatui::restore();
            }
        });
        Ok(Self {
            state,
            started: Instant::now(),
            done,
            thread: Some(thread),
        })
    }

    /// Stops drawing and gives the terminal back.
    pub fn finish(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        crate::progress::dashboard_owns_terminal(false);
    }

    fn with_state(&self, f: impl FnOnce(&mut DashboardState)) {
        f(&mut self.state.lock().expect("dashboard state"));
    }
}

impl Drop for TuiRenderer {
    fn drop(&mut self) {
        self.finish();
    }
}

impl MetricsRendererTraining for TuiRenderer {
    fn update_train(&mut self, state: MetricState) {
        self.with_state(|s| s.apply(&state));
    }

    fn update_valid(&mut self, state: MetricState) {
        self.with_state(|s| s.apply(&state));
    }

    fn render_train(&mut self, item: TrainingProgress, _: Vec<ProgressType>) {
        let elapsed = self.started.elapsed().as_secs_f64();
        self.with_state(|s| s.set_progress(&item, elapsed));
    }

    fn render_valid(&mut self, item: TrainingProgress, progress: Vec<ProgressType>) {
        self.render_train(item, progress);
    }
}

/// Plain log lines: one every `every` steps, one per evaluation, and each
/// new status.
pub struct LogRenderer<W: Write + Send + Sync> {
    state: DashboardState,
    every: usize,
    /// The step of the last step line (none twice for one step).
    logged: usize,
    started: Instant,
    out: W,
}

impl<W: Write + Send + Sync> LogRenderer<W> {
    /// Logs `state`'s run to `out`.
    pub fn new(state: DashboardState, every: usize, out: W) -> Self {
        Self {
            state,
            every: every.max(1),
            logged: 0,
            started: Instant::now(),
            out,
        }
    }
}

impl<W: Write + Send + Sync> MetricsRendererTraining for LogRenderer<W> {
    fn update_train(&mut self, update: MetricState) {
        let before = self.state.status.clone();
        self.state.apply(&update);
        if self.state.status != before {
            let _ = writeln!(self.out, "step {}: {}", self.state.step, self.state.status);
        }
    }

    fn update_valid(&mut self, update: MetricState) {
        self.state.apply(&update);
    }

    fn render_train(&mut self, item: TrainingProgress, _: Vec<ProgressType>) {
        self.state
            .set_progress(&item, self.started.elapsed().as_secs_f64());
        let s = &self.state;
        if s.step == 0 || s.step == self.logged {
            return;
        }
        if s.step.is_multiple_of(self.every) || s.step == s.total_steps {
            self.logged = s.step;
            let loss = s.loss.last().map_or(f64::NAN, |p| p.1);
            let lr = s.lr.last().map_or(f64::NAN, |p| p.1);
            let _ = writeln!(
                self.out,
                "step {}/{} epoch {}/{} loss {loss:.4} lr {lr:.2e} {:.1} sentences/s elapsed {} ETA {}",
                s.step,
                s.total_steps,
                s.epoch.0,
                s.epoch.1,
                s.throughput.unwrap_or(f64::NAN),
                clock(s.elapsed),
                s.eta().map_or("--".into(), clock),
            );
        }
    }

    fn render_valid(&mut self, item: TrainingProgress, _: Vec<ProgressType>) {
        self.state
            .set_progress(&item, self.started.elapsed().as_secs_f64());
        let s = &self.state;
        let scores: Vec<String> = s
            .dev
            .iter()
            .filter_map(|(task, series)| {
                let (x, v) = series.last()?;
                (*x as usize == s.step).then(|| format!("{task} {v:.2}"))
            })
            .collect();
        let best = s.best().map_or(String::new(), |(step, v)| {
            format!(" (best {} {v:.2} @ step {step:.0})", s.dev_titles.select_by)
        });
        let _ = writeln!(
            self.out,
            "eval step {}: {}{best}",
            s.step,
            scores.join(", ")
        );
        self.state.status = "training".into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dashboard::state::tests::sample_state;
    use burn::data::dataloader::Progress;

    fn progress(step: usize, total: usize) -> TrainingProgress {
        TrainingProgress {
            progress: Some(Progress {
                items_processed: step,
                items_total: total,
            }),
            global_progress: Progress {
                items_processed: 1,
                items_total: 1,
            },
            iteration: Some(step),
        }
    }

    #[test]
    fn the_log_has_a_line_every_n_steps_and_one_per_evaluation() {
        let mut out = Vec::new();
        {
            let mut log = LogRenderer::new(sample_state(), 2, &mut out);
            log.render_train(progress(0, 4), Vec::new());
            for step in 1..=4 {
                log.update_train(crate::train::metric::numeric(
                    "loss",
                    1.0 / step as f64,
                    String::new(),
                ));
                log.render_train(progress(step, 4), Vec::new());
                log.render_train(progress(step, 4), Vec::new());
            }
            log.update_valid(crate::train::metric::numeric(
                "dev:stsb-dev",
                77.5,
                String::new(),
            ));
            log.render_valid(progress(4, 4), Vec::new());
        }
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].starts_with("step 2/4") && lines[0].contains("loss 0.5000"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("step 4/4") && lines[1].contains("loss 0.2500"),
            "{text}"
        );
        assert!(
            lines[2].contains("eval step 4: stsb-dev 77.50")
                && lines[2].contains("best stsb-dev 81.20"),
            "{text}"
        );
    }
}
