//! The sentence encoder: the transformer body, the `cls` pooler's MLP and a
//! choice of pooling.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::bert::Bert;
use super::config::BertConfig;
use super::pooling::Pooling;
use crate::data::batcher::TokenBatch;

/// Architecture of a [`SentenceEncoder`].
#[derive(Config, Debug)]
pub struct SentenceEncoderConfig {
    /// The transformer body.
    pub bert: BertConfig,
}

/// Transformer body plus the dense layer of the `cls` pooler (Hugging Face's
/// `pooler.dense`, SimCSE's MLP head).
#[derive(Module, Debug)]
pub struct SentenceEncoder<B: Backend> {
    /// The transformer body.
    pub backbone: Bert<B>,
    /// Dense layer of the `cls` pooler, followed by tanh.
    pub pooler: burn::nn::Linear<B>,
}

impl SentenceEncoderConfig {
    /// A freshly initialised encoder.
    pub fn init<B: Backend>(&self, device: &B::Device) -> SentenceEncoder<B> {
        let h = self.bert.hidden_size;
        let init = burn::module::Initializer::Normal {
            mean: 0.0,
            std: self.bert.initializer_range,
        };
        SentenceEncoder {
            backbone: self.bert.init(device),
            pooler: super::bert::hf_linear(h, h, &init, device),
        }
    }
}

impl<B: Backend> SentenceEncoder<B> {
    /// Sentence vectors `[batch, hidden]` of a token batch.
    pub fn forward(&self, batch: &TokenBatch<B>, pooling: Pooling) -> Tensor<B, 2> {
        let states = self.backbone.forward(batch, pooling.last_layer());
        pooling.pool(&states, batch.float_mask(), &self.pooler)
    }
}
