//! The folder a table's cases run in: a tiny model, training sentences, a
//! SentEval-shaped data folder of tiny tasks, and a valid experiment file
//! whose keys the cases change one at a time.

use std::path::{Path, PathBuf};

use gcse::model::config::Architecture;

use crate::common::{temp_dir, tiny_sentences, write_tiny_model};

/// A table's folder.
pub struct World {
    /// The folder (the cases' working directory).
    pub dir: PathBuf,
}

/// A valid stage-1 experiment on the tiny model: 3 steps of 8, no
/// evaluation, paths relative to the world's folder.
pub const EXPERIMENT: &str = r#"run_dir = "run"
[model]
path = "model"
max_len = 16
[[data.domain]]
path = "sentences.txt"
[train]
batch_size = 8
epochs = 1
[eval]
tasks = []
final_test = false
"#;

impl World {
    /// A fresh folder `name` with `model/`, `sentences.txt` (24 lines) and
    /// `senteval/` (every STS task, 6 pairs each).
    pub fn new(name: &str) -> Self {
        let dir = temp_dir(&format!("faults-{name}"));
        write_tiny_model(&dir.join("model"), Architecture::Bert, 3);
        std::fs::write(
            dir.join("sentences.txt"),
            tiny_sentences(24).join("\n") + "\n",
        )
        .unwrap();
        write_senteval(&dir.join("senteval"));
        World { dir }
    }

    /// `name` in the folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes `bytes` to `name` (folders made) and returns its path as text.
    pub fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> String {
        let path = self.path(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_string()
    }

    /// [`EXPERIMENT`] with each `(dotted key, TOML value)` of `set` set
    /// (`"train.lr", "nan"`; a value `None` removes the key), written to
    /// `configs/<name>.toml`; returns that path.
    pub fn experiment(&self, name: &str, set: &[(&str, Option<&str>)]) -> String {
        self.write(&format!("configs/{name}.toml"), edit(EXPERIMENT, set))
    }
}

/// `text` with each dotted key of `set` set to its TOML value, or removed.
/// A value may go on with lines `other = value`: keys of the same table.
pub fn edit(text: &str, set: &[(&str, Option<&str>)]) -> String {
    let mut table: toml::Table = toml::from_str(text).unwrap();
    let mut expanded: Vec<(String, Option<&str>)> = Vec::new();
    for &(key, value) in set {
        let mut lines = value.map(str::lines).into_iter().flatten();
        expanded.push((key.to_string(), lines.next().or(value)));
        let parent = key
            .rsplit_once('.')
            .map_or(String::new(), |(p, _)| format!("{p}."));
        for line in lines {
            let (other, v) = line.split_once(" = ").unwrap();
            expanded.push((format!("{parent}{other}"), Some(v)));
        }
    }
    for (key, value) in &expanded {
        let mut parts: Vec<&str> = key.split('.').collect();
        let last = parts.pop().unwrap();
        let mut at = &mut table;
        for part in parts {
            at = at
                .entry(part)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .unwrap_or_else(|| panic!("{key}: {part} is not a table"));
        }
        match value {
            Some(v) => {
                let parsed: toml::Table = toml::from_str(&format!("v = {v}")).unwrap();
                at.insert(last.to_string(), parsed["v"].clone());
            }
            None => {
                at.remove(last);
            }
        }
    }
    toml::to_string(&table).unwrap()
}

/// A SentEval-shaped folder: every STS test task, STS-B dev and SICK trial,
/// each 6 pairs of the tiny vocabulary with varied gold scores.
pub fn write_senteval(dir: &Path) {
    let sentences = tiny_sentences(12);
    let pair = |i: usize| (sentences[i].as_str(), sentences[(i + 5) % 12].as_str());
    let write = |path: PathBuf, text: String| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    let subsets: [(&str, &[&str]); 5] = [
        (
            "STS12",
            &[
                "MSRpar",
                "MSRvid",
                "SMTeuroparl",
                "surprise.OnWN",
                "surprise.SMTnews",
            ],
        ),
        ("STS13", &["FNWN", "headlines", "OnWN"]),
        (
            "STS14",
            &[
                "deft-forum",
                "deft-news",
                "headlines",
                "images",
                "OnWN",
                "tweet-news",
            ],
        ),
        (
            "STS15",
            &[
                "answers-forums",
                "answers-students",
                "belief",
                "headlines",
                "images",
            ],
        ),
        (
            "STS16",
            &[
                "answer-answer",
                "headlines",
                "plagiarism",
                "postediting",
                "question-question",
            ],
        ),
    ];
    for (year, names) in subsets {
        for subset in names {
            let folder = dir.join(format!("STS/{year}-en-test"));
            let input: Vec<String> = (0..6)
                .map(|i| format!("{}\t{}", pair(i).0, pair(i).1))
                .collect();
            let gold: Vec<String> = (0..6).map(|i| format!("{}", i % 5)).collect();
            write(
                folder.join(format!("STS.input.{subset}.txt")),
                input.join("\n") + "\n",
            );
            write(
                folder.join(format!("STS.gs.{subset}.txt")),
                gold.join("\n") + "\n",
            );
        }
    }
    for split in ["test", "dev"] {
        let rows: Vec<String> = (0..6)
            .map(|i| {
                format!(
                    "main-captions\tMSRvid\t2012\t{i}\t{}.0\t{}\t{}",
                    i % 5,
                    pair(i).0,
                    pair(i).1
                )
            })
            .collect();
        write(
            dir.join(format!("STS/STSBenchmark/sts-{split}.csv")),
            rows.join("\n") + "\n",
        );
    }
    for file in ["SICK_test_annotated.txt", "SICK_trial.txt"] {
        let mut rows = vec![
            "pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment".to_string(),
        ];
        rows.extend((0..6).map(|i| {
            format!(
                "{i}\t{}\t{}\t{}.5\tNEUTRAL",
                pair(i).0,
                pair(i).1,
                1 + i % 4
            )
        }));
        write(dir.join("SICK").join(file), rows.join("\n") + "\n");
    }
}
