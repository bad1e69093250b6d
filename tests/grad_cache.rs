//! GradCache (`train.grad_cache_chunk`) against the plain step on a tiny
//! random encoder: a padded batch split into uneven chunks gives the same
//! loss and the same gradient for every parameter, in stage 1 and stage 2,
//! and with dropout each chunk's masks are replayed exactly. In f64, so
//! that the two paths' different summation orders (one product of many
//! rows against several of few, which BLAS kernels round differently from
//! one CPU to another) stay far below the tolerance.

mod common;
mod toy;

use std::sync::Mutex;

use burn::backend::{Autodiff, NdArray};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use common::{assert_gradients_close, padded_batch, tiny_config};
use gcse::data::batcher::TokenBatch;
use gcse::loss::gaussian_decay::{Decay, DecayMode, GaussianDecayLoss};
use gcse::loss::infonce::TwoViewInfoNce;
use gcse::loss::BatchLoss;
use gcse::model::config::Architecture;
use gcse::model::encoder::SentenceEncoderConfig;
use gcse::model::lazy::materialise;
use gcse::model::pooling::Pooling;
use gcse::train::step::{ContrastiveModel, TrainBatch};

type Inner = NdArray<f64>;
type Train = Autodiff<Inner>;

/// The CPU backend's random stream is one per process: each test holds this
/// lock so that no other test draws from it between a seed and its use.
static RANDOM_STREAM: Mutex<()> = Mutex::new(());

/// `rows` sequences of 1 to 8 tokens, right-padded to 8 (lengths vary so
/// that some chunks carry padding and some do not).
fn padded_tokens(rows: usize, vocab: usize, pad: i64) -> TokenBatch<Train> {
    let lengths: Vec<usize> = (0..rows).map(|row| 1 + (row * 5) % 8).collect();
    padded_batch(&lengths, vocab, pad, 1, &Default::default())
}

/// Temperature of the losses: cosine logits spread over [-2, 2].
const TEMPERATURE: f64 = 0.5;

/// A tiny encoder with dropout `dropout`, its parameters drawn now (not at
/// the first forward pass, from a dropout seed).
fn model(dropout: f64) -> ContrastiveModel<Train> {
    let device = Default::default();
    Train::seed(&device, 11);
    let mut config = tiny_config(Architecture::Bert);
    config.hidden_dropout_prob = dropout;
    config.attention_probs_dropout_prob = dropout;
    let model = ContrastiveModel {
        classifier: None,
        encoder: SentenceEncoderConfig::new(config).init(&device),
        pooling: Pooling::Cls,
    };
    materialise(&model);
    model
}

/// Every float parameter's gradient in visiting order (empty where none).
struct Collect<'a> {
    grads: &'a GradientsParams,
    out: Vec<Vec<f64>>,
}

impl ModuleVisitor<Train> for Collect<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Train, D>>) {
        let grad = self.grads.get::<Inner, D>(param.id);
        self.out
            .push(grad.map_or_else(Vec::new, |g| g.to_data().to_vec::<f64>().unwrap()));
    }
}

/// The step's loss and every parameter's gradient, with GradCache in chunks
/// of `grad_cache` rows or without.
fn run<L: BatchLoss>(
    model: &ContrastiveModel<Train>,
    loss: &L,
    batch: &TrainBatch<Train, L::Constants<Train>>,
    grad_cache: Option<usize>,
) -> (f64, Vec<Vec<f64>>) {
    let output = model.step(loss, batch, grad_cache, 1.0);
    let mut visitor = Collect {
        grads: &output.grads,
        out: Vec::new(),
    };
    model.visit(&mut visitor);
    (output.item.read().0, visitor.out)
}

/// The loss and gradients of `ContrastiveModel::embed` in chunks of `chunk`,
/// every chunk's graph held at once: what GradCache must reproduce.
fn chunked_with_graph<L: BatchLoss>(
    model: &ContrastiveModel<Train>,
    loss: &L,
    batch: &TrainBatch<Train, L::Constants<Train>>,
    chunk: usize,
) -> (f64, Vec<Vec<f64>>) {
    let z = model.embed(&batch.tokens, batch.dropout_seed, chunk);
    let loss = loss.loss(z, &batch.constants).loss;
    let value = loss.clone().into_scalar();
    let grads = GradientsParams::from_grads(loss.backward(), model);
    let mut visitor = Collect {
        grads: &grads,
        out: Vec::new(),
    };
    model.visit(&mut visitor);
    (value, visitor.out)
}

