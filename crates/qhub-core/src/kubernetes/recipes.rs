//! Recipes the applier follows at apply time: Secrets qhub generates once and reuses, and objects
//! that need another object to exist.
//!
//! A component never puts a random value in a manifest (the plan would change on every run).
//! It declares a Secret without `data` and the [`ANNOTATION`] recipe instead: passwords for
//! some keys, or a self-signed certificate for some hosts. At apply time [`fill`] keeps every
//! key the live Secret already has and generates only the missing ones, so re-deploys reuse
//! them and the plan (which compares the manifest without `data`) never sees them.
//!
//! Secrets whose data comes from the config (a root password) are compared by digest
//! ([`comparable_secret`]): the plan, its JSON and the last-applied annotation hold a SHA-256
//! of each value, never the value.
//!
//! [`REQUIRES_ANNOTATION`] names an object (an existing TLS Secret) that must exist before an
//! object is applied; the apply checks it and fails with the config key and the fix.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
use sha2::Digest as _;

use super::KubeError;

/// The annotation holding a Secret's [`Recipe`].
pub const ANNOTATION: &str = "qhub.dev/generate";
/// The annotation holding a [`Requirement`].
pub const REQUIRES_ANNOTATION: &str = "qhub.dev/requires";
/// The annotation holding a [`Derived`] value.
pub const DERIVED_ANNOTATION: &str = "qhub.dev/derived";
/// The annotation (value `"true"`) of an object that may already exist in a shared cluster,
/// made by someone else: qhub creates it when absent, but uses one that exists without its
/// ApplySet label as it is, never taking it over (no apply) nor deleting it (a destroy deletes
/// only ApplySet members). The platform's Namespace is one: `provider: existing` may name a
/// namespace the cluster's owner made.
pub const USE_EXISTING_ANNOTATION: &str = "qhub.dev/use-existing";

/// A field whose value another object's live state gives at apply time (an NFS volume's
/// server is its Service's cluster IP, which exists only once the Service does). The manifest
/// holds [`Derived::placeholder`] there, which is what the plan compares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Derived {
    /// JSON pointer of the field in the annotated object.
    pub path: String,
    /// Kind (core group) of the object it comes from.
    pub kind: String,
    /// That object's namespace.
    pub namespace: String,
    /// That object's name.
    pub name: String,
    /// JSON pointer of the value in that object.
    pub field: String,
}

impl Derived {
    /// The text standing in for the value until apply.
    pub fn placeholder(&self) -> String {
        format!(
            "(from {} {}/{} {} at apply)",
            self.kind, self.namespace, self.name, self.field
        )
    }

    /// The plan id of the object it comes from.
    pub fn source_id(&self) -> crate::plan::ResourceId {
        crate::plan::ResourceId::new(&self.kind, format!("{}/{}", self.namespace, self.name))
    }
}

impl fmt::Display for Derived {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&serde_json::to_string(self).map_err(|_| fmt::Error)?)
    }
}

/// The derived field of a manifest, if any.
pub fn derived(manifest: &Json) -> Result<Option<Derived>, KubeError> {
    annotation(manifest, DERIVED_ANNOTATION)
        .map(|text| {
            serde_json::from_str(text).map_err(|e| {
                KubeError::Invalid(format!("bad {DERIVED_ANNOTATION} annotation: {e}"))
            })
        })
        .transpose()
}

/// How a generated Secret's data is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Recipe {
    /// A random 32-character password for each key; `fixed` keys get the given value (a user
    /// name beside its password).
    Passwords {
        /// Keys that get a random password.
        keys: Vec<String>,
        /// Keys with a fixed, non-secret value.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        fixed: BTreeMap<String, String>,
    },
    /// A self-signed certificate (`tls.crt`, `tls.key`) for the hosts.
    SelfSignedTls {
        /// Subject alternative names.
        hosts: Vec<String>,
    },
    /// An SSH host key under `key`: an ECDSA P-256 private key, PKCS#8 PEM, which both
    /// OpenSSH's sshd (through OpenSSL's PEM reader) and asyncssh load. Upstream's chart
    /// generates RSA and warns that ed25519 failed with its sftp image (yuvipanda/jupyterhub-ssh
    /// `helm-chart/jupyterhub-ssh/templates/_helpers.tpl`, `jupyterhub-ssh.hostKey`): OpenSSH
    /// reads PEM ed25519 keys only in its own format, while ECDSA in PKCS#8 is read by both.
    SshHostKey {
        /// The Secret's key holding the PEM.
        key: String,
    },
}

