//! What the Kubernetes stage needs to know about an EKS cluster (the contract's cluster
//! facts): a pure function of the config, and of the observed infrastructure only for the one
//! fact that exists once the cloud made it (the EFS file system's id and DNS name).
//!
//! [`offline`] is what `qhub render` and a plan before the first deploy use: no client, no
//! credentials, no network.

use std::collections::BTreeMap;

use qhub_core::config::Config;
use qhub_core::plan::Observed;
use qhub_core::provider::facts::{AFTER_APPLY, SharedFilesystem};
use qhub_core::provider::{ClusterFacts, Known};

use crate::desired::{EFS, LB_SCHEME_ANNOTATION, Names};
use crate::partition::Partition;

/// The cluster facts of an EKS deployment: the EBS `gp2` class EKS creates, the EFS file
/// system once it exists, node groups selected by [`crate::desired::GROUP_LABEL`], NVIDIA's GPU taint, a
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
        // An EFS file system it will be (the config says so, and with it the mount options);
        // only its id and address wait for AWS to make it.
        None => Known::Known(SharedFilesystem::Efs {
            id: AFTER_APPLY.to_string(),
            dns_name: AFTER_APPLY.to_string(),
        }),
    };
    // A network load balancer (it passes the TCP ports through), reachable from the internet.
    // The in-tree controller makes NLBs internet-facing by default, but the AWS Load Balancer
    // Controller, once installed, takes over such Services and makes them *internal* unless
    // told (kubernetes-sigs/aws-load-balancer-controller docs, guide/service/annotations.md:
    // `aws-load-balancer-scheme` defaults to `internal`; guide/service/nlb.md, "Secure by
    // default", since v2.2.0): say it.
    facts.load_balancer_annotations = BTreeMap::from([
        (
            "service.beta.kubernetes.io/aws-load-balancer-type".to_string(),
            "nlb".to_string(),
        ),
        (
            LB_SCHEME_ANNOTATION.to_string(),
            "internet-facing".to_string(),
        ),
    ]);
    facts.native_autoscaling = false;
    facts
}

/// The facts of `config` before anything exists: [`cluster_facts`] with no infrastructure, so
/// the EFS file system's id and address are the one named placeholder
/// ([`qhub_core::provider::facts::AFTER_APPLY`], listed by [`ClusterFacts::unknown`]).
pub fn offline(config: &Config) -> ClusterFacts {
    let region = config
        .amazon_web_services
        .as_ref()
        .map_or("", |s| s.region.as_str());
    cluster_facts(config, region, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::unit_config as config;

    #[test]
    fn the_ingress_load_balancer_is_an_internet_facing_nlb() {
        let facts = offline(&config());
        let a = &facts.load_balancer_annotations;
        assert_eq!(
            a.get("service.beta.kubernetes.io/aws-load-balancer-type")
                .map(String::as_str),
            Some("nlb")
        );
        // The AWS Load Balancer Controller would make it internal without this.
        assert_eq!(
            a.get(LB_SCHEME_ANNOTATION).map(String::as_str),
            Some("internet-facing")
        );
    }

    #[test]
    fn only_the_shared_filesystem_waits_for_the_apply() {
        let facts = offline(&config());
        assert_eq!(facts.unknown(), ["shared filesystem"]);
        assert_eq!(facts.storage_class.as_deref(), Some("gp2"));
        assert_eq!(
            facts.node_selector.for_group("general"),
            Some(BTreeMap::from([(
                crate::desired::GROUP_LABEL.to_string(),
                "general".to_string()
            )]))
        );
    }
}
