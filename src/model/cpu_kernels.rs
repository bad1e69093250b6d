//! Row and element kernels of the fused CPU layers ([`super::cpu_layer`]
//! for inference, [`super::cpu_train`] for training), in f32 or f64, spread
//! over the rayon pool in blocks; the matrix products go to ndarray's
//! `general_mat_mul` (OpenBLAS).

use std::fmt::Debug;
use std::iter::Sum;

use burn_ndarray::{FloatNdArrayElement, NdArrayTensor};
use ndarray::linalg::general_mat_mul;
use ndarray::{ArcArray, ArrayView2, ArrayViewMut2, IxDyn, LinalgScalar};
use num_traits::Float;
use rayon::prelude::*;

use super::config::HiddenAct;
use crate::rng::SplitMix64;

/// Element-wise work is handed to the pool in blocks of about this many
/// values.
pub(super) const BLOCK: usize = 1 << 14;

/// A float type the fused layers compute in: f32 (training and inference)
/// or f64 (the gradient checks).
pub trait Real:
    FloatNdArrayElement + LinalgScalar + Float + Sum + Send + Sync + Debug + 'static
{
    /// `v` in this type.
    fn of(v: f64) -> Self;
    /// The error function.
    fn erf(self) -> Self;
    /// The array behind a CPU tensor of this type (`None` for another type).
    fn array(tensor: NdArrayTensor) -> Option<ArcArray<Self, IxDyn>>;
}

impl Real for f32 {
    fn of(v: f64) -> Self {
        v as f32
    }

    fn erf(self) -> Self {
        erf_f32(self)
    }

    fn array(tensor: NdArrayTensor) -> Option<ArcArray<Self, IxDyn>> {
        match tensor {
            NdArrayTensor::F32(storage) => Some(storage.into_shared()),
            _ => None,
        }
    }
}

impl Real for f64 {
    fn of(v: f64) -> Self {
        v
    }

    fn erf(self) -> Self {
        libm::erf(self)
    }

    fn array(tensor: NdArrayTensor) -> Option<ArcArray<Self, IxDyn>> {
        match tensor {
            NdArrayTensor::F64(storage) => Some(storage.into_shared()),
            _ => None,
        }
    }
}

/// The error function in f32 without branches or calls, so that loops over
/// it vectorise: the odd/even rational approximation on [-4, 4] used by
/// Eigen and XLA (beyond 4, erf is 1 in f32).
fn erf_f32(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = -2.726_142_3e-10_f32;
    let p = p * x2 + 2.770_681_4e-8;
    let p = p * x2 - 2.101_024e-6;
    let p = p * x2 - 5.692_506_4e-5;
    let p = p * x2 - 7.349_906_3e-4;
    let p = p * x2 - 2.954_6e-3;
    let p = p * x2 - 1.609_603_3e-2;
    let q = -1.456_607_2e-5_f32;
    let q = q * x2 - 2.133_740_6e-4;
    let q = q * x2 - 1.682_827e-3;
    let q = q * x2 - 7.373_329_2e-3;
    let q = q * x2 - 1.426_473_9e-2;
    x * p / q
}

/// The tanh approximation's constant, `0.044715`.
const GELU_CUBIC: f64 = 0.044_715;

/// The activation at `x`.
pub(super) fn activation<T: Real>(act: HiddenAct, x: T) -> T {
    let half = T::of(0.5);
    match act {
        HiddenAct::Gelu => {
            half * x * (T::one() + (x * T::of(std::f64::consts::FRAC_1_SQRT_2)).erf())
        }
        HiddenAct::GeluTanh => {
            let u =
                T::of((2.0 / std::f64::consts::PI).sqrt()) * (x + T::of(GELU_CUBIC) * x * x * x);
            half * x * (T::one() + u.tanh())
        }
        HiddenAct::Relu => x.max(T::zero()),
    }
}

