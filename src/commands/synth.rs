//! `gcse synth ...`: data synthesis with an LLM.

use burn::tensor::backend::AutodiffBackend;

use crate::backend::BackendTask;
use crate::cli::{ChainsArgs, GraphArgs, ServeArgs, SynthArgs, SynthCommand};
use crate::embed::embedder::{distinct, Embeddings};
use crate::error::{Error, Result};
use crate::json_file::{write_json, write_jsonl};
use crate::objective::teacher::{Teacher, TeacherSpec};
use crate::synth::chains::{filter_monotone, outputs as chains_outputs, tally, MonotonicityReport};
use crate::synth::config::SynthConfig;
use crate::synth::pipeline::Synthesis;

/// Runs a `gcse synth` subcommand.
pub fn run(command: SynthCommand) -> Result<()> {
    match command {
        SynthCommand::Extract(args) => with_synthesis(&args, |s| s.extract().map(drop)),
        SynthCommand::Graph(args) => graph(&args),
        SynthCommand::Generate(args) => with_synthesis(&args, |s| s.generate().map(drop)),
        SynthCommand::All(args) => with_synthesis(&args, |s| {
            s.extract()?;
            s.graph()?;
            s.generate().map(drop)
        }),
        SynthCommand::Chains(args) => chains(&args),
        SynthCommand::Serve(args) => serve(&args),
    }
}

/// `gcse synth chains`: the chains, the filters, then lists.jsonl and the
/// report, each written whole (a temp file renamed).
fn chains(args: &ChainsArgs) -> Result<()> {
    let path = &args.synth.config;
    let config = SynthConfig::load(path)?;
    let at_config = |e: Error| match e {
        Error::Usage(message) => Error::Config {
            path: path.clone(),
            message,
        },
        other => other,
    };
    let llm = config.llm().map_err(at_config)?;
    let mut synthesis = Synthesis::open(&config, llm.as_ref())?;
    let (mut records, mut report) = synthesis.chains().map_err(at_config)?;
    let c = &config.chains;
    if let Some(model) = &c.filter_model {
        let resolved = crate::backend::resolve(args.backend)?;
        let kept = records.iter().filter(|r| r.dropped_reason.is_none());
        let items: Vec<Vec<String>> = kept.map(|r| r.items()).collect();
        let texts = distinct(items.iter().flatten().map(String::as_str));
        let spec = TeacherSpec {
            path: model.clone(),
            pooling: c.filter_pooling,
            max_len: None,
            dropout: 0.0,
        };
        let embeddings = crate::backend::run(
            &resolved,
            EmbedTexts {
                spec: &spec,
                texts: &texts,
            },
        )?;
        let mean = filter_monotone(&mut records, &texts, &embeddings, c.monotonicity);
        report.monotonicity = Some(MonotonicityReport {
            model: format!("{model} ({})", c.filter_pooling),
            threshold: c.monotonicity,
            mean_spearman: mean,
        });
    }
    tally(&records, &mut report);
    let (lists, report_path) = chains_outputs(&config);
    write_jsonl(&lists, &records)?;
    write_json(&report_path, &report)?;
    let drops: Vec<String> = report
        .dropped
        .iter()
        .map(|(reason, n)| {
            format!(
                "{n} {}",
                serde_json::to_value(reason)
                    .expect("a reason serialises")
                    .as_str()
                    .unwrap_or_default()
            )
        })
        .collect();
    eprintln!("chains: {}", report.requests.summary());
    eprintln!(
        "chains: {} of {} kept{}; wrote {} and {}",
        report.kept,
        report.sources,
        if drops.is_empty() {
            String::new()
        } else {
            format!(", dropped: {}", drops.join(", "))
        },
        lists.display(),
        report_path.display()
    );
    Ok(())
}

/// The vectors of `texts` by the frozen model `spec`, on a chosen backend.
struct EmbedTexts<'a> {
    spec: &'a TeacherSpec,
    texts: &'a [&'a str],
}

