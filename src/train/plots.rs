//! Pictures of a run from its `metrics.jsonl`: the loss curve, the dev
//! Spearman curves with the best step marked, and the dashboard as it looked
//! at the end (replayed through the same state updates the loop sends).

use std::path::Path;

use burn::data::dataloader::Progress;
use burn::train::renderer::TrainingProgress;

use super::metric;
use super::metrics_log::read_entries;
use super::run::{files, numeric};
use crate::config::TrainConfig;
use crate::dashboard::screenshot::screenshot;
use crate::dashboard::state::DashboardState;
use crate::error::Result;
use crate::plot::chart::{line_chart, Curve, Marker, PALETTE};

/// Written into the run directory.
pub const LOSS_PNG: &str = "loss.png";
/// Written into the run directory.
pub const STS_PNG: &str = "sts_dev.png";
/// Written into the run directory.
pub const DASHBOARD_PNG: &str = "dashboard.png";
/// Written into a stage-2 run directory.
pub const DECAY_PNG: &str = "decay.png";

/// Writes loss.png, sts_dev.png and dashboard.png for a run directory, and
/// decay.png (the decay statistics per step) for a stage-2 run.
pub fn write_run_plots(run_dir: &Path) -> Result<()> {
    let config = TrainConfig::load(&run_dir.join(files::CONFIG))?;
    let entries = read_entries(&run_dir.join(files::METRICS))?;
    let state = replay(&config, &entries);

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
    line_chart("training loss", "step", &loss, &[], 900, 500).save_png(&run_dir.join(LOSS_PNG))?;

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
    line_chart("dev Spearman x 100", "step", &curves, &markers, 900, 500)
        .save_png(&run_dir.join(STS_PNG))?;

    if !state.decay.is_empty() {
        let curves: Vec<Curve> = state
            .decay
            .iter()
            .enumerate()
            .map(|(i, (stat, points))| Curve {
                name: stat.clone(),
                points: moving_average(points, 10),
                color: PALETTE[i % PALETTE.len()],
                width: 2,
            })
            .collect();
        line_chart(
            "stage 2 decay (mean of 10 steps)",
            "step",
            &curves,
            &[],
            900,
            500,
        )
        .save_png(&run_dir.join(DECAY_PNG))?;
    }
    screenshot(&state, 120, 36).save_png(&run_dir.join(DASHBOARD_PNG))
}

/// The dashboard state at the end of the logged run.
pub fn replay(config: &TrainConfig, entries: &[serde_json::Value]) -> DashboardState {
    let tasks: Vec<String> = config
        .eval
        .tasks
        .iter()
        .map(|t| t.key().to_string())
        .collect();
    let backend = entries
        .iter()
        .rev()
        .find(|e| e["kind"] == "start")
        .and_then(|e| e["backend"].as_str())
        .unwrap_or("")
        .to_string();
    let mut state = DashboardState::new(
        config.run_dir.display().to_string(),
        backend,
        config.eval.select_by.key().to_string(),
        &tasks,
    );
    let total = entries
        .iter()
        .find(|e| e["kind"] == "start")
        .and_then(|e| e["total_steps"].as_u64())
        .unwrap_or(0) as usize;
    let mut elapsed = 0.0;
    for e in entries {
        let step = e["step"].as_u64().unwrap_or(0) as usize;
        let progress = TrainingProgress {
            progress: Some(Progress {
                items_processed: step,
                items_total: total,
            }),
            global_progress: Progress {
                items_processed: e["epoch"].as_u64().unwrap_or(0) as usize + 1,
                items_total: config.train.epochs,
            },
            iteration: Some(step),
        };
        match e["kind"].as_str() {
            Some("step") => {
                let per_second = e["sentences_per_second"].as_f64().unwrap_or(0.0);
                elapsed += config.train.batch_size as f64 / per_second.max(1e-9);
                state.set_progress(&progress, elapsed);
                for (name, key) in [
                    (metric::LOSS, "loss"),
                    (metric::LR, "lr"),
                    (metric::THROUGHPUT, "sentences_per_second"),
                ] {
                    if let Some(v) = e[key].as_f64() {
                        state.apply(&numeric(name, v, v.to_string()));
                    }
                }
            }
            Some("decay") => {
                for (stat, key) in
                    metric::DECAY_STATS
                        .iter()
                        .zip(["mean_weight", "fraction_decayed", "mean_gap"])
                {
                    if let Some(v) = e[key].as_f64() {
                        state.apply(&numeric(&metric::decay(stat), v, v.to_string()));
                    }
                }
                if let Some(counts) = e["weights"].as_array() {
                    state.decay_histogram = counts.iter().filter_map(|c| c.as_u64()).collect();
                }
            }
            Some("eval") => {
                if let Some(scores) = e["spearman"].as_object() {
                    for (task, v) in scores {
                        if let Some(v) = v.as_f64() {
                            state.apply(&numeric(&metric::dev(task), v, v.to_string()));
                        }
                    }
                }
            }
            _ => {}
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
