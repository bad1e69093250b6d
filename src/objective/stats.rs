//! What an objective reports beyond its loss: named per-row readings of a
//! step, the statistics it makes of them, and the panel that says how the
//! dashboard and the plots show those statistics. The loop, the log, the
//! dashboard and the plots handle them by these types alone.

use serde::{Deserialize, Serialize};

pub use crate::loss::Readings;

/// One step's statistics: scalars and histograms, each under the key its
/// panel names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Scalar statistics, in the panel's order.
    pub values: Vec<(String, f64)>,
    /// Histograms (counts per bin).
    pub histograms: Vec<(String, Vec<u64>)>,
}

impl Stats {
    /// Whether there is nothing to report.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty() && self.histograms.is_empty()
    }
}

/// How an objective's statistics are shown. Written into the run's metrics
/// log when it starts, so that `gcse plot` draws any objective's panel
/// without knowing the objective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsPanel {
    /// Names the statistics: the `"kind"` of their log entries and the
    /// prefix of their dashboard metrics. Not `start`, `step` or `eval`.
    pub name: String,
    /// Title of the dashboard tab, its panel and the plot.
    pub title: String,
    /// What the panel says before the first statistics arrive.
    pub placeholder: String,
    /// The scalar statistics drawn as curves, in drawing order.
    pub series: Vec<SeriesSpec>,
    /// A histogram of the last step, drawn beside the curves.
    pub histogram: Option<HistogramSpec>,
    /// File name of the plot in the run directory.
    pub plot: String,
    /// The plot's curves are trailing means over this many steps.
    pub smooth: usize,
}

/// One curve of a [`StatsPanel`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesSpec {
    /// The statistic's key in [`Stats::values`] and in the log.
    pub key: String,
    /// Its label on screen.
    pub label: String,
    /// Decimals of the latest value shown beside the label.
    pub decimals: usize,
}

/// The histogram of a [`StatsPanel`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistogramSpec {
    /// The histogram's key in [`Stats::histograms`] and in the log.
    pub key: String,
    /// Its title on screen.
    pub title: String,
    /// The range the bins split evenly, `[low, high]`.
    pub range: [f64; 2],
}

impl StatsPanel {
    /// The dashboard metric name of statistic `key`.
    pub fn metric(&self, key: &str) -> String {
        format!("{}:{key}", self.name)
    }

    /// The label of statistic `key` (the key itself if the panel lists none).
    pub fn label<'a>(&'a self, key: &'a str) -> &'a str {
        self.series
            .iter()
            .find(|s| s.key == key)
            .map_or(key, |s| s.label.as_str())
    }
}

/// Counts of `values` in `bins` equal bins over `[low, high]`; values
/// outside go to the first or last bin.
pub fn histogram(values: &[f64], [low, high]: [f64; 2], bins: usize) -> Vec<u64> {
    let mut counts = vec![0u64; bins.max(1)];
    let last = counts.len() - 1;
    for &v in values {
        let at = ((v - low) / (high - low) * counts.len() as f64).floor();
        counts[(at.max(0.0) as usize).min(last)] += 1;
    }
    counts
}

/// The mean of `values` (0 for none).
pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_bin_evenly_and_clamp() {
        assert_eq!(
            histogram(
                &[0.0, 0.05, 0.1, 0.55, 0.99, 1.0, 7.0, -1.0],
                [0.0, 1.0],
                10
            ),
            vec![3, 1, 0, 0, 0, 1, 0, 0, 0, 3]
        );
        assert_eq!(histogram(&[], [0.0, 1.0], 4), vec![0; 4]);
        assert_eq!(mean(&[]), 0.0);
        assert_eq!(mean(&[1.0, 2.0]), 1.5);
    }
}
