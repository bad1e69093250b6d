//! The OpenAI-compatible HTTP backend against a scripted server on
//! loopback: request bodies, the response shapes of OpenAI, Ollama and vLLM
//! (success and error bodies, from `assets/llm-responses`), retries on
//! 5xx/429/timeouts, failures that must not be retried, fatal errors that
//! stop a run, a pool of endpoints, requests in flight, and the answer
//! store's part: answered requests are never sent again.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::llm_server::{closed_endpoint, Reply, ScriptedServer};
use common::temp_dir;
use gcse::synth::answers::{AnswerStore, Sampling};
use gcse::synth::http::{error_message, Api, HttpConfig, HttpLlm};
use gcse::synth::llm::{answer_all, Llm, LlmError, Request};

fn asset(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("assets/llm-responses")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn config(endpoints: Vec<String>) -> HttpConfig {
    HttpConfig {
        endpoints,
        model: "scripted-model".into(),
        api_key_env: None,
        api: Api::Chat,
        in_flight: 1,
        timeout_s: 5.0,
        retries: 3,
        backoff_s: 0.01,
        json_mode: true,
    }
}

fn request(prompt: &str) -> Request {
    Request {
        prompt: prompt.into(),
        sampling: Sampling {
            temperature: 0.7,
            top_p: 0.95,
            max_tokens: 48,
            seed: Some(11),
            stop: vec!["\n".into()],
        },
        json: true,
    }
}

#[test]
fn a_chat_request_carries_model_prompt_sampling_and_json_mode() {
    std::env::set_var("GCSE_TEST_LLM_KEY", "sk-local");
    let server = ScriptedServer::start(|_, _| Reply::new(200, asset("openai-chat.json")));
    let llm = HttpLlm::new(HttpConfig {
        api_key_env: Some("GCSE_TEST_LLM_KEY".into()),
        ..config(vec![server.url.clone()])
    })
    .unwrap();
    let answer = llm.complete(&request("Sentence: x\nParaphrase:")).unwrap();
    assert_eq!(answer.text, r#"{"text": "A man plays a guitar on stage."}"#);
    assert_eq!(
        (answer.prompt_tokens, answer.completion_tokens),
        (Some(41), Some(12))
    );
    let got = &server.received()[0];
    assert_eq!(got.request.path, "/v1/chat/completions");
    assert_eq!(got.request.header("authorization"), Some("Bearer sk-local"));
    let b = &got.body;
    assert_eq!(b["model"], "scripted-model");
    assert_eq!(b["messages"][0]["role"], "user");
    assert_eq!(b["messages"][0]["content"], "Sentence: x\nParaphrase:");
    assert_eq!(b["max_tokens"], 48);
    assert_eq!(b["seed"], 11);
    assert_eq!(b["stop"][0], "\n");
    assert!((b["temperature"].as_f64().unwrap() - 0.7).abs() < 1e-6);
    assert!((b["top_p"].as_f64().unwrap() - 0.95).abs() < 1e-6);
    assert_eq!(b["response_format"]["type"], "json_object");
    assert_eq!(b["stream"], false);

    // JSON mode only where the config allows it and the prompt wants JSON.
    let plain = HttpLlm::new(config(vec![server.url.clone()])).unwrap();
    plain
        .complete(&Request {
            json: false,
            ..request("p")
        })
        .unwrap();
    assert!(server.received()[1].body.get("response_format").is_none());
}

#[test]
fn plain_completions_send_the_prompt_as_it_is_and_read_vllm_answers() {
    let server = ScriptedServer::start(|_, _| Reply::new(200, asset("vllm-completions.json")));
    let llm = HttpLlm::new(HttpConfig {
        api: Api::Completions,
        ..config(vec![server.url.clone()])
    })
    .unwrap();
    let answer = llm.complete(&request("Sentence: y\nParaphrase:")).unwrap();
    assert_eq!(
        answer.text,
        r#" {"text": "Two dogs run across a snowy field."}"#
    );
    assert_eq!(answer.completion_tokens, Some(12));
    let got = &server.received()[0];
    assert_eq!(got.request.path, "/v1/completions");
    assert_eq!(got.body["prompt"], "Sentence: y\nParaphrase:");
    assert!(got.body.get("messages").is_none());
    assert!(got.body.get("response_format").is_none());
}

#[test]
fn ollama_answers_are_read() {
    let server = ScriptedServer::start(|_, _| Reply::new(200, asset("ollama-chat.json")));
    let llm = HttpLlm::new(config(vec![server.url.clone()])).unwrap();
    let answer = llm.complete(&request("p")).unwrap();
    assert_eq!(answer.text, r#"{"text": "Nobody is playing a guitar."}"#);
    assert_eq!(answer.prompt_tokens, Some(38));
}

#[test]
fn error_bodies_of_each_server_give_their_message() {
    assert!(error_message(&asset("openai-error.json")).starts_with("Incorrect API key provided"));
    assert_eq!(
        error_message(&asset("ollama-error.json")),
        r#"model "gemma3:27b" not found, try pulling it first"#
    );
    assert!(error_message(&asset("vllm-error.json")).starts_with("This model's maximum context"));
    assert_eq!(
        error_message("<html>\n<b>Bad Gateway</b></html>"),
        "<html> <b>Bad Gateway</b></html>"
    );
    let long = "x".repeat(1000);
    assert_eq!(error_message(&long).chars().count(), 203);
}

#[test]
fn server_errors_rate_limits_and_broken_bodies_are_retried() {
    let server = ScriptedServer::start(|n, _| match n {
        0 => Reply::new(503, r#"{"error": "loading model"}"#),
        1 => Reply::new(429, asset("openai-error.json")).header("retry-after", "0"),
        2 => Reply::new(200, "<html>proxy error</html>"),
        _ => Reply::chat("fine"),
    });
    let llm = HttpLlm::new(config(vec![server.url.clone()])).unwrap();
    assert_eq!(llm.complete(&request("p")).unwrap().text, "fine");
    assert_eq!(server.count(), 4);
}

#[test]
fn retries_are_bounded_and_the_last_reason_is_kept() {
    let server = ScriptedServer::start(|_, _| Reply::new(500, r#"{"message": "engine died"}"#));
    let llm = HttpLlm::new(config(vec![server.url.clone()])).unwrap();
    match llm.complete(&request("p")) {
        Err(LlmError::Failed(reason)) => {
            assert!(reason.contains("gave up after 4 attempts"), "{reason}");
            assert!(reason.contains("HTTP 500: engine died"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.count(), 4);
}

#[test]
fn a_slow_answer_times_out_and_is_asked_again() {
    let server = ScriptedServer::start(|n, _| {
        let reply = Reply::chat("late but here");
        if n == 0 {
            reply.after(Duration::from_millis(1500))
        } else {
            reply.after(Duration::from_millis(100))
        }
    });
    let llm = HttpLlm::new(HttpConfig {
        timeout_s: 0.8,
        ..config(vec![server.url.clone()])
    })
    .unwrap();
    assert_eq!(llm.complete(&request("p")).unwrap().text, "late but here");
    assert_eq!(server.count(), 2);
}

#[test]
fn a_bad_request_fails_at_once_without_retries() {
    let server = ScriptedServer::start(|_, _| Reply::new(400, asset("vllm-error.json")));
    let llm = HttpLlm::new(config(vec![server.url.clone()])).unwrap();
    match llm.complete(&request("p")) {
        Err(LlmError::Failed(reason)) => {
            assert!(
                reason.contains("HTTP 400: This model's maximum context length"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.count(), 1);
}

#[test]
fn a_bad_key_or_unknown_model_stops_the_run() {
    for (status, file, words) in [
        (401, "openai-error.json", "Incorrect API key"),
        (404, "ollama-error.json", "not found, try pulling it"),
    ] {
        let server = ScriptedServer::start(move |_, _| Reply::new(status, asset(file)));
        let llm = HttpLlm::new(config(vec![server.url.clone()])).unwrap();
        let dir = temp_dir(&format!("http-fatal-{status}"));
        let mut store = AnswerStore::open(&dir.join("answers.jsonl")).unwrap();
        let requests: Vec<Request> = (0..20).map(|i| request(&format!("p{i}"))).collect();
        let err = answer_all(&llm, &mut store, &requests, "test")
            .unwrap_err()
            .to_string();
        assert!(err.contains(words), "{err}");
        assert!(err.contains(&format!("HTTP {status}")), "{err}");
        // One request in flight: the run stopped after the first.
        assert_eq!(server.count(), 1, "{status}");
    }
}

#[test]
fn no_reachable_endpoint_is_fatal() {
    let llm = HttpLlm::new(config(vec![closed_endpoint(), closed_endpoint()])).unwrap();
    match llm.complete(&request("p")) {
        Err(LlmError::Fatal(reason)) => {
            assert!(reason.contains("no endpoint could be reached"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn requests_spread_over_the_pool_and_a_dead_endpoint_is_passed_over() {
    let a = ScriptedServer::start(|_, r| {
        Reply::chat(&format!(
            "a:{}",
            r.body["messages"][0]["content"].as_str().unwrap()
        ))
    });
    let b = ScriptedServer::start(|_, r| {
        Reply::chat(&format!(
            "b:{}",
            r.body["messages"][0]["content"].as_str().unwrap()
        ))
    });
    let llm = HttpLlm::new(config(vec![a.url.clone(), b.url.clone()])).unwrap();
    for i in 0..10 {
        let text = llm.complete(&request(&format!("p{i}"))).unwrap().text;
        assert!(text.ends_with(&format!(":p{i}")), "{text}");
    }
    assert_eq!((a.count(), b.count()), (5, 5));

    let llm = HttpLlm::new(config(vec![closed_endpoint(), a.url.clone()])).unwrap();
    for i in 0..4 {
        assert_eq!(
            llm.complete(&request(&format!("q{i}"))).unwrap().text,
            format!("a:q{i}")
        );
    }
    assert_eq!(a.count(), 9);
}

#[test]
fn a_run_keeps_requests_in_flight_and_never_sends_an_answered_request_again() {
    let server = ScriptedServer::start(|_, r| {
        let prompt = r.body["messages"][0]["content"]
            .as_str()
            .unwrap()
            .to_string();
        if prompt == "p3" {
            Reply::new(400, r#"{"error": {"message": "prompt rejected"}}"#)
        } else {
            Reply::chat(&prompt.to_uppercase()).after(Duration::from_millis(150))
        }
    });
    let llm = HttpLlm::new(HttpConfig {
        in_flight: 4,
        ..config(vec![server.url.clone()])
    })
    .unwrap();
    assert_eq!(llm.parallelism(), 4);
    let dir = temp_dir("http-run");
    let path = dir.join("answers.jsonl");
    // p1 twice: one request for both.
    let prompts = ["p0", "p1", "p2", "p3", "p1", "p4", "p5", "p6", "p7"];
    let requests: Vec<Request> = prompts.iter().map(|p| request(p)).collect();
    let mut store = AnswerStore::open(&path).unwrap();
    let (answers, stats) = answer_all(&llm, &mut store, &requests, "test").unwrap();
    for (prompt, answer) in prompts.iter().zip(&answers) {
        match *prompt {
            "p3" => assert!(answer.is_none()),
            p => assert_eq!(answer.as_ref().unwrap().text, p.to_uppercase()),
        }
    }
    assert_eq!(
        (stats.requests, stats.from_store, stats.sent, stats.failed),
        (9, 1, 8, 1)
    );
    assert_eq!(stats.completion_tokens, 7 * 3);
    assert!(
        stats.failures[0].contains("prompt rejected"),
        "{:?}",
        stats.failures
    );
    assert_eq!(server.count(), 8);
    assert!(server.max_in_flight() >= 2, "{}", server.max_in_flight());
    assert!(server.max_in_flight() <= 4, "{}", server.max_in_flight());
    drop(store);

    // A second run: only the failed request goes out.
    let mut store = AnswerStore::open(&path).unwrap();
    assert_eq!(store.len(), 7);
    let (again, stats) = answer_all(&llm, &mut store, &requests, "test").unwrap();
    assert_eq!((stats.from_store, stats.sent, stats.failed), (8, 1, 1));
    assert_eq!(server.count(), 9);
    assert_eq!(server.received()[8].body["messages"][0]["content"], "p3");
    assert_eq!(again, answers);
}

#[test]
fn bad_configs_are_refused() {
    let no_endpoint = HttpLlm::new(config(vec![])).err().unwrap().to_string();
    assert!(
        no_endpoint.contains("`llm.http.endpoints` is empty"),
        "{no_endpoint}"
    );
    let missing_key = HttpLlm::new(HttpConfig {
        api_key_env: Some("GCSE_TEST_UNSET_KEY_VARIABLE".into()),
        ..config(vec!["http://127.0.0.1:1/v1".into()])
    })
    .err()
    .unwrap()
    .to_string();
    assert!(
        missing_key.contains("GCSE_TEST_UNSET_KEY_VARIABLE"),
        "{missing_key}"
    );
}
