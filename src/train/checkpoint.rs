//! Resumable checkpoints: `checkpoints/step-NNNNNNNN/` holding the model and
//! optimizer records (Burn's MessagePack, full precision) and `state.json`.
//! A checkpoint is written into a `.tmp` directory that is renamed into place
//! only when complete, so a crash at any moment leaves the previous one
//! intact; the newest complete checkpoint is the one a resume reads.

use std::path::{Path, PathBuf};

use burn::module::{AutodiffModule, Module};
use burn::optim::Optimizer;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use serde::{Deserialize, Serialize};

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
}

/// The checkpoint directory of a run.
pub struct Checkpoints {
    dir: PathBuf,
}

type Rec = NamedMpkFileRecorder<FullPrecisionSettings>;

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
        let recorder = Rec::default();
        let fail = |what: &str, e: burn::record::RecorderError| Error::Io {
            path: tmp.join(what),
            source: std::io::Error::other(e.to_string()),
        };
        recorder
            .record(model.clone().into_record(), tmp.join("model"))
            .map_err(|e| fail("model.mpk", e))?;
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
        recorder
            .record(optim.to_record(), tmp.join("optim"))
            .map_err(|e| fail("optim.mpk", e))?;
        write_json(&tmp.join("state.json"), state)?;
        for file in ["model.mpk", "optim.mpk", "state.json"] {
            sync(&tmp.join(file))?;
        }
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
        let optim_record = load_record(&dir, "optim", device)?;
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
        let record = load_record(&dir, "model", device)?;
        Ok(model.load_record(record))
    }
}

/// Reads record `name` (`name.mpk`) of checkpoint directory `dir`.
fn load_record<B: Backend, R: burn::record::Record<B>>(
    dir: &Path,
    name: &str,
    device: &B::Device,
) -> Result<R> {
    Rec::default()
        .load(dir.join(name), device)
        .map_err(|e| Error::Load {
            path: dir.join(format!("{name}.mpk")),
            message: e.to_string(),
        })
}

/// Flushes a file or directory to disk.
pub fn sync(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(path, e))
}
