//! A YAML document tree that remembers where every node came from.
//!
//! `qhub-config.yaml` is parsed into [`Node`]s (maps keep their key order, scalars keep their
//! source text and quoting style) so that every diagnostic can point at `line:column`, and so that
//! `qhub upgrade` can rewrite a file without changing the values it does not touch (a plain
//! `1.20` stays `1.20`, it is never turned into the float `1.2`).

use std::collections::HashMap;
use std::fmt::Write as _;

use saphyr_parser::{Event, Parser, ScalarStyle};

/// A position in the source text: 1-based line and 1-based column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, serde::Serialize)]
pub struct Position {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column number, counted in characters.
    pub column: usize,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// How a scalar was written in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Unquoted: its type is resolved (null, bool, number or string).
    Plain,
    /// Quoted or block scalar: always a string.
    Quoted,
}

/// One YAML node with the position where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where the node starts in the source.
    pub pos: Position,
    /// The node's content.
    pub value: Value,
}

/// The content of a [`Node`].
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A scalar, with its source text (after unescaping) and style.
    Scalar(String, Style),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping with string keys, in source order. Each key keeps its own position.
    Map(Vec<(Key, Node)>),
}

/// A mapping key and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    /// The key text.
    pub name: String,
    /// Where the key was written.
    pub pos: Position,
}

/// A syntax error in the YAML text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{pos}: {message}")]
pub struct SyntaxError {
    /// Where the parser stopped.
    pub pos: Position,
    /// What the parser said.
    pub message: String,
}

/// The type a plain scalar resolves to under the YAML 1.2 core schema.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    /// `null`, `~` or empty.
    Null,
    /// `true`/`false` in any of the core schema's spellings.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// Anything else.
    Str,
}

/// Resolves a plain scalar's text per the YAML 1.2 core schema.
pub fn resolve_plain(text: &str) -> Resolved {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Resolved::Null,
        "true" | "True" | "TRUE" => return Resolved::Bool(true),
        "false" | "False" | "FALSE" => return Resolved::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Resolved::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Resolved::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Resolved::Float(f64::NAN),
        _ => {}
    }
    let bytes = text.as_bytes();
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(i) = text.parse::<i64>() {
            return Resolved::Int(i);
        }
        return text.parse().map(Resolved::Float).unwrap_or(Resolved::Str);
    }
    if let Some(hex) = text.strip_prefix("0x")
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return Resolved::Int(i);
    }
    if let Some(oct) = text.strip_prefix("0o")
        && let Ok(i) = i64::from_str_radix(oct, 8)
    {
        return Resolved::Int(i);
    }
    // A float needs a digit and only the characters of `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`.
    let looks_numeric = bytes.iter().any(u8::is_ascii_digit)
        && bytes
            .iter()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'));
    if looks_numeric && let Ok(f) = text.parse::<f64>() {
        return Resolved::Float(f);
    }
    Resolved::Str
}

impl Node {
    /// A new node at `pos`.
    pub fn new(pos: Position, value: Value) -> Self {
        Self { pos, value }
    }

    /// A plain scalar node without a source position (for generated documents).
    pub fn plain(text: impl Into<String>) -> Self {
        Self::new(
            Position::default(),
            Value::Scalar(text.into(), Style::Plain),
        )
    }

    /// A string node that is always a string (emitted quoted when it would otherwise resolve to
    /// another type).
    pub fn string(text: impl Into<String>) -> Self {
        Self::new(
            Position::default(),
            Value::Scalar(text.into(), Style::Quoted),
        )
    }

    /// The value of `key` when this node is a map.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _)| k.name == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The mutable value of `key` when this node is a map.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        match &mut self.value {
            Value::Map(entries) => entries
                .iter_mut()
                .find(|(k, _)| k.name == key)
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// Removes `key` from this map and returns its value.
    pub fn remove(&mut self, key: &str) -> Option<Node> {
        match &mut self.value {
            Value::Map(entries) => {
                let i = entries.iter().position(|(k, _)| k.name == key)?;
                Some(entries.remove(i).1)
            }
            _ => None,
        }
    }

    /// Sets `key` in this map (replacing the value in place, or appending), when this is a map.
    pub fn insert(&mut self, key: &str, value: Node) {
        if let Value::Map(entries) = &mut self.value {
            if let Some((_, v)) = entries.iter_mut().find(|(k, _)| k.name == key) {
                *v = value;
            } else {
                let pos = value.pos;
                entries.push((
                    Key {
                        name: key.to_string(),
                        pos,
                    },
                    value,
                ));
            }
        }
    }

