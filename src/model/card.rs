//! The model card (`README.md`) of an exported model: the Hugging Face hub's
//! metadata block as sentence-transformers writes it (library, pipeline,
//! tags, base model), how to load the model, the training settings in
//! brief, and the test results of the run.

use std::fmt::Write as _;

use serde_json::Value;

use crate::config::TrainConfig;
use crate::model::cross_encoder::ModelKind;
use crate::model::export::FolderMeta;
use crate::model::hub::is_hub_id;

/// The card of a model (of `kind`) exported from a run trained with
/// `config`; `test` is the run's `test_results.json`, when it has one.
pub fn model_card(
    config: &TrainConfig,
    meta: &FolderMeta,
    kind: ModelKind,
    test: Option<&Value>,
) -> String {
    let base = &config.model.path;
    let t = &config.train;
    let cross = kind == ModelKind::CrossEncoder;
    let mut card = String::new();
    let _ = writeln!(card, "---");
    let _ = writeln!(card, "library_name: sentence-transformers");
    let (pipeline, tags) = match kind {
        ModelKind::BiEncoder => (
            "sentence-similarity",
            ["sentence-similarity", "feature-extraction"],
        ),
        ModelKind::CrossEncoder => ("text-ranking", ["cross-encoder", "text-classification"]),
    };
    let _ = writeln!(card, "pipeline_tag: {pipeline}");
    let _ = writeln!(card, "tags:");
    for tag in ["sentence-transformers"]
        .into_iter()
        .chain(tags)
        .chain(["gcse", config.objective.name.as_str()])
    {
        let _ = writeln!(card, "- {tag}");
    }
    if is_hub_id(base) {
        let _ = writeln!(card, "base_model: {base}");
    }
    let _ = writeln!(card, "---");
    let _ = writeln!(card);
    let version = env!("CARGO_PKG_VERSION");
    let objective = &config.objective.name;
    if cross {
        let _ = writeln!(card, "# A cross-encoder trained with gcse");
        let _ = writeln!(card);
        let _ = writeln!(
            card,
            "A cross-encoder trained from `{base}` with gcse {version} (objective \
             `{objective}`): it reads a sentence pair as one sequence and scores it with \
             the sigmoid of one logit."
        );
    } else {
        let _ = writeln!(card, "# Sentence embeddings trained with gcse");
        let _ = writeln!(card);
        let _ = writeln!(
            card,
            "A sentence-embedding model trained from `{base}` with gcse {version} (objective \
             `{objective}`), pooled by `{}`, compared by cosine similarity.",
            meta.pooling,
        );
    }
    if let Some(step) = meta.provenance.get("step").and_then(Value::as_u64) {
        let _ = writeln!(card, "This is the model of training step {step}.");
    }
    let _ = writeln!(card);
    let _ = writeln!(card, "## Usage");
    let _ = writeln!(card);
    let _ = writeln!(card, "```python");
    if cross {
        let _ = writeln!(card, "from sentence_transformers import CrossEncoder");
        let _ = writeln!(card, "model = CrossEncoder(\"path/to/this/folder\")");
        let _ = writeln!(
            card,
            "print(model.predict([(\"A man is playing a guitar.\", \"Someone plays music.\")]))"
        );
    } else {
        let _ = writeln!(
            card,
            "from sentence_transformers import SentenceTransformer"
        );
        let _ = writeln!(card, "model = SentenceTransformer(\"path/to/this/folder\")");
        let _ = writeln!(
            card,
            "vectors = model.encode([\"A man is playing a guitar.\", \"Someone plays music.\"])"
        );
        let _ = writeln!(card, "print(model.similarity(vectors, vectors))");
    }
    let _ = writeln!(card, "```");
    let _ = writeln!(card);
    let gcse = if cross {
        "gcse score --model path/to/this/folder --input pairs.jsonl --output scores.jsonl"
    } else {
        "gcse embed --model path/to/this/folder --input sentences.txt --output vectors.npy"
    };
    let _ = writeln!(card, "or with gcse: `{gcse}`.");
    let _ = writeln!(card);
    let _ = writeln!(card, "## Training");
    let _ = writeln!(card);
    let _ = writeln!(card, "| setting | value |");
    let _ = writeln!(card, "|---|---|");
    let steps = t.max_steps.map_or(
        format!("{} epoch{}", t.epochs, if t.epochs == 1 { "" } else { "s" }),
        |s| format!("{s} steps"),
    );
    let sources = |specs: &[crate::data::corpus::SourceSpec]| {
        specs
            .iter()
            .map(|s| format!("`{}`", s.path.rsplit('/').next().unwrap_or(&s.path)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (setting, value) in [
        ("objective", format!("`{}`", config.objective.name)),
        ("base model", format!("`{base}`")),
        (
            "pooling (training / evaluation)",
            match cross {
                true => String::new(),
                false => format!(
                    "`{}` / `{}`",
                    config.model.pooling, config.model.eval_pooling
                ),
            },
        ),
        ("max length", format!("{} tokens", config.model.max_len)),
        ("batch size", t.batch_size.to_string()),
        ("length", steps),
        ("learning rate", format!("{:e}", t.lr)),
        (
            "temperature",
            match cross {
                true => String::new(),
                false => t.temperature.to_string(),
            },
        ),
        ("seed", t.seed.to_string()),
        ("domain data", sources(&config.data.domain)),
        ("general data", sources(&config.data.general)),
        ("selected by", format!("`{}`", config.eval.select_by)),
    ] {
        if !value.is_empty() {
            let _ = writeln!(card, "| {setting} | {value} |");
        }
    }
    let _ = writeln!(card);
    let _ = writeln!(card, "## Evaluation");
    let _ = writeln!(card);
    match test.and_then(|t| t["scores"].as_array()) {
        Some(scores) if !scores.is_empty() => {
            let cells: Vec<(String, f64)> = scores
                .iter()
                .filter_map(|s| {
                    let primary = s["primary"].as_str()?;
                    Some((s["task"].as_str()?.to_string(), s[primary].as_f64()?))
                })
                .collect();
            let primary = scores[0]["primary"].as_str().unwrap_or("score");
            let _ = writeln!(card, "Test sets, {primary} x 100 (SentEval protocol):");
            let _ = writeln!(card);
            let mut header = String::from("|");
            let mut rule = String::from("|");
            let mut row = String::from("|");
            for (task, value) in &cells {
                let _ = write!(header, " {task} |");
                rule.push_str("---|");
                let _ = write!(row, " {value:.2} |");
            }
            if let Some(avg) = test.and_then(|t| t["average"].as_f64()) {
                header.push_str(" Avg. |");
                rule.push_str("---|");
                let _ = write!(row, " {avg:.2} |");
            }
            let _ = writeln!(card, "{header}\n{rule}\n{row}");
        }
        _ => {
            let _ = writeln!(
                card,
                "No test results were saved with this run (`eval.final_test = false`, or it did not finish); \
                 `gcse eval --model path/to/this/folder` scores it."
            );
        }
    }
    card
}
