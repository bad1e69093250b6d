//! `gcse compare RUN...`: runs side by side, a row each: the best dev score
//! and its step, the test tasks' primary metrics and their average; then
//! every setting of the experiment files that is not the same in all runs.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::objective::registry;
use crate::overrides::flatten;
use crate::run_dir::RunDir;
use crate::train::metrics_log::{read_log, LogEntry};

/// One run as the comparison shows it.
#[derive(Debug)]
struct RunSummary {
    label: String,
    /// `select_by` and the best evaluation's value of it, with its step.
    best: Option<(String, f64, usize)>,
    /// Test tasks' primary metrics, in the order they were run.
    tests: Vec<(String, f64)>,
    /// The test report's average.
    average: Option<f64>,
    /// Every setting, by dotted key.
    settings: BTreeMap<String, String>,
}

/// The comparison of `runs` as text.
pub fn compare(runs: &[impl AsRef<Path>]) -> Result<String> {
    let summaries = runs
        .iter()
        .map(|r| summarise(r.as_ref()))
        .collect::<Result<Vec<_>>>()?;
    Ok(format!(
        "{}\n\n{}",
        results_table(&summaries),
        differing_settings(&summaries)
    ))
}

fn summarise(path: &Path) -> Result<RunSummary> {
    let run = RunDir::new(path);
    if !run.holds_run() {
        return Err(Error::Usage(format!(
            "{}: not a run directory of gcse train (no {})",
            path.display(),
            RunDir::CONFIG
        )));
    }
    let config = registry::read(&run.config())?;
    let select_by = config.eval.select_by.clone();
    let log = run.metrics();
    let entries = if log.is_file() {
        read_log(&log)?
    } else {
        Vec::new()
    };
    let best = entries
        .iter()
        .filter_map(|e| match e {
            LogEntry::Eval(e) if e.best => Some(e),
            _ => None,
        })
        .next_back()
        .and_then(|e| {
            let (task, metric) = match select_by.split_once('/') {
                Some((task, metric)) if e.tasks.contains_key(task) => (task, Some(metric)),
                _ => (select_by.as_str(), None),
            };
            let scores = e.tasks.get(task)?;
            let value = scores.metrics.get(metric.unwrap_or(&scores.primary))?;
            Some((select_by.clone(), value.0, e.step))
        });
    let (tests, average) = match std::fs::read_to_string(run.test_results()) {
        Ok(text) => {
            let report: Value = serde_json::from_str(&text).map_err(|e| Error::Config {
                path: run.test_results(),
                message: format!("not a test report: {e}"),
            })?;
            let tests = report["scores"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| {
                    let primary = s["primary"].as_str()?;
                    Some((
                        s["task"].as_str()?.to_string(),
                        s[primary].as_f64().unwrap_or(f64::NAN),
                    ))
                })
                .collect();
            (tests, report["average"].as_f64())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), None),
        Err(e) => return Err(Error::io(run.test_results(), e)),
    };
    let table: toml::Table = toml::from_str(&config.to_toml()).expect("a written config parses");
    let mut settings = BTreeMap::new();
    flatten("", &toml::Value::Table(table), &mut settings);
    settings.remove("run_dir");
    Ok(RunSummary {
        label: path.display().to_string(),
        best,
        tests,
        average,
        settings,
    })
}

fn results_table(runs: &[RunSummary]) -> String {
    let mut tasks: Vec<&str> = Vec::new();
    for run in runs {
        for (task, _) in &run.tests {
            if !tasks.contains(&task.as_str()) {
                tasks.push(task);
            }
        }
    }
    let mut headers = vec!["run".to_string(), "best dev (step)".to_string()];
    headers.extend(tasks.iter().map(|t| t.to_string()));
    if !tasks.is_empty() {
        headers.push("Avg.".into());
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|run| {
            let mut row = vec![
                run.label.clone(),
                run.best
                    .as_ref()
                    .map_or("--".into(), |(_, v, step)| format!("{v:.2} ({step})")),
            ];
            row.extend(tasks.iter().map(|t| {
                run.tests
                    .iter()
                    .find(|(task, _)| task == t)
                    .map_or("--".into(), |(_, v)| format!("{v:.2}"))
            }));
            if !tasks.is_empty() {
                row.push(run.average.map_or("--".into(), |v| format!("{v:.2}")));
            }
            row
        })
        .collect();
    let mut text = table(&headers, &rows);
    let selections: Vec<&str> = runs
        .iter()
        .filter_map(|r| r.best.as_ref().map(|b| b.0.as_str()))
        .collect();
    if let Some(first) = selections.first() {
        if selections.iter().all(|s| s == first) {
            text.push_str(&format!("\nbest dev: {first}"));
        } else {
            text.push_str("\nbest dev: each run's own eval.select_by (they differ)");
        }
    }
    if tasks.is_empty() {
        text.push_str("\nno test results in these runs (eval.final_test = false, or not finished)");
    }
    text
}

fn differing_settings(runs: &[RunSummary]) -> String {
    let keys: std::collections::BTreeSet<&String> =
        runs.iter().flat_map(|r| r.settings.keys()).collect();
    let rows: Vec<Vec<String>> = keys
        .into_iter()
        .filter(|key| {
            let first = runs[0].settings.get(*key);
            runs.iter().any(|r| r.settings.get(*key) != first)
        })
        .map(|key| {
            let mut row = vec![key.clone()];
            row.extend(runs.iter().map(|r| {
                r.settings
                    .get(key)
                    .cloned()
                    .unwrap_or_else(|| "(unset)".into())
            }));
            row
        })
        .collect();
    if rows.is_empty() {
        return "the experiment files are the same (but for run_dir)".into();
    }
    let mut headers = vec!["setting".to_string()];
    headers.extend(runs.iter().map(|r| r.label.clone()));
    format!("settings that differ\n{}", table(&headers, &rows))
}

/// A text table: the first column left-aligned, the rest right-aligned.
fn table(headers: &[String], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..headers.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain([headers[c].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (v, w))| {
                let pad = w - v.chars().count();
                if c == 0 {
                    format!("{v}{}", " ".repeat(pad))
                } else {
                    format!("{}{v}", " ".repeat(pad))
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut lines = vec![line(headers)];
    lines.extend(rows.iter().map(|r| line(r)));
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_flatten_to_dotted_keys_with_indexed_arrays_of_tables() {
        let value: toml::Value = toml::from_str(
            "run_dir = \"r\"\n[train]\nlr = 3e-5\n[eval]\ntasks = [\"a\", \"b\"]\n[[data.domain]]\npath = \"x\"\n",
        )
        .unwrap();
        let mut out = BTreeMap::new();
        flatten("", &value, &mut out);
        assert_eq!(out["train.lr"].parse::<f64>(), Ok(3e-5));
        assert_eq!(out["eval.tasks"], "[\"a\", \"b\"]");
        assert_eq!(out["data.domain.0.path"], "\"x\"");
        assert_eq!(out.len(), 4);
    }

    #[test]
    fn tables_align_their_columns() {
        let text = table(
            &["run".into(), "score".into()],
            &[
                vec!["a".into(), "1.50".into()],
                vec!["long name".into(), "12.25".into()],
            ],
        );
        assert_eq!(text, "run        score\na           1.50\nlong name  12.25");
    }
}
