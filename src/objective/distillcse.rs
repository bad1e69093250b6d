//! DistillCSE (docs/methods-extensions.md §1): SimCSE's two dropout views
//! plus distillation of the student's view-1 cosines from frozen teacher
//! components, with Group-P shuffling of the student's columns.
//!
//! Each teacher component is a [`Teacher`](super::teacher::Teacher) without dropout; its vectors of
//! every training sentence are computed once and cached in the run directory
//! (`teachers/component-<k>`), so a rerun or resume reuses them. A batch's
//! teacher matrix is the mean of the components' raw cosine matrices, or
//! with two groups `alpha * mean_a + (1 - alpha) * mean_b`. Each row is
//! sorted descending (the diagonal left out, ties in column order), cut into
//! shuffle groups, and the student's columns are permuted inside each group
//! from the step's seed, so `--resume` repeats the same permutations.

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::group_shuffle::Shuffle;
use super::sentences::Sentences;
use super::stats::{histogram, mean, HistogramSpec, SeriesSpec, Stats, StatsPanel};
use super::teacher::frozen_vectors;
use super::{Objective, Readings, Setup};
use crate::config::{MlpInit, TrainConfig};
use crate::data::tokenizer::Encoded;
use crate::embed::embedder::{cosine, Embeddings};
use crate::error::Result;
use crate::eval::spearman::spearman;
use crate::loss::distill::{
    DistillConstants, DistillLoss, KdFunction, CONTRASTIVE, DISTILLATION, GROUP_SIZE,
    STUDENT_RANKED, TEACHER_RANKED,
};
use crate::model::pooling::Pooling;
use crate::rng::SplitMix64;

/// The two teacher groups `alpha` mixes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TeacherGroup {
    /// Weighted `alpha` when both groups have components.
    #[default]
    A,
    /// Weighted `1 - alpha`.
    B,
}

/// One teacher component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentConfig {
    /// A model directory, a training run directory (its best model: a
    /// previous round of self-training) or a hub id.
    pub path: String,
    /// How its token states become a vector (`cls_before_pooler` for
    /// SimCSE-style teachers).
    pub pooling: Pooling,
    /// Its group. Default `a`.
    #[serde(default)]
    pub group: TeacherGroup,
    /// Longest tokenized sentence. Default `model.max_len`.
    #[serde(default)]
    pub max_len: Option<usize>,
}

/// `[distillcse]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistillcseConfig {
    /// The distillation function: `ce` (default), `kl` or `js`.
    #[serde(default)]
    pub kd: KdFunction,
    /// Weight of the distillation term. Default 1.
    #[serde(default = "defaults::lambda")]
    pub lambda: f64,
    /// The student's distillation temperature. Default 0.025.
    #[serde(default = "defaults::tau_s")]
    pub tau_s: f64,
    /// The teacher's distillation temperature. Default 0.0125.
    #[serde(default = "defaults::tau_t")]
    pub tau_t: f64,
    /// Whether InfoNCE between the views is part of the loss. Default true
    /// (false: distillation only).
    #[serde(default = "defaults::cl")]
    pub cl: bool,
    /// The weight of group `a` when both groups have components. Default
    /// 0.33.
    #[serde(default = "defaults::alpha")]
    pub alpha: f64,
    /// How rows are shuffled. Default `{ kind = "group_p", p = 0.1 }`.
    #[serde(default)]
    pub shuffle: Shuffle,
    /// The teacher components, at least one.
    #[serde(default)]
    pub teachers: Vec<ComponentConfig>,
}

mod defaults {
    pub fn lambda() -> f64 {
        1.0
    }
    pub fn tau_s() -> f64 {
        0.025
    }
    pub fn tau_t() -> f64 {
        0.0125
    }
    pub fn cl() -> bool {
        true
    }
    pub fn alpha() -> f64 {
        0.33
    }
}

impl Default for DistillcseConfig {
    fn default() -> Self {
        toml::from_str("").expect("every [distillcse] key has a default")
    }
}

/// Statistic keys, in the log and the panel.
const L_CL: &str = "l_cl";
const L_KD: &str = "l_kd";
const MEAN_GROUP: &str = "mean_group_size";
const AGREEMENT: &str = "agreement";
const AGREEMENTS: &str = "agreements";

/// The objective: the run's sentences and each component's vectors of them.
pub struct Distillcse {
    loss: DistillLoss,
    sentences: Sentences,
    /// Per component: its group and its vectors of every sentence, row `i`
    /// for sentence `i`.
    components: Vec<(TeacherGroup, Embeddings)>,
    alpha: f64,
    shuffle: Shuffle,
}

