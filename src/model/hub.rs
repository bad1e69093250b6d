//! Turning a `--model` argument into a local model directory: a directory is
//! used as it is (a training run directory stands for its best model); a Hugging Face hub id (`org/name`, optionally `@revision`)
//! is fetched once into a cache and used from there.
//!
//! Every file is checked before the fetch counts as complete (an error page
//! is never cached as a model), and a fetch that fails leaves nothing in
//! the cache.
//!
//! Environment: `HF_ENDPOINT` (default `https://huggingface.co`), `HF_TOKEN`
//! (sent as a bearer token), `HF_HUB_OFFLINE=1` (never use the network),
//! `GCSE_CACHE` (cache root, default `~/.cache/gcse`), `GCSE_HUB_TIMEOUT_S`
//! (seconds a server may take to answer or to send more of a file, default
//! 60).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::config::BertConfig;
use crate::atomic::{remove_stale_temporaries, temp_sibling};
use crate::error::{Error, Result};
use crate::run_dir::RunDir;

/// Files fetched for a hub model: the first existing name of each group.
const HUB_FILES: &[&[&str]] = &[
    &["config.json"],
    &["tokenizer.json", "vocab.txt"],
    &["model.safetensors", "pytorch_model.bin"],
];

/// Optional files fetched when present.
const OPTIONAL_FILES: &[&str] = &["tokenizer_config.json"];

/// Marks a cache entry whose downloads all finished.
const COMPLETE: &str = ".complete";

/// The root of gcse's caches.
pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("GCSE_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("gcse")
}

/// Resolves `arg` to a model directory: a run directory gives its best
/// model; a hub id is fetched when needed.
pub fn resolve_model(arg: &str) -> Result<PathBuf> {
    let path = Path::new(arg);
    let run = RunDir::new(path);
    if run.holds_run() && !path.join("config.json").is_file() {
        let best = run.best();
        if !best.join("config.json").is_file() {
            return Err(Error::ModelNotFound(format!(
                "{arg}: a training run without a best model yet (it appears after the first evaluation)"
            )));
        }
        return Ok(best);
    }
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    if path.exists() {
        return Err(Error::ModelNotFound(format!(
            "{arg}: is a file; --model takes a model directory (config.json, tokenizer.json, model.safetensors) or a hub id"
        )));
    }
    let Some(id) = HubId::parse(arg) else {
        return Err(Error::ModelNotFound(format!(
            "{arg}: no such model directory"
        )));
    };
    let dir = cache_root().join("hub").join(id.cache_name());
    if dir.join(COMPLETE).is_file() {
        return Ok(dir);
    }
    let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into());
    let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1");
    let fetched = if offline {
        Err("HF_HUB_OFFLINE=1 forbids the network".to_string())
    } else {
        fetch_into(&id, endpoint.trim_end_matches('/'), &dir)
    };
    fetched.map(|()| dir.clone()).map_err(|reason| {
        Error::ModelNotFound(format!(
            "{arg}: not a local directory, and fetching it from the Hugging Face hub ({endpoint}) into {} failed: {reason}. \
             Download config.json, tokenizer.json and model.safetensors of {} into a directory and pass that directory to --model.",
            dir.display(),
            id.name
        ))
    })
}

/// Seconds a hub server may take to answer, and to send the next part of
/// a file: `GCSE_HUB_TIMEOUT_S`, default 60.
fn hub_timeout() -> Duration {
    let seconds = std::env::var("GCSE_HUB_TIMEOUT_S")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or(60.0)
        .min(86_400.0);
    Duration::from_secs_f64(seconds)
}

