//! The command line (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::backend::BackendKind;
use crate::embed::input::InputFormat;
use crate::eval::sts::StsTask;
use crate::model::pooling::Pooling;

/// Unsupervised sentence embeddings (SimCSE, GCSE) on Burn: CPU, WGPU or CUDA.
#[derive(Debug, Parser)]
#[command(name = "gcse", version, about, max_term_width = 100)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Score a model on the SentEval STS suite (Spearman x 100).
    Eval(EvalArgs),
    /// Write sentence embeddings of a text or JSONL file to .npy or JSONL.
    Embed(EmbedArgs),
    /// Train from a TOML experiment file (stage 1: unsupervised SimCSE).
    Train(TrainArgs),
    /// Write a run's best model or one of its checkpoints as a Hugging Face /
    /// sentence-transformers folder.
    Export(ExportArgs),
    /// Redraw a run's loss.png, sts_dev.png and dashboard.png from its
    /// metrics.jsonl (also while it trains, or after it was stopped).
    Plot(PlotArgs),
}

/// Which model, how to run it, and on what.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Model directory (config.json, tokenizer.json, model.safetensors or
    /// pytorch_model.bin) or a Hugging Face hub id such as
    /// sentence-transformers/all-MiniLM-L6-v2 (fetched into the cache).
    #[arg(long)]
    pub model: String,
    /// Pooling: cls, cls_before_pooler, avg, avg_first_last, avg_top2
    /// [default: what the model directory declares, else cls_before_pooler].
    #[arg(long)]
    pub pooling: Option<Pooling>,
    /// Sentences per forward pass.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Longest tokenized sentence; longer ones are cut [default: the model's
    /// position limit].
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = BackendKind::Auto)]
    pub backend: BackendKind,
}

/// `gcse eval`.
#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Tasks, comma-separated: sts12..sts16, stsb, sickr, and the dev sets
    /// stsb-dev, sickr-dev [default: the seven test tasks].
    #[arg(long, value_delimiter = ',')]
    pub tasks: Vec<StsTask>,
    /// SentEval data directory holding STS/ and SICK/ [default:
    /// $GCSE_DATA/senteval, else ../shared/data/senteval].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// `gcse embed`.
#[derive(Debug, Clone, Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Sentences: a text file (one a line) or JSONL.
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write: .npy (float32 [rows, dim]) or .jsonl.
    #[arg(long)]
    pub output: PathBuf,
    /// Input layout [default: jsonl for .jsonl/.json files, else text].
    #[arg(long, value_enum)]
    pub format: Option<InputFormat>,
    /// JSONL field holding the sentence.
    #[arg(long, default_value = "text")]
    pub field: String,
    /// Scale every vector to unit length.
    #[arg(long)]
    pub normalize: bool,
}

/// `gcse train`.
#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// The experiment file (see configs/ and the README for every key).
    #[arg(long)]
    pub config: PathBuf,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = BackendKind::Auto)]
    pub backend: BackendKind,
    /// Continue the run in the config's run_dir from its newest complete
    /// checkpoint (same model, optimizer, schedule, data order and RNG).
    #[arg(long)]
    pub resume: bool,
    /// Plain log lines instead of the dashboard, even on a terminal.
    #[arg(long)]
    pub no_tui: bool,
    /// Stop cleanly once this many optimizer steps are done in all
    /// (checkpoint written; continue later with --resume), as the
    /// dashboard's stop key does. For time-sliced jobs.
    #[arg(long)]
    pub stop_after: Option<usize>,
    /// Print the experiment with every default filled in, then exit.
    #[arg(long)]
    pub print_config: bool,
}

/// `gcse export`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// A run directory (holding config.toml).
    pub run: PathBuf,
    /// The folder to write (replaced if it exists).
    #[arg(long)]
    pub to: PathBuf,
    /// Export the checkpoint of this step instead of the best model.
    #[arg(long)]
    pub step: Option<usize>,
    /// Compute backend used to load the checkpoint.
    #[arg(long, value_enum, default_value_t = BackendKind::Cpu)]
    pub backend: BackendKind,
}

/// `gcse plot`.
#[derive(Debug, Clone, Args)]
pub struct PlotArgs {
    /// A run directory (holding config.toml and metrics.jsonl).
    pub run: PathBuf,
}
