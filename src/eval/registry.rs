//! The evaluation tasks `eval.tasks` and `gcse eval --tasks` can name: the
//! one place that lists them. Adding a family of tasks is its evaluator
//! module plus one entry in [`FAMILIES`].

use super::evaluator::{DevTitles, EvalData, Evaluator, MetricInfo, Selection, TaskFamily, MEAN};
use super::{pair_classification, pair_scores, reranking, retrieval, sts};
use crate::error::{Error, Result};

/// Every family of tasks.
const FAMILIES: &[TaskFamily] = &[
    sts::FAMILY,
    pair_scores::FAMILY,
    pair_classification::FAMILY,
    reranking::FAMILY,
    retrieval::FAMILY,
];

/// The test suite SimCSE and GCSE report, in the papers' column order.
pub const TEST_SUITE: [&str; 7] = ["sts12", "sts13", "sts14", "sts15", "sts16", "stsb", "sickr"];

/// The development sets.
pub const DEV: [&str; 2] = ["stsb-dev", "sickr-dev"];

fn find(name: &str) -> Option<(&'static TaskFamily, String)> {
    FAMILIES
        .iter()
        .find_map(|f| (f.resolve)(name).map(|canonical| (f, canonical)))
}

/// Every task's name.
pub fn names() -> Vec<&'static str> {
    FAMILIES
        .iter()
        .flat_map(|f| f.names.iter().copied())
        .collect()
}

fn unknown(name: &str) -> String {
    format!(
        "unknown evaluation task \"{name}\" ({})",
        names().join(", ")
    )
}

/// The canonical name of task `name`; the message lists the known ones.
pub fn canonical(name: &str) -> std::result::Result<String, String> {
    find(name).map(|(_, c)| c).ok_or_else(|| unknown(name))
}

/// The metrics of task `name`, primary first.
pub fn metrics(name: &str) -> std::result::Result<&'static [MetricInfo], String> {
    find(name)
        .map(|(f, _)| f.metrics)
        .ok_or_else(|| unknown(name))
}

/// `select_by` in canonical form, checked against the tasks it picks from.
/// A task read from a file always gets its metric written out (its primary
/// one when none is named), as its path may hold `/`.
pub fn check_selection(select_by: &str, tasks: &[String]) -> std::result::Result<String, String> {
    if select_by == MEAN {
        let lower_better: Vec<&String> = tasks
            .iter()
            .filter(|t| metrics(t).is_ok_and(|m| !m[0].higher_is_better))
            .collect();
        return match (tasks.is_empty(), lower_better.first()) {
            (true, _) => Err("`eval.select_by = \"mean\"` needs tasks in `eval.tasks`".into()),
            (_, Some(task)) => Err(format!(
                "`eval.select_by = \"mean\"`: the primary metric of {task} is better lower, so a mean with the others means nothing"
            )),
            _ => Ok(MEAN.into()),
        };
    }
    let selection = match canonical(select_by) {
        Ok(task) if tasks.contains(&task) => Selection { task, metric: None },
        _ => Selection::parse(select_by),
    };
    let task = canonical(&selection.task)?;
    if !tasks.contains(&task) {
        return Err(format!(
            "`eval.select_by` (\"{select_by}\") must be one of `eval.tasks`"
        ));
    }
    let metrics = metrics(&task)?;
    let Some(metric) = selection.metric_of(metrics) else {
        return Err(format!(
            "`eval.select_by`: task {task} has no metric \"{}\" ({})",
            selection.metric.unwrap_or_default(),
            metrics
                .iter()
                .map(|m| m.name)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    let metric = match selection.metric {
        None if task.contains(':') => Some(metric.name.to_string()),
        named => named,
    };
    Ok(Selection { task, metric }.to_string())
}

/// How the dashboard titles the dev curves of `tasks` (registered ones;
/// others count as a family of their own).
pub fn dev_titles(tasks: &[String], select_by: &str) -> DevTitles {
    let selection = Selection::parse(select_by);
    let higher_is_better = find(&selection.task)
        .and_then(|(f, _)| selection.metric_of(f.metrics))
        .is_none_or(|m| m.higher_is_better);
    DevTitles::from_parts(
        tasks.iter().map(|t| {
            find(t).map_or((t.as_str(), "primary metric"), |(f, _)| {
                (f.family, f.metrics[0].label)
            })
        }),
        select_by,
        higher_is_better,
    )
}

/// Loads the data of every task in `names`.
pub fn load(names: &[String], data: &EvalData) -> Result<Vec<Box<dyn Evaluator>>> {
    names
        .iter()
        .map(|name| {
            let (family, canonical) = find(name).ok_or_else(|| Error::Usage(unknown(name)))?;
            (family.load)(&canonical, data)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_to_themselves_and_suites_are_known() {
        for name in names() {
            assert_eq!(canonical(name), Ok(name.to_string()));
        }
        for name in TEST_SUITE.iter().chain(&DEV) {
            assert!(names().contains(name), "{name}");
        }
        assert_eq!(canonical("STS-B dev"), Ok("stsb-dev".into()));
        assert!(canonical("sts99").unwrap_err().contains("sts99"));
        let tasks = vec!["stsb-dev".to_string()];
        assert_eq!(check_selection("STS-B dev", &tasks), Ok("stsb-dev".into()));
        assert_eq!(check_selection("mean", &tasks), Ok("mean".into()));
        assert!(check_selection("mean", &[])
            .unwrap_err()
            .contains("eval.tasks"));
        assert_eq!(
            check_selection("stsb-dev/pearson", &tasks),
            Ok("stsb-dev/pearson".into())
        );
        assert!(check_selection("stsb-dev/recall", &tasks)
            .unwrap_err()
            .contains("recall"));
        assert!(check_selection("sickr-dev", &tasks)
            .unwrap_err()
            .contains("eval.select_by"));
    }

    #[test]
    fn tasks_read_from_files_keep_their_paths_and_always_name_a_metric() {
        let path = "rerank:runs/eval sets/snli/rerank-dev.jsonl.gz";
        assert_eq!(canonical(path), Ok(path.to_string()));
        assert!(canonical("rerank:").is_err());
        let tasks = vec!["stsb-dev".to_string(), path.to_string()];
        let full = format!("{path}/map");
        assert_eq!(check_selection(path, &tasks), Ok(full.clone()));
        assert_eq!(check_selection(&full, &tasks), Ok(full.clone()));
        assert_eq!(
            Selection::parse(&full),
            Selection {
                task: path.into(),
                metric: Some("map".into())
            }
        );
        assert_eq!(
            check_selection(&format!("{path}/ndcg_at_10"), &tasks),
            Ok(format!("{path}/ndcg_at_10"))
        );
        assert!(check_selection(&format!("{path}/spearman"), &tasks)
            .unwrap_err()
            .contains("mrr_at_10"));
        assert!(check_selection("pairs:other.jsonl", &tasks)
            .unwrap_err()
            .contains("eval.select_by"));
        assert_eq!(
            check_selection("stsb-dev/pearson", &tasks),
            Ok("stsb-dev/pearson".into())
        );
    }
}
