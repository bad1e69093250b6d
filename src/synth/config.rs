//! The synthesis config (`configs/synth-*.toml`): source sentences, the LLM,
//! prompt files, and the sampling policy of generation. Unknown keys are
//! errors; every key but the sources and the LLM has a default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::chains::ChainsConfig;
use super::http::HttpConfig;
#[cfg(feature = "llama")]
use super::llm::Llm;
use super::neighbours::NeighbourConfig;
use super::prompt::{PromptKind, PromptTemplate};
use crate::check;
use crate::data::corpus::SourceSpec;
use crate::error::{Error, Result};
use crate::triplets::Origin;

/// A whole synthesis config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynthConfig {
    /// Where answers, knowledge, graph and candidates go.
    pub out_dir: PathBuf,
    /// Seeds the choice of prompt kinds and the LLM's sampling.
    #[serde(default = "default_seed")]
    pub seed: u64,
    pub sources: SourcesConfig,
    pub llm: LlmConfig,
    #[serde(default)]
    pub prompts: PromptsConfig,
    #[serde(default)]
    pub extract: ExtractConfig,
    #[serde(default)]
    pub generate: GenerateConfig,
    /// Rewrite chains (`gcse synth chains`).
    #[serde(default)]
    pub chains: ChainsConfig,
}

fn default_seed() -> u64 {
    17
}

/// `[sources]`: the sentences to synthesise for, domain and general data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcesConfig {
    #[serde(default)]
    pub domain: Vec<SourceSpec>,
    #[serde(default)]
    pub general: Vec<SourceSpec>,
    /// At most this many sentences of each origin (domain, general), taken
    /// in file order (0: all).
    #[serde(default)]
    pub limit: usize,
    /// Sentences with fewer words are left out.
    #[serde(default = "default_min_words")]
    pub min_words: usize,
    /// Sentences with more words are left out.
    #[serde(default = "default_max_words")]
    pub max_words: usize,
}

fn default_min_words() -> usize {
    4
}
fn default_max_words() -> usize {
    60
}

/// `[llm]`: which backend answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    /// `"http"` or `"local"`; the section of that name configures it.
    pub backend: LlmBackend,
    #[serde(default)]
    pub http: Option<HttpConfig>,
    #[cfg(feature = "llama")]
    #[serde(default)]
    pub local: Option<super::local::LocalConfig>,
    #[cfg(not(feature = "llama"))]
    #[serde(default)]
    pub local: Option<toml::Value>,
    /// A step whose failed requests (after the backend's retries) exceed
    /// this fraction of its requests stops with an error and writes no
    /// output (the answers received are kept); 0 tolerates no failure.
    /// Default 0.2.
    #[serde(default = "default_max_failed_fraction")]
    pub max_failed_fraction: f64,
}

fn default_max_failed_fraction() -> f64 {
    0.2
}

/// The LLM backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LlmBackend {
    /// An OpenAI-compatible server pool (`[llm.http]`).
    Http,
    /// The embedded GGUF engine (`[llm.local]`; `llama` build feature).
    Local,
}

/// `[prompts]`: the template files (keys other than `dir` must name a
/// prompt kind; checked after parsing).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PromptsConfig {
    /// Folder of `<kind>.txt` files [default: the repository's `prompts/`].
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// One file for a kind, e.g. `rewrite = "my-rewrite.txt"`.
    #[serde(flatten)]
    pub files: BTreeMap<String, PathBuf>,
}

/// `[extract]`: knowledge extraction's sampling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractConfig {
    #[serde(default)]
    pub temperature: f32,
    #[serde(default = "default_top_p")]
    pub top_p: f32,
    #[serde(default = "default_extract_tokens")]
    pub max_tokens: u32,
}

impl Default for ExtractConfig {
    fn default() -> Self {
        toml::from_str("").expect("every [extract] key has a default")
    }
}

fn default_top_p() -> f32 {
    0.95
}
fn default_extract_tokens() -> u32 {
    256
}

