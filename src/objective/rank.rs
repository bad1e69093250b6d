//! Rank distillation with ranking consistency, LLM hard negatives and a
//! dynamic negative buffer (docs/methods-extensions.md §2): the bi-encoder
//! half of "rank and self distillation with LLM-augmented negative
//! sampling", reconstructed after RankCSE.
//!
//! `L = L_cl + beta L_cons + gamma L_rank` ([`RankLoss`]) on two dropout
//! views of each anchor. `L_cl`'s logit rows may gain the anchors' LLM hard
//! negatives (GCSE triplets, the own one Gaussian-decayed as in stage 2) and
//! each anchor's negatives from a [`NegativeBuffer`] of earlier batches;
//! `L_rank` is ListNet or ListMLE of the student's cross-view matrix against
//! the weighted mixture of teachers `sum_k w_k cos_k / tau_T`, each
//! teacher's vectors of every anchor computed once and cached in the run
//! directory (`teachers/rank-<k>`). ListMLE's tie-breaking permutation is
//! drawn from the step's seed and the buffer is part of every checkpoint,
//! so `--resume` repeats an uninterrupted run. Every term can be switched
//! off (`gamma = 0`, `beta = 0`, no `[rank.buffer]`, `llm_negatives =
//! false`), so each ablation is an experiment file.

use std::collections::HashMap;

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::negative_buffer::{BufferConfig, BufferVectors, Entry, NegativeBuffer};
use super::sentences::Sentences;
use super::stats::{histogram, mean, HistogramSpec, SeriesSpec, Stats, StatsPanel};
use super::teacher::frozen_vectors;
use super::triplet_examples::TripletExamples;
use super::{Objective, Readings, Setup};
use crate::config::{MlpInit, TrainConfig};
use crate::data::tokenizer::Encoded;
use crate::embed::embedder::{cosine, distinct, Embeddings};
use crate::error::{Error, Result};
use crate::loss::gaussian_decay::{Decay, DecayMode, WEIGHT};
use crate::loss::rank::{
    list_mle_order, BufferNegatives, Consistency, Listwise, RankConstants, RankLoss, ANCHORS,
    BUFFER_COSINE, BUFFER_COUNT, CONSISTENCY, CONTRASTIVE, DROPPED, RANKING,
};
use crate::model::config::BertConfig;
use crate::model::hub::resolve_model;
use crate::model::pooling::Pooling;
use crate::rng::SplitMix64;
use crate::run_dir::RunDir;

/// One teacher of the mixture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RankTeacherConfig {
    /// A model directory, a training run directory (its best model) or a
    /// hub id.
    pub path: String,
    /// How its token states become a vector.
    pub pooling: Pooling,
    /// Its weight `w_k` in the mixture. Default: an equal share, `1 / K`.
    #[serde(default)]
    pub weight: Option<f64>,
    /// Longest tokenized sentence. Default `model.max_len`.
    #[serde(default)]
    pub max_len: Option<usize>,
}

/// `[rank]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RankConfig {
    /// The listwise loss: `listmle` (default) or `listnet`.
    #[serde(default)]
    pub listwise: Listwise,
    /// Weight of the listwise term (0: no rank distillation). Default 1.
    #[serde(default = "defaults::one")]
    pub gamma: f64,
    /// Weight of the ranking consistency (0: none). Default 1.
    #[serde(default = "defaults::one")]
    pub beta: f64,
    /// The consistency's form: `jsd` (default) or `rankcse` (the community
    /// code, for parity only).
    #[serde(default)]
    pub consistency: Consistency,
    /// The student's temperature in the listwise loss. Default 0.05.
    #[serde(default = "defaults::tau")]
    pub tau_s: f64,
    /// The teachers' temperature, tau_T. Default 0.05.
    #[serde(default = "defaults::tau")]
    pub tau_t: f64,
    /// The teachers, mixed by weight; needed unless `gamma = 0` and no
    /// buffer.
    #[serde(default)]
    pub teachers: Vec<RankTeacherConfig>,
    /// Whether the triplets' LLM hard negatives join the logit rows (needs
    /// `[[data.candidates]]` or `[[data.triplets]]`; without, triplet data
    /// train on their anchors only). Default false.
    #[serde(default)]
    pub llm_negatives: bool,
    /// The decay of each anchor's own LLM negative, as `gcse.decay`.
    /// Default `official`.
    #[serde(default)]
    pub decay: DecayMode,
    /// Its Gaussian width in logit units, as `gcse.decay_width`.
    #[serde(default)]
    pub decay_width: Option<f64>,
    /// The frozen model that filters candidates and scores the own
    /// negatives. Default `model.path`.
    #[serde(default)]
    pub frozen: Option<String>,
    /// The negative buffer; none without this section.
    #[serde(default)]
    pub buffer: Option<BufferConfig>,
}