impl Objective for Distillcse {
    type Config = DistillcseConfig;
    type Loss = DistillLoss;
    const NAME: &'static str = "distillcse";
    const MLP_INIT: MlpInit = MlpInit::Random;

    fn validate(
        config: &DistillcseConfig,
        experiment: &TrainConfig,
    ) -> std::result::Result<(), String> {
        Sentences::check(&experiment.data)?;
        if experiment.data.has_triplets() {
            return Err("objective = \"distillcse\" reads `[[data.domain]]` / `[[data.general]]`, not `data.candidates` or `data.triplets`".into());
        }
        if config.teachers.is_empty() {
            return Err("`distillcse.teachers` needs at least one component (`[[distillcse.teachers]]` with `path` and `pooling`)".into());
        }
        for (key, value) in [("tau_s", config.tau_s), ("tau_t", config.tau_t)] {
            if !(value > 0.0 && value.is_finite()) {
                return Err(format!("`distillcse.{key}` must be positive, not {value}"));
            }
        }
        if !(config.lambda >= 0.0 && config.lambda.is_finite()) {
            return Err(format!(
                "`distillcse.lambda` must be 0 or more, not {}",
                config.lambda
            ));
        }
        if !(0.0..=1.0).contains(&config.alpha) {
            return Err(format!(
                "`distillcse.alpha` must be in [0, 1], not {}",
                config.alpha
            ));
        }
        if !config.cl && config.lambda == 0.0 {
            return Err("`distillcse.cl = false` with `lambda = 0` leaves no loss".into());
        }
        config
            .shuffle
            .check()
            .map_err(|e| format!("`distillcse.shuffle`: {e}"))
    }

    fn panel(_: &DistillcseConfig) -> Option<StatsPanel> {
        let series = |key: &str, label: &str, decimals| SeriesSpec {
            key: key.into(),
            label: label.into(),
            decimals,
        };
        Some(StatsPanel {
            name: "distill".into(),
            title: "distillation".into(),
            placeholder: "L_cl, L_kd, the mean shuffle-group size and the teacher-student \
                          agreement (Spearman of each row, averaged) appear here after the first \
                          step."
                .into(),
            series: vec![
                series(L_CL, "L_cl", 4),
                series(L_KD, "L_kd", 4),
                series(AGREEMENT, "agreement", 3),
                series(MEAN_GROUP, "mean group size", 2),
            ],
            histogram: Some(HistogramSpec {
                key: AGREEMENTS.into(),
                title: "row agreement, last batch".into(),
                range: [-1.0, 1.0],
            }),
            plot: "distill.png".into(),
            smooth: 10,
        })
    }

    fn prepare<B: AutodiffBackend>(
        config: &DistillcseConfig,
        setup: &Setup<'_, B>,
    ) -> Result<Self> {
        let sentences = Sentences::load(setup)?;
        let texts = sentences.texts();
        let components = config
            .teachers
            .iter()
            .enumerate()
            .map(|(k, component)| {
                let vectors = frozen_vectors(
                    setup,
                    &component.path,
                    component.pooling,
                    component.max_len,
                    &texts,
                    &format!("component-{k}"),
                )?;
                Ok((component.group, vectors))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            loss: DistillLoss {
                temperature: setup.temperature,
                student_temperature: config.tau_s,
                teacher_temperature: config.tau_t,
                lambda: config.lambda,
                kd: config.kd,
                contrastive: config.cl,
            },
            sentences,
            components,
            alpha: config.alpha,
            shuffle: config.shuffle,
        })
    }

    fn summary(&self) -> Vec<String> {
        let count = |g| {
            self.components
                .iter()
                .filter(|(group, _)| *group == g)
                .count()
        };
        vec![
            format!("data: {}", self.sentences.summary()),
            format!(
                "teachers: {} component(s) in group a, {} in group b; shuffle {:?}",
                count(TeacherGroup::A),
                count(TeacherGroup::B),
                self.shuffle
            ),
        ]
    }

    fn examples(&self) -> usize {
        self.sentences.len()
    }

    fn sentences_per_example(&self) -> usize {
        1
    }

    fn loss(&self) -> &DistillLoss {
        &self.loss
    }

