//! Evaluation: evaluators as plug-ins and their registry; the SentEval STS
//! suite, a user's scored pairs, pair classification, reranking and
//! retrieval; the metrics they share and the files they read.

pub mod evaluator;
pub mod mteb;
pub mod pair_classification;
pub mod pair_scores;
pub mod ranking;
pub mod registry;
pub mod reranking;
pub mod retrieval;
pub mod spearman;
pub mod sts;
pub mod task_files;
