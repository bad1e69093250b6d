//! What knowledge extraction yields for one sentence: the triples
//! `<t, c, q>` of the paper's equation 1 (entity text, its type, and a
//! quantity where the text is one) and the sentence's categories.

use serde::{Deserialize, Serialize};

/// One extracted triple `<t, c, q>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Knowledge {
    /// The entity text `t`, as it occurs in the sentence.
    pub text: String,
    /// Its type `c` (e.g. `city`, `number of people`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The quantity `q` (e.g. `3`) when the text states one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<String>,
}

impl Knowledge {
    /// An entity without a quantity.
    pub fn entity(text: &str, kind: &str) -> Self {
        Knowledge {
            text: text.into(),
            kind: kind.into(),
            quantity: None,
        }
    }

    /// A quantity: its text, type and value.
    pub fn quantity(text: &str, kind: &str, quantity: &str) -> Self {
        Knowledge {
            text: text.into(),
            kind: kind.into(),
            quantity: Some(quantity.into()),
        }
    }
}

/// The knowledge of one sentence `x_i`: the set `K_i` and its categories.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentenceKnowledge {
    /// Topic categories of the sentence.
    #[serde(default)]
    pub categories: Vec<String>,
    /// The triples `k_i1 .. k_in`.
    #[serde(default)]
    pub items: Vec<Knowledge>,
}
