//! Writing an encoder for other tools: its weights under Hugging Face's tensor
//! names and layout (the inverse of [`super::load`], from the same
//! [`super::load::NAME_TABLE`]), and whole Hugging Face / sentence-transformers
//! model folders.

use std::path::Path;

use burn::store::{BurnToPyTorchAdapter, KeyRemapper, ModuleSnapshot, SafetensorsStore};
use burn::tensor::backend::Backend;

use super::config::{Architecture, BertConfig};
use super::cross_encoder::{hf_architecture, CrossEncoder};
use super::encoder::SentenceEncoder;
use super::load::ours_to_hf_patterns;
use super::pooling::Pooling;
use crate::atomic::{remove_stale_temporaries, replace_dir, temp_sibling};
use crate::error::{Error, Result};
use crate::json_file::write_json;

/// Writes `model.safetensors`-style weights: `BertModel` tensor names without
/// a prefix, Linear weights as `[out, in]`, LayerNorm `weight`/`bias`. The
/// file appears atomically (temporary sibling, then rename).
pub fn write_hf_weights<B: Backend>(encoder: &SentenceEncoder<B>, path: &Path) -> Result<()> {
    write_weights(encoder, ours_to_hf_patterns(), path)
}

/// Writes `module`'s tensors under the names `patterns` give them (PyTorch
/// layout), atomically.
fn write_weights<B: Backend, M: ModuleSnapshot<B>>(
    module: &M,
    patterns: Vec<(String, String)>,
    path: &Path,
) -> Result<()> {
    let bad = |message: String| Error::Load {
        path: path.to_path_buf(),
        message,
    };
    let remapper = KeyRemapper::from_patterns(patterns).map_err(|e| bad(e.to_string()))?;
    let tmp = temp_sibling(path);
    let mut store = SafetensorsStore::from_file(&tmp)
        .remap(remapper)
        .with_to_adapter(BurnToPyTorchAdapter)
        .metadata("format", "pt")
        .overwrite(true);
    let saved = module
        .save_into(&mut store)
        .map_err(|e| bad(e.to_string()))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e)));
    if saved.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    saved
}

/// Names of a cross-encoder's tensors in a `*ForSequenceClassification`
/// checkpoint: the body under `bert.` / `roberta.`, the pooler as
/// `bert.pooler.dense` (RoBERTa: `classifier.dense`), the head as
/// `classifier` (RoBERTa: `classifier.out_proj`).
fn cross_encoder_patterns(architecture: Architecture) -> Vec<(String, String)> {
    let (prefix, head) = match architecture {
        Architecture::Bert => ("bert", "classifier."),
        Architecture::Roberta => ("roberta", "classifier.out_proj."),
    };
    let mut patterns = Vec::new();
    if architecture == Architecture::Roberta {
        patterns.push((
            r"^encoder\.pooler\.".to_string(),
            "classifier.dense.".to_string(),
        ));
    }
    patterns.extend(ours_to_hf_patterns().into_iter().map(|(from, to)| {
        (
            from.replacen('^', r"^encoder\.", 1),
            format!("{prefix}.{to}"),
        )
    }));
    patterns.push((r"^classifier\.linear\.".to_string(), head.to_string()));
    patterns
}

/// What an exported model folder says about itself (`gcse.json`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FolderMeta {
    /// The pooling the model was trained or selected for.
    pub pooling: Pooling,
    /// Longest tokenized sentence in training.
    pub max_len: usize,
    /// Free-form provenance (run, step, score...).
    #[serde(default)]
    pub provenance: serde_json::Value,
}

/// Tokenizer files copied from the source model when present.
const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
];

/// Writes a Hugging Face model folder that sentence-transformers also loads:
/// config.json (the source model's), tokenizer files, model.safetensors
/// (BertModel names; the `cls` MLP as `pooler.dense`), the sentence-
/// transformers modules describing `meta.pooling` (CLS or mean pooling, plus
/// a tanh Dense layer for `cls`, and `config_sentence_transformers.json`),
/// gcse.json, and each of `extra` (name, text), such as a model card.
/// `avg_first_last` and `avg_top2` have no sentence-transformers module:
/// those folders are plain Hugging Face folders plus gcse.json, which gcse
/// reads (see [`sentence_transformers_pooling`]). The folder replaces
/// `out` atomically.
pub fn write_model_folder<B: Backend>(
    encoder: &SentenceEncoder<B>,
    source: &Path,
    out: &Path,
    meta: &FolderMeta,
    extra: &[(&str, String)],
) -> Result<()> {
    write_folder(out, extra, |dir| fill_folder(encoder, source, dir, meta))
}

