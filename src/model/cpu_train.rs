//! The training pass of a transformer layer on the autodiff CPU backend
//! (`Autodiff<NdArray>`, f32; f64 for the gradient checks) as one node of
//! Burn's graph, with a hand-written backward.
//!
//! Burn's generic layer is some sixty autodiff nodes, each element-wise one
//! a fresh array computed on one core. Here the forward is the inference
//! layer's ([`super::cpu_layer`]) plus dropout and what the backward reads,
//! and the backward is, per layer, twelve matrix products (ndarray's
//! `general_mat_mul`, i.e. OpenBLAS), the attention core per sentence, and
//! one pass each for the two layer norms, the activation's derivative and
//! the column sums of the bias gradients, over the rayon pool. The GELU
//! derivative is the exact one.
//!
//! Dropout masks come from one seed drawn from the backend's generator per
//! forward call (so `B::seed` still decides them, as the GradCache passes and
//! `--resume` need), split by layer and mask, not from Burn's `Dropout`.

use std::any::Any;
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Bool, Distribution, Tensor, TensorPrimitive};
use burn_ndarray::{NdArray, NdArrayTensor, SharedArray};
use ndarray::{s, ArcArray, ArrayView1, ArrayView2, ArrayViewMut2, IxDyn};
use rayon::prelude::*;

use super::config::HiddenAct;
use super::cpu_kernels::{
    activation, activation_grad, column_sums, gemm, keep_mask, masked_softmax, row_block,
    standardise, Real, BLOCK,
};
use super::cpu_layer::LayerWeights;
use crate::rng::SplitMix64;

type Ad<T> = Autodiff<NdArray<T>>;

/// The tensors a layer node reads, in the order of its parents: the input,
/// then the parameters.
const X: usize = 0;
const WQ: usize = 1;
const BQ: usize = 2;
const WK: usize = 3;
const BK: usize = 4;
const WV: usize = 5;
const BV: usize = 6;
const WO: usize = 7;
const BO: usize = 8;
const GAMMA1: usize = 9;
const BETA1: usize = 10;
const W1: usize = 11;
const B1: usize = 12;
const W2: usize = 13;
const B2: usize = 14;
const GAMMA2: usize = 15;
const BETA2: usize = 16;
const PARENTS: usize = 17;

/// The fused training pass of one forward call: the padding of its batch,
/// read once, and the seed of its dropout masks.
pub struct CpuTrainPass {
    /// `[batch * seq]`, true at padding.
    padding: Vec<bool>,
    seed: u64,
}

impl CpuTrainPass {
    /// `Some` when `x` (`[batch, seq, hidden]`) lives on the autodiff CPU
    /// backend in f32 or f64; `padding` is `[batch, seq]`, true at padding.
    /// Draws the seed of this call's dropout masks from the backend's
    /// generator.
    pub fn new<B: Backend>(x: &Tensor<B, 3>, padding: &Tensor<B, 2, Bool>) -> Option<Self> {
        let primitive: Box<dyn Any> = Box::new(x.clone().into_primitive().tensor());
        if !(primitive.is::<FloatTensor<Ad<f32>>>() || primitive.is::<FloatTensor<Ad<f64>>>()) {
            return None;
        }
        let padding = padding.to_data().to_vec::<bool>().ok()?;
        let draw = Tensor::<B, 1>::random([2], Distribution::Default, &x.device())
            .into_data()
            .convert::<f64>()
            .to_vec::<f64>()
            .ok()?;
        let bits = |v: f64| (v * 4_294_967_296.0) as u64 & 0xFFFF_FFFF;
        Some(Self {
            padding,
            seed: bits(draw[0]) << 32 | bits(draw[1]),
        })
    }

    /// Layer `index` of the stack on `x` (`[batch, seq, hidden]`), as the
    /// generic layer computes it, dropout included: `[batch, seq, hidden]`,
    /// or with `first_only` `[batch, 1, hidden]`. `None` if a weight is
    /// missing or not on the same backend.
    pub(super) fn layer<B: Backend>(
        &self,
        w: &LayerWeights<'_, B>,
        x: &Tensor<B, 3>,
        first_only: bool,
        index: usize,
    ) -> Option<Tensor<B, 3>> {
        let seed = SplitMix64::derived(self.seed, &[index as u64]).next_u64();
        typed::<B, f32>(w, x, &self.padding, first_only, seed)
            .or_else(|| typed::<B, f64>(w, x, &self.padding, first_only, seed))
    }
}

/// `tensor` as an autodiff CPU tensor of `T`.
fn autodiff<B: Backend, T: Real, const D: usize>(tensor: Tensor<B, D>) -> Option<FloatTensor<Ad<T>>>
where
    NdArrayTensor: From<SharedArray<T>>,
{
    let primitive: Box<dyn Any> = Box::new(tensor.into_primitive().tensor());
    primitive.downcast::<FloatTensor<Ad<T>>>().ok().map(|t| *t)
}

