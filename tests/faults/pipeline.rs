//! `gcse pipeline` and `gcse study` on tiny stages (the tiny model, a
//! scripted LLM on loopback): a pipeline killed (SIGKILL) in each of its five
//! stages and rerun ends with the outputs of an uninterrupted run and never
//! redoes a finished stage; a changed key reruns that stage and those
//! downstream only; a study runs identical stages once; bad pipeline and
//! study files are errors naming the file, the stage and the key.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::llm_server::{scripted_completions, SCRIPTED_SOURCES};
use crate::harness::{run, run_table, Case, Outcome};
use crate::training::losses;
use crate::world::{edit, World, EXPERIMENT};

const STAGES: [&str; 5] = ["stage1", "synth", "filter", "stage2", "test"];

/// The world's files for a pipeline: `stage1.toml` (40 epochs of 3 steps,
/// a log line a step) and `sources.txt`; returns the pipeline text writing
/// in `dir` with the synthesis asking `url`.
fn pipeline(w: &World, dir: &str, url: &str) -> String {
    w.write("sources.txt", SCRIPTED_SOURCES[..6].join("\n") + "\n");
    w.write(
        "stage1.toml",
        edit(
            EXPERIMENT,
            &[
                ("train.epochs", Some("40")),
                ("train.lr", Some("1e-3")),
                ("train.log_every", Some("1")),
                ("checkpoint.every_steps", Some("5")),
            ],
        ),
    );
    format!(
        r#"dir = "{dir}"

[[stage]]
name = "stage1"
command = "train"
base = "stage1.toml"

[[stage]]
name = "synth"
command = "synth"
seed = 5
[[stage.sources.general]]
path = "sources.txt"
[stage.llm]
backend = "http"
[stage.llm.http]
endpoints = ["{url}"]
model = "scripted"
api = "completions"
in_flight = 1
retries = 0
timeout_s = 10
[stage.generate]
positives = 1
negatives = 2

[[stage]]
name = "filter"
command = "filter"
model = "@stage1"
input = "@synth/candidates.jsonl"
mode = "none"
batch_size = 4

[[stage]]
name = "stage2"
command = "train"
objective = "gcse"
[stage.model]
path = "@stage1"
max_len = 16
[[stage.data.triplets]]
path = "@filter"
[stage.train]
batch_size = 4
epochs = 30
lr = 1e-3
log_every = 1
[stage.checkpoint]
every_steps = 5
[stage.eval]
tasks = []
final_test = false

[[stage]]
name = "test"
command = "eval"
model = "@stage2"
data = "senteval"
tasks = ["stsb", "sickr"]
"#
    )
}

fn start(w: &World, config: &str, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_gcse"))
        .args([
            "pipeline",
            "--config",
            config,
            "--no-tui",
            "--backend",
            "cpu",
        ])
        .args(extra)
        .current_dir(&w.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Reads `child`'s stdout until a line holds `after` and, later, one holds
/// `then`; drains the rest meanwhile. Returns what it read so far.
fn wait_for(child: &mut Child, after: &str, then: &str) -> (String, JoinHandle<String>) {
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = String::new();
    let mut armed = false;
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        armed |= line.contains(after);
        if armed && line.contains(then) {
            break;
        }
    }
    let rest =
        std::thread::spawn(move || lines.map_while(|l| l.ok()).collect::<Vec<_>>().join("\n"));
    (seen, rest)
}

fn gcse(w: &World, args: &[&str]) -> Outcome {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    run(&w.dir, &args, &[], Duration::from_secs(600))
}

fn assert_ok(what: &str, out: &Outcome) {
    assert!(
        out.code == Some(0) && !out.hung,
        "{what}: exit {:?}\n{}\n{}",
        out.code,
        out.stdout,
        out.stderr
    );
}

/// The folder each stage of the pipeline in `dir` last ran in.
fn folder(w: &World, dir: &str, stage: &str) -> PathBuf {
    let link = w.path(dir).join(stage);
    w.path(dir)
        .join(std::fs::read_link(&link).unwrap_or_else(|e| panic!("{}: {e}", link.display())))
}

/// What a stage computed, to compare two runs by: bytes of its outputs,
/// the losses of a training run, the scores of an evaluation.
fn outputs(stage: &str, dir: &Path) -> Vec<(String, Value)> {
    let bytes = |name: &str| {
        let b = std::fs::read(dir.join(name))
            .unwrap_or_else(|e| panic!("{}/{name}: {e}", dir.display()));
        (name.to_string(), json!(String::from_utf8_lossy(&b)))
    };
    match stage {
        "stage1" | "stage2" => {
            // The tensors, not the file: its header's metadata comes in no
            // fixed order.
            let bytes = std::fs::read(dir.join("best/model.safetensors")).unwrap();
            let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            let mut names = file.names();
            names.sort();
            let mut weights = gcse::fingerprint::Fingerprint::new();
            for name in names {
                weights
                    .field(name.as_bytes())
                    .field(file.tensor(name).unwrap().data());
            }
            vec![
                ("losses".into(), json!(losses(dir))),
                ("best weights".into(), json!(weights.hex())),
            ]
        }
        "synth" => vec![bytes("knowledge.jsonl"), bytes("candidates.jsonl")],
        "filter" => vec![bytes("triplets.jsonl")],
        _ => {
            let results: Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap())
                    .unwrap();
            vec![("scores".into(), results["results"]["scores"].clone())]
        }
    }
}

