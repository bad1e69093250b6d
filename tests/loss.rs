//! The contrastive losses against PyTorch (tests/fixtures/losses.json and
//! gcse_losses.json, made by scripts/reference_losses.py): InfoNCE and GCSE's
//! Gaussian-decayed loss in each decay mode, the loss and its gradients with
//! respect to every embedding, in float64 and float32.

mod common;

use burn::backend::{Autodiff, NdArray};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use gcse::loss::gaussian_decay::{gcse_loss, Decay, DecayMode};
use gcse::loss::infonce::info_nce;

fn matrix(v: &serde_json::Value) -> (Vec<f64>, [usize; 2]) {
    let rows = v.as_array().unwrap();
    let cols = rows[0].as_array().unwrap().len();
    let flat = rows
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()))
        .collect();
    (flat, [rows.len(), cols])
}

fn tensor<B: Backend>(v: &serde_json::Value, device: &B::Device) -> Tensor<B, 2> {
    let (flat, shape) = matrix(v);
    Tensor::from_data(TensorData::new(flat, shape), device)
}

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data().convert::<f64>().to_vec().unwrap()
}

/// Largest |a - b| / max(1, |b|).
fn max_error(ours: &[f64], reference: &[f64]) -> f64 {
    assert_eq!(ours.len(), reference.len());
    ours.iter()
        .zip(reference)
        .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
        .fold(0.0, f64::max)
}

fn check<B: AutodiffBackend>(tolerance: f64) {
    let device = B::Device::default();
    for case in common::fixture("losses.json")["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let z1 = tensor::<B>(&case["z1"], &device).require_grad();
        let z2 = tensor::<B>(&case["z2"], &device).require_grad();
        let loss = info_nce(
            z1.clone(),
            z2.clone(),
            case["temperature"].as_f64().unwrap(),
        );
        let grads = loss.backward();
        let loss = values(loss)[0];
        let expected = case["loss"].as_f64().unwrap();
        assert!(
            max_error(&[loss], &[expected]) < tolerance,
            "{name}: loss {loss} vs PyTorch {expected}"
        );
        for (z, key) in [(z1, "grad_z1"), (z2, "grad_z2")] {
            let ours = values(z.grad(&grads).expect("the view has a gradient"));
            let err = max_error(&ours, &matrix(&case[key]).0);
            assert!(
                err < tolerance,
                "{name}: {key} differs from PyTorch by {err:e}"
            );
        }
    }
}

/// Largest |a - b| over the largest |b|: error relative to the tensor's scale.
fn relative_error(ours: &[f64], reference: &[f64]) -> f64 {
    assert_eq!(ours.len(), reference.len());
    let scale = reference.iter().fold(0.0f64, |m, b| m.max(b.abs()));
    let diff = ours
        .iter()
        .zip(reference)
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    if scale == 0.0 {
        diff
    } else {
        diff / scale
    }
}

fn vector<B: Backend>(v: &serde_json::Value, device: &B::Device) -> Tensor<B, 1> {
    let flat: Vec<f64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let n = flat.len();
    Tensor::from_data(TensorData::new(flat, [n]), device)
}