    /// The scalar text, when this is a scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(s, _) => Some(s),
            _ => None,
        }
    }

    /// True for a plain `null`/`~`/empty scalar.
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar(s, Style::Plain) if resolve_plain(s) == Resolved::Null)
    }

    /// Converts to JSON using the YAML 1.2 core schema for plain scalars.
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Scalar(s, Style::Quoted) => serde_json::Value::String(s.clone()),
            Value::Scalar(s, Style::Plain) => match resolve_plain(s) {
                Resolved::Null => serde_json::Value::Null,
                Resolved::Bool(b) => b.into(),
                Resolved::Int(i) => i.into(),
                Resolved::Float(f) => serde_json::Number::from_f64(f)
                    .map(serde_json::Value::Number)
                    .unwrap_or_else(|| serde_json::Value::String(s.clone())),
                Resolved::Str => serde_json::Value::String(s.clone()),
            },
            Value::Seq(items) => items.iter().map(Node::to_json).collect(),
            Value::Map(entries) => entries
                .iter()
                .map(|(k, v)| (k.name.clone(), v.to_json()))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }

    /// Builds a node tree from JSON (positions are unknown; strings that would resolve to another
    /// type are marked quoted).
    pub fn from_json(value: &serde_json::Value) -> Node {
        let value = match value {
            serde_json::Value::Null => Value::Scalar("null".into(), Style::Plain),
            serde_json::Value::Bool(b) => Value::Scalar(b.to_string(), Style::Plain),
            serde_json::Value::Number(n) => Value::Scalar(n.to_string(), Style::Plain),
            serde_json::Value::String(s) => Value::Scalar(s.clone(), Style::Quoted),
            serde_json::Value::Array(items) => {
                Value::Seq(items.iter().map(Node::from_json).collect())
            }
            serde_json::Value::Object(map) => Value::Map(
                map.iter()
                    .map(|(k, v)| {
                        (
                            Key {
                                name: k.clone(),
                                pos: Position::default(),
                            },
                            Node::from_json(v),
                        )
                    })
                    .collect(),
            ),
        };
        Node::new(Position::default(), value)
    }
}

fn position(marker: &saphyr_parser::Marker) -> Position {
    Position {
        line: marker.line(),
        column: marker.col() + 1,
    }
}

/// Limits that keep hostile input from exhausting memory (alias bombs, deep nesting).
const MAX_DEPTH: usize = 256;
const MAX_NODES: usize = 1_000_000;

