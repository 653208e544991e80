//! Dask Gateway's configuration: `dask_gateway_config.py`, the same for every deployment and
//! loaded by dask-gateway-server as it is, and `qhub.json` beside it in the same ConfigMap,
//! holding everything that varies: addresses, the cluster defaults, one set of
//! `KubeClusterConfig` settings per worker profile (placement, GPUs and the profile's own keys
//! already resolved), and the conda environments a cluster may run in.
//!
//! The names of the traits set here are those of dask-gateway-server 2026.3.0
//! (`dask_gateway_server/app.py`, `auth.py`, `backends/kubernetes/backend.py` and
//! `controller.py`); a test loads the rendered files with that very package.

use serde_json::{Map, Value as Json, json};

use super::{API, API_PORT, CLUSTERS_MIDDLEWARE, NAME, PATH};
use crate::config::profiles::{Cpu, DaskWorkerProfile, Memory};
use crate::kubernetes::KubeError;
use crate::kubernetes::components::{ConfigFile, Context, gpu, ingress, manifest, storage};
use crate::kubernetes::pods::{self, Placement};

/// The config file's name (the key of the ConfigMap, and the file `--config` names).
pub const FILE: &str = "dask_gateway_config.py";
/// The settings file's name, beside it.
pub const SETTINGS_FILE: &str = "qhub.json";
/// The ConfigMap holding both.
pub const CONFIG_MAP: &str = "dask-gateway-config";
/// The config file itself: static, every varying value is read from [`SETTINGS_FILE`].
pub const SCRIPT: &str = include_str!("dask_gateway_config.py");

/// Where conda-store's environments are mounted, read-only, in scheduler and worker pods, and
/// the shared claim's subPath holding conda-store's store: where conda-store keeps it.
pub use super::super::conda_store::{STORE_DIRECTORY as CONDA_MOUNT, SUB_PATH as CONDA_SUBPATH};
/// JupyterHub's API: its Service and port.
use super::super::jupyterhub::{HUB_PORT as JUPYTERHUB_PORT, HUB_SERVICE as JUPYTERHUB_SERVICE};
/// The user the scheduler and worker pods run as: `dask` (uid 1000) of upstream's images
/// (dask/dask-gateway 2026.3.0 `dask-gateway/Dockerfile`), and the `jovyan`-style uid 1000 of
/// QHub's worker image.
pub const CLUSTER_UID: i64 = 1000;
/// The node group workers (and schedulers) land on unless a profile asks for a GPU.
pub const WORKER_GROUP: &str = "worker";

/// The ConfigMap's files for `ctx`.
pub fn config_file(ctx: &Context<'_>) -> Result<ConfigFile, KubeError> {
    let mut file = ConfigFile::new(CONFIG_MAP, FILE, SCRIPT);
    let settings = serde_json::to_string_pretty(&settings(ctx)?)
        .map_err(|e| KubeError::Invalid(format!("Dask Gateway's settings: {e}")))?;
    file.files.insert(SETTINGS_FILE.into(), settings + "\n");
    Ok(file)
}

/// The varying values the config file reads ([`SETTINGS_FILE`]).
pub fn settings(ctx: &Context<'_>) -> Result<Json, KubeError> {
    let ns = ctx.namespace();
    let config = ctx.config;
    let web_entrypoint = if ingress::tls::enabled(config) {
        ingress::WEBSECURE.name
    } else {
        ingress::WEB.name
    };
    let profiles = config
        .profiles
        .dask_worker
        .iter()
        .map(|(name, p)| Ok(json!({"name": name, "config": profile(ctx, name, p)?})))
        .collect::<Result<Vec<Json>, KubeError>>()?;
    let default_profile = config
        .profiles
        .dask_worker
        .keys()
        .next()
        .cloned()
        .unwrap_or_default();
    let environments: Vec<Json> = config
        .environments
        .values()
        .map(|env| {
            let prefix = format!(
                "{CONDA_MOUNT}/{}/envs/{}",
                super::super::conda_store::config::default_namespace(config),
                env.name
            );
            // The environment's own dask, by absolute path: nothing of the image's PATH
            // decides which dask runs.
            json!({"name": env.name, "config": {
                "scheduler_cmd": format!("{prefix}/bin/dask-scheduler"),
                "worker_cmd": format!("{prefix}/bin/dask-worker"),
                "environment": {"CONDA_PREFIX": prefix},
            }})
        })
        .collect();
    Ok(json!({
        "gateway_instance": NAME,
        "api_url": format!("http://{API}.{ns}.svc:{API_PORT}/api"),
        "jupyterhub_api_url": format!("http://{JUPYTERHUB_SERVICE}.{ns}.svc:{JUPYTERHUB_PORT}/hub/api"),
        "proxy_prefix": PATH,
        "proxy_web_entrypoint": web_entrypoint,
        "proxy_tcp_entrypoint": ingress::DASK.name,
        "proxy_web_middlewares": [{"name": CLUSTERS_MIDDLEWARE, "namespace": ns}],
        "cluster": {
            "namespace": ns,
            "image": config.default_images.dask_worker,
            "scheduler_extra_pod_config": pod_config(&Placement::on_group(ctx.facts, WORKER_GROUP))?,
            "scheduler_extra_container_config": container_config(&Placement::on_group(ctx.facts, WORKER_GROUP)),
            "worker_extra_pod_config": pod_config(&Placement::on_group(ctx.facts, WORKER_GROUP))?,
            "worker_extra_container_config": container_config(&Placement::on_group(ctx.facts, WORKER_GROUP)),
        },
        "default_profile": default_profile,
        "profiles": profiles,
        "environments": environments,
    }))
}

