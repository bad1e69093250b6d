//! The contrastive losses against PyTorch in float32 (see loss.rs for
//! float64 and the weight checks; loss_checks/ says why two binaries).

mod common;
mod loss_checks;

use burn::backend::{Autodiff, NdArray};
use loss_checks::{check, check_gcse};

#[test]
fn gcse_loss_and_gradients_match_pytorch_in_f32_for_every_decay_mode() {
    let worst = check_gcse::<Autodiff<NdArray<f32>>>(1e-4, 1e-3, 1.0);
    eprintln!("largest relative error in f32: {worst:e}");
}

#[test]
fn info_nce_and_its_gradients_match_pytorch_in_f32() {
    check::<Autodiff<NdArray<f32>>>(1e-5);
}
