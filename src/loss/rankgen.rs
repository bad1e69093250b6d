//! Post-training on LLM rewrite chains (docs/methods-extensions.md §3,
//! "ranking-sentence generation"): a chain `s_0, s_1, ..., s_n` drifts
//! further from `s_0` at each step, so its order ranks every row of the
//! list's similarity matrix. The teacher's matrix, corrected towards the
//! chain's order ([`ranking_targets`]), orders each row; the loss is the
//! student's ListMLE over those orders.
//!
//! The teacher side is computed on the host in f64 ([`ranking_targets`],
//! then [`crate::loss::rank::list_mle_order`]); the loss reads only the
//! orders, so it is a pure function of the student's embeddings.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

use super::infonce::cosine_matrix;
use super::rank::list_mle;
use super::{BatchLoss, LossOutput};

/// Which items of a row the correction takes for ranked too high by the
/// teacher (and lowers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RankSign {
    /// Item `j` of row `i` is too high when its rank `r` among the row's
    /// items `i..n` is above its place in the chain, `r < j - i`.
    #[default]
    Chain,
    /// The shipped code's test, `r < j`: a rank among the items `i..n`
    /// compared with an absolute index, which for `i > 0` also lowers items
    /// the teacher ranks too low by fewer than `i` places.
    Reference,
}

/// The targets `Y = A + C` of one list (`[n, n]`, row-major) from the
/// teacher's logits `A` (`cos / tau_T`, `[n, n]`, row-major). Row `i`'s
/// items `j >= i` are sorted descending into `v` (ties in list order);
/// item `j` belongs at place `o = j - i`, the teacher gives it rank `r`;
/// `B_ij = sgn |A_ij - v[o]|`, `sgn = -1` where [`RankSign`] says `j`
/// is ranked too high, else `+1`; `B_ji = B_ij`; `C = sign(B) ln(1 + omega
/// |B|)`. At `omega = 0`, `Y = A`.
pub fn ranking_targets(teacher: &[f64], n: usize, omega: f64, sign: RankSign) -> Vec<f64> {
    assert_eq!(teacher.len(), n * n, "a [n, n] teacher matrix");
    let mut targets = teacher.to_vec();
    for i in 0..n {
        let row = &teacher[i * n + i..(i + 1) * n];
        let mut sorted: Vec<usize> = (0..row.len()).collect();
        // `+ 0.0` makes -0 and 0 one value, as a float comparison has them.
        sorted.sort_by(|&a, &b| (row[b] + 0.0).total_cmp(&(row[a] + 0.0)));
        let mut rank = vec![0; row.len()];
        for (r, &o) in sorted.iter().enumerate() {
            rank[o] = r;
        }
        for o in 0..row.len() {
            let j = i + o;
            let too_high = match sign {
                RankSign::Chain => rank[o] < o,
                RankSign::Reference => rank[o] < j,
            };
            let gap = (row[o] - row[sorted[o]]).abs();
            let b = if too_high { -gap } else { gap };
            let c = if b == 0.0 {
                0.0
            } else {
                b.signum() * (omega * b.abs()).ln_1p()
            };
            targets[i * n + j] = teacher[i * n + j] + c;
            targets[j * n + i] = teacher[j * n + i] + c;
        }
    }
    targets
}

/// The targets of one list (see [`ranking_targets`]) from the teacher's
/// vectors of its `n` sentences (`[n, d]`, row-major): `A = cos / tau_t`.
pub fn list_targets(teacher: &[f64], n: usize, tau_t: f64, omega: f64, sign: RankSign) -> Vec<f64> {
    let d = teacher.len() / n.max(1);
    let row = |k: usize| &teacher[k * d..(k + 1) * d];
    let norm = |k: usize| row(k).iter().map(|x| x * x).sum::<f64>().sqrt();
    let norms: Vec<f64> = (0..n).map(norm).collect();
    let logits: Vec<f64> = (0..n * n)
        .map(|k| {
            let (i, j) = (k / n, k % n);
            let dot: f64 = row(i).iter().zip(row(j)).map(|(a, b)| a * b).sum();
            dot / (norms[i] * norms[j]).max(COSINE_EPS) / tau_t
        })
        .collect();
    ranking_targets(&logits, n, omega, sign)
}

/// The floor of a cosine's norm product (PyTorch's `cosine_similarity`).
const COSINE_EPS: f64 = 1e-8;

