//! Finding a deployment's resources by their ownership tags, in the shape of [`crate::desired`].
//!
//! EC2 resources are found with `tag:` filters; IAM roles by listing our path and reading their
//! tags; EKS clusters and node groups, and EFS file systems, by listing and describing (their
//! list calls do not filter by tag). EFS mount targets carry no tags: they are ours when their
//! file system is.
//!
//! # Duplicates
//!
//! Resources are named by their `Name` tag (EC2, EFS), so two resources of one kind can carry
//! our tags and one name: a lost response before the provider stopped SDK-retrying creates, two
//! deploys at once, a hand-made copy. Each observe function therefore keeps exactly one of them
//! under the real name and names every other an *extra*, `{name}~{cloud_id}` ([`extra_name`]),
//! with [`dedupe`]. The engine sees an extra as not desired and plans its deletion, and the
//! delete steps find it by that name, since they look resources up through these functions too;
//! the `ensure` steps, looking up the real name, adopt the kept copy.
//!
//! Which copy is kept: the one most in use, as ranked per kind (a VPC with the most of our
//! subnets; an internet gateway attached to the kept VPC; a subnet, route table or security
//! group in the kept VPC, a route table with the default route and the most associations, a
//! security group allowing traffic from itself; a file system with the most mount targets),
//! then the lowest cloud id. The ranking reads more of the cloud only when there is a duplicate.
//!
//! IAM role, EKS cluster and node group names are unique in their scope in AWS (the name is the
//! id), so those kinds cannot have duplicates and are not deduplicated.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Filter, Tag};
use qhub_core::plan::{Observed, ResourceId, ResourceState, Stage};
use qhub_core::provider::{Ownership, ProviderError};
use serde_json::{Value as Json, json};

use crate::AwsProvider;
use crate::desired::{
    self, EFS, EFS_MOUNT_TARGET, EKS_ADDON, EKS_CLUSTER, IAM_PATH, IAM_ROLE, INTERNET_GATEWAY,
    NAME_TAG, NODE_GROUP, Names, ROUTE_TABLE, SECURITY_GROUP, SUBNET, VPC,
};
use crate::errors::AwsError;

/// One resource found.
#[derive(Debug, Clone)]
pub struct Found {
    /// Kind and name.
    pub id: ResourceId,
    /// The cloud's id (`vpc-…`, a role name, a cluster name, `fs-…`).
    pub cloud_id: String,
    /// Properties in the shape of the desired spec.
    pub spec: Json,
    /// The cloud's state word, lower case.
    pub state: String,
}

pub use qhub_core::cloud::duplicates::{EXTRA_SEPARATOR, extra_name, is_extra};
use qhub_core::cloud::duplicates::{Identified, dedupe, has_duplicates};

impl Identified for Found {
    fn id(&self) -> &ResourceId {
        &self.id
    }
    fn id_mut(&mut self) -> &mut ResourceId {
        &mut self.id
    }
    fn cloud_id(&self) -> &str {
        &self.cloud_id
    }
}

/// The cloud id of the kept VPC (the one named `{prefix}`), if there is one.
async fn kept_vpc(p: &AwsProvider, o: &Ownership) -> Result<Option<String>, ProviderError> {
    let prefix = o.prefix();
    Ok(vpcs(p, o)
        .await?
        .into_iter()
        .find(|f| f.id.kind == VPC && f.id.name == prefix)
        .map(|f| f.cloud_id))
}

/// The VPCs `f` lives in, by its spec's `vpc_id` (subnets, route tables, security groups) or
/// `vpc_ids` (an internet gateway's attachments).
fn vpcs_of(f: &Found) -> Vec<&str> {
    let mut v = spec_strs(&f.spec, "vpc_ids");
    v.extend(f.spec.get("vpc_id").and_then(Json::as_str));
    v
}

/// True when `f` lives in VPC `vpc`.
fn in_vpc(f: &Found, vpc: Option<&str>) -> bool {
    vpc.is_some_and(|v| vpcs_of(f).contains(&v))
}

