//! Resumable checkpoints: `checkpoints/step-NNNNNNNN/` holding the model and
//! optimizer records (Burn's named MessagePack, full precision) and
//! `state.json`, which also records the size of each record file.
//! A checkpoint is written into a `.tmp` directory that is renamed into place
//! only when complete, so a crash at any moment leaves the previous one
//! intact; the newest complete checkpoint whose files have their recorded
//! sizes is the one a resume reads (a damaged newer one is passed over with
//! a warning).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use burn::module::{AutodiffModule, Module};
use burn::optim::Optimizer;
use burn::record::{FullPrecisionSettings, Recorder, RecorderError};
use burn::tensor::backend::{AutodiffBackend, Backend};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::loss_scale::LossScale;
use crate::error::{Error, Result};
use crate::json_file::{read_json, write_json};

/// Where training stands; saved with every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps taken.
    pub step: usize,
    /// Best selection score so far and the step it was reached at.
    pub best: Option<(f64, usize)>,
    /// The objective's state across steps ([`crate::objective::Objective::state`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objective: Option<serde_json::Value>,
    /// The loss scale of `f16-mixed` training ([`super::loss_scale`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<LossScale>,
    /// Bytes of each record file of the checkpoint, as written (absent in
    /// checkpoints of earlier versions).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, u64>,
}

/// The checkpoint directory of a run.
pub struct Checkpoints {
    dir: PathBuf,
}

/// Burn's named MessagePack records, in the files Burn's
/// `NamedMpkFileRecorder` writes, but with the file system's own errors
/// ("No space left on device") where Burn's recorder reports only that a
/// value could not be written, and the last buffered bytes flushed and
/// synced before a save counts as done.
#[derive(Debug, Default, Clone)]
struct MpkRecorder;

impl<B: Backend> Recorder<B> for MpkRecorder {
    type Settings = FullPrecisionSettings;
    type RecordArgs = PathBuf;
    type RecordOutput = ();
    type LoadArgs = PathBuf;

    fn save_item<I: Serialize>(
        &self,
        item: I,
        path: PathBuf,
    ) -> std::result::Result<(), RecorderError> {
        let io = |e: std::io::Error| RecorderError::Unknown(e.to_string());
        let mut out = IoErrorKept {
            inner: BufWriter::new(File::create(&path).map_err(io)?),
            error: None,
        };
        if let Err(e) = rmp_serde::encode::write_named(&mut out, &item) {
            return Err(match out.error.take() {
                Some(e) => io(e),
                None => RecorderError::Unknown(e.to_string()),
            });
        }
        out.inner.flush().map_err(io)?;
        out.inner.get_ref().sync_all().map_err(io)
    }

    fn load_item<I: DeserializeOwned>(
        &self,
        path: &mut PathBuf,
    ) -> std::result::Result<I, RecorderError> {
        let file = File::open(&*path).map_err(|e| RecorderError::FileNotFound(e.to_string()))?;
        rmp_serde::decode::from_read(BufReader::new(file))
            .map_err(|e| RecorderError::DeserializeError(e.to_string()))
    }
}

/// A writer that keeps the first I/O error it met, which the MessagePack
/// encoder's own error does not carry.
struct IoErrorKept<W: Write> {
    inner: W,
    error: Option<std::io::Error>,
}

impl<W: Write> Write for IoErrorKept<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf).inspect_err(|e| {
            self.error
                .get_or_insert_with(|| std::io::Error::new(e.kind(), e.to_string()));
        })
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The record files of a checkpoint.
const RECORDS: [&str; 2] = ["model.mpk", "optim.mpk"];

/// Environment variable naming a step at whose checkpoint the process stops
/// half-way (model written, optimizer not) and waits to be killed: how the
/// crash-safety tests kill a run mid-checkpoint.
pub const PAUSE_IN_CHECKPOINT: &str = "GCSE_TEST_PAUSE_IN_CHECKPOINT";

impl Checkpoints {
    /// The checkpoints in `dir` (a run's [`crate::run_dir::RunDir::checkpoints`]).
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    fn step_dir(&self, step: usize) -> PathBuf {
        self.dir.join(format!("step-{step:08}"))
    }

    /// The `state.json` of checkpoint `step`.
    pub fn state_file(&self, step: usize) -> PathBuf {
        self.step_dir(step).join("state.json")
    }

