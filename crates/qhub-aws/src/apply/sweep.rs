//! What Kubernetes made in the cloud for the cluster, removed before the network goes.
//!
//! A `type: LoadBalancer` Service makes the cloud controller create a load balancer in our
//! subnets and a security group in our VPC. They carry the cluster's tag
//! (`kubernetes.io/cluster/<name>`), not ours, and while they exist the subnets, security group
//! and VPC cannot be deleted. So destroying the cluster first deletes those Services through the
//! cluster (the controller then removes its load balancers), and after the cluster is gone it
//! sweeps what is left: classic and v2 load balancers, their target groups, the security groups
//! and the network interfaces load balancers left in our VPC, and the EBS volumes
//! PersistentVolumeClaims made, all only when they carry the cluster's tag (or, for a network
//! interface, a load balancer's `ELB …` description in our VPC).

use std::collections::BTreeSet;

use aws_sdk_ec2::types::Filter;
use qhub_core::cloud::drain::drain_through;
use qhub_core::provider::{Ownership, ProviderError};

use super::{Sent, by_name};
use crate::AwsProvider;
use crate::observe;
pub use crate::observe::left::{CNI_CLUSTER_TAG, PVC_NAME_TAG, cluster_tag, left_by_kubernetes};
use crate::observe::left::{left_interfaces, left_volumes};

/// Deletes every LoadBalancer Service through the cluster and waits until they are gone
/// ([`drain_through`]); the cloud sweep still runs when the cluster cannot be reached.
pub(super) async fn delete_load_balancer_services(
    p: &AwsProvider,
    o: &Ownership,
) -> Result<usize, ProviderError> {
    // The engine's deadline bounds the whole delete; this one only stops an endless wait.
    drain_through(p, o, p.poll(), std::time::Duration::from_secs(20 * 60)).await
}

