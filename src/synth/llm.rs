//! LLM backends behind one trait ([`Llm`]), and [`answer_all`], which puts
//! a list of requests through a backend, many in flight, keeping every
//! answer in the [`AnswerStore`] as it arrives: a request already answered
//! there is not sent again, and identical requests are sent once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use super::answers::{guided_request_key, request_key, Answer, AnswerStore, Sampling};
use super::shape::Shape;
use crate::error::{Error, Result};

/// One prompt to complete.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The whole prompt, templates already filled in.
    pub prompt: String,
    /// How to sample the answer.
    pub sampling: Sampling,
    /// The shape a JSON answer must have (none: free text). Backends that
    /// can hold the model to it do (structured output, a grammar).
    pub shape: Option<&'static Shape>,
    /// Classifier-free guidance against a second prompt (greedy decoding;
    /// only a backend that [`Llm::guides`] takes such a request).
    pub guidance: Option<Guidance>,
}

/// Classifier-free guidance of a request: each token is the argmax of
/// `lp_neg + scale (lp_pos - lp_neg)`, the log-softmaxes after the request's
/// prompt (positive) and after `negative`, both followed by the answer so
/// far.
#[derive(Debug, Clone, PartialEq)]
pub struct Guidance {
    /// The negative prompt, templates filled in.
    pub negative: String,
    /// The scale `g` (1: the positive prompt alone).
    pub scale: f32,
}

impl Request {
    /// The request's key in the answer store: a guided request's covers
    /// the negative prompt and the scale too.
    pub fn key(&self, model: &str) -> String {
        match &self.guidance {
            None => request_key(model, &self.prompt, &self.sampling),
            Some(g) => {
                guided_request_key(model, &self.prompt, &g.negative, g.scale, &self.sampling)
            }
        }
    }
}

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmError {
    /// This request failed (after the backend's retries); others may not.
    #[error("{0}")]
    Failed(String),
    /// No request can succeed (bad key, unknown model, no server reachable):
    /// the run stops.
    #[error("{0}")]
    Fatal(String),
}

/// A text generator.
pub trait Llm: Sync {
    /// The model's name; part of every request's key in the answer store.
    fn model(&self) -> &str;
    /// How many requests it serves at once to good effect.
    fn parallelism(&self) -> usize;
    /// Whether it takes guided requests ([`Request::guidance`]): it needs
    /// the logits of two prompts at every token, which the embedded engine
    /// has and an OpenAI-compatible server does not return.
    fn guides(&self) -> bool {
        false
    }
    /// Completes one request (blocking; called from several threads).
    fn complete(&self, request: &Request) -> std::result::Result<Answer, LlmError>;
}

/// What [`answer_all`] did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RunStats {
    /// Requests asked for.
    pub requests: usize,
    /// Of them, answered from the store (by an earlier run or an identical
    /// request of this one).
    pub from_store: usize,
    /// Requests sent to the backend.
    pub sent: usize,
    /// Sent requests that failed; they are sent again by the next run.
    pub failed: usize,
    /// The first few failures' reasons.
    pub failures: Vec<String>,
    /// Prompt tokens of the answers received, where the backend says.
    pub prompt_tokens: u64,
    /// Tokens generated in the answers received, where the backend says.
    pub completion_tokens: u64,
    /// Wall time, in seconds.
    pub seconds: f64,
    /// Answers received a second.
    pub requests_per_second: f64,
    /// Tokens generated a second.
    pub tokens_per_second: f64,
}

/// How many failure reasons [`RunStats`] keeps.
const FAILURES_KEPT: usize = 5;

impl RunStats {
    /// One line: counts, throughput and the first failure.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "{} requests: {} from the store, {} sent, {} failed; {:.2} requests/s, {:.1} tokens/s generated",
            self.requests,
            self.from_store,
            self.sent,
            self.failed,
            self.requests_per_second,
            self.tokens_per_second,
        );
        if let Some(first) = self.failures.first() {
            line.push_str(&format!("; first failure: {first}"));
        }
        line
    }
}

