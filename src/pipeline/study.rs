//! Studies: variants of one pipeline (settings changed per variant, seeds
//! as one more axis) run in one folder, so stages with identical inputs
//! are run once; then one table of the results stage's scores, a row per
//! variant, mean and spread over seeds, as Markdown and JSON.
//!
//! ```toml
//! pipeline = "configs/pipeline-quickstart.toml"
//! seeds = [42, 43, 44]                  # optional
//! seed_keys = ["stage2.train.seed"]     # default: every train stage's train.seed
//! [[variant]]
//! name = "gcse"
//! [[variant]]
//! name = "no-decay"
//! set = { "stage2.gcse.decay" = "none" }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::plan::PlannedStage;
use super::spec::{read_table, valid_name, PipelineSpec, StageCommand};
use super::{execute, Links, Options, Outcome, Session};
use crate::error::{Error, Result};
use crate::json_file::write_json;
use crate::overrides::Override;
use crate::run_dir::RunDir;

/// One variant: a name and the settings it changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// Letters, digits, `-`, `_`.
    pub name: String,
    /// `stage.key...` = value.
    pub set: Vec<Override>,
}

/// A study file, read and checked.
#[derive(Debug, Clone)]
pub struct StudySpec {
    /// The file, for messages.
    pub path: PathBuf,
    /// The pipeline every variant changes.
    pub pipeline: PipelineSpec,
    /// In order; a study without `[[variant]]` has one, `base`.
    pub variants: Vec<Variant>,
    /// Seeds; empty: the pipeline's own.
    pub seeds: Vec<i64>,
    /// The keys each seed is set at.
    pub seed_keys: Vec<Vec<String>>,
    /// The stage whose scores make the table.
    pub table: String,
}

impl StudySpec {
    /// Reads and checks a study file (and its pipeline, and every variant).
    pub fn load(path: &Path) -> Result<Self> {
        let fail = |message: String| Error::Config {
            path: path.to_path_buf(),
            message,
        };
        let mut table = read_table(path)?;
        let pipeline_path = match table.remove("pipeline") {
            Some(toml::Value::String(p)) => PathBuf::from(p),
            _ => {
                return Err(fail(
                    "missing `pipeline`: the pipeline file the variants change".into(),
                ))
            }
        };
        let mut pipeline = PipelineSpec::load(&pipeline_path)?;
        if let Some(dir) = table.remove("dir") {
            pipeline.dir = PathBuf::from(
                dir.as_str()
                    .ok_or_else(|| fail("`dir` must be a folder name".into()))?,
            );
        }
        let seeds: Vec<i64> = match table.remove("seeds") {
            Some(toml::Value::Array(items)) => items
                .iter()
                .map(|v| v.as_integer().filter(|s| *s >= 0))
                .collect::<Option<_>>()
                .ok_or_else(|| fail("`seeds` must be a list of non-negative integers".into()))?,
            Some(_) => {
                return Err(fail(
                    "`seeds` must be a list of non-negative integers".into(),
                ))
            }
            None => Vec::new(),
        };
        let seed_keys: Vec<Vec<String>> = match table.remove("seed_keys") {
            Some(toml::Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(|s| s.split('.').map(str::to_string).collect())
                })
                .collect::<Option<_>>()
                .ok_or_else(|| fail("`seed_keys` must be a list of dotted keys".into()))?,
            Some(_) => return Err(fail("`seed_keys` must be a list of dotted keys".into())),
            None => pipeline
                .stages
                .iter()
                .filter(|s| s.command == StageCommand::Train)
                .map(|s| vec![s.name.clone(), "train".into(), "seed".into()])
                .collect(),
        };
        let results = pipeline
            .stages
            .iter()
            .rev()
            .find(|s| matches!(s.command, StageCommand::Eval | StageCommand::Train))
            .map(|s| s.name.clone());
        let table_stage = match table.remove("table") {
            Some(toml::Value::String(name)) => {
                pipeline.index_of(&name)?;
                name
            }
            Some(_) => return Err(fail("`table` must name a stage".into())),
            None => results.ok_or_else(|| {
                fail("the pipeline has no eval or train stage to make the table of".into())
            })?,
        };
        let variants = match table.remove("variant") {
            Some(toml::Value::Array(items)) => {
                let mut variants: Vec<Variant> = Vec::new();
                for (i, item) in items.into_iter().enumerate() {
                    let variant =
                        variant_of(item).map_err(|m| fail(format!("variant {}: {m}", i + 1)))?;
                    if variants.iter().any(|v| v.name == variant.name) {
                        return Err(fail(format!("a second variant `{}`", variant.name)));
                    }
                    variants.push(variant);
                }
                variants
            }
            Some(_) => return Err(fail("`variant` must be [[variant]] tables".into())),
            None => vec![Variant {
                name: "base".into(),
                set: Vec::new(),
            }],
        };
        if let Some(key) = table.keys().next() {
            return Err(fail(format!(
                "unknown key `{key}` (a study has pipeline, dir, seeds, seed_keys, table and [[variant]])"
            )));
        }
        let spec = StudySpec {
            path: path.to_path_buf(),
            pipeline,
            variants,
            seeds,
            seed_keys,
            table: table_stage,
        };
        for run in spec.runs() {
            spec.pipeline
                .with_overrides(&run.set)
                .map_err(|e| match e {
                    Error::Config { message, .. } => fail(format!("{}: {message}", run.label)),
                    other => other,
                })?;
        }
        Ok(spec)
    }

    /// Every (variant, seed) to run, in order.
    pub fn runs(&self) -> Vec<StudyRun> {
        let mut runs = Vec::new();
        for variant in &self.variants {
            let seeds: Vec<Option<i64>> = if self.seeds.is_empty() {
                vec![None]
            } else {
                self.seeds.iter().copied().map(Some).collect()
            };
            for seed in seeds {
                let mut set = variant.set.clone();
                if let Some(seed) = seed {
                    set.extend(self.seed_keys.iter().map(|key| Override {
                        key: key.clone(),
                        value: toml::Value::Integer(seed),
                    }));
                }
                runs.push(StudyRun {
                    variant: variant.name.clone(),
                    label: seed.map_or(variant.name.clone(), |s| {
                        format!("{}-seed{s}", variant.name)
                    }),
                    seed,
                    set,
                });
            }
        }
        runs
    }
}

