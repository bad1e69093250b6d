//! What each subcommand does, once the backend is chosen.

pub mod bench;
pub mod compare;
pub mod embed;
pub mod eval;
pub mod export;
pub mod filter;
pub mod pipeline;
pub mod score;
pub mod synth;
pub mod train;

use std::path::Path;

use burn::tensor::backend::Backend;

use crate::backend::{self, BackendKind, Resolved};
use crate::cli::{BenchWorkload, Cli, Command, ModelArgs};
use crate::embed::embedder::Embedder;
use crate::error::{Error, Result};
use crate::model::cross_encoder::LoadedCrossEncoder;
use crate::model::hub::resolve_model;
use crate::model::load::{LoadOptions, LoadedModel};
use crate::model::pooling::{declared_pooling, Pooling};
use crate::objective::registry;
use crate::run_dir::RunDir;

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Eval(args) => {
            let resolved = announce(args.model.backend)?;
            backend::run(
                &resolved,
                eval::EvalTask {
                    args,
                    backend: resolved.to_string(),
                },
            )
        }
        Command::Score(args) => {
            let resolved = announce(args.model.backend)?;
            backend::run(&resolved, score::ScoreTask { args })
        }
        Command::Embed(args) => {
            let resolved = announce(args.model.backend)?;
            backend::run(&resolved, embed::EmbedTask { args })
        }
        Command::Train(args) => {
            let config = registry::load_with(&args.config, &args.overrides())?;
            if args.print_config {
                print!("{}", config.to_toml());
                return Ok(());
            }
            let resolved = announce(args.backend)?;
            let precision = config.train.precision;
            let backend = match precision {
                backend::Precision::F32 => resolved.to_string(),
                mixed => format!("{resolved}, {mixed}"),
            };
            let task = train::TrainTask {
                config,
                resume: args.resume,
                no_tui: args.no_tui,
                stop_after: args.stop_after,
                backend,
            };
            backend::run_at(&resolved, precision, task).map_err(|e| {
                Error::Usage(format!("{}: `train.precision`: {e}", args.config.display()))
            })?
        }
        Command::Filter(args) => {
            let resolved = announce(args.backend)?;
            backend::run(&resolved, filter::FilterTask { args })
        }
        Command::Compare(args) => {
            println!("{}", compare::compare(&args.runs)?);
            Ok(())
        }
        Command::Plot(args) => {
            let run = RunDir::new(&args.run);
            let config = registry::read(&run.config())?;
            let panel = registry::panel(&config.objective);
            crate::train::plots::write_run_plots(&run, &config, panel.clone())?;
            let extra = panel.map_or(String::new(), |p| format!(", {}", p.plot));
            println!(
                "wrote the plots ({}, {}, {}{extra}) in {}",
                RunDir::LOSS_PNG,
                RunDir::DEV_PNG,
                RunDir::DASHBOARD_PNG,
                args.run.display()
            );
            // Runs of versions before the event file get one; a run's own
            // file is its trainer's to write.
            let events = run.file(RunDir::EVENTS);
            if !events.exists() {
                let entries = crate::train::metrics_log::read_log(&run.metrics())?;
                crate::train::tfevents::EventsFile::create(&events, &entries)?;
                println!(
                    "wrote {} (TensorBoard) from {}",
                    RunDir::EVENTS,
                    RunDir::METRICS
                );
            }
            Ok(())
        }
        Command::Bench(args) if args.workload == BenchWorkload::MaxBatch => bench::max_batch(&args),
        Command::Bench(args) => {
            let resolved = announce(args.backend)?;
            let json = args.json.clone();
            let precision = args.precision;
            let task = bench::BenchTask {
                args,
                backend: resolved.to_string(),
            };
            let mut report = backend::run_at(&resolved, precision, task)??;
            report.peak_device_bytes = resolved.device_memory_reserved();
            println!("{report}");
            if let Some(path) = &json {
                crate::json_file::write_json(path, &report)?;
            }
            Ok(())
        }
        Command::Export(args) => {
            let resolved = announce(args.backend)?;
            backend::run(&resolved, export::ExportTask { args })
        }
        Command::Synth(command) => synth::run(command),
        Command::Pipeline(args) => pipeline::pipeline(&args),
        Command::Study(args) => pipeline::study(&args),
        Command::DistillCycle(args) => pipeline::distill_cycle(&args),
    }
}

/// Resolves `--backend` and prints the choice.
fn announce(kind: BackendKind) -> Result<Resolved> {
    let resolved = backend::resolve(kind)?;
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
        let model = LoadedModel::<B>::from_dir(
            &dir,
            &LoadOptions {
                max_len: args.max_len,
                dropout: None,
            },
            device,
        )?;
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
        Ok(Embedder::of(&self.model, self.pooling, batch_size, device))
    }
}

/// Loads `--model` as a trained cross-encoder (`dir`, resolved) and
/// reports it; `--pooling` is an error.
pub fn load_cross_encoder<B: Backend>(
    args: &ModelArgs,
    dir: &Path,
    device: &B::Device,
) -> Result<LoadedCrossEncoder<B>> {
    if args.pooling.is_some() {
        return Err(Error::Usage(format!(
            "{}: a cross-encoder scores pairs through its head and has no pooling; leave out --pooling",
            dir.display()
        )));
    }
    let options = LoadOptions {
        max_len: args.max_len,
        dropout: None,
    };
    let cross = LoadedCrossEncoder::<B>::trained(dir, &options, device)?;
    eprintln!(
        "model: {} (cross-encoder, {} tensors and the head loaded), max pair length: {}",
        dir.display(),
        cross.loaded,
        cross.tokenizer.max_len(),
    );
    Ok(cross)
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
