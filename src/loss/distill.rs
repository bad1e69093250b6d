//! DistillCSE's loss (docs/methods-extensions.md §1): SimCSE's InfoNCE
//! between two dropout views plus `lambda` times a distillation term that
//! matches the student's view-1-vs-view-1 cosines to a teacher's.
//!
//! The distillation term works on each row's columns in the teacher's
//! order: the batch carries, per row, the teacher's raw cosines sorted
//! descending with the diagonal left out (`[n, n - 1]`) and the student
//! column placed at each sorted position (`[n, n - 1]`, after Group-P
//! shuffling, `crate::objective::group_shuffle`). Leaving the diagonal out
//! is the same as masking it with `-inf` on both sides.

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

use super::infonce::{cosine_matrix, diagonal_cross_entropy_rows};
use super::{BatchLoss, LossOutput};

/// Reading keys: per-row `L_cl` and `L_kd` (`[n]`), the rows' mean group
/// size (`[n]`), and the student's and the teacher's cosines of each row in
/// the teacher's unshuffled order (`[n * (n - 1)]`, row-major).
pub const CONTRASTIVE: &str = "l_cl";
/// See [`CONTRASTIVE`].
pub const DISTILLATION: &str = "l_kd";
/// See [`CONTRASTIVE`].
pub const GROUP_SIZE: &str = "group_size";
/// See [`CONTRASTIVE`].
pub const STUDENT_RANKED: &str = "student_ranked";
/// See [`CONTRASTIVE`].
pub const TEACHER_RANKED: &str = "teacher_ranked";

/// How the student's row distribution is matched to the teacher's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KdFunction {
    /// Cross-entropy `-sum p log q` (the reference).
    #[default]
    Ce,
    /// Kullback-Leibler `sum p (log p - log q)`.
    Kl,
    /// Jensen-Shannon `(KL(p || m) + KL(q || m)) / 2`, `m = (p + q) / 2`.
    Js,
}

/// The distillation term of each row → `[n]`: `kd` between
/// `p = softmax(teacher / tau_t)` and `q = softmax(student / tau_s)`, both
/// `[n, k]` in the same column order.
pub fn row_divergence<B: Backend>(
    student: Tensor<B, 2>,
    teacher: Tensor<B, 2>,
    student_temperature: f64,
    teacher_temperature: f64,
    kd: KdFunction,
) -> Tensor<B, 1> {
    let log_q = log_softmax(student / student_temperature, 1);
    let log_p = log_softmax(teacher / teacher_temperature, 1);
    let p = log_p.clone().exp();
    let rows = match kd {
        KdFunction::Ce => (p * log_q).neg(),
        KdFunction::Kl => p * (log_p - log_q),
        KdFunction::Js => {
            let q = log_q.clone().exp();
            let log_m = ((p.clone() + q.clone()) * 0.5).clamp_min(1e-30).log();
            (p * (log_p - log_m.clone()) + q * (log_q - log_m)) * 0.5
        }
    };
    rows.sum_dim(1).squeeze_dim(1)
}

/// DistillCSE's batch loss: rows `0..n` and `n..2n` are two dropout views of
/// the same `n` sentences.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DistillLoss {
    /// InfoNCE's temperature tau.
    pub temperature: f64,
    /// The student's distillation temperature tau_s.
    pub student_temperature: f64,
    /// The teacher's distillation temperature tau_t.
    pub teacher_temperature: f64,
    /// The weight of the distillation term.
    pub lambda: f64,
    /// The distillation function.
    pub kd: KdFunction,
    /// Whether InfoNCE is part of the loss (`false`: distillation only; it is
    /// still reported).
    pub contrastive: bool,
}

/// What a DistillCSE batch of `n` carries.
#[derive(Debug, Clone)]
pub struct DistillConstants<B: Backend> {
    /// Row `i`: the teacher's raw cosines of sentence `i` with the others,
    /// sorted descending, `[n, n - 1]`.
    pub teacher_sorted: Tensor<B, 2>,
    /// Row `i`: the student column at each sorted position after shuffling,
    /// `[n, n - 1]`.
    pub order: Tensor<B, 2, Int>,
    /// Row `i`: the columns in the teacher's order before shuffling,
    /// `[n, n - 1]` (for the agreement reading only).
    pub ranked: Tensor<B, 2, Int>,
    /// The mean shuffle-group size of each row, `[n]` (passed through as a
    /// reading).
    pub group_size: Tensor<B, 1>,
}

impl DistillLoss {
    /// The loss of views `z1`, `z2` (`[n, d]` each) with the batch's
    /// teacher columns, and its per-row readings.
    pub fn views<B: Backend>(
        &self,
        z1: Tensor<B, 2>,
        z2: Tensor<B, 2>,
        constants: &DistillConstants<B>,
    ) -> LossOutput<B> {
        let [n, _] = z1.dims();
        let contrastive =
            diagonal_cross_entropy_rows(cosine_matrix(z1.clone(), z2) / self.temperature);
        let mut readings = vec![(CONTRASTIVE, contrastive.clone().detach())];
        let distillation = if n < 2 {
            Tensor::zeros([n], &contrastive.device())
        } else {
            let student = cosine_matrix(z1.clone(), z1);
            readings.push((
                STUDENT_RANKED,
                student
                    .clone()
                    .detach()
                    .gather(1, constants.ranked.clone())
                    .reshape([n * (n - 1)]),
            ));
            readings.push((
                TEACHER_RANKED,
                constants.teacher_sorted.clone().reshape([n * (n - 1)]),
            ));
            row_divergence(
                student.gather(1, constants.order.clone()),
                constants.teacher_sorted.clone(),
                self.student_temperature,
                self.teacher_temperature,
                self.kd,
            )
        };
        readings.push((DISTILLATION, distillation.clone().detach()));
        readings.push((GROUP_SIZE, constants.group_size.clone()));
        let kd = distillation.mean() * self.lambda;
        LossOutput {
            loss: if self.contrastive {
                contrastive.mean() + kd
            } else {
                kd
            },
            readings,
        }
    }
}

impl BatchLoss for DistillLoss {
    type Constants<B: Backend> = DistillConstants<B>;

    fn loss<B: Backend>(&self, z: Tensor<B, 2>, constants: &DistillConstants<B>) -> LossOutput<B> {
        let n = z.dims()[0] / 2;
        self.views(z.clone().narrow(0, 0, n), z.narrow(0, n, n), constants)
    }
}
