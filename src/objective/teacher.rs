//! Teachers: encoders that are never trained, whose vectors of the training
//! sentences an objective compares with the student's (GCSE's frozen
//! evaluation model; the teachers of distillation objectives).
//!
//! A teacher without dropout is deterministic, so its vectors of every
//! training sentence are computed once, on the inference backend, and
//! cached in the run directory (`teachers/<name>.npy` with a `.json` key
//! naming the teacher and the sentences); a rerun or resume reads them back.
//! A teacher with dropout instead encodes the sentences it is asked for each
//! time, its noise seeded by the caller.

use std::path::Path;

use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use super::Setup;
use crate::data::tokenizer::SentenceTokenizer;
use crate::embed::embedder::{Embedder, Embeddings};
use crate::embed::npy::{read_npy, write_npy};
use crate::error::{Error, Result};
use crate::fingerprint::Fingerprint;
use crate::json_file::{read_json, write_json};
use crate::model::encoder::SentenceEncoder;
use crate::model::hub::resolve_model;
use crate::model::load::{LoadOptions, LoadedModel};
use crate::model::pooling::Pooling;

/// Which encoder teaches, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeacherSpec {
    /// A model directory, a training run directory (its best model) or a hub
    /// id.
    pub path: String,
    /// How its token states become a vector.
    pub pooling: Pooling,
    /// Longest tokenized sentence. Default: the model's position limit.
    #[serde(default)]
    pub max_len: Option<usize>,
    /// Dropout while teaching. Default 0: frozen (eval mode), its vectors
    /// cached once; above 0 each request is encoded afresh with seeded noise.
    #[serde(default)]
    pub dropout: f64,
}

/// A loaded teacher.
pub struct Teacher<B: AutodiffBackend> {
    spec: TeacherSpec,
    /// The encoder on the inference backend: no graph, no dropout.
    frozen: SentenceEncoder<B::InnerBackend>,
    /// With `dropout > 0`: the encoder on the training backend, its
    /// parameters outside the graph, so that only its dropout is active.
    noisy: Option<SentenceEncoder<B>>,
    tokenizer: SentenceTokenizer,
    pad_id: u32,
    device: B::Device,
}

/// What a vector cache's `.json` says it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CacheKey {
    teacher: TeacherSpec,
    sentences: usize,
    /// The sentences' [`Fingerprint`], each sentence a field.
    fingerprint: String,
}

impl<B: AutodiffBackend> Teacher<B> {
    /// Loads the teacher `spec` names.
    pub fn load(spec: &TeacherSpec, device: &B::Device) -> Result<Self> {
        if !(0.0..1.0).contains(&spec.dropout) {
            return Err(Error::Usage(format!(
                "teacher {}: dropout must be in [0, 1), not {}",
                spec.path, spec.dropout
            )));
        }
        let dir = resolve_model(&spec.path)?;
        let options = LoadOptions {
            max_len: spec.max_len,
            dropout: Some(spec.dropout),
        };
        let loaded = LoadedModel::<B>::from_dir(&dir, &options, device)?;
        if spec.pooling == Pooling::Cls && !loaded.report.has_pooler() {
            return Err(Error::Usage(format!(
                "{}: the teacher has no pooler (MLP) weights, so its `cls` vectors would be random; \
                 use a stage-1 run or model folder that has them, or another pooling",
                loaded.report.weights.display()
            )));
        }
        let encoder = loaded.encoder.no_grad();
        Ok(Self {
            frozen: encoder.valid(),
            noisy: (spec.dropout > 0.0).then_some(encoder),
            spec: spec.clone(),
            tokenizer: loaded.tokenizer,
            pad_id: loaded.config.pad_token_id as u32,
            device: device.clone(),
        })
    }

    /// What was loaded.
    pub fn spec(&self) -> &TeacherSpec {
        &self.spec
    }

