//! Reading untrusted knowledge-extraction answers: hand-made cases with the
//! repairs and drops each must report, and a generated corpus of over 200
//! malformed answers (truncated at every few bytes, wrong types, prose,
//! empty, huge, deeply nested) read without a panic, every drop counted and
//! every kept entity found in its sentence.

use gcse::synth::extraction::{read_answer, Discard, Extraction, ExtractionTally, Repair};
use gcse::synth::knowledge::Knowledge;

const SENTENCE: &str = "Three boys are playing football in a park near Madrid.";
const VALID: &str = r#"{"categories": ["sport", "leisure"], "entities": [{"text": "boys", "type": "person"}, {"text": "football", "type": "sport"}, {"text": "park", "type": "place"}, {"text": "Madrid", "type": "city"}], "quantities": [{"text": "Three", "type": "number of people", "quantity": 3}]}"#;

fn texts(e: &Extraction) -> Vec<&str> {
    e.knowledge
        .as_ref()
        .map(|k| k.items.iter().map(|i| i.text.as_str()).collect())
        .unwrap_or_default()
}

#[test]
fn a_clean_answer_needs_no_repair() {
    let e = read_answer(VALID, SENTENCE);
    assert!(e.repairs.is_empty() && e.drops.is_empty(), "{e:?}");
    let k = e.knowledge.unwrap();
    assert_eq!(k.categories, ["sport", "leisure"]);
    assert_eq!(k.items.len(), 5);
    assert_eq!(
        k.items[4],
        Knowledge::quantity("Three", "number of people", "3")
    );
}

/// A named answer with the repairs, drops and kept entity texts it must give.
type Case = (
    &'static str,
    String,
    Vec<Repair>,
    Vec<Discard>,
    Vec<&'static str>,
);

