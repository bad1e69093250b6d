//! Every SimCSE pooler on a tiny random-initialised model: what each one
//! computes, and that padding never changes a sentence's vector.

mod common;

use burn::tensor::activation::tanh;
use burn::tensor::Tensor;
use common::{tiny_encoder, Cpu};
use gcse::data::batcher::TokenBatch;
use gcse::data::tokenizer::Encoded;
use gcse::model::bert::LastLayer;
use gcse::model::config::Architecture;
use gcse::model::pooling::Pooling;

fn sentence(ids: &[u32]) -> Encoded {
    Encoded {
        ids: ids.to_vec(),
        type_ids: vec![0; ids.len()],
        truncated: false,
    }
}

fn values<const D: usize>(t: Tensor<Cpu, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

fn assert_close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() < 1e-5, "{what}[{i}]: {x} vs {y}");
    }
}

#[test]
fn each_pooler_computes_what_simcse_means_by_its_name() {
    for arch in [Architecture::Bert, Architecture::Roberta] {
        let encoder = tiny_encoder(arch, 11);
        let pad = if arch == Architecture::Bert { 0 } else { 1 };
        let short = sentence(&[2, 5, 6, 3]);
        let long = sentence(&[2, 7, 8, 9, 10, 11, 3]);
        let batch = TokenBatch::<Cpu>::new(&[&short, &long], pad, &Default::default());
        let states = encoder.backbone.forward(&batch, LastLayer::AllTokens);
        assert_eq!(states.len(), 3, "embedding output + 2 layers");
        let state = |layer: usize, row: usize, pos: usize| {
            values(
                states[layer]
                    .clone()
                    .narrow(0, row, 1)
                    .narrow(1, pos, 1)
                    .reshape([16]),
            )
        };
        let mean = |rows: &[Vec<f32>]| -> Vec<f32> {
            (0..16)
                .map(|k| rows.iter().map(|r| r[k]).sum::<f32>() / rows.len() as f32)
                .collect()
        };
        let avg_of = |layers: &[usize], row: usize, len: usize| {
            let per_pos: Vec<Vec<f32>> = (0..len)
                .map(|p| mean(&layers.iter().map(|&l| state(l, row, p)).collect::<Vec<_>>()))
                .collect();
            mean(&per_pos)
        };
        for (row, len) in [(0usize, 4usize), (1, 7)] {
            let pooled =
                |p: Pooling| values(encoder.forward(&batch, p).narrow(0, row, 1).reshape([16]));
            let cls = state(2, row, 0);
            assert_close(&pooled(Pooling::ClsBeforePooler), &cls, "cls_before_pooler");
            let mlp = values(tanh(encoder.pooler.forward(
                Tensor::<Cpu, 1>::from_floats(cls.as_slice(), &Default::default()).reshape([1, 16]),
            )));
            assert_close(&pooled(Pooling::Cls), &mlp, "cls");
            assert_close(&pooled(Pooling::Avg), &avg_of(&[2], row, len), "avg");
            assert_close(
                &pooled(Pooling::AvgFirstLast),
                &avg_of(&[0, 2], row, len),
                "avg_first_last",
            );
            assert_close(
                &pooled(Pooling::AvgTop2),
                &avg_of(&[1, 2], row, len),
                "avg_top2",
            );
        }
    }
}

#[test]
fn padding_never_changes_a_sentence_vector() {
    let encoder = tiny_encoder(Architecture::Bert, 12);
    let short = sentence(&[2, 5, 6, 3]);
    let long = sentence(&[2, 7, 8, 9, 10, 11, 12, 13, 14, 3]);
    let device = Default::default();
    for pooling in Pooling::ALL {
        let alone = values(encoder.forward(&TokenBatch::new(&[&short], 0, &device), pooling));
        let padded =
            values(encoder.forward(&TokenBatch::new(&[&long, &short], 0, &device), pooling));
        assert_close(&alone, &padded[16..], pooling.name());
    }
}

#[test]
fn pooler_names_round_trip_and_unknown_names_list_the_choices() {
    for p in Pooling::ALL {
        assert_eq!(p.name().parse::<Pooling>().unwrap(), p);
    }
    let err = "mean".parse::<Pooling>().unwrap_err();
    assert!(
        err.contains("cls_before_pooler") && err.contains("avg_top2"),
        "{err}"
    );
}
