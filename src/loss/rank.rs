//! Rank distillation (docs/methods-extensions.md §2, after RankCSE): listwise
//! losses of a student's score matrix against a teacher's, the ranking
//! consistency between the two directions of the cross-view matrix, CoSENT,
//! and [`RankLoss`], which adds them to an InfoNCE whose logit rows may carry
//! LLM hard negatives (GCSE stage 2, own negative decayed) and negatives
//! from a buffer of earlier batches.
//!
//! Every function here is a pure function of scores or embeddings; the
//! objective (`crate::objective::rank`) chooses the teacher order, the
//! buffer's negatives and the frozen logits on the host.

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::gaussian_decay::{decayed_negatives, Decay, GAP, WEIGHT};
use super::infonce::{cosine_matrix, diagonal_cross_entropy_rows, unit_rows};
use super::{BatchLoss, LossOutput};

/// What RankCSE adds inside ListMLE's log.
pub const LIST_MLE_EPS: f64 = 1e-7;

/// Each row of `x` (`[n, n]`) without its diagonal entry → `[n, n - 1]`.
pub fn off_diagonal<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let [n, _] = x.dims();
    let columns: Vec<i64> = (0..n)
        .flat_map(|i| (0..n).filter(move |&j| j != i).map(|j| j as i64))
        .collect();
    let index = Tensor::<B, 2, Int>::from_data(
        TensorData::new(columns, [n, n.saturating_sub(1)]).convert::<B::IntElem>(),
        &x.device(),
    );
    x.gather(1, index)
}

/// ListNet (top-1) of each row → `[n]`: `-sum_j q_j log p_j` with
/// `p = softmax(student)` and `q = softmax(teacher)` over the row's columns
/// other than the diagonal (masked on both sides). `student` and `teacher`
/// are `[n, n]` logits, temperatures applied.
pub fn list_net<B: Backend>(student: Tensor<B, 2>, teacher: Tensor<B, 2>) -> Tensor<B, 1> {
    let [n, _] = student.dims();
    if n < 2 {
        return Tensor::<B, 1>::zeros([n], &student.device()).cast(student.dtype());
    }
    let log_p = log_softmax(off_diagonal(student), 1);
    let q = softmax(off_diagonal(teacher), 1);
    (q * log_p).sum_dim(1).reshape([n]).neg()
}

/// Each row's columns in the teacher's descending order (`n * n`,
/// row-major, from `teacher`, `n * n` row-major), ties in the order in which
/// `perm` (a permutation of `0..n`) lists them: ListMLE's seeded tie-break.
pub fn list_mle_order(teacher: &[f64], perm: &[usize]) -> Vec<usize> {
    let n = perm.len();
    (0..n)
        .flat_map(|i| {
            let row = &teacher[i * n..(i + 1) * n];
            let mut columns = perm.to_vec();
            // `+ 0.0` makes -0 and 0 one value, as a float comparison has them.
            columns.sort_by(|&a, &b| (row[b] + 0.0).total_cmp(&(row[a] + 0.0)));
            columns
        })
        .collect()
}

/// ListMLE of each row → `[n]`: the Plackett-Luce negative log-likelihood
/// of the row's columns in `order` (`[n, n]`, see [`list_mle_order`]) under
/// the `student` logits (`[n, n]`, all columns), divided by `n` (RankCSE's
/// mean over positions); the logits are shifted by the row maximum and
/// [`LIST_MLE_EPS`] is added inside the log.
pub fn list_mle<B: Backend>(student: Tensor<B, 2>, order: Tensor<B, 2, Int>) -> Tensor<B, 1> {
    let [n, _] = student.dims();
    let sorted = student.gather(1, order);
    let shifted = sorted.clone() - sorted.max_dim(1);
    // `lower[k][j] = 1` where `k >= j`: column `j` of `e @ lower` sums
    // positions `j..n`.
    let lower = Tensor::<B, 2>::ones([n, n], &shifted.device())
        .cast(shifted.dtype())
        .tril(0);
    let tails = shifted.clone().exp().matmul(lower);
    ((tails + LIST_MLE_EPS).log() - shifted)
        .mean_dim(1)
        .reshape([n])
}

/// How the ranking consistency between the two directions is measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// The Jensen-Shannon divergence of each row.
    #[default]
    Jsd,
    /// RankCSE's community code, for parity: softmaxes clamped at 1e-7 and
    /// `log M` clamped at 1e-7 after the log, which leaves `M` constant and
    /// so maximises the rows' entropy.
    Rankcse,
}