/// The activation's derivative at `x`, exact for every kind: for GELU
/// `Φ(x) + x φ(x)` (Burn 0.21's own GELU backward is the tanh
/// approximation's derivative).
pub(super) fn activation_grad<T: Real>(act: HiddenAct, x: T) -> T {
    let half = T::of(0.5);
    match act {
        HiddenAct::Gelu => {
            let cdf = half * (T::one() + (x * T::of(std::f64::consts::FRAC_1_SQRT_2)).erf());
            let pdf = (-half * x * x).exp() * T::of((2.0 * std::f64::consts::PI).sqrt().recip());
            cdf + x * pdf
        }
        HiddenAct::GeluTanh => {
            let c = T::of((2.0 / std::f64::consts::PI).sqrt());
            let t = (c * (x + T::of(GELU_CUBIC) * x * x * x)).tanh();
            let du = c * (T::one() + T::of(3.0 * GELU_CUBIC) * x * x);
            half * (T::one() + t) + half * x * (T::one() - t * t) * du
        }
        HiddenAct::Relu => {
            if x > T::zero() {
                T::one()
            } else {
                T::zero()
            }
        }
    }
}

/// Softmax of one row of scores in place, padded keys (`padding` true) given
/// probability 0 (Hugging Face adds the dtype's minimum there, which
/// underflows to the same 0).
pub(super) fn masked_softmax<T: Real>(row: &mut [T], padding: &[bool]) {
    let max = row
        .iter()
        .zip(padding)
        .filter(|(_, &pad)| !pad)
        .fold(T::neg_infinity(), |m, (&v, _)| m.max(v));
    let mut sum = T::zero();
    for (v, &pad) in row.iter_mut().zip(padding) {
        *v = if pad { T::zero() } else { (*v - max).exp() };
        sum = sum + *v;
    }
    if sum > T::zero() {
        let inv = sum.recip();
        row.iter_mut().for_each(|v| *v = *v * inv);
    }
}

/// Standardises one row in place (`(v - mean) / sqrt(var + eps)`, biased
/// variance, as Hugging Face and Burn normalise) and returns
/// `1 / sqrt(var + eps)`. A row whose variance overflows the type has no
/// meaningful norm: it becomes NaN (a diverged run's weights), which the
/// trainer's divergence check sees, rather than a silent scale of 0.
pub(super) fn standardise<T: Real>(row: &mut [T], eps: T) -> T {
    let n = T::of(row.len() as f64);
    let mean = row.iter().copied().sum::<T>() / n;
    let var = row.iter().map(|&v| (v - mean) * (v - mean)).sum::<T>() / n;
    let rstd = if var.is_finite() {
        (var + eps).sqrt().recip()
    } else {
        T::nan()
    };
    row.iter_mut().for_each(|v| *v = (*v - mean) * rstd);
    rstd
}

/// Rows per block of `width`-wide rows.
pub(super) fn row_block(width: usize) -> usize {
    (BLOCK / width.max(1)).max(1)
}

/// `out = alpha a b + beta out` (shapes `[m, k] [k, n] → [m, n]`).
pub(super) fn gemm<T: Real>(
    alpha: T,
    a: &ArrayView2<'_, T>,
    b: &ArrayView2<'_, T>,
    beta: T,
    out: &mut ArrayViewMut2<'_, T>,
) {
    general_mat_mul(alpha, a, b, beta, out);
}

/// The sums of the columns of `x` (rows `width` long).
pub(super) fn column_sums<T: Real>(x: &[T], width: usize) -> Vec<T> {
    x.par_chunks(width * row_block(width))
        .map(|block| {
            let mut sums = vec![T::zero(); width];
            for row in block.chunks(width) {
                sums.iter_mut().zip(row).for_each(|(s, &v)| *s = *s + v);
            }
            sums
        })
        .reduce(
            || vec![T::zero(); width],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(s, v)| *s = *s + v);
                a
            },
        )
}

