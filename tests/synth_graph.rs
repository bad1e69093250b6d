//! The entity knowledge graph against the paper's equations 3-8, evaluated
//! here by brute force over the edge sets on a hand-built fixture, and
//! against sets worked out by hand.

use std::collections::BTreeSet;

use gcse::synth::graph::KnowledgeGraph;
use gcse::synth::knowledge::Knowledge;

fn e(text: &str, kind: &str) -> Knowledge {
    Knowledge::entity(text, kind)
}

/// Five sentences' knowledge: people, sports and cities overlapping, a
/// lower-case repeat of "Madrid", quantities in two sentences.
fn fixture() -> Vec<Vec<Knowledge>> {
    vec![
        // Three boys play football in a park near Madrid.
        vec![
            e("boys", "person"),
            e("football", "sport"),
            e("park", "place"),
            e("Madrid", "city"),
            Knowledge::quantity("Three", "number of people", "3"),
        ],
        // A girl plays tennis in madrid.
        vec![
            e("girl", "person"),
            e("tennis", "sport"),
            e("madrid", "city"),
        ],
        // Two men watch football in Lisbon.
        vec![
            e("men", "person"),
            e("football", "sport"),
            e("Lisbon", "city"),
            Knowledge::quantity("Two", "number of people", "2"),
        ],
        // A chef cooks soup in Paris.
        vec![e("chef", "person"), e("soup", "dish"), e("Paris", "city")],
        // Paris and Madrid are capitals.
        vec![e("Paris", "city"), e("Madrid", "city")],
    ]
}

fn graph() -> KnowledgeGraph {
    let sentences = fixture();
    KnowledgeGraph::build(sentences.iter().map(Vec::as_slice))
}

fn key(text: &str) -> String {
    text.to_lowercase()
}

/// Equations 3-8 evaluated literally, over node names (lower-cased).
struct Literal {
    hard: BTreeSet<(String, String)>,
    soft: BTreeSet<(String, String)>,
    entities: BTreeSet<String>,
}

impl Literal {
    fn new(sentences: &[Vec<Knowledge>]) -> Self {
        let mut hard = BTreeSet::new();
        let mut soft = BTreeSet::new();
        let mut entities = BTreeSet::new();
        for items in sentences {
            for (j, kj) in items.iter().enumerate() {
                entities.insert(key(&kj.text));
                // Equation 3 (type edges; quantity edges do not enter eq. 5).
                hard.insert((key(&kj.text), format!("type:{}", kj.kind)));
                // Equation 4, entity-entity part, k != j.
                for (k, kk) in items.iter().enumerate() {
                    if k != j {
                        soft.insert((key(&kj.text), key(&kk.text)));
                    }
                }
            }
        }
        Literal {
            hard,
            soft,
            entities,
        }
    }

    fn t_r(&self, t: &str) -> BTreeSet<String> {
        self.entities
            .iter()
            .filter(|p| {
                self.hard
                    .iter()
                    .any(|(a, c)| a == t && self.hard.contains(&(p.to_string(), c.clone())))
            })
            .cloned()
            .collect()
    }

    fn t_s(&self, t: &str) -> BTreeSet<String> {
        self.entities
            .iter()
            .filter(|p| self.soft.contains(&(t.to_string(), p.to_string())) && *p != t)
            .cloned()
            .collect()
    }

    fn t_p(&self, t: &str) -> BTreeSet<String> {
        let near = self.t_s(t);
        let same_type = self.t_r(t);
        self.entities
            .iter()
            .filter(|p| same_type.contains(*p) && !near.is_disjoint(&self.t_s(p)))
            .cloned()
            .collect()
    }
}

fn names(graph: &KnowledgeGraph, ids: BTreeSet<usize>) -> BTreeSet<String> {
    ids.into_iter().map(|i| key(graph.entity_text(i))).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| key(s)).collect()
}

#[test]
fn search_sets_match_the_equations_for_every_entity() {
    let sentences = fixture();
    let literal = Literal::new(&sentences);
    let graph = graph();
    assert_eq!(literal.entities.len(), 13);
    for t in &literal.entities {
        let id = graph.entity_id(t).expect("every entity is a node");
        let t_r = names(&graph, graph.t_r(id));
        let t_p = names(&graph, graph.t_p(id));
        assert_eq!(t_r, literal.t_r(t), "T_r({t})");
        assert_eq!(names(&graph, graph.t_s(id)), literal.t_s(t), "T_s({t})");
        assert_eq!(t_p, literal.t_p(t), "T_p({t})");
        let union: BTreeSet<String> = t_r.union(&t_p).cloned().collect();
        assert_eq!(names(&graph, graph.t(id)), union, "T({t})");
        // Equation 7 keeps T_p inside T_r, so T is T_r.
        assert!(t_p.is_subset(&t_r), "T_p({t}) within T_r");
    }
}

