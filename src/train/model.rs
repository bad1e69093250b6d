//! The training step as a Burn [`TrainStep`], for both stages.
//! - Stage 1, unsupervised SimCSE: each sentence is encoded twice in one
//!   forward pass; the two dropout masks make the two views; InfoNCE pulls
//!   the views together and pushes other sentences apart.
//! - Stage 2, GCSE: anchors, positives and hard negatives in one forward
//!   pass; the loss of [`gcse_loss`] with the frozen model's scores of each
//!   anchor and its own hard negative, computed outside the graph.
//!
//! With GradCache (Gao et al. 2021) the batch is encoded in chunks without a
//! graph, the loss and its gradient with respect to every embedding are
//! computed on the whole batch, and each chunk is then encoded again with a
//! graph and back-propagated from its embeddings' gradient. Activations are
//! held for one chunk at a time. Each chunk's dropout is seeded the same in
//! both passes, so the loss and gradients are those of one graph over the
//! same chunks (with dropout off, those of the plain step).

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor};
use burn::train::metric::ItemLazy;
use burn::train::{TrainOutput, TrainStep};

use crate::config::TrainConfig;
use crate::data::batcher::TokenBatch;
use crate::loss::gaussian_decay::{gcse_loss, Decay};
use crate::loss::infonce::info_nce;
use crate::model::encoder::SentenceEncoder;
use crate::model::lazy::materialise;
use crate::model::pooling::Pooling;
use crate::rng::SplitMix64;

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
    /// GradCache: rows encoded per chunk; `None` encodes the batch in one
    /// pass with its graph.
    pub grad_cache: Option<usize>,
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
    /// Seed of this batch's dropout masks.
    pub dropout_seed: u64,
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
            grad_cache: config.train.grad_cache_chunk,
        }
    }

    /// The loss of a batch laid out as [`TrainBatch`] says, encoded in one
    /// pass (whatever `grad_cache` says).
    pub fn loss(&self, batch: &TrainBatch<B>) -> BatchLoss<B> {
        let rows = batch.tokens.rows();
        let z = self.embed(&batch.tokens, batch.dropout_seed, rows);
        self.loss_of(z, batch.frozen.clone())
    }

    /// `[rows, d]`: the training embeddings of `tokens`, encoded `chunk`
    /// rows at a time, chunk `i`'s dropout seeded by [`chunk_seed`].
    pub fn embed(&self, tokens: &TokenBatch<B>, dropout_seed: u64, chunk: usize) -> Tensor<B, 2> {
        let device = tokens.input_ids.device();
        let parts: Vec<Tensor<B, 2>> = chunks(tokens.rows(), chunk)
            .map(|(i, start, len)| {
                B::seed(&device, chunk_seed(dropout_seed, i));
                self.encoder
                    .forward(&tokens.rows_range(start, len), self.pooling)
            })
            .collect();
        Tensor::cat(parts, 0)
    }

    /// The loss of a batch's embeddings `z` (`[rows, d]`, laid out as
    /// [`TrainBatch`] says); `frozen` as there.
    pub fn loss_of(&self, z: Tensor<B, 2>, frozen: Option<Tensor<B, 1>>) -> BatchLoss<B> {
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
                let frozen = frozen.expect("a stage-2 batch carries the frozen model's scores");
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
        match self.grad_cache {
            Some(chunk) => self.grad_cache_step(&batch, chunk),
            None => {
                let out = self.loss(&batch);
                TrainOutput::new(self, out.loss.backward(), out)
            }
        }
    }
}

impl<B: AutodiffBackend> ContrastiveModel<B> {
    /// The step's loss and gradients with GradCache, `chunk` rows at a time:
    /// equal to those of the loss of [`ContrastiveModel::embed`] with the
    /// same `chunk`, with one chunk's activations in memory at a time.
    pub fn grad_cache_step(
        &self,
        batch: &TrainBatch<B>,
        chunk: usize,
    ) -> TrainOutput<BatchLoss<B>> {
        materialise(self);
        let cached = self
            .clone()
            .no_grad()
            .embed(&batch.tokens, batch.dropout_seed, chunk)
            .detach()
            .require_grad();
        let out = self.loss_of(cached.clone(), batch.frozen.clone());
        let upstream = cached
            .grad(&out.loss.backward())
            .expect("the loss depends on every embedding");
        let device = batch.tokens.input_ids.device();
        let mut accumulated = GradientsAccumulator::<Self>::new();
        for (i, start, len) in chunks(batch.tokens.rows(), chunk) {
            B::seed(&device, chunk_seed(batch.dropout_seed, i));
            let z = self
                .encoder
                .forward(&batch.tokens.rows_range(start, len), self.pooling);
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
