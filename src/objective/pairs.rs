//! A bi-encoder trained on scored pairs: the bi-encoder half of
//! Trans-Encoder's self-distillation (methods-extensions section 2). The
//! cosine of each pair's vectors is fitted to the pair's score, by mean
//! squared error or CoSENT. The pairs and their scores come from files or
//! from teachers, typically a cross-encoder ([`super::scored_pairs`]).

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::scored_pairs::{split_section, PairSources, ScoredPairs};
use super::{Objective, Setup};
use crate::config::{MlpInit, TrainConfig};
use crate::data::tokenizer::Encoded;
use crate::error::Result;
use crate::loss::pairs::{PairRegression, PairScores, Regression};

/// `[pairs]`: the pair sources' keys, `loss` and `scale`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "toml::Table")]
pub struct PairsConfig {
    /// Where the pairs and their scores come from.
    #[serde(flatten)]
    pub sources: PairSources,
    /// `"mse"` (cosine against score) or `"cosent"`. Default `"mse"`.
    pub loss: Regression,
    /// CoSENT's scale. Default 20.
    pub scale: f64,
}

impl Default for PairsConfig {
    fn default() -> Self {
        Self {
            sources: PairSources::default(),
            loss: Regression::Mse,
            scale: default_scale(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Own {
    #[serde(default)]
    loss: Regression,
    #[serde(default = "default_scale")]
    scale: f64,
}

fn default_scale() -> f64 {
    20.0
}

impl TryFrom<toml::Table> for PairsConfig {
    type Error = String;

    fn try_from(table: toml::Table) -> std::result::Result<Self, String> {
        let (own, sources) = split_section::<Own>(table, &["loss", "scale"])?;
        Ok(Self {
            sources,
            loss: own.loss,
            scale: own.scale,
        })
    }
}

/// The objective, with both sentences of every pair tokenized.
pub struct Pairs {
    loss: PairRegression,
    pairs: ScoredPairs,
    a: Vec<Encoded>,
    b: Vec<Encoded>,
    teachers: Vec<String>,
}

impl Objective for Pairs {
    type Config = PairsConfig;
    type Loss = PairRegression;
    const NAME: &'static str = "pairs";
    const MLP_INIT: MlpInit = MlpInit::Random;

    fn validate(config: &PairsConfig, experiment: &TrainConfig) -> std::result::Result<(), String> {
        config.sources.check(Self::NAME, experiment)?;
        if !(config.scale.is_finite() && config.scale > 0.0) {
            return Err(format!(
                "`pairs.scale`: {} is not a positive number",
                config.scale
            ));
        }
        Ok(())
    }

    fn prepare<B: AutodiffBackend>(config: &PairsConfig, setup: &Setup<'_, B>) -> Result<Self> {
        let pairs = config.sources.load(setup)?;
        Ok(Self {
            loss: PairRegression {
                form: config.loss,
                scale: config.scale,
            },
            a: setup.tokenizer.encode(&pairs.a)?,
            b: setup.tokenizer.encode(&pairs.b)?,
            pairs,
            teachers: config.sources.teachers.clone(),
        })
    }

    fn summary(&self) -> Vec<String> {
        vec![format!(
            "data: {}; loss {:?}",
            self.pairs.describe(&self.teachers),
            self.loss.form
        )]
    }

    fn examples(&self) -> usize {
        self.a.len()
    }

    fn sentences_per_example(&self) -> usize {
        2
    }

    fn loss(&self) -> &PairRegression {
        &self.loss
    }

    /// Rows `0..n`: the first sentences; `n..2n`: the second ones.
    fn batch<B: AutodiffBackend>(
        &self,
        indices: &[usize],
        _seed: u64,
        device: &B::Device,
    ) -> Result<(Vec<&Encoded>, PairScores<B>)> {
        let rows = indices
            .iter()
            .map(|&i| &self.a[i])
            .chain(indices.iter().map(|&i| &self.b[i]))
            .collect();
        let values: Vec<f64> = indices.iter().map(|&i| self.pairs.scores[i]).collect();
        let scores = Tensor::from_data(
            TensorData::new(values.clone(), [values.len()]).convert::<B::FloatElem>(),
            device,
        );
        Ok((rows, PairScores { scores, values }))
    }
}