#[test]
fn search_sets_match_the_hand_worked_values() {
    let graph = graph();
    let boys = graph.entity_id("boys").unwrap();
    assert_eq!(
        names(&graph, graph.t_r(boys)),
        set(&["boys", "girl", "men", "chef"])
    );
    assert_eq!(
        names(&graph, graph.t_s(boys)),
        set(&["football", "park", "Madrid", "Three"])
    );
    // girl shares Madrid with boys, men shares football; chef shares nothing.
    assert_eq!(
        names(&graph, graph.t_p(boys)),
        set(&["boys", "girl", "men"])
    );
    assert_eq!(graph.replacements("boys"), ["girl", "men", "chef"]);

    // "madrid" in sentence 2 is the node "Madrid" of sentence 1.
    let madrid = graph.entity_id("MADRID").unwrap();
    assert_eq!(graph.entity_text(madrid), "Madrid");
    assert_eq!(
        names(&graph, graph.t_r(madrid)),
        set(&["Madrid", "Lisbon", "Paris"])
    );
    // Paris is a soft neighbour of Madrid but shares no third entity with it.
    assert_eq!(names(&graph, graph.t_p(madrid)), set(&["Madrid", "Lisbon"]));
    assert_eq!(graph.replacements("Madrid"), ["Lisbon", "Paris"]);
    assert!(graph.replacements("Rome").is_empty());

    let three = graph.entity_id("Three").unwrap();
    assert_eq!(graph.quantities_of(three), ["3"]);
    assert_eq!(graph.types_of(three), ["number of people"]);
    assert_eq!(
        graph.soft_types_of(three),
        ["person", "sport", "place", "city"]
    );
}

#[test]
fn stats_json_and_dot_count_the_same_edges() {
    let graph = graph();
    let stats = graph.stats();
    assert_eq!((stats.entities, stats.types, stats.quantities), (13, 6, 2));
    assert_eq!(stats.hard_type_edges, 13);
    assert_eq!(stats.hard_quantity_edges, 2);
    // Pairs within each sentence: 10 + 3 + 6 + 3 + 1, none repeated.
    assert_eq!(stats.soft_entity_edges, 23);
    let by_type: Vec<(&str, usize)> = stats
        .entities_by_type
        .iter()
        .map(|(c, n)| (c.as_str(), *n))
        .collect();
    assert_eq!(
        by_type,
        [
            ("person", 4),
            ("city", 3),
            ("number of people", 2),
            ("sport", 2),
            ("dish", 1),
            ("place", 1)
        ]
    );

    let dot = graph.to_dot();
    let solid = dot.matches("style=solid").count();
    let dotted = dot.matches("style=dotted").count();
    assert_eq!(solid, stats.hard_type_edges + stats.hard_quantity_edges);
    assert_eq!(dotted, stats.soft_entity_edges + stats.soft_type_edges);
    assert!(dot.starts_with("graph knowledge {") && dot.trim_end().ends_with('}'));

    let json = graph.to_json();
    let entities = json["entities"].as_array().unwrap();
    assert_eq!(entities.len(), 13);
    let paris = entities.iter().find(|e| e["text"] == "Paris").unwrap();
    assert_eq!(paris["types"], serde_json::json!(["city"]));
    assert_eq!(
        paris["soft_entities"],
        serde_json::json!(["Madrid", "chef", "soup"])
    );
}

#[test]
fn nearest_same_type_ranks_by_cosine_and_skips_entities_without_vectors() {
    let graph = graph();
    let boys = graph.entity_id("boys").unwrap();
    let vector = |id: usize| -> Option<Vec<f32>> {
        match graph.entity_text(id) {
            "boys" => Some(vec![1.0, 0.0]),
            "girl" => Some(vec![0.6, 0.8]),
            "men" => Some(vec![0.9, 0.1]),
            "chef" => None,
            _ => Some(vec![1.0, 0.0]),
        }
    };
    let ranked = graph.nearest_same_type(boys, 10, vector);
    let texts: Vec<&str> = ranked.iter().map(|&(i, _)| graph.entity_text(i)).collect();
    assert_eq!(texts, ["men", "girl"]);
    assert!((ranked[1].1 - 0.6).abs() < 1e-6);
    assert_eq!(graph.nearest_same_type(boys, 1, vector).len(), 1);
}
