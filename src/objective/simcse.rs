//! Unsupervised SimCSE (GCSE's stage 1, docs/method.md "Stage 1"): each
//! sentence of the domain/general mixture is encoded twice in one batch, and
//! the two dropout masks make the two views InfoNCE pulls together.

use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use super::sentences::Sentences;
use super::{Objective, Setup};
use crate::config::{MlpInit, TrainConfig};
use crate::data::tokenizer::Encoded;
use crate::error::Result;
use crate::loss::infonce::TwoViewInfoNce;

/// `[simcse]`: no keys of its own (the temperature is `train.temperature`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimcseConfig {}

/// The objective, with the run's tokenized sentences.
pub struct Simcse {
    loss: TwoViewInfoNce,
    sentences: Sentences,
}

impl Objective for Simcse {
    type Config = SimcseConfig;
    type Loss = TwoViewInfoNce;
    const NAME: &'static str = "simcse";
    const MLP_INIT: MlpInit = MlpInit::Random;

    fn validate(_: &SimcseConfig, experiment: &TrainConfig) -> std::result::Result<(), String> {
        Sentences::check(&experiment.data)?;
        if experiment.data.has_triplets() {
            return Err(
                "`data.candidates` and `data.triplets` are for objectives that train on triplets \
                 (objective = \"gcse\"); SimCSE reads `[[data.domain]]` / `[[data.general]]`"
                    .into(),
            );
        }
        Ok(())
    }

    fn prepare<B: AutodiffBackend>(_: &SimcseConfig, setup: &Setup<'_, B>) -> Result<Self> {
        Ok(Self {
            loss: TwoViewInfoNce {
                temperature: setup.temperature,
            },
            sentences: Sentences::load(setup)?,
        })
    }

    fn summary(&self) -> Vec<String> {
        vec![format!("data: {}", self.sentences.summary())]
    }

    fn examples(&self) -> usize {
        self.sentences.len()
    }

    fn sentences_per_example(&self) -> usize {
        1
    }

    fn loss(&self) -> &TwoViewInfoNce {
        &self.loss
    }

    /// Rows `0..n` and `n..2n` both hold the `n` sentences.
    fn batch<B: AutodiffBackend>(
        &self,
        indices: &[usize],
        _seed: u64,
        _device: &B::Device,
    ) -> Result<(Vec<&Encoded>, ())> {
        Ok((self.sentences.two_views(indices), ()))
    }
}
