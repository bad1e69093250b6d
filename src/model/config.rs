//! The encoder's architecture, read from a Hugging Face `config.json`.

use std::path::Path;

use burn::config::Config;
use serde::Deserialize;

use crate::error::Error;

/// Which transformer family a checkpoint belongs to (`model_type` in config.json).
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// BERT: absolute positions from 0, segment (token type) embeddings.
    Bert,
    /// RoBERTa: positions start after the padding index (`pad_token_id + 1`).
    Roberta,
}

/// The feed-forward activation (`hidden_act` in config.json).
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum HiddenAct {
    /// Exact GELU, `x * Φ(x)` with the error function (`"gelu"`).
    Gelu,
    /// GELU's tanh approximation (`"gelu_new"`, `"gelu_pytorch_tanh"`).
    GeluTanh,
    /// `max(0, x)` (`"relu"`).
    Relu,
}

/// Architecture of a BERT or RoBERTa encoder; field names follow config.json.
#[derive(Config, Debug)]
pub struct BertConfig {
    /// Family, from `model_type`.
    pub architecture: Architecture,
    /// Rows of the word-embedding table.
    pub vocab_size: usize,
    /// Width of every hidden state.
    pub hidden_size: usize,
    /// Number of transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer; divides `hidden_size`.
    pub num_attention_heads: usize,
    /// Width of the feed-forward block.
    pub intermediate_size: usize,
    /// Feed-forward activation.
    pub hidden_act: HiddenAct,
    /// Dropout on embeddings and on each sub-layer's output (training only).
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities (training only).
    pub attention_probs_dropout_prob: f64,
    /// Rows of the position-embedding table.
    pub max_position_embeddings: usize,
    /// Rows of the token-type (segment) table; 1 for RoBERTa.
    pub type_vocab_size: usize,
    /// Epsilon of every layer norm.
    pub layer_norm_eps: f64,
    /// Id of the padding token (also RoBERTa's position offset).
    pub pad_token_id: usize,
    /// Standard deviation of the normal initialisation of weights (fresh models).
    #[config(default = 0.02)]
    pub initializer_range: f64,
}

/// The fields of config.json we read; every other field is ignored.
#[derive(Deserialize)]
struct HfConfig {
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    #[serde(default = "default_act")]
    hidden_act: String,
    #[serde(default = "default_dropout")]
    hidden_dropout_prob: f64,
    #[serde(default = "default_dropout")]
    attention_probs_dropout_prob: f64,
    max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    type_vocab_size: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    pad_token_id: Option<usize>,
    #[serde(default = "default_position_type")]
    position_embedding_type: String,
    #[serde(default = "default_init_range")]
    initializer_range: f64,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_dropout() -> f64 {
    0.1
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_position_type() -> String {
    "absolute".into()
}
fn default_init_range() -> f64 {
    0.02
}

impl BertConfig {
    /// Reads and validates a Hugging Face `config.json`.
    pub fn from_hf_file(path: &Path) -> crate::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_hf_json(&text, path)
    }

    /// Parses the text of a `config.json`; `path` only names it in errors.
    pub fn from_hf_json(text: &str, path: &Path) -> crate::Result<Self> {
        let bad = |message: String| Error::Config {
            path: path.to_path_buf(),
            message,
        };
        let hf: HfConfig =
            serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(text))
                .map_err(|e| match e.path().to_string() {
                    field if field == "." => bad(e.inner().to_string()),
                    field => bad(format!("field `{field}`: {}", e.inner())),
                })?;
        let architecture = match hf.model_type.as_deref() {
            Some("bert") | None => Architecture::Bert,
            Some("roberta" | "xlm-roberta" | "camembert") => Architecture::Roberta,
            Some(other) => {
                return Err(bad(format!(
                    "field `model_type`: \"{other}\" is not supported (bert, roberta, xlm-roberta, camembert)"
                )))
            }
        };
        let hidden_act = match hf.hidden_act.as_str() {
            "gelu" => HiddenAct::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => HiddenAct::GeluTanh,
            "relu" => HiddenAct::Relu,
            other => {
                return Err(bad(format!(
                    "field `hidden_act`: \"{other}\" is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu)"
                )))
            }
        };
        if hf.position_embedding_type != "absolute" {
            return Err(bad(format!(
                "field `position_embedding_type`: \"{}\" is not supported (absolute)",
                hf.position_embedding_type
            )));
        }
        let pad_token_id = hf.pad_token_id.unwrap_or(match architecture {
            Architecture::Bert => 0,
            Architecture::Roberta => 1,
        });
        let config = BertConfig {
            architecture,
            vocab_size: hf.vocab_size,
            hidden_size: hf.hidden_size,
            num_hidden_layers: hf.num_hidden_layers,
            num_attention_heads: hf.num_attention_heads,
            intermediate_size: hf.intermediate_size,
            hidden_act,
            hidden_dropout_prob: hf.hidden_dropout_prob,
            attention_probs_dropout_prob: hf.attention_probs_dropout_prob,
            max_position_embeddings: hf.max_position_embeddings,
            type_vocab_size: hf.type_vocab_size,
            layer_norm_eps: hf.layer_norm_eps,
            pad_token_id,
            initializer_range: hf.initializer_range,
        };
        config.validate().map_err(bad)?;
        Ok(config)
    }

    /// Checks that the sizes are consistent; the message names the field.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("field `{name}` must be positive"));
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "field `hidden_size` ({}) is not divisible by `num_attention_heads` ({})",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.pad_token_id >= self.vocab_size {
            return Err(format!(
                "field `pad_token_id` ({}) is outside the vocabulary ({})",
                self.pad_token_id, self.vocab_size
            ));
        }
        for (name, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(format!("field `{name}` ({p}) must be in [0, 1)"));
            }
        }
        if self.max_tokens() == 0 {
            return Err(format!(
                "field `max_position_embeddings` ({}) leaves no position after RoBERTa's offset",
                self.max_position_embeddings
            ));
        }
        Ok(())
    }

    /// The longest token sequence (special tokens included) the position table holds.
    pub fn max_tokens(&self) -> usize {
        match self.architecture {
            Architecture::Bert => self.max_position_embeddings,
            Architecture::Roberta => self
                .max_position_embeddings
                .saturating_sub(self.pad_token_id + 1),
        }
    }

    /// The same architecture with both dropout probabilities set to `p`.
    pub fn with_dropout(mut self, p: f64) -> Self {
        self.hidden_dropout_prob = p;
        self.attention_probs_dropout_prob = p;
        self
    }
}
