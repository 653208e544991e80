//! `qhub render`: the CI/CD pipeline of `ci_cd.type` into a repository directory, and with
//! `--manifests DIR` the Kubernetes stage's objects as YAML files, offline.

use std::path::{Path, PathBuf};

use anyhow::Context;
use qhub_core::cicd;
use qhub_core::config::Loaded;
use qhub_core::kubernetes::render;
use serde::Serialize;

use crate::cli::{OutputFormat, RenderArgs};

#[derive(Serialize)]
struct Manifests<'a> {
    directory: &'a Path,
    objects: usize,
    written: Vec<PathBuf>,
    unchanged: usize,
    removed: Vec<PathBuf>,
    /// The cluster facts only the cloud makes, written as placeholders.
    known_after_apply: Vec<String>,
}

#[derive(Serialize)]
struct Pipelines {
    directory: PathBuf,
    /// Every config the pipelines were rendered from (those given and those an earlier
    /// render wrote pipelines for).
    configs: Vec<String>,
    written: Vec<PathBuf>,
    unchanged: Vec<PathBuf>,
    removed: Vec<PathBuf>,
    /// Configs with `ci_cd.type: none` (or no `ci_cd`): no pipeline.
    without_pipeline: Vec<String>,
}

#[derive(Serialize)]
struct Result<'a> {
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    manifests: Option<Manifests<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pipelines: Option<Pipelines>,
}

fn parent(file: &Path) -> PathBuf {
    match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Renders the pipelines and/or the manifests `args` ask for.
pub fn run(args: &RenderArgs, format: OutputFormat) -> anyhow::Result<u8> {
    let pipelines = if args.dir.is_some() || args.manifests.is_none() {
        Some(pipelines(args)?)
    } else {
        None
    };
    let manifests_dir = args.manifests.as_deref();
    let mut manifests = None;
    if let Some(out) = manifests_dir {
        let [config] = args.config.as_slice() else {
            anyhow::bail!(
                "--manifests takes one config (-c): each deployment's manifests go to their own directory"
            );
        };
        manifests = Some(self::manifests(config, out)?);
    }
    match format {
        OutputFormat::Json => crate::output::json(&Result {
            manifests,
            pipelines,
        })?,
        OutputFormat::Text => {
            if let Some(p) = &pipelines {
                println!(
                    "pipelines in {}: {} written, {} unchanged, {} removed",
                    p.directory.display(),
                    p.written.len(),
                    p.unchanged.len(),
                    p.removed.len()
                );
                for w in &p.written {
                    println!("  wrote {}", w.display());
                }
                for r in &p.removed {
                    println!("  removed {}", r.display());
                }
                for c in &p.without_pipeline {
                    println!("  {c}: ci_cd.type is none (or no ci_cd section): no pipeline");
                }
            }
            if let Some(m) = &manifests {
                println!(
                    "{} objects in {}: {} written, {} unchanged, {} removed",
                    m.objects,
                    m.directory.display(),
                    m.written.len(),
                    m.unchanged,
                    m.removed.len()
                );
                for r in &m.removed {
                    println!("  removed {}", r.display());
                }
                if !m.known_after_apply.is_empty() {
                    println!(
                        "known after apply (a placeholder in the manifests until the cloud makes it): {}",
                        m.known_after_apply.join(", ")
                    );
                }
            }
        }
    }
    Ok(0)
}

fn manifests<'a>(config_file: &Path, out: &'a Path) -> anyhow::Result<Manifests<'a>> {
    let config = super::lifecycle::load(config_file)?.config;
    // The provider's view of the cluster, from the config alone (no client, no credentials):
    // the same facts a deploy builds its objects from; what only the cloud makes is a
    // placeholder, named in the output.
    let facts = super::lifecycle::registry()
        .offline_facts(&config, &parent(config_file))
        .with_context(|| {
            format!(
                "computing the cluster facts of provider `{}`",
                config.provider
            )
        })?;
    let files = render::render(&config, &facts)?;
    let written = render::write(out, &files)
        .with_context(|| format!("writing manifests to {}", out.display()))?;
    Ok(Manifests {
        directory: out,
        objects: files.len(),
        written: written.written,
        unchanged: written.unchanged.len(),
        removed: written.removed,
        known_after_apply: facts.unknown(),
    })
}

/// The git repository holding `dir` (the nearest ancestor with `.git`), else `dir`.
fn repository_of(dir: &Path) -> PathBuf {
    dir.ancestors()
        .find(|d| d.join(".git").exists())
        .unwrap_or(dir)
        .to_path_buf()
}

fn canonical(path: &Path) -> anyhow::Result<PathBuf> {
    std::fs::canonicalize(path).with_context(|| format!("cannot read {}", path.display()))
}

/// `file` relative to `dir`, `/`-separated, as the pipeline names it.
fn relative(dir: &Path, file: &Path) -> anyhow::Result<String> {
    let rel = file.strip_prefix(dir).map_err(|_| {
        anyhow::anyhow!(
            "{} is not inside {}: a pipeline names its config by its path in the repository (use --dir)",
            file.display(),
            dir.display()
        )
    })?;
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    Ok(parts.join("/"))
}

fn pipelines(args: &RenderArgs) -> anyhow::Result<Pipelines> {
    let first = args.config.first().context("no config given (-c FILE)")?;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            canonical(d)?
        }
        None => repository_of(&canonical(&parent(first))?),
    };
    let mut configs: Vec<(String, Loaded)> = Vec::new();
    for file in &args.config {
        let rel = relative(&dir, &canonical(file)?)?;
        if configs.iter().any(|(r, _)| *r == rel) {
            continue;
        }
        configs.push((rel, super::lifecycle::load(file)?));
    }
    // Configs an earlier render wrote pipelines for are rendered again beside these, so that
    // their files stay; a config that is gone loses its pipeline.
    for rel in cicd::sources(&dir)? {
        if configs.iter().any(|(r, _)| *r == rel) {
            continue;
        }
        let file = dir.join(&rel);
        if !file.is_file() {
            tracing::warn!("{rel} (named by an earlier render) is gone: its pipeline is removed");
            continue;
        }
        let loaded = super::lifecycle::load(&file)
            .with_context(|| format!("{rel} has a pipeline from an earlier render"))?;
        configs.push((rel, loaded));
    }
    let sources: Vec<cicd::Source<'_>> = configs
        .iter()
        .map(|(path, loaded)| cicd::Source {
            path,
            config: &loaded.config,
        })
        .collect();
    let rendered = cicd::render(&sources)?;
    let written = cicd::write(&dir, &rendered.files)
        .with_context(|| format!("writing the pipelines into {}", dir.display()))?;
    Ok(Pipelines {
        directory: dir,
        configs: configs.into_iter().map(|(r, _)| r).collect(),
        written: written.written,
        unchanged: written.unchanged,
        removed: written.removed,
        without_pipeline: rendered.without_pipeline,
    })
}
