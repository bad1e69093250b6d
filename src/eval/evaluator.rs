//! Evaluators as plug-ins (after sentence-transformers' `SentenceEvaluator`).
//! An evaluator is one task: it names the sentences it needs, then scores
//! their vectors into named metrics, the first of which is its primary one
//! (with its direction). [`evaluate`] embeds each distinct sentence of all
//! tasks once and scores every task; training, `eval.select_by`, the log, the
//! dashboard and `gcse eval` read the results through these types alone.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

pub use crate::embed::embedder::SentenceVectors;
use crate::embed::embedder::{distinct, Embedder};
use crate::error::{Error, Result};
use crate::model::cross_encoder::CrossScorer;

/// One metric an evaluator reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricInfo {
    /// Key in results and logs, and after `/` in `eval.select_by`.
    pub name: &'static str,
    /// How titles name it (e.g. "Spearman x100").
    pub label: &'static str,
    /// Whether a larger value is better (for picking the best checkpoint).
    pub higher_is_better: bool,
    /// Whether results give it x 100 (a fraction in MTEB's files).
    pub percent: bool,
}

/// One evaluation task.
pub trait Evaluator: Send + Sync {
    /// Its name in `eval.tasks`, results, the log and the dashboard.
    fn name(&self) -> &str;
    /// Its column header in result tables.
    fn column(&self) -> &str;
    /// The family of tasks it belongs to (e.g. "STS"), for titles.
    fn family(&self) -> &str;
    /// The metrics it reports, the primary one first.
    fn metrics(&self) -> &[MetricInfo];
    /// Every sentence whose vector it needs (repeats allowed).
    fn sentences(&self) -> Vec<&str>;
    /// Its results from the vectors of [`Evaluator::sentences`].
    fn score(&self, vectors: &SentenceVectors) -> TaskResult;
    /// The sentence pairs a cross-encoder scores for it (first sentences,
    /// second sentences), for a task of scored pairs; `None` for any other.
    fn pairs(&self) -> Option<(&[String], &[String])> {
        None
    }
    /// Its results from a cross-encoder's score of each of
    /// [`Evaluator::pairs`], in order; `None` for a task without pairs.
    fn score_pairs(&self, _scores: &[f64]) -> Option<TaskResult> {
        None
    }
}

/// The results of one task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskResult {
    /// The task's name.
    pub task: String,
    /// Its column header.
    pub column: String,
    /// Its family's name (tables group tasks by it).
    #[serde(skip)]
    pub family: String,
    /// The metrics tables show, in order (empty: the primary one).
    #[serde(skip)]
    pub shown: &'static [&'static str],
    /// The primary metric's name.
    pub primary: String,
    /// Every metric's value.
    #[serde(flatten)]
    pub metrics: BTreeMap<String, f64>,
    /// Sizes (e.g. `pairs`: sentence pairs scored).
    #[serde(flatten)]
    pub counts: BTreeMap<String, usize>,
}

impl TaskResult {
    /// The value of `metric`, or of the primary metric.
    pub fn value(&self, metric: Option<&str>) -> Option<f64> {
        self.metrics.get(metric.unwrap_or(&self.primary)).copied()
    }

    /// The primary metric's value (NaN if missing).
    pub fn primary_value(&self) -> f64 {
        self.value(None).unwrap_or(f64::NAN)
    }
}

/// Results of several tasks and the cost of computing them.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// One entry per task, in the order asked.
    pub scores: Vec<TaskResult>,
    /// Mean of the tasks' primary metrics.
    pub average: f64,
    /// Distinct sentences embedded (a cross-encoder: distinct pairs scored).
    pub sentences: usize,
    /// Wall-clock seconds spent embedding (or scoring).
    pub seconds: f64,
    /// Sentences embedded (pairs scored) per second.
    pub sentences_per_second: f64,
}

impl EvalReport {
    /// The results of `task`, if it was evaluated.
    pub fn task(&self, task: &str) -> Option<&TaskResult> {
        self.scores.iter().find(|s| s.task == task)
    }

    /// The value `selection` picks (NaN if missing); [`MEAN`]: the mean
    /// of every task's primary metric.
    pub fn selected(&self, selection: &Selection) -> f64 {
        if selection.task == MEAN {
            let values: Vec<f64> = self.scores.iter().map(TaskResult::primary_value).collect();
            return values.iter().sum::<f64>() / values.len() as f64;
        }
        self.task(&selection.task)
            .and_then(|t| t.value(selection.metric.as_deref()))
            .unwrap_or(f64::NAN)
    }

    /// The results as text tables, one per family of tasks in the order
    /// they first appear: a column per task, then the family's average; a
    /// row per metric the family shows (the primary one alone for STS and
    /// other correlation tasks, as the papers print them, each row then
    /// labelled by its metric when there are more); a last line gives the
    /// counts.
    pub fn table(&self) -> String {
        let mut families: Vec<&str> = Vec::new();
        for score in &self.scores {
            if !families.contains(&score.family.as_str()) {
                families.push(&score.family);
            }
        }
        families
            .iter()
            .map(|family| {
                let tasks: Vec<&TaskResult> =
                    self.scores.iter().filter(|s| s.family == *family).collect();
                let table = family_table(&tasks);
                if families.len() > 1 {
                    format!("{family}\n{table}")
                } else {
                    table
                }
            })
            .collect::<Vec<_>>()
            .join("\n\n")
    }
}

