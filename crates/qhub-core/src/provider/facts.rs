//! What flows into planning besides the config: [`Facts`] a provider learned from its cloud
//! (for its own `desired`), and [`ClusterFacts`] the infrastructure stage hands to the
//! Kubernetes stage.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::config::Config;

/// Typed facts a provider learned from its cloud in [`super::Provider::discover`] (a resolved
/// version slug, the sizes a region offers, whether an endpoint implements an API), handed to
/// [`super::Provider::desired`] explicitly instead of being kept as hidden state. The engine
/// does not look inside: each provider stores its own type and reads it back with
/// [`Facts::get`].
#[derive(Clone, Default)]
pub struct Facts(Option<Arc<dyn Any + Send + Sync>>, Option<Arc<str>>);

impl Facts {
    /// No facts (providers that need no lookup).
    pub fn none() -> Self {
        Self::default()
    }

    /// Facts of the provider's own type.
    pub fn new<T: Any + Send + Sync + fmt::Debug>(value: T) -> Self {
        let debug: Arc<str> = format!("{value:?}").into();
        Self(Some(Arc::new(value)), Some(debug))
    }

    /// The provider's facts, if they are of type `T`.
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.0.as_deref().and_then(|v| v.downcast_ref::<T>())
    }
}

impl fmt::Debug for Facts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.1 {
            Some(d) => write!(f, "Facts({d})"),
            None => f.write_str("Facts(none)"),
        }
    }
}

/// What a component writes into a manifest where a [`Known::AfterApply`] value belongs. The
/// engine looks for it: a plan whose Kubernetes objects hold it names the unknown facts, and
/// the apply builds those objects again once the infrastructure exists.
pub const AFTER_APPLY: &str = "(known after apply)";

/// A value the Kubernetes stage needs that may exist only after the infrastructure is applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Known<T> {
    /// Known now.
    Known(T),
    /// Known once the infrastructure exists (a plan before the first deploy).
    AfterApply,
}

impl<T> Known<T> {
    /// The value, if known.
    pub fn known(&self) -> Option<&T> {
        match self {
            Self::Known(v) => Some(v),
            Self::AfterApply => None,
        }
    }

    /// The value as text for a manifest, or [`AFTER_APPLY`].
    pub fn or_placeholder(&self, text: impl Fn(&T) -> String) -> String {
        self.known().map_or_else(|| AFTER_APPLY.to_string(), text)
    }
}

/// The shared filesystem the platform mounts for home directories and shared data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SharedFilesystem {
    /// An AWS EFS file system (mounted through the EFS CSI driver or NFS).
    Efs {
        /// File system id (`fs-…`).
        id: String,
        /// Its DNS name (`fs-….efs.<region>.amazonaws.com`).
        dns_name: String,
    },
    /// An NFS export the cloud provides.
    Nfs {
        /// Server address.
        server: String,
        /// Exported path.
        path: String,
    },
    /// No cloud filesystem: the platform runs an NFS server on a volume in the cluster.
    InCluster,
}

/// A Kubernetes taint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Taint {
    /// Key, e.g. `nvidia.com/gpu`.
    pub key: String,
    /// Value, e.g. `present`.
    pub value: String,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

/// How pods are placed on a node group: the label key and each group's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeSelector {
    /// The label key the cloud (or we) put on every node of a group.
    pub label: String,
    /// Node group name (`general`, `user`, `worker`, …) to label value.
    pub values: BTreeMap<String, String>,
}

impl NodeSelector {
    /// The `nodeSelector` map for pods of `group`, or `None` when the group is unknown.
    pub fn for_group(&self, group: &str) -> Option<BTreeMap<String, String>> {
        self.values
            .get(group)
            .map(|v| BTreeMap::from([(self.label.clone(), v.clone())]))
    }
}

/// How GPUs are requested and which taint keeps other pods off GPU nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gpu {
    /// The extended resource name, e.g. `nvidia.com/gpu`.
    pub resource: String,
    /// The taint on GPU nodes that GPU pods tolerate.
    pub taint: Option<Taint>,
    /// True when the platform must install the NVIDIA device plugin on GPU nodes (EKS, or a
    /// cluster we know nothing of); false when the cloud installs it (GKE, DOKS).
    pub device_plugin: bool,
}

