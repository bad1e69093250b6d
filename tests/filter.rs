//! Filtering (docs/method.md "Filtering", paper Eq. 10-11) on hand-made candidates
//! with known scores, and bad candidate / triplet files.

use std::path::PathBuf;

use gcse::triplets::candidates::{read_all, Candidate, CandidateGroup, CandidateSpec};
use gcse::triplets::filter::select;
use gcse::triplets::rule::{Fallback, FilterMode, FilterSection, GroupScores};
use gcse::triplets::triplet::{read_triplets, TripletSpec};
use gcse::triplets::Origin;

/// One source: its positive and negative candidates with their scores.
fn group(i: usize, pos: &[f64], neg: &[f64]) -> (CandidateGroup, GroupScores) {
    let c = |role: &str, k: usize| Candidate {
        text: format!("{role} {k} of source {i}"),
        kind: format!("{role}-kind-{k}"),
    };
    (
        CandidateGroup {
            id: format!("g{i}"),
            source: format!("source {i}"),
            origin: if i.is_multiple_of(2) {
                Origin::Domain
            } else {
                Origin::General
            },
            positives: (0..pos.len()).map(|k| c("pos", k)).collect(),
            negatives: (0..neg.len()).map(|k| c("neg", k)).collect(),
        },
        GroupScores {
            positives: pos.to_vec(),
            negatives: neg.to_vec(),
        },
    )
}

/// Eight sources whose scores exercise every branch of the rule with
/// alpha = 0.80 and beta = 0.75.
fn fixture() -> (Vec<CandidateGroup>, Vec<GroupScores>) {
    [
        (&[0.95, 0.85][..], &[0.5][..]), // first positive, first negative
        (&[0.79, 0.81], &[0.76, 0.74]),  // second of each; 0.76 is rejected
        (&[0.7], &[0.9]),                // both fall back; 0.9 is rejected
        (&[], &[]),                      // no candidates
        (&[0.80], &[0.75]),              // alpha is inclusive, beta exclusive
        (&[], &[0.2, 0.1]),              // the first negative, not the lowest
        (&[0.99], &[]),
        (&[], &[0.8, 0.9]), // two rejected negatives
    ]
    .iter()
    .enumerate()
    .map(|(i, (p, n))| group(i, p, n))
    .unzip()
}

fn rule(extra: &str) -> FilterSection {
    toml::from_str(extra).unwrap()
}

/// (anchor, positive, negative) of each triplet.
fn rows(t: &[gcse::triplets::triplet::Triplet]) -> Vec<(String, String, String)> {
    t.iter()
        .map(|t| (t.anchor.clone(), t.positive.clone(), t.negative.clone()))
        .collect()
}

fn row(a: &str, p: &str, n: &str) -> (String, String, String) {
    (a.into(), p.into(), n.into())
}

#[test]
fn the_threshold_rule_picks_falls_back_and_adds_extra_rows_as_method_md_says() {
    let (groups, scores) = fixture();
    let (triplets, report) = select(&groups, Some(&scores), &rule(""), 42).unwrap();
    // Offset fallback over 8 sources: i + 6 when it exists, else i - 6 when
    // it exists, else (i + 6) mod 8.
    assert_eq!(
        rows(&triplets),
        vec![
            row("source 0", "pos 0 of source 0", "neg 0 of source 0"),
            row("source 1", "pos 1 of source 1", "neg 1 of source 1"),
            row("neg 0 of source 1", "neg 0 of source 1", "source 7"),
            row("source 2", "source 2", "source 0"),
            row("neg 0 of source 2", "neg 0 of source 2", "source 0"),
            row("source 3", "source 3", "source 1"),
            row("source 4", "pos 0 of source 4", "source 2"),
            row("neg 0 of source 4", "neg 0 of source 4", "source 2"),
            row("source 5", "source 5", "neg 0 of source 5"),
            row("source 6", "pos 0 of source 6", "source 0"),
            row("source 7", "source 7", "source 1"),
            row("neg 0 of source 7", "neg 0 of source 7", "source 1"),
            row("neg 1 of source 7", "neg 1 of source 7", "source 1"),
        ]
    );
    assert_eq!(triplets[0].positive_kind, "pos-kind-0");
    assert_eq!(triplets[0].positive_score, Some(0.95));
    assert_eq!(triplets[3].positive_kind, "anchor");
    assert_eq!(triplets[3].negative_kind, "fallback");
    assert_eq!(triplets[2].id, "g1#extra1");
    assert_eq!(triplets[2].origin, Origin::General);
    assert_eq!(
        (report.sources, report.triplets, report.extra_rows),
        (8, 13, 5)
    );
    assert_eq!((report.positives.kept, report.positives.fell_back), (4, 4));
    assert_eq!((report.negatives.kept, report.negatives.fell_back), (3, 5));
    assert_eq!(
        (report.positive_candidates, report.negative_candidates),
        (7, 9)
    );
    assert_eq!(report.positive_scores.total(), 7);
    assert_eq!(report.negative_scores.total(), 9);
    let text = report.to_string();
    assert!(text.contains("4 kept, 4 fell back"), "{text}");

    let (plain, report) = select(&groups, Some(&scores), &rule("extra_rows = false"), 42).unwrap();
    assert_eq!(plain.len(), 8);
    assert_eq!(report.extra_rows, 0);
    assert!(plain.iter().all(|t| !t.id.contains('#')));
}

