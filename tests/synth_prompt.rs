//! Prompt templates: the shipped `prompts/` files fit their kinds, and
//! substitution is strict (every failure names the file and line).

use std::path::{Path, PathBuf};

use gcse::synth::prompt::{PromptKind, PromptTemplate};

fn prompts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts")
}

#[test]
fn every_shipped_prompt_loads_for_its_kind_and_renders() {
    for kind in PromptKind::ALL {
        let path = prompts_dir().join(format!("{}.txt", kind.name()));
        let template = PromptTemplate::load_kind(&path, kind)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let values: Vec<(&str, String)> = kind
            .variables()
            .iter()
            .map(|v| (*v, format!("<value of {v}>")))
            .collect();
        let pairs: Vec<(&str, &str)> = values.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let text = template.render(&pairs).unwrap();
        for (_, value) in &pairs {
            assert!(text.contains(value), "{}: {value} missing", kind.name());
        }
        assert!(
            !text.contains("{{"),
            "{}: a placeholder is left",
            kind.name()
        );
        // The value of the last placeholder ends the prompt's last example,
        // for the model to continue.
        assert!(text.trim_end().ends_with(':'), "{}", kind.name());
    }
}

#[test]
fn substitution_is_strict() {
    let text = "Sentence: {{sentence}}\nSwap: {{entity}} -> {{replacement}}\n";
    let t = PromptTemplate::parse("p.txt", text).unwrap();
    let all = [
        ("sentence", "A cat."),
        ("entity", "cat"),
        ("replacement", "dog"),
    ];
    assert_eq!(
        t.render(&all).unwrap(),
        "Sentence: A cat.\nSwap: cat -> dog\n"
    );

    let missing = t.render(&all[..2]).unwrap_err().to_string();
    assert_eq!(missing, "p.txt:2: no value for `{{replacement}}`");

    let extra = [all[0], all[1], all[2], ("quantity", "3")];
    let unused = t.render(&extra).unwrap_err().to_string();
    assert!(
        unused.starts_with("p.txt:") && unused.contains("`quantity`"),
        "{unused}"
    );

    // A value is inserted as it is, never expanded.
    let once = PromptTemplate::parse("q.txt", "S: {{sentence}}").unwrap();
    assert_eq!(
        once.render(&[("sentence", "{{sentence}}")]).unwrap(),
        "S: {{sentence}}"
    );
}

#[test]
fn malformed_templates_name_the_line() {
    let unclosed = PromptTemplate::parse("a.txt", "one\ntwo {{sentence\n")
        .unwrap_err()
        .to_string();
    assert_eq!(unclosed, "a.txt:2: `{{` without a closing `}}`");
    let bad_name = PromptTemplate::parse("b.txt", "\n\nx {{Sentence}}")
        .unwrap_err()
        .to_string();
    assert!(
        bad_name.starts_with("b.txt:3: `{{Sentence}}` is not a placeholder"),
        "{bad_name}"
    );

    // A kind's template with a typo'd or a missing placeholder.
    let typo = PromptTemplate::parse("c.txt", "S: {{sentense}}").unwrap();
    let err = typo
        .expect_variables(PromptKind::Rewrite.variables())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "c.txt:1: unknown placeholder `{{sentense}}` (this prompt takes `{{sentence}}`)"
    );
    let partial = PromptTemplate::parse("d.txt", "S: {{sentence}} {{entity}}").unwrap();
    let err = partial
        .expect_variables(PromptKind::EntityRevision.variables())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "d.txt: the prompt never uses `{{replacement}}`"
    );

    let dir = std::env::temp_dir().join(format!("gcse-prompt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("rewrite.txt");
    std::fs::write(&file, "Paraphrase {{sentence}} and {{style}}:").unwrap();
    let err = PromptTemplate::load_kind(&file, PromptKind::Rewrite).unwrap_err();
    assert!(
        err.to_string()
            .contains("rewrite.txt:1: unknown placeholder `{{style}}`"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
