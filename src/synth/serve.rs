//! An OpenAI-compatible server over any [`Llm`] (`gcse synth serve`):
//! `POST /v1/chat/completions` and `POST /v1/completions` (not streamed) and
//! `GET /v1/models`, HTTP/1.1 with keep-alive, one thread a connection. One
//! loaded GGUF model can so serve several runs, or the HTTP backend be
//! tested against a real model on loopback.
//!
//! Error bodies have OpenAI's shape: a request for another model gets 404,
//! a malformed body or a prompt the model cannot take 400, a request beyond
//! `max_queue` waiting 503 with `Retry-After`, and a backend failure 500.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Value};

use super::answers::Sampling;
use super::llm::{Llm, LlmError, Request};

/// One HTTP request.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// The first header called `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The largest request body read (a prompt of a few hundred thousand
/// characters), so that a client cannot make the server allocate at will.
const MAX_BODY: usize = 4 << 20;

/// Reads one request off a connection: `Ok(None)` when the client closed
/// it, an error when what came was not HTTP/1.1 with a `content-length`
/// body (chunked bodies are not taken).
pub fn read_request(reader: &mut impl BufRead) -> std::io::Result<Option<HttpRequest>> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut words = line.split_whitespace();
    let (Some(method), Some(path)) = (words.next(), words.next()) else {
        return Err(bad("not an HTTP request line"));
    };
    let (method, path) = (method.to_string(), path.to_string());
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(bad("the headers did not end"));
        }
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let (name, value) = trimmed
            .split_once(':')
            .ok_or_else(|| bad("a header without ':'"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let mut request = HttpRequest {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    if request.header("transfer-encoding").is_some() {
        return Err(bad("chunked bodies are not taken"));
    }
    let length = match request.header("content-length") {
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| bad("a bad content-length"))?,
        None => 0,
    };
    if length > MAX_BODY {
        return Err(bad("the body is too large"));
    }
    request.body = vec![0; length];
    reader.read_exact(&mut request.body)?;
    Ok(Some(request))
}

/// Writes one response with a JSON body.
pub fn write_response(
    writer: &mut impl Write,
    status: u16,
    body: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        reason(status),
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    writer.write_all(head.as_bytes())?;
    writer.write_all(body.as_bytes())?;
    writer.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Server settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeOptions {
    /// The model name clients must ask for (they may also leave it out).
    pub model: String,
    /// Requests waiting or running beyond which new ones get 503.
    pub max_queue: usize,
}

/// Serves `llm` on `listener` until the process ends.
pub fn serve(listener: TcpListener, llm: &(dyn Llm + Sync), options: &ServeOptions) {
    let waiting = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for stream in listener.incoming().flatten() {
            let waiting = &waiting;
            scope.spawn(move || connection(stream, llm, options, waiting));
        }
    });
}

/// Answers requests on one connection until the client leaves.
fn connection(
    stream: TcpStream,
    llm: &(dyn Llm + Sync),
    options: &ServeOptions,
    waiting: &AtomicUsize,
) {
    let Ok(clone) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(clone);
    let mut writer = stream;
    loop {
        let request = match read_request(&mut reader) {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(e) => {
                let _ = write_response(
                    &mut writer,
                    400,
                    &error_body(&e.to_string()),
                    &[("connection", "close")],
                );
                return;
            }
        };
        let (status, body, retry) = respond(&request, llm, options, waiting);
        let headers: &[(&str, &str)] = if retry { &[("retry-after", "1")] } else { &[] };
        if write_response(&mut writer, status, &body, headers).is_err() {
            return;
        }
    }
}

/// An OpenAI-shaped error body.
fn error_body(message: &str) -> String {
    json!({"error": {"message": message, "type": "invalid_request_error"}}).to_string()
}

