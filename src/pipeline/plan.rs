//! A pipeline's plan: each stage's key, folder and section with every
//! reference resolved, and whether its outputs are already there.
//!
//! A stage's key fingerprints what it computes from: its command, its
//! section as written (references stand for the keys of the stages they
//! name), and the contents of every file or folder a string of the section
//! names that exists outside the pipeline's folder (models, corpora,
//! prompts). Its folder is `<dir>/stages/<name>-<key>`, so two stages with
//! the same inputs, in one pipeline's variants or across runs, are one
//! stage; a changed setting or input makes a new folder and leaves the old
//! one as it was.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::spec::{reference, strings_of, PipelineSpec, StageCommand};
use crate::data::corpus::expand_data_path;
use crate::error::{Error, Result};
use crate::fingerprint::Fingerprint;
use crate::json_file::read_json;
use crate::overrides::flatten;

/// The record a finished stage leaves in its folder.
pub const MARKER: &str = "pipeline-stage.json";

/// The section of a `train` or `synth` stage, as the command reads it.
pub const STAGE_FILE: &str = "stage.toml";

/// Digits of the key in a stage's folder name.
const SHORT_KEY: usize = 12;

/// One stage, resolved.
#[derive(Debug, Clone)]
pub struct PlannedStage {
    /// As in the pipeline file.
    pub name: String,
    /// What it runs.
    pub command: StageCommand,
    /// 32 hex digits (see the module docs).
    pub key: String,
    /// `<dir>/stages/<name>-<key>`.
    pub dir: PathBuf,
    /// The section as written (references unresolved).
    pub written: toml::Table,
    /// The section the command gets: references resolved to paths, the
    /// output key set.
    pub section: toml::Table,
    /// The keys of the stages it reads, by name.
    pub upstream: BTreeMap<String, String>,
    /// The fingerprint of each outside file or folder it reads, by path.
    pub inputs: BTreeMap<String, String>,
}

/// What a finished stage records ([`MARKER`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    /// The stage's name.
    pub stage: String,
    /// Its command.
    pub command: String,
    /// Its key.
    pub key: String,
    /// Its section as written, as TOML.
    pub settings: String,
    /// Keys of the stages it read.
    pub upstream: BTreeMap<String, String>,
    /// Fingerprints of the outside files it read.
    pub inputs: BTreeMap<String, String>,
    /// Fingerprints of its outputs, by path in its folder.
    pub outputs: BTreeMap<String, String>,
    /// Wall-clock seconds the command ran (the last attempt).
    pub seconds: f64,
}

/// Where a stage stands.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Finished with these inputs; its outputs are as it left them.
    Done(StageRecord),
    /// Started and not finished (killed, stopped, failed, or its outputs
    /// changed since): run again, resuming what the command can resume.
    Interrupted,
    /// Never started with these inputs.
    New,
}

/// Fingerprints of outside inputs, each computed once per process.
#[derive(Debug, Default)]
pub struct InputCache(HashMap<PathBuf, String>);

impl InputCache {
    fn of(&mut self, path: &Path) -> Result<String> {
        if let Some(hex) = self.0.get(path) {
            return Ok(hex.clone());
        }
        let hex = Fingerprint::new().path(path)?.hex();
        self.0.insert(path.to_path_buf(), hex.clone());
        Ok(hex)
    }
}

/// Resolves every stage of `spec`.
pub fn plan(spec: &PipelineSpec, cache: &mut InputCache) -> Result<Vec<PlannedStage>> {
    let mut planned: Vec<PlannedStage> = Vec::new();
    for stage in &spec.stages {
        let written = stage.section.clone();
        let mut upstream = BTreeMap::new();
        let all = strings_of(&written);
        for (_, text) in &all {
            if let Some(r) = reference(text) {
                let before = planned
                    .iter()
                    .find(|p| p.name == r.stage)
                    .expect("references are checked when the file is read");
                upstream.insert(before.name.clone(), before.key.clone());
            }
        }
        let mut inputs = BTreeMap::new();
        for (_, text) in &all {
            if reference(text).is_some() {
                continue;
            }
            let path = expand_data_path(text);
            if path.exists() && !overlaps(&path, &spec.dir) {
                inputs.insert(text.to_string(), cache.of(&path)?);
            }
        }
        let mut key = Fingerprint::new();
        key.field(b"gcse pipeline stage 1")
            .field(stage.command.name().as_bytes())
            .field(canonical(&toml::Value::Table(written.clone())).as_bytes());
        for (name, k) in &upstream {
            key.field(name.as_bytes()).field(k.as_bytes());
        }
        for (path, hex) in &inputs {
            key.field(path.as_bytes()).field(hex.as_bytes());
        }
        let key = key.hex();
        let dir = spec
            .dir
            .join("stages")
            .join(format!("{}-{}", stage.name, &key[..SHORT_KEY]));
        let mut section = resolve(&written, &planned);
        section.insert(
            stage.command.output_key().into(),
            toml::Value::String(path_text(&stage.command.output(&dir))),
        );
        planned.push(PlannedStage {
            name: stage.name.clone(),
            command: stage.command,
            key,
            dir,
            written,
            section,
            upstream,
            inputs,
        });
    }
    Ok(planned)
}

