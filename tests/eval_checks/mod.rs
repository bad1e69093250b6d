//! The evaluators beyond STS against sentence-transformers' own
//! (tests/fixtures/eval_metrics.json, made by scripts/reference_eval.py):
//! each case's files are written out and loaded as `gcse eval` loads them,
//! scored on the case's vectors, and every metric must match within 1e-9,
//! ties included.

use std::path::Path;

use gcse::embed::embedder::{Embeddings, SentenceVectors};
use gcse::eval::evaluator::{EvalData, Evaluator};
use gcse::eval::registry;
use gcse::eval::retrieval::{top_hits, Retrieval};

use super::common;

fn vectors(case: &serde_json::Value) -> SentenceVectors {
    let table = case["vectors"].as_object().unwrap();
    let texts: Vec<&str> = table.keys().map(String::as_str).collect();
    let dim = table.values().next().unwrap().as_array().unwrap().len();
    let data = table
        .values()
        .flat_map(|v| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
        })
        .collect();
    SentenceVectors::new(
        &texts,
        Embeddings {
            dim,
            data,
            truncated: 0,
        },
    )
}

/// Writes the case's files under `dir`; returns its task's name.
fn write_case(case: &serde_json::Value, dir: &Path) -> String {
    for (name, text) in case["files"].as_object().unwrap() {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text.as_str().unwrap()).unwrap();
    }
    let path = dir.join(case["task"].as_str().unwrap());
    format!("{}:{}", case["family"].as_str().unwrap(), path.display())
}

fn check(case: &serde_json::Value, evaluator: &dyn Evaluator) {
    let name = case["name"].as_str().unwrap();
    let result = evaluator.score(&vectors(case));
    let infos = evaluator.metrics();
    for (metric, want) in case["metrics"].as_object().unwrap() {
        let info = infos
            .iter()
            .find(|m| m.name == metric)
            .unwrap_or_else(|| panic!("{name}: gcse has no metric {metric}"));
        let got = result.metrics[metric.as_str()] / if info.percent { 100.0 } else { 1.0 };
        let want = want.as_f64().unwrap();
        assert!(
            (got - want).abs() <= 1e-9,
            "{name} {metric}: gcse {got:.12}, sentence-transformers {want:.12}"
        );
    }
    assert_eq!(result.primary, infos[0].name);
}

#[test]
fn evaluators_match_sentence_transformers_ties_included() {
    let golden = common::fixture("eval_metrics.json");
    let cases = golden["cases"].as_array().unwrap();
    let mut families = std::collections::BTreeSet::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let dir = common::temp_dir(&format!("eval_fixture_{name}"));
        let task = write_case(case, &dir);
        let data = EvalData {
            senteval: dir.clone(),
        };
        let loaded = registry::load(&[task], &data).unwrap_or_else(|e| panic!("{name}: {e}"));
        check(case, loaded[0].as_ref());
        families.insert(case["family"].as_str().unwrap().to_string());
        if case["family"] == "retrieval" {
            // The reference scored the corpus 7 documents at a time: so do we.
            let mut chunked = Retrieval::read(&dir.join(case["task"].as_str().unwrap())).unwrap();
            chunked.chunk = 7;
            check(case, &chunked);
        }
    }
    assert_eq!(families.len(), 4, "{families:?}");
}

