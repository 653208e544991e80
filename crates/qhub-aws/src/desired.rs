//! The resources an `amazon_web_services` section wants (pure: no API call).
//!
//! Every spec is what [`crate::observe`] reports for the same resource, field for field, so
//! the engine's diff is precise. Availability zones that the config does not name are chosen at
//! apply time (the region's first two), so they are not part of the subnet's spec then.

use std::collections::BTreeMap;
use std::time::Duration;

use qhub_core::config::Config;
use qhub_core::plan::{Observed, OnDependencyReplaced, Resource, ResourceId, Stage};
use qhub_core::provider::ProviderError;
use qhub_core::provider::facts::SharedFilesystem;
use qhub_core::provider::{ClusterFacts, Known};
use serde_json::{Value as Json, json};

use crate::partition::Partition;

/// Kind: the VPC.
pub const VPC: &str = "vpc";
/// Kind: a public subnet (one per availability zone).
pub const SUBNET: &str = "subnet";
/// Kind: the internet gateway, attached to the VPC.
pub const INTERNET_GATEWAY: &str = "internet_gateway";
/// Kind: the route table with the default route, associated with every subnet.
pub const ROUTE_TABLE: &str = "route_table";
/// Kind: the security group shared by the cluster, nodes and EFS mount targets.
pub const SECURITY_GROUP: &str = "security_group";
/// Kind: an IAM role (cluster or node).
pub const IAM_ROLE: &str = "iam_role";
/// Kind: the EKS cluster.
pub const EKS_CLUSTER: &str = "eks_cluster";
/// Kind: an EKS managed node group.
pub const NODE_GROUP: &str = "node_group";
/// Kind: the EFS file system.
pub const EFS: &str = "efs";
/// Kind: an EFS mount target (one per subnet).
pub const EFS_MOUNT_TARGET: &str = "efs_mount_target";
/// Kind: an EKS add-on of the cluster.
pub const EKS_ADDON: &str = "eks_addon";
/// Kind: an EBS volume a PersistentVolumeClaim made (observed only, never desired: the
/// cluster made it, a destroy deletes it).
pub const EBS_VOLUME: &str = "ebs_volume";
/// Kind: a network interface a load balancer or the cluster left in our VPC (observed only).
pub const NETWORK_INTERFACE: &str = "network_interface";

/// The EBS CSI driver add-on, so PersistentVolumeClaims get EBS volumes (EKS ships no
/// in-tree EBS provisioner since Kubernetes 1.23).
pub const EBS_CSI_ADDON: &str = "aws-ebs-csi-driver";
/// The node role's inline policy letting the cluster autoscaler scale the node groups. The
/// version suffix changes when the document does, so an update is seen by name.
pub const AUTOSCALER_POLICY: &str = "qhub-cluster-autoscaler-v1";

/// What replacing the EKS cluster destroys, for the refusal of a plan that would (a subnet
/// moved to another zone, the cluster role's trust changed). EKS can move a cluster to other
/// subnets in place since 2023-10-24 (UpdateClusterConfig, "at least two subnets in different
/// Availability Zones", same VPC), but the replacement subnet has the same CIDR as the old one,
/// so it cannot exist while the cluster still needs two: in-place is not possible here.
pub const CLUSTER_REPLACEMENT_DESTROYS: &str = "the EKS control plane and every node: every \
    running pod and user session; every Kubernetes object in it (qhub's own are created again \
    in the new cluster by the same deploy, anything else is lost); the EBS \
    volumes of PersistentVolumeClaims (Keycloak's users and groups, conda-store's environments, \
    every other claim's data); and the ingress load balancer (the new one has a new address, so \
    DNS must follow). The EFS shared filesystem is kept";

/// The document of an inline policy we own, by name.
pub fn inline_policy_document(name: &str) -> Option<String> {
    (name == AUTOSCALER_POLICY).then(|| {
        // The actions the cluster autoscaler's AWS cloud provider documents, scale from zero
        // included (DescribeInstanceTypes, DescribeNodegroup).
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Action": [
                    "autoscaling:DescribeAutoScalingGroups",
                    "autoscaling:DescribeAutoScalingInstances",
                    "autoscaling:DescribeLaunchConfigurations",
                    "autoscaling:DescribeScalingActivities",
                    "autoscaling:DescribeTags",
                    "autoscaling:SetDesiredCapacity",
                    "autoscaling:TerminateInstanceInAutoScalingGroup",
                    "ec2:DescribeImages",
                    "ec2:DescribeInstanceTypes",
                    "ec2:DescribeLaunchTemplateVersions",
                    "ec2:GetInstanceTypesFromInstanceRequirements",
                    "eks:DescribeNodegroup"
                ],
                "Resource": "*"
            }]
        })
        .to_string()
    })
}