impl RunStats {
    /// Adds the counts and the time of a later run of requests (another
    /// step of the same job) to these, rates recomputed.
    pub fn add(&mut self, other: &RunStats) {
        self.requests += other.requests;
        self.from_store += other.from_store;
        self.sent += other.sent;
        self.failed += other.failed;
        let room = FAILURES_KEPT.saturating_sub(self.failures.len());
        self.failures
            .extend(other.failures.iter().take(room).cloned());
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.seconds += other.seconds;
        let rate = |n: f64| n / self.seconds.max(1e-9);
        self.requests_per_second = rate((self.sent - self.failed) as f64);
        self.tokens_per_second = rate(self.completion_tokens as f64);
    }

    /// An error when more than `max_fraction` of the requests failed (a
    /// step with every request failed always fails): the count, the first
    /// reasons, and that the answers received are kept for the next run.
    pub fn check_failures(&self, what: &str, max_fraction: f64) -> Result<()> {
        let too_many = self.failed as f64 > max_fraction * self.requests as f64;
        if self.failed == 0 || !(too_many || self.failed == self.requests) {
            return Ok(());
        }
        Err(Error::Backend(format!(
            "{what}: {} of {} requests failed (more than llm.max_failed_fraction = {max_fraction}), \
             so no output was written; the {} answers received are kept in answers.jsonl and a \
             rerun asks only for the rest. Failures: {}",
            self.failed,
            self.requests,
            self.requests - self.failed,
            self.failures.join("; ")
        )))
    }
}

/// Answers `requests` through `llm`, in order: `None` where a request
/// failed. Answers are stored as they arrive, so an interrupted run loses
/// none of those received. A [`LlmError::Fatal`] stops the run with an
/// error once the requests in flight are done (their answers are kept).
pub fn answer_all(
    llm: &dyn Llm,
    store: &mut AnswerStore,
    requests: &[Request],
    what: &str,
) -> Result<(Vec<Option<Answer>>, RunStats)> {
    let start = Instant::now();
    let model = llm.model();
    let keys: Vec<String> = requests.iter().map(|r| r.key(model)).collect();
    let mut first_of_key = HashMap::new();
    let todo: Vec<usize> = (0..requests.len())
        .filter(|&i| store.get(&keys[i]).is_none() && first_of_key.insert(&keys[i], i).is_none())
        .collect();
    let mut stats = RunStats {
        requests: requests.len(),
        from_store: requests.len() - todo.len(),
        ..RunStats::default()
    };
    let bar = crate::progress::requests(todo.len() as u64, what);
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let mut fatal = None;
    std::thread::scope(|scope| -> Result<()> {
        let (sender, receiver) = mpsc::channel();
        for _ in 0..llm.parallelism().clamp(1, todo.len().max(1)) {
            let sender = sender.clone();
            let (next, stop, todo) = (&next, &stop, &todo);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some(&index) = todo.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    let outcome = llm.complete(&requests[index]);
                    if matches!(outcome, Err(LlmError::Fatal(_))) {
                        stop.store(true, Ordering::Relaxed);
                    }
                    if sender.send((index, outcome)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(sender);
        for (index, outcome) in receiver {
            stats.sent += 1;
            match outcome {
                Ok(answer) => {
                    stats.prompt_tokens += u64::from(answer.prompt_tokens.unwrap_or(0));
                    stats.completion_tokens += u64::from(answer.completion_tokens.unwrap_or(0));
                    let stored =
                        store.insert(&keys[index], model, &requests[index].sampling, answer);
                    if let Err(e) = stored {
                        stop.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
                Err(LlmError::Failed(reason)) => {
                    stats.failed += 1;
                    if stats.failures.len() < FAILURES_KEPT {
                        stats.failures.push(reason);
                    }
                }
                Err(LlmError::Fatal(reason)) => {
                    stats.failed += 1;
                    stop.store(true, Ordering::Relaxed);
                    fatal.get_or_insert(reason);
                }
            }
            let seconds = start.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!(
                "{:.1} tokens/s",
                stats.completion_tokens as f64 / seconds
            ));
            bar.inc(1);
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    stats.seconds = start.elapsed().as_secs_f64();
    let rate = |n: f64| n / stats.seconds.max(1e-9);
    stats.requests_per_second = rate((stats.sent - stats.failed) as f64);
    stats.tokens_per_second = rate(stats.completion_tokens as f64);
    if let Some(reason) = fatal {
        return Err(Error::Backend(format!("{model}: {reason}")));
    }
    let answers = keys.iter().map(|k| store.get(k).cloned()).collect();
    Ok((answers, stats))
}
