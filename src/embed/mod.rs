//! Turning text into sentence vectors (and pairs into scores), and the
//! `gcse embed` file formats.

pub mod embedder;
pub mod input;
pub mod npy;
pub mod output;
pub mod pairs;
