//! The OpenAI-compatible HTTP backend against a scripted server on
//! loopback: request bodies, the response shapes of OpenAI, Ollama and vLLM
//! (success and error bodies, from `assets/llm-responses`), retries on
//! 5xx/429/timeouts, failures that must not be retried, fatal errors that
//! stop a run, a pool of endpoints, requests in flight, and the answer
//! store's part: answered requests are never sent again.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use common::llm_server::{closed_endpoint, Reply, ScriptedServer};
use common::temp_dir;
use gcse::synth::answers::{AnswerStore, Sampling};
use gcse::synth::http::{error_message, Api, HttpConfig, HttpLlm, TokenLimit, SAME_REJECTIONS};
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
        json_schema: false,
        token_limit: TokenLimit::MaxTokens,
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
        shape: Some(gcse::synth::shape::candidate()),
        guidance: None,
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
            shape: None,
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

#[test]
fn the_same_rejection_request_after_request_stops_the_run() {
    let server = ScriptedServer::start(|_, _| {
        Reply::new(
            400,
            r#"{"error": {"message": "Unsupported parameter: 'top_p'"}}"#,
        )
    });
    let llm = HttpLlm::new(config(vec![server.url.clone()])).unwrap();
    for i in 1..SAME_REJECTIONS {
        match llm.complete(&request(&format!("p{i}"))) {
            Err(LlmError::Failed(reason)) => assert!(reason.contains("top_p"), "{reason}"),
            other => panic!("request {i}: {other:?}"),
        }
    }
    match llm.complete(&request("last")) {
        Err(LlmError::Fatal(reason)) => assert!(
            reason.contains(&format!("{SAME_REJECTIONS} requests in a row"))
                && reason.contains("Unsupported parameter: 'top_p'"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        server.count(),
        SAME_REJECTIONS,
        "a rejection is never retried"
    );

    // Different rejections, or a success between them, do not add up.
    let varied = ScriptedServer::start(|n, _| match n % 3 {
        0 => Reply::new(400, format!(r#"{{"error": "prompt {n} is too long"}}"#)),
        1 => Reply::new(422, r#"{"error": "bad request"}"#),
        _ => Reply::new(200, asset("openai-chat.json")),
    });
    let llm = HttpLlm::new(config(vec![varied.url.clone()])).unwrap();
    for i in 0..3 * SAME_REJECTIONS {
        if let Err(LlmError::Fatal(reason)) = llm.complete(&request(&format!("q{i}"))) {
            panic!("request {i}: {reason}");
        }
    }
}

#[test]
fn a_server_that_wants_max_completion_tokens_gets_it_from_then_on() {
    let server = ScriptedServer::start(|_, got| {
        if got.body.get("max_tokens").is_some() {
            Reply::new(
                400,
                r#"{"error": {"message": "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.", "type": "invalid_request_error", "param": "max_tokens"}}"#,
            )
        } else {
            Reply::new(200, asset("openai-chat.json"))
        }
    });
    let llm = HttpLlm::new(config(vec![server.url.clone()])).unwrap();
    llm.complete(&request("first")).unwrap();
    llm.complete(&request("second")).unwrap();
    let bodies: Vec<Value> = server.received().into_iter().map(|r| r.body).collect();
    assert_eq!(bodies.len(), 3, "one refused attempt, then two answers");
    assert_eq!(bodies[0]["max_tokens"], 48);
    for body in &bodies[1..] {
        assert_eq!(body["max_completion_tokens"], 48);
        assert!(body.get("max_tokens").is_none());
    }
    let configured = HttpLlm::new(HttpConfig {
        token_limit: TokenLimit::MaxCompletionTokens,
        ..config(vec![server.url.clone()])
    })
    .unwrap();
    configured.complete(&request("third")).unwrap();
    assert_eq!(server.count(), 4, "asked by name from the start");
}

/// An LLM that answers with the prompt's words, at most `max_tokens` of
/// them, one token a word.
struct Echo;

impl Llm for Echo {
    fn model(&self) -> &str {
        "echo"
    }
    fn parallelism(&self) -> usize {
        1
    }
    fn complete(&self, request: &Request) -> Result<gcse::synth::answers::Answer, LlmError> {
        let words: Vec<&str> = request
            .prompt
            .split_whitespace()
            .take(request.sampling.max_tokens as usize)
            .collect();
        Ok(gcse::synth::answers::Answer {
            text: words.join(" "),
            prompt_tokens: Some(request.prompt.split_whitespace().count() as u32),
            completion_tokens: Some(words.len() as u32),
        })
    }
}

/// Sends `raw` on a new connection and reads until the server closes it or
/// one response has arrived; the text read.
fn exchange(address: &str, raw: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(raw).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&out);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.parse::<usize>().ok());
            if length.is_some_and(|n| body.len() >= n) {
                break;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn post(path: &str, body: &Value) -> Vec<u8> {
    let body = body.to_string();
    format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn synth_serve_bounds_what_a_client_can_hold_and_says_why_an_answer_ended() {
    use gcse::synth::serve::{serve, ServeOptions, MAX_HEAD};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        serve(
            listener,
            &Echo,
            &ServeOptions {
                model: "echo".into(),
                max_queue: 4,
                max_connections: 2,
                read_timeout: Duration::from_millis(600),
            },
        )
    });
    let status = |response: &str| response.split_whitespace().nth(1).unwrap_or("").to_string();
    let json_of = |response: &str| -> Value {
        serde_json::from_str(response.split_once("\r\n\r\n").unwrap().1).unwrap()
    };

    let cut = exchange(
        &address,
        &post(
            "/v1/completions",
            &serde_json::json!({"prompt": "one two three four five", "max_tokens": 2}),
        ),
    );
    assert_eq!(status(&cut), "200", "{cut}");
    assert_eq!(json_of(&cut)["choices"][0]["text"], "one two");
    assert_eq!(json_of(&cut)["choices"][0]["finish_reason"], "length");
    let whole = exchange(
        &address,
        &post(
            "/v1/chat/completions",
            &serde_json::json!({"messages": [{"role": "user", "content": "one two"}], "max_completion_tokens": 9}),
        ),
    );
    assert_eq!(
        json_of(&whole)["choices"][0]["message"]["content"],
        "one two"
    );
    assert_eq!(json_of(&whole)["choices"][0]["finish_reason"], "stop");

    let streamed = exchange(
        &address,
        &post(
            "/v1/completions",
            &serde_json::json!({"prompt": "x", "stream": true}),
        ),
    );
    assert_eq!(status(&streamed), "400", "{streamed}");
    assert!(
        streamed.contains("streaming is not supported"),
        "{streamed}"
    );

    let huge = format!(
        "GET /v1/models HTTP/1.1\r\nx-filler: {}\r\n\r\n",
        "a".repeat(MAX_HEAD)
    );
    let refused = exchange(&address, huge.as_bytes());
    assert_eq!(status(&refused), "431", "{refused}");

    // A request that stops halfway gets 408; a silent connection is closed
    // without a word.
    let started = std::time::Instant::now();
    let slow = exchange(&address, b"POST /v1/completions HTTP/1.1\r\ncontent-len");
    assert_eq!(status(&slow), "408", "{slow}");
    assert_eq!(exchange(&address, b""), "");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "both ended by the read timeout"
    );

    // Two connections held open: a third is turned away at once.
    let hold = || {
        let stream = std::net::TcpStream::connect(&address).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        stream
    };
    let (a, b) = (hold(), hold());
    let busy = exchange(&address, b"GET /v1/models HTTP/1.1\r\n\r\n");
    assert_eq!(status(&busy), "503", "{busy}");
    assert!(busy.contains("too many connections"), "{busy}");
    drop((a, b));
    std::thread::sleep(Duration::from_millis(900));
    let served = exchange(&address, b"GET /v1/models HTTP/1.1\r\n\r\n");
    assert_eq!(status(&served), "200", "slots are given back: {served}");
}

#[test]
fn json_schemas_are_sent_where_asked_and_dropped_when_a_server_refuses_them() {
    let server = ScriptedServer::start(|_, _| Reply::new(200, asset("openai-chat.json")));
    let llm = HttpLlm::new(HttpConfig {
        json_schema: true,
        ..config(vec![server.url.clone()])
    })
    .unwrap();
    let extraction = Request {
        shape: Some(gcse::synth::shape::extraction()),
        ..request("p")
    };
    llm.complete(&extraction).unwrap();
    let format = &server.received()[0].body["response_format"];
    assert_eq!(format["type"], "json_schema");
    assert_eq!(format["json_schema"]["strict"], true);
    assert_eq!(
        format["json_schema"]["schema"],
        gcse::synth::shape::extraction().json_schema()
    );
    llm.complete(&Request {
        shape: None,
        ..request("free text")
    })
    .unwrap();
    assert!(server.received()[1].body.get("response_format").is_none());

    // A server without structured output: asked again at once, in JSON
    // mode, and never with a schema after that.
    let plain = ScriptedServer::start(|_, got| {
        if got.body["response_format"]["type"] == "json_schema" {
            Reply::new(
                400,
                r#"{"error": {"message": "response_format.type json_schema is not supported"}}"#,
            )
        } else {
            Reply::new(200, asset("openai-chat.json"))
        }
    });
    let llm = HttpLlm::new(HttpConfig {
        json_schema: true,
        ..config(vec![plain.url.clone()])
    })
    .unwrap();
    llm.complete(&extraction).unwrap();
    llm.complete(&extraction).unwrap();
    let kinds: Vec<Value> = plain
        .received()
        .iter()
        .map(|r| r.body["response_format"]["type"].clone())
        .collect();
    assert_eq!(kinds, ["json_schema", "json_object", "json_object"]);
}
