//! The resources an `amazon_web_services` section wants (pure: no API call).
//!
//! Every spec is what [`crate::observe`] reports for the same resource, field for field, so
//! the engine's diff is precise. Availability zones that the config does not name are chosen at
//! apply time (the region's first two), so they are not part of the subnet's spec then.

use std::collections::BTreeMap;
use std::time::Duration;

use qhub_core::config::Config;
use qhub_core::plan::{OnDependencyReplaced, Resource, ResourceId, Stage};
use qhub_core::provider::{ProviderError, spec};
use serde_json::{Value as Json, json};

use crate::partition::Partition;
use crate::spec::{
    AccessEntrySpec, AccessPolicy, AddonSpec, ClusterSpec, DefaultRoute, FileSystemSpec,
    InternetGatewaySpec, MountTargetSpec, NodeGroupSpec, PodIdentitySpec, RoleSpec, RouteTableSpec,
    SecurityGroupSpec, SubnetSpec, VpcSpec,
};

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
/// Kind: an EKS access entry for one `amazon_web_services.cluster_admins` principal, named
/// `<cluster>/<principal ARN>` ([`Names::access_entry`]).
pub const ACCESS_ENTRY: &str = "access_entry";
/// Kind: an EKS Pod Identity association (cluster, namespace, service account → IAM role),
/// named `<cluster>/<namespace>/<service account>` ([`pod_identity_name`]).
pub const POD_IDENTITY: &str = "pod_identity";
/// Kind: an EBS volume a PersistentVolumeClaim made (observed only, never desired: the
/// cluster made it, a destroy deletes it).
pub const EBS_VOLUME: &str = "ebs_volume";
/// Kind: a network interface a load balancer or the cluster left in our VPC (observed only).
pub const NETWORK_INTERFACE: &str = "network_interface";

/// The EBS CSI driver add-on, so PersistentVolumeClaims get EBS volumes (EKS ships no
/// in-tree EBS provisioner since Kubernetes 1.23).
pub const EBS_CSI_ADDON: &str = "aws-ebs-csi-driver";
/// The EKS Pod Identity Agent add-on: a DaemonSet handing the pods of an associated service
/// account their role's credentials (EKS user guide, "Set up the Amazon EKS Pod Identity
/// Agent": `aws eks create-addon --addon-name eks-pod-identity-agent`).
///
/// Why pods need it: Amazon Linux 2023 managed nodes set the IMDSv2 hop limit to 1, "This
/// means that containers won't have access to the node's credentials using IMDS" (EKS user
/// guide, `nodes/al2023.adoc`; hashicorp/terraform-provider-aws#38516, "no EC2 IMDS role
/// found"): without their own credentials the EBS CSI controller provisions no volume (every
/// claim stays Pending) and the cluster autoscaler scales nothing.
pub const POD_IDENTITY_AGENT_ADDON: &str = "eks-pod-identity-agent";
/// The service principal a Pod Identity role must trust (EKS user guide, "Create IAM role
/// with trust policy required by EKS Pod Identity").
pub const PODS_PRINCIPAL: &str = "pods.eks.amazonaws.com";
/// The service account the EBS CSI add-on runs its controller as, in `kube-system` (EKS user
/// guide, `storage/ebs-csi.adoc`: the add-on "creates and is configured to use a service
/// account that's named `ebs-csi-controller-sa`").
pub const EBS_CSI_SERVICE_ACCOUNT: &str = "ebs-csi-controller-sa";
/// The namespace of the EKS add-ons' service accounts.
pub const KUBE_SYSTEM: &str = "kube-system";
/// The autoscaler role's inline policy letting the cluster autoscaler scale the node groups.
/// The version suffix changes when the document does, so an update is seen by name (v1 sat on
/// the node role, unscoped; v2 is on the autoscaler's own role, its writes scoped to the
/// cluster's Auto Scaling groups).
pub const AUTOSCALER_POLICY: &str = "qhub-cluster-autoscaler-v2";

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

