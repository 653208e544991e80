//! Finding a deployment's resources by their ownership tags, in the shape of [`crate::desired`].
//!
//! EC2 resources are found with `tag:` filters; IAM roles by listing our path and reading their
//! tags; EKS clusters and node groups, and EFS file systems, by listing and describing (their
//! list calls do not filter by tag). EFS mount targets carry no tags: they are ours when their
//! file system is.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Filter, Tag};
use qhub_core::engine::plan::{Observed, ResourceId, Stage};
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
    Ok(r.subnets()
        .iter()
        .map(|s| {
            let id = s.subnet_id().unwrap_or_default().to_string();
            Found {
                id: ResourceId::new(SUBNET, name_or(s.tags(), &id)),
                spec: json!({
                    "cidr": s.cidr_block().unwrap_or_default(),
                    "map_public_ip_on_launch": s.map_public_ip_on_launch().unwrap_or(false),
                    "availability_zone": s.availability_zone().unwrap_or_default(),
                }),
                state: s
                    .state()
                    .map(|s| s.as_str().to_lowercase())
                    .unwrap_or_default(),
                cloud_id: id,
            }
        })
        .collect())
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
    Ok(r.internet_gateways()
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
        .collect())
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
    Ok(r.route_tables()
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
                spec: json!({"default_route": default_route, "subnets": subnets}),
                state: "available".into(),
                cloud_id: id,
            }
        })
        .collect())
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
    Ok(r.security_groups()
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
                spec: json!({"ingress_from_self": from_self}),
                state: "available".into(),
                cloud_id: id,
            }
        })
        .collect())
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

/// The deployment's IAM roles (under [`IAM_PATH`], carrying our tags).
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

/// The deployment's EKS clusters and their node groups.
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
                ProviderError::NotSupported(_) => {
                    p.without_addons("ListAddons");
                    Ok(Vec::new())
                }
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

/// The deployment's EFS file systems and their mount targets.
pub async fn file_systems(
    p: &AwsProvider,
    o: &Ownership,
    subnet_names: &BTreeMap<String, String>,
    sg_names: &BTreeMap<String, String>,
) -> Result<Vec<Found>, ProviderError> {
    let efs = &p.clients().await?.efs;
    let names = Names::new(o.prefix());
    let mut out = Vec::new();
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
            out.push(Found {
                id: ResourceId::new(EFS, &name),
                spec: json!({
                    "encrypted": fs.encrypted().unwrap_or(false),
                    "performance_mode": fs.performance_mode().as_str(),
                }),
                state: fs.life_cycle_state().as_str().to_lowercase(),
                cloud_id: id.clone(),
            });
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
                out.push(Found {
                    id: ResourceId::new(EFS_MOUNT_TARGET, mt_name),
                    spec: json!({"subnet": subnet, "security_group": sg}),
                    state: mt.life_cycle_state().as_str().to_lowercase(),
                    cloud_id: mt_id,
                });
            }
        }
        match r.next_marker() {
            Some(m) => marker = Some(m.to_string()),
            None => break,
        }
    }
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
    p.probe_addons().await?;
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

/// The [`Observed`] resources of `o`'s deployment.
pub async fn observe(p: &AwsProvider, o: &Ownership) -> Result<Vec<Observed>, ProviderError> {
    let found = inventory(p, o).await?;
    let names = Names::new(o.prefix());
    let ids: Vec<ResourceId> = found.iter().map(|f| f.id.clone()).collect();
    Ok(found
        .into_iter()
        .map(|f| Observed {
            depends_on: desired::dependencies(&f.id, &names, &ids),
            id: f.id,
            stage: Stage::Infrastructure,
            spec: f.spec,
            cloud_id: Some(f.cloud_id),
            state: f.state,
            payload: None,
        })
        .collect())
}
