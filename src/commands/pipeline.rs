//! `gcse pipeline` and `gcse study`: the stages of a pipeline file, then
//! the results table of its last stage that has scores; `gcse
//! distill-cycle`: the pipeline of a cycle file, then each cycle's dev
//! scores and the test tables of the best models.

use std::io::Write;

use burn::tensor::backend::AutodiffBackend;
use clap::ValueEnum;

use crate::backend::{self, BackendTask};
use crate::cli::{CycleArgs, PipelineArgs, StageRunArgs, StudyArgs};
use crate::error::Result;
use crate::json_file::write_json;
use crate::pipeline::cycle::{
    dev_score, unlabeled_pairs, write_pairs, CycleSpec, Unlabeled, DEV_TASK,
};
use crate::pipeline::plan::PlannedStage;
use crate::pipeline::run::Runner;
use crate::pipeline::spec::PipelineSpec;
use crate::pipeline::study::{markdown as study_markdown, rows, run_study, scores_of, StudySpec};
use crate::pipeline::{execute, Links, Options, Outcome, Session};

fn runner(args: &StageRunArgs) -> Result<Runner> {
    let name = args
        .backend
        .to_possible_value()
        .map_or("auto".to_string(), |v| v.get_name().to_string());
    Runner::new(&name, args.no_tui)
}

/// `gcse pipeline`.
pub fn pipeline(args: &PipelineArgs) -> Result<()> {
    let spec = PipelineSpec::load(&args.config)?;
    println!(
        "pipeline {}: {} stages in {}",
        args.config.display(),
        spec.stages.len(),
        spec.dir.display()
    );
    let options = Options {
        from: args.from.clone(),
        only: args.only.clone(),
        dry_run: args.dry_run,
    };
    let mut session = Session::new(runner(&args.stages)?);
    let links = Links {
        dir: spec.dir.clone(),
        depth: 0,
    };
    let stages = execute(&spec, &links, &options, &mut session)?;
    if args.dry_run {
        return Ok(());
    }
    println!("\nstage         seconds  folder");
    for (stage, outcome) in &stages {
        let (seconds, how) = match outcome {
            Outcome::Ran(s) => (format!("{s:.1}"), "ran"),
            Outcome::Done(s) | Outcome::Shared(s) => (format!("{s:.1}"), "done before"),
            Outcome::Planned | Outcome::Left => ("-".into(), "not run"),
        };
        println!(
            "{:<12} {seconds:>8}  {} ({how})",
            stage.name,
            stage.dir.display()
        );
    }
    if let Some((stage, scores)) = stages
        .iter()
        .rev()
        .find_map(|(s, _)| scores_of(s).transpose().map(|r| r.map(|sc| (s, sc))))
        .transpose()?
    {
        println!("\nresults of stage `{}`:", stage.name);
        let label = args
            .config
            .file_stem()
            .map_or("pipeline".into(), |s| s.to_string_lossy().into_owned());
        print!("{}", study_markdown(&rows(&[(label, None, scores)])));
    }
    Ok(())
}

/// `gcse study`.
pub fn study(args: &StudyArgs) -> Result<()> {
    let spec = StudySpec::load(&args.config)?;
    let runs = spec.runs();
    let seeds = match spec.seeds.len() {
        0 => String::new(),
        n => format!(" at {n} seeds"),
    };
    println!(
        "study {}: {} variants{seeds}, {} pipelines of {} stages, in {}",
        args.config.display(),
        spec.variants.len(),
        runs.len(),
        spec.pipeline.stages.len(),
        spec.pipeline.dir.display()
    );
    let mut session = Session::new(runner(&args.stages)?);
    let (table, counts) = run_study(&spec, &args.variant, args.dry_run, &mut session)?;
    let (verb, count) = if args.dry_run {
        ("would run", counts.to_run)
    } else {
        ("ran", counts.ran)
    };
    println!(
        "\nstages: {} in all; {count} {verb}, {} shared between variants, {} done before",
        counts.planned, counts.shared, counts.done
    );
    if !args.dry_run {
        println!("\nresults of stage `{}`:\n{table}", spec.table);
        println!(
            "wrote {} and {}",
            spec.pipeline.dir.join("study.md").display(),
            spec.pipeline.dir.join("study.json").display()
        );
    }
    Ok(())
}

/// The unlabeled pairs of a cycle file, on the chosen backend.
struct PairsTask<'a>(&'a CycleSpec);

impl BackendTask for PairsTask<'_> {
    type Output = Result<Unlabeled>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        unlabeled_pairs::<B::InnerBackend>(self.0, &device)
    }
}

