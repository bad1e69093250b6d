//! `gcse train` end to end: step parity with PyTorch, exact resume (after a
//! clean stop and after SIGKILL mid-checkpoint), evaluation and best-model
//! selection, and export.

mod common;
mod toy;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{gcse, temp_dir, tiny_sentences, write_tiny_model};
use gcse::model::config::Architecture;
use gcse::train::metrics_log::{read_log, EvalEntry, LogEntry, StatsEntry};
use gcse::train::tfevents::read::{values, Read};

/// Writes an experiment file and returns its path; `model_keys` go into
/// `[model]`, `extra` after the data.
fn experiment(
    dir: &Path,
    model: &Path,
    sentences: &Path,
    model_keys: &str,
    extra: &str,
) -> PathBuf {
    let text = format!(
        r#"run_dir = "{run}"
[model]
path = "{model}"
{model_keys}
[[data.domain]]
path = "{sentences}"
{extra}"#,
        run = dir.join("run").display(),
        model = model.display(),
        sentences = sentences.display(),
    );
    write_experiment(dir, &text)
}

/// Taken by the tests that train or draw dropout in this process (the
/// others run the binary): the CPU backend's random state is one per
/// process, so two of them at once would draw from each other's stream.
static IN_PROCESS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Writes `dir/exp.toml` and returns its path.
fn write_experiment(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("exp.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Every entry of a run's metrics.jsonl; every line must be one.
fn entries(run: &Path) -> Vec<LogEntry> {
    let path = run.join("metrics.jsonl");
    let entries = read_log(&path).unwrap();
    let lines = std::fs::read_to_string(&path).unwrap().lines().count();
    assert_eq!(
        entries.len(),
        lines,
        "every line of {} is an entry",
        path.display()
    );
    entries
}

/// The step entries of a run's metrics.jsonl, as (step, loss).
fn losses(run: &Path) -> Vec<(u64, f64)> {
    entries(run)
        .iter()
        .filter_map(|e| match e {
            LogEntry::Step(s) => Some((s.step as u64, s.loss)),
            _ => None,
        })
        .collect()
}

fn evals(run: &Path) -> Vec<EvalEntry> {
    entries(run)
        .into_iter()
        .filter_map(|e| match e {
            LogEntry::Eval(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn stats(run: &Path, kind: &str) -> Vec<StatsEntry> {
    entries(run)
        .into_iter()
        .filter_map(|e| match e {
            LogEntry::Stats(s) if s.kind == kind => Some(s),
            _ => None,
        })
        .collect()
}

/// `gcse train --config CONFIG --no-tui EXTRA...`: (success, stdout, stderr).
fn try_train(config: &Path, extra: &[&str]) -> (bool, String, String) {
    let mut args = vec!["train", "--config", config.to_str().unwrap(), "--no-tui"];
    args.extend_from_slice(extra);
    gcse(&args)
}

/// [`try_train`] that must succeed; its stdout.
fn train(config: &Path, extra: &[&str]) -> String {
    let (ok, out, err) = try_train(config, extra);
    assert!(ok, "gcse train {extra:?} failed:\n{out}\n{err}");
    out
}

/// The run's TensorBoard file read back: it holds the numbers of
/// metrics.jsonl, each once (after resumes too), and the first event names
/// the file version. Returns what was read.
fn events_match_the_log(run: &Path) -> Vec<Read> {
    let bytes = std::fs::read(run.join("events.out.tfevents.gcse")).unwrap();
    let read = values(&bytes).unwrap();
    assert_eq!(read.first(), Some(&Read::Version("brain.Event:2".into())));
    let scalar = |tag: &str| -> Vec<(i64, f32)> {
        read.iter()
            .filter_map(|r| match r {
                Read::Scalar {
                    step,
                    tag: t,
                    value,
                } if t == tag => Some((*step, *value)),
                _ => None,
            })
            .collect()
    };
    let logged: Vec<(i64, f32)> = losses(run)
        .into_iter()
        .map(|(step, loss)| (step as i64, loss as f32))
        .collect();
    assert_eq!(
        scalar("train/loss"),
        logged,
        "train/loss as in metrics.jsonl"
    );
    for eval in evals(run) {
        for (task, scores) in &eval.tasks {
            let tag = format!("dev/{task}/{}", scores.primary);
            let value = eval.primary(task).unwrap() as f32;
            assert!(
                scalar(&tag).contains(&(eval.step as i64, value)),
                "{tag} at step {}",
                eval.step
            );
        }
    }
    read
}

fn assert_same_losses(ours: &[(u64, f64)], reference: &[(u64, f64)], tolerance: f64, what: &str) {
    assert_eq!(
        ours.iter().map(|l| l.0).collect::<Vec<_>>(),
        reference.iter().map(|l| l.0).collect::<Vec<_>>(),
        "{what}: logged steps"
    );
    for ((step, a), (_, b)) in ours.iter().zip(reference) {
        assert!(
            (a - b).abs() < tolerance,
            "{what}: step {step} loss {a} vs {b}"
        );
    }
    let largest = ours
        .iter()
        .zip(reference)
        .map(|((_, a), (_, b))| (a - b).abs())
        .fold(0.0f64, f64::max);
    eprintln!("{what}: largest loss difference {largest:.2e}");
}

/// A fresh run of `config` into `run` stopped after `step` steps, `between`
/// applied to the stopped run, then resumed to the end.
fn stop_and_resume(config: &Path, run: &Path, step: usize, between: impl FnOnce(&Path)) {
    std::fs::remove_dir_all(run).unwrap();
    train(
        config,
        &["--backend", "cpu", "--stop-after", &step.to_string()],
    );
    between(run);
    let out = train(config, &["--backend", "cpu", "--resume"]);
    assert!(
        out.contains(&format!("resuming from the checkpoint of step {step}")),
        "{out}"
    );
}

/// Five steps of all-MiniLM-L6-v2 against PyTorch's (f32) on `cpu` and
/// `wgpu`; then `train.precision = "f16-mixed"` on `wgpu` where the adapter
/// has 16-bit shader floats (lavapipe has, so CI runs it): its losses
/// follow the f32 ones to f16's rounding without equalling them, every
/// step logs the loss scale, the checkpoint saves it, the exported weights
/// are f32; and the precisions a device or the trainer cannot take are
/// refused before anything is written.
#[test]
fn five_steps_match_pytorch_on_cpu_and_wgpu_and_f16_mixed_follows_them() {
    let Some(model) = common::minilm_dir("five_steps_match_pytorch") else {
        return;
    };
    let golden = common::fixture("minilm_train_steps.json");
    let sentences =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/train_sentences.txt");
    let n = std::fs::read_to_string(&sentences).unwrap().lines().count();
    // One batch holding every sentence; one step an epoch, so every step
    // sees the same batch (InfoNCE does not depend on the row order).
    let model_keys = format!(
        "pooling = \"cls\"\nmlp_init = \"pretrained\"\ndropout = 0.0\nmax_len = {}",
        golden["max_len"]
    );
    let extra = format!(
        r#"[train]
batch_size = {n}
epochs = {steps}
lr = {lr}
warmup_steps = {warmup}
temperature = {tau}
max_grad_norm = {clip}
adam_epsilon = {eps}
weight_decay = {wd}
[eval]
tasks = []
final_test = false
"#,
        steps = golden["steps"],
        lr = golden["lr"],
        warmup = golden["warmup_steps"],
        tau = golden["temperature"],
        clip = golden["max_grad_norm"],
        eps = golden["adam_epsilon"],
        wd = golden["weight_decay"],
    );
    let reference: Vec<(u64, f64)> = golden["losses"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, l)| (i as u64 + 1, l.as_f64().unwrap()))
        .collect();
    let mut runs = Vec::new();
    for backend in ["cpu", "wgpu"] {
        let dir = temp_dir(&format!("parity-{backend}"));
        let config = experiment(&dir, &model, &sentences, &model_keys, &extra);
        train(&config, &["--backend", backend]);
        runs.push(losses(&dir.join("run")));
        std::fs::remove_dir_all(&dir).unwrap();
    }
    assert_same_losses(&runs[0], &reference, 1e-5, "cpu vs PyTorch");
    assert_same_losses(&runs[1], &reference, 1e-5, "wgpu vs PyTorch");
    assert_same_losses(&runs[1], &runs[0], 1e-4, "wgpu vs cpu");

    let dir = temp_dir("parity-f16-mixed");
    let config = experiment(&dir, &model, &sentences, &model_keys, &extra);
    let run = dir.join("run");
    let mixed = ["--backend", "wgpu", "--set", "train.precision=f16-mixed"];
    let (ok, _, err) = try_train(
        &config,
        &["--backend", "cpu", "--set", "train.precision=f16-mixed"],
    );
    assert!(
        !ok && err.contains("f16-mixed is not available on cpu")
            && err.contains(config.to_str().unwrap()),
        "{err}"
    );
    let (ok, _, err) = try_train(
        &config,
        &["--backend", "wgpu", "--set", "train.precision=f16"],
    );
    assert!(
        !ok && err.contains("`train.precision` f16 would keep the weights"),
        "{err}"
    );
    assert!(!run.exists(), "a refused run left {}", run.display());
    if !wgpu_computes_in_f16("five_steps_match_pytorch (f16-mixed)") {
        return;
    }
    train(&config, &mixed);
    let half = losses(&run);
    assert_same_losses(&half, &runs[1], 1e-3, "wgpu f16-mixed vs f32");
    assert!(
        half.iter().zip(&runs[1]).any(|(a, b)| a.1 != b.1),
        "f16-mixed gave the f32 losses bit for bit"
    );
    let scales: Vec<Option<f64>> = entries(&run)
        .iter()
        .filter_map(|e| match e {
            LogEntry::Step(s) => Some(s.loss_scale),
            _ => None,
        })
        .collect();
    assert_eq!(scales, vec![Some(65536.0); half.len()]);
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state_file(&run)).unwrap()).unwrap();
    assert_eq!(state["loss_scale"]["scale"], 65536.0);
    assert_eq!(state["loss_scale"]["good_steps"], half.len());
    let weights = std::fs::read(run.join("best/model.safetensors")).unwrap();
    let weights = safetensors::SafeTensors::deserialize(&weights).unwrap();
    for (name, view) in weights.tensors() {
        assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Whether this machine has a WGPU adapter with 16-bit shader floats (CI's
/// lavapipe has); if not, says that `test` skips and why.
fn wgpu_computes_in_f16(test: &str) -> bool {
    match gcse::backend::resolve(gcse::backend::BackendKind::Wgpu) {
        Ok(gcse::backend::Resolved::Wgpu {
            shader_f16: true, ..
        }) => true,
        other => {
            let why = other.map_or_else(|e| e.to_string(), |r| format!("{r}: no 16-bit floats"));
            common::skip(test, &why);
            false
        }
    }
}

/// A tiny model and 24 distinct sentences of its vocabulary.
fn tiny_setup(dir: &Path) -> (PathBuf, PathBuf) {
    let model = dir.join("model");
    write_tiny_model(&model, Architecture::Bert, 3);
    let path = dir.join("sentences.txt");
    std::fs::write(&path, tiny_sentences(24).join("\n") + "\n").unwrap();
    (model, path)
}

/// Dropout on (the tiny model's 0.1), 3 epochs of 3 steps, warm-up, a
/// checkpoint every 2 steps.
const RESUMABLE: &str = r#"[train]
batch_size = 8
epochs = 3
lr = 1e-3
warmup_steps = 2
[eval]
tasks = []
final_test = false
[checkpoint]
every_steps = 2
keep_last = 1
"#;

/// A tiny [`RESUMABLE`] run trained without interruption: its directory,
/// experiment file, run directory (removed again) and losses.
fn uninterrupted(name: &str) -> (PathBuf, PathBuf, PathBuf, Vec<(u64, f64)>) {
    let dir = temp_dir(name);
    let (model, sentences) = tiny_setup(&dir);
    let config = experiment(&dir, &model, &sentences, "max_len = 16", RESUMABLE);
    let run = dir.join("run");
    train(&config, &["--backend", "cpu"]);
    let whole = losses(&run);
    assert_eq!(whole.len(), 9);
    std::fs::remove_dir_all(&run).unwrap();
    (dir, config, run, whole)
}

#[test]
fn a_stopped_and_resumed_run_has_the_losses_of_an_uninterrupted_one() {
    let (dir, config, run, whole) = uninterrupted("resume");

    for stop in [1, 4, 7] {
        let out = train(
            &config,
            &["--backend", "cpu", "--stop-after", &stop.to_string()],
        );
        assert!(out.contains(&format!("stopped at step {stop}")), "{out}");
        let out = train(&config, &["--backend", "cpu", "--resume"]);
        assert!(
            out.contains(&format!("resuming from the checkpoint of step {stop}")),
            "{out}"
        );
        assert_same_losses(
            &losses(&run),
            &whole,
            1e-5,
            &format!("stopped after {stop}, resumed"),
        );
        events_match_the_log(&run);
        std::fs::remove_dir_all(&run).unwrap();
    }

    // Without --resume an existing run is never overwritten.
    train(&config, &["--backend", "cpu", "--stop-after", "2"]);
    let (ok, _, err) = try_train(&config, &["--backend", "cpu"]);
    assert!(!ok && err.contains("--resume"), "{err}");
    // Nor resumed under a changed experiment.
    let changed = std::fs::read_to_string(&config)
        .unwrap()
        .replace("lr = 1e-3", "lr = 2e-3");
    std::fs::write(&config, changed).unwrap();
    let (ok, _, err) = try_train(&config, &["--resume"]);
    assert!(!ok && err.contains("differs"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `f16-mixed` on the tiny model (`wgpu` with 16-bit shader floats): its
/// large initial weights overflow f16 at the first loss scales, so steps are
/// skipped (no gradient norm logged, the scale halved each time) until the
/// scale fits; a run stopped after such steps and resumed logs the losses
/// and scales of the uninterrupted run.
#[test]
fn f16_mixed_skips_overflowing_steps_and_resumes_with_its_loss_scale() {
    if !wgpu_computes_in_f16("f16_mixed_skips_overflowing_steps") {
        return;
    }
    let dir = temp_dir("f16-mixed-resume");
    let (model, sentences) = tiny_setup(&dir);
    let config = experiment(&dir, &model, &sentences, "max_len = 16", RESUMABLE);
    let run = dir.join("run");
    let mixed = ["--backend", "wgpu", "--set", "train.precision=f16-mixed"];
    let steps = |run: &Path| -> Vec<(usize, f64, Option<f64>, Option<f64>)> {
        entries(run)
            .iter()
            .filter_map(|e| match e {
                LogEntry::Step(s) => Some((s.step, s.loss, s.grad_norm, s.loss_scale)),
                _ => None,
            })
            .collect()
    };
    train(&config, &mixed);
    let whole = steps(&run);
    eprintln!("{whole:?}");
    assert_eq!(whole.len(), 9);
    let scales: Vec<f64> = whole.iter().map(|s| s.3.unwrap()).collect();
    assert_eq!(scales[0], 65536.0);
    for (i, pair) in whole.windows(2).enumerate() {
        let skipped = pair[0].2.is_none();
        let expected = if skipped { scales[i] / 2.0 } else { scales[i] };
        assert_eq!(pair[1].3, Some(expected), "step {}: {whole:?}", pair[1].0);
    }
    assert!(
        whole[0].2.is_none(),
        "the first step did not overflow: {whole:?}"
    );
    assert!(
        whole.iter().any(|s| s.2.is_some()),
        "every step overflowed: {whole:?}"
    );
    std::fs::remove_dir_all(&run).unwrap();
    let mut stopped = mixed.to_vec();
    stopped.extend(["--stop-after", "4"]);
    train(&config, &stopped);
    let mut resumed = mixed.to_vec();
    resumed.push("--resume");
    train(&config, &resumed);
    let again = steps(&run);
    for (a, b) in whole.iter().zip(&again) {
        assert_eq!(
            (a.0, a.2.is_some(), a.3),
            (b.0, b.2.is_some(), b.3),
            "{whole:?}\n{again:?}"
        );
        assert!((a.1 - b.1).abs() < 1e-4, "{whole:?}\n{again:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn grad_cache_trains_the_runs_of_the_plain_step() {
    let (dir, config, run, whole) = uninterrupted("grad-cache-run");
    let plain = std::fs::read_to_string(&config).unwrap();
    // One chunk of the whole batch (8 sentences, 16 sequences) draws the
    // plain step's dropout masks: the same run.
    for (chunk, same) in [(16, true), (5, false)] {
        let text = plain.replace(
            "[train]\n",
            &format!("[train]\ngrad_cache_chunk = {chunk}\n"),
        );
        std::fs::write(&config, text).unwrap();
        train(&config, &["--backend", "cpu"]);
        let cached = losses(&run);
        if same {
            assert_same_losses(&cached, &whole, 1e-5, "GradCache, one chunk");
        } else {
            assert_eq!(cached.len(), whole.len());
            assert!(cached.iter().all(|(_, l)| l.is_finite()), "{cached:?}");
        }
        std::fs::remove_dir_all(&run).unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_run_killed_mid_checkpoint_resumes_from_the_previous_one() {
    let (dir, config, run, whole) = uninterrupted("sigkill");

    let mut child = Command::new(env!("CARGO_BIN_EXE_gcse"))
        .args([
            "train",
            "--config",
            config.to_str().unwrap(),
            "--no-tui",
            "--backend",
            "cpu",
        ])
        .env(gcse::train::checkpoint::PAUSE_IN_CHECKPOINT, "4")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = Vec::new();
    for line in stderr.lines() {
        let line = line.unwrap();
        let paused = line.contains("half written");
        seen.push(line);
        if paused {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        seen.last().is_some_and(|l| l.contains("half written")),
        "{seen:?}"
    );
    let checkpoints = run.join("checkpoints");
    assert!(checkpoints.join("step-00000002/state.json").is_file());
    assert!(
        checkpoints.join("step-00000004.tmp").is_dir(),
        "the half-written checkpoint is left as .tmp"
    );

    let out = train(&config, &["--backend", "cpu", "--resume"]);
    assert!(
        out.contains("resuming from the checkpoint of step 2"),
        "{out}"
    );
    assert_same_losses(
        &losses(&run),
        &whole,
        1e-5,
        "killed at step 4's checkpoint, resumed",
    );
    assert!(!checkpoints.join("step-00000004.tmp").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn evaluation_keeps_the_best_model_and_runs_export_and_embed() {
    let Some(senteval) = common::senteval_dir("evaluation_keeps_the_best_model") else {
        return;
    };
    let dir = temp_dir("best");
    let (model, sentences) = tiny_setup(&dir);
    let extra = format!(
        r#"[train]
batch_size = 8
max_steps = 3
lr = 1e-3
[eval]
every_steps = 1
tasks = ["sickr-dev"]
select_by = "sickr-dev"
final_test = false
data = "{}"
[checkpoint]
keep_last = 1
"#,
        senteval.display()
    );
    let config = experiment(&dir, &model, &sentences, "max_len = 16", &extra);
    let run = dir.join("run");
    train(&config, &["--backend", "cpu"]);
    let scored: Vec<(u64, f64)> = evals(&run)
        .iter()
        .map(|e| (e.step as u64, e.primary("sickr-dev").unwrap()))
        .collect();
    assert_eq!(
        scored.iter().map(|s| s.0).collect::<Vec<_>>(),
        [0, 1, 2, 3],
        "the start and every step"
    );
    let (best_step, best) = scored
        .iter()
        .fold((0, f64::MIN), |acc, &s| if s.1 > acc.1 { s } else { acc });
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("best/gcse.json")).unwrap())
            .unwrap();
    assert_eq!(meta["provenance"]["step"], best_step, "{scored:?}");
    assert!((meta["provenance"]["spearman"].as_f64().unwrap() - best).abs() < 1e-12);
    for file in ["loss.png", "sts_dev.png", "dashboard.png", "config.toml"] {
        assert!(run.join(file).is_file(), "{file} in the run directory");
    }
    let written = events_match_the_log(&run);
    // A run of an earlier version gets its event file from `gcse plot`.
    std::fs::remove_file(run.join("events.out.tfevents.gcse")).unwrap();
    let (ok, out, err) = gcse(&["plot", run.to_str().unwrap()]);
    assert!(ok && out.contains("events.out.tfevents.gcse"), "{out}{err}");
    let backfilled = events_match_the_log(&run);
    assert_eq!(written.len(), backfilled.len());

    // The run directory stands for its best model; `export` writes the same
    // model, and any checkpoint.
    let exported = dir.join("exported");
    let (ok, out, err) = gcse(&[
        "export",
        run.to_str().unwrap(),
        "--to",
        exported.to_str().unwrap(),
    ]);
    assert!(ok, "{out}{err}");
    for file in [
        "config.json",
        "model.safetensors",
        "vocab.txt",
        "modules.json",
        "1_Pooling/config.json",
        "gcse.json",
    ] {
        assert!(exported.join(file).is_file(), "{file} exported");
    }
    let input = dir.join("input.txt");
    std::fs::copy(&sentences, &input).unwrap();
    let embed = |model: &Path, out: &str| -> Vec<f64> {
        let path = dir.join(out);
        let (ok, o, e) = gcse(&[
            "embed",
            "--backend",
            "cpu",
            "--model",
            model.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            path.to_str().unwrap(),
        ]);
        assert!(ok, "{o}{e}");
        assert!(
            e.lines()
                .any(|l| l.starts_with("24/24 sentences (") && l.ends_with(" left)")),
            "stderr is not a terminal: the progress ends in a plain line\n{e}"
        );
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .flat_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["embedding"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let from_run = embed(&run, "run.jsonl");
    assert_eq!(from_run, embed(&exported, "exported.jsonl"));
    if best_step > 0 {
        assert_ne!(
            from_run,
            embed(&model, "start.jsonl"),
            "the best model is a trained one"
        );
    }

    let last = dir.join("last");
    let export_step = |step: &str| {
        gcse(&[
            "export",
            run.to_str().unwrap(),
            "--to",
            last.to_str().unwrap(),
            "--step",
            step,
        ])
    };
    let (ok, out, err) = export_step("3");
    assert!(ok, "{out}{err}");
    if best_step == 3 {
        assert_eq!(embed(&last, "last.jsonl"), from_run);
    } else {
        assert_ne!(embed(&last, "last.jsonl"), from_run);
    }
    let (ok, _, err) = export_step("2");
    assert!(
        !ok && err.contains("step-00000002"),
        "only the newest checkpoint is kept: {err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_metric_of_a_task_read_from_a_file_picks_the_best_checkpoint() {
    let dir = temp_dir("best_by_rerank");
    let (model, sentences) = tiny_setup(&dir);
    let lines: Vec<String> = std::fs::read_to_string(&sentences)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let sets = dir.join("dev sets");
    std::fs::create_dir_all(&sets).unwrap();
    let n = lines.len();
    let rerank: String = (0..n)
        .map(|i| {
            let words: Vec<&str> = lines[i].split(' ').collect();
            let row = serde_json::json!({
                "query": lines[i],
                "positive": [words[..words.len() - 2].join(" ")],
                "negative": [&lines[(i + 1) % n], &lines[(i + 5) % n], &lines[(i + 11) % n]],
            });
            format!("{row}\n")
        })
        .collect();
    let pairs: String = (0..n)
        .map(|i| format!("{}\t{}\t{}\n", lines[i], lines[(i * 5 + 1) % n], i % 6))
        .collect();
    let (rerank_path, pairs_path) = (sets.join("rerank.jsonl"), sets.join("pairs.tsv"));
    std::fs::write(&rerank_path, rerank).unwrap();
    std::fs::write(&pairs_path, pairs).unwrap();
    let task = format!("rerank:{}", rerank_path.display());
    let extra = format!(
        r#"[train]
batch_size = 8
max_steps = 3
lr = 3e-3
[eval]
every_steps = 1
tasks = ["pairs:{}", "{task}"]
select_by = "{task}/ndcg_at_10"
final_test = false
[checkpoint]
keep_last = 1
"#,
        pairs_path.display()
    );
    let config = experiment(&dir, &model, &sentences, "max_len = 16", &extra);
    let run = dir.join("run");
    let log = train(&config, &["--backend", "cpu"]);
    let scored: Vec<(u64, f64)> = evals(&run)
        .iter()
        .map(|e| {
            let t = &e.tasks[&task];
            assert_eq!(t.primary, "map");
            (e.step as u64, t.metrics["ndcg_at_10"].0)
        })
        .collect();
    assert_eq!(scored.iter().map(|s| s.0).collect::<Vec<_>>(), [0, 1, 2, 3]);
    let (best_step, best) = scored
        .iter()
        .fold((0, f64::MIN), |acc, &s| if s.1 > acc.1 { s } else { acc });
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("best/gcse.json")).unwrap())
            .unwrap();
    let provenance = &meta["provenance"];
    assert_eq!(provenance["step"], best_step, "{scored:?}\n{log}");
    assert_eq!(provenance["selected_by"], format!("{task}/ndcg_at_10"));
    assert!((provenance["ndcg_at_10"].as_f64().unwrap() - best).abs() < 1e-12);
    let saved = gcse::objective::registry::read(&run.join("config.toml")).unwrap();
    assert_eq!(saved.eval.select_by, format!("{task}/ndcg_at_10"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_shipped_experiment_file_is_valid_and_finds_its_data() {
    let configs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut names = Vec::new();
    let files = [configs.clone(), configs.join("ablations")]
        .into_iter()
        .flat_map(|dir| std::fs::read_dir(dir).unwrap())
        .map(|entry| entry.unwrap().path());
    for path in files {
        // Synthesis configs are checked in tests/synth_config.rs, pipeline,
        // study and cycle files in tests/faults/pipeline.rs.
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let other = ["synth-", "pipeline-", "study-"]
            .iter()
            .any(|p| name.starts_with(p))
            || name.ends_with("-cycle.toml");
        if path.extension().is_some_and(|e| e == "toml") && !other {
            let config = gcse::objective::registry::load(&path).unwrap_or_else(|e| panic!("{e}"));
            names.push(path.file_name().unwrap().to_string_lossy().into_owned());
            if common::senteval_dir("every_shipped_experiment_file_finds_its_data").is_some() {
                for source in config.data.domain.iter().chain(&config.data.general) {
                    assert!(
                        source.resolved_path().is_file(),
                        "{}: {} is missing",
                        path.display(),
                        source.path
                    );
                }
            }
        }
    }
    names.sort();
    for expected in [
        "distillcse-bert-base.toml",
        "quickstart-distillcse.toml",
        "quickstart-rank.toml",
        "quickstart.toml",
        "rank-llm-bert-base.toml",
        "rankcse-bert-base.toml",
        "simcse-bert-base.toml",
        "simcse-roberta-base.toml",
    ] {
        assert!(names.iter().any(|n| n == expected), "configs/{expected}");
    }
}

#[test]
fn a_run_that_cannot_start_says_why_and_leaves_no_run_behind() {
    let dir = temp_dir("no-start");
    let sentences = dir.join("sentences.txt");
    std::fs::write(&sentences, "a man is playing guitar .\n").unwrap();
    let config = experiment(&dir, &dir.join("no-such-model"), &sentences, "", "");
    let (ok, _, err) = try_train(&config, &["--backend", "cpu"]);
    assert!(!ok && err.contains("no-such-model"), "{err}");
    assert!(
        !dir.join("run/config.toml").exists(),
        "a failed start claims no run directory"
    );

    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}[train]\nlearning_rate = 1e-5\n")).unwrap();
    let (ok, _, err) = try_train(&config, &["--backend", "cpu"]);
    assert!(
        !ok && err.contains("learning_rate") && err.contains("exp.toml"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A stage-2 experiment on a tiny model: its 24 sentences as 12 sources,
/// each with a positive (its own words in another order) and a negative
/// (another source's sentence) candidate.
fn stage2_setup(dir: &Path, decay: &str) -> PathBuf {
    let (model, sentences) = tiny_setup(dir);
    let lines: Vec<String> = std::fs::read_to_string(&sentences)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let candidates: Vec<String> = (0..12)
        .map(|i| {
            let source = &lines[2 * i];
            let mut words: Vec<&str> = source.split(' ').collect();
            words.reverse();
            serde_json::json!({
                "id": format!("s{i}"), "source": source, "origin": if i % 3 == 0 { "domain" } else { "general" },
                "positives": [{"text": words.join(" "), "kind": "reversed"}],
                "negatives": [{"text": lines[2 * i + 1], "kind": "other"}],
            })
            .to_string()
        })
        .collect();
    let input = dir.join("candidates.jsonl");
    std::fs::write(&input, candidates.join("\n") + "\n").unwrap();
    let text = format!(
        r#"run_dir = "{run}"
objective = "gcse"
[model]
path = "{model}"
max_len = 16
dropout = 0.0
[data]
ratio = "1:2"
[[data.candidates]]
path = "{input}"
[filter]
alpha = 0.5
beta = 0.9
[gcse]
decay = "{decay}"
[train]
batch_size = 4
epochs = 2
lr = 1e-3
temperature = 0.05
[eval]
tasks = []
final_test = false
[checkpoint]
every_steps = 2
keep_last = 1
"#,
        run = dir.join("run").display(),
        model = model.display(),
        input = input.display(),
    );
    write_experiment(dir, &text)
}

#[test]
fn stage_two_filters_trains_with_the_frozen_model_logs_the_decay_and_resumes_exactly() {
    let mut first_losses = Vec::new();
    for decay in ["official", "paper", "none"] {
        let dir = temp_dir(&format!("stage2-{decay}"));
        let config = stage2_setup(&dir, decay);
        let run = dir.join("run");
        let out = train(&config, &["--backend", "cpu"]);
        assert!(out.contains("filter: threshold"), "{out}");
        // The filter's triplets and report are in the run directory.
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("filter_report.json")).unwrap())
                .unwrap();
        let triplets = std::fs::read_to_string(run.join("triplets.jsonl")).unwrap();
        assert_eq!(report["sources"], 12);
        assert!(run.join("decay.png").is_file(), "the decay plot");
        assert!(
            run.join("teachers/frozen.npy").is_file(),
            "the frozen model's vectors, cached"
        );
        assert_eq!(
            report["triplets"].as_u64().unwrap() as usize,
            triplets.lines().count()
        );
        let whole = losses(&run);
        let decays = stats(&run, "decay");
        assert_eq!(decays.len(), whole.len());
        assert!(whole.len() >= 4, "{whole:?}");
        for d in &decays {
            let counts: u64 = d.histogram("weights").unwrap().iter().sum();
            assert_eq!(counts, 4, "one weight per triplet of the batch");
        }
        // Without dropout the student starts as the frozen model: at step 1
        // both score every own hard negative alike (s = s').
        let first = &decays[0];
        assert!(first.scalar("mean_gap").unwrap().abs() < 1e-3, "{first:?}");
        let weight = first.scalar("mean_weight").unwrap();
        match decay {
            // s = s' decays every own hard negative fully (the official mode
            // only where s <= s', which rounding decides at a tie).
            "paper" => assert!(weight < 1e-3, "{first:?}"),
            "official" => assert!(weight < 1.0, "{first:?}"),
            _ => assert_eq!(weight, 1.0, "{first:?}"),
        }
        first_losses.push(whole[0].1);
        if decay == "official" {
            stop_and_resume(&config, &run, 3, |_| {});
            assert_same_losses(
                &losses(&run),
                &whole,
                1e-5,
                "stage 2 stopped after 3, resumed",
            );
            let read = events_match_the_log(&run);
            let histograms: Vec<(i64, f64)> = read
                .iter()
                .filter_map(|r| match r {
                    Read::Histogram {
                        step,
                        tag,
                        limits,
                        counts,
                    } if tag == "decay/weights" => {
                        assert_eq!(limits.len(), counts.len());
                        assert!((limits.last().unwrap() - 1.0).abs() < 1e-12, "{limits:?}");
                        Some((*step, counts.iter().sum()))
                    }
                    _ => None,
                })
                .collect();
            assert_eq!(
                histograms,
                (1..=whole.len() as i64)
                    .map(|s| (s, 4.0))
                    .collect::<Vec<_>>(),
                "a histogram of the batch's weights a step"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
    assert!(
        first_losses[1] <= first_losses[0] && first_losses[0] < first_losses[2],
        "decaying own hard negatives lowers the loss: official {}, paper {}, none {}",
        first_losses[0],
        first_losses[1],
        first_losses[2]
    );
}

/// A toy objective and a toy evaluator (tests/toy), neither known to gcse,
/// go through the library's loop as they are: their statistics and scores
/// land in metrics.jsonl, the dashboard, the plots and the selection of the
/// best model (by a metric that is better when lower), and a stopped run
/// resumes with the losses of an uninterrupted one.
#[test]
fn a_toy_objective_and_evaluator_run_through_the_generic_loop() {
    let _turn = IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    use burn::backend::{Autodiff, NdArray};
    use burn::train::Interrupter;
    use gcse::dashboard::renderer::LogRenderer;
    use gcse::dashboard::screenshot::render_cells;
    use gcse::eval::evaluator::Evaluator;
    use gcse::run_dir::RunDir;
    use gcse::train::plots::{replay, write_run_plots};
    use gcse::train::run::{TrainOutcome, Trainer};
    use toy::{PairDistance, Symmetric, SymmetricConfig};

    let dir = temp_dir("plugins");
    let (model, sentences) = tiny_setup(&dir);
    let path = experiment(&dir, &model, &sentences, "max_len = 16", RESUMABLE);
    let mut config = gcse::objective::registry::load(&path).unwrap();
    config.eval.tasks = vec!["pair-distance".into()];
    config.eval.select_by = "pair-distance".into();
    config.eval.every_steps = 3;
    let lines: Vec<String> = std::fs::read_to_string(&sentences)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let evaluators = || -> Vec<Box<dyn Evaluator>> {
        let pairs = lines
            .chunks(2)
            .map(|p| (p[0].clone(), p[1].clone()))
            .collect();
        vec![Box::new(PairDistance { pairs })]
    };
    let objective = SymmetricConfig {
        backward_weight: 0.3,
    };
    let device = Default::default();
    let train = |resume: bool, stop_after: Option<usize>| -> (String, TrainOutcome) {
        let mut trainer = Trainer::<Autodiff<NdArray<f32>>, Symmetric>::prepare(
            config.clone(),
            &objective,
            evaluators(),
            resume,
            "cpu",
            &device,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        trainer.stop_after = stop_after;
        let mut out = Vec::new();
        let outcome = {
            let mut log = LogRenderer::new(trainer.dashboard().unwrap(), 1, &mut out);
            trainer.run(&mut log, &Interrupter::new()).unwrap()
        };
        (String::from_utf8(out).unwrap(), outcome)
    };

    let run = dir.join("run");
    let (printed, outcome) = train(false, None);
    assert!(printed.contains("eval step 3: pair-distance"), "{printed}");
    let whole = losses(&run);
    assert_eq!(whole.len(), 9);
    let stats = stats(&run, "symmetric");
    assert_eq!(stats.len(), 9, "one statistics entry a step");
    for s in &stats {
        let cosine = s.scalar("mean_positive").unwrap();
        assert!((-1.0..=1.0).contains(&cosine), "{s:?}");
        let counts: u64 = s.histogram("positives").unwrap().iter().sum();
        assert_eq!(counts, 8, "one positive cosine per sentence of the batch");
    }
    let scored: Vec<(usize, f64)> = evals(&run)
        .iter()
        .map(|e| (e.step, e.primary("pair-distance").unwrap()))
        .collect();
    assert_eq!(scored.iter().map(|s| s.0).collect::<Vec<_>>(), [0, 3, 6, 9]);
    let (best_step, best) = scored
        .iter()
        .fold((0, f64::MAX), |acc, &s| if s.1 < acc.1 { s } else { acc });
    assert_eq!(outcome.best, Some((best, best_step)), "the lowest distance");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("best/gcse.json")).unwrap())
            .unwrap();
    assert_eq!(meta["provenance"]["step"], best_step);
    assert_eq!(meta["provenance"]["distance"], best);
    assert_eq!(meta["provenance"]["selected_by"], "pair-distance");

    // The plots and the dashboard, from the log alone.
    let saved = gcse::objective::registry::read(&run.join("config.toml")).unwrap();
    assert_eq!(saved.objective.name, "symmetric");
    assert_eq!(
        saved.objective.settings["backward_weight"].as_float(),
        Some(0.3)
    );
    write_run_plots(&RunDir::new(&run), &saved, None).unwrap();
    for file in ["symmetric.png", "loss.png", "sts_dev.png", "dashboard.png"] {
        assert!(run.join(file).is_file(), "{file}");
    }
    let state = replay(&saved, &read_log(&run.join("metrics.jsonl")).unwrap(), None);
    assert_eq!(state.stats["mean_positive"].len(), 9);
    assert_eq!(state.histogram.iter().sum::<u64>(), 8);
    assert_eq!(state.best(), Some((best_step as f64, best)));
    let screen = |state: &gcse::dashboard::state::DashboardState| -> String {
        let cells = render_cells(state, 120, 36);
        (0..36)
            .map(|y| (0..120).map(|x| cells[(x, y)].symbol()).collect::<String>() + "\n")
            .collect()
    };
    let overview = screen(&state);
    for expected in [
        "toy dev │ symmetric InfoNCE",
        "positive cosines, last",
        &format!("dev cosine distance · best pair-distance {best:.2} @ step {best_step}"),
    ] {
        assert!(
            overview.contains(expected),
            "missing {expected:?} in\n{overview}"
        );
    }
    let mut full = state.clone();
    full.view = gcse::dashboard::state::View::Stats;
    let panel = screen(&full);
    assert!(panel.contains("mean positive cosine"), "{panel}");

    // Stopped after 4 steps and resumed: the same run.
    std::fs::remove_dir_all(&run).unwrap();
    let (_, stopped) = train(false, Some(4));
    assert!(stopped.interrupted);
    train(true, None);
    assert_same_losses(&losses(&run), &whole, 1e-5, "toy objective, resumed");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A frozen teacher's vectors are computed once and read back from their
/// cache while the sentences are the same; a teacher with dropout draws its
/// masks from the seed it is given.
#[test]
fn teacher_vectors_are_cached_and_dropout_teachers_are_seeded() {
    let _turn = IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    use burn::backend::{Autodiff, NdArray};
    use gcse::embed::npy::write_npy;
    use gcse::model::pooling::Pooling;
    use gcse::objective::teacher::{Teacher, TeacherSpec};

    type B = Autodiff<NdArray<f32>>;
    let dir = temp_dir("teacher");
    let (model, sentences) = tiny_setup(&dir);
    let text = std::fs::read_to_string(&sentences).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let device = Default::default();
    let spec = TeacherSpec {
        path: model.display().to_string(),
        pooling: Pooling::Avg,
        max_len: Some(16),
        dropout: 0.0,
    };
    let frozen = Teacher::<B>::load(&spec, &device).unwrap();
    let stem = dir.join("teachers/frozen");
    let first = frozen.cached_vectors(&lines, &stem, 5).unwrap();
    assert_eq!(first.rows(), lines.len());
    assert!(stem.with_extension("npy").is_file() && stem.with_extension("json").is_file());
    let direct = frozen
        .embedder(64)
        .embed(&lines, &indicatif::ProgressBar::hidden())
        .unwrap();
    for i in 0..lines.len() {
        let cos = gcse::embed::embedder::cosine(first.row(i), direct.row(i));
        assert!(cos > 1.0 - 1e-6, "sentence {i}: {cos}");
    }
    // Read back, not recomputed: a marked cache comes back as it is.
    let mut marked = first.clone();
    marked.data.iter_mut().for_each(|v| *v = 0.5);
    write_npy(&stem.with_extension("npy"), &marked).unwrap();
    assert_eq!(
        frozen.cached_vectors(&lines, &stem, 5).unwrap().data,
        marked.data
    );
    // Other sentences, or another teacher, replace it.
    let fewer = frozen.cached_vectors(&lines[1..], &stem, 5).unwrap();
    assert_eq!(fewer.rows(), lines.len() - 1);
    // Batches of 5 and of 64 round the products apart: equal up to f32 noise.
    let cos = gcse::embed::embedder::cosine(fewer.row(0), direct.row(1));
    assert!(cos > 1.0 - 1e-6, "recomputed for the new sentences: {cos}");
    let cls = Teacher::<B>::load(
        &TeacherSpec {
            pooling: Pooling::ClsBeforePooler,
            ..spec.clone()
        },
        &device,
    )
    .unwrap();
    assert_ne!(
        cls.cached_vectors(&lines[1..], &stem, 5).unwrap().data,
        fewer.data
    );

    let noisy = Teacher::<B>::load(
        &TeacherSpec {
            dropout: 0.3,
            ..spec
        },
        &device,
    )
    .unwrap();
    let a = noisy.noisy_vectors(&lines, 1).unwrap();
    assert_eq!(a, noisy.noisy_vectors(&lines, 1).unwrap(), "the same seed");
    assert_ne!(
        a.data,
        noisy.noisy_vectors(&lines, 2).unwrap().data,
        "another seed"
    );
    assert_ne!(a.data, direct.data, "dropout on");
    let still = frozen.noisy_vectors(&lines, 1).unwrap();
    for i in 0..lines.len() {
        assert!(gcse::embed::embedder::cosine(still.row(i), direct.row(i)) > 1.0 - 1e-6);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// DistillCSE on the tiny model with two teacher groups (the tiny model
/// itself, pooled two ways): the distillation statistics are logged each
/// step, the teachers' vectors are cached in the run directory and reused
/// on resume, and a stopped run resumes with the same Group-P permutations
/// (the losses of an uninterrupted run).
#[test]
fn distillcse_logs_its_statistics_caches_its_teachers_and_resumes_exactly() {
    let dir = temp_dir("distillcse");
    let (model, sentences) = tiny_setup(&dir);
    let extra = format!(
        r#"[distillcse]
kd = "ce"
shuffle = {{ kind = "group_p", p = 0.3 }}
alpha = 0.5
[[distillcse.teachers]]
path = "{model}"
pooling = "avg"
[[distillcse.teachers]]
path = "{model}"
pooling = "cls_before_pooler"
group = "b"
{RESUMABLE}"#,
        model = model.display()
    );
    let config = experiment(&dir, &model, &sentences, "max_len = 16", &extra);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("objective = \"distillcse\"\n{text}")).unwrap();
    let run = dir.join("run");
    let out = train(&config, &["--backend", "cpu"]);
    assert!(out.contains("1 in group b"), "{out}");
    let whole = losses(&run);
    assert_eq!(whole.len(), 9);
    let distill = stats(&run, "distill");
    assert_eq!(distill.len(), 9);
    for s in &distill {
        let agreement = s.scalar("agreement").unwrap();
        assert!((-1.0..=1.0).contains(&agreement), "{s:?}");
        assert!(s.scalar("l_kd").unwrap() > 0.0, "{s:?}");
        assert!(s.scalar("l_cl").unwrap() > 0.0, "{s:?}");
        let group = s.scalar("mean_group_size").unwrap();
        assert!((1.0..=7.0).contains(&group), "{s:?}");
        let rows: u64 = s.histogram("agreements").unwrap().iter().sum();
        assert_eq!(rows, 8, "one agreement per row of the batch");
    }
    assert!(run.join("distill.png").is_file(), "the distillation plot");
    let cache = run.join("teachers/component-1.npy");
    assert!(run.join("teachers/component-0.npy").is_file() && cache.is_file());

    std::fs::remove_dir_all(&run).unwrap();
    train(&config, &["--backend", "cpu", "--stop-after", "4"]);
    let cached = std::fs::metadata(&cache).unwrap().modified().unwrap();
    let out = train(&config, &["--backend", "cpu", "--resume"]);
    assert!(
        out.contains("resuming from the checkpoint of step 4"),
        "{out}"
    );
    assert_eq!(
        std::fs::metadata(&cache).unwrap().modified().unwrap(),
        cached,
        "resume reads the cached teacher vectors"
    );
    assert_same_losses(
        &losses(&run),
        &whole,
        1e-5,
        "DistillCSE stopped after 4, resumed",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The rank section of [`rank_setup`]: every term on, a buffer of `vectors`
/// vectors, two weighted teachers (the tiny model pooled two ways).
fn rank_section(model: &Path, vectors: &str) -> String {
    format!(
        r#"[rank]
listwise = "listmle"
llm_negatives = true
[rank.buffer]
size = 6
top = 3
theta = 0.9
vectors = "{vectors}"
[[rank.teachers]]
path = "{model}"
pooling = "avg"
weight = 0.33
[[rank.teachers]]
path = "{model}"
pooling = "cls_before_pooler"
weight = 0.67
"#,
        model = model.display()
    )
}

/// GCSE's stage-2 experiment (filtered candidates) with `objective =
/// "rank"`, the tiny model's dropout on and [`rank_section`].
fn rank_setup(dir: &Path, vectors: &str) -> PathBuf {
    let config = stage2_setup(dir, "official");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("objective = \"gcse\"", "objective = \"rank\"")
        .replace("dropout = 0.0\n", "")
        .replace(
            "[gcse]\ndecay = \"official\"\n",
            &rank_section(&dir.join("model"), vectors),
        );
    assert!(text.contains("[rank.buffer]"), "{text}");
    write_experiment(dir, &text)
}

/// The state.json of a run's (one kept) checkpoint.
fn state_file(run: &Path) -> PathBuf {
    std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().path().join("state.json"))
        .find(|p| p.is_file())
        .unwrap()
}

/// The objective's state in the run's checkpoint.
fn saved_buffer(run: &Path) -> serde_json::Value {
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state_file(run)).unwrap()).unwrap();
    state["objective"].clone()
}

/// Rank distillation on the tiny model with LLM negatives (filtered
/// candidates), a buffer and two weighted teachers: the statistics are
/// logged each step, the buffer fills first-in first-out and is saved in
/// every checkpoint, and a stopped run resumes with the losses of an
/// uninterrupted one, which a resume without the saved buffer does not.
#[test]
fn rank_distillation_logs_its_buffer_saves_it_and_resumes_exactly() {
    for vectors in ["student", "teacher"] {
        let dir = temp_dir(&format!("rank-{vectors}"));
        let config = rank_setup(&dir, vectors);
        let run = dir.join("run");
        let out = train(&config, &["--backend", "cpu"]);
        assert!(
            out.contains("filter: threshold") && out.contains("buffer 6 entries"),
            "{out}"
        );
        assert_eq!(
            out.contains("note: the buffer keeps teacher 0's vectors"),
            vectors == "teacher",
            "teacher 0 pools `avg`, the student `cls`: {out}"
        );
        let whole = losses(&run);
        let rank = stats(&run, "rank");
        assert_eq!(rank.len(), whole.len());
        assert!(whole.len() >= 4, "{whole:?}");
        assert_eq!(
            rank[0].scalar("buffer_negatives"),
            Some(0.0),
            "empty at step 1"
        );
        for s in &rank {
            assert!(s.scalar("l_cl").unwrap() > 0.0, "{s:?}");
            assert!(s.scalar("l_rank").unwrap() > 0.0, "{s:?}");
            assert!(
                s.scalar("l_cons").unwrap() > 0.0,
                "two dropout views: {s:?}"
            );
            let weight = s.scalar("mean_weight").unwrap();
            assert!((0.0..=1.0).contains(&weight), "{s:?}");
            let dropped = s.scalar("buffer_false").unwrap();
            assert!((0.0..=1.0).contains(&dropped), "{s:?}");
        }
        for s in &rank[1..] {
            let hits = s.scalar("buffer_negatives").unwrap();
            assert!(hits > 0.0 && hits <= 3.0, "at most `top` per anchor: {s:?}");
            let cosine = s.scalar("buffer_cosine").unwrap();
            assert!((-1.0..=1.0).contains(&cosine), "{s:?}");
        }
        assert!(run.join("rank.png").is_file(), "the rank plot");
        assert!(
            run.join("teachers/rank-0.npy").is_file() && run.join("teachers/rank-1.npy").is_file()
        );
        let buffer = saved_buffer(&run);
        let entries = buffer["entries"].as_array().unwrap();
        assert_eq!(buffer["capacity"], 6);
        assert_eq!(entries.len(), 6, "full after {} steps of 4", whole.len());
        assert_eq!(entries[0]["vector"].is_array(), vectors == "student");

        stop_and_resume(&config, &run, 3, |_| {});
        assert_same_losses(&losses(&run), &whole, 1e-5, "rank stopped after 3, resumed");

        // The same resume from a checkpoint whose buffer was emptied: other
        // negatives, another loss at step 4 (the resume above, buffer intact,
        // gives every loss bit for bit, so any difference is the buffer's;
        // how large depends on how similar the buffered negatives are).
        stop_and_resume(&config, &run, 3, |run| {
            let state = state_file(run);
            let mut saved: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
            saved["objective"]["entries"] = serde_json::json!([]);
            std::fs::write(&state, saved.to_string()).unwrap();
        });
        let emptied = losses(&run);
        assert_eq!(emptied.len(), whole.len());
        assert!(
            emptied[3].1 != whole[3].1,
            "step 4 reads the restored buffer: {} vs {}",
            emptied[3].1,
            whole[3].1
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// `tmux` on `socket` with `args`; its stdout.
fn tmux(socket: &str, args: &[&str]) -> String {
    let out = Command::new("tmux")
        .args(["-L", socket])
        .args(args)
        .output()
        .expect("tmux runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Rows of a screen that hold a progress line ("... sentences (152/s, ...").
fn progress_rows(screen: &str) -> Vec<(usize, String)> {
    screen
        .lines()
        .enumerate()
        .filter(|(_, line)| line.contains(" sentences (") && line.contains("/s"))
        .map(|(row, line)| (row, line.to_string()))
        .collect()
}

#[test]
fn under_the_dashboard_evaluation_progress_stays_in_its_header() {
    if Command::new("tmux").arg("-V").output().is_err() {
        common::skip(
            "under_the_dashboard_evaluation_progress",
            "no tmux (Debian: apt install tmux)",
        );
        return;
    }
    let (Some(model), Some(senteval)) = (
        common::minilm_dir("under_the_dashboard_evaluation_progress"),
        common::senteval_dir("under_the_dashboard_evaluation_progress"),
    ) else {
        return;
    };
    let dir = temp_dir("pty");
    let sentences = dir.join("sentences.txt");
    std::fs::write(&sentences, tiny_sentences(24).join("\n") + "\n").unwrap();
    let extra = format!(
        r#"[train]
batch_size = 8
max_steps = 2
[eval]
every_steps = 2
tasks = ["sickr-dev"]
select_by = "sickr-dev"
final_test = false
data = "{}"
"#,
        senteval.display()
    );
    let config = experiment(&dir, &model, &sentences, "max_len = 16", &extra);
    let socket = format!("gcse-test-{}", std::process::id());
    let command = format!(
        "'{}' train --config '{}' --backend cpu; echo \"gcse exited with $?\"; sleep 600",
        env!("CARGO_BIN_EXE_gcse"),
        config.display()
    );
    tmux(
        &socket,
        &[
            "new-session",
            "-d",
            "-x",
            "150",
            "-y",
            "42",
            "-s",
            "t",
            &command,
        ],
    );
    let started = std::time::Instant::now();
    let (mut seen_in_header, mut screens) = (0, 0);
    let last = loop {
        let screen = tmux(&socket, &["capture-pane", "-p", "-t", "t"]);
        screens += 1;
        if screen.contains("gcse exited with") || started.elapsed().as_secs() > 600 {
            break screen;
        }
        for (row, line) in progress_rows(&screen) {
            assert!(
                row == 0 && line.contains("evaluating"),
                "a progress line outside the dashboard's header (row {row}):\n{screen}"
            );
            seen_in_header += 1;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    tmux(&socket, &["kill-server"]);
    assert!(last.contains("gcse exited with 0"), "{last}");
    assert!(
        progress_rows(&last).is_empty(),
        "progress debris left on the terminal:\n{last}"
    );
    assert!(
        seen_in_header > 0,
        "the evaluations' progress never showed in the header ({screens} screens)"
    );
    assert_eq!(
        evals(&dir.join("run")).len(),
        2,
        "evaluated at steps 0 and 2"
    );
}

#[test]
fn set_and_run_dir_override_the_file_are_saved_and_runs_compare() {
    let dir = temp_dir("set");
    let (model, sentences) = tiny_setup(&dir);
    let config = experiment(&dir, &model, &sentences, "max_len = 16", RESUMABLE);
    let (run_a, run_b) = (dir.join("a"), dir.join("b"));
    let run = |run_dir: &Path, extra: &[&str]| {
        let mut args = vec!["--backend", "cpu", "--run-dir", run_dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        try_train(&config, &args)
    };
    let (ok, out, err) = run(&run_a, &["--set", "train.lr=5e-4", "--stop-after", "2"]);
    assert!(ok, "{out}{err}");
    assert!(
        !dir.join("run").exists(),
        "--run-dir replaces the file's run_dir"
    );
    let saved = gcse::objective::registry::read(&run_a.join("config.toml")).unwrap();
    assert_eq!(saved.train.lr, 5e-4);
    assert_eq!(saved.run_dir, run_a);

    let (ok, _, err) = run(&run_a, &["--resume"]);
    assert!(
        !ok && err.contains("differs"),
        "a resume without the --set: {err}"
    );
    let (ok, out, err) = run(&run_a, &["--resume", "--set", "train.lr=5e-4"]);
    assert!(
        ok && out.contains("resuming from the checkpoint of step 2"),
        "{out}{err}"
    );
    assert_eq!(losses(&run_a).len(), 9);

    let (ok, out, err) = run(
        &run_b,
        &["--set", "train.epochs=1", "--set", "train.batch_size=0"],
    );
    assert!(
        !ok && err.contains("exp.toml")
            && err
                .contains("`train.batch_size` must be at least 1 (from --set train.batch_size=0)")
            && !err.contains("line "),
        "a bad value is named with the overrides:\n{out}{err}"
    );
    assert!(!run_b.exists(), "nothing claimed");
    let (ok, out, err) = run(&run_b, &["--set", "train.epochs=1"]);
    assert!(ok, "{out}{err}");
    let (ok, _, err) = run(&run_b, &["--set", "train.lr"]);
    assert!(!ok && err.contains("key=value"), "{err}");
    let (ok, _, err) = run(&run_b, &["--set", "run_dir.x=1"]);
    assert!(
        !ok && err.contains("`run_dir` is string, not a table"),
        "{err}"
    );

    // A test report as `gcse train` writes it, for run b.
    let report = gcse::eval::evaluator::EvalReport {
        scores: vec![gcse::eval::evaluator::TaskResult {
            task: "stsb".into(),
            column: "STS-B".into(),
            family: "STS".into(),
            shown: &[],
            primary: "spearman".into(),
            metrics: [("spearman".to_string(), 61.234)].into(),
            counts: [("pairs".to_string(), 1379)].into(),
        }],
        average: 61.234,
        sentences: 2000,
        seconds: 1.0,
        sentences_per_second: 2000.0,
    };
    std::fs::write(
        run_b.join("test_results.json"),
        serde_json::to_string(&report).unwrap(),
    )
    .unwrap();
    let (ok, out, err) = gcse(&["compare", run_a.to_str().unwrap(), run_b.to_str().unwrap()]);
    assert!(ok, "{err}");
    let line = |run: &Path| {
        out.lines()
            .find(|l| l.starts_with(run.to_str().unwrap()))
            .unwrap_or_else(|| panic!("no row of {} in\n{out}", run.display()))
            .to_string()
    };
    assert!(out.lines().next().unwrap().contains("stsb"), "{out}");
    assert!(line(&run_b).trim_end().ends_with("61.23  61.23"), "{out}");
    assert!(line(&run_a).trim_end().ends_with("--     --"), "{out}");
    let settings = out.split("settings that differ").nth(1).expect(&out);
    for key in ["train.lr", "train.epochs"] {
        assert!(settings.contains(key), "{key} differs:\n{out}");
    }
    assert!(
        !settings.contains("run_dir") && !settings.contains("batch_size"),
        "{out}"
    );
    let (ok, _, err) = gcse(&["compare", dir.to_str().unwrap()]);
    assert!(!ok && err.contains("not a run directory"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cross_encoder_steps_match_pytorch() {
    let Some(model) = common::minilm_dir("cross_encoder_steps_match_pytorch") else {
        return;
    };
    use gcse::model::cross_encoder::LoadedCrossEncoder;
    use gcse::model::export::{write_cross_encoder_folder, FolderMeta};
    let golden = common::fixture("cross_encoder.json");
    let dir = temp_dir("cross-parity");
    let start = dir.join("start");
    let cross: LoadedCrossEncoder<common::Cpu> =
        common::fixture_cross_encoder(&model, &golden, &Default::default());
    let meta = FolderMeta {
        pooling: gcse::model::pooling::Pooling::Cls,
        max_len: 128,
        provenance: serde_json::Value::Null,
    };
    write_cross_encoder_folder(&cross.model, &model, &start, &meta, &[]).unwrap();
    let (a, b, scores) = common::fixture_pairs(&golden);
    let pairs: Vec<String> = a
        .iter()
        .zip(&b)
        .zip(&scores)
        .map(|((a, b), s)| serde_json::json!({"a": a, "b": b, "score": s}).to_string())
        .collect();
    std::fs::write(dir.join("pairs.jsonl"), pairs.join("\n") + "\n").unwrap();
    let t = &golden["train"];
    let config = write_experiment(
        &dir,
        &format!(
            r#"run_dir = "{run}"
objective = "cross"
[model]
path = "{start}"
pooling = "cls"
dropout = 0.0
max_len = {max_len}
[train]
batch_size = {n}
epochs = {steps}
lr = {lr}
max_grad_norm = {clip}
adam_epsilon = {eps}
weight_decay = {wd}
[eval]
tasks = []
final_test = false
[cross]
pairs = ["{pairs}"]
score_range = [0.0, 5.0]
"#,
            run = dir.join("run").display(),
            start = start.display(),
            max_len = golden["max_len"],
            n = a.len(),
            steps = t["steps"],
            lr = t["lr"],
            clip = t["max_grad_norm"],
            eps = t["adam_epsilon"],
            wd = t["weight_decay"],
            pairs = dir.join("pairs.jsonl").display(),
        ),
    );
    let out = train(&config, &["--backend", "cpu"]);
    assert!(out.contains("both orders"), "{out}");
    let reference: Vec<(u64, f64)> = t["losses"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, l)| (i as u64 + 1, l.as_f64().unwrap()))
        .collect();
    let ours = losses(&dir.join("run"));
    let worst = ours
        .iter()
        .zip(&reference)
        .map(|(a, b)| (a.1 - b.1).abs())
        .fold(0.0, f64::max);
    eprintln!("cross-encoder steps: largest loss difference from PyTorch {worst:e}");
    assert_same_losses(&ours, &reference, 1e-5, "cpu vs PyTorch");
    let best = dir.join("run/best");
    assert_eq!(
        gcse::model::cross_encoder::ModelKind::of(&best),
        gcse::model::cross_encoder::ModelKind::CrossEncoder,
        "the run's model is a cross-encoder folder"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
