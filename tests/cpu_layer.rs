//! The fused CPU inference layer (src/model/cpu_layer.rs) against the
//! generic layer: the same random encoder (every weight, bias and norm
//! parameter jittered so none is 0 or 1) run on the plain CPU backend, which
//! takes the fused path, and on the autodiff CPU backend with the fused
//! layers off (dropout 0, so both are the deterministic pass); a padded
//! batch, every activation, both architectures. The training layer's checks
//! are in f64, in tests/last_layer.rs.

mod common;

use burn::backend::Autodiff;
use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use common::{padded_batch, tiny_config, Cpu, Jitter};
use gcse::data::batcher::TokenBatch;
use gcse::model::bert::{with_generic_layers, LastLayer};
use gcse::model::config::{Architecture, HiddenAct};
use gcse::model::cpu_layer::CpuPass;
use gcse::model::encoder::SentenceEncoderConfig;

type Train = Autodiff<Cpu>;

/// Four sentences of 9, 5, 1 and 7 tokens, right-padded to 9.
fn padded<B: Backend>(
    vocab: usize,
    pad: i64,
    segments: usize,
    device: &B::Device,
) -> TokenBatch<B> {
    padded_batch(&[9, 5, 1, 7], vocab, pad, segments, device)
}

/// The largest `|a[i] - b[i]|`.
fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}

fn check(architecture: Architecture, activation: HiddenAct) {
    let device = Default::default();
    Train::seed(&device, 11);
    let mut config = tiny_config(architecture);
    config.hidden_act = activation;
    config.hidden_dropout_prob = 0.0;
    config.attention_probs_dropout_prob = 0.0;
    let generic = SentenceEncoderConfig::new(config.clone())
        .init::<Train>(&device)
        .map(&mut Jitter);
    let fused = generic.valid();
    let pad = config.pad_token_id as i64;
    let segments = config.type_vocab_size;
    let train_batch = padded::<Train>(config.vocab_size, pad, segments, &device);
    let batch = padded::<Cpu>(config.vocab_size, pad, segments, &device);

    let expected =
        with_generic_layers(|| generic.backbone.forward(&train_batch, LastLayer::AllTokens));
    let states = fused.backbone.forward(&batch, LastLayer::AllTokens);
    assert!(
        CpuPass::new(&states[0], &batch.padding_mask()).is_some(),
        "the plain CPU backend takes the fused path"
    );
    assert!(
        CpuPass::new(&expected[0], &train_batch.padding_mask()).is_none(),
        "the autodiff backend takes the generic path"
    );
    assert_eq!(states.len(), config.num_hidden_layers + 1);
    for (l, (ours, theirs)) in states.iter().zip(&expected).enumerate() {
        let ours = ours.to_data().to_vec::<f32>().unwrap();
        let theirs = theirs.to_data().to_vec::<f32>().unwrap();
        assert_eq!(ours.len(), theirs.len());
        let worst = max_abs_diff(&ours, &theirs);
        assert!(
            worst < 2e-5,
            "{architecture:?} {activation:?}: state {l} differs by up to {worst}"
        );
        if l > 0 {
            assert!(
                ours.iter().any(|v| v.abs() > 0.5),
                "state {l} is not trivially small"
            );
        }
    }

    let first = |state: Tensor<Cpu, 3>| state.narrow(1, 0, 1).to_data().to_vec::<f32>().unwrap();
    let full_last = first(states[states.len() - 1].clone());
    let fused_first = fused.backbone.forward(&batch, LastLayer::FirstToken);
    let generic_first = with_generic_layers(|| {
        generic
            .backbone
            .forward(&train_batch, LastLayer::FirstToken)
    });
    for (path, last) in [
        ("fused", fused_first[fused_first.len() - 1].clone()),
        (
            "generic",
            generic_first[generic_first.len() - 1].clone().inner(),
        ),
    ] {
        assert_eq!(last.dims()[1], 1, "{path}: the last state has one position");
        let last = last.to_data().to_vec::<f32>().unwrap();
        let worst = max_abs_diff(&last, &full_last);
        assert!(
            worst < 2e-5,
            "{architecture:?} {activation:?} {path}: position 0 differs by {worst}"
        );
    }
}

#[test]
fn fused_layer_equals_generic_layer_with_gelu() {
    check(Architecture::Bert, HiddenAct::Gelu);
}

#[test]
fn fused_layer_equals_generic_layer_with_gelu_tanh_and_relu() {
    check(Architecture::Bert, HiddenAct::GeluTanh);
    check(Architecture::Bert, HiddenAct::Relu);
}

#[test]
fn fused_layer_equals_generic_layer_for_roberta() {
    check(Architecture::Roberta, HiddenAct::Gelu);
}
