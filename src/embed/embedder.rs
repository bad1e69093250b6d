//! Encoding many sentences: tokenize all, batch by length, run the encoder,
//! put the vectors back in input order.

use std::collections::{HashMap, HashSet};

use burn::tensor::backend::Backend;
use indicatif::ProgressBar;

use crate::data::batcher::{length_sorted_batches, TokenBatch};
use crate::data::tokenizer::SentenceTokenizer;
use crate::error::{Error, Result};
use crate::model::encoder::SentenceEncoder;
use crate::model::load::LoadedModel;
use crate::model::pooling::Pooling;

/// Sentence vectors, one row per input sentence, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// Width of each vector.
    pub dim: usize,
    /// `rows * dim` values.
    pub data: Vec<f32>,
    /// How many inputs were cut to the tokenizer's `max_len`.
    pub truncated: usize,
}

impl Embeddings {
    /// Number of vectors.
    pub fn rows(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    /// Vector `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// Cosine similarity of rows `i` and `j` of two embedding sets, in f64.
    pub fn cosine(&self, i: usize, other: &Embeddings, j: usize) -> f64 {
        cosine(self.row(i), other.row(j))
    }
}

/// Vectors of distinct sentences, looked up by text.
#[derive(Debug, Clone)]
pub struct SentenceVectors {
    index: HashMap<String, usize>,
    embeddings: Embeddings,
}

impl SentenceVectors {
    /// The distinct `texts` with their vectors, row `i` of `embeddings`
    /// being `texts[i]`'s.
    pub fn new(texts: &[&str], embeddings: Embeddings) -> Self {
        Self {
            index: texts
                .iter()
                .enumerate()
                .map(|(i, t)| (t.to_string(), i))
                .collect(),
            embeddings,
        }
    }

    /// The row of `sentence`, if it was embedded.
    pub fn row_of(&self, sentence: &str) -> Option<usize> {
        self.index.get(sentence).copied()
    }

    /// The vector of `sentence`, if it was embedded.
    pub fn vector(&self, sentence: &str) -> Option<&[f32]> {
        self.row_of(sentence).map(|i| self.embeddings.row(i))
    }

    /// Cosine similarity of two embedded sentences, in f64 (0 for one not
    /// embedded).
    pub fn cosine(&self, a: &str, b: &str) -> f64 {
        match (self.vector(a), self.vector(b)) {
            (Some(a), Some(b)) => cosine(a, b),
            _ => 0.0,
        }
    }

    /// Cosine similarity of rows `i` and `j`, in f64.
    pub fn cosine_rows(&self, i: usize, j: usize) -> f64 {
        self.embeddings.cosine(i, &self.embeddings, j)
    }
}

/// The distinct items of `texts`, in the order they first appear.
pub fn distinct<'a>(texts: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = HashSet::new();
    texts.into_iter().filter(|t| seen.insert(*t)).collect()
}

/// Cosine similarity in f64; 0 when either vector is zero.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64, y as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        return 0.0;
    }
    ab / (aa.sqrt() * bb.sqrt())
}

/// An encoder ready to embed text: model, tokenizer, pooling and batching.
pub struct Embedder<'a, B: Backend> {
    /// The encoder (inference: a non-autodiff backend, so no dropout).
    pub encoder: &'a SentenceEncoder<B>,
    /// Its tokenizer.
    pub tokenizer: &'a SentenceTokenizer,
    /// Id used to pad token sequences.
    pub pad_id: u32,
    /// How token states become a sentence vector.
    pub pooling: Pooling,
    /// Sentences per forward pass.
    pub batch_size: usize,
    /// Where the tensors live.
    pub device: B::Device,
}

impl<'a, B: Backend> Embedder<'a, B> {
    /// An embedder over a loaded model (its encoder, tokenizer and padding id).
    pub fn of(
        model: &'a LoadedModel<B>,
        pooling: Pooling,
        batch_size: usize,
        device: &B::Device,
    ) -> Self {
        Self {
            encoder: &model.encoder,
            tokenizer: &model.tokenizer,
            pad_id: model.config.pad_token_id as u32,
            pooling,
            batch_size,
            device: device.clone(),
        }
    }
}

impl<B: Backend> Embedder<'_, B> {
    /// The length of the vectors.
    pub fn dim(&self) -> usize {
        self.encoder.backbone.hidden_size()
    }

    /// Embeds `sentences` in input order, advancing `progress` by one per
    /// sentence. Batches hold sentences of similar length.
    pub fn embed<S: AsRef<str>>(
        &self,
        sentences: &[S],
        progress: &ProgressBar,
    ) -> Result<Embeddings> {
        let dim = self.dim();
        let mut data = vec![0f32; sentences.len() * dim];
        let truncated = self.embed_each(sentences, progress, |batch, values| {
            for (k, &i) in batch.iter().enumerate() {
                data[i * dim..(i + 1) * dim].copy_from_slice(&values[k * dim..(k + 1) * dim]);
            }
            Ok(())
        })?;
        Ok(Embeddings {
            dim,
            data,
            truncated,
        })
    }

    /// Embeds `sentences` batch by batch (similar lengths together): `each`
    /// gets the indices of a batch's sentences and their vectors, row after
    /// row (`[batch.len(), dim]`), so no more than a batch is held. Returns
    /// how many sentences were cut to the model's length.
    pub fn embed_each<S: AsRef<str>>(
        &self,
        sentences: &[S],
        progress: &ProgressBar,
        mut each: impl FnMut(&[usize], &mut [f32]) -> Result<()>,
    ) -> Result<usize> {
        let encoded = self.tokenizer.encode(sentences)?;
        let lengths: Vec<usize> = encoded.iter().map(|e| e.ids.len()).collect();
        for batch in length_sorted_batches(&lengths, self.batch_size) {
            let rows: Vec<_> = batch.iter().map(|&i| &encoded[i]).collect();
            let tokens = TokenBatch::new(&rows, self.pad_id, &self.device);
            let vectors = self.encoder.forward(&tokens, self.pooling);
            let mut values = vectors
                .into_data()
                .to_vec::<f32>()
                .map_err(|e| Error::Backend(format!("reading embeddings back: {e:?}")))?;
            each(&batch, &mut values)?;
            progress.inc(batch.len() as u64);
        }
        Ok(encoded.iter().filter(|e| e.truncated).count())
    }
}

impl Embeddings {
    /// Scales every row to unit length (zero rows stay zero).
    pub fn normalize(&mut self) {
        normalize_rows(&mut self.data, self.dim);
    }
}

/// Scales every row of `data` (rows of `dim`) to unit length; zero rows
/// stay zero.
pub fn normalize_rows(data: &mut [f32], dim: usize) {
    for row in data.chunks_mut(dim.max(1)) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|v| *v /= norm);
        }
    }
}
