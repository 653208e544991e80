//! The `provider` key and the provider sections: `amazon_web_services`, `google_cloud_platform`,
//! `digital_ocean`, `azure` (recognised, not supported), `existing`/`local` and `sandbox`.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where the platform is deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Amazon Web Services (EKS); section `amazon_web_services`.
    Aws,
    /// Google Cloud Platform (GKE); section `google_cloud_platform`.
    Gcp,
    /// DigitalOcean (DOKS); section `digital_ocean`.
    Do,
    /// Azure (AKS): recognised so that its configs give a clear "not supported" error.
    Azure,
    /// A Kubernetes cluster the user already has; section `existing`.
    Existing,
    /// A local Kubernetes cluster (kind, minikube); section `local`.
    Local,
    /// The built-in simulated cloud; section `sandbox`.
    Sandbox,
}

impl ProviderKind {
    /// Every provider, in the order the CLI lists them.
    pub const ALL: [ProviderKind; 7] = [
        Self::Aws,
        Self::Gcp,
        Self::Do,
        Self::Azure,
        Self::Existing,
        Self::Local,
        Self::Sandbox,
    ];

    /// The value written in `provider:`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aws => "aws",
            Self::Gcp => "gcp",
            Self::Do => "do",
            Self::Azure => "azure",
            Self::Existing => "existing",
            Self::Local => "local",
            Self::Sandbox => "sandbox",
        }
    }

    /// The top-level key of this provider's own section.
    pub fn section(self) -> &'static str {
        match self {
            Self::Aws => "amazon_web_services",
            Self::Gcp => "google_cloud_platform",
            Self::Do => "digital_ocean",
            Self::Azure => "azure",
            Self::Existing => "existing",
            Self::Local => "local",
            Self::Sandbox => "sandbox",
        }
    }

    /// A human name for messages.
    pub fn display_name(self) -> &'static str {
        match self {
            Self::Aws => "Amazon Web Services",
            Self::Gcp => "Google Cloud Platform",
            Self::Do => "DigitalOcean",
            Self::Azure => "Azure",
            Self::Existing => "an existing Kubernetes cluster",
            Self::Local => "a local Kubernetes cluster",
            Self::Sandbox => "the qhub sandbox",
        }
    }

    /// True for providers whose section has `node_groups` we create (clouds and the sandbox).
    pub fn has_node_groups(self) -> bool {
        !matches!(self, Self::Existing | Self::Local)
    }
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One node group (pool) of the cluster. Extra keys are kept and passed on to the provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NodeGroup {
    /// Instance type / machine type / droplet size, e.g. `m5.xlarge`, `n1-standard-4`,
    /// `g-4vcpu-16gb`.
    pub instance: String,
    /// Fewest nodes the autoscaler keeps (0 lets the group scale to zero).
    pub min_nodes: u32,
    /// Most nodes the autoscaler may start.
    pub max_nodes: u32,
    /// AWS: use the GPU AMI and taint the group for GPU workloads.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[schemars(extend("default" = false))]
    pub gpu: bool,
    /// GCP: accelerators attached to every node of the group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("default" = []))]
    pub guest_accelerators: Vec<GuestAccelerator>,
    /// Provider-specific keys, kept as written.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A GCP accelerator attached to each node of a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GuestAccelerator {
    /// Accelerator type, e.g. `nvidia-tesla-t4`.
    pub name: String,
    /// How many per node.
    #[schemars(range(min = 1))]
    pub count: u32,
}

/// The node groups of a provider section, in the order they were written.
pub type NodeGroups = IndexMap<String, NodeGroup>;