/// A linear layer's weight and bias (which BERT layers always have).
fn linear<B: Backend, T: Real>(linear: &Linear<B>) -> Option<[FloatTensor<Ad<T>>; 2]>
where
    NdArrayTensor: From<SharedArray<T>>,
{
    Some([
        autodiff::<B, T, 2>(linear.weight.val())?,
        autodiff::<B, T, 1>(linear.bias.as_ref()?.val())?,
    ])
}

/// A layer norm's scale and shift.
fn norm<B: Backend, T: Real>(norm: &LayerNorm<B>) -> Option<[FloatTensor<Ad<T>>; 2]>
where
    NdArrayTensor: From<SharedArray<T>>,
{
    Some([
        autodiff::<B, T, 1>(norm.gamma.val())?,
        autodiff::<B, T, 1>(norm.beta.as_ref()?.val())?,
    ])
}

/// `array` in row-major order (a copy only if it is not already).
fn standard<T: Real>(array: ArcArray<T, IxDyn>) -> ArcArray<T, IxDyn> {
    if array.is_standard_layout() {
        array
    } else {
        array.as_standard_layout().into_owned().into_shared()
    }
}

/// The layer on `Autodiff<NdArray<T>>`: `None` when `x` or a weight is
/// not there, or the shapes do not fit a layer.
fn typed<B: Backend, T: Real>(
    w: &LayerWeights<'_, B>,
    x: &Tensor<B, 3>,
    padding: &[bool],
    first_only: bool,
    seed: u64,
) -> Option<Tensor<B, 3>>
where
    NdArrayTensor: From<SharedArray<T>>,
{
    let [batch, seq, hidden] = x.dims();
    let mut tensors = vec![autodiff::<B, T, 3>(x.clone())?];
    for pair in [
        linear(w.query)?,
        linear(w.key)?,
        linear(w.value)?,
        linear(w.output)?,
        norm(w.attention_norm)?,
        linear(w.ffn_in)?,
        linear(w.ffn_out)?,
        norm(w.ffn_norm)?,
    ] {
        tensors.extend(pair);
    }
    let tensors: [FloatTensor<Ad<T>>; PARENTS] = tensors.try_into().ok()?;
    let arrays = tensors
        .iter()
        .map(|t| T::array(t.primitive.clone()).map(standard))
        .collect::<Option<Vec<_>>>()?;
    let inner = arrays[B1].len();
    let dims = Dims {
        batch,
        seq,
        q_len: if first_only { 1 } else { seq },
        hidden,
        heads: w.num_heads,
        inner,
        eps: w.layer_norm_eps,
        activation: w.activation,
        hidden_dropout: w.hidden_dropout,
        attention_dropout: w.attention_dropout,
    };
    let params = Params { arrays };
    if padding.len() != batch * seq || !dims.fits(&params) {
        return None;
    }
    let (y, saved) = forward(dims, params, padding, seed);
    let y = ArcArray::from_shape_vec(IxDyn(&[batch, dims.q_len, hidden]), y).ok()?;
    let nodes = tensors.map(|t| t.node);
    let output = match LayerNode::<T>(PhantomData)
        .prepare::<NoCheckpointing>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(Arc::new(saved), NdArrayTensor::from(y)),
        OpsKind::UnTracked(prep) => prep.finish(NdArrayTensor::from(y)),
    };
    let primitive: Box<dyn Any> = Box::new(output);
    let primitive = *primitive.downcast::<B::FloatTensorPrimitive>().ok()?;
    Some(Tensor::from_primitive(TensorPrimitive::Float(primitive)))
}

/// Shapes and constants of one layer call.
#[derive(Debug, Clone, Copy)]
struct Dims {
    batch: usize,
    seq: usize,
    /// `seq`, or 1 when only position 0 is computed.
    q_len: usize,
    hidden: usize,
    heads: usize,
    inner: usize,
    eps: f64,
    activation: HiddenAct,
    hidden_dropout: f64,
    attention_dropout: f64,
}

impl Dims {
    /// `batch * seq`: the rows of keys and values.
    fn tokens(&self) -> usize {
        self.batch * self.seq
    }

    /// `batch * q_len`: the rows computed past attention.
    fn rows(&self) -> usize {
        self.batch * self.q_len
    }

    /// One head's width.
    fn width(&self) -> usize {
        self.hidden / self.heads
    }

    /// The attention probabilities of one sentence: `[heads, q_len, seq]`.
    fn per_sentence(&self) -> usize {
        self.heads * self.q_len * self.seq
    }

    /// The shape of every parent: the input, then the parameters.
    fn shapes(&self) -> [Vec<usize>; PARENTS] {
        let (h, i) = (self.hidden, self.inner);
        [
            vec![self.batch, self.seq, h],
            vec![h, h],
            vec![h],
            vec![h, h],
            vec![h],
            vec![h, h],
            vec![h],
            vec![h, h],
            vec![h],
            vec![h],
            vec![h],
            vec![h, i],
            vec![i],
            vec![i, h],
            vec![h],
            vec![h],
            vec![h],
        ]
    }

