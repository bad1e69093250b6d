//! Data synthesis (paper section 3.1): knowledge extracted from source
//! sentences ([`knowledge`], read from untrusted LLM answers by
//! [`extraction`]) builds the entity knowledge graph ([`graph`]),
//! whose neighbours guide the entity revisions that prompt templates
//! ([`prompt`]) ask an LLM ([`llm`]: over HTTP, [`http`], or embedded,
//! `local` with the `llama` feature) for; [`answers`]
//! keeps every answer on disk as it arrives, so that a run can resume.
//! [`generate`] plans and reads the candidates (entity revisions take
//! [`neighbours`] from the graph or from embeddings); [`pipeline`] runs the steps
//! a [`config`] describes; [`serve`] puts an LLM behind an OpenAI-compatible
//! server; [`chains`] makes the rewrite chains of ranking-sentence
//! generation. [`shape`] says what a JSON answer must look like, as a JSON
//! schema for servers and a grammar for the embedded engine.

pub mod answers;
pub mod chains;
pub mod config;
pub mod extraction;
pub mod generate;
pub mod graph;
pub mod http;
pub mod knowledge;
pub mod llm;
#[cfg(feature = "llama")]
pub mod local;
pub mod neighbours;
pub mod pipeline;
pub mod prompt;
pub mod serve;
pub mod shape;