    /// Rows `0..n` and `n..2n` both hold the `n` sentences; the constants
    /// hold each row's sorted teacher cosines and shuffled student columns.
    fn batch<B: AutodiffBackend>(
        &self,
        indices: &[usize],
        seed: u64,
        device: &B::Device,
    ) -> Result<(Vec<&Encoded>, DistillConstants<B>)> {
        let teacher = teacher_matrix(&self.components, indices, self.alpha);
        let rows = ranked_rows(&teacher, self.shuffle, &mut SplitMix64::new(seed));
        let constants = constants(&rows, device);
        Ok((self.sentences.two_views(indices), constants))
    }

    fn stats(&self, readings: &Readings) -> Stats {
        let n = readings[DISTILLATION].len();
        let agreements: Vec<f64> =
            match (readings.get(STUDENT_RANKED), readings.get(TEACHER_RANKED)) {
                (Some(student), Some(teacher)) if n > 1 => student
                    .chunks(n - 1)
                    .zip(teacher.chunks(n - 1))
                    .map(|(s, t)| spearman(s, t))
                    .filter(|r| r.is_finite())
                    .collect(),
                _ => Vec::new(),
            };
        Stats {
            values: vec![
                (L_CL.into(), mean(&readings[CONTRASTIVE])),
                (L_KD.into(), mean(&readings[DISTILLATION])),
                (AGREEMENT.into(), mean(&agreements)),
                (MEAN_GROUP.into(), mean(&readings[GROUP_SIZE])),
            ],
            histograms: vec![(AGREEMENTS.into(), histogram(&agreements, [-1.0, 1.0], 10))],
        }
    }
}

/// The teacher matrix of the sentences `indices` (`n * n`, row-major):
/// each component's raw cosines, averaged within each group, the two
/// groups mixed `alpha : 1 - alpha` when both have components.
pub fn teacher_matrix(
    components: &[(TeacherGroup, Embeddings)],
    indices: &[usize],
    alpha: f64,
) -> Vec<f64> {
    let n = indices.len();
    let group_mean = |group| -> Option<Vec<f64>> {
        let members: Vec<&Embeddings> = components
            .iter()
            .filter(|(g, _)| *g == group)
            .map(|(_, e)| e)
            .collect();
        (!members.is_empty()).then(|| {
            let mut sum = vec![0.0; n * n];
            for vectors in &members {
                for (i, &a) in indices.iter().enumerate() {
                    for (j, &b) in indices.iter().enumerate() {
                        sum[i * n + j] += cosine(vectors.row(a), vectors.row(b));
                    }
                }
            }
            sum.iter().map(|v| v / members.len() as f64).collect()
        })
    };
    match (group_mean(TeacherGroup::A), group_mean(TeacherGroup::B)) {
        (Some(a), Some(b)) => a
            .iter()
            .zip(&b)
            .map(|(a, b)| alpha * a + (1.0 - alpha) * b)
            .collect(),
        (Some(only), None) | (None, Some(only)) => only,
        (None, None) => vec![0.0; n * n],
    }
}

/// One row of the teacher matrix in the teacher's order.
#[derive(Debug, Clone, PartialEq)]
pub struct RankedRow {
    /// The row's cosines with the other columns, sorted descending.
    pub sorted: Vec<f64>,
    /// The columns in that order (ties, -0 and 0 included, in column order).
    pub ranked: Vec<usize>,
    /// [`RankedRow::ranked`] after shuffling.
    pub order: Vec<usize>,
    /// The mean size of its shuffle groups (see [`Shuffle::apply`]).
    pub group_size: f64,
}

/// A batch's constants from its `n` ranked rows.
pub fn constants<B: Backend>(rows: &[RankedRow], device: &B::Device) -> DistillConstants<B> {
    let n = rows.len();
    let k = n.saturating_sub(1);
    let ints = |f: fn(&RankedRow) -> &[usize]| {
        let values: Vec<i64> = rows
            .iter()
            .flat_map(|r| f(r).iter().map(|&c| c as i64))
            .collect();
        Tensor::<B, 2, Int>::from_data(
            TensorData::new(values, [n, k]).convert::<B::IntElem>(),
            device,
        )
    };
    let sorted: Vec<f64> = rows.iter().flat_map(|r| r.sorted.iter().copied()).collect();
    let group_size: Vec<f64> = rows.iter().map(|r| r.group_size).collect();
    DistillConstants {
        teacher_sorted: Tensor::from_data(
            TensorData::new(sorted, [n, k]).convert::<B::FloatElem>(),
            device,
        ),
        order: ints(|r| &r.order),
        ranked: ints(|r| &r.ranked),
        group_size: Tensor::from_data(
            TensorData::new(group_size, [n]).convert::<B::FloatElem>(),
            device,
        ),
    }
}

