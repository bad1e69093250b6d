//! GCSE (stage 2, docs/method.md "Stage 2"): triplets (anchor, positive,
//! hard negative), read from triplet files or filtered from candidate files
//! by the frozen evaluation model, trained with the Gaussian-decayed own hard
//! negative. The frozen model is a [`Teacher`] without dropout: its vectors
//! of every candidate, source and triplet-file sentence are computed once
//! (and cached in the run directory, so that a rerun or resume does not
//! encode them again), the filter reads them, and each batch carries the
//! logits `cos'(anchor, negative) / tau` of its triplets. Each step reports
//! what the decay did: the mean weight left on the own hard negatives, the
//! fraction at or below 0.5, the mean `s - s'` and a histogram of the
//! weights.

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::stats::{histogram, mean, HistogramSpec, SeriesSpec, Stats, StatsPanel};
use super::teacher::{Teacher, TeacherSpec};
use super::{Objective, Readings, Setup};
use crate::config::{DataSection, MlpInit, TrainConfig};
use crate::data::mix::mix_items;
use crate::data::tokenizer::Encoded;
use crate::embed::embedder::{distinct, SentenceVectors};
use crate::error::Result;
use crate::json_file::{write_json, write_jsonl};
use crate::loss::gaussian_decay::{Decay, DecayMode, GaussianDecayLoss, GAP, WEIGHT};
use crate::run_dir::RunDir;
use crate::triplets::candidates::{read_all, CandidateSet};
use crate::triplets::filter::{score_with, select, sentences};
use crate::triplets::report::FilterReport;
use crate::triplets::rule::FilterSection;
use crate::triplets::triplet::{read_triplets, Triplet, TripletSet};
use crate::triplets::Origin;

/// `[gcse]` (files written before objectives were plug-ins call it
/// `[stage2]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcseConfig {
    /// `official` (the authors' code: detached additive term, only where the
    /// student scores the own hard negative no higher than the frozen model,
    /// s <= s'), `paper` (Eq. 13: both sides, gradient through the decay) or
    /// `none` (InfoNCE with hard negatives: ablation "w/o decay").
    /// Default `official`.
    #[serde(default)]
    pub decay: DecayMode,
    /// Gaussian width in logit units (cosine / tau). Default 0.17 for
    /// `official` (the authors' code), 0.01 / tau for `paper` (the paper's
    /// sigma = 0.01 in cosine units).
    #[serde(default)]
    pub decay_width: Option<f64>,
    /// The frozen evaluation model (scores batches and candidates), with
    /// the student's training pooling and length. Default: `model.path`.
    #[serde(default)]
    pub frozen: Option<String>,
}

impl Default for GcseConfig {
    fn default() -> Self {
        toml::from_str("").expect("every [gcse] key has a default")
    }
}

impl GcseConfig {
    /// The decay this section describes at `temperature`.
    pub fn decay(&self, temperature: f64) -> Decay {
        Decay {
            mode: self.decay,
            width: self
                .decay_width
                .unwrap_or_else(|| self.decay.default_width(temperature)),
        }
    }
}

/// Statistic keys, in the log and the panel.
const MEAN_WEIGHT: &str = "mean_weight";
const FRACTION_DECAYED: &str = "fraction_decayed";
const MEAN_GAP: &str = "mean_gap";
const WEIGHTS: &str = "weights";

/// The objective, with the run's tokenized triplets and the frozen model's
/// vectors of their anchors and negatives.
pub struct Gcse {
    loss: GaussianDecayLoss,
    triplets: Vec<[Encoded; 3]>,
    /// Per triplet: the rows of its anchor and its negative in `frozen`.
    pairs: Vec<(usize, usize)>,
    /// The frozen model's vectors of every candidate, source and triplet
    /// file sentence.
    frozen: SentenceVectors,
    /// With candidate files: the triplets filtered from them and the report.
    filtered: Option<(Vec<Triplet>, FilterReport)>,
    summary: String,
}

impl Objective for Gcse {
    type Config = GcseConfig;
    type Loss = GaussianDecayLoss;
    const NAME: &'static str = "gcse";
    const MLP_INIT: MlpInit = MlpInit::Pretrained;

