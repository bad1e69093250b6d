//! Turning a `--model` argument into a local model directory: a directory is
//! used as it is (a training run directory stands for its best model); a Hugging Face hub id (`org/name`, optionally `@revision`)
//! is fetched once into a cache and used from there.
//!
//! Environment: `HF_ENDPOINT` (default `https://huggingface.co`), `HF_TOKEN`
//! (sent as a bearer token), `HF_HUB_OFFLINE=1` (never use the network),
//! `GCSE_CACHE` (cache root, default `~/.cache/gcse`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

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
        fetch(&id, endpoint.trim_end_matches('/'), &dir)
    };
    fetched.map(|()| dir).map_err(|reason| {
        Error::ModelNotFound(format!(
            "{arg}: not a local directory, and fetching it from the Hugging Face hub ({endpoint}) failed: {reason}. \
             Download config.json, tokenizer.json and model.safetensors of {} into a directory and pass that directory to --model.",
            id.name
        ))
    })
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

/// Downloads the model's files into `dir`; the error is a one-line reason.
fn fetch(id: &HubId, endpoint: &str, dir: &Path) -> std::result::Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_recv_body(Some(Duration::from_secs(600)))
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

/// Fetches `url` into `dest` (through a `.part` file); `Ok(false)` on 404.
fn download(agent: &ureq::Agent, url: &str, dest: &Path) -> std::result::Result<bool, String> {
    if dest.is_file() {
        return Ok(true);
    }
    let mut request = agent.get(url);
    if let Ok(token) = std::env::var("HF_TOKEN") {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    let response = request.call().map_err(|e| format!("{url}: {e}"))?;
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
    let part = dest.with_extension("part");
    let mut out = std::fs::File::create(&part).map_err(|e| format!("{}: {e}", part.display()))?;
    let mut reader = response.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf).map_err(|e| format!("{url}: {e}"))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])
            .map_err(|e| format!("{}: {e}", part.display()))?;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    out.sync_all()
        .map_err(|e| format!("{}: {e}", part.display()))?;
    std::fs::rename(&part, dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    Ok(true)
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
