//! Pictures of a run from its metrics log: the loss curve, the dev curves
//! with the best step marked, the objective's statistics (its panel names
//! the plot) and the dashboard as it looked at the end, replayed through the
//! same state updates the loop sends.

use burn::data::dataloader::Progress;
use burn::train::renderer::TrainingProgress;

use super::metric;
use super::metrics_log::{read_log, LogEntry, StartEntry};
use crate::config::TrainConfig;
use crate::dashboard::screenshot::screenshot;
use crate::dashboard::state::DashboardState;
use crate::error::Result;
use crate::eval::registry::dev_titles;
use crate::objective::stats::StatsPanel;
use crate::plot::chart::{line_chart, Curve, Marker, PALETTE};
use crate::run_dir::RunDir;

/// Writes the loss, dev and dashboard pictures of `run` (started with
/// `config`) and, when its objective has statistics, their plot. `panel` is
/// used for logs that do not name their own (written before panels were
/// logged).
pub fn write_run_plots(
    run: &RunDir,
    config: &TrainConfig,
    panel: Option<StatsPanel>,
) -> Result<()> {
    let entries = read_log(&run.metrics())?;
    let state = replay(config, &entries, panel);

    let smooth = moving_average(&state.loss, 25);
    let loss = [
        Curve {
            name: "loss".into(),
            points: state.loss.clone(),
            color: [174, 199, 232],
            width: 1,
        },
        Curve {
            name: "mean of 25".into(),
            points: smooth,
            color: PALETTE[0],
            width: 2,
        },
    ];
    line_chart("training loss", "step", &loss, &[], 900, 500)
        .save_png(&run.file(RunDir::LOSS_PNG))?;

    let curves: Vec<Curve> = state
        .dev
        .iter()
        .enumerate()
        .map(|(i, (task, points))| Curve {
            name: task.clone(),
            points: points.clone(),
            color: PALETTE[i % PALETTE.len()],
            width: 2,
        })
        .collect();
    let markers: Vec<Marker> = state
        .best()
        .map(|(step, score)| Marker {
            at: (step, score),
            label: format!("best {score:.2} @ {step:.0}"),
        })
        .into_iter()
        .collect();
    let title = format!("dev {}", state.dev_titles.metric);
    line_chart(&title, "step", &curves, &markers, 900, 500).save_png(&run.file(RunDir::DEV_PNG))?;

    if let Some(panel) = state.panel.as_ref().filter(|_| !state.stats.is_empty()) {
        let curves: Vec<Curve> = panel
            .series
            .iter()
            .filter_map(|spec| Some((spec, state.stats.get(&spec.key)?)))
            .enumerate()
            .map(|(i, (spec, points))| Curve {
                name: spec.label.clone(),
                points: moving_average(points, panel.smooth),
                color: PALETTE[i % PALETTE.len()],
                width: 2,
            })
            .collect();
        let title = format!("{} (mean of {} steps)", panel.title, panel.smooth);
        line_chart(&title, "step", &curves, &[], 900, 500).save_png(&run.file(&panel.plot))?;
    }
    screenshot(&state, 120, 36).save_png(&run.file(RunDir::DASHBOARD_PNG))
}

/// The dashboard state at the end of the logged run; `panel` stands in for
/// a log that names none.
pub fn replay(
    config: &TrainConfig,
    entries: &[LogEntry],
    panel: Option<StatsPanel>,
) -> DashboardState {
    let starts: Vec<&StartEntry> = entries
        .iter()
        .filter_map(|e| match e {
            LogEntry::Start(s) => Some(&**s),
            _ => None,
        })
        .collect();
    let last = starts.last();
    let tasks = &config.eval.tasks;
    let mut state = DashboardState::new(
        config.run_dir.display().to_string(),
        last.map_or(String::new(), |s| s.backend.clone()),
        last.and_then(|s| s.dev.clone())
            .unwrap_or_else(|| dev_titles(tasks, &config.eval.select_by)),
        tasks,
        last.and_then(|s| s.panel.clone()).or(panel),
    );
    let total = starts.first().map_or(0, |s| s.total_steps);
    let epochs = last
        .and_then(|s| s.steps_per_epoch)
        .map_or(config.train.epochs, |per| total.div_ceil(per.max(1)));
    let mut elapsed = 0.0;
    for e in entries {
        match e {
            LogEntry::Step(s) => {
                elapsed += s.seconds.unwrap_or_else(|| {
                    config.train.batch_size as f64 / s.sentences_per_second.max(1e-9)
                });
                let progress = TrainingProgress {
                    progress: Some(Progress {
                        items_processed: s.step,
                        items_total: total,
                    }),
                    global_progress: Progress {
                        items_processed: s.epoch + 1,
                        items_total: epochs,
                    },
                    iteration: Some(s.step),
                };
                state.set_progress(&progress, elapsed);
                for (name, v) in [
                    (metric::LOSS, s.loss),
                    (metric::LR, s.lr),
                    (metric::THROUGHPUT, s.sentences_per_second),
                ] {
                    state.apply(&metric::numeric(name, v, v.to_string()));
                }
            }
            LogEntry::Stats(s) => {
                let Some(panel) = state.panel.clone().filter(|p| p.name == s.kind) else {
                    continue;
                };
                for spec in &panel.series {
                    if let Some(v) = s.scalar(&spec.key) {
                        state.apply(&metric::numeric(&panel.metric(&spec.key), v, v.to_string()));
                    }
                }
                if let Some(counts) = panel.histogram.as_ref().and_then(|h| s.histogram(&h.key)) {
                    state.histogram = counts.to_vec();
                }
            }
            LogEntry::Eval(ev) => {
                for task in ev.tasks.keys() {
                    if let Some(v) = ev.primary(task) {
                        state.apply(&metric::numeric(&metric::dev(task), v, v.to_string()));
                    }
                }
            }
            LogEntry::Start(_) => {}
        }
    }
    state.status = if total > 0 && state.step >= total {
        "finished".into()
    } else {
        format!("logged up to step {}", state.step)
    };
    state
}

/// Trailing mean over `window` points.
fn moving_average(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    let mut sum = 0.0;
    points
        .iter()
        .enumerate()
        .map(|(i, &(x, y))| {
            sum += y;
            if i >= window {
                sum -= points[i - window].1;
            }
            (x, sum / (i + 1).min(window) as f64)
        })
        .collect()
}