#[test]
fn exact_search_is_the_same_whatever_the_chunk_and_ties_go_to_the_lower_id() {
    let dim = 4;
    let vector = |i: usize| -> Vec<f32> {
        (0..dim as u64)
            .map(|d| {
                let h = (i as u64 + 1)
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(d.wrapping_mul(1_442_695_040_888_963_407));
                ((h >> 33) % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    };
    // 250 documents, every fifth repeating document 0's vector (a tie).
    let docs: Vec<Vec<f32>> = (0..250)
        .map(|i| if i % 5 == 0 { vector(0) } else { vector(i) })
        .collect();
    let ids: Vec<String> = (0..250).map(|i| format!("doc{:03}", 249 - i)).collect();
    let queries: Vec<Vec<f32>> = (0..300).map(|i| vector(i + 3)).chain([vector(0)]).collect();
    let q: Vec<&[f32]> = queries.iter().map(Vec::as_slice).collect();
    let d: Vec<&[f32]> = docs.iter().map(Vec::as_slice).collect();
    let whole = top_hits(&q, &d, &ids, 100, 10_000);
    for chunk in [1, 3, 64, 99] {
        assert_eq!(top_hits(&q, &d, &ids, 100, chunk), whole, "chunk {chunk}");
    }
    assert!(whole.iter().all(|hits| hits.len() == 100));
    // The last query is document 0's vector: its 50 copies tie at the top,
    // in increasing id order (ids run backwards through the corpus).
    let best = whole.last().unwrap();
    let tied: Vec<&str> = best[..50].iter().map(|&(i, _)| ids[i].as_str()).collect();
    let mut sorted = tied.clone();
    sorted.sort();
    assert_eq!(tied, sorted);
    assert!(best[..50]
        .iter()
        .all(|&(i, s)| i % 5 == 0 && (s - best[0].1).abs() == 0.0));
    assert!(best[50].1 < best[0].1);
}

#[test]
fn bad_task_files_are_errors_naming_file_and_line() {
    let dir = common::temp_dir("eval_bad_files");
    let data = EvalData {
        senteval: dir.clone(),
    };
    let cases: &[(&str, &str, &str)] = &[
        ("rerank", "r.jsonl", "{\"query\": \"q\", \"positive\": [\"a\"], \"negative\": [\"b\"]}\n{\"query\": 3\n"),
        ("rerank", "r2.jsonl", "{\"query\": \"q\", \"positive\": [\"a\"], \"negative\": []}\n"),
        ("pairclass", "c.jsonl", "{\"a\": \"x\", \"b\": \"y\", \"label\": 1}\n\n{\"a\": \"x\", \"b\": \"z\", \"label\": 2}\n"),
        ("pairclass", "c2.jsonl", "{\"a\": \"x\", \"b\": \"y\", \"label\": 1}\n"),
        ("pairs", "p.tsv", "x\ty\t1.0\nx\tz\n"),
        ("pairs", "p2.tsv", "left\tright\tvalue\nx\ty\t1\n"),
        ("pairs", "p3.jsonl", ""),
    ];
    let expected = [
        "r.jsonl:2",
        "r2.jsonl:1",
        "c.jsonl:3",
        "c2.jsonl:1",
        "p.tsv:2",
        "p2.tsv:1",
        "p3.jsonl:1",
    ];
    for ((family, file, text), want) in cases.iter().zip(expected) {
        std::fs::write(dir.join(file), text).unwrap();
        let task = format!("{family}:{}", dir.join(file).display());
        let error = registry::load(&[task], &data).err().unwrap().to_string();
        assert!(error.contains(want), "{file}: {error}");
    }
    let beir = dir.join("beir");
    std::fs::create_dir_all(beir.join("qrels")).unwrap();
    std::fs::write(
        beir.join("corpus.jsonl"),
        "{\"_id\": \"d1\", \"text\": \"a\"}\n{\"_id\": \"d1\", \"text\": \"b\"}\n",
    )
    .unwrap();
    std::fs::write(
        beir.join("queries.jsonl"),
        "{\"_id\": \"q1\", \"text\": \"c\"}\n",
    )
    .unwrap();
    std::fs::write(beir.join("qrels/test.tsv"), "q1\td1\t1\n").unwrap();
    let error = registry::load(&[format!("retrieval:{}", beir.display())], &data)
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("corpus.jsonl:2") && error.contains("d1"),
        "{error}"
    );
}

#[test]
fn gzip_files_read_as_plain_ones() {
    use std::io::Write;
    let dir = common::temp_dir("eval_gzip");
    let text = "{\"query\": \"q\", \"positive\": [\"a\"], \"negative\": [\"b\", \"c\"]}\n";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(text.as_bytes()).unwrap();
    std::fs::write(dir.join("set.jsonl.gz"), gz.finish().unwrap()).unwrap();
    std::fs::write(dir.join("set.jsonl"), text).unwrap();
    let data = EvalData {
        senteval: dir.clone(),
    };
    let vectors = SentenceVectors::new(
        &["q", "a", "b", "c"],
        Embeddings {
            dim: 2,
            data: vec![1.0, 0.0, 0.6, 0.8, 0.9, 0.1, 0.0, 1.0],
            truncated: 0,
        },
    );
    let mut results = Vec::new();
    for file in ["set.jsonl.gz", "set.jsonl"] {
        let task = format!("rerank:{}", dir.join(file).display());
        let loaded = registry::load(&[task], &data).unwrap();
        assert_eq!(loaded[0].column(), "set");
        results.push(loaded[0].score(&vectors).metrics);
    }
    assert_eq!(results[0], results[1]);
    // b (a negative) outranks a: the positive comes second.
    assert!((results[0]["mrr_at_10"] - 50.0).abs() < 1e-12);
}