/// Asserts equal losses and gradients (relative to each parameter's largest
/// gradient, or to a thousandth of the largest of all where that is
/// smaller), and that nearly every parameter has a gradient at all.
fn assert_same(
    what: &str,
    (loss_a, grads_a): &(f64, Vec<Vec<f64>>),
    (loss_b, grads_b): &(f64, Vec<Vec<f64>>),
    tolerance: f64,
) {
    assert!(
        (loss_a - loss_b).abs() <= tolerance * loss_a.abs(),
        "{what}: loss {loss_a} vs {loss_b}"
    );
    let with_grad = grads_a
        .iter()
        .filter(|g| g.iter().any(|v| *v != 0.0))
        .count();
    assert!(
        with_grad + 2 >= grads_a.len(),
        "{what}: only {with_grad} of {} parameters have a gradient",
        grads_a.len()
    );
    let largest = grads_a.iter().flatten().fold(0.0f64, |m, v| m.max(v.abs()));
    assert_gradients_close(what, grads_a, grads_b, 1e-3 * largest, tolerance);
}

fn stage1_batch(n: usize, vocab: usize) -> TrainBatch<Train, ()> {
    let once = padded_tokens(n, vocab, 0);
    let twice = |t: &Tensor<Train, 2, Int>| Tensor::cat(vec![t.clone(), t.clone()], 0);
    TrainBatch {
        tokens: TokenBatch {
            input_ids: twice(&once.input_ids),
            token_type_ids: twice(&once.token_type_ids),
            attention_mask: twice(&once.attention_mask),
        },
        constants: (),
        dropout_seed: 7,
    }
}

fn stage2_batch(n: usize, vocab: usize) -> TrainBatch<Train, Tensor<Train, 1>> {
    let frozen: Vec<f64> = (0..n).map(|i| (i as f64 * 0.9) % 3.0 - 1.5).collect();
    TrainBatch {
        tokens: padded_tokens(3 * n, vocab, 0),
        constants: Tensor::from_data(TensorData::new(frozen, [n]), &Default::default()),
        dropout_seed: 9,
    }
}

/// GradCache in chunks of 1, 3, 4 and the whole batch against the plain
/// step, dropout off.
fn check_without_dropout<L: BatchLoss>(
    what: &str,
    loss: &L,
    batch: &TrainBatch<Train, L::Constants<Train>>,
) {
    let model = model(0.0);
    let plain = run(&model, loss, batch, None);
    for chunk in [1, 3, 4, batch.tokens.rows()] {
        let cached = run(&model, loss, batch, Some(chunk));
        assert_same(&format!("{what}, chunks of {chunk}"), &plain, &cached, 1e-8);
    }
}

#[test]
fn grad_cache_gives_the_plain_steps_loss_and_gradients_without_dropout() {
    let _stream = RANDOM_STREAM.lock().unwrap();
    let vocab = tiny_config(Architecture::Bert).vocab_size;
    let simcse = TwoViewInfoNce {
        temperature: TEMPERATURE,
    };
    check_without_dropout("SimCSE", &simcse, &stage1_batch(5, vocab));
    let gcse = GaussianDecayLoss {
        temperature: TEMPERATURE,
        decay: Decay {
            mode: DecayMode::Paper,
            width: 1.0,
        },
    };
    check_without_dropout("GCSE", &gcse, &stage2_batch(4, vocab));
    // An objective gcse does not know (tests/toy) gets GradCache too.
    let symmetric = toy::SymmetricInfoNce {
        temperature: TEMPERATURE,
        backward_weight: 0.3,
    };
    check_without_dropout("toy symmetric InfoNCE", &symmetric, &stage1_batch(5, vocab));
}

#[test]
fn grad_cache_replays_each_chunks_dropout() {
    let _stream = RANDOM_STREAM.lock().unwrap();
    let vocab = tiny_config(Architecture::Bert).vocab_size;
    let batch = stage1_batch(6, vocab);
    let loss = TwoViewInfoNce {
        temperature: TEMPERATURE,
    };
    let model = model(0.3);
    let without_dropout = run(&self::model(0.0), &loss, &batch, None).0;
    for chunk in [2, 5] {
        let reference = chunked_with_graph(&model, &loss, &batch, chunk);
        assert!(
            (reference.0 - without_dropout).abs() > 1e-3,
            "dropout changed nothing ({} vs {without_dropout})",
            reference.0
        );
        let cached = run(&model, &loss, &batch, Some(chunk));
        assert_same(&format!("chunks of {chunk}"), &reference, &cached, 1e-8);
    }
}
