//! GCSE (stage 2, docs/method.md "Stage 2"): triplets (anchor, positive,
//! hard negative; [`TripletExamples`]) trained with the Gaussian-decayed own
//! hard negative, each batch carrying the frozen model's logits
//! `cos'(anchor, negative) / tau` of its triplets. Each step reports what
//! the decay did: the mean weight left on the own hard negatives, the
//! fraction at or below 0.5, the mean `s - s'` and a histogram of the
//! weights.

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::stats::{histogram, mean, HistogramSpec, SeriesSpec, Stats, StatsPanel};
use super::triplet_examples::TripletExamples;
use super::{Objective, Readings, Setup};
use crate::config::{MlpInit, TrainConfig};
use crate::data::tokenizer::Encoded;
use crate::error::Result;
use crate::loss::gaussian_decay::{Decay, DecayMode, GaussianDecayLoss, GAP, WEIGHT};
use crate::run_dir::RunDir;

/// `[gcse]` (files written before objectives were plug-ins call it
/// `[stage2]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcseConfig {
    /// `official` (the authors' code: detached additive term, only where the
    /// student scores the own hard negative no higher than the frozen model,
    /// s <= s'), `paper` (Eq. 13: both sides, gradient through the decay) or
    /// `none` (InfoNCE with hard negatives: ablation "w/o decay").
    /// Default `official`.
    #[serde(default)]
    pub decay: DecayMode,
    /// Gaussian width in logit units (cosine / tau). Default 0.17 for
    /// `official` (the authors' code), 0.01 / tau for `paper` (the paper's
    /// sigma = 0.01 in cosine units).
    #[serde(default)]
    pub decay_width: Option<f64>,
    /// The frozen evaluation model (scores batches and candidates), with
    /// the student's training pooling and length. Default: `model.path`.
    #[serde(default)]
    pub frozen: Option<String>,
}

impl Default for GcseConfig {
    fn default() -> Self {
        toml::from_str("").expect("every [gcse] key has a default")
    }
}

impl GcseConfig {
    /// The decay this section describes at `temperature`.
    pub fn decay(&self, temperature: f64) -> Decay {
        Decay::of(self.decay, self.decay_width, temperature)
    }
}

/// Statistic keys, in the log and the panel.
const MEAN_WEIGHT: &str = "mean_weight";
const FRACTION_DECAYED: &str = "fraction_decayed";
const MEAN_GAP: &str = "mean_gap";
const WEIGHTS: &str = "weights";

/// The objective: the run's triplets.
pub struct Gcse {
    loss: GaussianDecayLoss,
    examples: TripletExamples,
}

impl Objective for Gcse {
    type Config = GcseConfig;
    type Loss = GaussianDecayLoss;
    const NAME: &'static str = "gcse";
    const MLP_INIT: MlpInit = MlpInit::Pretrained;

    fn validate(config: &GcseConfig, experiment: &TrainConfig) -> std::result::Result<(), String> {
        TripletExamples::check(&experiment.data, Self::NAME)?;
        Decay::check_width("gcse.decay_width", config.decay_width)
    }

    fn panel(_: &GcseConfig) -> Option<StatsPanel> {
        let series = |key: &str, label: &str| SeriesSpec {
            key: key.into(),
            label: label.into(),
            decimals: 3,
        };
        Some(StatsPanel {
            name: "decay".into(),
            title: "stage 2 decay".into(),
            placeholder: "The mean Gaussian decay weight of the own hard negatives, the fraction \
                          decayed and the mean s - s' against the frozen model appear here after \
                          the first step."
                .into(),
            series: vec![
                series(FRACTION_DECAYED, "fraction decayed"),
                series(MEAN_GAP, "mean s - s'"),
                series(MEAN_WEIGHT, "mean weight"),
            ],
            histogram: Some(HistogramSpec {
                key: WEIGHTS.into(),
                title: "weights, last batch (0 = fully decayed)".into(),
                range: [0.0, 1.0],
            }),
            plot: "decay.png".into(),
            smooth: 10,
        })
    }

    fn prepare<B: AutodiffBackend>(config: &GcseConfig, setup: &Setup<'_, B>) -> Result<Self> {
        Ok(Self {
            loss: GaussianDecayLoss {
                temperature: setup.temperature,
                decay: config.decay(setup.temperature),
            },
            examples: TripletExamples::load(config.frozen.as_deref(), setup)?,
        })
    }

    fn summary(&self) -> Vec<String> {
        self.examples.summary()
    }

    /// The filtered triplets and the filter's report.
    fn save(&self, run: &RunDir) -> Result<()> {
        self.examples.save(run)
    }

    fn examples(&self) -> usize {
        self.examples.len()
    }

    fn sentences_per_example(&self) -> usize {
        3
    }

    fn loss(&self) -> &GaussianDecayLoss {
        &self.loss
    }

    /// Anchors, then positives, then hard negatives, `n` rows each; the
    /// frozen model's logit of each anchor and its negative, `[n]`.
    fn batch<B: AutodiffBackend>(
        &self,
        indices: &[usize],
        _seed: u64,
        device: &B::Device,
    ) -> Result<(Vec<&Encoded>, Tensor<B, 1>)> {
        Ok((
            self.examples.rows(indices, &[0, 1, 2]),
            self.examples
                .frozen_logits(indices, self.loss.temperature, device),
        ))
    }

    fn stats(&self, readings: &Readings) -> Stats {
        let (gap, weight) = (&readings[GAP], &readings[WEIGHT]);
        let decayed = weight.iter().filter(|&&w| w <= 0.5).count();
        Stats {
            values: vec![
                (MEAN_WEIGHT.into(), mean(weight)),
                (
                    FRACTION_DECAYED.into(),
                    decayed as f64 / weight.len().max(1) as f64,
                ),
                (MEAN_GAP.into(), mean(gap)),
            ],
            histograms: vec![(WEIGHTS.into(), histogram(weight, [0.0, 1.0], 10))],
        }
    }
}
