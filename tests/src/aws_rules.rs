//! What real AWS refuses, or does differently, where moto accepts: the rules layer of the
//! loopback proxy ([`crate::fault_proxy`]) in front of moto.
//!
//! moto carries out whatever it is sent. These rules make the proxy answer as the real service
//! would for what qhub sends, so that a provider bug that only the real cloud would show fails a
//! test here. Each rule cites the documentation or report it comes from:
//!
//! - **AMI types by version** ([`refuse_create_nodegroup`]): EKS publishes no Amazon Linux 2
//!   AMIs for Kubernetes 1.33 and later, and CreateNodegroup with an `AL2_*` type on such a
//!   cluster answers `InvalidParameterException: AMI Type AL2_x86_64 is only supported for
//!   kubernetes versions 1.32 or earlier` (EKS user guide, "Kubernetes versions", 1.33 notes;
//!   the answer as seen in scylladb/scylla-cluster-tests#12524 and eksctl#8421).
//! - **Node roles with an IAM path never join** ([`NodegroupRecord::fails_to_join`]): a
//!   cluster created through the API authenticates nodes with the `aws-auth` ConfigMap
//!   (`authenticationMode` defaults to `CONFIG_MAP`), whose role ARNs cannot carry a path (EKS
//!   user guide, "Grant IAM users access to Kubernetes with a ConfigMap": "The role ARN can't
//!   include a path"; kubernetes-sigs/aws-iam-authenticator#268). The API accepts the node
//!   group and its instances then fail to register: DescribeNodegroup says `CREATE_FAILED`
//!   with the health issue `NodeCreationFailure` ("Instances failed to join the kubernetes
//!   cluster", EKS troubleshooting, "Nodes fail to join cluster").
//! - **The cluster security group** ([`cluster_security_group_id`]): EKS creates a security
//!   group for every cluster (`resourcesVpcConfig.clusterSecurityGroupId`) and puts managed
//!   node groups' instances in it, not in the groups the cluster was created with (EKS user
//!   guide, "View Amazon EKS security group requirements for clusters"). moto reports none;
//!   the layer adds it to DescribeCluster, and [`nfs_blocked`] says whether a node in it
//!   reaches the EFS mount targets on NFS (TCP 2049; EFS user guide, "Using VPC security groups
//!   for Amazon EFS").
//! - **Version updates** ([`AwsRules::serve_eks`]): moto implements neither
//!   UpdateClusterVersion nor UpdateNodegroupVersion; the layer serves them with EKS's skew
//!   rules (one minor at a time, never down, node groups at the control plane's version first;
//!   a node group never ahead of its control plane).
//! - **The upgrade policy** ([`ClusterRecord::support_type`]): CreateCluster without
//!   `upgradePolicy` gets `EXTENDED` (EKS API reference, `UpgradePolicyRequest`: "the default
//!   value is EXTENDED"; EKS user guide, "Cluster upgrade policy"); moto ignores the field, the
//!   layer answers it in DescribeCluster.
//! - **Cluster access** ([`crate::eks_access`]): `accessConfig` and the access-entry API.
//! - **Add-ons and Pod Identity** ([`crate::eks_addons`]): moto implements neither; the layer
//!   serves them with EKS's errors.

use std::collections::BTreeMap;

use serde_json::Value as Json;

/// A refusal the proxy sends instead of forwarding (a restJson1 error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status.
    pub status: u16,
    /// The error code (`x-amzn-ErrorType`).
    pub code: &'static str,
    /// The message, as the service writes it.
    pub message: String,
}

/// What the layer remembers of a cluster created through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterRecord {
    /// `MAJOR.MINOR`, from CreateCluster (and UpdateClusterVersion).
    pub version: String,
    /// `upgradePolicy.supportType`, `EXTENDED` unless CreateCluster said otherwise.
    pub support_type: String,
}

