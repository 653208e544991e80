//! What the cluster's controllers made in the cloud and would outlive it (load balancers'
//! network interfaces, the EBS volumes of PersistentVolumeClaims): found here, read-only, for
//! observe; [`crate::apply::sweep`] deletes them.

use aws_sdk_ec2::types::Filter;
use qhub_core::provider::{Ownership, ProviderError};

use crate::AwsProvider;
use crate::sent::Sent;

/// The tag the cloud controller puts on what it makes for cluster `cluster`.
pub fn cluster_tag(cluster: &str) -> String {
    format!("kubernetes.io/cluster/{cluster}")
}

/// The tag the EBS CSI driver (with `--extra-create-metadata`, as the EKS add-on runs it) puts
/// on the volume it creates for a PersistentVolumeClaim, naming the claim.
pub const PVC_NAME_TAG: &str = "kubernetes.io/created-for/pvc/name";

/// The tag the VPC CNI puts on the network interfaces it creates for cluster pods.
pub const CNI_CLUSTER_TAG: &str = "cluster.k8s.amazonaws.com/name";

/// True for a network interface a load balancer or the cluster left: described `ELB …` (what
/// classic, network and application load balancers write,
/// <https://docs.aws.amazon.com/elasticloadbalancing/latest/userguide/how-elastic-load-balancing-works.html>)
/// or tagged for the cluster.
pub fn left_by_kubernetes(description: &str, tags: &[(String, String)], cluster: &str) -> bool {
    let tag = cluster_tag(cluster);
    description.starts_with("ELB ")
        || tags
            .iter()
            .any(|(k, v)| *k == tag || (k == CNI_CLUSTER_TAG && v == cluster))
}

/// The EBS volumes PersistentVolumeClaims made for cluster `o.prefix()` (tagged
/// `kubernetes.io/cluster/<name>=owned` and [`PVC_NAME_TAG`]), every page.
pub(crate) async fn left_volumes(
    p: &AwsProvider,
    o: &Ownership,
) -> Result<Vec<aws_sdk_ec2::types::Volume>, ProviderError> {
    let tag = cluster_tag(&o.prefix());
    p.clients()
        .await?
        .ec2
        .describe_volumes()
        .filters(
            Filter::builder()
                .name(format!("tag:{tag}"))
                .values("owned")
                .build(),
        )
        .filters(
            Filter::builder()
                .name("tag-key")
                .values(PVC_NAME_TAG)
                .build(),
        )
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .sent(p, "DescribeVolumes")
}

/// The network interfaces in VPC `vpc` that load balancers or cluster `cluster` left
/// ([`left_by_kubernetes`]), attached or not, every page.
pub(crate) async fn left_interfaces(
    p: &AwsProvider,
    vpc: &str,
    cluster: &str,
) -> Result<Vec<aws_sdk_ec2::types::NetworkInterface>, ProviderError> {
    let interfaces: Vec<aws_sdk_ec2::types::NetworkInterface> = p
        .clients()
        .await?
        .ec2
        .describe_network_interfaces()
        .filters(Filter::builder().name("vpc-id").values(vpc).build())
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .sent(p, "DescribeNetworkInterfaces")?;
    Ok(interfaces
        .into_iter()
        .filter(|eni| {
            let tags: Vec<(String, String)> = eni
                .tag_set()
                .iter()
                .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                .collect();
            left_by_kubernetes(eni.description().unwrap_or_default(), &tags, cluster)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interfaces_left_by_load_balancers_or_the_cluster_are_recognised() {
        let none: &[(String, String)] = &[];
        assert!(left_by_kubernetes("ELB a1b2c3", none, "demo-dev"));
        assert!(left_by_kubernetes(
            "ELB net/k8s-dev-web/0123",
            none,
            "demo-dev"
        ));
        let cni = [(CNI_CLUSTER_TAG.to_string(), "demo-dev".to_string())];
        assert!(left_by_kubernetes("aws-K8S-i-0123", &cni, "demo-dev"));
        let owned = [(cluster_tag("demo-dev"), "owned".to_string())];
        assert!(left_by_kubernetes("", &owned, "demo-dev"));
        // Another cluster's, or an interface AWS manages for us (EFS, the EKS control plane).
        let other = [(CNI_CLUSTER_TAG.to_string(), "demo-prod".to_string())];
        assert!(!left_by_kubernetes("aws-K8S-i-0123", &other, "demo-dev"));
        assert!(!left_by_kubernetes(
            "EFS mount target for fs-1",
            none,
            "demo-dev"
        ));
        assert!(!left_by_kubernetes("Amazon EKS demo-dev", none, "demo-dev"));
    }
}
