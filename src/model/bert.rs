//! The BERT / RoBERTa encoder: embeddings and a stack of post-LN transformer
//! layers, as in Hugging Face's `BertModel` and `RobertaModel`.
//!
//! Dropout (hidden and attention-probability) is active only on an autodiff
//! backend, i.e. in training; on a plain backend the forward pass is the
//! deterministic inference pass and attention goes through Burn's fused
//! attention op. On the CPU each layer runs fused: [`super::cpu_layer`] on
//! the plain backend, [`super::cpu_train`] (one autodiff node a layer) on the
//! autodiff one; [`with_generic_layers`] turns both off, for the tests that
//! hold them to the generic path. Inside [`super::autocast::with_products_in`]
//! every matrix product runs in the scope's half type (generic path only).

use std::cell::Cell;

use burn::module::{Initializer, Module, Param};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear,
    LinearConfig,
};
use burn::tensor::activation::{gelu_approximate, relu, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Int, Tensor};

use super::autocast::{self, product};
use super::config::{Architecture, BertConfig, HiddenAct};
use super::cpu_layer::{CpuPass, LayerWeights};
use super::cpu_train::CpuTrainPass;
use crate::data::batcher::TokenBatch;

/// Word, position and token-type embeddings, summed, normalised, dropped out.
#[derive(Module, Debug)]
pub struct Embeddings<B: Backend> {
    word: Embedding<B>,
    position: Embedding<B>,
    token_type: Embedding<B>,
    norm: LayerNorm<B>,
    dropout: Dropout,
    architecture: Architecture,
    pad_token_id: usize,
}

/// Multi-head self-attention with its output projection (Hugging Face's
/// `BertSelfAttention` + the dense part of `BertSelfOutput`).
#[derive(Module, Debug)]
pub struct SelfAttention<B: Backend> {
    query: Linear<B>,
    key: Linear<B>,
    value: Linear<B>,
    output: Linear<B>,
    /// Dropout on the attention probabilities.
    dropout: Dropout,
    num_heads: usize,
}

/// One post-LN transformer layer.
#[derive(Module, Debug)]
pub struct Layer<B: Backend> {
    attention: SelfAttention<B>,
    attention_norm: LayerNorm<B>,
    ffn_in: Linear<B>,
    ffn_out: Linear<B>,
    ffn_norm: LayerNorm<B>,
    dropout: Dropout,
    activation: HiddenAct,
    layer_norm_eps: f64,
}

/// The encoder body: embeddings and `num_hidden_layers` layers.
#[derive(Module, Debug)]
pub struct Bert<B: Backend> {
    embeddings: Embeddings<B>,
    layers: Vec<Layer<B>>,
}

impl BertConfig {
    /// A freshly initialised encoder (normal(0, `initializer_range`) weights,
    /// zero biases, unit layer norms), as Hugging Face initialises one.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Bert<B> {
        let normal = Initializer::Normal {
            mean: 0.0,
            std: self.initializer_range,
        };
        let linear = |d_in: usize, d_out: usize| hf_linear(d_in, d_out, &normal, device);
        let embedding = |n: usize| {
            EmbeddingConfig::new(n, self.hidden_size)
                .with_initializer(normal.clone())
                .init(device)
        };
        let norm = || {
            LayerNormConfig::new(self.hidden_size)
                .with_epsilon(self.layer_norm_eps)
                .init(device)
        };
        let hidden_dropout = || DropoutConfig::new(self.hidden_dropout_prob).init();
        let h = self.hidden_size;
        let embeddings = Embeddings {
            word: embedding(self.vocab_size),
            position: embedding(self.max_position_embeddings),
            token_type: embedding(self.type_vocab_size),
            norm: norm(),
            dropout: hidden_dropout(),
            architecture: self.architecture,
            pad_token_id: self.pad_token_id,
        };
        let layers = (0..self.num_hidden_layers)
            .map(|_| Layer {
                attention: SelfAttention {
                    query: linear(h, h),
                    key: linear(h, h),
                    value: linear(h, h),
                    output: linear(h, h),
                    dropout: DropoutConfig::new(self.attention_probs_dropout_prob).init(),
                    num_heads: self.num_attention_heads,
                },
                attention_norm: norm(),
                ffn_in: linear(h, self.intermediate_size),
                ffn_out: linear(self.intermediate_size, h),
                ffn_norm: norm(),
                dropout: hidden_dropout(),
                activation: self.hidden_act,
                layer_norm_eps: self.layer_norm_eps,
            })
            .collect();
        Bert { embeddings, layers }
    }
}