impl BackendTask for EmbedTexts<'_> {
    type Output = Result<Embeddings>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<Embeddings> {
        let teacher = Teacher::<B>::load(self.spec, &device)?;
        let bar = crate::progress::items(self.texts.len() as u64, "sentences");
        let embeddings = teacher.embedder(EMBED_BATCH).embed(self.texts, &bar);
        bar.finish_and_clear();
        embeddings
    }
}

/// Sentences per forward pass of the monotonicity filter.
const EMBED_BATCH: usize = 64;

fn with_synthesis(args: &SynthArgs, step: impl FnOnce(&mut Synthesis) -> Result<()>) -> Result<()> {
    let config = SynthConfig::load(&args.config)?;
    // What the LLM backend refuses is a setting of this file.
    let llm = config.llm().map_err(|e| match e {
        Error::Usage(message) => Error::Config {
            path: args.config.clone(),
            message,
        },
        other => other,
    })?;
    let mut synthesis = Synthesis::open(&config, llm.as_ref())?;
    step(&mut synthesis)?;
    eprintln!("outputs are in {}", config.out_dir.display());
    Ok(())
}

fn graph(args: &GraphArgs) -> Result<()> {
    let config = SynthConfig::load(&args.synth.config)?;
    let graph = Synthesis::graph_of(&config)?;
    if args.stats {
        let s = graph.stats();
        println!(
            "{} entities, {} types, {} quantities; hard edges: {} entity-type, {} entity-quantity; soft edges: {} entity-entity, {} entity-type",
            s.entities, s.types, s.quantities, s.hard_type_edges, s.hard_quantity_edges, s.soft_entity_edges, s.soft_type_edges
        );
        for (kind, count) in s.entities_by_type.iter().take(20) {
            println!("  {count:>5}  {kind}");
        }
    }
    for entity in &args.entity {
        let found = graph.replacements(entity);
        if graph.entity_id(entity).is_none() {
            println!("{entity}: not in the graph");
        } else {
            println!("{entity}: {}", found.join(" | "));
        }
    }
    eprintln!(
        "wrote graph.json and graph.dot in {}",
        config.out_dir.display()
    );
    Ok(())
}

#[cfg(feature = "llama")]
fn serve(args: &ServeArgs) -> Result<()> {
    use crate::synth::llm::Llm;
    use crate::synth::local::{LocalConfig, LocalLlm, PromptFormat};
    use crate::synth::serve::{serve, ServeOptions};

    let engine = LocalLlm::new(&LocalConfig {
        model: args.gguf.clone(),
        context: args.context,
        threads: args.threads,
        gpu_layers: args.gpu_layers,
        prompt_format: PromptFormat::Auto,
        grammar: true,
    })?;
    let listener = std::net::TcpListener::bind(&args.listen)
        .map_err(|e| Error::Usage(format!("--listen {}: {e}", args.listen)))?;
    let options = ServeOptions {
        model: args
            .name
            .clone()
            .unwrap_or_else(|| engine.model().to_string()),
        max_queue: args.max_queue.max(1),
        max_connections: args.max_connections.max(1),
        read_timeout: crate::check::within(
            "--read-timeout-s",
            args.read_timeout_s,
            0.001,
            86_400.0,
        )
        .map(|()| std::time::Duration::from_secs_f64(args.read_timeout_s))
        .map_err(Error::Usage)?,
    };
    eprintln!(
        "serving {} as {:?} on http://{}/v1 ({} prompts)",
        args.gguf.display(),
        options.model,
        args.listen,
        if engine.uses_chat_template() {
            "chat-template"
        } else {
            "plain"
        },
    );
    serve(listener, &engine, &options);
    Ok(())
}

#[cfg(not(feature = "llama"))]
fn serve(_: &ServeArgs) -> Result<()> {
    Err(Error::Backend(
        "gcse was built without the embedded engine: rebuild with --features llama".into(),
    ))
}
