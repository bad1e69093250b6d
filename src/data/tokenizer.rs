//! Tokenization with the `tokenizers` crate from a model directory's
//! `tokenizer.json` (or, for BERT checkpoints that ship only `vocab.txt`, the
//! equivalent WordPiece pipeline). Padding and truncation baked into the file
//! are ignored: we truncate to our own `max_len` and pad in the batcher.

use std::path::{Path, PathBuf};

use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{EncodeInput, PostProcessor, Tokenizer, TruncationParams};

use crate::error::{Error, Result};

/// One tokenized sentence, special tokens included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids.
    pub ids: Vec<u32>,
    /// Segment (token type) ids, same length as `ids`.
    pub type_ids: Vec<u32>,
    /// Whether the sentence was cut to fit `max_len`.
    pub truncated: bool,
}

/// A tokenizer that truncates to `max_len` tokens and never pads.
pub struct SentenceTokenizer {
    inner: Tokenizer,
    source: PathBuf,
    max_len: usize,
}

impl SentenceTokenizer {
    /// The tokenizer of a model directory: `tokenizer.json` if present, else
    /// a BERT WordPiece tokenizer from `vocab.txt` (lower-casing unless
    /// `tokenizer_config.json` says `"do_lower_case": false`).
    pub fn from_model_dir(dir: &Path, max_len: usize) -> Result<Self> {
        let json = dir.join("tokenizer.json");
        let vocab = dir.join("vocab.txt");
        if json.is_file() {
            Self::from_file(&json, max_len)
        } else if vocab.is_file() {
            Self::from_vocab(&vocab, lower_case_setting(dir)?, max_len)
        } else {
            Err(Error::Tokenizer {
                path: dir.to_path_buf(),
                message: "neither tokenizer.json nor vocab.txt is in this model directory".into(),
            })
        }
    }

    /// Loads a `tokenizer.json`, switching off its own padding and truncation.
    pub fn from_file(path: &Path, max_len: usize) -> Result<Self> {
        let inner = Tokenizer::from_file(path).map_err(|e| Error::Tokenizer {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::configure(inner, path, max_len)
    }

    /// A BERT WordPiece tokenizer (`[CLS] ... [SEP]`) from a `vocab.txt`.
    pub fn from_vocab(path: &Path, lowercase: bool, max_len: usize) -> Result<Self> {
        let bad = |message: String| Error::Tokenizer {
            path: path.to_path_buf(),
            message,
        };
        let file = path
            .to_str()
            .ok_or_else(|| bad("path is not UTF-8".into()))?;
        let model = WordPiece::from_file(file)
            .build()
            .map_err(|e| bad(e.to_string()))?;
        let mut inner = Tokenizer::new(model);
        let id = |token: &str| {
            inner
                .token_to_id(token)
                .ok_or_else(|| bad(format!("the vocabulary has no {token} token")))
        };
        let processing = BertProcessing::new(
            ("[SEP]".into(), id("[SEP]")?),
            ("[CLS]".into(), id("[CLS]")?),
        );
        inner
            .with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase)))
            .with_pre_tokenizer(Some(BertPreTokenizer))
            .with_post_processor(Some(processing));
        Self::configure(inner, path, max_len)
    }

    fn configure(mut inner: Tokenizer, path: &Path, max_len: usize) -> Result<Self> {
        let special = inner
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(false));
        if max_len <= special {
            return Err(Error::Tokenizer {
                path: path.to_path_buf(),
                message: format!(
                    "a maximum length of {max_len} tokens leaves no room for a word: the tokenizer adds \
                     {special} special tokens to every sentence, so the length must be at least {}",
                    special + 1
                ),
            });
        }
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                ..Default::default()
            }))
            .map_err(|e| Error::Tokenizer {
                path: path.to_path_buf(),
                message: format!("cannot truncate to {max_len} tokens: {e}"),
            })?;
        Ok(Self {
            inner,
            source: path.to_path_buf(),
            max_len,
        })
    }

    /// The longest sequence produced, special tokens included.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The id of `token`, if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Tokenizes sentences with special tokens, in parallel.
    pub fn encode<S: AsRef<str>>(&self, sentences: &[S]) -> Result<Vec<Encoded>> {
        let inputs: Vec<EncodeInput> = sentences.iter().map(|s| s.as_ref().into()).collect();
        self.encode_inputs(inputs)
    }

    /// Tokenizes sentence pairs `(a[i], b[i])` as one sequence each, with the
    /// tokenizer's pair template (BERT: `[CLS] a [SEP] b [SEP]`, token types
    /// 0 then 1); a pair longer than `max_len` loses tokens from its longer
    /// side first, as Hugging Face's `truncation=True` does.
    pub fn encode_pairs<S: AsRef<str>>(&self, a: &[S], b: &[S]) -> Result<Vec<Encoded>> {
        let inputs: Vec<EncodeInput> = a
            .iter()
            .zip(b)
            .map(|(a, b)| (a.as_ref(), b.as_ref()).into())
            .collect();
        self.encode_inputs(inputs)
    }

    fn encode_inputs(&self, inputs: Vec<EncodeInput>) -> Result<Vec<Encoded>> {
        let encodings = self
            .inner
            .encode_batch(inputs, true)
            .map_err(|e| Error::Tokenizer {
                path: self.source.clone(),
                message: e.to_string(),
            })?;
        Ok(encodings
            .into_iter()
            .map(|e| Encoded {
                truncated: !e.get_overflowing().is_empty(),
                ids: e.get_ids().to_vec(),
                type_ids: e.get_type_ids().to_vec(),
            })
            .collect())
    }
}

/// `do_lower_case` of a model directory's `tokenizer_config.json` (default true).
fn lower_case_setting(dir: &Path) -> Result<bool> {
    let path = dir.join("tokenizer_config.json");
    if !path.is_file() {
        return Ok(true);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Config {
        path: path.clone(),
        message: e.to_string(),
    })?;
    match value.get("do_lower_case") {
        None => Ok(true),
        Some(v) => v.as_bool().ok_or_else(|| Error::Config {
            path,
            message: "field `do_lower_case` must be true or false".into(),
        }),
    }
}