/// The VPC's address range (QHub's, REFERENCE.md §3).
pub const VPC_CIDR: &str = "10.10.0.0/16";
/// The subnets' ranges, one per availability zone.
pub const SUBNET_CIDRS: [&str; 2] = ["10.10.0.0/18", "10.10.64.0/18"];
/// The tag holding a resource's name (what the consoles show; how observe names what it finds).
pub const NAME_TAG: &str = "Name";
/// IAM path of our roles, so listing them does not page through every role of the account.
pub const IAM_PATH: &str = "/qhub-rs/";
/// Node volume size in GiB (QHub's 50 GB, REFERENCE.md §3).
pub const DISK_SIZE_GIB: i32 = 50;
/// The taint of GPU groups, so only pods tolerating it land there.
pub const GPU_TAINT: &str = "nvidia.com/gpu=present:NoSchedule";
/// The node label naming a node's group.
pub const GROUP_LABEL: &str = "qhub.dev/node-group";

/// The managed policies of the cluster role.
pub const CLUSTER_POLICIES: &[&str] = &["AmazonEKSClusterPolicy"];
/// The managed policies of the node role. EBS CSI's lives under `service-role/`.
pub const NODE_POLICIES: &[&str] = &[
    "AmazonEBSCSIDriverPolicy",
    "AmazonEC2ContainerRegistryReadOnly",
    "AmazonEKSWorkerNodePolicy",
    "AmazonEKS_CNI_Policy",
];

/// The ARN of an AWS managed policy by name, in the partition of `region`
/// (`arn:aws-cn:iam::aws:policy/…` in China).
pub fn policy_arn(name: &str, region: &str) -> String {
    let partition = Partition::of(region).id;
    if name == "AmazonEBSCSIDriverPolicy" {
        format!("arn:{partition}:iam::aws:policy/service-role/{name}")
    } else {
        format!("arn:{partition}:iam::aws:policy/{name}")
    }
}

/// The names of a deployment's resources, from its prefix `{project}-{namespace}`.
#[derive(Debug, Clone)]
pub struct Names {
    /// `{project}-{namespace}`.
    pub prefix: String,
}

impl Names {
    /// Names under `prefix`.
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }
    /// Subnet `i`.
    pub fn subnet(&self, i: usize) -> String {
        format!("{}-subnet-{i}", self.prefix)
    }
    /// The cluster role.
    pub fn cluster_role(&self) -> String {
        format!("{}-cluster", self.prefix)
    }
    /// The node role.
    pub fn node_role(&self) -> String {
        format!("{}-node", self.prefix)
    }
    /// The node group for config group `group`.
    pub fn node_group(&self, group: &str) -> String {
        format!("{}-{group}", self.prefix)
    }
    /// The EFS file system (also its creation token).
    pub fn efs(&self) -> String {
        format!("{}-shared", self.prefix)
    }
    /// EFS mount target `i` (in subnet `i`).
    pub fn mount_target(&self, i: usize) -> String {
        format!("{}-shared-{i}", self.prefix)
    }
    /// The subnet index of a subnet or mount target name.
    pub fn index_of(name: &str) -> Option<usize> {
        name.rsplit('-').next()?.parse().ok()
    }
}

/// The cluster-autoscaler tags of a node group: discovery, plus node-template tags so that a
/// group at zero nodes can still be chosen for a pending pod (QHub lacked them, issue #595;
/// cluster-autoscaler's AWS README, "Auto-Discovery Setup" and "Scaling a node group to 0").
pub fn autoscaler_tags(prefix: &str, group: &str, gpu: bool) -> BTreeMap<String, String> {
    let mut t = BTreeMap::from([
        (
            "k8s.io/cluster-autoscaler/enabled".to_string(),
            "true".to_string(),
        ),
        (
            format!("k8s.io/cluster-autoscaler/{prefix}"),
            "owned".into(),
        ),
        (
            format!("k8s.io/cluster-autoscaler/node-template/label/{GROUP_LABEL}"),
            group.to_string(),
        ),
    ]);
    if gpu {
        t.insert(
            "k8s.io/cluster-autoscaler/node-template/taint/nvidia.com/gpu".into(),
            "present:NoSchedule".into(),
        );
    }
    t
}

