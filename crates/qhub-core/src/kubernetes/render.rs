//! `qhub render --manifests DIR`: every object the Kubernetes stage would apply, as YAML files
//! for review and GitOps, made offline (no cloud or cluster call).
//!
//! One file per object, `DIR/<component>/<kind>-<name>.yaml`, each starting with
//! [`HEADER`]. Values only the infrastructure stage knows (a new EFS file system's address)
//! appear as the placeholder `(known after apply)`; values taken from another object at apply
//! time say where from. No secret value is written: generated Secrets have no data (qhub
//! generates it once, in the cluster) and Secrets from the config show `(set at deploy)`.
//! Keycloak's realm, groups, identity provider and clients are not Kubernetes objects (they
//! are applied through Keycloak's admin API, and `qhub plan` shows them), so they are not
//! written.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use super::KubeError;
use super::components;
use crate::config::Config;
use crate::config::yaml;
use crate::provider::ClusterFacts;

/// The first line of every rendered file; files that start with it and are no longer
/// rendered are removed on the next render.
pub const HEADER: &str =
    "# Rendered by `qhub render`: do not edit, change qhub-config.yaml instead.";

/// Stands in for a Secret's value from the config.
pub const SECRET_PLACEHOLDER: &str = "(set at deploy)";

/// One rendered file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Path relative to the output directory.
    pub path: PathBuf,
    /// The YAML, starting with [`HEADER`].
    pub text: String,
}

fn file_name(manifest: &Json) -> String {
    let kind = manifest
        .get("kind")
        .and_then(Json::as_str)
        .unwrap_or("object")
        .to_lowercase();
    let name = manifest
        .pointer("/metadata/name")
        .and_then(Json::as_str)
        .unwrap_or("unnamed");
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{kind}-{safe}.yaml")
}

/// Replaces every value of a Secret's `data` and `stringData` with [`SECRET_PLACEHOLDER`].
fn redact(manifest: &mut Json) {
    if manifest.get("kind").and_then(Json::as_str) != Some("Secret") {
        return;
    }
    for field in ["data", "stringData"] {
        if let Some(map) = manifest.get_mut(field).and_then(Json::as_object_mut) {
            for v in map.values_mut() {
                *v = Json::String(SECRET_PLACEHOLDER.into());
            }
        }
    }
}

/// The files for a config on a cluster with `facts`, in a stable order.
pub fn render(config: &Config, facts: &ClusterFacts) -> Result<Vec<Rendered>, KubeError> {
    let mut out = Vec::new();
    for (component, objects) in components::build(config, facts)? {
        for mut m in objects {
            redact(&mut m);
            let text = format!("{HEADER}\n{}", yaml::emit(&yaml::Node::from_json(&m)));
            out.push(Rendered {
                path: Path::new(component).join(file_name(&m)),
                text,
            });
        }
    }
    Ok(out)
}

/// Errors of writing rendered files.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// Building the objects failed.
    #[error(transparent)]
    Build(#[from] KubeError),
    /// A file could not be written.
    #[error(transparent)]
    Write(#[from] crate::fs::WriteError),
    /// The directory could not be read or a stale file removed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Two objects would be written to one file.
    #[error("two objects render to {0}")]
    Collision(PathBuf),
}

/// What [`write()`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// Files written (new or changed).
    pub written: Vec<PathBuf>,
    /// Files already up to date.
    pub unchanged: Vec<PathBuf>,
    /// Files of an earlier render removed because their object is gone.
    pub removed: Vec<PathBuf>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RenderError + '_ {
    move |source| RenderError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `files` under `dir` (each atomically; unchanged files are not touched) and removes
/// the files of an earlier render that are no longer rendered. Files without [`HEADER`] are
/// never removed.
pub fn write(dir: &Path, files: &[Rendered]) -> Result<Written, RenderError> {
    // Stale files of an earlier render: one level of component directories deep.
    let mut stale_dirs = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.path().is_dir() {
                stale_dirs.push(PathBuf::from(entry.file_name()));
            }
        }
    }
    write_owned(dir, files, &stale_dirs, &|rel, text| {
        rel.extension().is_some_and(|e| e == "yaml") && text.starts_with(HEADER)
    })
}

/// The mechanism behind every `qhub render` output (manifests, CI/CD pipelines): writes
/// `files` under `dir` (each atomically; unchanged files are not touched), then removes each
/// file directly in one of `stale_dirs` (relative to `dir`; an empty path is `dir` itself)
/// that is not in `files` and that `owned` (given its path relative to `dir` and its text)
/// says an earlier render of the same owner wrote. Nothing else is ever removed.
pub fn write_owned(
    dir: &Path,
    files: &[Rendered],
    stale_dirs: &[PathBuf],
    owned: &dyn Fn(&Path, &str) -> bool,
) -> Result<Written, RenderError> {
    let mut result = Written::default();
    let mut wanted = BTreeSet::new();
    for f in files {
        if !wanted.insert(f.path.clone()) {
            return Err(RenderError::Collision(f.path.clone()));
        }
        let path = dir.join(&f.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        match std::fs::read_to_string(&path) {
            Ok(old) if old == f.text => {
                result.unchanged.push(f.path.clone());
                continue;
            }
            _ => {}
        }
        crate::fs::replace(&path, f.text.as_bytes())?;
        result.written.push(f.path.clone());
    }
    for sub in stale_dirs {
        let sub = dir.join(sub);
        let Ok(entries) = std::fs::read_dir(&sub) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let Ok(rel) = path.strip_prefix(dir) else {
                continue;
            };
            if wanted.contains(rel) || !path.is_file() {
                continue;
            }
            let ours = std::fs::read_to_string(&path)
                .map(|t| owned(rel, &t))
                .unwrap_or(false);
            if ours {
                std::fs::remove_file(&path).map_err(io(&path))?;
                result.removed.push(rel.to_path_buf());
            }
        }
    }
    Ok(result)
}
