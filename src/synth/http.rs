//! The OpenAI-compatible HTTP backend: chat or plain completions from
//! Ollama, vLLM, the llama.cpp server, LM Studio or a hosted API, spread
//! over a pool of endpoints, with a per-request timeout and bounded retries
//! (exponential backoff, or the server's `Retry-After`) on 408, 429, 5xx,
//! timeouts and dropped connections.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::answers::Answer;
use super::llm::{Llm, LlmError, Request};
use crate::check;
use crate::error::{Error, Result};

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

/// An OpenAI-compatible server pool.
pub struct HttpLlm {
    config: HttpConfig,
    key: Option<String>,
    agent: ureq::Agent,
    turn: AtomicUsize,
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
            config,
            key,
            agent,
            turn: AtomicUsize::new(0),
        })
    }

    fn body(&self, request: &Request) -> Value {
        let s = &request.sampling;
        let mut body = json!({
            "model": self.config.model,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "max_tokens": s.max_tokens,
            "stream": false,
        });
        match self.config.api {
            Api::Chat => {
                body["messages"] = json!([{"role": "user", "content": request.prompt}]);
                if request.json && self.config.json_mode {
                    body["response_format"] = json!({"type": "json_object"});
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
            _ => Err(Attempt::Failed(reason())),
        }
    }
}

impl Llm for HttpLlm {
    fn model(&self) -> &str {
        &self.config.model
    }

    fn parallelism(&self) -> usize {
        self.config.in_flight.max(1) * self.config.endpoints.len()
    }

    fn complete(&self, request: &Request) -> std::result::Result<Answer, LlmError> {
        let body = self.body(request);
        let endpoints = &self.config.endpoints;
        let first = self.turn.fetch_add(1, Ordering::Relaxed);
        let mut last = String::new();
        let mut connected = false;
        for attempt in 0..=self.config.retries {
            let endpoint = &endpoints[(first + attempt as usize) % endpoints.len()];
            let (reason, wait) = match self.attempt(endpoint, &body) {
                Ok(answer) => return Ok(answer),
                Err(Attempt::Failed(reason)) => return Err(LlmError::Failed(reason)),
                Err(Attempt::Fatal(reason)) => return Err(LlmError::Fatal(reason)),
                Err(Attempt::Unreachable(reason)) => (reason, None),
                Err(Attempt::Retry(reason, wait)) => {
                    connected = true;
                    (reason, wait)
                }
            };
            last = reason;
            if attempt < self.config.retries {
                let backoff = capped_seconds(self.config.backoff_s * 2f64.powi(attempt as i32))
                    .unwrap_or(MAX_BACKOFF);
                std::thread::sleep(wait.map_or(backoff, |w| w.max(backoff)));
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
