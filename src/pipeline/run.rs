//! Running a stage: the gcse command it names, as a child process of this
//! one (same terminal, so `train` shows its dashboard), with the stage's
//! section as its `--config` file or flags. A finished stage gets its
//! record ([`super::plan::MARKER`]); one that did not finish is run again
//! by the next pipeline run, resuming what its command resumes (`train
//! --resume` from its newest checkpoint; synthesis from its stored
//! answers; `filter` and `eval` from the start).
//!
//! SIGTERM to the pipeline is passed on to the stage running (training
//! stops at a checkpoint); SIGINT from a terminal reaches both already. A
//! stage outlives no pipeline: on Linux it gets SIGKILL when the pipeline
//! dies.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

use super::plan::{PlannedStage, StageRecord, MARKER, STAGE_FILE};
use super::spec::StageCommand;
use crate::atomic::write_atomic;
use crate::cli::Cli;
use crate::error::{Error, Result};
use crate::json_file::{read_json, write_json};
use crate::objective::registry;
use crate::synth::config::SynthConfig;

/// The synthesis answer store, kept when a stage starts over and carried
/// to a new folder of the same stage: its answers are keyed by request.
const ANSWERS: &str = "answers.jsonl";

/// Runs stages as child processes.
pub struct Runner {
    exe: PathBuf,
    backend: String,
    no_tui: bool,
    signal: Arc<AtomicUsize>,
}

impl Runner {
    /// A runner of this binary's commands on `backend` (its `--backend`
    /// name); `no_tui` asks training for log lines.
    pub fn new(backend: &str, no_tui: bool) -> Result<Self> {
        let exe = std::env::current_exe()
            .map_err(|e| Error::Backend(format!("cannot find the gcse binary: {e}")))?;
        let signal = Arc::new(AtomicUsize::new(0));
        for s in [libc::SIGINT, libc::SIGTERM] {
            signal_hook::flag::register_usize(s, signal.clone(), s as usize)
                .map_err(|e| Error::Backend(format!("cannot handle signals: {e}")))?;
        }
        Ok(Self {
            exe,
            backend: backend.to_string(),
            no_tui,
            signal,
        })
    }

