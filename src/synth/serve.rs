//! An OpenAI-compatible server over any [`Llm`] (`gcse synth serve`):
//! `POST /v1/chat/completions` and `POST /v1/completions` (not streamed) and
//! `GET /v1/models`, HTTP/1.1 with keep-alive, one thread a connection. One
//! loaded GGUF model can so serve several runs, or the HTTP backend be
//! tested against a real model on loopback.
//!
//! Error bodies have OpenAI's shape: a request for another model gets 404,
//! a malformed body, `stream: true` or a prompt the model cannot take 400,
//! a request beyond `max_queue` waiting 503 with `Retry-After`, and a
//! backend failure 500. What a client can make the server hold is bounded:
//! the request line and headers ([`MAX_HEAD`], else 431), the body
//! ([`MAX_BODY`], else 413), connections (`max_connections`, else 503 and
//! the connection closed) and the time a connection may sit silent or take
//! to send a request (`read_timeout`, then 408 or, between requests, a
//! quiet close). An answer cut at `max_tokens` says `finish_reason:
//! "length"`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{json, Value};

use super::answers::Sampling;
use super::llm::{Llm, LlmError, Request};
use super::shape;

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
pub const MAX_BODY: usize = 4 << 20;

/// The most bytes of request line and headers read.
pub const MAX_HEAD: usize = 64 << 10;

/// Why a request could not be read: the status to answer with (none: close
/// without a word) and the message.
#[derive(Debug)]
pub struct ReadError {
    /// 400, 408, 413 or 431; `None` when the connection is simply done.
    pub status: Option<u16>,
    /// What was wrong.
    pub message: String,
}

impl ReadError {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status: Some(status),
            message: message.into(),
        }
    }

    /// An I/O error while reading: a timeout is 408, anything else ends
    /// the connection.
    fn io(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                Self::new(408, "the request did not arrive in time")
            }
            _ => Self {
                status: None,
                message: e.to_string(),
            },
        }
    }
}

/// Reads one line of the head, counting it against `left`.
fn head_line(
    reader: &mut impl BufRead,
    line: &mut String,
    left: &mut usize,
) -> Result<usize, ReadError> {
    line.clear();
    let n = reader
        .by_ref()
        .take(*left as u64)
        .read_line(line)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => ReadError::new(400, "the head is not UTF-8"),
            _ => ReadError::io(e),
        })?;
    *left -= n;
    if *left == 0 && !line.ends_with('\n') {
        return Err(ReadError::new(
            431,
            "the request line and headers are too large",
        ));
    }
    Ok(n)
}

/// Reads one request off a connection: `Ok(None)` when the client closed
/// it or sat silent past the read timeout between requests, an error when
/// what came was not HTTP/1.1 with a `content-length` body (chunked bodies
/// are not taken) or broke a bound.
pub fn read_request(reader: &mut impl BufRead) -> Result<Option<HttpRequest>, ReadError> {
    let bad = |what: &str| ReadError::new(400, what);
    let mut left = MAX_HEAD;
    let mut line = String::new();
    match head_line(reader, &mut line, &mut left) {
        Ok(0) => return Ok(None),
        Ok(_) => {}
        Err(ReadError {
            status: Some(408), ..
        }) => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut words = line.split_whitespace();
    let (Some(method), Some(path)) = (words.next(), words.next()) else {
        return Err(bad("not an HTTP request line"));
    };
    let (method, path) = (method.to_string(), path.to_string());
    let mut headers = Vec::new();
    loop {
        if head_line(reader, &mut line, &mut left)? == 0 {
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
        return Err(ReadError::new(413, "the body is too large"));
    }
    request.body = vec![0; length];
    reader
        .read_exact(&mut request.body)
        .map_err(ReadError::io)?;
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
        408 => "Request Timeout",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
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
    /// Connections open at once beyond which a new one gets 503 and is
    /// closed.
    pub max_connections: usize,
    /// How long a connection may be silent, or take to send a request.
    pub read_timeout: Duration,
}

/// Serves `llm` on `listener` until the process ends.
pub fn serve(listener: TcpListener, llm: &(dyn Llm + Sync), options: &ServeOptions) {
    let waiting = AtomicUsize::new(0);
    let open = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(options.read_timeout));
            let _ = stream.set_write_timeout(Some(options.read_timeout));
            if open.fetch_add(1, Ordering::SeqCst) >= options.max_connections {
                open.fetch_sub(1, Ordering::SeqCst);
                scope.spawn(move || {
                    let _ = write_response(
                        &mut stream,
                        503,
                        &error_body("too many connections; retry later"),
                        &[("retry-after", "1"), ("connection", "close")],
                    );
                    close_after_reply(stream);
                });
                continue;
            }
            let (waiting, open) = (&waiting, &open);
            scope.spawn(move || {
                connection(stream, llm, options, waiting);
                open.fetch_sub(1, Ordering::SeqCst);
            });
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
            Ok(None) | Err(ReadError { status: None, .. }) => return,
            Err(ReadError {
                status: Some(status),
                message,
            }) => {
                let _ = write_response(
                    &mut writer,
                    status,
                    &error_body(&message),
                    &[("connection", "close")],
                );
                close_after_reply(writer);
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

/// Closes a connection the server stopped reading: its side is shut, then
/// what the client still sends is read and dropped for a moment, so that
/// the close does not reset the connection before the reply is read.
fn close_after_reply(mut stream: TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut sink = [0u8; 8192];
    let mut left = MAX_BODY;
    while left > 0 {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
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
    if body["stream"].as_bool() == Some(true) {
        return (
            400,
            error_body("streaming is not supported by this server; send \"stream\": false"),
            false,
        );
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
            let cut = answer
                .completion_tokens
                .is_some_and(|n| n >= llm_request.sampling.max_tokens);
            let finish = if cut { "length" } else { "stop" };
            let choice = if chat {
                json!({"index": 0, "message": {"role": "assistant", "content": answer.text}, "finish_reason": finish})
            } else {
                json!({"index": 0, "text": answer.text, "finish_reason": finish})
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
    let max_tokens = match &body["max_tokens"] {
        Value::Null => number("max_completion_tokens", 256.0)?,
        _ => number("max_tokens", 256.0)?,
    };
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
        shape: (body["response_format"]["type"] == "json_object").then(shape::any_object),
        guidance: None,
    })
}
