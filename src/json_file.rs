//! JSON and JSONL files, read and written one way everywhere: writes are
//! atomic (a temporary sibling renamed into place, see [`crate::atomic`]),
//! read errors name the file and, for JSONL, the line.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::atomic::write_atomic;
use crate::error::{Error, Result};

/// Writes `value` to `path` as indented JSON with a final newline.
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    write_atomic(path, |w| {
        serde_json::to_writer_pretty(&mut *w, value)?;
        w.write_all(b"\n")
    })
}

/// Writes `items` to `path`, one compact JSON value a line.
pub fn write_jsonl<'a, T: Serialize + 'a>(
    path: &Path,
    items: impl IntoIterator<Item = &'a T>,
) -> Result<()> {
    write_atomic(path, |w| {
        for item in items {
            serde_json::to_writer(&mut *w, item)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    })
}

/// Reads a JSON file into `T`; an error names the file and where in it.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::data(path, e.line(), e.to_string()))
}

/// The lines of a JSONL file read as `T`, and how many lines were not (a
/// line a crash cut short, or one of another shape); no file reads as none.
pub fn read_jsonl_lenient<T: DeserializeOwned>(path: &Path) -> Result<(Vec<T>, usize)> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(Error::io(path, e)),
    };
    let mut skipped = 0;
    let items = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let item = serde_json::from_str(l).ok();
            skipped += item.is_none() as usize;
            item
        })
        .collect();
    Ok((items, skipped))
}

/// A JSONL file open for appending, one value a line.
pub struct JsonlAppender {
    path: PathBuf,
    file: File,
}

impl JsonlAppender {
    /// Opens `path` for appending (created if missing).
    pub fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends `item` as one line, written whole in one call.
    pub fn append<T: Serialize + ?Sized>(&mut self, item: &T) -> Result<()> {
        let mut line = serde_json::to_vec(item).expect("JSON serialises");
        line.push(b'\n');
        self.file
            .write_all(&line)
            .map_err(|e| Error::io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_bad_lines_are_counted() {
        let dir = std::env::temp_dir().join(format!("gcse-json-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.jsonl");
        write_jsonl(&path, &[1u32, 2, 3]).unwrap();
        let mut more = JsonlAppender::open(&path).unwrap();
        more.append(&4u32).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"torn")
            .unwrap();
        let (read, skipped): (Vec<u32>, usize) = read_jsonl_lenient(&path).unwrap();
        assert_eq!((read, skipped), (vec![1, 2, 3, 4], 1));
        assert_eq!(
            read_jsonl_lenient::<u32>(&dir.join("none.jsonl")).unwrap(),
            (vec![], 0)
        );

        let json = dir.join("a.json");
        write_json(&json, &serde_json::json!({"x": [1, 2]})).unwrap();
        let back: serde_json::Value = read_json(&json).unwrap();
        assert_eq!(back["x"][1], 2);
        std::fs::write(&json, "{\n\"x\": \n}").unwrap();
        let err = read_json::<serde_json::Value>(&json)
            .unwrap_err()
            .to_string();
        assert!(err.contains("a.json") && err.contains('3'), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