/// [`dedupe`] for a kind that lives in a VPC: the copy in the kept VPC is kept first, then the
/// one ranking highest by `in_use`; and what lives only in another VPC than the kept one (an
/// extra VPC's contents) is an extra too, even without a namesake, so that it is deleted
/// before that VPC and made again in ours. Reads the VPCs only when there is a duplicate or
/// `found` spans more than one VPC.
async fn dedupe_in_vpc<R: Ord>(
    p: &AwsProvider,
    o: &Ownership,
    found: Vec<Found>,
    in_use: impl Fn(&Found) -> R,
) -> Result<Vec<Found>, ProviderError> {
    let spanned: std::collections::BTreeSet<&str> = found.iter().flat_map(vpcs_of).collect();
    if spanned.len() <= 1 && !has_duplicates(&found) {
        return Ok(found);
    }
    let vpc = kept_vpc(p, o).await?;
    let mut found = dedupe(found, |f| (in_vpc(f, vpc.as_deref()), in_use(f)));
    if vpc.is_some() {
        for f in &mut found {
            if !is_extra(&f.id.name) && !vpcs_of(f).is_empty() && !in_vpc(f, vpc.as_deref()) {
                tracing::warn!(
                    resource = %f.id,
                    cloud_id = %f.cloud_id,
                    "a resource carrying our tags is in another VPC than ours; it will be deleted"
                );
                f.id.name = extra_name(&f.id.name, &f.cloud_id);
            }
        }
    }
    Ok(found)
}

/// EC2 filters selecting this deployment's resources (and only the one named `name`, if given).
pub fn owner_filters(o: &Ownership, name: Option<&str>) -> Vec<Filter> {
    let mut f: Vec<Filter> = o
        .tags()
        .into_iter()
        .map(|(k, v)| Filter::builder().name(format!("tag:{k}")).values(v).build())
        .collect();
    if let Some(n) = name {
        f.push(
            Filter::builder()
                .name(format!("tag:{NAME_TAG}"))
                .values(n)
                .build(),
        );
    }
    f
}

fn ec2_tags(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or("").to_string())))
        .collect()
}

fn name_or(tags: &[Tag], cloud_id: &str) -> String {
    ec2_tags(tags)
        .remove(NAME_TAG)
        .unwrap_or_else(|| cloud_id.to_string())
}

/// The last segment of an ARN (`arn:aws:iam::1:role/qhub-rs/x` → `x`).
pub fn arn_name(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// The deployment's VPCs.
pub async fn vpcs(p: &AwsProvider, o: &Ownership) -> Result<Vec<Found>, ProviderError> {
    let ec2 = &p.clients().await?.ec2;
    let r = ec2
        .describe_vpcs()
        .set_filters(Some(owner_filters(o, None)))
        .send()
        .await
        .map_err(|e| p.err(AwsError::from_sdk("DescribeVpcs", e)))?;
    let mut out = Vec::new();
    for v in r.vpcs() {
        let id = v.vpc_id().unwrap_or_default().to_string();
        let attr = |a: aws_sdk_ec2::types::VpcAttributeName| {
            ec2.describe_vpc_attribute().vpc_id(&id).attribute(a).send()
        };
        let support = attr(aws_sdk_ec2::types::VpcAttributeName::EnableDnsSupport)
            .await
            .map_err(|e| p.err(AwsError::from_sdk("DescribeVpcAttribute", e)))?
            .enable_dns_support()
            .and_then(|a| a.value())
            .unwrap_or(false);
        let hostnames = attr(aws_sdk_ec2::types::VpcAttributeName::EnableDnsHostnames)
            .await
            .map_err(|e| p.err(AwsError::from_sdk("DescribeVpcAttribute", e)))?
            .enable_dns_hostnames()
            .and_then(|a| a.value())
            .unwrap_or(false);
        out.push(Found {
            id: ResourceId::new(VPC, name_or(v.tags(), &id)),
            spec: json!({
                "cidr": v.cidr_block().unwrap_or_default(),
                "dns_support": support,
                "dns_hostnames": hostnames,
            }),
            state: v
                .state()
                .map(|s| s.as_str().to_lowercase())
                .unwrap_or_default(),
            cloud_id: id,
        });
    }
    if has_duplicates(&out) {
        // The VPC with the most of our subnets is kept.
        let r = ec2
            .describe_subnets()
            .set_filters(Some(owner_filters(o, None)))
            .send()
            .await
            .map_err(|e| p.err(AwsError::from_sdk("DescribeSubnets", e)))?;
        let mut subnets: BTreeMap<String, usize> = BTreeMap::new();
        for v in r.subnets().iter().filter_map(|s| s.vpc_id()) {
            *subnets.entry(v.to_string()).or_default() += 1;
        }
        out = dedupe(out, |f| subnets.get(&f.cloud_id).copied().unwrap_or(0));
    }
    Ok(out)
}

/// The deployment's subnets.
pub async fn subnets(p: &AwsProvider, o: &Ownership) -> Result<Vec<Found>, ProviderError> {
    let r = p
        .clients()
        .await?
        .ec2
        .describe_subnets()
        .set_filters(Some(owner_filters(o, None)))
        .send()
        .await
        .map_err(|e| p.err(AwsError::from_sdk("DescribeSubnets", e)))?;
    let out: Vec<Found> = r
        .subnets()
        .iter()
        .map(|s| {
            let id = s.subnet_id().unwrap_or_default().to_string();
            Found {
                id: ResourceId::new(SUBNET, name_or(s.tags(), &id)),
                spec: json!({
                    "cidr": s.cidr_block().unwrap_or_default(),
                    "map_public_ip_on_launch": s.map_public_ip_on_launch().unwrap_or(false),
                    "availability_zone": s.availability_zone().unwrap_or_default(),
                    "vpc_id": s.vpc_id(),
                }),
                state: s
                    .state()
                    .map(|s| s.as_str().to_lowercase())
                    .unwrap_or_default(),
                cloud_id: id,
            }
        })
        .collect();
    dedupe_in_vpc(p, o, out, |_| ()).await
}

/// The deployment's internet gateways (`attached_to` names the VPC, given `vpc_names` by id).
pub async fn internet_gateways(
    p: &AwsProvider,
    o: &Ownership,
    vpc_names: &BTreeMap<String, String>,
) -> Result<Vec<Found>, ProviderError> {
    let r = p
        .clients()
        .await?
        .ec2
        .describe_internet_gateways()
        .set_filters(Some(owner_filters(o, None)))
        .send()
        .await
        .map_err(|e| p.err(AwsError::from_sdk("DescribeInternetGateways", e)))?;
    let out: Vec<Found> = r
        .internet_gateways()
        .iter()
        .map(|g| {
            let id = g.internet_gateway_id().unwrap_or_default().to_string();
            let attached = g
                .attachments()
                .iter()
                .filter_map(|a| a.vpc_id())
                .map(|v| vpc_names.get(v).cloned().unwrap_or_else(|| v.to_string()))
                .next();
            Found {
                id: ResourceId::new(INTERNET_GATEWAY, name_or(g.tags(), &id)),
                spec: json!({"attached_to": attached, "vpc_ids": g.attachments().iter().filter_map(|a| a.vpc_id()).collect::<Vec<_>>()}),
                state: "available".into(),
                cloud_id: id,
            }
        })
        .collect();
    // The gateway attached to the kept VPC is kept (a VPC has at most one), else an attached one.
    dedupe_in_vpc(p, o, out, |f| !vpcs_of(f).is_empty()).await
}

/// The strings of the array at `key` of `spec`.
fn spec_strs<'a>(spec: &'a Json, key: &str) -> Vec<&'a str> {
    spec.get(key)
        .and_then(Json::as_array)
        .map(|a| a.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default()
}

