//! Traefik's CustomResourceDefinitions (group `traefik.io`, version `v1alpha1`) as Traefik
//! v3.7.9 declares them (`docs/content/reference/dynamic-configuration/
//! kubernetes-crd-definition-v1.yml` at tag v3.7.9): the same ten kinds, names (kind, listKind,
//! plural, singular; no shortNames or categories), scope `Namespaced`, one version `v1alpha1`
//! served and stored, and no subresources (that release declares no `status`).
//!
//! The schemas are ours, not upstream's. Upstream's file is about 249 KB of controller-gen
//! output generated from Traefik's Go types; transcribing it would copy it, and keeping it in
//! step by hand with every Traefik patch would be a chore that fails silently (a field Traefik
//! adds and we lack is pruned from every tenant's objects). So the design guarantees instead
//! that no field Traefik accepts is pruned: every object node of our schemas keeps unknown
//! fields (`x-kubernetes-preserve-unknown-fields: true`, [`served_schema`]), and only the fields
//! the platform writes are modelled, with their upstream types, so that the API server still
//! checks what we send. [`spec_schema`] is that model, closed: our own test validator
//! ([`validate`]) uses it to catch a field we write by mistake. A test holds upstream's
//! top-level spec fields per kind and proves the in-memory API's structural pruning keeps them.
//! Where the cluster already has Traefik's own CRDs, those are used as they are
//! ([`crate::kubernetes::apply`]).

use serde_json::{Value as Json, json};

use super::super::Crd;

/// Traefik's CRD group.
pub const GROUP: &str = "traefik.io";
/// The served and stored version.
pub const VERSION: &str = "v1alpha1";

fn strings() -> Json {
    json!({"type": "array", "items": {"type": "string"}})
}

fn int_or_string() -> Json {
    json!({"x-kubernetes-int-or-string": true})
}

fn reference() -> Json {
    json!({"type": "object", "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}}, "required": ["name"]})
}

/// A route's `tls`; `passthrough` exists only for TCP routes.
fn tls(tcp: bool) -> Json {
    let mut t = json!({"type": "object", "properties": {
        "secretName": {"type": "string"},
        "certResolver": {"type": "string"},
        "options": reference(),
        "store": reference(),
        "domains": {"type": "array", "items": {"type": "object", "properties": {
            "main": {"type": "string"}, "sans": strings()}}}
    }});
    if tcp {
        t["properties"]["passthrough"] = json!({"type": "boolean"});
    }
    t
}

fn open() -> Json {
    json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
}

/// The `spec` schema of each kind as the platform writes it: closed (no unknown field), for
/// [`validate`]; the CRDs serve it opened ([`served_schema`]).
pub fn spec_schema(kind: &str) -> Json {
    match kind {
        "IngressRoute" => json!({"type": "object", "required": ["routes"], "properties": {
            "entryPoints": strings(),
            "routes": {"type": "array", "items": {"type": "object", "required": ["match"], "properties": {
                "match": {"type": "string"},
                "kind": {"type": "string", "enum": ["Rule"]},
                "priority": {"type": "integer"},
                "middlewares": {"type": "array", "items": reference()},
                "services": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
                    "name": {"type": "string"},
                    "namespace": {"type": "string"},
                    "kind": {"type": "string", "enum": ["Service", "TraefikService"]},
                    "port": int_or_string(),
                    "scheme": {"type": "string"},
                    "passHostHeader": {"type": "boolean"}
                }}}
            }}},
            "tls": tls(false)
        }}),
        "IngressRouteTCP" => json!({"type": "object", "required": ["routes"], "properties": {
            "entryPoints": strings(),
            "routes": {"type": "array", "items": {"type": "object", "required": ["match"], "properties": {
                "match": {"type": "string"},
                "priority": {"type": "integer"},
                "services": {"type": "array", "items": {"type": "object", "required": ["name", "port"], "properties": {
                    "name": {"type": "string"},
                    "namespace": {"type": "string"},
                    "port": int_or_string(),
                    "weight": {"type": "integer"}
                }}}
            }}},
            "tls": tls(true)
        }}),
        "Middleware" => json!({"type": "object", "properties": {
            "stripPrefix": {"type": "object", "properties": {"prefixes": strings()}},
            "stripPrefixRegex": {"type": "object", "properties": {"regex": strings()}},
            "redirectScheme": {"type": "object", "properties": {
                "scheme": {"type": "string"}, "port": {"type": "string"}, "permanent": {"type": "boolean"}}},
            "headers": open(),
            "forwardAuth": open(),
            "chain": open()
        }}),
        "TLSStore" => json!({"type": "object", "properties": {
            "defaultCertificate": {"type": "object", "required": ["secretName"], "properties": {
                "secretName": {"type": "string"}}},
            "certificates": {"type": "array", "items": {"type": "object", "properties": {
                "secretName": {"type": "string"}}}}
        }}),
        _ => open(),
    }
}

/// Every kind Traefik's Kubernetes CRD provider watches, with its plural.
pub const KINDS: &[(&str, &str)] = &[
    ("IngressRoute", "ingressroutes"),
    ("IngressRouteTCP", "ingressroutetcps"),
    ("IngressRouteUDP", "ingressrouteudps"),
    ("Middleware", "middlewares"),
    ("MiddlewareTCP", "middlewaretcps"),
    ("ServersTransport", "serverstransports"),
    ("ServersTransportTCP", "serverstransporttcps"),
    ("TLSOption", "tlsoptions"),
    ("TLSStore", "tlsstores"),
    ("TraefikService", "traefikservices"),
];

/// The full `openAPIV3Schema` of a kind as the platform writes it (closed, for [`validate`]).
pub fn schema(kind: &str) -> Json {
    json!({"type": "object", "required": ["metadata", "spec"], "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": spec_schema(kind)
    }})
}

