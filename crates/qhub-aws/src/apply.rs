//! Applying one change: create, update, replace or delete one resource.
//!
//! Every create first looks for the resource by its tags and adopts what it finds (a lost
//! response or an interrupted run may have created it), then converges it: each step checks
//! before it changes, so an update or a re-run after an interruption half-way through a create
//! (VPC made, DNS attributes not yet set) finishes the job without repeating what is done. Every
//! resource is tagged in its create call (TagSpecifications / tags parameters), never after.
//! Deletes treat "not found" as done.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{
    AttributeBooleanValue, IpPermission, ResourceType, Tag, TagSpecification, UserIdGroupPair,
};
use aws_sdk_eks::types::{
    AmiTypes, NodegroupScalingConfig, Taint, TaintEffect, UpdateLabelsPayload, UpdateTaintsPayload,
    VpcConfigRequest,
};
use qhub_core::engine::plan::{Action, Change, Resource};
use qhub_core::provider::{ApplyContext, Ownership, ProviderError};
use serde_json::Value as Json;

use crate::AwsProvider;
use crate::desired::{
    self, EFS, EFS_MOUNT_TARGET, EKS_CLUSTER, IAM_PATH, IAM_ROLE, INTERNET_GATEWAY, NAME_TAG,
    NODE_GROUP, Names, ROUTE_TABLE, SECURITY_GROUP, SUBNET, VPC,
};
use crate::errors::AwsError;
use crate::observe::{self, Found};

fn failed(msg: impl Into<String>) -> ProviderError {
    ProviderError::Failed(msg.into())
}

/// Ownership tags plus `Name`.
fn tags_with_name(o: &Ownership, name: &str) -> BTreeMap<String, String> {
    let mut t = o.tags();
    t.insert(NAME_TAG.into(), name.into());
    t
}

fn ec2_tag_spec(kind: ResourceType, o: &Ownership, name: &str) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(kind)
        .set_tags(Some(
            tags_with_name(o, name)
                .into_iter()
                .map(|(k, v)| Tag::builder().key(k).value(v).build())
                .collect(),
        ))
        .build()
}

/// The region's available zones, sorted by name.
pub async fn availability_zones(p: &AwsProvider) -> Result<Vec<String>, ProviderError> {
    let r = p
        .clients()
        .await?
        .ec2
        .describe_availability_zones()
        .send()
        .await
        .map_err(|e| p.err(AwsError::from_sdk("DescribeAvailabilityZones", e)))?;
    let mut zones: Vec<String> = r
        .availability_zones()
        .iter()
        .filter(|z| z.state().is_some_and(|s| s.as_str() == "available"))
        .filter_map(|z| z.zone_name().map(str::to_string))
        .collect();
    zones.sort();
    Ok(zones)
}

fn by_name(found: Vec<Found>, name: &str) -> Option<Found> {
    found.into_iter().find(|f| f.id.name == name)
}

fn spec_str<'a>(spec: &'a Json, key: &str) -> &'a str {
    spec.get(key).and_then(Json::as_str).unwrap_or_default()
}

async fn need<T>(what: &str, v: Option<T>) -> Result<T, ProviderError> {
    // A dependency that is missing now may be there in a moment (EC2 describe calls are
    // eventually consistent after a create), so this is retryable.
    v.ok_or_else(|| ProviderError::Retryable {
        message: format!("{what} does not exist (yet)"),
        retry_after: None,
    })
}

/// Performs `change`.
pub async fn apply(
    p: &AwsProvider,
    change: &Change,
    ctx: &ApplyContext,
) -> Result<(), ProviderError> {
    let what = format!("{} {}", change.action.symbol(), change.id);
    tracing::info!(change = %what, attempt = ctx.attempt, "applying");
    match change.action {
        Action::Delete => delete(p, change, ctx).await,
        Action::Replace => {
            delete(p, change, ctx).await?;
            ensure(p, change, ctx).await
        }
        Action::Create | Action::Update => ensure(p, change, ctx).await,
    }
}

async fn ensure(p: &AwsProvider, change: &Change, ctx: &ApplyContext) -> Result<(), ProviderError> {
    let desired = change
        .desired
        .as_ref()
        .ok_or_else(|| failed(format!("{}: the change has no desired resource", change.id)))?;
    let o = &ctx.ownership;
    match desired.id.kind.as_str() {
        VPC => ensure_vpc(p, o, desired).await,
        SUBNET => ensure_subnet(p, o, desired).await,
        INTERNET_GATEWAY => ensure_igw(p, o, desired).await,
        ROUTE_TABLE => ensure_route_table(p, o, desired).await,
        SECURITY_GROUP => ensure_security_group(p, o, desired).await,
        IAM_ROLE => ensure_role(p, o, desired).await,
        EKS_CLUSTER => ensure_cluster(p, o, desired).await,
        NODE_GROUP => ensure_node_group(p, o, desired).await,
        EFS => ensure_efs(p, o, desired).await,
        EFS_MOUNT_TARGET => ensure_mount_target(p, o, desired).await,
        other => Err(ProviderError::NotSupported(format!(
            "unknown AWS resource kind `{other}`"
        ))),
    }
}