/// The deployment's route tables (`subnets` are the associated subnets' names, sorted).
pub async fn route_tables(
    p: &AwsProvider,
    o: &Ownership,
    subnet_names: &BTreeMap<String, String>,
) -> Result<Vec<Found>, ProviderError> {
    let r = p
        .clients()
        .await?
        .ec2
        .describe_route_tables()
        .set_filters(Some(owner_filters(o, None)))
        .send()
        .await
        .map_err(|e| p.err(AwsError::from_sdk("DescribeRouteTables", e)))?;
    let out: Vec<Found> = r
        .route_tables()
        .iter()
        .map(|t| {
            let id = t.route_table_id().unwrap_or_default().to_string();
            let default_route = t
                .routes()
                .iter()
                .any(|r| {
                    r.destination_cidr_block() == Some("0.0.0.0/0")
                        && r.gateway_id().is_some_and(|g| g.starts_with("igw-"))
                })
                .then_some("internet_gateway");
            let mut subnets: Vec<String> = t
                .associations()
                .iter()
                .filter_map(|a| a.subnet_id())
                .map(|s| {
                    subnet_names
                        .get(s)
                        .cloned()
                        .unwrap_or_else(|| s.to_string())
                })
                .collect();
            subnets.sort();
            Found {
                id: ResourceId::new(ROUTE_TABLE, name_or(t.tags(), &id)),
                spec: json!({
                    "default_route": default_route,
                    "subnets": subnets,
                    "vpc_id": t.vpc_id(),
                }),
                state: "available".into(),
                cloud_id: id,
            }
        })
        .collect();
    // The table with the default route and the most subnets is kept.
    dedupe_in_vpc(p, o, out, |f| {
        (
            f.spec.get("default_route").is_some_and(|r| !r.is_null()),
            spec_strs(&f.spec, "subnets").len(),
        )
    })
    .await
}

