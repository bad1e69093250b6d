//! `metrics.jsonl`: one [`LogEntry`] a line: where a run (or resume)
//! started, each step, each evaluation, and each step's objective
//! statistics. One type for the writer, `gcse plot`'s replay and the tests.
//! On resume the file is cut back to the checkpoint's step, so that it reads
//! like one uninterrupted run; lines a crash cut short are dropped.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::atomic::write_atomic;
use crate::error::{Error, Result};
use crate::eval::evaluator::{DevTitles, TaskResult};
use crate::json_file::{read_jsonl_lenient, JsonlAppender};
use crate::objective::stats::{Stats, StatsPanel};
use crate::run_dir::RunDir;
use crate::train::tfevents::EventsFile;

/// One line of the metrics log.
#[derive(Debug, Clone, PartialEq)]
pub enum LogEntry {
    /// A run or resume started (`"kind": "start"`).
    Start(Box<StartEntry>),
    /// An optimizer step (`"kind": "step"`).
    Step(StepEntry),
    /// An evaluation (`"kind": "eval"`).
    Eval(EvalEntry),
    /// A step's objective statistics (`"kind"`: the objective's panel name).
    Stats(StatsEntry),
}

/// Where a run (or a resume) started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartEntry {
    /// Steps already taken.
    pub step: usize,
    /// Steps of the whole run.
    pub total_steps: usize,
    /// Backend and device.
    pub backend: String,
    /// The objective's name.
    #[serde(default)]
    pub objective: Option<String>,
    /// Optimizer steps per epoch.
    #[serde(default)]
    pub steps_per_epoch: Option<usize>,
    /// How the dashboard titles the dev curves.
    #[serde(default)]
    pub dev: Option<DevTitles>,
    /// How the objective's statistics are shown.
    #[serde(default)]
    pub panel: Option<StatsPanel>,
}

/// One optimizer step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepEntry {
    /// Steps taken, this one included.
    pub step: usize,
    /// The epoch it belongs to (0-based).
    pub epoch: usize,
    /// Its loss.
    pub loss: f64,
    /// Its learning rate.
    pub lr: f64,
    /// The global gradient norm before clipping (none without clipping).
    pub grad_norm: Option<f64>,
    /// Training sentences per second over the last steps.
    pub sentences_per_second: f64,
    /// Seconds this step took (absent in logs of earlier versions).
    #[serde(default)]
    pub seconds: Option<f64>,
    /// The loss scale of `f16-mixed` training at this step; a step whose
    /// scaled gradients overflowed has no `grad_norm` and made no update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<f64>,
}

/// One evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalEntry {
    /// Steps taken before it.
    pub step: usize,
    /// Every task's results.
    pub tasks: BTreeMap<String, TaskScores>,
    /// Whether it gave the best model so far.
    pub best: bool,
}

/// A task's results as the log keeps them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskScores {
    /// The primary metric's name.
    pub primary: String,
    /// Every metric's value (a NaN is written as null).
    #[serde(flatten)]
    pub metrics: BTreeMap<String, Number>,
}

/// A float that a NaN survives in JSON (as null).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Number(pub f64);

impl Serialize for Number {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_f64(self.0)
    }
}

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(Number(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN)))
    }
}

impl EvalEntry {
    /// An entry of `results` at `step`.
    pub fn new<'a>(
        step: usize,
        results: impl IntoIterator<Item = &'a TaskResult>,
        best: bool,
    ) -> Self {
        let tasks = results
            .into_iter()
            .map(|r| {
                let scores = TaskScores {
                    primary: r.primary.clone(),
                    metrics: r
                        .metrics
                        .iter()
                        .map(|(k, &v)| (k.clone(), Number(v)))
                        .collect(),
                };
                (r.task.clone(), scores)
            })
            .collect();
        Self { step, tasks, best }
    }

    /// The primary metric of `task`, if it was evaluated.
    pub fn primary(&self, task: &str) -> Option<f64> {
        let t = self.tasks.get(task)?;
        t.metrics.get(&t.primary).map(|n| n.0)
    }
}

/// What an evaluation entry looks like in the file. Logs of earlier
/// versions hold only `spearman`: each task's Spearman, its one metric.
#[derive(Serialize, Deserialize)]
struct EvalLine {
    step: usize,
    #[serde(default)]
    tasks: BTreeMap<String, TaskScores>,
    #[serde(default, skip_serializing)]
    spearman: BTreeMap<String, Number>,
    best: bool,
}

