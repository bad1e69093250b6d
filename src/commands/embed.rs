//! `gcse embed`: sentence vectors of a file.

use burn::tensor::backend::AutodiffBackend;

use super::InferenceModel;
use crate::backend::BackendTask;
use crate::cli::EmbedArgs;
use crate::embed::input::{read_input, InputFormat};
use crate::embed::npy::write_npy;
use crate::embed::output::{write_jsonl, OutputFormat};
use crate::error::Result;

/// `gcse embed` on a chosen backend.
pub struct EmbedTask {
    /// The command line.
    pub args: EmbedArgs,
}

impl BackendTask for EmbedTask {
    type Output = Result<()>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<()> {
        let args = self.args;
        let output = OutputFormat::from_path(&args.output)?;
        let format = args
            .format
            .unwrap_or_else(|| InputFormat::from_path(&args.input));
        let input = read_input(&args.input, format, &args.field)?;
        let model = InferenceModel::<B::InnerBackend>::load(&args.model, &device)?;
        let bar = crate::progress::items(input.texts.len() as u64, "sentences");
        let start = std::time::Instant::now();
        let mut embeddings = model
            .embedder(args.model.batch_size, &device)?
            .embed(&input.texts, &bar)?;
        bar.finish_and_clear();
        let seconds = start.elapsed().as_secs_f64();
        if args.normalize {
            embeddings.normalize();
        }
        match output {
            OutputFormat::Npy => write_npy(&args.output, &embeddings)?,
            OutputFormat::Jsonl => write_jsonl(&args.output, &embeddings, &input)?,
        }
        eprintln!(
            "{} sentences ({} blank lines skipped, {} truncated to {} tokens) in {seconds:.1} s ({:.1}/s) → {} [{} x {}]",
            input.texts.len(),
            input.skipped_blank,
            embeddings.truncated,
            model.model.tokenizer.max_len(),
            input.texts.len() as f64 / seconds.max(1e-9),
            args.output.display(),
            embeddings.rows(),
            embeddings.dim,
        );
        Ok(())
    }
}
