//! The filtering rule's settings (`[filter]` of an experiment file and the
//! options of `gcse filter`, from one set of defaults) and the scores it
//! reads.

use serde::{Deserialize, Serialize};

/// Which rule builds the triplets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FilterMode {
    /// Eq. 10-11: thresholds alpha and beta on the frozen model's scores.
    #[default]
    Threshold,
    /// No filtering (ablation "w/o filtering"): the first candidate of each
    /// role, whatever its score; fallbacks only where a role has none.
    None,
    /// Ablation "w/ random": the source as its own positive and a fallback
    /// source sentence (use `fallback = "random"`) as negative; candidates
    /// unused.
    Random,
}

/// Which other source sentence a missing negative falls back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Fallback {
    /// The source `fallback_offset` rows later, or as many earlier near the
    /// end (the authors' code, offset 6).
    #[default]
    Offset,
    /// A seeded uniform choice among the other sources.
    Random,
}

/// `[filter]` of an experiment file, and the options of `gcse filter`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSection {
    /// Default `threshold`.
    #[serde(default)]
    pub mode: FilterMode,
    /// Lowest cosine for a positive. Default 0.80 (the authors' code; the
    /// paper reports 0.9).
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// A negative must score below this cosine. Default 0.75 (paper and code).
    #[serde(default = "default_beta")]
    pub beta: f64,
    /// Default `offset`.
    #[serde(default)]
    pub fallback: Fallback,
    /// Rows between a source and its fallback negative. Default 6.
    #[serde(default = "default_offset")]
    pub fallback_offset: usize,
    /// Keep rejected negative candidates as extra rows `(c, c, fallback)`.
    /// Default true (the authors' code).
    #[serde(default = "default_true")]
    pub extra_rows: bool,
    /// Seed of the random fallback. Default: the run's `train.seed` (42 for
    /// `gcse filter`).
    #[serde(default)]
    pub seed: Option<u64>,
}

fn default_alpha() -> f64 {
    0.80
}
fn default_beta() -> f64 {
    0.75
}
fn default_offset() -> usize {
    6
}
fn default_true() -> bool {
    true
}

impl Default for FilterSection {
    fn default() -> Self {
        toml::from_str("").expect("every [filter] key has a default")
    }
}

impl FilterSection {
    /// Checks values serde cannot; the message names the key.
    pub fn validate(&self) -> std::result::Result<(), String> {
        for (key, v) in [("filter.alpha", self.alpha), ("filter.beta", self.beta)] {
            if !(-1.0..=1.0).contains(&v) {
                return Err(format!("`{key}` is a cosine, in [-1, 1], not {v}"));
            }
        }
        if self.fallback == Fallback::Offset && self.fallback_offset == 0 {
            return Err("`filter.fallback_offset` must be at least 1".into());
        }
        Ok(())
    }

    /// Whether the rule reads the frozen model's scores.
    pub fn needs_scores(&self) -> bool {
        self.mode == FilterMode::Threshold
    }
}

/// Frozen-model cosines of one group's candidates with its source, in the
/// candidates' order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupScores {
    /// One per positive candidate.
    pub positives: Vec<f64>,
    /// One per negative candidate.
    pub negatives: Vec<f64>,
}
