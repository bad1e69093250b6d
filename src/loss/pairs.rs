//! Losses on scored sentence pairs, for bi- and cross-encoders teaching
//! each other (Trans-Encoder's self-distillation): a cross-encoder's binary
//! cross-entropy with soft targets, and a bi-encoder's regression of the
//! cosine of each pair on its score (mean squared error, or CoSENT's
//! ranking of the pairs).

use burn::tensor::activation::softplus;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::infonce::unit_rows;
use super::rank::cosent;
use super::{BatchLoss, LossOutput};

/// Binary cross-entropy of `[n]` logits against `[n]` soft targets in
/// [0, 1], mean over pairs → `[1]` (PyTorch's `BCEWithLogitsLoss`):
/// `softplus(x) - x y`, computed stably.
pub fn bce_with_logits<B: Backend>(logits: Tensor<B, 1>, targets: Tensor<B, 1>) -> Tensor<B, 1> {
    (softplus(logits.clone(), 1.0) - logits * targets).mean()
}

/// `[n]` cosine similarities of the rows of `[2n, d]` `z`: row `i` against
/// row `n + i`.
pub fn pair_cosines<B: Backend>(z: Tensor<B, 2>) -> Tensor<B, 1> {
    let [rows, _] = z.dims();
    let n = rows / 2;
    let unit = unit_rows(z);
    let (a, b) = (unit.clone().narrow(0, 0, n), unit.narrow(0, n, n));
    (a * b).sum_dim(1).reshape([n])
}

/// A cross-encoder's loss on pairs: each row of the batch is a pair's
/// sequence and `z` its logit (`[rows, 1]`); the constants are each row's
/// target, `[rows]`. The objective lays a pair out in both orders (`(a, b)`
/// and `(b, a)`), each with the pair's target.
#[derive(Debug, Clone, Copy, Default)]
pub struct PairBce;

impl BatchLoss for PairBce {
    type Constants<B: Backend> = Tensor<B, 1>;

    fn loss<B: Backend>(&self, z: Tensor<B, 2>, targets: &Tensor<B, 1>) -> LossOutput<B> {
        let rows = z.dims()[0];
        let logits = z.reshape([rows]);
        LossOutput {
            loss: bce_with_logits(logits.clone(), targets.clone()),
            readings: vec![("logit", logits.detach()), ("target", targets.clone())],
        }
    }
}

/// How a bi-encoder's cosines are fitted to the pairs' scores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Regression {
    /// Mean squared error between each cosine and its score
    /// (sentence-transformers' `CosineSimilarityLoss`; Trans-Encoder's).
    #[default]
    Mse,
    /// CoSENT: only the order of the scores matters.
    Cosent,
}

/// What a batch of `n` scored pairs carries for a bi-encoder.
#[derive(Debug, Clone)]
pub struct PairScores<B: Backend> {
    /// Each pair's score, `[n]`.
    pub scores: Tensor<B, 1>,
    /// The same on the host (CoSENT's pair order).
    pub values: Vec<f64>,
}

/// A bi-encoder's loss on pairs: the batch holds the `n` first sentences,
/// then the `n` second ones (`z`: `[2n, d]`); pair `i`'s cosine is fitted
/// to its score.
#[derive(Debug, Clone, Copy)]
pub struct PairRegression {
    /// MSE or CoSENT.
    pub form: Regression,
    /// CoSENT's scale (sentence-transformers: 20).
    pub scale: f64,
}

impl BatchLoss for PairRegression {
    type Constants<B: Backend> = PairScores<B>;

    fn loss<B: Backend>(&self, z: Tensor<B, 2>, constants: &PairScores<B>) -> LossOutput<B> {
        let cosines = pair_cosines(z);
        let loss = match self.form {
            Regression::Mse => (cosines.clone() - constants.scores.clone())
                .powi_scalar(2)
                .mean(),
            Regression::Cosent => cosent(cosines.clone(), &constants.values, self.scale),
        };
        LossOutput {
            loss,
            readings: vec![
                ("cosine", cosines.detach()),
                ("target", constants.scores.clone()),
            ],
        }
    }
}
