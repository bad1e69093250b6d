//! Scored sentence pairs, what the pair objectives (`cross`, `pairs`)
//! train on: pairs from files (JSONL `{a, b, score}` or tab-separated, as
//! `pairs:` evaluation files), scored by the files or by teachers. A
//! teacher is a bi-encoder (the cosine of the pair's vectors, clamped to
//! [0, 1]) or a cross-encoder (the sigmoid of its logit); several teachers'
//! scores are averaged (mutual distillation). Teacher scores are computed
//! once and cached in the run directory (`teachers/pair-labels.json`), so
//! a resumed run reads them back.
//!
//! Pairs never come from an evaluation test set, labelled or not: a pair
//! file that is one is refused by name (see [`test_set_of`]).

use std::path::Path;

use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use super::Setup;
use crate::config::TrainConfig;
use crate::embed::pairs::score_pairs;
use crate::error::{Error, Result};
use crate::eval::pair_scores::read_pairs;
use crate::eval::sts::test_set_of;
use crate::fingerprint::Fingerprint;
use crate::json_file::{read_json, write_json};
use crate::model::pooling::Pooling;

/// Where a pair objective's pairs and scores come from (keys of its
/// section).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairSources {
    /// Pair files: JSONL (`a`/`b` or `sentence1`/`sentence2`, a `score`)
    /// or tab-separated (`a`, `b`, score). Required.
    #[serde(default)]
    pub pairs: Vec<String>,
    /// Teachers scoring the pairs, averaged (the files' scores are then not
    /// read): model folders, run directories or hub ids, each a bi-encoder
    /// or a cross-encoder. Default: none (the files' scores).
    #[serde(default)]
    pub teachers: Vec<String>,
    /// Pooling of bi-encoder teachers. Default: what each folder declares,
    /// else `cls_before_pooler`.
    #[serde(default)]
    pub teacher_pooling: Option<Pooling>,
    /// The range of the files' scores, mapped onto [0, 1] (`[0.0, 5.0]` for
    /// STS-B's). Default `[0.0, 1.0]`.
    #[serde(default = "unit_range")]
    pub score_range: [f64; 2],
}

fn unit_range() -> [f64; 2] {
    [0.0, 1.0]
}

impl Default for PairSources {
    fn default() -> Self {
        Self {
            pairs: Vec::new(),
            teachers: Vec::new(),
            teacher_pooling: None,
            score_range: unit_range(),
        }
    }
}

/// Sentence pairs with a score in [0, 1] each.
#[derive(Debug, Clone, Default)]
pub struct ScoredPairs {
    /// First sentences.
    pub a: Vec<String>,
    /// Second sentences.
    pub b: Vec<String>,
    /// Scores.
    pub scores: Vec<f64>,
}

impl ScoredPairs {
    /// "N pairs scored by X (mean score M)", for an objective's summary;
    /// `teachers` as the section names them (none: the files).
    pub fn describe(&self, teachers: &[String]) -> String {
        let n = self.scores.len();
        let mean = self.scores.iter().sum::<f64>() / n.max(1) as f64;
        let by = match teachers.len() {
            0 => "the files".to_string(),
            _ => teachers.join(" + "),
        };
        format!("{n} pairs scored by {by} (mean score {mean:.3})")
    }
}

/// What the label cache says it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct LabelCache {
    teachers: Vec<String>,
    teacher_pooling: Option<Pooling>,
    /// The pairs' [`Fingerprint`].
    pairs: String,
    scores: Vec<f64>,
}