/// The `openAPIV3Schema` the CRD serves: [`schema`] with every object node below the root
/// keeping unknown fields, so that structural pruning removes nothing Traefik accepts.
pub fn served_schema(kind: &str) -> Json {
    let mut s = schema(kind);
    if let Some(spec) = s.pointer_mut("/properties/spec") {
        open_objects(spec);
    }
    s
}

/// Marks every object node of `schema` as keeping unknown fields (an object without declared
/// properties or additionalProperties would otherwise be pruned empty).
fn open_objects(schema: &mut Json) {
    let Some(map) = schema.as_object_mut() else {
        return;
    };
    if map.get("type").and_then(Json::as_str) == Some("object")
        && !map.contains_key("additionalProperties")
    {
        map.insert(
            "x-kubernetes-preserve-unknown-fields".into(),
            Json::Bool(true),
        );
    }
    if let Some(props) = map.get_mut("properties").and_then(Json::as_object_mut) {
        for child in props.values_mut() {
            open_objects(child);
        }
    }
    if let Some(items) = map.get_mut("items") {
        open_objects(items);
    }
}

/// The CRDs, as the ingress declares them ([`super::super::Built::crd`]).
pub fn crds() -> Vec<Crd> {
    KINDS
        .iter()
        .map(|(kind, plural)| Crd {
            app: super::NAME.into(),
            group: GROUP.into(),
            version: VERSION.into(),
            kind: (*kind).into(),
            plural: (*plural).into(),
            schema: served_schema(kind),
            status_subresource: false,
        })
        .collect()
}

/// Checks `value` against a structural schema as the API server would (types, required
/// fields, enums, and no field the schema does not declare unless it preserves unknown
/// fields). Returns every problem, each with its JSON path.
pub fn validate(schema: &Json, value: &Json) -> Vec<String> {
    let mut problems = Vec::new();
    check(schema, value, "", &mut problems);
    problems
}

fn check(schema: &Json, value: &Json, path: &str, out: &mut Vec<String>) {
    if schema
        .get("x-kubernetes-int-or-string")
        .and_then(Json::as_bool)
        == Some(true)
    {
        if !(value.is_i64() || value.is_u64() || value.is_string()) {
            out.push(format!("{path}: expected an integer or a string"));
        }
        return;
    }
    let ok = match schema.get("type").and_then(Json::as_str) {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("boolean") => value.is_boolean(),
        Some("number") => value.is_number(),
        _ => true,
    };
    if !ok {
        out.push(format!("{path}: expected {}", schema["type"]));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Json::as_array)
        && !allowed.contains(value)
    {
        out.push(format!("{path}: {value} is not one of {allowed:?}"));
    }
    if let Some(items) = schema.get("items")
        && let Some(list) = value.as_array()
    {
        for (i, item) in list.iter().enumerate() {
            check(items, item, &format!("{path}[{i}]"), out);
        }
    }
    if let Some(object) = value.as_object() {
        let props = schema.get("properties").and_then(Json::as_object);
        for required in schema
            .get("required")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .filter_map(Json::as_str)
        {
            if !object.contains_key(required) {
                out.push(format!("{path}.{required}: required"));
            }
        }
        let open = schema
            .get("x-kubernetes-preserve-unknown-fields")
            .and_then(Json::as_bool)
            == Some(true);
        for (key, v) in object {
            match props.and_then(|p| p.get(key)) {
                Some(s) => check(s, v, &format!("{path}.{key}"), out),
                None if open || props.is_none() && path.ends_with("metadata") => {}
                None => out.push(format!("{path}.{key}: unknown field")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderKind;
    use crate::config::certificate::CertificateKind;
    use crate::provider::ClusterFacts;

    #[test]
    fn every_instance_we_build_matches_our_crd_schema() {
        let mut checked = 0;
        for provider in [ProviderKind::Aws, ProviderKind::Gcp, ProviderKind::Do] {
            for kind in [
                CertificateKind::SelfSigned,
                CertificateKind::LetsEncrypt,
                CertificateKind::Existing,
                CertificateKind::Disabled,
            ] {
                let mut config = crate::kubernetes::components::test_config(provider);
                config.certificate.kind = kind;
                config.certificate.acme_email = Some("admin@example.com".into());
                config.certificate.secret_name = Some("my-tls".into());
                let facts = ClusterFacts::from_config(&config);
                for m in crate::kubernetes::components::manifests(&config, &facts).unwrap() {
                    if m["apiVersion"] != format!("{GROUP}/{VERSION}") {
                        continue;
                    }
                    let problems = validate(&schema(m["kind"].as_str().unwrap()), &m);
                    assert!(problems.is_empty(), "{kind:?}: {m}: {problems:?}");
                    checked += 1;
                }
            }
        }
        assert!(checked >= 24, "only {checked} instances checked");
    }

    #[test]
    fn the_validator_rejects_what_the_api_server_would() {
        let s = schema("IngressRoute");
        let good = json!({"apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute", "metadata": {"name": "x"},
            "spec": {"routes": [{"match": "PathPrefix(`/`)", "kind": "Rule", "services": [{"name": "s", "port": 80}]}]}});
        assert_eq!(validate(&s, &good), Vec::<String>::new());
        let bad = json!({"apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute", "metadata": {"name": "x"},
            "spec": {"routes": [{"kind": "Rules", "services": [{"name": "s", "port": true, "wieght": 1}]}]}});
        let problems = validate(&s, &bad);
        assert!(
            problems.iter().any(|p| p.contains("match: required")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("not one of")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("port: expected an integer")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("wieght: unknown field")),
            "{problems:?}"
        );
    }
}
