//! The inputs of `gcse embed`, `gcse filter` and `gcse eval`'s pair files:
//! bad files and flags are errors naming the file (and line) or the flag;
//! a 700-word line is cut to the length asked for at every entry, whatever
//! that length, never a panic.

use crate::harness::{run, run_table, Case};
use crate::world::World;

/// A line of 700 words of the tiny vocabulary.
fn long_line() -> String {
    vec!["the dog runs in the park"; 140].join(" ")
}

/// `gcse <command> --backend cpu --model model --input INPUT --output
/// OUTPUT EXTRA...`.
fn command(command: &str, input: &str, output: &str, extra: &[&str]) -> Vec<String> {
    [
        command,
        "--backend",
        "cpu",
        "--model",
        "model",
        "--input",
        input,
        "--output",
        output,
    ]
    .iter()
    .chain(extra)
    .map(|s| s.to_string())
    .collect()
}

fn embed(input: &str, output: &str, extra: &[&str]) -> Vec<String> {
    command("embed", input, output, extra)
}

fn filter(input: &str, output: &str, extra: &[&str]) -> Vec<String> {
    command("filter", input, output, extra)
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn candidate(id: &str, source: &str) -> String {
    serde_json::json!({
        "id": id, "source": source,
        "positives": [{"text": format!("{source} ."), "kind": "rewrite"}],
        "negatives": [{"text": "the cat sleeps on the mat", "kind": "antisense"}],
    })
    .to_string()
}

fn cases(w: &World) -> Vec<Case> {
    let long = long_line();
    w.write("one.txt", "a man is playing guitar\n");
    w.write("long.txt", format!("a man is playing guitar\n{long}\n"));
    w.write("empty.txt", "\n  \n");
    w.write("latin1.txt", b"a man\nthe dog\ncaf\xe9\n");
    w.write(
        "field.jsonl",
        "{\"text\": \"a man\"}\n{\"sentence\": \"the dog\"}\n",
    );
    w.write("broken.jsonl", "{\"text\": \"a man\"}\n{\"text\": \n");
    w.write("number.jsonl", "{\"text\": 3}\n");
    std::fs::create_dir_all(w.path("a-folder.npy")).unwrap();
    let mut cases = Vec::new();
    let mut add = |case: Case| cases.push(case);
    let e = |name: &str, args: Vec<String>, names: &[&str]| Case::error(name, &strs(&args), names);
    add(e(
        "embed-empty",
        embed("empty.txt", "o.npy", &[]),
        &["empty.txt", "no sentences"],
    )
    .leaves_no(&w.path("o.npy")));
    add(e(
        "embed-latin1",
        embed("latin1.txt", "o.npy", &[]),
        &["latin1.txt:3", "UTF-8"],
    )
    .leaves_no(&w.path("o.npy")));
    add(e(
        "embed-field-missing",
        embed("field.jsonl", "o.npy", &[]),
        &["field.jsonl:2", "`text`"],
    ));
    add(e(
        "embed-broken-json",
        embed("broken.jsonl", "o.npy", &[]),
        &["broken.jsonl:2", "invalid JSON"],
    ));
    add(e(
        "embed-text-not-string",
        embed("number.jsonl", "o.npy", &[]),
        &["number.jsonl:1", "text"],
    ));
    add(e(
        "embed-other-field",
        embed("field.jsonl", "o.npy", &["--field", "title"]),
        &["field.jsonl:1", "title"],
    ));
    add(e(
        "embed-output-csv",
        embed("one.txt", "o.csv", &[]),
        &["o.csv", ".npy"],
    ));
    add(e(
        "embed-input-absent",
        embed("absent.txt", "o.npy", &[]),
        &["absent.txt"],
    ));
    add(e(
        "embed-input-folder",
        embed("model", "o.npy", &[]),
        &["model"],
    ));
    add(e(
        "embed-output-folder-missing",
        embed("one.txt", "no/such/o.npy", &[]),
        &["no/such/o.npy"],
    ));
    add(e(
        "embed-output-is-folder",
        embed("one.txt", "a-folder.npy", &[]),
        &["a-folder.npy"],
    ));
    add(e(
        "embed-batch-zero",
        embed("one.txt", "o.npy", &["--batch-size", "0"]),
        &["--batch-size"],
    ));
    add(e(
        "embed-jsonl-format-on-text",
        embed("one.txt", "o.npy", &["--format", "jsonl"]),
        &["one.txt:1"],
    ));
    let mut nopooler_args = embed("one.txt", "o.npy", &["--pooling", "cls"]);
    nopooler_args[4] = "nopooler".into();
    add(e(
        "embed-cls-without-pooler",
        nopooler_args,
        &["no pooler weights", "cls_before_pooler"],
    ));
    for (n, len) in [
        ("0", "0"),
        ("1", "1"),
        ("2", "2"),
        ("text", "many"),
        ("negative", "-3"),
    ] {
        let flag = format!("--max-len={len}");
        add(Case::usage(
            &format!("embed-max-len-{n}"),
            &strs(&embed("long.txt", "o.npy", &[&flag])),
            &["--max-len"],
        ));
    }
    add(Case::usage(
        "embed-pooling-unknown",
        &strs(&embed("one.txt", "o.npy", &["--pooling", "max"])),
        &["max"],
    ));
    add(Case::usage(
        "embed-backend-unknown",
        &strs(&embed("one.txt", "o.npy", &["--backend", "tpu"])),
        &["tpu"],
    ));
    for len in ["3", "4", "16", "24"] {
        add(Case::success(
            &format!("embed-long-line-max-len-{len}"),
            &strs(&embed(
                "long.txt",
                &format!("long-{len}.npy"),
                &["--max-len", len],
            )),
            &[&format!("truncated to {len} tokens")],
        ));
    }
    add(Case::success(
        "embed-long-line-default",
        &strs(&embed("long.txt", "long.jsonl", &[])),
        &["1 truncated to 24 tokens"],
    ));
    add(e(
        "embed-max-len-above-positions",
        embed("long.txt", "o.npy", &["--max-len", "25"]),
        &["25", "config.json"],
    ));

    // A model without pooler weights, for `--pooling cls`.
    let nopooler = w.path("nopooler");
    std::fs::create_dir_all(&nopooler).unwrap();
    for file in ["config.json", "vocab.txt"] {
        std::fs::copy(w.path("model").join(file), nopooler.join(file)).unwrap();
    }
    let bytes = std::fs::read(w.path("model/model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<_> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| !n.starts_with("pooler."))
        .collect();
    safetensors::serialize_to_file(kept, None, &nopooler.join("model.safetensors")).unwrap();

    // gcse filter.
    let good = format!(
        "{}\n{}\n",
        candidate("1", "a man is playing guitar"),
        candidate("2", "two people are talking")
    );
    w.write("cands.jsonl", &good);
    w.write(
        "cands-long.jsonl",
        format!("{good}{}\n", candidate("3", &long)),
    );
    w.write(
        "cands-bad.jsonl",
        format!(
            "{}\n{{\"id\": \"3\"}}\n",
            candidate("1", "a man is playing guitar")
        ),
    );
    w.write(
        "cands-dup.jsonl",
        format!("{good}{}\n", candidate("1", "the cat sleeps")),
    );
    w.write(
        "cands-one.jsonl",
        format!("{}\n", candidate("1", "a man is playing guitar")),
    );
    w.write("cands-empty-text.jsonl", "{\"id\": \"1\", \"source\": \"a man\", \"positives\": [{\"text\": \"\", \"kind\": \"rewrite\"}], \"negatives\": []}\n");
    let f = |name: &str, args: Vec<String>, names: &[&str]| Case::error(name, &strs(&args), names);
    cases.extend([
        f(
            "filter-alpha-nan",
            filter("cands.jsonl", "t.jsonl", &["--alpha", "nan"]),
            &["--alpha"],
        ),
        f(
            "filter-alpha-above-one",
            filter("cands.jsonl", "t.jsonl", &["--alpha", "2"]),
            &["--alpha"],
        ),
        f(
            "filter-beta-inf",
            filter("cands.jsonl", "t.jsonl", &["--beta", "inf"]),
            &["--beta"],
        ),
        f(
            "filter-batch-zero",
            filter("cands.jsonl", "t.jsonl", &["--batch-size", "0"]),
            &["--batch-size"],
        ),
        f(
            "filter-offset-zero",
            filter("cands.jsonl", "t.jsonl", &["--fallback-offset", "0"]),
            &["--fallback-offset"],
        ),
        f(
            "filter-bad-line",
            filter("cands-bad.jsonl", "t.jsonl", &[]),
            &["cands-bad.jsonl:2", "`source`"],
        ),
        f(
            "filter-duplicate-id",
            filter("cands-dup.jsonl", "t.jsonl", &[]),
            &["cands-dup.jsonl:3", "1"],
        ),
        f(
            "filter-one-source",
            filter("cands-one.jsonl", "t.jsonl", &[]),
            &["at least two"],
        ),
        f(
            "filter-empty-text",
            filter("cands-empty-text.jsonl", "t.jsonl", &[]),
            &["cands-empty-text.jsonl:1"],
        ),
        f(
            "filter-input-absent",
            filter("none.jsonl", "t.jsonl", &[]),
            &["none.jsonl"],
        ),
        f(
            "filter-output-folder-missing",
            filter("cands.jsonl", "no/such/t.jsonl", &[]),
            &["no/such"],
        ),
        f(
            "filter-snli-missing",
            filter("no-snli", "t.jsonl", &["--input-format", "snli"]),
            &["no-snli"],
        ),
        f(
            "filter-model-missing",
            {
                let mut args = filter("cands.jsonl", "t.jsonl", &[]);
                args[4] = "no-model".into();
                args
            },
            &["no-model"],
        ),
        Case::usage(
            "filter-max-len-one",
            &strs(&filter("cands.jsonl", "t.jsonl", &["--max-len", "1"])),
            &["--max-len"],
        ),
        Case::success(
            "filter-long-line",
            &strs(&filter(
                "cands-long.jsonl",
                "t-long.jsonl",
                &["--max-len", "3"],
            )),
            &["positives"],
        ),
        Case::success(
            "filter-long-line-default",
            &strs(&filter("cands-long.jsonl", "t-long2.jsonl", &[])),
            &["positives"],
        ),
    ]);
    // A 700-word sentence in a pair file of `gcse eval`.
    w.write("pairs-long.jsonl", format!(
        "{{\"a\": \"{long}\", \"b\": \"the dog .\", \"score\": 1}}\n{{\"a\": \"a man .\", \"b\": \"a man is playing .\", \"score\": 4}}\n{{\"a\": \"a cat .\", \"b\": \"the dog runs .\", \"score\": 2}}\n"
    ));
    let pairs = format!("pairs:{}", w.path("pairs-long.jsonl").display());
    for len in ["3", "8"] {
        cases.push(Case::success(
            &format!("eval-long-line-max-len-{len}"),
            &[
                "eval",
                "--backend",
                "cpu",
                "--model",
                "model",
                "--max-len",
                len,
                "--tasks",
                &pairs,
            ],
            &["pairs-long", "3 pairs"],
        ));
    }
    cases
}

#[test]
fn embed_filter_and_pair_inputs() {
    let w = World::new("inputs");
    let tally = run_table("inputs", &w.dir, cases(&w));
    assert!(tally.cases >= 45, "{tally:?}");
    std::fs::remove_dir_all(&w.dir).unwrap();
}

#[test]
fn embed_reads_csv_columns_and_gzip_and_streams_npy_rows() {
    let w = World::new("inputs-layouts");
    let sentences = [
        "a man is playing guitar",
        "the dog runs in the park , the cat sleeps",
        "two people are talking",
    ];
    w.write("plain.txt", sentences.join("\n") + "\n");
    let csv = format!(
        "id,note,sentence\n1,\"a, b\",{}\n2,\"spans\ntwo lines\",\"{}\"\n3,x,{}\n",
        sentences[0], sentences[1], sentences[2]
    );
    w.write("pairs.csv", &csv);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, csv.as_bytes()).unwrap();
    w.write("pairs.csv.gz", gz.finish().unwrap());
    let limit = std::time::Duration::from_secs(120);
    let gcse_in_world = |args: &[String]| {
        let out = run(&w.dir, args, &[], limit);
        (out.code == Some(0), out.stdout, out.stderr)
    };
    let embed_to = |input: &str, output: &str, extra: &[&str]| {
        let args = embed(input, output, extra);
        let (ok, out, err) = gcse_in_world(&args);
        assert!(ok, "{args:?}: {out}{err}");
        gcse::embed::npy::read_npy(&w.path(output)).unwrap()
    };
    let plain = embed_to("plain.txt", "plain.npy", &[]);
    assert_eq!(plain.rows(), 3);
    assert_eq!(
        embed_to("pairs.csv", "csv.npy", &["--column", "sentence"]),
        plain
    );
    assert_eq!(
        embed_to("pairs.csv.gz", "gz.npy", &["--column", "2", "--header"]),
        plain
    );
    let normalized = embed_to("plain.txt", "unit.npy", &["--normalize"]);
    for i in 0..3 {
        let norm: f32 = normalized.row(i).iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "row {i}: {norm}");
        assert!(normalized.cosine(i, &plain, i) > 1.0 - 1e-6);
    }
    let lines: Vec<serde_json::Value> = {
        let args = embed("pairs.csv", "rows.jsonl", &["--column", "sentence"]);
        let (ok, out, err) = gcse_in_world(&args);
        assert!(ok, "{out}{err}");
        std::fs::read_to_string(w.path("rows.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let starts: Vec<u64> = lines.iter().map(|l| l["line"].as_u64().unwrap()).collect();
    assert_eq!(starts, [2, 3, 5], "each record's first line");
    assert_eq!(lines[1]["text"], sentences[1]);
    let args = embed("pairs.csv", "bad.npy", &["--column", "sentences"]);
    let (ok, _, err) = gcse_in_world(&args);
    assert!(
        !ok && err.contains("pairs.csv:1") && err.contains("no column named `sentences`"),
        "{err}"
    );
    assert!(!w.path("bad.npy").exists());
    std::fs::remove_dir_all(&w.dir).unwrap();
}
