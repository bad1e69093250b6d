//! Group-P shuffling (DistillCSE, docs/methods-extensions.md §1): a row's
//! teacher cosines sorted descending are cut into groups, and the student
//! columns are permuted at random inside each group, so that the student is
//! not asked to reproduce the teacher's order among near-equal scores.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::rng::SplitMix64;

/// How a sorted row is cut into groups that are shuffled; in an experiment
/// file `{ kind = "group_p", p = 0.1 }`, `{ kind = "range", start, end }`,
/// `{ kind = "fixed", size }` or `{ kind = "none" }`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum Shuffle {
    /// Groups of about `p` of the row's softmax mass over its raw
    /// (untempered) sorted cosines: `floor(1 / p)` groups, one more when
    /// those cover less than the whole mass (the reference's count).
    GroupP {
        /// The mass of one group, in `(0, 1]`.
        p: f64,
    },
    /// One group: the sorted positions `[start, end)`.
    Range {
        /// First shuffled position.
        start: usize,
        /// One past the last (clipped to the row).
        end: usize,
    },
    /// Consecutive groups of `size` sorted positions.
    Fixed {
        /// Positions in a group, at least 1.
        size: usize,
    },
    /// No shuffling: the teacher's order.
    None,
}

/// The smallest Group-P mass: `1 / p` groups a row, each of one column or
/// more once a row is shorter than that.
const MIN_P: f64 = 1e-4;

impl Default for Shuffle {
    fn default() -> Self {
        Shuffle::GroupP { p: 0.1 }
    }
}

impl Shuffle {
    /// Checks the parameters; the message names the key.
    pub fn check(&self) -> Result<(), String> {
        match *self {
            Shuffle::GroupP { p } if !(MIN_P..=1.0).contains(&p) => {
                Err(format!("`p` must be in [{MIN_P}, 1], not {p}"))
            }
            Shuffle::Range { start, end } if start >= end => {
                Err(format!("`start` ({start}) must be below `end` ({end})"))
            }
            Shuffle::Fixed { size: 0 } => Err("`size` must be at least 1".into()),
            _ => Ok(()),
        }
    }

    /// The groups of a row whose teacher values, sorted descending, are
    /// `sorted`: consecutive, non-empty ranges of positions (positions
    /// outside every range keep their place).
    pub fn groups(&self, sorted: &[f64]) -> Vec<Range<usize>> {
        let len = sorted.len();
        let mut bounds: Vec<usize> = match *self {
            Shuffle::GroupP { p } => group_p_bounds(sorted, p),
            Shuffle::Range { start, end } => {
                return if start.min(len) + 1 < end.min(len) {
                    vec![start..end.min(len)]
                } else {
                    Vec::new()
                }
            }
            Shuffle::Fixed { size } => (1..=len.div_ceil(size))
                .map(|g| (g * size).min(len))
                .collect(),
            Shuffle::None => return Vec::new(),
        };
        bounds.dedup();
        let mut start = 0;
        bounds
            .into_iter()
            .filter_map(|end| {
                let group = start..end;
                start = end;
                (!group.is_empty()).then_some(group)
            })
            .collect()
    }

    /// `columns` (a row's student columns in the teacher's sorted order)
    /// with each group of [`Shuffle::groups`] permuted by `rng`; returns the
    /// row's mean group size, positions outside every group counting as
    /// groups of one (1 for an empty row).
    pub fn apply(&self, sorted: &[f64], columns: &mut [usize], rng: &mut SplitMix64) -> f64 {
        let groups = self.groups(sorted);
        for group in &groups {
            rng.shuffle(&mut columns[group.clone()]);
        }
        let covered: usize = groups.iter().map(|g| g.len()).sum();
        let count = groups.len() + sorted.len() - covered;
        sorted.len().max(1) as f64 / count.max(1) as f64
    }
}

