//! `gcse synth all` killed (SIGKILL) at several points, during extraction
//! and during generation, then run again to the end: its knowledge and
//! candidates equal an uninterrupted run's, byte for byte, and the server
//! saw every request once, but for one in flight and still unanswered at a
//! kill. The LLM is a scripted server whose answers are a function of the
//! prompt, so two runs can be compared.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::llm_server::{scripted_completions, SCRIPTED_SOURCES as SOURCES};
use common::temp_dir;

fn write_config(dir: &Path, url: &str) -> std::path::PathBuf {
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

[generate]
positives = 2
negatives = 3

[generate.negative_kinds]
antisense = 0.3
entity_revision = 0.4
quantity_revision = 0.3
"#,
        out = dir.join("out").display(),
        sources = dir.join("sources.txt").display(),
    );
    let path = dir.join("synth.toml");
    std::fs::write(&path, config).unwrap();
    path
}

fn start(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_gcse"))
        .args(["synth", "all", "--config"])
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
        let mut child = start(&config);
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
        // Request k is at the server (held 40 ms); the answer before it is
        // on disk. A slow kill may let k's answer land too.
        std::thread::sleep(Duration::from_millis(15));
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(server.count(), k, "no request after the kill");
        let answers = std::fs::read_to_string(killed.join("out").join("answers.jsonl")).unwrap();
        let stored = answers
            .split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .count();
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
