//! Text in: tokenization and batching.

pub mod batcher;
pub mod corpus;
pub mod mix;
pub mod tokenizer;

use std::path::PathBuf;

/// Root of the shared data (holding `senteval/` and `corpus/`): `$GCSE_DATA`,
/// else `../shared/data` relative to the working directory.
pub fn data_root() -> PathBuf {
    std::env::var_os("GCSE_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared/data"))
}
