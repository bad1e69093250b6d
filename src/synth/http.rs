//! The OpenAI-compatible HTTP backend: chat or plain completions from
//! Ollama, vLLM, the llama.cpp server, LM Studio or a hosted API, spread
//! over a pool of endpoints, with a per-request timeout and bounded retries
//! (exponential backoff with jitter, or the server's `Retry-After`) on 408,
//! 429, 5xx, timeouts and dropped connections. A server that rejects
//! request after request with the same 4xx answer stops the run (a setting
//! it does not accept fails every request alike); one that asks for
//! `max_completion_tokens` instead of `max_tokens` gets it from then on.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::answers::Answer;
use super::llm::{Llm, LlmError, Request};
use crate::check;
use crate::error::{Error, Result};
use crate::rng::SplitMix64;

/// Which OpenAI endpoint requests go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// `POST {endpoint}/chat/completions`: the prompt is one user message,
    /// wrapped in the server's chat template.
    #[default]
    Chat,
    /// `POST {endpoint}/completions`: the prompt as it is, which suits base
    /// models and our few-shot templates.
    Completions,
}

/// `[llm.http]` of a synthesis config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Base URLs up to and including `/v1`, e.g. `http://127.0.0.1:11434/v1`;
    /// requests are spread over them in turn, and a retry goes to the next.
    pub endpoints: Vec<String>,
    /// The model name the servers know.
    pub model: String,
    /// The environment variable holding the API key, sent as a bearer token.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Chat or plain completions.
    #[serde(default)]
    pub api: Api,
    /// Requests in flight per endpoint.
    #[serde(default = "default_in_flight")]
    pub in_flight: usize,
    /// Time limit of one attempt, in seconds (at most a day).
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
    /// Attempts after the first one fails for a reason worth retrying.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// First backoff between attempts, in seconds, doubled each time (each
    /// wait at most 60 s).
    #[serde(default = "default_backoff")]
    pub backoff_s: f64,
    /// Ask chat servers for a JSON object when the prompt wants JSON
    /// (`response_format`; not every server supports it).
    #[serde(default)]
    pub json_mode: bool,
    /// Ask chat servers for answers of the prompt's JSON schema
    /// (`response_format: {"type": "json_schema", ...}`, strict; OpenAI,
    /// vLLM, Ollama and the llama.cpp server have it); ahead of `json_mode`.
    /// A server whose error names `response_format` or `json_schema` is
    /// asked without from then on.
    #[serde(default)]
    pub json_schema: bool,
    /// The name of the answer-length limit: `max_tokens` (most servers) or
    /// `max_completion_tokens` (OpenAI's newer models). A server whose error
    /// asks for the other name gets it from then on.
    #[serde(default)]
    pub token_limit: TokenLimit,
}

/// How requests name the answer-length limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenLimit {
    /// `max_tokens`.
    #[default]
    MaxTokens,
    /// `max_completion_tokens`.
    MaxCompletionTokens,
}

impl TokenLimit {
    fn key(self) -> &'static str {
        match self {
            TokenLimit::MaxTokens => "max_tokens",
            TokenLimit::MaxCompletionTokens => "max_completion_tokens",
        }
    }
}

/// The longest `timeout_s` accepted: a day.
const MAX_TIMEOUT_S: f64 = 86_400.0;

impl HttpConfig {
    /// Checks what serde cannot: endpoint URLs (`http://` or `https://`
    /// with a host), finite times in range; the message names the key.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.endpoints.is_empty() {
            return Err("`llm.http.endpoints` is empty".into());
        }
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            check_endpoint(endpoint)
                .map_err(|why| format!("`llm.http.endpoints[{i}]` \"{endpoint}\": {why}"))?;
        }
        check::above_up_to("llm.http.timeout_s", self.timeout_s, 0.0, MAX_TIMEOUT_S)?;
        check::within(
            "llm.http.backoff_s",
            self.backoff_s,
            0.0,
            MAX_BACKOFF.as_secs_f64(),
        )?;
        if self.in_flight == 0 {
            return Err("`llm.http.in_flight` must be at least 1".into());
        }
        Ok(())
    }
}

/// Why `endpoint` is not a base URL requests can go to, if it is not.
fn check_endpoint(endpoint: &str) -> std::result::Result<(), String> {
    let uri: Option<ureq::http::Uri> = endpoint.parse().ok();
    let scheme = uri.as_ref().and_then(|u| u.scheme_str());
    if !matches!(scheme, Some("http" | "https")) {
        return Err(
            "not a URL starting with http:// or https:// (e.g. http://127.0.0.1:11434/v1)".into(),
        );
    }
    if uri
        .as_ref()
        .and_then(|u| u.host())
        .is_none_or(str::is_empty)
    {
        return Err("the URL has no host".into());
    }
    Ok(())
}