mod defaults {
    pub fn one() -> f64 {
        1.0
    }
    pub fn tau() -> f64 {
        0.05
    }
}

impl Default for RankConfig {
    fn default() -> Self {
        toml::from_str("").expect("every [rank] key has a default")
    }
}

/// Statistic keys, in the log and the panel.
const L_CL: &str = "l_cl";
const L_CONS: &str = "l_cons";
const L_RANK: &str = "l_rank";
const BUFFER_NEGATIVES: &str = "buffer_negatives";
const BUFFER_MEAN_COSINE: &str = "buffer_cosine";
const BUFFER_FALSE: &str = "buffer_false";
const BUFFER_COSINES: &str = "buffer_cosines";
const MEAN_WEIGHT: &str = "mean_weight";

/// Where the anchors come from.
enum Examples {
    Sentences(Sentences),
    Triplets(TripletExamples),
}

impl Examples {
    fn len(&self) -> usize {
        match self {
            Examples::Sentences(s) => s.len(),
            Examples::Triplets(t) => t.len(),
        }
    }

    fn anchors(&self) -> Vec<&str> {
        match self {
            Examples::Sentences(s) => s.texts(),
            Examples::Triplets(t) => (0..t.len()).map(|i| t.anchor(i)).collect(),
        }
    }
}

/// A buffer and how it is read.
struct Buffer {
    config: BufferConfig,
    queue: NegativeBuffer,
    /// The width of its vectors (the student's).
    dim: usize,
    /// A warning for the console: teacher vectors from another model or
    /// pooling than the student's start, whose cosines with the student
    /// may carry no signal.
    note: Option<String>,
}

/// The objective: the anchors, the teachers' vectors of them and the
/// buffer.
pub struct Rank {
    loss: RankLoss,
    examples: Examples,
    /// Example `i`'s anchor among the distinct anchors (the rows of the
    /// teachers' vectors and of buffer entries).
    sentence_of: Vec<usize>,
    /// How many distinct anchors.
    distinct: usize,
    /// Per teacher: its weight and its vectors of the distinct anchors.
    teachers: Vec<(f64, Embeddings)>,
    tau_t: f64,
    buffer: Option<Buffer>,
}

impl Objective for Rank {
    type Config = RankConfig;
    type Loss = RankLoss;
    const NAME: &'static str = "rank";
    const MLP_INIT: MlpInit = MlpInit::Random;