/// The deployment's security groups.
pub async fn security_groups(p: &AwsProvider, o: &Ownership) -> Result<Vec<Found>, ProviderError> {
    let r = p
        .clients()
        .await?
        .ec2
        .describe_security_groups()
        .set_filters(Some(owner_filters(o, None)))
        .send()
        .await
        .map_err(|e| p.err(AwsError::from_sdk("DescribeSecurityGroups", e)))?;
    let out: Vec<Found> = r
        .security_groups()
        .iter()
        .map(|g| {
            let id = g.group_id().unwrap_or_default().to_string();
            let from_self = g.ip_permissions().iter().any(|perm| {
                perm.ip_protocol() == Some("-1")
                    && perm
                        .user_id_group_pairs()
                        .iter()
                        .any(|pair| pair.group_id() == Some(id.as_str()))
            });
            Found {
                id: ResourceId::new(SECURITY_GROUP, name_or(g.tags(), &id)),
                spec: json!({"ingress_from_self": from_self, "vpc_id": g.vpc_id()}),
                state: "available".into(),
                cloud_id: id,
            }
        })
        .collect();
    // The group allowing traffic from itself is kept.
    dedupe_in_vpc(p, o, out, |f| {
        f.spec.get("ingress_from_self").and_then(Json::as_bool) == Some(true)
    })
    .await
}

/// Decodes the `%XX` escapes IAM puts in a role's trust policy document.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The deployment's IAM roles (under [`IAM_PATH`], carrying our tags). Not deduplicated: a
/// role's name is unique in the account.
pub async fn roles(p: &AwsProvider, o: &Ownership) -> Result<Vec<Found>, ProviderError> {
    let iam = &p.clients().await?.iam;
    let mut out = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let r = iam
            .list_roles()
            .path_prefix(IAM_PATH)
            .set_marker(marker.clone())
            .send()
            .await
            .map_err(|e| p.err(AwsError::from_sdk("ListRoles", e)))?;
        for role in r.roles() {
            let name = role.role_name().to_string();
            let tags = match iam.list_role_tags().role_name(&name).send().await {
                Ok(t) => t
                    .tags()
                    .iter()
                    .map(|t| (t.key().to_string(), t.value().to_string()))
                    .collect::<BTreeMap<_, _>>(),
                Err(e) => {
                    let e = AwsError::from_sdk("ListRoleTags", e);
                    if e.is_not_found() {
                        continue;
                    }
                    return Err(p.err(e));
                }
            };
            if !o.owns(&tags) {
                continue;
            }
            // A role deleted between the list and this call (a concurrent destroy) is gone.
            let policies = match iam
                .list_attached_role_policies()
                .role_name(&name)
                .send()
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    let e = AwsError::from_sdk("ListAttachedRolePolicies", e);
                    if e.is_not_found() {
                        continue;
                    }
                    return Err(p.err(e));
                }
            };
            let mut names: Vec<String> = policies
                .attached_policies()
                .iter()
                .filter_map(|a| a.policy_name().map(str::to_string))
                .collect();
            names.sort();
            let inline = match iam.list_role_policies().role_name(&name).send().await {
                Ok(r) => r,
                Err(e) => {
                    let e = AwsError::from_sdk("ListRolePolicies", e);
                    if e.is_not_found() {
                        continue;
                    }
                    return Err(p.err(e));
                }
            };
            let mut inline: Vec<String> = inline.policy_names().to_vec();
            inline.sort();
            let trust = percent_decode(role.assume_role_policy_document().unwrap_or_default());
            let service = ["eks.amazonaws.com", "ec2.amazonaws.com"]
                .into_iter()
                .find(|s| trust.contains(s));
            out.push(Found {
                id: ResourceId::new(IAM_ROLE, &name),
                spec: json!({"service": service, "policies": names, "inline_policies": inline}),
                state: "available".into(),
                cloud_id: name,
            });
        }
        match r.marker() {
            Some(m) if r.is_truncated() => marker = Some(m.to_string()),
            _ => break,
        }
    }
    Ok(out)
}