/// Writes a cross-encoder folder that Hugging Face
/// (`AutoModelForSequenceClassification`) and sentence-transformers
/// (`CrossEncoder`) load: the source's config.json naming the
/// `*ForSequenceClassification` architecture with one label (scores are the
/// sigmoid of its logit), tokenizer files, model.safetensors under that
/// architecture's names, gcse.json, and each of `extra`. The folder replaces
/// `out` atomically.
pub fn write_cross_encoder_folder<B: Backend>(
    model: &CrossEncoder<B>,
    source: &Path,
    out: &Path,
    meta: &FolderMeta,
    extra: &[(&str, String)],
) -> Result<()> {
    write_folder(out, extra, |dir| {
        copy_source_files(source, dir)?;
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let architecture = BertConfig::from_hf_json(&text, &path)?.architecture;
        let mut config: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::Config {
                path: path.clone(),
                message: e.to_string(),
            })?;
        config["architectures"] = serde_json::json!([hf_architecture(architecture)]);
        config["id2label"] = serde_json::json!({"0": "LABEL_0"});
        config["label2id"] = serde_json::json!({"LABEL_0": 0});
        config["sentence_transformers"] =
            serde_json::json!({"activation_fn": "torch.nn.modules.activation.Sigmoid"});
        write_json(&path, &config)?;
        write_weights(
            model,
            cross_encoder_patterns(architecture),
            &dir.join("model.safetensors"),
        )?;
        write_json(&dir.join("gcse.json"), meta)
    })
}

/// Fills a temporary sibling of `out` with `fill`, adds each of `extra`
/// (name, text), then puts it in `out`'s place.
fn write_folder(
    out: &Path,
    extra: &[(&str, String)],
    fill: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    remove_stale_temporaries(out);
    let tmp = temp_sibling(out);
    let _ = std::fs::remove_dir_all(&tmp);
    let result = fill(&tmp)
        .and_then(|()| {
            extra.iter().try_for_each(|(name, text)| {
                let path = tmp.join(name);
                std::fs::write(&path, text).map_err(|e| Error::io(&path, e))
            })
        })
        .and_then(|()| replace_dir(&tmp, out));
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// The sentence-transformers Pooling mode of `pooling`: `cls` (with the
/// Dense layer of the MLP for [`Pooling::Cls`]) or `mean`; none for
/// `avg_first_last` and `avg_top2`, which need hidden states of two layers.
pub fn sentence_transformers_pooling(pooling: Pooling) -> Option<&'static str> {
    match pooling {
        Pooling::Cls | Pooling::ClsBeforePooler => Some("cls"),
        Pooling::Avg => Some("mean"),
        Pooling::AvgFirstLast | Pooling::AvgTop2 => None,
    }
}

/// Creates `dir` with the source model's config.json and tokenizer files
/// (tokenizer.json without its padding and truncation).
fn copy_source_files(source: &Path, dir: &Path) -> Result<()> {
    let copy = |name: &str| -> Result<()> {
        let from = source.join(name);
        let to = dir.join(name);
        std::fs::copy(&from, &to)
            .map(|_| ())
            .map_err(|e| Error::io(&from, e))
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    copy("config.json")?;
    for name in TOKENIZER_FILES {
        if source.join(name).is_file() {
            copy(name)?;
        }
    }
    let tokenizer = dir.join("tokenizer.json");
    if tokenizer.is_file() {
        // Padding and truncation come from the caller, not the file.
        let text = std::fs::read_to_string(&tokenizer).map_err(|e| Error::io(&tokenizer, e))?;
        let mut json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::Tokenizer {
                path: tokenizer.clone(),
                message: e.to_string(),
            })?;
        json["truncation"] = serde_json::Value::Null;
        json["padding"] = serde_json::Value::Null;
        write_json(&tokenizer, &json)?;
    }
    Ok(())
}

