//! Faults while training: SIGTERM and SIGINT (a checkpoint, exit 128 + the
//! signal, an exact resume), a second signal (at once), SIGKILL between
//! steps, divergence (no update, no checkpoint of NaN weights), two
//! processes on one run (the second refused), a damaged newest checkpoint
//! (the one before is used), a full disk (the previous checkpoint intact),
//! and the log and "best" across a resume.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use gcse::train::metrics_log::{read_log, LogEntry};

use crate::harness::{run, Outcome};
use crate::world::{edit, World, EXPERIMENT};

/// 40 epochs of 3 steps, a checkpoint every 2, the newest 2 kept, a log
/// line every step.
fn long_run(w: &World, name: &str, set: &[(&str, Option<&str>)]) -> String {
    let mut keys: Vec<(&str, Option<&str>)> = vec![
        ("run_dir", Some("\"run\"")),
        ("train.epochs", Some("40")),
        ("train.lr", Some("1e-3")),
        ("train.warmup_steps", Some("2")),
        ("train.log_every", Some("1")),
        ("checkpoint.every_steps", Some("2")),
        ("checkpoint.keep_last", Some("2")),
    ];
    keys.extend_from_slice(set);
    w.write(&format!("{name}.toml"), edit(EXPERIMENT, &keys))
}

fn args(config: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["train", "--config", config, "--no-tui", "--backend", "cpu"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn train(w: &World, config: &str, extra: &[&str]) -> Outcome {
    run(&w.dir, &args(config, extra), &[], Duration::from_secs(300))
}

fn start(w: &World, config: &str, env: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_gcse"))
        .args(args(config, &[]))
        .current_dir(&w.dir)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads `child`'s stdout until a line holds `text`; the rest of its
/// stdout (from that line on) is read meanwhile, for [`finish`].
fn wait_for(child: &mut Child, text: &str) -> JoinHandle<String> {
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let found = line.contains(text);
        seen = line + "\n";
        if found {
            break;
        }
    }
    // Keep draining, so the child never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in lines.map_while(|l| l.ok()) {
            seen.push_str(&line);
            seen.push('\n');
        }
        seen
    })
}

fn signal(child: &Child, signal: i32) {
    // SAFETY: sends a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
}