    fn validate(config: &RankConfig, experiment: &TrainConfig) -> std::result::Result<(), String> {
        let data = &experiment.data;
        if config.llm_negatives {
            TripletExamples::check(data, Self::NAME)
                .map_err(|e| format!("`rank.llm_negatives = true`: {e}"))?;
        } else if data.has_triplets() {
            TripletExamples::check(data, Self::NAME)?;
        } else {
            Sentences::check(data)?;
        }
        for (key, value) in [("tau_s", config.tau_s), ("tau_t", config.tau_t)] {
            if !(value > 0.0 && value.is_finite()) {
                return Err(format!("`rank.{key}` must be positive, not {value}"));
            }
        }
        for (key, value) in [("gamma", config.gamma), ("beta", config.beta)] {
            if !(value >= 0.0 && value.is_finite()) {
                return Err(format!("`rank.{key}` must be 0 or more, not {value}"));
            }
        }
        Decay::check_width("rank.decay_width", config.decay_width)?;
        if config.teachers.is_empty() && (config.gamma > 0.0 || config.buffer.is_some()) {
            return Err("`rank.teachers` needs at least one teacher (`[[rank.teachers]]` with `path` and `pooling`) for rank distillation (`gamma` > 0) or the buffer".into());
        }
        for (k, teacher) in config.teachers.iter().enumerate() {
            if let Some(w) = teacher.weight {
                if !(w >= 0.0 && w.is_finite()) {
                    return Err(format!(
                        "`rank.teachers[{k}].weight` must be 0 or more, not {w}"
                    ));
                }
            }
        }
        let weights: Vec<f64> = config.teachers.iter().filter_map(|t| t.weight).collect();
        if weights.len() == config.teachers.len()
            && !weights.is_empty()
            && weights.iter().sum::<f64>() <= 0.0
        {
            return Err(
                "`rank.teachers[..].weight`: the weights are all 0, which leaves no teacher".into(),
            );
        }
        if let Some(buffer) = &config.buffer {
            buffer.check("rank.buffer", config.teachers.len())?;
        }
        Ok(())
    }

    fn panel(config: &RankConfig) -> Option<StatsPanel> {
        let series = |key: &str, label: &str, decimals| SeriesSpec {
            key: key.into(),
            label: label.into(),
            decimals,
        };
        let mut all = vec![
            series(L_CL, "L_cl", 4),
            series(L_CONS, "L_cons", 4),
            series(L_RANK, "L_rank", 4),
        ];
        if config.buffer.is_some() {
            all.push(series(BUFFER_NEGATIVES, "buffer negatives / anchor", 2));
            all.push(series(BUFFER_MEAN_COSINE, "buffer negative cosine", 3));
            all.push(series(BUFFER_FALSE, "dropped as false", 3));
        }
        if config.llm_negatives {
            all.push(series(MEAN_WEIGHT, "LLM negative decay weight", 3));
        }
        Some(StatsPanel {
            name: "rank".into(),
            title: "rank distillation".into(),
            placeholder: "L_cl, L_cons, L_rank and, with a buffer, the buffer's hits (negatives \
                          per anchor, their mean cosine with the anchor, the fraction dropped as \
                          likely false negatives) appear here after the first step."
                .into(),
            series: all,
            histogram: config.buffer.is_some().then(|| HistogramSpec {
                key: BUFFER_COSINES.into(),
                title: "anchor-buffer negative cosine, last batch".into(),
                range: [-1.0, 1.0],
            }),
            plot: "rank.png".into(),
            smooth: 10,
        })
    }