/// `gcse distill-cycle`.
pub fn distill_cycle(args: &CycleArgs) -> Result<()> {
    let spec = CycleSpec::load(&args.config)?;
    let pipeline = spec.pipeline()?;
    spec.check_sources()?;
    let kinds = match spec.bi.len() {
        1 => "a cross-encoder and a bi-encoder".to_string(),
        n => format!("a cross-encoder and {n} bi-encoders (mutual)"),
    };
    println!(
        "distill-cycle {}: {} cycles of {kinds}, {} stages in {}",
        args.config.display(),
        spec.cycles,
        pipeline.stages.len(),
        spec.dir.display()
    );
    let resolved = backend::resolve(args.stages.backend)?;
    let (pairs, counts) = backend::run(&resolved, PairsTask(&spec))?;
    write_pairs(&spec.pairs_file(), &pairs)?;
    let from: Vec<String> = counts.iter().map(|(s, n)| format!("{s} {n}")).collect();
    println!(
        "unlabeled pairs: {} ({}) → {}",
        pairs.len(),
        from.join(", "),
        spec.pairs_file().display()
    );
    let mut session = Session::new(runner(&args.stages)?);
    let links = Links {
        dir: spec.dir.clone(),
        depth: 0,
    };
    let options = Options {
        dry_run: args.dry_run,
        ..Options::default()
    };
    let stages = execute(&pipeline, &links, &options, &mut session)?;
    if args.dry_run {
        return Ok(());
    }
    let (dev, best) = best_of_each_kind(&spec, &stages);
    let tests = if best.is_empty() {
        Vec::new()
    } else {
        println!("\ntest sets, best model of each kind by {DEV_TASK}:");
        let spec = test_pipeline(&spec, &best)?;
        execute(&spec, &links, &Options::default(), &mut session)?
    };
    let mut markdown = dev;
    let mut runs = Vec::new();
    for ((label, _), (stage, _)) in best.iter().zip(&tests) {
        if let Some(scores) = scores_of(stage)? {
            runs.push((label.clone(), None, scores));
        }
    }
    let table = rows(&runs);
    if !table.is_empty() {
        markdown.push_str("\ntest sets, best model of each kind:\n\n");
        markdown.push_str(&study_markdown(&table));
    }
    print!("\n{markdown}");
    let chosen: Vec<serde_json::Value> = best
        .iter()
        .map(|(label, stage)| {
            let (score, step) = dev_score(stage).unzip();
            serde_json::json!({
                "model": label, "stage": stage.name, "dir": stage.dir.join("best"),
                DEV_TASK: score, "step": step,
            })
        })
        .collect();
    let cycles: Vec<serde_json::Value> = stages
        .iter()
        .map(|(stage, _)| {
            let (score, step) = dev_score(stage).unzip();
            serde_json::json!({"stage": stage.name, "dir": stage.dir, DEV_TASK: score, "step": step})
        })
        .collect();
    let (md, json) = (spec.dir.join("cycles.md"), spec.dir.join("cycles.json"));
    crate::atomic::write_atomic(&md, |w| w.write_all(markdown.as_bytes()))?;
    write_json(
        &json,
        &serde_json::json!({"stages": cycles, "best": chosen, "test": table}),
    )?;
    println!("wrote {} and {}", md.display(), json.display());
    Ok(())
}

/// The dev table (a row per cycle, a column per model) and the best stage
/// of each kind by the dev score, labelled with its kind and cycle.
fn best_of_each_kind<'a>(
    spec: &CycleSpec,
    stages: &'a [(PlannedStage, Outcome)],
) -> (String, Vec<(String, &'a PlannedStage)>) {
    let planned = spec.stages();
    let kind = |bi: Option<usize>| match (bi, spec.bi.len()) {
        (None, _) => "cross-encoder".to_string(),
        (Some(_), 1) => "bi-encoder".to_string(),
        (Some(i), _) => format!("bi-encoder {}", ["a", "b"][i]),
    };
    let kinds: Vec<Option<usize>> = std::iter::once(None)
        .chain((0..spec.bi.len()).map(Some))
        .collect();
    let header: Vec<String> = kinds.iter().map(|&k| kind(k)).collect();
    let mut markdown = format!(
        "{DEV_TASK} (Spearman x100) of each cycle's best models (step 0: the stage's start \
         was never beaten):\n\n| cycle | {} |\n|---|{}\n",
        header.join(" | "),
        "---|".repeat(kinds.len())
    );
    let mut best: Vec<Option<(f64, String, &PlannedStage)>> = vec![None; kinds.len()];
    for c in 1..=spec.cycles {
        let mut cells = Vec::new();
        for (k, &which) in kinds.iter().enumerate() {
            let stage = planned
                .iter()
                .find(|s| s.cycle == c && s.bi == which)
                .and_then(|s| stages.iter().map(|(p, _)| p).find(|p| p.name == s.name));
            let result = stage.and_then(dev_score);
            cells.push(result.map_or("-".to_string(), |(s, step)| format!("{s:.2} (step {step})")));
            if let (Some(stage), Some((score, step))) = (stage, result) {
                if best[k].as_ref().is_none_or(|(b, _, _)| score > *b) {
                    let label = format!("{} (cycle {c}, step {step})", kind(which));
                    best[k] = Some((score, label, stage));
                }
            }
        }
        markdown.push_str(&format!("| {c} | {} |\n", cells.join(" | ")));
    }
    let best = best
        .into_iter()
        .flatten()
        .map(|(_, label, stage)| (label, stage))
        .collect();
    (markdown, best)
}

/// A pipeline of one `eval` stage (the seven test sets) per chosen model,
/// in the cycle file's folder: done once per model, its key the model's.
fn test_pipeline(spec: &CycleSpec, best: &[(String, &PlannedStage)]) -> Result<PipelineSpec> {
    let items: Vec<toml::Value> = best
        .iter()
        .enumerate()
        .map(|(i, (_, stage))| {
            let mut item = toml::Table::new();
            item.insert("name".into(), format!("test{}", i + 1).into());
            item.insert("command".into(), "eval".into());
            item.insert(
                "model".into(),
                stage.dir.join("best").display().to_string().into(),
            );
            toml::Value::Table(item)
        })
        .collect();
    let mut table = toml::Table::new();
    table.insert("dir".into(), spec.dir.display().to_string().into());
    table.insert("stage".into(), items.into());
    PipelineSpec::from_table(table, &spec.path)
}
