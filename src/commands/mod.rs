//! What each subcommand does, once the backend is chosen.

pub mod embed;
pub mod eval;

use std::path::Path;

use burn::tensor::backend::Backend;

use crate::backend::{self, Resolved};
use crate::cli::{Cli, Command, ModelArgs};
use crate::embed::embedder::Embedder;
use crate::error::{Error, Result};
use crate::model::hub::resolve_model;
use crate::model::load::LoadedModel;
use crate::model::pooling::{declared_pooling, Pooling};

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Eval(args) => {
            let resolved = announce(&args.model)?;
            backend::run(
                &resolved,
                eval::EvalTask {
                    args,
                    backend: resolved.to_string(),
                },
            )
        }
        Command::Embed(args) => {
            let resolved = announce(&args.model)?;
            backend::run(&resolved, embed::EmbedTask { args })
        }
    }
}

/// Resolves `--backend` and prints the choice.
fn announce(args: &ModelArgs) -> Result<Resolved> {
    let resolved = backend::resolve(args.backend)?;
    eprintln!("backend: {resolved}");
    Ok(resolved)
}

/// A model loaded for inference with its pooling decided.
pub struct InferenceModel<B: Backend> {
    /// Encoder, tokenizer and load report.
    pub model: LoadedModel<B>,
    /// The pooling to use.
    pub pooling: Pooling,
}

impl<B: Backend> InferenceModel<B> {
    /// Resolves and loads `--model`, picks the pooling and reports both.
    pub fn load(args: &ModelArgs, device: &B::Device) -> Result<Self> {
        let dir = resolve_model(&args.model)?;
        let model = LoadedModel::<B>::from_dir(&dir, args.max_len, device)?;
        let pooling = choose_pooling(args.pooling, &dir);
        if pooling == Pooling::Cls && !model.report.has_pooler() {
            return Err(Error::Usage(format!(
                "{}: the checkpoint has no pooler weights, so `cls` pooling would use a random MLP; \
                 use --pooling cls_before_pooler",
                model.report.weights.display()
            )));
        }
        eprintln!(
            "model: {} ({} tensors loaded{}), pooling: {pooling}, max length: {}",
            dir.display(),
            model.report.loaded,
            if model.report.unused.is_empty() {
                String::new()
            } else {
                format!(
                    ", {} unused: {}",
                    model.report.unused.len(),
                    abbreviate(&model.report.unused)
                )
            },
            model.tokenizer.max_len(),
        );
        Ok(Self { model, pooling })
    }

    /// An embedder over this model.
    pub fn embedder(&self, batch_size: usize, device: &B::Device) -> Result<Embedder<'_, B>> {
        if batch_size == 0 {
            return Err(Error::Usage("--batch-size must be at least 1".into()));
        }
        Ok(Embedder {
            encoder: &self.model.encoder,
            tokenizer: &self.model.tokenizer,
            pad_id: self.model.config.pad_token_id as u32,
            pooling: self.pooling,
            batch_size,
            device: device.clone(),
        })
    }
}

/// `--pooling` if given, else what the model directory declares, else
/// `cls_before_pooler` (unsupervised SimCSE's evaluation pooling).
fn choose_pooling(requested: Option<Pooling>, dir: &Path) -> Pooling {
    requested
        .or_else(|| declared_pooling(dir))
        .unwrap_or(Pooling::ClsBeforePooler)
}

fn abbreviate(names: &[String]) -> String {
    let shown: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
    let more = names.len().saturating_sub(shown.len());
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}