async fn vpc_id(p: &AwsProvider, o: &Ownership) -> Result<String, ProviderError> {
    let v = by_name(observe::vpcs(p, o).await?, &o.prefix());
    Ok(need("the VPC", v).await?.cloud_id)
}

async fn ensure_vpc(p: &AwsProvider, o: &Ownership, r: &Resource) -> Result<(), ProviderError> {
    let ec2 = &p.clients().await?.ec2;
    let (id, have) = match by_name(observe::vpcs(p, o).await?, &r.id.name) {
        Some(f) => (f.cloud_id, Some(f.spec)),
        None => {
            let v = ec2
                .create_vpc()
                .cidr_block(spec_str(&r.spec, "cidr"))
                .tag_specifications(ec2_tag_spec(ResourceType::Vpc, o, &r.id.name))
                .send()
                .await
                .map_err(|e| p.err(AwsError::from_sdk("CreateVpc", e)))?;
            let id = v
                .vpc()
                .and_then(|v| v.vpc_id())
                .ok_or_else(|| failed("CreateVpc returned no id"))?
                .to_string();
            (id, None)
        }
    };
    let is = |k: &str| have.as_ref().and_then(|h| h.get(k)).and_then(Json::as_bool) == Some(true);
    // One attribute per call: the API refuses both at once.
    if !is("dns_support") {
        ec2.modify_vpc_attribute()
            .vpc_id(&id)
            .enable_dns_support(AttributeBooleanValue::builder().value(true).build())
            .send()
            .await
            .map_err(|e| p.err(AwsError::from_sdk("ModifyVpcAttribute", e)))?;
    }
    if !is("dns_hostnames") {
        ec2.modify_vpc_attribute()
            .vpc_id(&id)
            .enable_dns_hostnames(AttributeBooleanValue::builder().value(true).build())
            .send()
            .await
            .map_err(|e| p.err(AwsError::from_sdk("ModifyVpcAttribute", e)))?;
    }
    Ok(())
}

async fn ensure_subnet(p: &AwsProvider, o: &Ownership, r: &Resource) -> Result<(), ProviderError> {
    let ec2 = &p.clients().await?.ec2;
    let (id, public) = match by_name(observe::subnets(p, o).await?, &r.id.name) {
        Some(f) => (
            f.cloud_id,
            f.spec
                .get("map_public_ip_on_launch")
                .and_then(Json::as_bool)
                == Some(true),
        ),
        None => {
            let zone = match r.spec.get("availability_zone").and_then(Json::as_str) {
                Some(z) => z.to_string(),
                None => {
                    let i = Names::index_of(&r.id.name).unwrap_or(0);
                    let zones = availability_zones(p).await?;
                    zones.get(i).cloned().ok_or_else(|| {
                        failed(format!(
                            "region {} has {} availability zone(s); subnet {} needs zone #{}",
                            p.region(),
                            zones.len(),
                            r.id.name,
                            i + 1
                        ))
                    })?
                }
            };
            let vpc = vpc_id(p, o).await?;
            let mut spec = ec2_tag_spec(ResourceType::Subnet, o, &r.id.name);
            // Lets Kubernetes put internet-facing load balancers here (EKS docs, "Subnet
            // requirements and considerations").
            spec.tags.get_or_insert_with(Vec::new).push(
                Tag::builder()
                    .key("kubernetes.io/role/elb")
                    .value("1")
                    .build(),
            );
            let s = ec2
                .create_subnet()
                .vpc_id(vpc)
                .cidr_block(spec_str(&r.spec, "cidr"))
                .availability_zone(zone)
                .tag_specifications(spec)
                .send()
                .await
                .map_err(|e| p.err(AwsError::from_sdk("CreateSubnet", e)))?;
            let id = s
                .subnet()
                .and_then(|s| s.subnet_id())
                .ok_or_else(|| failed("CreateSubnet returned no id"))?
                .to_string();
            (id, false)
        }
    };
    // Nodes of managed node groups in public subnets need public IPs (EKS docs, "Managed node
    // groups": MapPublicIpOnLaunch must be true since April 2020).
    if !public {
        ec2.modify_subnet_attribute()
            .subnet_id(id)
            .map_public_ip_on_launch(AttributeBooleanValue::builder().value(true).build())
            .send()
            .await
            .map_err(|e| p.err(AwsError::from_sdk("ModifySubnetAttribute", e)))?;
    }
    Ok(())
}

