//! The inference pass of a transformer layer on the plain CPU backend
//! (Burn's ndarray backend in f32), fused.
//!
//! Burn's generic ops allocate a fresh array per element-wise op and lay
//! attention out head-major through copies. Here one layer is six matrix
//! products (ndarray's `general_mat_mul`, i.e. OpenBLAS) into buffers reused
//! from layer to layer, attention read in place from the query and
//! key/value buffers, and each product's bias folded into the one pass that follows it
//! (the activation, or residual + layer norm), row blocks spread over the
//! rayon pool.
//!
//! Every other backend, and training (autodiff), runs the generic layer of
//! [`super::bert`]; `tests/cpu_layer.rs` checks both give the same states.

use std::any::Any;
use std::borrow::Cow;

use burn::module::Param;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor, TensorPrimitive};
use burn_ndarray::NdArrayTensor;
use ndarray::linalg::general_mat_mul;
use ndarray::{s, ArcArray, ArrayView2, ArrayViewMut2, IxDyn};
use rayon::prelude::*;

use super::config::HiddenAct;
use super::cpu_kernels::{activation, masked_softmax, row_block, standardise, BLOCK};

/// The f32 array behind `tensor` when it lives on the plain CPU backend.
fn cpu_array<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Option<ArcArray<f32, IxDyn>> {
    let primitive: Box<dyn Any> = Box::new(tensor.into_primitive().tensor());
    match *primitive.downcast::<NdArrayTensor>().ok()? {
        NdArrayTensor::F32(storage) => Some(storage.into_shared()),
        _ => None,
    }
}

/// A tensor of the plain CPU backend holding `array` (`None` on any other
/// backend).
fn cpu_tensor<B: Backend, const D: usize>(array: ArcArray<f32, IxDyn>) -> Option<Tensor<B, D>> {
    let primitive: Box<dyn Any> = Box::new(NdArrayTensor::from(array));
    let primitive = *primitive.downcast::<B::FloatTensorPrimitive>().ok()?;
    Some(Tensor::from_primitive(TensorPrimitive::Float(primitive)))
}

/// A parameter's values as a row-major f32 vector view's owner.
fn values<B: Backend, const D: usize>(param: &Param<Tensor<B, D>>) -> Option<ArcArray<f32, IxDyn>> {
    cpu_array(param.val())
}

/// An optional parameter's values: `Some(None)` when it is absent, `None`
/// when it is not an f32 CPU array.
fn optional_values<B: Backend>(
    param: &Option<Param<Tensor<B, 1>>>,
) -> Option<Option<ArcArray<f32, IxDyn>>> {
    param
        .as_ref()
        .map_or(Some(None), |param| values(param).map(Some))
}

/// The weights of one layer as CPU arrays.
pub(super) struct LayerWeights<'a, B: Backend> {
    pub query: &'a Linear<B>,
    pub key: &'a Linear<B>,
    pub value: &'a Linear<B>,
    pub output: &'a Linear<B>,
    pub attention_norm: &'a LayerNorm<B>,
    pub ffn_in: &'a Linear<B>,
    pub ffn_out: &'a Linear<B>,
    pub ffn_norm: &'a LayerNorm<B>,
    pub num_heads: usize,
    pub activation: HiddenAct,
    pub layer_norm_eps: f64,
    /// Dropout on the attention output and the feed-forward output (training
    /// only).
    pub hidden_dropout: f64,
    /// Dropout on the attention probabilities (training only).
    pub attention_dropout: f64,
}

/// The fused inference pass of one forward call: the padding of its batch,
/// read once, and the intermediate buffers, reused from layer to layer.
pub struct CpuPass {
    /// `[batch * seq]`, true at padding.
    padding: Vec<bool>,
    /// `[query rows, hidden]`: the queries.
    q: Vec<f32>,
    /// `[tokens, 2 * hidden]`: keys and values side by side.
    kv: Vec<f32>,
    /// `[query rows, hidden]`: attention's context.
    context: Vec<f32>,
    /// `[query rows, hidden]`: the attention block's normalised output.
    attended: Vec<f32>,
    /// `[query rows, intermediate]`: the feed-forward's activations.
    inner: Vec<f32>,
}

