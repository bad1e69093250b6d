//! The timed workloads. Inputs are made once and reused, as the PyTorch
//! reference does; each step ends by reading its result back to the host
//! (the loss, or the embeddings), so a step's time is the device's too.

use std::time::Instant;

use burn::optim::{AdamWConfig, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};

use crate::backend::Precision;
use crate::data::batcher::TokenBatch;
use crate::loss::infonce::TwoViewInfoNce;
use crate::model::autocast::with_products_in;
use crate::model::encoder::SentenceEncoder;
use crate::model::pooling::Pooling;
use crate::rng::SplitMix64;
use crate::train::clip::{global_norm, scale_grads};
use crate::train::loss_scale::{LossScale, Verdict};
use crate::train::step::{ContrastiveModel, TrainBatch};

/// The shape of a benchmark run.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Sentences per step.
    pub batch: usize,
    /// Tokens per sentence (no padding).
    pub seq_len: usize,
    /// Untimed steps first (kernel compilation, autotuning, allocator warm-up).
    pub warmup: usize,
    /// Timed steps.
    pub steps: usize,
    /// Seed of the token ids and of dropout.
    pub seed: u64,
    /// Training with GradCache: sequences per chunk.
    pub grad_cache: Option<usize>,
    /// With a mixed precision, the products' type (and for `f16-mixed` the
    /// trainer's dynamic loss scale: the gradients divided back, their norm
    /// read to tell an overflow, which skips the update).
    pub precision: Precision,
}

/// What [`train`] measured.
#[derive(Debug, Clone)]
pub struct TrainTimes {
    /// Seconds of each step, warm-up first, until its loss was on the host.
    pub steps: Vec<f64>,
    /// Seconds of each step until the optimizer's update returned, before
    /// the loss is read back: the host's time to enqueue the step (near the
    /// step's own time, the step is bound by the host, not the device).
    pub enqueued: Vec<f64>,
    /// The last step's loss.
    pub loss: f64,
}

/// Temperature of the benchmarked InfoNCE loss (SimCSE's).
pub const TEMPERATURE: f64 = 0.05;
/// Learning rate of the benchmarked AdamW (SimCSE's for BERT-base).
pub const LEARNING_RATE: f64 = 3e-5;

/// `[rows, seq]` random token ids in `[1000, vocab)` (clear of BERT's
/// special and unused ids), no padding (mask all 1), segment 0; with
/// `repeat = 2` rows `n..2n` repeat rows `0..n`, SimCSE's two views.
pub fn random_tokens<B: Backend>(
    vocab: usize,
    rows: usize,
    seq: usize,
    repeat: usize,
    seed: u64,
    device: &B::Device,
) -> TokenBatch<B> {
    let mut rng = SplitMix64::new(seed);
    let low = if vocab > 2000 { 1000 } else { 0 };
    let once: Vec<i64> = (0..rows * seq)
        .map(|_| (low + rng.below((vocab - low) as u64) as usize) as i64)
        .collect();
    let ids: Vec<i64> = (0..repeat).flat_map(|_| once.iter().copied()).collect();
    let shape = [rows * repeat, seq];
    let int =
        |values: Vec<i64>| Tensor::<B, 2, Int>::from_data(TensorData::new(values, shape), device);
    TokenBatch {
        input_ids: int(ids),
        token_type_ids: int(vec![0; rows * repeat * seq]),
        attention_mask: int(vec![1; rows * repeat * seq]),
    }
}

/// Seconds of each step (warm-up first) of unsupervised SimCSE training:
/// `batch` sentences encoded twice with dropout, `cls` pooling through the
/// MLP, InfoNCE at [`TEMPERATURE`], backward, AdamW (weight decay 0,
/// epsilon 1e-8) at [`LEARNING_RATE`]; with GradCache and a mixed precision
/// when the shape says.
pub fn train<B: AutodiffBackend>(
    encoder: SentenceEncoder<B>,
    vocab: usize,
    shape: Shape,
    device: &B::Device,
) -> TrainTimes {
    let mut model = ContrastiveModel {
        classifier: None,
        encoder,
        pooling: Pooling::Cls,
    };
    let loss_fn = TwoViewInfoNce {
        temperature: TEMPERATURE,
    };
    let mut optim = AdamWConfig::new()
        .with_epsilon(1e-8)
        .with_weight_decay(0.0)
        .init();
    let tokens = random_tokens(vocab, shape.batch, shape.seq_len, 2, shape.seed, device);
    let mut loss_scale = shape.precision.scales_loss().then(LossScale::default);
    let mut times = TrainTimes {
        steps: Vec::with_capacity(shape.warmup + shape.steps),
        enqueued: Vec::with_capacity(shape.warmup + shape.steps),
        loss: f64::NAN,
    };
    for step in 0..shape.warmup + shape.steps {
        let batch = TrainBatch {
            tokens: tokens.clone(),
            constants: (),
            dropout_seed: SplitMix64::derived(shape.seed, &[step as u64]).next_u64(),
        };
        let start = Instant::now();
        let scale = loss_scale.map_or(1.0, |s| s.scale);
        let output = with_products_in(shape.precision.products(), || {
            model.step(&loss_fn, &batch, shape.grad_cache, scale)
        });
        let mut grads = output.grads;
        let verdict = match loss_scale.as_mut() {
            Some(s) => {
                scale_grads::<B, _>(&model, &mut grads, scale.recip());
                s.observe(global_norm::<B, _>(&model, &grads).is_finite())
            }
            None => Verdict::Apply,
        };
        if verdict == Verdict::Apply {
            model = optim.step(LEARNING_RATE, model, grads);
        }
        times.enqueued.push(start.elapsed().as_secs_f64());
        times.loss = output.item.read().0;
        times.steps.push(start.elapsed().as_secs_f64());
    }
    times
}

/// Seconds of each step (warm-up first) of embedding `batch` sentences
/// without autodiff or dropout (`cls_before_pooler` pooling), the vectors
/// read back to the host.
pub fn embed<B: Backend>(
    encoder: SentenceEncoder<B>,
    vocab: usize,
    shape: Shape,
    device: &B::Device,
) -> Vec<f64> {
    let tokens = random_tokens(vocab, shape.batch, shape.seq_len, 1, shape.seed, device);
    (0..shape.warmup + shape.steps)
        .map(|_| {
            let start = Instant::now();
            let vectors = with_products_in(shape.precision.products(), || {
                encoder.forward(&tokens, Pooling::ClsBeforePooler)
            });
            vectors.into_data();
            start.elapsed().as_secs_f64()
        })
        .collect()
}