/// The deployment's EKS clusters and their node groups. Not deduplicated: a cluster's name is
/// unique in the region, a node group's in its cluster.
pub async fn clusters(
    p: &AwsProvider,
    o: &Ownership,
    subnet_names: &BTreeMap<String, String>,
    sg_names: &BTreeMap<String, String>,
) -> Result<Vec<Found>, ProviderError> {
    let eks = &p.clients().await?.eks;
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let r = eks
            .list_clusters()
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(|e| p.err(AwsError::from_sdk("ListClusters", e)))?;
        names.extend(r.clusters().iter().cloned());
        match r.next_token() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    let mut out = Vec::new();
    for name in names {
        let c = match eks.describe_cluster().name(&name).send().await {
            Ok(r) => r.cluster,
            Err(e) => {
                let e = AwsError::from_sdk("DescribeCluster", e);
                if e.is_not_found() {
                    continue;
                }
                return Err(p.err(e));
            }
        };
        let Some(c) = c else { continue };
        let tags: BTreeMap<String, String> =
            c.tags().cloned().unwrap_or_default().into_iter().collect();
        if !o.owns(&tags) {
            continue;
        }
        let vpc = c.resources_vpc_config();
        let mut subnets: Vec<String> = vpc
            .map(|v| v.subnet_ids())
            .unwrap_or_default()
            .iter()
            .map(|s| subnet_names.get(s).cloned().unwrap_or_else(|| s.clone()))
            .collect();
        subnets.sort();
        let sg = vpc
            .and_then(|v| v.security_group_ids().first())
            .map(|s| sg_names.get(s).cloned().unwrap_or_else(|| s.clone()));
        out.push(Found {
            id: ResourceId::new(EKS_CLUSTER, &name),
            spec: json!({
                "kubernetes_version": c.version(),
                "role": c.role_arn().map(arn_name),
                "subnets": subnets,
                "security_group": sg,
            }),
            state: c
                .status()
                .map(|s| s.as_str().to_lowercase())
                .unwrap_or_default(),
            cloud_id: name.clone(),
        });
        out.extend(node_groups(p, o, &name).await?);
        out.extend(addons(p, o, &name).await?);
    }
    Ok(out)
}

/// The deployment's add-ons of cluster `cluster` (those tagged ours). An endpoint that does
/// not implement add-ons (an emulator) has none, and the provider then stops wanting them.
pub async fn addons(
    p: &AwsProvider,
    o: &Ownership,
    cluster: &str,
) -> Result<Vec<Found>, ProviderError> {
    let eks = &p.clients().await?.eks;
    let names = match eks.list_addons().cluster_name(cluster).send().await {
        Ok(r) => r.addons().to_vec(),
        Err(e) => {
            let e = AwsError::from_sdk("ListAddons", e);
            if e.is_not_found() {
                return Ok(Vec::new());
            }
            return match p.err(e) {
                ProviderError::NotSupported(_) => Ok(Vec::new()),
                other => Err(other),
            };
        }
    };
    let mut out = Vec::new();
    for name in names {
        let a = match eks
            .describe_addon()
            .cluster_name(cluster)
            .addon_name(&name)
            .send()
            .await
        {
            Ok(r) => r.addon,
            Err(e) => {
                let e = AwsError::from_sdk("DescribeAddon", e);
                if e.is_not_found() {
                    continue;
                }
                return Err(p.err(e));
            }
        };
        let Some(a) = a else { continue };
        let tags: BTreeMap<String, String> =
            a.tags().cloned().unwrap_or_default().into_iter().collect();
        if !o.owns(&tags) {
            continue;
        }
        out.push(Found {
            id: ResourceId::new(EKS_ADDON, &name),
            spec: json!({"cluster": cluster}),
            state: a
                .status()
                .map(|s| s.as_str().to_lowercase())
                .unwrap_or_default(),
            cloud_id: name,
        });
    }
    Ok(out)
}

/// The deployment's node groups of cluster `cluster`.
pub async fn node_groups(
    p: &AwsProvider,
    o: &Ownership,
    cluster: &str,
) -> Result<Vec<Found>, ProviderError> {
    let eks = &p.clients().await?.eks;
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let r = match eks
            .list_nodegroups()
            .cluster_name(cluster)
            .set_next_token(token.clone())
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                let e = AwsError::from_sdk("ListNodegroups", e);
                if e.is_not_found() {
                    return Ok(Vec::new());
                }
                return Err(p.err(e));
            }
        };
        names.extend(r.nodegroups().iter().cloned());
        match r.next_token() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    let mut out = Vec::new();
    for name in names {
        let g = match eks
            .describe_nodegroup()
            .cluster_name(cluster)
            .nodegroup_name(&name)
            .send()
            .await
        {
            Ok(r) => r.nodegroup,
            Err(e) => {
                let e = AwsError::from_sdk("DescribeNodegroup", e);
                if e.is_not_found() {
                    continue;
                }
                return Err(p.err(e));
            }
        };
        let Some(g) = g else { continue };
        let tags: BTreeMap<String, String> =
            g.tags().cloned().unwrap_or_default().into_iter().collect();
        if !o.owns(&tags) {
            continue;
        }
        let autoscaler: BTreeMap<&String, &String> = tags
            .iter()
            .filter(|(k, _)| k.starts_with("k8s.io/cluster-autoscaler/"))
            .collect();
        let mut taints: Vec<String> = g
            .taints()
            .iter()
            .map(|t| {
                format!(
                    "{}={}:{}",
                    t.key().unwrap_or_default(),
                    t.value().unwrap_or_default(),
                    desired::k8s_effect(t.effect().map(|e| e.as_str()).unwrap_or_default())
                )
            })
            .collect();
        taints.sort();
        let labels: BTreeMap<String, String> = g
            .labels()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let scaling = g.scaling_config();
        out.push(Found {
            id: ResourceId::new(NODE_GROUP, &name),
            spec: json!({
                "instance_type": g.instance_types().first(),
                "ami_type": g.ami_type().map(|a| a.as_str()),
                "disk_size": g.disk_size(),
                "min_nodes": scaling.and_then(|s| s.min_size()),
                "max_nodes": scaling.and_then(|s| s.max_size()),
                "desired_nodes": scaling.and_then(|s| s.desired_size()),
                "node_role": g.node_role().map(arn_name),
                "labels": labels,
                "taints": taints,
                "autoscaler_tags": autoscaler,
            }),
            state: g
                .status()
                .map(|s| s.as_str().to_lowercase())
                .unwrap_or_default(),
            cloud_id: name,
        });
    }
    Ok(out)
}

