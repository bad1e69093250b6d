//! The SentEval STS protocol as SimCSE and GCSE report it: cosine similarity
//! of sentence embeddings against gold scores, Spearman x 100; STS12-16 in
//! the "all" setting (subsets concatenated), STS-B and SICK-R on their test
//! splits, pairs with an empty gold score skipped. Sentences are whitespace
//! tokenized and re-joined with single spaces, as SentEval hands them over.
//! Each task is an [`Evaluator`]: Spearman x 100 (primary) and Pearson x 100
//! of cosine similarity against the gold scores.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::evaluator::{Evaluator, MetricInfo, SentenceVectors, TaskFamily, TaskResult};
use super::spearman::{pearson, spearman};
use super::task_files::read_text;
use crate::error::{Error, Result};

/// One STS evaluation set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StsTask {
    /// SemEval 2012, all five subsets.
    Sts12,
    /// SemEval 2013, all three subsets.
    Sts13,
    /// SemEval 2014, all six subsets.
    Sts14,
    /// SemEval 2015, all five subsets.
    Sts15,
    /// SemEval 2016, all five subsets.
    Sts16,
    /// STS Benchmark, test split.
    StsB,
    /// SICK relatedness, test split.
    SickR,
    /// STS Benchmark, dev split (for model selection in training).
    StsBDev,
    /// SICK relatedness, trial split (for model selection in training).
    SickDev,
}

/// Sentence pairs with gold similarity scores.
#[derive(Debug, Clone, Default)]
pub struct StsPairs {
    /// First sentence of each pair.
    pub a: Vec<String>,
    /// Second sentence of each pair.
    pub b: Vec<String>,
    /// Gold score of each pair.
    pub gold: Vec<f64>,
}

impl StsPairs {
    /// Every sentence, the first of each pair, then the second.
    pub fn sentences(&self) -> Vec<&str> {
        self.a.iter().chain(&self.b).map(String::as_str).collect()
    }

    /// Checks that a correlation with the gold scores is defined: at least
    /// two pairs, not all with the same score (else every score would be
    /// NaN); `source` (the file or folder read) names them in the error.
    pub fn check_correlatable(&self, source: &Path) -> Result<()> {
        let problem = match self.gold.first() {
            None => "no sentence pair with a gold score",
            Some(_) if self.gold.len() < 2 => {
                "only one sentence pair with a gold score; a correlation needs two or more"
            }
            Some(&first) if self.gold.iter().all(|&g| g == first) => {
                "every pair has the same gold score, so no correlation is defined"
            }
            Some(_) => return Ok(()),
        };
        Err(Error::Unusable {
            path: source.to_path_buf(),
            message: problem.to_string(),
        })
    }

    /// The cosine similarity of each pair's vectors.
    pub fn cosines(&self, vectors: &SentenceVectors) -> Vec<f64> {
        self.a
            .iter()
            .zip(&self.b)
            .map(|(a, b)| vectors.cosine(a, b))
            .collect()
    }
}

impl StsTask {
    /// Every task: the seven test tasks in the papers' column order, then
    /// the development sets.
    pub const ALL: [StsTask; 9] = [
        StsTask::Sts12,
        StsTask::Sts13,
        StsTask::Sts14,
        StsTask::Sts15,
        StsTask::Sts16,
        StsTask::StsB,
        StsTask::SickR,
        StsTask::StsBDev,
        StsTask::SickDev,
    ];