impl CpuPass {
    /// `Some` when `x` (`[batch, seq, hidden]`) lives on the plain CPU
    /// backend in f32; `padding` is `[batch, seq]`, true at padding.
    pub fn new<B: Backend>(x: &Tensor<B, 3>, padding: &Tensor<B, 2, Bool>) -> Option<Self> {
        cpu_array(x.clone())?;
        let padding = padding.to_data().to_vec::<bool>().ok()?;
        Some(Self {
            padding,
            q: Vec::new(),
            kv: Vec::new(),
            context: Vec::new(),
            attended: Vec::new(),
            inner: Vec::new(),
        })
    }

    /// One post-LN layer on `x` (`[batch, seq, hidden]`), as the generic
    /// layer computes it without dropout: `[batch, seq, hidden]`, or with
    /// `first_only` `[batch, 1, hidden]`, the outputs at position 0 (keys
    /// and values still from every position). `None` if a weight is not an
    /// f32 CPU array.
    pub(super) fn layer<B: Backend>(
        &mut self,
        w: &LayerWeights<'_, B>,
        x: &Tensor<B, 3>,
        first_only: bool,
    ) -> Option<Tensor<B, 3>> {
        let [batch, seq, hidden] = x.dims();
        let tokens = batch * seq;
        if self.padding.len() != tokens || w.num_heads == 0 || hidden % w.num_heads != 0 {
            return None;
        }
        let x = cpu_array(x.clone())?;
        let x = x.as_standard_layout();
        let x = x.as_slice()?;
        let dense = |linear: &Linear<B>| Dense::new(linear);
        let (query, key, value) = (dense(w.query)?, dense(w.key)?, dense(w.value)?);
        let (output, ffn_in, ffn_out) = (dense(w.output)?, dense(w.ffn_in)?, dense(w.ffn_out)?);
        let eps = w.layer_norm_eps as f32;
        let attention_norm = Norm::new(w.attention_norm, eps)?;
        let ffn_norm = Norm::new(w.ffn_norm, eps)?;
        let inner = ffn_in.d_out()?;
        let (queries, q_len) = if first_only {
            let first: Vec<f32> = x
                .chunks(seq * hidden)
                .flat_map(|s| &s[..hidden])
                .copied()
                .collect();
            (Cow::Owned(first), 1)
        } else {
            (Cow::Borrowed(x), seq)
        };
        let rows = batch * q_len;

        let all = ArrayView2::from_shape((tokens, hidden), x).ok()?;
        let first = ArrayView2::from_shape((rows, hidden), &queries[..]).ok()?;
        resize(&mut self.q, rows * hidden);
        let mut q = ArrayViewMut2::from_shape((rows, hidden), &mut self.q[..]).ok()?;
        query.apply(&first, &mut q, true)?;
        resize(&mut self.kv, tokens * 2 * hidden);
        let mut kv = ArrayViewMut2::from_shape((tokens, 2 * hidden), &mut self.kv[..]).ok()?;
        key.apply(&all, &mut kv.slice_mut(s![.., ..hidden]), true)?;
        value.apply(&all, &mut kv.slice_mut(s![.., hidden..]), true)?;
        resize(&mut self.context, rows * hidden);
        self.attention(batch, seq, q_len, hidden, w.num_heads)?;

        resize(&mut self.attended, rows * hidden);
        let context = ArrayView2::from_shape((rows, hidden), &self.context[..]).ok()?;
        let mut attended =
            ArrayViewMut2::from_shape((rows, hidden), &mut self.attended[..]).ok()?;
        output.apply(&context, &mut attended, false)?;
        attention_norm.apply(&mut self.attended, output.bias()?, &queries)?;

        resize(&mut self.inner, rows * inner);
        let attended = ArrayView2::from_shape((rows, hidden), &self.attended[..]).ok()?;
        let mut f = ArrayViewMut2::from_shape((rows, inner), &mut self.inner[..]).ok()?;
        ffn_in.apply(&attended, &mut f, false)?;
        activate(w.activation, &mut self.inner, ffn_in.bias()?);

        let mut y = vec![0.0f32; rows * hidden];
        let f = ArrayView2::from_shape((rows, inner), &self.inner[..]).ok()?;
        let mut out = ArrayViewMut2::from_shape((rows, hidden), &mut y[..]).ok()?;
        ffn_out.apply(&f, &mut out, false)?;
        ffn_norm.apply(&mut y, ffn_out.bias()?, &self.attended)?;

        let y = ndarray::Array::from_shape_vec(IxDyn(&[batch, q_len, hidden]), y).ok()?;
        cpu_tensor(y.into_shared())
    }

