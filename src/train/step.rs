//! One training step for any [`BatchLoss`]: the student encodes the batch's
//! rows, the loss reads their embeddings and the batch's constants, and the
//! gradients come back. Plainly (one pass with its graph) or with GradCache
//! (Gao et al. 2021): a first pass without a graph, the loss and its
//! gradient with respect to every embedding on the whole batch, then each
//! chunk encoded again with its graph and back-propagated from those
//! gradients. Each chunk's dropout is seeded the same in both passes, so the
//! loss and gradients are those of one graph over the same chunks (with
//! dropout off, those of the plain step).

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use burn::train::TrainOutput;

use crate::data::batcher::TokenBatch;
use crate::loss::{BatchLoss, LossOutput};
use crate::model::cross_encoder::{Classifier, CrossEncoder};
use crate::model::encoder::SentenceEncoder;
use crate::model::lazy::materialise;
use crate::model::pooling::Pooling;
use crate::rng::SplitMix64;

/// The model being trained: the encoder and its training pooling, and for
/// a cross-encoder its head.
#[derive(Module, Debug)]
pub struct ContrastiveModel<B: Backend> {
    /// The encoder being trained.
    pub encoder: SentenceEncoder<B>,
    /// Pooling in training (`model.pooling`; `cls` for a cross-encoder).
    pub pooling: Pooling,
    /// A cross-encoder's one-logit head: each row's output is then its
    /// logit, `[rows, 1]`.
    pub classifier: Option<Classifier<B>>,
}

/// A trained model on the inference backend, as evaluated and exported.
pub enum Trained<B: Backend> {
    /// A sentence encoder.
    Bi(Box<SentenceEncoder<B>>),
    /// A cross-encoder.
    Cross(Box<CrossEncoder<B>>),
}

impl<B: Backend> From<ContrastiveModel<B>> for Trained<B> {
    fn from(model: ContrastiveModel<B>) -> Self {
        match model.classifier {
            Some(classifier) => Self::Cross(Box::new(CrossEncoder {
                encoder: model.encoder,
                classifier,
            })),
            None => Self::Bi(Box::new(model.encoder)),
        }
    }
}

/// One step's input.
#[derive(Debug, Clone)]
pub struct TrainBatch<B: Backend, C> {
    /// The rows the student encodes, in the layout the loss expects.
    pub tokens: TokenBatch<B>,
    /// What the loss reads besides the embeddings; no gradient.
    pub constants: C,
    /// Seed of this batch's dropout masks.
    pub dropout_seed: u64,
}

impl<B: Backend> ContrastiveModel<B> {
    /// `[rows, d]` outputs of `tokens` in one pass: pooled vectors, or a
    /// cross-encoder's logits (`d` = 1).
    pub fn forward(&self, tokens: &TokenBatch<B>) -> Tensor<B, 2> {
        let pooled = self.encoder.forward(tokens, self.pooling);
        match &self.classifier {
            Some(head) => head.forward(pooled),
            None => pooled,
        }
    }

    /// `[rows, d]`: the training embeddings of `tokens`, encoded `chunk`
    /// rows at a time, chunk `i`'s dropout seeded by [`chunk_seed`].
    pub fn embed(&self, tokens: &TokenBatch<B>, dropout_seed: u64, chunk: usize) -> Tensor<B, 2> {
        let device = tokens.input_ids.device();
        let parts: Vec<Tensor<B, 2>> = chunks(tokens.rows(), chunk)
            .map(|(i, start, len)| {
                B::seed(&device, chunk_seed(dropout_seed, i));
                self.forward(&tokens.rows_range(start, len))
            })
            .collect();
        Tensor::cat(parts, 0)
    }

    /// The loss of `batch` encoded in one pass.
    pub fn loss<L: BatchLoss>(
        &self,
        loss: &L,
        batch: &TrainBatch<B, L::Constants<B>>,
    ) -> LossOutput<B> {
        let rows = batch.tokens.rows();
        loss.loss(
            self.embed(&batch.tokens, batch.dropout_seed, rows),
            &batch.constants,
        )
    }
}

impl<B: AutodiffBackend> ContrastiveModel<B> {
    /// The loss of `batch` and the gradients of every parameter: in one
    /// pass, or with GradCache `grad_cache` rows at a time. The gradients are
    /// those of `scale` times the loss (loss scaling; 1 for the plain ones).
    pub fn step<L: BatchLoss>(
        &self,
        loss: &L,
        batch: &TrainBatch<B, L::Constants<B>>,
        grad_cache: Option<usize>,
        scale: f64,
    ) -> TrainOutput<LossOutput<B>> {
        match grad_cache {
            Some(chunk) => self.grad_cache_step(loss, batch, chunk, scale),
            None => {
                let out = self.loss(loss, batch);
                let scaled = if scale == 1.0 {
                    out.loss.clone()
                } else {
                    out.loss.clone().mul_scalar(scale)
                };
                TrainOutput::new(self, scaled.backward(), out)
            }
        }
    }

    /// The step's loss and gradients with GradCache, `chunk` rows at a time:
    /// equal to those of the loss of [`ContrastiveModel::embed`] with the
    /// same `chunk`, with one chunk's activations in memory at a time (the
    /// gradients times `scale`, as in [`ContrastiveModel::step`]).
    pub fn grad_cache_step<L: BatchLoss>(
        &self,
        loss: &L,
        batch: &TrainBatch<B, L::Constants<B>>,
        chunk: usize,
        scale: f64,
    ) -> TrainOutput<LossOutput<B>> {
        materialise(self);
        let cached = self
            .clone()
            .no_grad()
            .embed(&batch.tokens, batch.dropout_seed, chunk)
            .detach()
            .require_grad();
        let out = loss.loss(cached.clone(), &batch.constants);
        let upstream = cached
            .grad(&out.loss.backward())
            .expect("the loss depends on every embedding");
        let upstream = if scale == 1.0 {
            upstream
        } else {
            upstream.mul_scalar(scale)
        };
        let device = batch.tokens.input_ids.device();
        let mut accumulated = GradientsAccumulator::<Self>::new();
        for (i, start, len) in chunks(batch.tokens.rows(), chunk) {
            B::seed(&device, chunk_seed(batch.dropout_seed, i));
            let z = self.forward(&batch.tokens.rows_range(start, len));
            let upstream = Tensor::from_inner(upstream.clone().narrow(0, start, len));
            let grads = (z * upstream).sum().backward();
            accumulated.accumulate(self, GradientsParams::from_grads(grads, self));
        }
        TrainOutput {
            grads: accumulated.grads(),
            item: out,
        }
    }
}

/// `(index, first row, rows)` of each chunk of at most `chunk` of `rows` rows.
fn chunks(rows: usize, chunk: usize) -> impl Iterator<Item = (usize, usize, usize)> {
    let chunk = chunk.max(1);
    (0..rows.div_ceil(chunk)).map(move |i| (i, i * chunk, chunk.min(rows - i * chunk)))
}

/// The dropout seed of chunk `index` of a batch whose seed is
/// `dropout_seed`: the batch's own for the first chunk (so one pass over the
/// whole batch draws what it always did), one derived from it for the others.
pub fn chunk_seed(dropout_seed: u64, index: usize) -> u64 {
    match index {
        0 => dropout_seed,
        i => SplitMix64::derived(dropout_seed, &[i as u64]).next_u64(),
    }
}
