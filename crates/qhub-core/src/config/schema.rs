//! The JSON Schema of `qhub-config.yaml`, and the structural pass that checks a YAML tree against
//! it.
//!
//! The schema is derived from the serde model (schemars), so it cannot drift from what we
//! deserialize. The structural pass walks the YAML tree and the schema together: it reports
//! *every* unknown key (with "did you mean"), missing key and wrong type with its `line:column`,
//! and it builds the JSON value that serde then reads. Being schema-guided, it reads a plain
//! scalar as a string where the schema wants a string, so `kubernetes_version: 1.20` means
//! `"1.20"`, not the float `1.2`.

use std::sync::OnceLock;

use serde_json::{Map, Value as Json};

use super::Config;
use super::diagnostics::{Diagnostic, KeyPath, Severity, Suggestions, did_you_mean};
use super::yaml::{Node, Resolved, Style, Value, resolve_plain};

/// The schema keywords the structural pass understands. `qhub-core`'s tests check that the
/// generated schema uses no other validation keyword, so a model change cannot silently escape
/// validation.
pub const UNDERSTOOD_KEYWORDS: &[&str] = &[
    "$schema",
    "$ref",
    "$defs",
    "title",
    "description",
    "default",
    "examples",
    "type",
    "format",
    "enum",
    "const",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "anyOf",
    "oneOf",
    "minimum",
    "maximum",
];

/// The JSON Schema (draft 2020-12) of the config, as `qhub schema` prints it.
pub fn json_schema() -> &'static Json {
    static SCHEMA: OnceLock<Json> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let mut schema = schemars::schema_for!(Config).to_value();
        if let Some(obj) = schema.as_object_mut() {
            obj.insert(
                "title".into(),
                Json::String("qhub-config.yaml (QHub 0.4.x format, qhub-rs)".into()),
            );
        }
        schema
    })
}

/// Hints for keys that older QHub versions had.
fn removed_key_hint(path: &KeyPath, key: &str) -> Option<String> {
    let parent = path.to_string();
    let upgrade = "removed in QHub 0.4; run `qhub upgrade -c qhub-config.yaml` to migrate";
    match (parent.as_str(), key) {
        ("security", "users" | "groups") => Some(
            "users and groups live in Keycloak since QHub 0.4; run `qhub upgrade -c \
             qhub-config.yaml` to move them to qhub-users-import.json"
                .into(),
        ),
        ("default_images", "conda_store" | "dask_gateway") => Some(upgrade.into()),
        ("security.authentication.config", "oauth_callback_url" | "scope") => Some(upgrade.into()),
        _ => None,
    }
}

/// The structural pass: checks `node` against the schema and returns the JSON value serde reads,
/// pushing a diagnostic for each problem. Returns `None` where the value is unusable.
pub(crate) struct Walker<'a> {
    root: &'a Json,
    pub(crate) diagnostics: Vec<Diagnostic>,
    /// Where each key path was written: (key position, value position).
    pub(crate) spans: &'a mut super::Spans,
}

impl<'a> Walker<'a> {
    pub(crate) fn new(root: &'a Json, spans: &'a mut super::Spans) -> Self {
        Self {
            root,
            diagnostics: Vec::new(),
            spans,
        }
    }

    fn error(&mut self, path: &KeyPath, node: &Node, message: String, hint: Option<String>) {
        self.diagnostics.push(Diagnostic {
            severity: Severity::Error,
            path: path.clone(),
            line: node.pos.line,
            column: node.pos.column,
            message,
            hint,
        });
    }