/// The deployment's EFS file systems and their mount targets (a mount target's
/// `file_system_id` is observed only, for the order of deletes).
pub async fn file_systems(
    p: &AwsProvider,
    o: &Ownership,
    subnet_names: &BTreeMap<String, String>,
    sg_names: &BTreeMap<String, String>,
) -> Result<Vec<Found>, ProviderError> {
    let efs = &p.clients().await?.efs;
    let names = Names::new(o.prefix());
    // Each file system, with its mount targets.
    let mut systems: Vec<(Found, Vec<Found>)> = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let r = efs
            .describe_file_systems()
            .set_marker(marker.clone())
            .send()
            .await
            .map_err(|e| p.err(AwsError::from_sdk("DescribeFileSystems", e)))?;
        for fs in r.file_systems() {
            let tags: BTreeMap<String, String> = fs
                .tags()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect();
            if !o.owns(&tags) {
                continue;
            }
            let id = fs.file_system_id().to_string();
            let name = tags.get(NAME_TAG).cloned().unwrap_or_else(|| id.clone());
            let system = Found {
                id: ResourceId::new(EFS, &name),
                spec: json!({
                    "encrypted": fs.encrypted().unwrap_or(false),
                    "performance_mode": fs.performance_mode().as_str(),
                }),
                state: fs.life_cycle_state().as_str().to_lowercase(),
                cloud_id: id.clone(),
            };
            let mut targets = Vec::new();
            let mts = efs
                .describe_mount_targets()
                .file_system_id(&id)
                .send()
                .await
                .map_err(|e| p.err(AwsError::from_sdk("DescribeMountTargets", e)))?;
            for mt in mts.mount_targets() {
                let mt_id = mt.mount_target_id().to_string();
                let subnet = subnet_names
                    .get(mt.subnet_id())
                    .cloned()
                    .unwrap_or_else(|| mt.subnet_id().to_string());
                // A mount target deleted since the describe (a concurrent destroy) is gone.
                let sgs = match efs
                    .describe_mount_target_security_groups()
                    .mount_target_id(&mt_id)
                    .send()
                    .await
                {
                    Ok(r) => r,
                    Err(e) => {
                        let e = AwsError::from_sdk("DescribeMountTargetSecurityGroups", e);
                        if e.is_not_found() {
                            continue;
                        }
                        return Err(p.err(e));
                    }
                };
                let sg = sgs
                    .security_groups()
                    .first()
                    .map(|s| sg_names.get(s).cloned().unwrap_or_else(|| s.clone()));
                let mt_name = match Names::index_of(&subnet) {
                    Some(i) if subnet == names.subnet(i) => names.mount_target(i),
                    _ => format!("{name}-{mt_id}"),
                };
                targets.push(Found {
                    id: ResourceId::new(EFS_MOUNT_TARGET, mt_name),
                    spec: json!({"subnet": subnet, "security_group": sg, "file_system_id": id}),
                    state: mt.life_cycle_state().as_str().to_lowercase(),
                    cloud_id: mt_id,
                });
            }
            systems.push((system, targets));
        }
        match r.next_marker() {
            Some(m) => marker = Some(m.to_string()),
            None => break,
        }
    }
    let (fs, targets): (Vec<Found>, Vec<Vec<Found>>) = systems.into_iter().unzip();
    // The file system with the most mount targets is kept; an extra's mount targets are extras.
    let counts: BTreeMap<String, usize> = fs
        .iter()
        .zip(&targets)
        .map(|(f, t)| (f.cloud_id.clone(), t.len()))
        .collect();
    let fs = dedupe(fs, |f| counts.get(&f.cloud_id).copied().unwrap_or(0));
    let mut out = Vec::new();
    let mut all_targets = Vec::new();
    for (f, mut t) in fs.into_iter().zip(targets) {
        if is_extra(&f.id.name) {
            for mt in &mut t {
                mt.id.name = extra_name(&mt.id.name, &mt.cloud_id);
            }
        }
        out.push(f);
        all_targets.extend(t);
    }
    // One mount target per zone and file system, so two of one name are in two subnets of one
    // name (a duplicated subnet): the lowest id is kept.
    out.extend(dedupe(all_targets, |_| ()));
    Ok(out)
}