#[test]
fn a_pipeline_killed_in_each_stage_ends_as_an_uninterrupted_one() {
    let w = World::new("pipeline");
    let llm = scripted_completions(Duration::from_millis(60));
    w.write("ref.toml", pipeline(&w, "ref", &llm.url));
    let whole = gcse(
        &w,
        &[
            "pipeline",
            "--config",
            "ref.toml",
            "--no-tui",
            "--backend",
            "cpu",
        ],
    );
    assert_ok("uninterrupted", &whole);
    for (i, stage) in STAGES.iter().enumerate() {
        assert!(
            whole.stdout.contains(&format!("[{}/5] {stage} (", i + 1))
                && whole.stdout.contains("first run"),
            "{}",
            whole.stdout
        );
    }
    assert!(
        whole.stdout.contains("results of stage `test`"),
        "{}",
        whole.stdout
    );

    let asked_whole = llm.count();
    let config = pipeline(&w, "out", &llm.url);
    w.write("pipeline.toml", &config);
    // Kill points: mid-training (a step logged), mid-synthesis (an answer
    // stored), and as filter, stage 2 and the evaluation start.
    let points: [(&str, &str); 5] = [
        ("[1/5] stage1", "step 8/"),
        ("[2/5] synth", "+ gcse synth"),
        ("[3/5] filter", "+ gcse filter"),
        ("[4/5] stage2", "step 8/"),
        ("[5/5] test", "+ gcse eval"),
    ];
    let mut resumed = Vec::new();
    let mut log = String::new();
    for (k, (after, then)) in points.iter().enumerate() {
        let mut child = start(&w, "pipeline.toml", &[]);
        let (seen, rest) = wait_for(&mut child, after, then);
        if *then == "+ gcse synth" {
            // Until a few answers are in.
            let answers = || llm.count();
            let at = answers();
            while answers() < at + 3 {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // SAFETY: our own child.
        assert_eq!(
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) },
            0
        );
        let _ = child.wait();
        let seen = seen + &rest.join().unwrap();
        log.push_str(&seen);
        // Every stage before the one killed is done, and none is redone.
        for (i, stage) in STAGES.iter().enumerate().take(k) {
            let line = format!("[{}/5] {stage} (", i + 1);
            let shown: Vec<&str> = seen.lines().filter(|l| l.starts_with(&line)).collect();
            let finished_before = i + 1 < k;
            if finished_before {
                assert!(
                    shown.len() == 1 && shown[0].contains(": done ("),
                    "kill {k}: {stage} redone:\n{seen}"
                );
            }
            if i + 1 == k && shown.iter().any(|l| l.contains("interrupted: resuming")) {
                resumed.push(*stage);
            }
        }
        // The stage's own child died with the pipeline.
        std::thread::sleep(Duration::from_millis(300));
    }
    let last = gcse(
        &w,
        &[
            "pipeline",
            "--config",
            "pipeline.toml",
            "--no-tui",
            "--backend",
            "cpu",
        ],
    );
    assert_ok("the last rerun", &last);
    if last
        .stdout
        .contains("[5/5] test (eval): running (interrupted: resuming)")
    {
        resumed.push("test");
    }
    for (i, stage) in STAGES[..4].iter().enumerate() {
        let line = format!("[{}/5] {stage} (", i + 1);
        let shown: Vec<&str> = last
            .stdout
            .lines()
            .filter(|l| l.starts_with(&line))
            .collect();
        assert!(
            shown.len() == 1 && shown[0].contains(": done ("),
            "{}",
            last.stdout
        );
    }
    assert!(
        resumed.contains(&"stage1") && resumed.contains(&"synth") && resumed.contains(&"stage2"),
        "killed mid-stage and resumed: {resumed:?}"
    );
    // Both training stages went on from a checkpoint.
    assert!(
        log.matches("resuming from the checkpoint of step").count() >= 2,
        "{log}"
    );
    for stage in STAGES {
        let (a, b) = (folder(&w, "ref", stage), folder(&w, "out", stage));
        assert_eq!(
            a.file_name(),
            b.file_name(),
            "{stage}: the same key in both folders"
        );
        assert_eq!(outputs(stage, &a), outputs(stage, &b), "{stage}");
    }
    // No request was asked twice but one in flight at the kill.
    let prompts: Vec<String> = llm.received().iter().map(|r| r.body.to_string()).collect();
    let (mut once, mut killed) = (
        prompts[..asked_whole].to_vec(),
        prompts[asked_whole..].to_vec(),
    );
    once.sort();
    killed.sort();
    let mut distinct = killed.clone();
    distinct.dedup();
    assert_eq!(distinct, once);
    assert!(
        killed.len() <= once.len() + 1,
        "{} requests for {}",
        killed.len(),
        once.len()
    );

    // A changed key in stage 2: stage 2 and the test run again, in new
    // folders; the rest is done.
    let before: Vec<PathBuf> = STAGES.iter().map(|s| folder(&w, "out", s)).collect();
    w.write(
        "pipeline.toml",
        config.replace("epochs = 30\nlr = 1e-3", "epochs = 30\nlr = 2e-3"),
    );
    let changed = gcse(
        &w,
        &[
            "pipeline",
            "--config",
            "pipeline.toml",
            "--no-tui",
            "--backend",
            "cpu",
        ],
    );
    assert_ok("changed", &changed);
    for (i, stage) in STAGES.iter().enumerate() {
        let line = changed
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("[{}/5] {stage} (", i + 1)))
            .unwrap();
        let after = folder(&w, "out", stage);
        if i < 3 {
            assert!(line.contains(": done ("), "{line}");
            assert_eq!(after, before[i]);
        } else {
            assert_ne!(after, before[i], "{stage}");
            assert!(
                before[i].join("pipeline-stage.json").is_file(),
                "the old folder stays"
            );
        }
    }
    assert!(
        changed
            .stdout
            .contains("[4/5] stage2 (train): running (settings changed: train.lr 0.001 -> 0.002)"),
        "{}",
        changed.stdout
    );
    assert!(
        changed
            .stdout
            .contains("[5/5] test (eval): running (upstream changed: stage2)"),
        "{}",
        changed.stdout
    );
    assert_eq!(std::fs::read_dir(w.path("out/stages")).unwrap().count(), 7);

    // The plan: all done; --only reruns one stage and nothing else.
    let plan = gcse(&w, &["pipeline", "--config", "pipeline.toml", "--dry-run"]);
    assert_ok("dry run", &plan);
    assert_eq!(
        plan.stdout.matches(": done (").count(),
        5,
        "{}",
        plan.stdout
    );
    let only = gcse(
        &w,
        &[
            "pipeline",
            "--config",
            "pipeline.toml",
            "--only",
            "filter",
            "--backend",
            "cpu",
        ],
    );
    assert_ok("only", &only);
    assert!(
        only.stdout
            .contains("[3/5] filter (filter): running (asked for"),
        "{}",
        only.stdout
    );
    assert_eq!(
        only.stdout.matches("): running").count(),
        1,
        "{}",
        only.stdout
    );
    std::fs::remove_dir_all(&w.dir).unwrap();
}

