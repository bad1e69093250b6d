//! Turning a `--model` argument into a local model directory: a directory is
//! used as it is (a training run directory stands for its best model); a
//! Hugging Face hub id (`org/name`, optionally `@revision`) is looked up in
//! the Hugging Face cache, laid out as `huggingface_hub` lays it out
//! (`models--org--name/refs/<revision>` holds a commit,
//! `snapshots/<commit>/` the files, `.no_exist/<commit>/` the files the
//! repository lacks), so models downloaded with Python are used offline and
//! models fetched here are Python's too.
//!
//! A branch or tag is resolved to its commit on every use while the network
//! allows (the hub's `X-Repo-Commit` header); when the hub cannot be reached
//! the commit the cache recorded is used. Besides the weights, config and
//! tokenizer, the sentence-transformers module files are fetched
//! (`modules.json`, the pooling module's `config.json`,
//! `sentence_bert_config.json`), so a hub id pools as the model declares.
//! Every file is checked before it enters the cache (an error page is never
//! cached as a model) and renamed into place, so a failed or killed fetch
//! leaves only whole files.
//!
//! Environment: `HF_HUB_CACHE` (else `HF_HOME/hub`, else
//! `~/.cache/huggingface/hub`), `HF_ENDPOINT` (default
//! `https://huggingface.co`), `HF_TOKEN` (sent as a bearer token),
//! `HF_HUB_OFFLINE=1` (never use the network), `GCSE_HUB_TIMEOUT_S`
//! (seconds a server may take to answer or to send more of a file, default
//! 60).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::config::BertConfig;
use super::pooling::pooling_module_dirs;
use crate::atomic::{remove_stale_temporaries, temp_sibling};
use crate::error::{Error, Result};
use crate::run_dir::RunDir;

/// Files a model needs: the first name of each group the repository has.
const REQUIRED: &[&[&str]] = &[
    &["config.json"],
    &["tokenizer.json", "vocab.txt"],
    &["model.safetensors", "pytorch_model.bin"],
];

/// Files fetched when the repository has them: the tokenizer's settings and
/// the sentence-transformers description (the pooling module's own config
/// is found through `modules.json`, see [`pooling_module_dirs`]).
const OPTIONAL: &[&str] = &[
    "tokenizer_config.json",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
];

/// The root of gcse's caches.
pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("GCSE_CACHE") {
        return PathBuf::from(dir);
    }
    user_cache().join("gcse")
}

/// `$XDG_CACHE_HOME`, else `~/.cache`.
fn user_cache() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
}

/// The Hugging Face hub cache, where `huggingface_hub` looks:
/// `HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`.
pub fn hub_cache() -> PathBuf {
    if let Some(dir) = std::env::var_os("HF_HUB_CACHE") {
        return PathBuf::from(dir);
    }
    std::env::var_os("HF_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| user_cache().join("huggingface"))
        .join("hub")
}

/// Whether `HF_HUB_OFFLINE` forbids the network (`1`, `true`, `yes`, `on`).
fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .is_ok_and(|v| ["1", "true", "yes", "on"].contains(&v.trim().to_ascii_lowercase().as_str()))
}

