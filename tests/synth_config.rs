//! Synthesis configs: the shipped demo config loads, and a bad one fails at
//! load time with the file and the key at fault.

mod common;

use std::path::{Path, PathBuf};

use common::temp_dir;
use gcse::synth::config::{LlmBackend, SynthConfig};
use gcse::synth::neighbours::NeighbourMethod;
use gcse::synth::prompt::PromptKind;
use gcse::triplets::Origin;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const BASE: &str = r#"
out_dir = "runs/x"
[[sources.general]]
path = "sentences.txt"
[llm]
backend = "http"
[llm.http]
endpoints = ["http://127.0.0.1:8080/v1"]
model = "m"
"#;

fn load(dir: &Path, name: &str, text: &str) -> Result<SynthConfig, String> {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    SynthConfig::load(&path).map_err(|e| e.to_string())
}

#[test]
fn the_shipped_synthesis_configs_load_with_their_templates_and_sources() {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(root().join("configs")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.starts_with("synth-") && name.ends_with(".toml")) {
            continue;
        }
        let config = SynthConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
        for kind in PromptKind::ALL {
            config.template(kind).unwrap();
        }
        if common::senteval_dir("the_shipped_synthesis_configs_load").is_some() {
            let sources = config.source_sentences().unwrap();
            assert!(!sources.is_empty(), "{name}");
        }
        names.push(name);
    }
    assert!(names.contains(&"synth-demo.toml".to_string()), "{names:?}");
    let demo = SynthConfig::load(&root().join("configs/synth-demo.toml")).unwrap();
    assert_eq!(demo.llm.backend, LlmBackend::Local);
    assert_eq!(demo.generate.neighbours.method, NeighbourMethod::Graph);
    if common::senteval_dir("the_shipped_synthesis_configs_load").is_some() {
        let sources = demo.source_sentences().unwrap();
        let domain = sources.iter().filter(|(_, o)| *o == Origin::Domain).count();
        assert_eq!((sources.len(), domain), (200, 100));
    }
}

#[test]
fn defaults_follow_the_authors_code() {
    let dir = temp_dir("synth-config-defaults");
    let config = load(&dir, "base.toml", BASE).unwrap();
    let g = &config.generate;
    let names = |w: Vec<(PromptKind, f64)>| {
        w.into_iter()
            .map(|(k, w)| (k.name(), w))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(g.negative_weights().unwrap()),
        [
            ("antisense", 0.7),
            ("entity_revision", 0.15),
            ("quantity_revision", 0.15)
        ]
    );
    assert_eq!(
        names(g.positive_weights().unwrap()),
        [("preceding", 0.2), ("regenerate", 0.3), ("rewrite", 0.5)]
    );
    assert_eq!(config.llm.http.as_ref().unwrap().retries, 4);
}

#[test]
fn bad_configs_name_the_file_and_the_problem() {
    let dir = temp_dir("synth-config-bad");
    let cases = [
        ("typo.toml", format!("{BASE}\n[generate]\npositivs = 3\n"), "unknown field `positivs`"),
        ("kind.toml", format!("{BASE}\n[generate.negative_kinds]\nrewrite = 1.0\n"), "generate.negative_kinds.rewrite: not one of antisense, entity_revision, quantity_revision"),
        ("zero.toml", format!("{BASE}\n[generate.positive_kinds]\nrewrite = 0.0\n"), "generate.positive_kinds: no kind has a weight above 0"),
        ("negative.toml", format!("{BASE}\n[generate.positive_kinds]\nrewrite = -1.0\n"), "`generate.positive_kinds.rewrite` must be a number >= 0, not -1"),
        ("prompt.toml", format!("{BASE}\n[prompts]\nrewrit = \"x.txt\"\n"), "[prompts] rewrit: no such prompt kind"),
        ("local.toml", BASE.replace("backend = \"http\"", "backend = \"local\""), "needs an [llm.local] section"),
        ("nosource.toml", BASE.replace("[[sources.general]]\npath = \"sentences.txt\"", "[sources]"), "needs at least one"),
        ("top_p.toml", format!("{BASE}\n[extract]\ntop_p = 0.0\n"), "`extract.top_p` must be in (0, 1], not 0"),
    ];
    for (name, text, words) in cases {
        let err = load(&dir, name, &text).unwrap_err();
        assert!(err.contains(name), "{name}: {err}");
        assert!(err.contains(words), "{name}: {err}");
    }
}