/// A linear layer initialised as Hugging Face does: `init` for the weight,
/// zeros for the bias.
pub(crate) fn hf_linear<B: Backend>(
    d_in: usize,
    d_out: usize,
    init: &Initializer,
    device: &B::Device,
) -> Linear<B> {
    let mut linear = LinearConfig::new(d_in, d_out)
        .with_initializer(init.clone())
        .init(device);
    linear.bias = Some(Param::from_tensor(Tensor::zeros([d_out], device)));
    linear
}

thread_local! {
    /// Set while [`with_generic_layers`] runs on this thread.
    static GENERIC_ONLY: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with every layer on this thread taking Burn's generic path, the
/// fused CPU layers off: the reference those are tested against.
pub fn with_generic_layers<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            GENERIC_ONLY.set(self.0);
        }
    }
    let _restore = Restore(GENERIC_ONLY.replace(true));
    f()
}

/// Which positions the last layer computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastLayer {
    /// Every position: the last state is `[batch, seq, hidden]`.
    AllTokens,
    /// Position 0 only, all `cls` pooling reads: its queries, attention
    /// output and feed-forward run for one row per sentence (keys and values
    /// still for every position) and the last state is `[batch, 1, hidden]`.
    /// The same vectors and gradients for 1/seq of the last layer's cost
    /// beyond its keys and values.
    FirstToken,
}

impl<B: Backend> Bert<B> {
    /// Runs the encoder and returns every hidden state: index 0 is the
    /// embedding output, index `l` the output of layer `l`, each
    /// `[batch, seq, hidden]` (the last one `[batch, 1, hidden]` with
    /// [`LastLayer::FirstToken`]).
    pub fn forward(&self, batch: &TokenBatch<B>, last: LastLayer) -> Vec<Tensor<B, 3>> {
        let padding = batch.padding_mask();
        let mut states = Vec::with_capacity(self.layers.len() + 1);
        let mut x = self.embeddings.forward(batch);
        let fused = !GENERIC_ONLY.get() && autocast::products_dtype().is_none();
        let mut cpu = fused.then(|| CpuPass::new(&x, &padding)).flatten();
        let train = fused.then(|| CpuTrainPass::new(&x, &padding)).flatten();
        states.push(x.clone());
        for (l, layer) in self.layers.iter().enumerate() {
            let first_only = last == LastLayer::FirstToken && l + 1 == self.layers.len();
            let weights = layer.weights();
            let fused = match (cpu.as_mut(), train.as_ref()) {
                (Some(cpu), _) => cpu.layer(&weights, &x, first_only),
                (None, Some(train)) => train.layer(&weights, &x, first_only, l),
                (None, None) => None,
            };
            x = fused.unwrap_or_else(|| layer.forward(x, padding.clone(), first_only));
            states.push(x.clone());
        }
        states
    }

    /// Width of the hidden states.
    pub fn hidden_size(&self) -> usize {
        self.embeddings.word.weight.dims()[1]
    }

    /// Number of transformer layers.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }
}

impl<B: Backend> Embeddings<B> {
    /// `[batch, seq]` token ids → `[batch, seq, hidden]`.
    fn forward(&self, batch: &TokenBatch<B>) -> Tensor<B, 3> {
        let [batch_size, seq] = batch.input_ids.dims();
        let device = batch.input_ids.device();
        let steps = Tensor::<B, 1, Int>::arange(0..seq as i64, &device)
            .reshape([1, seq])
            .expand([batch_size, seq]);
        let positions = match self.architecture {
            Architecture::Bert => steps,
            // Hugging Face: real tokens count from pad_token_id + 1, padding
            // sits at pad_token_id.
            Architecture::Roberta => {
                (steps + 1) * batch.attention_mask.clone() + self.pad_token_id as i64
            }
        };
        let x = self.word.forward(batch.input_ids.clone())
            + self.position.forward(positions)
            + self.token_type.forward(batch.token_type_ids.clone());
        self.dropout.forward(self.norm.forward(x))
    }
}