    fn resolve<'s>(&self, schema: &'s Json) -> &'s Json
    where
        'a: 's,
    {
        let mut schema = schema;
        // Follow local references; schemars only emits `#/$defs/Name`.
        for _ in 0..32 {
            match schema.get("$ref").and_then(Json::as_str) {
                Some(r) => match r.strip_prefix('#').and_then(|p| self.root.pointer(p)) {
                    Some(target) => schema = target,
                    None => return &Json::Bool(true),
                },
                None => return schema,
            }
        }
        schema
    }

    /// Walks `node` at `path` against `schema`.
    pub(crate) fn walk(&mut self, node: &Node, schema: &Json, path: &KeyPath) -> Option<Json> {
        let schema = self.resolve(schema);
        let obj = match schema {
            Json::Bool(true) => return Some(node.to_json()),
            Json::Bool(false) => {
                self.error(path, node, "no value is allowed here".into(), None);
                return None;
            }
            Json::Object(obj) if obj.is_empty() => return Some(node.to_json()),
            Json::Object(obj) => obj,
            _ => return Some(node.to_json()),
        };
        if let Some(branches) = obj
            .get("anyOf")
            .or_else(|| obj.get("oneOf"))
            .and_then(Json::as_array)
        {
            return self.walk_union(node, branches, path);
        }
        let types = type_set(obj);
        let value = match &node.value {
            Value::Map(entries) => {
                if !types.object {
                    self.type_mismatch(path, node, &types);
                    return None;
                }
                self.walk_object(node, entries, obj, path)
            }
            Value::Seq(items) => {
                if !types.array {
                    self.type_mismatch(path, node, &types);
                    return None;
                }
                let item_schema = obj.get("items").unwrap_or(&Json::Bool(true));
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let p = path.index(i);
                    self.spans.insert(p.to_string(), (item.pos, item.pos));
                    // A broken item stays as null so that the indices of the others hold.
                    out.push(self.walk(item, item_schema, &p).unwrap_or(Json::Null));
                }
                Some(Json::Array(out))
            }
            Value::Scalar(text, style) => self.walk_scalar(node, text, *style, &types, path)?,
        };
        let value = value?;
        self.check_enum_and_range(node, obj, &value, path)
            .then_some(value)
    }

    fn walk_union(&mut self, node: &Node, branches: &[Json], path: &KeyPath) -> Option<Json> {
        // Take the first branch that accepts the node without complaint.
        let saved = self.diagnostics.len();
        for branch in branches {
            if let Some(v) = self.walk(node, branch, path)
                && self.diagnostics.len() == saved
            {
                return Some(v);
            }
            self.diagnostics.truncate(saved);
        }
        // A union of constants is an enum: say which values are allowed.
        let constants: Option<Vec<Json>> = branches
            .iter()
            .map(|b| {
                let b = self.resolve(b);
                b.get("const")
                    .map(|c| vec![c.clone()])
                    .or_else(|| b.get("enum").and_then(Json::as_array).cloned())
            })
            .collect::<Option<Vec<_>>>()
            .map(|v| v.into_iter().flatten().collect());
        if let Some(values) = constants {
            let mut obj = Map::new();
            obj.insert("enum".into(), Json::Array(values));
            let value = node.to_json();
            let value = match (&value, node.as_str()) {
                // Compare as the text written, so `type: 1` reads as "1".
                (Json::Number(_) | Json::Bool(_), Some(text)) => Json::String(text.to_string()),
                _ => value,
            };
            return self
                .check_enum_and_range(node, &obj, &value, path)
                .then_some(value);
        }
        // None did. With one non-null branch (an optional value), its errors are the useful ones.
        let non_null: Vec<&Json> = branches
            .iter()
            .filter(|b| self.resolve(b).get("type") != Some(&Json::String("null".into())))
            .collect();
        if non_null.len() == 1 {
            return self.walk(node, non_null[0], path);
        }
        let mut expected: Vec<String> = branches.iter().map(|b| self.describe(b)).collect();
        expected.dedup();
        self.error(
            path,
            node,
            format!(
                "expected {}, found {}",
                expected.join(" or "),
                describe_node(node)
            ),
            None,
        );
        None
    }

    fn describe(&self, schema: &Json) -> String {
        let schema = self.resolve(schema);
        match schema.as_object() {
            Some(obj) => {
                let t = type_set(obj);
                if t.object
                    && obj
                        .get("additionalProperties")
                        .is_some_and(|a| a != &Json::Bool(false))
                {
                    "a mapping".into()
                } else {
                    t.describe()
                }
            }
            None => "any value".into(),
        }
    }

    fn walk_object(
        &mut self,
        node: &Node,
        entries: &[(super::yaml::Key, Node)],
        obj: &Map<String, Json>,
        path: &KeyPath,
    ) -> Option<Json> {
        static EMPTY: OnceLock<Map<String, Json>> = OnceLock::new();
        let properties = obj
            .get("properties")
            .and_then(Json::as_object)
            .unwrap_or_else(|| EMPTY.get_or_init(Map::new));
        let additional = obj.get("additionalProperties").unwrap_or(&Json::Bool(true));
        let mut out = Map::new();
        // The list of known keys and the suggester, made once per mapping however many keys
        // are unknown.
        let mut known_keys: Option<String> = None;
        let mut suggestions: Option<Suggestions<'_>> = None;
        for (key, value) in entries {
            let p = path.key(&key.name);
            self.spans.insert(p.to_string(), (key.pos, value.pos));
            let schema = match properties.get(&key.name) {
                Some(s) => s,
                None if additional == &Json::Bool(false) => {
                    let hint = removed_key_hint(path, &key.name).or_else(|| {
                        suggestions
                            .get_or_insert_with(|| {
                                Suggestions::new(properties.keys().map(String::as_str))
                            })
                            .closest(&key.name)
                            .map(|s| format!("did you mean `{s}`?"))
                    });
                    let known = if hint.is_some() {
                        ""
                    } else {
                        known_keys.get_or_insert_with(|| {
                            let names: Vec<&str> = properties.keys().map(String::as_str).collect();
                            format!(" (known keys: {})", names.join(", "))
                        })
                    };
                    let where_ = if path.0.is_empty() {
                        "at the top level".to_string()
                    } else {
                        format!("in `{path}`")
                    };
                    self.diagnostics.push(Diagnostic {
                        severity: Severity::Error,
                        path: p,
                        line: key.pos.line,
                        column: key.pos.column,
                        message: format!("unknown key `{}` {where_}{known}", key.name,),
                        hint,
                    });
                    continue;
                }
                None => additional,
            };
            if let Some(v) = self.walk(value, schema, &p) {
                out.insert(key.name.clone(), v);
            }
        }
        if let Some(required) = obj.get("required").and_then(Json::as_array) {
            for name in required.iter().filter_map(Json::as_str) {
                if !entries.iter().any(|(k, _)| k.name == name) {
                    let described = properties
                        .get(name)
                        .map(|s| self.describe(s))
                        .unwrap_or_else(|| "a value".into());
                    self.error(
                        &path.key(name),
                        node,
                        format!("missing required key `{name}` ({described})"),
                        None,
                    );
                }
            }
        }
        // Partial on error (the diagnostics say what is missing), so later rules still run.
        Some(Json::Object(out))
    }

    fn walk_scalar(
        &mut self,
        node: &Node,
        text: &str,
        style: Style,
        types: &TypeSet,
        path: &KeyPath,
    ) -> Option<Option<Json>> {
        let resolved = match style {
            Style::Quoted => Resolved::Str,
            Style::Plain => resolve_plain(text),
        };
        let value = match resolved {
            Resolved::Null if types.null => Json::Null,
            Resolved::Null => {
                let hint = Some(format!(
                    "give `{}` a value or remove the key",
                    last_key(path)
                ));
                self.error(
                    path,
                    node,
                    format!("expected {}, found nothing (null)", types.describe()),
                    hint,
                );
                return None;
            }
            Resolved::Int(i) if types.integer || types.number => Json::from(i),
            Resolved::Float(f) if types.number => match serde_json::Number::from_f64(f) {
                Some(n) => Json::Number(n),
                None => {
                    self.error(path, node, format!("`{text}` is not a finite number"), None);
                    return None;
                }
            },
            Resolved::Bool(b) if types.boolean => Json::Bool(b),
            _ if types.string => Json::String(text.to_string()),
            Resolved::Str
                if style == Style::Quoted && (types.integer || types.number || types.boolean) =>
            {
                // A quoted number or boolean: say so, as it is the usual mistake.
                let unquoted = match resolve_plain(text) {
                    Resolved::Int(_) if types.integer || types.number => true,
                    Resolved::Float(_) if types.number => true,
                    Resolved::Bool(_) if types.boolean => true,
                    _ => false,
                };
                let hint = unquoted.then(|| format!("remove the quotes around {text:?}"));
                self.error(
                    path,
                    node,
                    format!("expected {}, found the string {text:?}", types.describe()),
                    hint,
                );
                return None;
            }
            _ => {
                let hint = if types.integer && matches!(resolved, Resolved::Float(_)) {
                    Some("use a whole number".to_string())
                } else if types.boolean {
                    Some("use `true` or `false`".to_string())
                } else {
                    None
                };
                self.error(
                    path,
                    node,
                    format!(
                        "expected {}, found {}",
                        types.describe(),
                        describe_node(node)
                    ),
                    hint,
                );
                return None;
            }
        };
        Some(Some(value))
    }

    fn type_mismatch(&mut self, path: &KeyPath, node: &Node, types: &TypeSet) {
        self.error(
            path,
            node,
            format!(
                "expected {}, found {}",
                types.describe(),
                describe_node(node)
            ),
            None,
        );
    }

    fn check_enum_and_range(
        &mut self,
        node: &Node,
        obj: &Map<String, Json>,
        value: &Json,
        path: &KeyPath,
    ) -> bool {
        let mut allowed: Vec<&Json> = Vec::new();
        if let Some(c) = obj.get("const") {
            allowed.push(c);
        }
        if let Some(e) = obj.get("enum").and_then(Json::as_array) {
            allowed.extend(e.iter());
        }
        if !allowed.is_empty() && !allowed.contains(&value) {
            let names: Vec<String> = allowed.iter().map(|v| display_json(v)).collect();
            let hint = value.as_str().and_then(|s| {
                did_you_mean(s, allowed.iter().filter_map(|v| v.as_str()))
                    .map(|m| format!("did you mean `{m}`? (values are case-sensitive)"))
            });
            self.error(
                path,
                node,
                format!(
                    "`{}` is not one of {}",
                    display_json(value),
                    names.join(", ")
                ),
                hint,
            );
            return false;
        }
        if let Some(n) = value.as_f64() {
            let (mut min, mut max) = (
                obj.get("minimum").and_then(Json::as_f64),
                obj.get("maximum").and_then(Json::as_f64),
            );
            match obj.get("format").and_then(Json::as_str) {
                Some("uint8") => (min, max) = (min.or(Some(0.0)), max.or(Some(255.0))),
                Some("uint16") => (min, max) = (min.or(Some(0.0)), max.or(Some(65535.0))),
                Some("uint32") => (min, max) = (min.or(Some(0.0)), max.or(Some(u32::MAX as f64))),
                Some("uint64" | "uint") => min = min.or(Some(0.0)),
                _ => {}
            }
            if let Some(min) = min.filter(|m| n < *m) {
                self.error(
                    path,
                    node,
                    format!(
                        "{} must be at least {min}, found {}",
                        last_key(path),
                        display_json(value)
                    ),
                    None,
                );
                return false;
            }
            if let Some(max) = max.filter(|m| n > *m) {
                self.error(
                    path,
                    node,
                    format!(
                        "{} must be at most {max}, found {}",
                        last_key(path),
                        display_json(value)
                    ),
                    None,
                );
                return false;
            }
        }
        true
    }
}