fn default_in_flight() -> usize {
    4
}
fn default_timeout() -> f64 {
    120.0
}
fn default_retries() -> u32 {
    4
}
fn default_backoff() -> f64 {
    1.0
}

/// The longest wait between two attempts, whatever `Retry-After` says.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// How many requests in a row may fail with the same 4xx answer before the
/// run stops.
pub const SAME_REJECTIONS: usize = 5;

/// An OpenAI-compatible server pool.
pub struct HttpLlm {
    config: HttpConfig,
    key: Option<String>,
    agent: ureq::Agent,
    turn: AtomicUsize,
    /// Set once a server asked for `max_completion_tokens`.
    completion_tokens: AtomicBool,
    /// Set once a server refused a JSON schema.
    no_schema: AtomicBool,
    /// The last rejection (status and message) and how many requests in a
    /// row got it.
    rejections: Mutex<(String, usize)>,
}

/// How one attempt ended, when not with an answer.
enum Attempt {
    /// Worth trying again (after at least the given wait, if any).
    Retry(String, Option<Duration>),
    /// No connection could be made; worth trying again, but if no attempt
    /// connects, no request can succeed.
    Unreachable(String),
    /// This request cannot succeed.
    Failed(String),
    /// The server refused this request (a 4xx status).
    Rejected(String),
    /// No request can succeed.
    Fatal(String),
}

impl HttpLlm {
    /// Checks `config` and reads the API key from the environment.
    pub fn new(config: HttpConfig) -> Result<Self> {
        config.validate().map_err(Error::Usage)?;
        let key = match &config.api_key_env {
            Some(var) => Some(std::env::var(var).map_err(|_| {
                Error::Usage(format!(
                    "`llm.http.api_key_env` names {var}, which is not set"
                ))
            })?),
            None => None,
        };
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs_f64(config.timeout_s)))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(HttpLlm {
            completion_tokens: AtomicBool::new(
                config.token_limit == TokenLimit::MaxCompletionTokens,
            ),
            config,
            key,
            agent,
            turn: AtomicUsize::new(0),
            rejections: Mutex::new((String::new(), 0)),
            no_schema: AtomicBool::new(false),
        })
    }

    fn sends_schema(&self) -> bool {
        self.config.json_schema && !self.no_schema.load(Ordering::Relaxed)
    }

    fn token_limit(&self) -> TokenLimit {
        if self.completion_tokens.load(Ordering::Relaxed) {
            TokenLimit::MaxCompletionTokens
        } else {
            TokenLimit::MaxTokens
        }
    }

    fn body(&self, request: &Request) -> Value {
        let s = &request.sampling;
        let mut body = json!({
            "model": self.config.model,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "stream": false,
        });
        body[self.token_limit().key()] = json!(s.max_tokens);
        match self.config.api {
            Api::Chat => {
                body["messages"] = json!([{"role": "user", "content": request.prompt}]);
                match request.shape {
                    Some(shape) if self.sends_schema() => {
                        body["response_format"] = json!({
                            "type": "json_schema",
                            "json_schema": {"name": "answer", "strict": true, "schema": shape.json_schema()},
                        });
                    }
                    Some(_) if self.config.json_mode => {
                        body["response_format"] = json!({"type": "json_object"});
                    }
                    _ => {}
                }
            }
            Api::Completions => body["prompt"] = json!(request.prompt),
        }
        if let Some(seed) = s.seed {
            body["seed"] = json!(seed);
        }
        if !s.stop.is_empty() {
            body["stop"] = json!(s.stop);
        }
        body
    }

    fn attempt(&self, endpoint: &str, body: &Value) -> std::result::Result<Answer, Attempt> {
        let path = match self.config.api {
            Api::Chat => "chat/completions",
            Api::Completions => "completions",
        };
        let url = format!("{}/{path}", endpoint.trim_end_matches('/'));
        let mut call = self
            .agent
            .post(&url)
            .header("content-type", "application/json");
        if let Some(key) = &self.key {
            call = call.header("Authorization", &format!("Bearer {key}"));
        }
        let mut response = match call.send(body.to_string()) {
            Ok(response) => response,
            Err(ureq::Error::Timeout(_)) => {
                return Err(Attempt::Retry(
                    format!("{url}: no answer within {} s", self.config.timeout_s),
                    None,
                ))
            }
            Err(e @ (ureq::Error::ConnectionFailed | ureq::Error::HostNotFound)) => {
                return Err(Attempt::Unreachable(format!("{url}: {e}")))
            }
            Err(ureq::Error::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(Attempt::Unreachable(format!("{url}: {e}")))
            }
            Err(e) => return Err(Attempt::Retry(format!("{url}: {e}"), None)),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .and_then(capped_seconds);
        let text = match response.body_mut().read_to_string() {
            Ok(text) => text,
            Err(ureq::Error::Timeout(_)) => {
                return Err(Attempt::Retry(
                    format!(
                        "{url}: the answer did not finish within {} s",
                        self.config.timeout_s
                    ),
                    None,
                ))
            }
            Err(e @ ureq::Error::BodyExceedsLimit(_)) => {
                return Err(Attempt::Failed(format!("{url}: {e}")))
            }
            Err(e) => {
                return Err(Attempt::Retry(
                    format!("{url}: reading the answer: {e}"),
                    None,
                ))
            }
        };
        let reason = || format!("{url}: HTTP {status}: {}", error_message(&text));
        match status {
            200..=299 => parse_answer(self.config.api, &text)
                .map_err(|e| Attempt::Retry(format!("{url}: {e}"), None)),
            408 | 409 | 425 | 429 | 500..=599 => Err(Attempt::Retry(reason(), retry_after)),
            401 | 403 | 404 => Err(Attempt::Fatal(reason())),
            400 if asks_for_completion_tokens(&text)
                && !self.completion_tokens.swap(true, Ordering::Relaxed) =>
            {
                Err(Attempt::Retry(reason(), Some(Duration::ZERO)))
            }
            400 if body
                .get("response_format")
                .is_some_and(|f| f["type"] == "json_schema")
                && refuses_schema(&text) =>
            {
                self.no_schema.store(true, Ordering::Relaxed);
                Err(Attempt::Retry(reason(), Some(Duration::ZERO)))
            }
            _ => Err(Attempt::Rejected(reason())),
        }
    }

    /// Counts `reason` (a 4xx answer) against the requests before: the
    /// same answer [`SAME_REJECTIONS`] times in a row stops the run.
    fn rejected(&self, reason: String) -> LlmError {
        let mut last = self.rejections.lock().unwrap_or_else(|e| e.into_inner());
        let message = reason
            .split_once(": HTTP ")
            .map_or(reason.as_str(), |(_, m)| m);
        if last.0 == message {
            last.1 += 1;
        } else {
            *last = (message.to_string(), 1);
        }
        if last.1 >= SAME_REJECTIONS {
            LlmError::Fatal(format!(
                "{} requests in a row were rejected alike, so every request would be: {reason} \
                 (a setting of [llm.http] or [sampling] the server does not accept?)",
                last.1
            ))
        } else {
            LlmError::Failed(reason)
        }
    }
}

