//! `gcse distill-cycle` on the tiny model: two cycles in which each kind
//! learns the other's scores of the unlabeled pairs, killed in a stage and
//! rerun (finished stages done, the killed one resumed), then run again
//! (nothing runs); a mutual file (two bi-encoders) plans its stages; cycle
//! and experiment files whose pairs are an evaluation test set are refused.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::tiny_sentences;
use crate::harness::{run, run_table, Case};
use crate::world::World;

/// A cycle file of 2 cycles on the tiny model (one bi-encoder, or two).
fn cycle_file(bi_encoders: usize) -> String {
    let bi = |loss: &str| {
        format!(
            r#"
[[bi]]
[bi.model]
path = "model"
pooling = "avg"
eval_pooling = "avg"
max_len = 16
[bi.train]
batch_size = 8
epochs = 2
lr = 1e-3
log_every = 1
[bi.checkpoint]
every_steps = 2
[bi.eval]
data = "senteval"
[bi.pairs]
loss = "{loss}"
"#
        )
    };
    let bis: String = ["mse", "cosent"][..bi_encoders]
        .iter()
        .map(|l| bi(l))
        .collect();
    format!(
        r#"dir = "cycles"
cycles = 2
[pairs]
sources = ["pairs:pairs.jsonl"]
data = "senteval"
[cross]
[cross.model]
path = "model"
max_len = 24
[cross.train]
batch_size = 8
epochs = 2
lr = 1e-3
log_every = 1
[cross.checkpoint]
every_steps = 2
[cross.eval]
data = "senteval"
{bis}"#
    )
}

/// 48 pairs of the tiny vocabulary's sentences.
fn write_pairs(w: &World) {
    let s = tiny_sentences(24);
    let lines: Vec<String> = (0..24)
        .flat_map(|i| [(i, (i + 1) % 24), (i, (i + 7) % 24)])
        .map(|(i, j)| serde_json::json!({"a": s[i], "b": s[j]}).to_string())
        .collect();
    w.write("pairs.jsonl", lines.join("\n") + "\n");
}

fn args(extra: &[&str]) -> Vec<String> {
    [
        "distill-cycle",
        "--config",
        "cycle.toml",
        "--backend",
        "cpu",
        "--no-tui",
    ]
    .iter()
    .chain(extra)
    .map(|s| s.to_string())
    .collect()
}

fn labels(w: &World, stage: &str) -> (Vec<String>, Vec<f64>) {
    let path = w.path(&format!("cycles/{stage}/teachers/pair-labels.json"));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let strings = |k: &str| -> Vec<String> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let scores = v["scores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    (strings("teachers"), scores)
}

#[test]
fn two_cycles_teach_each_kind_with_the_other_resume_when_killed_and_rerun_to_nothing() {
    let w = World::new("cycle");
    write_pairs(&w);
    w.write("cycle.toml", cycle_file(1));
    // Killed once bi1 has trained a few steps.
    let mut child = Command::new(env!("CARGO_BIN_EXE_gcse"))
        .args(args(&[]))
        .current_dir(&w.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    let mut in_bi1 = false;
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        in_bi1 |= line.contains("bi1 (train): running");
        if in_bi1 && line.contains("step 3/") {
            break;
        }
    }
    assert!(in_bi1, "bi1 started:\n{seen}");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(seen.contains("unlabeled pairs: 48"), "{seen}");

    let second = run(&w.dir, &args(&[]), &[], Duration::from_secs(600));
    assert_eq!(second.code, Some(0), "{}\n{}", second.stdout, second.stderr);
    let out = &second.stdout;
    assert!(out.contains("cross1 (train): done"), "{out}");
    assert!(
        out.contains("bi1 (train): running (interrupted: resuming)"),
        "{out}"
    );
    for stage in [
        "cross2 (train)",
        "bi2 (train)",
        "test1 (eval)",
        "test2 (eval)",
    ] {
        assert!(
            out.contains(&format!("{stage}: running (first run)")),
            "{stage}:\n{out}"
        );
    }
    // Each kind learnt the other's scores of the 48 pairs.
    let (teachers, scores) = labels(&w, "cross1");
    assert_eq!(teachers, ["model"]);
    assert_eq!(scores.len(), 48);
    for (stage, teacher) in [("bi1", "cross1"), ("cross2", "bi1"), ("bi2", "cross2")] {
        let (teachers, scores) = labels(&w, stage);
        assert_eq!(teachers.len(), 1);
        assert!(
            teachers[0].contains(&format!("stages/{teacher}-")) && teachers[0].ends_with("best"),
            "{stage} learns from {teacher}'s best model: {teachers:?}"
        );
        assert_eq!(scores.len(), 48);
        assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)));
        assert!(
            scores.iter().any(|&s| s != scores[0]),
            "{stage}: scores vary"
        );
    }
    let cross_best = w.path("cycles/cross2/best");
    let config = std::fs::read_to_string(cross_best.join("config.json")).unwrap();
    assert!(config.contains("BertForSequenceClassification"), "{config}");
    let summary = std::fs::read_to_string(w.path("cycles/cycles.md")).unwrap();
    assert!(
        summary.contains("| 1 | ") && summary.contains("| 2 | "),
        "{summary}"
    );
    assert!(summary.contains("cross-encoder (cycle") && summary.contains("bi-encoder (cycle"));
    assert!(
        summary.contains("STS12") && summary.contains("SICK-R"),
        "{summary}"
    );
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(w.path("cycles/cycles.json")).unwrap())
            .unwrap();
    assert_eq!(json["best"].as_array().unwrap().len(), 2);
    assert_eq!(json["test"].as_array().unwrap().len(), 2);

    let third = run(&w.dir, &args(&[]), &[], Duration::from_secs(300));
    assert_eq!(third.code, Some(0), "{}", third.stderr);
    for stage in ["cross1", "bi1", "cross2", "bi2", "test1", "test2"] {
        assert!(
            third.stdout.contains(&format!("{stage} (")),
            "{stage}:\n{}",
            third.stdout
        );
    }
    assert_eq!(
        third.stdout.matches("): done").count(),
        6,
        "{}",
        third.stdout
    );
    assert!(!third.stdout.contains("running"), "{}", third.stdout);
    assert_eq!(
        std::fs::read_to_string(w.path("cycles/cycles.md")).unwrap(),
        summary
    );
    std::fs::remove_dir_all(&w.dir).unwrap();
}

