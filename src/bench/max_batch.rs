//! The largest training batch that fits a memory budget: batch sizes are
//! tried by doubling until one does not fit, then by bisection between the
//! last that fitted and the first that did not, down to a step of
//! [`Search::granularity`] sentences. Each trial is one training step, run
//! by the caller (in its own process, so that peak memory is that step's).

use serde::Serialize;

/// The search's bounds.
#[derive(Debug, Clone, Copy)]
pub struct Search {
    /// The memory budget, bytes.
    pub budget: u64,
    /// The first batch tried.
    pub start: usize,
    /// No batch above this is tried.
    pub max: usize,
    /// The answer is exact to this many sentences.
    pub granularity: usize,
}

/// What one trial measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trial {
    /// Sentences per step.
    pub batch: usize,
    /// Peak memory of the step, bytes, when it ran to the end.
    pub peak_bytes: Option<u64>,
    /// Why the step did not finish (out of memory, most often).
    pub failure: Option<String>,
    /// Whether it finished within the budget.
    pub fits: bool,
}

/// Every trial in the order run, and the largest batch that fitted (`None`
/// when not even [`Search::start`] did).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// The budget, bytes.
    pub budget_bytes: u64,
    /// The trials.
    pub trials: Vec<Trial>,
    /// The answer.
    pub largest: Option<usize>,
}

impl Search {
    /// Runs the search; `step(batch)` trains one step at `batch` and returns
    /// its peak memory, or why it failed.
    pub fn run(&self, mut step: impl FnMut(usize) -> std::result::Result<u64, String>) -> Outcome {
        let granularity = self.granularity.max(1);
        let mut trials = Vec::new();
        let mut trial = |batch: usize| {
            let (peak_bytes, failure) = match step(batch) {
                Ok(bytes) => (Some(bytes), None),
                Err(why) => (None, Some(why)),
            };
            let fits = peak_bytes.is_some_and(|b| b <= self.budget);
            trials.push(Trial {
                batch,
                peak_bytes,
                failure,
                fits,
            });
            fits
        };
        let mut fitted = None;
        let mut failed = None;
        let mut batch = self.start.max(1).min(self.max);
        loop {
            if trial(batch) {
                fitted = Some(batch);
                if batch >= self.max {
                    break;
                }
                batch = (batch * 2).min(self.max);
            } else {
                failed = Some(batch);
                break;
            }
        }
        if let (Some(mut low), Some(mut high)) = (fitted, failed) {
            while high - low > granularity {
                let mid = low + (high - low) / 2 / granularity * granularity;
                let mid = mid.max(low + granularity);
                if trial(mid) {
                    low = mid;
                } else {
                    high = mid;
                }
            }
            fitted = Some(low);
        }
        Outcome {
            budget_bytes: self.budget,
            trials,
            largest: fitted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step using `fixed + per_sentence * batch` bytes, failing past `oom`.
    fn linear(
        fixed: u64,
        per_sentence: u64,
        oom: usize,
    ) -> impl FnMut(usize) -> Result<u64, String> {
        move |batch| {
            if batch > oom {
                Err("out of memory".into())
            } else {
                Ok(fixed + per_sentence * batch as u64)
            }
        }
    }

    #[test]
    fn finds_the_largest_batch_within_the_budget() {
        let search = Search {
            budget: 1000 + 7 * 100,
            start: 8,
            max: 4096,
            granularity: 1,
        };
        let outcome = search.run(linear(1000, 7, usize::MAX));
        assert_eq!(outcome.largest, Some(100));
        let batches: Vec<usize> = outcome.trials.iter().map(|t| t.batch).collect();
        assert_eq!(&batches[..5], &[8, 16, 32, 64, 128]);
        assert!(outcome.trials.iter().all(|t| t.fits == (t.batch <= 100)));
        assert!(outcome.trials.iter().any(|t| t.batch == 101), "{batches:?}");
    }

    #[test]
    fn a_failed_step_counts_as_not_fitting_and_granularity_is_kept() {
        let search = Search {
            budget: u64::MAX,
            start: 8,
            max: 4096,
            granularity: 8,
        };
        let outcome = search.run(linear(0, 1, 300));
        assert_eq!(outcome.largest, Some(296));
        assert!(outcome.trials.iter().all(|t| t.batch % 8 == 0));
        let failed = outcome.trials.iter().find(|t| t.batch == 512).unwrap();
        assert_eq!(
            (failed.fits, failed.failure.as_deref()),
            (false, Some("out of memory"))
        );
    }

    #[test]
    fn stops_at_the_cap_and_reports_none_when_nothing_fits() {
        let capped = Search {
            budget: u64::MAX,
            start: 8,
            max: 48,
            granularity: 8,
        }
        .run(linear(0, 1, usize::MAX));
        assert_eq!(capped.largest, Some(48));
        let batches: Vec<usize> = capped.trials.iter().map(|t| t.batch).collect();
        assert_eq!(batches, [8, 16, 32, 48]);
        let none = Search {
            budget: 10,
            start: 8,
            max: 4096,
            granularity: 8,
        }
        .run(linear(100, 1, usize::MAX));
        assert_eq!((none.largest, none.trials.len()), (None, 1));
    }
}