/// Whether an error body is about the JSON schema asked for.
fn refuses_schema(body: &str) -> bool {
    let message = error_message(body);
    message.contains("response_format") || message.contains("json_schema")
}

/// Whether an error body asks for `max_completion_tokens` in place of
/// `max_tokens` (OpenAI: "Unsupported parameter: 'max_tokens' ... Use
/// 'max_completion_tokens' instead.").
fn asks_for_completion_tokens(body: &str) -> bool {
    let message = error_message(body);
    message.contains("max_completion_tokens") && message.contains("max_tokens")
}

/// Why an HTTP backend refuses a guided request.
pub const UNGUIDED: &str = "classifier-free guidance needs the next token's logits after two prompts at every step, which an OpenAI-compatible server does not return; use the embedded engine (llm.backend = \"local\") or unguided chains (chains.guided = false)";

impl Llm for HttpLlm {
    fn model(&self) -> &str {
        &self.config.model
    }

    fn parallelism(&self) -> usize {
        self.config.in_flight.max(1) * self.config.endpoints.len()
    }

    fn complete(&self, request: &Request) -> std::result::Result<Answer, LlmError> {
        if request.guidance.is_some() {
            return Err(LlmError::Fatal(UNGUIDED.into()));
        }
        let endpoints = &self.config.endpoints;
        let first = self.turn.fetch_add(1, Ordering::Relaxed);
        let mut last = String::new();
        let mut connected = false;
        for attempt in 0..=self.config.retries {
            let endpoint = &endpoints[(first + attempt as usize) % endpoints.len()];
            let (reason, wait) = match self.attempt(endpoint, &self.body(request)) {
                Ok(answer) => {
                    self.rejections.lock().unwrap_or_else(|e| e.into_inner()).1 = 0;
                    return Ok(answer);
                }
                Err(Attempt::Failed(reason)) => return Err(LlmError::Failed(reason)),
                Err(Attempt::Rejected(reason)) => return Err(self.rejected(reason)),
                Err(Attempt::Fatal(reason)) => return Err(LlmError::Fatal(reason)),
                Err(Attempt::Unreachable(reason)) => (reason, None),
                Err(Attempt::Retry(reason, wait)) => {
                    connected = true;
                    (reason, wait)
                }
            };
            last = reason;
            if attempt < self.config.retries {
                std::thread::sleep(match wait {
                    Some(Duration::ZERO) => Duration::ZERO,
                    Some(w) => w.max(self.backoff(attempt)),
                    None => self.backoff(attempt),
                });
            }
        }
        let attempts = self.config.retries + 1;
        let plural = if attempts == 1 { "" } else { "s" };
        let reason = format!("gave up after {attempts} attempt{plural}; last: {last}");
        Err(if connected {
            LlmError::Failed(reason)
        } else {
            LlmError::Fatal(format!("no endpoint could be reached: {reason}"))
        })
    }
}

