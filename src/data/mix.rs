//! The training sentence set: domain and general sentences mixed at a fixed
//! ratio (docs/method.md: domain : general = 1 : 3 by count), deduplicated, and a
//! seeded order for every epoch.

use std::collections::HashSet;

use super::corpus::SourceSpec;
use crate::error::Result;
use crate::rng::SplitMix64;

/// Random streams derived from the run's seed, one per purpose.
pub mod stream {
    /// Sampling general sentences down to the ratio.
    pub const GENERAL_SAMPLE: u64 = 1;
    /// Sampling under `max_sentences`.
    pub const CAP: u64 = 2;
    /// The order of an epoch.
    pub const EPOCH: u64 = 3;
    /// Dropout noise of a step.
    pub const DROPOUT: u64 = 4;
    /// Fresh initialisation of the MLP head.
    pub const MLP_INIT: u64 = 5;
    /// An objective's own noise in a step (teachers with dropout...).
    pub const OBJECTIVE: u64 = 6;
    /// Fresh initialisation of a cross-encoder's head.
    pub const HEAD_INIT: u64 = 7;
}

/// What went into the training set.
#[derive(Debug, Clone)]
pub struct Mixture {
    /// The training sentences: domain first, then general.
    pub sentences: Vec<String>,
    /// How many of them are domain sentences.
    pub domain: usize,
    /// Distinct general sentences available before sampling.
    pub general_available: usize,
    /// Repeated sentences dropped.
    pub duplicates: usize,
    /// Malformed lines skipped by the sources' policy.
    pub skipped_lines: usize,
}

impl Mixture {
    /// How many general sentences were kept.
    pub fn general(&self) -> usize {
        self.sentences.len() - self.domain
    }
}

/// Reads all sources and mixes them at `ratio` (domain : general).
pub fn mix(
    domain: &[SourceSpec],
    general: &[SourceSpec],
    ratio: (u32, u32),
    max_sentences: Option<usize>,
    seed: u64,
) -> Result<Mixture> {
    let mut seen = HashSet::new();
    let mut duplicates = 0;
    let mut skipped_lines = 0;
    let mut distinct = |specs: &[SourceSpec]| -> Result<Vec<String>> {
        let mut out = Vec::new();
        for spec in specs {
            let read = spec.read()?;
            skipped_lines += read.skipped;
            for s in read.sentences {
                if seen.insert(s.clone()) {
                    out.push(s);
                } else {
                    duplicates += 1;
                }
            }
        }
        Ok(out)
    };
    let domain_set = distinct(domain)?;
    let general_set = distinct(general)?;
    let general_available = general_set.len();
    let (sentences, domain) = mix_items(domain_set, general_set, ratio, max_sentences, seed);
    Ok(Mixture {
        sentences,
        domain,
        general_available,
        duplicates,
        skipped_lines,
    })
}

/// Mixes domain and general items at `ratio` (general ones beyond it are a
/// seeded sample), caps the total at `max_items` keeping the ratio, and
/// returns the items (domain first, each part in its original order) and
/// how many are domain items.
pub fn mix_items<T>(
    mut domain: Vec<T>,
    mut general: Vec<T>,
    ratio: (u32, u32),
    max_items: Option<usize>,
    seed: u64,
) -> (Vec<T>, usize) {
    let (rd, rg) = (ratio.0 as usize, ratio.1 as usize);
    if !domain.is_empty() {
        let wanted = domain.len() * rg / rd;
        sample(&mut general, wanted, seed, stream::GENERAL_SAMPLE);
    }
    if let Some(max) = max_items {
        let total = domain.len() + general.len();
        if total > max {
            let keep_domain = if general.is_empty() {
                max
            } else if domain.is_empty() {
                0
            } else {
                (max * rd).div_ceil(rd + rg).min(domain.len())
            };
            sample(&mut domain, keep_domain, seed, stream::CAP);
            sample(&mut general, max - keep_domain, seed, stream::CAP);
        }
    }
    let domain_count = domain.len();
    domain.extend(general);
    (domain, domain_count)
}

/// Keeps a seeded random `n` of `items`, in their original order.
fn sample<T>(items: &mut Vec<T>, n: usize, seed: u64, purpose: u64) {
    if items.len() <= n {
        return;
    }
    let mut idx: Vec<usize> = (0..items.len()).collect();
    SplitMix64::derived(seed, &[purpose, items.len() as u64]).shuffle(&mut idx);
    let mut keep = vec![false; items.len()];
    for &i in &idx[..n] {
        keep[i] = true;
    }
    let mut flags = keep.into_iter();
    items.retain(|_| flags.next().expect("one flag per item"));
}

/// The order of sentence indices `0..n` in `epoch`.
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    SplitMix64::derived(seed, &[stream::EPOCH, epoch as u64]).shuffle(&mut order);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(name: &str, lines: &[String]) -> SourceSpec {
        let dir = std::env::temp_dir().join(format!("gcse-mix-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, lines.join("\n")).unwrap();
        toml::from_str(&format!("path = {:?}", path.to_str().unwrap())).unwrap()
    }

    fn lines(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix} {i}")).collect()
    }

    #[test]
    fn general_is_sampled_to_the_ratio_and_duplicates_are_dropped() {
        let mut d = lines("domain", 10);
        d.push("domain 3".into());
        let mut g = lines("general", 100);
        g.push("domain 4".into());
        let m = mix(
            &[source("d.txt", &d)],
            &[source("g.txt", &g)],
            (1, 3),
            None,
            5,
        )
        .unwrap();
        assert_eq!(
            (m.domain, m.general(), m.general_available, m.duplicates),
            (10, 30, 100, 2)
        );
        let distinct: HashSet<&String> = m.sentences.iter().collect();
        assert_eq!(distinct.len(), 40);
        assert!(m.sentences[10..].iter().all(|s| s.starts_with("general")));
        let again = mix(
            &[source("d.txt", &d)],
            &[source("g.txt", &g)],
            (1, 3),
            None,
            5,
        )
        .unwrap();
        assert_eq!(again.sentences, m.sentences, "same seed, same sample");
        let other = mix(
            &[source("d.txt", &d)],
            &[source("g.txt", &g)],
            (1, 3),
            None,
            6,
        )
        .unwrap();
        assert_ne!(other.sentences, m.sentences);
    }

    #[test]
    fn a_cap_keeps_the_ratio_and_general_alone_is_used_whole() {
        let d = source("d2.txt", &lines("domain", 100));
        let g = source("g2.txt", &lines("general", 1000));
        let m = mix(&[d], std::slice::from_ref(&g), (1, 3), Some(40), 1).unwrap();
        assert_eq!((m.domain, m.general()), (10, 30));
        let only_general = mix(&[], &[g], (1, 3), None, 1).unwrap();
        assert_eq!((only_general.domain, only_general.general()), (0, 1000));
    }

    #[test]
    fn epoch_orders_are_seeded_permutations() {
        let a = epoch_order(50, 9, 0);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(50, 9, 0));
        assert_ne!(a, epoch_order(50, 9, 1));
    }
}