/// What the layer remembers of a node group created through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodegroupRecord {
    /// `MAJOR.MINOR`: the request's, else the cluster's at creation; then UpdateNodegroupVersion's.
    pub version: String,
    /// The node role ARN it was created with.
    pub node_role: String,
    /// The AMI type it was created with, if the request named one.
    pub ami_type: Option<String>,
}

impl NodegroupRecord {
    /// Why its instances never register with the cluster, if they do not: a node role with
    /// an IAM path (see the module docs).
    pub fn fails_to_join(&self) -> Option<String> {
        role_path(&self.node_role).map(|path| {
            format!(
                "Instances failed to join the kubernetes cluster (node role {} has the IAM path {path}, which aws-auth cannot match)",
                self.node_role
            )
        })
    }
}

/// The IAM path of a role ARN (`arn:aws:iam::1:role/qhub-rs/x` → `/qhub-rs/`), `None` for `/`.
pub fn role_path(arn: &str) -> Option<String> {
    let name = arn.split_once(":role/")?.1;
    let (path, _) = name.rsplit_once('/')?;
    Some(format!("/{path}/"))
}

/// The id the layer gives the security group EKS creates for cluster `name` (moto makes none).
/// Nodes of managed node groups are in this group.
pub fn cluster_security_group_id(name: &str) -> String {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("sg-eks{:011x}", hash & 0xfff_ffff_ffff)
}

/// The rules' memory: the clusters and node groups created through the proxy.
#[derive(Debug, Clone, Default)]
pub struct AwsRules {
    /// Clusters by name.
    pub clusters: BTreeMap<String, ClusterRecord>,
    /// Node groups by (cluster, node group).
    pub nodegroups: BTreeMap<(String, String), NodegroupRecord>,
    /// Cluster access: `accessConfig` and access entries ([`crate::eks_access`]).
    pub access: crate::eks_access::EksAccess,
    /// Add-ons, Pod Identity associations and the roles' trust policies.
    pub addons: crate::eks_addons::EksAddons,
}

fn minor(version: &str) -> Option<u32> {
    let mut parts = version.split('.');
    (parts.next()? == "1").then_some(())?;
    parts.next()?.parse().ok()
}

fn path_segments(path: &str) -> Vec<&str> {
    path.split('?')
        .next()
        .unwrap_or("")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect()
}

impl AwsRules {
    /// Forgets everything (after the upstream was reset).
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// The refusal real EKS gives an `op` request on `path` with `body`, or `None` to forward
    /// it.
    pub fn refuse_eks(&self, op: &str, path: &str, body: &[u8]) -> Option<Refusal> {
        let segs = path_segments(path);
        match (op, segs.as_slice()) {
            ("CreateNodegroup", ["clusters", cluster, ..]) => {
                refuse_create_nodegroup(self.clusters.get(*cluster), body)
            }
            _ => None,
        }
    }

    /// Serves what moto does not implement, with EKS's rules: UpdateClusterVersion and
    /// UpdateNodegroupVersion (moto has neither). `None` for any other request (forwarded).
    pub fn serve_eks(
        &mut self,
        op: &str,
        path: &str,
        body: &[u8],
    ) -> Option<Result<Json, Refusal>> {
        if let Some(served) = self.access.serve(op, path, body) {
            return Some(served);
        }
        if let Some(served) = self.addons.serve(&self.clusters, op, path, body) {
            return Some(served);
        }
        let segs = path_segments(path);
        let body: Json = serde_json::from_slice(body).unwrap_or(Json::Null);
        let target = body
            .get("version")
            .and_then(Json::as_str)
            .map(str::to_string);
        match (op, segs.as_slice()) {
            ("UpdateClusterVersion", ["clusters", name, "updates"]) => {
                Some(self.update_cluster_version(name, target))
            }
            (
                "UpdateNodegroupVersion",
                ["clusters", cluster, "node-groups", group, "update-version"],
            ) => Some(self.update_nodegroup_version(cluster, group, target)),
            _ => None,
        }
    }

