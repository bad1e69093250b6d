//! `gcse eval`: the results table of a model on any registered tasks (by
//! default the seven STS test tasks); a cross-encoder scores each pair of a
//! task of scored pairs.

use burn::tensor::backend::AutodiffBackend;

use super::{load_cross_encoder, InferenceModel};
use crate::backend::BackendTask;
use crate::cli::EvalArgs;
use crate::data::data_root;
use crate::error::Result;
use crate::eval::evaluator::{evaluate, evaluate_pairs, EvalData};
use crate::eval::mteb::write_results;
use crate::eval::registry::{self, TEST_SUITE};
use crate::json_file::write_json;
use crate::model::cross_encoder::ModelKind;
use crate::model::hub::resolve_model;

/// `gcse eval` on a chosen backend.
pub struct EvalTask {
    /// The command line.
    pub args: EvalArgs,
    /// The backend, as printed.
    pub backend: String,
}

impl BackendTask for EvalTask {
    type Output = Result<()>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<()> {
        let args = self.args;
        let tasks = if args.tasks.is_empty() {
            TEST_SUITE.iter().map(|t| t.to_string()).collect()
        } else {
            args.tasks.clone()
        };
        let data = EvalData {
            senteval: args
                .data
                .clone()
                .unwrap_or_else(|| data_root().join("senteval")),
        };
        let evaluators = registry::load(&tasks, &data)?;
        let dir = resolve_model(&args.model.model)?;
        let (report, pooling, max_len) = match ModelKind::of(&dir) {
            ModelKind::BiEncoder => {
                let model = InferenceModel::<B::InnerBackend>::load(&args.model, &device)?;
                let report = evaluate(
                    &model.embedder(args.model.batch_size, &device)?,
                    &evaluators,
                )?;
                (
                    report,
                    model.pooling.name(),
                    model.model.tokenizer.max_len(),
                )
            }
            ModelKind::CrossEncoder => {
                let cross = load_cross_encoder::<B::InnerBackend>(&args.model, &dir, &device)?;
                let scorer = cross.scorer(args.model.batch_size, &device);
                let report = evaluate_pairs(&scorer, &evaluators)?;
                (report, "cross-encoder", cross.tokenizer.max_len())
            }
        };
        println!("{}", report.table());
        let unit = if pooling == "cross-encoder" {
            "pairs"
        } else {
            "sentences"
        };
        println!(
            "{} {unit} in {:.1} s ({:.1} {unit}/s)",
            report.sentences, report.seconds, report.sentences_per_second
        );
        if let Some(dir) = &args.mteb_dir {
            let files = write_results(dir, &report, |t| registry::metrics(t).unwrap_or(&[]))?;
            println!(
                "MTEB-style results: {} files in {}",
                files.len(),
                dir.display()
            );
        }
        if let Some(path) = &args.json {
            let json = serde_json::json!({
                "model": args.model.model,
                "pooling": pooling,
                "backend": self.backend,
                "max_len": max_len,
                "results": report,
            });
            write_json(path, &json)?;
        }
        Ok(())
    }
}
