//! The embedded GGUF engine (llama.cpp through `llama-cpp-2`, cargo feature
//! `llama`): one model in this process, one request at a time on all CPU
//! threads (or offloaded to a GPU llama.cpp was built for). The prompt goes
//! through the model's chat template when it has one and the config asks
//! for it, else as a plain completion prompt.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;
use serde::{Deserialize, Serialize};

use super::answers::Answer;
use super::llm::{Llm, LlmError, Request};
use crate::error::{Error, Result};

/// How prompts reach the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PromptFormat {
    /// The chat template when the model has one, else plain.
    #[default]
    Auto,
    /// The model's chat template (an error if it has none).
    Chat,
    /// The prompt as it is, which suits base models and few-shot prompts.
    Plain,
}

/// `[llm.local]` of a synthesis config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    /// The GGUF file.
    pub model: PathBuf,
    /// Context length in tokens (prompt and answer).
    #[serde(default = "default_context")]
    pub context: u32,
    /// CPU threads; 0 for all.
    #[serde(default)]
    pub threads: usize,
    /// Layers offloaded to a GPU (when llama.cpp was built with one).
    #[serde(default)]
    pub gpu_layers: u32,
    /// Chat template or plain prompts.
    #[serde(default)]
    pub prompt_format: PromptFormat,
    /// Hold answers that must be JSON to their shape with a grammar, so
    /// the model can write nothing else (see [`crate::synth::shape`]).
    #[serde(default = "default_true")]
    pub grammar: bool,
}

fn default_true() -> bool {
    true
}

fn default_context() -> u32 {
    2048
}

/// llama.cpp's process-wide state: initialised once, never freed.
fn backend() -> Result<&'static LlamaBackend> {
    static BACKEND: OnceLock<std::result::Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            let mut backend = LlamaBackend::init().map_err(|e| e.to_string())?;
            backend.void_logs();
            Ok(backend)
        })
        .as_ref()
        .map_err(|e| Error::Backend(format!("llama.cpp: {e}")))
}

/// A GGUF model loaded in this process.
pub struct LocalLlm {
    model: LlamaModel,
    name: String,
    template: Option<LlamaChatTemplate>,
    context: u32,
    threads: i32,
    /// One request at a time: each makes its own context, and two at once
    /// would only share the same cores.
    busy: Mutex<()>,
    /// Whether JSON answers are held to their shape by a grammar.
    grammar: bool,
}

impl LocalLlm {
    /// Loads `config.model`.
    pub fn new(config: &LocalConfig) -> Result<Self> {
        let path = &config.model;
        if !path.is_file() {
            return Err(Error::Load {
                path: path.clone(),
                message: "no such GGUF file (scripts/fetch-llm.sh fetches Gemma 3 270M)".into(),
            });
        }
        let backend = backend()?;
        let params = LlamaModelParams::default().with_n_gpu_layers(config.gpu_layers);
        let model =
            LlamaModel::load_from_file(backend, path, &params).map_err(|e| Error::Load {
                path: path.clone(),
                message: format!("llama.cpp could not load it: {e}"),
            })?;
        let template = model.chat_template(None).ok();
        let template = match (config.prompt_format, template) {
            (PromptFormat::Plain, _) => None,
            (PromptFormat::Chat, None) => {
                return Err(Error::Load {
                    path: path.clone(),
                    message: "prompt_format = \"chat\", but the model has no chat template".into(),
                })
            }
            (_, template) => template,
        };
        let threads = match config.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        Ok(LocalLlm {
            model,
            name: model_name(path),
            template,
            context: config.context.max(16),
            threads: threads as i32,
            busy: Mutex::new(()),
            grammar: config.grammar,
        })
    }

    /// Whether prompts go through the model's chat template.
    pub fn uses_chat_template(&self) -> bool {
        self.template.is_some()
    }

    fn prompt_text(&self, prompt: &str) -> std::result::Result<String, LlmError> {
        let Some(template) = &self.template else {
            return Ok(prompt.to_string());
        };
        let message = LlamaChatMessage::new("user".into(), prompt.into())
            .map_err(|e| LlmError::Failed(format!("the prompt cannot be a chat message: {e}")))?;
        self.model
            .apply_chat_template(template, &[message], true)
            .map_err(|e| LlmError::Fatal(format!("the model's chat template failed: {e}")))
    }
}

/// The model's name in request keys: its file name.
fn model_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// A prompt decoded into a context of its own, ready to generate.
struct Decoding<'m> {
    context: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    /// Where the next token goes.
    position: i32,
}

impl Decoding<'_> {
    /// The logits of the next token, over the vocabulary.
    fn logits(&self) -> &[f32] {
        self.context.get_logits_ith(self.batch.n_tokens() - 1)
    }

    /// Appends `token` and decodes it.
    fn push(&mut self, token: LlamaToken) -> std::result::Result<(), LlmError> {
        self.batch.clear();
        self.batch
            .add(token, self.position, &[0], true)
            .map_err(|e| fatal("batch", &e))?;
        self.position += 1;
        self.context
            .decode(&mut self.batch)
            .map_err(|e| fatal("decode", &e))
    }
}

