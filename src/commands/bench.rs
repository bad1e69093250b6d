//! `gcse bench train|embed`: builds or loads the model and times the
//! workload; `gcse bench max-batch`: runs `gcse bench train` for one step
//! per trial batch, each in a child process, and reports the largest batch
//! within the budget.

use std::path::Path;

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use clap::ValueEnum;

use crate::backend::BackendTask;
use crate::bench::max_batch::{Outcome, Search};
use crate::bench::report::{gib, BenchReport, Summary};
use crate::bench::workload::{self, Shape};
use crate::bench::{flops, preset, PRESETS};
use crate::cli::{BenchArgs, BenchWorkload};
use crate::error::{Error, Result};
use crate::json_file::write_json;
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
    type Output = Result<BenchReport>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<BenchReport> {
        let args = &self.args;
        for (name, value) in [
            ("--batch-size", args.batch_size),
            ("--seq-len", args.seq_len),
            ("--steps", args.steps),
            ("--grad-cache-chunk", args.grad_cache_chunk.unwrap_or(1)),
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
            grad_cache: args.grad_cache_chunk,
            precision: args.precision,
        };
        let (name, times, enqueued, flops_per_step) = match args.workload {
            BenchWorkload::Train => {
                let times = workload::train(encoder, config.vocab_size, shape, &device);
                if !times.loss.is_finite() {
                    return Err(Error::Usage(format!("the loss became {}", times.loss)));
                }
                (
                    "train",
                    times.steps,
                    Some(times.enqueued),
                    flops::train_step(&config, shape.batch, shape.seq_len),
                )
            }
            BenchWorkload::Embed => (
                "embed",
                workload::embed(encoder.valid(), config.vocab_size, shape, &device),
                None,
                flops::forward(&config, shape.batch, shape.seq_len),
            ),
            BenchWorkload::MaxBatch => unreachable!("max-batch runs `bench train` per trial"),
        };
        let mut report = BenchReport::new(
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
        report.grad_cache_chunk = shape.grad_cache;
        report.host_enqueue_seconds =
            enqueued.and_then(|e| Summary::of(&e[shape.warmup.min(e.len())..]));
        report.precision = args.precision.to_string();
        Ok(report)
    }
}

/// `gcse bench max-batch`: prints (and with `--json` saves) the largest
/// batch and every trial.
pub fn max_batch(args: &BenchArgs) -> Result<()> {
    let work_dir = std::env::temp_dir().join(format!("gcse-max-batch-{}", std::process::id()));
    let backend = args.backend.to_possible_value().expect("a named value");
    let backend = backend.get_name();
    let outcome = search(args, backend, &work_dir);
    // The trials' reports are scratch; failing to remove them loses nothing.
    let _ = std::fs::remove_dir_all(&work_dir);
    let outcome = outcome?;
    let chunk = args
        .grad_cache_chunk
        .map_or(String::new(), |c| format!(", GradCache chunks of {c}"));
    let what = format!(
        "{} x {} tokens in {:.2} GiB ({backend}, {}{chunk})",
        args.model,
        args.seq_len,
        gib(outcome.budget_bytes),
        args.precision,
    );
    match outcome.largest {
        Some(b) => println!("largest training batch of {what}: {b}"),
        None => println!("no training batch of {what} from 8 up fits"),
    }
    if let Some(path) = &args.json {
        write_json(
            path,
            &serde_json::json!({
                "model": args.model,
                "seq_len": args.seq_len,
                "backend": backend,
                "precision": args.precision.to_string(),
                "grad_cache_chunk": args.grad_cache_chunk,
                "outcome": outcome,
            }),
        )?;
    }
    Ok(())
}

/// The search of [`Search`], each trial `gcse bench train` for one step in
/// a child process (so that its peak memory is its own, and running out of
/// memory ends only the child) on `backend`, the trials' reports written in
/// `work_dir`.
fn search(args: &BenchArgs, backend: &str, work_dir: &Path) -> Result<Outcome> {
    let budget = match args.budget_gib {
        Some(g) if g > 0.0 && g.is_finite() => (g * (1u64 << 30) as f64) as u64,
        _ => {
            return Err(Error::Usage(
                "max-batch needs --budget-gib, a positive number of GiB".into(),
            ))
        }
    };
    if args.max_batch < 2 {
        return Err(Error::Usage("--max-batch must be at least 2".into()));
    }
    let exe = std::env::current_exe().map_err(|e| Error::io("the gcse executable", e))?;
    std::fs::create_dir_all(work_dir).map_err(|e| Error::io(work_dir, e))?;
    let search = Search {
        budget,
        start: 8,
        max: args.max_batch,
        granularity: 8,
    };
    let outcome = search.run(|batch| {
        let json = work_dir.join(format!("train-{batch}.json"));
        let mut command = std::process::Command::new(&exe);
        command.args(["bench", "train", "--steps", "1", "--warmup", "0"]);
        command.arg("--model").arg(&args.model);
        command.arg("--seq-len").arg(args.seq_len.to_string());
        command.arg("--batch-size").arg(batch.to_string());
        command.args(["--backend", backend]);
        command.arg("--precision").arg(args.precision.to_string());
        if let Some(chunk) = args.grad_cache_chunk {
            command.arg("--grad-cache-chunk").arg(chunk.to_string());
        }
        command.arg("--json").arg(&json);
        let output = command
            .output()
            .map_err(|e| format!("could not run {}: {e}", exe.display()))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let last = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            return Err(format!("{} ({last})", output.status));
        }
        let report: serde_json::Value = std::fs::read_to_string(&json)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .ok_or_else(|| format!("no report in {}", json.display()))?;
        let bytes = |key: &str| report[key].as_u64();
        let peak = bytes("peak_device_bytes").or_else(|| bytes("peak_host_bytes"));
        eprintln!(
            "batch {batch}: {}",
            peak.map_or("no memory figure".into(), |b| format!("{:.2} GiB", gib(b)))
        );
        peak.ok_or_else(|| "the platform reports no memory figure".into())
    });
    Ok(outcome)
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