fn family_table(tasks: &[&TaskResult]) -> String {
    let rows: Vec<&str> = match tasks.first() {
        Some(first) if !first.shown.is_empty() => first.shown.to_vec(),
        Some(first) => vec![first.primary.as_str()],
        None => Vec::new(),
    };
    let labelled = rows.len() > 1;
    let mut headers: Vec<String> = labelled.then(String::new).into_iter().collect();
    headers.extend(tasks.iter().map(|s| s.column.clone()));
    headers.push("Avg.".into());
    let values: Vec<Vec<String>> = rows
        .iter()
        .map(|&metric| {
            let of = |s: &TaskResult| s.value(Some(metric)).unwrap_or(f64::NAN);
            let mean = tasks.iter().map(|s| of(s)).sum::<f64>() / tasks.len().max(1) as f64;
            labelled
                .then(|| metric.to_string())
                .into_iter()
                .chain(tasks.iter().map(|s| format!("{:.2}", of(s))))
                .chain([format!("{mean:.2}")])
                .collect()
        })
        .collect();
    let mut counts: Vec<String> = labelled.then(String::new).into_iter().collect();
    counts.extend(tasks.iter().map(|s| {
        s.counts
            .values()
            .next()
            .map_or(String::new(), usize::to_string)
    }));
    counts.push(String::new());
    let unit = tasks
        .iter()
        .find_map(|s| s.counts.keys().next())
        .map_or("items", String::as_str);
    let widths: Vec<usize> = (0..headers.len())
        .map(|c| {
            values
                .iter()
                .map(|row| row[c].len())
                .chain([headers[c].len(), 5])
                .max()
                .unwrap_or(5)
        })
        .collect();
    let rule = format!(
        "+{}+",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("+")
    );
    let cells = |cells: &[String], sep: &str| {
        cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (v, w))| {
                if labelled && c == 0 {
                    format!(" {v:<w$} ")
                } else {
                    format!(" {v:>w$} ")
                }
            })
            .collect::<Vec<_>>()
            .join(sep)
    };
    let row = |values: &[String]| format!("|{}|", cells(values, "|"));
    let counts_row = format!(" {}", cells(&counts, " "));
    let mut lines = vec![rule.clone(), row(&headers), rule.clone()];
    lines.extend(values.iter().map(|v| row(v)));
    lines.push(rule);
    lines.push(format!("{} {unit}", counts_row.trim_end()));
    lines.join("\n")
}

/// `eval.select_by` for the mean of the primary metrics of every task
/// evaluated in training (e.g. mean(STS-B dev, SICK-R dev)).
pub const MEAN: &str = "mean";

/// Which result picks the best checkpoint: `eval.select_by`, `"task"` (its
/// primary metric), `"task/metric"` or [`MEAN`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// The task.
    pub task: String,
    /// The metric; `None`: the task's primary one.
    pub metric: Option<String>,
}

impl Selection {
    /// Reads `"task"` or `"task/metric"`. A task read from a file
    /// (`family:PATH`) names a path that may hold `/`: its metric follows
    /// the last one, and is always written (see
    /// [`super::registry::check_selection`]).
    pub fn parse(text: &str) -> Self {
        let split = if text.contains(':') {
            text.rsplit_once('/')
        } else {
            text.split_once('/')
        };
        match split {
            Some((task, metric)) => Self {
                task: task.to_string(),
                metric: Some(metric.to_string()),
            },
            None => Self {
                task: text.to_string(),
                metric: None,
            },
        }
    }

    /// The metric among `metrics` (a task's, primary first) this selects.
    pub fn metric_of<'a>(&self, metrics: &'a [MetricInfo]) -> Option<&'a MetricInfo> {
        match &self.metric {
            None => metrics.first(),
            Some(name) => metrics.iter().find(|m| m.name == name),
        }
    }
}

impl std::fmt::Display for Selection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.metric {
            None => f.write_str(&self.task),
            Some(m) => write!(f, "{}/{m}", self.task),
        }
    }
}

/// Evaluates every task, embedding each distinct sentence once.
pub fn evaluate<B: Backend>(
    embedder: &Embedder<'_, B>,
    tasks: &[Box<dyn Evaluator>],
) -> Result<EvalReport> {
    let unique = distinct(tasks.iter().flat_map(|t| t.sentences()));
    let bar = crate::progress::items(unique.len() as u64, "sentences");
    let start = Instant::now();
    let embeddings = embedder.embed(&unique, &bar)?;
    let seconds = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let sentences = unique.len();
    let vectors = SentenceVectors::new(&unique, embeddings);
    let scores: Vec<TaskResult> = tasks.iter().map(|t| t.score(&vectors)).collect();
    Ok(EvalReport::new(scores, sentences, seconds))
}

