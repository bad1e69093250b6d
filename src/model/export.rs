//! Writing an encoder's weights under Hugging Face's tensor names and layout
//! (the inverse of [`super::load`], from the same [`super::load::NAME_TABLE`]).

use std::path::Path;

use burn::store::{BurnToPyTorchAdapter, KeyRemapper, ModuleSnapshot, SafetensorsStore};
use burn::tensor::backend::Backend;

use super::encoder::SentenceEncoder;
use super::load::ours_to_hf_patterns;
use crate::atomic::temp_sibling;
use crate::error::{Error, Result};

/// Writes `model.safetensors`-style weights: `BertModel` tensor names without
/// a prefix, Linear weights as `[out, in]`, LayerNorm `weight`/`bias`. The
/// file appears atomically (temporary sibling, then rename).
pub fn write_hf_weights<B: Backend>(encoder: &SentenceEncoder<B>, path: &Path) -> Result<()> {
    let bad = |message: String| Error::Load {
        path: path.to_path_buf(),
        message,
    };
    let remapper =
        KeyRemapper::from_patterns(ours_to_hf_patterns()).map_err(|e| bad(e.to_string()))?;
    let tmp = temp_sibling(path);
    let mut store = SafetensorsStore::from_file(&tmp)
        .remap(remapper)
        .with_to_adapter(BurnToPyTorchAdapter)
        .metadata("format", "pt")
        .overwrite(true);
    let saved = encoder
        .save_into(&mut store)
        .map_err(|e| bad(e.to_string()))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e)));
    if saved.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    saved
}
