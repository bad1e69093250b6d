//! The pipeline file: a folder for outputs and stages in order, each a gcse
//! command (`train`, `synth`, `filter`, `eval`) with the section its own
//! command takes, written inline, over an optional `base` file of the same
//! schema. A string that starts with `@name` names an earlier stage's output
//! (`@name/file` a file in its folder). See [`crate::pipeline`].

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::overrides::Override;

/// A gcse command a stage runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageCommand {
    /// `gcse train --config <stage.toml>`: any objective.
    Train,
    /// `gcse synth all --config <stage.toml>`.
    Synth,
    /// `gcse filter` with the section's keys as its flags.
    Filter,
    /// `gcse eval` with the section's keys as its flags.
    Eval,
}

impl StageCommand {
    /// Every command, as named in a pipeline file.
    pub const ALL: [StageCommand; 4] = [Self::Train, Self::Synth, Self::Filter, Self::Eval];

    /// The name in a pipeline file (the gcse subcommand).
    pub fn name(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::Synth => "synth",
            Self::Filter => "filter",
            Self::Eval => "eval",
        }
    }

    fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The key of the section that says where the command writes: the
    /// pipeline sets it.
    pub fn output_key(self) -> &'static str {
        match self {
            Self::Train => "run_dir",
            Self::Synth => "out_dir",
            Self::Filter => "output",
            Self::Eval => "json",
        }
    }

    /// What `@stage` means for a stage in folder `dir`: the run directory,
    /// the synthesis folder, the triplet file, the results file.
    pub fn output(self, dir: &Path) -> PathBuf {
        match self {
            Self::Train | Self::Synth => dir.to_path_buf(),
            Self::Filter => dir.join("triplets.jsonl"),
            Self::Eval => dir.join("results.json"),
        }
    }

    /// Files of a finished stage, relative to its folder.
    pub fn outputs(self) -> &'static [&'static str] {
        match self {
            Self::Train => &["config.toml", "best"],
            Self::Synth => &["knowledge.jsonl", "graph.json", "candidates.jsonl"],
            Self::Filter => &["triplets.jsonl", "triplets.report.json"],
            Self::Eval => &["results.json"],
        }
    }

    /// Whether the section is a TOML file the command reads (`--config`);
    /// otherwise its keys are the command's flags.
    pub fn takes_file(self) -> bool {
        matches!(self, Self::Train | Self::Synth)
    }
}

/// One stage as the pipeline file writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct StageSpec {
    /// Unique within the pipeline: letters, digits, `-` and `_`.
    pub name: String,
    /// What it runs.
    pub command: StageCommand,
    /// Its section: `base` with the inline keys set over it (tables merged
    /// key by key, anything else replaced).
    pub section: toml::Table,
}

/// A pipeline file, read and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineSpec {
    /// The file, for messages.
    pub path: PathBuf,
    /// Where stages write (`dir`).
    pub dir: PathBuf,
    /// In order.
    pub stages: Vec<StageSpec>,
}

/// A reference to a stage's output: `@name` or `@name/rest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference<'a> {
    /// The stage named.
    pub stage: &'a str,
    /// What follows `@name/`, if anything.
    pub rest: Option<&'a str>,
}

/// The reference `text` makes, if it starts with `@`.
pub fn reference(text: &str) -> Option<Reference<'_>> {
    let body = text.strip_prefix('@')?;
    Some(match body.split_once('/') {
        Some((stage, rest)) => Reference {
            stage,
            rest: Some(rest),
        },
        None => Reference {
            stage: body,
            rest: None,
        },
    })
}

impl PipelineSpec {
    /// Reads and checks a pipeline file.
    pub fn load(path: &Path) -> Result<Self> {
        Self::from_table(read_table(path)?, path)
    }