impl fmt::Display for Recipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&serde_json::to_string(self).map_err(|_| fmt::Error)?)
    }
}

/// An object that must exist before the annotated one is applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    /// Its kind (core group), e.g. `Secret`.
    pub kind: String,
    /// Its name, in the annotated object's namespace.
    pub name: String,
    /// The config key that names it.
    pub config_key: String,
    /// How to create it.
    pub hint: String,
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&serde_json::to_string(self).map_err(|_| fmt::Error)?)
    }
}

fn annotation<'a>(manifest: &'a Json, key: &str) -> Option<&'a str> {
    manifest
        .pointer(&format!("/metadata/annotations/{}", key.replace('/', "~1")))
        .and_then(Json::as_str)
}

/// The recipe of a manifest, if it is a generated Secret.
pub fn recipe(manifest: &Json) -> Result<Option<Recipe>, KubeError> {
    annotation(manifest, ANNOTATION)
        .map(|text| {
            serde_json::from_str(text)
                .map_err(|e| KubeError::Invalid(format!("bad {ANNOTATION} annotation: {e}")))
        })
        .transpose()
}

/// The requirement of a manifest, if any.
pub fn requirement(manifest: &Json) -> Result<Option<Requirement>, KubeError> {
    annotation(manifest, REQUIRES_ANNOTATION)
        .map(|text| {
            serde_json::from_str(text).map_err(|e| {
                KubeError::Invalid(format!("bad {REQUIRES_ANNOTATION} annotation: {e}"))
            })
        })
        .transpose()
}

/// Whether a manifest asks to use an existing object as it is ([`USE_EXISTING_ANNOTATION`]).
pub fn use_existing(manifest: &Json) -> bool {
    annotation(manifest, USE_EXISTING_ANNOTATION) == Some("true")
}

/// A random password of 32 letters and digits.
pub fn password() -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..32)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// A fresh SSH host key ([`Recipe::SshHostKey`]): ECDSA P-256, PKCS#8 PEM.
pub fn ssh_host_key() -> Result<String, KubeError> {
    rcgen::KeyPair::generate()
        .map(|k| k.serialize_pem())
        .map_err(|e| KubeError::Invalid(format!("generating an SSH host key: {e}")))
}

fn b64(text: &str) -> Json {
    Json::String(base64::engine::general_purpose::STANDARD.encode(text))
}

/// The manifest to apply for a generated Secret: the live Secret's values for every key it
/// has, freshly generated ones for the rest. A certificate is regenerated only when a part of
/// it is missing (its two keys belong together).
pub fn fill(manifest: &Json, recipe: &Recipe, live: Option<&Json>) -> Result<Json, KubeError> {
    let live_data = live
        .and_then(|l| l.get("data"))
        .and_then(Json::as_object)
        .cloned()
        .unwrap_or_default();
    let mut data = serde_json::Map::new();
    match recipe {
        Recipe::Passwords { keys, fixed } => {
            for key in keys {
                let value = live_data
                    .get(key)
                    .cloned()
                    .unwrap_or_else(|| b64(&password()));
                data.insert(key.clone(), value);
            }
            for (key, value) in fixed {
                data.insert(key.clone(), b64(value));
            }
        }
        Recipe::SelfSignedTls { hosts } => {
            match (live_data.get("tls.crt"), live_data.get("tls.key")) {
                (Some(crt), Some(key)) => {
                    data.insert("tls.crt".into(), crt.clone());
                    data.insert("tls.key".into(), key.clone());
                }
                _ => {
                    let generated =
                        rcgen::generate_simple_self_signed(hosts.clone()).map_err(|e| {
                            KubeError::Invalid(format!(
                                "generating a self-signed certificate for {hosts:?}: {e}"
                            ))
                        })?;
                    data.insert("tls.crt".into(), b64(&generated.cert.pem()));
                    data.insert(
                        "tls.key".into(),
                        b64(&generated.signing_key.serialize_pem()),
                    );
                }
            }
        }
        Recipe::SshHostKey { key } => {
            let value = match live_data.get(key) {
                Some(v) => v.clone(),
                None => b64(&ssh_host_key()?),
            };
            data.insert(key.clone(), value);
        }
    }
    let mut out = manifest.clone();
    out["data"] = Json::Object(data);
    Ok(out)
}

