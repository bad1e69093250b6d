//! The shape an answer must have, written once and given to each backend
//! in its own terms: a JSON schema for servers with structured output
//! (OpenAI, vLLM, Ollama and the llama.cpp server take
//! `response_format: {"type": "json_schema", ...}`), a GBNF grammar for the
//! embedded engine, which then can only write answers of that shape.

use serde_json::{json, Map, Value};

/// A JSON value's shape.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// A string.
    String,
    /// A number.
    Number,
    /// An array of items of one shape.
    Array(Box<Shape>),
    /// An object with exactly these keys, in this order.
    Object(Vec<(&'static str, Shape)>),
    /// Any JSON object (a client's `json_object` mode).
    AnyObject,
}

/// The extraction prompt's answer: categories, entities, quantities.
pub fn extraction() -> &'static Shape {
    static SHAPE: std::sync::OnceLock<Shape> = std::sync::OnceLock::new();
    SHAPE.get_or_init(|| {
        let item = |extra: Vec<(&'static str, Shape)>| {
            let mut fields = vec![("text", Shape::String), ("type", Shape::String)];
            fields.extend(extra);
            Shape::Array(Box::new(Shape::Object(fields)))
        };
        Shape::Object(vec![
            ("categories", Shape::Array(Box::new(Shape::String))),
            ("entities", item(Vec::new())),
            ("quantities", item(vec![("quantity", Shape::Number)])),
        ])
    })
}

/// A generation prompt's answer: `{"text": ...}`.
pub fn candidate() -> &'static Shape {
    static SHAPE: std::sync::OnceLock<Shape> = std::sync::OnceLock::new();
    SHAPE.get_or_init(|| Shape::Object(vec![("text", Shape::String)]))
}

/// Any JSON object.
pub fn any_object() -> &'static Shape {
    &Shape::AnyObject
}

impl Shape {
    /// The JSON schema, strict in OpenAI's sense: every key required, no
    /// others allowed.
    pub fn json_schema(&self) -> Value {
        match self {
            Shape::String => json!({"type": "string"}),
            Shape::Number => json!({"type": "number"}),
            Shape::Array(item) => json!({"type": "array", "items": item.json_schema()}),
            Shape::Object(fields) => {
                let properties: Map<String, Value> = fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.json_schema()))
                    .collect();
                let required: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
                json!({
                    "type": "object",
                    "properties": properties,
                    "required": required,
                    "additionalProperties": false,
                })
            }
            Shape::AnyObject => json!({"type": "object"}),
        }
    }

    /// A GBNF grammar (llama.cpp's) whose `root` is an answer of this shape,
    /// after an optional space; spaces between tokens are single and
    /// optional, and there are no line breaks (prompts stop at one).
    pub fn gbnf(&self) -> String {
        let mut rules = Vec::new();
        let root = self.expression(&mut rules);
        let mut grammar = format!("root ::= \" \"? {root}\n");
        for (name, body) in &rules {
            grammar.push_str(&format!("{name} ::= {body}\n"));
        }
        grammar.push_str(concat!(
            "ws ::= \" \"?\n",
            "string ::= \"\\\"\" char* \"\\\"\"\n",
            "char ::= [^\"\\\\\\x7F\\x00-\\x1F] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4})\n",
            "number ::= \"-\"? (\"0\" | [1-9] [0-9]{0,15}) (\".\" [0-9]{1,15})? ([eE] [-+]? [0-9]{1,3})?\n",
        ));
        grammar
    }

    /// This shape as a GBNF expression; objects and arrays become rules
    /// of their own, added to `rules`.
    fn expression(&self, rules: &mut Vec<(String, String)>) -> String {
        let body = match self {
            Shape::String => return "string".into(),
            Shape::Number => return "number".into(),
            Shape::Array(item) => {
                let item = item.expression(rules);
                format!("\"[\" ws ({item} (ws \",\" ws {item})*)? ws \"]\"")
            }
            Shape::Object(fields) => {
                let parts: Vec<String> = fields
                    .iter()
                    .map(|(key, value)| {
                        format!("\"\\\"{key}\\\"\" ws \":\" ws {}", value.expression(rules))
                    })
                    .collect();
                format!("\"{{\" ws {} ws \"}}\"", parts.join(" ws \",\" ws "))
            }
            Shape::AnyObject => {
                for (name, body) in [
                    ("value", "object | array | string | number | \"true\" | \"false\" | \"null\""),
                    ("array", "\"[\" ws (value (ws \",\" ws value)*)? ws \"]\""),
                    ("object", "\"{\" ws (string ws \":\" ws value (ws \",\" ws string ws \":\" ws value)*)? ws \"}\""),
                ] {
                    if !rules.iter().any(|(n, _)| n == name) {
                        rules.push((name.into(), body.into()));
                    }
                }
                return "object".into();
            }
        };
        let name = format!("shape{}", rules.len());
        rules.push((name.clone(), body));
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extraction_schema_is_strict_and_names_every_key() {
        let schema = extraction().json_schema();
        assert_eq!(
            schema["required"],
            json!(["categories", "entities", "quantities"])
        );
        assert_eq!(schema["additionalProperties"], false);
        let quantity = &schema["properties"]["quantities"]["items"];
        assert_eq!(quantity["required"], json!(["text", "type", "quantity"]));
        assert_eq!(quantity["properties"]["quantity"]["type"], "number");
        assert_eq!(
            schema["properties"]["categories"]["items"]["type"],
            "string"
        );
        assert_eq!(candidate().json_schema()["required"], json!(["text"]));
    }

    #[test]
    fn grammars_have_a_rule_for_every_name_they_use() {
        for shape in [extraction(), candidate(), any_object()] {
            let grammar = shape.gbnf();
            let defined: Vec<&str> = grammar
                .lines()
                .filter_map(|l| l.split_once(" ::= ").map(|(n, _)| n))
                .collect();
            for line in grammar.lines() {
                let (_, body) = line.split_once(" ::= ").unwrap();
                let mut quoted = false;
                let mut escaped = false;
                let mut bracket = false;
                let mut word = String::new();
                for c in body.chars().chain([' ']) {
                    match (quoted, bracket, c) {
                        (true, _, '\\') if !escaped => escaped = true,
                        (true, _, '"') if !escaped => quoted = false,
                        (true, _, _) => escaped = false,
                        (false, true, ']') => bracket = false,
                        (false, true, _) => {}
                        (false, false, '"') => quoted = true,
                        (false, false, '[') => bracket = true,
                        (false, false, c) if c.is_ascii_alphanumeric() => word.push(c),
                        _ => {
                            if word.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) {
                                assert!(defined.contains(&word.as_str()), "{word} in\n{grammar}");
                            }
                            word.clear();
                        }
                    }
                }
            }
            assert!(grammar.starts_with("root ::= "), "{grammar}");
        }
        assert!(extraction()
            .gbnf()
            .contains("\"\\\"quantity\\\"\" ws \":\" ws number"));
    }
}
