//! SimCSE's InfoNCE: cosine similarities over a temperature, cross-entropy
//! with the positive on the diagonal and the other in-batch sentences as
//! negatives.

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use super::{BatchLoss, LossOutput};

/// Rows scaled to unit L2 norm (`[n, d]`); a zero row stays zero.
pub fn unit_rows<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = x.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

/// Cosine similarity of every row of `a` (`[n, d]`) with every row of `b`
/// (`[m, d]`) → `[n, m]`.
pub fn cosine_matrix<B: Backend>(a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 2> {
    unit_rows(a).matmul(unit_rows(b).transpose())
}

/// Cross-entropy of each row of `logits` (`[n, k]`, `k >= n`) where row
/// `i`'s target is column `i` → `[n]`.
pub fn diagonal_cross_entropy_rows<B: Backend>(logits: Tensor<B, 2>) -> Tensor<B, 1> {
    let n = logits.dims()[0];
    let targets = Tensor::<B, 1, Int>::arange(0..n as i64, &logits.device()).reshape([n, 1]);
    log_softmax(logits, 1).gather(1, targets).reshape([n]).neg()
}

/// Mean cross-entropy of `logits` (`[n, k]`, `k >= n`) where row `i`'s
/// target is column `i` → `[1]`.
pub fn diagonal_cross_entropy<B: Backend>(logits: Tensor<B, 2>) -> Tensor<B, 1> {
    diagonal_cross_entropy_rows(logits).mean()
}

/// Unsupervised SimCSE loss of two views `z1`, `z2` (`[n, d]` each, row `i`
/// of both from sentence `i`): cross-entropy over `cos(z1_i, z2_j) / tau`.
pub fn info_nce<B: Backend>(z1: Tensor<B, 2>, z2: Tensor<B, 2>, temperature: f64) -> Tensor<B, 1> {
    diagonal_cross_entropy(cosine_matrix(z1, z2) / temperature)
}

/// Unsupervised SimCSE's batch loss: rows `0..n` and `n..2n` of the batch
/// are two dropout views of the same `n` sentences.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TwoViewInfoNce {
    /// Softmax temperature tau.
    pub temperature: f64,
}

impl BatchLoss for TwoViewInfoNce {
    type Constants<B: Backend> = ();

    fn loss<B: Backend>(&self, z: Tensor<B, 2>, _: &()) -> LossOutput<B> {
        let n = z.dims()[0] / 2;
        LossOutput {
            loss: info_nce(
                z.clone().narrow(0, 0, n),
                z.narrow(0, n, n),
                self.temperature,
            ),
            readings: Vec::new(),
        }
    }
}
