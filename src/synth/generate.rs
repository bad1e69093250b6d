//! Candidate generation: for each source sentence, the prompt kinds of its
//! positive and negative candidates drawn by the configured weights (a
//! seeded stream per source, so a resumed run asks exactly the same), the
//! prompts filled in (an entity revision swaps an entity for one of its
//! [`Neighbours`], a quantity revision names a quantity), and the answers
//! read leniently into candidates with their provenance.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::answers::{Answer, Sampling};
use super::extraction::{read_json_object, Discard};
use super::knowledge::SentenceKnowledge;
use super::llm::Request;
use super::neighbours::Neighbours;
use super::prompt::{PromptKind, PromptTemplate};
use super::shape;
use crate::error::Result;
use crate::rng::SplitMix64;

/// One planned candidate: which prompt, and what it changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The prompt kind's name (`rewrite`, `entity_revision`, ...).
    pub kind: String,
    /// The entity replaced (entity revision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    /// Its replacement, a knowledge-graph neighbour (entity revision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacement: Option<String>,
    /// The quantity changed (quantity revision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<String>,
    /// Whether it is meant as a positive.
    #[serde(skip)]
    pub positive: bool,
}

/// A generated candidate with its provenance (the JSONL `gcse filter` reads:
/// `text` and `kind`, the rest ignored there).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratedCandidate {
    pub text: String,
    #[serde(flatten)]
    pub plan: Plan,
}

/// The prompt templates generation uses.
pub struct Templates {
    pub by_kind: BTreeMap<PromptKind, PromptTemplate>,
}

impl Templates {
    fn render(&self, kind: PromptKind, values: &[(&str, &str)]) -> Result<String> {
        self.by_kind
            .get(&kind)
            .expect("a template for every drawn kind")
            .render(values)
    }
}

fn kind_by_name(name: &str) -> PromptKind {
    PromptKind::ALL
        .into_iter()
        .find(|k| k.name() == name)
        .expect("plans name prompt kinds")
}

/// A uniform draw in [0, 1).
fn unit(rng: &mut SplitMix64) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn draw(weights: &[(PromptKind, f64)], rng: &mut SplitMix64) -> PromptKind {
    let total: f64 = weights.iter().map(|(_, w)| w).sum();
    let mut x = unit(rng) * total;
    for &(kind, w) in weights {
        if x < w {
            return kind;
        }
        x -= w;
    }
    weights.last().expect("at least one kind").0
}

/// The candidates planned for one source. A kind that cannot apply (no
/// knowledge to regenerate from, no entity with a neighbour, no quantity)
/// falls back to the plain kind of its side: rewrite or antisense.
pub fn plan_source(
    knowledge: Option<&SentenceKnowledge>,
    neighbours: &Neighbours,
    positives: (usize, &[(PromptKind, f64)]),
    negatives: (usize, &[(PromptKind, f64)]),
    rng: &mut SplitMix64,
) -> Vec<Plan> {
    let items = knowledge.map(|k| k.items.as_slice()).unwrap_or_default();
    let mut plans = Vec::new();
    let sides = [(true, positives), (false, negatives)];
    for (positive, (count, weights)) in sides {
        for _ in 0..count {
            let mut plan = Plan {
                kind: String::new(),
                entity: None,
                replacement: None,
                quantity: None,
                positive,
            };
            let kind = match draw(weights, rng) {
                PromptKind::Regenerate if items.is_empty() => PromptKind::Rewrite,
                PromptKind::EntityRevision => {
                    let swaps: Vec<(&str, &str)> = items
                        .iter()
                        .filter(|k| k.quantity.is_none())
                        .flat_map(|k| {
                            neighbours
                                .of_entity(&k.text)
                                .iter()
                                .map(move |r| (k.text.as_str(), r.as_str()))
                        })
                        .collect();
                    if swaps.is_empty() {
                        PromptKind::Antisense
                    } else {
                        let (entity, replacement) = swaps[rng.below(swaps.len() as u64) as usize];
                        plan.entity = Some(entity.to_string());
                        plan.replacement = Some(replacement.to_string());
                        PromptKind::EntityRevision
                    }
                }
                PromptKind::QuantityRevision => {
                    let quantities: Vec<&str> = items
                        .iter()
                        .filter(|k| k.quantity.is_some())
                        .map(|k| k.text.as_str())
                        .collect();
                    if quantities.is_empty() {
                        PromptKind::Antisense
                    } else {
                        let pick = quantities[rng.below(quantities.len() as u64) as usize];
                        plan.quantity = Some(pick.to_string());
                        PromptKind::QuantityRevision
                    }
                }
                kind => kind,
            };
            plan.kind = kind.name().to_string();
            plans.push(plan);
        }
    }
    plans
}

/// The knowledge JSON the regenerate prompt shows (the extraction prompt's
/// own layout).
pub fn knowledge_json(knowledge: &SentenceKnowledge) -> String {
    let (quantities, entities): (Vec<_>, Vec<_>) =
        knowledge.items.iter().partition(|k| k.quantity.is_some());
    let entities: Vec<Value> = entities
        .iter()
        .map(|k| json!({"text": k.text, "type": k.kind}))
        .collect();
    let quantities: Vec<Value> = quantities
        .iter()
        .map(|k| {
            let q = k.quantity.as_deref().unwrap_or_default();
            let value = q.parse::<f64>().map_or_else(|_| json!(q), |n| json!(n));
            json!({"text": k.text, "type": k.kind, "quantity": value})
        })
        .collect();
    json!({"categories": knowledge.categories, "entities": entities, "quantities": quantities})
        .to_string()
}

