//! Ranking metrics over scored candidates, as the field's reference
//! evaluators compute them: average precision and nDCG@k as scikit-learn's
//! `average_precision_score` and `ndcg_score` (tied scores grouped: a tie
//! shares its precision step, and its gain is averaged over the positions it
//! spans), reciprocal rank@k in decreasing score order with ties in input
//! order (sentence-transformers' `RerankingEvaluator`), and the cut-off
//! metrics of a ranked hit list as sentence-transformers'
//! `InformationRetrievalEvaluator` defines them.

use std::cmp::Ordering;

/// Indices of `scores` from the highest score down, ties in input order.
pub fn descending(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    order
}

/// Runs of equal scores in `order` (from [`descending`]): half-open ranges
/// of positions.
fn tie_groups(scores: &[f64], order: &[usize]) -> Vec<(usize, usize)> {
    let mut groups = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len()
            && scores[order[end]].total_cmp(&scores[order[start]]) == Ordering::Equal
        {
            end += 1;
        }
        groups.push((start, end));
        start = end;
    }
    groups
}

/// Average precision of `scores` against `relevant` (0 without a relevant
/// item): the mean over thresholds at each distinct score of precision,
/// weighted by the recall it adds.
pub fn average_precision(relevant: &[bool], scores: &[f64]) -> f64 {
    let positives = relevant.iter().filter(|&&r| r).count();
    if positives == 0 {
        return 0.0;
    }
    let order = descending(scores);
    let (mut hits, mut seen, mut ap) = (0usize, 0usize, 0.0);
    for (start, end) in tie_groups(scores, &order) {
        let new_hits = order[start..end].iter().filter(|&&i| relevant[i]).count();
        hits += new_hits;
        seen += end - start;
        ap += (new_hits as f64 / positives as f64) * (hits as f64 / seen as f64);
    }
    ap
}

/// nDCG@k of `scores` against binary relevance, ties averaged; 0 without a
/// relevant item.
pub fn ndcg_at_k(relevant: &[bool], scores: &[f64], k: usize) -> f64 {
    let discount = |i: usize| {
        if i < k {
            1.0 / (i as f64 + 2.0).log2()
        } else {
            0.0
        }
    };
    let ideal: f64 = (0..relevant.iter().filter(|&&r| r).count())
        .map(discount)
        .sum();
    if ideal == 0.0 {
        return 0.0;
    }
    let order = descending(scores);
    let dcg: f64 = tie_groups(scores, &order)
        .into_iter()
        .map(|(start, end)| {
            let gain = order[start..end].iter().filter(|&&i| relevant[i]).count() as f64
                / (end - start) as f64;
            gain * (start..end).map(discount).sum::<f64>()
        })
        .sum();
    dcg / ideal
}

/// Reciprocal rank of the first relevant item among the `k` highest scores
/// (ties in input order); 0 when none is there.
pub fn reciprocal_rank_at_k(relevant: &[bool], scores: &[f64], k: usize) -> f64 {
    descending(scores)
        .into_iter()
        .take(k)
        .position(|i| relevant[i])
        .map_or(0.0, |rank| 1.0 / (rank as f64 + 1.0))
}

/// Cut-off metrics of one query's ranked hits (`hits[r]`: whether the hit
/// at rank r is relevant) when it has `relevant` relevant documents.
#[derive(Debug, Clone, Copy)]
pub struct RankedHits<'a> {
    /// Relevance of each retrieved hit, best first.
    pub hits: &'a [bool],
    /// Relevant documents the query has in all.
    pub relevant: usize,
}

impl RankedHits<'_> {
    fn top(&self, k: usize) -> &[bool] {
        &self.hits[..k.min(self.hits.len())]
    }

    /// Relevant hits among the top k over the query's relevant documents.
    pub fn recall_at(&self, k: usize) -> f64 {
        self.top(k).iter().filter(|&&h| h).count() as f64 / self.relevant as f64
    }

    /// Reciprocal rank of the first relevant hit in the top k (0 if none).
    pub fn reciprocal_rank_at(&self, k: usize) -> f64 {
        self.top(k)
            .iter()
            .position(|&h| h)
            .map_or(0.0, |r| 1.0 / (r as f64 + 1.0))
    }

    /// Binary nDCG@k: DCG of the top k over that of min(relevant, k) hits.
    pub fn ndcg_at(&self, k: usize) -> f64 {
        let dcg = |flags: &mut dyn Iterator<Item = bool>| -> f64 {
            flags
                .enumerate()
                .filter(|(_, h)| *h)
                .map(|(r, _)| 1.0 / (r as f64 + 2.0).log2())
                .sum()
        };
        let ideal = dcg(&mut std::iter::repeat_n(true, self.relevant.min(k)));
        dcg(&mut self.top(k).iter().copied()) / ideal
    }

    /// AP@k: the precision at each relevant hit of the top k, summed, over
    /// min(k, relevant).
    pub fn average_precision_at(&self, k: usize) -> f64 {
        let mut found = 0usize;
        let mut sum = 0.0;
        for (rank, _) in self.top(k).iter().enumerate().filter(|(_, h)| **h) {
            found += 1;
            sum += found as f64 / (rank as f64 + 1.0);
        }
        sum / k.min(self.relevant) as f64
    }
}

