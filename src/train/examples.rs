//! What a run trains on, tokenized: stage 1's sentences or stage 2's
//! triplets (read, or filtered from candidates with the frozen model), mixed
//! by origin at the configured ratio; and how a step's batch is laid out.

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

use super::frozen::FrozenModel;
use super::model::TrainBatch;
use crate::config::TrainConfig;
use crate::data::batcher::TokenBatch;
use crate::data::mix::{mix, mix_items};
use crate::data::tokenizer::{Encoded, SentenceTokenizer};
use crate::error::Result;
use crate::triplets::candidates::read_all;
use crate::triplets::filter::{score, select};
use crate::triplets::report::FilterReport;
use crate::triplets::triplet::{read_triplets, Triplet};
use crate::triplets::Origin;

/// Tokenized training examples.
pub enum Examples {
    /// Stage 1: sentences.
    Sentences(Vec<Encoded>),
    /// Stage 2: (anchor, positive, hard negative).
    Triplets(Vec<[Encoded; 3]>),
}

/// The examples and what went into them.
pub struct TrainData {
    /// The examples.
    pub examples: Examples,
    /// One line on the data for the console.
    pub summary: String,
    /// Stage 2 with candidates: the triplets made and the filter's report,
    /// to be saved in the run directory.
    pub filtered: Option<(Vec<Triplet>, FilterReport)>,
}

impl Examples {
    /// How many examples.
    pub fn len(&self) -> usize {
        match self {
            Examples::Sentences(s) => s.len(),
            Examples::Triplets(t) => t.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Distinct training sentences in one example, for throughput: 1 in
    /// stage 1 (encoded twice), 3 in stage 2.
    pub fn sentences_per_example(&self) -> usize {
        match self {
            Examples::Sentences(_) => 1,
            Examples::Triplets(_) => 3,
        }
    }

    /// The batch of examples `indices`: two copies of each sentence, or the
    /// anchors, positives and negatives of the triplets with the frozen
    /// model's scores of each anchor and its negative; dropout seeded by
    /// `dropout_seed`.
    pub fn batch<B: AutodiffBackend>(
        &self,
        indices: &[usize],
        pad_id: u32,
        frozen: Option<&FrozenModel<B::InnerBackend>>,
        dropout_seed: u64,
        device: &B::Device,
    ) -> TrainBatch<B> {
        match self {
            Examples::Sentences(s) => {
                let rows: Vec<&Encoded> = indices.iter().chain(indices).map(|&i| &s[i]).collect();
                TrainBatch {
                    tokens: TokenBatch::new(&rows, pad_id, device),
                    frozen: None,
                    dropout_seed,
                }
            }
            Examples::Triplets(t) => {
                let part =
                    |k: usize| -> Vec<&Encoded> { indices.iter().map(|&i| &t[i][k]).collect() };
                let (anchors, negatives) = (part(0), part(2));
                let frozen = frozen.expect("stage 2 has a frozen model");
                let rows: Vec<&Encoded> = anchors
                    .iter()
                    .chain(&part(1))
                    .chain(&negatives)
                    .copied()
                    .collect();
                TrainBatch {
                    tokens: TokenBatch::new(&rows, pad_id, device),
                    frozen: Some(Tensor::from_inner(
                        frozen.scores(&anchors, &negatives, device),
                    )),
                    dropout_seed,
                }
            }
        }
    }
}

/// Stage 1: the sentence mixture of `config`.
pub fn sentences(config: &TrainConfig, tokenizer: &SentenceTokenizer) -> Result<TrainData> {
    let m = mix(
        &config.data.domain,
        &config.data.general,
        config.ratio(),
        config.data.max_sentences,
        config.train.seed,
    )?;
    Ok(TrainData {
        summary: format!(
            "{} sentences ({} domain, {} general of {} available; {} repeats dropped, {} bad lines skipped)",
            m.sentences.len(),
            m.domain,
            m.general(),
            m.general_available,
            m.duplicates,
            m.skipped_lines
        ),
        examples: Examples::Sentences(tokenizer.encode(&m.sentences)?),
        filtered: None,
    })
}

/// Stage 2: the triplet files of `config`, and its candidate files filtered
/// by `[filter]` with `frozen`, mixed by origin.
pub fn triplets<B: burn::tensor::backend::Backend>(
    config: &TrainConfig,
    tokenizer: &SentenceTokenizer,
    frozen: &FrozenModel<B>,
    device: &B::Device,
) -> Result<TrainData> {
    let read = read_triplets(&config.data.triplets)?;
    let mut all = read.triplets;
    let mut skipped = read.skipped;
    let filtered = if config.data.candidates.is_empty() {
        None
    } else {
        let set = read_all(&config.data.candidates)?;
        let scores = if config.filter.needs_scores() {
            Some(score(
                &set.groups,
                &frozen.embedder(config.eval.batch_size, device),
            )?)
        } else {
            None
        };
        let seed = config.filter.seed.unwrap_or(config.train.seed);
        let (made, mut report) = select(&set.groups, scores.as_deref(), &config.filter, seed)?;
        report.skipped_lines = set.skipped;
        skipped += set.skipped;
        all.extend(made.iter().cloned());
        Some((made, report))
    };
    let available = all.len();
    let (domain, general): (Vec<Triplet>, Vec<Triplet>) =
        all.into_iter().partition(|t| t.origin == Origin::Domain);
    let (chosen, domain) = mix_items(
        domain,
        general,
        config.ratio(),
        config.data.max_sentences,
        config.train.seed,
    );
    let texts = |f: fn(&Triplet) -> &String| -> Vec<&str> {
        chosen.iter().map(|t| f(t).as_str()).collect()
    };
    let anchors = tokenizer.encode(&texts(|t| &t.anchor))?;
    let positives = tokenizer.encode(&texts(|t| &t.positive))?;
    let negatives = tokenizer.encode(&texts(|t| &t.negative))?;
    Ok(TrainData {
        summary: format!(
            "{} triplets ({} domain, {} general of {} available; {} bad lines skipped)",
            chosen.len(),
            domain,
            chosen.len() - domain,
            available,
            skipped
        ),
        examples: Examples::Triplets(
            anchors
                .into_iter()
                .zip(positives)
                .zip(negatives)
                .map(|((a, p), n)| [a, p, n])
                .collect(),
        ),
        filtered,
    })
}
