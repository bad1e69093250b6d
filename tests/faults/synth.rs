//! Data synthesis: bad synthesis files are errors naming the file and key;
//! servers on loopback that fail every request (error pages, 5xx, answers
//! without text, hang-ups, silence, absurd `Retry-After`) end the step with
//! an error and no output, never a panic or a hang.

use crate::common::llm_server::{Reply, ScriptedServer};
use crate::harness::{run_table, Case};
use crate::raw_server::{self, Raw};
use crate::world::{edit, World};

/// A synthesis file over `sources.txt` against `endpoint`, no retries.
fn synthesis(endpoint: &str) -> String {
    format!(
        r#"out_dir = "synth-out"
[sources]
min_words = 1
[[sources.general]]
path = "sources.txt"
[llm]
backend = "http"
[llm.http]
endpoints = ["{endpoint}"]
model = "scripted"
api = "chat"
retries = 0
timeout_s = 2
"#
    )
}

fn extract(config: &str) -> Vec<&str> {
    vec!["synth", "extract", "--config", config]
}

fn cases(w: &World) -> Vec<Case> {
    w.write(
        "sources.txt",
        "a man is playing a guitar .\ntwo dogs run in the park .\nthe cat sleeps on the mat .\na woman is talking .\n",
    );
    let good = ScriptedServer::start(|_, _| {
        Reply::chat(r#"{"entities": [{"text": "man", "type": "person"}], "quantities": []}"#)
    });
    let base = synthesis(&good.url);
    let mut cases = Vec::new();
    // One key per case.
    let keys: &[(&str, &str, &str, &str)] = &[
        (
            "endpoint-no-scheme",
            "llm.http.endpoints",
            "[\"127.0.0.1:8080/v1\"]",
            "llm.http.endpoints[0]",
        ),
        (
            "endpoint-ftp",
            "llm.http.endpoints",
            "[\"ftp://127.0.0.1/v1\"]",
            "llm.http.endpoints[0]",
        ),
        (
            "endpoint-no-host",
            "llm.http.endpoints",
            "[\"http:///v1\"]",
            "llm.http.endpoints[0]",
        ),
        (
            "endpoints-empty",
            "llm.http.endpoints",
            "[]",
            "llm.http.endpoints",
        ),
        (
            "timeout-inf",
            "llm.http.timeout_s",
            "inf",
            "llm.http.timeout_s",
        ),
        (
            "timeout-nan",
            "llm.http.timeout_s",
            "nan",
            "llm.http.timeout_s",
        ),
        (
            "timeout-zero",
            "llm.http.timeout_s",
            "0.0",
            "llm.http.timeout_s",
        ),
        (
            "timeout-huge",
            "llm.http.timeout_s",
            "1e30",
            "llm.http.timeout_s",
        ),
        (
            "backoff-huge",
            "llm.http.backoff_s",
            "1e30",
            "llm.http.backoff_s",
        ),
        (
            "backoff-negative",
            "llm.http.backoff_s",
            "-1.0",
            "llm.http.backoff_s",
        ),
        (
            "in-flight-zero",
            "llm.http.in_flight",
            "0",
            "llm.http.in_flight",
        ),
        ("api-unknown", "llm.http.api", "\"rest\"", "rest"),
        (
            "key-env-unset",
            "llm.http.api_key_env",
            "\"GCSE_FAULTS_NO_SUCH_KEY\"",
            "GCSE_FAULTS_NO_SUCH_KEY",
        ),
        (
            "failed-fraction-two",
            "llm.max_failed_fraction",
            "2.0",
            "llm.max_failed_fraction",
        ),
        ("backend-unknown", "llm.backend", "\"cloud\"", "cloud"),
        (
            "temperature-inf",
            "generate.temperature",
            "inf",
            "generate.temperature",
        ),
        (
            "temperature-negative",
            "extract.temperature",
            "-1.0",
            "extract.temperature",
        ),
        ("top-p-zero", "extract.top_p", "0.0", "extract.top_p"),
        ("top-p-nan", "generate.top_p", "nan", "generate.top_p"),
        (
            "max-tokens-zero",
            "extract.max_tokens",
            "0",
            "extract.max_tokens",
        ),
        (
            "nothing-to-generate",
            "generate.positives",
            "0\nnegatives = 0",
            "generate.positives",
        ),
        (
            "words-crossed",
            "sources.min_words",
            "10\nmax_words = 5",
            "sources.min_words",
        ),
        (
            "kind-weight-nan",
            "generate.positive_kinds",
            "{ rewrite = nan }",
            "generate.positive_kinds.rewrite",
        ),
        (
            "kind-unknown",
            "generate.positive_kinds",
            "{ poem = 1.0 }",
            "poem",
        ),
        (
            "kind-weights-zero",
            "generate.negative_kinds",
            "{ antisense = 0.0 }",
            "generate.negative_kinds",
        ),
        (
            "prompt-kind-unknown",
            "prompts.sonnet",
            "\"sonnet.txt\"",
            "sonnet",
        ),
        ("unknown-key", "llm.http.temperature", "0.5", "temperature"),
    ];
    for &(name, key, value, names) in keys {
        let config = w.write(
            &format!("synth/{name}.toml"),
            edit(&base, &[(key, Some(value))]),
        );
        cases.push(
            Case::error(name, &extract(&config), &[&format!("{name}.toml"), names])
                .leaves_no(&w.path("synth-out/knowledge.jsonl")),
        );
    }
    let raw = |name: &str, text: String, names: &[&str]| {
        let config = w.write(&format!("synth/{name}.toml"), text);
        Case::error(name, &extract(&config), names).leaves_no(&w.path("synth-out/knowledge.jsonl"))
    };
    cases.push(raw(
        "no-sources",
        base.replace("[[sources.general]]\npath = \"sources.txt\"\n", ""),
        &["no-sources.toml", "sources"],
    ));
    cases.push(raw(
        "no-http-section",
        base.replace("[llm.http]", "[llm.other]"),
        &["no-http-section.toml"],
    ));
    cases.push(raw(
        "sources-missing",
        base.replace("sources.txt", "none.txt"),
        &["none.txt"],
    ));
    cases.push(raw(
        "prompts-missing",
        format!("{base}[prompts]\ndir = \"no-prompts\"\n"),
        &["no-prompts"],
    ));
    cases.push(raw(
        "syntax",
        base.replace("[llm.http]", "[llm.http"),
        &["syntax.toml", "line"],
    ));
    cases.push(Case::error(
        "config-missing",
        &extract("synth/none.toml"),
        &["none.toml"],
    ));

    // Servers that fail every request.
    let failing: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "html-200",
            ScriptedServer::start(|_, _| Reply::new(200, "<html><body>Hello</body></html>")).url,
            vec!["4 of 4 requests failed", "not JSON"],
        ),
        (
            "no-choices",
            ScriptedServer::start(|_, _| Reply::new(200, r#"{"object": "chat.completion"}"#)).url,
            vec!["4 of 4 requests failed", "no answer text"],
        ),
        (
            "server-error",
            ScriptedServer::start(|_, _| {
                Reply::new(500, r#"{"error": {"message": "overloaded"}}"#)
            })
            .url,
            vec!["4 of 4 requests failed", "overloaded"],
        ),
        (
            "retry-after-huge",
            ScriptedServer::start(|_, _| {
                Reply::new(429, "slow down").header("Retry-After", "1e30")
            })
            .url,
            vec!["4 of 4 requests failed", "429"],
        ),
        (
            "retry-after-negative",
            ScriptedServer::start(|_, _| Reply::new(503, "busy").header("Retry-After", "-5")).url,
            vec!["4 of 4 requests failed", "503"],
        ),
        (
            "bad-request",
            ScriptedServer::start(|_, _| {
                Reply::new(400, r#"{"error": "max_tokens is not supported"}"#)
            })
            .url,
            vec!["4 of 4 requests failed", "max_tokens is not supported"],
        ),
        (
            "denied",
            ScriptedServer::start(|_, _| Reply::new(401, r#"{"error": "bad key"}"#)).url,
            vec!["bad key"],
        ),
        (
            "silent",
            format!("{}/v1", raw_server::start(|_| Raw::Silent)),
            vec!["4 of 4 requests failed", "no answer within 2 s"],
        ),
        (
            "hang-up",
            format!("{}/v1", raw_server::start(|_| Raw::HangUp)),
            vec!["requests failed"],
        ),
        (
            "garbage",
            format!(
                "{}/v1",
                raw_server::start(|_| Raw::Bytes(b"hello\r\n\r\n".to_vec()))
            ),
            vec!["requests failed"],
        ),
        (
            "unreachable",
            crate::common::llm_server::closed_endpoint(),
            vec!["no endpoint could be reached"],
        ),
    ];
    for (name, url, names) in failing {
        let out = format!("synth-{name}");
        let text = synthesis(&url).replace("synth-out", &out);
        let config = w.write(&format!("synth/{name}.toml"), text);
        cases.push(
            Case::error(name, &extract(&config), &names)
                .leaves_no(&w.path(&format!("{out}/knowledge.jsonl")))
                .limit(std::time::Duration::from_secs(60)),
        );
    }
    // One request in four failing stays under the default fraction (0.2)
    // only when allowed more: 0.25 fails, 0.3 passes.
    let flaky = ScriptedServer::start(|_, r| {
        if r.body["messages"][0]["content"]
            .as_str()
            .unwrap_or("")
            .contains("guitar")
        {
            Reply::new(400, r#"{"error": "rejected"}"#)
        } else {
            Reply::chat(r#"{"entities": [], "quantities": []}"#)
        }
    });
    for (name, fraction, ok) in [("flaky-0.2", "0.2", false), ("flaky-0.3", "0.3", true)] {
        let out = format!("synth-{name}");
        let text = edit(
            &synthesis(&flaky.url).replace("synth-out", &out),
            &[("llm.max_failed_fraction", Some(fraction))],
        );
        let config = w.write(&format!("synth/{name}.toml"), text);
        cases.push(if ok {
            Case::success(name, &extract(&config), &["1 failed"])
        } else {
            Case::error(
                name,
                &extract(&config),
                &["1 of 4 requests failed", "rejected"],
            )
            .leaves_no(&w.path(&format!("{out}/knowledge.jsonl")))
        });
    }
    cases.push(
        Case::success(
            "good-server",
            &extract(&w.write("synth/good.toml", base.clone())),
            &["0 failed"],
        )
        .may_change(&w.path("synth-out")),
    );
    cases
}

#[test]
fn synthesis_files_and_servers() {
    let w = World::new("synth");
    let tally = run_table("synthesis", &w.dir, cases(&w));
    assert!(tally.cases >= 45, "{tally:?}");
    std::fs::remove_dir_all(&w.dir).unwrap();
}
