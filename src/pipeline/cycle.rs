//! `gcse distill-cycle`: bi-/cross-encoder mutual distillation (after
//! Trans-Encoder; methods-extensions section 2) as a generated pipeline.
//! Cycle `c` has a stage `cross<c>` (a cross-encoder trained, objective
//! `cross`, on the unlabeled pairs as the bi-encoders of cycle `c - 1`
//! score them) and a stage `bi<c>` per bi-encoder (trained, objective
//! `pairs`, on the same pairs as `cross<c>` scores them); cycle 1 starts
//! from the models the file names, every later one from the previous
//! cycle's best models. Two bi-encoders make it mutual: the cross-encoder
//! learns their averaged scores. Being a pipeline, a rerun skips finished
//! stages and resumes an interrupted one from its checkpoint.
//!
//! The unlabeled pairs (`<dir>/pairs.jsonl`) come from STS-B train and SICK
//! train (scores dropped), pair files, GCSE triplet files (anchor with
//! positive, anchor with negative) or nearest neighbours among a file's
//! sentences by the frozen starting bi-encoder; never from an evaluation
//! test set.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use super::plan::PlannedStage;
use super::spec::{read_table, PipelineSpec};
use crate::data::corpus::{expand_data_path, SourceSpec};
use crate::data::data_root;
use crate::embed::embedder::{distinct, Embedder};
use crate::error::{Error, Result};
use crate::eval::pair_scores::read_pairs;
use crate::eval::sts::{test_set_of, TrainSplit};
use crate::json_file::{read_json, write_jsonl};
use crate::model::hub::resolve_model;
use crate::model::load::{LoadOptions, LoadedModel};
use crate::model::pooling::{declared_pooling, Pooling};
use crate::rng::SplitMix64;
use crate::triplets::triplet::{read_triplets, TripletSpec};

/// The cycle file.
#[derive(Debug, Clone)]
pub struct CycleSpec {
    /// The file, for messages.
    pub path: PathBuf,
    /// Where the stages and the summary go (`dir`).
    pub dir: PathBuf,
    /// Cycles (`cycles`, at least 1).
    pub cycles: usize,
    /// `[pairs]`.
    pub pairs: PairPlan,
    /// `[cross]`: the experiment keys of every cross-encoder stage.
    pub cross: toml::Table,
    /// `[[bi]]`: the experiment keys of each bi-encoder's stages (one, or
    /// two for mutual distillation).
    pub bi: Vec<toml::Table>,
}

/// `[pairs]`: where the unlabeled pairs come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairPlan {
    /// `"stsb-train"`, `"sick-train"` (their scores dropped),
    /// `"pairs:FILE"` (a pair file, scores dropped), `"triplets:FILE"`
    /// (GCSE triplets: anchor with positive, anchor with negative),
    /// `"neighbours:FILE"` (each sentence of a text file with its nearest
    /// neighbour among them by the frozen `model`). Required.
    pub sources: Vec<String>,
    /// At most this many pairs, a seeded sample. Default: all.
    #[serde(default)]
    pub max_pairs: Option<usize>,
    /// Seed of the sample. Default 42.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// The SentEval data folder (STS-B and SICK; also which files are test
    /// sets). Default `$GCSE_DATA/senteval`.
    #[serde(default)]
    pub data: Option<PathBuf>,
    /// The frozen model of `neighbours:` sources. Default: the first
    /// bi-encoder's starting model.
    #[serde(default)]
    pub model: Option<String>,
    /// Its pooling. Default: what its folder declares, else
    /// `cls_before_pooler`.
    #[serde(default)]
    pub pooling: Option<Pooling>,
}

fn default_seed() -> u64 {
    42
}

/// One unlabeled pair as `pairs.jsonl` holds it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Pair {
    /// First sentence.
    pub a: String,
    /// Second sentence.
    pub b: String,
}

/// A stage's kind and cycle, for the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleStage {
    /// Its name in the pipeline.
    pub name: String,
    /// 1-based.
    pub cycle: usize,
    /// `None` for the cross-encoder, else the bi-encoder's index.
    pub bi: Option<usize>,
}