    /// EKS moves a control plane one minor version at a time, never down, and only once every
    /// managed node group is at the control plane's version (EKS user guide, "Update existing
    /// cluster to new Kubernetes version": "You can update only one minor version at a time";
    /// "make sure that the Kubernetes minor version of both the managed nodes and Fargate nodes
    /// in your cluster are the same as your control plane's current version"). The refusal of a
    /// skipped or backward step is EKS's `Unsupported Kubernetes minor version update from … to
    /// …`.
    fn update_cluster_version(
        &mut self,
        name: &str,
        target: Option<String>,
    ) -> Result<Json, Refusal> {
        let Some(cluster) = self.clusters.get(name) else {
            return Err(not_found(format!("No cluster found for name: {name}.")));
        };
        let current = cluster.version.clone();
        let target = target.unwrap_or_default();
        let (Some(cur), Some(want)) = (minor(&current), minor(&target)) else {
            return Err(invalid(format!("Unsupported Kubernetes version {target}")));
        };
        if want != cur + 1 {
            return Err(invalid(format!(
                "Unsupported Kubernetes minor version update from {current} to {target}"
            )));
        }
        if let Some(((_, group), g)) = self
            .nodegroups
            .iter()
            .find(|((c, _), g)| c == name && minor(&g.version) != Some(cur))
        {
            return Err(Refusal {
                status: 400,
                code: "InvalidRequestException",
                message: format!(
                    "Nodegroup {group} is at Kubernetes {}; update it to the cluster's version {current} before updating the cluster",
                    g.version
                ),
            });
        }
        if let Some(c) = self.clusters.get_mut(name) {
            c.version = target.clone();
        }
        Ok(update_answer("VersionUpdate", &target))
    }

    /// A node group moves to the control plane's version or stays behind it, never ahead; an
    /// `AL2_*` group cannot reach 1.33 (no AMI, as at CreateNodegroup).
    fn update_nodegroup_version(
        &mut self,
        cluster: &str,
        group: &str,
        target: Option<String>,
    ) -> Result<Json, Refusal> {
        let Some(c) = self.clusters.get(cluster) else {
            return Err(not_found(format!("No cluster found for name: {cluster}.")));
        };
        let cluster_version = c.version.clone();
        let key = (cluster.to_string(), group.to_string());
        let Some(g) = self.nodegroups.get(&key) else {
            return Err(not_found(format!("No node group found for name: {group}.")));
        };
        let target = target.unwrap_or(cluster_version.clone());
        let (Some(want), Some(cap), Some(have)) =
            (minor(&target), minor(&cluster_version), minor(&g.version))
        else {
            return Err(invalid(format!("Unsupported Kubernetes version {target}")));
        };
        if want > cap || want < have {
            return Err(invalid(format!(
                "Requested Kubernetes version {target} is not valid for nodegroup {group} (at {}) in a cluster at {cluster_version}",
                g.version
            )));
        }
        if let Some(ami) = g.ami_type.as_deref().filter(|a| a.starts_with("AL2_"))
            && want >= 33
        {
            return Err(invalid(format!(
                "AMI Type {ami} is only supported for kubernetes versions 1.32 or earlier"
            )));
        }
        if let Some(g) = self.nodegroups.get_mut(&key) {
            g.version = target.clone();
        }
        Ok(update_answer("VersionUpdate", &target))
    }