/// One pipeline of a study.
#[derive(Debug, Clone)]
pub struct StudyRun {
    /// Its variant.
    pub variant: String,
    /// `variant` or `variant-seed<N>`: its links' folder under `variants/`.
    pub label: String,
    /// Its seed, if the study has seeds.
    pub seed: Option<i64>,
    /// Everything it sets.
    pub set: Vec<Override>,
}

fn variant_of(item: toml::Value) -> std::result::Result<Variant, String> {
    let toml::Value::Table(mut t) = item else {
        return Err("not a table".into());
    };
    let name = match t.remove("name") {
        Some(toml::Value::String(n)) if valid_name(&n) => n,
        _ => return Err("`name` must be letters, digits, `-` or `_`".into()),
    };
    let mut set = Vec::new();
    match t.remove("set") {
        Some(toml::Value::Table(table)) => leaves(&mut Vec::new(), &table, &mut set),
        Some(_) => return Err(format!("`{name}`: `set` must be a table of dotted keys")),
        None => {}
    }
    if let Some(key) = t.keys().next() {
        return Err(format!(
            "`{name}`: unknown key `{key}` (a variant has name and set)"
        ));
    }
    Ok(Variant { name, set })
}

/// Every leaf of `table` as an override; quoted dotted keys split.
fn leaves(prefix: &mut Vec<String>, table: &toml::Table, out: &mut Vec<Override>) {
    for (key, value) in table {
        let depth = prefix.len();
        prefix.extend(key.split('.').map(str::to_string));
        match value {
            toml::Value::Table(inner) => leaves(prefix, inner, out),
            other => out.push(Override {
                key: prefix.clone(),
                value: other.clone(),
            }),
        }
        prefix.truncate(depth);
    }
}

/// The scores a finished stage reports: an eval stage's results, a train
/// stage's test-suite results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scores {
    /// Task name, column header and primary metric's value, in order.
    pub tasks: Vec<(String, String, f64)>,
    /// Their mean.
    pub average: f64,
}

/// The scores of `stage`, if it has any.
pub fn scores_of(stage: &PlannedStage) -> Result<Option<Scores>> {
    let (path, pointer) = match stage.command {
        StageCommand::Eval => (stage.dir.join("results.json"), "/results"),
        StageCommand::Train => (stage.dir.join(RunDir::TEST_RESULTS), ""),
        _ => return Ok(None),
    };
    if !path.is_file() {
        return Ok(None);
    }
    let json: Value = crate::json_file::read_json(&path)?;
    let report = json.pointer(pointer).unwrap_or(&Value::Null);
    let unusable = || Error::Unusable {
        path: path.clone(),
        message: "not a results report (no `scores`)".into(),
    };
    let tasks = report["scores"]
        .as_array()
        .ok_or_else(unusable)?
        .iter()
        .filter_map(|s| {
            let task = s["task"].as_str()?;
            let primary = s["primary"].as_str()?;
            let column = s["column"].as_str().unwrap_or(task);
            Some((
                task.to_string(),
                column.to_string(),
                s[primary].as_f64().unwrap_or(f64::NAN),
            ))
        })
        .collect();
    Ok(Some(Scores {
        tasks,
        average: report["average"].as_f64().unwrap_or(f64::NAN),
    }))
}

/// One row of a results table: a label and the scores of each seed.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The variant.
    pub name: String,
    /// Seeds in order (empty: the pipeline's own).
    pub seeds: Vec<i64>,
    /// Each run's scores.
    pub runs: Vec<Scores>,
    /// Mean per column (tasks, then `average`).
    pub mean: BTreeMap<String, f64>,
    /// Sample standard deviation per column over seeds (absent with one run).
    pub std: BTreeMap<String, f64>,
}