#[test]
fn without_filtering_the_first_candidates_are_taken_and_random_mode_ignores_them() {
    let (groups, scores) = fixture();
    let (t, _) = select(&groups, None, &rule("mode = \"none\""), 42).unwrap();
    assert_eq!(t.len(), 8);
    assert_eq!(
        rows(&t)[2],
        row("source 2", "pos 0 of source 2", "neg 0 of source 2")
    );
    assert_eq!(rows(&t)[3], row("source 3", "source 3", "source 1"));
    let random = rule("mode = \"random\"\nfallback = \"random\"");
    let (a, report) = select(&groups, Some(&scores), &random, 7).unwrap();
    let (b, _) = select(&groups, Some(&scores), &random, 7).unwrap();
    let (c, _) = select(&groups, Some(&scores), &random, 8).unwrap();
    assert_eq!(a, b, "seeded");
    assert_ne!(rows(&a), rows(&c), "another seed, another choice");
    assert_eq!(report.positives.fell_back, 8);
    for t in &a {
        assert_eq!(t.anchor, t.positive);
        assert!(
            t.negative.starts_with("source ") && t.negative != t.anchor,
            "{t:?}"
        );
    }
    let err = select(&groups, None, &rule(""), 42)
        .unwrap_err()
        .to_string();
    assert!(err.contains("scores"), "{err}");
    let err = select(&groups[..1], Some(&scores[..1]), &rule(""), 42)
        .unwrap_err()
        .to_string();
    assert!(err.contains("at least two"), "{err}");
    assert_eq!(rule("fallback = \"random\"").fallback, Fallback::Random);
    assert_eq!(FilterSection::default().mode, FilterMode::Threshold);
}

