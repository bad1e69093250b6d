//! A training run's directory: the name of every file in it, the guard that
//! keeps one run to a directory, the claim that starts one, and the
//! checkpoint a resume continues from.

use std::path::{Path, PathBuf};

use crate::atomic::{recover_dir, write_atomic};
use crate::error::{Error, Result};
use crate::train::checkpoint::Checkpoints;

/// The directory of one training run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// The experiment file as the run uses it; its presence marks a run.
    pub const CONFIG: &'static str = "config.toml";
    /// One JSON line per step, evaluation and statistics entry.
    pub const METRICS: &'static str = "metrics.jsonl";
    /// The TensorBoard event file beside it (TensorBoard finds files by
    /// `tfevents` in the name).
    pub const EVENTS: &'static str = "events.out.tfevents.gcse";
    /// The best model so far, a Hugging Face / sentence-transformers folder.
    pub const BEST: &'static str = "best";
    /// Test-suite results of the best model.
    pub const TEST_RESULTS: &'static str = "test_results.json";
    /// Triplets filtered from candidate files when the run started.
    pub const TRIPLETS: &'static str = "triplets.jsonl";
    /// The report of that filtering.
    pub const FILTER_REPORT: &'static str = "filter_report.json";
    /// The lock file of [`Self::lock`].
    pub const LOCK: &'static str = ".gcse.lock";
    /// Resumable checkpoints, one folder each.
    pub const CHECKPOINTS: &'static str = "checkpoints";
    /// Cached vectors of frozen teachers.
    pub const TEACHERS: &'static str = "teachers";
    /// The loss curve.
    pub const LOSS_PNG: &'static str = "loss.png";
    /// The dev-set curves.
    pub const DEV_PNG: &'static str = "sts_dev.png";
    /// The dashboard as the run left it.
    pub const DASHBOARD_PNG: &'static str = "dashboard.png";

    /// The run directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `name` inside the directory (for files an objective names, such as
    /// its statistics plot).
    pub fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// [`Self::CONFIG`].
    pub fn config(&self) -> PathBuf {
        self.file(Self::CONFIG)
    }

    /// [`Self::METRICS`].
    pub fn metrics(&self) -> PathBuf {
        self.file(Self::METRICS)
    }

    /// [`Self::BEST`].
    pub fn best(&self) -> PathBuf {
        self.file(Self::BEST)
    }

    /// [`Self::TEST_RESULTS`].
    pub fn test_results(&self) -> PathBuf {
        self.file(Self::TEST_RESULTS)
    }

    /// [`Self::TRIPLETS`].
    pub fn triplets(&self) -> PathBuf {
        self.file(Self::TRIPLETS)
    }

    /// [`Self::FILTER_REPORT`].
    pub fn filter_report(&self) -> PathBuf {
        self.file(Self::FILTER_REPORT)
    }

    /// The run's checkpoints.
    pub fn checkpoints(&self) -> Checkpoints {
        Checkpoints::new(&self.file(Self::CHECKPOINTS))
    }

    /// The stem of teacher `name`'s vector cache (`.npy` and `.json` are
    /// added to it).
    pub fn teacher_cache(&self, name: &str) -> PathBuf {
        self.file(Self::TEACHERS).join(name)
    }

    /// Takes the directory for this process (made if missing) until the
    /// returned lock is dropped or the process ends, however it ends. A
    /// directory another process holds is an error naming that process:
    /// take it before [`Self::check`] and [`Self::claim`].
    pub fn lock(&self) -> Result<RunLock> {
        let created = !self.root.exists();
        std::fs::create_dir_all(&self.root).map_err(|e| Error::io(&self.root, e))?;
        let path = self.file(Self::LOCK);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                let holder = match holder.trim() {
                    "" => String::new(),
                    pid => format!(" (process {pid})"),
                };
                return Err(Error::Usage(format!(
                    "{}: another gcse process{holder} is training in this run directory; \
                     wait for it to end or choose another run_dir",
                    self.root.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        let pid = std::process::id().to_string();
        file.set_len(0)
            .and_then(|()| std::io::Write::write_all(&mut file, pid.as_bytes()))
            .map_err(|e| Error::io(&path, e))?;
        Ok(RunLock {
            run: self.clone(),
            _file: file,
            created,
        })
    }

    /// Whether a run was started here.
    pub fn holds_run(&self) -> bool {
        self.config().is_file()
    }

    /// The guard: a new run needs a directory without a run in it; `resume`
    /// needs one whose saved experiment `same` finds equal to this one.
    pub fn check(&self, resume: bool, same: impl FnOnce(&Path) -> Result<bool>) -> Result<()> {
        if !self.holds_run() {
            return Ok(());
        }
        if !resume {
            return Err(Error::Usage(format!(
                "{} already holds a run; pass --resume to continue it, or choose another run_dir",
                self.root.display()
            )));
        }
        let saved = self.config();
        if !same(&saved)? {
            return Err(Error::Config {
                path: saved,
                message: "the experiment file differs from the one this run started with; \
                          an exact resume needs the same settings"
                    .into(),
            });
        }
        Ok(())
    }

    /// Starts (or continues) the run: the directory is made, the experiment
    /// written as `config_toml`, and a best-model folder an interrupted
    /// export left behind is put back.
    pub fn claim(&self, config_toml: &str) -> Result<()> {
        std::fs::create_dir_all(&self.root).map_err(|e| Error::io(&self.root, e))?;
        write_atomic(&self.config(), |w| {
            std::io::Write::write_all(w, config_toml.as_bytes())
        })?;
        recover_dir(&self.best())
    }

    /// The step of the newest checkpoint a resume can read, if any.
    pub fn resume_step(&self) -> Result<Option<usize>> {
        self.checkpoints().newest_usable()
    }
}

/// A run directory held by this process (see [`RunDir::lock`]). Dropped
/// before a run was claimed, it removes the lock file, and the directory
/// too when the lock made it and nothing else is in it: a run that could
/// not start leaves nothing behind.
#[derive(Debug)]
pub struct RunLock {
    run: RunDir,
    _file: std::fs::File,
    created: bool,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        if !self.run.holds_run() {
            let _ = std::fs::remove_file(self.run.file(RunDir::LOCK));
            if self.created {
                let _ = std::fs::remove_dir(self.run.root());
            }
        }
    }
}
