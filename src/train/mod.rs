//! Training: the stage-1 and stage-2 steps, the frozen model, schedule,
//! clipping, checkpoints, the loop.

pub mod checkpoint;
pub mod clip;
pub mod examples;
pub mod frozen;
pub mod metrics_log;
pub mod model;
pub mod plots;
pub mod run;
pub mod schedule;

/// Names of the metrics the loop reports to its renderer.
pub mod metric {
    /// Training loss of the last step.
    pub const LOSS: &str = "loss";
    /// Learning rate of the last step.
    pub const LR: &str = "lr";
    /// Training sentences per second.
    pub const THROUGHPUT: &str = "sentences/s";
    /// A free-text status line.
    pub const STATUS: &str = "status";
    /// Prefix of dev-set Spearman metrics.
    pub const DEV_PREFIX: &str = "dev:";
    /// Prefix of stage-2 decay statistics.
    pub const DECAY_PREFIX: &str = "decay:";

    /// Stage-2 decay statistics: mean decay weight of the own hard
    /// negatives, fraction of them decayed, mean student-minus-frozen score.
    pub const DECAY_STATS: [&str; 3] = ["mean weight", "fraction decayed", "mean s - s'"];

    /// Stage-2 histogram of the weights left on the own hard negatives: 10
    /// bins over [0, 1], serialised as a JSON list of counts.
    pub const DECAY_HISTOGRAM: &str = "decay:histogram";

    /// The metric name of a stage-2 decay statistic.
    pub fn decay(stat: &str) -> String {
        format!("{DECAY_PREFIX}{stat}")
    }

    /// The metric name of a dev task's Spearman.
    pub fn dev(task: &str) -> String {
        format!("{DEV_PREFIX}{task}")
    }
}
