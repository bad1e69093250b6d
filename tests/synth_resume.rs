//! `gcse synth all` killed (SIGKILL) at several points, during extraction
//! and during generation, then run again to the end: its knowledge and
//! candidates equal an uninterrupted run's, byte for byte, and the server
//! saw every request once, but for one in flight and still unanswered at a
//! kill. The same for `gcse synth chains` and its lists. The LLM is a
//! scripted server whose answers are a function of the prompt, so two runs
//! can be compared.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::llm_server::{scripted_completions, ScriptedServer, SCRIPTED_SOURCES as SOURCES};
use common::temp_dir;

/// Writes the scripted sources and `<dir>/<name>`: a synthesis config over
/// the scripted server at `url` into `<dir>/out`, then `steps` (the steps'
/// sections).
fn write_synth_config(dir: &Path, url: &str, name: &str, steps: &str) -> PathBuf {
    std::fs::write(dir.join("sources.txt"), SOURCES.join("\n") + "\n").unwrap();
    let config = format!(
        r#"out_dir = "{out}"
seed = 5

[sources]
[[sources.general]]
path = "{sources}"

[llm]
backend = "http"

[llm.http]
endpoints = ["{url}"]
model = "scripted"
api = "completions"
in_flight = 1
retries = 0
timeout_s = 10

{steps}"#,
        out = dir.join("out").display(),
        sources = dir.join("sources.txt").display(),
    );
    let path = dir.join(name);
    std::fs::write(&path, config).unwrap();
    path
}

fn write_config(dir: &Path, url: &str) -> PathBuf {
    write_synth_config(
        dir,
        url,
        "synth.toml",
        "[generate]\npositives = 2\nnegatives = 3\n\n[generate.negative_kinds]\nantisense = 0.3\nentity_revision = 0.4\nquantity_revision = 0.3\n",
    )
}

fn start(config: &Path) -> Child {
    run("all", config)
}

