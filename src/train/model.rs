//! Stage 1 as a Burn training step: unsupervised SimCSE. Each sentence is
//! encoded twice in one forward pass; the two dropout masks make the two
//! views; InfoNCE pulls the views together and pushes other sentences apart.

use burn::module::Module;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor};
use burn::train::metric::ItemLazy;
use burn::train::{TrainOutput, TrainStep};

use crate::data::batcher::TokenBatch;
use crate::loss::infonce::info_nce;
use crate::model::encoder::SentenceEncoder;
use crate::model::pooling::Pooling;

/// The encoder with SimCSE's training pooler and temperature.
#[derive(Module, Debug)]
pub struct SimcseModel<B: Backend> {
    /// The encoder being trained.
    pub encoder: SentenceEncoder<B>,
    /// Pooling in training (SimCSE: `cls`, through the MLP).
    pub pooling: Pooling,
    /// InfoNCE temperature.
    pub temperature: f64,
}

/// What a training step reports.
pub struct StepOutput<B: Backend> {
    /// The loss, `[1]` (read back lazily).
    pub loss: Tensor<B, 1>,
}

impl<B: Backend> ItemLazy for StepOutput<B> {
    type ItemSync = f64;

    fn sync(self) -> f64 {
        self.loss.into_scalar().elem()
    }
}

impl<B: Backend> SimcseModel<B> {
    /// The loss of a two-view batch: rows `0..n` and `n..2n` of `batch` hold
    /// the same `n` sentences.
    pub fn loss(&self, batch: &TokenBatch<B>) -> Tensor<B, 1> {
        let z = self.encoder.forward(batch, self.pooling);
        let n = z.dims()[0] / 2;
        info_nce(
            z.clone().narrow(0, 0, n),
            z.narrow(0, n, n),
            self.temperature,
        )
    }
}

impl<B: AutodiffBackend> TrainStep for SimcseModel<B> {
    type Input = TokenBatch<B>;
    type Output = StepOutput<B>;

    fn step(&self, batch: TokenBatch<B>) -> TrainOutput<StepOutput<B>> {
        let loss = self.loss(&batch);
        TrainOutput::new(self, loss.backward(), StepOutput { loss })
    }
}