/// The extra pod config of a scheduler or worker placed by `placement`: the `restricted` Pod
/// Security context, the node selector and tolerations, and the shared claim for conda-store's
/// environments.
fn pod_config(placement: &Placement) -> Result<Json, KubeError> {
    let mut pod = json!({"securityContext": manifest(&pods::non_root_pod(CLUSTER_UID))?});
    if let Some(selector) = &placement.node_selector {
        pod["nodeSelector"] = json!(selector);
    }
    if !placement.tolerations.is_empty() {
        pod["tolerations"] = manifest(&placement.tolerations)?;
    }
    pod["volumes"] = json!([{"name": "conda-store", "persistentVolumeClaim": {
        "claimName": storage::CLAIM, "readOnly": true}}]);
    Ok(pod)
}

/// The extra container config of a scheduler or worker placed by `placement`: an unprivileged
/// container, its GPU limit, and conda-store's environments mounted read-only.
fn container_config(placement: &Placement) -> Json {
    let mut c = json!({
        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "conda-store", "mountPath": CONDA_MOUNT,
            "subPath": CONDA_SUBPATH, "readOnly": true}],
    });
    if placement.gpus > 0 {
        let mut limits = Map::new();
        limits.insert(placement.gpu_resource.clone(), json!(placement.gpus));
        c["resources"] = json!({ "limits": limits });
    }
    c
}

/// The GPUs a profile asks for in `worker_extra_container_config.resources.limits`.
fn gpu_limit(p: &DaskWorkerProfile, resource: &str) -> Option<Json> {
    p.extra
        .get("worker_extra_container_config")?
        .pointer("/resources/limits")?
        .get(resource)
        .cloned()
}

/// Where a profile's workers run: the `worker` group, or a GPU group (with its toleration and
/// the GPU limit) for a profile that asks for a GPU or is named for a GPU group.
pub fn placement(
    ctx: &Context<'_>,
    name: &str,
    p: &DaskWorkerProfile,
) -> Result<Placement, KubeError> {
    let groups = gpu::gpu_groups(ctx);
    let named = groups.iter().find(|g| g.eq_ignore_ascii_case(name));
    let limit = gpu_limit(p, &ctx.facts.gpu.resource);
    if named.is_none() && limit.is_none() {
        return Ok(Placement::on_group(ctx.facts, WORKER_GROUP));
    }
    let count = match &limit {
        None => 1,
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                KubeError::Invalid(format!(
                    "profiles.dask_worker.{name}: the {} limit {v} is not a positive whole number",
                    ctx.facts.gpu.resource
                ))
            })?,
    };
    let placed = match named.or(groups.first()) {
        Some(group) => Placement::on_group(ctx.facts, group),
        // A cluster whose groups the config does not list (`existing`, `local`): tolerate the
        // taint and let the GPU request pick the node.
        None if ctx.config.node_groups().is_none() => Placement {
            node_selector: None,
            ..Placement::on_group(ctx.facts, WORKER_GROUP)
        },
        None => {
            return Err(KubeError::Invalid(format!(
                "profiles.dask_worker.{name} asks for {} but no node group has `gpu: true` \
                 (or guest accelerators): add a GPU node group or remove the limit",
                ctx.facts.gpu.resource
            )));
        }
    };
    Ok(placed.with_gpus(ctx.facts, count))
}

/// A CPU amount as the cores dask-gateway's `Float` traits take.
fn cores(key: &str, cpu: &Cpu) -> Result<f64, KubeError> {
    match cpu {
        Cpu::Cores(c) => Ok(*c),
        Cpu::Quantity(q) => {
            let parsed = match q.strip_suffix('m') {
                Some(milli) => milli.parse::<f64>().map(|m| m / 1000.0),
                None => q.parse::<f64>(),
            };
            parsed.map_err(|_| {
                KubeError::Invalid(format!(
                    "{key}: {q:?} is not a number of cores or a millicore quantity (`1500m`)"
                ))
            })
        }
    }
}

