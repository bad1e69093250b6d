//! GCSE's stage-2 loss (paper Eq. 12-13, docs/method.md "Stage 2"): cross-entropy
//! over `[cos(z1_i, z2_j) | cos(z1_i, z3_j)] / tau` with target `i`, where the
//! logit of each anchor's own hard negative is Gaussian-decayed toward 0 while
//! the student scores that pair as the frozen evaluation model does (a likely
//! false negative), and recovers as the two diverge.
//!
//! With `s_i = cos(z1_i, z3_i) / tau` (student) and `s'_i` the frozen model's
//! logit for the same pair, the own hard negative's logit becomes
//! `s_i + w_i`, `w_i = -s_i * exp(-(s_i - s'_i)^2 / (2 a^2))`, `a` in logit
//! units. The decay modes differ in where `w_i` applies and how it is
//! differentiated:
//! - `official` (the authors' code, since May 2025): `w_i` is computed from
//!   detached values and applied only where `s_i <= s'_i`.
//! - `paper` (Eq. 12-13 as written): the logit is `G(s_i, s'_i) =
//!   s_i (1 - exp(-(s_i - s'_i)^2 tau^2 / (2 sigma^2)))` on both sides of
//!   `s_i = s'_i`, differentiated through both factors. The paper's sigma is
//!   in cosine units: `a = sigma / tau` (0.01 / 0.05 = 0.2). Eq. 12 writes `G`
//!   into the softmax denominator without `exp`; we read it, as the authors'
//!   code does, as the decayed logit.
//! - `none`: plain SimCSE with hard negatives.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::infonce::{cosine_matrix, diagonal_cross_entropy, unit_rows};
use super::{BatchLoss, LossOutput};

/// How the own hard negative is decayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecayMode {
    /// The authors' code: detached additive term, only where `s <= s'`.
    #[default]
    Official,
    /// The paper's Eq. 13: decayed on both sides, gradient through the decay.
    Paper,
    /// No decay: InfoNCE with hard negatives.
    None,
}

impl DecayMode {
    /// The Gaussian width `a` in logit units when the configuration gives
    /// none: the authors' 0.17 for `official`, the paper's sigma = 0.01
    /// (cosine units) divided by `temperature` for `paper`.
    pub fn default_width(self, temperature: f64) -> f64 {
        match self {
            DecayMode::Official | DecayMode::None => 0.17,
            DecayMode::Paper => 0.01 / temperature,
        }
    }
}

/// The decay applied by [`gcse_loss`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decay {
    /// Which formula.
    pub mode: DecayMode,
    /// Gaussian width `a`, in logit units (cosine / tau).
    pub width: f64,
}

impl Decay {
    /// The narrowest width a configuration may give: below it, the
    /// Gaussian's `2 a^2` vanishes in f32 and the decay turns into NaN.
    pub const MIN_WIDTH: f64 = 1e-6;

    /// Checks a configured width (`key` names it): finite, at least
    /// [`Self::MIN_WIDTH`].
    pub fn check_width(key: &str, width: Option<f64>) -> std::result::Result<(), String> {
        match width {
            Some(w) if !(w.is_finite() && w >= Self::MIN_WIDTH) => Err(format!(
                "`{key}` must be a number of at least {} (logit units), not {w}",
                Self::MIN_WIDTH
            )),
            _ => Ok(()),
        }
    }

    /// `mode` with Gaussian width `width`, or without one the mode's
    /// [`DecayMode::default_width`] at `temperature`.
    pub fn of(mode: DecayMode, width: Option<f64>, temperature: f64) -> Self {
        Self {
            mode,
            width: width.unwrap_or_else(|| mode.default_width(temperature)),
        }
    }
}

/// The loss of a batch of triplets and what the decay did.
pub struct GcseLoss<B: Backend> {
    /// Mean cross-entropy, `[1]`.
    pub loss: Tensor<B, 1>,
    /// `s_i - s'_i`, student minus frozen logit of each own hard negative,
    /// `[n]`, detached.
    pub gap: Tensor<B, 1>,
    /// The factor left on each own hard negative's logit, `[n]`, detached:
    /// `1 - exp(-(s - s')^2 / (2 a^2))` where decayed, 1 where not.
    pub weight: Tensor<B, 1>,
}

