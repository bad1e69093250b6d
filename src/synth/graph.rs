//! The entity knowledge graph `G = <V, E>` of the paper (equations 2-4) and
//! its replacement search `T(t)` (equations 5-8), plus the authors' code's
//! alternative: same-type entities ranked by embedding similarity.
//!
//! Nodes are entity texts `t`, types `c` and quantities `q`, each kind its
//! own namespace. Texts are compared case-blind with runs of whitespace
//! collapsed; a node is shown in the form it was first seen in.
//!
//! Edges, for sentence `i` with triples `k_i1 .. k_in`:
//! - hard, `E_r`: `(t_ij, c_ij)` and `(t_ij, q_ij)`;
//! - soft, `E_s`: `(t_ij, t_ik)` and `(t_ij, c_il)` for `k, l != j`
//!   (a triple's own text is never its soft neighbour).
//!
//! Read literally, equation 7 keeps only `t_ip` in `T_r(t_ij)`, so
//! `T_p(t) ⊆ T_r(t)` and `T(t) = T_r(t)`; `T_p` is still the sharper set
//! (same type *and* a shared in-context neighbour), which generation can
//! prefer. Every set is as the equations define it, `t` itself included
//! where they include it; [`KnowledgeGraph::replacements`] leaves `t` out.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

use serde::Serialize;

use super::knowledge::Knowledge;

/// Index of an entity-text node.
pub type EntityId = usize;

/// Interned node names of one kind.
#[derive(Debug, Default, Clone)]
struct Names {
    shown: Vec<String>,
    index: HashMap<String, usize>,
}

impl Names {
    fn intern(&mut self, text: &str) -> usize {
        let key = normalise(text);
        if let Some(&id) = self.index.get(&key) {
            return id;
        }
        self.shown
            .push(text.split_whitespace().collect::<Vec<_>>().join(" "));
        self.index.insert(key, self.shown.len() - 1);
        self.shown.len() - 1
    }

    fn get(&self, text: &str) -> Option<usize> {
        self.index.get(&normalise(text)).copied()
    }
}

/// The comparison key of a node text: lower case, whitespace runs as one
/// space, no surrounding space.
fn normalise(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// The entity knowledge graph.
#[derive(Debug, Default, Clone)]
pub struct KnowledgeGraph {
    entities: Names,
    types: Names,
    quantities: Names,
    /// Hard edges `(t, c)`, by entity.
    entity_types: Vec<BTreeSet<usize>>,
    /// Hard edges `(t, q)`, by entity.
    entity_quantities: Vec<BTreeSet<usize>>,
    /// Hard edges `(t, c)`, by type.
    type_members: Vec<BTreeSet<EntityId>>,
    /// Soft edges `(t, t')`, by entity (symmetric).
    soft_entities: Vec<BTreeSet<EntityId>>,
    /// Soft edges `(t, c)`, by entity.
    soft_types: Vec<BTreeSet<usize>>,
}

/// Node and edge counts, and the most populous types.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GraphStats {
    /// Entity-text nodes.
    pub entities: usize,
    /// Type nodes.
    pub types: usize,
    /// Quantity nodes.
    pub quantities: usize,
    /// Hard edges entity → type.
    pub hard_type_edges: usize,
    /// Hard edges entity → quantity.
    pub hard_quantity_edges: usize,
    /// Soft edges between entities, each unordered pair once.
    pub soft_entity_edges: usize,
    /// Soft edges entity → type.
    pub soft_type_edges: usize,
    /// Entities of each type, most first (ties by name).
    pub entities_by_type: Vec<(String, usize)>,
}

