//! `gcse bench train|embed`: builds or loads the model, times the workload,
//! prints and saves the figures.

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;

use crate::backend::BackendTask;
use crate::bench::report::BenchReport;
use crate::bench::workload::{self, Shape};
use crate::bench::{flops, preset, PRESETS};
use crate::cli::{BenchArgs, BenchWorkload};
use crate::error::{Error, Result};
use crate::model::config::BertConfig;
use crate::model::encoder::{SentenceEncoder, SentenceEncoderConfig};
use crate::model::hub::resolve_model;
use crate::model::load::{LoadOptions, LoadedModel};

/// `gcse bench` on a chosen backend.
pub struct BenchTask {
    /// The command line.
    pub args: BenchArgs,
    /// The backend as printed.
    pub backend: String,
}

impl BackendTask for BenchTask {
    type Output = Result<()>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<()> {
        let args = &self.args;
        for (name, value) in [
            ("--batch-size", args.batch_size),
            ("--seq-len", args.seq_len),
            ("--steps", args.steps),
        ] {
            if value == 0 {
                return Err(Error::Usage(format!("{name} must be at least 1")));
            }
        }
        if args
            .peak_tflops
            .is_some_and(|p| !(p > 0.0 && p.is_finite()))
        {
            return Err(Error::Usage(
                "--peak-tflops must be a positive number".into(),
            ));
        }
        let (encoder, config) = encoder::<B>(&args.model, &device)?;
        if args.seq_len > config.max_tokens() {
            return Err(Error::Usage(format!(
                "--seq-len {} exceeds the model's {} positions",
                args.seq_len,
                config.max_tokens()
            )));
        }
        let shape = Shape {
            batch: args.batch_size,
            seq_len: args.seq_len,
            warmup: args.warmup,
            steps: args.steps,
            seed: 42,
        };
        let (name, times, flops_per_step) = match args.workload {
            BenchWorkload::Train => {
                let (times, loss) = workload::train(encoder, config.vocab_size, shape, &device);
                if !loss.is_finite() {
                    return Err(Error::Usage(format!("the loss became {loss}")));
                }
                (
                    "train",
                    times,
                    flops::train_step(&config, shape.batch, shape.seq_len),
                )
            }
            BenchWorkload::Embed => (
                "embed",
                workload::embed(encoder.valid(), config.vocab_size, shape, &device),
                flops::forward(&config, shape.batch, shape.seq_len),
            ),
        };
        let report = BenchReport::new(
            "gcse",
            name,
            &args.model,
            &self.backend,
            shape.batch,
            shape.seq_len,
            shape.warmup,
            &times,
            flops_per_step,
            args.peak_tflops,
        )
        .expect("at least one timed step of finite length");
        println!("{report}");
        if let Some(path) = &args.json {
            report.save(path)?;
        }
        Ok(())
    }
}

/// A preset architecture, randomly initialised, or a model's weights.
fn encoder<B: AutodiffBackend>(
    model: &str,
    device: &B::Device,
) -> Result<(SentenceEncoder<B>, BertConfig)> {
    if let Some(config) = preset(model) {
        let encoder = SentenceEncoderConfig::new(config.clone()).init(device);
        return Ok((encoder, config));
    }
    let dir = resolve_model(model).map_err(|e| match e {
        Error::ModelNotFound(why) => Error::ModelNotFound(format!(
            "{why} (or use a built-in architecture: {})",
            PRESETS.join(", ")
        )),
        other => other,
    })?;
    let loaded = LoadedModel::<B>::from_dir(&dir, &LoadOptions::default(), device)?;
    Ok((loaded.encoder, loaded.config))
}