    fn prepare<B: AutodiffBackend>(config: &RankConfig, setup: &Setup<'_, B>) -> Result<Self> {
        let examples = if setup.data.has_triplets() {
            Examples::Triplets(TripletExamples::load(config.frozen.as_deref(), setup)?)
        } else {
            Examples::Sentences(Sentences::load(setup)?)
        };
        let anchors = examples.anchors();
        let texts = distinct(anchors.iter().copied());
        let row: HashMap<&str, usize> = texts.iter().enumerate().map(|(i, &t)| (t, i)).collect();
        let sentence_of = anchors.iter().map(|a| row[a]).collect();
        let distinct_count = texts.len();
        let share = 1.0 / config.teachers.len().max(1) as f64;
        let teachers = config
            .teachers
            .iter()
            .enumerate()
            .map(|(k, t)| {
                let vectors = frozen_vectors(
                    setup,
                    &t.path,
                    t.pooling,
                    t.max_len,
                    &texts,
                    &format!("rank-{k}"),
                )?;
                Ok((t.weight.unwrap_or(share), vectors))
            })
            .collect::<Result<Vec<_>>>()?;
        let buffer = match &config.buffer {
            None => None,
            Some(b) => {
                let dir = resolve_model(&setup.model.path)?;
                let dim = BertConfig::from_hf_file(&dir.join("config.json"))?.hidden_size;
                if b.vectors == BufferVectors::Teacher && teachers[b.teacher].1.dim != dim {
                    return Err(Error::Usage(format!(
                        "`rank.buffer.teacher` = {}: its vectors have {} dimensions but the student's have {dim}; choose a teacher of the student's width or `vectors = \"student\"`",
                        b.teacher, teachers[b.teacher].1.dim
                    )));
                }
                let foreign = (b.vectors == BufferVectors::Teacher)
                    .then(|| &config.teachers[b.teacher])
                    .filter(|t| t.path != setup.model.path || t.pooling != setup.model.pooling);
                Some(Buffer {
                    queue: NegativeBuffer::new(b.size.unwrap_or(4 * setup.batch_size)),
                    config: b.clone(),
                    dim,
                    note: foreign.map(|source| {
                        format!(
                            "note: the buffer keeps teacher {}'s vectors ({}, {:?} pooling), not the student's start ({}, {:?}); if the two spaces differ, the buffer negatives' cosines with the anchors stay near 0 (the \"buffer negative cosine\" statistic) and carry no signal: `vectors = \"student\"` keeps the student's own",
                            b.teacher, source.path, source.pooling, setup.model.path, setup.model.pooling
                        )
                    }),
                })
            }
        };
        Ok(Self {
            loss: RankLoss {
                temperature: setup.temperature,
                student_temperature: config.tau_s,
                beta: config.beta,
                gamma: config.gamma,
                listwise: config.listwise,
                consistency: config.consistency,
                decay: Decay::of(config.decay, config.decay_width, setup.temperature),
                anchors: config
                    .buffer
                    .as_ref()
                    .is_some_and(|b| b.vectors == BufferVectors::Student),
                negatives: config.llm_negatives,
            },
            examples,
            sentence_of,
            distinct: distinct_count,
            teachers,
            tau_t: config.tau_t,
            buffer,
        })
    }

    fn summary(&self) -> Vec<String> {
        let mut lines = match &self.examples {
            Examples::Sentences(s) => vec![format!("data: {}", s.summary())],
            Examples::Triplets(t) => t.summary(),
        };
        let loss = &self.loss;
        lines.push(format!(
            "rank: {:?} x {} against {} teacher(s), consistency {:?} x {}, LLM negatives {}, buffer {}",
            loss.listwise,
            loss.gamma,
            self.teachers.len(),
            loss.consistency,
            loss.beta,
            if loss.negatives { "on" } else { "off" },
            match &self.buffer {
                Some(b) => format!(
                    "{} entries of {:?} vectors, top {}, theta {}",
                    b.queue.capacity(),
                    b.config.vectors,
                    b.config.top,
                    b.config.theta
                ),
                None => "off".into(),
            }
        ));
        lines.extend(self.buffer.as_ref().and_then(|b| b.note.clone()));
        lines
    }

    fn save(&self, run: &RunDir) -> Result<()> {
        match &self.examples {
            Examples::Triplets(t) => t.save(run),
            Examples::Sentences(_) => Ok(()),
        }
    }

    fn examples(&self) -> usize {
        self.examples.len()
    }

    fn sentences_per_example(&self) -> usize {
        1 + usize::from(self.loss.negatives)
    }

    fn loss(&self) -> &RankLoss {
        &self.loss
    }