    fn validate(config: &GcseConfig, experiment: &TrainConfig) -> std::result::Result<(), String> {
        let data = &experiment.data;
        if !data.has_triplets() {
            return Err(
                "objective = \"gcse\" needs `[[data.candidates]]` or `[[data.triplets]]`".into(),
            );
        }
        if data.has_sentences() {
            return Err("objective = \"gcse\" trains on triplets: use `[[data.candidates]]` or `[[data.triplets]]` (with `origin`), not `[[data.domain]]` / `[[data.general]]`".into());
        }
        if let Some(w) = config.decay_width {
            if !(w > 0.0 && w.is_finite()) {
                return Err(format!("`gcse.decay_width` must be positive, not {w}"));
            }
        }
        Ok(())
    }

    fn panel(_: &GcseConfig) -> Option<StatsPanel> {
        let series = |key: &str, label: &str| SeriesSpec {
            key: key.into(),
            label: label.into(),
            decimals: 3,
        };
        Some(StatsPanel {
            name: "decay".into(),
            title: "stage 2 decay".into(),
            placeholder: "The mean Gaussian decay weight of the own hard negatives, the fraction \
                          decayed and the mean s - s' against the frozen model appear here after \
                          the first step."
                .into(),
            series: vec![
                series(FRACTION_DECAYED, "fraction decayed"),
                series(MEAN_GAP, "mean s - s'"),
                series(MEAN_WEIGHT, "mean weight"),
            ],
            histogram: Some(HistogramSpec {
                key: WEIGHTS.into(),
                title: "weights, last batch (0 = fully decayed)".into(),
                range: [0.0, 1.0],
            }),
            plot: "decay.png".into(),
            smooth: 10,
        })
    }

    fn prepare<B: AutodiffBackend>(config: &GcseConfig, setup: &Setup<'_, B>) -> Result<Self> {
        let frozen = Teacher::<B>::load(
            &TeacherSpec {
                path: config
                    .frozen
                    .clone()
                    .unwrap_or_else(|| setup.model.path.clone()),
                pooling: setup.model.pooling,
                max_len: Some(setup.model.max_len),
                dropout: 0.0,
            },
            setup.device,
        )?;
        let data = setup.data;
        let files = read_triplets(&data.triplets)?;
        let candidates = if data.candidates.is_empty() {
            None
        } else {
            Some(read_all(&data.candidates)?)
        };
        // Every sentence the filter scores or a batch carries a logit of:
        // encoded once, cached for reruns and resumes.
        let texts = distinct(
            candidates
                .iter()
                .flat_map(|set| sentences(&set.groups))
                .chain(
                    files
                        .triplets
                        .iter()
                        .flat_map(|t| [t.anchor.as_str(), t.negative.as_str()]),
                ),
        );
        let vectors = frozen.cached_vectors(
            &texts,
            &setup.run.teacher_cache("frozen"),
            setup.inference_batch,
        )?;
        let frozen = SentenceVectors::new(&texts, vectors);
        let loaded = choose_triplets(data, setup.filter, setup.seed, files, candidates, &frozen)?;
        let chosen = &loaded.triplets;
        let texts = |f: fn(&Triplet) -> &String| -> Vec<&str> {
            chosen.iter().map(|t| f(t).as_str()).collect()
        };
        let encode = |f| setup.tokenizer.encode(&texts(f));
        let (anchors, positives, negatives) = (
            encode(|t| &t.anchor)?,
            encode(|t| &t.positive)?,
            encode(|t| &t.negative)?,
        );
        let row = |text: &str| {
            frozen
                .row_of(text)
                .expect("every anchor and negative is among the frozen model's sentences")
        };
        let pairs = chosen
            .iter()
            .map(|t| (row(&t.anchor), row(&t.negative)))
            .collect();
        Ok(Self {
            loss: GaussianDecayLoss {
                temperature: setup.temperature,
                decay: config.decay(setup.temperature),
            },
            triplets: anchors
                .into_iter()
                .zip(positives)
                .zip(negatives)
                .map(|((a, p), n)| [a, p, n])
                .collect(),
            pairs,
            frozen,
            filtered: loaded.filtered,
            summary: loaded.summary,
        })
    }