/// The document of an inline policy we own, by name, for the deployment `prefix` (the
/// cluster's name).
pub fn inline_policy_document(name: &str, prefix: &str) -> Option<String> {
    (name == AUTOSCALER_POLICY).then(|| {
        // cluster-autoscaler's AWS README at the pinned release (kubernetes/autoscaler,
        // `cluster-autoscaler-1.35.2`, `cloudprovider/aws/README.md`, "Full Cluster Autoscaler
        // Features Policy (Recommended)"): the reads on every resource, scale from zero included
        // (DescribeInstanceTypes; DescribeNodegroup, through which it reads a managed node
        // group's labels and taints, see autoscaler_tags); the two writes "should be updated to
        // restrict the resources/add conditionals" — the README points at tag conditions. They
        // are limited to Auto Scaling groups carrying this cluster's discovery tag, which EKS
        // puts on every managed node group's group (EKS user guide, `managed-node-groups.adoc`:
        // "Amazon EKS tags managed node group resources so that they are configured to use the
        // Kubernetes Cluster Autoscaler") and by which the autoscaler discovers them
        // (`--node-group-auto-discovery`; the README: "only the tag name matters", hence
        // `Null: false`, any value).
        json!({
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": [
                        "autoscaling:DescribeAutoScalingGroups",
                        "autoscaling:DescribeAutoScalingInstances",
                        "autoscaling:DescribeLaunchConfigurations",
                        "autoscaling:DescribeScalingActivities",
                        "ec2:DescribeImages",
                        "ec2:DescribeInstanceTypes",
                        "ec2:DescribeLaunchTemplateVersions",
                        "ec2:GetInstanceTypesFromInstanceRequirements",
                        "eks:DescribeNodegroup"
                    ],
                    "Resource": "*"
                },
                {
                    "Effect": "Allow",
                    "Action": [
                        "autoscaling:SetDesiredCapacity",
                        "autoscaling:TerminateInstanceInAutoScalingGroup"
                    ],
                    "Resource": "*",
                    "Condition": {
                        "Null": {
                            format!("aws:ResourceTag/k8s.io/cluster-autoscaler/{prefix}"): "false"
                        }
                    }
                }
            ]
        })
        .to_string()
    })
}

/// The authentication mode clusters are created with, and moved to from `CONFIG_MAP`: access
/// entries through the EKS API, and the `aws-auth` ConfigMap kept for what already relies on it
/// (EKS user guide, "Grant IAM users and roles access to Kubernetes APIs", "Set Cluster
/// Authentication Mode"). `API` alone would drop the ConfigMap, which cannot be enabled again.
pub const AUTHENTICATION_MODE: &str = "API_AND_CONFIG_MAP";

/// The plan's note on moving a cluster to [`AUTHENTICATION_MODE`]: EKS cannot undo it (EKS user
/// guide, "Set Cluster Authentication Mode": "Once the access entry method is enabled, it cannot
/// be disabled").
pub const AUTHENTICATION_MODE_NOTE: &str = "the cluster's authentication mode moves from CONFIG_MAP to API_AND_CONFIG_MAP (access entries, the aws-auth ConfigMap kept); EKS cannot move it back";

/// The EKS access policy each `cluster_admins` principal gets, at cluster scope (EKS user
/// guide, "Access policy permissions": `AmazonEKSClusterAdminPolicy`, cluster-admin).
pub const CLUSTER_ADMIN_POLICY: &str = "AmazonEKSClusterAdminPolicy";

/// The ARN of an EKS access policy in the partition of `region`
/// (`arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy`).
pub fn access_policy_arn(name: &str, region: &str) -> String {
    format!(
        "arn:{}:eks::aws:cluster-access-policy/{name}",
        Partition::of(region).id
    )
}

/// The VPC's address range (QHub's, REFERENCE.md §3).
pub const VPC_CIDR: &str = "10.10.0.0/16";

/// NFS, the port EFS mount targets listen on (EFS user guide, "Using VPC security groups for
/// Amazon EFS": the mount target's group must allow inbound TCP 2049 from the clients).
///
/// Our security group holds the control plane's network interfaces and the mount targets, but
/// not the nodes: EKS puts managed node groups' instances in the cluster security group it
/// creates itself (`clusterSecurityGroupId`; EKS user guide, "View Amazon EKS security group
/// requirements for clusters"). So the group allows 2049 from the VPC's range ([`VPC_CIDR`])
/// rather than from the cluster security group: the VPC is this deployment's alone, the rule
/// exists before the cluster does (mount targets do not wait for CreateCluster, and no rule
/// has to follow a cluster replaced with a new group), and pods that get a VPC address of their
/// own (the VPC CNI, security groups for pods) are covered too. QHub's network module let the
/// whole VPC range into its group (nebari-dev/nebari,
/// `src/_nebari/stages/infrastructure/template/aws/modules/network/main.tf`, ingress from
/// `var.vpc_cidr_block`); we open only NFS.
pub const NFS_PORT: i32 = 2049;
/// The subnets' ranges, one per availability zone.
pub const SUBNET_CIDRS: [&str; 2] = ["10.10.0.0/18", "10.10.64.0/18"];
/// The tag holding a resource's name (what the consoles show; how observe names what it finds).
pub const NAME_TAG: &str = "Name";
/// IAM path of our roles: `/`. With the `aws-auth` ConfigMap (the authentication mode of a
/// cluster created through the API unless it says otherwise) a node role's ARN cannot carry a
/// path, or its nodes never join (EKS user guide, "Grant IAM users access to Kubernetes with a
/// ConfigMap": "The role ARN can't include a path"; EKS troubleshooting, "Nodes fail to join
/// cluster"; kubernetes-sigs/aws-iam-authenticator#268). Ownership is in the tags; roles are
/// found by name ([`Names::roles`]).
pub const IAM_PATH: &str = "/";
/// The path earlier versions made roles under: still observed, so those roles are seen by
/// `plan` and removed by `destroy`.
pub const LEGACY_IAM_PATH: &str = "/qhub-rs/";
/// Node volume size in GiB (QHub's 50 GB, REFERENCE.md §3).
pub const DISK_SIZE_GIB: i32 = 50;
/// The taint of GPU groups, so only pods tolerating it land there.
pub const GPU_TAINT: &str = "nvidia.com/gpu=present:NoSchedule";
/// The node label naming a node's group.
pub const GROUP_LABEL: &str = "qhub.dev/node-group";
/// The node label the cluster autoscaler's AWS provider reads as "this node has a GPU of this
/// type" (cluster-autoscaler `cloudprovider/aws/aws_cloud_provider.go`, `GPULabel`; its AWS
/// README, "Special note on GPU instances": set it so the autoscaler does not scale out again
/// while the device plugin has not advertised `nvidia.com/gpu` yet). GPU groups carry it.
pub const ACCELERATOR_LABEL: &str = "k8s.amazonaws.com/accelerator";
/// The Service annotation choosing an AWS load balancer's scheme.
pub const LB_SCHEME_ANNOTATION: &str = "service.beta.kubernetes.io/aws-load-balancer-scheme";

