//! The objectives an experiment file can choose (`objective = "..."`): the
//! one place that names them. Adding an objective is its module plus one
//! name in the `registry!` line below.

use super::cross::Cross;
use super::distillcse::Distillcse;
use super::gcse::Gcse;
use super::pairs::Pairs;
use super::rank::Rank;
use super::rankgen::Rankgen;
use super::simcse::Simcse;
use super::stats::StatsPanel;
use super::{parse_section, section_of, Objective};
use crate::config::{located, ObjectiveSection, TrainConfig};
use crate::error::{Error, Result};
use crate::model::cross_encoder::ModelKind;
use crate::overrides::Override;

use std::path::Path;

/// Work generic over the objective, run with the one an experiment chooses
/// (as [`crate::backend::BackendTask`] is generic over the backend).
pub trait ObjectiveTask {
    /// What the task returns.
    type Output;
    /// Runs the task with objective `O` configured by `config`.
    fn run<O: Objective>(self, config: O::Config) -> Self::Output;
}

macro_rules! registry {
    ($($objective:ty),+ $(,)?) => {
        /// The name of every objective, in registry order.
        pub const NAMES: &[&str] = &[$(<$objective as Objective>::NAME),+];

        /// Runs `task` with the objective `section` names, its settings
        /// parsed; the message names what is wrong.
        pub fn dispatch<T: ObjectiveTask>(
            section: &ObjectiveSection,
            task: T,
        ) -> std::result::Result<T::Output, String> {
            $(
                if section.name == <$objective as Objective>::NAME {
                    return Ok(task.run::<$objective>(parse_section::<$objective>(section)?));
                }
            )+
            Err(format!(
                "unknown objective \"{}\" (known: {})",
                section.name,
                NAMES.join(", ")
            ))
        }
    };
}

registry!(Simcse, Gcse, Distillcse, Rank, Rankgen, Cross, Pairs);

/// Checks the objective of `config` and writes its section back with every
/// default filled in, so that equal experiments compare equal.
struct Normalise<'a>(&'a TrainConfig);

impl ObjectiveTask for Normalise<'_> {
    type Output = std::result::Result<ObjectiveSection, String>;

    fn run<O: Objective>(self, config: O::Config) -> Self::Output {
        let (least, why) = O::MIN_BATCH;
        if self.0.train.batch_size < least {
            return Err(format!(
                "`train.batch_size` must be at least {least} for objective \"{}\" ({why})",
                O::NAME
            ));
        }
        O::validate(&config, self.0)?;
        Ok(section_of::<O>(&config))
    }
}

/// The objective of experiments that name none.
pub const DEFAULT: &str = <Simcse as Objective>::NAME;

/// Reads an experiment file's shared sections, whatever its objective (also
/// one this build does not know): what a run directory's `config.toml` is
/// read with.
pub fn read(path: &Path) -> Result<TrainConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_shared(&text, path, &[])
}

/// Parses the shared sections of `text` with `overrides` set on it first;
/// an error of a file given overrides lists their keys.
fn parse_shared(text: &str, path: &Path, overrides: &[Override]) -> Result<TrainConfig> {
    let mut table: toml::Table = toml::from_str(text).map_err(|e| Error::Config {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })?;
    upgrade(&mut table);
    for o in overrides {
        o.apply(&mut table).map_err(|message| Error::Config {
            path: path.to_path_buf(),
            message,
        })?;
    }
    TrainConfig::from_table(table, text, path, DEFAULT).map_err(|e| with_overrides(e, overrides))
}

/// `error` told apart from the file when `overrides` were given: a message
/// about a key an override set names the override, not a line of the file;
/// any other lists the keys set.
fn with_overrides(error: Error, overrides: &[Override]) -> Error {
    match error {
        Error::Config { path, message } if !overrides.is_empty() => {
            let rest = match message.split_once(": ") {
                Some((line, rest)) if line.starts_with("line ") => rest,
                _ => message.as_str(),
            };
            let key = rest
                .strip_prefix('`')
                .and_then(|r| r.split_once('`'))
                .map(|(key, _)| key);
            let set = overrides
                .iter()
                .rev()
                .find(|o| Some(o.dotted().as_str()) == key);
            let message = match set {
                Some(o) => format!("{rest} (from --set {}={})", o.dotted(), o.value),
                None => {
                    let keys: Vec<String> = overrides.iter().map(Override::dotted).collect();
                    format!("{message} (with --set {})", keys.join(", "))
                }
            };
            Error::Config { path, message }
        }
        other => other,
    }
}

/// Files written before objectives were plug-ins chose one with `stage =
/// "simcse" | "gcse"`, and every file held GCSE's settings as `[stage2]`.
fn upgrade(table: &mut toml::Table) {
    if !table.contains_key("objective") {
        if let Some(stage) = table.remove("stage") {
            table.insert("objective".into(), stage);
        }
    }
    let gcse = <Gcse as Objective>::NAME;
    if let Some(stage2) = table.remove("stage2") {
        let objective = table.get("objective").and_then(|v| v.as_str());
        if objective == Some(gcse) && !table.contains_key(gcse) {
            table.insert(gcse.into(), stage2);
        }
    }
}

/// Parses an experiment file's text (`path` names it in errors) and checks
/// it against this build's evaluation tasks and objectives; the objective's
/// section gets every default written out.
pub fn parse(text: &str, path: &Path) -> Result<TrainConfig> {
    parse_with(text, path, &[])
}