async fn ensure_igw(p: &AwsProvider, o: &Ownership, r: &Resource) -> Result<(), ProviderError> {
    let ec2 = &p.clients().await?.ec2;
    let vpc = vpc_id(p, o).await?;
    let (id, attached) = match by_name(
        observe::internet_gateways(p, o, &BTreeMap::new()).await?,
        &r.id.name,
    ) {
        Some(f) => {
            let attached = f
                .spec
                .get("vpc_ids")
                .and_then(Json::as_array)
                .is_some_and(|a| a.iter().any(|v| v.as_str() == Some(vpc.as_str())));
            (f.cloud_id, attached)
        }
        None => {
            let g = ec2
                .create_internet_gateway()
                .tag_specifications(ec2_tag_spec(ResourceType::InternetGateway, o, &r.id.name))
                .send()
                .await
                .map_err(|e| p.err(AwsError::from_sdk("CreateInternetGateway", e)))?;
            let id = g
                .internet_gateway()
                .and_then(|g| g.internet_gateway_id())
                .ok_or_else(|| failed("CreateInternetGateway returned no id"))?
                .to_string();
            (id, false)
        }
    };
    if !attached {
        ec2.attach_internet_gateway()
            .internet_gateway_id(id)
            .vpc_id(vpc)
            .send()
            .await
            .map_err(|e| p.err(AwsError::from_sdk("AttachInternetGateway", e)))?;
    }
    Ok(())
}

async fn ensure_route_table(
    p: &AwsProvider,
    o: &Ownership,
    r: &Resource,
) -> Result<(), ProviderError> {
    let ec2 = &p.clients().await?.ec2;
    let subnets = observe::subnets(p, o).await?;
    let subnet_names: BTreeMap<String, String> = subnets
        .iter()
        .map(|f| (f.cloud_id.clone(), f.id.name.clone()))
        .collect();
    let (id, have) = match by_name(
        observe::route_tables(p, o, &subnet_names).await?,
        &r.id.name,
    ) {
        Some(f) => (f.cloud_id, Some(f.spec)),
        None => {
            let vpc = vpc_id(p, o).await?;
            let t = ec2
                .create_route_table()
                .vpc_id(vpc)
                .tag_specifications(ec2_tag_spec(ResourceType::RouteTable, o, &r.id.name))
                .send()
                .await
                .map_err(|e| p.err(AwsError::from_sdk("CreateRouteTable", e)))?;
            let id = t
                .route_table()
                .and_then(|t| t.route_table_id())
                .ok_or_else(|| failed("CreateRouteTable returned no id"))?
                .to_string();
            (id, None)
        }
    };
    let has_route = have
        .as_ref()
        .and_then(|h| h.get("default_route"))
        .is_some_and(|v| v.as_str() == Some("internet_gateway"));
    if !has_route {
        let igw = by_name(
            observe::internet_gateways(p, o, &BTreeMap::new()).await?,
            &o.prefix(),
        );
        let igw = need("the internet gateway", igw).await?.cloud_id;
        if let Err(e) = ec2
            .create_route()
            .route_table_id(&id)
            .destination_cidr_block("0.0.0.0/0")
            .gateway_id(igw)
            .send()
            .await
        {
            let e = AwsError::from_sdk("CreateRoute", e);
            if !e.is_already_exists() {
                return Err(p.err(e));
            }
        }
    }
    let associated: Vec<String> = have
        .as_ref()
        .and_then(|h| h.get("subnets"))
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let wanted: Vec<&str> = r
        .spec
        .get("subnets")
        .and_then(Json::as_array)
        .map(|a| a.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default();
    for name in wanted {
        if associated.iter().any(|a| a == name) {
            continue;
        }
        let subnet = subnets.iter().find(|s| s.id.name == name);
        let subnet = need(&format!("subnet {name}"), subnet).await?;
        if let Err(e) = ec2
            .associate_route_table()
            .route_table_id(&id)
            .subnet_id(&subnet.cloud_id)
            .send()
            .await
        {
            let e = AwsError::from_sdk("AssociateRouteTable", e);
            if !e.is_already_exists() {
                return Err(p.err(e));
            }
        }
    }
    Ok(())
}

async fn ensure_security_group(
    p: &AwsProvider,
    o: &Ownership,
    r: &Resource,
) -> Result<(), ProviderError> {
    let ec2 = &p.clients().await?.ec2;
    let (id, from_self) = match by_name(observe::security_groups(p, o).await?, &r.id.name) {
        Some(f) => (
            f.cloud_id,
            f.spec.get("ingress_from_self").and_then(Json::as_bool) == Some(true),
        ),
        None => {
            let vpc = vpc_id(p, o).await?;
            let g = ec2
                .create_security_group()
                .group_name(&r.id.name)
                .description(format!("qhub-rs {}: cluster, nodes and EFS", r.id.name))
                .vpc_id(vpc)
                .tag_specifications(ec2_tag_spec(ResourceType::SecurityGroup, o, &r.id.name))
                .send()
                .await
                .map_err(|e| p.err(AwsError::from_sdk("CreateSecurityGroup", e)))?;
            let id = g
                .group_id()
                .ok_or_else(|| failed("CreateSecurityGroup returned no id"))?
                .to_string();
            (id, false)
        }
    };
    if !from_self {
        // Everything inside the group talks to everything else (nodes, control plane ENIs, NFS).
        let perm = IpPermission::builder()
            .ip_protocol("-1")
            .user_id_group_pairs(UserIdGroupPair::builder().group_id(&id).build())
            .build();
        if let Err(e) = ec2
            .authorize_security_group_ingress()
            .group_id(&id)
            .ip_permissions(perm)
            .send()
            .await
        {
            let e = AwsError::from_sdk("AuthorizeSecurityGroupIngress", e);
            if e.code.as_deref() != Some("InvalidPermission.Duplicate") {
                return Err(p.err(e));
            }
        }
    }
    Ok(())
}

fn trust_policy(service: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": service},
            "Action": "sts:AssumeRole",
        }],
    })
    .to_string()
}