impl PairSources {
    /// Checks the sources against the experiment; `objective` names the
    /// section in messages.
    pub fn check(
        &self,
        objective: &str,
        experiment: &TrainConfig,
    ) -> std::result::Result<(), String> {
        if self.pairs.is_empty() {
            return Err(format!(
                "`{objective}.pairs`: no pair file; name at least one (JSONL {{a, b, score}} or \
                 tab-separated)"
            ));
        }
        let [lo, hi] = self.score_range;
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return Err(format!(
                "`{objective}.score_range`: [{lo}, {hi}] is not a range (low < high)"
            ));
        }
        if experiment.data.has_sentences() || experiment.data.has_triplets() {
            return Err(format!(
                "`[data]`: objective \"{objective}\" trains on the pairs of `{objective}.pairs`, \
                 not on `[data]` sentences or triplets; remove them"
            ));
        }
        let senteval = experiment.eval.eval_data().senteval;
        for file in &self.pairs {
            if let Some(task) = test_set_of(Path::new(file), &senteval) {
                return Err(format!(
                    "`{objective}.pairs`: {file} is the {task} test set; training on evaluation \
                     test pairs, even without their scores, would leak them into the results \
                     (use STS-B train, SICK train, GCSE triplets or pairs of your own)"
                ));
            }
        }
        Ok(())
    }

    /// Reads the pairs and scores them: by the files, or by the teachers
    /// (cached in the run directory).
    pub fn load<B: AutodiffBackend>(&self, setup: &Setup<'_, B>) -> Result<ScoredPairs> {
        let mut pairs = ScoredPairs::default();
        let [lo, hi] = self.score_range;
        for file in &self.pairs {
            let path = Path::new(file);
            let values: &[&str] = if self.teachers.is_empty() {
                &["score", "scores", "label", "labels", "gold"]
            } else {
                &[]
            };
            let (read, lines) = read_pairs(path, values)?;
            if self.teachers.is_empty() {
                for (&value, &line) in read.gold.iter().zip(&lines) {
                    let score = (value - lo) / (hi - lo);
                    if !(0.0..=1.0).contains(&score) {
                        return Err(Error::data(
                            path,
                            line,
                            format!("score {value} is outside score_range [{lo}, {hi}]"),
                        ));
                    }
                    pairs.scores.push(score);
                }
            }
            pairs.a.extend(read.a);
            pairs.b.extend(read.b);
        }
        if !self.teachers.is_empty() {
            pairs.scores = self.teacher_scores(&pairs, setup)?;
        }
        Ok(pairs)
    }

    fn teacher_scores<B: AutodiffBackend>(
        &self,
        pairs: &ScoredPairs,
        setup: &Setup<'_, B>,
    ) -> Result<Vec<f64>> {
        let mut hash = Fingerprint::new();
        for (a, b) in pairs.a.iter().zip(&pairs.b) {
            hash.field(a.as_bytes());
            hash.field(b.as_bytes());
        }
        let mut key = LabelCache {
            teachers: self.teachers.clone(),
            teacher_pooling: self.teacher_pooling,
            pairs: hash.hex(),
            scores: Vec::new(),
        };
        let path = setup
            .run
            .teacher_cache("pair-labels")
            .with_extension("json");
        if let Ok(cached) = read_json::<LabelCache>(&path) {
            let scores = cached.scores.clone();
            key.scores = scores.clone();
            if cached == key && scores.len() == pairs.a.len() {
                return Ok(scores);
            }
        }
        let mut sum = vec![0.0; pairs.a.len()];
        for teacher in &self.teachers {
            let scores = score_pairs::<B::InnerBackend>(
                teacher,
                self.teacher_pooling,
                None,
                &pairs.a,
                &pairs.b,
                setup.inference_batch,
                setup.device,
            )?;
            sum.iter_mut()
                .zip(scores)
                .for_each(|(s, x)| *s += x.clamp(0.0, 1.0));
        }
        let n = self.teachers.len() as f64;
        key.scores = sum.into_iter().map(|s| s / n).collect();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        write_json(&path, &key)?;
        Ok(key.scores)
    }
}

/// A pair objective's section: the [`PairSources`] keys plus the
/// objective's own (`T`), one flat table; a key of neither is refused.
pub fn split_section<T: serde::de::DeserializeOwned>(
    mut table: toml::Table,
    own: &[&str],
) -> std::result::Result<(T, PairSources), String> {
    let mine: toml::Table = own
        .iter()
        .filter_map(|k| table.remove(*k).map(|v| (k.to_string(), v)))
        .collect();
    let sources = PairSources::deserialize(toml::Value::Table(table)).map_err(|e| e.to_string())?;
    let mine = T::deserialize(toml::Value::Table(mine)).map_err(|e| e.to_string())?;
    Ok((mine, sources))
}
