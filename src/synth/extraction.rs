//! Reading a knowledge-extraction answer, which is untrusted: a model may
//! wrap the JSON in a code fence or prose, quote with `'`, leave trailing
//! commas or Python literals, stop mid-object, give a number where text is
//! due, or name entities the sentence does not contain. Each answer is read
//! leniently, each repair and each drop is recorded, and every entity kept
//! occurs in the sentence, in the sentence's own spelling.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::knowledge::{Knowledge, SentenceKnowledge};

/// Answers longer than this are cut to it before reading (a model looping
/// on its own output); the cut is a [`Repair::Clipped`].
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Arrays and objects nested deeper than this make an answer unreadable.
pub const MAX_DEPTH: usize = 32;
/// Triples kept from one answer; the rest are [`Discard::TooManyItems`].
pub const MAX_ITEMS: usize = 64;

/// Something wrong with an answer that was put right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Repair {
    /// A Markdown code fence around the JSON.
    CodeFence,
    /// Text before or after the JSON object.
    SurroundingText,
    /// Strings in single quotes.
    SingleQuotes,
    /// A comma before `}` or `]`.
    TrailingComma,
    /// An unquoted key or word, or a Python literal (`True`, `None`).
    BareWord,
    /// The answer stopped inside the JSON: the unfinished element was left
    /// out and the open arrays and objects closed.
    Truncated,
    /// The answer was longer than [`MAX_ANSWER_BYTES`] and was cut.
    Clipped,
    /// A value of the wrong JSON type that could be converted (a number
    /// as text, one category as a string instead of a list).
    WrongType,
    /// A quantity triple without its value, kept without it.
    QuantityMissing,
    /// An entity found in the sentence only with other case or spacing,
    /// replaced by the sentence's spelling.
    EntitySpelling,
}

/// Something in an answer that could not be used and was dropped: the
/// whole answer for the first five, one triple for the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Discard {
    /// The answer is empty or only white space.
    Empty,
    /// The answer holds no `{`.
    NoJson,
    /// The JSON could not be read even leniently.
    Unreadable,
    /// The JSON read is not an object.
    NotAnObject,
    /// Neither `entities` nor `quantities` nor `categories` is present.
    NoKnowledgeFields,
    /// A triple that is not an object.
    ItemNotObject,
    /// A triple without its text or type.
    ItemMissingField,
    /// A triple whose text the sentence does not contain.
    NotInSentence,
    /// A triple repeating an earlier one.
    DuplicateItem,
    /// A triple beyond [`MAX_ITEMS`].
    TooManyItems,
}

/// The result of reading one answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Extraction {
    /// The knowledge read; `None` when the whole answer was dropped.
    pub knowledge: Option<SentenceKnowledge>,
    /// Each repair made, once per occurrence kind.
    pub repairs: Vec<Repair>,
    /// Each drop, once per dropped thing.
    pub drops: Vec<Discard>,
}

/// Counts over many answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ExtractionTally {
    /// Answers read.
    pub answers: usize,
    /// Answers that gave knowledge (possibly no triples).
    pub kept: usize,
    /// Triples kept.
    pub triples: usize,
    /// Repairs by kind.
    pub repairs: BTreeMap<Repair, usize>,
    /// Discards by kind.
    pub drops: BTreeMap<Discard, usize>,
}

impl ExtractionTally {
    /// Adds one answer's result.
    pub fn add(&mut self, extraction: &Extraction) {
        self.answers += 1;
        if let Some(k) = &extraction.knowledge {
            self.kept += 1;
            self.triples += k.items.len();
        }
        for r in &extraction.repairs {
            *self.repairs.entry(*r).or_default() += 1;
        }
        for d in &extraction.drops {
            *self.drops.entry(*d).or_default() += 1;
        }
    }
}

/// Reads the answer to the extraction prompt for `sentence`.
pub fn read_answer(answer: &str, sentence: &str) -> Extraction {
    let mut out = Extraction::default();
    let mut repairs = Vec::new();
    let value = match read_json_object(answer, &mut repairs) {
        Ok(value) => value,
        Err(drop) => {
            out.repairs = dedup(repairs);
            out.drops.push(drop);
            return out;
        }
    };
    let Value::Object(fields) = value else {
        out.repairs = dedup(repairs);
        out.drops.push(Discard::NotAnObject);
        return out;
    };
    if !["entities", "quantities", "categories"]
        .iter()
        .any(|k| fields.contains_key(*k))
    {
        out.repairs = dedup(repairs);
        out.drops.push(Discard::NoKnowledgeFields);
        return out;
    }
    let mut knowledge = SentenceKnowledge {
        categories: categories(fields.get("categories"), &mut repairs),
        items: Vec::new(),
    };
    for (field, is_quantity) in [("entities", false), ("quantities", true)] {
        for item in list(fields.get(field), &mut repairs) {
            let triple = match triple(item, is_quantity, &mut repairs) {
                Ok(t) => t,
                Err(drop) => {
                    out.drops.push(drop);
                    continue;
                }
            };
            let Some(text) = locate(&triple.text, sentence, &mut repairs) else {
                out.drops.push(Discard::NotInSentence);
                continue;
            };
            let triple = Knowledge { text, ..triple };
            let same = |k: &Knowledge| {
                k.text.to_lowercase() == triple.text.to_lowercase()
                    && k.kind.to_lowercase() == triple.kind.to_lowercase()
            };
            if knowledge.items.iter().any(same) {
                out.drops.push(Discard::DuplicateItem);
            } else if knowledge.items.len() == MAX_ITEMS {
                out.drops.push(Discard::TooManyItems);
            } else {
                knowledge.items.push(triple);
            }
        }
    }
    out.knowledge = Some(knowledge);
    out.repairs = dedup(repairs);
    out
}

