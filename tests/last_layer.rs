//! `LastLayer::FirstToken` (the last layer computed at position 0 only, as
//! `cls` pooling needs) against the whole last layer on the generic autodiff
//! path: the same loss on the first position's state and the same gradient
//! for every parameter. In f64, alone in its process, so that the seeded
//! random encoder is the same every run and the two passes' different
//! summation orders stay far below the tolerance.

mod common;

use burn::backend::{Autodiff, NdArray};
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use common::{assert_gradients_close, padded_batch, tiny_config, Jitter};
use gcse::model::bert::LastLayer;
use gcse::model::config::Architecture;
use gcse::model::encoder::SentenceEncoderConfig;

type Train = Autodiff<NdArray<f64>>;

/// Every parameter's gradient, in visiting order.
struct Grads<'a> {
    grads: &'a <Train as AutodiffBackend>::Gradients,
    out: Vec<Vec<f64>>,
}

impl ModuleVisitor<Train> for Grads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Train, D>>) {
        let grad = param
            .grad(self.grads)
            .map(|g| g.to_data().to_vec::<f64>().unwrap());
        self.out.push(grad.unwrap_or_default());
    }
}

#[test]
fn first_token_last_layer_gives_cls_pooling_the_same_loss_and_gradients() {
    let device = Default::default();
    Train::seed(&device, 5);
    let mut config = tiny_config(Architecture::Bert);
    config.hidden_dropout_prob = 0.0;
    config.attention_probs_dropout_prob = 0.0;
    let encoder = SentenceEncoderConfig::new(config.clone())
        .init::<Train>(&device)
        .map(&mut Jitter);
    // Four sentences of 9, 5, 1 and 7 tokens, right-padded to 9.
    let batch = padded_batch::<Train>(
        &[9, 5, 1, 7],
        config.vocab_size,
        config.pad_token_id as i64,
        1,
        &device,
    );
    let run = |last: LastLayer| {
        let states = encoder.backbone.forward(&batch, last);
        let cls = states[states.len() - 1].clone().narrow(1, 0, 1);
        let loss = (cls.clone() * cls).sum();
        let value = loss.clone().into_scalar();
        let grads = loss.backward();
        let mut visitor = Grads {
            grads: &grads,
            out: Vec::new(),
        };
        encoder.visit(&mut visitor);
        (value, visitor.out)
    };
    let (full_loss, full) = run(LastLayer::AllTokens);
    let (first_loss, first) = run(LastLayer::FirstToken);
    assert!(
        (full_loss - first_loss).abs() <= 1e-10 * full_loss.abs(),
        "{full_loss} vs {first_loss}"
    );
    let with_grad = full.iter().filter(|g| g.iter().any(|v| *v != 0.0)).count();
    assert!(
        with_grad > 10,
        "only {with_grad} parameters have a gradient"
    );
    assert_gradients_close("first token", &full, &first, 1e-3, 1e-9);
}