/// A dropout mask of `len` values: 0 with probability `prob`, else
/// `1 / (1 - prob)`, from `seed` alone (each block of the mask has its own
/// stream, so the pool's scheduling does not change it). `None` when
/// `prob` is 0.
pub(super) fn keep_mask<T: Real>(len: usize, prob: f64, seed: u64) -> Option<Vec<T>> {
    if prob <= 0.0 {
        return None;
    }
    let scale = T::of(1.0 / (1.0 - prob));
    let threshold = (prob * 4_294_967_296.0).min(u32::MAX as f64) as u64;
    let mut mask = vec![T::zero(); len];
    mask.par_chunks_mut(BLOCK)
        .enumerate()
        .for_each(|(b, block)| {
            let mut rng = SplitMix64::derived(seed, &[b as u64]);
            for pair in block.chunks_mut(2) {
                let bits = rng.next_u64();
                for (i, v) in pair.iter_mut().enumerate() {
                    let draw = (bits >> (32 * i)) & 0xFFFF_FFFF;
                    *v = if draw < threshold { T::zero() } else { scale };
                }
            }
        });
    Some(mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// erf by its Maclaurin series in f64 (terms up to x^201; at |x| = 4.5
    /// the largest term is ~1e8, so about 1e-8 survives the cancellation).
    fn erf_series(x: f64) -> f64 {
        let mut term = x;
        let mut sum = x;
        for n in 1..100 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn erf_is_within_a_few_ulp_of_the_series_on_minus_5_to_5() {
        let mut worst = 0.0f64;
        let mut worst64 = 0.0f64;
        for i in -5000..=5000 {
            let x = i as f64 / 1000.0;
            let exact = if x.abs() > 4.5 {
                x.signum()
            } else {
                erf_series(x)
            };
            worst = worst.max((Real::erf(x as f32) as f64 - exact).abs());
            worst64 = worst64.max((Real::erf(x) - exact).abs());
        }
        assert!(worst < 1e-6, "largest f32 error {worst}");
        assert!(worst64 < 1e-7, "largest f64 error {worst64}");
    }

    #[test]
    fn activation_gradients_match_central_differences() {
        for act in [HiddenAct::Gelu, HiddenAct::GeluTanh, HiddenAct::Relu] {
            for i in -60..=60 {
                let x = i as f64 / 10.0 + 0.013;
                let h = 1e-6;
                let numeric = (activation(act, x + h) - activation(act, x - h)) / (2.0 * h);
                let exact = activation_grad(act, x);
                assert!(
                    (numeric - exact).abs() < 1e-8,
                    "{act:?} at {x}: {exact} vs {numeric}"
                );
            }
        }
        // The tanh approximation's derivative is not GELU's: at 1.5 they
        // differ in the fourth decimal.
        let gap = activation_grad(HiddenAct::Gelu, 1.5) - activation_grad(HiddenAct::GeluTanh, 1.5);
        assert!(gap.abs() > 1e-4, "{gap}");
    }

    #[test]
    fn a_row_whose_variance_overflows_becomes_nan() {
        let mut row = [1e30f32, -1e30, 3.0];
        assert!(standardise(&mut row, 1e-12).is_nan());
        assert!(row.iter().all(|v| v.is_nan()));
        let mut row = [1.0f32, 3.0];
        assert_eq!(standardise(&mut row, 0.0), 1.0);
        assert_eq!(row, [-1.0, 1.0]);
    }

    #[test]
    fn masked_softmax_gives_padding_zero_and_sums_to_one() {
        let mut row = [1.0f32, 3.0, 1000.0, -2.0];
        masked_softmax(&mut row, &[false, false, true, false]);
        assert_eq!(row[2], 0.0);
        let z = 1f32.exp() + 3f32.exp() + (-2f32).exp();
        for (got, want) in [row[0], row[1], row[3]].iter().zip([1f32, 3.0, -2.0]) {
            assert!((got - want.exp() / z).abs() < 1e-6);
        }
    }

    #[test]
    fn keep_masks_drop_at_the_rate_asked_and_depend_on_the_seed_alone() {
        let len = 3 * BLOCK + 17;
        let a = keep_mask::<f32>(len, 0.1, 7).unwrap();
        let dropped = a.iter().filter(|&&v| v == 0.0).count() as f64 / len as f64;
        assert!((dropped - 0.1).abs() < 0.01, "{dropped}");
        assert!(a.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.9).abs() < 1e-6));
        assert_eq!(a, keep_mask::<f32>(len, 0.1, 7).unwrap());
        assert_ne!(a, keep_mask::<f32>(len, 0.1, 8).unwrap());
        assert!(keep_mask::<f32>(len, 0.0, 7).is_none());
    }
}
