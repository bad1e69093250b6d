//! The training step as a Burn [`TrainStep`], for both stages.
//! - Stage 1, unsupervised SimCSE: each sentence is encoded twice in one
//!   forward pass; the two dropout masks make the two views; InfoNCE pulls
//!   the views together and pushes other sentences apart.
//! - Stage 2, GCSE: anchors, positives and hard negatives in one forward
//!   pass; the loss of [`gcse_loss`] with the frozen model's scores of each
//!   anchor and its own hard negative, computed outside the graph.

use burn::module::Module;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor};
use burn::train::metric::ItemLazy;
use burn::train::{TrainOutput, TrainStep};

use crate::config::TrainConfig;
use crate::data::batcher::TokenBatch;
use crate::loss::gaussian_decay::{gcse_loss, Decay};
use crate::loss::infonce::info_nce;
use crate::model::encoder::SentenceEncoder;
use crate::model::pooling::Pooling;

/// What the loss is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Objective {
    /// Stage 1: two views of each sentence.
    Simcse,
    /// Stage 2: triplets with the Gaussian-decayed own hard negative.
    Gcse(Decay),
}

/// The encoder with its training pooler, temperature and objective.
#[derive(Module, Debug)]
pub struct ContrastiveModel<B: Backend> {
    /// The encoder being trained.
    pub encoder: SentenceEncoder<B>,
    /// Pooling in training (SimCSE and GCSE: `cls`, through the MLP).
    pub pooling: Pooling,
    /// Softmax temperature tau.
    pub temperature: f64,
    /// Stage 1 or stage 2.
    pub objective: Objective,
}

/// One step's input.
#[derive(Debug, Clone)]
pub struct TrainBatch<B: Backend> {
    /// Stage 1: rows `0..n` and `n..2n` hold the same `n` sentences.
    /// Stage 2: anchors, then positives, then hard negatives, `n` rows each.
    pub tokens: TokenBatch<B>,
    /// Stage 2: the frozen model's logit `cos'(anchor_i, negative_i) / tau`
    /// of each triplet, `[n]`, constant.
    pub frozen: Option<Tensor<B, 1>>,
}

/// The loss of a batch, and in stage 2 what the decay did (`[n]` each,
/// detached): `s - s'` and the weight left on each own hard negative.
pub struct BatchLoss<B: Backend> {
    /// `[1]`.
    pub loss: Tensor<B, 1>,
    /// Stage 2 only: `(s - s', weight)`.
    pub decay: Option<(Tensor<B, 1>, Tensor<B, 1>)>,
}

/// What a step reports once read back.
#[derive(Debug, Clone, PartialEq)]
pub struct StepItem {
    /// The loss.
    pub loss: f64,
    /// Stage 2 only: per triplet `s - s'` and the weight left on its own hard
    /// negative.
    pub decay: Option<(Vec<f64>, Vec<f64>)>,
}

impl<B: Backend> ItemLazy for BatchLoss<B> {
    type ItemSync = StepItem;

    fn sync(self) -> StepItem {
        let read = |t: Tensor<B, 1>| t.into_data().convert::<f64>().to_vec::<f64>().expect("f64");
        StepItem {
            loss: self.loss.into_scalar().elem(),
            decay: self.decay.map(|(gap, weight)| (read(gap), read(weight))),
        }
    }
}

impl<B: Backend> ContrastiveModel<B> {
    /// `encoder` with the training settings of `config`.
    pub fn new(encoder: SentenceEncoder<B>, config: &TrainConfig) -> Self {
        Self {
            encoder,
            pooling: config.model.pooling,
            temperature: config.train.temperature,
            objective: config.objective(),
        }
    }

    /// The loss of a batch laid out as [`TrainBatch`] says.
    pub fn loss(&self, batch: &TrainBatch<B>) -> BatchLoss<B> {
        let z = self.encoder.forward(&batch.tokens, self.pooling);
        match self.objective {
            Objective::Simcse => {
                let n = z.dims()[0] / 2;
                BatchLoss {
                    loss: info_nce(
                        z.clone().narrow(0, 0, n),
                        z.narrow(0, n, n),
                        self.temperature,
                    ),
                    decay: None,
                }
            }
            Objective::Gcse(decay) => {
                let n = z.dims()[0] / 3;
                let frozen = batch
                    .frozen
                    .clone()
                    .expect("a stage-2 batch carries the frozen model's scores");
                let out = gcse_loss(
                    z.clone().narrow(0, 0, n),
                    z.clone().narrow(0, n, n),
                    z.narrow(0, 2 * n, n),
                    frozen,
                    self.temperature,
                    decay,
                );
                BatchLoss {
                    loss: out.loss,
                    decay: Some((out.gap, out.weight)),
                }
            }
        }
    }
}

impl<B: AutodiffBackend> TrainStep for ContrastiveModel<B> {
    type Input = TrainBatch<B>;
    type Output = BatchLoss<B>;

    fn step(&self, batch: TrainBatch<B>) -> TrainOutput<BatchLoss<B>> {
        let out = self.loss(&batch);
        TrainOutput::new(self, out.loss.backward(), out)
    }
}