    /// Whether every parent has the shape these dimensions ask for.
    fn fits<T: Real>(&self, params: &Params<T>) -> bool {
        self.heads > 0
            && self.hidden % self.heads == 0
            && params
                .arrays
                .iter()
                .zip(self.shapes())
                .all(|(array, shape)| array.shape() == shape)
    }
}

/// The input and parameters, row-major, in the order of the node's parents.
#[derive(Clone)]
struct Params<T> {
    arrays: Vec<ArcArray<T, IxDyn>>,
}

impl<T: Real> Params<T> {
    fn slice(&self, index: usize) -> &[T] {
        self.arrays[index]
            .as_slice()
            .expect("row-major by construction")
    }

    /// Parameter `index`, `[rows, cols]`.
    fn matrix(&self, index: usize) -> ArrayView2<'_, T> {
        let shape = self.arrays[index].shape();
        view(self.slice(index), shape[0], shape[1])
    }
}

/// What the backward pass reads, kept by the forward.
struct Saved<T> {
    dims: Dims,
    params: Params<T>,
    /// `[rows, hidden]`: the queries.
    q: Vec<T>,
    /// `[tokens, 2 * hidden]`: keys and values side by side.
    kv: Vec<T>,
    /// `[batch, heads, q_len, seq]`: attention probabilities before dropout.
    probs: Vec<T>,
    /// Their dropout mask (0 or `1 / (1 - p)`), if any.
    attention_keep: Option<Vec<T>>,
    /// `[rows, hidden]`: attention's context, heads side by side.
    context: Vec<T>,
    /// The attention block's end: its output is the first norm's.
    attention_out: NormOut<T>,
    /// `[rows, inner]`: the feed-forward before and after the activation.
    f1: Vec<T>,
    g: Vec<T>,
    /// The feed-forward block's end (its `y`, the layer's output, is handed
    /// on and not kept).
    ffn_out: NormOut<T>,
}

impl<T> fmt::Debug for Saved<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Saved").field("dims", &self.dims).finish()
    }
}

/// The end of a post-LN block, `y = norm(residual + keep ⊙ (x w + bias))`,
/// as its backward reads it.
struct NormOut<T> {
    /// `[rows, hidden]`: the dropout mask (0 or `1 / (1 - p)`), if any.
    keep: Option<Vec<T>>,
    /// `[rows, hidden]`: the norm's standardised input, and `[rows]` its
    /// `1 / std`.
    xhat: Vec<T>,
    rstd: Vec<T>,
    /// `[rows, hidden]`: the norm's output.
    y: Vec<T>,
}

/// Parameter indices of a block end: weight, bias, norm scale, norm shift.
type BlockParams = [usize; 4];
const ATTENTION_OUT: BlockParams = [WO, BO, GAMMA1, BETA1];
const FFN_OUT: BlockParams = [W2, B2, GAMMA2, BETA2];

impl<T: Real> NormOut<T> {
    /// The block end on `x` (`[rows, d_in]`) with the masks of `seed`.
    fn forward(
        p: &Params<T>,
        [w, bias, gamma, beta]: BlockParams,
        x: &ArrayView2<'_, T>,
        residual: &[T],
        dims: &Dims,
        seed: u64,
    ) -> Self {
        let (rows, h) = (x.dim().0, dims.hidden);
        let mut xhat = vec![T::zero(); rows * h];
        gemm(
            T::one(),
            x,
            &p.matrix(w),
            T::zero(),
            &mut view_mut(&mut xhat, rows, h),
        );
        let keep = keep_mask(rows * h, dims.hidden_dropout, seed);
        let (mut rstd, mut y) = (vec![T::zero(); rows], vec![T::zero(); rows * h]);
        add_norm(
            &mut xhat,
            p.slice(bias),
            keep.as_deref(),
            residual,
            p.slice(gamma),
            p.slice(beta),
            dims.eps,
            &mut rstd,
            &mut y,
        );
        Self {
            keep,
            xhat,
            rstd,
            y,
        }
    }

    /// From the gradient of `y`: the gradient of the residual (the norm's
    /// input), of `x w + bias` (through the mask), and of γ and β.
    fn backward(&self, dy: &[T], gamma: &[T]) -> BlockGrads<T> {
        let mut residual = vec![T::zero(); dy.len()];
        let (gamma, beta) = norm_backward(dy, &self.xhat, &self.rstd, gamma, &mut residual);
        let product = match &self.keep {
            Some(keep) => residual
                .par_iter()
                .zip(keep)
                .map(|(&v, &k)| v * k)
                .collect(),
            None => residual.clone(),
        };
        BlockGrads {
            residual,
            product,
            gamma,
            beta,
        }
    }
}

