//! Experiment files: each case changes one key of a valid file (or breaks
//! the file itself); `gcse train` must refuse it naming the file and the
//! key, before it claims a run directory.

use crate::harness::{run_table, Case, Tally};
use crate::world::World;

/// `gcse train --config CONFIG --no-tui --backend cpu`.
pub fn train(config: &str) -> Vec<&str> {
    vec!["train", "--config", config, "--no-tui", "--backend", "cpu"]
}

/// One changed key per case: (case name, dotted key, TOML value, what the
/// message must name besides the file).
const ONE_KEY: &[(&str, &str, &str, &str)] = &[
    ("lr-nan", "train.lr", "nan", "train.lr"),
    ("lr-inf", "train.lr", "inf", "train.lr"),
    ("lr-negative", "train.lr", "-1e-5", "train.lr"),
    ("lr-zero", "train.lr", "0.0", "train.lr"),
    ("lr-text", "train.lr", "\"fast\"", "train.lr"),
    (
        "temperature-nan",
        "train.temperature",
        "nan",
        "train.temperature",
    ),
    (
        "temperature-zero",
        "train.temperature",
        "0.0",
        "train.temperature",
    ),
    (
        "temperature-inf",
        "train.temperature",
        "inf",
        "train.temperature",
    ),
    (
        "weight-decay-nan",
        "train.weight_decay",
        "nan",
        "train.weight_decay",
    ),
    (
        "weight-decay-negative",
        "train.weight_decay",
        "-0.1",
        "train.weight_decay",
    ),
    (
        "weight-decay-inf",
        "train.weight_decay",
        "inf",
        "train.weight_decay",
    ),
    (
        "adam-epsilon-nan",
        "train.adam_epsilon",
        "nan",
        "train.adam_epsilon",
    ),
    (
        "adam-epsilon-zero",
        "train.adam_epsilon",
        "0.0",
        "train.adam_epsilon",
    ),
    (
        "adam-epsilon-tiny",
        "train.adam_epsilon",
        "1e-50",
        "train.adam_epsilon",
    ),
    (
        "max-grad-norm-nan",
        "train.max_grad_norm",
        "nan",
        "train.max_grad_norm",
    ),
    (
        "max-grad-norm-negative",
        "train.max_grad_norm",
        "-1.0",
        "train.max_grad_norm",
    ),
    (
        "max-grad-norm-inf",
        "train.max_grad_norm",
        "inf",
        "train.max_grad_norm",
    ),
    (
        "schedule-steps-zero",
        "train.schedule_steps",
        "0",
        "train.schedule_steps",
    ),
    (
        "schedule-within-warmup",
        "train.schedule_steps",
        "2\nwarmup_steps = 3",
        "train.schedule_steps",
    ),
    (
        "batch-size-zero",
        "train.batch_size",
        "0",
        "train.batch_size",
    ),
    (
        "batch-size-one",
        "train.batch_size",
        "1",
        "train.batch_size",
    ),
    (
        "batch-size-negative",
        "train.batch_size",
        "-8",
        "train.batch_size",
    ),
    ("epochs-zero", "train.epochs", "0", "train.epochs"),
    ("log-every-zero", "train.log_every", "0", "train.log_every"),
    (
        "grad-cache-zero",
        "train.grad_cache_chunk",
        "0",
        "train.grad_cache_chunk",
    ),
    ("optimizer-unknown", "train.optimizer", "\"sgd\"", "sgd"),
    (
        "unknown-train-key",
        "train.learning_rate",
        "1e-5",
        "learning_rate",
    ),
    ("max-len-zero", "model.max_len", "0", "model.max_len"),
    ("max-len-one", "model.max_len", "1", "model.max_len"),
    ("max-len-two", "model.max_len", "2", "model.max_len"),
    ("dropout-nan", "model.dropout", "nan", "model.dropout"),
    ("dropout-one", "model.dropout", "1.0", "model.dropout"),
    ("dropout-negative", "model.dropout", "-0.1", "model.dropout"),
    ("pooling-unknown", "model.pooling", "\"max\"", "max"),
    ("mlp-init-unknown", "model.mlp_init", "\"zeros\"", "zeros"),
    ("ratio-dash", "data.ratio", "\"1-3\"", "data.ratio"),
    ("ratio-zero", "data.ratio", "\"0:3\"", "data.ratio"),
    (
        "max-sentences-zero",
        "data.max_sentences",
        "0",
        "data.max_sentences",
    ),
    (
        "eval-every-zero",
        "eval.every_steps",
        "0",
        "eval.every_steps",
    ),
    ("eval-batch-zero", "eval.batch_size", "0", "eval.batch_size"),
    ("eval-task-unknown", "eval.tasks", "[\"sts99\"]", "sts99"),
    (
        "select-by-elsewhere",
        "eval.tasks",
        "[\"stsb-dev\"]\nselect_by = \"sts12\"",
        "eval.select_by",
    ),
    (
        "keep-last-zero",
        "checkpoint.keep_last",
        "0",
        "checkpoint.keep_last",
    ),
    (
        "checkpoint-every-zero",
        "checkpoint.every_steps",
        "0",
        "checkpoint.every_steps",
    ),
    ("filter-alpha-nan", "filter.alpha", "nan", "filter.alpha"),
    ("filter-beta-above-one", "filter.beta", "2.0", "filter.beta"),
    (
        "filter-offset-zero",
        "filter.fallback_offset",
        "0",
        "filter.fallback_offset",
    ),
    (
        "objective-unknown",
        "objective",
        "\"supersimcse\"",
        "supersimcse",
    ),
    ("objective-number", "objective", "3", "objective"),
    ("run-dir-number", "run_dir", "3", "run_dir"),
];