/// Parses one YAML document. An empty document is an empty map. Duplicate keys, non-scalar keys,
/// multiple documents and tags other than the core schema's are errors.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    enum Frame {
        Seq(Position, usize, Vec<Node>),
        /// A map's start, anchor, entries, the key waiting for its value, and where each key
        /// was first written (a hash index, so duplicate detection stays linear in the map's
        /// size: issue #9 measured 30,000 top-level keys).
        Map(
            Position,
            usize,
            Vec<(Key, Node)>,
            Option<Key>,
            HashMap<String, Position>,
        ),
    }
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut root: Option<Node> = None;
    let mut documents = 0usize;
    let mut node_count = 0usize;
    let err = |pos: Position, message: String| SyntaxError { pos, message };

    while let Some(event) = parser.next_event() {
        let (event, span) = event.map_err(|e| err(position(e.marker()), e.info().to_string()))?;
        let pos = position(&span.start);
        // A finished node, with the anchor it may define.
        let finished: Option<(Node, usize)> = match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => None,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(err(
                        pos,
                        "more than one YAML document: qhub-config.yaml holds exactly one".into(),
                    ));
                }
                None
            }
            Event::Alias(id) => {
                let node = anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| err(pos, "alias to an unknown anchor".into()))?;
                node_count += count_nodes(&node);
                Some((Node { pos, ..node }, 0))
            }
            Event::Scalar(text, style, anchor, tag) => {
                let style = match tag.as_deref() {
                    Some(t) if t.is_yaml_core_schema() && t.suffix == "str" => Style::Quoted,
                    Some(t) if !t.is_yaml_core_schema() => {
                        return Err(err(pos, format!("unsupported YAML tag `{t}`")));
                    }
                    _ if style == ScalarStyle::Plain => Style::Plain,
                    _ => Style::Quoted,
                };
                Some((
                    Node::new(pos, Value::Scalar(text.into_owned(), style)),
                    anchor,
                ))
            }
            Event::SequenceStart(anchor, _) => {
                stack.push(Frame::Seq(pos, anchor, Vec::new()));
                if stack.len() > MAX_DEPTH {
                    return Err(err(pos, format!("nesting deeper than {MAX_DEPTH} levels")));
                }
                None
            }
            Event::MappingStart(anchor, _) => {
                stack.push(Frame::Map(pos, anchor, Vec::new(), None, HashMap::new()));
                if stack.len() > MAX_DEPTH {
                    return Err(err(pos, format!("nesting deeper than {MAX_DEPTH} levels")));
                }
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq(p, anchor, items)) => {
                    Some((Node::new(p, Value::Seq(items)), anchor))
                }
                _ => return Err(err(pos, "unbalanced sequence".into())),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map(p, anchor, entries, ..)) => {
                    Some((Node::new(p, Value::Map(entries)), anchor))
                }
                _ => return Err(err(pos, "unbalanced mapping".into())),
            },
        };
        let Some((node, anchor)) = finished else {
            continue;
        };
        node_count += 1;
        if node_count > MAX_NODES {
            return Err(err(
                pos,
                format!("document has more than {MAX_NODES} nodes"),
            ));
        }
        if anchor != 0 {
            anchors.insert(anchor, node.clone());
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq(_, _, items)) => items.push(node),
            Some(Frame::Map(_, _, entries, pending, seen)) => match pending.take() {
                None => {
                    let Value::Scalar(name, _) = node.value else {
                        return Err(err(
                            node.pos,
                            "mapping keys must be plain strings, not sequences or mappings".into(),
                        ));
                    };
                    if let Some(first) = seen.insert(name.clone(), node.pos) {
                        return Err(err(
                            node.pos,
                            format!("duplicate key `{name}` (first defined at {first})"),
                        ));
                    }
                    *pending = Some(Key {
                        name,
                        pos: node.pos,
                    });
                }
                Some(key) => entries.push((key, node)),
            },
        }
    }
    Ok(root.unwrap_or_else(|| Node::new(Position { line: 1, column: 1 }, Value::Map(Vec::new()))))
}