impl Default for Gpu {
    fn default() -> Self {
        Self {
            resource: GPU_RESOURCE.to_string(),
            taint: Some(Taint {
                key: GPU_RESOURCE.to_string(),
                value: "present".to_string(),
                effect: "NoSchedule".to_string(),
            }),
            device_plugin: true,
        }
    }
}

/// The NVIDIA device plugin's resource name.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";

/// The node label qhub puts on every node of a group it creates (value: the group's name).
pub const NODE_GROUP_LABEL: &str = "qhub.dev/node-group";

/// What the Kubernetes stage needs to know about the cluster the infrastructure stage built
/// (or the one the user brought), from [`super::Provider::cluster_facts`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterFacts {
    /// The storage class for ReadWriteOnce volumes (`gp2`/`gp3`, `standard-rwo`,
    /// `do-block-storage`); `None`: the cluster's default class.
    pub storage_class: Option<String>,
    /// The shared filesystem.
    pub shared_filesystem: Known<SharedFilesystem>,
    /// How to place pods on node groups.
    pub node_selector: NodeSelector,
    /// GPU resource and taint.
    pub gpu: Gpu,
    /// Annotations the cloud's load-balancer controller needs on the ingress Service.
    pub load_balancer_annotations: BTreeMap<String, String>,
    /// True when the cloud scales node groups itself (GKE, DOKS); false when the platform must
    /// run the cluster autoscaler (EKS).
    pub native_autoscaling: bool,
}

impl ClusterFacts {
    /// The generic facts of a config: node groups selected by [`NODE_GROUP_LABEL`] (or, for
    /// `existing`/`local`, by the config's `node_selectors`), the cluster's default storage
    /// class, an in-cluster shared filesystem, NVIDIA's GPU resource and taint, no
    /// load-balancer annotations, no native autoscaling.
    pub fn from_config(config: &Config) -> Self {
        let node_selector = match config.existing_section() {
            Some(existing) => {
                // One key for every role is what QHub's `node_selectors` allow in practice; a
                // config that uses several keys keeps the first (validation warns about it).
                let label = existing
                    .node_selectors
                    .values()
                    .next()
                    .map_or_else(|| NODE_GROUP_LABEL.to_string(), |kv| kv.key.clone());
                NodeSelector {
                    label,
                    values: existing
                        .node_selectors
                        .iter()
                        .map(|(group, kv)| (group.clone(), kv.value.clone()))
                        .collect(),
                }
            }
            None => NodeSelector {
                label: NODE_GROUP_LABEL.to_string(),
                values: config
                    .node_groups()
                    .map(|groups| groups.keys().map(|g| (g.clone(), g.clone())).collect())
                    .unwrap_or_default(),
            },
        };
        Self {
            storage_class: None,
            shared_filesystem: Known::Known(SharedFilesystem::InCluster),
            node_selector,
            gpu: Gpu::default(),
            load_balancer_annotations: BTreeMap::new(),
            native_autoscaling: false,
        }
    }

    /// What is not known until the infrastructure exists, by name (for the plan's
    /// "known after apply" line).
    pub fn unknown(&self) -> Vec<String> {
        let mut out = Vec::new();
        // Unknown as a whole, or of a known kind whose address the cloud has not made yet.
        let placeholder = match &self.shared_filesystem {
            Known::AfterApply => true,
            Known::Known(SharedFilesystem::Efs { id, dns_name }) => {
                id == AFTER_APPLY || dns_name == AFTER_APPLY
            }
            Known::Known(SharedFilesystem::Nfs { server, .. }) => server == AFTER_APPLY,
            Known::Known(SharedFilesystem::InCluster) => false,
        };
        if placeholder {
            out.push("shared filesystem".to_string());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct DoFacts {
        version: String,
    }

    #[test]
    fn facts_are_typed_and_debuggable() {
        let f = Facts::new(DoFacts {
            version: "1.33.1-do.0".into(),
        });
        assert_eq!(f.get::<DoFacts>().unwrap().version, "1.33.1-do.0");
        assert!(f.get::<String>().is_none());
        assert!(format!("{f:?}").contains("1.33.1-do.0"));
        assert!(Facts::none().get::<DoFacts>().is_none());
    }
}