fn fatal(what: &str, e: &dyn std::fmt::Display) -> LlmError {
    LlmError::Fatal(format!("llama.cpp {what}: {e}"))
}

/// One token of guided decoding, as [`LocalLlm::complete_traced`] shows
/// it.
pub struct GuidedStep<'a> {
    /// The logits after the positive prompt and the answer so far.
    pub positive: &'a [f32],
    /// The logits after the negative prompt and the same answer.
    pub negative: &'a [f32],
    /// The token taken.
    pub token: i32,
}

/// Classifier-free guidance's scores of the next token: `lp_neg + scale
/// (lp_pos - lp_neg)`, where `lp` is the log-softmax of each prompt's
/// logits; in f64. At `scale = 1` they are the positive prompt's.
pub fn guided_scores(positive: &[f32], negative: &[f32], scale: f64) -> Vec<f64> {
    let (p, n) = (log_softmax(positive), log_softmax(negative));
    p.iter()
        .zip(&n)
        .map(|(&p, &n)| n + scale * (p - n))
        .collect()
}

/// The log-softmax of `logits`, in f64.
pub fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &x| m.max(f64::from(x)));
    let sum: f64 = logits.iter().map(|&x| (f64::from(x) - max).exp()).sum();
    let log_sum = max + sum.ln();
    logits.iter().map(|&x| f64::from(x) - log_sum).collect()
}

/// The index of the largest of `scores`, the first of equals (greedy
/// decoding's choice).
pub fn argmax(scores: &[f64]) -> usize {
    scores
        .iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |(b, best), (i, &s)| {
            if s > best {
                (i, s)
            } else {
                (b, best)
            }
        })
        .0
}

impl LocalLlm {
    /// Tokenizes `prompt` (through the chat template when there is one)
    /// and decodes it into a new context sized for `max_tokens` more.
    fn decode_prompt(
        &self,
        backend: &LlamaBackend,
        prompt: &str,
        max_tokens: u32,
    ) -> std::result::Result<(Decoding<'_>, usize), LlmError> {
        let text = self.prompt_text(prompt)?;
        let tokens = self
            .model
            .vocab()
            .tokenize(text.as_bytes(), true, self.template.is_some());
        let wanted = tokens.len() + max_tokens as usize;
        if tokens.is_empty() || wanted > self.context as usize {
            return Err(LlmError::Failed(format!(
                "the prompt's {} tokens and max_tokens {max_tokens} do not fit the context of {}",
                tokens.len(),
                self.context
            )));
        }
        let n_batch = 512.min(self.context);
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(self.context))
            .with_n_batch(n_batch)
            .with_n_threads(self.threads)
            .with_n_threads_batch(self.threads);
        let mut context = self
            .model
            .new_context(backend, params)
            .map_err(|e| fatal("context", &e))?;
        let mut batch = LlamaBatch::new(n_batch as usize, 1);
        let last = tokens.len() - 1;
        for (start, chunk) in tokens.chunks(n_batch as usize).enumerate() {
            batch.clear();
            for (j, &token) in chunk.iter().enumerate() {
                let position = start * n_batch as usize + j;
                batch
                    .add(token, position as i32, &[0], position == last)
                    .map_err(|e| fatal("batch", &e))?;
            }
            context
                .decode(&mut batch)
                .map_err(|e| fatal("decode", &e))?;
        }
        let decoding = Decoding {
            context,
            batch,
            position: tokens.len() as i32,
        };
        Ok((decoding, tokens.len()))
    }

    /// [`Llm::complete`], showing each token of a guided request to
    /// `trace` with the two logit vectors it was chosen from.
    pub fn complete_traced(
        &self,
        request: &Request,
        trace: &mut dyn FnMut(GuidedStep<'_>),
    ) -> std::result::Result<Answer, LlmError> {
        let _one_at_a_time = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let backend = backend().map_err(|e| LlmError::Fatal(e.to_string()))?;
        let s = &request.sampling;
        let (mut main, prompt_tokens) =
            self.decode_prompt(backend, &request.prompt, s.max_tokens)?;
        let mut negative = match &request.guidance {
            Some(guidance) => {
                if s.temperature > 0.0 {
                    return Err(LlmError::Failed(
                        "guided decoding is greedy: the request's temperature must be 0".into(),
                    ));
                }
                let (decoding, _) =
                    self.decode_prompt(backend, &guidance.negative, s.max_tokens)?;
                Some((decoding, f64::from(guidance.scale)))
            }
            None => None,
        };
        let mut grammar = match request.shape.filter(|_| self.grammar) {
            Some(shape) => Some(
                LlamaSampler::grammar(&self.model, &shape.gbnf(), "root")
                    .map_err(|e| LlmError::Fatal(format!("llama.cpp grammar: {e:?}")))?,
            ),
            None => None,
        };
        let mut sampler = if s.temperature <= 0.0 {
            LlamaSampler::greedy()
        } else {
            LlamaSampler::chain_simple([
                LlamaSampler::top_p(s.top_p, 1),
                LlamaSampler::temp(s.temperature),
                LlamaSampler::dist(s.seed.unwrap_or(0) as u32),
            ])
        };
        let vocab = self.model.vocab();
        let mut bytes = Vec::new();
        let mut generated = 0u32;
        while generated < s.max_tokens {
            let token = match &negative {
                None => {
                    let at = main.batch.n_tokens() - 1;
                    let token = sampler.sample(&main.context, at);
                    match grammar.as_mut() {
                        Some(grammar) => {
                            match held_to(grammar, &mut sampler, &main.context, at, token) {
                                Some(allowed) => allowed,
                                None => break,
                            }
                        }
                        None => token,
                    }
                }
                Some((guide, scale)) => {
                    let scores = guided_scores(main.logits(), guide.logits(), *scale);
                    let token = match grammar.as_mut() {
                        Some(grammar) => match best_allowed(grammar, &scores) {
                            Some(token) => token,
                            None => break,
                        },
                        None => LlamaToken::new(argmax(&scores) as i32),
                    };
                    trace(GuidedStep {
                        positive: main.logits(),
                        negative: guide.logits(),
                        token: token.0,
                    });
                    token
                }
            };
            if vocab.is_eog(token) {
                break;
            }
            generated += 1;
            bytes.extend(vocab.token_to_piece(token, false, None));
            if let Some(cut) = first_stop(&bytes, &s.stop) {
                bytes.truncate(cut);
                break;
            }
            main.push(token)?;
            if let Some((guide, _)) = negative.as_mut() {
                guide.push(token)?;
            }
        }
        Ok(Answer {
            text: String::from_utf8_lossy(&bytes).into_owned(),
            prompt_tokens: Some(prompt_tokens as u32),
            completion_tokens: Some(generated),
        })
    }
}