    /// Name on the command line and in JSON.
    pub fn key(self) -> &'static str {
        match self {
            StsTask::Sts12 => "sts12",
            StsTask::Sts13 => "sts13",
            StsTask::Sts14 => "sts14",
            StsTask::Sts15 => "sts15",
            StsTask::Sts16 => "sts16",
            StsTask::StsB => "stsb",
            StsTask::SickR => "sickr",
            StsTask::StsBDev => "stsb-dev",
            StsTask::SickDev => "sickr-dev",
        }
    }

    /// Column header in result tables.
    pub fn column(self) -> &'static str {
        match self {
            StsTask::Sts12 => "STS12",
            StsTask::Sts13 => "STS13",
            StsTask::Sts14 => "STS14",
            StsTask::Sts15 => "STS15",
            StsTask::Sts16 => "STS16",
            StsTask::StsB => "STS-B",
            StsTask::SickR => "SICK-R",
            StsTask::StsBDev => "STS-B dev",
            StsTask::SickDev => "SICK-R dev",
        }
    }

    /// SemEval subsets of the yearly tasks.
    fn subsets(self) -> &'static [&'static str] {
        match self {
            StsTask::Sts12 => &[
                "MSRpar",
                "MSRvid",
                "SMTeuroparl",
                "surprise.OnWN",
                "surprise.SMTnews",
            ],
            StsTask::Sts13 => &["FNWN", "headlines", "OnWN"],
            StsTask::Sts14 => &[
                "deft-forum",
                "deft-news",
                "headlines",
                "images",
                "OnWN",
                "tweet-news",
            ],
            StsTask::Sts15 => &[
                "answers-forums",
                "answers-students",
                "belief",
                "headlines",
                "images",
            ],
            StsTask::Sts16 => &[
                "answer-answer",
                "headlines",
                "plagiarism",
                "postediting",
                "question-question",
            ],
            _ => &[],
        }
    }

    /// Reads the task's pairs from a SentEval data directory (the one holding
    /// `STS/` and `SICK/`); an error when they cannot give a correlation
    /// (see [`StsPairs::check_correlatable`]).
    pub fn load(self, senteval: &Path) -> Result<StsPairs> {
        let mut pairs = StsPairs::default();
        let source = match self {
            StsTask::Sts12 | StsTask::Sts13 | StsTask::Sts14 | StsTask::Sts15 | StsTask::Sts16 => {
                let year = &self.column()[3..];
                let dir = senteval.join("STS").join(format!("STS{year}-en-test"));
                for subset in self.subsets() {
                    read_semeval(&dir, subset, &mut pairs)?;
                }
                dir
            }
            StsTask::StsB | StsTask::StsBDev => {
                let split = if self == StsTask::StsB { "test" } else { "dev" };
                let path = senteval
                    .join("STS/STSBenchmark")
                    .join(format!("sts-{split}.csv"));
                read_columns(&path, false, [5, 6, 4], &mut pairs)?;
                path
            }
            StsTask::SickR | StsTask::SickDev => {
                let file = if self == StsTask::SickR {
                    "SICK_test_annotated.txt"
                } else {
                    "SICK_trial.txt"
                };
                let path = senteval.join("SICK").join(file);
                read_columns(&path, true, [1, 2, 3], &mut pairs)?;
                path
            }
        };
        pairs.check_correlatable(&source)?;
        Ok(pairs)
    }
}

/// A training split of STS data, whose sentence pairs (never their scores)
/// unsupervised methods may train on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainSplit {
    /// STS Benchmark train, 5749 pairs.
    StsB,
    /// SICK train, 4500 pairs.
    Sick,
}

impl TrainSplit {
    /// The split a name stands for: `stsb-train`, `sick-train`.
    pub fn named(name: &str) -> Option<Self> {
        match name {
            "stsb-train" => Some(Self::StsB),
            "sick-train" => Some(Self::Sick),
            _ => None,
        }
    }

    /// Its pairs, read from a SentEval data directory (gold scores as in
    /// the file).
    pub fn load(self, senteval: &Path) -> Result<StsPairs> {
        let mut pairs = StsPairs::default();
        match self {
            Self::StsB => read_columns(
                &senteval.join("STS/STSBenchmark/sts-train.csv"),
                false,
                [5, 6, 4],
                &mut pairs,
            )?,
            Self::Sick => read_columns(
                &senteval.join("SICK/SICK_train.txt"),
                true,
                [1, 2, 3],
                &mut pairs,
            )?,
        }
        Ok(pairs)
    }
}

