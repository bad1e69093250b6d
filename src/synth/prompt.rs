//! Prompt templates: text files with `{{name}}` placeholders, substituted
//! strictly. A placeholder without a value, a value without a placeholder,
//! and a malformed `{{` are errors naming the file and line, so that a typo
//! in a user's prompt file fails at load time, not after a thousand
//! requests.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The prompt kinds of the pipeline (the paper's Table 6, in our words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PromptKind {
    /// Knowledge extraction: categories, entities, quantities as JSON.
    Extract,
    /// Positive: the same meaning in other words.
    Rewrite,
    /// Positive: a segment that could precede the sentence.
    Preceding,
    /// Positive: a sentence written from the knowledge JSON alone.
    Regenerate,
    /// Negative: the sentence contradicted or negated.
    Antisense,
    /// Negative: one entity replaced by a knowledge-graph neighbour.
    EntityRevision,
    /// Negative: one quantity changed.
    QuantityRevision,
}

impl PromptKind {
    /// Every kind, in pipeline order.
    pub const ALL: [PromptKind; 7] = [
        PromptKind::Extract,
        PromptKind::Rewrite,
        PromptKind::Preceding,
        PromptKind::Regenerate,
        PromptKind::Antisense,
        PromptKind::EntityRevision,
        PromptKind::QuantityRevision,
    ];

    /// The kind's name in configs and provenance records, which is also its
    /// file name (with `.txt`) in `prompts/`.
    pub fn name(self) -> &'static str {
        match self {
            PromptKind::Extract => "extract",
            PromptKind::Rewrite => "rewrite",
            PromptKind::Preceding => "preceding",
            PromptKind::Regenerate => "regenerate",
            PromptKind::Antisense => "antisense",
            PromptKind::EntityRevision => "entity_revision",
            PromptKind::QuantityRevision => "quantity_revision",
        }
    }

    /// The placeholders a template of this kind must have, no more.
    pub fn variables(self) -> &'static [&'static str] {
        match self {
            PromptKind::Regenerate => &["knowledge"],
            PromptKind::EntityRevision => &["sentence", "entity", "replacement"],
            PromptKind::QuantityRevision => &["sentence", "quantity"],
            _ => &["sentence"],
        }
    }
}

/// One `{{name}}` in a template.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Placeholder {
    name: String,
    /// Byte range of `{{name}}` in the text.
    start: usize,
    end: usize,
    /// 1-based line.
    line: usize,
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct PromptTemplate {
    path: PathBuf,
    text: String,
    placeholders: Vec<Placeholder>,
}

impl PromptTemplate {
    /// Parses `text` (read from `path`, named in errors).
    pub fn parse(path: impl Into<PathBuf>, text: &str) -> Result<Self> {
        let path = path.into();
        let mut placeholders = Vec::new();
        let mut from = 0;
        while let Some(offset) = text[from..].find("{{") {
            let start = from + offset;
            let line = text[..start].matches('\n').count() + 1;
            let bad = |why: &str| Error::data(&path, line, why.to_string());
            let close = text[start + 2..]
                .find("}}")
                .ok_or_else(|| bad("`{{` without a closing `}}`"))?;
            let name = &text[start + 2..start + 2 + close];
            let valid = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid {
                return Err(bad(&format!(
                    "`{{{{{name}}}}}` is not a placeholder: names are lower-case letters, \
                     digits and `_`"
                )));
            }
            let end = start + 2 + close + 2;
            placeholders.push(Placeholder {
                name: name.to_string(),
                start,
                end,
                line,
            });
            from = end;
        }
        Ok(PromptTemplate {
            path,
            text: text.to_string(),
            placeholders,
        })
    }

    /// Reads and parses the template file at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(path, &text)
    }

    /// Reads the template of `kind` and checks that its placeholders are
    /// exactly the kind's variables.
    pub fn load_kind(path: &Path, kind: PromptKind) -> Result<Self> {
        let template = Self::load(path)?;
        template.expect_variables(kind.variables())?;
        Ok(template)
    }

    /// The file the template came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The placeholder names, each once.
    pub fn variables(&self) -> BTreeSet<&str> {
        self.placeholders.iter().map(|p| p.name.as_str()).collect()
    }

    /// Errors unless the placeholders are exactly `names`.
    pub fn expect_variables(&self, names: &[&str]) -> Result<()> {
        if let Some(p) = self
            .placeholders
            .iter()
            .find(|p| !names.contains(&p.name.as_str()))
        {
            return Err(Error::data(
                &self.path,
                p.line,
                format!(
                    "unknown placeholder `{{{{{}}}}}` (this prompt takes {})",
                    p.name,
                    list(names)
                ),
            ));
        }
        let have = self.variables();
        let missing: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !have.contains(n))
            .collect();
        if !missing.is_empty() {
            return Err(Error::Config {
                path: self.path.clone(),
                message: format!("the prompt never uses {}", list(&missing)),
            });
        }
        Ok(())
    }

    /// The text with every placeholder replaced by its value. Every
    /// placeholder needs a value and every value a placeholder; values are
    /// inserted as they are (a `{{` inside a value is not expanded).
    pub fn render(&self, values: &[(&str, &str)]) -> Result<String> {
        for (name, _) in values {
            if !self.placeholders.iter().any(|p| p.name == *name) {
                return Err(Error::Config {
                    path: self.path.clone(),
                    message: format!("a value was given for `{name}`, which the prompt never uses"),
                });
            }
        }
        let mut out = String::with_capacity(self.text.len());
        let mut from = 0;
        for p in &self.placeholders {
            let value = values
                .iter()
                .find(|(name, _)| *name == p.name)
                .map(|(_, value)| *value)
                .ok_or_else(|| {
                    Error::data(
                        &self.path,
                        p.line,
                        format!("no value for `{{{{{}}}}}`", p.name),
                    )
                })?;
            out.push_str(&self.text[from..p.start]);
            out.push_str(value);
            from = p.end;
        }
        out.push_str(&self.text[from..]);
        Ok(out)
    }
}

fn list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{{{{{n}}}}}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
