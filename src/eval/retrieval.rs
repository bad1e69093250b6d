//! Retrieval, `retrieval:DIR` (BEIR's layout, as MTEB's Retrieval tasks
//! use it): every query's nearest documents of the corpus by cosine
//! similarity, scored against the query's relevant documents. nDCG@10 x 100
//! (primary), MRR@10, Recall@1/10/100 and MAP@100 x 100, means over queries
//! with a relevant document, as sentence-transformers'
//! `InformationRetrievalEvaluator` defines them (binary relevance: a qrels
//! score above 0), equal scores ranked by document id, the lower first, as
//! it breaks ties.
//!
//! The corpus is embedded once with the other tasks' sentences; the search
//! is exact, over blocks of queries against chunks of the corpus, so memory
//! beyond the vectors is one chunk of unit vectors and each query's best.
//!
//! Input: a directory with `corpus.jsonl` (`_id`, `text`, optional `title`,
//! prepended to the text), `queries.jsonl` (`_id`, `text`) and
//! `qrels/<split>.tsv` (`query-id`, `corpus-id`, `score`; a header line
//! allowed): `test.tsv`, or the one file there. Each file plain or `.gz`.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::evaluator::{Evaluator, MetricInfo, SentenceVectors, TaskFamily, TaskResult};
use super::ranking::RankedHits;
use super::task_files::{column_of, lines, path_of, path_task, read_text, record, text_field};
use crate::error::{Error, Result};

const PREFIX: &str = "retrieval:";
const NAME: &str = "Retrieval";
/// How many documents each query keeps: the largest cut-off.
pub const TOP_K: usize = 100;
/// Corpus documents scored against a block of queries at a time.
pub const CORPUS_CHUNK: usize = 4096;
/// Queries in one block.
const QUERY_BLOCK: usize = 256;

const fn metric(name: &'static str, label: &'static str) -> MetricInfo {
    MetricInfo {
        name,
        label,
        higher_is_better: true,
        percent: true,
    }
}

/// nDCG@10 (primary), MRR@10, Recall@1, @10, @100, MAP@100, x 100.
pub const METRICS: &[MetricInfo] = &[
    metric("ndcg_at_10", "nDCG@10 x100"),
    metric("mrr_at_10", "MRR@10 x100"),
    metric("recall_at_1", "Recall@1 x100"),
    metric("recall_at_10", "Recall@10 x100"),
    metric("recall_at_100", "Recall@100 x100"),
    metric("map_at_100", "MAP@100 x100"),
];

/// The registry's entry: `retrieval:DIR`.
pub const FAMILY: TaskFamily = TaskFamily {
    family: NAME,
    names: &["retrieval:DIR"],
    resolve: |name| path_task(PREFIX, name),
    metrics: METRICS,
    load: |name, _| {
        let dir = path_of(PREFIX, name);
        let mut task = Retrieval::read(&dir)?;
        task.name = name.to_string();
        Ok(Box::new(task))
    },
};

/// A retrieval task: queries, corpus and relevance judgements.
pub struct Retrieval {
    name: String,
    column: String,
    /// Query texts, those with a relevant document only.
    queries: Vec<String>,
    /// Corpus document ids.
    ids: Vec<String>,
    /// Corpus texts.
    texts: Vec<String>,
    /// Each query's relevant document ids.
    relevant: Vec<HashSet<String>>,
    /// Corpus documents scored at a time.
    pub chunk: usize,
}

/// `dir/name`, or `dir/name.gz` when only that exists.
fn file_in(dir: &Path, name: &str) -> PathBuf {
    let plain = dir.join(name);
    let gz = dir.join(format!("{name}.gz"));
    if !plain.exists() && gz.exists() {
        gz
    } else {
        plain
    }
}

/// `(id, text)` of each line of a BEIR JSONL file, a title prepended.
fn read_records(path: &Path) -> Result<Vec<(String, String)>> {
    let text = read_text(path)?;
    let mut seen = HashSet::new();
    lines(&text)
        .map(|line| {
            let map = record(path, line)?;
            let id = text_field(path, line.0, &map, "_id")?;
            let body = text_field(path, line.0, &map, "text")?;
            let text = match map.get("title").and_then(|t| t.as_str()) {
                Some(title) if !title.trim().is_empty() => {
                    format!("{title} {body}").trim().to_string()
                }
                _ => body,
            };
            if !seen.insert(id.clone()) {
                return Err(Error::data(
                    path,
                    line.0,
                    format!("id \"{id}\" repeats an earlier line's"),
                ));
            }
            Ok((id, text))
        })
        .collect()
}