    fn summary(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some((_, report)) = &self.filtered {
            lines.push(report.to_string().trim_end().to_string());
        }
        lines.push(format!("data: {}", self.summary));
        lines
    }

    /// The filtered triplets and the filter's report.
    fn save(&self, run: &RunDir) -> Result<()> {
        if let Some((triplets, report)) = &self.filtered {
            write_jsonl(&run.triplets(), triplets)?;
            write_json(&run.filter_report(), report)?;
        }
        Ok(())
    }

    fn examples(&self) -> usize {
        self.triplets.len()
    }

    fn sentences_per_example(&self) -> usize {
        3
    }

    fn loss(&self) -> &GaussianDecayLoss {
        &self.loss
    }

    /// Anchors, then positives, then hard negatives, `n` rows each; the
    /// frozen model's logit of each anchor and its negative, `[n]`.
    fn batch<B: AutodiffBackend>(
        &self,
        indices: &[usize],
        _seed: u64,
        device: &B::Device,
    ) -> Result<(Vec<&Encoded>, Tensor<B, 1>)> {
        let rows = (0..3)
            .flat_map(|k| indices.iter().map(move |&i| &self.triplets[i][k]))
            .collect();
        let logits: Vec<f64> = indices
            .iter()
            .map(|&i| {
                let (a, n) = self.pairs[i];
                self.frozen.cosine_rows(a, n) / self.loss.temperature
            })
            .collect();
        let frozen = Tensor::from_data(
            TensorData::new(logits, [indices.len()]).convert::<B::FloatElem>(),
            device,
        );
        Ok((rows, frozen))
    }

    fn stats(&self, readings: &Readings) -> Stats {
        let (gap, weight) = (&readings[GAP], &readings[WEIGHT]);
        let decayed = weight.iter().filter(|&&w| w <= 0.5).count();
        Stats {
            values: vec![
                (MEAN_WEIGHT.into(), mean(weight)),
                (
                    FRACTION_DECAYED.into(),
                    decayed as f64 / weight.len().max(1) as f64,
                ),
                (MEAN_GAP.into(), mean(gap)),
            ],
            histograms: vec![(WEIGHTS.into(), histogram(weight, [0.0, 1.0], 10))],
        }
    }
}

/// The run's triplets and what went into them.
struct LoadedTriplets {
    triplets: Vec<Triplet>,
    filtered: Option<(Vec<Triplet>, FilterReport)>,
    summary: String,
}

/// The triplets of `files`, and those `filter` makes of `candidates` (its
/// threshold rule reads their `frozen` vectors), mixed by origin at
/// `data.ratio`.
fn choose_triplets(
    data: &DataSection,
    filter: &FilterSection,
    seed: u64,
    files: TripletSet,
    candidates: Option<CandidateSet>,
    frozen: &SentenceVectors,
) -> Result<LoadedTriplets> {
    let mut all = files.triplets;
    let mut skipped = files.skipped;
    let filtered = match candidates {
        None => None,
        Some(set) => {
            let scores = filter
                .needs_scores()
                .then(|| score_with(&set.groups, frozen));
            let (made, mut report) = select(
                &set.groups,
                scores.as_deref(),
                filter,
                filter.seed.unwrap_or(seed),
            )?;
            report.skipped_lines = set.skipped;
            skipped += set.skipped;
            all.extend(made.iter().cloned());
            Some((made, report))
        }
    };
    let available = all.len();
    let (domain, general): (Vec<Triplet>, Vec<Triplet>) =
        all.into_iter().partition(|t| t.origin == Origin::Domain);
    let (triplets, domain) = mix_items(domain, general, data.ratio(), data.max_sentences, seed);
    Ok(LoadedTriplets {
        summary: format!(
            "{} triplets ({} domain, {} general of {} available; {} bad lines skipped)",
            triplets.len(),
            domain,
            triplets.len() - domain,
            available,
            skipped
        ),
        triplets,
        filtered,
    })
}