/// What a batch of lists carries: per list, its first row in the batch and
/// ListMLE's order of each of its rows (`[n, n]`, from the targets).
#[derive(Debug, Clone)]
pub struct ListOrders<B: Backend> {
    /// `(first row, order)` of each list, in batch order.
    pub lists: Vec<(usize, Tensor<B, 2, Int>)>,
}

/// Reading key: each list's loss.
pub const LIST_LOSS: &str = "list_loss";

/// The loss of a batch of lists laid out one after another (`z`: `[rows,
/// d]`): per list, the student's logits `S = cos(z_k, z_l) / tau` over the
/// whole list (diagonal included) and ListMLE of each row in the target's
/// order, summed over positions and averaged over rows; the batch's loss is
/// the mean over lists.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankgenLoss {
    /// The student's temperature.
    pub tau: f64,
}

impl RankgenLoss {
    /// The loss of one list's embeddings (`[n, d]`) given its order.
    pub fn list<B: Backend>(&self, z: Tensor<B, 2>, order: Tensor<B, 2, Int>) -> Tensor<B, 1> {
        let n = z.dims()[0];
        let logits = cosine_matrix(z.clone(), z).div_scalar(self.tau);
        list_mle(logits, order).mul_scalar(n as f64).mean()
    }
}

impl BatchLoss for RankgenLoss {
    type Constants<B: Backend> = ListOrders<B>;

    fn loss<B: Backend>(&self, z: Tensor<B, 2>, constants: &ListOrders<B>) -> LossOutput<B> {
        let losses: Vec<Tensor<B, 1>> = constants
            .lists
            .iter()
            .map(|(first, order)| {
                let n = order.dims()[0];
                self.list(z.clone().narrow(0, *first, n), order.clone())
            })
            .collect();
        let losses = Tensor::cat(losses, 0);
        LossOutput {
            loss: losses.clone().mean(),
            readings: vec![(LIST_LOSS, losses.detach())],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[n, n]` logits falling with the distance in the chain,
    /// `1000 - 100 |i - j|`.
    fn in_chain_order(n: usize) -> Vec<f64> {
        (0..n * n)
            .map(|k| 1000.0 - 100.0 * ((k / n) as f64 - (k % n) as f64).abs())
            .collect()
    }

    #[test]
    fn omega_zero_keeps_the_teacher_and_a_teacher_in_chain_order_is_kept() {
        let straight = in_chain_order(6);
        for sign in [RankSign::Chain, RankSign::Reference] {
            assert_eq!(ranking_targets(&straight, 6, 0.5, sign), straight);
        }
        let mut swapped = straight.clone();
        swapped.swap(2, 3);
        assert_eq!(ranking_targets(&swapped, 6, 0.0, RankSign::Chain), swapped);
    }

    /// The worked example of methods-extensions.md: where the teacher ranks
    /// item 3 of row 0 above item 2 by `d`, each moves `ln(1 + omega d)`
    /// towards its place, so the gap becomes `d - 2 ln(1 + omega d)`: at
    /// `omega = 0.5` it stays positive for every `d` (the swap shrinks,
    /// never flips); at `omega = 1` it turns for small `d`.
    #[test]
    fn an_adjacent_swap_shrinks_and_never_flips_at_omega_one_half() {
        let n = 6;
        for d in [1e-4, 0.01, 0.3, 1.0, 5.0, 40.0] {
            let mut a = in_chain_order(n);
            a[3] = a[2] + d;
            a[3 * n] = a[3];
            let y = ranking_targets(&a, n, 0.5, RankSign::Chain);
            let gap = y[3] - y[2];
            let expected = d - 2.0 * (0.5 * d).ln_1p();
            assert!((gap - expected).abs() < 1e-9, "d {d}: {gap} vs {expected}");
            assert!(gap > 0.0, "d {d}: flipped at omega 0.5");
            assert_eq!((y[2 * n], y[3 * n]), (y[2], y[3]), "mirrored");
            let rest: Vec<usize> = (0..n * n)
                .filter(|k| ![2, 3, 2 * n, 3 * n].contains(k))
                .collect();
            assert!(
                rest.iter().all(|&k| y[k] == a[k]),
                "only the swapped pair moves"
            );
            let y = ranking_targets(&a, n, 1.0, RankSign::Chain);
            if d < 1.0 {
                assert!(y[3] < y[2], "d {d}: not flipped at omega 1");
            }
        }
    }
}