/// Group-P's group ends: with `q = softmax(sorted)` and `c` its cumulative
/// sums, the end of group `g` (of [`group_p_count`]) is the count of
/// `c < (g + 1) p`; the last end is the row's length.
fn group_p_bounds(sorted: &[f64], p: f64) -> Vec<usize> {
    let len = sorted.len();
    if len == 0 {
        return Vec::new();
    }
    let max = sorted.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exp: Vec<f64> = sorted.iter().map(|v| (v - max).exp()).collect();
    let total: f64 = exp.iter().sum();
    let cumulative: Vec<f64> = exp
        .iter()
        .scan(0.0, |acc, e| {
            *acc += e / total;
            Some(*acc)
        })
        .collect();
    let groups = group_p_count(p);
    (0..groups)
        .map(|g| {
            if g + 1 == groups {
                len
            } else {
                let limit = (g + 1) as f64 * p;
                cumulative.iter().filter(|&&c| c < limit).count()
            }
        })
        .collect()
}

/// Group-P's number of groups: `floor(1 / p)`, plus one when that many
/// groups of mass `p` fall short of 1 (both in f64, as the reference
/// computes them).
fn group_p_count(p: f64) -> usize {
    let whole = (1.0 / p) as usize;
    whole + usize::from((whole as f64) * p < 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_p_cuts_by_cumulative_softmax_mass() {
        // softmax of [ln 4, ln 2, ln 1, ln 1] = [0.5, 0.25, 0.125, 0.125];
        // cumulative 0.5, 0.75, 0.875, 1.0.
        let sorted = [4f64.ln(), 2f64.ln(), 0.0, 0.0];
        assert_eq!(Shuffle::GroupP { p: 0.5 }.groups(&sorted), vec![0..4]);
        assert_eq!(
            Shuffle::GroupP { p: 0.25 }.groups(&sorted),
            vec![0..1, 1..4]
        );
        assert_eq!(Shuffle::GroupP { p: 0.8 }.groups(&sorted), vec![0..2, 2..4]);
        assert_eq!(Shuffle::GroupP { p: 1.0 }.groups(&sorted), vec![0..4]);
    }

    #[test]
    fn group_p_counts_as_the_reference() {
        assert_eq!(group_p_count(0.1), 10);
        assert_eq!(group_p_count(0.3), 4);
        assert_eq!(group_p_count(0.5), 2);
        assert_eq!(group_p_count(0.7), 2);
        assert_eq!(group_p_count(1.0), 1);
        assert_eq!(group_p_count(0.15), 7);
    }

    #[test]
    fn fixed_and_range_groups() {
        let sorted = [0.9, 0.8, 0.7, 0.6, 0.5];
        assert_eq!(
            Shuffle::Fixed { size: 2 }.groups(&sorted),
            vec![0..2, 2..4, 4..5]
        );
        assert_eq!(
            Shuffle::Range { start: 1, end: 3 }.groups(&sorted),
            vec![1..3]
        );
        assert_eq!(
            Shuffle::Range { start: 3, end: 99 }.groups(&sorted),
            vec![3..5]
        );
        assert!(Shuffle::Range { start: 4, end: 9 }
            .groups(&sorted)
            .is_empty());
        assert!(Shuffle::None.groups(&sorted).is_empty());
    }

    #[test]
    fn permutations_stay_inside_their_groups() {
        let sorted: Vec<f64> = (0..40).map(|i| 1.0 - i as f64 * 0.01).collect();
        let shuffle = Shuffle::GroupP { p: 0.1 };
        let groups = shuffle.groups(&sorted);
        assert!(groups.len() > 5, "{groups:?}");
        let mut moved = false;
        for seed in 0..20 {
            let mut columns: Vec<usize> = (0..40).collect();
            shuffle.apply(&sorted, &mut columns, &mut SplitMix64::new(seed));
            for g in &groups {
                let mut inside = columns[g.clone()].to_vec();
                inside.sort();
                assert_eq!(inside, g.clone().collect::<Vec<_>>());
            }
            moved |= columns != (0..40).collect::<Vec<_>>();
        }
        assert!(moved, "some seed must move a column");
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert!(Shuffle::GroupP { p: 0.0 }.check().is_err());
        assert!(Shuffle::GroupP { p: 1.5 }.check().is_err());
        assert!(Shuffle::Range { start: 3, end: 3 }.check().is_err());
        assert!(Shuffle::Fixed { size: 0 }.check().is_err());
        assert!(Shuffle::default().check().is_ok());
    }
}