impl CycleSpec {
    /// Reads and checks a cycle file.
    pub fn load(path: &Path) -> Result<Self> {
        let fail = |message: String| Error::Config {
            path: path.to_path_buf(),
            message,
        };
        let mut table = read_table(path)?;
        let dir = match table.remove("dir") {
            Some(toml::Value::String(d)) if !d.is_empty() => PathBuf::from(d),
            _ => return Err(fail("missing `dir`: the folder the cycles write in".into())),
        };
        let cycles = match table.remove("cycles") {
            Some(toml::Value::Integer(n)) if n >= 1 => n as usize,
            None => 1,
            Some(v) => return Err(fail(format!("`cycles`: {v} is not a whole number >= 1"))),
        };
        let pairs: PairPlan = match table.remove("pairs") {
            Some(v) => serde_path_to_error::deserialize(v).map_err(|e| {
                fail(format!(
                    "`pairs.{}`: {}",
                    e.path(),
                    e.inner().message().trim_end()
                ))
            })?,
            None => {
                return Err(fail(
                    "missing [pairs]: where the unlabeled pairs come from".into(),
                ))
            }
        };
        if pairs.sources.is_empty() {
            return Err(fail("`pairs.sources`: name at least one source".into()));
        }
        let cross = match table.remove("cross") {
            Some(toml::Value::Table(t)) => t,
            _ => {
                return Err(fail(
                    "missing [cross]: the experiment keys of the cross-encoder stages".into(),
                ))
            }
        };
        let bi: Vec<toml::Table> =
            match table.remove("bi") {
                Some(toml::Value::Array(items)) => items
                    .into_iter()
                    .map(|v| match v {
                        toml::Value::Table(t) => Ok(t),
                        _ => Err(fail("`bi` must be [[bi]] tables".into())),
                    })
                    .collect::<Result<_>>()?,
                _ => return Err(fail(
                    "missing [[bi]]: the experiment keys of the bi-encoder stages (one, or two \
                     for mutual distillation)"
                        .into(),
                )),
            };
        if !(1..=2).contains(&bi.len()) {
            return Err(fail(format!(
                "{} [[bi]] tables: one bi-encoder, or two for mutual distillation",
                bi.len()
            )));
        }
        if let Some(key) = table.keys().next() {
            return Err(fail(format!(
                "unknown key `{key}` (a cycle file has dir, cycles, [pairs], [cross] and [[bi]])"
            )));
        }
        for (section, objective) in [(&cross, "cross")]
            .into_iter()
            .chain(bi.iter().map(|b| (b, "pairs")))
        {
            for key in ["objective", "run_dir"] {
                if section.contains_key(key) {
                    return Err(fail(format!(
                        "`{key}` in a [{}] table is set by distill-cycle",
                        if objective == "cross" { "cross" } else { "bi" }
                    )));
                }
            }
            let own = section.get(objective).and_then(|v| v.as_table());
            for key in ["pairs", "teachers"] {
                if own.is_some_and(|t| t.contains_key(key)) {
                    return Err(fail(format!(
                        "`{objective}.{key}` is set by distill-cycle (the unlabeled pairs, and \
                         the other kind's models as teachers)"
                    )));
                }
            }
            start_model(section).ok_or_else(|| {
                fail(format!(
                    "a [{}] table needs `model.path`: the model cycle 1 starts from",
                    if objective == "cross" { "cross" } else { "bi" }
                ))
            })?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            dir,
            cycles,
            pairs,
            cross,
            bi,
        })
    }

    /// Where the unlabeled pairs are written.
    pub fn pairs_file(&self) -> PathBuf {
        self.dir.join("pairs.jsonl")
    }

    /// The SentEval data folder.
    pub fn senteval(&self) -> PathBuf {
        self.pairs
            .data
            .clone()
            .unwrap_or_else(|| data_root().join("senteval"))
    }

    /// Every stage, in pipeline order.
    pub fn stages(&self) -> Vec<CycleStage> {
        let suffix = |i: usize| match self.bi.len() {
            1 => String::new(),
            _ => ["a", "b"][i].to_string(),
        };
        (1..=self.cycles)
            .flat_map(|c| {
                std::iter::once(CycleStage {
                    name: format!("cross{c}"),
                    cycle: c,
                    bi: None,
                })
                .chain((0..self.bi.len()).map(move |i| CycleStage {
                    name: format!("bi{c}{}", suffix(i)),
                    cycle: c,
                    bi: Some(i),
                }))
            })
            .collect()
    }

    /// The pipeline of the cycles.
    pub fn pipeline(&self) -> Result<PipelineSpec> {
        let stages = self.stages();
        let pairs = self.pairs_file().display().to_string();
        let name_of = |cycle: usize, bi: Option<usize>| {
            stages
                .iter()
                .find(|s| s.cycle == cycle && s.bi == bi)
                .map(|s| s.name.clone())
                .expect("every cycle has every stage")
        };
        let mut items = Vec::new();
        for stage in &stages {
            let c = stage.cycle;
            let (mut section, objective, start, teachers) = match stage.bi {
                None => {
                    let teachers: Vec<String> = (0..self.bi.len())
                        .map(|i| match c {
                            1 => start_model(&self.bi[i]).expect("checked on load"),
                            _ => format!("@{}/best", name_of(c - 1, Some(i))),
                        })
                        .collect();
                    let start = (c > 1).then(|| format!("@{}/best", name_of(c - 1, None)));
                    (self.cross.clone(), "cross", start, teachers)
                }
                Some(i) => {
                    let start = (c > 1).then(|| format!("@{}/best", name_of(c - 1, Some(i))));
                    let teachers = vec![format!("@{}/best", name_of(c, None))];
                    (self.bi[i].clone(), "pairs", start, teachers)
                }
            };
            section.insert("objective".into(), objective.into());
            if let Some(start) = start {
                let model = section
                    .entry("model")
                    .or_insert_with(|| toml::Table::new().into());
                if let Some(model) = model.as_table_mut() {
                    model.insert("path".into(), start.into());
                    // The previous cycle's model has its head and pooler.
                    model.remove("mlp_init");
                }
            }
            let own = section
                .entry(objective)
                .or_insert_with(|| toml::Table::new().into());
            if let Some(own) = own.as_table_mut() {
                own.insert("pairs".into(), vec![pairs.clone()].into());
                own.insert("teachers".into(), teachers.into());
            }
            let eval = section
                .entry("eval")
                .or_insert_with(|| toml::Table::new().into());
            if let Some(eval) = eval.as_table_mut() {
                eval.entry("tasks")
                    .or_insert_with(|| vec![DEV_TASK.to_string()].into());
                eval.insert("select_by".into(), DEV_TASK.into());
                // The test sets are scored once, for the best of each kind.
                eval.entry("final_test").or_insert(false.into());
            }
            let mut item = toml::Table::new();
            item.insert("name".into(), stage.name.clone().into());
            item.insert("command".into(), "train".into());
            item.extend(section);
            items.push(toml::Value::Table(item));
        }
        let mut table = toml::Table::new();
        table.insert("dir".into(), self.dir.display().to_string().into());
        table.insert("stage".into(), toml::Value::Array(items));
        PipelineSpec::from_table(table, &self.path)
    }

    /// Checks that no pair source is an evaluation test set; the message
    /// names the source and the test set.
    pub fn check_sources(&self) -> Result<()> {
        let senteval = self.senteval();
        for source in &self.pairs.sources {
            let file = match Source::parse(source) {
                Some(Source::Split(_)) => continue,
                Some(Source::Pairs(f) | Source::Triplets(f) | Source::Neighbours(f)) => f,
                None => {
                    return Err(Error::Config {
                        path: self.path.clone(),
                        message: format!(
                            "`pairs.sources`: \"{source}\" is not a source (stsb-train, \
                             sick-train, pairs:FILE, triplets:FILE, neighbours:FILE)"
                        ),
                    })
                }
            };
            if let Some(task) = test_set_of(&expand_data_path(file), &senteval) {
                return Err(Error::Config {
                    path: self.path.clone(),
                    message: format!(
                        "`pairs.sources`: \"{source}\" is the {task} test set; pairs from an \
                         evaluation test set, even without their scores, would leak it into the \
                         results (use STS-B train, SICK train, GCSE triplets or your own pairs)"
                    ),
                });
            }
        }
        Ok(())
    }

    /// The frozen model of `neighbours:` sources.
    pub fn neighbour_model(&self) -> String {
        self.pairs
            .model
            .clone()
            .or_else(|| start_model(&self.bi[0]))
            .expect("checked on load")
    }
}

