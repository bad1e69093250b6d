//! gcse: unsupervised sentence-embedding training (SimCSE, GCSE) on Burn.
//!
//! Data flows one way: text ([`data`]) → encoder ([`model`]) → the
//! objective's loss ([`objective`], [`loss`]) in the loop ([`train`]) →
//! vectors ([`embed`]) → scores ([`eval`]). A concrete backend is named in
//! [`backend`] alone, an objective in [`objective::registry`] alone, an
//! evaluation task in [`eval::registry`] alone; everything else is generic.
//! `docs/architecture.md` maps the modules.

pub mod atomic;
pub mod backend;
pub mod bench;
pub mod check;
pub mod cli;
pub mod commands;
pub mod config;
pub mod dashboard;
pub mod data;
pub mod embed;
pub mod error;
pub mod eval;
pub mod fingerprint;
pub mod json_file;
pub mod loss;
pub mod model;
pub mod objective;
pub mod overrides;
pub mod pipeline;
pub mod plot;
pub mod progress;
pub mod rng;
pub mod run_dir;
pub mod signals;
pub mod synth;
pub mod train;
pub mod triplets;

pub use error::{Error, Result};
