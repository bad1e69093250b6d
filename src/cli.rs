//! The command line (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::backend::{BackendKind, Precision};
use crate::config::TrainSection;
use crate::data::corpus::{Column, OnBadLine};
use crate::embed::input::InputFormat;
use crate::model::pooling::Pooling;
use crate::overrides::Override;
use crate::triplets::candidates::CandidateFormat;
use crate::triplets::rule::{Fallback, FilterMode, FilterSection};
use crate::triplets::Origin;

/// The environment variables gcse reads, for `--help`.
const ENVIRONMENT: &str = "\
Environment:
  GCSE_DATA               Root of the STS data and corpora (senteval/, corpus/); $GCSE_DATA
                          in an experiment file expands to it [default: ../shared/data if it
                          exists, else $GCSE_CACHE/data]
  GCSE_CACHE              gcse's caches: downloaded wheels, the setup's venv, data
                          [default: ~/.cache/gcse]
  HF_HUB_CACHE, HF_HOME   The Hugging Face cache hub ids are fetched into and found in
                          [default: $HF_HOME/hub, else ~/.cache/huggingface/hub]
  HF_ENDPOINT, HF_TOKEN   The hub's address and an access token
  HF_HUB_OFFLINE=1        Hub ids from the cache only, never the network
  GCSE_HUB_TIMEOUT_S      Seconds a hub server may take to answer [default: 60]
  CUBECL_AUTOTUNE_LEVEL   How hard wgpu/cuda tune their kernels: minimal, balanced,
                          extensive, full
  CUBECL_DEBUG_LOG        CubeCL's compilation, profiling and tuning log: stdout, stderr
  CUBECL_DEBUG_OPTION     What that log holds: debug, debug-full, profile, profile-medium,
                          profile-full
  RAYON_NUM_THREADS       Threads of the CPU backend [default: one per core]

--model takes a model directory, a training run directory (its best model) or a hub id.";

/// `gcse --version`: the version and the optional parts built in.
fn version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| {
        let features: Vec<&str> = [
            ("openblas", cfg!(feature = "openblas")),
            ("cuda", cfg!(feature = "cuda")),
            ("llama", cfg!(feature = "llama")),
        ]
        .into_iter()
        .filter_map(|(name, on)| on.then_some(name))
        .collect();
        let backends = if cfg!(feature = "cuda") {
            "cpu, wgpu, cuda"
        } else {
            "cpu, wgpu"
        };
        format!(
            "{} (features: {}; backends: {backends})",
            env!("CARGO_PKG_VERSION"),
            if features.is_empty() {
                "none".to_string()
            } else {
                features.join(", ")
            }
        )
    })
}

/// Unsupervised sentence embeddings (SimCSE, GCSE) on Burn: CPU, WGPU or CUDA.
#[derive(Debug, Parser)]
#[command(name = "gcse", version = version(), about, max_term_width = 100, after_help = ENVIRONMENT)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Score a model on the SentEval STS suite (Spearman x 100); a
    /// cross-encoder scores each pair directly.
    Eval(EvalArgs),
    /// Score sentence pairs with a model: a cross-encoder's sigmoid of its
    /// logit, or a bi-encoder's cosine.
    Score(ScoreArgs),
    /// Write sentence embeddings of a text or JSONL file to .npy or JSONL.
    Embed(EmbedArgs),
    /// Train from a TOML experiment file (stage 1: unsupervised SimCSE;
    /// stage 2: GCSE on triplets).
    Train(TrainArgs),
    /// Build (anchor, positive, hard negative) triplets from synthetic
    /// candidates, filtered by a frozen stage-1 model (paper Eq. 10-11).
    Filter(FilterArgs),
    /// Write a run's best model or one of its checkpoints as a Hugging Face /
    /// sentence-transformers folder.
    Export(ExportArgs),
    /// Redraw a run's loss.png, sts_dev.png, dashboard.png (and decay.png in stage 2) from its
    /// metrics.jsonl (also while it trains, or after it was stopped); a run
    /// without a TensorBoard event file gets one.
    Plot(PlotArgs),
    /// Runs side by side: best dev score, test tables, and the settings in
    /// which their experiment files differ.
    Compare(CompareArgs),
    /// Time the training step or the embedding pass on synthetic batches of
    /// fixed shape (see scripts/bench_torch.py for the PyTorch side).
    Bench(BenchArgs),
    /// Data synthesis with an LLM (paper section 3.1).
    #[command(subcommand)]
    Synth(SynthCommand),
    /// Run a method's stages (train, synth, filter, eval) from one pipeline
    /// file, each skipped when done with the same inputs, resumed when
    /// interrupted, rerun when its settings or anything upstream changed.
    Pipeline(PipelineArgs),
    /// Run variants of a pipeline (ablations, seeds) sharing identical
    /// stages, then one results table (study.md, study.json).
    Study(StudyArgs),
    /// Bi-/cross-encoder mutual distillation (after Trans-Encoder): cycles
    /// in which a bi-encoder labels unlabeled pairs, a cross-encoder trains
    /// on them and relabels them, and the bi-encoder trains on its labels;
    /// each cycle's models kept, the best of each kind by STS-B dev.
    DistillCycle(CycleArgs),
}

