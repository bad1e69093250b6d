//! Evaluation data: each case damages one file of a valid SentEval folder
//! or a task file; `gcse eval` must refuse it naming the file (and line),
//! never score a task NaN.

use std::path::Path;

use crate::harness::{run_table, Case};
use crate::world::{write_senteval, World};

/// `gcse eval` of the tiny model on `tasks` with the SentEval folder `data`.
fn eval<'a>(data: &'a str, tasks: &'a str) -> Vec<&'a str> {
    vec![
        "eval",
        "--backend",
        "cpu",
        "--model",
        "model",
        "--data",
        data,
        "--tasks",
        tasks,
    ]
}

/// A case: its name, the task, how the folder is damaged, what the error
/// names.
type Damage<'a> = (&'a str, &'a str, Box<dyn Fn(&Path) + 'a>, Vec<&'a str>);

/// A SentEval folder `senteval-<name>` changed by `damage`.
fn damaged(w: &World, name: &str, damage: impl FnOnce(&Path)) -> String {
    let dir = w.path(&format!("senteval-{name}"));
    write_senteval(&dir);
    damage(&dir);
    format!("senteval-{name}")
}

fn cases(w: &World) -> Vec<Case> {
    let stsb = "STS/STSBenchmark/sts-dev.csv";
    let sick = "SICK/SICK_trial.txt";
    let msrpar = "STS/STS12-en-test/STS.gs.MSRpar.txt";
    let table: Vec<Damage> = vec![
        (
            "stsb-empty",
            "stsb-dev",
            Box::new(|d: &Path| std::fs::write(d.join(stsb), "").unwrap()),
            vec!["sts-dev.csv", "no sentence pair"],
        ),
        (
            "stsb-blank-lines",
            "stsb-dev",
            Box::new(|d: &Path| std::fs::write(d.join(stsb), "\n\n  \n").unwrap()),
            vec!["sts-dev.csv", "no sentence pair"],
        ),
        (
            "stsb-one-pair",
            "stsb-dev",
            Box::new(|d: &Path| {
                let text = std::fs::read_to_string(d.join(stsb)).unwrap();
                std::fs::write(d.join(stsb), text.lines().next().unwrap()).unwrap();
            }),
            vec!["sts-dev.csv", "only one"],
        ),
        (
            "stsb-equal-gold",
            "stsb-dev",
            Box::new(|d: &Path| {
                let text: Vec<String> = std::fs::read_to_string(d.join(stsb))
                    .unwrap()
                    .lines()
                    .map(|l| {
                        let mut f: Vec<&str> = l.split('\t').collect();
                        f[4] = "2.0";
                        f.join("\t")
                    })
                    .collect();
                std::fs::write(d.join(stsb), text.join("\n")).unwrap();
            }),
            vec!["sts-dev.csv", "same gold score"],
        ),
        (
            "stsb-gold-nan",
            "stsb-dev",
            Box::new(|d: &Path| {
                let text = std::fs::read_to_string(d.join(stsb))
                    .unwrap()
                    .replacen("\t0.0\t", "\tnan\t", 1);
                std::fs::write(d.join(stsb), text).unwrap();
            }),
            vec!["sts-dev.csv:1", "nan"],
        ),
        (
            "stsb-gold-text",
            "stsb-dev",
            Box::new(|d: &Path| {
                let text = std::fs::read_to_string(d.join(stsb))
                    .unwrap()
                    .replacen("\t1.0\t", "\thigh\t", 1);
                std::fs::write(d.join(stsb), text).unwrap();
            }),
            vec!["sts-dev.csv:2", "high"],
        ),
        (
            "stsb-few-columns",
            "stsb-dev",
            Box::new(|d: &Path| std::fs::write(d.join(stsb), "a\tb\n").unwrap()),
            vec!["sts-dev.csv:1", "columns"],
        ),
        (
            "stsb-missing",
            "stsb-dev",
            Box::new(|d: &Path| std::fs::remove_file(d.join(stsb)).unwrap()),
            vec!["sts-dev.csv"],
        ),
        (
            "stsb-latin1",
            "stsb-dev",
            Box::new(|d: &Path| {
                let mut bytes = std::fs::read(d.join(stsb)).unwrap();
                bytes.extend_from_slice(b"x\tx\tx\t9\t1.0\tcaf\xe9\tdog\n");
                std::fs::write(d.join(stsb), bytes).unwrap();
            }),
            vec!["sts-dev.csv", "UTF-8"],
        ),
        (
            "sick-header-only",
            "sickr-dev",
            Box::new(|d: &Path| {
                let text = std::fs::read_to_string(d.join(sick)).unwrap();
                std::fs::write(
                    d.join(sick),
                    text.lines().next().unwrap().to_string() + "\n",
                )
                .unwrap();
            }),
            vec!["SICK_trial.txt", "no sentence pair"],
        ),
        (
            "sts12-blank-gold",
            "sts12",
            Box::new(|d: &Path| {
                for subset in [
                    "MSRpar",
                    "MSRvid",
                    "SMTeuroparl",
                    "surprise.OnWN",
                    "surprise.SMTnews",
                ] {
                    std::fs::write(
                        d.join(format!("STS/STS12-en-test/STS.gs.{subset}.txt")),
                        "\n\n\n\n\n\n",
                    )
                    .unwrap();
                }
            }),
            vec!["STS12-en-test", "no sentence pair"],
        ),
        (
            "sts12-gold-lines",
            "sts12",
            Box::new(|d: &Path| std::fs::write(d.join(msrpar), "1\n2\n").unwrap()),
            vec!["STS.gs.MSRpar.txt:3", "2 gold lines for 6"],
        ),
        (
            "sts12-gold-inf",
            "sts12",
            Box::new(|d: &Path| std::fs::write(d.join(msrpar), "1\n2\ninf\n3\n4\n0\n").unwrap()),
            vec!["STS.gs.MSRpar.txt:3", "inf"],
        ),
        (
            "sts12-one-column",
            "sts12",
            Box::new(|d: &Path| {
                std::fs::write(
                    d.join("STS/STS12-en-test/STS.input.MSRpar.txt"),
                    "a\nb\nc\nd\ne\nf\n",
                )
                .unwrap()
            }),
            vec!["STS.input.MSRpar.txt:1", "2 tab-separated"],
        ),
        (
            "sts12-subset-missing",
            "sts12",
            Box::new(|d: &Path| std::fs::remove_file(d.join(msrpar)).unwrap()),
            vec!["STS.gs.MSRpar.txt"],
        ),
    ];
    let mut cases: Vec<Case> = table
        .into_iter()
        .map(|(name, task, damage, names)| {
            let data = damaged(w, name, damage);
            Case::error(name, &eval(&data, task), &names)
        })
        .collect();
    write_senteval(&w.path("senteval"));
    let files: &[(&str, &str, &[u8], &[&str])] = &[
        ("pairs-text-score", "pairs:", b"{\"a\": \"a man .\", \"b\": \"the dog .\", \"score\": \"high\"}\n", &["pairs-text-score.jsonl:1", "score"]),
        ("pairs-one", "pairs:", b"{\"a\": \"a man .\", \"b\": \"the dog .\", \"score\": 1}\n", &["pairs-one.jsonl", "only one"]),
        ("pairs-equal", "pairs:", b"{\"a\": \"a man .\", \"b\": \"the dog .\", \"score\": 1}\n{\"a\": \"a cat .\", \"b\": \"the dog .\", \"score\": 1}\n", &["pairs-equal.jsonl", "same gold score"]),
        ("pairs-empty", "pairs:", b"", &["pairs-empty.jsonl", "no sentence pair"]),
        ("pairs-broken-json", "pairs:", b"{\"a\": \"a man .\",\n", &["pairs-broken-json.jsonl:1"]),
        ("rerank-empty", "rerank:", b"", &["rerank-empty.jsonl"]),
        ("rerank-no-negative", "rerank:", b"{\"query\": \"a man .\", \"positive\": [\"the man .\"], \"negative\": []}\n", &["rerank-no-negative.jsonl"]),
        ("pairclass-one-class", "pairclass:", b"{\"a\": \"a man .\", \"b\": \"the dog .\", \"label\": 1}\n{\"a\": \"a cat .\", \"b\": \"the dog .\", \"label\": 1}\n", &["pairclass-one-class.jsonl"]),
    ];
    for &(name, family, bytes, names) in files {
        let file = w.write(&format!("{name}.jsonl"), bytes);
        let task = format!("{family}{file}");
        cases.push(Case::error(name, &eval("senteval", &task), names));
    }
    w.write(
        "beir/corpus.jsonl",
        "{\"_id\": \"d1\", \"text\": \"a man .\"}\n",
    );
    w.write(
        "beir/queries.jsonl",
        "{\"_id\": \"q1\", \"text\": \"the man .\"}\n",
    );
    let beir = w.path("beir");
    cases.push(Case::error(
        "retrieval-no-qrels",
        &eval("senteval", &format!("retrieval:{}", beir.display())),
        &["beir", "qrels"],
    ));
    cases.extend([
        Case::error(
            "data-missing",
            &eval("no-such-folder", "stsb-dev"),
            &["no-such-folder"],
        ),
        Case::usage("task-unknown", &eval("senteval", "sts99"), &["sts99"]),
        Case::success(
            "all-tasks",
            &eval(
                "senteval",
                "sts12,sts13,sts14,sts15,sts16,stsb,sickr,stsb-dev,sickr-dev",
            ),
            &["STS12", "SICK-R dev"],
        ),
    ]);
    cases
}

#[test]
fn evaluation_data() {
    let w = World::new("eval-data");
    let tally = run_table("evaluation data", &w.dir, cases(&w));
    assert!(tally.cases >= 25, "{tally:?}");
    std::fs::remove_dir_all(&w.dir).unwrap();
}