/// The dependencies of a resource, among `existing` ids (the desired set, or what was
/// observed, so deletes run in reverse order of what is really there).
pub fn dependencies(id: &ResourceId, names: &Names, existing: &[ResourceId]) -> Vec<ResourceId> {
    let all = |kind: &str| -> Vec<ResourceId> {
        existing
            .iter()
            .filter(|r| r.kind == kind)
            .cloned()
            .collect()
    };
    let one = |kind: &str, name: String| vec![ResourceId::new(kind, name)];
    let mut deps = match id.kind.as_str() {
        SUBNET | INTERNET_GATEWAY | SECURITY_GROUP => one(VPC, names.prefix.clone()),
        ROUTE_TABLE => [
            one(VPC, names.prefix.clone()),
            one(INTERNET_GATEWAY, names.prefix.clone()),
            all(SUBNET),
        ]
        .concat(),
        EKS_CLUSTER => [
            one(IAM_ROLE, names.cluster_role()),
            one(SECURITY_GROUP, names.prefix.clone()),
            // The nodes need a route out to register with the control plane.
            one(ROUTE_TABLE, names.prefix.clone()),
            all(SUBNET),
        ]
        .concat(),
        NODE_GROUP => [
            one(EKS_CLUSTER, names.prefix.clone()),
            one(IAM_ROLE, names.node_role()),
        ]
        .concat(),
        // The add-on's controller runs on the nodes: it becomes active once they are there.
        EKS_ADDON => [one(EKS_CLUSTER, names.prefix.clone()), all(NODE_GROUP)].concat(),
        EFS_MOUNT_TARGET => {
            let mut d = one(EFS, names.efs());
            d.extend(one(SECURITY_GROUP, names.prefix.clone()));
            if let Some(i) = Names::index_of(&id.name) {
                d.extend(one(SUBNET, names.subnet(i)));
            }
            d
        }
        _ => Vec::new(),
    };
    deps.retain(|d| existing.contains(d));
    deps
}

fn resource(id: ResourceId, spec: Json, replace: &[&str], minutes: f64) -> Resource {
    Resource::new(id.kind, id.name, Stage::Infrastructure, spec)
        .replace_fields(replace)
        .expected(Duration::from_secs_f64(minutes * 60.0))
}

/// The extra node-group keys this provider reads: none yet. QHub's `single_subnet` and
/// `permissions_boundary` are not implemented, so they get the "has no effect" warning.
pub const NODE_GROUP_KEYS: &[&str] = &[];

/// The cluster facts of an EKS deployment: the EBS `gp2` class EKS creates, the EFS file
/// system once it exists, node groups selected by [`GROUP_LABEL`], NVIDIA's GPU taint, a
/// network load balancer for the ingress (it passes the ssh/sftp/Dask TCP ports through), and
/// the cluster autoscaler (EKS does not scale node groups itself).
pub fn cluster_facts(config: &Config, region: &str, infra: &[Observed]) -> ClusterFacts {
    let mut facts = ClusterFacts::from_config(config);
    facts.storage_class = Some("gp2".to_string());
    let names = Names::new(config.resource_prefix());
    facts.shared_filesystem = match infra
        .iter()
        .find(|o| o.id.kind == EFS && o.id.name == names.efs())
        .and_then(|o| o.cloud_id.clone())
    {
        Some(id) => Known::Known(SharedFilesystem::Efs {
            dns_name: format!("{id}.{}", Partition::host("efs", region)),
            id,
        }),
        None => Known::AfterApply,
    };
    facts.load_balancer_annotations = BTreeMap::from([(
        "service.beta.kubernetes.io/aws-load-balancer-type".to_string(),
        "nlb".to_string(),
    )]);
    facts.native_autoscaling = false;
    facts
}