/// `gcse score`.
#[derive(Debug, Clone, Args)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Pairs: JSONL (`a`/`b`, `sentence1`/`sentence2`...) or tab-separated
    /// (first two columns, or columns named by a header).
    #[arg(long)]
    pub input: PathBuf,
    /// Write JSONL `{a, b, score}` here [default: print to stdout].
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// `gcse distill-cycle`.
#[derive(Debug, Clone, Args)]
pub struct CycleArgs {
    /// The cycle file (see configs/quickstart-cycle.toml).
    #[arg(long)]
    pub config: PathBuf,
    /// Write the unlabeled pairs (every stage's input), then print each
    /// stage's state, why it would run and its command; train nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub stages: StageRunArgs,
}

/// `gcse synth ...`.
#[derive(Debug, Subcommand)]
pub enum SynthCommand {
    /// Knowledge extraction for every source sentence: knowledge.jsonl.
    Extract(SynthArgs),
    /// The entity knowledge graph of the extracted knowledge: graph.json,
    /// graph.dot.
    Graph(GraphArgs),
    /// Positive and negative candidates for every source: candidates.jsonl
    /// (what `gcse filter` reads).
    Generate(SynthArgs),
    /// extract, graph and generate in turn.
    All(SynthArgs),
    /// Rewrite chains of every source sentence for ranking-sentence
    /// generation (`[chains]`; guided by classifier-free guidance with the
    /// embedded engine): lists.jsonl (what objective "rankgen" reads) and
    /// chains.report.json.
    Chains(ChainsArgs),
    /// Serve a GGUF model with the embedded engine as an OpenAI-compatible
    /// server (POST /v1/chat/completions, /v1/completions; GET /v1/models),
    /// so that several runs share one loaded model (needs the `llama`
    /// build feature).
    Serve(ServeArgs),
}

/// The config of a synthesis run.
#[derive(Debug, Clone, Args)]
pub struct SynthArgs {
    /// A synthesis config (configs/synth-*.toml).
    #[arg(long)]
    pub config: PathBuf,
}

/// `gcse synth chains`.
#[derive(Debug, Clone, Args)]
pub struct ChainsArgs {
    #[command(flatten)]
    pub synth: SynthArgs,
    /// Compute backend of the monotonicity filter's frozen model.
    #[arg(long, value_enum, default_value_t = BackendKind::Auto)]
    pub backend: BackendKind,
}

/// `gcse synth graph`.
#[derive(Debug, Clone, Args)]
pub struct GraphArgs {
    #[command(flatten)]
    pub synth: SynthArgs,
    /// Print node and edge counts by type.
    #[arg(long)]
    pub stats: bool,
    /// Print the replacement candidates T(t) of this entity (T_p first).
    #[arg(long)]
    pub entity: Vec<String>,
}

