//! The typed specs of every AWS resource kind: what [`crate::desired`] writes into a plan and
//! [`crate::observe`] reports, and what [`crate::apply`] reads back. Each is written once as
//! JSON ([`qhub_core::provider::spec::write`]) and read back typed
//! ([`qhub_core::provider::spec::read`]): a field is never looked up by name with a `""` or `0`
//! default, and a spec that does not read (a plan made by another version) is an error naming
//! the resource and the field.
//!
//! A desired spec and its observed counterpart have the same fields in the same order, so the
//! engine's field diff is precise; the observed one says `None` where the cloud may not answer,
//! and adds what only the cloud knows (the VPC a subnet is in, a node group's current size).
//! The field order is the JSON's (serde_json keeps insertion order here), so it is part of
//! the plan's output and must not be rearranged.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The [`crate::desired::VPC`]: desired and observed alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpcSpec {
    /// The address range ([`crate::desired::VPC_CIDR`]).
    pub cidr: String,
    /// The `enableDnsSupport` attribute.
    pub dns_support: bool,
    /// The `enableDnsHostnames` attribute.
    pub dns_hostnames: bool,
}

/// A desired [`crate::desired::SUBNET`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetSpec {
    /// Its address range.
    pub cidr: String,
    /// Whether instances launched in it get a public address.
    pub map_public_ip_on_launch: bool,
    /// The zone the config names; absent: chosen at apply time (the region's `i`th).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
}

/// An observed [`crate::desired::SUBNET`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetObserved {
    /// Its address range.
    pub cidr: String,
    /// Whether instances launched in it get a public address.
    pub map_public_ip_on_launch: bool,
    /// Its availability zone.
    pub availability_zone: String,
    /// The VPC it is in (observed only).
    pub vpc_id: Option<String>,
}

/// A desired [`crate::desired::INTERNET_GATEWAY`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InternetGatewaySpec {
    /// The name of the VPC it is attached to.
    pub attached_to: String,
}

/// An observed [`crate::desired::INTERNET_GATEWAY`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InternetGatewayObserved {
    /// The name of the first VPC it is attached to (its id when not ours).
    pub attached_to: Option<String>,
    /// The ids of every VPC it is attached to (observed only).
    pub vpc_ids: Vec<String>,
}

/// Where a route table's default route (`0.0.0.0/0`) goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefaultRoute {
    /// An internet gateway (`igw-…`).
    InternetGateway,
}

/// A desired [`crate::desired::ROUTE_TABLE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTableSpec {
    /// Where the default route goes.
    pub default_route: DefaultRoute,
    /// The names of the subnets associated with it.
    pub subnets: Vec<String>,
}

/// An observed [`crate::desired::ROUTE_TABLE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTableObserved {
    /// Where the default route goes, if it has one we know.
    pub default_route: Option<DefaultRoute>,
    /// The names of the associated subnets (their ids when not ours), sorted.
    pub subnets: Vec<String>,
    /// The VPC it is in (observed only).
    pub vpc_id: Option<String>,
}

/// A desired [`crate::desired::SECURITY_GROUP`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroupSpec {
    /// Whether it allows all traffic from itself.
    pub ingress_from_self: bool,
    /// The range NFS ([`crate::desired::NFS_PORT`]) is allowed from.
    pub nfs_from: String,
}

/// An observed [`crate::desired::SECURITY_GROUP`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroupObserved {
    /// Whether it allows all traffic from itself.
    pub ingress_from_self: bool,
    /// The range NFS is allowed from, when a rule allows it by range.
    pub nfs_from: Option<String>,
    /// The VPC it is in (observed only).
    pub vpc_id: Option<String>,
}

/// A desired [`crate::desired::IAM_ROLE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleSpec {
    /// The service principal its trust policy names.
    pub service: String,
    /// The names of its AWS managed policies.
    pub policies: Vec<String>,
    /// The names of its inline policies ([`crate::desired::inline_policy_document`]).
    pub inline_policies: Vec<String>,
}

/// An observed [`crate::desired::IAM_ROLE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleObserved {
    /// The service principal its trust policy names, if one we know.
    pub service: Option<String>,
    /// The names of its attached managed policies, sorted.
    pub policies: Vec<String>,
    /// The names of its inline policies, sorted.
    pub inline_policies: Vec<String>,
}

/// A desired [`crate::desired::EKS_CLUSTER`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSpec {
    /// The Kubernetes version, `MAJOR.MINOR`.
    pub kubernetes_version: String,
    /// The cluster role's name.
    pub role: String,
    /// The subnets' names.
    pub subnets: Vec<String>,
    /// The security group's name.
    pub security_group: String,
    /// The EKS support type (`STANDARD`, `EXTENDED`).
    pub support_type: String,
    /// Whether the authentication mode has access entries
    /// ([`crate::desired::AUTHENTICATION_MODE`]).
    pub access_entries: bool,
}

/// An observed [`crate::desired::EKS_CLUSTER`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterObserved {
    /// The Kubernetes version.
    pub kubernetes_version: Option<String>,
    /// The cluster role's name.
    pub role: Option<String>,
    /// The subnets' names (their ids when not ours), sorted.
    pub subnets: Vec<String>,
    /// The first security group's name (its id when not ours).
    pub security_group: Option<String>,
    /// The EKS support type.
    pub support_type: Option<String>,
    /// Whether the authentication mode has access entries.
    pub access_entries: bool,
}

