//! `gcse export`: a run's best model, or the model of one of its checkpoints,
//! as a Hugging Face / sentence-transformers folder (a `CrossEncoder`'s for
//! a cross-encoder run).

use burn::module::Module;
use burn::tensor::backend::AutodiffBackend;

use crate::backend::BackendTask;
use crate::cli::ExportArgs;
use crate::error::{Error, Result};
use crate::json_file::read_json;
use crate::model::card::model_card;
use crate::model::cross_encoder::{Classifier, LoadedCrossEncoder, ModelKind};
use crate::model::export::{
    check_export_target, sentence_transformers_pooling, write_cross_encoder_folder,
    write_model_folder, FolderMeta,
};
use crate::model::hub::resolve_model;
use crate::model::load::{LoadOptions, LoadedModel};
use crate::objective::registry;
use crate::run_dir::RunDir;
use crate::train::step::{ContrastiveModel, Trained};

/// `gcse export` on a chosen backend.
pub struct ExportTask {
    /// What to export and where.
    pub args: ExportArgs,
}

impl BackendTask for ExportTask {
    type Output = Result<()>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<()> {
        check_export_target(&self.args.to, self.args.force)?;
        let run = RunDir::new(&self.args.run);
        let config = registry::read(&run.config())?;
        let (model, source, meta) = match self.args.step {
            None => {
                let best = run.best();
                let meta: FolderMeta = read_json(&best.join("gcse.json"))?;
                let options = LoadOptions::default();
                let model = match ModelKind::of(&best) {
                    ModelKind::BiEncoder => Trained::Bi(Box::new(
                        LoadedModel::<B::InnerBackend>::from_dir(&best, &options, &device)?.encoder,
                    )),
                    ModelKind::CrossEncoder => Trained::Cross(Box::new(
                        LoadedCrossEncoder::<B::InnerBackend>::trained(&best, &options, &device)?
                            .model,
                    )),
                };
                (model, best, meta)
            }
            Some(step) => {
                let source = resolve_model(&config.model.path)?;
                let options = LoadOptions {
                    max_len: Some(config.model.max_len),
                    dropout: None,
                };
                let start = LoadedModel::<B::InnerBackend>::from_dir(&source, &options, &device)?;
                let cross = registry::model_kind(&config.objective) == ModelKind::CrossEncoder;
                let model = ContrastiveModel {
                    classifier: cross.then(|| Classifier::fresh(&start.config, &device)),
                    encoder: start.encoder,
                    pooling: config.model.pooling,
                };
                let model = run.checkpoints().load_model(step, model, &device)?.into();
                let meta = FolderMeta {
                    pooling: config.model.eval_pooling,
                    max_len: config.model.max_len,
                    provenance: serde_json::json!({
                        "run_dir": run.root(), "step": step, "source_model": config.model.path,
                    }),
                };
                (model, source, meta)
            }
        };
        let test = match std::fs::read_to_string(run.test_results()) {
            Ok(text) if self.args.step.is_none() => serde_json::from_str(&text).ok(),
            _ => None,
        };
        let kind = match &model {
            Trained::Bi(_) => ModelKind::BiEncoder,
            Trained::Cross(_) => ModelKind::CrossEncoder,
        };
        let extra = [("README.md", model_card(&config, &meta, kind, test.as_ref()))];
        let (params, what) = match &model {
            Trained::Bi(encoder) => {
                if sentence_transformers_pooling(meta.pooling).is_none() {
                    return Err(Error::Usage(format!(
                        "{}: this model pools by {}, which sentence-transformers has no module for \
                         (it would load the folder and silently pool by mean, giving other vectors); \
                         use the run directory itself with gcse (--model {}), or train with pooling \
                         cls, cls_before_pooler or avg to export",
                        self.args.run.display(),
                        meta.pooling,
                        self.args.run.display()
                    )));
                }
                write_model_folder(encoder, &source, &self.args.to, &meta, &extra)?;
                (encoder.num_params(), format!("{} pooling", meta.pooling))
            }
            Trained::Cross(cross) => {
                write_cross_encoder_folder(cross, &source, &self.args.to, &meta, &extra)?;
                (cross.num_params(), "cross-encoder".to_string())
            }
        };
        println!(
            "wrote {} ({what}, {params} parameters)",
            self.args.to.display(),
        );
        Ok(())
    }
}
