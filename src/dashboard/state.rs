//! What the dashboard shows, and how renderer updates change it. Nothing
//! here draws or reads the clock: tests build states by hand. The dev curves
//! and the objective's statistics arrive under names their titles and panel
//! give; no objective or evaluator is known here by name.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use burn::train::metric::{MetricId, NumericEntry};
use burn::train::renderer::{MetricState, TrainingProgress};
use ratatui::crossterm::event::{KeyCode, KeyModifiers};

use crate::eval::evaluator::{DevTitles, Selection};
use crate::objective::stats::StatsPanel;
use crate::train::metric;

/// The dashboard's views.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Everything at a glance.
    Overview,
    /// Loss and learning rate, full size.
    Loss,
    /// Dev-set curves, full size.
    Dev,
    /// The objective's statistics panel.
    Stats,
}

/// A curve: (step, value) points.
pub type Series = Vec<(f64, f64)>;

/// Everything the dashboard draws.
#[derive(Debug, Clone)]
pub struct DashboardState {
    /// The run directory, as a title.
    pub run: String,
    /// Backend and device.
    pub backend: String,
    /// How the dev curves are titled, and the task that picks the best
    /// checkpoint.
    pub dev_titles: DevTitles,
    /// Steps taken and planned.
    pub step: usize,
    /// Steps of the whole run.
    pub total_steps: usize,
    /// Current epoch (1-based) and epochs planned.
    pub epoch: (usize, usize),
    /// Seconds since the run (or resume) started, and the step it started at.
    pub elapsed: f64,
    /// The step the clock started at (after a resume, not 0).
    pub first_step: usize,
    /// Training loss per step.
    pub loss: Series,
    /// Learning rate per step.
    pub lr: Series,
    /// Training sentences per second.
    pub throughput: Option<f64>,
    /// Each dev task's primary metric.
    pub dev: BTreeMap<String, Series>,
    /// How the objective's statistics are shown, if it reports any.
    pub panel: Option<StatsPanel>,
    /// The objective's scalar statistics by key.
    pub stats: BTreeMap<String, Series>,
    /// The last step's histogram of the panel.
    pub histogram: Vec<u64>,
    /// The latest status line.
    pub status: String,
    /// The progress line of work inside the run (evaluation, teacher
    /// vectors), while it runs.
    pub work: Option<String>,
    /// The view on screen.
    pub view: View,
    /// Which slot each known metric id fills.
    slots: HashMap<MetricId, Slot>,
}

/// Where a metric's values go.
#[derive(Debug, Clone)]
enum Slot {
    Loss,
    Lr,
    Throughput,
    Status,
    Dev(String),
    Stat(String),
    Histogram,
}

fn id(name: &str) -> MetricId {
    MetricId::new(Arc::new(name.to_string()))
}

impl DashboardState {
    /// An empty dashboard for a run that evaluates `dev_tasks`, titled by
    /// `dev_titles`, whose objective shows `panel`.
    pub fn new(
        run: String,
        backend: String,
        dev_titles: DevTitles,
        dev_tasks: &[String],
        panel: Option<StatsPanel>,
    ) -> Self {
        let mut slots: HashMap<MetricId, Slot> = [
            (metric::LOSS, Slot::Loss),
            (metric::LR, Slot::Lr),
            (metric::THROUGHPUT, Slot::Throughput),
            (metric::STATUS, Slot::Status),
        ]
        .into_iter()
        .map(|(name, slot)| (id(name), slot))
        .collect();
        for task in dev_tasks {
            slots.insert(id(&metric::dev(task)), Slot::Dev(task.clone()));
        }
        if let Some(panel) = &panel {
            for series in &panel.series {
                slots.insert(
                    id(&panel.metric(&series.key)),
                    Slot::Stat(series.key.clone()),
                );
            }
            if let Some(h) = &panel.histogram {
                slots.insert(id(&panel.metric(&h.key)), Slot::Histogram);
            }
        }
        Self {
            run,
            backend,
            dev_titles,
            step: 0,
            total_steps: 0,
            epoch: (0, 0),
            elapsed: 0.0,
            first_step: 0,
            loss: Vec::new(),
            lr: Vec::new(),
            throughput: None,
            dev: BTreeMap::new(),
            panel,
            stats: BTreeMap::new(),
            histogram: Vec::new(),
            status: "starting".into(),
            work: None,
            view: View::Overview,
            slots,
        }
    }

    /// The views, in tab order: the statistics view only when the
    /// objective has a panel.
    pub fn views(&self) -> Vec<View> {
        let mut views = vec![View::Overview, View::Loss, View::Dev];
        if self.panel.is_some() {
            views.push(View::Stats);
        }
        views
    }