impl PlannedStage {
    /// Where this stage stands.
    pub fn state(&self) -> Result<State> {
        let marker = self.dir.join(MARKER);
        if !marker.is_file() {
            return Ok(if self.dir.exists() {
                State::Interrupted
            } else {
                State::New
            });
        }
        let record: StageRecord = read_json(&marker)?;
        if record.key != self.key || self.output_fingerprints()? != record.outputs {
            return Ok(State::Interrupted);
        }
        Ok(State::Done(record))
    }

    /// The fingerprint of each output there is.
    pub fn output_fingerprints(&self) -> Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for name in self.command.outputs() {
            let path = self.dir.join(name);
            if path.exists() {
                out.insert(name.to_string(), Fingerprint::new().path(&path)?.hex());
            }
        }
        Ok(out)
    }

    /// The outputs a finished run must have left, missing ones named.
    pub fn missing_outputs(&self) -> Vec<&'static str> {
        self.command
            .outputs()
            .iter()
            .copied()
            .filter(|n| !self.dir.join(n).exists())
            .collect()
    }

    /// The record of this stage finished in `seconds`.
    pub fn record(&self, seconds: f64) -> Result<StageRecord> {
        Ok(StageRecord {
            stage: self.name.clone(),
            command: self.command.name().into(),
            key: self.key.clone(),
            settings: toml::to_string(&self.written).map_err(|e| Error::Config {
                path: self.dir.join(MARKER),
                message: e.to_string(),
            })?,
            upstream: self.upstream.clone(),
            inputs: self.inputs.clone(),
            outputs: self.output_fingerprints()?,
            seconds,
        })
    }

    /// Why this stage runs anew rather than as `previous` did: the settings
    /// that changed, else the stages upstream or outside files that did.
    pub fn changes_since(&self, previous: &StageRecord) -> String {
        let before: toml::Table = toml::from_str(&previous.settings).unwrap_or_default();
        let (mut old, mut new) = (BTreeMap::new(), BTreeMap::new());
        flatten("", &toml::Value::Table(before), &mut old);
        flatten("", &toml::Value::Table(self.written.clone()), &mut new);
        let mut keys: Vec<String> = old
            .keys()
            .chain(new.keys())
            .filter(|k| old.get(*k) != new.get(*k))
            .cloned()
            .collect();
        keys.sort();
        keys.dedup();
        if !keys.is_empty() {
            let shown: Vec<String> = keys
                .iter()
                .take(4)
                .map(|k| {
                    let v = |m: &BTreeMap<String, String>| {
                        m.get(k).cloned().unwrap_or("(unset)".into())
                    };
                    format!("{k} {} -> {}", v(&old), v(&new))
                })
                .collect();
            let more = keys.len().saturating_sub(shown.len());
            return format!(
                "settings changed: {}{}",
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            );
        }
        let upstream: Vec<&str> = self
            .upstream
            .iter()
            .filter(|(n, k)| previous.upstream.get(*n) != Some(k))
            .map(|(n, _)| n.as_str())
            .collect();
        if !upstream.is_empty() {
            return format!("upstream changed: {}", upstream.join(", "));
        }
        let inputs: Vec<&str> = self
            .inputs
            .iter()
            .filter(|(p, h)| previous.inputs.get(*p) != Some(h))
            .map(|(p, _)| p.as_str())
            .chain(
                previous
                    .inputs
                    .keys()
                    .filter(|p| !self.inputs.contains_key(*p))
                    .map(String::as_str),
            )
            .collect();
        if !inputs.is_empty() {
            return format!("inputs changed: {}", inputs.join(", "));
        }
        "new".into()
    }
}

/// Whether one of `a` and `b` holds the other (or they are one).
fn overlaps(a: &Path, b: &Path) -> bool {
    let full = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let (a, b) = (full(a), full(b));
    a.starts_with(&b) || b.starts_with(&a)
}