/// Every GCSE case, every mode: the loss within `tolerance` relative, each
/// gradient within `tolerance` of its largest entry. Returns the largest error.
fn check_gcse<B: AutodiffBackend>(tolerance: f64) -> f64 {
    let device = B::Device::default();
    let mut worst = 0.0f64;
    let cases = common::fixture("gcse_losses.json");
    let cases = cases["cases"].as_array().unwrap();
    for mode in ["official", "paper", "none"] {
        assert!(
            cases.iter().any(|c| c["mode"] == mode),
            "the fixture covers {mode}"
        );
    }
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let mode = serde_json::from_value::<DecayMode>(case["mode"].clone()).unwrap();
        let [z1, z2, z3] =
            ["z1", "z2", "z3"].map(|k| tensor::<B>(&case[k], &device).require_grad());
        let out = gcse_loss(
            z1.clone(),
            z2.clone(),
            z3.clone(),
            vector::<B>(&case["frozen"], &device),
            case["temperature"].as_f64().unwrap(),
            Decay {
                mode,
                width: case["width"].as_f64().unwrap(),
            },
        );
        let grads = out.loss.backward();
        let loss = values(out.loss)[0];
        let err = relative_error(&[loss], &[case["loss"].as_f64().unwrap()]);
        assert!(
            err < tolerance,
            "{name}: loss {loss} vs PyTorch {}",
            case["loss"]
        );
        worst = worst.max(err);
        let expected_gap: Vec<f64> = case["student"]
            .as_array()
            .unwrap()
            .iter()
            .zip(case["frozen"].as_array().unwrap())
            .map(|(s, f)| s.as_f64().unwrap() - f.as_f64().unwrap())
            .collect();
        let gap = values(out.gap);
        assert!(
            gap.iter()
                .zip(&expected_gap)
                .all(|(a, b)| (a - b).abs() < 1e-4),
            "{name}: s - s' {gap:?} vs {expected_gap:?}"
        );
        for (z, key) in [(z1, "grad_z1"), (z2, "grad_z2"), (z3, "grad_z3")] {
            let ours = values(z.grad(&grads).expect("the embedding has a gradient"));
            let err = relative_error(&ours, &matrix(&case[key]).0);
            assert!(
                err < tolerance,
                "{name}: {key} differs from PyTorch by {err:e} of its largest entry"
            );
            worst = worst.max(err);
        }
    }
    worst
}

#[test]
fn gcse_loss_and_gradients_match_pytorch_in_f64_for_every_decay_mode() {
    let worst = check_gcse::<Autodiff<NdArray<f64>>>(1e-6);
    eprintln!("largest relative error in f64: {worst:e}");
}

#[test]
fn gcse_loss_and_gradients_match_pytorch_in_f32_for_every_decay_mode() {
    let worst = check_gcse::<Autodiff<NdArray<f32>>>(1e-4);
    eprintln!("largest relative error in f32: {worst:e}");
}

#[test]
fn the_decay_weight_is_one_without_decay_and_below_one_where_decayed() {
    type B = NdArray<f64>;
    let device = Default::default();
    let z = |rows: [[f64; 2]; 2]| Tensor::<B, 2>::from_data(TensorData::from(rows), &device);
    let (z1, z2, z3) = (
        z([[1.0, 0.0], [0.0, 1.0]]),
        z([[1.0, 0.1], [0.1, 1.0]]),
        z([[1.0, 1.0], [1.0, -1.0]]),
    );
    let s = std::f64::consts::FRAC_1_SQRT_2 / 0.05;
    // Row 0: the frozen model scores the pair higher (s < s'); row 1 lower.
    let frozen = Tensor::<B, 1>::from_data(TensorData::from([s + 0.1, -s - 0.1]), &device);
    let weight = |mode| {
        let out = gcse_loss(
            z1.clone(),
            z2.clone(),
            z3.clone(),
            frozen.clone(),
            0.05,
            Decay { mode, width: 0.17 },
        );
        values(out.weight)
    };
    let decayed = 1.0 - (-0.01f64 / (2.0 * 0.17 * 0.17)).exp();
    let official = weight(DecayMode::Official);
    assert!(
        (official[0] - decayed).abs() < 1e-12 && official[1] == 1.0,
        "{official:?} {}",
        official[0] - decayed
    );
    let paper = weight(DecayMode::Paper);
    assert!(
        (paper[0] - decayed).abs() < 1e-12 && (paper[1] - decayed).abs() < 1e-12,
        "{paper:?}"
    );
    assert_eq!(weight(DecayMode::None), vec![1.0, 1.0]);
}

#[test]
fn info_nce_and_its_gradients_match_pytorch_in_f64() {
    check::<Autodiff<NdArray<f64>>>(1e-6);
}

#[test]
fn info_nce_and_its_gradients_match_pytorch_in_f32() {
    check::<Autodiff<NdArray<f32>>>(1e-5);
}
