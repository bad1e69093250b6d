//! Scores of sentence pairs by any model folder: a cross-encoder's sigmoid
//! of its logit, or a bi-encoder's cosine.

use burn::tensor::backend::Backend;

use super::embedder::{distinct, Embedder, SentenceVectors};
use crate::error::{Error, Result};
use crate::model::cross_encoder::{LoadedCrossEncoder, ModelKind};
use crate::model::hub::resolve_model;
use crate::model::load::{LoadOptions, LoadedModel};
use crate::model::pooling::{declared_pooling, Pooling};

/// Scores of pairs `(a[i], b[i])` by the model `model` names (a folder, a
/// run directory or a hub id): a cross-encoder's sigmoid of its logit, in
/// [0, 1]; or a bi-encoder's cosine, its vectors pooled as `pooling` says,
/// else as the folder declares, else `cls_before_pooler`. `max_len` cuts sequences (default:
/// the model's position limit). A cross-encoder folder without its head
/// is an error.
pub fn score_pairs<B: Backend>(
    model: &str,
    pooling: Option<Pooling>,
    max_len: Option<usize>,
    a: &[String],
    b: &[String],
    batch_size: usize,
    device: &B::Device,
) -> Result<Vec<f64>> {
    let dir = resolve_model(model)?;
    let options = LoadOptions {
        max_len,
        dropout: None,
    };
    match ModelKind::of(&dir) {
        ModelKind::CrossEncoder => {
            let cross = LoadedCrossEncoder::<B>::trained(&dir, &options, device)?;
            let bar = crate::progress::items(a.len() as u64, "pairs");
            let scores = cross.scorer(batch_size, device).scores(a, b, &bar)?;
            bar.finish_and_clear();
            Ok(scores)
        }
        ModelKind::BiEncoder => {
            let loaded = LoadedModel::<B>::from_dir(&dir, &options, device)?;
            let pooling = pooling
                .or_else(|| declared_pooling(&dir))
                .unwrap_or(Pooling::ClsBeforePooler);
            if pooling == Pooling::Cls && !loaded.report.has_pooler() {
                return Err(Error::Usage(format!(
                    "{}: no pooler weights, so `cls` pooling would use a random MLP",
                    loaded.report.weights.display()
                )));
            }
            let sentences = distinct(a.iter().chain(b).map(String::as_str));
            let bar = crate::progress::items(sentences.len() as u64, "sentences");
            let embedder = Embedder::of(&loaded, pooling, batch_size, device);
            let vectors = SentenceVectors::new(&sentences, embedder.embed(&sentences, &bar)?);
            bar.finish_and_clear();
            Ok(a.iter().zip(b).map(|(x, y)| vectors.cosine(x, y)).collect())
        }
    }
}