    /// Runs `stage`. `fresh` starts it over (its folder emptied but for the
    /// answer store); `previous` is the folder this stage last ran in, whose
    /// answer store a new folder starts from. Returns the seconds it ran.
    pub fn run(&self, stage: &PlannedStage, previous: Option<&Path>, fresh: bool) -> Result<f64> {
        let dir = &stage.dir;
        if fresh && dir.exists() {
            clear_dir(dir, &[ANSWERS])?;
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        if stage.command == StageCommand::Synth {
            carry_answers(dir, previous)?;
        }
        let _ = std::fs::remove_file(dir.join(MARKER));
        if stage.command.takes_file() {
            let text = format!(
                "# Written by gcse pipeline: stage `{}` (key {}).\n{}",
                stage.name,
                stage.key,
                section_text(stage)?
            );
            write_atomic(&dir.join(STAGE_FILE), |w| {
                std::io::Write::write_all(w, text.as_bytes())
            })?;
        }
        let args = self.args(stage)?;
        println!("+ gcse {}", shell_words(&args));
        let start = Instant::now();
        let status = self.spawn_and_wait(&args)?;
        let seconds = start.elapsed().as_secs_f64();
        self.check_signal(&format!("in stage `{}`", stage.name))?;
        if !status.success() {
            let how = status.code().map_or("was killed".to_string(), |c| {
                format!("exited with status {c}")
            });
            return Err(Error::Usage(format!(
                "stage `{}`: gcse {} {how}; its messages are above (run the pipeline again to retry it)",
                stage.name,
                stage.command.name()
            )));
        }
        let missing = stage.missing_outputs();
        if !missing.is_empty() {
            return Err(Error::Usage(format!(
                "stage `{}`: gcse {} finished without writing {} in {}",
                stage.name,
                stage.command.name(),
                missing.join(", "),
                dir.display()
            )));
        }
        write_json(&dir.join(MARKER), &stage.record(seconds)?)?;
        Ok(seconds)
    }

    /// An error if SIGINT or SIGTERM came: the pipeline stops between
    /// stages (a stage running stops as its command does).
    /// `at` says where, e.g. "before stage `x`".
    pub fn check_signal(&self, at: &str) -> Result<()> {
        match self.signal.load(Ordering::SeqCst) {
            0 => Ok(()),
            signal => Err(Error::Usage(format!(
                "stopped by {} {at}; run the pipeline again to go on from there",
                crate::signals::name(signal as i32)
            ))),
        }
    }

    /// The command line after `gcse` for `stage`, as a shell would take it.
    pub fn command_line(&self, stage: &PlannedStage) -> Result<String> {
        Ok(shell_words(&self.args(stage)?))
    }

    /// The command line after `gcse` for `stage`.
    fn args(&self, stage: &PlannedStage) -> Result<Vec<String>> {
        let file = stage.dir.join(STAGE_FILE).to_string_lossy().into_owned();
        let mut args: Vec<String> = match stage.command {
            StageCommand::Train => {
                let mut a = vec!["train".into(), "--config".into(), file];
                if stage.dir.join(crate::run_dir::RunDir::CONFIG).is_file() {
                    a.push("--resume".into());
                }
                if self.no_tui {
                    a.push("--no-tui".into());
                }
                a
            }
            StageCommand::Synth => vec!["synth".into(), "all".into(), "--config".into(), file],
            StageCommand::Filter | StageCommand::Eval => {
                let mut a = vec![stage.command.name().to_string()];
                a.extend(flags(stage).map_err(Error::Usage)?);
                a
            }
        };
        if stage.command != StageCommand::Synth && !stage.section.contains_key("backend") {
            args.extend(["--backend".into(), self.backend.clone()]);
        }
        Ok(args)
    }

    fn spawn_and_wait(&self, args: &[String]) -> Result<std::process::ExitStatus> {
        let mut command = Command::new(&self.exe);
        command.args(args);
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt;
            let parent = std::process::id() as libc::pid_t;
            // SAFETY: prctl, getppid and _exit are async-signal-safe, as
            // code between fork and exec must be.
            unsafe {
                command.pre_exec(move || {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    if libc::getppid() != parent {
                        libc::_exit(1);
                    }
                    Ok(())
                });
            }
        }
        let mut child = command.spawn().map_err(|e| Error::io(&self.exe, e))?;
        let mut forwarded = false;
        loop {
            if let Some(status) = child.try_wait().map_err(|e| Error::io(&self.exe, e))? {
                return Ok(status);
            }
            if !forwarded && self.signal.load(Ordering::SeqCst) == libc::SIGTERM as usize {
                // SAFETY: kill with a valid signal on our own child's pid.
                unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
                forwarded = true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Checks a stage's section as its command would, before any stage runs.
pub fn validate(stage: &PlannedStage, pipeline: &Path) -> Result<()> {
    let fail = |message: String| Error::Config {
        path: pipeline.to_path_buf(),
        message: format!("stage `{}`: {message}", stage.name),
    };
    let inner = |e: Error| match e {
        Error::Config { message, .. } => {
            let message = match message.split_once(": ") {
                Some((line, rest)) if line.starts_with("line ") => rest.to_string(),
                _ => message,
            };
            fail(message)
        }
        other => fail(other.to_string()),
    };
    match stage.command {
        StageCommand::Train => registry::parse(&section_text(stage)?, pipeline)
            .map(drop)
            .map_err(inner),
        StageCommand::Synth => SynthConfig::parse(&section_text(stage)?, pipeline)
            .map(drop)
            .map_err(inner),
        StageCommand::Filter | StageCommand::Eval => {
            let mut args = vec!["gcse".to_string(), stage.command.name().to_string()];
            args.extend(flags(stage).map_err(fail)?);
            Cli::try_parse_from(&args).map(drop).map_err(|e| {
                let text = e.render().to_string();
                let first = text
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim_start_matches("error: ");
                fail(format!(
                    "{first} (a `{}` stage's keys are the flags of gcse {}, without --)",
                    stage.command.name(),
                    stage.command.name()
                ))
            })
        }
    }
}

fn section_text(stage: &PlannedStage) -> Result<String> {
    toml::to_string(&stage.section).map_err(|e| Error::Config {
        path: stage.dir.join(STAGE_FILE),
        message: e.to_string(),
    })
}

/// A flag-driven section as flags: `key = value` is `--key value` (`_` as
/// `-`), `true` a bare `--key`, `false` nothing, an array its items joined
/// by commas.
fn flags(stage: &PlannedStage) -> std::result::Result<Vec<String>, String> {
    let mut out = Vec::new();
    for (key, value) in &stage.section {
        let flag = format!("--{}", key.replace('_', "-"));
        let text = |v: &toml::Value| match v {
            toml::Value::String(s) => Some(s.clone()),
            toml::Value::Integer(_) | toml::Value::Float(_) => Some(v.to_string()),
            _ => None,
        };
        match value {
            toml::Value::Boolean(true) => out.push(flag),
            toml::Value::Boolean(false) => {}
            toml::Value::Array(items) => {
                let parts: Option<Vec<String>> = items.iter().map(text).collect();
                let parts =
                    parts.ok_or_else(|| format!("`{key}` must be a list of strings or numbers"))?;
                out.extend([flag, parts.join(",")]);
            }
            v => {
                let v = text(v).ok_or_else(|| {
                    format!(
                        "`{key}` is a {}; a `{}` stage's keys are flags (strings, numbers, true/false, lists)",
                        value.type_str(),
                        stage.command.name()
                    )
                })?;
                out.extend([flag, v]);
            }
        }
    }
    Ok(out)
}

/// Removes everything in `dir` but the entries named in `keep`.
fn clear_dir(dir: &Path, keep: &[&str]) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if keep.iter().any(|k| entry.file_name() == *k) {
            continue;
        }
        let path = entry.path();
        let removed = if entry.file_type().map_err(|e| Error::io(&path, e))?.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
}

/// Starts a new synthesis folder's answer store from `previous`'s.
fn carry_answers(dir: &Path, previous: Option<&Path>) -> Result<()> {
    let target = dir.join(ANSWERS);
    let Some(source) = previous.map(|p| p.join(ANSWERS)).filter(|s| s.is_file()) else {
        return Ok(());
    };
    if target.exists() || source == target {
        return Ok(());
    }
    write_atomic(&target, |w| {
        let mut file = std::fs::File::open(&source)?;
        std::io::copy(&mut file, w).map(drop)
    })?;
    println!(
        "{}: started from the answers in {}",
        target.display(),
        source.display()
    );
    Ok(())
}

/// The record of the stage that ran in `dir`, if it finished.
pub fn record_in(dir: &Path) -> Option<StageRecord> {
    let marker = dir.join(MARKER);
    marker.is_file().then(|| read_json(&marker).ok()).flatten()
}

fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$\\".contains(c)) {
                format!("'{}'", a.replace('\'', r"'\''"))
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