fn run(step: &str, config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_gcse"))
        .args(["synth", step, "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the gcse binary runs")
}

fn finish(child: Child) {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts `gcse synth <step>` and kills it (SIGKILL) once `server` has
/// request `k`, which it holds 40 ms: the answer before it is on disk, a
/// slow kill may let k's land too.
fn kill_at(step: &str, config: &Path, server: &ScriptedServer, k: usize) {
    let mut child = run(step, config);
    let began = Instant::now();
    while server.count() < k {
        assert!(
            began.elapsed() < Duration::from_secs(120),
            "the run stalled before request {k}"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before request {k}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(15));
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Whole lines in `<dir>/out/answers.jsonl`: the answers stored.
fn stored(dir: &Path) -> usize {
    let answers = std::fs::read_to_string(dir.join("out").join("answers.jsonl")).unwrap();
    answers
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .count()
}

#[test]
fn a_killed_run_resumes_to_the_same_output_without_repeating_requests() {
    let whole = temp_dir("resume-whole");
    let reference = scripted_completions(Duration::from_millis(40));
    finish(start(&write_config(&whole, &reference.url)));
    let total = reference.count();
    // 8 extraction requests and 8 x 5 candidates.
    assert_eq!(total, SOURCES.len() * 6);
    let read =
        |dir: &Path, name: &str| std::fs::read_to_string(dir.join("out").join(name)).unwrap();
    let candidates = read(&whole, "candidates.jsonl");
    assert!(
        candidates.contains("\"kind\":\"entity_revision\""),
        "{candidates}"
    );
    assert!(
        candidates.contains("\"kind\":\"quantity_revision\""),
        "{candidates}"
    );

    let killed = temp_dir("resume-killed");
    let server = scripted_completions(Duration::from_millis(40));
    let config = write_config(&killed, &server.url);
    // During extraction, early in generation, late in generation.
    let kill_points = [5, 15, 40];
    // The kills that found their request unanswered: it is sent again.
    let mut resent_at = Vec::new();
    for &k in &kill_points {
        kill_at("all", &config, &server, k);
        assert_eq!(server.count(), k, "no request after the kill");
        let stored = stored(&killed);
        let distinct = k - resent_at.len();
        assert!(
            stored == distinct || stored + 1 == distinct,
            "{stored} answers stored when killed at request {k} ({distinct} distinct)"
        );
        if stored + 1 == distinct {
            resent_at.push(k);
        }
    }
    assert!(!resent_at.is_empty(), "no kill found a request in flight");
    finish(start(&config));

    for name in ["knowledge.jsonl", "candidates.jsonl"] {
        assert_eq!(read(&killed, name), read(&whole, name), "{name}");
    }
    let report: serde_json::Value =
        serde_json::from_str(&read(&killed, "generate.report.json")).unwrap();
    assert_eq!(report["requests"]["failed"], 0, "{report}");
    assert_eq!(report["requests"]["requests"], 40, "{report}");

    // Every request once, but one in flight and unanswered at a kill (sent
    // again).
    assert_eq!(server.count(), total + resent_at.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in server.received() {
        *seen.entry(r.body.to_string()).or_default() += 1;
    }
    let received = server.received();
    let in_flight_at_kills: Vec<String> = resent_at
        .iter()
        .map(|&k| received[k - 1].body.to_string())
        .collect();
    for (body, times) in &seen {
        let in_flight_at_kill = in_flight_at_kills.contains(body);
        assert_eq!(*times, if in_flight_at_kill { 2 } else { 1 }, "{body}");
    }
    let reference_bodies: std::collections::HashSet<String> = reference
        .received()
        .iter()
        .map(|r| r.body.to_string())
        .collect();
    assert_eq!(
        seen.keys()
            .cloned()
            .collect::<std::collections::HashSet<_>>(),
        reference_bodies
    );
}

/// A chains config over HTTP: 4 unguided rewrites of each scripted source,
/// the monotonicity filter by all-MiniLM-L6-v2 when `model` is given.
fn write_chains_config(dir: &Path, url: &str, guided: bool, model: Option<&Path>) -> PathBuf {
    let filter = model.map_or(String::new(), |m| {
        format!("filter_model = \"{}\"\nmonotonicity = 0.0\n", m.display())
    });
    let chains = format!("[chains]\nlength = 4\nguided = {guided}\n{filter}");
    write_synth_config(dir, url, "chains.toml", &chains)
}

#[test]
fn a_killed_chains_run_resumes_to_the_same_lists_without_repeating_requests() {
    let test = "a_killed_chains_run_resumes_to_the_same_lists_without_repeating_requests";
    let model = common::minilm_dir(test);
    let whole = temp_dir("chains-whole");
    let reference = scripted_completions(Duration::from_millis(40));
    let config = write_chains_config(&whole, &reference.url, false, model.as_deref());
    finish(run("chains", &config));
    let total = reference.count();
    assert_eq!(total, SOURCES.len() * 4, "4 steps of every chain");
    let read =
        |dir: &Path, name: &str| std::fs::read_to_string(dir.join("out").join(name)).unwrap();
    let lists = read(&whole, "lists.jsonl");
    let records: Vec<serde_json::Value> = lists
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), SOURCES.len());
    for (record, source) in records.iter().zip(SOURCES) {
        assert_eq!(record["source"], *source);
        assert_eq!(record["chain"].as_array().unwrap().len(), 4, "{record}");
        assert!(record["guidance"].is_null(), "unguided: {record}");
        if model.is_some() {
            assert!(record["spearman"].is_number(), "{record}");
        }
    }
    // Step 2 rewrites step 1's answer.
    let first = records[0]["chain"][0].as_str().unwrap();
    let received = reference.received();
    assert!(
        received
            .iter()
            .any(|r| r.body["prompt"].as_str().unwrap().contains(first)),
        "a prompt on {first}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&read(&whole, "chains.report.json")).unwrap();
    let dropped: u64 = report["dropped"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(
        report["kept"].as_u64().unwrap() + dropped,
        SOURCES.len() as u64,
        "{report}"
    );

    let killed = temp_dir("chains-killed");
    let server = scripted_completions(Duration::from_millis(40));
    let config = write_chains_config(&killed, &server.url, false, model.as_deref());
    let mut resent = 0;
    for k in [3, 12, 27] {
        kill_at("chains", &config, &server, k);
        assert!(
            !killed.join("out/lists.jsonl").exists(),
            "no list before the last step"
        );
        assert_eq!(server.count(), k, "no request after the kill");
        let stored = stored(&killed);
        assert!(
            stored + 1 >= k - resent && stored <= k - resent,
            "{stored} stored at {k}"
        );
        resent += k - resent - stored;
    }
    finish(run("chains", &config));
    assert_eq!(
        read(&killed, "lists.jsonl"),
        lists,
        "the same lists, byte for byte"
    );
    assert_eq!(
        server.count(),
        total + resent,
        "every request once, but {resent} in flight at a kill"
    );
    // Once more: every answer from the store.
    finish(run("chains", &config));
    assert_eq!(server.count(), total + resent);
    assert_eq!(read(&killed, "lists.jsonl"), lists);
    let report: serde_json::Value =
        serde_json::from_str(&read(&killed, "chains.report.json")).unwrap();
    assert_eq!(report["requests"]["sent"], 0, "{report}");
    assert_eq!(report["requests"]["from_store"], total, "{report}");

    // A guided chain over HTTP is refused, saying why and where.
    let guided = temp_dir("chains-guided");
    let config = write_chains_config(&guided, &server.url, true, None);
    let out = run("chains", &config).wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("chains.toml")
            && stderr.contains("chains.guided")
            && stderr.contains("logits"),
        "{stderr}"
    );
}
