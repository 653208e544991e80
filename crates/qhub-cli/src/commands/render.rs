//! `qhub render --manifests DIR`: the Kubernetes stage's objects as YAML files, offline.

use std::path::{Path, PathBuf};

use anyhow::Context;
use qhub_core::kubernetes::render;
use serde::Serialize;

use crate::cli::{OutputFormat, RenderArgs};

#[derive(Serialize)]
struct Result<'a> {
    directory: &'a Path,
    objects: usize,
    written: Vec<PathBuf>,
    unchanged: usize,
    removed: Vec<PathBuf>,
    /// The cluster facts only the cloud makes, written as placeholders.
    known_after_apply: Vec<String>,
}

/// Renders the config's manifests into `args.manifests`.
pub fn run(args: &RenderArgs, format: OutputFormat) -> anyhow::Result<u8> {
    let config = super::lifecycle::load(&args.config)?.config;
    let dir = match args.config.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // The provider's view of the cluster, from the config alone (no client, no credentials):
    // the same facts a deploy builds its objects from; what only the cloud makes is a
    // placeholder, named in the output.
    let facts = super::lifecycle::registry()
        .offline_facts(&config, &dir)
        .with_context(|| {
            format!(
                "computing the cluster facts of provider `{}`",
                config.provider
            )
        })?;
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
            known_after_apply: facts.unknown(),
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
            let unknown = facts.unknown();
            if !unknown.is_empty() {
                println!(
                    "known after apply (a placeholder in the manifests until the cloud makes it): {}",
                    unknown.join(", ")
                );
            }
        }
    }
    Ok(0)
}
