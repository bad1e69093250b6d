//! InfoNCE against PyTorch (tests/fixtures/losses.json, made by
//! scripts/reference_losses.py): the loss and its gradients with respect to
//! both views, in float64 and float32.

mod common;

use burn::backend::{Autodiff, NdArray};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
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

#[test]
fn info_nce_and_its_gradients_match_pytorch_in_f64() {
    check::<Autodiff<NdArray<f64>>>(1e-6);
}

#[test]
fn info_nce_and_its_gradients_match_pytorch_in_f32() {
    check::<Autodiff<NdArray<f32>>>(1e-5);
}