#[test]
fn a_study_runs_identical_stages_once() {
    let w = World::new("study");
    let llm = scripted_completions(Duration::from_millis(60));
    let text = pipeline(&w, "out", &llm.url)
        .replace("epochs = 40", "epochs = 2")
        .replace("epochs = 30", "epochs = 2");
    w.write("pipeline.toml", &text);
    w.write(
        "study.toml",
        r#"pipeline = "pipeline.toml"
seeds = [1, 2]
seed_keys = ["stage2.train.seed"]
[[variant]]
name = "official"
[[variant]]
name = "no-decay"
set = { "stage2.gcse.decay" = "none" }
"#,
    );
    let plan = gcse(&w, &["study", "--config", "study.toml", "--dry-run"]);
    assert_ok("study plan", &plan);
    assert!(
        plan.stdout
            .contains("stages: 20 in all; 11 would run, 9 shared between variants, 0 done before"),
        "{}",
        plan.stdout
    );
    assert!(!w.path("out").exists(), "a plan writes nothing");
    let first = gcse(
        &w,
        &[
            "study",
            "--config",
            "study.toml",
            "--no-tui",
            "--backend",
            "cpu",
        ],
    );
    assert_ok("study", &first);
    // 4 pipelines of 5 stages; stage 1, synthesis and filter once (run 1),
    // stage 2 and the test once per pipeline.
    let study: Value =
        serde_json::from_str(&std::fs::read_to_string(w.path("out/study.json")).unwrap()).unwrap();
    assert_eq!(
        study["counts"],
        json!({"planned": 20, "ran": 11, "to_run": 0, "shared": 9, "done": 0}),
        "{}",
        first.stdout
    );
    assert!(first
        .stdout
        .contains("stages: 20 in all; 11 ran, 9 shared between variants, 0 done before"));
    let table = std::fs::read_to_string(w.path("out/study.md")).unwrap();
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("| official") || l.starts_with("| no-decay"))
        .collect();
    assert_eq!(rows.len(), 2, "{table}");
    for row in rows {
        assert!(
            row.contains(" | 2 | ") && row.matches(" ± ").count() == 3,
            "{row}"
        );
    }
    assert_eq!(study["variants"][0]["seeds"], json!([1, 2]));
    assert_eq!(std::fs::read_dir(w.path("out/stages")).unwrap().count(), 11);
    // Again: nothing runs.
    let again = gcse(
        &w,
        &[
            "study",
            "--config",
            "study.toml",
            "--no-tui",
            "--backend",
            "cpu",
        ],
    );
    assert_ok("again", &again);
    assert!(
        again
            .stdout
            .contains("stages: 20 in all; 0 ran, 9 shared between variants, 11 done before"),
        "{}",
        again.stdout
    );
    std::fs::remove_dir_all(&w.dir).unwrap();
}