/// A step's objective statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsEntry {
    /// The objective's panel name (the entry's `"kind"`).
    pub kind: String,
    /// The step.
    pub step: usize,
    /// Scalars and histograms by key.
    pub values: BTreeMap<String, StatValue>,
}

/// A statistic: a scalar or a histogram's counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StatValue {
    /// A scalar.
    Scalar(f64),
    /// Counts per bin.
    Histogram(Vec<u64>),
}

impl StatsEntry {
    /// The entry of `stats` at `step` under `panel`'s name.
    pub fn new(panel: &str, step: usize, stats: &Stats) -> Self {
        let scalars = stats
            .values
            .iter()
            .map(|(k, v)| (k.clone(), StatValue::Scalar(*v)));
        let histograms = stats
            .histograms
            .iter()
            .map(|(k, h)| (k.clone(), StatValue::Histogram(h.clone())));
        Self {
            kind: panel.to_string(),
            step,
            values: scalars.chain(histograms).collect(),
        }
    }

    /// Scalar `key`.
    pub fn scalar(&self, key: &str) -> Option<f64> {
        match self.values.get(key)? {
            StatValue::Scalar(v) => Some(*v),
            StatValue::Histogram(_) => None,
        }
    }

    /// Histogram `key`.
    pub fn histogram(&self, key: &str) -> Option<&[u64]> {
        match self.values.get(key)? {
            StatValue::Histogram(h) => Some(h),
            StatValue::Scalar(_) => None,
        }
    }
}

impl LogEntry {
    /// The step the entry belongs to.
    pub fn step(&self) -> usize {
        match self {
            LogEntry::Start(e) => e.step,
            LogEntry::Step(e) => e.step,
            LogEntry::Eval(e) => e.step,
            LogEntry::Stats(e) => e.step,
        }
    }
}

impl Serialize for LogEntry {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let (kind, body) = match self {
            LogEntry::Start(e) => ("start", serde_json::to_value(&**e)),
            LogEntry::Step(e) => ("step", serde_json::to_value(e)),
            LogEntry::Eval(e) => (
                "eval",
                serde_json::to_value(EvalLine {
                    step: e.step,
                    tasks: e.tasks.clone(),
                    spearman: BTreeMap::new(),
                    best: e.best,
                }),
            ),
            LogEntry::Stats(e) => {
                let mut body = serde_json::Map::new();
                body.insert("step".into(), e.step.into());
                for (k, v) in &e.values {
                    body.insert(
                        k.clone(),
                        serde_json::to_value(v).map_err(S::Error::custom)?,
                    );
                }
                (e.kind.as_str(), Ok(serde_json::Value::Object(body)))
            }
        };
        let mut body = body.map_err(S::Error::custom)?;
        let object = body.as_object_mut().expect("entries are objects");
        object.insert("kind".into(), kind.into());
        object.serialize(s)
    }
}

impl<'de> Deserialize<'de> for LogEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error;
        let mut object = serde_json::Map::deserialize(d)?;
        let kind = match object.remove("kind") {
            Some(serde_json::Value::String(kind)) => kind,
            _ => return Err(D::Error::custom("an entry without a \"kind\"")),
        };
        let body = serde_json::Value::Object(object);
        let typed = match kind.as_str() {
            "start" => serde_json::from_value(body).map(|s| LogEntry::Start(Box::new(s))),
            "step" => serde_json::from_value(body).map(LogEntry::Step),
            "eval" => serde_json::from_value::<EvalLine>(body).map(|line| {
                let mut tasks = line.tasks;
                for (task, v) in line.spearman {
                    tasks.entry(task).or_insert_with(|| TaskScores {
                        primary: "spearman".into(),
                        metrics: BTreeMap::from([("spearman".into(), v)]),
                    });
                }
                LogEntry::Eval(EvalEntry {
                    step: line.step,
                    tasks,
                    best: line.best,
                })
            }),
            _ => {
                let mut values: BTreeMap<String, StatValue> =
                    serde_json::from_value(body).map_err(D::Error::custom)?;
                let step = match values.remove("step") {
                    Some(StatValue::Scalar(s)) if s >= 0.0 && s.fract() == 0.0 => s as usize,
                    _ => return Err(D::Error::custom("a statistics entry without a step")),
                };
                return Ok(LogEntry::Stats(StatsEntry { kind, step, values }));
            }
        };
        typed.map_err(D::Error::custom)
    }
}