/// The request for one planned candidate.
pub fn request_for(
    plan: &Plan,
    sentence: &str,
    knowledge: Option<&SentenceKnowledge>,
    templates: &Templates,
    sampling: Sampling,
) -> Result<Request> {
    let kind = kind_by_name(&plan.kind);
    let knowledge_text;
    let values: Vec<(&str, &str)> = match kind {
        PromptKind::Regenerate => {
            knowledge_text = knowledge_json(knowledge.expect("planned only with knowledge"));
            vec![("knowledge", &knowledge_text)]
        }
        PromptKind::EntityRevision => vec![
            ("sentence", sentence),
            (
                "entity",
                plan.entity.as_deref().expect("planned with an entity"),
            ),
            (
                "replacement",
                plan.replacement
                    .as_deref()
                    .expect("planned with a replacement"),
            ),
        ],
        PromptKind::QuantityRevision => vec![
            ("sentence", sentence),
            (
                "quantity",
                plan.quantity.as_deref().expect("planned with a quantity"),
            ),
        ],
        _ => vec![("sentence", sentence)],
    };
    Ok(Request {
        prompt: templates.render(kind, &values)?,
        sampling,
        shape: Some(shape::candidate()),
        guidance: None,
    })
}

/// Why an answer gave no candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CandidateDrop {
    /// The request failed (it is asked again by the next run).
    RequestFailed,
    /// Nothing but white space.
    Empty,
    /// JSON that is not `{"text": "..."}` with a non-empty text.
    NoText,
    /// The source sentence itself, or a sentence or answer of one of the
    /// prompt's examples (a base model's way of failing a few-shot prompt).
    Copied,
    /// Another candidate of the same source.
    Repeated,
}

/// The lowercase words (runs of letters and digits) of `text`.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Whether two sentences have the same words in the same order, whatever
/// their case, punctuation and spacing (`a man sings .` and `A man sings.`).
pub fn same_sentence(a: &str, b: &str) -> bool {
    words(a) == words(b)
}

/// Whether `text` only copies the source, or a line of the prompt
/// (`Label: text`), or an example answer (`Label: {"text": "..."}`), in
/// the sense of [`same_sentence`]. A text without words copies nothing.
pub fn is_copied(text: &str, source: &str, prompt: &str) -> bool {
    let own = words(text);
    let same = |other: &str| words(other) == own;
    let example = |line: &str| {
        line.split_once(": ").is_some_and(|(_, rest)| {
            let answer = serde_json::from_str::<serde_json::Value>(rest.trim()).ok();
            same(
                answer
                    .as_ref()
                    .and_then(|v| v["text"].as_str())
                    .unwrap_or(rest),
            )
        })
    };
    !own.is_empty() && (same(source) || prompt.lines().any(example))
}

/// The sentence of a plain-text answer's first line: the line without
/// surrounding quotes, or, where the model wrote part of `{"text": "..."}`
/// without its braces (`"text": "..."`, `("text": "...")`), the quoted
/// value. `None` where that value's closing quote never came (a cut answer).
fn plain_sentence(line: &str) -> Option<&str> {
    let quote = |c: char| c == '"' || c == '\'';
    let value = line
        .trim_start_matches(|c: char| quote(c) || matches!(c, '(' | '[' | '{'))
        .strip_prefix("text")
        .and_then(|rest| {
            rest.trim_start_matches(quote)
                .trim_start()
                .strip_prefix(':')
        });
    let Some(value) = value.map(str::trim) else {
        return Some(line.trim_matches(quote).trim());
    };
    match value.chars().next().filter(|&c| quote(c)) {
        Some(q) => value[1..].rfind(q).map(|end| value[1..1 + end].trim()),
        None => Some(value.trim_end_matches([')', ']', '}']).trim()),
    }
}

/// What reading an answer did.
#[derive(Debug, Clone, PartialEq)]
pub enum CandidateRead {
    /// The `text` of the answer's JSON object (read leniently).
    Json(String),
    /// No JSON object: the answer's first line, used as it is.
    PlainText(String),
    Dropped(CandidateDrop),
}

/// Reads a generation answer: `{"text": "..."}`, leniently; an answer with
/// no JSON object gives the sentence of its first line: the line itself, or
/// the quoted value after a `text` key written without braces.
pub fn read_candidate(answer: Option<&Answer>) -> CandidateRead {
    let Some(answer) = answer else {
        return CandidateRead::Dropped(CandidateDrop::RequestFailed);
    };
    let mut repairs = Vec::new();
    match read_json_object(&answer.text, &mut repairs) {
        Ok(value) => match value["text"].as_str().map(str::trim) {
            Some(text) if !text.is_empty() => CandidateRead::Json(text.to_string()),
            _ => CandidateRead::Dropped(CandidateDrop::NoText),
        },
        Err(Discard::Empty) => CandidateRead::Dropped(CandidateDrop::Empty),
        Err(Discard::NoJson) => {
            let line = answer
                .text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("");
            match plain_sentence(line) {
                None => CandidateRead::Dropped(CandidateDrop::NoText),
                Some("") => CandidateRead::Dropped(CandidateDrop::Empty),
                Some(text) => CandidateRead::PlainText(text.to_string()),
            }
        }
        Err(_) => CandidateRead::Dropped(CandidateDrop::NoText),
    }
}
