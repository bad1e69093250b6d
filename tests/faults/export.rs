//! `gcse export`: a folder that is not a model is never replaced without
//! `--force`, a file never, and nothing beside the target is touched.

use crate::configs::train;
use crate::harness::{run, run_table, Case};
use crate::world::World;

fn export<'a>(to: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["export", "run", "--to", to];
    args.extend_from_slice(extra);
    args
}

fn cases(w: &World) -> Vec<Case> {
    w.write("theses/thesis.txt", "four years of work");
    w.write("a-file", "not a folder");
    w.write("exp/v1.old/thesis.txt", "also mine");
    w.write("forced/notes.txt", "replace me");
    std::fs::create_dir_all(w.path("empty")).unwrap();
    vec![
        Case::success("new-folder", &export("exported", &[]), &["exported"]),
        Case::success(
            "again-over-a-model",
            &export("exported", &[]),
            &["exported"],
        )
        .may_change(&w.path("exported")),
        Case::success("empty-folder", &export("empty", &[]), &["empty"]),
        Case::error(
            "user-folder",
            &export("theses", &[]),
            &["theses", "thesis.txt", "--force"],
        ),
        Case::error("a-file", &export("a-file", &[]), &["a-file", "is a file"]),
        Case::error(
            "a-file-forced",
            &export("a-file", &["--force"]),
            &["a-file", "is a file"],
        ),
        Case::success("forced", &export("forced", &["--force"]), &["forced"])
            .may_change(&w.path("forced")),
        Case::success("dotted-name", &export("exp/v1.2", &[]), &["exp/v1.2"]),
        Case::error(
            "step-absent",
            &export("other", &["--step", "99"]),
            &["step-00000099", "no complete checkpoint"],
        )
        .leaves_no(&w.path("other")),
        Case::error(
            "run-absent",
            &["export", "no-run", "--to", "x"],
            &["no-run", "config.toml"],
        )
        .leaves_no(&w.path("x")),
        Case::error(
            "not-a-run",
            &["export", "theses", "--to", "x"],
            &["theses", "config.toml"],
        )
        .leaves_no(&w.path("x")),
    ]
}

#[test]
fn export_targets() {
    let w = World::new("export");
    let config = w.experiment("exp", &[]);
    let trained = run(
        &w.dir,
        &train(&config)
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>(),
        &[],
        std::time::Duration::from_secs(120),
    );
    assert_eq!(trained.code, Some(0), "{}", trained.stderr);
    let tally = run_table("export", &w.dir, cases(&w));
    assert!(tally.cases >= 10, "{tally:?}");
    assert!(w.path("forced/model.safetensors").is_file());
    assert!(!w.path("forced/notes.txt").exists());
    assert!(w.path("exp/v1.2/model.safetensors").is_file());

    let card = std::fs::read_to_string(w.path("exported/README.md")).unwrap();
    for expected in [
        "library_name: sentence-transformers",
        "pipeline_tag: sentence-similarity",
        "- simcse",
        "| objective | `simcse` |",
        "| batch size |",
        "No test results",
    ] {
        assert!(
            card.contains(expected),
            "{expected} in the model card:\n{card}"
        );
    }
    let st: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(w.path("exported/config_sentence_transformers.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(st["similarity_fn_name"], "cosine");

    // Two-layer poolings have no sentence-transformers module: refused.
    let strings = |args: &[&str]| args.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut args = train(&config);
    args.extend([
        "--run-dir",
        "run-afl",
        "--set",
        "model.eval_pooling=avg_first_last",
    ]);
    let limit = std::time::Duration::from_secs(120);
    let trained = run(&w.dir, &strings(&args), &[], limit);
    assert_eq!(trained.code, Some(0), "{}", trained.stderr);
    let refused = run(
        &w.dir,
        &strings(&["export", "run-afl", "--to", "afl"]),
        &[],
        limit,
    );
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("avg_first_last")
            && refused.stderr.contains("sentence-transformers"),
        "{}",
        refused.stderr
    );
    assert!(!w.path("afl").exists(), "nothing written");
    std::fs::remove_dir_all(&w.dir).unwrap();
}