/// The gradients [`NormOut::backward`] gives.
struct BlockGrads<T> {
    residual: Vec<T>,
    product: Vec<T>,
    gamma: Vec<T>,
    beta: Vec<T>,
}

/// `data` as a `[rows, cols]` matrix.
fn view<T>(data: &[T], rows: usize, cols: usize) -> ArrayView2<'_, T> {
    ArrayView2::from_shape((rows, cols), data).expect("sized by construction")
}

/// `data` as a mutable `[rows, cols]` matrix.
fn view_mut<T>(data: &mut [T], rows: usize, cols: usize) -> ArrayViewMut2<'_, T> {
    ArrayViewMut2::from_shape((rows, cols), data).expect("sized by construction")
}

/// The rows of `x` (`[tokens, hidden]`) that carry queries: all of them,
/// or position 0 of each sentence.
fn query_rows<'a, T: Real>(x: &'a [T], dims: &Dims) -> Cow<'a, [T]> {
    if dims.q_len == dims.seq {
        return Cow::Borrowed(x);
    }
    let h = dims.hidden;
    Cow::Owned(
        x.chunks(dims.seq * h)
            .flat_map(|sentence| &sentence[..h])
            .copied()
            .collect(),
    )
}

/// `out = x w + bias` for `x` `[rows, d_in]`, `w` `[d_in, d_out]`.
fn affine<T: Real>(
    x: &ArrayView2<'_, T>,
    w: &ArrayView2<'_, T>,
    bias: &[T],
    out: &mut ArrayViewMut2<'_, T>,
) {
    let bias = ArrayView1::from(bias);
    out.rows_mut()
        .into_iter()
        .for_each(|mut row| row.assign(&bias));
    gemm(T::one(), x, w, T::one(), out);
}

/// The post-LN block's end, row by row in place: `z = residual + keep ⊙
/// (x + bias)`, standardised into `x` (x̂) with `rstd` = 1 / std, and `y =
/// x̂ γ + β`.
#[allow(clippy::too_many_arguments)]
fn add_norm<T: Real>(
    x: &mut [T],
    bias: &[T],
    keep: Option<&[T]>,
    residual: &[T],
    gamma: &[T],
    beta: &[T],
    eps: f64,
    rstd: &mut [T],
    y: &mut [T],
) {
    let width = gamma.len();
    let rows = row_block(width);
    let eps = T::of(eps);
    x.par_chunks_mut(width * rows)
        .zip(y.par_chunks_mut(width * rows))
        .zip(rstd.par_chunks_mut(rows))
        .enumerate()
        .for_each(|(block, ((x, y), rstd))| {
            let start = block * width * rows;
            for (i, (row, out)) in x.chunks_mut(width).zip(y.chunks_mut(width)).enumerate() {
                let at = start + i * width;
                let residual = &residual[at..at + width];
                match keep {
                    Some(keep) => {
                        let keep = &keep[at..at + width];
                        for j in 0..width {
                            row[j] = residual[j] + keep[j] * (row[j] + bias[j]);
                        }
                    }
                    None => {
                        for j in 0..width {
                            row[j] = residual[j] + row[j] + bias[j];
                        }
                    }
                }
                rstd[i] = standardise(row, eps);
                for j in 0..width {
                    out[j] = row[j] * gamma[j] + beta[j];
                }
            }
        });
}

/// The backward of [`add_norm`]'s norm: `dz = rstd (dy γ - mean(dy γ) - x̂
/// mean(dy γ x̂))` row by row into `dz`; returns (dγ, dβ), the column sums of
/// `dy x̂` and `dy`.
fn norm_backward<T: Real>(
    dy: &[T],
    xhat: &[T],
    rstd: &[T],
    gamma: &[T],
    dz: &mut [T],
) -> (Vec<T>, Vec<T>) {
    let width = gamma.len();
    let rows = row_block(width);
    let n = T::of(width as f64);
    let zeros = || (vec![T::zero(); width], vec![T::zero(); width]);
    dz.par_chunks_mut(width * rows)
        .zip(dy.par_chunks(width * rows))
        .zip(xhat.par_chunks(width * rows))
        .zip(rstd.par_chunks(rows))
        .map(|(((dz, dy), xhat), rstd)| {
            let (mut dgamma, mut dbeta) = zeros();
            for (((dz, dy), xhat), &rstd) in dz
                .chunks_mut(width)
                .zip(dy.chunks(width))
                .zip(xhat.chunks(width))
                .zip(rstd)
            {
                let (mut mean_g, mut mean_gx) = (T::zero(), T::zero());
                for j in 0..width {
                    let g = dy[j] * gamma[j];
                    mean_g = mean_g + g;
                    mean_gx = mean_gx + g * xhat[j];
                    dgamma[j] = dgamma[j] + dy[j] * xhat[j];
                    dbeta[j] = dbeta[j] + dy[j];
                }
                let (mean_g, mean_gx) = (mean_g / n, mean_gx / n);
                for j in 0..width {
                    dz[j] = rstd * (dy[j] * gamma[j] - mean_g - xhat[j] * mean_gx);
                }
            }
            (dgamma, dbeta)
        })
        .reduce(zeros, |(mut ga, mut ba), (gb, bb)| {
            ga.iter_mut().zip(gb).for_each(|(a, b)| *a = *a + b);
            ba.iter_mut().zip(bb).for_each(|(a, b)| *a = *a + b);
            (ga, ba)
        })
}