/// The dev task that selects the best model of each kind.
pub const DEV_TASK: &str = "stsb-dev";

/// `model.path` of an experiment table.
fn start_model(section: &toml::Table) -> Option<String> {
    section
        .get("model")?
        .get("path")?
        .as_str()
        .map(str::to_string)
}

/// A parsed pair source.
enum Source<'a> {
    Split(TrainSplit),
    Pairs(&'a str),
    Triplets(&'a str),
    Neighbours(&'a str),
}

impl<'a> Source<'a> {
    fn parse(text: &'a str) -> Option<Self> {
        if let Some(split) = TrainSplit::named(text) {
            return Some(Self::Split(split));
        }
        let (kind, file) = text.split_once(':')?;
        match kind {
            "pairs" => Some(Self::Pairs(file)),
            "triplets" => Some(Self::Triplets(file)),
            "neighbours" => Some(Self::Neighbours(file)),
            _ => None,
        }
    }
}

/// Unlabeled pairs, and how many each source gave.
pub type Unlabeled = (Vec<Pair>, Vec<(String, usize)>);

/// The unlabeled pairs of `spec`'s sources, deduplicated (a pair and its
/// reverse are one), sampled to `max_pairs`, in source order; with the
/// count each source gave. `neighbours:` sources are embedded on `device`.
pub fn unlabeled_pairs<B: Backend>(spec: &CycleSpec, device: &B::Device) -> Result<Unlabeled> {
    spec.check_sources()?;
    let senteval = spec.senteval();
    let mut pairs: Vec<Pair> = Vec::new();
    let mut seen: HashSet<(String, String)> = HashSet::new();
    let mut counts = Vec::new();
    for source in &spec.pairs.sources {
        let found: Vec<(String, String)> = match Source::parse(source).expect("checked") {
            Source::Split(split) => {
                let read = split.load(&senteval)?;
                read.a.into_iter().zip(read.b).collect()
            }
            Source::Pairs(file) => {
                let (read, _) = read_pairs(&expand_data_path(file), &[])?;
                read.a.into_iter().zip(read.b).collect()
            }
            Source::Triplets(file) => {
                let set = read_triplets(&[TripletSpec {
                    path: file.to_string(),
                    origin: Default::default(),
                    on_bad_line: Default::default(),
                }])?;
                set.triplets
                    .into_iter()
                    .flat_map(|t| [(t.anchor.clone(), t.positive), (t.anchor, t.negative)])
                    .collect()
            }
            Source::Neighbours(file) => neighbours::<B>(spec, file, device)?,
        };
        let before = pairs.len();
        for (a, b) in found {
            if a == b || a.trim().is_empty() || b.trim().is_empty() {
                continue;
            }
            let key = if a <= b {
                (a.clone(), b.clone())
            } else {
                (b.clone(), a.clone())
            };
            if seen.insert(key) {
                pairs.push(Pair { a, b });
            }
        }
        counts.push((source.clone(), pairs.len() - before));
    }
    if let Some(max) = spec.pairs.max_pairs.filter(|&m| m < pairs.len()) {
        let mut order: Vec<usize> = (0..pairs.len()).collect();
        SplitMix64::new(spec.pairs.seed).shuffle(&mut order);
        let mut keep = order[..max].to_vec();
        keep.sort_unstable();
        pairs = keep.into_iter().map(|i| pairs[i].clone()).collect();
    }
    if pairs.is_empty() {
        return Err(Error::Config {
            path: spec.path.clone(),
            message: "`pairs.sources` gave no pair".into(),
        });
    }
    Ok((pairs, counts))
}

/// Each sentence of `file` (a text file, one a line; at most `max_pairs`,
/// a seeded sample) with its nearest other sentence by cosine of the
/// frozen model's vectors.
fn neighbours<B: Backend>(
    spec: &CycleSpec,
    file: &str,
    device: &B::Device,
) -> Result<Vec<(String, String)>> {
    let source = SourceSpec {
        path: file.to_string(),
        format: None,
        columns: Vec::new(),
        fields: Vec::new(),
        header: false,
        on_bad_line: Default::default(),
    };
    let read = source.read()?;
    let mut sentences: Vec<&str> = distinct(read.sentences.iter().map(String::as_str));
    if let Some(max) = spec.pairs.max_pairs.filter(|&m| m < sentences.len()) {
        SplitMix64::new(spec.pairs.seed).shuffle(&mut sentences);
        sentences.truncate(max);
    }
    let dir = resolve_model(&spec.neighbour_model())?;
    let model = LoadedModel::<B>::from_dir(&dir, &LoadOptions::default(), device)?;
    let pooling = spec
        .pairs
        .pooling
        .or_else(|| declared_pooling(&dir))
        .unwrap_or(Pooling::ClsBeforePooler);
    let bar = crate::progress::items(sentences.len() as u64, "sentences (neighbours)");
    let mut vectors = Embedder::of(&model, pooling, 64, device).embed(&sentences, &bar)?;
    bar.finish_and_clear();
    vectors.normalize();
    let n = vectors.rows();
    Ok((0..n)
        .filter_map(|i| {
            let row = vectors.row(i);
            (0..n)
                .filter(|&j| j != i)
                .map(|j| {
                    let dot: f32 = row.iter().zip(vectors.row(j)).map(|(x, y)| x * y).sum();
                    (j, dot)
                })
                .max_by(|x, y| x.1.total_cmp(&y.1))
                .map(|(j, _)| (sentences[i].to_string(), sentences[j].to_string()))
        })
        .collect())
}

/// Writes the pairs to `path` (atomically) unless it already holds them.
pub fn write_pairs(path: &Path, pairs: &[Pair]) -> Result<()> {
    let same = crate::json_file::read_jsonl_lenient::<Pair>(path)
        .is_ok_and(|(old, bad)| bad == 0 && old == pairs);
    if same {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    write_jsonl(path, pairs)
}

/// The STS-B dev score a train stage's best model was selected with, and
/// its step (0: the stage's start was never beaten), if it has one.
pub fn dev_score(stage: &PlannedStage) -> Option<(f64, u64)> {
    let meta: serde_json::Value = read_json(&stage.dir.join("best/gcse.json")).ok()?;
    let provenance = &meta["provenance"];
    Some((
        provenance["spearman"].as_f64()?,
        provenance["step"].as_u64()?,
    ))
}
