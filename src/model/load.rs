//! Loading Hugging Face checkpoints (`config.json`, a tokenizer and
//! `model.safetensors` or `pytorch_model.bin`) into a [`SentenceEncoder`].
//!
//! [`NAME_TABLE`] is the one place that says which Hugging Face tensor is
//! which of ours; both directions (load here, export elsewhere) are derived
//! from it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use burn::store::{
    ApplyError, KeyRemapper, ModuleAdapter, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter,
    PytorchStore, SafetensorsStore, TensorSnapshot,
};
use burn::tensor::backend::Backend;
use burn::tensor::DType;

use super::config::BertConfig;
use super::encoder::{SentenceEncoder, SentenceEncoderConfig};
use crate::data::tokenizer::SentenceTokenizer;
use crate::error::{Error, Result};

/// Hugging Face module path → our module path; `{i}` stands for a layer index.
/// Parameter names (`weight`, `bias`) follow each path; Linear weights are
/// transposed and LayerNorm `weight`/`bias` become `gamma`/`beta` on the way.
pub const NAME_TABLE: &[(&str, &str)] = &[
    ("embeddings.word_embeddings", "backbone.embeddings.word"),
    (
        "embeddings.position_embeddings",
        "backbone.embeddings.position",
    ),
    (
        "embeddings.token_type_embeddings",
        "backbone.embeddings.token_type",
    ),
    ("embeddings.LayerNorm", "backbone.embeddings.norm"),
    (
        "encoder.layer.{i}.attention.self.query",
        "backbone.layers.{i}.attention.query",
    ),
    (
        "encoder.layer.{i}.attention.self.key",
        "backbone.layers.{i}.attention.key",
    ),
    (
        "encoder.layer.{i}.attention.self.value",
        "backbone.layers.{i}.attention.value",
    ),
    (
        "encoder.layer.{i}.attention.output.dense",
        "backbone.layers.{i}.attention.output",
    ),
    (
        "encoder.layer.{i}.attention.output.LayerNorm",
        "backbone.layers.{i}.attention_norm",
    ),
    (
        "encoder.layer.{i}.intermediate.dense",
        "backbone.layers.{i}.ffn_in",
    ),
    (
        "encoder.layer.{i}.output.dense",
        "backbone.layers.{i}.ffn_out",
    ),
    (
        "encoder.layer.{i}.output.LayerNorm",
        "backbone.layers.{i}.ffn_norm",
    ),
    ("pooler.dense", "pooler"),
];

/// Rewrites applied to checkpoint names before [`NAME_TABLE`]: the task-model
/// prefixes `bert.` / `roberta.`, SimCSE's training head `mlp.dense` and a
/// RoBERTa cross-encoder's `classifier.dense` (each the `cls` pooler), and
/// the `gamma`/`beta` names of TF-converted checkpoints.
const ALIASES: &[(&str, &str)] = &[
    (r"^(bert|roberta)\.", ""),
    (r"^mlp\.dense\.", "pooler.dense."),
    (r"^classifier\.dense\.", "pooler.dense."),
    (r"\.gamma$", ".weight"),
    (r"\.beta$", ".bias"),
];

/// A regex pair rewriting `from` paths into `to` paths (with their parameter
/// suffix), for one [`NAME_TABLE`] row.
fn row_pattern(from: &str, to: &str) -> (String, String) {
    let pattern = format!("^{}\\.", from.replace('.', "\\.").replace("{i}", "(\\d+)"));
    (pattern, format!("{}.", to.replace("{i}", "${1}")))
}

/// Patterns mapping Hugging Face tensor names to ours (aliases first).
pub fn hf_to_ours_patterns() -> Vec<(String, String)> {
    ALIASES
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .chain(NAME_TABLE.iter().map(|(hf, ours)| row_pattern(hf, ours)))
        .collect()
}

/// Patterns mapping our tensor names to Hugging Face's (no prefix).
pub fn ours_to_hf_patterns() -> Vec<(String, String)> {
    NAME_TABLE
        .iter()
        .map(|(hf, ours)| row_pattern(ours, hf))
        .collect()
}

/// Applies a pattern list to one name, as the store's remapper does.
pub fn remap_name(patterns: &[(String, String)], name: &str) -> String {
    let remapper = KeyRemapper::from_patterns(patterns.to_vec()).expect("the table is valid regex");
    remapper
        .to_regex_pairs()
        .iter()
        .fold(name.to_string(), |n, (re, to)| {
            re.replace_all(&n, to.as_str()).into_owned()
        })
}