/// An open metrics log, and its TensorBoard twin beside it
/// ([`RunDir::EVENTS`]).
pub struct MetricsLog {
    out: JsonlAppender,
    events: EventsFile,
}

impl MetricsLog {
    /// Opens `path` for appending, first keeping only the entries of steps
    /// up to `keep_until` and dropping lines that are not entries; the lines
    /// kept stay as they were written, byte for byte.
    pub fn open(path: &Path, keep_until: usize) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::io(path, e)),
        };
        let kept: String = text
            .lines()
            .filter(|line| {
                serde_json::from_str::<LogEntry>(line).is_ok_and(|e| e.step() <= keep_until)
            })
            .flat_map(|line| [line, "\n"])
            .collect();
        if kept != text {
            write_atomic(path, |w| w.write_all(kept.as_bytes()))?;
        }
        let entries: Vec<LogEntry> = kept
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        Ok(Self {
            out: JsonlAppender::open(path)?,
            events: EventsFile::create(&path.with_file_name(RunDir::EVENTS), &entries)?,
        })
    }

    /// Appends one entry (and its events).
    pub fn write(&mut self, entry: &LogEntry) -> Result<()> {
        self.out.append(entry)?;
        self.events.append(entry)
    }
}

/// The entries of a metrics log (none if it does not exist); lines that are
/// not entries are skipped.
pub fn read_log(path: &Path) -> Result<Vec<LogEntry>> {
    Ok(read_jsonl_lenient(path)?.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(entry: &LogEntry) -> LogEntry {
        serde_json::from_str(&serde_json::to_string(entry).unwrap()).unwrap()
    }

    #[test]
    fn entries_round_trip_and_old_lines_still_read() {
        let stats = Stats {
            values: vec![("mean".into(), 0.5)],
            histograms: vec![("bins".into(), vec![1, 0, 3])],
        };
        let entries = [
            LogEntry::Start(Box::new(StartEntry {
                step: 0,
                total_steps: 9,
                backend: "cpu".into(),
                objective: Some("x".into()),
                steps_per_epoch: Some(3),
                dev: None,
                panel: None,
            })),
            LogEntry::Step(StepEntry {
                step: 1,
                epoch: 0,
                loss: 2.5,
                lr: 1e-5,
                grad_norm: None,
                sentences_per_second: 10.0,
                seconds: Some(0.25),
                loss_scale: None,
            }),
            LogEntry::Stats(StatsEntry::new("toy", 1, &stats)),
            LogEntry::Eval(EvalEntry {
                step: 1,
                tasks: BTreeMap::from([(
                    "t".into(),
                    TaskScores {
                        primary: "acc".into(),
                        metrics: BTreeMap::from([("acc".into(), Number(0.5))]),
                    },
                )]),
                best: true,
            }),
        ];
        for entry in &entries {
            assert_eq!(&round_trip(entry), entry);
        }
        let line = serde_json::to_value(&entries[2]).unwrap();
        assert_eq!(line["kind"], "toy");
        assert_eq!(line["bins"][2], 3);

        // Lines gcse wrote before these types.
        let old: LogEntry = serde_json::from_str(
            r#"{"kind":"eval","step":20,"spearman":{"stsb-dev":83.07,"sickr-dev":null},"best":true}"#,
        )
        .unwrap();
        let LogEntry::Eval(old) = old else {
            panic!("{old:?}")
        };
        assert_eq!(old.primary("stsb-dev"), Some(83.07));
        assert!(old.primary("sickr-dev").unwrap().is_nan());
        let old: LogEntry = serde_json::from_str(
            r#"{"kind":"decay","step":3,"mean_weight":0.9,"fraction_decayed":0.1,"mean_gap":-1.5,"weights":[0,1,2]}"#,
        )
        .unwrap();
        let LogEntry::Stats(old) = old else {
            panic!("{old:?}")
        };
        assert_eq!((old.kind.as_str(), old.step), ("decay", 3));
        assert_eq!(old.scalar("mean_gap"), Some(-1.5));
        assert_eq!(old.histogram("weights"), Some(&[0, 1, 2][..]));
        let old: LogEntry = serde_json::from_str(
            r#"{"kind":"step","step":1,"epoch":0,"loss":1.0,"lr":0.0,"grad_norm":null,"sentences_per_second":3.0}"#,
        )
        .unwrap();
        assert!(matches!(
            old,
            LogEntry::Step(StepEntry { seconds: None, .. })
        ));
        assert!(serde_json::from_str::<LogEntry>(r#"{"step":1}"#).is_err());
    }
}
