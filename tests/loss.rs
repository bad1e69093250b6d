//! The contrastive losses against PyTorch (tests/fixtures/losses.json and
//! gcse_losses.json, made by scripts/reference_losses.py): InfoNCE and GCSE's
//! Gaussian-decayed loss in each decay mode, the loss and its gradients with
//! respect to every embedding, in float64 (float32: loss_f32.rs).

mod common;
mod loss_checks;

use burn::backend::{Autodiff, NdArray};
use burn::tensor::{Tensor, TensorData};
use gcse::loss::gaussian_decay::{gcse_loss, Decay, DecayMode};
use loss_checks::{check, check_gcse, values};

#[test]
fn gcse_loss_and_gradients_match_pytorch_in_f64_for_every_decay_mode() {
    let worst = check_gcse::<Autodiff<NdArray<f64>>>(1e-6, 0.0, 0.0);
    eprintln!("largest relative error in f64: {worst:e}");
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