/// `amazon_web_services`: an EKS cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwsSection {
    /// AWS region, e.g. `us-west-2`.
    pub region: String,
    /// Availability zones for the subnets (at least two are used; default: the region's first
    /// two).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zones: Option<Vec<String>>,
    /// EKS Kubernetes version, `MAJOR.MINOR`.
    pub kubernetes_version: String,
    /// What EKS does when `kubernetes_version` reaches its end of standard support: `standard`
    /// (the default) upgrades the cluster then; `extended` keeps it on the version for up to
    /// 12 more months at the extended-support cluster-hour price. Sent as the cluster's
    /// `upgradePolicy`; without it EKS would choose `extended`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub support_type: Option<EksSupportType>,
    /// IAM roles and users (their ARNs, `arn:aws:iam::111122223333:role/ci-deploy`) that get
    /// cluster-admin on the EKS cluster: one EKS access entry each, with
    /// `AmazonEKSClusterAdminPolicy` at cluster scope. The identity that created the cluster has
    /// access without being listed; every other identity that deploys (a CI role, a teammate)
    /// must be listed, and the list takes effect once an identity that has access deploys it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("default" = []))]
    pub cluster_admins: Vec<String>,
    /// Node groups; `general`, `user` and `worker` are the ones the platform schedules onto.
    pub node_groups: NodeGroups,
    /// Ignored: qhub-rs does not use Terraform. Kept so QHub configs load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terraform_overrides: Option<serde_json::Value>,
}

/// `amazon_web_services.support_type`: the EKS cluster's upgrade policy (EKS API reference,
/// `UpgradePolicyRequest.supportType`; EKS user guide, "Cluster upgrade policy").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EksSupportType {
    /// Upgraded automatically at the end of standard support; never billed for extended
    /// support.
    #[default]
    Standard,
    /// Kept on its version through extended support, at the extended-support price.
    Extended,
}

impl EksSupportType {
    /// The EKS API's spelling (`STANDARD`, `EXTENDED`).
    pub fn api_value(self) -> &'static str {
        match self {
            Self::Standard => "STANDARD",
            Self::Extended => "EXTENDED",
        }
    }
}

/// `google_cloud_platform`: a GKE cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GcpSection {
    /// GCP project id.
    pub project: String,
    /// Region, e.g. `us-central1`.
    pub region: String,
    /// Deprecated in QHub 0.4 (zones come from `availability_zones`); accepted and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Zones for the node pools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zones: Option<Vec<String>>,
    /// GKE version, `MAJOR.MINOR[.PATCH][-gke.N]`.
    pub kubernetes_version: String,
    /// GKE release channel (`RAPID`, `REGULAR`, `STABLE`, `UNSPECIFIED`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_channel: Option<String>,
    /// VPC network of the cluster: a name in `project`, or `projects/HOST/global/networks/NAME` (Shared VPC); default `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Subnetwork of the cluster in `region`: a name, or `projects/HOST/regions/REGION/subnetworks/NAME`; default: the network's auto-mode subnetwork.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnetwork: Option<String>,
    /// Node pools.
    pub node_groups: NodeGroups,
    /// Ignored: qhub-rs does not use Terraform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terraform_overrides: Option<serde_json::Value>,
}

/// `digital_ocean`: a DOKS cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DoSection {
    /// Region slug, e.g. `nyc3`.
    pub region: String,
    /// DOKS version: a slug such as `1.33.1-do.0`, or `MAJOR.MINOR` for the newest patch.
    pub kubernetes_version: String,
    /// Node pools.
    pub node_groups: NodeGroups,
    /// Ignored: qhub-rs does not use Terraform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terraform_overrides: Option<serde_json::Value>,
}

/// `azure`: read so that Azure configs load, then rejected as not supported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AzureSection {
    /// Whatever the Azure section holds.
    #[serde(flatten)]
    pub keys: serde_json::Map<String, serde_json::Value>,
}

/// A node selector `key: value` pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyValue {
    /// Label key, e.g. `kubernetes.io/os`.
    pub key: String,
    /// Label value.
    pub value: String,
}

/// `existing` / `local`: deploy onto a cluster the user already has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExistingSection {
    /// The kubeconfig context to use (default: the current context).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_context: Option<String>,
    /// Node selectors for the `general`, `user` and `worker` roles.
    pub node_selectors: IndexMap<String, KeyValue>,
}

/// `sandbox`: the built-in simulated cloud, shaped like a cloud provider section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SandboxSection {
    /// Simulated region name.
    #[serde(default = "default_sandbox_region")]
    pub region: String,
    /// Simulated Kubernetes version.
    pub kubernetes_version: String,
    /// Node groups, as on a cloud.
    pub node_groups: NodeGroups,
}

fn default_sandbox_region() -> String {
    "local-1".to_string()
}