/// The test task whose data `path` is, if any: a file the seven test tasks
/// read from `senteval` (compared as canonical paths), or a file named as
/// one of them (`sts-test.csv`, `SICK_test_annotated.txt`, SemEval's
/// `STS.input.*` / `STS.gs.*`), wherever it lies.
pub fn test_set_of(path: &Path, senteval: &Path) -> Option<&'static str> {
    let name = path.file_name()?.to_str()?;
    let canonical = path.canonicalize().ok();
    let same = |file: PathBuf| canonical.is_some() && file.canonicalize().ok() == canonical;
    for task in &StsTask::ALL[..7] {
        let hit = match task {
            StsTask::StsB => {
                name == "sts-test.csv" || same(senteval.join("STS/STSBenchmark/sts-test.csv"))
            }
            StsTask::SickR => {
                name == "SICK_test_annotated.txt"
                    || same(senteval.join("SICK/SICK_test_annotated.txt"))
            }
            _ => {
                let dir = senteval
                    .join("STS")
                    .join(format!("STS{}-en-test", &task.column()[3..]));
                task.subsets().iter().any(|s| {
                    same(dir.join(format!("STS.input.{s}.txt")))
                        || same(dir.join(format!("STS.gs.{s}.txt")))
                })
            }
        };
        if hit {
            return Some(task.column());
        }
    }
    (name.starts_with("STS.input.") || name.starts_with("STS.gs.")).then_some("STS12-16")
}

impl fmt::Display for StsTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

impl FromStr for StsTask {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let wanted = s.to_ascii_lowercase().replace(['_', ' '], "-");
        StsTask::ALL
            .iter()
            .copied()
            .find(|t| t.key() == wanted || t.column().to_ascii_lowercase().replace(' ', "-") == wanted)
            .ok_or_else(|| {
                format!(
                    "unknown STS task \"{s}\" (sts12, sts13, sts14, sts15, sts16, stsb, sickr, stsb-dev, sickr-dev)"
                )
            })
    }
}

