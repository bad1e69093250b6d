//! Pair classification, `pairclass:PATH` (MTEB's PairClassification, e.g.
//! duplicate questions): pairs labelled 1 (same meaning) or 0, scored by the
//! cosine similarity of their vectors. Average precision x 100 (primary),
//! best F1 and best accuracy over thresholds with their thresholds, and the
//! precision and recall at the best F1, as sentence-transformers'
//! `BinaryClassificationEvaluator` computes them. Pair files as
//! [`super::pair_scores`] reads them, the value under `label`/`labels`.

use std::collections::BTreeMap;

use super::evaluator::{Evaluator, MetricInfo, SentenceVectors, TaskFamily, TaskResult};
use super::pair_scores::read_pairs;
use super::ranking::{average_precision, best_accuracy, best_f1};
use super::sts::StsPairs;
use super::task_files::{column_of, path_of, path_task};
use crate::error::{Error, Result};

const PREFIX: &str = "pairclass:";
const NAME: &str = "Pair classification";

const fn metric(name: &'static str, label: &'static str, percent: bool) -> MetricInfo {
    MetricInfo {
        name,
        label,
        higher_is_better: true,
        percent,
    }
}

/// AP (primary), F1, accuracy, precision, recall (x 100), thresholds.
pub const METRICS: &[MetricInfo] = &[
    metric("ap", "AP x100", true),
    metric("f1", "F1 x100", true),
    metric("accuracy", "accuracy x100", true),
    metric("precision", "precision x100", true),
    metric("recall", "recall x100", true),
    metric("f1_threshold", "cosine threshold", false),
    metric("accuracy_threshold", "cosine threshold", false),
];

/// The registry's entry: `pairclass:PATH`.
pub const FAMILY: TaskFamily = TaskFamily {
    family: NAME,
    names: &["pairclass:PATH"],
    resolve: |name| path_task(PREFIX, name),
    metrics: METRICS,
    load: |name, _| {
        let path = path_of(PREFIX, name);
        let (pairs, at) = read_pairs(&path, &["label", "labels"])?;
        let labels = pairs
            .gold
            .iter()
            .zip(&at)
            .map(|(&v, &line)| {
                if v == 1.0 || v == 0.0 {
                    Ok(v == 1.0)
                } else {
                    Err(Error::data(
                        &path,
                        line,
                        format!("label {v}: labels are 0 or 1"),
                    ))
                }
            })
            .collect::<Result<Vec<bool>>>()?;
        if !labels.contains(&true) || !labels.contains(&false) {
            return Err(Error::data(
                &path,
                1,
                "pair classification needs pairs of both labels, 0 and 1",
            ));
        }
        Ok(Box::new(PairClassification {
            name: name.to_string(),
            column: column_of(&path),
            pairs,
            labels,
        }))
    },
};

/// Labelled pairs.
pub struct PairClassification {
    name: String,
    column: String,
    pairs: StsPairs,
    labels: Vec<bool>,
}

/// The metrics of cosine `scores` against `labels`, x 100 where they are
/// fractions.
pub fn classification_metrics(scores: &[f64], labels: &[bool]) -> BTreeMap<String, f64> {
    let (accuracy, accuracy_threshold) = best_accuracy(scores, labels);
    let f1 = best_f1(scores, labels);
    BTreeMap::from([
        ("ap".into(), 100.0 * average_precision(labels, scores)),
        ("f1".into(), 100.0 * f1.f1),
        ("accuracy".into(), 100.0 * accuracy),
        ("precision".into(), 100.0 * f1.precision),
        ("recall".into(), 100.0 * f1.recall),
        ("f1_threshold".into(), f1.threshold),
        ("accuracy_threshold".into(), accuracy_threshold),
    ])
}

impl Evaluator for PairClassification {
    fn name(&self) -> &str {
        &self.name
    }

    fn column(&self) -> &str {
        &self.column
    }

    fn family(&self) -> &str {
        NAME
    }

    fn metrics(&self) -> &[MetricInfo] {
        METRICS
    }

    fn sentences(&self) -> Vec<&str> {
        self.pairs.sentences()
    }

    fn score(&self, vectors: &SentenceVectors) -> TaskResult {
        TaskResult {
            task: self.name.clone(),
            column: self.column.clone(),
            family: NAME.into(),
            shown: &["ap", "f1", "accuracy"],
            primary: METRICS[0].name.into(),
            metrics: classification_metrics(&self.pairs.cosines(vectors), &self.labels),
            counts: BTreeMap::from([("pairs".into(), self.labels.len())]),
        }
    }
}
