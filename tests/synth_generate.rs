//! Candidate generation without an LLM: kinds drawn by weight with their
//! fallbacks, entity revisions that take knowledge-graph neighbours, the
//! knowledge JSON of the regenerate prompt, and answers read leniently.

mod common;

use gcse::backend::BackendKind;
use gcse::model::pooling::Pooling;
use gcse::rng::SplitMix64;
use gcse::synth::answers::Answer;
use gcse::synth::generate::{
    is_copied, knowledge_json, plan_source, read_candidate, same_sentence, CandidateDrop,
    CandidateRead,
};
use gcse::synth::graph::KnowledgeGraph;
use gcse::synth::knowledge::{Knowledge, SentenceKnowledge};
use gcse::synth::neighbours::{NeighbourConfig, NeighbourMethod, Neighbours};
use gcse::synth::prompt::PromptKind;

fn knowledge(items: Vec<Knowledge>) -> SentenceKnowledge {
    SentenceKnowledge {
        categories: vec!["travel".into()],
        items,
    }
}

fn graph() -> KnowledgeGraph {
    let sentences = [
        vec![
            Knowledge::entity("Paris", "city"),
            Knowledge::entity("train", "vehicle"),
        ],
        vec![
            Knowledge::entity("Lyon", "city"),
            Knowledge::entity("train", "vehicle"),
        ],
        vec![
            Knowledge::entity("Rome", "city"),
            Knowledge::quantity("3", "count", "3"),
        ],
    ];
    KnowledgeGraph::build(sentences.iter().map(Vec::as_slice))
}

#[test]
fn kinds_follow_their_weights_and_fall_back_when_they_cannot_apply() {
    let graph = graph();
    let neighbours = Neighbours::of(&graph, &NeighbourConfig::default()).unwrap();
    let paris = knowledge(vec![Knowledge::entity("Paris", "city")]);
    let only = |kind| [(kind, 1.0)];
    let plan =
        |k: Option<&SentenceKnowledge>, pos: &[(PromptKind, f64)], neg: &[(PromptKind, f64)]| {
            plan_source(k, &neighbours, (2, pos), (3, neg), &mut SplitMix64::new(9))
        };
    let kinds = |plans: &[gcse::synth::generate::Plan]| {
        plans.iter().map(|p| p.kind.clone()).collect::<Vec<_>>()
    };

    // Entity revisions swap Paris for a same-type neighbour.
    let plans = plan(
        Some(&paris),
        &only(PromptKind::Regenerate),
        &only(PromptKind::EntityRevision),
    );
    assert_eq!(
        kinds(&plans),
        [
            "regenerate",
            "regenerate",
            "entity_revision",
            "entity_revision",
            "entity_revision"
        ]
    );
    assert!(plans[..2].iter().all(|p| p.positive) && plans[2..].iter().all(|p| !p.positive));
    let replacements = graph.replacements("Paris");
    assert!(!replacements.is_empty());
    assert_eq!(neighbours.of_entity("Paris"), replacements);
    for p in &plans[2..] {
        assert_eq!(p.entity.as_deref(), Some("Paris"));
        assert!(
            replacements.contains(&p.replacement.as_deref().unwrap()),
            "{p:?}"
        );
    }

    // No knowledge: regenerate becomes rewrite, revisions antisense; no
    // quantity: a quantity revision becomes antisense.
    let plans = plan(
        None,
        &only(PromptKind::Regenerate),
        &only(PromptKind::EntityRevision),
    );
    assert_eq!(
        kinds(&plans),
        ["rewrite", "rewrite", "antisense", "antisense", "antisense"]
    );
    let plans = plan(
        Some(&paris),
        &only(PromptKind::Rewrite),
        &only(PromptKind::QuantityRevision),
    );
    assert_eq!(kinds(&plans)[2..], ["antisense", "antisense", "antisense"]);
    let three = knowledge(vec![Knowledge::quantity("3", "count", "3")]);
    let plans = plan(
        Some(&three),
        &only(PromptKind::Rewrite),
        &only(PromptKind::QuantityRevision),
    );
    assert!(plans[2..]
        .iter()
        .all(|p| p.kind == "quantity_revision" && p.quantity.as_deref() == Some("3")));

    // Weights: about 70 / 30 over many draws, and the same seed, the same plan.
    let weights = [
        (PromptKind::Antisense, 0.7),
        (PromptKind::EntityRevision, 0.3),
    ];
    let mut rng = SplitMix64::new(1);
    let mut revisions = 0;
    for _ in 0..1000 {
        let plans = plan_source(
            Some(&paris),
            &neighbours,
            (0, &weights),
            (1, &weights),
            &mut rng,
        );
        revisions += (plans[0].kind == "entity_revision") as usize;
    }
    assert!((250..350).contains(&revisions), "{revisions}");
    let weights = [(PromptKind::Rewrite, 0.5), (PromptKind::Preceding, 0.5)];
    assert_eq!(
        plan(Some(&paris), &weights, &weights),
        plan(Some(&paris), &weights, &weights)
    );
}

