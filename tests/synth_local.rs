//! The embedded llama.cpp engine with a real model (Gemma 3 270M, 4-bit
//! GGUF; `scripts/fetch-llm.sh` fetches it) on real sentences of the
//! training corpus: knowledge extraction read by the lenient reader, a
//! rewrite through the answer store, and the whole pipeline (extract,
//! graph, generate) from a config. Skipped, saying why, without the
//! model; CI fetches it.
#![cfg(feature = "llama")]

mod common;

use std::path::PathBuf;

use common::{gemma_gguf, skip, temp_dir};
use gcse::synth::answers::{AnswerStore, Sampling};
use gcse::synth::config::SynthConfig;
use gcse::synth::extraction::{read_answer, ExtractionTally};
use gcse::synth::llm::{answer_all, Guidance, Llm, LlmError, Request};
use gcse::synth::local::{LocalConfig, LocalLlm, PromptFormat};
use gcse::synth::pipeline::Synthesis;
use gcse::synth::prompt::{PromptKind, PromptTemplate};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The first `n` corpus lines of 8 to 25 words: real sentences short
/// enough for a quick test.
fn corpus_sentences(test: &str, n: usize) -> Option<Vec<String>> {
    let dir = std::env::var_os("GCSE_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/data"));
    let path = dir.join("corpus/wiki1m-sample.txt");
    let Ok(text) = std::fs::read_to_string(&path) else {
        skip(test, &format!("no corpus at {}", path.display()));
        return None;
    };
    Some(
        text.lines()
            .filter(|l| (8..=25).contains(&l.split_whitespace().count()))
            .take(n)
            .map(str::to_string)
            .collect(),
    )
}

fn sampling(max_tokens: u32) -> Sampling {
    Sampling {
        temperature: 0.0,
        top_p: 1.0,
        max_tokens,
        seed: Some(7),
        stop: vec!["\n".into()],
    }
}