    /// Rows `0..n` and `n..2n` hold the anchors, `2n..3n` their LLM
    /// negatives (with `llm_negatives`); the constants hold the teachers'
    /// logits, ListMLE's order, the frozen logits and the buffer's offers.
    fn batch<B: AutodiffBackend>(
        &self,
        indices: &[usize],
        seed: u64,
        device: &B::Device,
    ) -> Result<(Vec<&Encoded>, RankConstants<B>)> {
        let n = indices.len();
        let anchors: Vec<usize> = indices.iter().map(|&i| self.sentence_of[i]).collect();
        let teacher: Vec<f64> = anchors
            .iter()
            .flat_map(|&a| {
                anchors
                    .iter()
                    .map(move |&b| self.mixture(a, b) / self.tau_t)
            })
            .collect();
        let mut perm: Vec<usize> = (0..n).collect();
        SplitMix64::new(seed).shuffle(&mut perm);
        let order: Vec<i64> = list_mle_order(&teacher, &perm)
            .into_iter()
            .map(|c| c as i64)
            .collect();
        let (rows, frozen) = match (&self.examples, self.loss.negatives) {
            (Examples::Triplets(t), true) => (
                t.rows(indices, &[0, 0, 2]),
                Some(t.frozen_logits(indices, self.loss.temperature, device)),
            ),
            (Examples::Triplets(t), false) => (t.rows(indices, &[0, 0]), None),
            (Examples::Sentences(s), _) => (s.two_views(indices), None),
        };
        let (buffer, dropped) = match &self.buffer {
            Some(b) => {
                let (negatives, dropped) = self.offers(b, &anchors, device);
                (Some(negatives), dropped)
            }
            None => (None, vec![0.0; n]),
        };
        let constants = RankConstants {
            teacher: Tensor::from_data(
                TensorData::new(teacher, [n, n]).convert::<B::FloatElem>(),
                device,
            ),
            order: Tensor::<B, 2, Int>::from_data(
                TensorData::new(order, [n, n]).convert::<B::IntElem>(),
                device,
            ),
            frozen,
            buffer,
            dropped: Tensor::from_data(
                TensorData::new(dropped, [n]).convert::<B::FloatElem>(),
                device,
            ),
        };
        Ok((rows, constants))
    }

    fn stats(&self, readings: &Readings) -> Stats {
        let mut values = vec![
            (L_CL.into(), mean(&readings[CONTRASTIVE])),
            (L_CONS.into(), mean(&readings[CONSISTENCY])),
            (L_RANK.into(), mean(&readings[RANKING])),
        ];
        let mut histograms = Vec::new();
        if let (Some(cosines), Some(counts)) =
            (readings.get(BUFFER_COSINE), readings.get(BUFFER_COUNT))
        {
            let hit: Vec<f64> = cosines
                .iter()
                .zip(counts)
                .filter(|(_, &c)| c > 0.0)
                .map(|(&s, _)| s)
                .collect();
            values.push((BUFFER_NEGATIVES.into(), mean(counts)));
            if !hit.is_empty() {
                values.push((BUFFER_MEAN_COSINE.into(), mean(&hit)));
            }
            values.push((BUFFER_FALSE.into(), mean(&readings[DROPPED])));
            histograms.push((BUFFER_COSINES.into(), histogram(&hit, [-1.0, 1.0], 10)));
        }
        if let Some(weight) = readings.get(WEIGHT) {
            values.push((MEAN_WEIGHT.into(), mean(weight)));
        }
        Stats { values, histograms }
    }

    /// Appends the batch's anchors to the buffer, with the student's
    /// vectors of them when the buffer keeps those.
    fn observe(&mut self, indices: &[usize], readings: &Readings) {
        let Some(buffer) = &mut self.buffer else {
            return;
        };
        let student = readings.get(ANCHORS);
        let dim = student.map_or(0, |v| v.len() / indices.len().max(1));
        for (k, &i) in indices.iter().enumerate() {
            buffer.queue.push(Entry {
                sentence: self.sentence_of[i],
                vector: student.map(|v| {
                    v[k * dim..(k + 1) * dim]
                        .iter()
                        .map(|&x| x as f32)
                        .collect()
                }),
            });
        }
    }

    fn state(&self) -> Option<serde_json::Value> {
        self.buffer
            .as_ref()
            .map(|b| serde_json::to_value(&b.queue).expect("a negative buffer serialises to JSON"))
    }

