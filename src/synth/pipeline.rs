//! The synthesis steps and their files in the config's `out_dir`:
//!
//! - `extract`: `knowledge.jsonl` (one line a source: id, source, origin,
//!   knowledge or null, repairs, drops) and `extract.report.json`;
//! - `graph`: `graph.json`, `graph.dot`;
//! - `generate`: `candidates.jsonl` (what `gcse filter` reads, with each
//!   candidate's provenance) and `generate.report.json`.
//!
//! Every LLM answer goes to `answers.jsonl` as it arrives; a step run again
//! (after a crash, or to finish failed requests) sends only the requests
//! that have no answer there. Output files are written whole, atomically,
//! at the end of their step.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::answers::{AnswerStore, Sampling};
use super::chains::{generate_chains, ChainRecord, ChainsReport};
use super::config::SynthConfig;
use super::extraction::{read_answer, Discard, ExtractionTally, Repair};
use super::generate::{
    is_copied, plan_source, read_candidate, request_for, same_sentence, CandidateDrop,
    CandidateRead, GeneratedCandidate, Templates,
};
use super::graph::KnowledgeGraph;
use super::knowledge::SentenceKnowledge;
use super::llm::{answer_all, Llm, Request, RunStats};
use super::neighbours::Neighbours;
use super::prompt::PromptKind;
use super::shape;
use crate::atomic::write_atomic;
use crate::error::{Error, Result};
use crate::json_file::{write_json, write_jsonl};
use crate::rng::SplitMix64;
use crate::triplets::Origin;

/// One line of `knowledge.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnowledgeRecord {
    pub id: String,
    pub source: String,
    pub origin: Origin,
    /// `None` when the answer was dropped whole or its request failed.
    pub knowledge: Option<SentenceKnowledge>,
    #[serde(default)]
    pub repairs: Vec<Repair>,
    #[serde(default)]
    pub drops: Vec<Discard>,
}

/// One line of `candidates.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateRecord {
    pub id: String,
    pub source: String,
    pub origin: Origin,
    pub positives: Vec<GeneratedCandidate>,
    pub negatives: Vec<GeneratedCandidate>,
}

/// `extract.report.json`.
#[derive(Debug, Clone, Serialize)]
pub struct ExtractReport {
    pub sources: usize,
    pub requests: RunStats,
    pub answers: ExtractionTally,
}

/// `generate.report.json`.
#[derive(Debug, Clone, Serialize)]
pub struct GenerateReport {
    pub sources: usize,
    pub requests: RunStats,
    /// Candidates kept, by prompt kind.
    pub kept: BTreeMap<String, usize>,
    /// Answers with no JSON whose first line was used as the candidate.
    pub plain_text: usize,
    pub dropped: BTreeMap<CandidateDrop, usize>,
}

/// A synthesis run: its config, output folder and answer store.
pub struct Synthesis<'a> {
    config: &'a SynthConfig,
    llm: &'a dyn Llm,
    store: AnswerStore,
}

impl<'a> Synthesis<'a> {
    /// Opens `config.out_dir` (creating it) and its answer store.
    pub fn open(config: &'a SynthConfig, llm: &'a dyn Llm) -> Result<Self> {
        let dir = &config.out_dir;
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let store = AnswerStore::open(&dir.join("answers.jsonl"))?;
        if store.torn_lines() > 0 {
            eprintln!("answers.jsonl: cut off an answer a crash left unfinished");
        }
        eprintln!("answers.jsonl holds {} answers", store.len());
        Ok(Synthesis { config, llm, store })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.config.out_dir.join(name)
    }

