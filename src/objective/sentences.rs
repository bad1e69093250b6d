//! Sentences as training examples: the domain/general mixture of `[data]`,
//! tokenized, and the two-view layout (each sentence twice in one batch,
//! two dropout masks) that SimCSE-style objectives train on.

use burn::tensor::backend::AutodiffBackend;

use super::Setup;
use crate::config::DataSection;
use crate::data::mix::mix;
use crate::data::tokenizer::Encoded;
use crate::error::Result;

/// A run's tokenized sentences.
pub struct Sentences {
    texts: Vec<String>,
    encoded: Vec<Encoded>,
    summary: String,
}

impl Sentences {
    /// Checks that `data` names sentence sources; the message names the key.
    pub fn check(data: &DataSection) -> std::result::Result<(), String> {
        if data.has_sentences() {
            Ok(())
        } else {
            Err("`data` needs at least one `[[data.domain]]` or `[[data.general]]` source".into())
        }
    }

    /// Reads, mixes (at `data.ratio`, under `data.max_sentences`, seeded by
    /// the run's seed) and tokenizes the sentence sources of `setup`.
    pub fn load<B: AutodiffBackend>(setup: &Setup<'_, B>) -> Result<Self> {
        let data = setup.data;
        let m = mix(
            &data.domain,
            &data.general,
            data.ratio(),
            data.max_sentences,
            setup.seed,
        )?;
        Ok(Self {
            summary: format!(
                "{} sentences ({} domain, {} general of {} available; {} repeats dropped, {} bad lines skipped)",
                m.sentences.len(),
                m.domain,
                m.general(),
                m.general_available,
                m.duplicates,
                m.skipped_lines
            ),
            encoded: setup.tokenizer.encode(&m.sentences)?,
            texts: m.sentences,
        })
    }

    /// How many sentences.
    pub fn len(&self) -> usize {
        self.encoded.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.encoded.is_empty()
    }

    /// The sentences, distinct, in example order.
    pub fn texts(&self) -> Vec<&str> {
        self.texts.iter().map(String::as_str).collect()
    }

    /// One line on what went in.
    pub fn summary(&self) -> &str {
        &self.summary
    }

    /// The rows of a two-view batch: sentences `indices` in rows `0..n`,
    /// the same again in rows `n..2n`.
    pub fn two_views(&self, indices: &[usize]) -> Vec<&Encoded> {
        indices
            .iter()
            .chain(indices)
            .map(|&i| &self.encoded[i])
            .collect()
    }
}