/// `[generate]`: candidates per source and how their kinds are drawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateConfig {
    /// Positive candidates per source.
    #[serde(default = "default_count")]
    pub positives: usize,
    /// Negative candidates per source.
    #[serde(default = "default_count")]
    pub negatives: usize,
    #[serde(default = "default_temperature")]
    pub temperature: f32,
    #[serde(default = "default_top_p")]
    pub top_p: f32,
    #[serde(default = "default_generate_tokens")]
    pub max_tokens: u32,
    /// Weights of the positive kinds: rewrite, preceding, regenerate
    /// (the authors' code: 70% style rewrites, 30% knowledge-guided).
    #[serde(default = "default_positive_kinds")]
    pub positive_kinds: BTreeMap<String, f64>,
    /// Weights of the negative kinds: antisense, entity_revision,
    /// quantity_revision (the authors' code: 70 / 15 / 15).
    #[serde(default = "default_negative_kinds")]
    pub negative_kinds: BTreeMap<String, f64>,
    /// Where entity revisions find replacements.
    #[serde(default)]
    pub neighbours: NeighbourConfig,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        toml::from_str("").expect("every [generate] key has a default")
    }
}

fn default_count() -> usize {
    2
}
fn default_temperature() -> f32 {
    0.8
}
fn default_generate_tokens() -> u32 {
    96
}
fn default_positive_kinds() -> BTreeMap<String, f64> {
    [("rewrite", 0.5), ("preceding", 0.2), ("regenerate", 0.3)]
        .into_iter()
        .map(|(k, w)| (k.to_string(), w))
        .collect()
}
fn default_negative_kinds() -> BTreeMap<String, f64> {
    [
        ("antisense", 0.7),
        ("entity_revision", 0.15),
        ("quantity_revision", 0.15),
    ]
    .into_iter()
    .map(|(k, w)| (k.to_string(), w))
    .collect()
}

/// The positive and the negative prompt kinds, by name.
const POSITIVE: [PromptKind; 3] = [
    PromptKind::Rewrite,
    PromptKind::Preceding,
    PromptKind::Regenerate,
];
const NEGATIVE: [PromptKind; 3] = [
    PromptKind::Antisense,
    PromptKind::EntityRevision,
    PromptKind::QuantityRevision,
];