/// Status, body, and whether to send `Retry-After`.
fn respond(
    request: &HttpRequest,
    llm: &(dyn Llm + Sync),
    options: &ServeOptions,
    waiting: &AtomicUsize,
) -> (u16, String, bool) {
    let chat = match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/v1/models") => {
            let body = json!({"object": "list", "data": [{"id": options.model, "object": "model", "owned_by": "gcse"}]});
            return (200, body.to_string(), false);
        }
        ("POST", "/v1/chat/completions") => true,
        ("POST", "/v1/completions") => false,
        (method, path) => return (404, error_body(&format!("no route {method} {path}")), false),
    };
    let body: Value = match serde_json::from_slice(&request.body) {
        Ok(body) => body,
        Err(e) => {
            return (
                400,
                error_body(&format!("the body is not JSON: {e}")),
                false,
            )
        }
    };
    if let Some(model) = body["model"].as_str() {
        if model != options.model {
            return (
                404,
                error_body(&format!(
                    "model {model:?} not found; this server has {:?}",
                    options.model
                )),
                false,
            );
        }
    }
    let llm_request = match parse_request(&body, chat) {
        Ok(r) => r,
        Err(message) => return (400, error_body(&message), false),
    };
    if waiting.fetch_add(1, Ordering::SeqCst) >= options.max_queue {
        waiting.fetch_sub(1, Ordering::SeqCst);
        return (503, error_body("the server is busy; retry later"), true);
    }
    let outcome = llm.complete(&llm_request);
    waiting.fetch_sub(1, Ordering::SeqCst);
    match outcome {
        Ok(answer) => {
            let choice = if chat {
                json!({"index": 0, "message": {"role": "assistant", "content": answer.text}, "finish_reason": "stop"})
            } else {
                json!({"index": 0, "text": answer.text, "finish_reason": "stop"})
            };
            let (prompt, completion) = (
                answer.prompt_tokens.unwrap_or(0),
                answer.completion_tokens.unwrap_or(0),
            );
            let body = json!({
                "object": if chat { "chat.completion" } else { "text_completion" },
                "model": options.model,
                "choices": [choice],
                "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
            });
            (200, body.to_string(), false)
        }
        Err(LlmError::Failed(message)) => (400, error_body(&message), false),
        Err(LlmError::Fatal(message)) => (500, error_body(&message), false),
    }
}

/// The [`Request`] a chat or completions body asks for (OpenAI's defaults
/// where a field is missing).
fn parse_request(body: &Value, chat: bool) -> Result<Request, String> {
    let prompt = if chat {
        let messages = body["messages"]
            .as_array()
            .ok_or("messages must be an array")?;
        let user: Vec<&str> = messages
            .iter()
            .filter(|m| m["role"] == "user")
            .filter_map(|m| m["content"].as_str())
            .collect();
        if user.len() != 1 || messages.len() != 1 {
            return Err("exactly one user message is taken (the model's chat template, if any, is applied here)".into());
        }
        user[0].to_string()
    } else {
        body["prompt"]
            .as_str()
            .ok_or("prompt must be a string")?
            .to_string()
    };
    let number = |field: &str, default: f64| match &body[field] {
        Value::Null => Ok(default),
        v => v.as_f64().ok_or(format!("{field} must be a number")),
    };
    let stop = match &body["stop"] {
        Value::Null => Vec::new(),
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|s| {
                s.as_str()
                    .map(str::to_string)
                    .ok_or("stop must hold strings")
            })
            .collect::<Result<_, _>>()?,
        _ => return Err("stop must be a string or an array of strings".into()),
    };
    let max_tokens = number("max_tokens", 256.0)?;
    if !(1.0..=u32::MAX as f64).contains(&max_tokens) {
        return Err("max_tokens must be a positive integer".into());
    }
    let seed = match &body["seed"] {
        Value::Null => None,
        v => Some(v.as_u64().ok_or("seed must be a non-negative integer")?),
    };
    Ok(Request {
        prompt,
        sampling: Sampling {
            temperature: number("temperature", 1.0)? as f32,
            top_p: number("top_p", 1.0)? as f32,
            max_tokens: max_tokens as u32,
            seed,
            stop,
        },
        json: body["response_format"]["type"] == "json_object",
    })
}