fn last_key(path: &KeyPath) -> String {
    match path.0.last() {
        Some(super::diagnostics::Segment::Key(k)) => k.clone(),
        Some(super::diagnostics::Segment::Index(i)) => format!("item {i}"),
        None => "the document".into(),
    }
}

fn display_json(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn describe_node(node: &Node) -> String {
    match &node.value {
        Value::Map(_) => "a mapping".into(),
        Value::Seq(_) => "a list".into(),
        Value::Scalar(s, Style::Quoted) => format!("the string {s:?}"),
        Value::Scalar(s, Style::Plain) => match resolve_plain(s) {
            Resolved::Null => "nothing (null)".into(),
            Resolved::Bool(b) => format!("the boolean {b}"),
            Resolved::Int(i) => format!("the integer {i}"),
            Resolved::Float(_) => format!("the number {s}"),
            Resolved::Str => format!("the string {s:?}"),
        },
    }
}

#[derive(Default)]
struct TypeSet {
    object: bool,
    array: bool,
    string: bool,
    integer: bool,
    number: bool,
    boolean: bool,
    null: bool,
}

impl TypeSet {
    fn describe(&self) -> String {
        let mut names = Vec::new();
        if self.object {
            names.push("a mapping");
        }
        if self.array {
            names.push("a list");
        }
        if self.string {
            names.push("a string");
        }
        if self.number {
            names.push("a number");
        } else if self.integer {
            names.push("an integer");
        }
        if self.boolean {
            names.push("a boolean");
        }
        if self.null {
            names.push("null");
        }
        match names.len() {
            0 => "a value".into(),
            _ => names.join(" or "),
        }
    }
}

fn type_set(obj: &Map<String, Json>) -> TypeSet {
    let mut t = TypeSet::default();
    let names: Vec<&str> = match obj.get("type") {
        Some(Json::String(s)) => vec![s.as_str()],
        Some(Json::Array(a)) => a.iter().filter_map(Json::as_str).collect(),
        _ => {
            // No `type`: infer from the other keywords, or accept anything.
            if obj.contains_key("properties") || obj.contains_key("additionalProperties") {
                vec!["object"]
            } else if obj.contains_key("items") {
                vec!["array"]
            } else if let Some(values) = obj.get("enum").and_then(Json::as_array) {
                values
                    .iter()
                    .map(|v| match v {
                        Json::String(_) => "string",
                        Json::Bool(_) => "boolean",
                        Json::Number(_) => "number",
                        Json::Null => "null",
                        _ => "object",
                    })
                    .collect()
            } else if let Some(c) = obj.get("const") {
                match c {
                    Json::String(_) => vec!["string"],
                    _ => vec!["object", "array", "string", "number", "boolean", "null"],
                }
            } else {
                vec!["object", "array", "string", "number", "boolean", "null"]
            }
        }
    };
    for n in names {
        match n {
            "object" => t.object = true,
            "array" => t.array = true,
            "string" => t.string = true,
            "integer" => t.integer = true,
            "number" => t.number = true,
            "boolean" => t.boolean = true,
            "null" => t.null = true,
            _ => {}
        }
    }
    t
}

/// Every keyword used anywhere in `schema` (for the drift test).
pub fn keywords_used(schema: &Json) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    fn visit(v: &Json, out: &mut std::collections::BTreeSet<String>, in_map_of_names: bool) {
        match v {
            Json::Object(obj) => {
                for (k, child) in obj {
                    if !in_map_of_names {
                        out.insert(k.clone());
                    }
                    let names = !in_map_of_names && (k == "properties" || k == "$defs");
                    let literal = !in_map_of_names
                        && matches!(k.as_str(), "enum" | "const" | "default" | "examples");
                    if !literal {
                        visit(child, out, names);
                    }
                }
            }
            Json::Array(items) => {
                for i in items {
                    visit(i, out, false);
                }
            }
            _ => {}
        }
    }
    visit(schema, &mut out, false);
    out
}
