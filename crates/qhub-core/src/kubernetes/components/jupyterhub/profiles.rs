//! The JupyterLab server profiles (`profiles.jupyterlab`) as KubeSpawner's `profile_list`
//! entries, with who may use each.
//!
//! Everything placement-related is decided here, from the cluster facts, so that the hub's
//! configuration only filters the list per user: each entry's `kubespawner_override` holds the
//! resources in KubeSpawner's units, the image (`default_images.jupyterlab` unless the profile
//! names one), the `user` node group's selector (unless the profile gives a `node_selector`),
//! and for a profile that asks for GPUs (`extra_resource_limits` with the cluster's GPU
//! resource) the GPU group's selector and the toleration of its taint. Every other key of
//! `kubespawner_override` is passed to KubeSpawner as written.

use serde_json::{Map, Value as Json, json};

use super::super::{Context, KubeError, gpu};
use crate::config::profiles::{Access, Cpu, JupyterLabProfile, Memory};
use crate::kubernetes::pods::Placement;

/// The node group users' servers run on unless a profile says otherwise.
pub const USER_GROUP: &str = "user";

/// A CPU amount in cores, as KubeSpawner's `cpu_limit`/`cpu_guarantee` (floats) take it.
fn cores(cpu: &Cpu, key: &str) -> Result<f64, KubeError> {
    let bad = || {
        KubeError::Invalid(format!(
            "profiles.jupyterlab: {key} {cpu:?} is not a number of cores or a CPU quantity"
        ))
    };
    match cpu {
        Cpu::Cores(c) => Ok(*c),
        Cpu::Quantity(q) => match q.strip_suffix('m') {
            Some(milli) => milli.parse::<f64>().map(|m| m / 1000.0).map_err(|_| bad()),
            None => q.parse::<f64>().map_err(|_| bad()),
        },
    }
}

/// A memory amount as KubeSpawner's byte specification takes it: a number of bytes, or a
/// number with one of the suffixes `K`, `M`, `G`, `T` (powers of 1024; jupyterhub
/// `traitlets.py`, `ByteSpecification.UNIT_SUFFIXES`). Kubernetes' binary suffixes (`Gi`) mean
/// the same and are shortened; decimal ones (`1e9`, `500k`) are not accepted by KubeSpawner
/// and are refused here.
fn bytes(memory: &Memory, key: &str) -> Result<Json, KubeError> {
    match memory {
        Memory::Bytes(b) => Ok(json!(b)),
        Memory::Quantity(q) => {
            let q = q.trim();
            let short = q
                .strip_suffix('i')
                .filter(|s| s.ends_with(['K', 'M', 'G', 'T']))
                .unwrap_or(q);
            let (number, suffix) = short.split_at(short.len().saturating_sub(1));
            let ok = match suffix {
                "K" | "M" | "G" | "T" => number.parse::<f64>().is_ok(),
                _ => short.parse::<u64>().is_ok(),
            };
            if !ok {
                return Err(KubeError::Invalid(format!(
                    "profiles.jupyterlab: {key} {q:?} is not a memory size KubeSpawner reads \
                     (bytes, or a number with K, M, G or T)"
                )));
            }
            Ok(short
                .parse::<u64>()
                .map_or_else(|_| json!(short), |b| json!(b)))
        }
    }
}