    /// Records what a successful EKS request did, and rewrites the answer `doc` where real EKS
    /// answers more than moto (DescribeCluster, DescribeNodegroup).
    pub fn after_eks(&mut self, op: &str, path: &str, request: &[u8], doc: &mut Json) {
        self.access.after(op, path, request, doc);
        let segs = path_segments(path);
        let body: Json = serde_json::from_slice(request).unwrap_or(Json::Null);
        match (op, segs.as_slice()) {
            ("CreateCluster", _) => {
                if let Some(name) = body.get("name").and_then(Json::as_str) {
                    let version = body
                        .get("version")
                        .and_then(Json::as_str)
                        .or_else(|| doc["cluster"]["version"].as_str())
                        .unwrap_or_default()
                        .to_string();
                    let support_type = body["upgradePolicy"]["supportType"]
                        .as_str()
                        .unwrap_or("EXTENDED")
                        .to_string();
                    self.clusters.insert(
                        name.to_string(),
                        ClusterRecord {
                            version,
                            support_type,
                        },
                    );
                }
            }
            ("UpdateClusterConfig", ["clusters", name, "update-config"]) => {
                if let (Some(c), Some(support)) = (
                    self.clusters.get_mut(*name),
                    body["upgradePolicy"]["supportType"].as_str(),
                ) {
                    c.support_type = support.to_string();
                }
            }
            ("DeleteCluster", ["clusters", name]) => {
                self.clusters.remove(*name);
                self.nodegroups.retain(|(c, _), _| c != name);
                self.addons.forget_cluster(name);
            }
            ("DescribeCluster", ["clusters", name]) => {
                let cluster = &mut doc["cluster"];
                if !cluster.is_object() {
                    return;
                }
                if let Some(vpc) = cluster.get_mut("resourcesVpcConfig")
                    && vpc.is_object()
                {
                    vpc["clusterSecurityGroupId"] = cluster_security_group_id(name).into();
                }
                let support = self
                    .clusters
                    .get(*name)
                    .map_or("EXTENDED", |c| c.support_type.as_str());
                cluster["upgradePolicy"] = serde_json::json!({"supportType": support});
                // The version after the updates the layer served (moto has none).
                if let Some(c) = self.clusters.get(*name) {
                    cluster["version"] = c.version.clone().into();
                }
            }
            ("CreateNodegroup", ["clusters", cluster, ..]) => {
                if let Some(name) = body.get("nodegroupName").and_then(Json::as_str) {
                    let version = body["version"]
                        .as_str()
                        .map(str::to_string)
                        .or_else(|| self.clusters.get(*cluster).map(|c| c.version.clone()))
                        .unwrap_or_default();
                    self.nodegroups.insert(
                        (cluster.to_string(), name.to_string()),
                        NodegroupRecord {
                            version,
                            node_role: body["nodeRole"].as_str().unwrap_or_default().to_string(),
                            ami_type: body["amiType"].as_str().map(str::to_string),
                        },
                    );
                }
            }
            ("DeleteNodegroup", ["clusters", cluster, "node-groups", name]) => {
                self.nodegroups
                    .remove(&(cluster.to_string(), name.to_string()));
            }
            ("DescribeNodegroup", ["clusters", cluster, "node-groups", name]) => {
                let Some(record) = self
                    .nodegroups
                    .get(&(cluster.to_string(), name.to_string()))
                else {
                    return;
                };
                let group = &mut doc["nodegroup"];
                if group.is_object() {
                    group["version"] = record.version.clone().into();
                }
                let Some(reason) = record.fails_to_join() else {
                    return;
                };
                if group.is_object() {
                    group["status"] = "CREATE_FAILED".into();
                    group["health"] = serde_json::json!({"issues": [{
                        "code": "NodeCreationFailure",
                        "message": reason,
                    }]});
                }
            }
            _ => {}
        }
    }
}

fn invalid(message: String) -> Refusal {
    Refusal {
        status: 400,
        code: "InvalidParameterException",
        message,
    }
}

fn not_found(message: String) -> Refusal {
    Refusal {
        status: 404,
        code: "ResourceNotFoundException",
        message,
    }
}