/// Waits for `child`; `stdout` is what [`wait_for`] read of its stdout.
fn finish(child: Child, stdout: JoinHandle<String>) -> Outcome {
    let out = child.wait_with_output().unwrap();
    Outcome {
        code: out.status.code(),
        stdout: stdout.join().unwrap(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        hung: false,
    }
}

/// The (step, loss) of each step entry of `run`'s log.
pub fn losses(run: &Path) -> Vec<(usize, f64)> {
    read_log(&run.join("metrics.jsonl"))
        .unwrap()
        .into_iter()
        .filter_map(|e| match e {
            LogEntry::Step(s) => Some((s.step, s.loss)),
            _ => None,
        })
        .collect()
}

/// Asserts `run`'s losses are those of the uninterrupted `reference`;
/// returns how many are bit for bit the same.
fn assert_resumed(what: &str, run: &Path, reference: &[(usize, f64)]) -> usize {
    let got = losses(run);
    assert_eq!(
        got.iter().map(|l| l.0).collect::<Vec<_>>(),
        reference.iter().map(|l| l.0).collect::<Vec<_>>(),
        "{what}: logged steps"
    );
    for ((step, a), (_, b)) in got.iter().zip(reference) {
        assert!((a - b).abs() < 1e-5, "{what}: step {step} loss {a} vs {b}");
    }
    got.iter()
        .zip(reference)
        .filter(|(a, b)| a.1 == b.1)
        .count()
}

fn checkpoint(run: &Path, step: usize) -> PathBuf {
    run.join(format!("checkpoints/step-{step:08}"))
}

/// The step of `stopped ... at step N` in a run's stdout.
fn stopped_at(out: &Outcome) -> usize {
    let at = out
        .stdout
        .find(" at step ")
        .unwrap_or_else(|| panic!("{out:?}"));
    out.stdout[at + 9..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn training_faults() {
    let w = World::new("training");
    let run_dir = w.path("run");
    let config = long_run(&w, "exp", &[]);
    let whole = train(&w, &config, &[]);
    assert_eq!(whole.code, Some(0), "{}", whole.stderr);
    let reference = losses(&run_dir);
    assert_eq!(reference.len(), 120);
    let checkpoint_bytes: u64 = std::fs::read_dir(checkpoint(&run_dir, 120))
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum();
    let mut cases = 1;
    let mut identical = Vec::new();

    // SIGTERM and SIGINT: the step ends, a checkpoint is written, the exit
    // status is 128 + the signal; the resume gives the same losses, and the
    // log lines before the stop are kept byte for byte.
    for (sig, code, name) in [
        (libc::SIGTERM, 143, "SIGTERM"),
        (libc::SIGINT, 130, "SIGINT"),
    ] {
        std::fs::remove_dir_all(&run_dir).unwrap();
        let mut child = start(&w, &config, &[]);
        let stdout = wait_for(&mut child, "step 3/120");
        signal(&child, sig);
        let out = finish(child, stdout);
        assert_eq!(out.code, Some(code), "{name}: {out:?}");
        assert!(
            out.stdout.contains(&format!("stopped by {name} at step")),
            "{out:?}"
        );
        let step = stopped_at(&out);
        assert!(step < 120, "{name}: stopped at {step}");
        assert!(
            checkpoint(&run_dir, step).join("state.json").is_file(),
            "{name}"
        );
        let before = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap();
        let resumed = train(&w, &config, &["--resume"]);
        assert_eq!(resumed.code, Some(0), "{}", resumed.stderr);
        assert!(resumed
            .stdout
            .contains(&format!("resuming from the checkpoint of step {step}")));
        let after = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap();
        assert!(
            after.starts_with(&before),
            "{name}: the log before the stop was rewritten"
        );
        identical.push((name, assert_resumed(name, &run_dir, &reference)));
        cases += 1;
    }

    // A second signal ends the process at once, even inside a checkpoint
    // that never finishes (the test hook pauses it); the previous
    // checkpoint is intact and resumes.
    std::fs::remove_dir_all(&run_dir).unwrap();
    let mut child = start(
        &w,
        &config,
        &[(gcse::train::checkpoint::PAUSE_IN_CHECKPOINT, "4")],
    );
    let stdout = wait_for(&mut child, "step 4/120");
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, libc::SIGTERM);
    let out = finish(child, stdout);
    assert_eq!(out.code, Some(143), "{out:?}");
    assert!(out.stderr.contains("ending at once"), "{out:?}");
    let resumed = train(&w, &config, &["--resume"]);
    assert!(
        resumed
            .stdout
            .contains("resuming from the checkpoint of step 2"),
        "{resumed:?}"
    );
    identical.push((
        "second signal",
        assert_resumed("second signal", &run_dir, &reference),
    ));
    cases += 1;

    // SIGKILL between checkpoints: the resume starts at the last one.
    std::fs::remove_dir_all(&run_dir).unwrap();
    let mut child = start(&w, &config, &[]);
    let stdout = wait_for(&mut child, "step 7/120");
    signal(&child, libc::SIGKILL);
    assert_eq!(finish(child, stdout).code, None);
    let resumed = train(&w, &config, &["--resume"]);
    assert_eq!(resumed.code, Some(0), "{}", resumed.stderr);
    identical.push(("SIGKILL", assert_resumed("SIGKILL", &run_dir, &reference)));
    cases += 1;

    // Two processes on one run directory: the second (new or --resume) is
    // refused while the first holds it, naming it.
    std::fs::remove_dir_all(&run_dir).unwrap();
    let mut first = start(
        &w,
        &config,
        &[(gcse::train::checkpoint::PAUSE_IN_CHECKPOINT, "2")],
    );
    let stdout = wait_for(&mut first, "step 2/120");
    for extra in [&[][..], &["--resume"][..]] {
        let second = train(&w, &config, extra);
        assert_eq!(second.code, Some(1), "{second:?}");
        assert!(
            second.stderr.contains("another gcse process")
                && second.stderr.contains(&first.id().to_string()),
            "{second:?}"
        );
        cases += 1;
    }
    signal(&first, libc::SIGKILL);
    finish(first, stdout);

    // A damaged newest checkpoint: cut short, it is passed over with a
    // warning; same size but garbage, it is named without Burn's hints.
    std::fs::remove_dir_all(&run_dir).unwrap();
    let out = train(&w, &config, &["--stop-after", "6"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let model = checkpoint(&run_dir, 6).join("model.mpk");
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&model, &bytes[..bytes.len() / 2]).unwrap();
    let resumed = train(&w, &config, &["--resume"]);
    assert!(
        resumed
            .stderr
            .contains("checkpoint of step 6 cannot be used"),
        "{resumed:?}"
    );
    assert!(
        resumed
            .stdout
            .contains("resuming from the checkpoint of step 4"),
        "{resumed:?}"
    );
    identical.push((
        "cut checkpoint",
        assert_resumed("cut checkpoint", &run_dir, &reference),
    ));
    cases += 1;
    std::fs::remove_dir_all(&run_dir).unwrap();
    train(&w, &config, &["--stop-after", "6"]);
    let mut garbage = bytes.clone();
    for b in garbage.iter_mut().skip(100) {
        *b = 0xc1;
    }
    std::fs::write(&model, &garbage).unwrap();
    let resumed = train(&w, &config, &["--resume"]);
    assert_eq!(resumed.code, Some(1), "{resumed:?}");
    assert!(
        resumed.stderr.contains("step-00000006/model.mpk")
            && resumed.stderr.contains("damaged")
            && !resumed.stderr.contains("0.14.0"),
        "{resumed:?}"
    );
    cases += 1;

    // Divergence: the step's update is not applied, no checkpoint holds
    // NaN weights, and the message names only a checkpoint that exists.
    for (name, lr, checkpoints) in [("diverged", "1e6", "2"), ("diverged-at-once", "1e30", "1")] {
        let config = long_run(
            &w,
            name,
            &[
                ("train.lr", Some(lr)),
                ("run_dir", Some(&format!("\"{name}\""))),
                ("checkpoint.every_steps", Some(checkpoints)),
            ],
        );
        let out = train(&w, &config, &[]);
        assert_eq!(out.code, Some(1), "{name}: {out:?}");
        assert!(out.stderr.contains("training diverged"), "{name}: {out:?}");
        let dir = w.path(name);
        let saved: Vec<usize> = std::fs::read_dir(dir.join("checkpoints"))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().to_str()?.strip_prefix("step-")?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        match saved.iter().max() {
            Some(last) => {
                assert!(
                    out.stderr
                        .contains(&format!("the last checkpoint is step {last}")),
                    "{out:?}"
                );
                // It resumes (and diverges again at the same place).
                let again = train(&w, &config, &["--resume"]);
                assert!(
                    again
                        .stdout
                        .contains(&format!("resuming from the checkpoint of step {last}")),
                    "{again:?}"
                );
                assert!(again.stderr.contains("training diverged"), "{again:?}");
            }
            None => assert!(out.stderr.contains("no checkpoint was written"), "{out:?}"),
        }
        cases += 1;
    }

    // A 700-word training sentence at the shortest length.
    let long = vec!["the dog runs in the park"; 140].join(" ");
    let sentences = std::fs::read_to_string(w.path("sentences.txt")).unwrap();
    w.write("long-sentences.txt", format!("{sentences}{long}\n"));
    let config = long_run(
        &w,
        "long-line",
        &[
            ("run_dir", Some("\"long-run\"")),
            ("model.max_len", Some("3")),
            ("train.epochs", Some("1")),
            ("data.domain", Some("[{ path = \"long-sentences.txt\" }]")),
        ],
    );
    let out = train(&w, &config, &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    cases += 1;

    best_across_a_resume(&w);
    cases += 1;

    if let Some(resumed) = full_disk(&w, &reference, checkpoint_bytes) {
        identical.push(("disk full", resumed));
        cases += 1;
    }

    eprintln!("training faults: {cases} cases; resumed losses bit for bit the uninterrupted run's: {identical:?} (of 120 each)");
    std::fs::remove_dir_all(&w.dir).unwrap();
}

/// Trains on a small file system of its own (a tmpfs in a private mount
/// namespace) until a checkpoint no longer fits: the run must stop with the
/// system's own words, keep the checkpoints before intact, and resume once
/// there is room; returns how many resumed losses are bit for bit the
/// uninterrupted run's (`reference`). `None` (with the reason printed) where no such file
/// system can be made.
fn full_disk(w: &World, reference: &[(usize, f64)], one: u64) -> Option<usize> {
    // Room for the log, two checkpoints (of `one` bytes) and half of a third.
    let size = one * 5 / 2 + 48 * 1024;
    let text = std::fs::read_to_string(w.path("exp.toml"))
        .unwrap()
        .replace("\"model\"", "\"../model\"")
        .replace("\"sentences.txt\"", "\"../sentences.txt\"");
    w.write("full.toml", text);
    let full = w.path("full");
    std::fs::create_dir_all(&full).unwrap();
    let script = format!(
        r#"mount -t tmpfs -o size={size} tmpfs "{full}" || exit 99
cd "{full}"
"{gcse}" train --config ../full.toml --no-tui --backend cpu >../a.out 2>../a.err; echo $? >../a.rc
mount -o remount,size=64m "{full}"
"{gcse}" train --config ../full.toml --no-tui --backend cpu --resume >../b.out 2>../b.err; echo $? >../b.rc
cp run/metrics.jsonl ../full-metrics.jsonl
"#,
        full = full.display(),
        gcse = env!("CARGO_BIN_EXE_gcse"),
    );
    let status = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c", &script])
        .current_dir(&w.dir)
        .status();
    match status {
        Ok(s) if s.code() == Some(99) || !w.path("a.rc").is_file() => {
            eprintln!("SKIPPED the full-disk case: no tmpfs can be mounted here ({s})");
            return None;
        }
        Err(e) => {
            eprintln!("SKIPPED the full-disk case: unshare cannot run ({e})");
            return None;
        }
        Ok(_) => {}
    }
    let read = |name: &str| std::fs::read_to_string(w.path(name)).unwrap_or_default();
    assert_eq!(read("a.rc").trim(), "1", "{}", read("a.err"));
    assert!(
        read("a.err").contains("No space left on device"),
        "{}",
        read("a.err")
    );
    assert!(
        !read("a.err").contains("invalid value write"),
        "{}",
        read("a.err")
    );
    assert_eq!(read("b.rc").trim(), "0", "{}", read("b.err"));
    assert!(
        read("b.out").contains("resuming from the checkpoint of step"),
        "{}",
        read("b.out")
    );
    let run = w.path("full-run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::rename(w.path("full-metrics.jsonl"), run.join("metrics.jsonl")).unwrap();
    Some(assert_resumed("disk full", &run, reference))
}

/// After a resume, the best model named in the log lines and at the end
/// counts the evaluations before the resume too: each `(best ... @ step S)`
/// is the first best of every evaluation logged up to then.
fn best_across_a_resume(w: &World) {
    let pairs = crate::common::tiny_sentences(8);
    let lines: Vec<String> = (0..4)
        .map(|i| {
            serde_json::json!({"a": pairs[2 * i], "b": pairs[2 * i + 1], "score": (i * 7 % 4) as f64})
                .to_string()
        })
        .collect();
    let file = w.write("dev-pairs.jsonl", lines.join("\n") + "\n");
    let task = format!("\"pairs:{file}\"");
    let config = long_run(
        w,
        "with-eval",
        &[
            ("run_dir", Some("\"eval-run\"")),
            ("train.epochs", Some("4")),
            ("eval.tasks", Some(&format!("[{task}]"))),
            ("eval.select_by", Some(&task)),
            ("eval.every_steps", Some("2")),
        ],
    );
    let first = train(w, &config, &["--stop-after", "6"]);
    assert_eq!(first.code, Some(0), "{first:?}");
    let resumed = train(w, &config, &["--resume"]);
    assert_eq!(resumed.code, Some(0), "{resumed:?}");
    let evals: Vec<(usize, f64)> = read_log(&w.path("eval-run/metrics.jsonl"))
        .unwrap()
        .into_iter()
        .filter_map(|e| match e {
            LogEntry::Eval(e) => Some((e.step, e.tasks.values().next()?.metrics["spearman"].0)),
            _ => None,
        })
        .collect();
    assert_eq!(evals.len(), 7, "{evals:?}");
    let best_until = |step: usize| {
        evals
            .iter()
            .filter(|e| e.0 <= step)
            .fold(None, |b: Option<(usize, f64)>, &e| match b {
                Some(b) if b.1 >= e.1 => Some(b),
                _ => Some(e),
            })
            .unwrap()
    };
    let mut checked = 0;
    for line in resumed
        .stdout
        .lines()
        .filter(|l| l.starts_with("eval step "))
    {
        let step: usize = line[10..line.find(':').unwrap()].parse().unwrap();
        let named: usize = line
            .rsplit("@ step ")
            .next()
            .unwrap()
            .trim_end_matches(')')
            .parse()
            .unwrap();
        assert_eq!(named, best_until(step).0, "{line}\n{evals:?}");
        checked += 1;
    }
    assert_eq!(checked, 3, "{}", resumed.stdout);
    let last = best_until(12).0;
    assert!(
        resumed.stdout.contains(&format!(" at step {last}")),
        "{}",
        resumed.stdout
    );
}