/// The GPUs a profile asks for: the cluster's GPU resource in `extra_resource_limits`.
fn gpus(extra: &Map<String, Json>, resource: &str) -> u32 {
    let Some(limit) = extra
        .get("extra_resource_limits")
        .and_then(|l| l.get(resource))
    else {
        return 0;
    };
    match limit {
        Json::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
        Json::String(s) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

/// One profile as a `profile_list` entry plus who may use it (`access`, `users`, `groups`,
/// which the hub's configuration strips before KubeSpawner sees the entry).
pub fn entry(ctx: &Context<'_>, profile: &JupyterLabProfile) -> Result<Json, KubeError> {
    let mut over = Map::new();
    let facts = ctx.facts;
    let mut image = ctx.config.default_images.jupyterlab.clone();
    let mut extra = Map::new();
    if let Some(o) = &profile.kubespawner_override {
        over.insert("cpu_limit".into(), json!(cores(&o.cpu_limit, "cpu_limit")?));
        over.insert(
            "cpu_guarantee".into(),
            json!(cores(&o.cpu_guarantee, "cpu_guarantee")?),
        );
        over.insert("mem_limit".into(), bytes(&o.mem_limit, "mem_limit")?);
        over.insert(
            "mem_guarantee".into(),
            bytes(&o.mem_guarantee, "mem_guarantee")?,
        );
        if let Some(i) = &o.image {
            image.clone_from(i);
        }
        extra.clone_from(&o.extra);
    }
    over.insert("image".into(), json!(image));
    let count = gpus(&extra, &facts.gpu.resource);
    let placement = if count > 0 {
        // The GPU group: the first `gpu: true` (or accelerator) group of the config; on a
        // cluster without node groups (existing) the pod only tolerates the taint.
        let group = gpu::gpu_groups(ctx).into_iter().next();
        let base = match &group {
            Some(g) => Placement::on_group(facts, g),
            None => Placement::default(),
        };
        base.tolerating_gpus(facts)
    } else {
        Placement::on_group(facts, USER_GROUP)
    };
    if !extra.contains_key("node_selector")
        && let Some(selector) = &placement.node_selector
    {
        over.insert("node_selector".into(), json!(selector));
    }
    if !placement.tolerations.is_empty() {
        let mut tolerations: Vec<Json> = extra
            .remove("tolerations")
            .and_then(|t| t.as_array().cloned())
            .unwrap_or_default();
        for t in &placement.tolerations {
            tolerations.push(
                serde_json::to_value(t)
                    .map_err(|e| KubeError::Invalid(format!("a toleration: {e}")))?,
            );
        }
        over.insert("tolerations".into(), Json::Array(tolerations));
    }
    for (k, v) in extra {
        over.insert(k, v);
    }
    let access = match profile.access {
        Access::All => "all",
        Access::Yaml => "yaml",
        Access::Keycloak => "keycloak",
    };
    Ok(json!({
        "display_name": profile.display_name,
        "description": profile.description,
        "default": profile.default,
        "access": access,
        "users": profile.users.clone().unwrap_or_default(),
        "groups": profile.groups.clone().unwrap_or_default(),
        "kubespawner_override": over,
    }))
}

/// Every profile of `profiles.jupyterlab`, in order.
pub fn entries(ctx: &Context<'_>) -> Result<Vec<Json>, KubeError> {
    ctx.config
        .profiles
        .jupyterlab
        .iter()
        .map(|p| entry(ctx, p))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_become_kubespawner_units() {
        assert_eq!(cores(&Cpu::Quantity("1500m".into()), "c").unwrap(), 1.5);
        assert_eq!(cores(&Cpu::Cores(2.0), "c").unwrap(), 2.0);
        assert!(cores(&Cpu::Quantity("lots".into()), "c").is_err());
        assert_eq!(
            bytes(&Memory::Quantity("8Gi".into()), "m").unwrap(),
            json!("8G")
        );
        assert_eq!(
            bytes(&Memory::Quantity("512M".into()), "m").unwrap(),
            json!("512M")
        );
        assert_eq!(bytes(&Memory::Bytes(1024), "m").unwrap(), json!(1024));
        assert_eq!(
            bytes(&Memory::Quantity("1024".into()), "m").unwrap(),
            json!(1024)
        );
        assert!(bytes(&Memory::Quantity("1e9".into()), "m").is_err());
        assert!(bytes(&Memory::Quantity("500k".into()), "m").is_err());
    }
}