/// Fetches the model into a temporary sibling of `dir`, checks every file,
/// then renames it into place: a failed or killed fetch leaves no cache
/// entry (a later fetch removes what a killed one left).
fn fetch_into(id: &HubId, endpoint: &str, dir: &Path) -> std::result::Result<(), String> {
    remove_stale_temporaries(dir);
    let tmp = temp_sibling(dir);
    let _ = std::fs::remove_dir_all(&tmp);
    let result = fetch(id, endpoint, &tmp).and_then(|()| {
        // An entry of an earlier version that never completed.
        if dir.exists() && !dir.join(COMPLETE).is_file() {
            std::fs::remove_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        match std::fs::rename(&tmp, dir) {
            Ok(()) => Ok(()),
            // Another process fetched it meanwhile.
            Err(_) if dir.join(COMPLETE).is_file() => Ok(()),
            Err(e) => Err(format!("{}: {e}", dir.display())),
        }
    });
    let _ = std::fs::remove_dir_all(&tmp);
    if let Some(hub) = dir.parent() {
        // The hub folder itself, if this fetch made it and left it empty.
        let _ = std::fs::remove_dir(hub);
    }
    result
}

/// A hub model id with its revision.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HubId {
    name: String,
    revision: String,
}

impl HubId {
    /// `org/name[@rev]` or `name[@rev]`; anything that looks like a path is not an id.
    fn parse(arg: &str) -> Option<Self> {
        let (name, revision) = match arg.split_once('@') {
            Some((n, r)) => (n, r),
            None => (arg, "main"),
        };
        let valid_part = |p: &str| {
            !p.is_empty()
                && !p.starts_with('.')
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        let parts: Vec<&str> = name.split('/').collect();
        let ok = (1..=2).contains(&parts.len())
            && parts.iter().all(|p| valid_part(p))
            && valid_part(revision);
        ok.then(|| HubId {
            name: name.to_string(),
            revision: revision.to_string(),
        })
    }

    fn cache_name(&self) -> String {
        format!("{}--{}", self.name.replace('/', "--"), self.revision)
    }
}

/// Downloads the model's files into `dir`, each checked; the error is a
/// one-line reason.
fn fetch(id: &HubId, endpoint: &str, dir: &Path) -> std::result::Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let timeout = hub_timeout();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_recv_response(Some(timeout))
        .timeout_per_read(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let url = |file: &str| format!("{endpoint}/{}/resolve/{}/{file}", id.name, id.revision);
    for group in HUB_FILES {
        let mut found = false;
        for file in *group {
            if download(&agent, &url(file), &dir.join(file))? {
                found = true;
                break;
            }
        }
        if !found {
            return Err(format!("the repository has none of {}", group.join(", ")));
        }
    }
    for file in OPTIONAL_FILES {
        download(&agent, &url(file), &dir.join(file))?;
    }
    std::fs::write(dir.join(COMPLETE), b"").map_err(|e| format!("{}: {e}", dir.display()))
}

/// Fetches `url` into `dest` and checks what arrived (see [`check_file`]);
/// `Ok(false)` on 404.
fn download(agent: &ureq::Agent, url: &str, dest: &Path) -> std::result::Result<bool, String> {
    let mut request = agent.get(url);
    if let Ok(token) = std::env::var("HF_TOKEN") {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    let timed_out = |e: &ureq::Error| {
        let what = format!("{url}: {e}");
        if matches!(e, ureq::Error::Timeout(_)) {
            format!("{what} (GCSE_HUB_TIMEOUT_S sets the limit)")
        } else {
            what
        }
    };
    let response = request.call().map_err(|e| timed_out(&e))?;
    match response.status().as_u16() {
        200 => {}
        404 => return Ok(false),
        401 | 403 => {
            return Err(format!(
                "{url}: access denied (set HF_TOKEN for gated or private models)"
            ))
        }
        s => return Err(format!("{url}: HTTP status {s}")),
    }
    let total = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let bar = crate::progress::bytes(
        total,
        dest.file_name().and_then(|n| n.to_str()).unwrap_or(""),
    );
    let mut out = std::fs::File::create(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    let mut reader = response.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut received = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(|e| format!("{url}: {e}"))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])
            .map_err(|e| format!("{}: {e}", dest.display()))?;
        received += n as u64;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    out.sync_all()
        .map_err(|e| format!("{}: {e}", dest.display()))?;
    if total.is_some_and(|t| t != received) {
        return Err(format!(
            "{url}: the answer was cut short ({received} of {} bytes)",
            total.unwrap_or(0)
        ));
    }
    check_file(dest).map_err(|why| format!("{url}: {why}"))?;
    Ok(true)
}

/// Whether a downloaded file is what its name says, so that an error page
/// served with status 200 (an HTML login page, a proxy's notice) is never
/// cached as a model: JSON files parse (config.json as a model config),
/// `vocab.txt` is text, `model.safetensors` has a valid header whose
/// tensors fill the file, `pytorch_model.bin` is a zip or pickle file.
fn check_file(path: &Path) -> std::result::Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let looks_like_html = |text: &str| {
        let head = text
            .trim_start()
            .get(..15)
            .unwrap_or("")
            .to_ascii_lowercase();
        head.starts_with("<!doctype") || head.starts_with("<html")
    };
    match name {
        "config.json" => {
            let text = String::from_utf8_lossy(&bytes);
            BertConfig::from_hf_json(&text, path)
                .map(drop)
                .map_err(|e| format!("not a model's config.json: {e}"))
        }
        _ if name.ends_with(".json") => serde_json::from_slice::<serde_json::Value>(&bytes)
            .map(drop)
            .map_err(|e| format!("not JSON: {e}")),
        "vocab.txt" => match std::str::from_utf8(&bytes) {
            Ok(text) if !text.trim().is_empty() && !looks_like_html(text) => Ok(()),
            _ => Err("not a vocabulary (one token a line)".into()),
        },
        "model.safetensors" => check_safetensors(&bytes),
        "pytorch_model.bin" if bytes.starts_with(b"PK\x03\x04") || bytes.first() == Some(&0x80) => {
            Ok(())
        }
        "pytorch_model.bin" => Err("not a PyTorch checkpoint (neither zip nor pickle)".into()),
        _ => Ok(()),
    }
}

