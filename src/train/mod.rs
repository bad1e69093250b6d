//! Training: the step for any objective, schedule, clipping, checkpoints,
//! the metrics log, plots and the loop.

pub mod checkpoint;
pub mod clip;
pub mod finite;
pub mod loss_scale;
pub mod metrics_log;
pub mod plots;
pub mod run;
pub mod schedule;
pub mod step;
pub mod student;
pub mod tfevents;

/// The metrics the loop reports to its renderer: their names and the
/// updates that carry them.
pub mod metric {
    use std::sync::Arc;

    use burn::train::metric::{MetricEntry, MetricId, NumericEntry, SerializedEntry};
    use burn::train::renderer::MetricState;

    /// Training loss of the last step.
    pub const LOSS: &str = "loss";
    /// Learning rate of the last step.
    pub const LR: &str = "lr";
    /// Training sentences per second.
    pub const THROUGHPUT: &str = "sentences/s";
    /// A free-text status line.
    pub const STATUS: &str = "status";
    /// Prefix of dev-set metrics.
    pub const DEV_PREFIX: &str = "dev:";

    /// The metric name of a dev task's primary metric.
    pub fn dev(task: &str) -> String {
        format!("{DEV_PREFIX}{task}")
    }

    /// A numeric update.
    pub fn numeric(name: &str, value: f64, formatted: String) -> MetricState {
        MetricState::Numeric(
            entry(name, formatted, value.to_string()),
            NumericEntry::Value(value),
        )
    }

    /// A status line.
    pub fn status(text: &str) -> MetricState {
        MetricState::Generic(entry(STATUS, text.to_string(), text.to_string()))
    }

    /// A histogram's counts (as a JSON list).
    pub fn counts(name: &str, counts: &[u64]) -> MetricState {
        let json = serde_json::to_string(counts).expect("numbers serialise");
        MetricState::Generic(entry(name, json.clone(), json))
    }

    fn entry(name: &str, formatted: String, serialized: String) -> MetricEntry {
        MetricEntry::new(
            MetricId::new(Arc::new(name.to_string())),
            SerializedEntry::new(formatted, serialized),
        )
    }
}