/// What loading a checkpoint matched and did not match.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// The weights file read.
    pub weights: PathBuf,
    /// Number of tensors loaded.
    pub loaded: usize,
    /// Our tensors the checkpoint lacks (kept at their fresh initialisation).
    pub missing: Vec<String>,
    /// Checkpoint tensors we do not use (MLM heads, position-id buffers...).
    pub unused: Vec<String>,
}

impl LoadReport {
    /// Whether the `cls` pooler's MLP came from the checkpoint.
    pub fn has_pooler(&self) -> bool {
        !self.missing.iter().any(|m| m.starts_with("pooler."))
    }
}

/// The weights file of a model directory: `model.safetensors`, else `pytorch_model.bin`.
pub fn weights_file(dir: &Path) -> Result<PathBuf> {
    ["model.safetensors", "pytorch_model.bin"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::Load {
            path: dir.to_path_buf(),
            message: "no model.safetensors or pytorch_model.bin in this model directory".into(),
        })
}

/// Loads a weights file into `encoder`. Every tensor of the encoder body must
/// be present with the right shape; only the pooler may be missing.
pub fn load_weights<B: Backend>(
    encoder: &mut SentenceEncoder<B>,
    weights: &Path,
) -> Result<LoadReport> {
    let bad = |message: String| Error::Load {
        path: weights.to_path_buf(),
        message,
    };
    let remapper =
        KeyRemapper::from_patterns(hf_to_ours_patterns()).map_err(|e| bad(e.to_string()))?;
    let is_bin = weights.extension().is_some_and(|e| e == "bin");
    let result = if is_bin {
        let mut store = PytorchStore::from_file(weights)
            .remap(remapper)
            .map_indices_contiguous(false)
            .allow_partial(true)
            .validate(false);
        encoder
            .load_from(&mut store)
            .map_err(|e| bad(e.to_string()))?
    } else {
        let mut store = SafetensorsStore::from_file(weights)
            .remap(remapper)
            .with_from_adapter(PyTorchToBurnAdapter.chain(CastFloats(DType::F32)))
            .allow_partial(true)
            .validate(false);
        encoder
            .load_from(&mut store)
            .map_err(|e| bad(e.to_string()))?
    };
    if !result.errors.is_empty() {
        let in_file = file_shapes(weights, is_bin);
        let list: Vec<String> = result
            .errors
            .iter()
            .map(|e| describe_error(e, &in_file))
            .collect();
        return Err(bad(format!(
            "tensors that do not fit the architecture of config.json:\n  {}",
            list.join("\n  ")
        )));
    }
    let missing: Vec<String> = result
        .missing
        .iter()
        .map(|(path, _)| path.clone())
        .collect();
    let required: Vec<&String> = missing
        .iter()
        .filter(|m| !m.starts_with("pooler."))
        .collect();
    if !required.is_empty() {
        let patterns = ours_to_hf_patterns();
        let names: Vec<String> = required
            .iter()
            .take(8)
            .map(|ours| {
                let hf = remap_name(&patterns, ours);
                match (hf.strip_suffix(".gamma"), hf.strip_suffix(".beta")) {
                    (Some(p), _) => format!("{p}.weight"),
                    (_, Some(p)) => format!("{p}.bias"),
                    _ => hf,
                }
            })
            .collect();
        return Err(bad(format!(
            "{} tensors of the encoder are missing from the checkpoint (is it a BERT/RoBERTa model?): {}",
            required.len(),
            names.join(", ")
        )));
    }
    // The store looks LayerNorm parameters up under their PyTorch names
    // (weight/bias) but reports those names unused; drop such twins.
    let applied: std::collections::HashSet<&str> =
        result.applied.iter().map(String::as_str).collect();
    let burn_twin = |name: &str| {
        let twin = name.strip_suffix(".weight").map(|p| format!("{p}.gamma"));
        let twin = twin.or_else(|| name.strip_suffix(".bias").map(|p| format!("{p}.beta")));
        twin.is_some_and(|t| applied.contains(t.as_str()))
    };
    let mut unused: Vec<String> = result
        .unused
        .iter()
        .filter(|n| !burn_twin(n))
        .cloned()
        .collect();
    unused.sort();
    Ok(LoadReport {
        weights: weights.to_path_buf(),
        loaded: result.applied.len(),
        missing,
        unused,
    })
}

