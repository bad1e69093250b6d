//! The dynamic negative buffer (docs/methods-extensions.md §2, a
//! reconstruction in the style of MoCo and ESimCSE): a first-in, first-out
//! queue of the sentences of recent batches, each with a detached vector
//! (a teacher's, which never goes stale, or the student's from the step it
//! entered). For each anchor the buffer offers its most similar entries by
//! the teacher, after dropping copies of the anchor and entries the teacher
//! finds too similar (likely false negatives).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Whose vectors the buffer keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BufferVectors {
    /// A frozen teacher's (`buffer.teacher`): never stale.
    #[default]
    Teacher,
    /// The student's, detached, from the step the sentence was trained on.
    Student,
}

/// `[NAME.buffer]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferConfig {
    /// Entries kept, K. Default 4 x `train.batch_size`.
    #[serde(default)]
    pub size: Option<usize>,
    /// Negatives offered to each anchor, m. Default 8.
    #[serde(default = "defaults::top")]
    pub top: usize,
    /// Teacher cosine above which an entry is dropped as a likely false
    /// negative. Default 0.75.
    #[serde(default = "defaults::theta")]
    pub theta: f64,
    /// Whose vectors: `teacher` (default) or `student`.
    #[serde(default)]
    pub vectors: BufferVectors,
    /// With teacher vectors: which teacher's, by position in the list.
    /// Default 0.
    #[serde(default)]
    pub teacher: usize,
}

mod defaults {
    pub fn top() -> usize {
        8
    }
    pub fn theta() -> f64 {
        0.75
    }
}

impl BufferConfig {
    /// Checks the keys; `section` names the section in the message.
    pub fn check(&self, section: &str, teachers: usize) -> Result<(), String> {
        if self.size == Some(0) || self.top == 0 {
            return Err(format!(
                "`{section}.size` and `{section}.top` must be at least 1"
            ));
        }
        if !(-1.0..=1.0).contains(&self.theta) {
            return Err(format!(
                "`{section}.theta` must be a cosine in [-1, 1], not {}",
                self.theta
            ));
        }
        if self.vectors == BufferVectors::Teacher && self.teacher >= teachers {
            return Err(format!(
                "`{section}.teacher` = {} but there are {teachers} teacher(s)",
                self.teacher
            ));
        }
        Ok(())
    }
}

/// One buffered sentence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Its row among the objective's sentences.
    pub sentence: usize,
    /// With student vectors: the student's detached vector of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
}

/// What the buffer offers one anchor.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    /// Positions in the buffer (oldest 0), most similar first.
    pub picks: Vec<usize>,
    /// The fraction of the entries other than copies of the anchor that
    /// were dropped as likely false negatives (0 when there are none).
    pub dropped: f64,
}

/// The queue; saved with every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NegativeBuffer {
    capacity: usize,
    entries: VecDeque<Entry>,
}

impl NegativeBuffer {
    /// An empty buffer of `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: VecDeque::with_capacity(capacity),
        }
    }

    /// Appends `entry`, dropping the oldest beyond the capacity.
    pub fn push(&mut self, entry: Entry) {
        self.entries.push_back(entry);
        while self.entries.len() > self.capacity {
            self.entries.pop_front();
        }
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> &VecDeque<Entry> {
        &self.entries
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many it keeps.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The `top` entries most similar to sentence `anchor` by `similarity`
    /// (the teacher's cosine of `anchor` with a sentence), among those that
    /// are not `anchor` itself and whose similarity is at most `theta`;
    /// equal similarities newest first.
    pub fn offer(
        &self,
        anchor: usize,
        top: usize,
        theta: f64,
        similarity: impl Fn(usize) -> f64,
    ) -> Offer {
        let others: Vec<(usize, f64)> = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.sentence != anchor)
            .map(|(k, e)| (k, similarity(e.sentence)))
            .collect();
        let mut kept: Vec<(usize, f64)> = others
            .iter()
            .copied()
            .filter(|&(_, s)| s <= theta)
            .collect();
        kept.sort_by(|a, b| b.1.total_cmp(&a.1).then(b.0.cmp(&a.0)));
        Offer {
            picks: kept.iter().take(top).map(|&(k, _)| k).collect(),
            dropped: if others.is_empty() {
                0.0
            } else {
                (others.len() - kept.len()) as f64 / others.len() as f64
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(sentence: usize) -> Entry {
        Entry {
            sentence,
            vector: None,
        }
    }

    #[test]
    fn the_queue_keeps_the_newest_in_arrival_order() {
        let mut buffer = NegativeBuffer::new(3);
        for s in [5, 6, 7, 8, 9] {
            buffer.push(entry(s));
        }
        let kept: Vec<usize> = buffer.entries().iter().map(|e| e.sentence).collect();
        assert_eq!(kept, vec![7, 8, 9]);
    }

    #[test]
    fn offers_respect_theta_and_leave_out_the_anchor() {
        let mut buffer = NegativeBuffer::new(8);
        for s in [1, 2, 3, 4, 2, 5] {
            buffer.push(entry(s));
        }
        // Teacher cosines with anchor 2: sentence s has 0.1 * s, 4 is a
        // likely false negative.
        let similarity = |s: usize| if s == 4 { 0.9 } else { 0.1 * s as f64 };
        let offer = buffer.offer(2, 2, 0.75, similarity);
        // Positions: 0 -> 1, 1 -> 2 (anchor), 2 -> 3, 3 -> 4 (dropped), 4 -> 2
        // (anchor), 5 -> 5.
        assert_eq!(offer.picks, vec![5, 2]);
        assert!((offer.dropped - 0.25).abs() < 1e-12, "{offer:?}");
        let all = buffer.offer(2, 10, 0.75, similarity);
        assert_eq!(all.picks, vec![5, 2, 0]);
        let strict = buffer.offer(2, 10, 0.2, similarity);
        assert_eq!(strict.picks, vec![0]);
        assert!((strict.dropped - 0.75).abs() < 1e-12);
        assert_eq!(
            NegativeBuffer::new(4).offer(0, 8, 0.75, similarity).dropped,
            0.0
        );
    }

    #[test]
    fn equal_similarities_offer_the_newest_first() {
        let mut buffer = NegativeBuffer::new(4);
        for s in [1, 2, 3] {
            buffer.push(entry(s));
        }
        assert_eq!(buffer.offer(0, 2, 0.75, |_| 0.5).picks, vec![2, 1]);
    }

    #[test]
    fn the_buffer_round_trips_through_json() {
        let mut buffer = NegativeBuffer::new(2);
        buffer.push(Entry {
            sentence: 3,
            vector: Some(vec![0.5, -1.0]),
        });
        buffer.push(entry(4));
        let back: NegativeBuffer =
            serde_json::from_value(serde_json::to_value(&buffer).unwrap()).unwrap();
        assert_eq!(back, buffer);
    }
}