    /// Steps of the complete checkpoints, oldest first. Leftover `.tmp`
    /// directories of interrupted saves are removed.
    pub fn complete(&self) -> Result<Vec<usize>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&self.dir, e)),
        };
        let mut steps = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&self.dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                std::fs::remove_dir_all(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
            } else if let Some(step) = name.strip_prefix("step-").and_then(|s| s.parse().ok()) {
                if entry.path().join("state.json").is_file() {
                    steps.push(step);
                }
            }
        }
        steps.sort_unstable();
        Ok(steps)
    }

    /// Writes a checkpoint, then keeps only the newest `keep_last`.
    pub fn save<B, M, O>(
        &self,
        model: &M,
        optim: &O,
        state: &TrainState,
        keep_last: usize,
    ) -> Result<()>
    where
        B: AutodiffBackend,
        M: AutodiffModule<B>,
        O: Optimizer<M, B>,
    {
        let done = self.step_dir(state.step);
        let tmp = done.with_extension("tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let fail = |what: &str, e: RecorderError| Error::Io {
            path: tmp.join(what),
            source: std::io::Error::other(recorder_message(e)),
        };
        let recorder = MpkRecorder;
        Recorder::<B>::record(&recorder, model.clone().into_record(), tmp.join(RECORDS[0]))
            .map_err(|e| fail(RECORDS[0], e))?;
        if std::env::var(PAUSE_IN_CHECKPOINT)
            .ok()
            .and_then(|s| s.parse().ok())
            == Some(state.step)
        {
            eprintln!(
                "checkpoint {} half written; waiting to be killed",
                state.step
            );
            loop {
                std::thread::sleep(std::time::Duration::from_secs(60));
            }
        }
        Recorder::<B>::record(&recorder, optim.to_record(), tmp.join(RECORDS[1]))
            .map_err(|e| fail(RECORDS[1], e))?;
        let mut state = state.clone();
        for name in RECORDS {
            let path = tmp.join(name);
            let bytes = std::fs::metadata(&path)
                .map_err(|e| Error::io(&path, e))?
                .len();
            state.files.insert(name.to_string(), bytes);
        }
        write_json(&tmp.join("state.json"), &state)?;
        sync(&tmp.join("state.json"))?;
        let _ = std::fs::remove_dir_all(&done);
        std::fs::rename(&tmp, &done).map_err(|e| Error::io(&done, e))?;
        sync(&self.dir)?;
        let steps = self.complete()?;
        for &old in steps.iter().take(steps.len().saturating_sub(keep_last)) {
            let dir = self.step_dir(old);
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        Ok(())
    }

    /// Whether checkpoint `step`'s record files have the sizes its
    /// `state.json` gives; the error says which does not.
    pub fn check(&self, step: usize) -> Result<()> {
        let dir = self.step_dir(step);
        let state: TrainState = read_json(&dir.join("state.json"))?;
        for (name, &expected) in &state.files {
            let path = dir.join(name);
            let found = std::fs::metadata(&path)
                .map_err(|e| Error::io(&path, e))?
                .len();
            if found != expected {
                return Err(Error::Load {
                    path,
                    message: format!(
                        "damaged: {found} bytes where the checkpoint wrote {expected}"
                    ),
                });
            }
        }
        Ok(())
    }

    /// The newest complete checkpoint that passes [`Self::check`]; newer
    /// ones that do not are reported on stderr and passed over.
    pub fn newest_usable(&self) -> Result<Option<usize>> {
        for &step in self.complete()?.iter().rev() {
            match self.check(step) {
                Ok(()) => return Ok(Some(step)),
                Err(e) => eprintln!(
                    "warning: checkpoint of step {step} cannot be used ({e}); trying the one before"
                ),
            }
        }
        Ok(None)
    }

    /// Loads checkpoint `step` into `model` and `optim`.
    pub fn load<B, M, O>(
        &self,
        step: usize,
        model: M,
        optim: O,
        device: &B::Device,
    ) -> Result<(M, O, TrainState)>
    where
        B: AutodiffBackend,
        M: AutodiffModule<B>,
        O: Optimizer<M, B>,
    {
        let model = self.load_model(step, model, device)?;
        let dir = self.step_dir(step);
        let optim_record = load_record(&dir, RECORDS[1], device)?;
        let state: TrainState = read_json(&dir.join("state.json"))?;
        Ok((model, optim.load_record(optim_record), state))
    }

    /// Loads the model record of checkpoint `step` into `model`, on any
    /// backend (no optimizer state needed).
    pub fn load_model<B: Backend, M: Module<B>>(
        &self,
        step: usize,
        model: M,
        device: &B::Device,
    ) -> Result<M> {
        let dir = self.step_dir(step);
        if !dir.join("state.json").is_file() {
            return Err(Error::Load {
                path: dir,
                message: "no complete checkpoint of this step".into(),
            });
        }
        let record = load_record(&dir, RECORDS[0], device)?;
        Ok(model.load_record(record))
    }
}

/// Reads record file `name` of checkpoint directory `dir`.
fn load_record<B: Backend, R: burn::record::Record<B>>(
    dir: &Path,
    name: &str,
    device: &B::Device,
) -> Result<R> {
    let path = dir.join(name);
    Recorder::<B>::load(&MpkRecorder, path.clone(), device).map_err(|e| Error::Load {
        message: match e {
            RecorderError::FileNotFound(why) => why,
            other => format!(
                "cannot be read, the file is damaged or was not written by this version of gcse ({})",
                recorder_message(other)
            ),
        },
        path,
    })
}

/// A recorder error's own words: the first line of its message (Burn adds a
/// hint about its own format history to every tensor read error).
fn recorder_message(e: RecorderError) -> String {
    let (RecorderError::FileNotFound(m)
    | RecorderError::DeserializeError(m)
    | RecorderError::Unknown(m)) = e;
    m.lines().next().unwrap_or("").trim().to_string()
}

/// Flushes a file or directory to disk.
pub fn sync(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(path, e))
}