/// `gcse synth serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// The GGUF file.
    #[arg(long)]
    pub gguf: PathBuf,
    /// The model name clients ask for [default: the file name].
    #[arg(long)]
    pub name: Option<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Context length in tokens (prompt and answer).
    #[arg(long, default_value_t = 2048)]
    pub context: u32,
    /// CPU threads (0: all).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Layers offloaded to a GPU llama.cpp was built for.
    #[arg(long, default_value_t = 0)]
    pub gpu_layers: u32,
    /// Requests running or waiting beyond which new ones get 503.
    #[arg(long, default_value_t = 8)]
    pub max_queue: usize,
    /// Connections open at once beyond which a new one gets 503.
    #[arg(long, default_value_t = 64)]
    pub max_connections: usize,
    /// Seconds a connection may sit silent, or take to send a request.
    #[arg(long, default_value_t = 30.0)]
    pub read_timeout_s: f64,
}

/// Which model, how to run it, and on what.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Model directory (config.json, tokenizer.json, model.safetensors or
    /// pytorch_model.bin), a training run directory (its best model) or a
    /// Hugging Face hub id such as sentence-transformers/all-MiniLM-L6-v2
    /// (fetched into the Hugging Face cache).
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
    #[arg(long, value_parser = max_len)]
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
    /// Tasks, comma-separated: sts12..sts16, stsb, sickr, the dev sets
    /// stsb-dev, sickr-dev, and tasks read from files: rerank:PATH (MTEB
    /// reranking JSONL), retrieval:DIR (BEIR layout), pairclass:PATH
    /// (labelled pairs), pairs:PATH (scored pairs) [default: the seven STS
    /// test tasks].
    #[arg(long, value_delimiter = ',', value_parser = task_name)]
    pub tasks: Vec<String>,
    /// SentEval data directory holding STS/ and SICK/ [default:
    /// $GCSE_DATA/senteval, else ../shared/data/senteval].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also write each task's results as MTEB does, one JSON file per task
    /// in this directory.
    #[arg(long)]
    pub mteb_dir: Option<PathBuf>,
}

/// A `--max-len`: a whole number that leaves room for a word between the
/// special tokens.
fn max_len(text: &str) -> Result<usize, String> {
    let n: usize = text
        .parse()
        .map_err(|_| format!("\"{text}\" is not a whole number"))?;
    if n < crate::config::MIN_MAX_LEN {
        return Err(format!(
            "must be at least {} (a special token on each side and a word)",
            crate::config::MIN_MAX_LEN
        ));
    }
    Ok(n)
}

/// An evaluation task's registered name.
fn task_name(name: &str) -> Result<String, String> {
    crate::eval::registry::canonical(name)
}

/// `gcse embed`.
#[derive(Debug, Clone, Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Sentences: a text file (one a line), JSONL, TSV or CSV; `.gz`
    /// after the extension is read compressed.
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write: .npy (float32 [rows, dim], written row by row as
    /// batches finish) or .jsonl.
    #[arg(long)]
    pub output: PathBuf,
    /// Input layout [default: by extension: .jsonl/.json/.ndjson, .tsv,
    /// .csv, else text].
    #[arg(long, value_enum)]
    pub format: Option<InputFormat>,
    /// JSONL field holding the sentence.
    #[arg(long, default_value = "text")]
    pub field: String,
    /// TSV/CSV column holding the sentence: a 0-based index, or a name in
    /// the header line.
    #[arg(long, default_value = "0")]
    pub column: Column,
    /// The TSV/CSV file starts with a header line (implied by a --column
    /// name).
    #[arg(long)]
    pub header: bool,
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
    /// Set a key of the experiment file as if the file said so: a dotted
    /// TOML key and a TOML value (`train.lr=1e-4`, `eval.tasks=["stsb-dev"]`,
    /// `data.domain.0.path=x.txt`; a value that is not TOML is a string).
    /// Repeatable. The run's config.toml keeps the result, so --resume
    /// needs the same settings (or --config RUN_DIR/config.toml).
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = Override::parse)]
    pub set: Vec<Override>,
    /// The run directory, instead of the file's `run_dir`.
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
}

