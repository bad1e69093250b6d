//! Replacement candidates for entity revisions, by one of two methods
//! (`[generate.neighbours] method`): the knowledge graph's T(t) of the
//! paper's equation 8 (T_p first), or the authors' code's alternative,
//! same-type entities ranked by the cosine of their embeddings under a
//! frozen sentence encoder, the closest `top_k`.

use std::collections::HashMap;

use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use super::graph::KnowledgeGraph;
use crate::backend::{self, BackendKind, BackendTask};
use crate::embed::embedder::Embeddings;
use crate::error::Result;
use crate::model::pooling::Pooling;
use crate::objective::teacher::{Teacher, TeacherSpec};

/// How replacement candidates are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NeighbourMethod {
    /// T(t) = T_r(t) ∪ T_p(t) from the knowledge graph.
    #[default]
    Graph,
    /// Same-type entities ranked by embedding cosine.
    Embedding,
}

/// `[generate.neighbours]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeighbourConfig {
    #[serde(default)]
    pub method: NeighbourMethod,
    /// The frozen encoder for `embedding` (a model directory, run directory
    /// or hub id).
    #[serde(default)]
    pub model: Option<String>,
    /// Its pooling.
    #[serde(default = "default_pooling")]
    pub pooling: Pooling,
    /// Neighbours kept per entity for `embedding`.
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    /// Where the encoder runs.
    #[serde(default = "default_backend")]
    pub backend: BackendKind,
}

impl Default for NeighbourConfig {
    fn default() -> Self {
        toml::from_str("").expect("every [generate.neighbours] key has a default")
    }
}

fn default_pooling() -> Pooling {
    Pooling::ClsBeforePooler
}
fn default_top_k() -> usize {
    10
}
fn default_backend() -> BackendKind {
    BackendKind::Auto
}

/// Each entity's replacement candidates, best first.
pub struct Neighbours {
    by_entity: HashMap<String, Vec<String>>,
}

impl Neighbours {
    /// The candidates of every entity of `graph` by `config`'s method.
    pub fn of(graph: &KnowledgeGraph, config: &NeighbourConfig) -> Result<Self> {
        let texts: Vec<String> = (0..graph.stats().entities)
            .map(|id| graph.entity_text(id).to_string())
            .collect();
        let by_entity = match config.method {
            NeighbourMethod::Graph => texts
                .iter()
                .map(|t| {
                    (
                        t.clone(),
                        graph
                            .replacements(t)
                            .into_iter()
                            .map(str::to_string)
                            .collect(),
                    )
                })
                .collect(),
            NeighbourMethod::Embedding => {
                let model = config.model.clone().ok_or_else(|| {
                    crate::error::Error::Usage(
                        "[generate.neighbours] method = \"embedding\" needs a model".into(),
                    )
                })?;
                let resolved = backend::resolve(config.backend)?;
                eprintln!(
                    "neighbours: embedding {} entities with {model} on {resolved}",
                    texts.len()
                );
                let vectors = backend::run(
                    &resolved,
                    EmbedTexts {
                        model,
                        pooling: config.pooling,
                        texts: texts.clone(),
                    },
                )?;
                let vector = |id: usize| Some(vectors.row(id).to_vec());
                (0..texts.len())
                    .map(|id| {
                        let near = graph
                            .nearest_same_type(id, config.top_k, vector)
                            .into_iter()
                            .map(|(p, _)| texts[p].clone())
                            .collect();
                        (texts[id].clone(), near)
                    })
                    .collect()
            }
        };
        Ok(Neighbours { by_entity })
    }

    /// The candidates of `entity` (none for an entity the graph lacks).
    pub fn of_entity(&self, entity: &str) -> &[String] {
        self.by_entity.get(entity).map_or(&[], Vec::as_slice)
    }
}

/// Embeds texts with a frozen encoder on a chosen backend.
struct EmbedTexts {
    model: String,
    pooling: Pooling,
    texts: Vec<String>,
}

impl BackendTask for EmbedTexts {
    type Output = Result<Embeddings>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<Embeddings> {
        let frozen = Teacher::<B>::load(
            &TeacherSpec {
                path: self.model,
                pooling: self.pooling,
                max_len: None,
                dropout: 0.0,
            },
            &device,
        )?;
        let bar = crate::progress::items(self.texts.len() as u64, "entities");
        let embeddings = frozen.embedder(64).embed(&self.texts, &bar)?;
        bar.finish_and_clear();
        Ok(embeddings)
    }
}