/// Deletes what Kubernetes left for the cluster: the EBS volumes PersistentVolumeClaims made
/// (tagged `kubernetes.io/cluster/<name>=owned` and [`PVC_NAME_TAG`]), and in our VPC the
/// classic and v2 load balancers, target groups and security groups carrying the cluster's
/// tag, and the detached network interfaces load balancers or the cluster left. Returns how
/// many it deleted.
pub(super) async fn sweep_cloud(p: &AwsProvider, o: &Ownership) -> Result<usize, ProviderError> {
    let tag = cluster_tag(&o.prefix());
    let c = p.clients().await?;
    let mut deleted = 0;

    // Volumes live outside the VPC: swept even when the network is already gone. One still
    // attached (its node is being terminated) fails with VolumeInUse and the engine retries.
    let volumes = left_volumes(p, o).await?;
    for v in &volumes {
        let id = v.volume_id().unwrap_or_default();
        tracing::info!(
            volume = id,
            "deleting an EBS volume a PersistentVolumeClaim left"
        );
        c.ec2
            .delete_volume()
            .volume_id(id)
            .send()
            .await
            .unless_gone(p, "DeleteVolume")?;
        deleted += 1;
    }

    let Some(vpc) = by_name(observe::vpcs(p, o).await?, &o.prefix()) else {
        return Ok(deleted);
    };
    let vpc = vpc.cloud_id;

    // Classic load balancers (the in-tree controller's default), every page.
    let classic = c
        .elb
        .describe_load_balancers()
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .sent_unless(p, "DescribeLoadBalancers", |e| e.html_not_found)?;
    let names: Vec<String> = classic
        .iter()
        .flatten()
        .filter(|lb| lb.vpc_id() == Some(vpc.as_str()))
        .filter_map(|lb| lb.load_balancer_name().map(str::to_string))
        .collect();
    for chunk in names.chunks(20) {
        let tags = c
            .elb
            .describe_tags()
            .set_load_balancer_names(Some(chunk.to_vec()))
            .send()
            .await
            .sent(p, "DescribeTags")?;
        for d in tags.tag_descriptions() {
            if d.tags().iter().any(|t| t.key() == tag) {
                let name = d.load_balancer_name().unwrap_or_default();
                tracing::info!(
                    load_balancer = name,
                    "deleting a classic load balancer Kubernetes left"
                );
                c.elb
                    .delete_load_balancer()
                    .load_balancer_name(name)
                    .send()
                    .await
                    .sent(p, "DeleteLoadBalancer")?;
                deleted += 1;
            }
        }
    }

    // Network/application load balancers and their target groups.
    let v2 = c
        .elbv2
        .describe_load_balancers()
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .sent_unless(p, "DescribeLoadBalancers", |e| e.html_not_found)?;
    let arns: Vec<String> = v2
        .iter()
        .flatten()
        .filter(|lb| lb.vpc_id() == Some(vpc.as_str()))
        .filter_map(|lb| lb.load_balancer_arn().map(str::to_string))
        .collect();
    let groups = c
        .elbv2
        .describe_target_groups()
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .sent_unless(p, "DescribeTargetGroups", |e| e.html_not_found)?;
    let group_arns: Vec<String> = groups
        .iter()
        .flatten()
        .filter(|g| g.vpc_id() == Some(vpc.as_str()))
        .filter_map(|g| g.target_group_arn().map(str::to_string))
        .collect();
    let mut tagged = BTreeSet::new();
    for chunk in arns.chunks(20).chain(group_arns.chunks(20)) {
        let tags = c
            .elbv2
            .describe_tags()
            .set_resource_arns(Some(chunk.to_vec()))
            .send()
            .await
            .sent(p, "DescribeTags")?;
        for d in tags.tag_descriptions() {
            if d.tags().iter().any(|t| t.key() == Some(tag.as_str())) {
                tagged.extend(d.resource_arn().map(str::to_string));
            }
        }
    }
    // Load balancers first: a target group in use cannot go.
    for arn in arns.iter().filter(|a| tagged.contains(*a)) {
        tracing::info!(load_balancer = %arn, "deleting a load balancer Kubernetes left");
        c.elbv2
            .delete_load_balancer()
            .load_balancer_arn(arn)
            .send()
            .await
            .unless_gone(p, "DeleteLoadBalancer")?;
        deleted += 1;
    }
    for arn in group_arns.iter().filter(|a| tagged.contains(*a)) {
        c.elbv2
            .delete_target_group()
            .target_group_arn(arn)
            .send()
            .await
            .unless_gone(p, "DeleteTargetGroup")?;
        deleted += 1;
    }

    // Network interfaces in our VPC that load balancers or the cluster left. Those still
    // attached are released by their deleted owner a little later: the subnets' and VPC's
    // deletes then meet a DependencyViolation, which the engine retries.
    for eni in &left_interfaces(p, &vpc, &o.prefix()).await? {
        let id = eni.network_interface_id().unwrap_or_default();
        if eni.status().is_some_and(|s| s.as_str() != "available") {
            tracing::debug!(
                network_interface = id,
                "a network interface a load balancer left is still attached"
            );
            continue;
        }
        tracing::info!(
            network_interface = id,
            "deleting a network interface a load balancer left"
        );
        c.ec2
            .delete_network_interface()
            .network_interface_id(id)
            .send()
            .await
            .unless_gone(p, "DeleteNetworkInterface")?;
        deleted += 1;
    }

    // The security groups the controller made (`k8s-elb-…`); their network interfaces are
    // released asynchronously, so a DependencyViolation here is retried by the engine.
    let sgs = c
        .ec2
        .describe_security_groups()
        .filters(Filter::builder().name("vpc-id").values(&vpc).build())
        .filters(Filter::builder().name("tag-key").values(&tag).build())
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .sent(p, "DescribeSecurityGroups")?;
    let owned_by_us = |tags: &[aws_sdk_ec2::types::Tag]| {
        let map = tags
            .iter()
            .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
            .collect();
        o.owns(&map)
    };
    for sg in &sgs {
        // Our own security group is deleted by its own step.
        if owned_by_us(sg.tags()) {
            continue;
        }
        let id = sg.group_id().unwrap_or_default();
        tracing::info!(
            security_group = id,
            "deleting a security group Kubernetes left"
        );
        c.ec2
            .delete_security_group()
            .group_id(id)
            .send()
            .await
            .unless_gone(p, "DeleteSecurityGroup")?;
        deleted += 1;
    }
    Ok(deleted)
}

/// Deletes the EBS volume `id` a PersistentVolumeClaim left (a destroy whose cluster is gone
/// already). Still attached (its node is being terminated): busy, retried.
pub(super) async fn delete_volume(p: &AwsProvider, id: &str) -> Result<(), ProviderError> {
    p.clients()
        .await?
        .ec2
        .delete_volume()
        .volume_id(id)
        .send()
        .await
        .unless_gone(p, "DeleteVolume")?;
    Ok(())
}

/// Deletes the network interface `id` a load balancer left. Still attached: its deleted load
/// balancer releases it a little later, so this is busy and retried.
pub(super) async fn delete_network_interface(
    p: &AwsProvider,
    id: &str,
) -> Result<(), ProviderError> {
    p.clients()
        .await?
        .ec2
        .delete_network_interface()
        .network_interface_id(id)
        .send()
        .await
        .unless_gone(p, "DeleteNetworkInterface")?;
    Ok(())
}
