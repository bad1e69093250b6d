//! Reranking, `rerank:PATH` (MTEB's Reranking tasks: AskUbuntuDupQuestions,
//! SciDocsRR, StackOverflowDupQuestions, MindSmall): each query's candidates,
//! its positives and negatives, ordered by cosine similarity to it. MAP x 100
//! (primary), MRR@10 and nDCG@10 x 100, means over queries, as
//! sentence-transformers' `RerankingEvaluator` (and MTEB's, after it)
//! computes them; a query without a positive or without a negative is
//! skipped and counted.
//!
//! Input: MTEB's reranking JSONL, plain or `.gz`, one query a line:
//! `{"query": "...", "positive": ["..."], "negative": ["..."]}`.

use std::collections::BTreeMap;

use super::evaluator::{Evaluator, MetricInfo, SentenceVectors, TaskFamily, TaskResult};
use super::ranking::{average_precision, ndcg_at_k, reciprocal_rank_at_k};
use super::task_files::{
    column_of, lines, path_of, path_task, read_text, record, text_field, texts_field,
};
use crate::error::Error;

const PREFIX: &str = "rerank:";
const NAME: &str = "Reranking";
/// The cut-off of MRR and nDCG.
const AT: usize = 10;

const fn metric(name: &'static str, label: &'static str) -> MetricInfo {
    MetricInfo {
        name,
        label,
        higher_is_better: true,
        percent: true,
    }
}

/// MAP (primary), MRR@10, nDCG@10, x 100.
pub const METRICS: &[MetricInfo] = &[
    metric("map", "MAP x100"),
    metric("mrr_at_10", "MRR@10 x100"),
    metric("ndcg_at_10", "nDCG@10 x100"),
];

/// The registry's entry: `rerank:PATH`.
pub const FAMILY: TaskFamily = TaskFamily {
    family: NAME,
    names: &["rerank:PATH"],
    resolve: |name| path_task(PREFIX, name),
    metrics: METRICS,
    load: |name, _| {
        let path = path_of(PREFIX, name);
        let text = read_text(&path)?;
        let mut queries = Vec::new();
        let mut skipped = 0;
        for line in lines(&text) {
            let map = record(&path, line)?;
            let query = RerankQuery {
                query: text_field(&path, line.0, &map, "query")?,
                positive: texts_field(&path, line.0, &map, "positive")?,
                negative: texts_field(&path, line.0, &map, "negative")?,
            };
            if query.positive.is_empty() || query.negative.is_empty() {
                skipped += 1;
            } else {
                queries.push(query);
            }
        }
        if queries.is_empty() {
            return Err(Error::data(
                &path,
                1,
                "no query with both a positive and a negative",
            ));
        }
        Ok(Box::new(Reranking {
            name: name.to_string(),
            column: column_of(&path),
            queries,
            skipped,
        }))
    },
};

/// One query and its candidates.
#[derive(Debug, Clone)]
pub struct RerankQuery {
    /// The query.
    pub query: String,
    /// Candidates relevant to it.
    pub positive: Vec<String>,
    /// Candidates that are not.
    pub negative: Vec<String>,
}

/// A reranking task.
pub struct Reranking {
    name: String,
    column: String,
    queries: Vec<RerankQuery>,
    skipped: usize,
}

/// MAP, MRR@10 and nDCG@10 (x 100) of queries given each query's
/// candidates' scores (positives first) and how many positives it has.
pub fn reranking_metrics(queries: &[(Vec<f64>, usize)]) -> BTreeMap<String, f64> {
    let mut sums = [0.0; 3];
    for (scores, positives) in queries {
        let relevant: Vec<bool> = (0..scores.len()).map(|i| i < *positives).collect();
        sums[0] += average_precision(&relevant, scores);
        sums[1] += reciprocal_rank_at_k(&relevant, scores, AT);
        sums[2] += ndcg_at_k(&relevant, scores, AT);
    }
    let n = queries.len().max(1) as f64;
    METRICS
        .iter()
        .zip(sums)
        .map(|(m, sum)| (m.name.to_string(), 100.0 * sum / n))
        .collect()
}

impl Evaluator for Reranking {
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
        self.queries
            .iter()
            .flat_map(|q| {
                std::iter::once(&q.query)
                    .chain(&q.positive)
                    .chain(&q.negative)
                    .map(String::as_str)
            })
            .collect()
    }

    fn score(&self, vectors: &SentenceVectors) -> TaskResult {
        let scored: Vec<(Vec<f64>, usize)> = self
            .queries
            .iter()
            .map(|q| {
                let scores = q
                    .positive
                    .iter()
                    .chain(&q.negative)
                    .map(|c| vectors.cosine(&q.query, c))
                    .collect();
                (scores, q.positive.len())
            })
            .collect();
        TaskResult {
            task: self.name.clone(),
            column: self.column.clone(),
            family: NAME.into(),
            shown: &["map", "mrr_at_10", "ndcg_at_10"],
            primary: METRICS[0].name.into(),
            metrics: reranking_metrics(&scored),
            counts: BTreeMap::from([
                ("queries".into(), self.queries.len()),
                ("skipped".into(), self.skipped),
            ]),
        }
    }
}