impl<B: Backend> Layer<B> {
    fn weights(&self) -> LayerWeights<'_, B> {
        LayerWeights {
            query: &self.attention.query,
            key: &self.attention.key,
            value: &self.attention.value,
            output: &self.attention.output,
            attention_norm: &self.attention_norm,
            ffn_in: &self.ffn_in,
            ffn_out: &self.ffn_out,
            ffn_norm: &self.ffn_norm,
            num_heads: self.attention.num_heads,
            activation: self.activation,
            layer_norm_eps: self.layer_norm_eps,
            hidden_dropout: self.dropout.prob,
            attention_dropout: self.attention.dropout.prob,
        }
    }

    /// `[batch, seq, hidden]` → `[batch, seq, hidden]`, or with
    /// `first_only` → `[batch, 1, hidden]` (position 0's output); `padding`
    /// is `[batch, seq]`, true at padding.
    fn forward(
        &self,
        x: Tensor<B, 3>,
        padding: Tensor<B, 2, Bool>,
        first_only: bool,
    ) -> Tensor<B, 3> {
        let a = self.attention.forward(x.clone(), padding, first_only);
        let x = if first_only { x.narrow(1, 0, 1) } else { x };
        let x = self.attention_norm.forward(x + self.dropout.forward(a));
        let f = dense(
            &self.ffn_out,
            activate(self.activation, dense(&self.ffn_in, x.clone())),
        );
        self.ffn_norm.forward(x + self.dropout.forward(f))
    }
}

/// A linear layer on `[batch, seq, d_in]` as one `[batch * seq, d_in]`
/// matrix product (a batched product would repack the weight per sentence on
/// the CPU backend).
fn dense<B: Backend>(linear: &Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    let [batch, seq, d_in] = x.dims();
    let y = autocast::linear(linear, x.reshape([batch * seq, d_in]));
    let d_out = y.dims()[1];
    y.reshape([batch, seq, d_out])
}

/// The activation; GELU as `x Φ(x)` in erf, so that autodiff takes the
/// exact derivative (Burn 0.21's `gelu` differentiates the tanh
/// approximation instead). `x / √2` as a product: Burn's autodiff takes the
/// gradient of a division by a scalar through the scalar in f32.
fn activate<B: Backend>(act: HiddenAct, x: Tensor<B, 3>) -> Tensor<B, 3> {
    match act {
        HiddenAct::Gelu => {
            let cdf = x
                .clone()
                .mul_scalar(std::f64::consts::FRAC_1_SQRT_2)
                .erf()
                .add_scalar(1.0)
                .mul_scalar(0.5);
            x * cdf
        }
        HiddenAct::GeluTanh => gelu_approximate(x),
        HiddenAct::Relu => relu(x),
    }
}

impl<B: Backend> SelfAttention<B> {
    /// `[batch, seq, hidden]` → `[batch, seq, hidden]`, or with
    /// `first_only` → `[batch, 1, hidden]` (only position 0 queries); keys
    /// where `padding` (`[batch, seq]`) is true receive no attention.
    fn forward(
        &self,
        x: Tensor<B, 3>,
        padding: Tensor<B, 2, Bool>,
        first_only: bool,
    ) -> Tensor<B, 3> {
        let [batch, seq, hidden] = x.dims();
        let heads = |t: Tensor<B, 3>| {
            let [_, len, _] = t.dims();
            t.reshape([batch, len, self.num_heads, hidden / self.num_heads])
                .swap_dims(1, 2)
        };
        let queries = if first_only {
            x.clone().narrow(1, 0, 1)
        } else {
            x.clone()
        };
        let q_len = queries.dims()[1];
        let q = heads(dense(&self.query, queries));
        let k = heads(dense(&self.key, x.clone()));
        let v = heads(dense(&self.value, x));
        let scale = (hidden as f64 / self.num_heads as f64).sqrt().recip();
        // [batch, heads, q_len, seq], true where the key is padding.
        let mask = padding
            .reshape([batch, 1, 1, seq])
            .expand([batch, self.num_heads, q_len, seq]);
        let context = if first_only {
            // One query: products and sums, not a vector-matrix product,
            // whose CubeCL autotune caches one kernel per bucket of key
            // lengths and may pick one that cannot run another length of
            // the bucket (WGPU: "n must be a multiple of plane size").
            let scores = (k * q)
                .sum_dim(3)
                .reshape([batch, self.num_heads, 1, seq])
                .mul_scalar(scale)
                .mask_fill(mask, f32::NEG_INFINITY);
            let probs = self.dropout.forward(softmax(scores, 3));
            (probs.swap_dims(2, 3) * v).sum_dim(2)
        } else if (self.dropout.prob > 0.0 && B::ad_enabled(&q.device()))
            || autocast::products_dtype().is_some()
        {
            let scores = product(q, k.swap_dims(2, 3))
                .mul_scalar(scale)
                .mask_fill(mask, f32::NEG_INFINITY);
            product(self.dropout.forward(softmax(scores, 3)), v)
        } else {
            attention(q, k, v, Some(mask), None, AttentionModuleOptions::default())
        };
        let context = context.swap_dims(1, 2).reshape([batch, q_len, hidden]);
        dense(&self.output, context)
    }
}
