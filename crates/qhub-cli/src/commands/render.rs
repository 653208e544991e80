//! `qhub render --manifests DIR`: the Kubernetes stage's objects as YAML files, offline.

use std::path::{Path, PathBuf};

use anyhow::Context;
use qhub_core::kubernetes::render;
use qhub_core::provider::ClusterFacts;
use serde::Serialize;

use crate::cli::{OutputFormat, RenderArgs};

#[derive(Serialize)]
struct Result<'a> {
    directory: &'a Path,
    objects: usize,
    written: Vec<PathBuf>,
    unchanged: usize,
    removed: Vec<PathBuf>,
}

/// Renders the config's manifests into `args.manifests`.
pub fn run(args: &RenderArgs, format: OutputFormat) -> anyhow::Result<u8> {
    let config = super::lifecycle::load(&args.config)?.config;
    let dir = match args.config.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // The provider's view of the cluster, from the config alone (building a provider makes no
    // network call); what only the infrastructure knows is a placeholder.
    let facts = match super::lifecycle::registry().build(&config, &dir) {
        Ok(provider) => provider.cluster_facts(&config, &[]),
        Err(e) => {
            tracing::warn!(
                "provider `{}`: {e}; rendering with generic cluster facts",
                config.provider
            );
            ClusterFacts::from_config(&config)
        }
    };
    let files = render::render(&config, &facts)?;
    let written = render::write(&args.manifests, &files)
        .with_context(|| format!("writing manifests to {}", args.manifests.display()))?;
    match format {
        OutputFormat::Json => crate::output::json(&Result {
            directory: &args.manifests,
            objects: files.len(),
            written: written.written.clone(),
            unchanged: written.unchanged,
            removed: written.removed.clone(),
        })?,
        OutputFormat::Text => {
            println!(
                "{} objects in {}: {} written, {} unchanged, {} removed",
                files.len(),
                args.manifests.display(),
                written.written.len(),
                written.unchanged,
                written.removed.len()
            );
            for r in &written.removed {
                println!("  removed {}", r.display());
            }
        }
    }
    Ok(0)
}