    /// The tab title of `view`.
    pub fn title(&self, view: View) -> &str {
        match view {
            View::Overview => "overview",
            View::Loss => "loss",
            View::Dev => &self.dev_titles.tab,
            View::Stats => self
                .panel
                .as_ref()
                .map_or("statistics", |p| p.title.as_str()),
        }
    }

    /// Takes in one metric update from the training loop; unknown metrics
    /// are ignored.
    pub fn apply(&mut self, update: &MetricState) {
        let x = self.step as f64;
        let (entry, value) = match update {
            MetricState::Numeric(entry, NumericEntry::Value(v)) => (entry, Some(*v)),
            MetricState::Numeric(
                entry,
                NumericEntry::Aggregated {
                    aggregated_value, ..
                },
            ) => (entry, Some(*aggregated_value)),
            MetricState::Generic(entry) => (entry, None),
        };
        match (self.slots.get(&entry.metric_id).cloned(), value) {
            (Some(Slot::Loss), Some(v)) => self.loss.push((x, v)),
            (Some(Slot::Lr), Some(v)) => self.lr.push((x, v)),
            (Some(Slot::Throughput), Some(v)) => self.throughput = Some(v),
            (Some(Slot::Dev(task)), Some(v)) => {
                self.dev.entry(task).or_default().push((x, v));
                self.status = "training".into();
            }
            (Some(Slot::Stat(key)), Some(v)) => self.stats.entry(key).or_default().push((x, v)),
            (Some(Slot::Status), _) => self.status = entry.serialized_entry.formatted.clone(),
            (Some(Slot::Histogram), _) => {
                if let Ok(counts) = serde_json::from_str(&entry.serialized_entry.serialized) {
                    self.histogram = counts;
                }
            }
            _ => {}
        }
    }

    /// Starts the clock again at the step reached (a resumed run's ETA
    /// counts the steps since the resume).
    pub fn restart_clock(&mut self) {
        self.first_step = self.step;
        self.elapsed = 0.0;
        self.status = "resuming".into();
    }

    /// Takes in the loop's progress and the wall-clock time since it started.
    pub fn set_progress(&mut self, progress: &TrainingProgress, elapsed: f64) {
        if let Some(p) = &progress.progress {
            if self.total_steps == 0 {
                self.first_step = p.items_processed.saturating_sub(1);
            }
            self.step = p.items_processed;
            self.total_steps = p.items_total;
        }
        self.epoch = (
            progress.global_progress.items_processed,
            progress.global_progress.items_total,
        );
        self.elapsed = elapsed;
    }

    /// Takes in a key press: tab and the view numbers switch views; `q` and
    /// Ctrl-C ask to stop, which is returned as `true` (the caller stops the
    /// loop).
    pub fn press(&mut self, code: KeyCode, modifiers: KeyModifiers) -> bool {
        let views = self.views();
        match code {
            KeyCode::Char('q') => {}
            KeyCode::Char('c') if modifiers.contains(KeyModifiers::CONTROL) => {}
            KeyCode::Tab => {
                let at = views.iter().position(|v| *v == self.view).unwrap_or(0);
                self.view = views[(at + 1) % views.len()];
                return false;
            }
            KeyCode::Char(c @ '1'..='9') => {
                if let Some(&view) = views.get(c as usize - '1' as usize) {
                    self.view = view;
                }
                return false;
            }
            _ => return false,
        }
        self.status = "stopping after this step: a checkpoint is written first".into();
        true
    }

    /// The best dev score of the selection task (the curves show primary
    /// metrics; the direction is the selected metric's) and its step.
    pub fn best(&self) -> Option<(f64, f64)> {
        let higher = self.dev_titles.higher_is_better;
        self.dev
            .get(&Selection::parse(&self.dev_titles.select_by).task)?
            .iter()
            .copied()
            .filter(|(_, v)| v.is_finite())
            .fold(None, |best: Option<(f64, f64)>, p| match best {
                Some(b) if (higher && b.1 >= p.1) || (!higher && b.1 <= p.1) => Some(b),
                _ => Some(p),
            })
    }

