//! DigitalOcean's OpenAPI description as a request checker.
//!
//! The emulator checks every request it serves against the official spec
//! (`shared/specs/digitalocean-public.v2.yaml`, OpenAPI 3.0): the request body against the
//! operation's `requestBody` schema, and the query string against its `parameters`. A request
//! off the spec is answered 422 and counted, so a test can assert that the provider never sends
//! one the real API would not accept.
//!
//! OpenAPI 3.0 schemas are not quite JSON Schema; [`to_json_schema`] converts what the
//! Kubernetes operations use: `$ref`s are inlined, `nullable: true` adds `null` to the type, the
//! boolean `exclusiveMinimum`/`exclusiveMaximum` of draft 4 become numbers, and in a request a
//! `readOnly` property is forbidden (the spec: "SHOULD NOT be sent as part of the request").
//! Formats are not checked (the spec's `cidr` and `uuid` formats are not JSON Schema's).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value as Json};

/// The environment variable naming the spec file (default: [`default_path`]).
pub const SPEC_ENV: &str = "QHUB_DO_SPEC";

/// `shared/specs/digitalocean-public.v2.yaml` beside this repository's checkout (`../shared`).
pub fn default_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/specs/digitalocean-public.v2.yaml")
        .components()
        .collect()
}

/// The spec file to use: [`SPEC_ENV`] when set, else [`default_path`].
pub fn path_from_env() -> PathBuf {
    std::env::var_os(SPEC_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(default_path)
}

/// One query parameter of an operation.
struct Param {
    name: String,
    required: bool,
    integer: bool,
    validator: jsonschema::Validator,
}

/// The checks of one operation.
struct Operation {
    body: Option<jsonschema::Validator>,
    body_required: bool,
    query: Vec<Param>,
    /// The JSON schema of each success answer, by status.
    responses: BTreeMap<u16, jsonschema::Validator>,
}

/// The request checks of the operations the emulator serves (under `/v2/kubernetes`, and
/// `/v2/account`), by `operationId`.
pub struct Spec {
    operations: BTreeMap<String, Operation>,
    path: PathBuf,
}

impl std::fmt::Debug for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spec")
            .field("path", &self.path)
            .field("operations", &self.operations.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Why the spec could not be used.
#[derive(Debug)]
pub struct SpecError(pub String);

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SpecError {}

/// Follows a local `$ref` (`#/components/schemas/x`).
fn lookup<'a>(root: &'a Json, reference: &str) -> Option<&'a Json> {
    let pointer = reference.strip_prefix('#')?;
    root.pointer(pointer)
}

/// Converts an OpenAPI 3.0 schema to a self-contained JSON Schema (see the module docs).
/// `request`: forbid `readOnly` properties.
pub fn to_json_schema(root: &Json, schema: &Json, request: bool) -> Json {
    convert(root, schema, request, 0)
}

fn convert(root: &Json, schema: &Json, request: bool, depth: usize) -> Json {
    // The Kubernetes schemas are not recursive; the bound only guards against a spec that is.
    if depth > 64 {
        return Json::Bool(true);
    }
    match schema {
        Json::Object(map) => {
            if let Some(Json::String(r)) = map.get("$ref") {
                return match lookup(root, r) {
                    Some(target) => convert(root, target, request, depth + 1),
                    None => Json::Bool(true),
                };
            }
            let mut out = Map::new();
            for (k, v) in map {
                match k.as_str() {
                    "example" | "examples" | "description" | "discriminator" | "xml"
                    | "externalDocs" | "deprecated" | "nullable" | "readOnly" | "writeOnly"
                    | "format" | "title" => {}
                    "properties" => {
                        let mut props = Map::new();
                        if let Json::Object(p) = v {
                            for (name, s) in p {
                                let read_only =
                                    s.get("readOnly").and_then(Json::as_bool) == Some(true);
                                props.insert(
                                    name.clone(),
                                    if request && read_only {
                                        Json::Bool(false)
                                    } else {
                                        convert(root, s, request, depth + 1)
                                    },
                                );
                            }
                        }
                        out.insert(k.clone(), Json::Object(props));
                    }
                    "items" | "additionalProperties" | "not" => {
                        out.insert(k.clone(), convert(root, v, request, depth + 1));
                    }
                    "allOf" | "anyOf" | "oneOf" => {
                        let list = v
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .map(|s| convert(root, s, request, depth + 1))
                                    .collect()
                            })
                            .unwrap_or_default();
                        out.insert(k.clone(), Json::Array(list));
                    }
                    "exclusiveMinimum" | "exclusiveMaximum" if v.is_boolean() => {}
                    _ => {
                        out.insert(k.clone(), v.clone());
                    }
                }
            }
            // Draft 4's boolean exclusive bounds become draft 6+ numeric ones.
            for (flag, bound) in [
                ("exclusiveMinimum", "minimum"),
                ("exclusiveMaximum", "maximum"),
            ] {
                if map.get(flag) == Some(&Json::Bool(true))
                    && let Some(b) = out.remove(bound)
                {
                    out.insert(flag.into(), b);
                }
            }
            if map.get("nullable") == Some(&Json::Bool(true))
                && let Some(Json::String(t)) = out.get("type").cloned()
            {
                out.insert("type".into(), serde_json::json!([t, "null"]));
            }
            Json::Object(out)
        }
        other => other.clone(),
    }
}