/// [`parse`] with `overrides` (`--set`) set on the file first.
pub fn parse_with(text: &str, path: &Path, overrides: &[Override]) -> Result<TrainConfig> {
    let mut config = parse_shared(text, path, overrides)?;
    let checked = config
        .check_tasks()
        .and_then(|_| dispatch(&config.objective, Normalise(&config)))
        .and_then(|r| r);
    config.objective =
        checked.map_err(|message| with_overrides(located(path, text, message), overrides))?;
    Ok(config)
}

/// Reads an experiment file and checks its objective.
pub fn load(path: &Path) -> Result<TrainConfig> {
    load_with(path, &[])
}

/// [`load`] with `overrides` (`--set`) set on the file first.
pub fn load_with(path: &Path, overrides: &[Override]) -> Result<TrainConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_with(&text, path, overrides)
}

struct Kind;

impl ObjectiveTask for Kind {
    type Output = ModelKind;

    fn run<O: Objective>(self, _: O::Config) -> ModelKind {
        O::MODEL
    }
}

/// What the objective `section` names trains (a bi-encoder when it is not
/// known).
pub fn model_kind(section: &ObjectiveSection) -> ModelKind {
    dispatch(section, Kind).unwrap_or(ModelKind::BiEncoder)
}

struct Panel;

impl ObjectiveTask for Panel {
    type Output = Option<StatsPanel>;

    fn run<O: Objective>(self, config: O::Config) -> Option<StatsPanel> {
        O::panel(&config)
    }
}

/// The statistics panel of the objective `section` names, if it is known
/// and has one (for metrics logs written before the panel was logged).
pub fn panel(section: &ObjectiveSection) -> Option<StatsPanel> {
    dispatch(section, Panel).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MlpInit;
    use crate::loss::gaussian_decay::{Decay, DecayMode};

    fn parse(text: &str) -> Result<TrainConfig> {
        super::parse(text, Path::new("exp.toml"))
    }

    use crate::config::tests::MINIMAL;

    #[test]
    fn names_are_distinct_and_panels_clash_with_no_log_kind() {
        let mut names = NAMES.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), NAMES.len());
        assert!(NAMES.contains(&DEFAULT));
        for name in NAMES {
            let section = ObjectiveSection {
                name: name.to_string(),
                settings: toml::Table::new(),
            };
            if let Some(p) = panel(&section) {
                assert!(
                    !["start", "step", "eval"].contains(&p.name.as_str()),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn stage_two_needs_triplet_data_and_picks_its_own_defaults() {
        let gcse = r#"
run_dir = "runs/x"
objective = "gcse"
[model]
path = "runs/stage1"
[[data.candidates]]
path = "c.jsonl"
"#;
        let decay = |c: &TrainConfig| {
            parse_section::<Gcse>(&c.objective)
                .unwrap()
                .decay(c.train.temperature)
        };
        let c = parse(gcse).unwrap();
        assert_eq!(c.objective.name, "gcse");
        assert_eq!(
            decay(&c),
            Decay {
                mode: DecayMode::Official,
                width: 0.17
            }
        );
        assert_eq!(<Gcse as Objective>::MLP_INIT, MlpInit::Pretrained);
        assert_eq!(<Simcse as Objective>::MLP_INIT, MlpInit::Random);
        assert_eq!(parse(&c.to_toml()).unwrap(), c);
        let paper = parse(&format!("{gcse}[gcse]\ndecay = \"paper\"\n")).unwrap();
        assert!(
            (decay(&paper).width - 0.2).abs() < 1e-12,
            "sigma 0.01 / tau 0.05"
        );
        assert_eq!(parse(MINIMAL).unwrap().objective.name, "simcse");
        // Files of earlier versions: `stage` and `[stage2]`.
        let old = gcse.replace("objective = ", "stage = ");
        let old = parse(&format!("{old}[stage2]\ndecay = \"paper\"\n")).unwrap();
        assert_eq!(old, paper);
        let old_simcse = format!("stage = \"simcse\"\n{MINIMAL}[stage2]\ndecay = \"official\"\n");
        assert_eq!(parse(&old_simcse).unwrap(), parse(MINIMAL).unwrap());
        for (text, key) in [
            (
                gcse.replace("[[data.candidates]]\npath = \"c.jsonl\"\n", "[data]\n"),
                "data.candidates",
            ),
            (
                format!("{gcse}[[data.general]]\npath = \"s.txt\"\n"),
                "data.domain",
            ),
            (
                format!("{MINIMAL}[[data.triplets]]\npath = \"t.jsonl\"\n"),
                "objective = \"gcse\"",
            ),
            (format!("{gcse}[filter]\nalpha = 1.5\n"), "filter.alpha"),
            (
                format!("{gcse}[gcse]\ndecay_width = 0.0\n"),
                "gcse.decay_width",
            ),
            (
                format!("{gcse}[gcse]\ndecay = \"sometimes\"\n"),
                "sometimes",
            ),
            (
                format!("{gcse}[gcse]\ndecay_mode = \"paper\"\n"),
                "decay_mode",
            ),
            (gcse.replace("\"gcse\"", "\"rankcse\""), "rankcse"),
        ] {
            let err = parse(&text).unwrap_err().to_string();
            assert!(
                err.contains(key) && err.contains("exp.toml"),
                "{key}: {err}"
            );
        }
    }
}