/// What the plan compares for a Secret: its `data` and `stringData` values replaced by their
/// SHA-256 digests, so that no value reaches a plan, its JSON, a log line or an annotation.
pub fn comparable_secret(manifest: &Json) -> Json {
    let mut out = manifest.clone();
    for field in ["data", "stringData"] {
        if let Some(map) = out.get_mut(field).and_then(Json::as_object_mut) {
            for value in map.values_mut() {
                let text = value.as_str().unwrap_or_default();
                *value = json!(format!(
                    "sha256:{:x}",
                    sha2::Sha256::digest(text.as_bytes())
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(recipe: &Recipe) -> Json {
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "annotations": {ANNOTATION: recipe.to_string()}}})
    }

    #[test]
    fn passwords_are_generated_once_and_reused() {
        let r = Recipe::Passwords {
            keys: vec!["password".into()],
            fixed: BTreeMap::from([("username".into(), "admin".into())]),
        };
        let m = secret(&r);
        assert_eq!(recipe(&m).unwrap(), Some(r.clone()));
        let first = fill(&m, &r, None).unwrap();
        let again = fill(&m, &r, Some(&first)).unwrap();
        assert_eq!(first["data"], again["data"]);
        let other = fill(&m, &r, None).unwrap();
        assert_ne!(first["data"]["password"], other["data"]["password"]);
        assert_eq!(first["data"]["username"], b64("admin"));
    }

    #[test]
    fn a_self_signed_certificate_is_generated_once() {
        let r = Recipe::SelfSignedTls {
            hosts: vec!["demo.example.com".into()],
        };
        let m = secret(&r);
        let first = fill(&m, &r, None).unwrap();
        let crt = base64::engine::general_purpose::STANDARD
            .decode(first["data"]["tls.crt"].as_str().unwrap())
            .unwrap();
        assert!(
            String::from_utf8(crt)
                .unwrap()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        assert_eq!(fill(&m, &r, Some(&first)).unwrap()["data"], first["data"]);
    }

    #[test]
    fn an_ssh_host_key_is_generated_once_and_kept() {
        let r = Recipe::SshHostKey {
            key: "hostKey".into(),
        };
        let m = secret(&r);
        assert_eq!(recipe(&m).unwrap(), Some(r.clone()));
        let first = fill(&m, &r, None).unwrap();
        let pem = base64::engine::general_purpose::STANDARD
            .decode(first["data"]["hostKey"].as_str().unwrap())
            .unwrap();
        let pem = String::from_utf8(pem).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
        assert_eq!(fill(&m, &r, Some(&first)).unwrap()["data"], first["data"]);
        assert_ne!(fill(&m, &r, None).unwrap()["data"], first["data"]);
    }

    #[test]
    fn secrets_are_compared_by_digest() {
        let s = json!({"kind": "Secret", "data": {"password": "c2VjcmV0"}, "stringData": {"token": "t0ps3cret"}});
        let c = comparable_secret(&s);
        let text = c.to_string();
        assert!(
            !text.contains("c2VjcmV0") && !text.contains("t0ps3cret"),
            "{text}"
        );
        assert!(
            c["data"]["password"]
                .as_str()
                .unwrap()
                .starts_with("sha256:")
        );
        assert_ne!(
            comparable_secret(&json!({"data": {"password": "b3RoZXI="}}))["data"]["password"],
            c["data"]["password"]
        );
    }
}
