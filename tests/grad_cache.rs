//! GradCache (`train.grad_cache_chunk`) against the plain step on a tiny
//! random encoder: a padded batch split into uneven chunks gives the same
//! loss and the same gradient for every parameter, in stage 1 and stage 2,
//! and with dropout each chunk's masks are replayed exactly. In f64, so
//! that the two paths' different summation orders (one product of many
//! rows against several of few, which BLAS kernels round differently from
//! one CPU to another) stay far below the tolerance.

mod common;

use std::sync::Mutex;

use burn::backend::{Autodiff, NdArray};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use burn::train::TrainStep;
use common::{assert_gradients_close, padded_batch, tiny_config};
use gcse::data::batcher::TokenBatch;
use gcse::loss::gaussian_decay::{Decay, DecayMode};
use gcse::model::config::Architecture;
use gcse::model::encoder::SentenceEncoderConfig;
use gcse::model::lazy::materialise;
use gcse::model::pooling::Pooling;
use gcse::train::model::{ContrastiveModel, Objective, TrainBatch};

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

/// A tiny encoder with dropout `dropout`, trained with `objective` at
/// temperature 0.5 (cosine logits spread over [-2, 2]), its parameters
/// drawn now (not at the first forward pass, from a dropout seed).
fn model(dropout: f64, objective: Objective) -> ContrastiveModel<Train> {
    let device = Default::default();
    Train::seed(&device, 11);
    let mut config = tiny_config(Architecture::Bert);
    config.hidden_dropout_prob = dropout;
    config.attention_probs_dropout_prob = dropout;
    let model = ContrastiveModel {
        encoder: SentenceEncoderConfig::new(config).init(&device),
        pooling: Pooling::Cls,
        temperature: 0.5,
        objective,
        grad_cache: None,
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

/// The step's loss and every parameter's gradient.
fn run(model: &ContrastiveModel<Train>, batch: &TrainBatch<Train>) -> (f64, Vec<Vec<f64>>) {
    let output = model.step(batch.clone());
    let mut visitor = Collect {
        grads: &output.grads,
        out: Vec::new(),
    };
    model.visit(&mut visitor);
    (output.item.loss.into_scalar(), visitor.out)
}

/// The loss and gradients of `ContrastiveModel::embed` in chunks of `chunk`,
/// every chunk's graph held at once: what GradCache must reproduce.
fn chunked_with_graph(
    model: &ContrastiveModel<Train>,
    batch: &TrainBatch<Train>,
    chunk: usize,
) -> (f64, Vec<Vec<f64>>) {
    let z = model.embed(&batch.tokens, batch.dropout_seed, chunk);
    let loss = model.loss_of(z, batch.frozen.clone()).loss;
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

fn stage1_batch(n: usize, vocab: usize) -> TrainBatch<Train> {
    let once = padded_tokens(n, vocab, 0);
    let twice = |t: &Tensor<Train, 2, Int>| Tensor::cat(vec![t.clone(), t.clone()], 0);
    TrainBatch {
        tokens: TokenBatch {
            input_ids: twice(&once.input_ids),
            token_type_ids: twice(&once.token_type_ids),
            attention_mask: twice(&once.attention_mask),
        },
        frozen: None,
        dropout_seed: 7,
    }
}

fn stage2_batch(n: usize, vocab: usize) -> TrainBatch<Train> {
    let frozen: Vec<f64> = (0..n).map(|i| (i as f64 * 0.9) % 3.0 - 1.5).collect();
    TrainBatch {
        tokens: padded_tokens(3 * n, vocab, 0),
        frozen: Some(Tensor::from_data(
            TensorData::new(frozen, [n]),
            &Default::default(),
        )),
        dropout_seed: 9,
    }
}

#[test]
fn grad_cache_gives_the_plain_steps_loss_and_gradients_without_dropout() {
    let _stream = RANDOM_STREAM.lock().unwrap();
    let vocab = tiny_config(Architecture::Bert).vocab_size;
    let decay = Decay {
        mode: DecayMode::Paper,
        width: 1.0,
    };
    for (objective, batch) in [
        (Objective::Simcse, stage1_batch(5, vocab)),
        (Objective::Gcse(decay), stage2_batch(4, vocab)),
    ] {
        let mut model = model(0.0, objective);
        let plain = run(&model, &batch);
        for chunk in [1, 3, 4, batch.tokens.rows()] {
            model.grad_cache = Some(chunk);
            let cached = run(&model, &batch);
            assert_same(
                &format!("{objective:?}, chunks of {chunk}"),
                &plain,
                &cached,
                1e-8,
            );
        }
    }
}

#[test]
fn grad_cache_replays_each_chunks_dropout() {
    let _stream = RANDOM_STREAM.lock().unwrap();
    let vocab = tiny_config(Architecture::Bert).vocab_size;
    let batch = stage1_batch(6, vocab);
    let mut model = model(0.3, Objective::Simcse);
    let without_dropout = run(&self::model(0.0, Objective::Simcse), &batch).0;
    for chunk in [2, 5] {
        let reference = chunked_with_graph(&model, &batch, chunk);
        assert!(
            (reference.0 - without_dropout).abs() > 1e-3,
            "dropout changed nothing ({} vs {without_dropout})",
            reference.0
        );
        model.grad_cache = Some(chunk);
        let cached = run(&model, &batch);
        assert_same(&format!("chunks of {chunk}"), &reference, &cached, 1e-8);
    }
}