/// Resolves `arg` to a model directory: a run directory gives its best
/// model; a hub id gives its snapshot in the hub cache, fetched when needed.
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
    let repo = CachedRepo::new(&id);
    let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into());
    let fail = |reason: String| {
        Error::ModelNotFound(format!(
            "{arg}: not a local directory, and fetching it from the Hugging Face hub ({endpoint}) into {} failed: {reason}. \
             Download config.json, tokenizer.json and model.safetensors of {} into a directory and pass that directory to --model.",
            repo.root.display(),
            id.name
        ))
    };
    let cached = repo.commit(&id.revision).filter(|c| repo.usable(c));
    if offline() {
        return match cached {
            Some(commit) => Ok(repo.snapshot(&commit)),
            None => Err(fail(format!(
                "HF_HUB_OFFLINE=1 forbids the network, and the cache has no snapshot of revision {} with all of {}",
                id.revision,
                required_names()
            ))),
        };
    }
    if is_commit(&id.revision) && repo.complete(&id.revision) {
        return Ok(repo.snapshot(&id.revision));
    }
    let hub = Hub::new(endpoint.trim_end_matches('/'), &id);
    let commit = match hub.commit() {
        Ok(commit) => commit,
        Err(Failure::Unreachable(why)) if cached.is_some() => {
            let commit = cached.expect("checked");
            eprintln!("{arg}: the hub cannot be reached ({why}); using the cached commit {commit}");
            return Ok(repo.snapshot(&commit));
        }
        Err(Failure::Unreachable(why) | Failure::Refused(why)) => return Err(fail(why)),
    };
    hub.fetch(&repo, &commit).map_err(fail)?;
    if commit != id.revision {
        repo.set_ref(&id.revision, &commit)
            .map_err(|e| fail(e.to_string()))?;
    }
    Ok(repo.snapshot(&commit))
}

/// `config.json, tokenizer.json or vocab.txt, ...`: the required files, for messages.
fn required_names() -> String {
    REQUIRED
        .iter()
        .map(|group| group.join(" or "))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `revision` is a full commit hash (40 lowercase hex digits).
fn is_commit(revision: &str) -> bool {
    revision.len() == 40
        && revision
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
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

/// A hub model id with its revision.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HubId {
    name: String,
    revision: String,
}

/// Whether `arg` names a model on the hub rather than a local path: an id
/// (`org/name[@rev]`) with no such file or folder here.
pub fn is_hub_id(arg: &str) -> bool {
    !Path::new(arg).exists() && HubId::parse(arg).is_some()
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

    /// `models--org--name`: the repository's folder in the hub cache.
    fn cache_name(&self) -> String {
        format!("models--{}", self.name.replace('/', "--"))
    }
}

/// A repository's folder in the hub cache.
struct CachedRepo {
    root: PathBuf,
}

impl CachedRepo {
    fn new(id: &HubId) -> Self {
        CachedRepo {
            root: hub_cache().join(id.cache_name()),
        }
    }

    /// The commit `revision` stands for: itself when it is a commit hash,
    /// else what `refs/<revision>` recorded.
    fn commit(&self, revision: &str) -> Option<String> {
        if is_commit(revision) {
            return Some(revision.to_string());
        }
        let text = std::fs::read_to_string(self.root.join("refs").join(revision)).ok()?;
        let commit = text.trim();
        (!commit.is_empty() && !commit.contains(['/', '\\']) && commit != "..")
            .then(|| commit.to_string())
    }

    fn snapshot(&self, commit: &str) -> PathBuf {
        self.root.join("snapshots").join(commit)
    }

    /// The marker of a file the repository does not have at `commit`.
    fn absent(&self, commit: &str, file: &str) -> PathBuf {
        self.root.join(".no_exist").join(commit).join(file)
    }

    /// Whether the snapshot of `commit` holds a file of every required group.
    fn usable(&self, commit: &str) -> bool {
        let snapshot = self.snapshot(commit);
        REQUIRED
            .iter()
            .all(|group| group.iter().any(|f| snapshot.join(f).is_file()))
    }

    /// Whether nothing is left to ask the server about `commit`: usable, and
    /// every optional file either present or known absent.
    fn complete(&self, commit: &str) -> bool {
        let snapshot = self.snapshot(commit);
        self.usable(commit)
            && optional_files(&snapshot)
                .iter()
                .all(|f| snapshot.join(f).is_file() || self.absent(commit, f).is_file())
    }

    /// Records that `revision` now stands for `commit`.
    fn set_ref(&self, revision: &str, commit: &str) -> Result<()> {
        let path = self.root.join("refs").join(revision);
        std::fs::create_dir_all(self.root.join("refs")).map_err(|e| Error::io(&path, e))?;
        crate::atomic::write_atomic(&path, |out| out.write_all(commit.as_bytes()))
    }

    fn mark_absent(&self, commit: &str, file: &str) -> std::result::Result<(), String> {
        let marker = self.absent(commit, file);
        let made = marker
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&marker, b""));
        made.map_err(|e| format!("{}: {e}", marker.display()))
    }
}