/// The [`ACCELERATOR_LABEL`] value of a GPU instance type: its NVIDIA GPU by family (EC2
/// accelerated computing instance types), `nvidia` for a family not listed here.
pub fn accelerator(instance: &str) -> &'static str {
    match instance.split('.').next().unwrap_or_default() {
        "p2" => "nvidia-tesla-k80",
        "p3" | "p3dn" => "nvidia-tesla-v100",
        "g3" | "g3s" => "nvidia-tesla-m60",
        "g4dn" => "nvidia-tesla-t4",
        "g5g" => "nvidia-t4g",
        "g5" => "nvidia-a10g",
        "g6" | "gr6" => "nvidia-l4",
        "g6e" => "nvidia-l40s",
        "p4d" | "p4de" => "nvidia-a100",
        "p5" | "p5e" | "p5en" => "nvidia-h100",
        _ => "nvidia",
    }
}

/// The managed policies of the cluster role.
pub const CLUSTER_POLICIES: &[&str] = &["AmazonEKSClusterPolicy"];
/// The managed policies of the node role (EKS user guide, "Amazon EKS node IAM role"). The
/// EBS CSI driver's policy and the autoscaler's inline policy, which earlier versions put
/// here, are on their workloads' own roles ([`EBS_CSI_POLICIES`], [`AUTOSCALER_POLICY`]):
/// with Pod Identity no pod needs them from the node, and every pod that can reach IMDS would
/// otherwise hold them.
pub const NODE_POLICIES: &[&str] = &[
    "AmazonEC2ContainerRegistryReadOnly",
    "AmazonEKSWorkerNodePolicy",
    "AmazonEKS_CNI_Policy",
];
/// The managed policy of the EBS CSI controller's role: AWS's `AmazonEBSCSIDriverPolicy`
/// (under `service-role/`; EKS user guide, `storage/ebs-csi.adoc`, the policy the add-on's
/// role gets).
pub const EBS_CSI_POLICIES: &[&str] = &["AmazonEBSCSIDriverPolicy"];

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
    /// The EBS CSI controller's role (Pod Identity).
    pub fn ebs_csi_role(&self) -> String {
        format!("{}-ebs-csi", self.prefix)
    }
    /// The cluster autoscaler's role (Pod Identity).
    pub fn autoscaler_role(&self) -> String {
        format!("{}-autoscaler", self.prefix)
    }
    /// Every IAM role a deployment may have, by name (how observe finds them).
    pub fn roles(&self) -> [String; 4] {
        [
            self.cluster_role(),
            self.node_role(),
            self.ebs_csi_role(),
            self.autoscaler_role(),
        ]
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
    /// The access entry of `principal` on the cluster: `<cluster>/<principal ARN>`.
    pub fn access_entry(&self, principal: &str) -> String {
        format!("{}/{principal}", self.prefix)
    }
    /// The subnet index of a subnet or mount target name.
    pub fn index_of(name: &str) -> Option<usize> {
        name.rsplit('-').next()?.parse().ok()
    }
}

/// The id name of the Pod Identity association of `service_account` in `namespace` on
/// `cluster`: `<cluster>/<namespace>/<service account>` (one association per service account
/// and cluster, EKS user guide, "EKS Pod Identity considerations").
pub fn pod_identity_name(cluster: &str, namespace: &str, service_account: &str) -> String {
    format!("{cluster}/{namespace}/{service_account}")
}

