//! Preflight: the token works, and the region, version and droplet sizes the config names are
//! offered by DOKS (`/v2/kubernetes/options`). Every problem is named with its config key.

use qhub_core::config::Config;
use qhub_core::provider::{Preflight, ProviderError};

use crate::client::KubernetesOptions;
use crate::desired::{pool_spec, resolve_version};

/// The problems and warnings of `config`'s `digital_ocean` section against `options`.
pub fn check(config: &Config, options: &KubernetesOptions) -> (Vec<String>, Vec<String>) {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let Some(section) = config.digital_ocean.as_ref() else {
        problems.push("digital_ocean: the config has no `digital_ocean` section".into());
        return (problems, warnings);
    };
    let list = |v: Vec<&str>| {
        let mut v = v;
        v.sort_unstable();
        v.join(", ")
    };
    if !options.regions.iter().any(|r| r.slug == section.region) {
        problems.push(format!(
            "digital_ocean.region: `{}` is not a region DOKS runs in (available: {})",
            section.region,
            list(options.regions.iter().map(|r| r.slug.as_str()).collect())
        ));
    }
    if let Err(e) = resolve_version(&section.kubernetes_version, options) {
        problems.push(format!("digital_ocean.kubernetes_version: {e}"));
    }
    for (name, group) in &section.node_groups {
        let key = format!("digital_ocean.node_groups.{name}");
        if !options.sizes.iter().any(|s| s.slug == group.instance) {
            problems.push(format!(
                "{key}.instance: `{}` is not a droplet size DOKS offers (available: {})",
                group.instance,
                list(options.sizes.iter().map(|s| s.slug.as_str()).collect())
            ));
        }
        if group.max_nodes < 1 {
            problems.push(format!(
                "{key}.max_nodes: must be at least 1 (a DOKS autoscaling pool needs room for a node)"
            ));
        }
        if let Err(e) = pool_spec(name, group) {
            problems.push(e.to_string());
        }
        if group.gpu && !group.instance.starts_with("gpu-") {
            warnings.push(format!(
                "{key}.gpu: `{}` is not a GPU droplet size (GPU sizes start with `gpu-`); the pool is tainted for GPU workloads anyway",
                group.instance
            ));
        }
        if !group.guest_accelerators.is_empty() {
            warnings.push(format!(
                "{key}.guest_accelerators: ignored on DigitalOcean (a GPU droplet size brings its GPUs)"
            ));
        }
    }
    (problems, warnings)
}

/// Runs the checks against the live options.
pub fn result(problems: Vec<String>, warnings: Vec<String>) -> Result<Preflight, ProviderError> {
    if problems.is_empty() {
        Ok(Preflight { warnings })
    } else {
        Err(ProviderError::Fatal(format!(
            "DigitalOcean preflight found {} problem(s):\n  {}",
            problems.len(),
            problems.join("\n  ")
        )))
    }
}
