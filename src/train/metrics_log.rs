//! `metrics.jsonl`: one JSON object per training step (`"kind": "step"`) and
//! per evaluation (`"kind": "eval"`). On resume the file is cut back to the
//! checkpoint's step, so that it reads like one uninterrupted run.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::atomic::write_atomic;
use crate::error::{Error, Result};

/// An open metrics file.
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Opens `path` for appending, first keeping only the entries of steps up
    /// to `keep_until` (all are dropped when it is 0). Lines a crash cut short
    /// are dropped too.
    pub fn open(path: &Path, keep_until: usize) -> Result<Self> {
        let kept: Vec<serde_json::Value> = read_entries(path)?
            .into_iter()
            .filter(|e| e["step"].as_u64().is_some_and(|s| s as usize <= keep_until))
            .collect();
        write_atomic(path, |w| {
            for entry in &kept {
                serde_json::to_writer(&mut *w, entry)?;
                w.write_all(b"\n")?;
            }
            Ok(())
        })?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends one entry.
    pub fn write(&mut self, entry: &serde_json::Value) -> Result<()> {
        let mut line = serde_json::to_vec(entry).expect("JSON serialises");
        line.push(b'\n');
        self.file
            .write_all(&line)
            .map_err(|e| Error::io(&self.path, e))
    }
}

/// The entries of a metrics file (none if it does not exist); unparsable
/// lines are skipped.
pub fn read_entries(path: &Path) -> Result<Vec<serde_json::Value>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io(path, e)),
    }
}
