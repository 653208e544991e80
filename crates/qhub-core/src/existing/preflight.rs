//! What `existing`/`local` read from the cluster before a deploy: the facts the platform
//! relies on and the cluster owner controls.
//!
//! - **A default StorageClass.** The platform's volumes (Keycloak's database, the shared
//!   filesystem's server, the ACME store) name no class, so they bind only where the cluster
//!   has a default one; without it they stay Pending and the deploy would wait out its
//!   deadline. No default class is an error naming the classes there are and the command
//!   that marks one default. The manifests keep naming no class (so a later change of the
//!   cluster's default never asks to replace a volume).
//! - **Nodes for every `node_selectors` entry.** Pods placed by a selector no node carries stay
//!   Pending until such a node joins (an autoscaler may add one), so each such entry is a
//!   warning naming the config key and the values the nodes do carry for that label.
//!
//! Reads that RBAC forbids (listing nodes needs a cluster-wide permission some users lack)
//! skip their check with a warning instead of failing the deploy.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::ListParams;

use crate::config::Config;
use crate::kubernetes::KubeError;
use crate::provider::{Preflight, ProviderError};
use crate::retry::{CallKind, RetryPolicy, retry_call};

/// The annotation that marks the default StorageClass (and its beta spelling, still honoured
/// by the admission plugin).
const DEFAULT_CLASS: [&str; 2] = [
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
];

/// A list of every object of kind `K`; `Ok(None)` when RBAC forbids it.
async fn list<K>(
    client: &kube::Client,
    retry: &RetryPolicy,
    what: &str,
) -> Result<Option<Vec<K>>, ProviderError>
where
    K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: kube::Api<K> = kube::Api::all(client.clone());
    retry_call(retry, None, what, CallKind::Read, || async {
        match api.list(&ListParams::default()).await {
            Ok(l) => Ok(Some(l.items)),
            Err(kube::Error::Api(status)) if status.code == 403 => Ok(None),
            Err(source) => Err(ProviderError::from(KubeError::Api {
                what: what.to_string(),
                source,
            })),
        }
    })
    .await
}

/// Checks the cluster for what the platform needs; `key` is the config section
/// (`existing`/`local`).
pub(crate) async fn check(
    client: &kube::Client,
    config: &Config,
    key: &str,
    retry: &RetryPolicy,
) -> Result<Preflight, ProviderError> {
    let mut out = Preflight::default();
    match list::<StorageClass>(client, retry, "listing the StorageClasses").await? {
        None => out.warnings.push(
            "cannot list StorageClasses (forbidden): not checked that the cluster has a default one for the platform's volumes".into(),
        ),
        Some(classes) => {
            let defaults: Vec<&str> = classes
                .iter()
                .filter(|c| {
                    let annotations = c.metadata.annotations.as_ref();
                    DEFAULT_CLASS.iter().any(|a| {
                        annotations.and_then(|m| m.get(*a)).map(String::as_str) == Some("true")
                    })
                })
                .filter_map(|c| c.metadata.name.as_deref())
                .collect();
            let names: Vec<&str> = classes
                .iter()
                .filter_map(|c| c.metadata.name.as_deref())
                .collect();
            match defaults.as_slice() {
                [] => {
                    let fix = names.first().map_or_else(
                        || "install a storage provisioner and mark its StorageClass default".to_string(),
                        |n| format!("mark one default: kubectl annotate storageclass {n} {}=true", DEFAULT_CLASS[0]),
                    );
                    return Err(ProviderError::Fatal(format!(
                        "the cluster has no default StorageClass (it has: {}): the platform's volumes (Keycloak's database, shared storage, the ACME store) would never bind; {fix}",
                        if names.is_empty() { "none".to_string() } else { names.join(", ") }
                    )));
                }
                [_] => {}
                many => out.warnings.push(format!(
                    "the cluster has {} default StorageClasses ({}): Kubernetes gives new volumes the newest; keep one default",
                    many.len(),
                    many.join(", ")
                )),
            }
        }
    }
    let selectors = config
        .existing_section()
        .map(|e| e.node_selectors.clone())
        .unwrap_or_default();
    if selectors.is_empty() {
        return Ok(out);
    }
    match list::<Node>(client, retry, "listing the nodes").await? {
        None => out.warnings.push(format!(
            "cannot list nodes (forbidden): not checked that nodes carry the labels of {key}.node_selectors"
        )),
        Some(nodes) => {
            for (group, kv) in &selectors {
                let values: BTreeSet<&str> = nodes
                    .iter()
                    .filter_map(|n| n.metadata.labels.as_ref()?.get(&kv.key))
                    .map(String::as_str)
                    .collect();
                if values.contains(kv.value.as_str()) {
                    continue;
                }
                let carried = if values.is_empty() {
                    format!("no node carries the label {}", kv.key)
                } else {
                    format!(
                        "nodes carry {}={}",
                        kv.key,
                        values.into_iter().collect::<Vec<_>>().join(", ")
                    )
                };
                out.warnings.push(format!(
                    "{key}.node_selectors.{group}: no node has {}={} ({carried}, {} node(s) in all); pods placed on `{group}` stay Pending until such a node joins: label one (kubectl label node NAME {}={}) or fix the key",
                    kv.key,
                    kv.value,
                    nodes.len(),
                    kv.key,
                    kv.value
                ));
            }
        }
    }
    Ok(out)
}
