//! `gcse embed`: sentence vectors of a file.

use burn::tensor::backend::AutodiffBackend;

use super::InferenceModel;
use crate::backend::BackendTask;
use crate::cli::EmbedArgs;
use crate::embed::embedder::normalize_rows;
use crate::embed::input::{read_input, InputFormat, InputLayout};
use crate::embed::npy::write_npy_rows;
use crate::embed::output::{write_jsonl, OutputFormat};
use crate::error::{Error, Result};

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
        let layout = InputLayout {
            format: args
                .format
                .unwrap_or_else(|| InputFormat::from_path(&args.input)),
            field: args.field.clone(),
            column: args.column.clone(),
            header: args.header,
        };
        let input = read_input(&args.input, &layout)?;
        let model = InferenceModel::<B::InnerBackend>::load(&args.model, &device)?;
        let embedder = model.embedder(args.model.batch_size, &device)?;
        let dim = embedder.dim();
        let bar = crate::progress::items(input.texts.len() as u64, "sentences");
        let start = std::time::Instant::now();
        let truncated = match output {
            OutputFormat::Npy => {
                let mut truncated = 0;
                write_npy_rows(&args.output, input.texts.len(), dim, |rows| {
                    truncated = embedder.embed_each(&input.texts, &bar, |batch, values| {
                        for (&i, row) in batch.iter().zip(values.chunks_mut(dim)) {
                            if args.normalize {
                                normalize_rows(row, dim);
                            }
                            rows.write(i, row).map_err(|e| Error::io(&args.output, e))?;
                        }
                        Ok(())
                    })?;
                    Ok(())
                })?;
                truncated
            }
            OutputFormat::Jsonl => {
                let mut embeddings = embedder.embed(&input.texts, &bar)?;
                if args.normalize {
                    embeddings.normalize();
                }
                write_jsonl(&args.output, &embeddings, &input)?;
                embeddings.truncated
            }
        };
        bar.finish_and_clear();
        let seconds = start.elapsed().as_secs_f64();
        eprintln!(
            "{} sentences ({} blank lines skipped, {} truncated to {} tokens) in {seconds:.1} s ({}) → {} [{} x {dim}]",
            input.texts.len(),
            input.skipped_blank,
            truncated,
            model.model.tokenizer.max_len(),
            crate::progress::rate(input.texts.len() as f64 / seconds.max(1e-9)),
            args.output.display(),
            input.texts.len(),
        );
        Ok(())
    }
}