/// The `{"update": …}` answer of an update EKS carried out at once.
fn update_answer(kind: &str, version: &str) -> Json {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    serde_json::json!({"update": {
        "id": format!("00000000-0000-4000-8000-{n:012}"),
        "status": "Successful",
        "type": kind,
        "params": [{"type": "Version", "value": version}],
        "errors": [],
    }})
}

/// CreateNodegroup on `cluster`: an `AL2_*` AMI type on Kubernetes 1.33 or later is refused
/// (see the module docs for the source and the message).
pub fn refuse_create_nodegroup(cluster: Option<&ClusterRecord>, body: &[u8]) -> Option<Refusal> {
    let body: Json = serde_json::from_slice(body).ok()?;
    let ami = body.get("amiType").and_then(Json::as_str)?;
    // A node group may name its own version; otherwise it takes the cluster's.
    let version = body
        .get("version")
        .and_then(Json::as_str)
        .map(str::to_string)
        .or_else(|| cluster.map(|c| c.version.clone()))?;
    if ami.starts_with("AL2_") && minor(&version)? >= 33 {
        return Some(Refusal {
            status: 400,
            code: "InvalidParameterException",
            message: format!(
                "AMI Type {ami} is only supported for kubernetes versions 1.32 or earlier"
            ),
        });
    }
    None
}

/// Why a node of managed node group `cluster` cannot open NFS (TCP 2049) to the EFS mount
/// targets in the cluster's subnets, or `None` when it can. The node sits in the cluster
/// security group EKS made ([`cluster_security_group_id`]) with an address in one of the
/// cluster's subnets; a mount target's security groups must let it in, by group or by an
/// address range holding the subnet. Reads moto straight through `sdk` (not the proxy).
pub async fn nfs_blocked(sdk: &aws_config::SdkConfig, cluster: &str) -> Option<String> {
    let eks = aws_sdk_eks::Client::new(sdk);
    let ec2 = aws_sdk_ec2::Client::new(sdk);
    let efs = aws_sdk_efs::Client::new(sdk);
    let c = eks
        .describe_cluster()
        .name(cluster)
        .send()
        .await
        .ok()?
        .cluster?;
    let subnets: Vec<String> = c
        .resources_vpc_config()
        .map(|v| v.subnet_ids().to_vec())
        .unwrap_or_default();
    let node_group = cluster_security_group_id(cluster);
    let cidrs: BTreeMap<String, String> = ec2
        .describe_subnets()
        .set_subnet_ids(Some(subnets.clone()))
        .send()
        .await
        .ok()?
        .subnets()
        .iter()
        .filter_map(|s| Some((s.subnet_id()?.to_string(), s.cidr_block()?.to_string())))
        .collect();
    let mut blocked = Vec::new();
    let mut targets = 0;
    for fs in efs
        .describe_file_systems()
        .send()
        .await
        .ok()?
        .file_systems()
    {
        let mts = efs
            .describe_mount_targets()
            .file_system_id(fs.file_system_id())
            .send()
            .await
            .ok()?;
        for mt in mts.mount_targets() {
            if !subnets.iter().any(|s| s == mt.subnet_id()) {
                continue;
            }
            targets += 1;
            let groups = efs
                .describe_mount_target_security_groups()
                .mount_target_id(mt.mount_target_id())
                .send()
                .await
                .ok()?;
            let described = ec2
                .describe_security_groups()
                .set_group_ids(Some(groups.security_groups().to_vec()))
                .send()
                .await
                .ok()?;
            // A node in any of the cluster's subnets must get through.
            for (subnet, cidr) in &cidrs {
                let allowed = described.security_groups().iter().any(|g| {
                    g.ip_permissions().iter().any(|perm| {
                        let port_ok = match perm.ip_protocol() {
                            Some("-1") => true,
                            Some("tcp" | "6") => {
                                perm.from_port().unwrap_or(0) <= 2049
                                    && perm.to_port().unwrap_or(0) >= 2049
                            }
                            _ => false,
                        };
                        let from_ok = perm
                            .user_id_group_pairs()
                            .iter()
                            .any(|p| p.group_id() == Some(node_group.as_str()))
                            || perm
                                .ip_ranges()
                                .iter()
                                .filter_map(|r| r.cidr_ip())
                                .any(|range| cidr_contains(range, cidr));
                        port_ok && from_ok
                    })
                });
                if !allowed {
                    blocked.push(format!(
                        "mount target {} refuses NFS from a node in {subnet} ({cidr}, security group {node_group})",
                        mt.mount_target_id()
                    ));
                }
            }
        }
    }
    if targets == 0 {
        return Some(format!("no EFS mount target in the subnets of {cluster}"));
    }
    (!blocked.is_empty()).then(|| blocked.join("; "))
}

