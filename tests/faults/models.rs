//! Model folders: each case damages one file of a valid tiny model folder;
//! `gcse embed` must refuse it naming the file (and field or tensor).

use std::path::Path;

use crate::harness::{run_table, Case};
use crate::world::World;

/// `gcse embed` of `in.txt` with the model folder `model`.
fn embed<'a>(model: &'a str, output: &'a str) -> Vec<&'a str> {
    vec![
        "embed",
        "--backend",
        "cpu",
        "--model",
        model,
        "--input",
        "in.txt",
        "--output",
        output,
    ]
}

/// A copy of the world's model as `models/<name>`, changed by `damage`.
fn damaged(w: &World, name: &str, damage: impl FnOnce(&Path)) -> String {
    let dir = w.path(&format!("models/{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(w.path("model")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    damage(&dir);
    format!("models/{name}")
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut json);
    std::fs::write(path, json.to_string()).unwrap();
}

fn cases(w: &World) -> Vec<Case> {
    w.write("in.txt", "a man is playing guitar .\n");
    let safetensors = std::fs::read(w.path("model/model.safetensors")).unwrap();
    let mut cases = Vec::new();
    let mut add = |name: &str, damage: &dyn Fn(&Path), names: &[&str]| {
        let model = damaged(w, name, damage);
        let output = format!("out-{name}.npy");
        cases.push(Case::error(name, &embed(&model, &output), names).leaves_no(&w.path(&output)));
    };
    add(
        "config-missing",
        &|d| std::fs::remove_file(d.join("config.json")).unwrap(),
        &["config.json"],
    );
    add(
        "config-not-json",
        &|d| std::fs::write(d.join("config.json"), "{\"vocab_size\": 28,\n oops").unwrap(),
        &["config.json", "line 2"],
    );
    add(
        "config-html",
        &|d| std::fs::write(d.join("config.json"), "<!DOCTYPE html><html></html>").unwrap(),
        &["config.json"],
    );
    add(
        "hidden-size-missing",
        &|d| {
            edit_config(d, |j| {
                j.as_object_mut().unwrap().remove("hidden_size");
            })
        },
        &["config.json", "hidden_size"],
    );
    add(
        "hidden-size-text",
        &|d| edit_config(d, |j| j["hidden_size"] = "big".into()),
        &["config.json", "hidden_size"],
    );
    add(
        "heads-do-not-divide",
        &|d| edit_config(d, |j| j["num_attention_heads"] = 5.into()),
        &["config.json", "num_attention_heads"],
    );
    add(
        "model-type-gpt2",
        &|d| edit_config(d, |j| j["model_type"] = "gpt2".into()),
        &["config.json", "model_type", "gpt2"],
    );
    add(
        "activation-unknown",
        &|d| edit_config(d, |j| j["hidden_act"] = "swish-ish".into()),
        &["config.json", "swish-ish"],
    );
    add(
        "layers-zero",
        &|d| edit_config(d, |j| j["num_hidden_layers"] = 0.into()),
        &["config.json", "num_hidden_layers"],
    );
    add(
        "positions-zero",
        &|d| edit_config(d, |j| j["max_position_embeddings"] = 0.into()),
        &["config.json", "max_position_embeddings"],
    );
    add(
        "weights-missing",
        &|d| std::fs::remove_file(d.join("model.safetensors")).unwrap(),
        &["model.safetensors", "pytorch_model.bin"],
    );
    let cut = safetensors[..safetensors.len() / 2].to_vec();
    add(
        "weights-truncated",
        &|d| std::fs::write(d.join("model.safetensors"), &cut).unwrap(),
        &["model.safetensors"],
    );
    add(
        "weights-html",
        &|d| {
            std::fs::write(
                d.join("model.safetensors"),
                "<html><body>Sign in</body></html>",
            )
            .unwrap()
        },
        &["model.safetensors"],
    );
    add(
        "weights-empty",
        &|d| std::fs::write(d.join("model.safetensors"), "").unwrap(),
        &["model.safetensors"],
    );
    add(
        "bin-garbage",
        &|d| {
            std::fs::remove_file(d.join("model.safetensors")).unwrap();
            std::fs::write(d.join("pytorch_model.bin"), "not a pickle").unwrap();
        },
        &["pytorch_model.bin"],
    );
    add(
        "shape-mismatch",
        &|d| edit_config(d, |j| j["intermediate_size"] = 30.into()),
        &[
            "model.safetensors",
            "encoder.layer.0.intermediate.dense.weight",
            "[37, 16]",
            "[30, 16]",
        ],
    );
    add(
        "vocab-larger-than-weights",
        &|d| edit_config(d, |j| j["vocab_size"] = 40.into()),
        &["model.safetensors", "embeddings.word_embeddings.weight"],
    );
    add(
        "tokenizer-missing",
        &|d| std::fs::remove_file(d.join("vocab.txt")).unwrap(),
        &["tokenizer.json", "vocab.txt"],
    );
    add(
        "vocab-without-cls",
        &|d| {
            let text = std::fs::read_to_string(d.join("vocab.txt"))
                .unwrap()
                .replace("[CLS]", "[XXX]");
            std::fs::write(d.join("vocab.txt"), text).unwrap();
        },
        &["vocab.txt", "[CLS]"],
    );
    add(
        "tokenizer-json-broken",
        &|d| std::fs::write(d.join("tokenizer.json"), "{\"model\": ").unwrap(),
        &["tokenizer.json"],
    );
    add(
        "lower-case-not-bool",
        &|d| {
            std::fs::write(
                d.join("tokenizer_config.json"),
                "{\"do_lower_case\": \"yes\"}",
            )
            .unwrap()
        },
        &["tokenizer_config.json", "do_lower_case"],
    );
    let missing = "models/none";
    cases.push(Case::error(
        "folder-missing",
        &embed(missing, "out.npy"),
        &["models/none"],
    ));
    cases.push(Case::error(
        "folder-is-a-file",
        &embed("in.txt", "out.npy"),
        &["in.txt", "is a file"],
    ));
    cases.push(Case::error(
        "run-without-best",
        &embed("fake-run", "out.npy"),
        &["fake-run", "best model"],
    ));
    w.write("fake-run/config.toml", "run_dir = \"fake-run\"\n");
    cases
}

#[test]
fn model_folders() {
    let w = World::new("models");
    let tally = run_table("model folders", &w.dir, cases(&w));
    assert!(tally.cases >= 20, "{tally:?}");
    std::fs::remove_dir_all(&w.dir).unwrap();
}
