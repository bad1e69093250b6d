//! A toy objective and a toy evaluator, written the way a user adds one,
//! outside gcse: symmetric InfoNCE (each view predicts the other, both
//! directions averaged) with its own statistics panel, and an evaluator
//! whose primary metric is better when lower. Used by `train.rs` (a whole
//! run through the library's loop, dashboard, plots and checkpoints) and
//! `grad_cache.rs` (GradCache parity).

#![allow(dead_code)]

use std::collections::BTreeMap;

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use gcse::config::{MlpInit, TrainConfig};
use gcse::data::tokenizer::Encoded;
use gcse::eval::evaluator::{Evaluator, MetricInfo, SentenceVectors, TaskResult};
use gcse::loss::infonce::{cosine_matrix, diagonal_cross_entropy};
use gcse::loss::{BatchLoss, LossOutput};
use gcse::objective::sentences::Sentences;
use gcse::objective::stats::{
    histogram, mean, HistogramSpec, Readings, SeriesSpec, Stats, StatsPanel,
};
use gcse::objective::{Objective, Setup};
use serde::{Deserialize, Serialize};

/// `[symmetric]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SymmetricConfig {
    /// Weight of the view-2-to-view-1 direction (the other gets 1 - this).
    #[serde(default = "half")]
    pub backward_weight: f64,
}

fn half() -> f64 {
    0.5
}

impl Default for SymmetricConfig {
    fn default() -> Self {
        Self {
            backward_weight: half(),
        }
    }
}

/// The loss: rows `0..n` and `n..2n` are two views of `n` sentences.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SymmetricInfoNce {
    pub temperature: f64,
    pub backward_weight: f64,
}

/// Reading: each sentence's cosine with its other view.
pub const POSITIVE: &str = "positive";

impl BatchLoss for SymmetricInfoNce {
    type Constants<B: Backend> = ();

    fn loss<B: Backend>(&self, z: Tensor<B, 2>, _: &()) -> LossOutput<B> {
        let n = z.dims()[0] / 2;
        let (z1, z2) = (z.clone().narrow(0, 0, n), z.narrow(0, n, n));
        let cos = cosine_matrix(z1, z2);
        let eye = Tensor::<B, 2>::eye(n, &cos.device()).cast(cos.dtype());
        let positive = (cos.clone() * eye).sum_dim(1).reshape([n]);
        let forward = diagonal_cross_entropy(cos.clone() / self.temperature);
        let backward = diagonal_cross_entropy(cos.transpose() / self.temperature);
        let w = self.backward_weight;
        LossOutput {
            loss: forward * (1.0 - w) + backward * w,
            readings: vec![(POSITIVE, positive.detach())],
        }
    }
}

/// The objective with its tokenized sentences.
pub struct Symmetric {
    loss: SymmetricInfoNce,
    sentences: Sentences,
}

impl Objective for Symmetric {
    type Config = SymmetricConfig;
    type Loss = SymmetricInfoNce;
    const NAME: &'static str = "symmetric";
    const MLP_INIT: MlpInit = MlpInit::Random;

    fn validate(config: &SymmetricConfig, experiment: &TrainConfig) -> Result<(), String> {
        if !(0.0..=1.0).contains(&config.backward_weight) {
            return Err("`symmetric.backward_weight` must be in [0, 1]".into());
        }
        Sentences::check(&experiment.data)
    }

    fn panel(_: &SymmetricConfig) -> Option<StatsPanel> {
        Some(StatsPanel {
            name: "symmetric".into(),
            title: "symmetric InfoNCE".into(),
            placeholder: "positive cosines appear after the first step".into(),
            series: vec![SeriesSpec {
                key: "mean_positive".into(),
                label: "mean positive cosine".into(),
                decimals: 3,
            }],
            histogram: Some(HistogramSpec {
                key: "positives".into(),
                title: "positive cosines, last batch".into(),
                range: [-1.0, 1.0],
            }),
            plot: "symmetric.png".into(),
            smooth: 2,
        })
    }

    fn prepare<B: AutodiffBackend>(
        config: &SymmetricConfig,
        setup: &Setup<'_, B>,
    ) -> gcse::Result<Self> {
        Ok(Self {
            loss: SymmetricInfoNce {
                temperature: setup.temperature,
                backward_weight: config.backward_weight,
            },
            sentences: Sentences::load(setup)?,
        })
    }

    fn summary(&self) -> Vec<String> {
        vec![self.sentences.summary().to_string()]
    }

    fn examples(&self) -> usize {
        self.sentences.len()
    }

    fn sentences_per_example(&self) -> usize {
        1
    }

    fn loss(&self) -> &SymmetricInfoNce {
        &self.loss
    }

    fn batch<B: AutodiffBackend>(
        &self,
        indices: &[usize],
        _seed: u64,
        _device: &B::Device,
    ) -> gcse::Result<(Vec<&Encoded>, ())> {
        Ok((self.sentences.two_views(indices), ()))
    }

    fn stats(&self, readings: &Readings) -> Stats {
        let positive = &readings[POSITIVE];
        Stats {
            values: vec![("mean_positive".into(), mean(positive))],
            histograms: vec![("positives".into(), histogram(positive, [-1.0, 1.0], 8))],
        }
    }
}

/// Mean cosine distance of fixed sentence pairs: lower is better.
pub struct PairDistance {
    pub pairs: Vec<(String, String)>,
}

/// The toy evaluator's metrics.
pub const DISTANCE: &[MetricInfo] = &[
    MetricInfo {
        name: "distance",
        label: "cosine distance",
        higher_is_better: false,
        percent: false,
    },
    MetricInfo {
        name: "similarity",
        label: "cosine",
        higher_is_better: true,
        percent: false,
    },
];

impl Evaluator for PairDistance {
    fn name(&self) -> &str {
        "pair-distance"
    }

    fn column(&self) -> &str {
        "Pairs"
    }

    fn family(&self) -> &str {
        "toy"
    }

    fn metrics(&self) -> &[MetricInfo] {
        DISTANCE
    }

    fn sentences(&self) -> Vec<&str> {
        self.pairs
            .iter()
            .flat_map(|(a, b)| [a.as_str(), b.as_str()])
            .collect()
    }

    fn score(&self, vectors: &SentenceVectors) -> TaskResult {
        let cosines: Vec<f64> = self
            .pairs
            .iter()
            .map(|(a, b)| vectors.cosine(a, b))
            .collect();
        let similarity = mean(&cosines);
        TaskResult {
            task: self.name().into(),
            column: self.column().into(),
            family: "toy".into(),
            shown: &[],
            primary: "distance".into(),
            metrics: BTreeMap::from([
                ("distance".into(), 1.0 - similarity),
                ("similarity".into(), similarity),
            ]),
            counts: BTreeMap::from([("pairs".into(), self.pairs.len())]),
        }
    }
}