    /// Scaled dot-product attention of the queries in `self.q` (`[batch *
    /// q_len, hidden]`) over the keys and values in `self.kv` (`[batch * seq,
    /// 2 * hidden]`), heads side by side in the hidden axis, padded keys
    /// masked out; the context goes to `self.context` (`[batch * q_len,
    /// hidden]`).
    fn attention(
        &mut self,
        batch: usize,
        seq: usize,
        q_len: usize,
        hidden: usize,
        heads: usize,
    ) -> Option<()> {
        let width = hidden / heads;
        let scale = (width as f32).sqrt().recip();
        let q = ArrayView2::from_shape((batch * q_len, hidden), &self.q[..]).ok()?;
        let kv = ArrayView2::from_shape((batch * seq, 2 * hidden), &self.kv[..]).ok()?;
        let padding = &self.padding;
        self.context
            .par_chunks_mut(q_len * hidden)
            .enumerate()
            .try_for_each(|(b, block)| {
                let queries = b * q_len..(b + 1) * q_len;
                let keys = b * seq..(b + 1) * seq;
                let padding = &padding[keys.clone()];
                let mut block = ArrayViewMut2::from_shape((q_len, hidden), block).ok()?;
                let mut scores = vec![0.0f32; q_len * seq];
                for h in 0..heads {
                    let columns = h * width..(h + 1) * width;
                    let qh = q.slice(s![queries.clone(), columns.clone()]);
                    let kh = kv.slice(s![keys.clone(), columns.clone()]);
                    let vh = kv.slice(s![
                        keys.clone(),
                        hidden + h * width..hidden + (h + 1) * width
                    ]);
                    let mut p = ArrayViewMut2::from_shape((q_len, seq), &mut scores[..]).ok()?;
                    general_mat_mul(scale, &qh, &kh.t(), 0.0, &mut p);
                    for row in scores.chunks_mut(seq) {
                        masked_softmax(row, padding);
                    }
                    let p = ArrayView2::from_shape((q_len, seq), &scores[..]).ok()?;
                    general_mat_mul(1.0, &p, &vh, 0.0, &mut block.slice_mut(s![.., columns]));
                }
                Some(())
            })
    }
}

/// Makes `buffer` `len` long, keeping its allocation; the contents are
/// overwritten by whoever uses it.
fn resize(buffer: &mut Vec<f32>, len: usize) {
    buffer.resize(len, 0.0);
}

/// A linear layer's weight (`[d_in, d_out]`) and bias.
struct Dense {
    weight: ArcArray<f32, IxDyn>,
    bias: Option<ArcArray<f32, IxDyn>>,
}

impl Dense {
    fn new<B: Backend>(linear: &Linear<B>) -> Option<Self> {
        Some(Self {
            weight: values(&linear.weight)?,
            bias: optional_values(&linear.bias)?,
        })
    }