fn fill_folder<B: Backend>(
    encoder: &SentenceEncoder<B>,
    source: &Path,
    dir: &Path,
    meta: &FolderMeta,
) -> Result<()> {
    let mkdir = |d: &Path| std::fs::create_dir_all(d).map_err(|e| Error::io(d, e));
    copy_source_files(source, dir)?;
    write_hf_weights(encoder, &dir.join("model.safetensors"))?;
    let hidden = encoder.backbone.hidden_size();
    if let Some(mode) = sentence_transformers_pooling(meta.pooling) {
        let mut modules = vec![
            serde_json::json!({"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}),
            serde_json::json!({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}),
        ];
        // Inference truncates at the model's position limit, as gcse does
        // (the training length is a training setting, kept in gcse.json).
        let limit = BertConfig::from_hf_file(&dir.join("config.json"))?.max_tokens();
        write_json(
            &dir.join("sentence_bert_config.json"),
            &serde_json::json!({"max_seq_length": limit, "do_lower_case": false}),
        )?;
        mkdir(&dir.join("1_Pooling"))?;
        write_json(
            &dir.join("1_Pooling/config.json"),
            &serde_json::json!({
                "word_embedding_dimension": hidden,
                "pooling_mode_cls_token": mode == "cls",
                "pooling_mode_mean_tokens": mode == "mean",
                "pooling_mode_max_tokens": false,
                "pooling_mode_mean_sqrt_len_tokens": false,
            }),
        )?;
        if meta.pooling == Pooling::Cls {
            modules.push(
                serde_json::json!({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}),
            );
            mkdir(&dir.join("2_Dense"))?;
            write_json(
                &dir.join("2_Dense/config.json"),
                &serde_json::json!({
                    "in_features": hidden,
                    "out_features": hidden,
                    "bias": true,
                    "activation_function": "torch.nn.modules.activation.Tanh",
                }),
            )?;
            write_dense(encoder, &dir.join("2_Dense/model.safetensors"))?;
        }
        write_json(
            &dir.join("modules.json"),
            &serde_json::Value::Array(modules),
        )?;
        write_json(
            &dir.join("config_sentence_transformers.json"),
            &serde_json::json!({
                "model_type": "SentenceTransformer",
                "prompts": {},
                "default_prompt_name": null,
                "similarity_fn_name": "cosine",
            }),
        )?;
    }
    write_json(&dir.join("gcse.json"), meta)
}

/// The `cls` MLP as a sentence-transformers Dense layer (`linear.weight`
/// `[out, in]`, `linear.bias`).
fn write_dense<B: Backend>(encoder: &SentenceEncoder<B>, path: &Path) -> Result<()> {
    let bad = |message: String| Error::Load {
        path: path.to_path_buf(),
        message,
    };
    let remapper = KeyRemapper::from_patterns(vec![(r"^pooler\.", "linear.")])
        .map_err(|e| bad(e.to_string()))?;
    let mut store = SafetensorsStore::from_file(path)
        .with_regex(r"^pooler\.")
        .remap(remapper)
        .with_to_adapter(BurnToPyTorchAdapter)
        .metadata("format", "pt")
        .overwrite(true);
    encoder
        .save_into(&mut store)
        .map_err(|e| bad(e.to_string()))
}

/// Checks that `gcse export` may write `out`: a folder that does not exist,
/// is empty, or holds a model (config.json with weights, or gcse.json) is
/// replaced; any other folder only when `force` says so; a file never.
pub fn check_export_target(out: &Path, force: bool) -> Result<()> {
    let refuse = |message: String| Err(Error::Usage(format!("--to {}: {message}", out.display())));
    let meta = match std::fs::metadata(out) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(out, e)),
    };
    if !meta.is_dir() {
        return refuse("is a file, not a folder; remove it or choose another folder".into());
    }
    let mut names: Vec<String> = std::fs::read_dir(out)
        .map_err(|e| Error::io(out, e))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::io(out, e))?;
    let has = |name: &str| out.join(name).is_file();
    let model = has("gcse.json")
        || (has("config.json") && (has("model.safetensors") || has("pytorch_model.bin")));
    if names.is_empty() || model || force {
        return Ok(());
    }
    names.sort();
    let shown = names.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
    let more = names.len().saturating_sub(3);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    refuse(format!(
        "holds files that are not a model ({shown}{more}); exporting would delete them. \
         Choose another folder, or pass --force to replace it"
    ))
}
