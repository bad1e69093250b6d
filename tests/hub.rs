//! Fetching a model by hub id: from an HTTP server on loopback standing in for
//! the Hugging Face hub, into the cache, once; and the error when no server
//! answers. One test, since it sets process-wide environment variables.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use gcse::model::config::Architecture;
use gcse::model::hub::resolve_model;
use gcse::model::load::LoadedModel;

/// Serves `files` under `/org/tiny/resolve/main/`; 404 otherwise. Returns the
/// base URL and the log of requested paths.
fn serve(files: HashMap<String, Vec<u8>>) -> (String, Arc<Mutex<Vec<String>>>) {
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
            let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
            seen.lock().unwrap().push(path.clone());
            let body = path
                .strip_prefix("/org/tiny/resolve/main/")
                .and_then(|f| files.get(f));
            let (status, body) = match body {
                Some(b) => ("200 OK", b.clone()),
                None => ("404 Not Found", b"Entry not found".to_vec()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(&body).unwrap();
        }
    });
    (url, log)
}

#[test]
fn hub_ids_are_fetched_once_into_the_cache_and_failures_say_what_to_download() {
    let source = common::temp_dir("hub-source");
    common::write_tiny_model(&source, Architecture::Bert, 9);
    let files: HashMap<String, Vec<u8>> = ["config.json", "vocab.txt", "model.safetensors"]
        .iter()
        .map(|f| (f.to_string(), std::fs::read(source.join(f)).unwrap()))
        .collect();
    let (url, log) = serve(files);
    let cache = common::temp_dir("hub-cache");
    std::env::set_var("GCSE_CACHE", &cache);
    std::env::set_var("HF_ENDPOINT", &url);
    std::env::remove_var("HF_HUB_OFFLINE");

    let dir = resolve_model("org/tiny").unwrap();
    assert!(dir.starts_with(&cache));
    let requested = log.lock().unwrap().clone();
    assert_eq!(
        requested,
        [
            "/org/tiny/resolve/main/config.json",
            "/org/tiny/resolve/main/tokenizer.json",
            "/org/tiny/resolve/main/vocab.txt",
            "/org/tiny/resolve/main/model.safetensors",
            "/org/tiny/resolve/main/tokenizer_config.json",
        ]
    );
    let loaded =
        LoadedModel::<common::Cpu>::from_dir(&dir, &Default::default(), &Default::default())
            .unwrap();
    assert_eq!(loaded.report.loaded, 39);

    assert_eq!(resolve_model("org/tiny").unwrap(), dir);
    assert_eq!(
        log.lock().unwrap().len(),
        requested.len(),
        "the second call uses the cache"
    );

    let err = resolve_model("org/absent").unwrap_err().to_string();
    assert!(
        err.contains("org/absent") && err.contains("config.json"),
        "{err}"
    );

    std::env::set_var("HF_ENDPOINT", "http://127.0.0.1:9");
    let err = resolve_model("org/other").unwrap_err().to_string();
    assert!(
        err.contains("not a local directory") && err.contains("Download config.json"),
        "{err}"
    );

    std::env::set_var("HF_HUB_OFFLINE", "1");
    let err = resolve_model("org/other").unwrap_err().to_string();
    assert!(err.contains("HF_HUB_OFFLINE"), "{err}");
}
