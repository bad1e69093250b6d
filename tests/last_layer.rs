//! The encoder's layers in training, in f64 on the autodiff CPU backend
//! (in a process of their own: f64 tensors beside another test's f32 ones
//! would share the device's settings):
//! - the fused training layers (src/model/cpu_train.rs) against the generic
//!   path: every state and every parameter's gradient within 1e-9 relative,
//!   every activation, both architectures, the whole last layer and
//!   position 0 only;
//! - `LastLayer::FirstToken` (the last layer computed at position 0 only, as
//!   `cls` pooling needs) against the whole last layer, on both paths: the
//!   same loss on the first position's state and the same gradient for
//!   every parameter.

mod common;

use burn::backend::{Autodiff, NdArray};
use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use common::{assert_gradients_close, padded_batch, param_grads, tiny_config, Jitter};
use gcse::data::batcher::TokenBatch;
use gcse::model::bert::{with_generic_layers, LastLayer};
use gcse::model::config::{Architecture, HiddenAct};
use gcse::model::cpu_train::CpuTrainPass;
use gcse::model::encoder::SentenceEncoderConfig;

type Train = Autodiff<NdArray<f64>>;

/// Four sentences of 9, 5, 1 and 7 tokens, right-padded to 9.
fn padded(vocab: usize, pad: i64, segments: usize) -> TokenBatch<Train> {
    padded_batch(&[9, 5, 1, 7], vocab, pad, segments, &Default::default())
}

/// The fused training layers against the generic path in f64: the states
/// and the gradient of every parameter of `Σ c ⊙ last state + Σ last²`.
fn check_training(architecture: Architecture, activation: HiddenAct) {
    let device = Default::default();
    let mut config = tiny_config(architecture);
    config.hidden_act = activation;
    config.hidden_dropout_prob = 0.0;
    config.attention_probs_dropout_prob = 0.0;
    let encoder = SentenceEncoderConfig::new(config.clone())
        .init::<Train>(&device)
        .map(&mut Jitter);
    let pad = config.pad_token_id as i64;
    let batch = padded(config.vocab_size, pad, config.type_vocab_size);
    for last in [LastLayer::AllTokens, LastLayer::FirstToken] {
        let run = || {
            let states = encoder.backbone.forward(&batch, last);
            let out = states[states.len() - 1].clone();
            let dims = out.dims();
            let c: Vec<f64> = (0..dims.iter().product::<usize>())
                .map(|i| (i as f64 * 0.37).sin())
                .collect();
            let c = Tensor::<Train, 3>::from_data(TensorData::new(c, dims), &device);
            let loss = (out.clone() * c).sum() + (out.clone() * out).sum();
            let grads = loss.backward();
            let states: Vec<Vec<f64>> = states
                .iter()
                .map(|s| s.to_data().to_vec::<f64>().unwrap())
                .collect();
            (states, param_grads(&encoder, &grads))
        };
        let x = encoder.backbone.forward(&batch, last)[0].clone();
        assert!(
            CpuTrainPass::new(&x, &batch.padding_mask()).is_some(),
            "the autodiff CPU backend takes the fused training path"
        );
        let (fused_states, fused) = run();
        let (generic_states, generic) = with_generic_layers(run);
        for (l, (ours, theirs)) in fused_states.iter().zip(&generic_states).enumerate() {
            let scale = theirs.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            let worst = ours
                .iter()
                .zip(theirs)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f64, f64::max);
            assert!(
                worst <= 1e-9 * scale,
                "{architecture:?} {activation:?} {last:?}: state {l} differs by {worst}"
            );
        }
        let with_grad = generic
            .iter()
            .filter(|g| g.iter().any(|v| *v != 0.0))
            .count();
        assert!(
            with_grad > 10,
            "only {with_grad} parameters have a gradient"
        );
        let what = format!("{architecture:?} {activation:?} {last:?}");
        assert_gradients_close(&what, &generic, &fused, 1e-3, 1e-9);
    }
}

#[test]
fn fused_training_layers_equal_the_generic_path() {
    check_training(Architecture::Bert, HiddenAct::Gelu);
    check_training(Architecture::Bert, HiddenAct::GeluTanh);
    check_training(Architecture::Bert, HiddenAct::Relu);
    check_training(Architecture::Roberta, HiddenAct::Gelu);
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
    let batch = padded(config.vocab_size, config.pad_token_id as i64, 1);
    let run = |last: LastLayer| {
        let states = encoder.backbone.forward(&batch, last);
        let cls = states[states.len() - 1].clone().narrow(1, 0, 1);
        let loss = (cls.clone() * cls).sum();
        let value = loss.clone().into_scalar();
        let grads = loss.backward();
        (value, param_grads(&encoder, &grads))
    };
    for generic in [false, true] {
        let both = || (run(LastLayer::AllTokens), run(LastLayer::FirstToken));
        let ((full_loss, full), (first_loss, first)) = if generic {
            with_generic_layers(both)
        } else {
            both()
        };
        assert!(
            (full_loss - first_loss).abs() <= 1e-10 * full_loss.abs(),
            "generic {generic}: {full_loss} vs {first_loss}"
        );
        let with_grad = full.iter().filter(|g| g.iter().any(|v| *v != 0.0)).count();
        assert!(
            with_grad > 10,
            "generic {generic}: only {with_grad} parameters have a gradient"
        );
        assert_gradients_close("first token", &full, &first, 1e-3, 1e-9);
    }
}
