//! `gcse eval`: the STS table of a model.

use burn::tensor::backend::AutodiffBackend;

use super::InferenceModel;
use crate::atomic::write_atomic;
use crate::backend::BackendTask;
use crate::cli::EvalArgs;
use crate::data::data_root;
use crate::error::Result;
use crate::eval::sts::{evaluate, StsTask};

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
            StsTask::TEST_SUITE.to_vec()
        } else {
            args.tasks.clone()
        };
        let data = args
            .data
            .clone()
            .unwrap_or_else(|| data_root().join("senteval"));
        let model = InferenceModel::<B::InnerBackend>::load(&args.model, &device)?;
        let report = evaluate(
            &model.embedder(args.model.batch_size, &device)?,
            &tasks,
            &data,
        )?;
        println!("{}", report.table());
        println!(
            "{} sentences in {:.1} s ({:.1} sentences/s)",
            report.sentences, report.seconds, report.sentences_per_second
        );
        if let Some(path) = &args.json {
            let json = serde_json::json!({
                "model": args.model.model,
                "pooling": model.pooling.name(),
                "backend": self.backend,
                "max_len": model.model.tokenizer.max_len(),
                "results": report,
            });
            write_atomic(path, |w| {
                serde_json::to_writer_pretty(&mut *w, &json)?;
                Ok(())
            })?;
        }
        Ok(())
    }
}