/// Each tensor of a weights file under our name: its name in the file and
/// its shape there (empty when the file cannot be listed).
fn file_shapes(weights: &Path, is_bin: bool) -> HashMap<String, (String, Vec<usize>)> {
    let snapshots = if is_bin {
        PytorchStore::from_file(weights)
            .get_all_snapshots()
            .cloned()
            .map_err(|e| e.to_string())
    } else {
        SafetensorsStore::from_file(weights)
            .get_all_snapshots()
            .cloned()
            .map_err(|e| e.to_string())
    };
    let patterns = hf_to_ours_patterns();
    snapshots
        .unwrap_or_default()
        .into_iter()
        .map(|(name, snapshot)| {
            let shape = snapshot.shape.to_vec();
            (remap_name(&patterns, &name), (name, shape))
        })
        .collect()
}

/// A tensor that could not be loaded, in the file's terms where the file
/// has it: its name and shape there, and the shape config.json's
/// architecture needs in the same layout.
fn describe_error(error: &ApplyError, in_file: &HashMap<String, (String, Vec<usize>)>) -> String {
    let ApplyError::ShapeMismatch {
        path,
        expected,
        found,
    } = error
    else {
        return error.to_string();
    };
    // LayerNorm parameters are gamma/beta here, weight/bias in files.
    let twin = path
        .strip_suffix(".gamma")
        .map(|p| format!("{p}.weight"))
        .or_else(|| path.strip_suffix(".beta").map(|p| format!("{p}.bias")));
    let Some((name, shape)) = in_file
        .get(path)
        .or_else(|| twin.and_then(|t| in_file.get(&t)))
    else {
        return error.to_string();
    };
    let (expected, found) = (expected.to_vec(), found.to_vec());
    // Linear weights are stored [out, in] in files and [in, out] here.
    let transposed = found.len() == 2 && found != *shape && found.iter().rev().eq(shape.iter());
    let needed: Vec<usize> = if transposed {
        expected.into_iter().rev().collect()
    } else {
        expected
    };
    format!("`{name}` has shape {shape:?} in the file; the architecture needs {needed:?}")
}

/// Casts floating-point tensors to one dtype while loading (a half-precision
/// checkpoint into an f32 model).
#[derive(Clone)]
struct CastFloats(DType);

impl ModuleAdapter for CastFloats {
    fn adapt(&self, snapshot: &TensorSnapshot) -> TensorSnapshot {
        let is_float = matches!(
            snapshot.dtype,
            DType::F64 | DType::F32 | DType::F16 | DType::BF16
        );
        if !is_float || snapshot.dtype == self.0 {
            return snapshot.clone();
        }
        let source = snapshot.clone_data_fn();
        let target = self.0;
        TensorSnapshot::from_closure(
            Rc::new(move || source().map(|d| d.convert_dtype(target))),
            target,
            snapshot.shape.clone(),
            snapshot.path_stack.clone().unwrap_or_default(),
            snapshot.container_stack.clone().unwrap_or_default(),
            snapshot.tensor_id.unwrap_or_default(),
        )
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(self.clone())
    }
}

/// A loaded model directory: encoder, tokenizer and what loading found.
pub struct LoadedModel<B: Backend> {
    /// The encoder with the checkpoint's weights.
    pub encoder: SentenceEncoder<B>,
    /// The checkpoint's tokenizer, truncating to `max_len`.
    pub tokenizer: SentenceTokenizer,
    /// The architecture from config.json.
    pub config: BertConfig,
    /// The model directory.
    pub dir: PathBuf,
    /// Matched and unmatched tensors.
    pub report: LoadReport,
}

/// Choices made when loading a model directory.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// Longest tokenized sentence (default and ceiling: the position table's length).
    pub max_len: Option<usize>,
    /// Dropout probability replacing config.json's (hidden and attention).
    pub dropout: Option<f64>,
}

impl<B: Backend> LoadedModel<B> {
    /// Loads a model directory.
    pub fn from_dir(dir: &Path, options: &LoadOptions, device: &B::Device) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::ModelNotFound(format!(
                "{}: not a directory",
                dir.display()
            )));
        }
        let mut config = BertConfig::from_hf_file(&dir.join("config.json"))?;
        if let Some(p) = options.dropout {
            config = config.with_dropout(p);
        }
        let limit = config.max_tokens();
        let max_len = match options.max_len {
            Some(n) if n > limit => {
                return Err(Error::Usage(format!(
                    "max length {n} exceeds the model's {limit} positions ({})",
                    dir.join("config.json").display()
                )))
            }
            Some(n) => n,
            None => limit,
        };
        let tokenizer = SentenceTokenizer::from_model_dir(dir, max_len)?;
        let weights = weights_file(dir)?;
        let mut encoder = SentenceEncoderConfig::new(config.clone()).init(device);
        let report = load_weights(&mut encoder, &weights)?;
        Ok(Self {
            encoder,
            tokenizer,
            config,
            dir: dir.to_path_buf(),
            report,
        })
    }
}
