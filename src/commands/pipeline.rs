//! `gcse pipeline` and `gcse study`: the stages of a pipeline file, then
//! the results table of its last stage that has scores.

use clap::ValueEnum;

use crate::cli::{PipelineArgs, StageRunArgs, StudyArgs};
use crate::error::Result;
use crate::pipeline::run::Runner;
use crate::pipeline::spec::PipelineSpec;
use crate::pipeline::study::{markdown, rows, run_study, scores_of, StudySpec};
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
        print!("{}", markdown(&rows(&[(label, None, scores)])));
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