    /// A pipeline from its parsed file; `path` names it in errors and
    /// `base` files are read relative to the working directory, as every
    /// path in gcse's files is.
    pub fn from_table(mut table: toml::Table, path: &Path) -> Result<Self> {
        let fail = |message: String| Error::Config {
            path: path.to_path_buf(),
            message,
        };
        let dir = match table.remove("dir") {
            Some(toml::Value::String(dir)) if !dir.is_empty() => PathBuf::from(dir),
            Some(_) => return Err(fail("`dir` must be a folder name".into())),
            None => {
                return Err(fail(
                    "missing `dir`: the folder every stage writes in".into(),
                ))
            }
        };
        let stages = match table.remove("stage") {
            Some(toml::Value::Array(items)) if !items.is_empty() => items,
            Some(_) => {
                return Err(fail(
                    "`stage` must be [[stage]] tables, at least one".into(),
                ))
            }
            None => return Err(fail("no [[stage]]: a pipeline needs at least one".into())),
        };
        if let Some(key) = table.keys().next() {
            return Err(fail(format!(
                "unknown key `{key}` (a pipeline file has `dir` and [[stage]] tables)"
            )));
        }
        let mut specs: Vec<StageSpec> = Vec::new();
        for (i, item) in stages.into_iter().enumerate() {
            let toml::Value::Table(mut entry) = item else {
                return Err(fail(format!("stage {}: not a table", i + 1)));
            };
            let name = match entry.remove("name") {
                Some(toml::Value::String(n)) if valid_name(&n) => n,
                Some(_) => {
                    return Err(fail(format!(
                        "stage {}: `name` must be letters, digits, `-` or `_`",
                        i + 1
                    )))
                }
                None => return Err(fail(format!("stage {}: missing `name`", i + 1))),
            };
            let at = |message: String| fail(format!("stage `{name}`: {message}"));
            if specs.iter().any(|s| s.name == name) {
                return Err(at("a second stage of that name".into()));
            }
            let known = || {
                StageCommand::ALL
                    .iter()
                    .map(|c| c.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let command = match entry.remove("command") {
                Some(toml::Value::String(c)) => StageCommand::named(&c)
                    .ok_or_else(|| at(format!("unknown command \"{c}\" (known: {})", known())))?,
                _ => return Err(at(format!("missing `command` (one of: {})", known()))),
            };
            let mut section = match entry.remove("base") {
                Some(toml::Value::String(base)) => read_base(Path::new(&base)).map_err(at)?,
                Some(_) => return Err(at("`base` must be a file name".into())),
                None => toml::Table::new(),
            };
            let output = command.output_key();
            if entry.contains_key(output) {
                return Err(at(format!(
                    "`{output}` is set by the pipeline (the stage writes in {}/stages/)",
                    dir.display()
                )));
            }
            merge(&mut section, entry);
            // A base file's own output place is replaced.
            section.remove(output);
            check_references(&section, &specs, &name).map_err(at)?;
            specs.push(StageSpec {
                name,
                command,
                section,
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            dir,
            stages: specs,
        })
    }

    /// The same pipeline with `set` applied: each key `stage.key...` set in
    /// that stage's section (a study's variant).
    pub fn with_overrides(&self, set: &[Override]) -> Result<Self> {
        let mut spec = self.clone();
        for o in set {
            let fail = |message: String| Error::Config {
                path: self.path.clone(),
                message,
            };
            let (stage, key) = o
                .key
                .split_first()
                .filter(|(_, k)| !k.is_empty())
                .ok_or_else(|| {
                    fail(format!(
                        "`{}`: a variant's key starts with a stage's name (e.g. stage2.train.lr)",
                        o.dotted()
                    ))
                })?;
            let names: Vec<&str> = self.stages.iter().map(|s| s.name.as_str()).collect();
            let index = names.iter().position(|n| n == stage).ok_or_else(|| {
                fail(format!(
                    "`{}`: no stage `{stage}` (stages: {})",
                    o.dotted(),
                    names.join(", ")
                ))
            })?;
            let inner = Override {
                key: key.to_vec(),
                value: o.value.clone(),
            };
            let (earlier, rest) = spec.stages.split_at_mut(index);
            let target = &mut rest[0];
            inner
                .apply(&mut target.section)
                .map_err(|m| fail(format!("stage `{stage}`: {m}")))?;
            let output = target.command.output_key();
            if target.section.contains_key(output) {
                return Err(fail(format!(
                    "`{}`: `{output}` is set by the pipeline",
                    o.dotted()
                )));
            }
            check_references(&target.section, earlier, stage)
                .map_err(|m| fail(format!("stage `{stage}`: {m}")))?;
        }
        Ok(spec)
    }

    /// The index of the stage `name`; the message lists the stages.
    pub fn index_of(&self, name: &str) -> Result<usize> {
        self.stages
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| {
                Error::Usage(format!(
                    "{}: no stage `{name}` (stages: {})",
                    self.path.display(),
                    self.stages
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }
}

/// A TOML file as a table; the error names the file (and the line).
pub fn read_table(path: &Path) -> Result<toml::Table> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    toml::from_str(&text).map_err(|e| Error::Config {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })
}

/// Letters, digits, `-` and `_`, at least one: a stage's or variant's name.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn read_base(path: &Path) -> std::result::Result<toml::Table, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("base file {}: {e}", path.display()))?;
    toml::from_str(&text)
        .map_err(|e| format!("base file {}: {}", path.display(), e.to_string().trim_end()))
}

/// `over`'s keys set on `base`: tables merged key by key, any other value
/// (arrays included) replaced.
pub fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Every string of `section` with its dotted key.
pub fn strings_of(section: &toml::Table) -> Vec<(String, &str)> {
    let mut out = Vec::new();
    for (key, value) in section {
        strings(key, value, &mut out);
    }
    out
}

fn strings<'a>(prefix: &str, value: &'a toml::Value, out: &mut Vec<(String, &'a str)>) {
    let key = |k: &str| crate::overrides::join_key(prefix, k);
    match value {
        toml::Value::String(s) => out.push((prefix.to_string(), s)),
        toml::Value::Table(t) => {
            for (k, v) in t {
                strings(&key(k), v, out);
            }
        }
        toml::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                strings(&key(&i.to_string()), v, out);
            }
        }
        _ => {}
    }
}

/// Checks that every `@name` of `section` names one of `earlier`.
fn check_references(
    section: &toml::Table,
    earlier: &[StageSpec],
    this: &str,
) -> std::result::Result<(), String> {
    for (key, text) in strings_of(section) {
        let Some(r) = reference(text) else { continue };
        if r.stage == this {
            return Err(format!("`{key}` = \"{text}\" names the stage itself"));
        }
        if !earlier.iter().any(|s| s.name == r.stage) {
            return Err(format!(
                "`{key}` = \"{text}\": no earlier stage `{}` (a stage reads only what stages before it wrote)",
                r.stage
            ));
        }
        if r.rest
            .is_some_and(|rest| rest.is_empty() || rest.split('/').any(|p| p == ".."))
        {
            return Err(format!(
                "`{key}` = \"{text}\": after `@{}/` a file inside that stage's folder",
                r.stage
            ));
        }
    }
    Ok(())
}
