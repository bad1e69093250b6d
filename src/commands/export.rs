//! `gcse export`: a run's best model, or the model of one of its checkpoints,
//! as a Hugging Face / sentence-transformers folder.

use burn::module::Module;
use burn::tensor::backend::AutodiffBackend;

use crate::backend::BackendTask;
use crate::cli::ExportArgs;
use crate::config::TrainConfig;
use crate::error::{Error, Result};
use crate::model::export::{write_model_folder, FolderMeta};
use crate::model::hub::resolve_model;
use crate::model::load::{LoadOptions, LoadedModel};
use crate::train::checkpoint::Checkpoints;
use crate::train::model::ContrastiveModel;
use crate::train::run::files;

/// `gcse export` on a chosen backend.
pub struct ExportTask {
    /// What to export and where.
    pub args: ExportArgs,
}

impl BackendTask for ExportTask {
    type Output = Result<()>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<()> {
        let run = &self.args.run;
        let config = TrainConfig::load(&run.join(files::CONFIG))?;
        let (encoder, source, meta) = match self.args.step {
            None => {
                let best = run.join(files::BEST);
                let meta_path = best.join("gcse.json");
                let text =
                    std::fs::read_to_string(&meta_path).map_err(|e| Error::io(&meta_path, e))?;
                let meta: FolderMeta = serde_json::from_str(&text).map_err(|e| Error::Config {
                    path: meta_path.clone(),
                    message: e.to_string(),
                })?;
                let model = LoadedModel::<B::InnerBackend>::from_dir(
                    &best,
                    &LoadOptions::default(),
                    &device,
                )?;
                (model.encoder, best, meta)
            }
            Some(step) => {
                let source = resolve_model(&config.model.path)?;
                let options = LoadOptions {
                    max_len: Some(config.model.max_len),
                    dropout: None,
                };
                let start = LoadedModel::<B::InnerBackend>::from_dir(&source, &options, &device)?;
                let model = ContrastiveModel::new(start.encoder, &config);
                let encoder = Checkpoints::new(run)
                    .load_model(step, model, &device)?
                    .encoder;
                let meta = FolderMeta {
                    pooling: config.model.eval_pooling,
                    max_len: config.model.max_len,
                    provenance: serde_json::json!({
                        "run_dir": run, "step": step, "source_model": config.model.path,
                    }),
                };
                (encoder, source, meta)
            }
        };
        write_model_folder(&encoder, &source, &self.args.to, &meta)?;
        println!(
            "wrote {} ({} pooling, {} parameters)",
            self.args.to.display(),
            meta.pooling,
            encoder.num_params()
        );
        Ok(())
    }
}