/// Objective sections: (case name, objective, its section's TOML, extra
/// data keys, what the message must name).
const OBJECTIVES: &[(&str, &str, &str, &str)] = &[
    ("gcse-width-nan", "gcse", "decay_width = nan", "gcse.decay_width"),
    ("gcse-width-zero", "gcse", "decay_width = 0.0", "gcse.decay_width"),
    ("gcse-width-tiny", "gcse", "decay_width = 1e-30", "gcse.decay_width"),
    ("gcse-decay-unknown", "gcse", "decay = \"sometimes\"", "sometimes"),
    ("distillcse-no-teacher", "distillcse", "kd = \"ce\"", "distillcse.teachers"),
    ("distillcse-tau-s-nan", "distillcse", "tau_s = nan\n[[distillcse.teachers]]\npath = \"model\"\npooling = \"avg\"", "distillcse.tau_s"),
    ("distillcse-tau-t-zero", "distillcse", "tau_t = 0.0\n[[distillcse.teachers]]\npath = \"model\"\npooling = \"avg\"", "distillcse.tau_t"),
    ("distillcse-lambda-negative", "distillcse", "lambda = -1.0\n[[distillcse.teachers]]\npath = \"model\"\npooling = \"avg\"", "distillcse.lambda"),
    ("distillcse-alpha-above-one", "distillcse", "alpha = 1.5\n[[distillcse.teachers]]\npath = \"model\"\npooling = \"avg\"", "distillcse.alpha"),
    ("distillcse-p-zero", "distillcse", "shuffle = { kind = \"group_p\", p = 0.0 }\n[[distillcse.teachers]]\npath = \"model\"\npooling = \"avg\"", "distillcse.shuffle"),
    ("distillcse-p-vanishing", "distillcse", "shuffle = { kind = \"group_p\", p = 1e-300 }\n[[distillcse.teachers]]\npath = \"model\"\npooling = \"avg\"", "distillcse.shuffle"),
    ("distillcse-p-nan", "distillcse", "shuffle = { kind = \"group_p\", p = nan }\n[[distillcse.teachers]]\npath = \"model\"\npooling = \"avg\"", "distillcse.shuffle"),
    ("distillcse-no-loss", "distillcse", "cl = false\nlambda = 0.0\n[[distillcse.teachers]]\npath = \"model\"\npooling = \"avg\"", "lambda"),
    ("rank-tau-s-nan", "rank", "tau_s = nan\n[[rank.teachers]]\npath = \"model\"\npooling = \"avg\"", "rank.tau_s"),
    ("rank-gamma-negative", "rank", "gamma = -1.0\n[[rank.teachers]]\npath = \"model\"\npooling = \"avg\"", "rank.gamma"),
    ("rank-beta-nan", "rank", "beta = nan\n[[rank.teachers]]\npath = \"model\"\npooling = \"avg\"", "rank.beta"),
    ("rank-width-zero", "rank", "decay_width = 0.0\n[[rank.teachers]]\npath = \"model\"\npooling = \"avg\"", "rank.decay_width"),
    ("rank-weight-nan", "rank", "[[rank.teachers]]\npath = \"model\"\npooling = \"avg\"\nweight = nan", "rank.teachers[0].weight"),
    ("rank-weights-zero", "rank", "[[rank.teachers]]\npath = \"model\"\npooling = \"avg\"\nweight = 0.0", "rank.teachers"),
    ("rank-no-teacher", "rank", "gamma = 1.0", "rank.teachers"),
    ("rank-buffer-theta", "rank", "[buffer]\ntheta = 2.0\n[[rank.teachers]]\npath = \"model\"\npooling = \"avg\"", "rank.buffer"),
];

