//! The student: the encoder a run trains, loaded from `model.path` with its
//! `cls` pooler's MLP started as `model.mlp_init` (or the objective) says.

use std::path::PathBuf;

use burn::tensor::backend::AutodiffBackend;

use super::step::ContrastiveModel;
use crate::config::{MlpInit, ModelSection};
use crate::data::mix::stream;
use crate::data::tokenizer::SentenceTokenizer;
use crate::error::{Error, Result};
use crate::model::bert::hf_linear;
use crate::model::cross_encoder::{classifier_for, ModelKind};
use crate::model::hub::resolve_model;
use crate::model::lazy::materialise;
use crate::model::load::{LoadOptions, LoadedModel};
use crate::model::pooling::Pooling;
use crate::rng::SplitMix64;

/// A loaded student and what came with it.
pub struct Student<B: AutodiffBackend> {
    /// The model to train.
    pub model: ContrastiveModel<B>,
    /// Its tokenizer, cutting at `model.max_len`.
    pub tokenizer: SentenceTokenizer,
    /// The checkpoint's pad token id.
    pub pad_id: u32,
    /// The model directory it came from (its config and tokenizer files go
    /// into exported folders).
    pub dir: PathBuf,
}

impl<B: AutodiffBackend> Student<B> {
    /// Loads `section`'s model. The MLP starts as `section.mlp_init` says,
    /// else as `default_init`; a fresh one is drawn from `seed`'s MLP
    /// stream. When the objective's default is `Pretrained` (it continues a
    /// trained model, `objective` names it), a checkpoint without MLP
    /// weights is an error rather than a silent fresh MLP. A cross-encoder
    /// (`kind`) pools `cls` and gets its head from the checkpoint, else a
    /// fresh one drawn from `seed`'s head stream.
    pub fn load(
        section: &ModelSection,
        default_init: MlpInit,
        kind: ModelKind,
        objective: &str,
        seed: u64,
        device: &B::Device,
    ) -> Result<Self> {
        let dir = resolve_model(&section.path)?;
        let options = LoadOptions {
            max_len: Some(section.max_len),
            dropout: section.dropout,
        };
        let loaded = LoadedModel::<B>::from_dir(&dir, &options, device)?;
        let mut encoder = loaded.encoder;
        let init = section.mlp_init.unwrap_or(default_init);
        let has_mlp = loaded.report.has_pooler();
        if init == MlpInit::Pretrained && default_init == MlpInit::Pretrained && !has_mlp {
            return Err(Error::Usage(format!(
                "{}: no pooler (MLP) weights to continue from; objective {objective} continues a \
                 trained model: start from a stage-1 run or model folder that has them",
                loaded.report.weights.display(),
            )));
        }
        if init == MlpInit::Random || !has_mlp {
            B::seed(
                device,
                SplitMix64::derived(seed, &[stream::MLP_INIT]).next_u64(),
            );
            let h = loaded.config.hidden_size;
            let init = burn::module::Initializer::Normal {
                mean: 0.0,
                std: loaded.config.initializer_range,
            };
            encoder.pooler = hf_linear(h, h, &init, device);
            materialise(&encoder.pooler);
        }
        let (pooling, classifier) = match kind {
            ModelKind::BiEncoder => (section.pooling, None),
            ModelKind::CrossEncoder => {
                let seed = SplitMix64::derived(seed, &[stream::HEAD_INIT]).next_u64();
                let (head, _) =
                    classifier_for(&loaded.config, &loaded.report.weights, seed, device)?;
                (Pooling::Cls, Some(head))
            }
        };
        Ok(Self {
            model: ContrastiveModel {
                encoder,
                pooling,
                classifier,
            },
            tokenizer: loaded.tokenizer,
            pad_id: loaded.config.pad_token_id as u32,
            dir,
        })
    }
}
