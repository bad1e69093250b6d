//! Text in: tokenization and batching.

pub mod batcher;
pub mod corpus;
pub mod data_file;
pub mod mix;
pub mod tokenizer;

use std::path::PathBuf;

/// Root of the shared data (holding `senteval/` and `corpus/`): `$GCSE_DATA`,
/// else `../shared/data` relative to the working directory when it exists,
/// else `data/` in gcse's cache (where `scripts/setup.sh` looks too).
pub fn data_root() -> PathBuf {
    if let Some(root) = std::env::var_os("GCSE_DATA") {
        return PathBuf::from(root);
    }
    let shared = PathBuf::from("../shared/data");
    if shared.is_dir() {
        return shared;
    }
    crate::model::hub::cache_root().join("data")
}