pub fn cases(w: &World) -> Vec<Case> {
    let run = w.path("run");
    let mut cases = Vec::new();
    for &(name, key, value, names) in ONE_KEY {
        let path = w.experiment(name, &[(key, Some(value))]);
        cases.push(
            Case::error(name, &train(&path), &[&format!("{name}.toml"), names]).leaves_no(&run),
        );
    }
    // Stage 2 and rank want triplets or candidates: a file is named (it is
    // not read before the objective's section is checked).
    let triplets = w.write("triplets.jsonl", "");
    for &(name, objective, section, names) in OBJECTIVES {
        let quoted = format!("\"{objective}\"");
        let base = if objective == "gcse" {
            w.experiment(name, &[("objective", Some(&quoted)), ("data.domain", None)])
        } else {
            w.experiment(name, &[("objective", Some(&quoted))])
        };
        let mut text = std::fs::read_to_string(&base).unwrap();
        if objective == "gcse" {
            text.push_str(&format!("[[data.triplets]]\npath = \"{triplets}\"\n"));
        }
        // Sub-tables of the objective's section are written under it.
        let section = section.replace("[buffer]", &format!("[{objective}.buffer]"));
        text.push_str(&format!("[{objective}]\n{section}\n"));
        let path = w.write(&format!("configs/{name}.toml"), text);
        cases.push(
            Case::error(name, &train(&path), &[&format!("{name}.toml"), names]).leaves_no(&run),
        );
    }
    let raw = |name: &str, text: &[u8], names: &[&str]| {
        let path = w.write(&format!("configs/{name}.toml"), text);
        Case::error(name, &train(&path), names).leaves_no(&run)
    };
    cases.extend([
        raw("syntax-error", b"run_dir = \"run\"\n[model\npath = \"model\"\n", &["syntax-error.toml", "line 2"]),
        raw("not-utf8", b"run_dir = \"r\xe9\"\n", &["not-utf8.toml"]),
        raw("empty", b"", &["empty.toml", "run_dir"]),
        raw("no-model", b"run_dir = \"run\"\n[[data.domain]]\npath = \"sentences.txt\"\n", &["no-model.toml", "model"]),
        raw("no-data", b"run_dir = \"run\"\n[model]\npath = \"model\"\n", &["no-data.toml", "data"]),
        raw(
            "objective-section-not-table",
            b"run_dir = \"run\"\nobjective = \"gcse\"\ngcse = 3\n[model]\npath = \"model\"\n[[data.domain]]\npath = \"sentences.txt\"\n",
            &["objective-section-not-table.toml", "[gcse]"],
        ),
        Case::error("config-missing", &train("configs/none.toml"), &["none.toml"]).leaves_no(&run),
        Case::error("config-is-a-folder", &train("model"), &["model"]).leaves_no(&run),
    ]);
    // Files the experiment points at, read before a run is claimed.
    let path = |name: &str, set: &[(&str, Option<&str>)]| w.experiment(name, set);
    let latin1 = w.write("latin1.txt", b"a man is playing guitar .\ncaf\xe9 .\n");
    let short = w.write("short.txt", "a man .\nthe dog .\n");
    let jsonl = w.write(
        "sentences.jsonl",
        "{\"text\": \"a man .\"}\n{\"sentence\": \"the dog .\"}\n",
    );
    let source = |file: &str| format!("[{{ path = \"{file}\" }}]");
    let jsonl_source = format!("[{{ path = \"{jsonl}\", fields = [\"text\"] }}]");
    for (name, set, names) in [
        (
            "model-missing",
            vec![("model.path", Some("\"no-model\""))],
            vec!["no-model"],
        ),
        (
            "model-is-a-file",
            vec![("model.path", Some("\"sentences.txt\""))],
            vec!["sentences.txt"],
        ),
        (
            "max-len-above-positions",
            vec![("model.max_len", Some("4096"))],
            vec!["4096", "config.json"],
        ),
        (
            "sentences-missing",
            vec![("data.domain", Some(&source("nothing.txt")[..]))],
            vec!["nothing.txt"],
        ),
        (
            "sentences-latin1",
            vec![("data.domain", Some(&source(&latin1)[..]))],
            vec!["latin1.txt:2", "UTF-8"],
        ),
        (
            "too-few-for-a-batch",
            vec![("data.domain", Some(&source(&short)[..]))],
            vec!["train.batch_size"],
        ),
        (
            "jsonl-field-missing",
            vec![("data.domain", Some(&jsonl_source[..]))],
            vec!["sentences.jsonl:2", "text"],
        ),
        (
            "eval-data-missing",
            vec![
                ("eval.tasks", Some("[\"stsb-dev\"]")),
                ("eval.data", Some("\"no-senteval\"")),
            ],
            vec!["no-senteval"],
        ),
        (
            "test-data-missing",
            vec![
                ("eval.tasks", Some("[\"stsb-dev\"]")),
                ("eval.data", Some("\"partial-senteval\"")),
                ("eval.final_test", Some("true")),
            ],
            vec!["partial-senteval", "STS12"],
        ),
    ] {
        cases.push(Case::error(name, &train(&path(name, &set)), &names).leaves_no(&run));
    }
    crate::world::write_senteval(&w.path("partial-senteval"));
    std::fs::remove_dir_all(w.path("partial-senteval/STS/STS12-en-test")).unwrap();
    cases
}

#[test]
fn experiment_files() {
    let w = World::new("configs");
    let tally: Tally = run_table("experiment files", &w.dir, cases(&w));
    assert!(tally.cases >= 80, "{tally:?}");
    std::fs::remove_dir_all(&w.dir).unwrap();
}
