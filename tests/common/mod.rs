//! Shared helpers for the integration tests: where the real model and the
//! STS data are, golden fixtures, and tiny self-made model directories.
#![allow(dead_code)]

pub mod llm_server;

use std::path::{Path, PathBuf};

use burn::backend::NdArray;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use gcse::data::batcher::TokenBatch;
use gcse::model::config::{Architecture, BertConfig, HiddenAct};
use gcse::model::encoder::{SentenceEncoder, SentenceEncoderConfig};
use gcse::model::export::write_hf_weights;

/// The CPU backend the tests use.
pub type Cpu = NdArray<f32>;

/// Whether a missing model or data set must fail the test (CI sets this).
fn assets_required() -> bool {
    std::env::var("GCSE_REQUIRE_ASSETS").is_ok_and(|v| v == "1")
}

/// Reports a skipped test; panics instead when `GCSE_REQUIRE_ASSETS=1`.
pub fn skip(test: &str, why: &str) {
    if assets_required() {
        panic!("{test}: {why} (GCSE_REQUIRE_ASSETS=1 forbids skipping)");
    }
    eprintln!("SKIPPED {test}: {why}");
}

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// all-MiniLM-L6-v2: `$GCSE_MODEL_DIR`, else `models/all-MiniLM-L6-v2`.
pub fn minilm_dir(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("GCSE_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest().join("models/all-MiniLM-L6-v2"));
    if dir.join("model.safetensors").is_file() {
        Some(dir)
    } else {
        skip(
            test,
            &format!("no model at {} (run scripts/fetch-model.sh)", dir.display()),
        );
        None
    }
}

/// SentEval data: `$GCSE_DATA/senteval`, else `../shared/data/senteval`.
pub fn senteval_dir(test: &str) -> Option<PathBuf> {
    let root = std::env::var_os("GCSE_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest().join("../shared/data"));
    let dir = root.join("senteval");
    if dir.join("STS").is_dir() {
        Some(dir)
    } else {
        skip(
            test,
            &format!("no SentEval data at {} (set GCSE_DATA)", dir.display()),
        );
        None
    }
}

/// The small GGUF LLM (Gemma 3 270M): `$GCSE_LLM_GGUF`, else
/// `models/gemma-3-270m-q4_k_m.gguf` (`scripts/fetch-llm.sh`).
pub fn gemma_gguf(test: &str) -> Option<PathBuf> {
    let path = std::env::var_os("GCSE_LLM_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest().join("models/gemma-3-270m-q4_k_m.gguf"));
    if path.is_file() {
        Some(path)
    } else {
        skip(
            test,
            &format!(
                "no GGUF model at {} (run scripts/fetch-llm.sh)",
                path.display()
            ),
        );
        None
    }
}

/// A golden fixture from `tests/fixtures`.
pub fn fixture(name: &str) -> serde_json::Value {
    let path = manifest().join("tests/fixtures").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// A fresh, empty directory under the system temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gcse-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Words of the tiny models' WordPiece vocabulary (after the special tokens).
pub const TINY_WORDS: &[&str] = &[
    "a", "man", "woman", "is", "playing", "guitar", "the", "dog", "runs", "in", "park", ".", ",",
    "cat", "sleeps", "on", "mat", "two", "people", "are", "talking", "##s", "##ing",
];

/// `n` (at most 21 x 21) distinct sentences of the tiny vocabulary: the
/// first two words differ between any two of them.
pub fn tiny_sentences(n: usize) -> Vec<String> {
    let words = &TINY_WORDS[..TINY_WORDS.len() - 2];
    let w = words.len();
    (0..n)
        .map(|i| {
            format!(
                "{} {} {} {} .",
                words[i % w],
                words[(i / w + 3) % w],
                words[(i * 7 + 5) % w],
                words[(i * 3) % w]
            )
        })
        .collect()
}

/// The architecture of the tiny test models.
pub fn tiny_config(architecture: Architecture) -> BertConfig {
    BertConfig {
        architecture,
        vocab_size: 5 + TINY_WORDS.len(),
        hidden_size: 16,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 37,
        hidden_act: HiddenAct::Gelu,
        hidden_dropout_prob: 0.1,
        attention_probs_dropout_prob: 0.1,
        max_position_embeddings: 24,
        type_vocab_size: if architecture == Architecture::Bert {
            2
        } else {
            1
        },
        layer_norm_eps: 1e-12,
        pad_token_id: if architecture == Architecture::Bert {
            0
        } else {
            1
        },
        initializer_range: 0.5,
    }
}

/// config.json text for `config`.
pub fn config_json(config: &BertConfig) -> String {
    serde_json::json!({
        "model_type": if config.architecture == Architecture::Bert { "bert" } else { "roberta" },
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_hidden_layers,
        "num_attention_heads": config.num_attention_heads,
        "intermediate_size": config.intermediate_size,
        "hidden_act": "gelu",
        "hidden_dropout_prob": config.hidden_dropout_prob,
        "attention_probs_dropout_prob": config.attention_probs_dropout_prob,
        "max_position_embeddings": config.max_position_embeddings,
        "type_vocab_size": config.type_vocab_size,
        "layer_norm_eps": config.layer_norm_eps,
        "pad_token_id": config.pad_token_id,
    })
    .to_string()
}

/// A random-initialised tiny encoder.
pub fn tiny_encoder(architecture: Architecture, seed: u64) -> SentenceEncoder<Cpu> {
    use burn::tensor::backend::Backend;
    let device = Default::default();
    Cpu::seed(&device, seed);
    SentenceEncoderConfig::new(tiny_config(architecture)).init(&device)
}

/// Writes a complete tiny model directory (config.json, vocab.txt,
/// model.safetensors) and returns the encoder it holds.
pub fn write_tiny_model(dir: &Path, architecture: Architecture, seed: u64) -> SentenceEncoder<Cpu> {
    std::fs::create_dir_all(dir).unwrap();
    let encoder = tiny_encoder(architecture, seed);
    let config = tiny_config(architecture);
    std::fs::write(dir.join("config.json"), config_json(&config)).unwrap();
    let mut vocab: Vec<&str> = if architecture == Architecture::Bert {
        vec!["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    } else {
        vec!["[UNK]", "[PAD]", "[CLS]", "[SEP]", "[MASK]"]
    };
    vocab.extend_from_slice(TINY_WORDS);
    std::fs::write(dir.join("vocab.txt"), vocab.join("\n") + "\n").unwrap();
    write_hf_weights(&encoder, &dir.join("model.safetensors")).unwrap();
    encoder
}

/// Runs the gcse binary; returns (success, stdout, stderr).
pub fn gcse(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gcse"))
        .args(args)
        .output()
        .expect("the gcse binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sentences of `lengths` tokens right-padded with `pad` to the longest;
/// token ids in `2..vocab` vary with row and position; with two `segments`
/// the second half of each sentence is segment 1.
pub fn padded_batch<B: Backend>(
    lengths: &[usize],
    vocab: usize,
    pad: i64,
    segments: usize,
    device: &B::Device,
) -> TokenBatch<B> {
    let seq = lengths.iter().copied().max().unwrap_or(0);
    let (mut ids, mut types, mut mask) = (Vec::new(), Vec::new(), Vec::new());
    for (row, &len) in lengths.iter().enumerate() {
        for t in 0..seq {
            let real = t < len;
            ids.push(if real {
                (2 + (row * 7 + t * 3) % (vocab - 2)) as i64
            } else {
                pad
            });
            types.push(i64::from(real && segments > 1 && t >= len / 2));
            mask.push(i64::from(real));
        }
    }
    let int = |v: Vec<i64>| {
        Tensor::<B, 2, Int>::from_data(TensorData::new(v, [lengths.len(), seq]), device)
    };
    TokenBatch {
        input_ids: int(ids),
        token_type_ids: int(types),
        attention_mask: int(mask),
    }
}

/// Adds uniform noise in [-0.3, 0.3] to every parameter (which stays a
/// leaf that gradients reach).
pub struct Jitter;

impl<B: Backend> ModuleMapper<B> for Jitter {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        param.map(|t| {
            let noise = Tensor::random(t.shape(), Distribution::Uniform(-0.3, 0.3), &t.device());
            (t + noise).detach().require_grad()
        })
    }
}

/// Every float parameter's gradient in `grads` as f64, in visiting order
/// (empty for one without a gradient).
pub fn param_grads<B: AutodiffBackend, M: Module<B>>(
    module: &M,
    grads: &B::Gradients,
) -> Vec<Vec<f64>> {
    struct Collect<'a, B: AutodiffBackend> {
        grads: &'a B::Gradients,
        out: Vec<Vec<f64>>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Collect<'_, B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let grad = param
                .grad(self.grads)
                .map(|g| g.to_data().convert::<f64>().to_vec::<f64>().unwrap());
            self.out.push(grad.unwrap_or_default());
        }
    }
    let mut collect = Collect {
        grads,
        out: Vec::new(),
    };
    module.visit(&mut collect);
    collect.out
}

/// Asserts that every parameter's gradient in `b` equals its counterpart
/// in `a` to within `tolerance`, relative to that parameter's largest
/// gradient in `a` or to `floor` where that is larger.
pub fn assert_gradients_close(
    what: &str,
    a: &[Vec<f64>],
    b: &[Vec<f64>],
    floor: f64,
    tolerance: f64,
) {
    assert_eq!(a.len(), b.len(), "{what}: parameter count");
    for (i, (a, b)) in a.iter().zip(b).enumerate() {
        assert_eq!(a.len(), b.len(), "{what}: parameter {i}");
        let scale = a.iter().fold(floor, |m, v| m.max(v.abs()));
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f64, f64::max);
        assert!(
            worst <= tolerance * scale,
            "{what}: parameter {i}'s gradients differ by {worst} (scale {scale})"
        );
    }
}

/// all-MiniLM-L6-v2 (`dir`) as the cross-encoder of
/// tests/fixtures/cross_encoder.json (scripts/reference_cross.py): its body
/// and pooler, and the fixture's head.
pub fn fixture_cross_encoder<B: Backend>(
    dir: &Path,
    golden: &serde_json::Value,
    device: &B::Device,
) -> gcse::model::cross_encoder::LoadedCrossEncoder<B> {
    use gcse::model::cross_encoder::LoadedCrossEncoder;
    use gcse::model::load::LoadOptions;
    let options = LoadOptions {
        max_len: golden["max_len"].as_u64().map(|n| n as usize),
        dropout: None,
    };
    let mut cross = LoadedCrossEncoder::<B>::from_dir(dir, &options, 0, device).unwrap();
    assert!(!cross.head_loaded, "a bi-encoder checkpoint has no head");
    let weight: Vec<f32> = golden["head_weight"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    let hidden = weight.len();
    let bias = golden["head_bias"].as_f64().unwrap() as f32;
    let linear = &mut cross.model.classifier.linear;
    linear.weight = Param::from_tensor(Tensor::from_data(
        TensorData::new(weight, [hidden, 1]).convert::<B::FloatElem>(),
        device,
    ));
    linear.bias = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(vec![bias], [1]).convert::<B::FloatElem>(),
        device,
    )));
    cross
}

/// The fixture's pairs: first sentences, second sentences, scores.
pub fn fixture_pairs(golden: &serde_json::Value) -> (Vec<String>, Vec<String>, Vec<f64>) {
    let pairs = golden["pairs"].as_array().unwrap();
    let text = |p: &serde_json::Value, k: &str| p[k].as_str().unwrap().to_string();
    (
        pairs.iter().map(|p| text(p, "a")).collect(),
        pairs.iter().map(|p| text(p, "b")).collect(),
        pairs.iter().map(|p| p["score"].as_f64().unwrap()).collect(),
    )
}