/// The rows of the teacher matrix `teacher` (`n * n`) sorted descending
/// without their diagonal, shuffled by `shuffle` from `rng`, row by row.
pub fn ranked_rows(teacher: &[f64], shuffle: Shuffle, rng: &mut SplitMix64) -> Vec<RankedRow> {
    let n = (teacher.len() as f64).sqrt().round() as usize;
    (0..n)
        .map(|i| {
            let row = &teacher[i * n..(i + 1) * n];
            let mut ranked: Vec<usize> = (0..n).filter(|&j| j != i).collect();
            // `+ 0.0` makes -0 and 0 one value, as a float comparison has them.
            ranked.sort_by(|&a, &b| (row[b] + 0.0).total_cmp(&(row[a] + 0.0)));
            let sorted: Vec<f64> = ranked.iter().map(|&j| row[j]).collect();
            let mut order = ranked.clone();
            let group_size = shuffle.apply(&sorted, &mut order, rng);
            RankedRow {
                sorted,
                ranked,
                order,
                group_size,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors(rows: &[[f32; 2]]) -> Embeddings {
        Embeddings {
            dim: 2,
            data: rows.iter().flatten().copied().collect(),
            truncated: 0,
        }
    }

    #[test]
    fn teacher_groups_are_averaged_then_mixed_by_alpha() {
        let a1 = vectors(&[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]);
        let a2 = vectors(&[[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]);
        let b = vectors(&[[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]]);
        let one = teacher_matrix(&[(TeacherGroup::A, a1.clone())], &[0, 1], 0.33);
        assert_eq!(one, vec![1.0, 0.0, 0.0, 1.0]);
        let groups = [
            (TeacherGroup::A, a1),
            (TeacherGroup::A, a2),
            (TeacherGroup::B, b),
        ];
        let mixed = teacher_matrix(&groups, &[0, 1], 0.25);
        // Group a: cos(0, 1) = (0 + 1) / 2; group b: -1.
        let expected = 0.25 * 0.5 - 0.75;
        assert!((mixed[1] - expected).abs() < 1e-12, "{mixed:?}");
        assert!((mixed[2] - expected).abs() < 1e-12);
        assert!((mixed[0] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn rows_sort_descending_without_the_diagonal_ties_in_column_order() {
        let teacher = [
            1.0, 0.2, 0.5, 0.2, //
            0.2, 1.0, 0.1, 0.9, //
            0.5, 0.1, 1.0, 0.3, //
            -0.0, 0.9, 0.0, 1.0,
        ];
        let rows = ranked_rows(&teacher, Shuffle::None, &mut SplitMix64::new(0));
        assert_eq!(rows[0].ranked, vec![2, 1, 3]);
        assert_eq!(rows[3].ranked, vec![1, 0, 2], "-0 ties with 0");
        assert_eq!(rows[0].sorted, vec![0.5, 0.2, 0.2]);
        assert_eq!(rows[1].ranked, vec![3, 0, 2]);
        assert_eq!(rows[0].order, rows[0].ranked);
        assert_eq!(rows[0].group_size, 1.0);
        let whole = ranked_rows(
            &teacher,
            Shuffle::GroupP { p: 1.0 },
            &mut SplitMix64::new(3),
        );
        assert!(whole.iter().all(|r| r.group_size == 3.0));
        let range = ranked_rows(
            &teacher,
            Shuffle::Range { start: 0, end: 2 },
            &mut SplitMix64::new(3),
        );
        assert!(range.iter().all(|r| r.group_size == 1.5));
    }

    #[test]
    fn sections_parse_with_defaults_and_refuse_unknown_keys() {
        assert_eq!(
            DistillcseConfig::default().shuffle,
            Shuffle::GroupP { p: 0.1 }
        );
        let config: DistillcseConfig = toml::from_str(
            "kd = \"js\"\nshuffle = { kind = \"fixed\", size = 4 }\n[[teachers]]\npath = \"m\"\npooling = \"cls_before_pooler\"\ngroup = \"b\"\n",
        )
        .unwrap();
        assert_eq!(config.kd, KdFunction::Js);
        assert_eq!(config.shuffle, Shuffle::Fixed { size: 4 });
        assert_eq!(config.teachers[0].group, TeacherGroup::B);
        assert!(
            toml::from_str::<DistillcseConfig>("shuffle = { kind = \"fixed\", p = 0.1 }").is_err()
        );
    }
}