/// The layer's forward: its output (`[rows, hidden]`) and what the backward
/// reads.
fn forward<T: Real>(
    dims: Dims,
    params: Params<T>,
    padding: &[bool],
    seed: u64,
) -> (Vec<T>, Saved<T>) {
    let (n, r, h, inner) = (dims.tokens(), dims.rows(), dims.hidden, dims.inner);
    let p = &params;
    let x = p.slice(X);
    let xq = query_rows(x, &dims);
    let mut rng = SplitMix64::new(seed);

    let mut q = vec![T::zero(); r * h];
    affine(
        &view(&xq, r, h),
        &p.matrix(WQ),
        p.slice(BQ),
        &mut view_mut(&mut q, r, h),
    );
    let mut kv = vec![T::zero(); n * 2 * h];
    {
        let x = view(x, n, h);
        let mut kv = view_mut(&mut kv, n, 2 * h);
        affine(
            &x,
            &p.matrix(WK),
            p.slice(BK),
            &mut kv.slice_mut(s![.., ..h]),
        );
        affine(
            &x,
            &p.matrix(WV),
            p.slice(BV),
            &mut kv.slice_mut(s![.., h..]),
        );
    }
    let attention_keep = keep_mask(
        dims.batch * dims.per_sentence(),
        dims.attention_dropout,
        rng.next_u64(),
    );
    let mut probs = vec![T::zero(); dims.batch * dims.per_sentence()];
    let mut context = vec![T::zero(); r * h];
    attention(
        &dims,
        &q,
        &kv,
        padding,
        attention_keep.as_deref(),
        &mut probs,
        &mut context,
    );

    let attention_out = NormOut::forward(
        p,
        ATTENTION_OUT,
        &view(&context, r, h),
        &xq,
        &dims,
        rng.next_u64(),
    );
    let y1 = &attention_out.y;
    let mut f1 = vec![T::zero(); r * inner];
    affine(
        &view(y1, r, h),
        &p.matrix(W1),
        p.slice(B1),
        &mut view_mut(&mut f1, r, inner),
    );
    let g: Vec<T> = f1
        .par_iter()
        .map(|&v| activation(dims.activation, v))
        .collect();
    let mut ffn_out = NormOut::forward(p, FFN_OUT, &view(&g, r, inner), y1, &dims, rng.next_u64());
    let y = std::mem::take(&mut ffn_out.y);
    drop(xq);

    let saved = Saved {
        dims,
        params,
        q,
        kv,
        probs,
        attention_keep,
        context,
        attention_out,
        f1,
        g,
        ffn_out,
    };
    (y, saved)
}

/// Scaled dot-product attention of `q` (`[rows, hidden]`) over the keys and
/// values in `kv` (`[tokens, 2 hidden]`), padded keys masked out: the
/// probabilities go to `probs` (`[batch, heads, q_len, seq]`, before
/// dropout), the context, through the dropout mask `keep` if any, to
/// `context` (`[rows, hidden]`).
fn attention<T: Real>(
    dims: &Dims,
    q: &[T],
    kv: &[T],
    padding: &[bool],
    keep: Option<&[T]>,
    probs: &mut [T],
    context: &mut [T],
) {
    let (h, w, q_len, seq) = (dims.hidden, dims.width(), dims.q_len, dims.seq);
    let scale = T::of((w as f64).sqrt().recip());
    let q = view(q, dims.rows(), h);
    let kv = view(kv, dims.tokens(), 2 * h);
    let per = dims.per_sentence();
    context
        .par_chunks_mut(q_len * h)
        .zip(probs.par_chunks_mut(per))
        .enumerate()
        .for_each(|(b, (context, probs))| {
            let mut context = view_mut(context, q_len, h);
            let padding = &padding[b * seq..(b + 1) * seq];
            let mut dropped = vec![T::zero(); if keep.is_some() { q_len * seq } else { 0 }];
            for head in 0..dims.heads {
                let columns = head * w..(head + 1) * w;
                let qh = q.slice(s![b * q_len..(b + 1) * q_len, columns.clone()]);
                let kh = kv.slice(s![b * seq..(b + 1) * seq, columns.clone()]);
                let vh = kv.slice(s![b * seq..(b + 1) * seq, h + head * w..h + (head + 1) * w]);
                let p = &mut probs[head * q_len * seq..(head + 1) * q_len * seq];
                gemm(scale, &qh, &kh.t(), T::zero(), &mut view_mut(p, q_len, seq));
                p.chunks_mut(seq)
                    .for_each(|row| masked_softmax(row, padding));
                let used: &[T] = match keep {
                    Some(keep) => {
                        let keep = &keep[b * per + head * q_len * seq..][..q_len * seq];
                        dropped
                            .iter_mut()
                            .zip(p.iter().zip(keep))
                            .for_each(|(d, (&p, &k))| *d = p * k);
                        &dropped
                    }
                    None => p,
                };
                gemm(
                    T::one(),
                    &view(used, q_len, seq),
                    &vh,
                    T::zero(),
                    &mut context.slice_mut(s![.., columns]),
                );
            }
        });
}

