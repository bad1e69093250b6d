//! Hub ids against an HTTP server on loopback standing in for the Hugging
//! Face hub: the Hugging Face cache layout (refs, snapshots, `.no_exist`),
//! the sentence-transformers module files (so a hub id pools as declared),
//! a branch resolved to its commit on each use, a pinned commit and the
//! offline and unreachable cases, and a cache made the way Python's
//! `huggingface_hub` makes it (files as links into `blobs/`). One test,
//! since it sets process-wide environment variables.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use gcse::model::config::Architecture;
use gcse::model::hub::resolve_model;
use gcse::model::load::LoadedModel;
use gcse::model::pooling::{declared_pooling, Pooling};

const FIRST: &str = "1111111111111111111111111111111111111111";
const SECOND: &str = "2222222222222222222222222222222222222222";

/// A repository's files at each commit, and the commit `main` points to.
#[derive(Default)]
struct Repo {
    commits: HashMap<String, HashMap<String, Vec<u8>>>,
    main: String,
}

/// Serves `repo` as `org/tiny` (`HEAD`/`GET /org/tiny/resolve/<rev>/<file>`,
/// with `X-Repo-Commit`); 404 otherwise. Returns the base URL and the log of
/// requests (`METHOD path`).
fn serve(repo: Arc<Mutex<Repo>>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            reader.read_line(&mut request).unwrap();
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                if header.trim().is_empty() {
                    break;
                }
            }
            let mut words = request.split_whitespace();
            let method = words.next().unwrap_or("").to_string();
            let path = words.next().unwrap_or("").to_string();
            seen.lock().unwrap().push(format!("{method} {path}"));
            let repo = repo.lock().unwrap();
            let found = path.strip_prefix("/org/tiny/resolve/").and_then(|rest| {
                let (rev, file) = rest.split_once('/')?;
                let commit = if rev == "main" {
                    repo.main.as_str()
                } else {
                    rev
                };
                Some((
                    commit.to_string(),
                    repo.commits.get(commit)?.get(file)?.clone(),
                ))
            });
            let (status, commit, body) = match found {
                Some((commit, body)) => ("200 OK", commit, body),
                None => ("404 Not Found", String::new(), b"Entry not found".to_vec()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nX-Repo-Commit: {commit}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).unwrap();
            if method != "HEAD" {
                stream.write_all(&body).unwrap();
            }
        }
    });
    (url, log)
}