impl KnowledgeGraph {
    /// The graph of the knowledge sets `K_i`, one per sentence.
    pub fn build<'a>(sentences: impl IntoIterator<Item = &'a [Knowledge]>) -> Self {
        let mut graph = KnowledgeGraph::default();
        for items in sentences {
            graph.add_sentence(items);
        }
        graph
    }

    /// Adds one sentence's triples and their edges.
    pub fn add_sentence(&mut self, items: &[Knowledge]) {
        let ids: Vec<(EntityId, usize)> = items
            .iter()
            .map(|k| {
                let t = self.entity(&k.text);
                let c = self.types.intern(&k.kind);
                grow(&mut self.type_members, c + 1);
                self.entity_types[t].insert(c);
                self.type_members[c].insert(t);
                if let Some(q) = &k.quantity {
                    let q = self.quantities.intern(q);
                    self.entity_quantities[t].insert(q);
                }
                (t, c)
            })
            .collect();
        for (j, &(t, _)) in ids.iter().enumerate() {
            for (k, &(other, kind)) in ids.iter().enumerate() {
                if k == j {
                    continue;
                }
                if other != t {
                    self.soft_entities[t].insert(other);
                }
                self.soft_types[t].insert(kind);
            }
        }
    }

    fn entity(&mut self, text: &str) -> EntityId {
        let id = self.entities.intern(text);
        for edges in [
            &mut self.entity_types,
            &mut self.entity_quantities,
            &mut self.soft_entities,
            &mut self.soft_types,
        ] {
            grow(edges, id + 1);
        }
        id
    }

    /// The entity node of `text`, if the graph has one.
    pub fn entity_id(&self, text: &str) -> Option<EntityId> {
        self.entities.get(text)
    }

    /// The text of entity `id`, as first seen.
    pub fn entity_text(&self, id: EntityId) -> &str {
        &self.entities.shown[id]
    }

    /// Types of entity `id` (its hard edges to types).
    pub fn types_of(&self, id: EntityId) -> Vec<&str> {
        self.entity_types[id]
            .iter()
            .map(|&c| self.types.shown[c].as_str())
            .collect()
    }

    /// Quantities of entity `id` (its hard edges to quantities).
    pub fn quantities_of(&self, id: EntityId) -> Vec<&str> {
        self.entity_quantities[id]
            .iter()
            .map(|&q| self.quantities.shown[q].as_str())
            .collect()
    }

    /// Equation 5: entities sharing a type with `t` (`t` included).
    pub fn t_r(&self, t: EntityId) -> BTreeSet<EntityId> {
        self.entity_types[t]
            .iter()
            .flat_map(|&c| self.type_members[c].iter().copied())
            .collect()
    }

    /// Equation 6: entities with a soft edge to `t`.
    pub fn t_s(&self, t: EntityId) -> BTreeSet<EntityId> {
        self.soft_entities[t].clone()
    }

    /// Equation 7: entities of `T_r(t)` that share a soft neighbour with `t`.
    pub fn t_p(&self, t: EntityId) -> BTreeSet<EntityId> {
        let near = &self.soft_entities[t];
        self.t_r(t)
            .into_iter()
            .filter(|&p| !near.is_disjoint(&self.soft_entities[p]))
            .collect()
    }

    /// Equation 8: `T_r(t) ∪ T_p(t)`.
    pub fn t(&self, t: EntityId) -> BTreeSet<EntityId> {
        let mut all = self.t_r(t);
        all.extend(self.t_p(t));
        all
    }

    /// Replacement candidates for the entity `text`: `T(t)` without `t`,
    /// those of `T_p(t)` first; empty for a text the graph does not hold.
    pub fn replacements(&self, text: &str) -> Vec<&str> {
        let Some(t) = self.entity_id(text) else {
            return Vec::new();
        };
        let sharp = self.t_p(t);
        let rest = self.t(t).into_iter().filter(|p| !sharp.contains(p));
        sharp
            .iter()
            .copied()
            .chain(rest)
            .filter(|&p| p != t)
            .map(|p| self.entity_text(p))
            .collect()
    }

    /// The authors' code's alternative: entities sharing a type with `t`
    /// (not `t`), ranked by cosine similarity of their embeddings, the
    /// closest `k`. `embed` gives an entity's vector (by the frozen model,
    /// say); entities it has none for are left out.
    pub fn nearest_same_type(
        &self,
        t: EntityId,
        k: usize,
        embed: impl Fn(EntityId) -> Option<Vec<f32>>,
    ) -> Vec<(EntityId, f32)> {
        let Some(anchor) = embed(t) else {
            return Vec::new();
        };
        let mut ranked: Vec<(EntityId, f32)> = self
            .t_r(t)
            .into_iter()
            .filter(|&p| p != t)
            .filter_map(|p| embed(p).map(|v| (p, cosine(&anchor, &v))))
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.truncate(k);
        ranked
    }

    /// Node and edge counts.
    pub fn stats(&self) -> GraphStats {
        let mut entities_by_type: Vec<(String, usize)> = self
            .types
            .shown
            .iter()
            .zip(&self.type_members)
            .map(|(name, members)| (name.clone(), members.len()))
            .collect();
        entities_by_type.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let total = |edges: &[BTreeSet<usize>]| edges.iter().map(BTreeSet::len).sum::<usize>();
        GraphStats {
            entities: self.entities.shown.len(),
            types: self.types.shown.len(),
            quantities: self.quantities.shown.len(),
            hard_type_edges: total(&self.entity_types),
            hard_quantity_edges: total(&self.entity_quantities),
            soft_entity_edges: total(&self.soft_entities) / 2,
            soft_type_edges: total(&self.soft_types),
            entities_by_type,
        }
    }

    /// The graph as JSON: every entity with its types, quantities and soft
    /// neighbours (entities and types), by name.
    pub fn to_json(&self) -> serde_json::Value {
        let names = |set: &BTreeSet<usize>, names: &Names| -> Vec<String> {
            set.iter().map(|&i| names.shown[i].clone()).collect()
        };
        let entities: Vec<serde_json::Value> = (0..self.entities.shown.len())
            .map(|t| {
                serde_json::json!({
                    "text": self.entities.shown[t],
                    "types": names(&self.entity_types[t], &self.types),
                    "quantities": names(&self.entity_quantities[t], &self.quantities),
                    "soft_entities": names(&self.soft_entities[t], &self.entities),
                    "soft_types": names(&self.soft_types[t], &self.types),
                })
            })
            .collect();
        serde_json::json!({
            "entities": entities,
            "types": self.types.shown,
            "quantities": self.quantities.shown,
        })
    }

    /// The graph in GraphViz DOT: entities as ellipses, types as boxes,
    /// quantities as diamonds; hard edges solid, soft edges dotted (the
    /// paper's figure 3).
    pub fn to_dot(&self) -> String {
        let mut dot = String::from("graph knowledge {\n  node [fontname=\"Helvetica\"];\n");
        let kinds = [
            ("e", &self.entities, "ellipse"),
            ("c", &self.types, "box"),
            ("q", &self.quantities, "diamond"),
        ];
        for (prefix, names, shape) in kinds {
            for (i, name) in names.shown.iter().enumerate() {
                let _ = writeln!(dot, "  {prefix}{i} [label={}, shape={shape}];", quote(name));
            }
        }
        let edges: [(&[BTreeSet<usize>], &str, &str); 4] = [
            (&self.entity_types, "c", "solid"),
            (&self.entity_quantities, "q", "solid"),
            (&self.soft_entities, "e", "dotted"),
            (&self.soft_types, "c", "dotted"),
        ];
        for (by_entity, target, style) in edges {
            for (t, set) in by_entity.iter().enumerate() {
                for &o in set {
                    if target == "e" && o < t {
                        continue;
                    }
                    let _ = writeln!(dot, "  e{t} -- {target}{o} [style={style}];");
                }
            }
        }
        dot.push_str("}\n");
        dot
    }

    /// Soft-edge type neighbours of entity `id`.
    pub fn soft_types_of(&self, id: EntityId) -> Vec<&str> {
        self.soft_types[id]
            .iter()
            .map(|&c| self.types.shown[c].as_str())
            .collect()
    }
}

fn grow(edges: &mut Vec<BTreeSet<usize>>, len: usize) {
    if edges.len() < len {
        edges.resize_with(len, BTreeSet::new);
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let denominator = norm(a) * norm(b);
    if denominator > 0.0 {
        dot / denominator
    } else {
        0.0
    }
}

/// A DOT string literal.
fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}