/// One workload that gets AWS credentials through Pod Identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodIdentity {
    /// The namespace of its service account.
    pub namespace: String,
    /// Its service account, as the Kubernetes stage (or the EKS add-on) renders it.
    pub service_account: String,
    /// The name of its IAM role.
    pub role: String,
}

/// The workloads that get their own AWS credentials: the EBS CSI controller (the add-on's
/// [`EBS_CSI_SERVICE_ACCOUNT`] in [`KUBE_SYSTEM`]) and the cluster autoscaler (the service
/// account qhub-core's autoscaler component renders: its name,
/// [`qhub_core::kubernetes::components::autoscaler::NAME`], in the config's `namespace`).
pub fn pod_identities(config: &Config) -> Vec<PodIdentity> {
    let names = Names::new(config.resource_prefix());
    vec![
        PodIdentity {
            namespace: KUBE_SYSTEM.into(),
            service_account: EBS_CSI_SERVICE_ACCOUNT.into(),
            role: names.ebs_csi_role(),
        },
        PodIdentity {
            namespace: config.namespace.clone(),
            service_account: qhub_core::kubernetes::components::autoscaler::NAME.into(),
            role: names.autoscaler_role(),
        },
    ]
}

/// The cluster-autoscaler tags of a node group: discovery, plus node-template tags.
///
/// Scale from zero: the autoscaler builds the template node of a group at zero nodes from its
/// Auto Scaling group's tags, and EKS does not copy node-group tags to the Auto Scaling group
/// (eksctl#1571), so the node-template tags here do not reach it. What does: EKS tags every
/// managed node group's Auto Scaling group with `eks:cluster-name` and `eks:nodegroup-name`,
/// and for such a group the autoscaler calls `eks:DescribeNodegroup` and takes the node
/// group's **labels and taints** into the template (kubernetes/autoscaler at
/// `cluster-autoscaler-1.34.1`, the release pinned in qhub-core's `kubernetes/versions.rs`:
/// `cloudprovider/aws/aws_manager.go`, `buildNodeFromTemplate` → `managedNodegroupCache`
/// → `aws_wrapper.go` `getManagedNodegroupInfo`; its AWS README, "IAM Policy": "The
/// `eks:DescribeNodegroup` permission allows Cluster Autoscaler to pull labels and taints from
/// the EKS DescribeNodegroup API"). So [`GROUP_LABEL`], [`ACCELERATOR_LABEL`] and
/// [`GPU_TAINT`] are set on the node group itself, and [`AUTOSCALER_POLICY`] allows
/// `eks:DescribeNodegroup`. The tags stay as a record on the node group (QHub lacked them,
/// issue #595; cluster-autoscaler's AWS README, "Auto-Discovery Setup").
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
        // The EBS CSI controller's pods must start with their credentials: Pod Identity sets
        // them up when a pod is created, so its association and the agent come first.
        EKS_ADDON if id.name == EBS_CSI_ADDON => [
            one(EKS_CLUSTER, names.prefix.clone()),
            all(NODE_GROUP),
            one(EKS_ADDON, POD_IDENTITY_AGENT_ADDON.to_string()),
            all(POD_IDENTITY),
        ]
        .concat(),
        EKS_ADDON => [one(EKS_CLUSTER, names.prefix.clone()), all(NODE_GROUP)].concat(),
        ACCESS_ENTRY => one(EKS_CLUSTER, names.prefix.clone()),
        POD_IDENTITY => [
            one(EKS_CLUSTER, names.prefix.clone()),
            one(IAM_ROLE, names.ebs_csi_role()),
            one(IAM_ROLE, names.autoscaler_role()),
        ]
        .concat(),
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

/// The resource `id` with its typed `spec` written as the plan's JSON
/// ([`qhub_core::provider::spec::write`]), the fields whose change replaces it, and how long
/// its create takes.
fn resource<S: serde::Serialize>(
    id: ResourceId,
    spec: &S,
    replace: &[&str],
    minutes: f64,
) -> Result<Resource, ProviderError> {
    let json = spec::write(&id, "spec", spec)?;
    Ok(Resource::new(id.kind, id.name, Stage::Infrastructure, json)
        .replace_fields(replace)
        .expected(Duration::from_secs_f64(minutes * 60.0)))
}

/// The extra node-group keys this provider reads: QHub's `single_subnet` (bool: the group's
/// nodes in the first subnet only, one availability zone). QHub's `permissions_boundary` is
/// not implemented, so it gets the "has no effect" warning.
///
/// Why `single_subnet` matters: an EBS volume lives in one availability zone, and a pod whose
/// claim is bound to it can only run on a node in that zone ("volume node affinity conflict"
/// otherwise; EBS user guide, "Amazon EBS volumes": a volume can be attached to instances in
/// the same Availability Zone; Kubernetes docs, "Persistent Volumes", node affinity). The
/// `general` group hosts the platform's claims (Keycloak's database, the ACME store) with one
/// node (min = max = 1): spread over two zones, a replacement node lands in the other zone
/// half of the time and the login is down. `qhub init` writes `single_subnet: true` for
/// `general`; groups without it span both zones (user and worker pods keep no zonal volume).
pub const NODE_GROUP_KEYS: &[&str] = &[SINGLE_SUBNET];