/// The qrels file of `dir`: `qrels/test.tsv`, else the only one there.
fn qrels_file(dir: &Path) -> Result<PathBuf> {
    let qrels = dir.join("qrels");
    let test = file_in(&qrels, "test.tsv");
    if test.exists() {
        return Ok(test);
    }
    let entries = std::fs::read_dir(&qrels).map_err(|e| Error::io(&qrels, e))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.to_string_lossy();
            name.ends_with(".tsv") || name.ends_with(".tsv.gz")
        })
        .collect();
    files.sort();
    match files.len() {
        1 => Ok(files.remove(0)),
        0 => Err(Error::data(
            &qrels,
            1,
            "no qrels file (<split>.tsv) in the directory",
        )),
        _ => Err(Error::data(
            &qrels,
            1,
            format!(
                "several qrels files and no test.tsv: {}",
                files
                    .iter()
                    .map(|f| f
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// Each query id's relevant document ids (score above 0).
fn read_qrels(path: &Path) -> Result<HashMap<String, HashSet<String>>> {
    let text = read_text(path)?;
    let mut relevant: HashMap<String, HashSet<String>> = HashMap::new();
    for (i, (n, line)) in lines(&text).enumerate() {
        let fields: Vec<&str> = line.split('\t').map(str::trim).collect();
        if fields.len() < 3 {
            return Err(Error::data(
                path,
                n,
                format!(
                    "expected query-id, corpus-id and score, tab-separated; found {} columns",
                    fields.len()
                ),
            ));
        }
        let Ok(score) = fields[2].parse::<f64>() else {
            if i == 0 {
                continue;
            }
            return Err(Error::data(
                path,
                n,
                format!("score \"{}\" is not a number", fields[2]),
            ));
        };
        if score > 0.0 {
            relevant
                .entry(fields[0].to_string())
                .or_default()
                .insert(fields[1].to_string());
        }
    }
    Ok(relevant)
}

impl Retrieval {
    /// Reads a BEIR directory.
    pub fn read(dir: &Path) -> Result<Self> {
        let corpus_path = file_in(dir, "corpus.jsonl");
        let corpus = read_records(&corpus_path)?;
        let queries = read_records(&file_in(dir, "queries.jsonl"))?;
        let qrels_path = qrels_file(dir)?;
        let mut qrels = read_qrels(&qrels_path)?;
        if corpus.is_empty() {
            return Err(Error::data(&corpus_path, 1, "the corpus is empty"));
        }
        let (mut texts, mut relevant) = (Vec::new(), Vec::new());
        for (id, text) in queries {
            if let Some(docs) = qrels.remove(&id) {
                texts.push(text);
                relevant.push(docs);
            }
        }
        if texts.is_empty() {
            return Err(Error::data(
                &qrels_path,
                1,
                "no query of queries.jsonl has a relevant document here",
            ));
        }
        let (ids, corpus_texts) = corpus.into_iter().unzip();
        Ok(Self {
            name: format!("{PREFIX}{}", dir.display()),
            column: column_of(dir),
            queries: texts,
            ids,
            texts: corpus_texts,
            relevant,
            chunk: CORPUS_CHUNK,
        })
    }
}

/// `vectors` scaled to unit length, in f64, one row after another (zero
/// rows stay zero).
fn unit_rows(vectors: &[&[f32]], dim: usize) -> Vec<f64> {
    let mut out = vec![0.0; vectors.len() * dim];
    for (row, v) in out.chunks_exact_mut(dim).zip(vectors) {
        let norm = v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
        if norm > 0.0 {
            for (o, &x) in row.iter_mut().zip(v.iter()) {
                *o = f64::from(x) / norm;
            }
        }
    }
    out
}

/// The dot product of two rows, summed in one fixed order (so a score
/// never depends on how the corpus was chunked).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (a4, b4) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = a4
        .remainder()
        .iter()
        .zip(b4.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a4.zip(b4) {
        for i in 0..4 {
            acc[i] += x[i] * y[i];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// A query's best documents so far: at most `2k` candidates, cut back to
/// the `k` best whenever full, and the worst of those `k` (nothing that
/// ranks after it can enter).
#[derive(Clone, Default)]
struct Best {
    kept: Vec<(usize, f64)>,
    worst: Option<(usize, f64)>,
}

/// Each query's `k` best corpus documents by cosine similarity, best first,
/// equal scores by id, the lower first: exact search over blocks of
/// queries against `chunk` documents at a time, so that memory beyond the
/// vectors is one chunk of unit vectors and at most `2k` candidates a
/// query. The result does not depend on `chunk`.
pub fn top_hits(
    queries: &[&[f32]],
    corpus: &[&[f32]],
    ids: &[String],
    k: usize,
    chunk: usize,
) -> Vec<Vec<(usize, f64)>> {
    let k = k.max(1);
    let chunk = chunk.max(1);
    let dim = queries
        .first()
        .or(corpus.first())
        .map_or(0, |v| v.len())
        .max(1);
    let order = |a: &(usize, f64), b: &(usize, f64)| -> Ordering {
        b.1.total_cmp(&a.1).then_with(|| ids[a.0].cmp(&ids[b.0]))
    };
    let units = unit_rows(queries, dim);
    let mut best: Vec<Best> = vec![Best::default(); queries.len()];
    for (c, docs) in corpus.chunks(chunk).enumerate() {
        let offset = c * chunk;
        let docs = unit_rows(docs, dim);
        best.par_chunks_mut(QUERY_BLOCK)
            .zip(units.par_chunks(QUERY_BLOCK * dim))
            .for_each(|(block_best, block)| {
                for (j, doc) in docs.chunks_exact(dim).enumerate() {
                    for (best, query) in block_best.iter_mut().zip(block.chunks_exact(dim)) {
                        let hit = (offset + j, dot(query, doc));
                        if best
                            .worst
                            .is_some_and(|w| order(&hit, &w) != Ordering::Less)
                        {
                            continue;
                        }
                        best.kept.push(hit);
                        if best.kept.len() == 2 * k {
                            best.kept.select_nth_unstable_by(k - 1, order);
                            best.kept.truncate(k);
                            best.worst = Some(best.kept[k - 1]);
                        }
                    }
                }
            });
    }
    best.into_iter()
        .map(|Best { mut kept, .. }| {
            kept.sort_by(order);
            kept.truncate(k);
            kept
        })
        .collect()
}

/// The metrics (x 100) of each query's ranked hits against its relevant
/// documents.
pub fn retrieval_metrics(ranked: &[RankedHits<'_>]) -> BTreeMap<String, f64> {
    let n = ranked.len().max(1) as f64;
    let mean = |f: &dyn Fn(&RankedHits<'_>) -> f64| 100.0 * ranked.iter().map(f).sum::<f64>() / n;
    BTreeMap::from([
        ("ndcg_at_10".into(), mean(&|h| h.ndcg_at(10))),
        ("mrr_at_10".into(), mean(&|h| h.reciprocal_rank_at(10))),
        ("recall_at_1".into(), mean(&|h| h.recall_at(1))),
        ("recall_at_10".into(), mean(&|h| h.recall_at(10))),
        ("recall_at_100".into(), mean(&|h| h.recall_at(100))),
        ("map_at_100".into(), mean(&|h| h.average_precision_at(100))),
    ])
}

impl Evaluator for Retrieval {
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
            .chain(&self.texts)
            .map(String::as_str)
            .collect()
    }

    fn score(&self, vectors: &SentenceVectors) -> TaskResult {
        let lookup = |texts: &[String]| -> Vec<&[f32]> {
            texts
                .iter()
                .map(|t| vectors.vector(t).unwrap_or(&[]))
                .collect()
        };
        let hits = top_hits(
            &lookup(&self.queries),
            &lookup(&self.texts),
            &self.ids,
            TOP_K,
            self.chunk,
        );
        let flags: Vec<Vec<bool>> = hits
            .iter()
            .zip(&self.relevant)
            .map(|(hits, relevant)| {
                hits.iter()
                    .map(|(d, _)| relevant.contains(&self.ids[*d]))
                    .collect()
            })
            .collect();
        let ranked: Vec<RankedHits<'_>> = flags
            .iter()
            .zip(&self.relevant)
            .map(|(hits, relevant)| RankedHits {
                hits,
                relevant: relevant.len(),
            })
            .collect();
        TaskResult {
            task: self.name.clone(),
            column: self.column.clone(),
            family: NAME.into(),
            shown: &[
                "ndcg_at_10",
                "mrr_at_10",
                "recall_at_1",
                "recall_at_10",
                "recall_at_100",
                "map_at_100",
            ],
            primary: METRICS[0].name.into(),
            metrics: retrieval_metrics(&ranked),
            counts: BTreeMap::from([
                ("queries".into(), self.queries.len()),
                ("documents".into(), self.ids.len()),
            ]),
        }
    }
}
