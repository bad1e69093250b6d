//! Results as MTEB writes them, one JSON file per task
//! (`{task_name, mteb_version, evaluation_time, scores: {test: [{main_score,
//! <metric>..., hf_subset, languages}]}}`), so tools that read MTEB result
//! folders read gcse's: fractions in [0, 1] where our tables give x 100.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::evaluator::{EvalReport, MetricInfo};
use crate::error::Result;
use crate::json_file::write_json;

/// The MTEB-style record of one task's results, given its metrics' infos.
pub fn task_record(
    task: &super::evaluator::TaskResult,
    metrics: &[MetricInfo],
    seconds: f64,
) -> Value {
    let fraction = |name: &str, value: f64| {
        let percent = metrics
            .iter()
            .find(|m| m.name == name)
            .is_none_or(|m| m.percent);
        if percent {
            value / 100.0
        } else {
            value
        }
    };
    let mut scores = Map::new();
    for (name, &value) in &task.metrics {
        scores.insert(name.clone(), json!(fraction(name, value)));
    }
    scores.insert(
        "main_score".into(),
        json!(fraction(&task.primary, task.primary_value())),
    );
    scores.insert("hf_subset".into(), json!("default"));
    scores.insert("languages".into(), json!(["eng-Latn"]));
    json!({
        "task_name": task.column,
        "gcse_task": task.task,
        "mteb_version": null,
        "dataset_revision": null,
        "evaluation_time": seconds,
        "scores": {"test": [Value::Object(scores)]},
    })
}

/// A file name for `column`: letters, digits, `-`, `_` and `.` kept.
fn file_name(column: &str) -> String {
    let name: String = column
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "task".into()
    } else {
        name
    }
}

/// Writes every task of `report` to `dir/<task>.json` (a number appended
/// when two tasks share a column name); returns the files written.
pub fn write_results(
    dir: &Path,
    report: &EvalReport,
    metrics_of: impl Fn(&str) -> &'static [MetricInfo],
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| crate::error::Error::io(dir, e))?;
    let mut used = HashSet::new();
    let mut written = Vec::new();
    for task in &report.scores {
        let base = file_name(&task.column);
        let mut name = base.clone();
        let mut n = 1;
        while !used.insert(name.clone()) {
            n += 1;
            name = format!("{base}-{n}");
        }
        let path = dir.join(format!("{name}.json"));
        write_json(
            &path,
            &task_record(task, metrics_of(&task.task), report.seconds),
        )?;
        written.push(path);
    }
    Ok(written)
}
