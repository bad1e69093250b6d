//! Evaluation: rank correlation and the SentEval STS suite.

pub mod spearman;
pub mod sts;