impl HttpLlm {
    /// The wait before retry `attempt + 1`: `backoff_s` doubled per attempt,
    /// at most [`MAX_BACKOFF`], then jittered to between half and all of it
    /// so that requests that failed together do not come back together.
    fn backoff(&self, attempt: u32) -> Duration {
        let full = capped_seconds(self.config.backoff_s * 2f64.powi(attempt as i32))
            .unwrap_or(MAX_BACKOFF);
        full.mul_f64(0.5 + 0.5 * jitter())
    }
}

/// A number in [0, 1) that differs from call to call and thread to thread:
/// [`SplitMix64`] per thread, seeded from the clock and the thread.
fn jitter() -> f64 {
    thread_local! {
        static RNG: std::cell::RefCell<SplitMix64> = std::cell::RefCell::new(SplitMix64::derived(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
            &[thread_hash()],
        ));
    }
    fn thread_hash() -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        std::thread::current().id().hash(&mut hasher);
        hasher.finish()
    }
    RNG.with(|rng| (rng.borrow_mut().next_u64() >> 11) as f64 / (1u64 << 53) as f64)
}

/// `seconds` as a wait of at most [`MAX_BACKOFF`]; `None` for a negative
/// or NaN count (an infinite or huge one is capped, never a panic).
fn capped_seconds(seconds: f64) -> Option<Duration> {
    (seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(MAX_BACKOFF.as_secs_f64())))
}

/// The answer in a successful response body.
fn parse_answer(api: Api, body: &str) -> std::result::Result<Answer, String> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| format!("the response is not JSON: {e}"))?;
    let choice = &value["choices"][0];
    let text = match api {
        Api::Chat => choice["message"]["content"].as_str(),
        Api::Completions => choice["text"].as_str(),
    }
    .ok_or_else(|| format!("the response has no answer text: {}", clip(body)))?;
    let tokens = |field: &str| {
        value["usage"][field]
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
    };
    Ok(Answer {
        text: text.to_string(),
        prompt_tokens: tokens("prompt_tokens"),
        completion_tokens: tokens("completion_tokens"),
    })
}

/// The message of an error body in the shapes of OpenAI
/// (`{"error": {"message": ...}}`), Ollama (`{"error": "..."}`) and vLLM
/// (`{"message": ...}`), or the body itself, clipped.
pub fn error_message(body: &str) -> String {
    let value: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let found = value["error"]["message"]
        .as_str()
        .or_else(|| value["error"].as_str())
        .or_else(|| value["message"].as_str());
    clip(found.unwrap_or(body))
}

/// At most 200 characters of `text`, on one line.
fn clip(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(200) {
        Some((cut, _)) => format!("{}...", &one_line[..cut]),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_jittered_between_half_and_all_of_it() {
        let llm = HttpLlm::new(HttpConfig {
            endpoints: vec!["http://127.0.0.1:9/v1".into()],
            model: "m".into(),
            api_key_env: None,
            api: Api::Chat,
            in_flight: 1,
            timeout_s: 1.0,
            retries: 3,
            backoff_s: 1.0,
            json_mode: false,
            json_schema: false,
            token_limit: TokenLimit::MaxTokens,
        })
        .unwrap();
        for attempt in 0..8u32 {
            let full = (2f64.powi(attempt as i32)).min(60.0);
            let waits: Vec<f64> = (0..200)
                .map(|_| llm.backoff(attempt).as_secs_f64())
                .collect();
            assert!(
                waits.iter().all(|&w| w >= full / 2.0 && w <= full),
                "attempt {attempt}: {waits:?}"
            );
            let (lo, hi) = waits
                .iter()
                .fold((f64::MAX, f64::MIN), |(a, b), &w| (a.min(w), b.max(w)));
            assert!(hi - lo > full * 0.2, "attempt {attempt}: spread {lo}..{hi}");
        }
    }
}