/// Ranking consistency of each row → `[n]`: the divergence between
/// `P = softmax_row(logits)` and `Q = softmax_row(logits^T)`, where
/// `logits` (`[n, n]`) is `s(h, h') / tau` and its transpose `s(h', h) /
/// tau`; both sides carry gradient.
pub fn consistency<B: Backend>(logits: Tensor<B, 2>, form: Consistency) -> Tensor<B, 1> {
    let [n, _] = logits.dims();
    let transposed = logits.clone().transpose();
    let rows = match form {
        Consistency::Jsd => {
            let (log_p, log_q) = (log_softmax(logits, 1), log_softmax(transposed, 1));
            let (p, q) = (log_p.clone().exp(), log_q.clone().exp());
            let log_m = ((p.clone() + q.clone()) * 0.5).log();
            p * (log_p - log_m.clone()) + q * (log_q - log_m)
        }
        Consistency::Rankcse => {
            let eps = LIST_MLE_EPS;
            let p = softmax(logits, 1).clamp_min(eps);
            let q = softmax(transposed, 1).clamp_min(eps);
            let log_m = ((p.clone() + q.clone()) * 0.5).log().clamp_min(eps);
            p.clone() * (p.log() - log_m.clone()) + q.clone() * (q.log() - log_m)
        }
    };
    (rows.sum_dim(1) * 0.5).reshape([n])
}

/// CoSENT → `[1]`: `log(1 + sum exp(scale (c_q - c_p)))` over the pairs
/// `(p, q)` with `labels[p] > labels[q]`, where `cosines` (`[n]`) are the
/// model's scores of the `n` pairs (0 when no labels differ).
pub fn cosent<B: Backend>(cosines: Tensor<B, 1>, labels: &[f64], scale: f64) -> Tensor<B, 1> {
    let n = labels.len();
    let ordered: Vec<i64> = (0..n)
        .flat_map(|p| (0..n).map(move |q| (p, q)))
        .filter(|&(p, q)| labels[p] > labels[q])
        .map(|(p, q)| (p * n + q) as i64)
        .collect();
    let scaled = cosines * scale;
    let zero = Tensor::<B, 1>::zeros([1], &scaled.device()).cast(scaled.dtype());
    if ordered.is_empty() {
        return zero;
    }
    let index = Tensor::<B, 1, Int>::from_data(
        TensorData::new(ordered.clone(), [ordered.len()]).convert::<B::IntElem>(),
        &scaled.device(),
    );
    // `[p, q] = c_q - c_p`.
    let differences = scaled.clone().reshape([1, n]) - scaled.reshape([n, 1]);
    let terms = Tensor::cat(vec![zero, differences.reshape([n * n]).select(0, index)], 0);
    let max = terms.clone().max().detach();
    (terms - max.clone()).exp().sum().log() + max
}

/// Which listwise loss distils the teacher's ranking.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Listwise {
    /// [`list_mle`] (RankCSE's recipe with gamma 1).
    #[default]
    Listmle,
    /// [`list_net`].
    Listnet,
}

/// Negatives drawn from the buffer for each anchor of a batch.
#[derive(Debug, Clone)]
pub struct BufferNegatives<B: Backend> {
    /// Anchor `i`'s negatives, `[n, m, d]` (detached vectors).
    pub vectors: Tensor<B, 3>,
    /// `true` where anchor `i` has no `k`-th negative, `[n, m]` (its slot
    /// holds any vector and is left out of the softmax).
    pub missing: Tensor<B, 2, Bool>,
}

/// What a rank batch of `n` carries.
#[derive(Debug, Clone)]
pub struct RankConstants<B: Backend> {
    /// The teacher's logits `sum_k w_k cos_k(x_i, x_j) / tau_T`, `[n, n]`.
    pub teacher: Tensor<B, 2>,
    /// Each row's columns in the teacher's order with the step's tie-break
    /// (ListMLE), `[n, n]`.
    pub order: Tensor<B, 2, Int>,
    /// With LLM hard negatives (rows `2n..3n` of the batch): the frozen
    /// model's logits `cos'(x_i, x_i^-) / tau`, `[n]`.
    pub frozen: Option<Tensor<B, 1>>,
    /// With a buffer: each anchor's negatives from it.
    pub buffer: Option<BufferNegatives<B>>,
    /// Per anchor, the fraction of the buffer's other sentences dropped as
    /// likely false negatives, `[n]` (passed through as a reading).
    pub dropped: Tensor<B, 1>,
}

/// Reading keys: per row `L_cl`, `L_cons` and `L_rank` (`[n]`), the mean
/// student cosine of each anchor's buffer negatives and their count (`[n]`),
/// the fraction dropped as false (`[n]`), GCSE's decay weight and gap
/// (`[n]`, with LLM negatives), and the detached anchors (`[n * d]`, when
/// [`RankLoss::anchors`]).
pub const CONTRASTIVE: &str = "l_cl";
/// See [`CONTRASTIVE`].
pub const CONSISTENCY: &str = "l_cons";
/// See [`CONTRASTIVE`].
pub const RANKING: &str = "l_rank";
/// See [`CONTRASTIVE`].
pub const BUFFER_COSINE: &str = "buffer_cosine";
/// See [`CONTRASTIVE`].
pub const BUFFER_COUNT: &str = "buffer_count";
/// See [`CONTRASTIVE`].
pub const DROPPED: &str = "dropped";
/// See [`CONTRASTIVE`].
pub const ANCHORS: &str = "anchors";