/// The backward of [`attention`]: from `dcontext` (`[rows, hidden]`) the
/// gradients of the queries into `dq` (`[rows, hidden]`) and of the keys and
/// values into `dkv` (`[tokens, 2 hidden]`).
fn attention_backward<T: Real>(saved: &Saved<T>, dcontext: &[T], dq: &mut [T], dkv: &mut [T]) {
    let dims = &saved.dims;
    let (h, w, q_len, seq) = (dims.hidden, dims.width(), dims.q_len, dims.seq);
    let scale = T::of((w as f64).sqrt().recip());
    let q = view(&saved.q, dims.rows(), h);
    let kv = view(&saved.kv, dims.tokens(), 2 * h);
    let dcontext = view(dcontext, dims.rows(), h);
    let per = dims.per_sentence();
    dq.par_chunks_mut(q_len * h)
        .zip(dkv.par_chunks_mut(seq * 2 * h))
        .enumerate()
        .for_each(|(b, (dq, dkv))| {
            let mut dq = view_mut(dq, q_len, h);
            let mut dkv = view_mut(dkv, seq, 2 * h);
            let mut dp = vec![T::zero(); q_len * seq];
            let mut dropped = vec![
                T::zero();
                if saved.attention_keep.is_some() {
                    q_len * seq
                } else {
                    0
                }
            ];
            for head in 0..dims.heads {
                let columns = head * w..(head + 1) * w;
                let values = h + head * w..h + (head + 1) * w;
                let qh = q.slice(s![b * q_len..(b + 1) * q_len, columns.clone()]);
                let kh = kv.slice(s![b * seq..(b + 1) * seq, columns.clone()]);
                let vh = kv.slice(s![b * seq..(b + 1) * seq, values.clone()]);
                let dch = dcontext.slice(s![b * q_len..(b + 1) * q_len, columns.clone()]);
                let range = b * per + head * q_len * seq..b * per + (head + 1) * q_len * seq;
                let probs = &saved.probs[range.clone()];
                let keep = saved.attention_keep.as_ref().map(|keep| &keep[range]);
                gemm(
                    T::one(),
                    &dch,
                    &vh.t(),
                    T::zero(),
                    &mut view_mut(&mut dp, q_len, seq),
                );
                let used: &[T] = match keep {
                    Some(keep) => {
                        dropped
                            .iter_mut()
                            .zip(probs.iter().zip(keep))
                            .for_each(|(d, (&p, &k))| *d = p * k);
                        &dropped
                    }
                    None => probs,
                };
                gemm(
                    T::one(),
                    &view(used, q_len, seq).t(),
                    &dch,
                    T::zero(),
                    &mut dkv.slice_mut(s![.., values]),
                );
                for (i, (row, p)) in dp.chunks_mut(seq).zip(probs.chunks(seq)).enumerate() {
                    if let Some(keep) = keep {
                        row.iter_mut()
                            .zip(&keep[i * seq..(i + 1) * seq])
                            .for_each(|(d, &k)| *d = *d * k);
                    }
                    let dot = row.iter().zip(p).map(|(&d, &p)| d * p).sum::<T>();
                    row.iter_mut()
                        .zip(p)
                        .for_each(|(d, &p)| *d = p * (*d - dot) * scale);
                }
                let ds = view(&dp, q_len, seq);
                gemm(
                    T::one(),
                    &ds,
                    &kh,
                    T::zero(),
                    &mut dq.slice_mut(s![.., columns.clone()]),
                );
                gemm(
                    T::one(),
                    &ds.t(),
                    &qh,
                    T::zero(),
                    &mut dkv.slice_mut(s![.., columns]),
                );
            }
        });
}

/// `a += b` element-wise over the pool.
fn add_into<T: Real>(a: &mut [T], b: &[T]) {
    a.par_chunks_mut(BLOCK)
        .zip(b.par_chunks(BLOCK))
        .for_each(|(a, b)| a.iter_mut().zip(b).for_each(|(a, &b)| *a = *a + b));
}

