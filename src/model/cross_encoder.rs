//! Cross-encoders: the encoder reads a sentence pair as one sequence
//! (`[CLS] a [SEP] b [SEP]`, token types 0 then 1 for BERT; `<s> a </s></s>
//! b </s>` for RoBERTa) and a one-logit head on the `[CLS]` state scores it,
//! as Hugging Face's `*ForSequenceClassification` with `num_labels = 1`
//! and sentence-transformers' `CrossEncoder` do.
//!
//! Weights: the body and the `cls` pooler load as a bi-encoder's (BERT's
//! `bert.pooler.dense`; RoBERTa's `classifier.dense`, see
//! [`super::load`]'s aliases), the head from `classifier` (BERT) or
//! `classifier.out_proj` (RoBERTa). A checkpoint without a head (any
//! bi-encoder) gets a fresh one, drawn from a seed.

use std::path::Path;

use burn::module::{Initializer, Module};
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::store::{
    KeyRemapper, ModuleSnapshot, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use indicatif::ProgressBar;

use super::bert::hf_linear;
use super::config::{Architecture, BertConfig};
use super::encoder::SentenceEncoder;
use super::lazy::materialise;
use super::load::{LoadOptions, LoadedModel};
use super::pooling::Pooling;
use crate::data::batcher::{length_sorted_batches, TokenBatch};
use crate::data::tokenizer::SentenceTokenizer;
use crate::error::{Error, Result};

/// What a model folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// A sentence encoder: one vector per sentence, pairs compared by cosine.
    BiEncoder,
    /// A pair scorer: one logit per sentence pair.
    CrossEncoder,
}

impl ModelKind {
    /// The kind of model in `dir`: a cross-encoder when its `config.json`
    /// names a `*ForSequenceClassification` architecture.
    pub fn of(dir: &Path) -> Self {
        let path = dir.join("config.json");
        let declared = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v.get("architectures").cloned());
        let cross = declared
            .as_ref()
            .and_then(|a| a.as_array())
            .is_some_and(|a| {
                a.iter()
                    .filter_map(|n| n.as_str())
                    .any(|n| n.ends_with("ForSequenceClassification"))
            });
        if cross {
            Self::CrossEncoder
        } else {
            Self::BiEncoder
        }
    }
}

/// The head on the `cls` pooler's output `[n, hidden]`: dropout, then one
/// logit, `[n, 1]` (Hugging Face's `classifier`; RoBERTa's
/// `classifier.out_proj`, whose extra dropout on the `[CLS]` state before
/// its dense layer is left out).
#[derive(Module, Debug)]
pub struct Classifier<B: Backend> {
    /// `[hidden] → [1]`.
    pub linear: Linear<B>,
    dropout: Dropout,
}

impl<B: Backend> Classifier<B> {
    /// A fresh head: normal(0, `config.initializer_range`) weight, zero bias,
    /// `config.hidden_dropout_prob` before it. Draws from the backend's
    /// random stream now (seed it first).
    pub fn fresh(config: &BertConfig, device: &B::Device) -> Self {
        let init = Initializer::Normal {
            mean: 0.0,
            std: config.initializer_range,
        };
        let head = Self {
            linear: hf_linear(config.hidden_size, 1, &init, device),
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
        };
        materialise(&head);
        head
    }

    /// `[n, hidden]` pooled states → `[n, 1]` logits.
    pub fn forward(&self, pooled: Tensor<B, 2>) -> Tensor<B, 2> {
        self.linear.forward(self.dropout.forward(pooled))
    }