/// The node-group key pinning a group to the first subnet (see [`NODE_GROUP_KEYS`]).
pub const SINGLE_SUBNET: &str = "single_subnet";

/// Owned copies of names.
fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_string()).collect()
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
        &VpcSpec {
            cidr: VPC_CIDR.into(),
            dns_support: true,
            dns_hostnames: true,
        },
        &["cidr"],
        0.5,
    )?];
    for (i, cidr) in SUBNET_CIDRS.iter().enumerate() {
        let spec = SubnetSpec {
            cidr: (*cidr).into(),
            map_public_ip_on_launch: true,
            availability_zone: zones.get(i).cloned(),
        };
        out.push(
            resource(
                ResourceId::new(SUBNET, names.subnet(i)),
                &spec,
                &["cidr", "availability_zone"],
                0.5,
            )?
            .config_key(
                "availability_zone",
                "amazon_web_services.availability_zones",
            ),
        );
    }
    let subnet_names: Vec<String> = (0..SUBNET_CIDRS.len()).map(|i| names.subnet(i)).collect();
    out.push(resource(
        ResourceId::new(INTERNET_GATEWAY, &p),
        &InternetGatewaySpec {
            attached_to: p.clone(),
        },
        &[],
        0.5,
    )?);
    // A subnet's delete removes its route table association first (apply::network); the
    // re-created subnet is associated again by the route table's update.
    out.push(
        resource(
            ResourceId::new(ROUTE_TABLE, &p),
            &RouteTableSpec {
                default_route: DefaultRoute::InternetGateway,
                subnets: subnet_names.clone(),
            },
            &[],
            0.5,
        )?
        .on_dependency_replaced(OnDependencyReplaced::Update),
    );
    out.push(resource(
        ResourceId::new(SECURITY_GROUP, &p),
        &SecurityGroupSpec {
            ingress_from_self: true,
            nfs_from: VPC_CIDR.into(),
        },
        &[],
        0.5,
    )?);
    let role = |name: String, service: &str, policies: &[&str], inline: &[&str]| {
        resource(
            ResourceId::new(IAM_ROLE, name),
            &RoleSpec {
                service: service.into(),
                policies: strings(policies),
                inline_policies: strings(inline),
            },
            &["service"],
            0.5,
        )
    };
    out.push(role(
        names.cluster_role(),
        "eks.amazonaws.com",
        CLUSTER_POLICIES,
        &[],
    )?);
    out.push(role(
        names.node_role(),
        "ec2.amazonaws.com",
        NODE_POLICIES,
        &[],
    )?);
    if addons {
        // One role per workload, trusted by EKS Pod Identity only.
        out.push(role(
            names.ebs_csi_role(),
            PODS_PRINCIPAL,
            EBS_CSI_POLICIES,
            &[],
        )?);
        out.push(role(
            names.autoscaler_role(),
            PODS_PRINCIPAL,
            &[],
            &[AUTOSCALER_POLICY],
        )?);
    }
    // EKS control planes take 9-15 minutes (REFERENCE.md §4).
    let cluster = ClusterSpec {
        kubernetes_version: section.kubernetes_version.clone(),
        role: names.cluster_role(),
        subnets: subnet_names,
        security_group: p.clone(),
        // Without it EKS chooses EXTENDED (EKS API reference, UpgradePolicyRequest).
        support_type: section.support_type.unwrap_or_default().api_value().into(),
        // Access entries on ([`AUTHENTICATION_MODE`]); without accessConfig EKS creates a
        // CONFIG_MAP cluster (EKS API reference, CreateAccessConfigRequest).
        access_entries: true,
    };
    out.push(
        resource(
            ResourceId::new(EKS_CLUSTER, &p),
            &cluster,
            &["role", "subnets", "security_group"],
            15.0,
        )?
        .one_way("access_entries", AUTHENTICATION_MODE_NOTE)
        .on_dependency_replaced(OnDependencyReplaced::Refuse(
            CLUSTER_REPLACEMENT_DESTROYS.to_string(),
        ))
        .hosts_kubernetes(),
    );
    // One access entry per listed principal, cluster-admin at cluster scope (EKS user guide,
    // "Create access entries", "Associate access policies with access entries").
    for principal in &section.cluster_admins {
        let spec = AccessEntrySpec {
            principal: principal.clone(),
            policies: vec![AccessPolicy {
                policy: access_policy_arn(CLUSTER_ADMIN_POLICY, &section.region),
                scope: "cluster".into(),
            }],
        };
        out.push(
            resource(
                ResourceId::new(ACCESS_ENTRY, names.access_entry(principal)),
                &spec,
                // EKS cannot change an entry's principal ("You can't change the IAM principal
                // after the access entry is created").
                &["principal"],
                0.2,
            )?
            .config_key("principal", "amazon_web_services.cluster_admins"),
        );
    }
    for (group, g) in &section.node_groups {
        let ami = ami_type(&section.kubernetes_version, &g.instance, g.gpu);
        let taints = if g.gpu {
            vec![GPU_TAINT.to_string()]
        } else {
            Vec::new()
        };
        let single = match g.extra.get(SINGLE_SUBNET) {
            None => false,
            Some(Json::Bool(b)) => *b,
            Some(other) => {
                return Err(ProviderError::Fatal(format!(
                    "amazon_web_services.node_groups.{group}.{SINGLE_SUBNET}: `{other}` is not true or false; write `{SINGLE_SUBNET}: true` to keep the group in one availability zone"
                )));
            }
        };
        let mut labels = BTreeMap::from([(GROUP_LABEL.to_string(), group.clone())]);
        if g.gpu {
            labels.insert(
                ACCELERATOR_LABEL.to_string(),
                accelerator(&g.instance).to_string(),
            );
        }
        let spec = NodeGroupSpec {
            instance_type: g.instance.clone(),
            ami_type: ami.to_string(),
            disk_size: DISK_SIZE_GIB,
            min_nodes: g.min_nodes,
            max_nodes: g.max_nodes,
            node_role: names.node_role(),
            labels,
            taints,
            autoscaler_tags: autoscaler_tags(&p, group, g.gpu),
            // Only when asked: a group made across both zones is not replaced by an upgrade.
            subnets: single.then(|| vec![names.subnet(0)]),
        };
        out.push(
            resource(
                ResourceId::new(NODE_GROUP, names.node_group(group)),
                &spec,
                &[
                    "instance_type",
                    "ami_type",
                    "disk_size",
                    "node_role",
                    "subnets",
                ],
                5.0,
            )?
            // Node groups are cattle: replaced when what they run on is (the default).
            .config_key(
                "instance_type",
                &format!("amazon_web_services.node_groups.{group}.instance"),
            )
            .config_key(
                "ami_type",
                &format!("amazon_web_services.node_groups.{group}.gpu"),
            )
            .config_key(
                "subnets",
                &format!("amazon_web_services.node_groups.{group}.{SINGLE_SUBNET}"),
            ),
        );
    }
    if addons {
        for addon in [POD_IDENTITY_AGENT_ADDON, EBS_CSI_ADDON] {
            out.push(resource(
                ResourceId::new(EKS_ADDON, addon),
                &AddonSpec { cluster: p.clone() },
                &["cluster"],
                3.0,
            )?);
        }
        for w in pod_identities(config) {
            out.push(resource(
                ResourceId::new(
                    POD_IDENTITY,
                    pod_identity_name(&p, &w.namespace, &w.service_account),
                ),
                &PodIdentitySpec {
                    cluster: p.clone(),
                    namespace: w.namespace,
                    service_account: w.service_account,
                    role: w.role,
                },
                // The role of an association changes in place (UpdatePodIdentityAssociation).
                &["cluster", "namespace", "service_account"],
                0.2,
            )?);
        }
    }
    out.push(resource(
        ResourceId::new(EFS, names.efs()),
        &FileSystemSpec {
            encrypted: true,
            performance_mode: "generalPurpose".into(),
        },
        &["encrypted", "performance_mode"],
        1.0,
    )?);
    for i in 0..SUBNET_CIDRS.len() {
        out.push(resource(
            ResourceId::new(EFS_MOUNT_TARGET, names.mount_target(i)),
            &MountTargetSpec {
                subnet: names.subnet(i),
                security_group: p.clone(),
            },
            &["subnet", "security_group"],
            1.5,
        )?);
    }
    let ids: Vec<ResourceId> = out.iter().map(|r| r.id.clone()).collect();
    for r in &mut out {
        r.depends_on = dependencies(&r.id, &names, &ids);
    }
    Ok(out)
}