    fn restore(&mut self, state: serde_json::Value) -> std::result::Result<(), String> {
        let Some(buffer) = &mut self.buffer else {
            return Err("the checkpoint holds a negative buffer but `[rank.buffer]` is off".into());
        };
        let queue: NegativeBuffer =
            serde_json::from_value(state).map_err(|e| format!("not a negative buffer: {e}"))?;
        if queue.capacity() != buffer.queue.capacity() {
            return Err(format!(
                "the saved buffer keeps {} entries, `rank.buffer.size` says {}",
                queue.capacity(),
                buffer.queue.capacity()
            ));
        }
        let fits = |e: &Entry| {
            e.sentence < self.distinct
                && e.vector.as_ref().is_none_or(|v| v.len() == buffer.dim)
                && (e.vector.is_some() == (buffer.config.vectors == BufferVectors::Student))
        };
        if let Some(bad) = queue.entries().iter().find(|e| !fits(e)) {
            return Err(format!(
                "a buffer entry (sentence {}) does not fit this run's sentences or vectors",
                bad.sentence
            ));
        }
        buffer.queue = queue;
        Ok(())
    }
}

impl Rank {
    /// The teachers' weighted cosine of distinct anchors `a` and `b`.
    fn mixture(&self, a: usize, b: usize) -> f64 {
        self.teachers
            .iter()
            .map(|(w, e)| w * cosine(e.row(a), e.row(b)))
            .sum()
    }

    /// Each anchor's negatives from `buffer` and the fraction of its
    /// entries dropped as false; the selection compares the teachers'
    /// mixture cosine, normalised by the weights, with `theta`.
    fn offers<B: AutodiffBackend>(
        &self,
        buffer: &Buffer,
        anchors: &[usize],
        device: &B::Device,
    ) -> (BufferNegatives<B>, Vec<f64>) {
        let config = &buffer.config;
        let (n, m) = (anchors.len(), config.top);
        let total: f64 = self.teachers.iter().map(|(w, _)| w).sum();
        let dim = buffer.dim;
        let mut vectors = vec![0f32; n * m * dim];
        let mut missing = vec![true; n * m];
        let mut dropped = Vec::with_capacity(n);
        for (i, &a) in anchors.iter().enumerate() {
            let offer = buffer.queue.offer(a, m, config.theta, |s| {
                self.mixture(a, s) / total.max(f64::MIN_POSITIVE)
            });
            for (k, &pick) in offer.picks.iter().enumerate() {
                let entry = &buffer.queue.entries()[pick];
                let vector = match config.vectors {
                    BufferVectors::Teacher => self.teachers[config.teacher].1.row(entry.sentence),
                    BufferVectors::Student => entry
                        .vector
                        .as_deref()
                        .expect("a student buffer keeps vectors"),
                };
                let at = (i * m + k) * dim;
                vectors[at..at + dim].copy_from_slice(vector);
                missing[i * m + k] = false;
            }
            dropped.push(offer.dropped);
        }
        (
            BufferNegatives {
                vectors: Tensor::from_data(
                    TensorData::new(vectors, [n, m, dim]).convert::<B::FloatElem>(),
                    device,
                ),
                missing: Tensor::<B, 2, Bool>::from_data(TensorData::new(missing, [n, m]), device),
            },
            dropped,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_parse_with_defaults_and_refuse_unknown_keys() {
        let config = RankConfig::default();
        assert_eq!(config.listwise, Listwise::Listmle);
        assert_eq!((config.gamma, config.beta, config.tau_t), (1.0, 1.0, 0.05));
        assert!(config.buffer.is_none() && !config.llm_negatives);
        let config: RankConfig = toml::from_str(
            "listwise = \"listnet\"\n[buffer]\ntheta = 0.5\n[[teachers]]\npath = \"m\"\npooling = \"avg\"\nweight = 0.33\n",
        )
        .unwrap();
        let buffer = config.buffer.unwrap();
        assert_eq!((buffer.top, buffer.theta, buffer.size), (8, 0.5, None));
        assert_eq!(buffer.vectors, BufferVectors::Teacher);
        assert_eq!(config.teachers[0].weight, Some(0.33));
        assert!(toml::from_str::<RankConfig>("[buffer]\nk = 3\n").is_err());
        assert!(toml::from_str::<RankConfig>("lambda = 1\n").is_err());
    }
}
