//! A scripted OpenAI-compatible server on loopback for the HTTP backend's
//! tests: a closure picks each request's reply (status, body, headers,
//! delay), and the server records every request and the most it had in
//! flight at once. It speaks HTTP through `gcse synth serve`'s reader and
//! writer.

use std::io::BufReader;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gcse::synth::serve::{read_request, write_response, HttpRequest};
use serde_json::{json, Value};

/// What the server answers to one request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(String, String)>,
    /// Time to wait before answering.
    pub delay: Duration,
}

impl Reply {
    /// `status` with `body`, at once.
    pub fn new(status: u16, body: impl Into<String>) -> Self {
        Reply {
            status,
            body: body.into(),
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    /// A successful chat completion answering `text`, in OpenAI's shape.
    pub fn chat(text: &str) -> Self {
        Reply::new(200, chat_body(text))
    }

    /// The same reply after `delay`.
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// The same reply with one more header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A chat completion body in OpenAI's shape.
pub fn chat_body(text: &str) -> String {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "scripted",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}
    })
    .to_string()
}

/// One request as the server saw it, its body read as JSON (null if not).
#[derive(Debug, Clone)]
pub struct Received {
    pub request: HttpRequest,
    pub body: Value,
}

type Script = dyn Fn(usize, &Received) -> Reply + Send + Sync;

/// The server; it runs until the test process ends.
pub struct ScriptedServer {
    /// Base URL with `/v1`, as an endpoint in `[llm.http]`.
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
    max_in_flight: Arc<AtomicUsize>,
}

impl ScriptedServer {
    /// Starts a server that answers request `n` (0-based, in arrival
    /// order) with `script(n, &request)`.
    pub fn start(script: impl Fn(usize, &Received) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let script: Arc<Script> = Arc::new(script);
        {
            let (received, max_in_flight) = (received.clone(), max_in_flight.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    let shared = (
                        received.clone(),
                        in_flight.clone(),
                        max_in_flight.clone(),
                        script.clone(),
                    );
                    std::thread::spawn(move || serve(stream, shared));
                }
            });
        }
        ScriptedServer {
            url,
            received,
            max_in_flight,
        }
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Requests so far.
    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// The most requests the server was handling at once.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }
}

/// A loopback URL on which nothing listens.
pub fn closed_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/v1")
}

type Shared = (
    Arc<Mutex<Vec<Received>>>,
    Arc<AtomicUsize>,
    Arc<AtomicUsize>,
    Arc<Script>,
);

/// Serves requests on one (keep-alive) connection until the client leaves.
fn serve(stream: TcpStream, (received, in_flight, max_in_flight, script): Shared) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    while let Ok(Some(request)) = read_request(&mut reader) {
        let request = Received {
            body: serde_json::from_slice(&request.body).unwrap_or(Value::Null),
            request,
        };
        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        max_in_flight.fetch_max(now, Ordering::SeqCst);
        let index = {
            let mut all = received.lock().unwrap();
            all.push(request.clone());
            all.len() - 1
        };
        let reply = script(index, &request);
        std::thread::sleep(reply.delay);
        in_flight.fetch_sub(1, Ordering::SeqCst);
        let headers: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        if write_response(&mut writer, reply.status, &reply.body, &headers).is_err() {
            return;
        }
    }
}

/// The last line of `prompt` that starts with `label`, without the label.
fn last_line<'a>(prompt: &'a str, label: &str) -> &'a str {
    prompt
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or("")
        .trim()
}

/// A deterministic stand-in for an LLM: knowledge from capitalised words
/// (cities) and numbers; candidates tagged with the prompt's kind.
pub fn scripted_answer(prompt: &str) -> String {
    let tail = prompt.trim_end().rsplit('\n').next().unwrap_or("");
    if tail == "JSON:" {
        let sentence = last_line(prompt, "Sentence:");
        let words: Vec<&str> = sentence
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        let entities: Vec<_> = words
            .iter()
            .skip(1)
            .filter(|w| w.chars().next().unwrap().is_uppercase())
            .map(|w| json!({"text": w, "type": "place"}))
            .collect();
        let quantities: Vec<_> = words
            .iter()
            .filter(|w| w.parse::<u32>().is_ok())
            .map(|w| json!({"text": w, "type": "count", "quantity": w.parse::<u32>().unwrap()}))
            .collect();
        return json!({"categories": ["travel"], "entities": entities, "quantities": quantities})
            .to_string();
    }
    let kind = tail.trim_end_matches(':');
    let basis = match kind {
        "Sentence" => last_line(prompt, "Knowledge:").to_string(),
        "Revised" => format!(
            "{} / {}",
            last_line(prompt, "Swap:"),
            last_line(prompt, "Change:")
        ),
        _ => last_line(prompt, "Sentence:").to_string(),
    };
    let mut reversed: Vec<&str> = basis.split_whitespace().collect();
    reversed.reverse();
    json!({"text": format!("{kind}: {}", reversed.join(" "))}).to_string()
}

/// A completions server answering [`scripted_answer`] of each prompt after
/// `delay` (so that a kill finds a request in flight).
pub fn scripted_completions(delay: Duration) -> ScriptedServer {
    ScriptedServer::start(move |_, r| {
        let text = scripted_answer(r.body["prompt"].as_str().unwrap());
        Reply::new(
            200,
            json!({"choices": [{"text": text}], "usage": {"completion_tokens": 4}}).to_string(),
        )
        .after(delay)
    })
}

/// Sentences whose knowledge [`scripted_answer`] makes: cities and numbers.
pub const SCRIPTED_SOURCES: &[&str] = &[
    "Three friends walked from Paris to Lyon in 9 days.",
    "The museum in Paris opened 2 new rooms this spring.",
    "A train from Lyon to Geneva takes 2 hours.",
    "Students in Geneva planted 40 trees near the lake.",
    "The bakery in Lyon sells 300 loaves every morning.",
    "Fishermen from Marseille caught 12 tuna last week.",
    "A ferry links Marseille and Corsica twice a day.",
    "Tourists in Corsica hiked 5 trails in the mountains.",
];
