//! Bad input never panics: each case exits with an error that names the
//! file (and line, field or tensor) at fault, and what is accepted is
//! written well. Uses tiny self-made models.

use crate::common::{gcse, temp_dir, write_tiny_model};
use gcse::model::config::Architecture;

/// Runs gcse expecting failure; returns stderr, checking it did not panic.
fn fails(args: &[&str]) -> String {
    let (ok, _, stderr) = gcse(args);
    assert!(!ok, "expected failure for {args:?}");
    assert!(!stderr.contains("panicked"), "{args:?} panicked:\n{stderr}");
    stderr
}

fn embed_args<'a>(model: &'a str, input: &'a str, output: &'a str) -> Vec<&'a str> {
    vec![
        "embed",
        "--backend",
        "cpu",
        "--model",
        model,
        "--input",
        input,
        "--output",
        output,
    ]
}

#[test]
fn a_missing_model_names_the_path_and_says_what_to_download() {
    let err = fails(&["eval", "--backend", "cpu", "--model", "./no/such/model"]);
    assert!(
        err.contains("./no/such/model") && err.contains("no such model directory"),
        "{err}"
    );
    let err = fails(&["eval", "--backend", "cpu", "--model", "Cargo.toml"]);
    assert!(err.contains("is a file"), "{err}");
}

#[test]
fn a_malformed_config_names_the_file_and_the_field() {
    let dir = temp_dir("bad-config");
    write_tiny_model(&dir, Architecture::Bert, 1);
    let config = dir.join("config.json");
    let input = dir.join("in.txt");
    std::fs::write(&input, "a man\n").unwrap();
    let args = embed_args(dir.to_str().unwrap(), input.to_str().unwrap(), "out.npy");

    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    json.as_object_mut().unwrap().remove("hidden_size");
    std::fs::write(&config, json.to_string()).unwrap();
    let err = fails(&args);
    assert!(
        err.contains("config.json") && err.contains("hidden_size"),
        "{err}"
    );

    std::fs::write(&config, "{\"vocab_size\": 28,\n  oops").unwrap();
    let err = fails(&args);
    assert!(
        err.contains("config.json") && err.contains("line 2"),
        "{err}"
    );

    json["hidden_size"] = 16.into();
    json["num_attention_heads"] = 5.into();
    std::fs::write(&config, json.to_string()).unwrap();
    let err = fails(&args);
    assert!(err.contains("num_attention_heads"), "{err}");

    json["num_attention_heads"] = 4.into();
    json["model_type"] = "gpt2".into();
    std::fs::write(&config, json.to_string()).unwrap();
    let err = fails(&args);
    assert!(err.contains("model_type") && err.contains("gpt2"), "{err}");
}

#[test]
fn weights_that_do_not_fit_the_config_name_the_tensor() {
    let dir = temp_dir("bad-shape");
    write_tiny_model(&dir, Architecture::Bert, 2);
    let config = dir.join("config.json");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("\"intermediate_size\":37", "\"intermediate_size\":30");
    std::fs::write(&config, text).unwrap();
    let input = dir.join("in.txt");
    std::fs::write(&input, "a man\n").unwrap();
    let err = fails(&embed_args(
        dir.to_str().unwrap(),
        input.to_str().unwrap(),
        "out.npy",
    ));
    assert!(
        err.contains("model.safetensors")
            && err.contains(
                "`encoder.layer.0.intermediate.dense.weight` has shape [37, 16] in the file"
            )
            && err.contains("needs [30, 16]"),
        "{err}"
    );
}

#[test]
fn bad_input_files_name_the_line() {
    let dir = temp_dir("bad-input");
    write_tiny_model(&dir, Architecture::Bert, 3);
    let model = dir.to_str().unwrap();
    let out = dir.join("out.npy");
    let out = out.to_str().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_string()
    };

    let cases: [(&str, &[u8], [&str; 2]); 4] = [
        ("empty.txt", b"\n  \n", ["empty.txt", "no sentences"]),
        (
            "latin1.txt",
            b"a man\nthe dog\ncaf\xe9\n",
            ["latin1.txt:3", "UTF-8"],
        ),
        (
            "in.jsonl",
            b"{\"text\": \"a man\"}\n{\"sentence\": \"the dog\"}\n",
            ["in.jsonl:2", "`text`"],
        ),
        (
            "broken.jsonl",
            b"{\"text\": \"a man\"}\n{\"text\": \n",
            ["broken.jsonl:2", "invalid JSON"],
        ),
    ];
    for (name, bytes, expected) in cases {
        let input = write(name, bytes);
        let err = fails(&embed_args(model, &input, out));
        assert!(expected.iter().all(|e| err.contains(e)), "{name}: {err}");
    }

    let fine = write("fine.txt", b"a man\n");
    let err = fails(&embed_args(model, &fine, "out.csv"));
    assert!(err.contains("out.csv") && err.contains(".npy"), "{err}");

    let err = fails(&embed_args(
        model,
        dir.join("absent.txt").to_str().unwrap(),
        out,
    ));
    assert!(err.contains("absent.txt"), "{err}");
}