    /// Seconds left at the pace since the (re)start.
    pub fn eta(&self) -> Option<f64> {
        let done = self.step.checked_sub(self.first_step).filter(|&d| d > 0)?;
        Some(self.elapsed / done as f64 * self.total_steps.saturating_sub(self.step) as f64)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::objective::stats::{HistogramSpec, SeriesSpec};
    use crate::train::metric::{numeric, status};
    use burn::data::dataloader::Progress;

    /// A panel of three series and a histogram, titled as stage 2's.
    pub(crate) fn sample_panel() -> StatsPanel {
        let series = |key: &str, label: &str| SeriesSpec {
            key: key.into(),
            label: label.into(),
            decimals: 3,
        };
        StatsPanel {
            name: "decay".into(),
            title: "stage 2 decay".into(),
            placeholder: "The mean Gaussian decay weight appears here after the first step.".into(),
            series: vec![
                series("fraction_decayed", "fraction decayed"),
                series("mean_gap", "mean s - s'"),
                series("mean_weight", "mean weight"),
            ],
            histogram: Some(HistogramSpec {
                key: "weights".into(),
                title: "weights, last batch (0 = fully decayed)".into(),
                range: [0.0, 1.0],
            }),
            plot: "decay.png".into(),
            smooth: 10,
        }
    }

    /// STS dev titles, the best picked by stsb-dev.
    pub(crate) fn sts_titles() -> DevTitles {
        DevTitles {
            tab: "STS dev".into(),
            metric: "Spearman x100".into(),
            select_by: "stsb-dev".into(),
            higher_is_better: true,
        }
    }

    /// A run half-way: 250 of 500 steps, two evaluations, best at step 250.
    pub(crate) fn sample_state() -> DashboardState {
        let mut s = DashboardState::new(
            "runs/quickstart".into(),
            "cpu (ndarray, 2 threads)".into(),
            sts_titles(),
            &["stsb-dev".into(), "sickr-dev".into()],
            Some(sample_panel()),
        );
        for step in 1..=250 {
            s.set_progress(
                &TrainingProgress {
                    progress: Some(Progress {
                        items_processed: step,
                        items_total: 500,
                    }),
                    global_progress: Progress {
                        items_processed: 1,
                        items_total: 2,
                    },
                    iteration: Some(step),
                },
                step as f64 * 2.0,
            );
            s.apply(&numeric(metric::LOSS, 2.0 / step as f64, String::new()));
            s.apply(&numeric(
                metric::LR,
                3e-5 * (1.0 - step as f64 / 500.0),
                String::new(),
            ));
            s.apply(&numeric(metric::THROUGHPUT, 32.0, String::new()));
            if step % 125 == 0 {
                let (stsb, sick) = if step == 125 {
                    (79.9, 70.0)
                } else {
                    (81.2, 71.5)
                };
                s.apply(&numeric(&metric::dev("stsb-dev"), stsb, String::new()));
                s.apply(&numeric(&metric::dev("sickr-dev"), sick, String::new()));
            }
        }
        s
    }

    #[test]
    fn updates_land_in_their_series() {
        let mut s = sample_state();
        assert_eq!(s.loss.len(), 250);
        assert_eq!(s.loss[1], (2.0, 1.0));
        assert_eq!(s.dev["stsb-dev"], vec![(125.0, 79.9), (250.0, 81.2)]);
        assert_eq!(s.best(), Some((250.0, 81.2)));
        assert_eq!(s.throughput, Some(32.0));
        // 250 steps in 500 s: the other 250 take as long.
        assert!((s.eta().unwrap() - 500.0).abs() < 1e-9);
        s.apply(&status("evaluating on the dev sets"));
        assert_eq!(s.status, "evaluating on the dev sets");
        s.apply(&numeric("not a dashboard metric", 1.0, String::new()));
        assert_eq!(s.loss.len(), 250);
        s.apply(&numeric(
            &sample_panel().metric("mean_weight"),
            0.8,
            String::new(),
        ));
        assert_eq!(s.stats["mean_weight"], vec![(250.0, 0.8)]);
    }

    #[test]
    fn keys_switch_views_and_ask_to_stop() {
        let mut s = sample_state();
        assert!(!s.press(KeyCode::Tab, KeyModifiers::NONE));
        assert_eq!(s.view, View::Loss);
        assert!(!s.press(KeyCode::Char('4'), KeyModifiers::NONE));
        assert_eq!(s.view, View::Stats);
        assert!(!s.press(KeyCode::Tab, KeyModifiers::NONE));
        assert_eq!(s.view, View::Overview);
        assert!(!s.press(KeyCode::Char('c'), KeyModifiers::NONE));
        assert!(!s.press(KeyCode::Char('x'), KeyModifiers::NONE));
        assert!(!s.status.is_empty() && !s.status.contains("stopping"));
        assert!(s.press(KeyCode::Char('c'), KeyModifiers::CONTROL));
        assert!(s.press(KeyCode::Char('q'), KeyModifiers::NONE));
        assert!(s.status.contains("stopping"));
        // Without a panel there is no statistics view.
        let mut plain = DashboardState::new("r".into(), "cpu".into(), sts_titles(), &[], None);
        assert_eq!(plain.views().len(), 3);
        plain.press(KeyCode::Char('4'), KeyModifiers::NONE);
        assert_eq!(plain.view, View::Overview);
        plain.press(KeyCode::Char('3'), KeyModifiers::NONE);
        assert_eq!(plain.view, View::Dev);
        plain.press(KeyCode::Tab, KeyModifiers::NONE);
        assert_eq!(plain.view, View::Overview);
    }
}