/// The logits `cos(z1_i, z3_j) / tau` (`[n, n]`) of anchors `z1` against
/// hard negatives `z3` (each `[n, d]`, row `i` of both from triplet `i`),
/// the own hard negative's (the diagonal) decayed by `decay` given the
/// frozen model's logits `frozen` (`[n]`, no gradient); with the readings
/// of [`GcseLoss`]: `(logits, gap, weight)`.
pub fn decayed_negatives<B: Backend>(
    z1: Tensor<B, 2>,
    z3: Tensor<B, 2>,
    frozen: Tensor<B, 1>,
    temperature: f64,
    decay: Decay,
) -> (Tensor<B, 2>, Tensor<B, 1>, Tensor<B, 1>) {
    let [n, _] = z1.dims();
    let device = z1.device();
    let (u1, u3) = (unit_rows(z1), unit_rows(z3));
    let negatives = u1.clone().matmul(u3.clone().transpose()) / temperature;
    // [n]: the own hard negative's logit, the diagonal of `negatives`.
    let own = (u1 * u3).sum_dim(1).reshape([n]) / temperature;
    let gap = own.clone() - frozen.detach();
    let gauss = (gap.clone().powi_scalar(2) / (-2.0 * decay.width * decay.width)).exp();
    let (shift, decayed) = match decay.mode {
        DecayMode::None => (None, own.zeros_like()),
        DecayMode::Official => {
            let decayed = gauss
                .detach()
                .mask_fill(gap.clone().detach().greater_elem(0.0), 0.0);
            (Some(-(own.detach() * decayed.clone())), decayed)
        }
        DecayMode::Paper => (Some(-(own * gauss.clone())), gauss.detach()),
    };
    // Tensors made here take the inputs' float type, not the device's
    // default (which Burn fixes per device and process, whatever the backend).
    let negatives = match shift {
        Some(w) => negatives + Tensor::<B, 2>::eye(n, &device).cast(w.dtype()) * w.reshape([n, 1]),
        None => negatives,
    };
    (negatives, gap.detach(), decayed.neg() + 1.0)
}

/// GCSE loss of anchors `z1`, positives `z2` and hard negatives `z3` (each
/// `[n, d]`, row `i` of all three from triplet `i`) given the frozen model's
/// logits `frozen` (`[n]`, `cos'(x_i, x_i^-) / tau`, no gradient).
pub fn gcse_loss<B: Backend>(
    z1: Tensor<B, 2>,
    z2: Tensor<B, 2>,
    z3: Tensor<B, 2>,
    frozen: Tensor<B, 1>,
    temperature: f64,
    decay: Decay,
) -> GcseLoss<B> {
    let positives = cosine_matrix(z1.clone(), z2) / temperature;
    let (negatives, gap, weight) = decayed_negatives(z1, z3, frozen, temperature, decay);
    GcseLoss {
        loss: diagonal_cross_entropy(Tensor::cat(vec![positives, negatives], 1)),
        gap,
        weight,
    }
}

/// Name of [`GcseLoss::gap`] among a step's readings.
pub const GAP: &str = "gap";
/// Name of [`GcseLoss::weight`] among a step's readings.
pub const WEIGHT: &str = "weight";

/// GCSE's batch loss: rows `0..n` of the batch are anchors, `n..2n`
/// positives, `2n..3n` hard negatives; the constants are the frozen model's
/// logits `cos'(anchor_i, negative_i) / tau`, `[n]`. Readings: [`GAP`] and
/// [`WEIGHT`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GaussianDecayLoss {
    /// Softmax temperature tau.
    pub temperature: f64,
    /// The decay of the own hard negative.
    pub decay: Decay,
}

impl BatchLoss for GaussianDecayLoss {
    type Constants<B: Backend> = Tensor<B, 1>;

    fn loss<B: Backend>(&self, z: Tensor<B, 2>, frozen: &Tensor<B, 1>) -> LossOutput<B> {
        let n = z.dims()[0] / 3;
        let out = gcse_loss(
            z.clone().narrow(0, 0, n),
            z.clone().narrow(0, n, n),
            z.narrow(0, 2 * n, n),
            frozen.clone(),
            self.temperature,
            self.decay,
        );
        LossOutput {
            loss: out.loss,
            readings: vec![(GAP, out.gap), (WEIGHT, out.weight)],
        }
    }
}