fn dedup(mut repairs: Vec<Repair>) -> Vec<Repair> {
    repairs.sort();
    repairs.dedup();
    repairs
}

/// The first JSON object of `answer`, read leniently.
pub fn read_json_object(answer: &str, repairs: &mut Vec<Repair>) -> Result<Value, Discard> {
    if answer.trim().is_empty() {
        return Err(Discard::Empty);
    }
    let mut text = answer;
    if text.len() > MAX_ANSWER_BYTES {
        let mut cut = MAX_ANSWER_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text = &text[..cut];
        repairs.push(Repair::Clipped);
    }
    let start = text.find('{').ok_or(Discard::NoJson)?;
    let before = &text[..start];
    if text.contains("```") {
        repairs.push(Repair::CodeFence);
    }
    let mut reader = Reader {
        chars: text[start..].char_indices().peekable(),
        source: &text[start..],
        repairs,
        depth: 0,
    };
    let value = reader.value()?;
    let rest: String = reader.chars.map(|(_, c)| c).collect();
    let prose = |s: &str| {
        !s.replace("```json", "")
            .replace("```", "")
            .trim()
            .is_empty()
    };
    if prose(before) || prose(&rest) {
        reader.repairs.push(Repair::SurroundingText);
    }
    Ok(value)
}

/// A lenient recursive-descent JSON reader that records what it forgave.
struct Reader<'a, 'r> {
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
    source: &'a str,
    repairs: &'r mut Vec<Repair>,
    depth: usize,
}

/// Why reading one value stopped.
enum Stop {
    /// The text ended.
    End,
    /// The text cannot be read as JSON here.
    Bad,
}

impl From<Stop> for Discard {
    fn from(_: Stop) -> Discard {
        Discard::Unreadable
    }
}

impl Reader<'_, '_> {
    fn skip_space(&mut self) {
        while self.chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_space();
        self.chars.peek().map(|&(_, c)| c)
    }

    /// One value; at the top level the end of the text is unreadable.
    fn value(&mut self) -> Result<Value, Stop> {
        self.depth += 1;
        let value = match self.peek() {
            _ if self.depth > MAX_DEPTH => Err(Stop::Bad),
            None => Err(Stop::End),
            Some('{') => self.object(),
            Some('[') => self.array(),
            Some('"' | '\'') => self.string().map(Value::String),
            Some(_) => self.word(),
        };
        self.depth -= 1;
        value
    }

    /// Reads up to the closing `close`, forgiving a trailing comma; at the
    /// end of the text keeps what is complete and reports a truncation.
    fn container(
        &mut self,
        close: char,
        mut element: impl FnMut(&mut Self) -> Result<(), Stop>,
    ) -> Result<(), Stop> {
        self.chars.next();
        let mut first = true;
        loop {
            match self.peek() {
                None => {
                    self.repairs.push(Repair::Truncated);
                    return Ok(());
                }
                Some(c) if c == close => {
                    self.chars.next();
                    return Ok(());
                }
                Some(',') if !first => {
                    self.chars.next();
                    if self.peek() == Some(close) {
                        self.repairs.push(Repair::TrailingComma);
                        continue;
                    }
                }
                Some(_) if !first => return Err(Stop::Bad),
                Some(_) => {}
            }
            first = false;
            match element(self) {
                Ok(()) => {}
                Err(Stop::End) => {
                    self.repairs.push(Repair::Truncated);
                    return Ok(());
                }
                Err(Stop::Bad) => return Err(Stop::Bad),
            }
        }
    }

    fn object(&mut self) -> Result<Value, Stop> {
        let mut map = Map::new();
        self.container('}', |r| {
            let key = match r.peek().ok_or(Stop::End)? {
                '"' | '\'' => r.string()?,
                _ => match r.word()? {
                    Value::String(s) => s,
                    other => other.to_string(),
                },
            };
            if r.peek().ok_or(Stop::End)? != ':' {
                return Err(Stop::Bad);
            }
            r.chars.next();
            let value = r.value()?;
            map.insert(key, value);
            Ok(())
        })?;
        Ok(Value::Object(map))
    }

