//! Clipping the global gradient norm, as PyTorch's `clip_grad_norm_` does:
//! one L2 norm over every parameter's gradient, and all gradients scaled by
//! `max_norm / (norm + 1e-6)` when that is below 1. (Burn's own gradient
//! clipping works per tensor.)

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor};

/// Sums the squared gradients of every float parameter.
struct SquaredSum<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    total: Option<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SquaredSum<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            let part = g.square().sum();
            self.total = Some(match self.total.take() {
                Some(t) => t + part,
                None => part,
            });
        }
    }
}

/// Multiplies every float parameter's gradient by a factor.
struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.grads.register(param.id, g.mul_scalar(self.factor));
        }
    }
}

/// The global L2 norm of `model`'s gradients in `grads`.
pub fn global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    grads: &GradientsParams,
) -> f64 {
    let mut sum = SquaredSum::<B> { grads, total: None };
    model.visit(&mut sum);
    sum.total
        .map_or(0.0, |t| t.into_scalar().elem::<f64>())
        .sqrt()
}

/// Multiplies every gradient of `model`'s parameters in `grads` by `factor`.
pub fn scale_grads<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    grads: &mut GradientsParams,
    factor: f64,
) {
    model.visit(&mut Scale { grads, factor });
}

/// Scales `grads` so that their global norm is at most `max_norm`; returns
/// the norm before clipping.
pub fn clip_global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> f64 {
    let norm = global_norm::<B, M>(model, grads);
    let factor = max_norm / (norm + 1e-6);
    if factor < 1.0 {
        scale_grads::<B, M>(model, grads, factor);
    }
    norm
}
