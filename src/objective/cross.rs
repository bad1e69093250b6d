//! A cross-encoder trained on scored pairs: the cross-encoder half of
//! Trans-Encoder's self-distillation (`docs/method.md` has the family;
//! methods-extensions section 2). Each pair is read as one sequence, in
//! both orders by default, and its logit fitted to the pair's score by
//! binary cross-entropy with soft targets (sentence-transformers'
//! `BinaryCrossEntropyLoss`). The pairs and their scores come from files or
//! from teachers ([`super::scored_pairs`]).

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::scored_pairs::{split_section, PairSources, ScoredPairs};
use super::{Objective, Setup};
use crate::config::{MlpInit, TrainConfig};
use crate::data::tokenizer::Encoded;
use crate::error::Result;
use crate::loss::pairs::PairBce;
use crate::model::cross_encoder::ModelKind;
use crate::model::pooling::Pooling;

/// `[cross]`: the pair sources' keys, and `both_orders`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "toml::Table")]
pub struct CrossConfig {
    /// Where the pairs and their scores come from.
    #[serde(flatten)]
    pub sources: PairSources,
    /// Train on each pair as `(a, b)` and as `(b, a)`, each with its score
    /// (a pair is one example either way). Default true.
    pub both_orders: bool,
}

impl Default for CrossConfig {
    fn default() -> Self {
        Self {
            sources: PairSources::default(),
            both_orders: true,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Own {
    #[serde(default = "yes")]
    both_orders: bool,
}

fn yes() -> bool {
    true
}

impl TryFrom<toml::Table> for CrossConfig {
    type Error = String;

    fn try_from(table: toml::Table) -> std::result::Result<Self, String> {
        let (own, sources) = split_section::<Own>(table, &["both_orders"])?;
        Ok(Self {
            sources,
            both_orders: own.both_orders,
        })
    }
}

/// The objective, with the pairs tokenized in each order.
pub struct Cross {
    loss: PairBce,
    pairs: ScoredPairs,
    /// `(a, b)` sequences.
    forward: Vec<Encoded>,
    /// `(b, a)` sequences; empty without `both_orders`.
    backward: Vec<Encoded>,
    teachers: Vec<String>,
}

impl Objective for Cross {
    type Config = CrossConfig;
    type Loss = PairBce;
    const NAME: &'static str = "cross";
    const MLP_INIT: MlpInit = MlpInit::Pretrained;
    const MODEL: ModelKind = ModelKind::CrossEncoder;

    fn validate(config: &CrossConfig, experiment: &TrainConfig) -> std::result::Result<(), String> {
        config.sources.check(Self::NAME, experiment)?;
        if experiment.model.pooling != Pooling::Cls {
            return Err(format!(
                "`model.pooling` is \"{}\": a cross-encoder scores the [CLS] state through its \
                 pooler, so it must be \"cls\"",
                experiment.model.pooling
            ));
        }
        Ok(())
    }

    fn prepare<B: AutodiffBackend>(config: &CrossConfig, setup: &Setup<'_, B>) -> Result<Self> {
        let pairs = config.sources.load(setup)?;
        let forward = setup.tokenizer.encode_pairs(&pairs.a, &pairs.b)?;
        let backward = match config.both_orders {
            true => setup.tokenizer.encode_pairs(&pairs.b, &pairs.a)?,
            false => Vec::new(),
        };
        Ok(Self {
            loss: PairBce,
            pairs,
            forward,
            backward,
            teachers: config.sources.teachers.clone(),
        })
    }

    fn summary(&self) -> Vec<String> {
        let cut = self
            .forward
            .iter()
            .chain(&self.backward)
            .filter(|e| e.truncated)
            .count();
        vec![format!(
            "data: {}{}; {cut} sequences cut to model.max_len",
            self.pairs.describe(&self.teachers),
            if self.backward.is_empty() {
                ""
            } else {
                ", both orders"
            }
        )]
    }

    fn examples(&self) -> usize {
        self.forward.len()
    }

    fn sentences_per_example(&self) -> usize {
        2
    }

    fn loss(&self) -> &PairBce {
        &self.loss
    }

    /// Rows: the pairs as `(a, b)`, then (with `both_orders`) as `(b, a)`;
    /// each row's target is its pair's score.
    fn batch<B: AutodiffBackend>(
        &self,
        indices: &[usize],
        _seed: u64,
        device: &B::Device,
    ) -> Result<(Vec<&Encoded>, Tensor<B, 1>)> {
        let mut rows: Vec<&Encoded> = indices.iter().map(|&i| &self.forward[i]).collect();
        let mut targets: Vec<f64> = indices.iter().map(|&i| self.pairs.scores[i]).collect();
        if !self.backward.is_empty() {
            rows.extend(indices.iter().map(|&i| &self.backward[i]));
            targets.extend_from_within(..);
        }
        let n = targets.len();
        let targets = Tensor::from_data(
            TensorData::new(targets, [n]).convert::<B::FloatElem>(),
            device,
        );
        Ok((rows, targets))
    }
}