/// A logit whose exponential is 0 in every float type: a missing slot.
const ABSENT: f64 = -1e9;

/// The rank objective's batch loss: `L_cl + beta L_cons + gamma L_rank`.
/// Rows `0..n` and `n..2n` of the batch are two dropout views of the
/// anchors, rows `2n..3n` their LLM hard negatives with
/// [`RankLoss::negatives`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankLoss {
    /// InfoNCE's and the consistency's temperature tau.
    pub temperature: f64,
    /// The student's temperature in the listwise loss, tau_s.
    pub student_temperature: f64,
    /// Weight of the consistency term.
    pub beta: f64,
    /// Weight of the listwise term.
    pub gamma: f64,
    /// The listwise loss.
    pub listwise: Listwise,
    /// The consistency's form.
    pub consistency: Consistency,
    /// The decay of each anchor's own LLM negative.
    pub decay: Decay,
    /// Whether the detached anchors are a reading (a buffer of student
    /// vectors keeps them).
    pub anchors: bool,
    /// Whether rows `2n..3n` hold LLM hard negatives (the constants then
    /// carry frozen logits).
    pub negatives: bool,
}

impl RankLoss {
    /// The loss of views `z1`, `z2` (`[n, d]` each) and, with LLM
    /// negatives, `z3` (`[n, d]`), and its readings.
    pub fn views<B: Backend>(
        &self,
        z1: Tensor<B, 2>,
        z2: Tensor<B, 2>,
        z3: Option<Tensor<B, 2>>,
        constants: &RankConstants<B>,
    ) -> LossOutput<B> {
        let [n, d] = z1.dims();
        let cross = cosine_matrix(z1.clone(), z2);
        let mut blocks = vec![cross.clone() / self.temperature];
        let mut readings = Vec::new();
        if let (Some(z3), Some(frozen)) = (z3, &constants.frozen) {
            let (negatives, gap, weight) =
                decayed_negatives(z1.clone(), z3, frozen.clone(), self.temperature, self.decay);
            blocks.push(negatives);
            readings.push((GAP, gap));
            readings.push((WEIGHT, weight));
        }
        if let Some(buffer) = &constants.buffer {
            let [_, m, _] = buffer.vectors.dims();
            let negatives =
                unit_rows(buffer.vectors.clone().reshape([n * m, d])).reshape([n, m, d]);
            let own = (unit_rows(z1.clone()).reshape([n, 1, d]) * negatives)
                .sum_dim(2)
                .reshape([n, m]);
            let present = buffer.missing.clone().bool_not().float().cast(own.dtype());
            let count = present.clone().sum_dim(1).reshape([n]);
            let mean = (own.clone().detach() * present).sum_dim(1).reshape([n])
                / count.clone().clamp_min(1.0);
            readings.push((BUFFER_COSINE, mean));
            readings.push((BUFFER_COUNT, count));
            blocks.push((own / self.temperature).mask_fill(buffer.missing.clone(), ABSENT));
        }
        let contrastive = diagonal_cross_entropy_rows(Tensor::cat(blocks, 1));
        let logits = cross.clone() / self.temperature;
        let consistent = consistency(logits, self.consistency);
        let student = cross / self.student_temperature;
        let ranking = match self.listwise {
            Listwise::Listnet => list_net(student, constants.teacher.clone()),
            Listwise::Listmle => list_mle(student, constants.order.clone()),
        };
        let mut loss = contrastive.clone().mean();
        if self.beta > 0.0 {
            loss = loss + consistent.clone().mean() * self.beta;
        }
        if self.gamma > 0.0 {
            loss = loss + ranking.clone().mean() * self.gamma;
        }
        readings.push((CONTRASTIVE, contrastive.detach()));
        readings.push((CONSISTENCY, consistent.detach()));
        readings.push((RANKING, ranking.detach()));
        readings.push((DROPPED, constants.dropped.clone()));
        if self.anchors {
            readings.push((ANCHORS, z1.detach().reshape([n * d])));
        }
        LossOutput { loss, readings }
    }
}

impl BatchLoss for RankLoss {
    type Constants<B: Backend> = RankConstants<B>;

    fn loss<B: Backend>(&self, z: Tensor<B, 2>, constants: &RankConstants<B>) -> LossOutput<B> {
        let n = z.dims()[0] / if self.negatives { 3 } else { 2 };
        let z3 = self.negatives.then(|| z.clone().narrow(0, 2 * n, n));
        self.views(z.clone().narrow(0, 0, n), z.narrow(0, n, n), z3, constants)
    }
}
