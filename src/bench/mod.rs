//! `gcse bench`: the training step and the embedding pass on synthetic
//! batches of fixed shape, timed step by step, with the FLOPs and memory
//! they use; `scripts/bench_torch.py` runs the identical workloads in
//! PyTorch for side-by-side ratios.

pub mod flops;
pub mod max_batch;
pub mod report;
pub mod workload;

use crate::model::config::{Architecture, BertConfig, HiddenAct};

/// Names of the built-in randomly initialised architectures.
pub const PRESETS: [&str; 2] = ["bert-base", "minilm-l6"];

/// A built-in architecture by name: `bert-base` (BERT-base uncased: 12
/// layers of 768, 110M parameters) or `minilm-l6` (all-MiniLM-L6-v2's
/// shape: 6 layers of 384, 23M parameters).
pub fn preset(name: &str) -> Option<BertConfig> {
    let (hidden, layers, intermediate) = match name {
        "bert-base" => (768, 12, 3072),
        "minilm-l6" => (384, 6, 1536),
        _ => return None,
    };
    Some(BertConfig::new(
        Architecture::Bert,
        30522,
        hidden,
        layers,
        12,
        intermediate,
        HiddenAct::Gelu,
        0.1,
        0.1,
        512,
        2,
        1e-12,
        0,
    ))
}

/// The process's peak resident memory in bytes (Linux: `VmHWM` of
/// /proc/self/status), or `None` where the platform does not say.
pub fn peak_host_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