/// Rows of scores grouped by variant, with mean and spread.
pub fn rows(runs: &[(String, Option<i64>, Scores)]) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for (name, seed, scores) in runs {
        let row = match rows.iter_mut().position(|r| &r.name == name) {
            Some(i) => &mut rows[i],
            None => {
                rows.push(Row {
                    name: name.clone(),
                    seeds: Vec::new(),
                    runs: Vec::new(),
                    mean: BTreeMap::new(),
                    std: BTreeMap::new(),
                });
                rows.last_mut().expect("just pushed")
            }
        };
        row.seeds.extend(*seed);
        row.runs.push(scores.clone());
    }
    for row in &mut rows {
        let mut columns: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for run in &row.runs {
            for (task, _, v) in &run.tasks {
                columns.entry(task.clone()).or_default().push(*v);
            }
            columns
                .entry("average".into())
                .or_default()
                .push(run.average);
        }
        for (column, values) in columns {
            let n = values.len() as f64;
            let mean = values.iter().sum::<f64>() / n;
            row.mean.insert(column.clone(), mean);
            if values.len() > 1 {
                let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
                row.std.insert(column, var.sqrt());
            }
        }
    }
    rows
}

/// The rows as a Markdown table in the papers' layout: tasks in the first
/// run's order, then the average; `mean ± std` where there are seeds.
pub fn markdown(rows: &[Row]) -> String {
    let mut columns: Vec<(String, String)> = Vec::new();
    for row in rows {
        for run in &row.runs {
            for (task, column, _) in &run.tasks {
                if !columns.iter().any(|(t, _)| t == task) {
                    columns.push((task.clone(), column.clone()));
                }
            }
        }
    }
    columns.push(("average".into(), "Avg.".into()));
    let mut text = format!(
        "| Variant | Runs | {} |\n|---|---:|{}\n",
        columns
            .iter()
            .map(|(_, c)| c.as_str())
            .collect::<Vec<_>>()
            .join(" | "),
        "---:|".repeat(columns.len())
    );
    for row in rows {
        let cells: Vec<String> = columns
            .iter()
            .map(|(task, _)| match (row.mean.get(task), row.std.get(task)) {
                (Some(m), Some(s)) => format!("{m:.2} ± {s:.2}"),
                (Some(m), None) => format!("{m:.2}"),
                _ => "–".into(),
            })
            .collect();
        text.push_str(&format!(
            "| {} | {} | {} |\n",
            row.name,
            row.runs.len(),
            cells.join(" | ")
        ));
    }
    text
}

/// Counts of a study's stage runs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Stages in all runs of the study.
    pub planned: usize,
    /// Run by this command.
    pub ran: usize,
    /// Would run (`--dry-run`).
    pub to_run: usize,
    /// Skipped: identical to a stage an earlier variant ran or found done.
    pub shared: usize,
    /// Skipped: done before this command.
    pub done: usize,
}

/// Runs every (variant, seed) of `spec` (those of `only` if given),
/// then writes `study.md` and `study.json` in the study's folder.
pub fn run_study(
    spec: &StudySpec,
    only: &[String],
    dry_run: bool,
    session: &mut Session,
) -> Result<(String, Counts)> {
    for name in only {
        if !spec.variants.iter().any(|v| &v.name == name) {
            return Err(Error::Usage(format!(
                "{}: no variant `{name}` (variants: {})",
                spec.path.display(),
                spec.variants
                    .iter()
                    .map(|v| v.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let options = Options {
        dry_run,
        ..Options::default()
    };
    let mut counts = Counts::default();
    let mut results = Vec::new();
    for run in spec.runs() {
        if !only.is_empty() && !only.contains(&run.variant) {
            continue;
        }
        println!("== {}", run.label);
        let pipeline = spec.pipeline.with_overrides(&run.set)?;
        let links = Links {
            dir: pipeline.dir.join("variants").join(&run.label),
            depth: 2,
        };
        let stages = execute(&pipeline, &links, &options, session)?;
        for (stage, outcome) in &stages {
            counts.planned += 1;
            match outcome {
                Outcome::Ran(_) => counts.ran += 1,
                Outcome::Shared(_) => counts.shared += 1,
                Outcome::Done(_) => counts.done += 1,
                Outcome::Planned => counts.to_run += 1,
                Outcome::Left => {}
            }
            if stage.name == spec.table {
                if let Some(scores) = scores_of(stage)? {
                    results.push((run.variant.clone(), run.seed, scores));
                }
            }
        }
    }
    let rows = rows(&results);
    let table = markdown(&rows);
    if !dry_run {
        let dir = &spec.pipeline.dir;
        crate::atomic::write_atomic(&dir.join("study.md"), |w| {
            std::io::Write::write_all(w, table.as_bytes())
        })?;
        write_json(
            &dir.join("study.json"),
            &serde_json::json!({
                "study": spec.path,
                "table_stage": spec.table,
                "metric": "primary (Spearman x 100 for STS)",
                "counts": counts,
                "variants": rows,
            }),
        )?;
    }
    Ok((table, counts))
}