fn id_to_name(found: &[Found]) -> BTreeMap<String, String> {
    found
        .iter()
        .map(|f| (f.cloud_id.clone(), f.id.name.clone()))
        .collect()
}

/// Everything found, by kind (in dependency order).
pub async fn inventory(p: &AwsProvider, o: &Ownership) -> Result<Vec<Found>, ProviderError> {
    let vpcs = vpcs(p, o).await?;
    let vpc_names = id_to_name(&vpcs);
    let subnets = subnets(p, o).await?;
    let subnet_names = id_to_name(&subnets);
    let sgs = security_groups(p, o).await?;
    let sg_names = id_to_name(&sgs);
    let igws = internet_gateways(p, o, &vpc_names).await?;
    let rts = route_tables(p, o, &subnet_names).await?;
    let roles = roles(p, o).await?;
    let clusters = clusters(p, o, &subnet_names, &sg_names).await?;
    let fs = file_systems(p, o, &subnet_names, &sg_names).await?;
    Ok([vpcs, subnets, igws, rts, sgs, roles, clusters, fs].concat())
}

/// The spec fields naming, by cloud id, what a found resource lives in (observed only: no
/// desired spec has them).
const CONTAINER_FIELDS: [&str; 3] = ["vpc_id", "vpc_ids", "file_system_id"];

/// The ids of the found resources that `f` lives in, by the cloud ids of its spec's
/// [`CONTAINER_FIELDS`]. Beside [`desired::dependencies`] (by name, so naming the kept copies)
/// these order an extra VPC's or file system's deletion after what is in it.
fn containers(f: &Found, by_cloud_id: &BTreeMap<&str, &ResourceId>) -> Vec<ResourceId> {
    CONTAINER_FIELDS
        .iter()
        .filter_map(|k| f.spec.get(*k))
        .flat_map(|v| match v {
            Json::String(s) => vec![s.as_str()],
            Json::Array(a) => a.iter().filter_map(Json::as_str).collect(),
            _ => Vec::new(),
        })
        .filter_map(|id| by_cloud_id.get(id).map(|r| (*r).clone()))
        .collect()
}

/// The [`Observed`] resources of `o`'s deployment.
pub async fn observe(p: &AwsProvider, o: &Ownership) -> Result<Vec<Observed>, ProviderError> {
    let found = inventory(p, o).await?;
    let names = Names::new(o.prefix());
    let ids: Vec<ResourceId> = found.iter().map(|f| f.id.clone()).collect();
    let by_cloud_id: BTreeMap<&str, &ResourceId> =
        found.iter().map(|f| (f.cloud_id.as_str(), &f.id)).collect();
    let depends_on: Vec<Vec<ResourceId>> = found
        .iter()
        .map(|f| {
            let mut deps = desired::dependencies(&f.id, &names, &ids);
            for c in containers(f, &by_cloud_id) {
                if !deps.contains(&c) {
                    deps.push(c);
                }
            }
            deps
        })
        .collect();
    Ok(found
        .into_iter()
        .zip(depends_on)
        .map(|(f, depends_on)| {
            let state = state_of(&f.id.kind, &f.state);
            let mut observed = Observed::new(f.id, Stage::Infrastructure, f.spec, state);
            observed.depends_on = depends_on;
            observed.cloud_id = Some(f.cloud_id);
            observed
        })
        .collect())
}