#[test]
fn the_regenerate_prompt_sees_the_extraction_layout() {
    let k = knowledge(vec![
        Knowledge::entity("Paris", "city"),
        Knowledge::quantity("three", "count", "3"),
        Knowledge::quantity("a few", "count", "several"),
    ]);
    let value: serde_json::Value = serde_json::from_str(&knowledge_json(&k)).unwrap();
    assert_eq!(value["categories"][0], "travel");
    assert_eq!(
        value["entities"],
        serde_json::json!([{"text": "Paris", "type": "city"}])
    );
    assert_eq!(value["quantities"][0]["quantity"], 3.0);
    assert_eq!(value["quantities"][1]["quantity"], "several");
}

#[test]
fn answers_are_read_leniently_and_every_drop_has_a_reason() {
    let read = |text: &str| {
        read_candidate(Some(&Answer {
            text: text.into(),
            prompt_tokens: None,
            completion_tokens: None,
        }))
    };
    let json = |t: &str| CandidateRead::Json(t.into());
    assert_eq!(read(r#" {"text": "A man sings."}"#), json("A man sings."));
    assert_eq!(
        read("```json\n{\"text\": \"A man sings.\"}\n```"),
        json("A man sings.")
    );
    assert_eq!(
        read("{'text': 'A man sings.'} and more"),
        json("A man sings.")
    );
    // Half a sentence is no candidate.
    assert_eq!(
        read(r#"{"text": "A man sin"#),
        CandidateRead::Dropped(CandidateDrop::NoText)
    );
    assert_eq!(
        read("  The man is singing.\nSentence: next"),
        CandidateRead::PlainText("The man is singing.".into())
    );
    assert_eq!(
        read("\"The man is singing.\""),
        CandidateRead::PlainText("The man is singing.".into())
    );
    // Half of `{"text": "..."}`: the key and its debris go, the value stays.
    for line in [
        r#""text": "The man is singing.""#,
        r#"  text": "The man is singing.""#,
        r#"("text": "The man is singing.")"#,
        r#"["text": 'The man is singing.']"#,
        r#"text: The man is singing.)"#,
    ] {
        assert_eq!(
            read(line),
            CandidateRead::PlainText("The man is singing.".into()),
            "{line}"
        );
    }
    // A sentence that only begins with the word is left as it is.
    assert_eq!(
        read("text messages: read them later"),
        CandidateRead::PlainText("text messages: read them later".into())
    );
    // The value's quote never closes: half a sentence again.
    assert_eq!(
        read(r#""text": "The army is on the"#),
        CandidateRead::Dropped(CandidateDrop::NoText)
    );
    assert_eq!(
        read(r#""text": """#),
        CandidateRead::Dropped(CandidateDrop::Empty)
    );
    assert_eq!(read("   \n "), CandidateRead::Dropped(CandidateDrop::Empty));
    assert_eq!(
        read(r#"{"sentence": "x"}"#),
        CandidateRead::Dropped(CandidateDrop::NoText)
    );
    assert_eq!(
        read(r#"{"text": "  "}"#),
        CandidateRead::Dropped(CandidateDrop::NoText)
    );
    assert_eq!(
        read(r#"{"text": 5}"#),
        CandidateRead::Dropped(CandidateDrop::NoText)
    );
    assert_eq!(
        read_candidate(None),
        CandidateRead::Dropped(CandidateDrop::RequestFailed)
    );
}

#[test]
fn embedding_neighbours_rank_same_type_entities_by_the_frozen_encoder() {
    let Some(model) =
        common::minilm_dir("embedding_neighbours_rank_same_type_entities_by_the_frozen_encoder")
    else {
        return;
    };
    let sentences = [
        vec![
            Knowledge::entity("Paris", "city"),
            Knowledge::entity("bicycle", "vehicle"),
        ],
        vec![
            Knowledge::entity("Paris, France", "city"),
            Knowledge::entity("Tokyo", "city"),
        ],
        vec![Knowledge::entity("a ripe banana", "fruit")],
    ];
    let graph = KnowledgeGraph::build(sentences.iter().map(Vec::as_slice));
    let config = NeighbourConfig {
        method: NeighbourMethod::Embedding,
        model: Some(model.to_string_lossy().into_owned()),
        pooling: Pooling::Avg,
        top_k: 1,
        backend: BackendKind::Cpu,
    };
    let near = Neighbours::of(&graph, &config).unwrap();
    assert_eq!(near.of_entity("Paris"), ["Paris, France"]);
    assert_eq!(near.of_entity("Paris, France"), ["Paris"]);
    assert_eq!(near.of_entity("Tokyo").len(), 1);
    // Alone in its type: nothing to swap in.
    assert!(near.of_entity("bicycle").is_empty());
    assert!(near.of_entity("a ripe banana").is_empty());
    assert!(near.of_entity("Berlin").is_empty());
    let all = Neighbours::of(
        &graph,
        &NeighbourConfig {
            top_k: 10,
            ..config
        },
    )
    .unwrap();
    assert_eq!(all.of_entity("Paris"), ["Paris, France", "Tokyo"]);
}

#[test]
fn copies_of_the_source_or_of_an_example_answer_are_recognised() {
    let prompt = "Sentence: The cat sleeps.\nParaphrase: {\"text\": \"A cat is asleep.\"}\n\nSentence: a dog runs .\nParaphrase:";
    assert!(is_copied("A cat is asleep.", "a dog runs .", prompt));
    assert!(is_copied("a dog runs .", "a dog runs . ", prompt));
    assert!(!is_copied("A dog is running.", "a dog runs .", prompt));
    // A substring of the prompt is not a copy of an example answer.
    assert!(!is_copied("cat", "a dog runs .", prompt));
    assert!(!is_copied("cat sleeps.", "a dog runs .", prompt));
    // An example's own sentence is a copy too.
    assert!(is_copied("The cat sleeps.", "a dog runs .", prompt));
    // Case, punctuation and spacing do not make a new sentence.
    assert!(is_copied("A dog runs.", "a dog runs .", prompt));
    assert!(is_copied("a CAT is asleep", "a dog runs .", prompt));
    assert!(is_copied("the cat -- sleeps!", "a dog runs .", prompt));
    assert!(!is_copied("A dog runs fast.", "a dog runs .", prompt));
    // A text without words copies nothing.
    assert!(!is_copied("?!", "...", prompt));
    assert!(same_sentence("Dogs' toys.", "dogs ' toys"));
    assert!(!same_sentence("dog's toy", "dogs toy"));
}