#[test]
fn mutual_distillation_plans_two_bi_encoders_per_cycle_and_test_sets_are_refused() {
    let w = World::new("cycle-files");
    write_pairs(&w);
    w.write("cycle.toml", cycle_file(2));
    let plan = run(&w.dir, &args(&["--dry-run"]), &[], Duration::from_secs(120));
    assert_eq!(plan.code, Some(0), "{}", plan.stderr);
    for stage in ["cross1", "bi1a", "bi1b", "cross2", "bi2a", "bi2b"] {
        assert!(
            plan.stdout.contains(&format!("{stage} (train): would run")),
            "{stage}:\n{}",
            plan.stdout
        );
    }
    assert!(
        plan.stdout.contains("2 bi-encoders (mutual)"),
        "{}",
        plan.stdout
    );
    let test_file = "senteval/STS/STSBenchmark/sts-test.csv";
    let mut cases = vec![
        Case::error(
            "a cycle's pair source is a test set",
            &[
                "distill-cycle",
                "--config",
                &w.write(
                    "bad1.toml",
                    cycle_file(1).replace("pairs:pairs.jsonl", &format!("pairs:{test_file}")),
                ),
            ],
            &["bad1.toml", "pairs.sources", "STS-B test set"],
        ),
        Case::error(
            "an unknown pair source",
            &[
                "distill-cycle",
                "--config",
                &w.write(
                    "bad2.toml",
                    cycle_file(1).replace("pairs:pairs.jsonl", "stsb-test"),
                ),
            ],
            &["bad2.toml", "stsb-test", "is not a source"],
        ),
        Case::error(
            "a [cross] table sets the teachers",
            &[
                "distill-cycle",
                "--config",
                &w.write(
                    "bad3.toml",
                    cycle_file(1) + "[cross.cross]\nteachers = [\"model\"]\n",
                ),
            ],
            &["bad3.toml", "cross.teachers", "set by distill-cycle"],
        ),
    ];
    let experiment = |name: &str, pairs: &str| {
        w.write(
            &format!("{name}.toml"),
            format!(
                "run_dir = \"run-{name}\"\nobjective = \"cross\"\n[model]\npath = \"model\"\n\
                 [eval]\ntasks = []\nfinal_test = false\ndata = \"senteval\"\n[cross]\npairs = [\"{pairs}\"]\n"
            ),
        )
    };
    cases.push(Case::error(
        "a cross objective's pair file is a test set",
        &[
            "train",
            "--config",
            &experiment("bad4", "senteval/SICK/SICK_test_annotated.txt"),
        ],
        &["bad4.toml", "cross.pairs", "SICK-R test set"],
    ));
    cases.push(Case::error(
        "a cross objective reads [cls] only",
        &[
            "train",
            "--config",
            &experiment("bad5", "pairs.jsonl"),
            "--set",
            "model.pooling=avg",
        ],
        &["bad5.toml", "model.pooling", "cls"],
    ));
    let tally = run_table("distill-cycle files", &w.dir, cases);
    assert_eq!(tally.errors, 5, "{tally:?}");
    std::fs::remove_dir_all(&w.dir).unwrap();
}