/// What an EKS managed node group is, as the plan compares it and the apply sends it: the
/// [`crate::desired::NODE_GROUP`] resource's spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeGroupSpec {
    /// The EC2 instance type, e.g. `m5.xlarge`.
    pub instance_type: String,
    /// The EKS AMI type ([`crate::desired::ami_type`]).
    pub ami_type: String,
    /// The root volume, in GiB.
    pub disk_size: i32,
    /// The autoscaler's lower bound.
    pub min_nodes: u32,
    /// The autoscaler's upper bound.
    pub max_nodes: u32,
    /// The node role's name.
    pub node_role: String,
    /// Node labels (the group's, and a GPU group's accelerator).
    pub labels: BTreeMap<String, String>,
    /// Node taints, `key=value:Effect`.
    pub taints: Vec<String>,
    /// The cluster autoscaler's tags ([`crate::desired::autoscaler_tags`]).
    pub autoscaler_tags: BTreeMap<String, String>,
    /// The subnets of a group kept in one zone (`single_subnet`); absent: all of ours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnets: Option<Vec<String>>,
}

/// A node group as observe reports it: the fields of [`NodeGroupSpec`] as EKS has them (any
/// may be missing), its current size and Kubernetes version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeGroupObserved {
    /// The first instance type.
    pub instance_type: Option<String>,
    /// The AMI type.
    pub ami_type: Option<String>,
    /// The root volume, in GiB.
    pub disk_size: Option<i32>,
    /// The scaling configuration's minimum.
    pub min_nodes: Option<i32>,
    /// The scaling configuration's maximum.
    pub max_nodes: Option<i32>,
    /// The scaling configuration's desired size (the autoscaler's doing).
    pub desired_nodes: Option<i32>,
    /// The node role's name.
    pub node_role: Option<String>,
    /// Node labels.
    pub labels: BTreeMap<String, String>,
    /// Node taints, `key=value:Effect`, sorted.
    pub taints: Vec<String>,
    /// The `k8s.io/cluster-autoscaler/…` tags.
    pub autoscaler_tags: BTreeMap<String, String>,
    /// The subnets' names (their ids when not ours), sorted.
    pub subnets: Vec<String>,
    /// The Kubernetes version.
    pub version: Option<String>,
}

/// An [`crate::desired::EKS_ADDON`]: desired and observed alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddonSpec {
    /// The cluster's name.
    pub cluster: String,
}

/// One access policy associated with an access entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessPolicy {
    /// The policy's ARN ([`crate::desired::access_policy_arn`]).
    pub policy: String,
    /// Its scope: `cluster`, or `namespace:a,b`.
    pub scope: String,
}

/// An [`crate::desired::ACCESS_ENTRY`]: desired and observed alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessEntrySpec {
    /// The IAM principal's ARN.
    pub principal: String,
    /// The associated access policies.
    pub policies: Vec<AccessPolicy>,
}

/// A desired [`crate::desired::POD_IDENTITY`] association.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodIdentitySpec {
    /// The cluster's name.
    pub cluster: String,
    /// The service account's namespace.
    pub namespace: String,
    /// The service account.
    pub service_account: String,
    /// The IAM role's name.
    pub role: String,
}

/// An observed [`crate::desired::POD_IDENTITY`] association.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodIdentityObserved {
    /// The cluster's name.
    pub cluster: String,
    /// The service account's namespace.
    pub namespace: String,
    /// The service account.
    pub service_account: String,
    /// The IAM role's name, if EKS says.
    pub role: Option<String>,
}

/// An [`crate::desired::EFS`] file system: desired and observed alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSystemSpec {
    /// Whether it is encrypted at rest.
    pub encrypted: bool,
    /// Its performance mode (`generalPurpose`).
    pub performance_mode: String,
}

/// A desired [`crate::desired::EFS_MOUNT_TARGET`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountTargetSpec {
    /// The subnet's name.
    pub subnet: String,
    /// The security group's name.
    pub security_group: String,
}

/// An observed [`crate::desired::EFS_MOUNT_TARGET`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountTargetObserved {
    /// The subnet's name (its id when not ours).
    pub subnet: String,
    /// The first security group's name (its id when not ours).
    pub security_group: Option<String>,
    /// The file system it belongs to (observed only).
    pub file_system_id: String,
}

/// An [`crate::desired::EBS_VOLUME`] a PersistentVolumeClaim made (observed only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeObserved {
    /// The claim's name (its tag).
    pub claim: String,
    /// The claim's namespace (its tag).
    pub namespace: String,
    /// Its size in GiB.
    pub size_gib: Option<i32>,
    /// Its state (`available`, `in-use`).
    pub state: Option<String>,
}

/// A [`crate::desired::NETWORK_INTERFACE`] left in our VPC (observed only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInterfaceObserved {
    /// Its description (who made it).
    pub description: Option<String>,
    /// The name of the subnet it is in, when ours.
    pub subnet: Option<String>,
    /// Its status (`available`, `in-use`).
    pub status: Option<String>,
}
