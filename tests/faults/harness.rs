//! Runs a table of cases against the gcse binary. Each case runs in its own
//! folder with a time limit; whatever it expects, it must not panic (no
//! "panicked", no exit 101, no death by a signal it was not sent), must
//! end within its limit, and must leave every file the folder held before
//! as it was, except those the case says the command may replace.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a case expects of the command.
#[derive(Debug, Clone)]
pub enum Expect {
    /// Exit status 1 with `error: ...` on stderr holding every string (the
    /// file, key or line at fault).
    Error(Vec<String>),
    /// Exit status 2 (a command line clap refuses) with every string.
    Usage(Vec<String>),
    /// Success, with every string somewhere in stdout or stderr.
    Success(Vec<String>),
}

/// One bad input or fault.
pub struct Case {
    /// Unique within its table.
    pub name: String,
    /// The command line after `gcse`.
    pub args: Vec<String>,
    /// Environment variables set for the command.
    pub env: Vec<(String, String)>,
    /// What must happen.
    pub expect: Expect,
    /// Files under the case's folder that the command may change or remove.
    pub may_change: Vec<PathBuf>,
    /// Paths that must not exist after the command (a run directory a
    /// refused experiment must not create).
    pub absent: Vec<PathBuf>,
    /// The longest the command may take.
    pub limit: Duration,
}

impl Case {
    /// A case expecting an error that names every one of `names`.
    pub fn error(name: &str, args: &[&str], names: &[&str]) -> Self {
        Self::new(name, args, Expect::Error(strings(names)))
    }

    /// A case expecting a refused command line naming `names`.
    pub fn usage(name: &str, args: &[&str], names: &[&str]) -> Self {
        Self::new(name, args, Expect::Usage(strings(names)))
    }

    /// A case expecting success with `shown` in the output.
    pub fn success(name: &str, args: &[&str], shown: &[&str]) -> Self {
        Self::new(name, args, Expect::Success(strings(shown)))
    }

    fn new(name: &str, args: &[&str], expect: Expect) -> Self {
        Case {
            name: name.to_string(),
            args: strings(args),
            env: Vec::new(),
            expect,
            may_change: Vec::new(),
            absent: Vec::new(),
            limit: Duration::from_secs(120),
        }
    }

    /// The same case with `key=value` in its environment.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// The same case allowed to change or remove `path`.
    pub fn may_change(mut self, path: &Path) -> Self {
        self.may_change.push(path.to_path_buf());
        self
    }

    /// The same case required to leave no `path` behind.
    pub fn leaves_no(mut self, path: &Path) -> Self {
        self.absent.push(path.to_path_buf());
        self
    }

    /// The same case with another time limit.
    pub fn limit(mut self, limit: Duration) -> Self {
        self.limit = limit;
        self
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// How a command ended.
#[derive(Debug)]
pub struct Outcome {
    /// Its exit status (`None`: ended by a signal, or killed at its limit).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Whether it was killed at its time limit.
    pub hung: bool,
}

/// Tallies of a table, for the suite's report.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub cases: usize,
    pub errors: usize,
    pub successes: usize,
}

/// Runs `gcse args` in `dir` with `env`, killing it at `limit`.
pub fn run(dir: &Path, args: &[String], env: &[(String, String)], limit: Duration) -> Outcome {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gcse"))
        .args(args)
        .current_dir(dir)
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the gcse binary runs");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let readers = (
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        }),
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        }),
    );
    let started = Instant::now();
    let mut hung = false;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            hung = true;
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Outcome {
        code: status.code(),
        stdout: readers.0.join().unwrap(),
        stderr: readers.1.join().unwrap(),
        hung,
    }
}

/// Every file under `dir` with its bytes.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                files.insert(path, bytes);
            }
        }
    }
    files
}

/// Checks one case's outcome; the message says what went wrong.
pub fn judge(case: &Case, outcome: &Outcome) -> Result<(), String> {
    let all = format!("{}\n{}", outcome.stdout, outcome.stderr);
    if outcome.hung {
        return Err(format!("hung: still running after {:?}", case.limit));
    }
    if all.contains("panicked") || outcome.code == Some(101) {
        return Err("panicked".into());
    }
    let Some(code) = outcome.code else {
        return Err("ended by a signal".into());
    };
    let (wanted, shown, text) = match &case.expect {
        Expect::Error(names) => (1, names, outcome.stderr.as_str()),
        Expect::Usage(names) => (2, names, outcome.stderr.as_str()),
        Expect::Success(shown) => (0, shown, all.as_str()),
    };
    if code != wanted {
        return Err(format!("exit status {code}, expected {wanted}"));
    }
    if matches!(case.expect, Expect::Error(_)) && !outcome.stderr.contains("error: ") {
        return Err("no `error: ` line".into());
    }
    if let Some(missing) = shown.iter().find(|s| !text.contains(s.as_str())) {
        return Err(format!("the output does not mention \"{missing}\""));
    }
    Ok(())
}

/// Runs every case in `dir` (sequentially), checks each, and panics with
/// every failure at once; returns the tallies.
pub fn run_table(table: &str, dir: &Path, cases: Vec<Case>) -> Tally {
    let mut names = std::collections::HashSet::new();
    let mut failures = Vec::new();
    let mut tally = Tally::default();
    for case in &cases {
        assert!(
            names.insert(case.name.clone()),
            "{table}: {} twice",
            case.name
        );
        let before = snapshot(dir);
        let outcome = run(dir, &case.args, &case.env, case.limit);
        let mut verdict = judge(case, &outcome);
        if verdict.is_ok() {
            verdict = check_kept(&before, &snapshot(dir), &case.may_change);
        }
        if let Some(left) = case
            .absent
            .iter()
            .find(|p| p.exists())
            .filter(|_| verdict.is_ok())
        {
            verdict = Err(format!("{} was left behind", left.display()));
        }
        // What one case left must not fail the next.
        for path in &case.absent {
            let _ = std::fs::remove_dir_all(path).or_else(|_| std::fs::remove_file(path));
        }
        match verdict {
            Ok(()) => {}
            Err(why) => failures.push(format!(
                "{}: {why}\n  gcse {}\n  stdout: {}\n  stderr: {}",
                case.name,
                case.args.join(" "),
                outcome.stdout.trim(),
                outcome.stderr.trim()
            )),
        }
        tally.cases += 1;
        match case.expect {
            Expect::Success(_) => tally.successes += 1,
            _ => tally.errors += 1,
        }
    }
    eprintln!(
        "{table}: {} cases, {} clean errors, {} successes",
        tally.cases, tally.errors, tally.successes
    );
    assert!(
        failures.is_empty(),
        "{table}: {} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    tally
}

/// Whether every file of `before` is in `after` with the same bytes, but
/// those under a `may_change` path.
pub fn check_kept(
    before: &BTreeMap<PathBuf, Vec<u8>>,
    after: &BTreeMap<PathBuf, Vec<u8>>,
    may_change: &[PathBuf],
) -> Result<(), String> {
    for (path, bytes) in before {
        if may_change.iter().any(|p| path.starts_with(p)) {
            continue;
        }
        match after.get(path) {
            None => return Err(format!("{} was deleted", path.display())),
            Some(now) if now != bytes => return Err(format!("{} was changed", path.display())),
            Some(_) => {}
        }
    }
    Ok(())
}