async fn ensure_role(p: &AwsProvider, o: &Ownership, r: &Resource) -> Result<(), ProviderError> {
    let iam = &p.clients().await?.iam;
    let have = by_name(observe::roles(p, o).await?, &r.id.name);
    let attached: Vec<String> = match &have {
        Some(f) => f
            .spec
            .get("policies")
            .and_then(Json::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        None => {
            let created = iam
                .create_role()
                .role_name(&r.id.name)
                .path(IAM_PATH)
                .assume_role_policy_document(trust_policy(spec_str(&r.spec, "service")))
                .set_tags(Some(
                    o.tags()
                        .into_iter()
                        .map(|(k, v)| {
                            aws_sdk_iam::types::Tag::builder()
                                .key(k)
                                .value(v)
                                .build()
                                .map_err(|e| failed(e.to_string()))
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ))
                .send()
                .await;
            if let Err(e) = created {
                let e = AwsError::from_sdk("CreateRole", e);
                // Same name, not ours (or not found by our path and tags): never adopt it.
                return Err(if e.is_already_exists() {
                    failed(format!(
                        "IAM role {} exists and is not owned by this deployment",
                        r.id.name
                    ))
                } else {
                    p.err(e)
                });
            }
            Vec::new()
        }
    };
    let wanted: Vec<&str> = r
        .spec
        .get("policies")
        .and_then(Json::as_array)
        .map(|a| a.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default();
    for policy in &wanted {
        if attached.iter().any(|a| a == policy) {
            continue;
        }
        iam.attach_role_policy()
            .role_name(&r.id.name)
            .policy_arn(desired::policy_arn(policy))
            .send()
            .await
            .map_err(|e| p.err(AwsError::from_sdk("AttachRolePolicy", e)))?;
    }
    for policy in attached.iter().filter(|a| !wanted.contains(&a.as_str())) {
        iam.detach_role_policy()
            .role_name(&r.id.name)
            .policy_arn(desired::policy_arn(policy))
            .send()
            .await
            .map_err(|e| p.err(AwsError::from_sdk("DetachRolePolicy", e)))?;
    }
    Ok(())
}

async fn role_arn(p: &AwsProvider, name: &str) -> Result<String, ProviderError> {
    let r = p
        .clients()
        .await?
        .iam
        .get_role()
        .role_name(name)
        .send()
        .await
        .map_err(|e| {
            let e = AwsError::from_sdk("GetRole", e);
            if e.is_not_found() {
                ProviderError::Retryable {
                    message: format!("IAM role {name} does not exist (yet)"),
                    retry_after: None,
                }
            } else {
                p.err(e)
            }
        })?;
    Ok(r.role().map(|r| r.arn().to_string()).unwrap_or_default())
}

/// Waits until `check` says the operation is done (`Some`), polling at the provider's interval.
/// The engine bounds the whole apply with its deadline.
async fn wait_for<F, Fut>(p: &AwsProvider, what: &str, mut check: F) -> Result<(), ProviderError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<()>, ProviderError>>,
{
    loop {
        if check().await?.is_some() {
            return Ok(());
        }
        tracing::debug!(what, "waiting");
        tokio::time::sleep(p.poll()).await;
    }
}

async fn ensure_cluster(p: &AwsProvider, o: &Ownership, r: &Resource) -> Result<(), ProviderError> {
    let eks = &p.clients().await?.eks;
    let existing = observe::clusters(p, o, &BTreeMap::new(), &BTreeMap::new())
        .await?
        .into_iter()
        .find(|f| f.id.kind == EKS_CLUSTER && f.id.name == r.id.name);
    let version = spec_str(&r.spec, "kubernetes_version").to_string();
    match existing {
        None => {
            let subnets = observe::subnets(p, o).await?;
            let wanted: Vec<&str> = r
                .spec
                .get("subnets")
                .and_then(Json::as_array)
                .map(|a| a.iter().filter_map(Json::as_str).collect())
                .unwrap_or_default();
            let mut subnet_ids = Vec::new();
            for name in wanted {
                let s = subnets.iter().find(|s| s.id.name == name);
                subnet_ids.push(need(&format!("subnet {name}"), s).await?.cloud_id.clone());
            }
            let sg = by_name(observe::security_groups(p, o).await?, &o.prefix());
            let sg = need("the security group", sg).await?.cloud_id;
            let role = role_arn(p, spec_str(&r.spec, "role")).await?;
            let created = eks
                .create_cluster()
                .name(&r.id.name)
                .version(&version)
                .role_arn(role)
                .resources_vpc_config(
                    VpcConfigRequest::builder()
                        .set_subnet_ids(Some(subnet_ids))
                        .security_group_ids(sg)
                        .build(),
                )
                .set_tags(Some(o.tags().into_iter().collect()))
                // Makes a retried create after a lost response idempotent on AWS's side too.
                .client_request_token(format!("qhub-{}", r.id.name))
                .send()
                .await;
            if let Err(e) = created {
                let e = AwsError::from_sdk("CreateCluster", e);
                return Err(if e.is_already_exists() {
                    failed(format!(
                        "EKS cluster {} exists and is not owned by this deployment",
                        r.id.name
                    ))
                } else {
                    p.err(e)
                });
            }
        }
        Some(f) => {
            if f.spec.get("kubernetes_version").and_then(Json::as_str) != Some(version.as_str())
                && f.state == "active"
            {
                eks.update_cluster_version()
                    .name(&r.id.name)
                    .version(&version)
                    .send()
                    .await
                    .map_err(|e| p.err(AwsError::from_sdk("UpdateClusterVersion", e)))?;
            }
        }
    }
    let name = r.id.name.as_str();
    wait_for(p, "cluster to become active", move || async move {
        let c = eks
            .describe_cluster()
            .name(name)
            .send()
            .await
            .map_err(|e| p.err(AwsError::from_sdk("DescribeCluster", e)))?;
        match c.cluster().and_then(|c| c.status()).map(|s| s.as_str()) {
            Some("ACTIVE") => Ok(Some(())),
            Some("FAILED") => Err(failed(format!("EKS cluster {name} failed"))),
            _ => Ok(None),
        }
    })
    .await
}

fn string_map(v: Option<&Json>) -> BTreeMap<String, String> {
    v.and_then(Json::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn taints(v: Option<&Json>) -> Vec<Taint> {
    v.and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Json::as_str)
                .filter_map(desired::parse_taint)
                .map(|(k, v, e)| {
                    Taint::builder()
                        .key(k)
                        .value(v)
                        .effect(TaintEffect::from(desired::eks_effect(&e)))
                        .build()
                })
                .collect()
        })
        .unwrap_or_default()
}

fn u(v: &Json, key: &str) -> i32 {
    v.get(key)
        .and_then(Json::as_i64)
        .and_then(|n| i32::try_from(n).ok())
        .unwrap_or(0)
}

async fn ensure_node_group(
    p: &AwsProvider,
    o: &Ownership,
    r: &Resource,
) -> Result<(), ProviderError> {
    let eks = &p.clients().await?.eks;
    let cluster = o.prefix();
    let existing = by_name(observe::node_groups(p, o, &cluster).await?, &r.id.name);
    let spec = &r.spec;
    let (min, max) = (u(spec, "min_nodes"), u(spec, "max_nodes"));
    let mut tags: BTreeMap<String, String> = o.tags();
    tags.extend(string_map(spec.get("autoscaler_tags")));
    match existing {
        None => {
            let subnets: Vec<String> = observe::subnets(p, o)
                .await?
                .into_iter()
                .map(|s| s.cloud_id)
                .collect();
            if subnets.is_empty() {
                return Err(need::<()>("the subnets", None).await.unwrap_err());
            }
            let role = role_arn(p, spec_str(spec, "node_role")).await?;
            let created = eks
                .create_nodegroup()
                .cluster_name(&cluster)
                .nodegroup_name(&r.id.name)
                .node_role(role)
                .set_subnets(Some(subnets))
                .instance_types(spec_str(spec, "instance_type"))
                .ami_type(AmiTypes::from(spec_str(spec, "ami_type")))
                .disk_size(u(spec, "disk_size"))
                .scaling_config(
                    NodegroupScalingConfig::builder()
                        .min_size(min)
                        .max_size(max)
                        .desired_size(min)
                        .build(),
                )
                .set_labels(Some(string_map(spec.get("labels")).into_iter().collect()))
                .set_taints(Some(taints(spec.get("taints"))))
                .set_tags(Some(tags.into_iter().collect()))
                .client_request_token(format!("qhub-{}", r.id.name))
                .send()
                .await;
            if let Err(e) = created {
                let e = AwsError::from_sdk("CreateNodegroup", e);
                return Err(if e.is_already_exists() {
                    failed(format!(
                        "node group {} exists and is not owned by this deployment",
                        r.id.name
                    ))
                } else {
                    p.err(e)
                });
            }
        }
        Some(f) => {
            let have = &f.spec;
            let mut update = eks
                .update_nodegroup_config()
                .cluster_name(&cluster)
                .nodegroup_name(&r.id.name);
            let mut changed = false;
            if have.get("min_nodes") != spec.get("min_nodes")
                || have.get("max_nodes") != spec.get("max_nodes")
            {
                // Keep the autoscaler's current size, inside the new bounds.
                let current = u(have, "desired_nodes");
                update = update.scaling_config(
                    NodegroupScalingConfig::builder()
                        .min_size(min)
                        .max_size(max)
                        .desired_size(current.clamp(min, max.max(min)))
                        .build(),
                );
                changed = true;
            }
            if have.get("labels") != spec.get("labels") {
                let want = string_map(spec.get("labels"));
                let had = string_map(have.get("labels"));
                let remove: Vec<String> = had
                    .keys()
                    .filter(|k| !want.contains_key(*k))
                    .cloned()
                    .collect();
                update = update.labels(
                    UpdateLabelsPayload::builder()
                        .set_add_or_update_labels(Some(want.into_iter().collect()))
                        .set_remove_labels((!remove.is_empty()).then_some(remove))
                        .build(),
                );
                changed = true;
            }
            if have.get("taints") != spec.get("taints") {
                let want = taints(spec.get("taints"));
                let had = taints(have.get("taints"));
                let remove: Vec<Taint> = had.into_iter().filter(|t| !want.contains(t)).collect();
                update = update.taints(
                    UpdateTaintsPayload::builder()
                        .set_add_or_update_taints((!want.is_empty()).then_some(want))
                        .set_remove_taints((!remove.is_empty()).then_some(remove))
                        .build(),
                );
                changed = true;
            }
            if changed {
                update
                    .send()
                    .await
                    .map_err(|e| p.err(AwsError::from_sdk("UpdateNodegroupConfig", e)))?;
            }
            let had = string_map(have.get("autoscaler_tags"));
            let want = string_map(spec.get("autoscaler_tags"));
            if had != want {
                let arn = eks
                    .describe_nodegroup()
                    .cluster_name(&cluster)
                    .nodegroup_name(&r.id.name)
                    .send()
                    .await
                    .map_err(|e| p.err(AwsError::from_sdk("DescribeNodegroup", e)))?
                    .nodegroup()
                    .and_then(|g| g.nodegroup_arn())
                    .unwrap_or_default()
                    .to_string();
                let stale: Vec<String> = had
                    .keys()
                    .filter(|k| !want.contains_key(*k))
                    .cloned()
                    .collect();
                if !stale.is_empty() {
                    eks.untag_resource()
                        .resource_arn(&arn)
                        .set_tag_keys(Some(stale))
                        .send()
                        .await
                        .map_err(|e| p.err(AwsError::from_sdk("UntagResource", e)))?;
                }
                eks.tag_resource()
                    .resource_arn(&arn)
                    .set_tags(Some(want.into_iter().collect()))
                    .send()
                    .await
                    .map_err(|e| p.err(AwsError::from_sdk("TagResource", e)))?;
            }
        }
    }
    let name = r.id.name.as_str();
    let cluster = cluster.as_str();
    wait_for(p, "node group to become active", move || async move {
        let g = eks
            .describe_nodegroup()
            .cluster_name(cluster)
            .nodegroup_name(name)
            .send()
            .await
            .map_err(|e| p.err(AwsError::from_sdk("DescribeNodegroup", e)))?;
        match g.nodegroup().and_then(|g| g.status()).map(|s| s.as_str()) {
            Some("ACTIVE") => Ok(Some(())),
            Some("CREATE_FAILED" | "DEGRADED") => {
                Err(failed(format!("node group {name} is not healthy")))
            }
            _ => Ok(None),
        }
    })
    .await
}

async fn ensure_efs(p: &AwsProvider, o: &Ownership, r: &Resource) -> Result<(), ProviderError> {
    let efs = &p.clients().await?.efs;
    let found = observe::file_systems(p, o, &BTreeMap::new(), &BTreeMap::new()).await?;
    let id = match found
        .into_iter()
        .find(|f| f.id.kind == EFS && f.id.name == r.id.name)
    {
        Some(f) => f.cloud_id,
        None => {
            // The creation token makes CreateFileSystem idempotent: a retry after a lost
            // response returns FileSystemAlreadyExists with the same file system.
            let created = efs
                .create_file_system()
                .creation_token(&r.id.name)
                .encrypted(true)
                .performance_mode(aws_sdk_efs::types::PerformanceMode::GeneralPurpose)
                .set_tags(Some(
                    tags_with_name(o, &r.id.name)
                        .into_iter()
                        .map(|(k, v)| {
                            aws_sdk_efs::types::Tag::builder()
                                .key(k)
                                .value(v)
                                .build()
                                .map_err(|e| failed(e.to_string()))
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ))
                .send()
                .await;
            match created {
                Ok(fs) => fs.file_system_id().to_string(),
                Err(e) => {
                    let e = AwsError::from_sdk("CreateFileSystem", e);
                    return Err(if e.is_already_exists() {
                        failed(format!(
                            "an EFS file system with creation token {} exists and is not owned by this deployment",
                            r.id.name
                        ))
                    } else {
                        p.err(e)
                    });
                }
            }
        }
    };
    let id = id.as_str();
    wait_for(p, "file system to become available", move || async move {
        let r = efs
            .describe_file_systems()
            .file_system_id(id)
            .send()
            .await
            .map_err(|e| p.err(AwsError::from_sdk("DescribeFileSystems", e)))?;
        Ok(r.file_systems()
            .first()
            .filter(|f| f.life_cycle_state().as_str() == "available")
            .map(|_| ()))
    })
    .await
}

async fn ensure_mount_target(
    p: &AwsProvider,
    o: &Ownership,
    r: &Resource,
) -> Result<(), ProviderError> {
    let efs = &p.clients().await?.efs;
    let subnets = observe::subnets(p, o).await?;
    let sgs = observe::security_groups(p, o).await?;
    let subnet_names = subnets
        .iter()
        .map(|f| (f.cloud_id.clone(), f.id.name.clone()))
        .collect();
    let sg_names = sgs
        .iter()
        .map(|f| (f.cloud_id.clone(), f.id.name.clone()))
        .collect();
    let found = observe::file_systems(p, o, &subnet_names, &sg_names).await?;
    if found
        .iter()
        .any(|f| f.id.kind == EFS_MOUNT_TARGET && f.id.name == r.id.name)
    {
        return Ok(());
    }
    let names = Names::new(o.prefix());
    let fs = found
        .into_iter()
        .find(|f| f.id.kind == EFS && f.id.name == names.efs());
    let fs = need("the EFS file system", fs).await?.cloud_id;
    let subnet_name = spec_str(&r.spec, "subnet");
    let subnet = subnets.iter().find(|s| s.id.name == subnet_name);
    let subnet = need(&format!("subnet {subnet_name}"), subnet).await?;
    let sg = sgs
        .iter()
        .find(|s| s.id.name == spec_str(&r.spec, "security_group"));
    let sg = need("the security group", sg).await?;
    let created = efs
        .create_mount_target()
        .file_system_id(&fs)
        .subnet_id(&subnet.cloud_id)
        .security_groups(&sg.cloud_id)
        .send()
        .await;
    if let Err(e) = created {
        let e = AwsError::from_sdk("CreateMountTarget", e);
        // One mount target per AZ: a lost response's mount target is already there.
        if e.code.as_deref() != Some("MountTargetConflict") {
            return Err(p.err(e));
        }
    }
    Ok(())
}

// ---- deletes ----

async fn delete(p: &AwsProvider, change: &Change, ctx: &ApplyContext) -> Result<(), ProviderError> {
    let o = &ctx.ownership;
    // Re-read the resource by tags: the observed cloud id may be stale, and what is gone is done.
    let kind = change.id.kind.as_str();
    let name = change.id.name.as_str();
    let c = p.clients().await?;
    let tolerate = |e: AwsError| -> Result<(), ProviderError> {
        if e.is_not_found() {
            Ok(())
        } else {
            Err(p.err(e))
        }
    };
    match kind {
        VPC => {
            if let Some(f) = by_name(observe::vpcs(p, o).await?, name)
                && let Err(e) = c.ec2.delete_vpc().vpc_id(f.cloud_id).send().await
            {
                tolerate(AwsError::from_sdk("DeleteVpc", e))?;
            }
        }
        SUBNET => {
            if let Some(f) = by_name(observe::subnets(p, o).await?, name)
                && let Err(e) = c.ec2.delete_subnet().subnet_id(f.cloud_id).send().await
            {
                tolerate(AwsError::from_sdk("DeleteSubnet", e))?;
            }
        }
        INTERNET_GATEWAY => {
            if let Some(f) = by_name(
                observe::internet_gateways(p, o, &BTreeMap::new()).await?,
                name,
            ) {
                for vpc in f
                    .spec
                    .get("vpc_ids")
                    .and_then(Json::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Json::as_str)
                {
                    if let Err(e) = c
                        .ec2
                        .detach_internet_gateway()
                        .internet_gateway_id(&f.cloud_id)
                        .vpc_id(vpc)
                        .send()
                        .await
                    {
                        let e = AwsError::from_sdk("DetachInternetGateway", e);
                        if e.code.as_deref() != Some("Gateway.NotAttached") {
                            tolerate(e)?;
                        }
                    }
                }
                if let Err(e) = c
                    .ec2
                    .delete_internet_gateway()
                    .internet_gateway_id(&f.cloud_id)
                    .send()
                    .await
                {
                    tolerate(AwsError::from_sdk("DeleteInternetGateway", e))?;
                }
            }
        }
        ROUTE_TABLE => {
            let r = c
                .ec2
                .describe_route_tables()
                .set_filters(Some(observe::owner_filters(o, Some(name))))
                .send()
                .await
                .map_err(|e| p.err(AwsError::from_sdk("DescribeRouteTables", e)))?;
            for t in r.route_tables() {
                for a in t.associations() {
                    if a.main() == Some(true) {
                        continue;
                    }
                    if let Some(id) = a.route_table_association_id()
                        && let Err(e) = c
                            .ec2
                            .disassociate_route_table()
                            .association_id(id)
                            .send()
                            .await
                    {
                        tolerate(AwsError::from_sdk("DisassociateRouteTable", e))?;
                    }
                }
                if let Some(id) = t.route_table_id()
                    && let Err(e) = c.ec2.delete_route_table().route_table_id(id).send().await
                {
                    tolerate(AwsError::from_sdk("DeleteRouteTable", e))?;
                }
            }
        }
        SECURITY_GROUP => {
            if let Some(f) = by_name(observe::security_groups(p, o).await?, name)
                && let Err(e) = c
                    .ec2
                    .delete_security_group()
                    .group_id(f.cloud_id)
                    .send()
                    .await
            {
                tolerate(AwsError::from_sdk("DeleteSecurityGroup", e))?;
            }
        }
        IAM_ROLE => {
            if let Some(f) = by_name(observe::roles(p, o).await?, name) {
                for policy in f
                    .spec
                    .get("policies")
                    .and_then(Json::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Json::as_str)
                {
                    if let Err(e) = c
                        .iam
                        .detach_role_policy()
                        .role_name(name)
                        .policy_arn(desired::policy_arn(policy))
                        .send()
                        .await
                    {
                        tolerate(AwsError::from_sdk("DetachRolePolicy", e))?;
                    }
                }
                if let Err(e) = c.iam.delete_role().role_name(name).send().await {
                    tolerate(AwsError::from_sdk("DeleteRole", e))?;
                }
            }
        }
        EKS_CLUSTER => {
            let owned = observe::clusters(p, o, &BTreeMap::new(), &BTreeMap::new())
                .await?
                .into_iter()
                .any(|f| f.id.kind == EKS_CLUSTER && f.id.name == name);
            if owned {
                if let Err(e) = c.eks.delete_cluster().name(name).send().await {
                    tolerate(AwsError::from_sdk("DeleteCluster", e))?;
                }
                wait_for(p, "cluster to be deleted", move || async move {
                    match c.eks.describe_cluster().name(name).send().await {
                        Ok(_) => Ok(None),
                        Err(e) => {
                            let e = AwsError::from_sdk("DescribeCluster", e);
                            if e.is_not_found() {
                                Ok(Some(()))
                            } else {
                                Err(p.err(e))
                            }
                        }
                    }
                })
                .await?;
            }
        }
        NODE_GROUP => {
            let cluster = o.prefix();
            let cluster = cluster.as_str();
            if by_name(observe::node_groups(p, o, cluster).await?, name).is_some() {
                if let Err(e) = c
                    .eks
                    .delete_nodegroup()
                    .cluster_name(cluster)
                    .nodegroup_name(name)
                    .send()
                    .await
                {
                    tolerate(AwsError::from_sdk("DeleteNodegroup", e))?;
                }
                wait_for(p, "node group to be deleted", move || async move {
                    match c
                        .eks
                        .describe_nodegroup()
                        .cluster_name(cluster)
                        .nodegroup_name(name)
                        .send()
                        .await
                    {
                        Ok(_) => Ok(None),
                        Err(e) => {
                            let e = AwsError::from_sdk("DescribeNodegroup", e);
                            if e.is_not_found() {
                                Ok(Some(()))
                            } else {
                                Err(p.err(e))
                            }
                        }
                    }
                })
                .await?;
            }
        }
        EFS => {
            let found = observe::file_systems(p, o, &BTreeMap::new(), &BTreeMap::new()).await?;
            if let Some(f) = found.iter().find(|f| f.id.kind == EFS && f.id.name == name)
                && let Err(e) = c
                    .efs
                    .delete_file_system()
                    .file_system_id(&f.cloud_id)
                    .send()
                    .await
            {
                tolerate(AwsError::from_sdk("DeleteFileSystem", e))?;
            }
        }
        EFS_MOUNT_TARGET => {
            let subnets = observe::subnets(p, o).await?;
            let subnet_names = subnets
                .iter()
                .map(|f| (f.cloud_id.clone(), f.id.name.clone()))
                .collect();
            let found = observe::file_systems(p, o, &subnet_names, &BTreeMap::new()).await?;
            // The observed cloud id is also accepted: a mount target in a subnet that is no
            // longer ours is named by its id.
            let target = found.iter().find(|f| {
                f.id.kind == EFS_MOUNT_TARGET
                    && (f.id.name == name
                        || change.observed.as_ref().and_then(|x| x.cloud_id.as_deref())
                            == Some(f.cloud_id.as_str()))
            });
            if let Some(f) = target
                && let Err(e) = c
                    .efs
                    .delete_mount_target()
                    .mount_target_id(&f.cloud_id)
                    .send()
                    .await
            {
                tolerate(AwsError::from_sdk("DeleteMountTarget", e))?;
            }
        }
        other => {
            return Err(ProviderError::NotSupported(format!(
                "unknown AWS resource kind `{other}`"
            )));
        }
    }
    Ok(())
}
