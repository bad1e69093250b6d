//! What filtering did: counts kept, fallen back and extra, and histograms of
//! the frozen model's scores of positive and negative candidates. Printed by
//! `gcse filter` and training on candidates, saved as JSON.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::candidates::CandidateGroup;
use super::rule::{FilterMode, FilterSection, GroupScores};

/// Counts of one role (positive or negative).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleCounts {
    /// Sources whose triplet uses one of their candidates.
    pub kept: usize,
    /// Sources that fell back (positive: the source itself; negative: another
    /// source sentence).
    pub fell_back: usize,
}

impl RoleCounts {
    /// Counts one source.
    pub fn record(&mut self, kept: bool) {
        if kept {
            self.kept += 1;
        } else {
            self.fell_back += 1;
        }
    }
}

/// Counts of scores in equal bins over `[lo, hi]`; values outside go to the
/// end bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Lower edge of the first bin.
    pub lo: f64,
    /// Upper edge of the last bin.
    pub hi: f64,
    /// Count per bin.
    pub counts: Vec<u64>,
}

impl Histogram {
    /// 40 bins of 0.05 over the cosine range [-1, 1].
    pub fn cosine() -> Self {
        Self::new(-1.0, 1.0, 40)
    }

    /// `bins` equal bins over `[lo, hi]`.
    pub fn new(lo: f64, hi: f64, bins: usize) -> Self {
        Self {
            lo,
            hi,
            counts: vec![0; bins],
        }
    }

    /// Adds one value (NaN is ignored).
    pub fn add(&mut self, v: f64) {
        if v.is_nan() {
            return;
        }
        let bins = self.counts.len();
        let at = ((v - self.lo) / (self.hi - self.lo) * bins as f64).floor();
        self.counts[(at.max(0.0) as usize).min(bins - 1)] += 1;
    }

    /// Values added.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Lower edge of bin `i`.
    pub fn edge(&self, i: usize) -> f64 {
        self.lo + (self.hi - self.lo) * i as f64 / self.counts.len() as f64
    }

    /// Text bars for the bins between the first and last non-empty ones.
    pub fn bars(&self, width: usize) -> Vec<String> {
        let Some(first) = self.counts.iter().position(|&c| c > 0) else {
            return vec!["(none)".into()];
        };
        let last = self.counts.iter().rposition(|&c| c > 0).expect("non-empty");
        let max = *self.counts.iter().max().expect("non-empty") as f64;
        (first..=last)
            .map(|i| {
                let c = self.counts[i];
                let len = (c as f64 / max * width as f64).round() as usize;
                format!(
                    "[{:+.2}, {:+.2}) {:>7} {}",
                    self.edge(i),
                    self.edge(i + 1),
                    c,
                    "#".repeat(len.max(usize::from(c > 0)))
                )
            })
            .collect()
    }
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilterReport {
    /// The rule.
    pub mode: FilterMode,
    /// Positive threshold (cosine).
    pub alpha: f64,
    /// Negative threshold (cosine).
    pub beta: f64,
    /// Source sentences.
    pub sources: usize,
    /// Positive candidates read.
    pub positive_candidates: usize,
    /// Negative candidates read.
    pub negative_candidates: usize,
    /// Positives kept and fallen back.
    pub positives: RoleCounts,
    /// Negatives kept and fallen back.
    pub negatives: RoleCounts,
    /// Extra rows made from rejected negatives.
    pub extra_rows: usize,
    /// Triplets written (sources plus extra rows).
    pub triplets: usize,
    /// Malformed input lines skipped.
    pub skipped_lines: usize,
    /// Frozen-model cosines of positive candidates with their source.
    pub positive_scores: Histogram,
    /// Frozen-model cosines of negative candidates with their source.
    pub negative_scores: Histogram,
}

impl FilterReport {
    /// An empty report for `sources` sources under `rule`.
    pub fn new(rule: &FilterSection, sources: usize) -> Self {
        Self {
            mode: rule.mode,
            alpha: rule.alpha,
            beta: rule.beta,
            sources,
            positive_candidates: 0,
            negative_candidates: 0,
            positives: RoleCounts::default(),
            negatives: RoleCounts::default(),
            extra_rows: 0,
            triplets: 0,
            skipped_lines: 0,
            positive_scores: Histogram::cosine(),
            negative_scores: Histogram::cosine(),
        }
    }

    /// Counts a group's candidates and, when scored, their scores.
    pub fn count_candidates(&mut self, group: &CandidateGroup, scores: Option<&GroupScores>) {
        self.positive_candidates += group.positives.len();
        self.negative_candidates += group.negatives.len();
        if let Some(s) = scores {
            s.positives
                .iter()
                .for_each(|&v| self.positive_scores.add(v));
            s.negatives
                .iter()
                .for_each(|&v| self.negative_scores.add(v));
        }
    }
}

impl fmt::Display for FilterReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.mode {
            FilterMode::Threshold => {
                format!("threshold (alpha {}, beta {})", self.alpha, self.beta)
            }
            FilterMode::None => "none (no filtering)".into(),
            FilterMode::Random => "random (source as positive, random negative)".into(),
        };
        writeln!(f, "filter: {mode}")?;
        writeln!(
            f,
            "  sources {}, candidates {} positive / {} negative, skipped lines {}",
            self.sources, self.positive_candidates, self.negative_candidates, self.skipped_lines
        )?;
        writeln!(
            f,
            "  positives: {} kept, {} fell back to the source itself",
            self.positives.kept, self.positives.fell_back
        )?;
        writeln!(
            f,
            "  negatives: {} kept, {} fell back to another source",
            self.negatives.kept, self.negatives.fell_back
        )?;
        writeln!(
            f,
            "  extra rows from rejected negatives: {}; triplets: {}",
            self.extra_rows, self.triplets
        )?;
        for (name, h) in [
            ("positive", &self.positive_scores),
            ("negative", &self.negative_scores),
        ] {
            if h.total() > 0 {
                writeln!(f, "  {name} candidate scores ({}):", h.total())?;
                for bar in h.bars(40) {
                    writeln!(f, "    {bar}")?;
                }
            }
        }
        Ok(())
    }
}
