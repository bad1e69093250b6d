//! Data synthesis (paper section 3.1): knowledge extracted from source
//! sentences ([`knowledge`], read from untrusted LLM answers by
//! [`extraction`]) builds the entity knowledge graph ([`graph`]),
//! whose neighbours guide the entity revisions that prompt templates
//! ([`prompt`]) ask an LLM for; [`answers`] keeps every answer on disk as it
//! arrives, so that a run can resume.

pub mod answers;
pub mod extraction;
pub mod graph;
pub mod knowledge;
pub mod prompt;
