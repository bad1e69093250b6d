//! `gcse pipeline` and `gcse study`: a method's stages as one resumable
//! command, and variants of it (ablations, seeds) that share every stage
//! whose inputs are identical.
//!
//! - [`spec`]: the pipeline file (stages, each the section its own command
//!   takes; `@stage` references between them).
//! - [`plan`]: keys, folders, references resolved, what is already done.
//! - [`run`]: a stage as a child `gcse` process; its record when finished.
//! - [`study`]: the study file, its variants and the results table.
//!
//! A stage is skipped when a finished run with the same key left its
//! outputs as they were; run again (resuming) when it was interrupted;
//! run in a new folder when its settings, an outside input or a stage
//! upstream changed. `<dir>/<stage>` links to the folder the stage last
//! ran in (Unix).

pub mod cycle;
pub mod plan;
pub mod run;
pub mod spec;
pub mod study;

use std::collections::HashSet;
use std::path::PathBuf;

use plan::{plan, InputCache, PlannedStage, State};
use run::{record_in, validate, Runner};
use spec::PipelineSpec;

use crate::error::{Error, Result};

/// How much of a pipeline to run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Run this stage and every one after it anew (those before must be
    /// done).
    pub from: Option<String>,
    /// Run only this stage, anew (those before it must be done).
    pub only: Option<String>,
    /// Print the plan; run nothing.
    pub dry_run: bool,
}

/// What became of one stage in a pipeline run.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Ran, for this many seconds.
    Ran(f64),
    /// Already done before this command (its recorded seconds).
    Done(f64),
    /// Done (or, planning only, to be done) by an earlier variant of this
    /// command: identical inputs.
    Shared(f64),
    /// Would run (`--dry-run`).
    Planned,
    /// Left out by `--from` / `--only`.
    Left,
}

/// One command's state across the pipelines it runs (a study's variants).
pub struct Session {
    runner: Runner,
    cache: InputCache,
    /// Keys of the stages done in this command, run or found.
    seen: HashSet<String>,
}

impl Session {
    /// A session running stages with `runner`.
    pub fn new(runner: Runner) -> Self {
        Self {
            runner,
            cache: InputCache::default(),
            seen: HashSet::new(),
        }
    }
}

/// Where `<stage>` links to the folder a stage last ran in: `dir`, `depth`
/// folders below the pipeline's own.
#[derive(Debug, Clone)]
pub struct Links {
    /// The folder holding the links.
    pub dir: PathBuf,
    /// How far below the pipeline's folder it is.
    pub depth: usize,
}

impl Links {
    /// The folder `name` last ran in, if a link says.
    fn previous(&self, name: &str) -> Option<PathBuf> {
        let target = std::fs::read_link(self.dir.join(name)).ok()?;
        Some(self.dir.join(target))
    }

    /// Points `name` at `stage`'s folder (Unix; elsewhere nothing).
    fn point(&self, stage: &PlannedStage) -> Result<()> {
        #[cfg(unix)]
        {
            let link = self.dir.join(&stage.name);
            if link.exists() && std::fs::read_link(&link).is_err() {
                eprintln!(
                    "{} is not a link: left as it is (the stage's folder is {})",
                    link.display(),
                    stage.dir.display()
                );
                return Ok(());
            }
            let folder = stage.dir.file_name().expect("a stage folder has a name");
            let mut target = PathBuf::new();
            for _ in 0..self.depth {
                target.push("..");
            }
            target.push("stages");
            target.push(folder);
            std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
            let tmp = crate::atomic::temp_sibling(&link);
            let _ = std::fs::remove_file(&tmp);
            std::os::unix::fs::symlink(&target, &tmp).map_err(|e| Error::io(&tmp, e))?;
            std::fs::rename(&tmp, &link).map_err(|e| Error::io(&link, e))?;
        }
        #[cfg(not(unix))]
        let _ = stage;
        Ok(())
    }
}

/// Plans `spec` and runs (or, planning only, prints) what `options` ask;
/// returns the stages with what became of each.
pub fn execute(
    spec: &PipelineSpec,
    links: &Links,
    options: &Options,
    session: &mut Session,
) -> Result<Vec<(PlannedStage, Outcome)>> {
    let stages = plan(spec, &mut session.cache)?;
    for stage in &stages {
        validate(stage, &spec.path)?;
    }
    let from = options
        .from
        .as_deref()
        .map(|n| spec.index_of(n))
        .transpose()?;
    let only = options
        .only
        .as_deref()
        .map(|n| spec.index_of(n))
        .transpose()?;
    let total = stages.len();
    let mut out: Vec<(PlannedStage, Outcome)> = Vec::new();
    for (i, stage) in stages.into_iter().enumerate() {
        let label = format!(
            "[{}/{total}] {} ({})",
            i + 1,
            stage.name,
            stage.command.name()
        );
        let state = stage.state()?;
        let left = only.is_some_and(|o| o != i) || from.is_some_and(|f| i < f);
        let forced = only == Some(i) || from.is_some_and(|f| i >= f);
        if left {
            let needed = only.is_none_or(|o| i < o);
            if needed && !matches!(state, State::Done(_)) && !options.dry_run {
                return Err(Error::Usage(format!(
                    "stage `{}` has not finished with these settings; run the pipeline without --from/--only first",
                    stage.name
                )));
            }
            out.push((stage, Outcome::Left));
            continue;
        }
        if let (State::Done(record), false) = (&state, forced) {
            let outcome = if session.seen.contains(&stage.key) {
                println!(
                    "{label}: shared with an earlier variant, {}",
                    stage.dir.display()
                );
                Outcome::Shared(record.seconds)
            } else {
                println!(
                    "{label}: done ({:.1} s), {}",
                    record.seconds,
                    stage.dir.display()
                );
                Outcome::Done(record.seconds)
            };
            session.seen.insert(stage.key.clone());
            if !options.dry_run {
                links.point(&stage)?;
            }
            out.push((stage, outcome));
            continue;
        }
        if options.dry_run && session.seen.contains(&stage.key) {
            println!(
                "{label}: would be shared with an earlier variant, {}",
                stage.dir.display()
            );
            out.push((stage, Outcome::Shared(0.0)));
            continue;
        }
        let previous = links.previous(&stage.name).filter(|p| *p != stage.dir);
        let why = if forced {
            "asked for (--from/--only)".to_string()
        } else if state == State::Interrupted {
            "interrupted: resuming".to_string()
        } else {
            previous
                .as_deref()
                .and_then(record_in)
                .map_or("first run".to_string(), |r| stage.changes_since(&r))
        };
        if options.dry_run {
            println!(
                "{label}: would run ({why}), {}\n    gcse {}",
                stage.dir.display(),
                session.runner.command_line(&stage)?
            );
            session.seen.insert(stage.key.clone());
            out.push((stage, Outcome::Planned));
            continue;
        }
        session
            .runner
            .check_signal(&format!("before stage `{}`", stage.name))?;
        println!("{label}: running ({why}), {}", stage.dir.display());
        let seconds = session.runner.run(&stage, previous.as_deref(), forced)?;
        println!("{label}: finished in {seconds:.1} s");
        session.seen.insert(stage.key.clone());
        links.point(&stage)?;
        out.push((stage, Outcome::Ran(seconds)));
    }
    Ok(out)
}
