//! `--model org/name` against faulty hubs on loopback: error pages served
//! with status 200, server errors, a server that never answers, answers
//! cut short. Each must fail naming the file and leave nothing in the
//! cache; a good hub's model is fetched and used.

use std::collections::HashMap;
use std::sync::Arc;

use crate::harness::{run_table, Case};
use crate::raw_server::{self, response, Raw};
use crate::world::World;

const HTML: &[u8] = b"<!DOCTYPE html><html><body>Please sign in</body></html>";

/// The commit the loopback hubs report for `main`.
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// A hub serving the world's model, with `fault` deciding (by file name)
/// what to do instead for some files.
fn hub(w: &World, fault: impl Fn(&str) -> Option<Raw> + Send + Sync + 'static) -> String {
    let files: HashMap<String, Vec<u8>> = ["config.json", "vocab.txt", "model.safetensors"]
        .iter()
        .map(|f| {
            (
                f.to_string(),
                std::fs::read(w.path("model").join(f)).unwrap(),
            )
        })
        .collect();
    let files = Arc::new(files);
    raw_server::start(move |path| {
        let file = path.rsplit('/').next().unwrap_or("");
        if let Some(raw) = fault(file) {
            return raw;
        }
        match files.get(file) {
            Some(bytes) => response("200 OK", &[("X-Repo-Commit", COMMIT)], bytes),
            None => response("404 Not Found", &[], b"Entry not found"),
        }
    })
}

fn cases(w: &World) -> Vec<Case> {
    w.write("in.txt", "a man is playing guitar .\n");
    let weights = std::fs::read(w.path("model/model.safetensors")).unwrap();
    let mut cases = Vec::new();
    let mut add = |name: &str, url: String, expect: &[&str]| {
        let cache = w.path(&format!("cache-{name}"));
        let snapshot = cache.join("models--org--tiny/snapshots").join(COMMIT);
        let output = format!("out-{name}.npy");
        let args = [
            "embed",
            "--backend",
            "cpu",
            "--model",
            "org/tiny",
            "--input",
            "in.txt",
            "--output",
            &output,
        ];
        let case = if expect.is_empty() {
            Case::success(name, &args, &[])
        } else {
            // Whatever the cache holds is whole: the file at fault never enters it.
            let at_fault = ["config.json", "vocab.txt", "model.safetensors"]
                .into_iter()
                .find(|f| expect.contains(f))
                .unwrap_or("config.json");
            Case::error(name, &args, expect)
                .leaves_no(&snapshot.join(at_fault))
                .leaves_no(&cache.join("models--org--tiny/refs/main"))
                .leaves_no(&w.path(&output))
        };
        cases.push(
            case.env("HF_ENDPOINT", &url)
                .env("HF_HUB_CACHE", cache.to_str().unwrap())
                .env("GCSE_HUB_TIMEOUT_S", "1")
                .env("HF_HUB_OFFLINE", "0"),
        );
    };
    add("good", hub(w, |_| None), &[]);
    add(
        "config-html",
        hub(w, |f| {
            (f == "config.json").then(|| response("200 OK", &[("Content-Type", "text/html")], HTML))
        }),
        &["config.json", "org/tiny"],
    );
    add(
        "weights-html",
        hub(w, |f| {
            (f == "model.safetensors").then(|| response("200 OK", &[], HTML))
        }),
        &["model.safetensors", "safetensors"],
    );
    add(
        "vocab-html",
        hub(w, |f| {
            (f == "vocab.txt").then(|| response("200 OK", &[], HTML))
        }),
        &["vocab.txt"],
    );
    let half = weights[..weights.len() / 2].to_vec();
    add(
        "weights-half",
        hub(w, move |f| {
            (f == "model.safetensors").then(|| response("200 OK", &[], &half))
        }),
        &["model.safetensors"],
    );
    add(
        "weights-cut-short",
        hub(w, |f| {
            (f == "model.safetensors").then(|| {
                Raw::Bytes(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nConnection: close\r\n\r\nshort"
                        .to_vec(),
                )
            })
        }),
        &["model.safetensors"],
    );
    add(
        "server-error",
        hub(w, |_| {
            Some(response("500 Internal Server Error", &[], b"oops"))
        }),
        &["config.json", "500"],
    );
    add(
        "denied",
        hub(w, |_| Some(response("401 Unauthorized", &[], b"no"))),
        &["HF_TOKEN"],
    );
    add(
        "absent",
        hub(w, |_| Some(response("404 Not Found", &[], b"no"))),
        &["config.json"],
    );
    add(
        "silent",
        hub(w, |_| Some(Raw::Silent)),
        &["config.json", "GCSE_HUB_TIMEOUT_S"],
    );
    add(
        "silent-weights",
        hub(w, |f| (f == "model.safetensors").then_some(Raw::Silent)),
        &["model.safetensors", "GCSE_HUB_TIMEOUT_S"],
    );
    add("hang-up", hub(w, |_| Some(Raw::HangUp)), &["config.json"]);
    add(
        "garbage",
        hub(w, |_| Some(Raw::Bytes(b"SSH-2.0-OpenSSH\r\n".to_vec()))),
        &["config.json"],
    );
    cases.push(
        Case::error(
            "offline",
            &[
                "embed",
                "--backend",
                "cpu",
                "--model",
                "org/other",
                "--input",
                "in.txt",
                "--output",
                "o.npy",
            ],
            &["HF_HUB_OFFLINE"],
        )
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HUB_CACHE", w.path("cache-offline").to_str().unwrap()),
    );
    cases.push(Case::error(
        "not-an-id",
        &[
            "embed",
            "--backend",
            "cpu",
            "--model",
            "a/b/c",
            "--input",
            "in.txt",
            "--output",
            "o.npy",
        ],
        &["a/b/c", "no such model directory"],
    ));
    cases
}

#[test]
fn hub_servers() {
    let w = World::new("hub");
    let tally = run_table("hub", &w.dir, cases(&w));
    assert!(tally.cases >= 15, "{tally:?}");
    // What the good hub served is cached in the Hugging Face layout.
    let good = w.path("cache-good/models--org--tiny");
    assert_eq!(
        std::fs::read_to_string(good.join("refs/main")).unwrap(),
        COMMIT
    );
    for file in ["config.json", "vocab.txt", "model.safetensors"] {
        assert!(
            good.join("snapshots").join(COMMIT).join(file).is_file(),
            "{file}"
        );
    }
    std::fs::remove_dir_all(&w.dir).unwrap();
}