/// SentEval's sentence normalisation: split on whitespace, join with one space.
fn normalise(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn read_lines(path: &Path) -> Result<Vec<String>> {
    Ok(read_text(path)?.lines().map(str::to_string).collect())
}

fn parse_score(path: &Path, line: usize, field: &str) -> Result<f64> {
    match field.trim().parse::<f64>() {
        Ok(score) if score.is_finite() => Ok(score),
        _ => Err(Error::data(
            path,
            line,
            format!("gold score \"{field}\" is not a finite number"),
        )),
    }
}

/// One SemEval subset: `STS.input.<subset>.txt` (two tab-separated sentences a
/// line) and `STS.gs.<subset>.txt` (a score a line, empty = no gold).
fn read_semeval(dir: &Path, subset: &str, pairs: &mut StsPairs) -> Result<()> {
    let input: PathBuf = dir.join(format!("STS.input.{subset}.txt"));
    let gold: PathBuf = dir.join(format!("STS.gs.{subset}.txt"));
    let sentences = read_lines(&input)?;
    let scores = read_lines(&gold)?;
    if sentences.len() != scores.len() {
        return Err(Error::data(
            &gold,
            scores.len().min(sentences.len()) + 1,
            format!(
                "{} gold lines for {} sentence pairs in {}",
                scores.len(),
                sentences.len(),
                input.display()
            ),
        ));
    }
    for (i, (pair, score)) in sentences.iter().zip(&scores).enumerate() {
        if score.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = pair.split('\t').collect();
        if fields.len() != 2 {
            return Err(Error::data(
                &input,
                i + 1,
                format!("expected 2 tab-separated sentences, found {}", fields.len()),
            ));
        }
        pairs.a.push(normalise(fields[0]));
        pairs.b.push(normalise(fields[1]));
        pairs.gold.push(parse_score(&gold, i + 1, score)?);
    }
    Ok(())
}

/// A tab-separated file with the two sentences and the score in `columns`
/// (`[a, b, score]`), optionally after a header line.
fn read_columns(
    path: &Path,
    header: bool,
    columns: [usize; 3],
    pairs: &mut StsPairs,
) -> Result<()> {
    let lines = read_lines(path)?;
    for (i, line) in lines.iter().enumerate().skip(header as usize) {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.trim().split('\t').collect();
        let needed = columns.iter().max().unwrap() + 1;
        if fields.len() < needed {
            return Err(Error::data(
                path,
                i + 1,
                format!(
                    "expected at least {needed} tab-separated columns, found {}",
                    fields.len()
                ),
            ));
        }
        pairs.a.push(normalise(fields[columns[0]]));
        pairs.b.push(normalise(fields[columns[1]]));
        pairs
            .gold
            .push(parse_score(path, i + 1, fields[columns[2]])?);
    }
    Ok(())
}

/// The STS tasks as the evaluation registry lists them.
pub const FAMILY: TaskFamily = TaskFamily {
    family: "STS",
    names: &[
        "sts12",
        "sts13",
        "sts14",
        "sts15",
        "sts16",
        "stsb",
        "sickr",
        "stsb-dev",
        "sickr-dev",
    ],
    resolve: |name| name.parse::<StsTask>().ok().map(|t| t.key().to_string()),
    metrics: METRICS,
    load: |name, data| {
        let task: StsTask = name.parse().map_err(Error::Usage)?;
        Ok(Box::new(PairCorrelation {
            name: task.key().to_string(),
            column: task.column().to_string(),
            family: "STS",
            pairs: task.load(&data.senteval)?,
        }))
    },
};

/// Spearman x 100 (primary), then Pearson x 100.
pub const METRICS: &[MetricInfo] = &[
    MetricInfo {
        name: "spearman",
        label: "Spearman x100",
        higher_is_better: true,
        percent: true,
    },
    MetricInfo {
        name: "pearson",
        label: "Pearson x100",
        higher_is_better: true,
        percent: true,
    },
];

/// Sentence pairs scored by the correlation of their cosine similarity with
/// gold scores: an STS task, or a user's pair-score file.
pub struct PairCorrelation {
    /// The task's name.
    pub name: String,
    /// Its column header.
    pub column: String,
    /// Its family's name.
    pub family: &'static str,
    /// The pairs with their gold scores.
    pub pairs: StsPairs,
}

impl Evaluator for PairCorrelation {
    fn name(&self) -> &str {
        &self.name
    }

    fn column(&self) -> &str {
        &self.column
    }

    fn family(&self) -> &str {
        self.family
    }

    fn metrics(&self) -> &[MetricInfo] {
        METRICS
    }

    fn sentences(&self) -> Vec<&str> {
        self.pairs.sentences()
    }

    fn score(&self, vectors: &SentenceVectors) -> TaskResult {
        self.result(&self.pairs.cosines(vectors))
    }

    fn pairs(&self) -> Option<(&[String], &[String])> {
        Some((&self.pairs.a, &self.pairs.b))
    }

    fn score_pairs(&self, scores: &[f64]) -> Option<TaskResult> {
        Some(self.result(scores))
    }
}

impl PairCorrelation {
    /// The correlations of `predicted` (one score per pair) with the gold
    /// scores.
    fn result(&self, predicted: &[f64]) -> TaskResult {
        let gold = &self.pairs.gold;
        TaskResult {
            task: self.name.clone(),
            column: self.column.clone(),
            family: self.family.to_string(),
            shown: &[],
            primary: METRICS[0].name.to_string(),
            metrics: BTreeMap::from([
                (
                    METRICS[0].name.to_string(),
                    100.0 * spearman(predicted, gold),
                ),
                (
                    METRICS[1].name.to_string(),
                    100.0 * pearson(predicted, gold),
                ),
            ]),
            counts: BTreeMap::from([("pairs".to_string(), gold.len())]),
        }
    }
}