fn count_nodes(node: &Node) -> usize {
    match &node.value {
        Value::Scalar(..) => 1,
        Value::Seq(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        Value::Map(entries) => 1 + entries.iter().map(|(_, v)| count_nodes(v)).sum::<usize>(),
    }
}

/// Writes a node tree as block-style YAML. Scalars that would change meaning when re-read are
/// double-quoted, so `parse(emit(x))` gives back `x`'s values.
pub fn emit(node: &Node) -> String {
    let mut out = String::new();
    match &node.value {
        Value::Map(entries) if entries.is_empty() => out.push_str("{}\n"),
        Value::Seq(items) if items.is_empty() => out.push_str("[]\n"),
        Value::Map(_) | Value::Seq(_) => emit_block(node, 0, &mut out),
        Value::Scalar(..) => {
            out.push_str(&scalar_text(node));
            out.push('\n');
        }
    }
    out
}

fn emit_block(node: &Node, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match &node.value {
        Value::Map(entries) => {
            for (key, value) in entries {
                let key = key_text(&key.name);
                if key.chars().count() > MAX_IMPLICIT_KEY {
                    // YAML limits implicit keys to 1024 characters; longer ones need `? key`.
                    let _ = write!(out, "{pad}? {key}\n{pad}:");
                } else {
                    let _ = write!(out, "{pad}{key}:");
                }
                emit_child(value, indent + 2, out);
            }
        }
        Value::Seq(items) => {
            for item in items {
                out.push_str(&pad);
                out.push('-');
                match &item.value {
                    Value::Map(entries) if !entries.is_empty() => {
                        // The first entry goes on the dash's line, the rest align under it.
                        let mut inner = String::new();
                        emit_block(item, indent + 2, &mut inner);
                        out.push(' ');
                        out.push_str(&inner[indent + 2..]);
                    }
                    _ => emit_child(item, indent + 2, out),
                }
            }
        }
        Value::Scalar(..) => {
            out.push_str(&pad);
            out.push_str(&scalar_text(node));
            out.push('\n');
        }
    }
}

fn emit_child(value: &Node, indent: usize, out: &mut String) {
    match &value.value {
        Value::Map(entries) if entries.is_empty() => out.push_str(" {}\n"),
        Value::Seq(items) if items.is_empty() => out.push_str(" []\n"),
        Value::Map(_) | Value::Seq(_) => {
            out.push('\n');
            emit_block(value, indent, out);
        }
        Value::Scalar(..) => {
            out.push(' ');
            out.push_str(&scalar_text(value));
            out.push('\n');
        }
    }
}

/// Keys longer than this are written as explicit `? key` entries: YAML 1.2 limits an implicit
/// key to 1024 characters, and saphyr enforces it.
const MAX_IMPLICIT_KEY: usize = 1000;

fn key_text(key: &str) -> String {
    if is_safe_plain(key) && resolve_plain(key) == Resolved::Str {
        key.to_string()
    } else {
        quote(key)
    }
}

fn scalar_text(node: &Node) -> String {
    let Value::Scalar(text, style) = &node.value else {
        return String::new();
    };
    match style {
        Style::Plain if text.is_empty() => "null".into(),
        Style::Plain if is_safe_plain(text) => text.clone(),
        Style::Quoted if is_safe_plain(text) && resolve_plain(text) == Resolved::Str => {
            text.clone()
        }
        _ => quote(text),
    }
}

/// A conservative test for text that reads back unchanged as a plain scalar.
fn is_safe_plain(text: &str) -> bool {
    let Some(first) = text.chars().next() else {
        return false;
    };
    if !(first.is_alphanumeric() || matches!(first, '/' | '.' | '_' | '+' | '(' | '$'))
        && first != '-'
    {
        return false;
    }
    if first == '-' && text.chars().nth(1).is_none_or(|c| c == ' ') {
        return false;
    }
    if text.ends_with(' ') || text.ends_with(':') {
        return false;
    }
    // `---`/`...` at the start of a line are document markers (a root scalar, a top-level key).
    if text.starts_with("---") || text.starts_with("...") {
        return false;
    }
    !text.contains(": ")
        && !text.contains(" #")
        && !text.chars().any(|c| {
            c.is_control()
                // A byte order mark is an error inside a plain scalar (saphyr rejects it).
                || matches!(c, '\u{feff}' | '\'' | '"' | '`' | '{' | '}' | '[' | ']' | ',' | '\\')
        })
}

fn quote(text: &str) -> String {
    // JSON string syntax is valid YAML double-quoted syntax.
    serde_json::to_string(text).unwrap_or_else(|_| format!("{text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let node = parse("a:\n  b: 1\n").unwrap();
        let Value::Map(entries) = &node.get("a").unwrap().value else {
            panic!("not a map")
        };
        assert_eq!(entries[0].0.pos, Position { line: 2, column: 3 });
        assert_eq!(entries[0].1.pos, Position { line: 2, column: 6 });
    }

    #[test]
    fn duplicate_keys_are_rejected_with_both_positions() {
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.pos, Position { line: 3, column: 1 });
        assert!(e.message.contains("first defined at 1:1"), "{}", e.message);
    }

    #[test]
    fn plain_scalars_keep_their_text() {
        let node = parse("v: 1.20\nq: '1.20'\n").unwrap();
        assert_eq!(node.get("v").unwrap().as_str(), Some("1.20"));
        assert_eq!(node.to_json()["v"], serde_json::json!(1.2));
        assert_eq!(node.to_json()["q"], serde_json::json!("1.20"));
    }

    #[test]
    fn core_schema_resolution() {
        assert_eq!(resolve_plain("~"), Resolved::Null);
        assert_eq!(resolve_plain("True"), Resolved::Bool(true));
        assert_eq!(resolve_plain("yes"), Resolved::Str);
        assert_eq!(resolve_plain("-12"), Resolved::Int(-12));
        assert_eq!(resolve_plain("1e3"), Resolved::Float(1000.0));
        assert_eq!(resolve_plain("8G"), Resolved::Str);
        assert_eq!(resolve_plain("1.33.1-do.0"), Resolved::Str);
    }

    #[test]
    fn anchors_and_aliases_are_expanded() {
        let node = parse("a: &x {k: 1}\nb: *x\n").unwrap();
        assert_eq!(
            node.get("b").unwrap().to_json(),
            serde_json::json!({"k": 1})
        );
    }

    #[test]
    fn emit_round_trips_awkward_strings() {
        let json = serde_json::json!({
            "s": ["yes", "1.20", "", "null", "a: b", "- x", "#c", "quote\"d", "multi\nline", "ok-1.2"],
            "n": [1, 2.5, true, null],
            "m": {"nested": {"deep": []}, "e": {}},
            "list": [{"a": 1, "b": [1, 2]}, {"c": {"d": 1}}],
        });
        let text = emit(&Node::from_json(&json));
        assert_eq!(parse(&text).unwrap().to_json(), json, "{text}");
    }
}