#[test]
fn gemma_extracts_and_rewrites_real_sentences() {
    let test = "gemma_extracts_and_rewrites_real_sentences";
    let (Some(model), Some(sentences)) = (gemma_gguf(test), corpus_sentences(test, 3)) else {
        return;
    };
    let llm = LocalLlm::new(&LocalConfig {
        model,
        context: 1024,
        threads: 0,
        gpu_layers: 0,
        prompt_format: PromptFormat::Auto,
        grammar: true,
    })
    .unwrap();
    assert_eq!(llm.model(), "gemma-3-270m-q4_k_m.gguf");
    // A base model: no chat template, so plain prompts.
    assert!(!llm.uses_chat_template());

    let extract =
        PromptTemplate::load_kind(&root().join("prompts/extract.txt"), PromptKind::Extract)
            .unwrap();
    let requests: Vec<Request> = sentences
        .iter()
        .map(|s| Request {
            prompt: extract.render(&[("sentence", s)]).unwrap(),
            sampling: sampling(160),
            shape: Some(gcse::synth::shape::extraction()),
            guidance: None,
        })
        .collect();
    let dir = temp_dir("local-gemma");
    let mut store = AnswerStore::open(&dir.join("answers.jsonl")).unwrap();
    let (answers, stats) = answer_all(&llm, &mut store, &requests, "extract").unwrap();
    eprintln!("extract: {}", stats.summary());
    assert_eq!((stats.sent, stats.failed), (3, 0));
    let mut tally = ExtractionTally::default();
    for (sentence, answer) in sentences.iter().zip(&answers) {
        let answer = answer.as_ref().unwrap();
        eprintln!("{sentence}\n  -> {}", answer.text);
        assert!(
            !answer.text.contains('\n'),
            "the stop string ends the answer"
        );
        let generated = answer.completion_tokens.unwrap();
        assert!((1..=160).contains(&generated), "{generated}");
        assert!(answer.prompt_tokens.unwrap() > 100);
        // The grammar admits nothing but an answer of the extraction's
        // shape, whole unless cut at max_tokens.
        if generated < 160 {
            let value: serde_json::Value = serde_json::from_str(answer.text.trim())
                .unwrap_or_else(|e| panic!("{e}: {}", answer.text));
            for key in ["categories", "entities", "quantities"] {
                assert!(value[key].is_array(), "{key} in {value}");
            }
        }
        let extraction = read_answer(&answer.text, sentence);
        for item in extraction.knowledge.iter().flat_map(|k| &k.items) {
            assert!(sentence.contains(&item.text), "{item:?} is in {sentence}");
        }
        tally.add(&extraction);
    }
    eprintln!("tally: {tally:?}");
    assert_eq!(tally.answers, 3);
    assert!(
        tally.kept >= 1,
        "a few-shot prompt gets some JSON even from 270M: {tally:?}"
    );

    // Greedy decoding is deterministic: the same request, the same answer.
    let again = llm.complete(&requests[0]).unwrap();
    assert_eq!(Some(&again), answers[0].as_ref());

    let rewrite =
        PromptTemplate::load_kind(&root().join("prompts/rewrite.txt"), PromptKind::Rewrite)
            .unwrap();
    let request = Request {
        prompt: rewrite.render(&[("sentence", &sentences[0])]).unwrap(),
        sampling: Sampling {
            temperature: 0.8,
            top_p: 0.95,
            ..sampling(24)
        },
        shape: Some(gcse::synth::shape::candidate()),
        guidance: None,
    };
    let (answers, stats) =
        answer_all(&llm, &mut store, std::slice::from_ref(&request), "rewrite").unwrap();
    let answer = answers[0].as_ref().unwrap();
    eprintln!("rewrite: {}\n  -> {}", stats.summary(), answer.text);
    assert!(answer.completion_tokens.unwrap() <= 24);
    if answer.completion_tokens.unwrap() < 24 {
        let value: serde_json::Value = serde_json::from_str(answer.text.trim())
            .unwrap_or_else(|e| panic!("{e}: {}", answer.text));
        assert!(value["text"].is_string(), "{value}");
    }
    // Sampling with a seed repeats too.
    assert_eq!(llm.complete(&request).unwrap().text, answer.text);

    // A prompt longer than the context fails that request only.
    let long = Request {
        prompt: "word ".repeat(2000),
        sampling: sampling(8),
        shape: None,
        guidance: None,
    };
    match llm.complete(&long) {
        Err(LlmError::Failed(reason)) => {
            assert!(reason.contains("do not fit the context"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_missing_model_file_is_a_clear_error() {
    let err = LocalLlm::new(&LocalConfig {
        model: PathBuf::from("models/no-such-model.gguf"),
        context: 512,
        threads: 1,
        gpu_layers: 0,
        prompt_format: PromptFormat::Plain,
        grammar: true,
    })
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("models/no-such-model.gguf") && err.contains("fetch-llm.sh"),
        "{err}"
    );
}

#[test]
fn the_pipeline_extracts_builds_the_graph_and_generates_with_gemma() {
    let test = "the_pipeline_extracts_builds_the_graph_and_generates_with_gemma";
    let (Some(model), Some(sentences)) = (gemma_gguf(test), corpus_sentences(test, 3)) else {
        return;
    };
    let dir = temp_dir("local-pipeline");
    std::fs::write(dir.join("sources.txt"), sentences.join("\n") + "\n").unwrap();
    let config = format!(
        r#"out_dir = "{out}"
[sources]
min_words = 1
[[sources.general]]
path = "{sources}"
[llm]
backend = "local"
[llm.local]
model = "{model}"
context = 1024
[extract]
max_tokens = 96
[generate]
positives = 1
negatives = 1
max_tokens = 32
"#,
        out = dir.join("out").display(),
        sources = dir.join("sources.txt").display(),
        model = model.display(),
    );
    std::fs::write(dir.join("synth.toml"), config).unwrap();
    let config = SynthConfig::load(&dir.join("synth.toml")).unwrap();
    let llm = config.llm().unwrap();
    let mut synthesis = Synthesis::open(&config, llm.as_ref()).unwrap();
    let extracted = synthesis.extract().unwrap();
    assert_eq!((extracted.sources, extracted.requests.sent), (3, 3));
    assert_eq!(extracted.answers.answers, 3);
    synthesis.graph().unwrap();
    let generated = synthesis.generate().unwrap();
    assert_eq!(
        (generated.requests.requests, generated.requests.failed),
        (6, 0)
    );
    let kept: usize = generated.kept.values().sum();
    let dropped: usize = generated.dropped.values().sum();
    assert_eq!(kept + dropped, 6, "{generated:?}");
    let out = dir.join("out");
    let candidates = std::fs::read_to_string(out.join("candidates.jsonl")).unwrap();
    eprintln!("{candidates}");
    assert_eq!(candidates.lines().count(), 3);
    for (line, sentence) in candidates.lines().zip(&sentences) {
        let group: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(group["source"], sentence.as_str());
        for c in group["positives"]
            .as_array()
            .unwrap()
            .iter()
            .chain(group["negatives"].as_array().unwrap())
        {
            assert!(
                !c["text"].as_str().unwrap().is_empty() && c["kind"].is_string(),
                "{c}"
            );
        }
    }
    for file in [
        "knowledge.jsonl",
        "extract.report.json",
        "graph.json",
        "graph.dot",
        "generate.report.json",
    ] {
        assert!(out.join(file).is_file(), "{file}");
    }

    // Run again: every answer comes from the store, the output is the same.
    let again = synthesis.generate().unwrap();
    assert_eq!((again.requests.sent, again.requests.from_store), (0, 6));
    assert_eq!(
        std::fs::read_to_string(out.join("candidates.jsonl")).unwrap(),
        candidates
    );
}

/// Classifier-free guidance in the engine, with Gemma on two real
/// sentences: at every token the engine shows the logits after the positive
/// and the negative prompt, and the token it took is the argmax of
/// `lp_neg + g (lp_pos - lp_neg)` recomputed here from them; at g = 1 the
/// answer is plain greedy decoding of the positive prompt; a guided answer
/// is stored under its own key (the negative prompt and the scale count).
#[test]
fn guided_decoding_takes_the_argmax_of_the_combined_scores() {
    let test = "guided_decoding_takes_the_argmax_of_the_combined_scores";
    let (Some(model), Some(sentences)) = (gemma_gguf(test), corpus_sentences(test, 2)) else {
        return;
    };
    let llm = LocalLlm::new(&LocalConfig {
        model,
        context: 512,
        threads: 0,
        gpu_layers: 0,
        prompt_format: PromptFormat::Auto,
        grammar: true,
    })
    .unwrap();
    assert!(llm.guides());
    let rewrite =
        PromptTemplate::load_kind(&root().join("prompts/rewrite.txt"), PromptKind::Rewrite)
            .unwrap();
    let render = |s: &str| rewrite.render(&[("sentence", s)]).unwrap();
    let plain = Request {
        prompt: render(&sentences[0]),
        sampling: Sampling {
            stop: Vec::new(),
            ..sampling(20)
        },
        shape: None,
        guidance: None,
    };
    let guided = |scale: f32| Request {
        guidance: Some(Guidance {
            negative: render(&sentences[1]),
            scale,
        }),
        ..plain.clone()
    };

    // Log-softmax and argmax written out here, not the engine's helpers.
    let log_softmax = |x: &[f32]| -> Vec<f64> {
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let log_sum = max + x.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
        x.iter().map(|&v| v as f64 - log_sum).collect()
    };
    for scale in [1.5f32, 3.0] {
        let mut steps = 0;
        let mut differs = 0;
        let answer = llm
            .complete_traced(&guided(scale), &mut |step| {
                let (p, n) = (log_softmax(step.positive), log_softmax(step.negative));
                let combined: Vec<f64> = p
                    .iter()
                    .zip(&n)
                    .map(|(p, n)| n + scale as f64 * (p - n))
                    .collect();
                let best = (0..combined.len())
                    .max_by(|&a, &b| combined[a].total_cmp(&combined[b]).then(b.cmp(&a)))
                    .unwrap();
                assert_eq!(step.token as usize, best, "token {steps} at scale {scale}");
                let positive_best = (0..p.len())
                    .max_by(|&a, &b| p[a].total_cmp(&p[b]).then(b.cmp(&a)))
                    .unwrap();
                differs += usize::from(positive_best != best);
                steps += 1;
            })
            .unwrap();
        eprintln!(
            "scale {scale}: {steps} tokens, {differs} not the positive prompt's argmax: {:?}",
            answer.text
        );
        assert!(steps >= 2, "{answer:?}");
        assert!(answer.completion_tokens.unwrap() as usize <= steps);
        if scale == 3.0 {
            assert!(differs > 0, "guidance at 3 changed no token");
        }
    }

    let greedy = llm.complete(&plain).unwrap();
    let same = llm.complete(&guided(1.0)).unwrap();
    eprintln!("greedy: {:?}", greedy.text);
    assert_eq!(
        same.text, greedy.text,
        "g = 1 is greedy decoding of the positive prompt"
    );
    assert_ne!(plain.key(llm.model()), guided(1.0).key(llm.model()));
    assert_ne!(guided(1.0).key(llm.model()), guided(1.5).key(llm.model()));
}
