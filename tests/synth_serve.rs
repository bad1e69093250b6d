//! The HTTP backend against a real OpenAI-compatible server on loopback
//! serving a real model: `gcse synth serve`'s server over the embedded
//! engine with Gemma 3 270M. Answers over HTTP equal the engine's own; a
//! busy server's 503s are retried; slow answers arrive; a client timeout,
//! an unknown model and a prompt beyond the context fail as they should.
#![cfg(feature = "llama")]

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::{gemma_gguf, temp_dir};
use gcse::synth::answers::{AnswerStore, Sampling};
use gcse::synth::http::{Api, HttpConfig, HttpLlm, TokenLimit};
use gcse::synth::llm::{answer_all, Llm, LlmError, Request};
use gcse::synth::local::{LocalConfig, LocalLlm, PromptFormat};
use gcse::synth::serve::{serve, ServeOptions};

const MODEL: &str = "gemma-3-270m";

fn request(prompt: &str, max_tokens: u32, stop: &[&str]) -> Request {
    Request {
        prompt: prompt.into(),
        sampling: Sampling {
            temperature: 0.0,
            top_p: 1.0,
            max_tokens,
            seed: Some(3),
            stop: stop.iter().map(|s| s.to_string()).collect(),
        },
        shape: None,
        guidance: None,
    }
}

fn client(url: &str, model: &str, timeout_s: f64, retries: u32, in_flight: usize) -> HttpLlm {
    HttpLlm::new(HttpConfig {
        endpoints: vec![url.to_string()],
        model: model.into(),
        api_key_env: None,
        api: Api::Completions,
        in_flight,
        timeout_s,
        retries,
        backoff_s: 0.2,
        json_mode: false,
        json_schema: false,
        token_limit: TokenLimit::MaxTokens,
    })
    .unwrap()
}

#[test]
fn the_http_backend_against_gemma_served_on_loopback() {
    let Some(path) = gemma_gguf("the_http_backend_against_gemma_served_on_loopback") else {
        return;
    };
    let engine: &'static LocalLlm = Box::leak(Box::new(
        LocalLlm::new(&LocalConfig {
            model: path,
            context: 1024,
            threads: 0,
            gpu_layers: 0,
            prompt_format: PromptFormat::Auto,
            grammar: true,
        })
        .unwrap(),
    ));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        serve(
            listener,
            engine,
            &ServeOptions {
                model: MODEL.into(),
                max_queue: 1,
                max_connections: 64,
                read_timeout: Duration::from_secs(30),
            },
        )
    });

    // Three requests at once on a server that takes one: the others get
    // 503 and retry until served. The answers are the engine's own.
    let prompts = [
        "The capital of France is",
        "Sentence: A dog runs in the park.\nParaphrase: A dog is running in a park.\n\nSentence: Two men play chess.\nParaphrase:",
        "Water boils at a temperature of",
    ];
    let requests: Vec<Request> = prompts.iter().map(|p| request(p, 16, &["\n"])).collect();
    let http = client(&url, MODEL, 60.0, 20, 3);
    let dir = temp_dir("serve-gemma");
    let mut store = AnswerStore::open(&dir.join("answers.jsonl")).unwrap();
    let (answers, stats) = answer_all(&http, &mut store, &requests, "served").unwrap();
    eprintln!("{}", stats.summary());
    assert_eq!((stats.sent, stats.failed), (3, 0));
    for (request, answer) in requests.iter().zip(&answers) {
        let answer = answer.as_ref().unwrap();
        let direct = engine.complete(request).unwrap();
        eprintln!("{:?} -> {:?}", request.prompt, answer.text);
        assert_eq!(answer.text, direct.text);
        assert_eq!(answer.completion_tokens, direct.completion_tokens);
        assert!(!answer.text.is_empty());
    }

    // The chat route reaches the same model (it has no chat template, so
    // the message goes in as it is).
    let chat = HttpLlm::new(HttpConfig {
        api: Api::Chat,
        endpoints: vec![url.clone()],
        model: MODEL.into(),
        api_key_env: None,
        in_flight: 1,
        timeout_s: 60.0,
        retries: 2,
        backoff_s: 0.2,
        json_mode: true,
        json_schema: false,
        token_limit: TokenLimit::MaxTokens,
    })
    .unwrap();
    assert_eq!(
        chat.complete(&requests[0]).unwrap().text,
        answers[0].as_ref().unwrap().text
    );

    // A long answer: slow, but it arrives within a patient timeout, and
    // while it runs a second request finds the server busy.
    let long = request("Once upon a time, in a small village,", 120, &[]);
    let slow = std::thread::spawn({
        let url = url.clone();
        let long = long.clone();
        move || client(&url, MODEL, 120.0, 0, 1).complete(&long)
    });
    std::thread::sleep(Duration::from_millis(400));
    match client(&url, MODEL, 60.0, 0, 1).complete(&requests[0]) {
        Err(LlmError::Failed(reason)) => assert!(reason.contains("HTTP 503"), "{reason}"),
        other => panic!("expected the busy server's 503: {other:?}"),
    }
    let answer = slow.join().unwrap().unwrap();
    assert!(answer.completion_tokens.unwrap() > 16, "{answer:?}");

    // An impatient client gives up.
    match client(&url, MODEL, 0.2, 0, 1).complete(&long) {
        Err(LlmError::Failed(reason)) => {
            assert!(reason.contains("gave up after 1 attempt;"), "{reason}");
            assert!(reason.contains("no answer within 0.2 s"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // (The server finishes the abandoned answer; the next client retries
    // its 503s until then.)

    // A prompt beyond the context: that request fails, at once.
    let too_long = request(&"word ".repeat(1500), 8, &[]);
    match client(&url, MODEL, 60.0, 20, 1).complete(&too_long) {
        Err(LlmError::Failed(reason)) => {
            assert!(
                reason.contains("HTTP 400") && reason.contains("do not fit the context"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }

    // Another model's name: the run stops.
    let mut store = AnswerStore::open(&dir.join("other.jsonl")).unwrap();
    let err = answer_all(
        &client(&url, "llama-70b", 60.0, 20, 1),
        &mut store,
        &requests,
        "served",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("HTTP 404") && err.contains("not found"),
        "{err}"
    );
}
