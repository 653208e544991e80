//! The config as a support bundle shows it: every value under a key that holds a secret
//! (`*password*`, `*secret*`, `*token*`, `*key*` but `kube_context`-like names, …) replaced,
//! unless it is a `QHUB_SECRET_` reference (which names the variable, not the value); and the
//! values `QHUB_SECRET_` references resolved to, gathered to scrub from every other entry.

use serde_json::Value as Json;

use crate::config::Config;

/// What replaces a secret value in the config.
pub const REDACTED: &str = "<redacted>";

/// Whether a key's value is a secret.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "private",
        "credential",
        "api_key",
        "access_key",
    ]
    .iter()
    .any(|w| k.contains(w))
        || k == "key"
        || k.ends_with("_key")
}

fn redact_value(v: &mut Json) {
    match v {
        Json::String(s) if s.starts_with("QHUB_SECRET_") => {}
        Json::Null | Json::Bool(_) => {}
        Json::Object(map) => map.values_mut().for_each(redact_value),
        Json::Array(items) => items.iter_mut().for_each(redact_value),
        other => *other = Json::String(REDACTED.into()),
    }
}

fn walk(v: &mut Json) {
    match v {
        Json::Object(map) => {
            for (k, child) in map.iter_mut() {
                if is_secret_key(k) {
                    redact_value(child);
                } else {
                    walk(child);
                }
            }
        }
        Json::Array(items) => items.iter_mut().for_each(walk),
        _ => {}
    }
}

/// `config` (as loaded, `QHUB_SECRET_` references unresolved) as YAML, secrets redacted.
pub fn config_yaml(config: &Config) -> String {
    let mut json = serde_json::to_value(config).unwrap_or(Json::Null);
    walk(&mut json);
    crate::config::yaml::emit(&crate::config::yaml::Node::from_json(&json))
}

/// The strings of `resolved` that differ from `unresolved` at the same place (what
/// `QHUB_SECRET_` references resolved to), and every value under a secret key: the values to
/// scrub from the other entries.
pub fn secret_values(unresolved: &Config, resolved: &Config) -> Vec<String> {
    let a = serde_json::to_value(unresolved).unwrap_or(Json::Null);
    let b = serde_json::to_value(resolved).unwrap_or(Json::Null);
    let mut out = Vec::new();
    collect(&a, &b, false, &mut out);
    out
}

fn collect(a: &Json, b: &Json, secret: bool, out: &mut Vec<String>) {
    match (a, b) {
        (Json::Object(x), Json::Object(y)) => {
            for (k, vb) in y {
                let va = x.get(k).unwrap_or(&Json::Null);
                collect(va, vb, secret || is_secret_key(k), out);
            }
        }
        (Json::Array(x), Json::Array(y)) => {
            for (i, vb) in y.iter().enumerate() {
                collect(x.get(i).unwrap_or(&Json::Null), vb, secret, out);
            }
        }
        (_, Json::String(s)) if secret || a != b => out.push(s.clone()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys() {
        for k in [
            "initial_root_password",
            "client_secret",
            "token",
            "secret_key",
            "key",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in [
            "kube_context",
            "domain",
            "keycloak",
            "client_id",
            "namespace",
        ] {
            assert!(!is_secret_key(k), "{k}");
        }
    }
}
