//! Triplets as training examples (GCSE stage 2, and the LLM hard negatives
//! of the rank objective): (anchor, positive, hard negative), read from
//! triplet files or filtered from candidate files by the frozen evaluation
//! model. The frozen model is a teacher without dropout: its vectors of
//! every candidate, source and triplet-file sentence are computed once (and
//! cached in the run directory, so that a rerun or resume does not encode
//! them again), the filter reads them, and a batch can carry the logits
//! `cos'(anchor, negative) / tau` of its triplets.

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};

use super::teacher::frozen_vectors;
use super::Setup;
use crate::config::DataSection;
use crate::data::mix::mix_items;
use crate::data::tokenizer::Encoded;
use crate::embed::embedder::{distinct, SentenceVectors};
use crate::error::Result;
use crate::json_file::{write_json, write_jsonl};
use crate::run_dir::RunDir;
use crate::triplets::candidates::{read_all, CandidateSet};
use crate::triplets::filter::{score_with, select, sentences};
use crate::triplets::report::FilterReport;
use crate::triplets::rule::FilterSection;
use crate::triplets::triplet::{read_triplets, Triplet, TripletSet};
use crate::triplets::Origin;

/// A run's tokenized triplets and the frozen model's vectors of their
/// anchors and negatives.
pub struct TripletExamples {
    triplets: Vec<[Encoded; 3]>,
    anchors: Vec<String>,
    /// Per triplet: the rows of its anchor and its negative in `frozen`.
    pairs: Vec<(usize, usize)>,
    /// The frozen model's vectors of every candidate, source and triplet
    /// file sentence.
    frozen: SentenceVectors,
    /// With candidate files: the triplets filtered from them and the report.
    filtered: Option<(Vec<Triplet>, FilterReport)>,
    summary: String,
}

impl TripletExamples {
    /// Checks that `data` names triplet sources and no sentence sources;
    /// `objective` names the objective in the message.
    pub fn check(data: &DataSection, objective: &str) -> std::result::Result<(), String> {
        if !data.has_triplets() {
            return Err(format!(
                "objective = \"{objective}\" needs `[[data.candidates]]` or `[[data.triplets]]`"
            ));
        }
        if data.has_sentences() {
            return Err(format!("objective = \"{objective}\" trains on triplets: use `[[data.candidates]]` or `[[data.triplets]]` (with `origin`), not `[[data.domain]]` / `[[data.general]]`"));
        }
        Ok(())
    }

    /// Reads the triplet files and filters the candidate files of `setup`
    /// with the frozen model `frozen` (default `model.path`, with the
    /// student's training pooling and length), mixed by origin at
    /// `data.ratio` under `data.max_sentences`.
    pub fn load<B: AutodiffBackend>(frozen: Option<&str>, setup: &Setup<'_, B>) -> Result<Self> {
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
        let vectors = frozen_vectors(
            setup,
            frozen.unwrap_or(&setup.model.path),
            setup.model.pooling,
            None,
            &texts,
            "frozen",
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
            triplets: anchors
                .into_iter()
                .zip(positives)
                .zip(negatives)
                .map(|((a, p), n)| [a, p, n])
                .collect(),
            anchors: chosen.iter().map(|t| t.anchor.clone()).collect(),
            pairs,
            frozen,
            filtered: loaded.filtered,
            summary: loaded.summary,
        })
    }

    /// Lines for the console: the filter's report, then the mixture.
    pub fn summary(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some((_, report)) = &self.filtered {
            lines.push(report.to_string().trim_end().to_string());
        }
        lines.push(format!("data: {}", self.summary));
        lines
    }

    /// Writes the filtered triplets and the filter's report into the run.
    pub fn save(&self, run: &RunDir) -> Result<()> {
        if let Some((triplets, report)) = &self.filtered {
            write_jsonl(&run.triplets(), triplets)?;
            write_json(&run.filter_report(), report)?;
        }
        Ok(())
    }

    /// How many triplets.
    pub fn len(&self) -> usize {
        self.triplets.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.triplets.is_empty()
    }

    /// Triplet `i`'s anchor.
    pub fn anchor(&self, i: usize) -> &str {
        &self.anchors[i]
    }

    /// The rows of a batch: for each of `parts` (0 anchor, 1 positive, 2
    /// negative) in turn, that sentence of the triplets `indices`.
    pub fn rows(&self, indices: &[usize], parts: &[usize]) -> Vec<&Encoded> {
        parts
            .iter()
            .flat_map(|&k| indices.iter().map(move |&i| &self.triplets[i][k]))
            .collect()
    }

    /// The frozen model's logit `cos'(anchor, negative) / temperature` of
    /// each of the triplets `indices`, `[n]`.
    pub fn frozen_logits<B: Backend>(
        &self,
        indices: &[usize],
        temperature: f64,
        device: &B::Device,
    ) -> Tensor<B, 1> {
        let logits: Vec<f64> = indices
            .iter()
            .map(|&i| {
                let (a, n) = self.pairs[i];
                self.frozen.cosine_rows(a, n) / temperature
            })
            .collect();
        Tensor::from_data(
            TensorData::new(logits, [indices.len()]).convert::<B::FloatElem>(),
            device,
        )
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
