//! `gcse eval` on all-MiniLM-L6-v2 gives, for each of the seven STS tasks,
//! the Spearman that Hugging Face transformers gives under the same protocol
//! (tests/fixtures/minilm_sts.json, made by scripts/reference_sts.py), within
//! 0.05 points, with the same pair counts.

mod common;

fn check_table(pooling: &str) {
    let test = format!("sts_table_matches_pytorch_{pooling}");
    let (Some(model), Some(data)) = (common::minilm_dir(&test), common::senteval_dir(&test)) else {
        return;
    };
    let out = common::temp_dir(&test).join("results.json");
    let (model, data, out_s) = (
        model.to_str().unwrap(),
        data.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    let (ok, stdout, stderr) = common::gcse(&[
        "eval",
        "--model",
        model,
        "--data",
        data,
        "--backend",
        "cpu",
        "--pooling",
        pooling,
        "--json",
        out_s,
    ]);
    assert!(ok, "gcse eval failed:\n{stderr}");
    assert!(
        stdout.contains("| STS12 | STS13 | STS14 | STS15 | STS16 | STS-B | SICK-R |  Avg. |"),
        "{stdout}"
    );
    let ours: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let golden = common::fixture("minilm_sts.json");
    let reference = &golden["results"][pooling];
    let scores = ours["results"]["scores"].as_array().unwrap();
    assert_eq!(scores.len(), 7);
    for score in scores {
        let task = score["task"].as_str().unwrap();
        let ours = score["spearman"].as_f64().unwrap();
        let theirs = reference[task]["spearman"].as_f64().unwrap();
        assert!(
            (ours - theirs).abs() <= 0.05,
            "{pooling} {task}: gcse {ours:.3}, PyTorch {theirs:.3}"
        );
        assert_eq!(score["pairs"], reference[task]["pairs"], "{task}");
    }
    let avg = ours["results"]["average"].as_f64().unwrap();
    assert!((avg - reference["average"].as_f64().unwrap()).abs() <= 0.05);
}

#[test]
fn sts_table_matches_pytorch_with_avg_pooling() {
    check_table("avg");
}

#[test]
fn sts_table_matches_pytorch_with_cls_before_pooler() {
    check_table("cls_before_pooler");
}