/// Best accuracy over thresholds and its threshold, as
/// sentence-transformers' `BinaryClassificationEvaluator` finds them: pairs
/// in decreasing score order, a cut after each run of equal scores (and
/// before the first, predicting every pair dissimilar: threshold just above
/// the highest score), the threshold halfway to the next score (the score
/// itself when the midpoint rounds onto the next one, or after the last).
pub fn best_accuracy(scores: &[f64], labels: &[bool]) -> (f64, f64) {
    let order = descending(scores);
    let n = labels.len() as f64;
    let mut negatives_left = labels.iter().filter(|&&l| !l).count();
    let mut positives = 0usize;
    let Some(&top) = order.first() else {
        return (0.0, -1.0);
    };
    let (mut best, mut threshold) = (negatives_left as f64 / n, scores[top].next_up());
    for_each_cut(scores, &order, |i, cut| {
        if labels[i] {
            positives += 1;
        } else {
            negatives_left -= 1;
        }
        let Some(cut) = cut else { return };
        let accuracy = (positives + negatives_left) as f64 / n;
        if accuracy > best {
            best = accuracy;
            threshold = cut;
        }
    });
    (best, threshold)
}

/// Walks `order` (from [`descending`]), calling `visit(item, cut)` for each
/// item: `cut` is the threshold after it when the next score differs (or it
/// is the last), `None` inside a run of equal scores.
fn for_each_cut(scores: &[f64], order: &[usize], mut visit: impl FnMut(usize, Option<f64>)) {
    for (p, &i) in order.iter().enumerate() {
        let cut = match order.get(p + 1) {
            None => Some(scores[i]),
            Some(&next) if scores[next] == scores[i] => None,
            Some(&next) => {
                let mid = (scores[i] + scores[next]) / 2.0;
                Some(if mid == scores[next] { scores[i] } else { mid })
            }
        };
        visit(i, cut);
    }
}

/// The best F1 over thresholds, as [`best_accuracy`] walks them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BestF1 {
    /// F1.
    pub f1: f64,
    /// Precision at that threshold.
    pub precision: f64,
    /// Recall at that threshold.
    pub recall: f64,
    /// The threshold.
    pub threshold: f64,
}

/// The best F1 over thresholds (0 everywhere without a positive).
pub fn best_f1(scores: &[f64], labels: &[bool]) -> BestF1 {
    let order = descending(scores);
    let positives = labels.iter().filter(|&&l| l).count() as f64;
    let mut best = BestF1 {
        f1: 0.0,
        precision: 0.0,
        recall: 0.0,
        threshold: 0.0,
    };
    let (mut taken, mut correct) = (0usize, 0usize);
    for_each_cut(scores, &order, |i, cut| {
        taken += 1;
        correct += usize::from(labels[i]);
        let Some(cut) = cut else { return };
        if correct == 0 {
            return;
        }
        let precision = correct as f64 / taken as f64;
        let recall = correct as f64 / positives;
        let f1 = 2.0 * precision * recall / (precision + recall);
        if f1 > best.f1 {
            best = BestF1 {
                f1,
                precision,
                recall,
                threshold: cut,
            };
        }
    });
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tie_shares_its_precision_and_its_gain() {
        let relevant = [true, false, true, false];
        // The relevant item at index 2 ties the irrelevant one at index 1.
        let scores = [0.9, 0.5, 0.5, 0.1];
        // Thresholds 0.9 (P 1, R 1/2), 0.5 (P 2/3, R 1): AP = 1/2 + 1/3.
        assert!((average_precision(&relevant, &scores) - (0.5 + 1.0 / 3.0)).abs() < 1e-15);
        let d = |r: f64| 1.0 / (r + 2.0).log2();
        let dcg = d(0.0) + 0.5 * (d(1.0) + d(2.0));
        assert!((ndcg_at_k(&relevant, &scores, 10) - dcg / (d(0.0) + d(1.0))).abs() < 1e-15);
        // Input order breaks the tie for the reciprocal rank.
        assert_eq!(
            reciprocal_rank_at_k(&[false, false, true], &[0.2, 0.9, 0.9], 10),
            0.5
        );
        assert_eq!(
            reciprocal_rank_at_k(&[false, false, true], &[0.2, 0.9, 0.9], 1),
            0.0
        );
    }

    #[test]
    fn cut_off_metrics_of_a_hit_list() {
        let hits = RankedHits {
            hits: &[false, true, false, true],
            relevant: 3,
        };
        assert_eq!(hits.recall_at(1), 0.0);
        assert!((hits.recall_at(10) - 2.0 / 3.0).abs() < 1e-15);
        assert_eq!(hits.reciprocal_rank_at(10), 0.5);
        assert!((hits.average_precision_at(100) - (0.5 + 0.5) / 3.0).abs() < 1e-15);
        assert!((hits.average_precision_at(2) - 0.5 / 2.0).abs() < 1e-15);
    }

    #[test]
    fn thresholds_fall_between_runs_of_equal_scores() {
        let scores = [0.875, 0.75, 0.25, 0.125];
        let labels = [true, true, false, false];
        assert_eq!(best_accuracy(&scores, &labels), (1.0, 0.5));
        let f1 = best_f1(&scores, &labels);
        assert_eq!((f1.f1, f1.threshold), (1.0, 0.5));
        // A tie cannot be cut: 0.8 holds a positive and a negative.
        let tied = [0.875, 0.75, 0.75, 0.125];
        let labels = [true, true, false, false];
        assert_eq!(best_accuracy(&tied, &labels), (0.75, 0.8125));
        // Every pair dissimilar is the best when most are negative.
        let (accuracy, threshold) = best_accuracy(&[0.5, 0.4, 0.3], &[false, true, false]);
        assert!((accuracy - 2.0 / 3.0).abs() < 1e-15 && threshold > 0.5);
    }
}
