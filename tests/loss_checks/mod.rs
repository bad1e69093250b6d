//! Checks of gcse's losses against the PyTorch fixtures, for `loss.rs`
//! (float64) and `loss_f32.rs` (float32). They are two test binaries because
//! Burn fixes a device's float type once per process, for every backend: an
//! f32 test would make a later f64 test in the same process run in f32.

#![allow(dead_code)]

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use gcse::loss::gaussian_decay::{gcse_loss, Decay, DecayMode};
use gcse::loss::infonce::info_nce;

use crate::common;

pub fn matrix(v: &serde_json::Value) -> (Vec<f64>, [usize; 2]) {
    let rows = v.as_array().unwrap();
    let cols = rows[0].as_array().unwrap().len();
    let flat = rows
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()))
        .collect();
    (flat, [rows.len(), cols])
}

pub fn tensor<B: Backend>(v: &serde_json::Value, device: &B::Device) -> Tensor<B, 2> {
    let (flat, shape) = matrix(v);
    // In the backend's float type: f64 data would otherwise stay f64.
    Tensor::from_data(
        TensorData::new(flat, shape).convert::<B::FloatElem>(),
        device,
    )
}

pub fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data().convert::<f64>().to_vec().unwrap()
}

/// Largest |a - b| / max(1, |b|).
pub fn max_error(ours: &[f64], reference: &[f64]) -> f64 {
    assert_eq!(ours.len(), reference.len());
    ours.iter()
        .zip(reference)
        .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
        .fold(0.0, f64::max)
}

pub fn check<B: AutodiffBackend>(tolerance: f64) {
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

/// Largest |a - b|.
pub fn max_abs_diff(ours: &[f64], reference: &[f64]) -> f64 {
    assert_eq!(ours.len(), reference.len());
    ours.iter()
        .zip(reference)
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()))
}

/// Checks the gradient of each of `embeddings` (`(key, tensor)`) against
/// `case["grads"][key]` (an embedding without one counts as zeros): each
/// within `tolerance` of its largest entry. Returns the largest error.
pub fn check_grads<B: AutodiffBackend>(
    case: &serde_json::Value,
    grads: &B::Gradients,
    embeddings: Vec<(&str, Tensor<B, 2>)>,
    tolerance: f64,
) -> f64 {
    let name = case["name"].as_str().unwrap();
    let mut worst = 0f64;
    for (key, z) in embeddings {
        let reference = matrix(&case["grads"][key]).0;
        let ours = z
            .grad(grads)
            .map(values)
            .unwrap_or_else(|| vec![0.0; reference.len()]);
        let err = max_error(&ours, &reference);
        assert!(err < tolerance, "{name}: grad {key} differs by {err:e}");
        worst = worst.max(err);
    }
    worst
}

pub fn vector<B: Backend>(v: &serde_json::Value, device: &B::Device) -> Tensor<B, 1> {
    let flat: Vec<f64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let n = flat.len();
    Tensor::from_data(TensorData::new(flat, [n]).convert::<B::FloatElem>(), device)
}

/// Every GCSE case, every mode: the loss within `tolerance` relative, each
/// gradient within `tolerance` of its largest entry, both scales at least
/// `floor` (f32 rounds a loss of 1e-8, and its gradients, to 0). Returns the largest error.
/// `official` cases with some `|s - s'|` below `tie_margin` are skipped: the
/// switch at `s <= s'` is discontinuous, and the side an exact tie falls on
/// is decided by rounding (in f32, about 2e-6 logits at |s| = 20).
pub fn check_gcse<B: AutodiffBackend>(tolerance: f64, tie_margin: f64, floor: f64) -> f64 {
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
    let mut checked = 0;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let mode = serde_json::from_value::<DecayMode>(case["mode"].clone()).unwrap();
        let expected_gap: Vec<f64> = case["student"]
            .as_array()
            .unwrap()
            .iter()
            .zip(case["frozen"].as_array().unwrap())
            .map(|(s, f)| s.as_f64().unwrap() - f.as_f64().unwrap())
            .collect();
        if mode == DecayMode::Official && expected_gap.iter().any(|g| g.abs() < tie_margin) {
            continue;
        }
        checked += 1;
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
        let expected = case["loss"].as_f64().unwrap();
        let err = (loss - expected).abs() / expected.abs().max(floor);
        assert!(
            err < tolerance,
            "{name}: loss {loss} vs PyTorch {}",
            case["loss"]
        );
        worst = worst.max(err);
        let gap = values(out.gap);
        assert!(
            gap.iter()
                .zip(&expected_gap)
                .all(|(a, b)| (a - b).abs() < 1e-4),
            "{name}: s - s' {gap:?} vs {expected_gap:?}"
        );
        for (z, key) in [(z1, "grad_z1"), (z2, "grad_z2"), (z3, "grad_z3")] {
            let ours = values(z.grad(&grads).expect("the embedding has a gradient"));
            let reference = matrix(&case[key]).0;
            let scale = reference.iter().fold(floor, |m, b| m.max(b.abs()));
            let err = max_abs_diff(&ours, &reference) / scale;
            assert!(
                err < tolerance,
                "{name}: {key} differs from PyTorch by {err:e} of its largest entry"
            );
            worst = worst.max(err);
        }
    }
    assert!(checked >= cases.len() - 3, "only {checked} cases checked");
    worst
}
