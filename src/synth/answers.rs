//! The store of LLM answers that makes synthesis resumable: every answer is
//! appended to a JSONL file (and synced) as it arrives, keyed by the
//! request (backend model, prompt text, sampling parameters), so a killed
//! run loses no answer and a resumed one repeats no request.
//!
//! A last line without its line end (a write cut short by a crash) is cut
//! off the file when it is opened, and counted; a complete line that is not
//! a record is an error naming the line, since then the file is not ours.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fingerprint::Fingerprint;

/// Sampling parameters of a request; part of its key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// Softmax temperature.
    pub temperature: f32,
    /// Nucleus sampling mass.
    pub top_p: f32,
    /// Longest answer, in tokens.
    pub max_tokens: u32,
    /// Sampling seed, where the backend takes one.
    pub seed: Option<u64>,
    /// Strings that end the answer where they first appear (not included).
    #[serde(default)]
    pub stop: Vec<String>,
}

/// One request's key: 32 hex digits of FNV-1a (128 bits) over the model
/// name, the prompt and the sampling parameters (stop strings included),
/// each field delimited.
pub fn request_key(model: &str, prompt: &str, sampling: &Sampling) -> String {
    key_of(model, prompt, sampling).hex()
}

fn key_of(model: &str, prompt: &str, sampling: &Sampling) -> Fingerprint {
    let seed = sampling.seed.map_or("none".to_string(), |s| s.to_string());
    let mut key = Fingerprint::new();
    key.field(model.as_bytes())
        .field(prompt.as_bytes())
        .field(&sampling.temperature.to_bits().to_le_bytes())
        .field(&sampling.top_p.to_bits().to_le_bytes())
        .field(&sampling.max_tokens.to_le_bytes())
        .field(seed.as_bytes());
    for stop in &sampling.stop {
        key.field(stop.as_bytes());
    }
    key
}

/// A guided request's key: [`request_key`]'s fields, then the negative
/// prompt and the guidance scale.
pub fn guided_request_key(
    model: &str,
    prompt: &str,
    negative: &str,
    scale: f32,
    sampling: &Sampling,
) -> String {
    let mut key = key_of(model, prompt, sampling);
    key.field(b"guidance")
        .field(negative.as_bytes())
        .field(&scale.to_bits().to_le_bytes());
    key.hex()
}

/// An LLM's answer to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// The text generated.
    pub text: String,
    /// Tokens of the prompt, where the backend says.
    #[serde(default)]
    pub prompt_tokens: Option<u32>,
    /// Tokens generated, where the backend says.
    #[serde(default)]
    pub completion_tokens: Option<u32>,
}

/// One line of the store.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    key: String,
    model: String,
    sampling: Sampling,
    answer: Answer,
}

/// The answers on disk, indexed by request key.
#[derive(Debug)]
pub struct AnswerStore {
    path: PathBuf,
    file: File,
    answers: HashMap<String, Answer>,
    torn: usize,
}

impl AnswerStore {
    /// Opens (or creates) the store at `path`, reading what it holds and
    /// cutting off a last line that a crash left unfinished.
    pub fn open(path: &Path) -> Result<Self> {
        let mut answers = HashMap::new();
        let mut good_bytes = 0u64;
        let mut torn = 0;
        if path.exists() {
            let file = File::open(path).map_err(|e| Error::io(path, e))?;
            let mut reader = BufReader::new(file);
            let mut line = Vec::new();
            let mut number = 0;
            loop {
                line.clear();
                let read = reader
                    .read_until(b'\n', &mut line)
                    .map_err(|e| Error::io(path, e))?;
                if read == 0 {
                    break;
                }
                number += 1;
                if line.last() != Some(&b'\n') {
                    // Only the last line can lack its end: a write cut short
                    // (perhaps inside a character).
                    torn = 1;
                    break;
                }
                let record: Record = serde_json::from_slice(&line)
                    .map_err(|e| Error::data(path, number, format!("not an answer record: {e}")))?;
                answers.insert(record.key, record.answer);
                good_bytes += read as u64;
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        if torn > 0 {
            file.set_len(good_bytes).map_err(|e| Error::io(path, e))?;
        }
        Ok(AnswerStore {
            path: path.to_path_buf(),
            file,
            answers,
            torn,
        })
    }

    /// The stored answer to the request `key`.
    pub fn get(&self, key: &str) -> Option<&Answer> {
        self.answers.get(key)
    }

    /// Appends an answer and syncs it to disk before returning.
    pub fn insert(
        &mut self,
        key: &str,
        model: &str,
        sampling: &Sampling,
        answer: Answer,
    ) -> Result<()> {
        let record = Record {
            key: key.to_string(),
            model: model.to_string(),
            sampling: sampling.clone(),
            answer,
        };
        let mut line = serde_json::to_string(&record).expect("a record serializes");
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|e| Error::io(&self.path, e))?;
        self.answers.insert(record.key, record.answer);
        Ok(())
    }

    /// Answers held.
    pub fn len(&self) -> usize {
        self.answers.len()
    }

    /// Whether no answer is held.
    pub fn is_empty(&self) -> bool {
        self.answers.is_empty()
    }

    /// Unfinished last lines cut off when the store was opened (0 or 1).
    pub fn torn_lines(&self) -> usize {
        self.torn
    }
}