/// The last Kubernetes minor version EKS publishes Amazon Linux 2 AMIs for (EKS user guide,
/// "Kubernetes versions", 1.33: "Amazon Linux 2 AMIs are not published for 1.33 and later";
/// CreateNodegroup answers `AMI Type AL2_x86_64 is only supported for kubernetes versions 1.32
/// or earlier`, scylladb/scylla-cluster-tests#12524, eksctl#8421).
pub const LAST_AL2_MINOR: u32 = 32;

/// The minor version of a `MAJOR.MINOR[.PATCH]` Kubernetes version (`None` when malformed;
/// validation has refused those already).
pub fn kubernetes_minor(version: &str) -> Option<u32> {
    let v = version.strip_prefix('v').unwrap_or(version);
    let mut parts = v.split('.');
    (parts.next()? == "1").then_some(())?;
    parts.next()?.parse().ok()
}

/// True for an AWS Graviton (arm64) instance type: the family's generation digit is followed
/// by `g` (`m7g`, `c6gn`, `r8gd`, `t4g`, `g5g`, `im4gn`, `is4gen`), or it is the first
/// Graviton family `a1` (EC2 user guide, "Instance type naming conventions": `g` = AWS
/// Graviton processors). Preflight checks the guess against DescribeInstanceTypes.
pub fn is_graviton(instance: &str) -> bool {
    let family = instance.split('.').next().unwrap_or_default();
    if family == "a1" {
        return true;
    }
    let Some(digit) = family.find(|c: char| c.is_ascii_digit()) else {
        return false;
    };
    let rest = family[digit..].trim_start_matches(|c: char| c.is_ascii_digit());
    rest.starts_with('g')
}

