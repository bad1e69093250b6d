//! Stage 2's frozen evaluation model ("established guideline"): the stage-1
//! model on the inference backend (no autodiff graph, no dropout), scoring
//! each batch's anchor / own-hard-negative pairs and the candidates of
//! filtering.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::config::TrainConfig;
use crate::data::batcher::TokenBatch;
use crate::data::tokenizer::{Encoded, SentenceTokenizer};
use crate::embed::embedder::Embedder;
use crate::error::{Error, Result};
use crate::loss::infonce::unit_rows;
use crate::model::encoder::SentenceEncoder;
use crate::model::hub::resolve_model;
use crate::model::load::{LoadOptions, LoadedModel};
use crate::model::pooling::Pooling;

/// The frozen model with the student's training pooling and temperature.
pub struct FrozenModel<B: Backend> {
    /// The encoder; never updated.
    pub encoder: SentenceEncoder<B>,
    /// Its tokenizer.
    pub tokenizer: SentenceTokenizer,
    /// The checkpoint's pad token id.
    pub pad_id: u32,
    /// The student's training pooling, so that `s'` and `s` compare alike.
    pub pooling: Pooling,
    /// Softmax temperature tau.
    pub temperature: f64,
}

impl<B: Backend> FrozenModel<B> {
    /// Loads `stage2.frozen` (default `model.path`) of `config`.
    pub fn load(config: &TrainConfig, device: &B::Device) -> Result<Self> {
        Self::open(
            config.frozen_model(),
            config.model.pooling,
            Some(config.model.max_len),
            config.train.temperature,
            device,
        )
    }

    /// Loads `model` (a directory, run directory or hub id) to score with
    /// `pooling`, cutting sentences at `max_len` tokens (default: the
    /// model's limit).
    pub fn open(
        model: &str,
        pooling: Pooling,
        max_len: Option<usize>,
        temperature: f64,
        device: &B::Device,
    ) -> Result<Self> {
        let dir = resolve_model(model)?;
        let options = LoadOptions {
            max_len,
            dropout: Some(0.0),
        };
        let loaded = LoadedModel::<B>::from_dir(&dir, &options, device)?;
        if pooling == Pooling::Cls && !loaded.report.has_pooler() {
            return Err(Error::Usage(format!(
                "{}: the frozen model has no pooler (MLP) weights, so its `cls` scores would be random; \
                 use a stage-1 run or model folder that has them",
                loaded.report.weights.display()
            )));
        }
        Ok(Self {
            encoder: loaded.encoder,
            tokenizer: loaded.tokenizer,
            pad_id: loaded.config.pad_token_id as u32,
            pooling,
            temperature,
        })
    }

    /// `cos'(anchor_i, negative_i) / tau` for each pair, `[n]`.
    pub fn scores(
        &self,
        anchors: &[&Encoded],
        negatives: &[&Encoded],
        device: &B::Device,
    ) -> Tensor<B, 1> {
        let n = anchors.len();
        let rows: Vec<&Encoded> = anchors.iter().chain(negatives).copied().collect();
        let z = unit_rows(
            self.encoder
                .forward(&TokenBatch::new(&rows, self.pad_id, device), self.pooling),
        );
        (z.clone().narrow(0, 0, n) * z.narrow(0, n, n))
            .sum_dim(1)
            .reshape([n])
            / self.temperature
    }

    /// An embedder for scoring candidates, `batch_size` sentences a pass.
    pub fn embedder(&self, batch_size: usize, device: &B::Device) -> Embedder<'_, B> {
        Embedder {
            encoder: &self.encoder,
            tokenizer: &self.tokenizer,
            pad_id: self.pad_id,
            pooling: self.pooling,
            batch_size,
            device: device.clone(),
        }
    }
}