impl SynthConfig {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Parses and checks a synthesis file's text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let config: SynthConfig = toml::from_str(text).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        config.validate().map_err(|message| Error::Config {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(config)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if self.sources.domain.is_empty() && self.sources.general.is_empty() {
            return Err(
                "[sources] needs at least one [[sources.domain]] or [[sources.general]] file"
                    .into(),
            );
        }
        match (self.llm.backend, &self.llm.http) {
            (LlmBackend::Http, None) => {
                return Err("llm.backend = \"http\" needs an [llm.http] section".into())
            }
            (_, Some(http)) => http.validate()?,
            _ => {}
        }
        check::within(
            "llm.max_failed_fraction",
            self.llm.max_failed_fraction,
            0.0,
            1.0,
        )?;
        match self.llm.backend {
            LlmBackend::Local if self.llm.local.is_none() => {
                return Err("llm.backend = \"local\" needs an [llm.local] section".into())
            }
            _ => {}
        }
        for name in self.prompts.files.keys() {
            if kind_named(name).is_none() {
                return Err(format!("[prompts] {name}: no such prompt kind"));
            }
        }
        self.generate.positive_weights()?;
        self.generate.negative_weights()?;
        for (section, temperature, top_p, max_tokens) in [
            (
                "extract",
                self.extract.temperature,
                self.extract.top_p,
                self.extract.max_tokens,
            ),
            (
                "generate",
                self.generate.temperature,
                self.generate.top_p,
                self.generate.max_tokens,
            ),
        ] {
            check::within(
                &format!("{section}.temperature"),
                temperature.into(),
                0.0,
                MAX_TEMPERATURE,
            )?;
            check::above_up_to(&format!("{section}.top_p"), top_p.into(), 0.0, 1.0)?;
            if max_tokens == 0 {
                return Err(format!("`{section}.max_tokens` must be at least 1"));
            }
        }
        if self.generate.positives + self.generate.negatives == 0 {
            return Err(
                "`generate.positives` and `generate.negatives` are both 0: nothing to generate"
                    .into(),
            );
        }
        self.chains.validate()?;
        let s = &self.sources;
        if s.min_words > s.max_words {
            return Err(format!(
                "`sources.min_words` ({}) is above `sources.max_words` ({}): no sentence fits",
                s.min_words, s.max_words
            ));
        }
        Ok(())
    }

    /// The template of `kind`: its own file if `[prompts]` names one, else
    /// `<dir>/<kind>.txt`.
    pub fn template(&self, kind: PromptKind) -> Result<PromptTemplate> {
        let path = match self.prompts.files.get(kind.name()) {
            Some(path) => path.clone(),
            None => self
                .prompts
                .dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("prompts"))
                .join(format!("{}.txt", kind.name())),
        };
        PromptTemplate::load_kind(&path, kind)
    }

    /// The source sentences with their origin, domain first, filtered by
    /// length and cut at `limit` per origin; duplicates are kept once.
    pub fn source_sentences(&self) -> Result<Vec<(String, Origin)>> {
        let s = &self.sources;
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for (files, origin) in [(&s.domain, Origin::Domain), (&s.general, Origin::General)] {
            let mut taken = 0;
            'files: for file in files {
                for sentence in file.read()?.sentences {
                    let words = sentence.split_whitespace().count();
                    if (s.min_words..=s.max_words).contains(&words) && seen.insert(sentence.clone())
                    {
                        out.push((sentence, origin));
                        taken += 1;
                        if taken == s.limit {
                            break 'files;
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// The configured LLM.
    pub fn llm(&self) -> Result<Box<dyn super::llm::Llm>> {
        match self.llm.backend {
            LlmBackend::Http => {
                let config = self.llm.http.clone().expect("validated");
                Ok(Box::new(super::http::HttpLlm::new(config)?))
            }
            #[cfg(feature = "llama")]
            LlmBackend::Local => {
                let config = self.llm.local.as_ref().expect("validated");
                let llm = super::local::LocalLlm::new(config)?;
                eprintln!(
                    "llm: {} (embedded, {} prompts)",
                    llm.model(),
                    if llm.uses_chat_template() {
                        "chat-template"
                    } else {
                        "plain"
                    }
                );
                Ok(Box::new(llm))
            }
            #[cfg(not(feature = "llama"))]
            LlmBackend::Local => Err(Error::Backend(
                "llm.backend = \"local\" needs gcse built with --features llama".into(),
            )),
        }
    }
}

impl GenerateConfig {
    /// `(kind, weight)` of the positive kinds with weight > 0.
    pub fn positive_weights(&self) -> std::result::Result<Vec<(PromptKind, f64)>, String> {
        weights(&self.positive_kinds, &POSITIVE, "generate.positive_kinds")
    }

    /// `(kind, weight)` of the negative kinds with weight > 0.
    pub fn negative_weights(&self) -> std::result::Result<Vec<(PromptKind, f64)>, String> {
        weights(&self.negative_kinds, &NEGATIVE, "generate.negative_kinds")
    }
}

/// The highest sampling temperature accepted.
const MAX_TEMPERATURE: f64 = 100.0;

fn kind_named(name: &str) -> Option<PromptKind> {
    PromptKind::ALL.into_iter().find(|k| k.name() == name)
}

fn weights(
    table: &BTreeMap<String, f64>,
    allowed: &[PromptKind],
    key: &str,
) -> std::result::Result<Vec<(PromptKind, f64)>, String> {
    let mut out = Vec::new();
    for (name, &weight) in table {
        let kind = kind_named(name)
            .filter(|k| allowed.contains(k))
            .ok_or_else(|| {
                let names: Vec<&str> = allowed.iter().map(|k| k.name()).collect();
                format!("{key}.{name}: not one of {}", names.join(", "))
            })?;
        check::non_negative(&format!("{key}.{name}"), weight)?;
        if weight > 0.0 {
            out.push((kind, weight));
        }
    }
    if out.is_empty() {
        return Err(format!("{key}: no kind has a weight above 0"));
    }
    if !out.iter().map(|(_, w)| w).sum::<f64>().is_finite() {
        return Err(format!("`{key}`: the weights' sum is not a finite number"));
    }
    Ok(out)
}