/// A tiny model folder with the sentence-transformers files of a
/// mean-pooling model, and its files by relative path.
fn st_model(dir: &Path, seed: u64) -> HashMap<String, Vec<u8>> {
    common::write_tiny_model(dir, Architecture::Bert, seed);
    std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    let modules = r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
        {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
        {"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]"#;
    std::fs::write(dir.join("modules.json"), modules).unwrap();
    std::fs::write(
        dir.join("sentence_bert_config.json"),
        r#"{"max_seq_length": 128, "do_lower_case": false}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("1_Pooling/config.json"),
        r#"{"word_embedding_dimension": 32, "pooling_mode_cls_token": false, "pooling_mode_mean_tokens": true}"#,
    )
    .unwrap();
    [
        "config.json",
        "vocab.txt",
        "model.safetensors",
        "modules.json",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
    ]
    .iter()
    .map(|f| (f.to_string(), std::fs::read(dir.join(f)).unwrap()))
    .collect()
}

/// `gcse embed` of two sentences with `model`; the `.npy` bytes.
fn embed(model: &str, dir: &Path, name: &str) -> Vec<u8> {
    let input = dir.join("in.txt");
    std::fs::write(
        &input,
        "a man is playing guitar .\nthe dog runs in the park .\n",
    )
    .unwrap();
    let out = dir.join(format!("{name}.npy"));
    let (ok, _, err) = common::gcse(&[
        "embed",
        "--backend",
        "cpu",
        "--model",
        model,
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    std::fs::read(out).unwrap()
}

#[test]
fn hub_ids_use_the_hugging_face_cache_and_the_declared_pooling() {
    let work = common::temp_dir("hub");
    let first = st_model(&work.join("first"), 9);
    let second = st_model(&work.join("second"), 10);
    let repo = Arc::new(Mutex::new(Repo {
        commits: HashMap::from([(FIRST.to_string(), first), (SECOND.to_string(), second)]),
        main: FIRST.to_string(),
    }));
    let (url, log) = serve(repo.clone());
    let cache = work.join("hf");
    std::env::set_var("HF_HUB_CACHE", &cache);
    std::env::set_var("HF_ENDPOINT", &url);
    std::env::remove_var("HF_HUB_OFFLINE");
    let requests = || std::mem::take(&mut *log.lock().unwrap());
    let root = cache.join("models--org--tiny");

    // First use: the branch is resolved, then every file fetched at that commit.
    let dir = resolve_model("org/tiny").unwrap();
    assert_eq!(dir, root.join("snapshots").join(FIRST));
    let at = |file: &str| format!("GET /org/tiny/resolve/{FIRST}/{file}");
    assert_eq!(
        requests(),
        [
            "HEAD /org/tiny/resolve/main/config.json".to_string(),
            at("config.json"),
            at("tokenizer.json"),
            at("vocab.txt"),
            at("model.safetensors"),
            at("tokenizer_config.json"),
            at("modules.json"),
            at("sentence_bert_config.json"),
            at("config_sentence_transformers.json"),
            at("1_Pooling/config.json"),
        ]
    );
    assert_eq!(
        std::fs::read_to_string(root.join("refs/main")).unwrap(),
        FIRST
    );
    for absent in [
        "tokenizer.json",
        "tokenizer_config.json",
        "config_sentence_transformers.json",
    ] {
        assert!(
            root.join(".no_exist").join(FIRST).join(absent).is_file(),
            "{absent}"
        );
    }
    assert_eq!(declared_pooling(&dir), Some(Pooling::Avg));
    let loaded =
        LoadedModel::<common::Cpu>::from_dir(&dir, &Default::default(), &Default::default())
            .unwrap();
    assert_eq!(loaded.report.loaded, 39);

    // Second use: one question (where main points), nothing downloaded.
    assert_eq!(resolve_model("org/tiny").unwrap(), dir);
    assert_eq!(requests(), ["HEAD /org/tiny/resolve/main/config.json"]);

    // The hub id embeds exactly as the local folder it came from (same pooling).
    let by_id = embed("org/tiny", &work, "by-id");
    let by_folder = embed(work.join("first").to_str().unwrap(), &work, "by-folder");
    assert_eq!(by_id, by_folder);
    requests();

    // The branch moves: the new commit is fetched beside the old one.
    repo.lock().unwrap().main = SECOND.to_string();
    let moved = resolve_model("org/tiny").unwrap();
    assert_eq!(moved, root.join("snapshots").join(SECOND));
    assert_eq!(
        std::fs::read_to_string(root.join("refs/main")).unwrap(),
        SECOND
    );
    assert!(dir.join("model.safetensors").is_file());
    assert_ne!(
        std::fs::read(moved.join("model.safetensors")).unwrap(),
        std::fs::read(dir.join("model.safetensors")).unwrap()
    );
    requests();

    // A pinned commit that is cached asks nothing.
    assert_eq!(resolve_model(&format!("org/tiny@{FIRST}")).unwrap(), dir);
    assert_eq!(requests(), Vec::<String>::new());

    let err = resolve_model("org/absent").unwrap_err().to_string();
    assert!(
        err.contains("org/absent") && err.contains("config.json"),
        "{err}"
    );

    // The hub unreachable: the commit the cache recorded for main.
    std::env::set_var("HF_ENDPOINT", "http://127.0.0.1:9");
    assert_eq!(resolve_model("org/tiny").unwrap(), moved);
    let err = resolve_model("org/other").unwrap_err().to_string();
    assert!(
        err.contains("not a local directory") && err.contains("Download config.json"),
        "{err}"
    );

    // Offline: the cache only.
    std::env::set_var("HF_HUB_OFFLINE", "1");
    assert_eq!(resolve_model("org/tiny").unwrap(), moved);
    let err = resolve_model("org/other").unwrap_err().to_string();
    assert!(err.contains("HF_HUB_OFFLINE"), "{err}");

    // A model Python's huggingface_hub downloaded: links into blobs/.
    let py = cache.join("models--py--model");
    let commit = "3333333333333333333333333333333333333333";
    std::fs::create_dir_all(py.join("blobs")).unwrap();
    std::fs::create_dir_all(py.join("refs")).unwrap();
    std::fs::create_dir_all(py.join("snapshots").join(commit).join("1_Pooling")).unwrap();
    std::fs::write(py.join("refs/main"), commit).unwrap();
    for (i, file) in [
        "config.json",
        "vocab.txt",
        "model.safetensors",
        "modules.json",
        "1_Pooling/config.json",
    ]
    .iter()
    .enumerate()
    {
        let blob = py.join("blobs").join(format!("blob{i}"));
        std::fs::copy(work.join("first").join(file), &blob).unwrap();
        let depth = if file.contains('/') {
            "../../../"
        } else {
            "../../"
        };
        std::os::unix::fs::symlink(
            format!("{depth}blobs/blob{i}"),
            py.join("snapshots").join(commit).join(file),
        )
        .unwrap();
    }
    let python_made = resolve_model("py/model").unwrap();
    assert_eq!(python_made, py.join("snapshots").join(commit));
    assert_eq!(declared_pooling(&python_made), Some(Pooling::Avg));
    assert_eq!(embed("py/model", &work, "python-made"), by_folder);

    std::env::remove_var("HF_HUB_OFFLINE");
    std::fs::remove_dir_all(&work).unwrap();
}
