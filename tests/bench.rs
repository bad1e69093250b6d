//! `gcse bench` end to end on a tiny self-made model: the JSON report's
//! figures agree with each other and with the FLOP count, and bad arguments
//! are refused without a panic. (Timings themselves are never asserted.)

mod common;

use common::{gcse, temp_dir, tiny_config, write_tiny_model};
use gcse::bench::flops;
use gcse::model::config::Architecture;

/// Runs `gcse bench`, 3 sentences, 1 warm-up step; `--seq-len 5`,
/// `--steps 4` and `--backend cpu` unless `extra` gives them.
fn bench(workload: &str, model: &str, json: &str, extra: &[&str]) -> (bool, String) {
    let mut args = vec![
        "bench",
        workload,
        "--model",
        model,
        "--batch-size",
        "3",
        "--warmup",
        "1",
        "--json",
        json,
    ];
    for (key, value) in [("--seq-len", "5"), ("--steps", "4"), ("--backend", "cpu")] {
        if !extra.contains(&key) {
            args.extend([key, value]);
        }
    }
    args.extend(extra);
    let (ok, stdout, stderr) = gcse(&args);
    assert!(!stderr.contains("panicked"), "{args:?} panicked:\n{stderr}");
    (ok, format!("{stdout}{stderr}"))
}

/// A JSON file written by `gcse bench --json`.
fn read_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn bench_reports_consistent_figures_for_train_and_embed() {
    let dir = temp_dir("bench");
    write_tiny_model(&dir, Architecture::Bert, 3);
    let config = tiny_config(Architecture::Bert);
    for (workload, expected_flops) in [
        ("train", flops::train_step(&config, 3, 5)),
        ("embed", flops::forward(&config, 3, 5)),
    ] {
        let json = dir.join(format!("{workload}.json"));
        let (ok, out) = bench(
            workload,
            dir.to_str().unwrap(),
            json.to_str().unwrap(),
            &["--peak-tflops", "2"],
        );
        assert!(ok, "{out}");
        assert!(out.contains("sentences/s") && out.contains("MFU"), "{out}");
        let r = read_json(&json);
        assert_eq!(r["workload"], workload);
        assert_eq!(
            (
                r["batch"].as_u64(),
                r["seq_len"].as_u64(),
                r["steps"].as_u64()
            ),
            (Some(3), Some(5), Some(4))
        );
        let s = &r["step_seconds"];
        let f = |v: &serde_json::Value| v.as_f64().unwrap();
        let median = f(&s["median"]);
        assert!(
            f(&s["min"]) <= f(&s["p10"])
                && f(&s["p10"]) <= median
                && median <= f(&s["p90"])
                && f(&s["p90"]) <= f(&s["max"]),
            "{s}"
        );
        assert!(median > 0.0);
        assert!((f(&r["sentences_per_second"]) - 3.0 / median).abs() < 1e-9 * 3.0 / median);
        assert!((f(&r["tokens_per_second"]) - 15.0 / median).abs() < 1e-9 * 15.0 / median);
        assert_eq!(f(&r["flops_per_step"]), expected_flops);
        let tflops = expected_flops / median / 1e12;
        assert!((f(&r["achieved_tflops"]) - tflops).abs() <= 1e-9 * tflops);
        assert!((f(&r["mfu"]) - tflops / 2.0).abs() <= 1e-9 * tflops);
        assert!(r["peak_host_bytes"].as_u64().unwrap() > 0);
    }
}

#[test]
fn bench_refuses_bad_arguments() {
    let dir = temp_dir("bench-bad");
    let json = dir.join("r.json");
    let json = json.to_str().unwrap();
    for (extra, expected) in [
        (&["--steps", "0"][..], "--steps must be at least 1"),
        (
            &["--peak-tflops=0"][..],
            "--peak-tflops must be a positive number",
        ),
        (&["--seq-len", "600"][..], "--seq-len 600"),
    ] {
        let (ok, out) = bench("embed", "minilm-l6", json, extra);
        assert!(!ok && out.contains(expected), "{extra:?}: {out}");
    }
    let (ok, out) = bench("train", "minilm-l6", json, &["--grad-cache-chunk", "0"]);
    assert!(
        !ok && out.contains("--grad-cache-chunk must be at least 1"),
        "{out}"
    );
    let (ok, out) = bench("embed", "minilm-l6", json, &["--precision", "bf16"]);
    assert!(!ok && out.contains("bf16 is not available on cpu"), "{out}");
    let (ok, out) = bench("max-batch", "minilm-l6", json, &["--budget-gib=-1"]);
    assert!(!ok && out.contains("--budget-gib"), "{out}");
    let (ok, out) = bench("embed", dir.join("none").to_str().unwrap(), json, &[]);
    assert!(!ok && out.contains("bert-base, minilm-l6"), "{out}");
    assert!(!std::path::Path::new(json).exists());
}

#[test]
fn bench_train_with_grad_cache_reports_its_chunk() {
    let dir = temp_dir("bench-grad-cache");
    write_tiny_model(&dir, Architecture::Bert, 3);
    let json = dir.join("train.json");
    let (ok, out) = bench(
        "train",
        dir.to_str().unwrap(),
        json.to_str().unwrap(),
        &["--grad-cache-chunk", "4", "--steps", "2"],
    );
    assert!(ok, "{out}");
    assert!(out.contains("GradCache chunks of 4"), "{out}");
    let r = read_json(&json);
    assert_eq!(r["grad_cache_chunk"].as_u64(), Some(4));
}