#[test]
fn each_fault_is_repaired_or_dropped_and_named() {
    let huge = format!(
        "{VALID}\n{}",
        "Sentence: more text. JSON: {}\n".repeat(4000)
    );
    let deep = format!("{{\"entities\": {}", "[".repeat(200));
    let cases: Vec<Case> = vec![
        ("fence", format!("```json\n{VALID}\n```"), vec![Repair::CodeFence], vec![], vec!["boys", "football", "park", "Madrid", "Three"]),
        ("prose", format!("Sure! Here is the JSON: {VALID} Hope it helps."), vec![Repair::SurroundingText], vec![], vec!["boys", "football", "park", "Madrid", "Three"]),
        ("single quotes", "{'entities': [{'text': 'boys', 'type': 'person'}]}".into(), vec![Repair::SingleQuotes], vec![], vec!["boys"]),
        ("trailing commas", r#"{"entities": [{"text": "park", "type": "place",},],}"#.into(), vec![Repair::TrailingComma], vec![], vec!["park"]),
        ("bare words", "{entities: [{text: boys, type: person, proper: False}], quantities: None}".into(), vec![Repair::BareWord], vec![], vec!["boys"]),
        ("truncated", r#"{"entities": [{"text": "boys", "type": "person"}, {"text": "foot"#.into(), vec![Repair::Truncated], vec![Discard::ItemMissingField], vec!["boys"]),
        ("number as text", r#"{"categories": "sport", "entities": [{"text": 3, "type": "x"}]}"#.into(), vec![Repair::WrongType], vec![Discard::NotInSentence], vec![]),
        ("quantity missing", r#"{"quantities": [{"text": "Three", "type": "count"}]}"#.into(), vec![Repair::QuantityMissing], vec![], vec!["Three"]),
        ("spelling", r#"{"entities": [{"text": "MADRID ", "type": "city"}, {"text": "a  Park", "type": "place"}]}"#.into(), vec![Repair::EntitySpelling], vec![], vec!["Madrid", "a park"]),
        ("invented entity", r#"{"entities": [{"text": "Barcelona", "type": "city"}, {"text": "boys", "type": "person"}]}"#.into(), vec![], vec![Discard::NotInSentence], vec!["boys"]),
        ("duplicate", r#"{"entities": [{"text": "boys", "type": "person"}, {"text": "Boys", "type": "Person"}]}"#.into(), vec![Repair::EntitySpelling], vec![Discard::DuplicateItem], vec!["boys"]),
        ("missing type", r#"{"entities": [{"text": "boys"}, {"text": "park", "type": ""}, "football"]}"#.into(), vec![], vec![Discard::ItemMissingField, Discard::ItemMissingField, Discard::ItemNotObject], vec![]),
        ("one entity not in a list", r#"{"entities": {"text": "boys", "type": "person"}}"#.into(), vec![Repair::WrongType], vec![], vec!["boys"]),
        ("empty", "  \n".into(), vec![], vec![Discard::Empty], vec![]),
        ("prose only", "The sentence mentions boys and a park.".into(), vec![], vec![Discard::NoJson], vec![]),
        ("unrelated object", r#"[{"text": "boys"}]"#.into(), vec![Repair::SurroundingText], vec![Discard::NoKnowledgeFields], vec![]),
        ("not json", "{ this is : not [ json }".into(), vec![Repair::BareWord], vec![Discard::Unreadable], vec![]),
        ("deep", deep, vec![], vec![Discard::Unreadable], vec![]),
        ("huge", huge, vec![Repair::SurroundingText, Repair::Clipped], vec![], vec!["boys", "football", "park", "Madrid", "Three"]),
    ];
    for (name, answer, repairs, drops, kept) in cases {
        let e = read_answer(&answer, SENTENCE);
        assert_eq!(e.repairs, repairs, "{name}: repairs");
        assert_eq!(e.drops, drops, "{name}: drops");
        assert_eq!(texts(&e), kept, "{name}: kept");
    }
}

/// Four sentences with a valid answer each.
fn sources() -> Vec<(&'static str, String)> {
    vec![
        (SENTENCE, VALID.to_string()),
        (
            "A woman is slicing 2 onions in the kitchen.",
            r#"{"categories": ["food"], "entities": [{"text": "woman", "type": "person"}, {"text": "onions", "type": "vegetable"}, {"text": "kitchen", "type": "room"}], "quantities": [{"text": "2", "type": "number of onions", "quantity": 2}]}"#.into(),
        ),
        (
            "The company sold 2.5 million phones in March.",
            r#"{"categories": ["business"], "entities": [{"text": "company", "type": "organization"}, {"text": "phones", "type": "product"}, {"text": "March", "type": "month"}], "quantities": [{"text": "2.5 million", "type": "number of products", "quantity": 2500000}]}"#.into(),
        ),
        (
            "Ein Mann fährt mit dem Fahrrad über die Brücke.",
            r#"{"categories": ["transport"], "entities": [{"text": "Mann", "type": "person"}, {"text": "Fahrrad", "type": "vehicle"}, {"text": "Brücke", "type": "structure"}], "quantities": []}"#.into(),
        ),
    ]
}

/// Malformed variants of one valid answer: every truncation on a grid of
/// byte offsets, and a dozen systematic corruptions.
fn corrupt(answer: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bounds: Vec<usize> = answer.char_indices().map(|(i, _)| i).collect();
    for k in 0..40 {
        out.push(answer[..bounds[k * bounds.len() / 40]].to_string());
    }
    out.push(answer.replace('"', "'"));
    out.push(answer.replace("\"text\": \"", "\"text\": \"no such "));
    out.push(answer.replace("\"type\"", "\"kind\""));
    out.push(answer.replace("\"text\": \"", "\"text\": [\""));
    out.push(answer.replace(['[', ']'], ""));
    out.push(answer.replace('}', ""));
    out.push(answer.replace(',', ""));
    out.push(answer.replace(':', " = "));
    out.push(format!("{answer}{answer}"));
    out.push(answer.chars().rev().collect());
    out.push(answer.replace("\"entities\"", "\"entities\": null, \"x\""));
    out.push(answer.to_uppercase());
    let third: String = answer.chars().take(bounds.len() / 3).collect();
    out.push(format!("I cannot help with that. {third}"));
    out
}

#[test]
fn a_corpus_of_malformed_answers_is_read_without_panic_and_counted() {
    let mut corpus: Vec<(&str, String)> = Vec::new();
    for (sentence, answer) in sources() {
        for bad in corrupt(&answer) {
            corpus.push((sentence, bad));
        }
    }
    for junk in [
        "",
        " ",
        "null",
        "{}",
        "[]",
        "{{{{",
        "}}}}",
        "\"",
        "{\"",
        "{'entities': [",
        "\u{0}\u{1}{\u{2}",
        "```json\n```",
        "JSON:",
    ] {
        corpus.push((SENTENCE, junk.to_string()));
    }
    corpus.push((SENTENCE, "{\"entities\": [".repeat(50_000)));
    corpus.push((SENTENCE, "x".repeat(1 << 20)));
    assert!(corpus.len() >= 200, "{} answers", corpus.len());

    let mut tally = ExtractionTally::default();
    let mut whole_drops = 0;
    for (sentence, answer) in &corpus {
        let e = read_answer(answer, sentence);
        tally.add(&e);
        let answer_level = [
            Discard::Empty,
            Discard::NoJson,
            Discard::Unreadable,
            Discard::NotAnObject,
            Discard::NoKnowledgeFields,
        ];
        let dropped_whole = e.drops.iter().filter(|d| answer_level.contains(d)).count();
        assert_eq!(
            dropped_whole,
            usize::from(e.knowledge.is_none()),
            "{answer:.200}: {e:?}"
        );
        whole_drops += dropped_whole;
        if let Some(k) = &e.knowledge {
            for item in &k.items {
                assert!(
                    sentence.contains(&item.text),
                    "{:?} not in {sentence}",
                    item.text
                );
                assert!(!item.kind.is_empty());
            }
        }
    }
    assert_eq!(tally.answers, corpus.len());
    assert_eq!(tally.kept + whole_drops, corpus.len());
    let repairs: usize = tally.repairs.values().sum();
    let drops: usize = tally.drops.values().sum();
    assert!(repairs > 0 && drops > whole_drops, "{tally:?}");
    assert!(tally.repairs[&Repair::Truncated] >= 100, "{tally:?}");
}

#[test]
fn a_truncated_answer_keeps_only_triples_of_the_whole_answer() {
    for (sentence, answer) in sources() {
        let whole = read_answer(&answer, sentence).knowledge.unwrap().items;
        for (cut, _) in answer.char_indices() {
            let e = read_answer(&answer[..cut], sentence);
            for item in e.knowledge.iter().flat_map(|k| &k.items) {
                // A quantity cut before its value is kept without it.
                let same = whole.iter().any(|w| {
                    w.text == item.text
                        && w.kind == item.kind
                        && (item.quantity.is_none() || w.quantity == item.quantity)
                });
                assert!(same, "cut at {cut}: {item:?} not in the whole answer");
            }
        }
    }
}