    fn array(&mut self) -> Result<Value, Stop> {
        let mut items = Vec::new();
        self.container(']', |r| {
            items.push(r.value()?);
            Ok(())
        })?;
        Ok(Value::Array(items))
    }

    fn string(&mut self) -> Result<String, Stop> {
        let (_, quote) = self.chars.next().ok_or(Stop::End)?;
        if quote == '\'' {
            self.repairs.push(Repair::SingleQuotes);
        }
        let mut out = String::new();
        loop {
            let (_, c) = self.chars.next().ok_or(Stop::End)?;
            match c {
                c if c == quote => return Ok(out),
                '\\' => {
                    let (_, e) = self.chars.next().ok_or(Stop::End)?;
                    match e {
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        'b' | 'f' => {}
                        'u' => {
                            let hex: String = (0..4)
                                .map(|_| self.chars.next().map(|(_, h)| h).ok_or(Stop::End))
                                .collect::<Result<_, _>>()?;
                            let code = u32::from_str_radix(&hex, 16).map_err(|_| Stop::Bad)?;
                            out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                        }
                        other => out.push(other),
                    }
                }
                c => out.push(c),
            }
        }
    }

    /// A number, `true`/`false`/`null` (or Python's spellings), or a bare
    /// word read as text.
    fn word(&mut self) -> Result<Value, Stop> {
        let start = self.chars.peek().map(|&(i, _)| i).ok_or(Stop::End)?;
        let mut end = start;
        while let Some(&(i, c)) = self.chars.peek() {
            if c.is_alphanumeric() || matches!(c, '_' | '-' | '+' | '.') {
                end = i + c.len_utf8();
                self.chars.next();
            } else {
                break;
            }
        }
        if end == start {
            return Err(Stop::Bad);
        }
        if self.chars.peek().is_none() {
            // The word may be cut short.
            return Err(Stop::End);
        }
        let word = &self.source[start..end];
        Ok(match word {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            "null" => Value::Null,
            _ => {
                if let Ok(number) = serde_json::from_str::<serde_json::Number>(word) {
                    return Ok(Value::Number(number));
                }
                self.repairs.push(Repair::BareWord);
                match word {
                    "True" => Value::Bool(true),
                    "False" => Value::Bool(false),
                    "None" => Value::Null,
                    _ => Value::String(word.to_string()),
                }
            }
        })
    }
}

/// A list field: an array as it is, one value as a list of one (a wrong
/// type), absent or null as empty.
fn list<'v>(value: Option<&'v Value>, repairs: &mut Vec<Repair>) -> Vec<&'v Value> {
    match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(one) => {
            repairs.push(Repair::WrongType);
            vec![one]
        }
    }
}

/// A scalar as text: strings as they are, numbers and booleans converted
/// (a wrong type); `None` for null, arrays and objects.
fn text(value: &Value, repairs: &mut Vec<Repair>) -> Option<String> {
    match value {
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(_) | Value::Bool(_) => {
            repairs.push(Repair::WrongType);
            Some(value.to_string())
        }
        _ => None,
    }
    .filter(|s| !s.is_empty())
}

fn categories(value: Option<&Value>, repairs: &mut Vec<Repair>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in list(value, repairs) {
        if let Some(c) = text(v, repairs) {
            if !out.contains(&c) {
                out.push(c);
            }
        }
    }
    out
}

fn triple(
    item: &Value,
    is_quantity: bool,
    repairs: &mut Vec<Repair>,
) -> Result<Knowledge, Discard> {
    let Value::Object(fields) = item else {
        return Err(Discard::ItemNotObject);
    };
    let field =
        |name: &str, repairs: &mut Vec<Repair>| fields.get(name).and_then(|v| text(v, repairs));
    let (Some(text), Some(kind)) = (field("text", repairs), field("type", repairs)) else {
        return Err(Discard::ItemMissingField);
    };
    let quantity = if is_quantity {
        // The extraction prompt asks for the value as a number.
        let q = match fields.get("quantity") {
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => field("quantity", repairs),
        };
        if q.is_none() {
            repairs.push(Repair::QuantityMissing);
        }
        q
    } else {
        None
    };
    Ok(Knowledge {
        text,
        kind,
        quantity,
    })
}

/// `text` as the sentence spells it: itself when the sentence contains it,
/// else the sentence's span equal to it ignoring case and runs of spacing
/// in `text` (a repair), else `None`.
fn locate(text: &str, sentence: &str, repairs: &mut Vec<Repair>) -> Option<String> {
    if sentence.contains(text) {
        return Some(text.to_string());
    }
    let needle = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    if needle.is_empty() {
        return None;
    }
    let at = sentence.to_lowercase().find(&needle)?;
    let span = sentence.get(at..at + needle.len())?;
    if span.to_lowercase() != needle {
        // Lower-casing moved byte offsets (a few scripts do): no safe span.
        return None;
    }
    repairs.push(Repair::EntitySpelling);
    Some(span.to_string())
}