    /// Knowledge extraction for every source sentence.
    pub fn extract(&mut self) -> Result<ExtractReport> {
        let sources = self.config.source_sentences()?;
        let template = self.config.template(PromptKind::Extract)?;
        let c = &self.config.extract;
        let sampling = Sampling {
            temperature: c.temperature,
            top_p: c.top_p,
            max_tokens: c.max_tokens,
            seed: Some(self.config.seed),
            stop: vec!["\n".into()],
        };
        let requests = sources
            .iter()
            .map(|(s, _)| {
                Ok(Request {
                    prompt: template.render(&[("sentence", s)])?,
                    sampling: sampling.clone(),
                    shape: Some(shape::extraction()),
                    guidance: None,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let (answers, stats) = answer_all(self.llm, &mut self.store, &requests, "extract")?;
        stats.check_failures("extract", self.config.llm.max_failed_fraction)?;
        let mut tally = ExtractionTally::default();
        let records: Vec<KnowledgeRecord> = sources
            .iter()
            .zip(&answers)
            .enumerate()
            .map(|(i, ((source, origin), answer))| {
                let extraction = answer.as_ref().map(|a| read_answer(&a.text, source));
                if let Some(e) = &extraction {
                    tally.add(e);
                }
                let e = extraction.unwrap_or_default();
                KnowledgeRecord {
                    id: i.to_string(),
                    source: source.clone(),
                    origin: *origin,
                    knowledge: e.knowledge,
                    repairs: e.repairs,
                    drops: e.drops,
                }
            })
            .collect();
        write_jsonl(&self.path("knowledge.jsonl"), &records)?;
        let report = ExtractReport {
            sources: sources.len(),
            requests: stats.clone(),
            answers: tally,
        };
        write_json(&self.path("extract.report.json"), &report)?;
        eprintln!("extract: {}", stats.summary());
        Ok(report)
    }

    /// The entity knowledge graph of the extracted knowledge, written as
    /// JSON and DOT.
    pub fn graph(&self) -> Result<KnowledgeGraph> {
        Self::graph_of(self.config)
    }

    /// [`Self::graph`] without an LLM: it needs only `knowledge.jsonl`.
    pub fn graph_of(config: &SynthConfig) -> Result<KnowledgeGraph> {
        let dir = &config.out_dir;
        let graph = build_graph(&read_knowledge(dir)?);
        write_json(&dir.join("graph.json"), &graph.to_json())?;
        write_atomic(&dir.join("graph.dot"), |out| {
            out.write_all(graph.to_dot().as_bytes())
        })?;
        Ok(graph)
    }

    /// Positive and negative candidates for every source.
    pub fn generate(&mut self) -> Result<GenerateReport> {
        let records = read_knowledge(&self.config.out_dir)?;
        let c = &self.config.generate;
        let neighbours = Neighbours::of(&build_graph(&records), &c.neighbours)?;
        let positive = c.positive_weights().map_err(Error::Usage)?;
        let negative = c.negative_weights().map_err(Error::Usage)?;
        let mut templates = Templates {
            by_kind: BTreeMap::new(),
        };
        for (kind, _) in positive.iter().chain(&negative) {
            templates
                .by_kind
                .insert(*kind, self.config.template(*kind)?);
        }
        // Fallbacks of kinds that cannot apply.
        for kind in [PromptKind::Rewrite, PromptKind::Antisense] {
            if let Entry::Vacant(slot) = templates.by_kind.entry(kind) {
                slot.insert(self.config.template(kind)?);
            }
        }
        let mut plans = Vec::new();
        let mut requests = Vec::new();
        for (i, record) in records.iter().enumerate() {
            let mut rng = SplitMix64::derived(self.config.seed, &[0x9e4e, i as u64]);
            let knowledge = record.knowledge.as_ref();
            let source_plans = plan_source(
                knowledge,
                &neighbours,
                (c.positives, &positive),
                (c.negatives, &negative),
                &mut rng,
            );
            for (j, plan) in source_plans.into_iter().enumerate() {
                let sampling = Sampling {
                    temperature: c.temperature,
                    top_p: c.top_p,
                    max_tokens: c.max_tokens,
                    seed: Some(
                        SplitMix64::derived(self.config.seed, &[i as u64, j as u64]).next_u64()
                            >> 33,
                    ),
                    stop: vec!["\n".into()],
                };
                requests.push(request_for(
                    &plan,
                    &record.source,
                    knowledge,
                    &templates,
                    sampling,
                )?);
                plans.push((i, plan));
            }
        }
        let (answers, stats) = answer_all(self.llm, &mut self.store, &requests, "generate")?;
        stats.check_failures("generate", self.config.llm.max_failed_fraction)?;
        let mut out: Vec<CandidateRecord> = records
            .iter()
            .map(|r| CandidateRecord {
                id: r.id.clone(),
                source: r.source.clone(),
                origin: r.origin,
                positives: Vec::new(),
                negatives: Vec::new(),
            })
            .collect();
        let mut report = GenerateReport {
            sources: records.len(),
            requests: stats.clone(),
            kept: BTreeMap::new(),
            plain_text: 0,
            dropped: BTreeMap::new(),
        };
        for (((i, plan), answer), request) in plans.into_iter().zip(&answers).zip(&requests) {
            let text = match read_candidate(answer.as_ref()) {
                CandidateRead::Json(text) => text,
                CandidateRead::PlainText(text) => {
                    report.plain_text += 1;
                    text
                }
                CandidateRead::Dropped(why) => {
                    *report.dropped.entry(why).or_default() += 1;
                    continue;
                }
            };
            let group = &mut out[i];
            let drop = if is_copied(&text, &group.source, &request.prompt) {
                Some(CandidateDrop::Copied)
            } else if group
                .positives
                .iter()
                .chain(&group.negatives)
                .any(|c| same_sentence(&c.text, &text))
            {
                Some(CandidateDrop::Repeated)
            } else {
                None
            };
            if let Some(why) = drop {
                *report.dropped.entry(why).or_default() += 1;
                continue;
            }
            *report.kept.entry(plan.kind.clone()).or_default() += 1;
            let side = if plan.positive {
                &mut group.positives
            } else {
                &mut group.negatives
            };
            side.push(GeneratedCandidate { text, plan });
        }
        write_jsonl(&self.path("candidates.jsonl"), &out)?;
        write_json(&self.path("generate.report.json"), &report)?;
        eprintln!("generate: {}", stats.summary());
        Ok(report)
    }
}

impl Synthesis<'_> {
    /// The rewrite chains of every source ([`super::chains`]), before the
    /// monotonicity filter.
    pub fn chains(&mut self) -> Result<(Vec<ChainRecord>, ChainsReport)> {
        generate_chains(self.config, self.llm, &mut self.store)
    }
}

/// The knowledge records of the last `extract` in `dir`.
fn read_knowledge(dir: &Path) -> Result<Vec<KnowledgeRecord>> {
    let path = dir.join("knowledge.jsonl");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Error::io(
            &path,
            std::io::Error::new(e.kind(), format!("{e} (run `gcse synth extract` first)")),
        )
    })?;
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| Error::data(&path, i + 1, e.to_string()))
        })
        .collect()
}

fn build_graph(records: &[KnowledgeRecord]) -> KnowledgeGraph {
    KnowledgeGraph::build(
        records
            .iter()
            .filter_map(|r| r.knowledge.as_ref().map(|k| k.items.as_slice())),
    )
}
