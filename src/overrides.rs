//! `--set key=value` on `gcse train`: dotted TOML keys set on the parsed
//! experiment file before it is checked, as if the file said so.
//!
//! The value is TOML (`1e-4`, `true`, `[\"stsb-dev\"]`, `"text"`); a value
//! that is not TOML is taken as a string, so `--set model.path=models/x`
//! needs no quotes. A key part that is a number indexes an array of tables
//! (`data.domain.0.path`). Missing tables are created.

/// One `key=value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// The dotted key, split.
    pub key: Vec<String>,
    /// The value to set.
    pub value: toml::Value,
}

impl Override {
    /// Parses `key=value`; the message says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (key, value) = text
            .split_once('=')
            .ok_or_else(|| format!("--set {text}: expected key=value, e.g. train.lr=1e-4"))?;
        let key: Vec<String> = key
            .trim()
            .split('.')
            .map(|p| p.trim().to_string())
            .collect();
        if key.iter().any(String::is_empty) {
            return Err(format!("--set {text}: the key has an empty part"));
        }
        let value = value.trim();
        let value = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.to_string()));
        Ok(Self { key, value })
    }

    /// The key as written.
    pub fn dotted(&self) -> String {
        self.key.join(".")
    }

    /// Sets the value in `table`; the message names the key part that is
    /// neither a table nor an element of an array of tables.
    pub fn apply(&self, table: &mut toml::Table) -> Result<(), String> {
        let at = |end: usize| self.key[..end].join(".");
        let mut here = table;
        let mut i = 0;
        loop {
            let part = &self.key[i];
            if i + 1 == self.key.len() {
                here.insert(part.clone(), self.value.clone());
                return Ok(());
            }
            let mut value = here
                .entry(part.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Array(items) = value {
                i += 1;
                let len = items.len();
                let n: usize = self.key[i].parse().map_err(|_| {
                    format!(
                        "--set {}: `{}` is an array: the next key part numbers an entry",
                        self.dotted(),
                        at(i)
                    )
                })?;
                let item = items.get_mut(n).ok_or_else(|| {
                    format!(
                        "--set {}: `{}` has {len} entries, numbered from 0",
                        self.dotted(),
                        at(i)
                    )
                })?;
                if i + 1 == self.key.len() {
                    *item = self.value.clone();
                    return Ok(());
                }
                value = item;
            }
            here = match value {
                toml::Value::Table(t) => t,
                other => {
                    return Err(format!(
                        "--set {}: `{}` is {}, not a table",
                        self.dotted(),
                        at(i + 1),
                        other.type_str()
                    ))
                }
            };
            i += 1;
        }
    }
}

/// `prefix.key`, or `key` at the top.
pub fn join_key(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Every leaf of `value` under its dotted key, as TOML text; arrays of
/// tables by index (the keys `--set` takes).
pub fn flatten(
    prefix: &str,
    value: &toml::Value,
    out: &mut std::collections::BTreeMap<String, String>,
) {
    let key = |k: &str| join_key(prefix, k);
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                flatten(&key(k), v, out);
            }
        }
        toml::Value::Array(items) if items.iter().any(toml::Value::is_table) => {
            for (i, v) in items.iter().enumerate() {
                flatten(&key(&i.to_string()), v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(text: &str, overrides: &[&str]) -> Result<toml::Table, String> {
        let mut table: toml::Table = toml::from_str(text).unwrap();
        for o in overrides {
            Override::parse(o)?.apply(&mut table)?;
        }
        Ok(table)
    }

    #[test]
    fn values_are_toml_else_strings_and_missing_tables_are_made() {
        let table = set(
            "run_dir = \"a\"\n[train]\nlr = 3e-5\n",
            &[
                "train.lr=1e-4",
                "train.batch_size = 32",
                "eval.tasks=[\"stsb-dev\"]",
                "model.path=models/all-MiniLM-L6-v2",
                "run_dir=\"runs/b\"",
                "eval.final_test=false",
            ],
        )
        .unwrap();
        assert_eq!(table["train"]["lr"].as_float(), Some(1e-4));
        assert_eq!(table["train"]["batch_size"].as_integer(), Some(32));
        assert_eq!(table["eval"]["tasks"][0].as_str(), Some("stsb-dev"));
        assert_eq!(
            table["model"]["path"].as_str(),
            Some("models/all-MiniLM-L6-v2")
        );
        assert_eq!(table["run_dir"].as_str(), Some("runs/b"));
        assert_eq!(table["eval"]["final_test"].as_bool(), Some(false));
    }

    #[test]
    fn arrays_of_tables_are_indexed_and_bad_keys_named() {
        let text = "[[data.domain]]\npath = \"a.txt\"\n[[data.domain]]\npath = \"b.txt\"\n";
        let table = set(text, &["data.domain.1.path=c.txt"]).unwrap();
        assert_eq!(table["data"]["domain"][1]["path"].as_str(), Some("c.txt"));
        assert_eq!(table["data"]["domain"][0]["path"].as_str(), Some("a.txt"));
        let err = set(text, &["data.domain.2.path=c.txt"]).unwrap_err();
        assert!(err.contains("`data.domain` has 2 entries"), "{err}");
        let err = set("run_dir = \"a\"\n", &["run_dir.x=1"]).unwrap_err();
        assert!(err.contains("`run_dir` is string, not a table"), "{err}");
        assert!(Override::parse("train.lr")
            .unwrap_err()
            .contains("key=value"));
        assert!(Override::parse("train..lr=1").is_err());
    }
}