impl TrainArgs {
    /// The `--set` overrides, then `--run-dir` as one.
    pub fn overrides(&self) -> Vec<Override> {
        let mut overrides = self.set.clone();
        if let Some(dir) = &self.run_dir {
            overrides.push(Override {
                key: vec!["run_dir".into()],
                value: toml::Value::String(dir.to_string_lossy().into_owned()),
            });
        }
        overrides
    }
}

/// `gcse filter`.
#[derive(Debug, Clone, Args)]
pub struct FilterArgs {
    /// The frozen evaluation model: a stage-1 run directory (scored with its
    /// training pooling and max length), a model directory or a hub id.
    #[arg(long)]
    pub model: String,
    /// Candidates: JSONL (see the README), or an SNLI directory with
    /// --input-format snli.
    #[arg(long)]
    pub input: PathBuf,
    /// Input layout.
    #[arg(long, value_enum, default_value_t = CandidateFormat::Jsonl)]
    pub input_format: CandidateFormat,
    /// SNLI splits to read, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "dev,test")]
    pub splits: Vec<String>,
    /// Origin of sources whose line does not say.
    #[arg(long, value_enum, default_value_t = Origin::General)]
    pub origin: Origin,
    /// Where to write the triplets (JSONL); the report goes next to it as
    /// <name>.report.json.
    #[arg(long)]
    pub output: PathBuf,
    /// The rule: threshold (Eq. 10-11), none (no filtering), random.
    #[arg(long, value_enum, default_value_t = FilterSection::default().mode)]
    pub mode: FilterMode,
    /// Lowest cosine for a positive (paper: 0.9).
    #[arg(long, default_value_t = FilterSection::default().alpha)]
    pub alpha: f64,
    /// A negative must score below this cosine.
    #[arg(long, default_value_t = FilterSection::default().beta)]
    pub beta: f64,
    /// Which source a missing negative falls back to.
    #[arg(long, value_enum, default_value_t = FilterSection::default().fallback)]
    pub fallback: Fallback,
    /// Rows between a source and its offset fallback.
    #[arg(long, default_value_t = FilterSection::default().fallback_offset)]
    pub fallback_offset: usize,
    /// Drop rejected negatives instead of keeping them as extra rows (kept
    /// by default).
    #[arg(long)]
    pub no_extra_rows: bool,
    /// Seed of the random fallback (an experiment file's default is its
    /// `train.seed`, whose default this is).
    #[arg(long, default_value_t = TrainSection::default().seed)]
    pub seed: u64,
    /// A malformed line: error (naming it) or skip (counted).
    #[arg(long, value_enum, default_value_t = OnBadLine::Error)]
    pub on_bad_line: OnBadLine,
    /// Pooling of the scores [default: the run's training pooling, else cls].
    #[arg(long)]
    pub pooling: Option<Pooling>,
    /// Longest tokenized sentence [default: the run's, else the model's limit].
    #[arg(long, value_parser = max_len)]
    pub max_len: Option<usize>,
    /// Sentences per forward pass.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = BackendKind::Auto)]
    pub backend: BackendKind,
}

impl FilterArgs {
    /// The rule these options describe, checked.
    pub fn rule(&self) -> crate::Result<FilterSection> {
        let rule = FilterSection {
            mode: self.mode,
            alpha: self.alpha,
            beta: self.beta,
            fallback: self.fallback,
            fallback_offset: self.fallback_offset,
            extra_rows: !self.no_extra_rows,
            seed: Some(self.seed),
        };
        rule.validate()
            .map_err(|m| crate::Error::Usage(m.replace("`filter.", "`--").replace('_', "-")))?;
        if self.batch_size == 0 {
            return Err(crate::Error::Usage(
                "--batch-size must be at least 1".into(),
            ));
        }
        Ok(rule)
    }
}

