//! EKS: the cluster and its managed node groups.

use std::collections::BTreeMap;

use aws_sdk_eks::types::{
    AmiTypes, AuthenticationMode, CreateAccessConfigRequest, NodegroupScalingConfig, SupportType,
    Taint, TaintEffect, UpdateAccessConfigRequest, UpdateLabelsPayload, UpdateTaintsPayload,
    UpgradePolicyRequest, VpcConfigRequest,
};
use qhub_core::plan::Resource;
use qhub_core::provider::{Ownership, ProviderError};

use super::iam::role_arn;
use super::sweep;
use super::token::request_token;
use super::{Sent, by_name, failed, need, spec_of, wait_for, wait_gone};
use crate::AwsProvider;
use crate::desired::{self, EKS_ADDON, EKS_CLUSTER};
use crate::observe;
use crate::spec::{
    ClusterObserved, ClusterSpec, NodeGroupObserved, NodeGroupSpec, PodIdentityObserved,
    PodIdentitySpec,
};

fn taints(v: &[String]) -> Vec<Taint> {
    v.iter()
        .filter_map(|t| desired::parse_taint(t))
        .map(|(k, v, e)| {
            Taint::builder()
                .key(k)
                .value(v)
                .effect(TaintEffect::from(desired::eks_effect(&e)))
                .build()
        })
        .collect()
}

