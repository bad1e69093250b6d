//! `gcse bench` end to end on a tiny self-made model: the JSON report's
//! figures agree with each other and with the FLOP count, and bad arguments
//! are refused without a panic. (Timings themselves are never asserted.)

mod common;

use common::{gcse, temp_dir, tiny_config, write_tiny_model};
use gcse::bench::flops;
use gcse::model::config::Architecture;

/// Runs `gcse bench` on the CPU, 3 sentences, 1 warm-up step; `--seq-len 5`
/// and `--steps 4` unless `extra` gives them.
fn bench(workload: &str, model: &str, json: &str, extra: &[&str]) -> (bool, String) {
    let mut args = vec![
        "bench",
        workload,
        "--backend",
        "cpu",
        "--model",
        model,
        "--batch-size",
        "3",
        "--warmup",
        "1",
        "--json",
        json,
    ];
    for (key, value) in [("--seq-len", "5"), ("--steps", "4")] {
        if !extra.contains(&key) {
            args.extend([key, value]);
        }
    }
    args.extend(extra);
    let (ok, stdout, stderr) = gcse(&args);
    assert!(!stderr.contains("panicked"), "{args:?} panicked:\n{stderr}");
    (ok, format!("{stdout}{stderr}"))
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
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
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
    let (ok, out) = bench("embed", dir.join("none").to_str().unwrap(), json, &[]);
    assert!(!ok && out.contains("bert-base, minilm-l6"), "{out}");
    assert!(!std::path::Path::new(json).exists());
}