/// Runs `gcse bench max-batch` on the tiny model (batches of 8, 16, 24)
/// and returns the JSON it saved.
fn max_batch(dir: &std::path::Path, budget_gib: &str) -> serde_json::Value {
    let json = dir.join(format!("max-batch-{budget_gib}.json"));
    let (ok, out) = bench(
        "max-batch",
        dir.to_str().unwrap(),
        json.to_str().unwrap(),
        &[
            "--budget-gib",
            budget_gib,
            "--max-batch",
            "24",
            "--grad-cache-chunk",
            "16",
        ],
    );
    assert!(ok, "{out}");
    assert!(out.contains("GradCache chunks of 16"), "{out}");
    read_json(&json)
}

#[test]
fn max_batch_measures_each_trial_and_respects_the_budget() {
    let dir = temp_dir("bench-max-batch");
    write_tiny_model(&dir, Architecture::Bert, 3);
    let roomy = max_batch(&dir, "64");
    let outcome = &roomy["outcome"];
    assert_eq!(outcome["largest"].as_u64(), Some(24), "{roomy}");
    let trials = outcome["trials"].as_array().unwrap();
    let batches: Vec<u64> = trials
        .iter()
        .map(|t| t["batch"].as_u64().unwrap())
        .collect();
    assert_eq!(batches, [8, 16, 24]);
    let peaks: Vec<u64> = trials
        .iter()
        .map(|t| t["peak_bytes"].as_u64().expect("a measured peak"))
        .collect();
    assert!(peaks.iter().all(|&p| p > 1 << 20), "{peaks:?}");
    // Below the smallest trial's own peak, nothing fits.
    let tight = format!("{}", (peaks[0] / 2) as f64 / (1u64 << 30) as f64);
    let none = max_batch(&dir, &tight);
    assert_eq!(
        none["outcome"]["largest"],
        serde_json::Value::Null,
        "{none}"
    );
    assert_eq!(none["outcome"]["trials"][0]["fits"], false);
}

/// On WGPU in f16 (lavapipe has 16-bit shader floats, so CI runs this): the
/// report names the precision and the device holds at least the model's
/// weights at 2 bytes each; then training in f16-mixed. (WGPU in f32 is tested by the encoder parity
/// and training tests.)
#[test]
fn bench_on_wgpu_in_f16_reports_the_device_memory_it_holds() {
    let test = "bench_on_wgpu_in_f16_reports_the_device_memory_it_holds";
    let resolved = match gcse::backend::resolve(gcse::backend::BackendKind::Wgpu) {
        Ok(resolved) => resolved,
        Err(e) => return common::skip(test, &e.to_string()),
    };
    if let gcse::backend::Resolved::Wgpu {
        shader_f16: false, ..
    } = resolved
    {
        return common::skip(test, &format!("{resolved} has no 16-bit shader floats"));
    }
    let dir = temp_dir("bench-wgpu");
    write_tiny_model(&dir, Architecture::Bert, 3);
    let json = dir.join("embed.json");
    let (ok, out) = bench(
        "embed",
        dir.to_str().unwrap(),
        json.to_str().unwrap(),
        &["--backend", "wgpu", "--steps", "1", "--precision", "f16"],
    );
    assert!(ok, "{out}");
    let r = read_json(&json);
    assert_eq!(r["precision"], "f16");
    let config = tiny_config(Architecture::Bert);
    let embeddings = config.vocab_size * config.hidden_size;
    let device = r["peak_device_bytes"].as_u64().expect("a device figure");
    assert!(device >= 2 * embeddings as u64, "{device} bytes");
    assert!(
        out.contains("f16 precision") && out.contains("device memory"),
        "{out}"
    );

    // Training in f16-mixed: the report names it and times the host's
    // enqueueing within each step; the autotuner's choices land in
    // $GCSE_CACHE/cubecl, not in the Cargo project around the working
    // directory.
    let cache = dir.join("cache");
    let json = dir.join("train.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gcse"))
        .args(["bench", "train", "--model", dir.to_str().unwrap()])
        .args([
            "--batch-size",
            "3",
            "--seq-len",
            "5",
            "--steps",
            "2",
            "--warmup",
            "1",
        ])
        .args(["--backend", "wgpu", "--precision", "f16-mixed"])
        .args(["--json", json.to_str().unwrap()])
        .env("GCSE_CACHE", &cache)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("f16-mixed precision") && text.contains("host enqueue"),
        "{text}"
    );
    let r = read_json(&json);
    assert_eq!(r["precision"], "f16-mixed");
    let enqueue = r["host_enqueue_seconds"]["max"].as_f64().unwrap();
    assert!(enqueue > 0.0 && enqueue <= r["step_seconds"]["max"].as_f64().unwrap());
    let mut stack = vec![cache.join("cubecl")];
    let mut files = 0;
    while let Some(path) = stack.pop() {
        match std::fs::read_dir(&path) {
            Ok(entries) => stack.extend(entries.map(|e| e.unwrap().path())),
            Err(_) => files += usize::from(path.is_file()),
        }
    }
    assert!(files > 0, "nothing cached under {}", cache.display());
}
