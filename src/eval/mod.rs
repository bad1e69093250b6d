//! Evaluation: evaluators as plug-ins, their registry, rank correlation and
//! the SentEval STS suite.

pub mod evaluator;
pub mod registry;
pub mod spearman;
pub mod sts;