/// A memory amount as dask-gateway's `MemoryLimit` takes it: bytes, or a number with `K`,
/// `M`, `G` or `T` (binary units, as QHub wrote them); Kubernetes' `Ki`/`Mi`/`Gi`/`Ti` are the
/// same units.
fn memory(key: &str, m: &Memory) -> Result<Json, KubeError> {
    match m {
        Memory::Bytes(b) => Ok(json!(b)),
        Memory::Quantity(q) => {
            let q = q.trim();
            let unit = q.strip_suffix('i').unwrap_or(q);
            let ok = unit
                .char_indices()
                .last()
                .filter(|(_, c)| matches!(c, 'K' | 'M' | 'G' | 'T'))
                .is_some_and(|(i, _)| unit[..i].parse::<f64>().is_ok());
            if ok {
                Ok(json!(unit))
            } else if let Ok(bytes) = q.parse::<u64>() {
                Ok(json!(bytes))
            } else {
                Err(KubeError::Invalid(format!(
                    "{key}: {q:?} is not a memory amount Dask Gateway takes (bytes, or a number \
                     with K, M, G or T)"
                )))
            }
        }
    }
}

/// Objects merged key by key (the second wins), lists appended: the rule dask-gateway-server
/// itself merges extra pod and container config with (2026.3.0,
/// `backends/kubernetes/utils.py`, `merge_json_objects`).
fn merge(base: Json, overlay: Json) -> Json {
    match (base, overlay) {
        (Json::Object(mut a), Json::Object(b)) => {
            for (k, v) in b {
                let merged = match a.remove(&k) {
                    Some(old) => merge(old, v),
                    None => v,
                };
                a.insert(k, merged);
            }
            Json::Object(a)
        }
        (Json::Array(mut a), Json::Array(b)) => {
            a.extend(b);
            Json::Array(a)
        }
        (_, b) => b,
    }
}

/// The `KubeClusterConfig` settings of worker profile `name`: its sizes and image, its
/// placement merged under its own extra pod and container config, and every other key of the
/// profile as it is.
pub fn profile(ctx: &Context<'_>, name: &str, p: &DaskWorkerProfile) -> Result<Json, KubeError> {
    let key = |k: &str| format!("profiles.dask_worker.{name}.{k}");
    let placed = placement(ctx, name, p)?;
    let mut out = Map::new();
    out.insert(
        "worker_cores".into(),
        json!(cores(&key("worker_cores"), &p.worker_cores)?),
    );
    out.insert(
        "worker_cores_limit".into(),
        json!(cores(&key("worker_cores_limit"), &p.worker_cores_limit)?),
    );
    out.insert(
        "worker_memory".into(),
        memory(&key("worker_memory"), &p.worker_memory)?,
    );
    out.insert(
        "worker_memory_limit".into(),
        memory(&key("worker_memory_limit"), &p.worker_memory_limit)?,
    );
    if let Some(threads) = p.worker_threads {
        out.insert("worker_threads".into(), json!(threads));
    }
    out.insert(
        "image".into(),
        json!(
            p.image
                .clone()
                .unwrap_or_else(|| ctx.config.default_images.dask_worker.clone())
        ),
    );
    let mut pod = pod_config(&placed)?;
    let mut container = container_config(&placed);
    for (k, v) in &p.extra {
        match k.as_str() {
            "worker_extra_pod_config" => pod = merge(pod, v.clone()),
            "worker_extra_container_config" => container = merge(container, v.clone()),
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out.insert("worker_extra_pod_config".into(), pod);
    out.insert("worker_extra_container_config".into(), container);
    Ok(Json::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_follows_dask_gateway() {
        let a = json!({"a": {"x": 1, "l": [1]}, "b": 2});
        let b = json!({"a": {"y": 3, "l": [2]}, "b": 4});
        assert_eq!(
            merge(a, b),
            json!({"a": {"x": 1, "l": [1, 2], "y": 3}, "b": 4})
        );
    }

    #[test]
    fn amounts_become_what_dask_gateway_takes() {
        assert_eq!(cores("k", &Cpu::Quantity("1500m".into())).unwrap(), 1.5);
        assert_eq!(cores("k", &Cpu::Cores(2.0)).unwrap(), 2.0);
        assert!(cores("k", &Cpu::Quantity("two".into())).is_err());
        assert_eq!(
            memory("k", &Memory::Quantity("8G".into())).unwrap(),
            json!("8G")
        );
        assert_eq!(
            memory("k", &Memory::Quantity("512Mi".into())).unwrap(),
            json!("512M")
        );
        assert_eq!(
            memory("k", &Memory::Quantity("1000".into())).unwrap(),
            json!(1000)
        );
        let err = memory(
            "profiles.dask_worker.x.worker_memory",
            &Memory::Quantity("8GB".into()),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("worker_memory"), "{err}");
    }
}