/// The optional files of a snapshot: [`OPTIONAL`] and, once `modules.json`
/// is there, each pooling module's `config.json`.
fn optional_files(snapshot: &Path) -> Vec<String> {
    let mut files: Vec<String> = OPTIONAL.iter().map(|f| f.to_string()).collect();
    files.extend(
        pooling_module_dirs(snapshot)
            .into_iter()
            .map(|d| format!("{d}/config.json")),
    );
    files
}

/// Why a hub request failed: the hub could not be reached (a cached commit
/// may stand in), or it answered with a refusal.
enum Failure {
    Unreachable(String),
    Refused(String),
}

/// One repository on one hub server.
struct Hub {
    agent: ureq::Agent,
    base: String,
    name: String,
    revision: String,
}

impl Hub {
    fn new(endpoint: &str, id: &HubId) -> Self {
        let timeout = hub_timeout();
        let agent = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_recv_response(Some(timeout))
            .timeout_per_read(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        Hub {
            agent,
            base: endpoint.to_string(),
            name: id.name.clone(),
            revision: id.revision.clone(),
        }
    }

    fn url(&self, revision: &str, file: &str) -> String {
        format!("{}/{}/resolve/{revision}/{file}", self.base, self.name)
    }

    /// Sends `request` with the token, if any; a transport failure (no
    /// connection, a timeout, no HTTP answer) is [`Failure::Unreachable`].
    fn call(
        &self,
        request: ureq::RequestBuilder<ureq::typestate::WithoutBody>,
        url: &str,
    ) -> std::result::Result<ureq::http::Response<ureq::Body>, Failure> {
        let request = match std::env::var("HF_TOKEN") {
            Ok(token) => request.header("Authorization", &format!("Bearer {token}")),
            Err(_) => request,
        };
        request.call().map_err(|e| {
            let what = format!("{url}: {e}");
            Failure::Unreachable(if matches!(e, ureq::Error::Timeout(_)) {
                format!("{what} (GCSE_HUB_TIMEOUT_S sets the limit)")
            } else {
                what
            })
        })
    }

    /// The commit the revision names now: the `X-Repo-Commit` header of the
    /// answer for its `config.json`; a server that sends none (a plain file
    /// server) keys the snapshot by the revision's name.
    fn commit(&self) -> std::result::Result<String, Failure> {
        let url = self.url(&self.revision, "config.json");
        let response = self.call(self.agent.head(&url), &url)?;
        let status = response.status().as_u16();
        match status {
            200..=399 => {}
            401 | 403 => return Err(Failure::Refused(denied(&url))),
            404 => {
                return Err(Failure::Refused(format!(
                    "{url}: not found (no such repository, revision {} or config.json)",
                    self.revision
                )))
            }
            500.. => return Err(Failure::Unreachable(format!("{url}: HTTP status {status}"))),
            s => return Err(Failure::Refused(format!("{url}: HTTP status {s}"))),
        }
        let commit = response
            .headers()
            .get("x-repo-commit")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .unwrap_or(&self.revision);
        if !commit
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            || commit.starts_with('.')
        {
            return Err(Failure::Refused(format!(
                "{url}: the server names an unusable commit {commit:?}"
            )));
        }
        Ok(commit.to_string())
    }

    /// Fetches what the snapshot of `commit` lacks (see
    /// [`CachedRepo::complete`]); files the repository does not have are
    /// marked absent. The error is a one-line reason.
    fn fetch(&self, repo: &CachedRepo, commit: &str) -> std::result::Result<(), String> {
        let snapshot = repo.snapshot(commit);
        for group in REQUIRED {
            if group.iter().any(|f| snapshot.join(f).is_file()) {
                continue;
            }
            let mut found = false;
            for file in *group {
                if repo.absent(commit, file).is_file() {
                    continue;
                }
                if self.download(commit, file, &snapshot)? {
                    found = true;
                    break;
                }
                repo.mark_absent(commit, file)?;
            }
            if !found {
                return Err(format!("the repository has none of {}", group.join(", ")));
            }
        }
        // `modules.json` comes first and names the pooling configs after it.
        let mut done = Vec::new();
        loop {
            let pending: Vec<String> = optional_files(&snapshot)
                .into_iter()
                .filter(|f| !done.contains(f))
                .collect();
            let Some(file) = pending.into_iter().next() else {
                return Ok(());
            };
            if !snapshot.join(&file).is_file()
                && !repo.absent(commit, &file).is_file()
                && !self.download(commit, &file, &snapshot)?
            {
                repo.mark_absent(commit, &file)?;
            }
            done.push(file);
        }
    }

    /// Fetches `file` at `commit` into `snapshot`, through a checked
    /// temporary file (see [`check_file`]); `Ok(false)` on 404.
    fn download(
        &self,
        commit: &str,
        file: &str,
        snapshot: &Path,
    ) -> std::result::Result<bool, String> {
        let url = self.url(commit, file);
        let response = self.call(self.agent.get(&url), &url).map_err(|f| match f {
            Failure::Unreachable(why) | Failure::Refused(why) => why,
        })?;
        match response.status().as_u16() {
            200 => {}
            404 => return Ok(false),
            401 | 403 => return Err(denied(&url)),
            s => return Err(format!("{url}: HTTP status {s}")),
        }
        let total = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let dest = snapshot.join(file);
        let parent = dest.parent().unwrap_or(snapshot);
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        remove_stale_temporaries(&dest);
        let tmp = temp_sibling(&dest);
        let result = receive(response.into_body(), total, &tmp, file, &url)
            .and_then(|()| check_file(&tmp, file).map_err(|why| format!("{url}: {why}")))
            .and_then(|()| {
                std::fs::rename(&tmp, &dest).map_err(|e| format!("{}: {e}", dest.display()))
            });
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map(|()| true)
    }
}

/// The message for a 401/403 answer.
fn denied(url: &str) -> String {
    format!("{url}: access denied (set HF_TOKEN for gated or private models)")
}

/// Writes a response body to `path`, synced; an answer shorter than its
/// `Content-Length` is an error.
fn receive(
    body: ureq::Body,
    total: Option<u64>,
    path: &Path,
    name: &str,
    url: &str,
) -> std::result::Result<(), String> {
    let bar = crate::progress::bytes(total, name);
    let mut out = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut reader = body.into_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut received = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(|e| format!("{url}: {e}"))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])
            .map_err(|e| format!("{}: {e}", path.display()))?;
        received += n as u64;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    out.sync_all()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    match total {
        Some(total) if total != received => Err(format!(
            "{url}: the answer was cut short ({received} of {total} bytes)"
        )),
        _ => Ok(()),
    }
}

/// Whether a downloaded file is what its name says, so that an error page
/// served with status 200 (an HTML login page, a proxy's notice) is never
/// cached as a model: JSON files parse (config.json as a model config),
/// `vocab.txt` is text, `model.safetensors` has a valid header whose
/// tensors fill the file, `pytorch_model.bin` is a zip or pickle file.
fn check_file(path: &Path, file: &str) -> std::result::Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let name = file.rsplit('/').next().unwrap_or(file);
    let looks_like_html = |text: &str| {
        let head = text
            .trim_start()
            .get(..15)
            .unwrap_or("")
            .to_ascii_lowercase();
        head.starts_with("<!doctype") || head.starts_with("<html")
    };
    match name {
        "config.json" if file == name => {
            let text = String::from_utf8_lossy(&bytes);
            BertConfig::from_hf_json(&text, Path::new(file))
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
            "models--sentence-transformers--all-MiniLM-L6-v2"
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