/// `section` with each reference replaced by the path it names.
fn resolve(section: &toml::Table, planned: &[PlannedStage]) -> toml::Table {
    section
        .iter()
        .map(|(k, v)| (k.clone(), resolve_value(v, planned)))
        .collect()
}

fn resolve_value(value: &toml::Value, planned: &[PlannedStage]) -> toml::Value {
    match value {
        toml::Value::String(text) => match reference(text) {
            Some(r) => {
                let stage = planned
                    .iter()
                    .find(|p| p.name == r.stage)
                    .expect("references are checked when the file is read");
                let path = match r.rest {
                    Some(rest) => stage.dir.join(rest),
                    None => stage.command.output(&stage.dir),
                };
                toml::Value::String(path_text(&path))
            }
            None => value.clone(),
        },
        toml::Value::Table(t) => toml::Value::Table(resolve(t, planned)),
        toml::Value::Array(items) => {
            toml::Value::Array(items.iter().map(|v| resolve_value(v, planned)).collect())
        }
        other => other.clone(),
    }
}

fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// One text per value, whatever order its tables were written in.
fn canonical(value: &toml::Value) -> String {
    match value {
        toml::Value::Table(t) => {
            let mut keys: Vec<&String> = t.keys().collect();
            keys.sort();
            let inner: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}={}", toml::Value::String(k.clone()), canonical(&t[k])))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        toml::Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(canonical).collect();
            format!("[{}]", inner.join(","))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> PipelineSpec {
        PipelineSpec::from_table(toml::from_str(text).unwrap(), Path::new("p.toml")).unwrap()
    }

    const TWO: &str = r#"
dir = "out"
[[stage]]
name = "a"
command = "synth"
[stage.sources]
limit = 3
[[stage]]
name = "b"
command = "train"
[stage.model]
path = "@a/x.txt"
[stage.train]
lr = 1e-4
seed = 1
"#;

    #[test]
    fn keys_follow_settings_and_upstream_only() {
        let mut cache = InputCache::default();
        let base = plan(&spec(TWO), &mut cache).unwrap();
        assert_eq!(base[1].upstream["a"], base[0].key);
        assert_eq!(
            base[1].section["model"]["path"].as_str().unwrap(),
            base[0].dir.join("x.txt").to_str().unwrap()
        );
        assert_eq!(
            base[0].section["out_dir"].as_str().unwrap(),
            base[0].dir.to_str().unwrap()
        );
        // The same settings written in another order: the same keys.
        let reordered = TWO.replace("lr = 1e-4\nseed = 1", "seed = 1\nlr = 1e-4");
        let same = plan(&spec(&reordered), &mut cache).unwrap();
        assert_eq!(same[1].key, base[1].key);
        // A downstream change leaves the upstream key.
        let lr = plan(&spec(&TWO.replace("1e-4", "2e-4")), &mut cache).unwrap();
        assert_eq!(lr[0].key, base[0].key);
        assert_ne!(lr[1].key, base[1].key);
        assert!(lr[1].dir != base[1].dir);
        // An upstream change moves both.
        let limit = plan(&spec(&TWO.replace("limit = 3", "limit = 4")), &mut cache).unwrap();
        assert_ne!(limit[0].key, base[0].key);
        assert_ne!(limit[1].key, base[1].key);
        let record = base[1].record(1.0).unwrap();
        assert_eq!(
            lr[1].changes_since(&record),
            "settings changed: train.lr 0.0001 -> 0.0002"
        );
        assert_eq!(limit[1].changes_since(&record), "upstream changed: a");
    }

    #[test]
    fn references_must_name_earlier_stages() {
        let fail = |text: &str| {
            PipelineSpec::from_table(toml::from_str(text).unwrap(), Path::new("p.toml"))
                .unwrap_err()
                .to_string()
        };
        let ahead = TWO.replace("@a/x.txt", "@c");
        assert!(
            fail(&ahead).contains("no earlier stage `c`"),
            "{}",
            fail(&ahead)
        );
        let own = TWO.replace("@a/x.txt", "@b");
        assert!(fail(&own).contains("the stage itself"));
        let up = TWO.replace("@a/x.txt", "@a/../x");
        assert!(fail(&up).contains("inside that stage's folder"));
        let output = TWO.replace(
            "command = \"train\"",
            "command = \"train\"\nrun_dir = \"x\"",
        );
        assert!(fail(&output).contains("`run_dir` is set by the pipeline"));
        let twice = TWO.replace("name = \"b\"", "name = \"a\"");
        assert!(fail(&twice).contains("a second stage"));
        let unknown = TWO.replace("\"synth\"", "\"bake\"");
        assert!(fail(&unknown).contains("unknown command \"bake\""));
    }
}