#[test]
fn long_lines_are_truncated_and_counted_and_outputs_are_well_formed() {
    let dir = temp_dir("embed-ok");
    write_tiny_model(&dir, Architecture::Bert, 4);
    let model = dir.to_str().unwrap();
    let long = vec!["the dog runs in the park"; 400].join(" ");
    let input = dir.join("in.txt");
    std::fs::write(
        &input,
        format!("a man is playing guitar\n\n{long}\ntwo people are talking\n"),
    )
    .unwrap();
    let npy = dir.join("out.npy");
    let mut args = embed_args(model, input.to_str().unwrap(), npy.to_str().unwrap());
    args.extend(["--normalize", "--pooling", "avg"]);
    let (ok, _, stderr) = gcse(&args);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("3 sentences (1 blank lines skipped, 1 truncated to 24 tokens)"),
        "{stderr}"
    );
    let bytes = std::fs::read(&npy).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert_eq!((10 + header_len) % 64, 0);
    assert!(
        header.contains("'shape': (3, 16)") && header.contains("'<f4'"),
        "{header}"
    );
    let values: Vec<f32> = bytes[10 + header_len..]
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(values.len(), 48);
    for row in values.chunks(16) {
        let norm: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    }

    let jsonl_in = dir.join("in.jsonl");
    std::fs::write(&jsonl_in, "{\"id\": 1, \"text\": \"a man\"}\n\"the dog\"\n").unwrap();
    let jsonl_out = dir.join("out.jsonl");
    let (ok, _, stderr) = gcse(&embed_args(
        model,
        jsonl_in.to_str().unwrap(),
        jsonl_out.to_str().unwrap(),
    ));
    assert!(ok, "{stderr}");
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&jsonl_out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["line"], 2);
    assert_eq!(rows[1]["text"], "the dog");
    assert_eq!(rows[0]["embedding"].as_array().unwrap().len(), 16);
}

#[test]
fn cls_pooling_without_pooler_weights_is_refused() {
    let dir = temp_dir("no-pooler");
    write_tiny_model(&dir, Architecture::Bert, 5);
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<(String, safetensors::tensor::TensorView)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| !n.starts_with("pooler."))
        .collect();
    safetensors::serialize_to_file(kept, None, &path).unwrap();
    let input = dir.join("in.txt");
    std::fs::write(&input, "a man\n").unwrap();
    let mut args = embed_args(dir.to_str().unwrap(), input.to_str().unwrap(), "out.npy");
    args.extend(["--pooling", "cls"]);
    let err = fails(&args);
    assert!(
        err.contains("no pooler weights") && err.contains("cls_before_pooler"),
        "{err}"
    );
}

#[test]
fn gcse_filter_writes_triplets_and_a_report_and_names_bad_lines() {
    let dir = temp_dir("filter-cli");
    write_tiny_model(&dir, Architecture::Bert, 6);
    let model = dir.to_str().unwrap();
    let input = dir.join("candidates.jsonl");
    let line = |id: &str, source: &str| {
        serde_json::json!({
            "id": id, "source": source,
            "positives": [{"text": format!("{source} ."), "kind": "rewrite"}],
            "negatives": [{"text": "the cat sleeps on the mat", "kind": "antisense"}],
        })
        .to_string()
    };
    let good = [
        line("1", "a man is playing guitar"),
        line("2", "two people are talking"),
    ];
    std::fs::write(&input, good.join("\n") + "\n").unwrap();
    let output = dir.join("triplets.jsonl");
    let args = |extra: &[&'static str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "filter",
            "--backend",
            "cpu",
            "--model",
            model,
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run = |extra: &[&'static str]| {
        let a = args(extra);
        gcse(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let (ok, stdout, stderr) = run(&["--alpha=-1", "--beta", "1"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("positives: 2 kept, 0 fell back"),
        "{stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("triplets.report.json")).unwrap())
            .unwrap();
    assert_eq!(
        report["positive_scores"]["counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap())
            .sum::<u64>(),
        2
    );
    let triplets = std::fs::read_to_string(&output).unwrap();
    assert_eq!(triplets.lines().count(), 2);
    assert!(
        triplets.contains("\"positive\":\"a man is playing guitar .\""),
        "{triplets}"
    );

    let err = fails(
        &args(&["--alpha", "2"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(err.contains("--alpha"), "{err}");
    std::fs::write(&input, format!("{}\n{{\"id\": \"3\"}}\n", good[0])).unwrap();
    let err = fails(&args(&[]).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        err.contains("candidates.jsonl:2") && err.contains("`source`"),
        "{err}"
    );
    let (ok, _, stderr) = run(&["--on-bad-line", "skip"]);
    assert!(
        !ok && stderr.contains("at least two"),
        "one good source is too few: {stderr}"
    );
}

#[test]
fn version_names_the_built_features_and_help_the_environment() {
    let (ok, out, err) = gcse(&["--version"]);
    assert!(ok, "{err}");
    let features = [
        ("openblas", cfg!(feature = "openblas")),
        ("cuda", cfg!(feature = "cuda")),
        ("llama", cfg!(feature = "llama")),
    ];
    let listed = out
        .split("features: ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("no feature list in {out:?}"));
    for (name, built) in features {
        assert_eq!(listed.contains(name), built, "{name} in {out:?}");
    }
    assert!(
        out.starts_with(&format!("gcse {}", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
    let (ok, out, err) = gcse(&["--help"]);
    assert!(ok, "{err}");
    for name in [
        "GCSE_DATA",
        "GCSE_CACHE",
        "HF_HUB_CACHE",
        "HF_HOME",
        "HF_ENDPOINT",
        "HF_TOKEN",
        "HF_HUB_OFFLINE",
        "GCSE_HUB_TIMEOUT_S",
        "CUBECL_AUTOTUNE_LEVEL",
        "training run directory",
    ] {
        assert!(out.contains(name), "{name} missing from --help:\n{out}");
    }
}