/// `gcse export`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// A run directory (holding config.toml).
    pub run: PathBuf,
    /// The folder to write: new, empty, or a model folder (which is
    /// replaced); any other folder only with --force.
    #[arg(long)]
    pub to: PathBuf,
    /// Replace `--to` even when it is a folder of something else than a
    /// model (everything in it is deleted).
    #[arg(long)]
    pub force: bool,
    /// Export the checkpoint of this step instead of the best model.
    #[arg(long)]
    pub step: Option<usize>,
    /// Compute backend used to load the checkpoint.
    #[arg(long, value_enum, default_value_t = BackendKind::Cpu)]
    pub backend: BackendKind,
}

/// `gcse pipeline`.
#[derive(Debug, Clone, Args)]
pub struct PipelineArgs {
    /// The pipeline file (see configs/pipeline-*.toml and the README).
    #[arg(long)]
    pub config: PathBuf,
    /// Run this stage and every later one anew (earlier ones must be done).
    #[arg(long, conflicts_with = "only")]
    pub from: Option<String>,
    /// Run only this stage, anew (earlier ones must be done).
    #[arg(long)]
    pub only: Option<String>,
    /// Print each stage's state, why it would run and its command; run
    /// nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub stages: StageRunArgs,
}

/// How `gcse pipeline` and `gcse study` run their stages.
#[derive(Debug, Clone, Args)]
pub struct StageRunArgs {
    /// Compute backend of train, filter and eval stages.
    #[arg(long, value_enum, default_value_t = BackendKind::Auto)]
    pub backend: BackendKind,
    /// Plain log lines instead of the dashboard in train stages.
    #[arg(long)]
    pub no_tui: bool,
}

/// `gcse study`.
#[derive(Debug, Clone, Args)]
pub struct StudyArgs {
    /// The study file (see configs/study-*.toml and the README).
    #[arg(long)]
    pub config: PathBuf,
    /// Run only this variant (repeatable); the table has these alone.
    #[arg(long)]
    pub variant: Vec<String>,
    /// Print every variant's plan; run nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub stages: StageRunArgs,
}

/// `gcse compare`.
#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// Run directories of `gcse train`.
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
}

/// `gcse plot`.
#[derive(Debug, Clone, Args)]
pub struct PlotArgs {
    /// A run directory (holding config.toml and metrics.jsonl).
    pub run: PathBuf,
}

/// What `gcse bench` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchWorkload {
    /// One unsupervised SimCSE step: forward twice with dropout, InfoNCE,
    /// backward, AdamW.
    Train,
    /// One forward pass without autodiff, vectors read back.
    Embed,
    /// The largest `train` batch within `--budget-gib`: one step per trial,
    /// each in its own process, batch sizes doubled then bisected.
    MaxBatch,
}

/// `gcse bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// The workload.
    #[arg(value_enum)]
    pub workload: BenchWorkload,
    /// A randomly initialised architecture (`bert-base`, `minilm-l6`) or a
    /// model directory / hub id.
    #[arg(long, default_value = "bert-base")]
    pub model: String,
    /// Sentences per step.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Tokens per sentence (every sentence this long, no padding).
    #[arg(long, default_value_t = 32)]
    pub seq_len: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Untimed steps before them.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// `train` with GradCache: encode this many sequences per chunk (the
    /// batch is `2 * batch-size` sequences).
    #[arg(long)]
    pub grad_cache_chunk: Option<usize>,
    /// `max-batch`: the memory budget in GiB (device memory on a GPU
    /// backend, the process's peak resident memory on the CPU).
    #[arg(long)]
    pub budget_gib: Option<f64>,
    /// `max-batch`: the largest batch tried.
    #[arg(long, default_value_t = 4096)]
    pub max_batch: usize,
    /// The device's peak FLOP rate in TFLOP/s, for model FLOPs utilisation.
    #[arg(long)]
    pub peak_tflops: Option<f64>,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = BackendKind::Auto)]
    pub backend: BackendKind,
    /// Float type of weights, activations, gradients and optimizer state:
    /// f32 anywhere, f16 on cuda and wgpu (where the adapter has 16-bit
    /// shader floats), bf16 on cuda; or the trainer's mixed precisions (f32
    /// weights, half-precision products): f16-mixed where f16 runs,
    /// bf16-mixed on cuda.
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub precision: Precision,
}