/// A safetensors file: an 8-byte little-endian header length, a JSON
/// header of tensors whose data offsets end where the file ends.
fn check_safetensors(bytes: &[u8]) -> std::result::Result<(), String> {
    let bad = |why: &str| Err(format!("not a safetensors file: {why}"));
    let Some(len) = bytes.get(..8) else {
        return bad("shorter than its header");
    };
    let len = u64::from_le_bytes(len.try_into().expect("8 bytes"));
    let Some(header) = usize::try_from(len)
        .ok()
        .and_then(|len| bytes.get(8..8usize.checked_add(len)?))
    else {
        return bad("the header length exceeds the file");
    };
    let Ok(serde_json::Value::Object(tensors)) = serde_json::from_slice(header) else {
        return bad("the header is not a JSON object");
    };
    let end = tensors
        .iter()
        .filter(|(name, _)| name.as_str() != "__metadata__")
        .filter_map(|(_, t)| t["data_offsets"][1].as_u64())
        .max()
        .unwrap_or(0);
    if end != (bytes.len() - 8 - header.len()) as u64 {
        return bad(&format!(
            "the tensors need {end} bytes of data, the file holds {}",
            bytes.len() - 8 - header.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::HubId;

    #[test]
    fn hub_ids_and_paths_are_told_apart() {
        let id = HubId::parse("sentence-transformers/all-MiniLM-L6-v2").unwrap();
        assert_eq!(id.revision, "main");
        assert_eq!(
            id.cache_name(),
            "sentence-transformers--all-MiniLM-L6-v2--main"
        );
        let pinned = HubId::parse("bert-base-uncased@v1.0").unwrap();
        assert_eq!(
            (pinned.name.as_str(), pinned.revision.as_str()),
            ("bert-base-uncased", "v1.0")
        );
        for path in [
            "./models/x",
            "/abs/dir",
            "../x",
            "a/b/c",
            "~/m",
            "",
            "a b",
            "org/",
        ] {
            assert_eq!(HubId::parse(path), None, "{path}");
        }
    }
}