    /// Reads the head's weights from a checkpoint into `self`; false (and
    /// `self` untouched) when the checkpoint has none.
    pub fn load(&mut self, weights: &Path) -> Result<bool> {
        let bad = |message: String| Error::Load {
            path: weights.to_path_buf(),
            message,
        };
        let remapper = KeyRemapper::from_patterns(vec![
            (r"^classifier\.out_proj\.", "linear."),
            (r"^classifier\.(weight|bias)$", "linear.$1"),
        ])
        .map_err(|e| bad(e.to_string()))?;
        let result = if weights.extension().is_some_and(|e| e == "bin") {
            let mut store = PytorchStore::from_file(weights)
                .remap(remapper)
                .allow_partial(true)
                .validate(false);
            self.load_from(&mut store).map_err(|e| bad(e.to_string()))?
        } else {
            let mut store = SafetensorsStore::from_file(weights)
                .remap(remapper)
                .with_from_adapter(PyTorchToBurnAdapter)
                .allow_partial(true)
                .validate(false);
            self.load_from(&mut store).map_err(|e| bad(e.to_string()))?
        };
        if !result.errors.is_empty() {
            let list: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
            return Err(bad(format!(
                "the classifier head does not fit a one-logit head on the hidden size of config.json \
                 (a cross-encoder here has num_labels = 1): {}",
                list.join("; ")
            )));
        }
        match result.applied.len() {
            0 => Ok(false),
            2 => Ok(true),
            _ => Err(bad(format!(
                "the classifier head is incomplete: found {}, missing {}",
                result.applied.join(", "),
                result
                    .missing
                    .iter()
                    .map(|(p, _)| p.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
}

/// The head for a model loaded from `weights`: the checkpoint's, else a
/// fresh one drawn from `seed`. Also says whether it came from the file.
pub fn classifier_for<B: Backend>(
    config: &BertConfig,
    weights: &Path,
    seed: u64,
    device: &B::Device,
) -> Result<(Classifier<B>, bool)> {
    B::seed(device, seed);
    let mut head = Classifier::fresh(config, device);
    let loaded = head.load(weights)?;
    Ok((head, loaded))
}

/// A cross-encoder: encoder (body and `cls` pooler) and head.
#[derive(Module, Debug)]
pub struct CrossEncoder<B: Backend> {
    /// Body and pooler.
    pub encoder: SentenceEncoder<B>,
    /// The one-logit head.
    pub classifier: Classifier<B>,
}

impl<B: Backend> CrossEncoder<B> {
    /// `[n]` logits of a batch of pair sequences.
    pub fn forward(&self, batch: &TokenBatch<B>) -> Tensor<B, 1> {
        let logits = self
            .classifier
            .forward(self.encoder.forward(batch, Pooling::Cls));
        let n = logits.dims()[0];
        logits.reshape([n])
    }
}

/// A cross-encoder model folder (or a bi-encoder one, head fresh) loaded.
pub struct LoadedCrossEncoder<B: Backend> {
    /// The model.
    pub model: CrossEncoder<B>,
    /// Its tokenizer, cutting pairs at `max_len` (longest first).
    pub tokenizer: SentenceTokenizer,
    /// config.json's architecture.
    pub config: BertConfig,
    /// Whether the head came from the checkpoint (else fresh, seeded).
    pub head_loaded: bool,
    /// Tensors loaded into the encoder.
    pub loaded: usize,
}

impl<B: Backend> LoadedCrossEncoder<B> {
    /// Loads `dir`; a checkpoint without a head gets one drawn from `seed`.
    /// The `cls` pooler must be in the checkpoint.
    pub fn from_dir(
        dir: &Path,
        options: &LoadOptions,
        seed: u64,
        device: &B::Device,
    ) -> Result<Self> {
        let loaded = LoadedModel::<B>::from_dir(dir, options, device)?;
        if !loaded.report.has_pooler() {
            return Err(Error::Usage(format!(
                "{}: no pooler (`pooler.dense`, or RoBERTa's `classifier.dense`) weights; a \
                 cross-encoder scores the [CLS] state through them",
                loaded.report.weights.display()
            )));
        }
        let (classifier, head_loaded) =
            classifier_for(&loaded.config, &loaded.report.weights, seed, device)?;
        Ok(Self {
            model: CrossEncoder {
                encoder: loaded.encoder,
                classifier,
            },
            tokenizer: loaded.tokenizer,
            head_loaded,
            loaded: loaded.report.loaded,
            config: loaded.config,
        })
    }

    /// Loads a trained cross-encoder folder: its head must be in the
    /// checkpoint.
    pub fn trained(dir: &Path, options: &LoadOptions, device: &B::Device) -> Result<Self> {
        let cross = Self::from_dir(dir, options, 0, device)?;
        if !cross.head_loaded {
            return Err(Error::Load {
                path: dir.to_path_buf(),
                message: "config.json declares a sequence-classification model, but the weights \
                          have no `classifier` head"
                    .into(),
            });
        }
        Ok(cross)
    }

    /// A scorer over this model.
    pub fn scorer(&self, batch_size: usize, device: &B::Device) -> CrossScorer<'_, B> {
        CrossScorer {
            model: &self.model,
            tokenizer: &self.tokenizer,
            pad_id: self.config.pad_token_id as u32,
            batch_size,
            device: device.clone(),
        }
    }
}

/// A cross-encoder ready to score pairs of text.
pub struct CrossScorer<'a, B: Backend> {
    /// The model (inference: a non-autodiff backend, so no dropout).
    pub model: &'a CrossEncoder<B>,
    /// Its tokenizer.
    pub tokenizer: &'a SentenceTokenizer,
    /// Id used to pad token sequences.
    pub pad_id: u32,
    /// Pairs per forward pass.
    pub batch_size: usize,
    /// Where the tensors live.
    pub device: B::Device,
}

impl<B: Backend> CrossScorer<'_, B> {
    /// The logit of each pair `(a[i], b[i])`, in input order, advancing
    /// `progress` by one per pair; batches hold pairs of similar length.
    pub fn logits<S: AsRef<str>>(
        &self,
        a: &[S],
        b: &[S],
        progress: &ProgressBar,
    ) -> Result<Vec<f64>> {
        let encoded = self.tokenizer.encode_pairs(a, b)?;
        let lengths: Vec<usize> = encoded.iter().map(|e| e.ids.len()).collect();
        let mut out = vec![0.0; encoded.len()];
        for batch in length_sorted_batches(&lengths, self.batch_size.max(1)) {
            let rows: Vec<_> = batch.iter().map(|&i| &encoded[i]).collect();
            let tokens = TokenBatch::new(&rows, self.pad_id, &self.device);
            let values = self
                .model
                .forward(&tokens)
                .into_data()
                .convert::<f64>()
                .to_vec::<f64>()
                .map_err(|e| Error::Backend(format!("reading logits back: {e:?}")))?;
            for (&i, v) in batch.iter().zip(values) {
                out[i] = v;
            }
            progress.inc(batch.len() as u64);
        }
        Ok(out)
    }

    /// The score of each pair: the sigmoid of its logit, in [0, 1]
    /// (sentence-transformers' `CrossEncoder.predict` for one label).
    pub fn scores<S: AsRef<str>>(
        &self,
        a: &[S],
        b: &[S],
        progress: &ProgressBar,
    ) -> Result<Vec<f64>> {
        Ok(self
            .logits(a, b, progress)?
            .into_iter()
            .map(|x| 1.0 / (1.0 + (-x).exp()))
            .collect())
    }
}

/// The Hugging Face architecture name a cross-encoder of `architecture`
/// exports as.
pub fn hf_architecture(architecture: Architecture) -> &'static str {
    match architecture {
        Architecture::Bert => "BertForSequenceClassification",
        Architecture::Roberta => "RobertaForSequenceClassification",
    }
}