/// The typed state of an AWS state word (lower case): EKS `CREATING`/`DELETING` and EFS
/// `creating`/`deleting` are pending; `FAILED`, `CREATE_FAILED`, `DELETE_FAILED` and EFS `error`
/// are failed (the plan replaces the resource); everything else (`ACTIVE`, `UPDATING`,
/// `available`, `DEGRADED`) is usable.
pub fn state_of(kind: &str, word: &str) -> ResourceState {
    let what = || format!("{kind} {}", word.to_uppercase());
    match word {
        "creating" | "pending" | "deleting" => ResourceState::Pending(what()),
        "failed" | "create_failed" | "delete_failed" | "error" => ResourceState::Failed(what()),
        _ => ResourceState::Ready,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(kind: &str, name: &str, cloud_id: &str, spec: Json) -> Found {
        Found {
            id: ResourceId::new(kind, name),
            cloud_id: cloud_id.into(),
            spec,
            state: "available".into(),
        }
    }

    fn names(found: &[Found]) -> Vec<String> {
        found.iter().map(|f| f.id.to_string()).collect()
    }

    #[test]
    fn extra_names_carry_the_cloud_id() {
        assert_eq!(extra_name("demo-dev", "igw-123"), "demo-dev~igw-123");
        assert!(is_extra("demo-dev~igw-123"));
        assert!(!is_extra("demo-dev-subnet-0"));
    }

    #[test]
    fn without_duplicates_nothing_changes() {
        let all = vec![
            found(VPC, "demo-dev", "vpc-2", json!({})),
            found(SUBNET, "demo-dev-subnet-0", "subnet-1", json!({})),
            // Same name, another kind: not a duplicate.
            found(INTERNET_GATEWAY, "demo-dev", "igw-1", json!({})),
        ];
        assert!(!has_duplicates(&all));
        let out = dedupe(all.clone(), |_| ());
        assert_eq!(names(&out), names(&all));
    }

    #[test]
    fn the_most_used_copy_keeps_the_name_and_the_others_become_extras() {
        let all = vec![
            found(
                INTERNET_GATEWAY,
                "demo-dev",
                "igw-1",
                json!({"vpc_ids": []}),
            ),
            found(
                INTERNET_GATEWAY,
                "demo-dev",
                "igw-2",
                json!({"vpc_ids": ["vpc-1"]}),
            ),
            found(
                INTERNET_GATEWAY,
                "demo-dev",
                "igw-3",
                json!({"vpc_ids": []}),
            ),
            found(VPC, "demo-dev", "vpc-1", json!({})),
        ];
        assert!(has_duplicates(&all));
        let out = dedupe(all, |f| !vpcs_of(f).is_empty());
        // The order is kept; the attached gateway is kept although its id is not the lowest.
        assert_eq!(
            names(&out),
            [
                "internet_gateway/demo-dev~igw-1",
                "internet_gateway/demo-dev",
                "internet_gateway/demo-dev~igw-3",
                "vpc/demo-dev",
            ]
        );
        assert_eq!(out[1].cloud_id, "igw-2");
        assert!(!has_duplicates(&out));
    }

    #[test]
    fn ties_keep_the_lowest_cloud_id_whatever_the_order() {
        let a = found(SECURITY_GROUP, "demo-dev", "sg-b", json!({}));
        let b = found(SECURITY_GROUP, "demo-dev", "sg-a", json!({}));
        for all in [vec![a.clone(), b.clone()], vec![b, a]] {
            let out = dedupe(all, |_| 0);
            let kept: Vec<&str> = out
                .iter()
                .filter(|f| f.id.name == "demo-dev")
                .map(|f| f.cloud_id.as_str())
                .collect();
            assert_eq!(kept, ["sg-a"]);
            assert!(out.iter().any(|f| f.id.name == "demo-dev~sg-b"));
        }
    }

    #[test]
    fn an_extra_depends_on_what_it_lives_in() {
        let all = [
            found(VPC, "demo-dev", "vpc-1", json!({})),
            found(VPC, "demo-dev~vpc-2", "vpc-2", json!({})),
            found(EFS, "demo-dev-shared~fs-2", "fs-2", json!({})),
        ];
        let by_cloud_id: BTreeMap<&str, &ResourceId> =
            all.iter().map(|f| (f.cloud_id.as_str(), &f.id)).collect();
        let subnet = found(
            SUBNET,
            "demo-dev-subnet-0~subnet-9",
            "subnet-9",
            json!({"vpc_id": "vpc-2"}),
        );
        assert_eq!(
            containers(&subnet, &by_cloud_id),
            [ResourceId::new(VPC, "demo-dev~vpc-2")]
        );
        let igw = found(
            INTERNET_GATEWAY,
            "demo-dev~igw-9",
            "igw-9",
            json!({"vpc_ids": ["vpc-2", "vpc-unknown"]}),
        );
        assert_eq!(
            containers(&igw, &by_cloud_id),
            [ResourceId::new(VPC, "demo-dev~vpc-2")]
        );
        let mt = found(
            EFS_MOUNT_TARGET,
            "demo-dev-shared-0~fsmt-9",
            "fsmt-9",
            json!({"file_system_id": "fs-2"}),
        );
        assert_eq!(
            containers(&mt, &by_cloud_id),
            [ResourceId::new(EFS, "demo-dev-shared~fs-2")]
        );
    }
}