/// The resources of `config`'s `amazon_web_services` section; `addons`: whether EKS add-ons
/// are wanted (false when the endpoint does not implement them, an emulator).
pub fn desired(config: &Config, addons: bool) -> Result<Vec<Resource>, ProviderError> {
    let section = config.amazon_web_services.as_ref().ok_or_else(|| {
        ProviderError::Fatal("the config has no `amazon_web_services` section".into())
    })?;
    let names = Names::new(config.resource_prefix());
    let p = names.prefix.clone();
    let zones = section.availability_zones.as_deref().unwrap_or(&[]);
    let mut out = vec![resource(
        ResourceId::new(VPC, &p),
        json!({"cidr": VPC_CIDR, "dns_support": true, "dns_hostnames": true}),
        &["cidr"],
        0.5,
    )];
    for (i, cidr) in SUBNET_CIDRS.iter().enumerate() {
        let mut spec = json!({"cidr": cidr, "map_public_ip_on_launch": true});
        if let Some(z) = zones.get(i) {
            spec["availability_zone"] = json!(z);
        }
        out.push(
            resource(
                ResourceId::new(SUBNET, names.subnet(i)),
                spec,
                &["cidr", "availability_zone"],
                0.5,
            )
            .config_key(
                "availability_zone",
                "amazon_web_services.availability_zones",
            ),
        );
    }
    let subnet_names: Vec<String> = (0..SUBNET_CIDRS.len()).map(|i| names.subnet(i)).collect();
    out.push(resource(
        ResourceId::new(INTERNET_GATEWAY, &p),
        json!({"attached_to": p}),
        &[],
        0.5,
    ));
    // A subnet's delete removes its route table association first (apply::network); the
    // re-created subnet is associated again by the route table's update.
    out.push(
        resource(
            ResourceId::new(ROUTE_TABLE, &p),
            json!({"default_route": "internet_gateway", "subnets": subnet_names}),
            &[],
            0.5,
        )
        .on_dependency_replaced(OnDependencyReplaced::Update),
    );
    out.push(resource(
        ResourceId::new(SECURITY_GROUP, &p),
        json!({"ingress_from_self": true}),
        &[],
        0.5,
    ));
    out.push(resource(
        ResourceId::new(IAM_ROLE, names.cluster_role()),
        json!({"service": "eks.amazonaws.com", "policies": CLUSTER_POLICIES, "inline_policies": []}),
        &["service"],
        0.5,
    ));
    out.push(resource(
        ResourceId::new(IAM_ROLE, names.node_role()),
        json!({
            "service": "ec2.amazonaws.com",
            "policies": NODE_POLICIES,
            "inline_policies": [AUTOSCALER_POLICY],
        }),
        &["service"],
        0.5,
    ));
    // EKS control planes take 9-15 minutes (REFERENCE.md §4).
    out.push(
        resource(
            ResourceId::new(EKS_CLUSTER, &p),
            json!({
                "kubernetes_version": section.kubernetes_version,
                "role": names.cluster_role(),
                "subnets": subnet_names,
                "security_group": p,
            }),
            &["role", "subnets", "security_group"],
            15.0,
        )
        .on_dependency_replaced(OnDependencyReplaced::Refuse(
            CLUSTER_REPLACEMENT_DESTROYS.to_string(),
        ))
        .hosts_kubernetes(),
    );
    for (group, g) in &section.node_groups {
        let (ami, taints) = if g.gpu {
            ("AL2_x86_64_GPU", json!([GPU_TAINT]))
        } else {
            ("AL2_x86_64", json!([]))
        };
        out.push(
            resource(
                ResourceId::new(NODE_GROUP, names.node_group(group)),
                json!({
                    "instance_type": g.instance,
                    "ami_type": ami,
                    "disk_size": DISK_SIZE_GIB,
                    "min_nodes": g.min_nodes,
                    "max_nodes": g.max_nodes,
                    "node_role": names.node_role(),
                    "labels": {GROUP_LABEL: group},
                    "taints": taints,
                    "autoscaler_tags": autoscaler_tags(&p, group, g.gpu),
                }),
                &["instance_type", "ami_type", "disk_size", "node_role"],
                5.0,
            )
            // Node groups are cattle: replaced when what they run on is (the default).
            .config_key(
                "instance_type",
                &format!("amazon_web_services.node_groups.{group}.instance"),
            )
            .config_key(
                "ami_type",
                &format!("amazon_web_services.node_groups.{group}.gpu"),
            ),
        );
    }
    if addons {
        out.push(resource(
            ResourceId::new(EKS_ADDON, EBS_CSI_ADDON),
            json!({"cluster": p}),
            &["cluster"],
            3.0,
        ));
    }
    out.push(resource(
        ResourceId::new(EFS, names.efs()),
        json!({"encrypted": true, "performance_mode": "generalPurpose"}),
        &["encrypted", "performance_mode"],
        1.0,
    ));
    for i in 0..SUBNET_CIDRS.len() {
        out.push(resource(
            ResourceId::new(EFS_MOUNT_TARGET, names.mount_target(i)),
            json!({"subnet": names.subnet(i), "security_group": p}),
            &["subnet", "security_group"],
            1.5,
        ));
    }
    let ids: Vec<ResourceId> = out.iter().map(|r| r.id.clone()).collect();
    for r in &mut out {
        r.depends_on = dependencies(&r.id, &names, &ids);
    }
    Ok(out)
}

/// Parses a taint written `key=value:Effect`.
pub fn parse_taint(t: &str) -> Option<(String, String, String)> {
    let (kv, effect) = t.rsplit_once(':')?;
    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
    Some((k.to_string(), v.to_string(), effect.to_string()))
}

/// The EKS API's spelling of a Kubernetes taint effect.
pub fn eks_effect(effect: &str) -> &'static str {
    match effect {
        "NoExecute" => "NO_EXECUTE",
        "PreferNoSchedule" => "PREFER_NO_SCHEDULE",
        _ => "NO_SCHEDULE",
    }
}

/// The Kubernetes spelling of an EKS taint effect.
pub fn k8s_effect(effect: &str) -> &'static str {
    match effect {
        "NO_EXECUTE" => "NoExecute",
        "PREFER_NO_SCHEDULE" => "PreferNoSchedule",
        _ => "NoSchedule",
    }
}