/// `aᵀ b` for `a` `[rows, m]`, `b` `[rows, n]`: a weight's gradient.
fn weight_grad<T: Real>(a: &ArrayView2<'_, T>, b: &ArrayView2<'_, T>) -> Vec<T> {
    let (m, n) = (a.dim().1, b.dim().1);
    let mut out = vec![T::zero(); m * n];
    gemm(
        T::one(),
        &a.t(),
        b,
        T::zero(),
        &mut view_mut(&mut out, m, n),
    );
    out
}

/// `dy wᵀ (+ beta out)` into `out`: a product's input gradient.
fn input_grad<T: Real>(
    dy: &ArrayView2<'_, T>,
    w: &ArrayView2<'_, T>,
    beta: T,
    out: &mut ArrayViewMut2<'_, T>,
) {
    gemm(T::one(), dy, &w.t(), beta, out);
}

/// The layer's backward from the gradient of its output (`[rows,
/// hidden]`): the gradient of every parent, in their order.
fn backward<T: Real>(saved: &Saved<T>, dy: &[T]) -> Vec<Vec<T>> {
    let dims = &saved.dims;
    let p = &saved.params;
    let (n, r, h, inner) = (dims.tokens(), dims.rows(), dims.hidden, dims.inner);

    let ffn = saved.ffn_out.backward(dy, p.slice(GAMMA2));
    let db2 = column_sums(&ffn.product, h);
    let df2 = view(&ffn.product, r, h);
    let dw2 = weight_grad(&view(&saved.g, r, inner), &df2);
    let mut df1 = vec![T::zero(); r * inner];
    input_grad(
        &df2,
        &p.matrix(W2),
        T::zero(),
        &mut view_mut(&mut df1, r, inner),
    );
    df1.par_chunks_mut(BLOCK)
        .zip(saved.f1.par_chunks(BLOCK))
        .for_each(|(d, f)| {
            d.iter_mut()
                .zip(f)
                .for_each(|(d, &f)| *d = *d * activation_grad(dims.activation, f))
        });
    let db1 = column_sums(&df1, inner);
    let df1 = view(&df1, r, inner);
    let dw1 = weight_grad(&view(&saved.attention_out.y, r, h), &df1);
    let mut dy1 = ffn.residual;
    input_grad(&df1, &p.matrix(W1), T::one(), &mut view_mut(&mut dy1, r, h));

    let attention = saved.attention_out.backward(&dy1, p.slice(GAMMA1));
    let dbo = column_sums(&attention.product, h);
    let da = view(&attention.product, r, h);
    let dwo = weight_grad(&view(&saved.context, r, h), &da);
    let mut dcontext = vec![T::zero(); r * h];
    input_grad(
        &da,
        &p.matrix(WO),
        T::zero(),
        &mut view_mut(&mut dcontext, r, h),
    );

    let mut dq = vec![T::zero(); r * h];
    let mut dkv = vec![T::zero(); n * 2 * h];
    attention_backward(saved, &dcontext, &mut dq, &mut dkv);
    let dbq = column_sums(&dq, h);
    let mut dbk = column_sums(&dkv, 2 * h);
    let dbv = dbk.split_off(h);
    let x = p.slice(X);
    let xq = query_rows(x, dims);
    let dq_view = view(&dq, r, h);
    let dwq = weight_grad(&view(&xq, r, h), &dq_view);
    let dkv = view(&dkv, n, 2 * h);
    let (dk, dv) = (dkv.slice(s![.., ..h]), dkv.slice(s![.., h..]));
    let x = view(x, n, h);
    let dwk = weight_grad(&x, &dk);
    let dwv = weight_grad(&x, &dv);

    let mut dx = vec![T::zero(); n * h];
    {
        let mut out = view_mut(&mut dx, n, h);
        input_grad(&dk, &p.matrix(WK), T::zero(), &mut out);
        input_grad(&dv, &p.matrix(WV), T::one(), &mut out);
    }
    let mut dxq = attention.residual;
    input_grad(
        &dq_view,
        &p.matrix(WQ),
        T::one(),
        &mut view_mut(&mut dxq, r, h),
    );
    if dims.q_len == dims.seq {
        add_into(&mut dx, &dxq);
    } else {
        for (sentence, d) in dx.chunks_mut(dims.seq * h).zip(dxq.chunks(h)) {
            add_into(&mut sentence[..h], d);
        }
    }

    vec![
        dx,
        dwq,
        dbq,
        dwk,
        dbk,
        dwv,
        dbv,
        dwo,
        dbo,
        attention.gamma,
        attention.beta,
        dw1,
        db1,
        dw2,
        db2,
        ffn.gamma,
        ffn.beta,
    ]
}

/// The node of one layer in the graph of `Autodiff<NdArray<T>>`.
#[derive(Debug)]
struct LayerNode<T>(PhantomData<T>);

