//! gcse: unsupervised sentence-embedding training (SimCSE, GCSE) on Burn.
//!
//! Data flows one way: text ([`data`]) → encoder ([`model`]) → vectors
//! ([`embed`]) → scores ([`eval`]). Backend choice lives in [`backend`] alone;
//! everything else is generic over Burn's `Backend`.

pub mod atomic;
pub mod backend;
pub mod bench;
pub mod cli;
pub mod commands;
pub mod config;
pub mod dashboard;
pub mod data;
pub mod embed;
pub mod error;
pub mod eval;
pub mod loss;
pub mod model;
pub mod plot;
pub mod progress;
pub mod rng;
pub mod synth;
pub mod train;
pub mod triplets;

pub use error::{Error, Result};