    /// `[d_in, d_out]`.
    fn weight(&self) -> Option<ArrayView2<'_, f32>> {
        self.weight
            .view()
            .into_dimensionality::<ndarray::Ix2>()
            .ok()
    }

    fn d_out(&self) -> Option<usize> {
        Some(self.weight()?.dim().1)
    }

    /// The bias, `[d_out]`, if the layer has one.
    fn bias(&self) -> Option<Option<&[f32]>> {
        match &self.bias {
            Some(bias) if bias.len() == self.d_out()? => Some(Some(bias.as_slice()?)),
            Some(_) => None,
            None => Some(None),
        }
    }

    /// `out = x @ weight (+ bias)` for `x` `[rows, d_in]`, `out` `[rows,
    /// d_out]`; with `bias_first` the bias is written into `out` and the
    /// product added to it, otherwise the bias is left to the pass after.
    fn apply(
        &self,
        x: &ArrayView2<'_, f32>,
        out: &mut ArrayViewMut2<'_, f32>,
        bias_first: bool,
    ) -> Option<()> {
        let weight = self.weight()?;
        if x.dim().1 != weight.dim().0 || out.dim() != (x.dim().0, weight.dim().1) {
            return None;
        }
        let beta = match self.bias()? {
            Some(bias) if bias_first => {
                let bias = ndarray::ArrayView1::from(bias);
                out.rows_mut()
                    .into_iter()
                    .for_each(|mut row| row.assign(&bias));
                1.0
            }
            _ => 0.0,
        };
        general_mat_mul(1.0, x, &weight, beta, out);
        Some(())
    }
}

/// A layer norm's scale and shift.
struct Norm {
    gamma: ArcArray<f32, IxDyn>,
    beta: Option<ArcArray<f32, IxDyn>>,
    eps: f32,
}

impl Norm {
    fn new<B: Backend>(norm: &LayerNorm<B>, eps: f32) -> Option<Self> {
        Some(Self {
            gamma: values(&norm.gamma)?,
            beta: optional_values(&norm.beta)?,
            eps,
        })
    }

    /// `x = norm(x + bias + residual)` row by row (rows as long as gamma;
    /// `bias` one row, `residual` as long as `x`), in place: biased
    /// variance, `eps` inside the square root, as Hugging Face and Burn do.
    fn apply(&self, x: &mut [f32], bias: Option<&[f32]>, residual: &[f32]) -> Option<()> {
        let gamma = self.gamma.as_slice()?;
        let beta = match &self.beta {
            Some(beta) => Some(beta.as_slice()?),
            None => None,
        };
        let width = gamma.len();
        let fits = |v: Option<&[f32]>| v.is_none_or(|v| v.len() == width);
        if width == 0
            || !x.len().is_multiple_of(width)
            || residual.len() != x.len()
            || !fits(beta)
            || !fits(bias)
        {
            return None;
        }
        let block = width * row_block(width);
        x.par_chunks_mut(block)
            .zip(residual.par_chunks(block))
            .for_each(|(block, residual)| {
                for (row, residual) in block.chunks_mut(width).zip(residual.chunks(width)) {
                    row.iter_mut().zip(residual).for_each(|(v, r)| *v += r);
                    if let Some(bias) = bias {
                        row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
                    }
                    standardise(row, self.eps);
                    match beta {
                        Some(beta) => row
                            .iter_mut()
                            .zip(gamma.iter().zip(beta))
                            .for_each(|(v, (g, b))| *v = *v * g + b),
                        None => row.iter_mut().zip(gamma).for_each(|(v, g)| *v *= g),
                    }
                }
            });
        Some(())
    }
}

/// `x = act(x + bias)` in place, `x` rows as long as `bias` (or any rows
/// without one).
fn activate(act: HiddenAct, x: &mut [f32], bias: Option<&[f32]>) {
    map(x, bias, |v| activation(act, v))
}

/// `x[i] = f(x[i] + bias[i % bias.len()])` over the rayon pool.
fn map(x: &mut [f32], bias: Option<&[f32]>, f: impl Fn(f32) -> f32 + Sync) {
    match bias {
        Some(bias) if !bias.is_empty() => {
            let width = bias.len();
            x.par_chunks_mut(width * row_block(width))
                .for_each(|block| {
                    for row in block.chunks_mut(width) {
                        row.iter_mut().zip(bias).for_each(|(v, b)| *v = f(*v + b));
                    }
                })
        }
        _ => x
            .par_chunks_mut(BLOCK)
            .for_each(|block| block.iter_mut().for_each(|v| *v = f(*v))),
    }
}