/// A node count for the EKS API (an `i32`; the config's counts are far below its limit).
fn count(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

async fn owned_cluster(
    p: &AwsProvider,
    o: &Ownership,
    name: &str,
) -> Result<Option<observe::Found>, ProviderError> {
    Ok(observe::clusters(p, o, &BTreeMap::new(), &BTreeMap::new())
        .await?
        .into_iter()
        .find(|f| f.id.kind == EKS_CLUSTER && f.id.name == name))
}

/// When cluster `name` was created (seconds since the epoch, with fraction), which tells one
/// incarnation of a cluster from another of the same name; `None` when it does not say.
async fn cluster_created_at(p: &AwsProvider, name: &str) -> Result<Option<f64>, ProviderError> {
    let c = p
        .clients()
        .await?
        .eks
        .describe_cluster()
        .name(name)
        .send()
        .await
        .sent(p, "DescribeCluster")?;
    Ok(c.cluster()
        .and_then(|c| c.created_at())
        .map(|t| t.as_secs_f64()))
}

pub(super) async fn ensure_cluster(
    p: &AwsProvider,
    o: &Ownership,
    r: &Resource,
) -> Result<(), ProviderError> {
    let eks = &p.clients().await?.eks;
    let want: ClusterSpec = spec_of(r)?;
    let version = want.kubernetes_version.as_str();
    let support = want.support_type.as_str();
    let policy = || {
        UpgradePolicyRequest::builder()
            .support_type(SupportType::from(support))
            .build()
    };
    match owned_cluster(p, o, &r.id.name).await? {
        None => {
            let subnets = observe::subnets(p, o).await?;
            let mut subnet_ids = Vec::new();
            for name in &want.subnets {
                let s = subnets.iter().find(|s| s.id.name == *name);
                subnet_ids.push(need(&format!("subnet {name}"), s)?.cloud_id.clone());
            }
            let sg = by_name(observe::security_groups(p, o).await?, &o.prefix());
            let sg = need("the security group", sg)?.cloud_id;
            let role = role_arn(p, &want.role).await?;
            let tags = o.tags();
            // The request's content names the network's ids: a re-deploy after a destroy (a
            // new network) carries another token, a retry of this request the same one.
            let token = request_token(
                o,
                p.region(),
                "CreateCluster",
                &serde_json::json!({
                    "name": r.id.name,
                    "version": version,
                    "role_arn": role,
                    "subnet_ids": subnet_ids,
                    "security_group_ids": [sg],
                    "support_type": support,
                    "authentication_mode": desired::AUTHENTICATION_MODE,
                    "tags": tags,
                }),
            );
            eks.create_cluster()
                .name(&r.id.name)
                .version(version)
                .role_arn(role)
                .resources_vpc_config(
                    VpcConfigRequest::builder()
                        .set_subnet_ids(Some(subnet_ids))
                        .security_group_ids(sg)
                        .build(),
                )
                .set_tags(Some(tags.into_iter().collect()))
                .upgrade_policy(policy())
                // Access entries for `cluster_admins`, and the creator's admin entry, which
                // EKS makes itself (EKS API reference, CreateAccessConfigRequest:
                // `bootstrapClusterCreatorAdminPermissions`, default true).
                .access_config(
                    CreateAccessConfigRequest::builder()
                        .authentication_mode(AuthenticationMode::from(desired::AUTHENTICATION_MODE))
                        .bootstrap_cluster_creator_admin_permissions(true)
                        .build(),
                )
                // Makes a retried create after a lost response idempotent on AWS's side too.
                .client_request_token(token)
                .send()
                .await
                .created(p, "CreateCluster", &format!("EKS cluster {}", r.id.name))?;
        }
        Some(f) => {
            let have: ClusterObserved = f.spec_as()?;
            if want.access_entries && !have.access_entries && f.state == "active" {
                // One-way (the plan says so): CONFIG_MAP → API_AND_CONFIG_MAP, which keeps the
                // aws-auth ConfigMap working. EKS migrates the node groups' ConfigMap lines to
                // access entries itself (aws/containers-roadmap#185).
                tracing::info!(cluster = %r.id.name, "moving the cluster's authentication mode to {}", desired::AUTHENTICATION_MODE);
                eks.update_cluster_config()
                    .name(&r.id.name)
                    .access_config(
                        UpdateAccessConfigRequest::builder()
                            .authentication_mode(AuthenticationMode::from(
                                desired::AUTHENTICATION_MODE,
                            ))
                            .build(),
                    )
                    .send()
                    .await
                    .sent(p, "UpdateClusterConfig")?;
                wait_active(p, &r.id.name).await?;
            }
            if have.support_type.as_deref() != Some(support) && f.state == "active" {
                // One update at a time per cluster: the policy first, the version (if it
                // changes too) once the cluster is active again.
                eks.update_cluster_config()
                    .name(&r.id.name)
                    .upgrade_policy(policy())
                    .send()
                    .await
                    .sent(p, "UpdateClusterConfig")?;
                wait_active(p, &r.id.name).await?;
            }
            match have.kubernetes_version.as_deref() {
                Some(from) if from != version && f.state == "active" => {
                    upgrade(p, o, &r.id.name, from, version).await?;
                }
                None if f.state == "active" => {
                    return Err(failed(format!(
                        "EKS cluster {}: DescribeCluster says no Kubernetes version, so it cannot be moved to {version}",
                        r.id.name
                    )));
                }
                _ => {}
            }
        }
    }
    wait_active(p, &r.id.name).await
}

/// Moves cluster `name` from Kubernetes `from` to `to` the way EKS allows (EKS user guide,
/// "Update existing cluster to new Kubernetes version"): one minor version at a time, each step
/// only once every managed node group is at the control plane's version (UpdateNodegroupVersion
/// first), and never down. The node groups follow to `to` at the end. A step already taken (a
/// re-run after an interruption) starts from what the cluster says.
async fn upgrade(
    p: &AwsProvider,
    o: &Ownership,
    name: &str,
    from: &str,
    to: &str,
) -> Result<(), ProviderError> {
    let (Some(have), Some(want)) = (
        desired::kubernetes_minor(from),
        desired::kubernetes_minor(to),
    ) else {
        return Err(failed(format!(
            "EKS cluster {name}: cannot move from Kubernetes {from} to {to}"
        )));
    };
    if want < have {
        return Err(ProviderError::Fatal(format!(
            "amazon_web_services.kubernetes_version: EKS cannot downgrade cluster {name} from {from} to {to}; set it back to `{from}` (or higher)"
        )));
    }
    let eks = &p.clients().await?.eks;
    for step in have + 1..=want {
        node_groups_to(p, o, name, &format!("1.{}", step - 1), true).await?;
        let v = format!("1.{step}");
        tracing::info!(cluster = name, version = %v, "updating the EKS control plane one minor version");
        eks.update_cluster_version()
            .name(name)
            .version(&v)
            .send()
            .await
            .sent(p, "UpdateClusterVersion")?;
        wait_active(p, name).await?;
    }
    node_groups_to(p, o, name, to, false).await
}

/// Brings every node group of cluster `cluster` to Kubernetes `version` (UpdateNodegroupVersion,
/// then waits until the group is ACTIVE at it). A group whose AMI type has no AMI at that
/// version (`AL2_*` from 1.33) is left alone: its new AMI type makes the plan replace it once
/// the control plane is there. Before a further control-plane step (`before_step`) such a
/// group would block it, so that is refused, saying to stop at 1.33 first.
async fn node_groups_to(
    p: &AwsProvider,
    o: &Ownership,
    cluster: &str,
    version: &str,
    before_step: bool,
) -> Result<(), ProviderError> {
    let eks = &p.clients().await?.eks;
    let al2_ends = desired::kubernetes_minor(version).is_some_and(|m| m > desired::LAST_AL2_MINOR);
    for g in observe::node_groups(p, o, cluster, &BTreeMap::new()).await? {
        let have: NodeGroupObserved = g.spec_as()?;
        if have.version.as_deref() == Some(version) {
            continue;
        }
        if let Some(ami) = have
            .ami_type
            .as_deref()
            .filter(|a| al2_ends && a.starts_with("AL2_"))
        {
            if before_step {
                return Err(ProviderError::Fatal(format!(
                    "amazon_web_services.kubernetes_version: node group {} runs Amazon Linux 2 ({ami}), which EKS has no AMI for at {version} or later, and EKS moves the control plane past {version} only once every node group is there; deploy with `{version}` first (its node groups are replaced by AL2023 ones), then raise the version further",
                    g.id.name
                )));
            }
            continue;
        }
        tracing::info!(node_group = %g.id.name, version, "updating a node group's Kubernetes version");
        eks.update_nodegroup_version()
            .cluster_name(cluster)
            .nodegroup_name(&g.id.name)
            .version(version)
            .send()
            .await
            .sent(p, "UpdateNodegroupVersion")?;
        wait_node_group(p, cluster, &g.id.name, Some(version)).await?;
    }
    Ok(())
}

/// Waits until node group `name` is ACTIVE (at `version`, when given); CREATE_FAILED or
/// DEGRADED is an error.
async fn wait_node_group(
    p: &AwsProvider,
    cluster: &str,
    name: &str,
    version: Option<&str>,
) -> Result<(), ProviderError> {
    let eks = &p.clients().await?.eks;
    let what = match version {
        Some(_) => "node group to reach its version",
        None => "node group to become active",
    };
    wait_for(p, what, move || async move {
        let d = eks
            .describe_nodegroup()
            .cluster_name(cluster)
            .nodegroup_name(name)
            .send()
            .await
            .sent(p, "DescribeNodegroup")?;
        let g = d.nodegroup();
        match g.and_then(|g| g.status()).map(|s| s.as_str()) {
            Some("ACTIVE") if version.is_none() || g.and_then(|g| g.version()) == version => {
                Ok(Some(()))
            }
            Some("DEGRADED" | "CREATE_FAILED") => {
                Err(failed(format!("node group {name} is not healthy")))
            }
            _ => Ok(None),
        }
    })
    .await
}

/// Waits until cluster `name` is ACTIVE; FAILED is an error.
async fn wait_active(p: &AwsProvider, name: &str) -> Result<(), ProviderError> {
    let eks = &p.clients().await?.eks;
    wait_for(p, "cluster to become active", move || async move {
        let c = eks
            .describe_cluster()
            .name(name)
            .send()
            .await
            .sent(p, "DescribeCluster")?;
        match c.cluster().and_then(|c| c.status()).map(|s| s.as_str()) {
            Some("ACTIVE") => Ok(Some(())),
            Some("FAILED") => Err(failed(format!("EKS cluster {name} failed"))),
            _ => Ok(None),
        }
    })
    .await
}

pub(super) async fn ensure_node_group(
    p: &AwsProvider,
    o: &Ownership,
    r: &Resource,
) -> Result<(), ProviderError> {
    let eks = &p.clients().await?.eks;
    let cluster = o.prefix();
    let spec: NodeGroupSpec = spec_of(r)?;
    let (min, max) = (count(spec.min_nodes), count(spec.max_nodes));
    match by_name(
        observe::node_groups(p, o, &cluster, &BTreeMap::new()).await?,
        &r.id.name,
    ) {
        None => {
            // All the subnets, or those the spec names (a `single_subnet` group).
            let wanted = spec.subnets.clone().unwrap_or_default();
            let subnets: Vec<String> = observe::subnets(p, o)
                .await?
                .into_iter()
                .filter(|s| wanted.is_empty() || wanted.contains(&s.id.name))
                .map(|s| s.cloud_id)
                .collect();
            let subnets = need("the subnets", (!subnets.is_empty()).then_some(subnets))?;
            let role = role_arn(p, &spec.node_role).await?;
            let mut tags: BTreeMap<String, String> = o.tags();
            tags.extend(spec.autoscaler_tags.clone());
            // The cluster's creation time stands for the cluster this group joins: a group
            // created again on a re-created cluster is another request.
            let token = request_token(
                o,
                p.region(),
                "CreateNodegroup",
                &serde_json::json!({
                    "cluster": cluster,
                    "cluster_created_at": cluster_created_at(p, &cluster).await?,
                    "name": r.id.name,
                    "node_role": role,
                    "subnets": subnets,
                    "spec": r.spec,
                    "tags": tags,
                }),
            );
            eks.create_nodegroup()
                .cluster_name(&cluster)
                .nodegroup_name(&r.id.name)
                .node_role(role)
                .set_subnets(Some(subnets))
                .instance_types(&spec.instance_type)
                .ami_type(AmiTypes::from(spec.ami_type.as_str()))
                .disk_size(spec.disk_size)
                .scaling_config(
                    NodegroupScalingConfig::builder()
                        .min_size(min)
                        .max_size(max)
                        .desired_size(min)
                        .build(),
                )
                .set_labels(Some(spec.labels.clone().into_iter().collect()))
                .set_taints(Some(taints(&spec.taints)))
                .set_tags(Some(tags.into_iter().collect()))
                .client_request_token(token)
                .send()
                .await
                .created(p, "CreateNodegroup", &format!("node group {}", r.id.name))?;
        }
        Some(f) => {
            let have: NodeGroupObserved = f.spec_as()?;
            update_node_group(p, &cluster, &r.id.name, &spec, &have).await?;
        }
    }
    wait_node_group(p, &cluster, &r.id.name, None).await
}

/// Converges an existing node group (`have`, as observed) to `r`: scaling, labels and taints in
/// one UpdateNodegroupConfig, then the autoscaler tags.
async fn update_node_group(
    p: &AwsProvider,
    cluster: &str,
    name: &str,
    spec: &NodeGroupSpec,
    have: &NodeGroupObserved,
) -> Result<(), ProviderError> {
    let eks = &p.clients().await?.eks;
    let (min, max) = (count(spec.min_nodes), count(spec.max_nodes));
    let mut update = eks
        .update_nodegroup_config()
        .cluster_name(cluster)
        .nodegroup_name(name);
    let mut changed = false;
    if (have.min_nodes, have.max_nodes) != (Some(min), Some(max)) {
        // Keep the autoscaler's current size, inside the new bounds (the lower one when EKS
        // does not say).
        let desired = have
            .desired_nodes
            .map_or(min, |current| current.clamp(min, max.max(min)));
        update = update.scaling_config(
            NodegroupScalingConfig::builder()
                .min_size(min)
                .max_size(max)
                .desired_size(desired)
                .build(),
        );
        changed = true;
    }
    if have.labels != spec.labels {
        let want = spec.labels.clone();
        let remove: Vec<String> = have
            .labels
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
    if have.taints != spec.taints {
        let want = taints(&spec.taints);
        let remove: Vec<Taint> = taints(&have.taints)
            .into_iter()
            .filter(|t| !want.contains(t))
            .collect();
        update = update.taints(
            UpdateTaintsPayload::builder()
                .set_add_or_update_taints((!want.is_empty()).then_some(want))
                .set_remove_taints((!remove.is_empty()).then_some(remove))
                .build(),
        );
        changed = true;
    }
    if changed {
        update.send().await.sent(p, "UpdateNodegroupConfig")?;
    }
    let had = have.autoscaler_tags.clone();
    let want = spec.autoscaler_tags.clone();
    if had == want {
        return Ok(());
    }
    let described = eks
        .describe_nodegroup()
        .cluster_name(cluster)
        .nodegroup_name(name)
        .send()
        .await
        .sent(p, "DescribeNodegroup")?;
    let arn = described
        .nodegroup()
        .and_then(|g| g.nodegroup_arn())
        .unwrap_or_default();
    let stale: Vec<String> = had.into_keys().filter(|k| !want.contains_key(k)).collect();
    if !stale.is_empty() {
        eks.untag_resource()
            .resource_arn(arn)
            .set_tag_keys(Some(stale))
            .send()
            .await
            .sent(p, "UntagResource")?;
    }
    eks.tag_resource()
        .resource_arn(arn)
        .set_tags(Some(want.into_iter().collect()))
        .send()
        .await
        .sent(p, "TagResource")?;
    Ok(())
}

/// Deletes the cluster: first the LoadBalancer Services through the cluster, then the cluster,
/// then whatever load balancers and security groups Kubernetes left in our VPC ([`sweep`]). The
/// sweep runs even when the cluster is already gone, so a retry after an interruption finishes it.
pub(super) async fn delete_cluster(
    p: &AwsProvider,
    o: &Ownership,
    name: &str,
) -> Result<(), ProviderError> {
    if owned_cluster(p, o, name).await?.is_some() {
        sweep::delete_load_balancer_services(p, o).await?;
        let eks = &p.clients().await?.eks;
        eks.delete_cluster()
            .name(name)
            .send()
            .await
            .unless_gone(p, "DeleteCluster")?;
        wait_gone(p, "cluster to be deleted", "DescribeCluster", || {
            eks.describe_cluster().name(name).send()
        })
        .await?;
    }
    let swept = sweep::sweep_cloud(p, o).await?;
    if swept > 0 {
        tracing::info!(swept, "removed what Kubernetes left in the VPC");
    }
    Ok(())
}

pub(super) async fn delete_node_group(
    p: &AwsProvider,
    o: &Ownership,
    name: &str,
) -> Result<(), ProviderError> {
    let cluster = o.prefix();
    if by_name(
        observe::node_groups(p, o, &cluster, &BTreeMap::new()).await?,
        name,
    )
    .is_none()
    {
        return Ok(());
    }
    let eks = &p.clients().await?.eks;
    eks.delete_nodegroup()
        .cluster_name(&cluster)
        .nodegroup_name(name)
        .send()
        .await
        .unless_gone(p, "DeleteNodegroup")?;
    wait_gone(p, "node group to be deleted", "DescribeNodegroup", || {
        eks.describe_nodegroup()
            .cluster_name(&cluster)
            .nodegroup_name(name)
            .send()
    })
    .await
}

/// Creates the add-on `r` names on the deployment's cluster and waits until it is active. An
/// endpoint that does not implement add-ons (an emulator: HTML 404 on a custom endpoint only)
/// makes this a skip with a warning, and the provider stops wanting add-ons.
pub(super) async fn ensure_addon(
    p: &AwsProvider,
    o: &Ownership,
    r: &Resource,
) -> Result<(), ProviderError> {
    let eks = &p.clients().await?.eks;
    let cluster = o.prefix();
    let found = observe::addons(p, o, &cluster).await?;
    if !found
        .iter()
        .any(|f| f.id.kind == EKS_ADDON && f.id.name == r.id.name)
    {
        let token = request_token(
            o,
            p.region(),
            "CreateAddon",
            &serde_json::json!({
                "cluster": cluster,
                "cluster_created_at": cluster_created_at(p, &cluster).await?,
                "name": r.id.name,
                "tags": o.tags(),
            }),
        );
        let created = eks
            .create_addon()
            .cluster_name(&cluster)
            .addon_name(&r.id.name)
            .set_tags(Some(o.tags().into_iter().collect()))
            .client_request_token(token)
            .send()
            .await
            .created(p, "CreateAddon", &format!("EKS add-on {}", r.id.name));
        match created {
            Ok(_) => {}
            Err(ProviderError::NotSupported(_)) => {
                p.without_addons("CreateAddon");
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
    let (name, cluster) = (r.id.name.as_str(), cluster.as_str());
    wait_for(p, "add-on to become active", move || async move {
        let a = eks
            .describe_addon()
            .cluster_name(cluster)
            .addon_name(name)
            .send()
            .await
            .sent(p, "DescribeAddon")?;
        match a.addon().and_then(|a| a.status()).map(|s| s.as_str()) {
            Some("ACTIVE") => Ok(Some(())),
            Some("CREATE_FAILED") => Err(failed(format!("EKS add-on {name} failed to install"))),
            _ => Ok(None),
        }
    })
    .await
}

pub(super) async fn delete_addon(
    p: &AwsProvider,
    o: &Ownership,
    name: &str,
) -> Result<(), ProviderError> {
    let cluster = o.prefix();
    if by_name(observe::addons(p, o, &cluster).await?, name).is_none() {
        return Ok(());
    }
    let eks = &p.clients().await?.eks;
    eks.delete_addon()
        .cluster_name(&cluster)
        .addon_name(name)
        .send()
        .await
        .unless_gone(p, "DeleteAddon")?;
    wait_gone(p, "add-on to be deleted", "DescribeAddon", || {
        eks.describe_addon()
            .cluster_name(&cluster)
            .addon_name(name)
            .send()
    })
    .await
}

/// Creates (or points at its role) the Pod Identity association `r` names: the service
/// account `namespace/service_account` of the deployment's cluster gets the credentials of
/// role `role` (EKS API reference, CreatePodIdentityAssociation /
/// UpdatePodIdentityAssociation). Only associations carrying our tags are seen
/// ([`observe::pod_identities`]); one somebody else made for the same service account is
/// refused by EKS (`ResourceInUseException`: one association per service account and cluster)
/// and reported as not ours, never taken over.
pub(super) async fn ensure_pod_identity(
    p: &AwsProvider,
    o: &Ownership,
    r: &Resource,
) -> Result<(), ProviderError> {
    let eks = &p.clients().await?.eks;
    let want: PodIdentitySpec = spec_of(r)?;
    let cluster = want.cluster.as_str();
    let namespace = want.namespace.as_str();
    let service_account = want.service_account.as_str();
    let found = by_name(observe::pod_identities(p, o, cluster).await?, &r.id.name);
    let role = role_arn(p, &want.role).await?;
    match found {
        Some(f) if f.spec_as::<PodIdentityObserved>()?.role.as_ref() == Some(&want.role) => Ok(()),
        Some(f) => {
            eks.update_pod_identity_association()
                .cluster_name(cluster)
                .association_id(&f.cloud_id)
                .role_arn(role)
                .send()
                .await
                .sent(p, "UpdatePodIdentityAssociation")?;
            Ok(())
        }
        None => {
            let token = request_token(
                o,
                p.region(),
                "CreatePodIdentityAssociation",
                &serde_json::json!({
                    "cluster": cluster,
                    "cluster_created_at": cluster_created_at(p, cluster).await?,
                    "namespace": namespace,
                    "service_account": service_account,
                    "role_arn": role,
                    "tags": o.tags(),
                }),
            );
            eks.create_pod_identity_association()
                .cluster_name(cluster)
                .namespace(namespace)
                .service_account(service_account)
                .role_arn(role)
                .set_tags(Some(o.tags().into_iter().collect()))
                .client_request_token(token)
                .send()
                .await
                .created(
                    p,
                    "CreatePodIdentityAssociation",
                    &format!("the EKS Pod Identity association of service account {namespace}/{service_account}"),
                )?;
            Ok(())
        }
    }
}

/// Deletes the Pod Identity association `name` if it is still there and ours.
pub(super) async fn delete_pod_identity(
    p: &AwsProvider,
    o: &Ownership,
    name: &str,
) -> Result<(), ProviderError> {
    let cluster = o.prefix();
    let Some(f) = by_name(observe::pod_identities(p, o, &cluster).await?, name) else {
        return Ok(());
    };
    let eks = &p.clients().await?.eks;
    eks.delete_pod_identity_association()
        .cluster_name(&cluster)
        .association_id(&f.cloud_id)
        .send()
        .await
        .unless_gone(p, "DeletePodIdentityAssociation")?;
    Ok(())
}