fn write(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gcse-filter-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn candidate_spec(path: &std::path::Path, skip: bool) -> CandidateSpec {
    CandidateSpec {
        path: path.to_str().unwrap().into(),
        format: Default::default(),
        splits: Vec::new(),
        origin: Origin::General,
        on_bad_line: if skip {
            gcse::data::corpus::OnBadLine::Skip
        } else {
            Default::default()
        },
    }
}

const GOOD: &str = r#"{"id": "a", "source": "A dog runs.", "origin": "domain", "positives": [{"text": "A dog is running.", "kind": "rewrite"}], "negatives": [{"text": "A cat sleeps.", "kind": "antisense"}]}"#;

#[test]
fn bad_candidate_lines_name_the_line_or_are_counted_skips() {
    let cases: [(&[u8], &str); 8] = [
        (br#"{"source": "x", "positives": []}"#, "no field `id`"),
        (br#"{"id": "b", "source": "  "}"#, "field `source` is empty"),
        (
            br#"{"id": "b", "source": "x", "positives": [{"text": "y"}]}"#,
            "positives[0]: no field `kind`",
        ),
        (
            br#"{"id": "b", "source": "x", "negatives": "y"}"#,
            "not a list",
        ),
        (b"{\"id\": \"b\", \"source\": \"\xff\xfe\"}", "UTF-8"),
        (br#"{"id": "a", "source": "again"}"#, "duplicate id \"a\""),
        (br#"{"id": "b", "source": "x", "origin": "web"}"#, "origin"),
        (br#"{"id": "b", "source": "x""#, "invalid JSON"),
    ];
    for (i, (bad, expected)) in cases.iter().enumerate() {
        let mut bytes = format!("{GOOD}\n\n").into_bytes();
        bytes.extend_from_slice(bad);
        bytes.push(b'\n');
        let path = write(&format!("c{i}.jsonl"), &bytes);
        let err = read_all(&[candidate_spec(&path, false)])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("c{i}.jsonl:3")) && err.contains(expected),
            "{expected}: {err}"
        );
        let read = read_all(&[candidate_spec(&path, true)]).unwrap();
        assert_eq!((read.groups.len(), read.skipped), (1, 1), "{expected}");
        assert_eq!(read.groups[0].origin, Origin::Domain);
    }
    // Ids are unique across files too.
    let first = write("first.jsonl", GOOD.as_bytes());
    let err = read_all(&[candidate_spec(&first, false), candidate_spec(&first, false)])
        .unwrap_err()
        .to_string();
    assert!(err.contains("duplicate id"), "{err}");
}

#[test]
fn bad_triplet_lines_name_the_line_or_are_counted_skips() {
    let good = r#"{"id": 1, "anchor": "a", "positive": "b", "negative": "c"}"#;
    for (i, (bad, expected)) in [
        (
            r#"{"id": 2, "anchor": "a", "positive": "b"}"#,
            "no field `negative`",
        ),
        (
            r#"{"id": 2, "anchor": "", "positive": "b", "negative": "c"}"#,
            "`anchor` is empty",
        ),
        (
            r#"{"id": 1, "anchor": "a", "positive": "b", "negative": "c"}"#,
            "duplicate id \"1\"",
        ),
        (r#"[1, 2]"#, "JSON object"),
    ]
    .iter()
    .enumerate()
    {
        let path = write(
            &format!("t{i}.jsonl"),
            format!("{good}\n{bad}\n").as_bytes(),
        );
        let spec = |skip: bool| TripletSpec {
            path: path.to_str().unwrap().into(),
            origin: Origin::Domain,
            on_bad_line: if skip {
                gcse::data::corpus::OnBadLine::Skip
            } else {
                Default::default()
            },
        };
        let err = read_triplets(&[spec(false)]).unwrap_err().to_string();
        assert!(
            err.contains(&format!("t{i}.jsonl:2")) && err.contains(expected),
            "{err}"
        );
        let read = read_triplets(&[spec(true)]).unwrap();
        assert_eq!((read.triplets.len(), read.skipped), (1, 1));
        assert_eq!(read.triplets[0].origin, Origin::Domain);
    }
}

#[test]
fn snli_premises_become_sources_with_entailments_and_contradictions() {
    let dir = std::env::temp_dir().join(format!("gcse-snli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("s1.dev"), "P one .\nP one .\nP one .\nP two .\n").unwrap();
    std::fs::write(dir.join("s2.dev"), "H1\nH2\nH3\nH4\n").unwrap();
    std::fs::write(
        dir.join("labels.dev"),
        "neutral\nentailment\ncontradiction\ncontradiction\n",
    )
    .unwrap();
    let spec: CandidateSpec = toml::from_str(&format!(
        "path = {:?}\nformat = \"snli\"\nsplits = [\"dev\"]",
        dir.to_str().unwrap()
    ))
    .unwrap();
    let set = read_all(std::slice::from_ref(&spec)).unwrap();
    assert_eq!(set.groups.len(), 2);
    assert_eq!(set.groups[0].source, "P one .");
    assert_eq!(set.groups[0].positives[0].text, "H2");
    assert_eq!(set.groups[0].positives[0].kind, "snli_entailment");
    assert_eq!(set.groups[0].negatives[0].text, "H3");
    assert!(set.groups[1].positives.is_empty());
    std::fs::write(dir.join("labels.dev"), "neutral\n").unwrap();
    let err = read_all(&[spec]).unwrap_err().to_string();
    assert!(
        err.contains("labels.dev") && err.contains("4, 4 and 1 lines"),
        "{err}"
    );
}