/// Evaluates every task with a cross-encoder: each distinct sentence pair
/// of all tasks scored once. A task that is not one of scored pairs is an
/// error naming it.
pub fn evaluate_pairs<B: Backend>(
    scorer: &CrossScorer<'_, B>,
    tasks: &[Box<dyn Evaluator>],
) -> Result<EvalReport> {
    let mut index: HashMap<(&str, &str), usize> = HashMap::new();
    let (mut first, mut second): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
    let mut rows = Vec::with_capacity(tasks.len());
    for task in tasks {
        let Some((a, b)) = task.pairs() else {
            return Err(not_pairs(task.as_ref()));
        };
        let ids: Vec<usize> = a
            .iter()
            .zip(b)
            .map(|(x, y)| {
                *index.entry((x, y)).or_insert_with(|| {
                    first.push(x);
                    second.push(y);
                    first.len() - 1
                })
            })
            .collect();
        rows.push(ids);
    }
    let bar = crate::progress::items(first.len() as u64, "pairs");
    let start = Instant::now();
    let predicted = scorer.scores(&first, &second, &bar)?;
    let seconds = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let scores = tasks
        .iter()
        .zip(rows)
        .map(|(task, ids)| {
            let values: Vec<f64> = ids.iter().map(|&i| predicted[i]).collect();
            task.score_pairs(&values)
                .ok_or_else(|| not_pairs(task.as_ref()))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(EvalReport::new(scores, first.len(), seconds))
}

fn not_pairs(task: &dyn Evaluator) -> Error {
    Error::Usage(format!(
        "task {}: a cross-encoder scores sentence pairs, and this task is not one of scored pairs \
         (the STS tasks, SICK-R and pairs:PATH are)",
        task.name()
    ))
}

impl EvalReport {
    /// The report of `scores`, `items` embedded or scored in `seconds`.
    fn new(scores: Vec<TaskResult>, items: usize, seconds: f64) -> Self {
        let average =
            scores.iter().map(TaskResult::primary_value).sum::<f64>() / scores.len().max(1) as f64;
        Self {
            average,
            sentences: items,
            seconds,
            sentences_per_second: items as f64 / seconds.max(1e-9),
            scores,
        }
    }
}

/// How the dashboard titles the dev curves, and which task picks the best.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DevTitles {
    /// The tab ("STS dev" when every task is of one family, else "dev").
    pub tab: String,
    /// The metric the curves show ("Spearman x100" when every task's
    /// primary metric is the same, else "primary metric").
    pub metric: String,
    /// `eval.select_by`.
    pub select_by: String,
    /// Whether the selected metric is better when larger.
    #[serde(default = "larger")]
    pub higher_is_better: bool,
}

fn larger() -> bool {
    true
}

impl DevTitles {
    /// The titles of `tasks`, the best picked by `select_by`.
    pub fn of(tasks: &[Box<dyn Evaluator>], select_by: &str) -> Self {
        let selection = Selection::parse(select_by);
        let higher_is_better = tasks
            .iter()
            .find(|t| t.name() == selection.task)
            .and_then(|t| selection.metric_of(t.metrics()))
            .is_none_or(|m| m.higher_is_better);
        Self::from_parts(
            tasks.iter().map(|t| (t.family(), t.metrics()[0].label)),
            select_by,
            higher_is_better,
        )
    }

    /// The titles of tasks given as (family, primary metric label).
    pub fn from_parts<'a>(
        tasks: impl IntoIterator<Item = (&'a str, &'a str)>,
        select_by: &str,
        higher_is_better: bool,
    ) -> Self {
        let (families, labels): (Vec<&str>, Vec<&str>) = tasks.into_iter().unzip();
        let common = |items: &[&'a str]| -> Option<&'a str> {
            let first = *items.first()?;
            items.iter().all(|&i| i == first).then_some(first)
        };
        Self {
            tab: common(&families).map_or("dev".into(), |f| format!("{f} dev")),
            metric: common(&labels).unwrap_or("primary metric").to_string(),
            select_by: select_by.to_string(),
            higher_is_better,
        }
    }
}

/// Where evaluation data lives.
#[derive(Debug, Clone)]
pub struct EvalData {
    /// A SentEval data directory (holding `STS/` and `SICK/`).
    pub senteval: std::path::PathBuf,
}

/// A family of tasks sharing one evaluator type, as [`super::registry`]
/// lists it.
pub struct TaskFamily {
    /// The family's name in titles (e.g. "STS").
    pub family: &'static str,
    /// Every task's canonical name, or how a task of it is named (e.g.
    /// `rerank:PATH`).
    pub names: &'static [&'static str],
    /// The canonical name `name` stands for in this family (other spellings
    /// allowed), if any.
    pub resolve: fn(&str) -> Option<String>,
    /// The metrics of each of its tasks, primary first.
    pub metrics: &'static [MetricInfo],
    /// Loads the data of the task of canonical name `name`.
    pub load: fn(&str, &EvalData) -> Result<Box<dyn Evaluator>>,
}