impl<T: Real> Backward<NdArray<T>, PARENTS> for LayerNode<T>
where
    NdArrayTensor: From<SharedArray<T>>,
{
    type State = Arc<Saved<T>>;

    fn backward(
        self,
        ops: Ops<Self::State, PARENTS>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let dy = T::array(grads.consume::<NdArray<T>>(&ops.node))
            .expect("a layer's output gradient has the layer's float type");
        let dy = dy.as_standard_layout();
        let computed = backward(&ops.state, dy.as_slice().expect("row-major"));
        for ((parent, grad), array) in ops
            .parents
            .iter()
            .zip(computed)
            .zip(&ops.state.params.arrays)
        {
            if let Some(parent) = parent {
                let grad = ArcArray::from_shape_vec(IxDyn(array.shape()), grad)
                    .expect("each gradient has its parent's shape");
                grads.register::<NdArray<T>>(parent.id, NdArrayTensor::from(grad));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three sentences of 5, 3 and 1 tokens, padded to 5.
    fn padding() -> Vec<bool> {
        let lengths = [5, 3, 1];
        lengths
            .iter()
            .flat_map(|&n| (0..5).map(move |t| t >= n))
            .collect()
    }

    fn dims(first_only: bool, activation: HiddenAct, dropout: f64) -> Dims {
        Dims {
            batch: 3,
            seq: 5,
            q_len: if first_only { 1 } else { 5 },
            hidden: 8,
            heads: 2,
            inner: 12,
            eps: 1e-12,
            activation,
            hidden_dropout: dropout,
            attention_dropout: dropout,
        }
    }

    /// Uniform values in [-1, 1) of every parent's shape.
    fn params(dims: &Dims, seed: u64) -> Params<f64> {
        let mut rng = SplitMix64::new(seed);
        let arrays = dims
            .shapes()
            .iter()
            .map(|shape| {
                let len = shape.iter().product();
                let values = (0..len)
                    .map(|_| (rng.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0)
                    .collect();
                ArcArray::from_shape_vec(IxDyn(shape), values).unwrap()
            })
            .collect();
        Params { arrays }
    }

    /// `Σ y c`: a loss whose gradient with respect to `y` is `c`.
    fn loss(dims: Dims, params: Params<f64>, seed: u64, c: &[f64]) -> f64 {
        let (y, _) = forward(dims, params, &padding(), seed);
        y.iter().zip(c).map(|(y, c)| y * c).sum()
    }

    /// Central differences of [`loss`] at a few entries of every parent
    /// against the backward, dropout masks held fixed by the seed.
    fn check(dims: Dims) {
        assert!(dims.fits(&params(&dims, 1)));
        let p = params(&dims, 1);
        let c: Vec<f64> = (0..dims.rows() * dims.hidden)
            .map(|i| (i as f64 * 0.37).sin())
            .collect();
        let seed = 99;
        let (_, saved) = forward(dims, p.clone(), &padding(), seed);
        if dims.hidden_dropout > 0.0 {
            let keep = saved.ffn_out.keep.as_ref().unwrap();
            let dropped = keep.iter().filter(|&&k| k == 0.0);
            assert!(dropped.count() > 0, "dropout drops something");
        }
        let grads = backward(&saved, &c);
        let step = 1e-5;
        for (k, grad) in grads.iter().enumerate() {
            assert_eq!(grad.len(), p.arrays[k].len(), "parent {k}");
            let scale = grad.iter().fold(1e-3f64, |m, g| m.max(g.abs()));
            for j in 0..6 {
                let at = (j * 7919 + k) % grad.len();
                let moved = |delta: f64| {
                    let mut q = p.clone();
                    q.arrays[k].as_slice_mut().unwrap()[at] += delta;
                    loss(dims, q, seed, &c)
                };
                let numeric = (moved(step) - moved(-step)) / (2.0 * step);
                assert!(
                    (numeric - grad[at]).abs() <= 1e-6 * scale,
                    "{dims:?}: parent {k}[{at}]: backward {} vs differences {numeric}",
                    grad[at]
                );
            }
        }
        let padded_keys = saved.probs.iter().filter(|&&p| p == 0.0).count();
        assert!(padded_keys > 0, "padded keys get probability 0");
    }

    #[test]
    fn backward_matches_central_differences_with_dropout() {
        check(dims(false, HiddenAct::Gelu, 0.2));
        check(dims(true, HiddenAct::Gelu, 0.2));
    }

    #[test]
    fn backward_matches_central_differences_for_every_activation() {
        check(dims(false, HiddenAct::GeluTanh, 0.0));
        check(dims(false, HiddenAct::Relu, 0.0));
    }

    #[test]
    fn dropout_masks_follow_the_seed() {
        let d = dims(false, HiddenAct::Gelu, 0.2);
        let p = params(&d, 3);
        let (a, _) = forward(d, p.clone(), &padding(), 5);
        let (b, _) = forward(d, p.clone(), &padding(), 5);
        let (c, _) = forward(d, p, &padding(), 6);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