    /// An embedder over the frozen encoder, `batch_size` sentences a pass.
    pub fn embedder(&self, batch_size: usize) -> Embedder<'_, B::InnerBackend> {
        Embedder {
            encoder: &self.frozen,
            tokenizer: &self.tokenizer,
            pad_id: self.pad_id,
            pooling: self.spec.pooling,
            batch_size,
            device: self.device.clone(),
        }
    }

    /// The frozen vectors of `sentences`, in order: read from the cache at
    /// `stem` (`.npy`, `.json`) when it holds these sentences from this
    /// teacher, else computed with a progress bar and cached there.
    pub fn cached_vectors(
        &self,
        sentences: &[&str],
        stem: &Path,
        batch_size: usize,
    ) -> Result<Embeddings> {
        let key = CacheKey {
            teacher: self.spec.clone(),
            sentences: sentences.len(),
            fingerprint: fingerprint(sentences),
        };
        let (npy, json) = (stem.with_extension("npy"), stem.with_extension("json"));
        if json.is_file() && npy.is_file() && read_json::<CacheKey>(&json).ok() == Some(key.clone())
        {
            let vectors = read_npy(&npy)?;
            if vectors.rows() == sentences.len() {
                return Ok(vectors);
            }
        }
        let bar = crate::progress::items(sentences.len() as u64, "teacher sentences");
        let vectors = self.embedder(batch_size).embed(sentences, &bar)?;
        bar.finish_and_clear();
        if let Some(dir) = stem.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        write_npy(&npy, &vectors)?;
        write_json(&json, &key)?;
        Ok(vectors)
    }

    /// Vectors of `sentences` with the teacher's dropout, its masks drawn
    /// from `seed` (the frozen vectors when its dropout is 0).
    pub fn noisy_vectors(&self, sentences: &[&str], seed: u64) -> Result<Embeddings> {
        let Some(encoder) = &self.noisy else {
            return self
                .embedder(sentences.len().max(1))
                .embed(sentences, &indicatif::ProgressBar::hidden());
        };
        B::seed(&self.device, seed);
        Embedder {
            encoder,
            tokenizer: &self.tokenizer,
            pad_id: self.pad_id,
            pooling: self.spec.pooling,
            batch_size: sentences.len().max(1),
            device: self.device.clone(),
        }
        .embed(sentences, &indicatif::ProgressBar::hidden())
    }
}

/// The vectors of `texts` by the frozen (dropout 0) teacher at `path` with
/// `pooling` and `max_len` (default `model.max_len`), cached in the run
/// directory as `name` ([`Teacher::cached_vectors`]).
pub fn frozen_vectors<B: AutodiffBackend>(
    setup: &Setup<'_, B>,
    path: &str,
    pooling: Pooling,
    max_len: Option<usize>,
    texts: &[&str],
    name: &str,
) -> Result<Embeddings> {
    let teacher = Teacher::<B>::load(
        &TeacherSpec {
            path: path.to_string(),
            pooling,
            max_len: Some(max_len.unwrap_or(setup.model.max_len)),
            dropout: 0.0,
        },
        setup.device,
    )?;
    teacher.cached_vectors(texts, &setup.run.teacher_cache(name), setup.inference_batch)
}

/// The sentences' fingerprint, each sentence a field.
fn fingerprint(sentences: &[&str]) -> String {
    let mut hash = Fingerprint::new();
    for sentence in sentences {
        hash.field(sentence.as_bytes());
    }
    hash.hex()
}

#[cfg(test)]
mod tests {
    use super::fingerprint;

    #[test]
    fn fingerprints_tell_sentence_lists_apart() {
        assert_ne!(fingerprint(&[]), fingerprint(&[""]));
        assert_ne!(fingerprint(&["a b"]), fingerprint(&["a", "b"]));
        assert_ne!(fingerprint(&["a", "b"]), fingerprint(&["b", "a"]));
        assert_eq!(fingerprint(&["x"]), fingerprint(&["x"]));
    }
}