#[test]
fn bad_pipeline_and_study_files() {
    let w = World::new("pipeline-files");
    let good = pipeline(&w, "out", "http://127.0.0.1:9/v1");
    let cases_of = |name: &str, text: String, names: &[&str]| {
        let file = w.write(&format!("cases/{name}.toml"), text);
        Case::error(
            name,
            &["pipeline", "--config", &file, "--dry-run"],
            &[&[file.as_str()][..], names].concat(),
        )
    };
    let cases = vec![
        cases_of("no-dir", good.replacen("dir = \"out\"", "", 1), &["missing `dir`"]),
        cases_of("no-stages", "dir = \"out\"\n".into(), &["[[stage]]"]),
        cases_of("unknown-key", format!("colour = 1\n{good}"), &["unknown key `colour`"]),
        cases_of("unknown-command", good.replace("command = \"filter\"", "command = \"sift\""), &["stage `filter`", "unknown command \"sift\""]),
        cases_of("no-command", good.replace("command = \"filter\"\n", ""), &["stage `filter`", "missing `command`"]),
        cases_of("bad-name", good.replace("name = \"filter\"", "name = \"fil ter\""), &["stage 3", "`name`"]),
        cases_of("twice", good.replace("name = \"filter\"", "name = \"synth\""), &["stage `synth`", "a second stage"]),
        cases_of("ahead", good.replace("model = \"@stage1\"\ninput", "model = \"@stage2\"\ninput"), &["stage `filter`", "`model`", "no earlier stage `stage2`"]),
        cases_of("escape", good.replace("@synth/candidates.jsonl", "@synth/../x"), &["stage `filter`", "`input`"]),
        cases_of("own-output", good.replace("command = \"synth\"", "command = \"synth\"\nout_dir = \"x\""), &["stage `synth`", "`out_dir` is set by the pipeline"]),
        cases_of("no-base", good.replace("base = \"stage1.toml\"", "base = \"absent.toml\""), &["stage `stage1`", "absent.toml"]),
        cases_of("bad-flag", good.replace("mode = \"none\"", "mode = \"none\"\ncolour = \"red\""), &["stage `filter`", "--colour"]),
        cases_of("table-flag", good.replace("mode = \"none\"", "mode = \"none\"\n[stage.extra]\nx = 1"), &["stage `filter`", "`extra` is a table"]),
        cases_of("bad-train-key", good.replace("lr = 1e-3\nlog_every", "lr = \"fast\"\nlog_every"), &["stage `stage2`", "train.lr"]),
        cases_of("bad-synth-key", good.replace("positives = 1", "positives = 1\ncolour = 1"), &["stage `synth`", "colour"]),
        Case::error("from-unknown", &["pipeline", "--config", &w.write("ok.toml", &good), "--from", "nope"], &["no stage `nope`", "stage1, synth"]),
        Case::error("only-before-done", &["pipeline", "--config", "ok.toml", "--only", "filter", "--backend", "cpu"], &["stage `stage1` has not finished"]).leaves_no(&w.path("out/stages")),
        Case::error("study-no-pipeline", &["study", "--config", &w.write("s1.toml", "[[variant]]\nname = \"a\"\n")], &["s1.toml", "missing `pipeline`"]),
        Case::error("study-unknown-stage", &["study", "--config", &w.write("s2.toml", "pipeline = \"ok.toml\"\n[[variant]]\nname = \"a\"\nset = { \"stage9.train.lr\" = 1 }\n")], &["s2.toml", "a:", "no stage `stage9`"]),
        Case::error("study-output-key", &["study", "--config", &w.write("s3.toml", "pipeline = \"ok.toml\"\n[[variant]]\nname = \"a\"\nset = { \"stage1.run_dir\" = \"x\" }\n")], &["s3.toml", "`run_dir` is set by the pipeline"]),
        Case::error("study-seeds", &["study", "--config", &w.write("s4.toml", "pipeline = \"ok.toml\"\nseeds = [-1]\n")], &["s4.toml", "`seeds`"]),
        Case::error("study-twice", &["study", "--config", &w.write("s5.toml", "pipeline = \"ok.toml\"\n[[variant]]\nname = \"a\"\n[[variant]]\nname = \"a\"\n")], &["s5.toml", "a second variant `a`"]),
    ];
    let tally = run_table("pipeline files", &w.dir, cases);
    assert_eq!(tally.errors, 22, "{tally:?}");
    std::fs::remove_dir_all(&w.dir).unwrap();
}

#[test]
fn every_shipped_pipeline_study_and_cycle_file_plans() {
    let Some(_) = crate::common::senteval_dir("every_shipped_pipeline_study_and_cycle_file_plans")
    else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(root.join("configs")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let command = match name.split('-').next() {
            Some("pipeline") => "pipeline",
            Some("study") => "study",
            _ if name.ends_with("-cycle.toml") => "distill-cycle",
            _ => continue,
        };
        let file = format!("configs/{name}");
        let out = run(
            root,
            &[command.into(), "--config".into(), file, "--dry-run".into()],
            &[],
            Duration::from_secs(300),
        );
        assert_ok(&name, &out);
        assert!(out.stdout.contains("[1/"), "{name}: {}", out.stdout);
        seen.push(name);
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "pipeline-gcse-bert-base.toml",
            "pipeline-quickstart.toml",
            "quickstart-cycle.toml",
            "study-gcse-table4.toml",
            "study-quickstart.toml"
        ]
    );
}