impl Llm for LocalLlm {
    fn model(&self) -> &str {
        &self.name
    }

    fn parallelism(&self) -> usize {
        1
    }

    fn guides(&self) -> bool {
        true
    }

    fn complete(&self, request: &Request) -> std::result::Result<Answer, LlmError> {
        self.complete_traced(request, &mut |_| {})
    }
}

/// The best of `scores` that `grammar` allows, accepted by it (none when
/// it allows none). The best one alone is checked first, as
/// [`held_to`] does.
fn best_allowed(grammar: &mut LlamaSampler, scores: &[f64]) -> Option<LlamaToken> {
    let allowed = |data: &LlamaTokenData| data.logit().is_finite();
    let best = LlamaToken::new(argmax(scores) as i32);
    let mut one = LlamaTokenDataArray::new(vec![LlamaTokenData::new(best, 1.0, 0.0)], false);
    grammar.apply(&mut one);
    let token = if allowed(&one.data[0]) {
        best
    } else {
        let mut all = LlamaTokenDataArray::new(
            scores
                .iter()
                .enumerate()
                .map(|(i, &s)| LlamaTokenData::new(LlamaToken::new(i as i32), s as f32, 0.0))
                .collect(),
            false,
        );
        grammar.apply(&mut all);
        let finite: Vec<f64> = all
            .data
            .iter()
            .map(|d| {
                if allowed(d) {
                    f64::from(d.logit())
                } else {
                    f64::NEG_INFINITY
                }
            })
            .collect();
        if !all.data.iter().any(allowed) {
            return None;
        }
        all.data[argmax(&finite)].id()
    };
    grammar.accept(token);
    Some(token)
}

/// `token`, sampled freely at position `at`, if `grammar` allows it; else
/// a token sampled again from the candidates the grammar allows (none when
/// it allows none). Checking the one token first is what llama.cpp's own
/// sampler does: applying a grammar to every token of a 262k vocabulary at
/// each step is several times slower than the model. The token taken is
/// accepted by `grammar`.
fn held_to(
    grammar: &mut LlamaSampler,
    sampler: &mut LlamaSampler,
    context: &llama_cpp_2::context::LlamaContext<'_>,
    at: i32,
    token: LlamaToken,
) -> Option<LlamaToken> {
    let allowed = |data: &LlamaTokenData| data.logit().is_finite();
    let mut one = LlamaTokenDataArray::new(vec![LlamaTokenData::new(token, 1.0, 0.0)], false);
    grammar.apply(&mut one);
    let token = if allowed(&one.data[0]) {
        token
    } else {
        let mut all = context.token_data_array_ith(at);
        grammar.apply(&mut all);
        if !all.data.iter().any(allowed) {
            return None;
        }
        sampler.apply(&mut all);
        let picked = all.selected_token()?;
        all.data
            .iter()
            .find(|d| d.id() == picked)
            .filter(|d| allowed(d))?;
        picked
    };
    grammar.accept(token);
    Some(token)
}

/// Where the first of `stops` begins in `bytes`.
fn first_stop(bytes: &[u8], stops: &[String]) -> Option<usize> {
    stops
        .iter()
        .filter(|stop| !stop.is_empty())
        .filter_map(|stop| bytes.windows(stop.len()).position(|w| w == stop.as_bytes()))
        .min()
}