/// The EKS-optimised AMI type of a node group: Amazon Linux 2023 from Kubernetes 1.33 on (no
/// AL2 AMIs exist there, [`LAST_AL2_MINOR`]); Amazon Linux 2 up to 1.32, so that groups made
/// earlier are not replaced. NVIDIA variants for GPU groups, ARM variants for Graviton types
/// (EKS API reference, `Nodegroup.amiType`; EKS user guide, "Create nodes with optimized
/// Amazon Linux AMIs").
pub fn ami_type(kubernetes_version: &str, instance: &str, gpu: bool) -> &'static str {
    let al2 = kubernetes_minor(kubernetes_version).is_some_and(|m| m <= LAST_AL2_MINOR);
    match (al2, is_graviton(instance), gpu) {
        // AL2 has no ARM GPU type; AL2_x86_64_GPU is what a GPU group always had.
        (true, _, true) => "AL2_x86_64_GPU",
        (true, true, false) => "AL2_ARM_64",
        (true, false, false) => "AL2_x86_64",
        (false, true, true) => "AL2023_ARM_64_NVIDIA",
        (false, true, false) => "AL2023_ARM_64_STANDARD",
        (false, false, true) => "AL2023_x86_64_NVIDIA",
        (false, false, false) => "AL2023_x86_64_STANDARD",
    }
}