fn parse_cidr(cidr: &str) -> Option<(u32, u32)> {
    let (addr, len) = cidr.split_once('/')?;
    let addr: std::net::Ipv4Addr = addr.parse().ok()?;
    let len: u32 = len.parse().ok()?;
    let mask = if len == 0 {
        0
    } else {
        u32::MAX.checked_shl(32 - len)?
    };
    Some((u32::from(addr) & mask, mask))
}

/// True when range `outer` holds all of `inner`.
pub fn cidr_contains(outer: &str, inner: &str) -> bool {
    match (parse_cidr(outer), parse_cidr(inner)) {
        (Some((o, om)), Some((i, im))) => om & im == om && i & om == o,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(version: &str) -> ClusterRecord {
        ClusterRecord {
            version: version.into(),
            support_type: "EXTENDED".into(),
        }
    }

    #[test]
    fn al2_is_refused_from_1_33() {
        let body = |ami: &str| format!(r#"{{"nodegroupName":"g","amiType":"{ami}"}}"#);
        let refused =
            refuse_create_nodegroup(Some(&cluster("1.33")), body("AL2_x86_64").as_bytes())
                .expect("refused");
        assert_eq!(refused.code, "InvalidParameterException");
        assert_eq!(
            refused.message,
            "AMI Type AL2_x86_64 is only supported for kubernetes versions 1.32 or earlier"
        );
        assert!(
            refuse_create_nodegroup(Some(&cluster("1.35")), body("AL2_x86_64_GPU").as_bytes())
                .is_some()
        );
        assert!(
            refuse_create_nodegroup(Some(&cluster("1.32")), body("AL2_x86_64").as_bytes())
                .is_none()
        );
        for ok in [
            "AL2023_x86_64_STANDARD",
            "AL2023_x86_64_NVIDIA",
            "AL2023_ARM_64_STANDARD",
        ] {
            assert!(
                refuse_create_nodegroup(Some(&cluster("1.35")), body(ok).as_bytes()).is_none(),
                "{ok}"
            );
        }
        // The node group's own version wins over the cluster's.
        let own = r#"{"amiType":"AL2_x86_64","version":"1.33"}"#;
        assert!(refuse_create_nodegroup(Some(&cluster("1.32")), own.as_bytes()).is_some());
    }

    #[test]
    fn versions_move_one_minor_at_a_time_node_groups_first() {
        let mut rules = AwsRules::default();
        let mut doc = Json::Null;
        rules.after_eks(
            "CreateCluster",
            "/clusters",
            br#"{"name":"x-dev","version":"1.33"}"#,
            &mut doc,
        );
        rules.after_eks(
            "CreateNodegroup",
            "/clusters/x-dev/node-groups",
            br#"{"nodegroupName":"g","nodeRole":"arn:aws:iam::1:role/n","amiType":"AL2023_x86_64_STANDARD"}"#,
            &mut doc,
        );
        let up = |rules: &mut AwsRules, v: &str| {
            rules.serve_eks(
                "UpdateClusterVersion",
                "/clusters/x-dev/updates",
                format!(r#"{{"version":"{v}"}}"#).as_bytes(),
            )
        };
        let ng = |rules: &mut AwsRules, v: &str| {
            rules.serve_eks(
                "UpdateNodegroupVersion",
                "/clusters/x-dev/node-groups/g/update-version",
                format!(r#"{{"version":"{v}"}}"#).as_bytes(),
            )
        };
        // Two minors at once, or down, is refused with EKS's words.
        let refused = up(&mut rules, "1.35").unwrap().unwrap_err();
        assert_eq!(
            refused.message,
            "Unsupported Kubernetes minor version update from 1.33 to 1.35"
        );
        assert!(up(&mut rules, "1.32").unwrap().is_err());
        // A node group never goes ahead of its control plane.
        assert!(ng(&mut rules, "1.34").unwrap().is_err());
        assert!(up(&mut rules, "1.34").unwrap().is_ok());
        // The next step waits for the node group.
        let refused = up(&mut rules, "1.35").unwrap().unwrap_err();
        assert_eq!(refused.code, "InvalidRequestException");
        assert!(ng(&mut rules, "1.34").unwrap().is_ok());
        assert!(up(&mut rules, "1.35").unwrap().is_ok());
        let mut d = serde_json::json!({"cluster": {"version": "1.33"}});
        rules.after_eks("DescribeCluster", "/clusters/x-dev", b"", &mut d);
        assert_eq!(d["cluster"]["version"], "1.35");
        // Other requests are forwarded.
        assert!(
            rules
                .serve_eks("DescribeCluster", "/clusters/x-dev", b"")
                .is_none()
        );
    }

    #[test]
    fn role_paths_and_cidrs() {
        assert_eq!(role_path("arn:aws:iam::1:role/x-dev-node"), None);
        assert_eq!(
            role_path("arn:aws:iam::1:role/qhub-rs/x-dev-node").as_deref(),
            Some("/qhub-rs/")
        );
        assert!(cidr_contains("10.10.0.0/16", "10.10.64.0/18"));
        assert!(!cidr_contains("10.10.0.0/18", "10.10.64.0/18"));
        assert!(!cidr_contains("10.10.0.0/18", "10.10.0.0/16"));
        assert!(cidr_contains("0.0.0.0/0", "10.10.0.0/18"));
        assert_ne!(
            cluster_security_group_id("a-dev"),
            cluster_security_group_id("b-dev")
        );
    }

    #[test]
    fn describe_answers_what_eks_adds() {
        let mut rules = AwsRules::default();
        let mut created = serde_json::json!({"cluster": {"version": "1.35"}});
        rules.after_eks(
            "CreateCluster",
            "/clusters",
            br#"{"name":"x-dev","version":"1.35"}"#,
            &mut created,
        );
        let mut doc = serde_json::json!({"cluster": {"resourcesVpcConfig": {}}});
        rules.after_eks("DescribeCluster", "/clusters/x-dev", b"", &mut doc);
        assert_eq!(doc["cluster"]["upgradePolicy"]["supportType"], "EXTENDED");
        assert_eq!(
            doc["cluster"]["resourcesVpcConfig"]["clusterSecurityGroupId"],
            cluster_security_group_id("x-dev").as_str()
        );
        rules.after_eks(
            "CreateNodegroup",
            "/clusters/x-dev/node-groups",
            br#"{"nodegroupName":"g","nodeRole":"arn:aws:iam::1:role/qhub-rs/n"}"#,
            &mut Json::Null,
        );
        let mut g = serde_json::json!({"nodegroup": {"status": "ACTIVE"}});
        rules.after_eks(
            "DescribeNodegroup",
            "/clusters/x-dev/node-groups/g",
            b"",
            &mut g,
        );
        assert_eq!(g["nodegroup"]["status"], "CREATE_FAILED");
        assert_eq!(
            g["nodegroup"]["health"]["issues"][0]["code"],
            "NodeCreationFailure"
        );
    }
}