fn compile(schema: &Json) -> Result<jsonschema::Validator, SpecError> {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .build(schema)
        .map_err(|e| SpecError(format!("a schema of the spec does not compile: {e}")))
}

impl Spec {
    /// Loads the spec at `path` and compiles the checks of every operation under
    /// `/v2/kubernetes`, and of `/v2/account`.
    pub fn load(path: &Path) -> Result<Self, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            SpecError(format!(
                "cannot read DigitalOcean's OpenAPI spec at {}: {e}; the DOKS emulator checks every \
                 request against it and does not run unchecked: set {SPEC_ENV} to the file \
                 (shared/specs/digitalocean-public.v2.yaml beside the checkout)",
                path.display()
            ))
        })?;
        let root: Json = serde_saphyr::from_str(&text)
            .map_err(|e| SpecError(format!("{} is not YAML: {e}", path.display())))?;
        Self::from_document(&root, path)
    }

    /// Compiles the checks from an already parsed spec document.
    pub fn from_document(root: &Json, path: &Path) -> Result<Self, SpecError> {
        let paths = root
            .get("paths")
            .and_then(Json::as_object)
            .ok_or_else(|| SpecError("the spec has no `paths`".into()))?;
        let mut operations = BTreeMap::new();
        for (template, item) in paths {
            if !template.starts_with("/v2/kubernetes") && template != "/v2/account" {
                continue;
            }
            let Some(item) = item.as_object() else {
                continue;
            };
            for (method, op) in item {
                let Some(id) = op.get("operationId").and_then(Json::as_str) else {
                    continue;
                };
                let mut body = None;
                let mut body_required = false;
                if let Some(rb) = op.get("requestBody") {
                    let rb = match rb.get("$ref").and_then(Json::as_str) {
                        Some(r) => lookup(root, r).unwrap_or(rb),
                        None => rb,
                    };
                    body_required = rb.get("required").and_then(Json::as_bool) == Some(true);
                    if let Some(schema) = rb.pointer("/content/application~1json/schema") {
                        body = Some(compile(&to_json_schema(root, schema, true))?);
                    }
                }
                let mut query = Vec::new();
                let params = op
                    .get("parameters")
                    .and_then(Json::as_array)
                    .into_iter()
                    .flatten()
                    .chain(
                        item.get("parameters")
                            .and_then(Json::as_array)
                            .into_iter()
                            .flatten(),
                    );
                for p in params {
                    let p = match p.get("$ref").and_then(Json::as_str) {
                        Some(r) => lookup(root, r).unwrap_or(p),
                        None => p,
                    };
                    if p.get("in").and_then(Json::as_str) != Some("query") {
                        continue;
                    }
                    let schema =
                        to_json_schema(root, p.get("schema").unwrap_or(&Json::Bool(true)), true);
                    query.push(Param {
                        name: p
                            .get("name")
                            .and_then(Json::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        required: p.get("required").and_then(Json::as_bool) == Some(true),
                        integer: schema.get("type").and_then(Json::as_str) == Some("integer"),
                        validator: compile(&schema)?,
                    });
                }
                let _ = method;
                let mut responses = BTreeMap::new();
                for (status, answer) in op
                    .get("responses")
                    .and_then(Json::as_object)
                    .into_iter()
                    .flatten()
                {
                    let Some(status) = status
                        .parse::<u16>()
                        .ok()
                        .filter(|s| (200..300).contains(s))
                    else {
                        continue;
                    };
                    let answer = match answer.get("$ref").and_then(Json::as_str) {
                        Some(r) => lookup(root, r).unwrap_or(answer),
                        None => answer,
                    };
                    if let Some(schema) = answer.pointer("/content/application~1json/schema") {
                        responses.insert(status, compile(&to_json_schema(root, schema, false))?);
                    }
                }
                operations.insert(
                    id.to_string(),
                    Operation {
                        body,
                        body_required,
                        query,
                        responses,
                    },
                );
            }
        }
        if operations.is_empty() {
            return Err(SpecError(
                "the spec describes no operation under /v2/kubernetes".into(),
            ));
        }
        Ok(Self {
            operations,
            path: path.to_path_buf(),
        })
    }

    /// The file the spec was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when the spec describes `operation_id`.
    pub fn has(&self, operation_id: &str) -> bool {
        self.operations.contains_key(operation_id)
    }

    /// What is wrong with a success answer of `operation_id` (empty: it conforms, or the spec
    /// gives no JSON schema for that status).
    pub fn check_response(&self, operation_id: &str, status: u16, body: &Json) -> Vec<String> {
        let Some(op) = self.operations.get(operation_id) else {
            return vec![format!("operation {operation_id} is not in the spec")];
        };
        match op.responses.get(&status) {
            Some(v) => v
                .iter_errors(body)
                .map(|e| format!("answer {status}{}: {e}", e.instance_path()))
                .collect(),
            None => Vec::new(),
        }
    }

    /// What is wrong with a request to `operation_id` (empty: it conforms). `query` is the
    /// decoded query string; `body` the parsed JSON body, if any.
    pub fn check(
        &self,
        operation_id: &str,
        query: &[(String, String)],
        body: Option<&Json>,
    ) -> Vec<String> {
        let Some(op) = self.operations.get(operation_id) else {
            return vec![format!("operation {operation_id} is not in the spec")];
        };
        let mut problems = Vec::new();
        for (k, v) in query {
            let Some(p) = op.query.iter().find(|p| &p.name == k) else {
                problems.push(format!("query parameter `{k}` is not in the spec"));
                continue;
            };
            let value = if p.integer {
                match v.parse::<i64>() {
                    Ok(n) => Json::from(n),
                    Err(_) => {
                        problems.push(format!("query parameter `{k}={v}` is not an integer"));
                        continue;
                    }
                }
            } else {
                Json::String(v.clone())
            };
            problems.extend(
                p.validator
                    .iter_errors(&value)
                    .map(|e| format!("query parameter `{k}`: {e}")),
            );
        }
        for p in op.query.iter().filter(|p| p.required) {
            if !query.iter().any(|(k, _)| *k == p.name) {
                problems.push(format!("required query parameter `{}` is missing", p.name));
            }
        }
        match (&op.body, body) {
            (Some(v), Some(b)) => problems.extend(
                v.iter_errors(b)
                    .map(|e| format!("body{}: {e}", e.instance_path())),
            ),
            (Some(_), None) if op.body_required => {
                problems.push("the request body is required".into());
            }
            (None, Some(_)) => problems.push("this operation takes no request body".into()),
            _ => {}
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Json {
        json!({
            "paths": {"/v2/kubernetes/clusters": {"post": {
                "operationId": "create",
                "parameters": [{"$ref": "#/components/parameters/page"}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/c"}}}}
            }}},
            "components": {
                "parameters": {"page": {"in": "query", "name": "page", "schema": {"type": "integer", "minimum": 1}}},
                "schemas": {"c": {"type": "object", "required": ["name"], "properties": {
                    "id": {"type": "string", "readOnly": true},
                    "name": {"type": "string"},
                    "labels": {"type": "object", "nullable": true},
                    "pools": {"type": "array", "items": {"allOf": [{"$ref": "#/components/schemas/p"}]}}
                }},
                "p": {"type": "object", "properties": {"effect": {"type": "string", "enum": ["NoSchedule"]}}}}
            }
        })
    }

    #[test]
    fn bodies_and_queries_are_checked_with_refs_nullable_and_read_only() {
        let spec = Spec::from_document(&doc(), Path::new("x")).unwrap();
        let ok = json!({"name": "a", "labels": null, "pools": [{"effect": "NoSchedule"}]});
        assert!(spec.check("create", &[], Some(&ok)).is_empty());
        let bad = json!({"id": "x", "pools": [{"effect": "Sometimes"}]});
        let problems = spec.check("create", &[("page".into(), "0".into())], Some(&bad));
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(!spec.check("create", &[], None).is_empty());
        assert!(
            !spec
                .check("create", &[("tag".into(), "x".into())], Some(&ok))
                .is_empty()
        );
    }
}