/// The processor architecture an AMI type runs on (`arm64` or `x86_64`, EC2's spelling).
pub fn ami_architecture(ami: &str) -> &'static str {
    if ami.contains("ARM_64") {
        "arm64"
    } else {
        "x86_64"
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ami_types_follow_the_kubernetes_version_and_the_instance() {
        // From 1.33 EKS has only AL2023 (the AL2 types are refused).
        assert_eq!(
            ami_type("1.33", "m5.xlarge", false),
            "AL2023_x86_64_STANDARD"
        );
        assert_eq!(
            ami_type("1.35", "g4dn.xlarge", true),
            "AL2023_x86_64_NVIDIA"
        );
        assert_eq!(
            ami_type("1.34", "m7g.large", false),
            "AL2023_ARM_64_STANDARD"
        );
        assert_eq!(ami_type("1.34", "g5g.xlarge", true), "AL2023_ARM_64_NVIDIA");
        // Up to 1.32 the groups made earlier keep their AL2 type (no replacement).
        assert_eq!(ami_type("1.32", "m5.xlarge", false), "AL2_x86_64");
        assert_eq!(ami_type("1.29", "g4dn.xlarge", true), "AL2_x86_64_GPU");
        assert_eq!(ami_type("1.31", "c6gn.large", false), "AL2_ARM_64");
        for t in [
            "m6g.large",
            "c6gn.xlarge",
            "r8gd.large",
            "t4g.small",
            "a1.large",
            "im4gn.large",
            "is4gen.large",
            "x2gd.large",
        ] {
            assert!(is_graviton(t), "{t}");
        }
        for t in [
            "m5.xlarge",
            "g4dn.xlarge",
            "p4d.24xlarge",
            "inf2.xlarge",
            "trn1.2xlarge",
            "c7i.large",
            "x2iedn.xlarge",
            "bogus",
        ] {
            assert!(!is_graviton(t), "{t}");
        }
        assert_eq!(ami_architecture("AL2023_ARM_64_NVIDIA"), "arm64");
    }

    #[test]
    fn scale_from_zero_reads_the_node_group_through_describe_nodegroup() {
        // cluster-autoscaler 1.34 reads a managed group's labels and taints with
        // eks:DescribeNodegroup: without the permission a group at zero never scales up.
        let policy = inline_policy_document(AUTOSCALER_POLICY, "unit-dev").unwrap();
        for action in [
            "eks:DescribeNodegroup",
            "ec2:DescribeInstanceTypes",
            "autoscaling:SetDesiredCapacity",
        ] {
            assert!(policy.contains(action), "{action}");
        }
        assert_eq!(accelerator("g4dn.xlarge"), "nvidia-tesla-t4");
        assert_eq!(accelerator("g5.2xlarge"), "nvidia-a10g");
        assert_eq!(accelerator("x9.unknown"), "nvidia");
    }

    use crate::unit_config as config;

    #[test]
    fn gpu_groups_carry_the_accelerator_label_and_the_default_footprint() {
        let mut config = config();
        let section = config.amazon_web_services.as_mut().unwrap();
        let mut gpu = section.node_groups["worker"].clone();
        gpu.instance = "g4dn.xlarge".into();
        gpu.gpu = true;
        section.node_groups.insert("gpu".into(), gpu);
        let all = desired(&config, true).unwrap();
        let group = |name: &str| {
            all.iter()
                .find(|r| r.id.kind == NODE_GROUP && r.id.name == format!("unit-dev-{name}"))
                .unwrap()
                .spec
                .clone()
        };
        assert_eq!(
            group("gpu")["labels"],
            json!({GROUP_LABEL: "gpu", ACCELERATOR_LABEL: "nvidia-tesla-t4"})
        );
        assert_eq!(group("user")["labels"], json!({GROUP_LABEL: "user"}));
        // The init default (1.35) gets AL2023, which EKS has for it.
        assert_eq!(group("user")["ami_type"], "AL2023_x86_64_STANDARD");
        assert_eq!(group("gpu")["ami_type"], "AL2023_x86_64_NVIDIA");
        assert_eq!(ami_architecture("AL2023_x86_64_STANDARD"), "x86_64");
    }

    #[test]
    fn every_spec_reads_back_typed_or_names_the_resource_and_the_field() {
        use crate::spec::*;
        fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned>(r: &Resource) {
            let typed: T = spec::read(&r.id, "spec", &r.spec).unwrap();
            assert_eq!(
                spec::write(&r.id, "spec", &typed).unwrap(),
                r.spec,
                "{}",
                r.id
            );
        }
        let mut config = config();
        let section = config.amazon_web_services.as_mut().unwrap();
        section
            .cluster_admins
            .push("arn:aws:iam::123456789012:role/admin".into());
        section.availability_zones = Some(vec!["us-west-2a".into(), "us-west-2b".into()]);
        let all = desired(&config, true).unwrap();
        assert!(all.iter().any(|r| r.id.kind == ACCESS_ENTRY));
        for r in &all {
            match r.id.kind.as_str() {
                VPC => round_trip::<VpcSpec>(r),
                SUBNET => round_trip::<SubnetSpec>(r),
                INTERNET_GATEWAY => round_trip::<InternetGatewaySpec>(r),
                ROUTE_TABLE => round_trip::<RouteTableSpec>(r),
                SECURITY_GROUP => round_trip::<SecurityGroupSpec>(r),
                IAM_ROLE => round_trip::<RoleSpec>(r),
                EKS_CLUSTER => round_trip::<ClusterSpec>(r),
                NODE_GROUP => round_trip::<NodeGroupSpec>(r),
                EKS_ADDON => round_trip::<AddonSpec>(r),
                ACCESS_ENTRY => round_trip::<AccessEntrySpec>(r),
                POD_IDENTITY => round_trip::<PodIdentitySpec>(r),
                EFS => round_trip::<FileSystemSpec>(r),
                EFS_MOUNT_TARGET => round_trip::<MountTargetSpec>(r),
                other => panic!("no spec type for kind {other}"),
            }
        }
        // A spec without its instance type is an error naming the resource and the field,
        // not `""`.
        let r = all.iter().find(|r| r.id.kind == NODE_GROUP).unwrap();
        let mut broken = r.spec.clone();
        broken.as_object_mut().unwrap().remove("instance_type");
        let e = spec::read::<NodeGroupSpec>(&r.id, "spec", &broken).unwrap_err();
        assert!(e.to_string().contains(&r.id.to_string()), "{e}");
        let cause = std::error::Error::source(&e).expect("the parse error is kept");
        assert!(cause.to_string().contains("instance_type"), "{cause}");
        // So is a cluster whose version is not text.
        let r = all.iter().find(|r| r.id.kind == EKS_CLUSTER).unwrap();
        let mut broken = r.spec.clone();
        broken["kubernetes_version"] = json!(1.35);
        let e = spec::read::<ClusterSpec>(&r.id, "spec", &broken).unwrap_err();
        assert!(e.to_string().contains("eks_cluster/unit-dev"), "{e}");
        assert!(e.to_string().contains("ClusterSpec"), "{e}");
    }
}
