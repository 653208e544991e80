//! `QHUB_SECRET_X` substitution: a value containing `QHUB_SECRET_X` has it replaced by the value
//! of environment variable `X` at deploy time, in memory only; nothing is written back to disk.

use serde_json::Value as Json;

use super::{ConfigError, KeyPath};

/// The marker that introduces a secret reference.
pub const PREFIX: &str = "QHUB_SECRET_";

/// The variable names referenced in `text`, in order.
pub fn references(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(PREFIX) {
        let after = &rest[i + PREFIX.len()..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if end > 0 {
            out.push(&after[..end]);
        }
        rest = &after[end..];
    }
    out
}

/// Returns `value` with every reference replaced through `lookup`; a missing variable is an error
/// naming it and the key that asked for it.
pub fn substitute(
    value: &Json,
    lookup: &dyn Fn(&str) -> Option<String>,
    path: &KeyPath,
) -> Result<Json, ConfigError> {
    Ok(match value {
        Json::String(s) if s.contains(PREFIX) => {
            let mut out = s.clone();
            for var in references(s) {
                let secret = lookup(var).ok_or_else(|| ConfigError::MissingSecret {
                    path: path.clone(),
                    var: var.to_string(),
                })?;
                out = out.replacen(&format!("{PREFIX}{var}"), &secret, 1);
            }
            Json::String(out)
        }
        Json::Array(items) => Json::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| substitute(v, lookup, &path.index(i)))
                .collect::<Result<_, _>>()?,
        ),
        Json::Object(map) => Json::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), substitute(v, lookup, &path.key(k))?)))
                .collect::<Result<_, ConfigError>>()?,
        ),
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_references() {
        assert_eq!(references("QHUB_SECRET_GH_ID"), vec!["GH_ID"]);
        assert_eq!(
            references("a-QHUB_SECRET_X-b QHUB_SECRET_Y"),
            vec!["X", "Y"]
        );
        assert!(references("QHUB_SECRET_").is_empty());
        assert!(references("plain").is_empty());
    }

    #[test]
    fn substitutes_and_names_missing_variables() {
        let v = serde_json::json!({"a": {"b": ["x-QHUB_SECRET_ONE"]}});
        let lookup = |k: &str| (k == "ONE").then(|| "1".to_string());
        let out = substitute(&v, &lookup, &KeyPath::root()).unwrap();
        assert_eq!(out, serde_json::json!({"a": {"b": ["x-1"]}}));
        let v = serde_json::json!({"a": "QHUB_SECRET_TWO"});
        match substitute(&v, &lookup, &KeyPath::root()) {
            Err(ConfigError::MissingSecret { path, var }) => {
                assert_eq!(var, "TWO");
                assert_eq!(path.to_string(), "a");
            }
            other => panic!("expected MissingSecret, got {other:?}"),
        }
    }
}
