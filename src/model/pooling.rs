//! Sentence poolers, with SimCSE's names and meanings.

use std::fmt;
use std::str::FromStr;

use burn::nn::Linear;
use burn::tensor::activation::tanh;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::bert::LastLayer;

/// How token states become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// The `[CLS]` state of the last layer through the dense + tanh MLP
    /// (BERT's pooler; SimCSE's training head).
    Cls,
    /// The `[CLS]` state of the last layer, no MLP.
    ClsBeforePooler,
    /// Mean of the last layer's states over real (non-padding) tokens.
    Avg,
    /// Mean over real tokens of the average of the embedding output and the
    /// last layer (SimCSE's evaluation code takes `hidden_states[0]` as "first").
    AvgFirstLast,
    /// Mean over real tokens of the average of the last two layers.
    AvgTop2,
}

impl Pooling {
    /// Every pooler, in SimCSE's order.
    pub const ALL: [Pooling; 5] = [
        Pooling::Cls,
        Pooling::ClsBeforePooler,
        Pooling::Avg,
        Pooling::AvgFirstLast,
        Pooling::AvgTop2,
    ];

    /// SimCSE's name of the pooler.
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Cls => "cls",
            Pooling::ClsBeforePooler => "cls_before_pooler",
            Pooling::Avg => "avg",
            Pooling::AvgFirstLast => "avg_first_last",
            Pooling::AvgTop2 => "avg_top2",
        }
    }

    /// What of the last layer this pooling reads: `cls` poolings only
    /// position 0.
    pub fn last_layer(self) -> LastLayer {
        match self {
            Pooling::Cls | Pooling::ClsBeforePooler => LastLayer::FirstToken,
            Pooling::Avg | Pooling::AvgFirstLast | Pooling::AvgTop2 => LastLayer::AllTokens,
        }
    }

    /// Pools hidden states into sentence vectors.
    ///
    /// `states`: every hidden state, `[batch, seq, hidden]` each, index 0 the
    /// embedding output (see [`crate::model::bert::Bert::forward`]), the
    /// last as [`Self::last_layer`] asks;
    /// `mask`: `[batch, seq]`, 1.0 at real tokens and 0.0 at padding;
    /// `mlp`: the dense layer of the `cls` pooler. Returns `[batch, hidden]`.
    pub fn pool<B: Backend>(
        self,
        states: &[Tensor<B, 3>],
        mask: Tensor<B, 2>,
        mlp: &Linear<B>,
    ) -> Tensor<B, 2> {
        let last = states[states.len() - 1].clone();
        match self {
            Pooling::Cls => tanh(mlp.forward(first_token(last))),
            Pooling::ClsBeforePooler => first_token(last),
            Pooling::Avg => masked_mean(last, mask),
            Pooling::AvgFirstLast => masked_mean((states[0].clone() + last) / 2.0, mask),
            Pooling::AvgTop2 => masked_mean((states[states.len() - 2].clone() + last) / 2.0, mask),
        }
    }
}

/// `[batch, seq, hidden]` → `[batch, hidden]`, the state at position 0.
fn first_token<B: Backend>(x: Tensor<B, 3>) -> Tensor<B, 2> {
    let [batch, _, hidden] = x.dims();
    x.narrow(1, 0, 1).reshape([batch, hidden])
}

/// Mean of `x` (`[batch, seq, hidden]`) over positions where `mask`
/// (`[batch, seq]`) is 1.0 → `[batch, hidden]`.
fn masked_mean<B: Backend>(x: Tensor<B, 3>, mask: Tensor<B, 2>) -> Tensor<B, 2> {
    let [batch, _, hidden] = x.dims();
    let counts = mask.clone().sum_dim(1);
    let sums = (x * mask.unsqueeze_dim::<3>(2))
        .sum_dim(1)
        .reshape([batch, hidden]);
    sums / counts
}

impl fmt::Display for Pooling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Pooling {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Pooling::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Pooling::ALL.iter().map(|p| p.name()).collect();
                format!("unknown pooling \"{s}\" (one of {})", names.join(", "))
            })
    }
}

/// The pooling a model directory declares: a gcse export's `gcse.json`, or
/// the config of the sentence-transformers pooling module (the one
/// `modules.json` lists, else `1_Pooling/`; mean → `avg`, CLS →
/// `cls_before_pooler`); None when it declares none we can follow.
pub fn declared_pooling(dir: &std::path::Path) -> Option<Pooling> {
    let read = |p: std::path::PathBuf| -> Option<serde_json::Value> {
        serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()
    };
    if let Some(v) = read(dir.join("gcse.json")) {
        return v.get("pooling")?.as_str()?.parse().ok();
    }
    let module = pooling_module_dirs(dir)
        .into_iter()
        .next()
        .unwrap_or_else(|| "1_Pooling".into());
    let v = read(dir.join(module).join("config.json"))?;
    let on = |key: &str| v.get(key).and_then(|x| x.as_bool()).unwrap_or(false);
    let others = [
        "pooling_mode_max_tokens",
        "pooling_mode_mean_sqrt_len_tokens",
        "pooling_mode_weightedmean_tokens",
        "pooling_mode_lasttoken",
    ];
    if others.iter().any(|k| on(k)) {
        return None;
    }
    match (on("pooling_mode_mean_tokens"), on("pooling_mode_cls_token")) {
        (true, false) => Some(Pooling::Avg),
        (false, true) => Some(Pooling::ClsBeforePooler),
        _ => None,
    }
}

/// The folders of the `Pooling` modules a sentence-transformers
/// `modules.json` in `dir` lists (relative paths inside `dir`; none when the
/// file is missing or unreadable).
pub fn pooling_module_dirs(dir: &std::path::Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(dir.join("modules.json")) else {
        return Vec::new();
    };
    let Ok(serde_json::Value::Array(modules)) = serde_json::from_str(&text) else {
        return Vec::new();
    };
    modules
        .iter()
        .filter(|m| m["type"].as_str().is_some_and(|t| t.ends_with(".Pooling")))
        .filter_map(|m| m["path"].as_str())
        .filter(|p| {
            !p.is_empty()
                && std::path::Path::new(p)
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)))
        })
        .map(str::to_string)
        .collect()
}
