//! Preflight: what is checked before any change is made.
//!
//! The credentials work (`GetCallerIdentity`); `amazon_web_services.region` is a region the
//! account can use; the availability zones exist (and there are two, when none are named);
//! `kubernetes_version` is one EKS offers; every node group's instance type is offered in the
//! region, and that the AMI type each group gets (by Kubernetes version, architecture and GPU,
//! [`desired::ami_type`]) runs on its instance type. Every problem is reported at once, each naming its config key and the fix. A check
//! the endpoint cannot answer (an emulator) becomes a warning, never a silent pass.

use std::collections::BTreeSet;

use aws_sdk_ec2::types::{Filter, InstanceType, LocationType};
use qhub_core::config::Config;
use qhub_core::provider::{Preflight, ProviderError};

use crate::AwsProvider;
use crate::apply::availability_zones;
use crate::desired;
use crate::errors::AwsError;

/// Runs the checks for `config` (see the module docs).
pub async fn preflight(p: &AwsProvider, config: &Config) -> Result<Preflight, ProviderError> {
    let section = config.amazon_web_services.as_ref().ok_or_else(|| {
        ProviderError::Fatal("the config has no `amazon_web_services` section".into())
    })?;
    let c = p.clients().await?;
    c.sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| p.err(AwsError::from_sdk("GetCallerIdentity", e)))?;
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    // Answers an endpoint does not implement become warnings (emulator mode only).
    let mut skipped = |what: &str, e: ProviderError| -> Result<(), ProviderError> {
        match e {
            ProviderError::NotSupported(_) => {
                warnings.push(format!(
                    "{what} not checked: the custom endpoint cannot tell"
                ));
                Ok(())
            }
            other => Err(other),
        }
    };

    let regions = c
        .ec2
        .describe_regions()
        .send()
        .await
        .map_err(|e| p.err(AwsError::from_sdk("DescribeRegions", e)));
    match regions {
        Ok(r) => {
            let names: BTreeSet<&str> =
                r.regions().iter().filter_map(|r| r.region_name()).collect();
            if !names.contains(p.region()) {
                problems.push(format!(
                    "amazon_web_services.region: `{}` is not a region this account can use; use one of {}",
                    p.region(),
                    names.into_iter().collect::<Vec<_>>().join(", ")
                ));
                return Err(ProviderError::Fatal(problems.join("\n")));
            }
        }
        Err(e @ ProviderError::NotSupported(_)) => skipped("amazon_web_services.region", e)?,
        Err(e) => {
            return Err(ProviderError::Fatal(format!(
                "amazon_web_services.region: EC2 in `{}` did not answer ({e}); check the region name",
                p.region()
            )));
        }
    }

    let zones = availability_zones(p).await?;
    match &section.availability_zones {
        Some(wanted) => {
            for z in wanted.iter().filter(|z| !zones.contains(z)) {
                problems.push(format!(
                    "amazon_web_services.availability_zones: {z} is not available in {}; use two of {}",
                    p.region(),
                    zones.join(", ")
                ));
            }
        }
        None if zones.len() < 2 => problems.push(format!(
            "amazon_web_services.region: {} offers {} availability zone(s); EKS needs subnets in two, so choose another region",
            p.region(),
            zones.len()
        )),
        None => {}
    }

    let versions = c
        .eks
        .describe_cluster_versions()
        .send()
        .await
        .map_err(|e| p.err(AwsError::from_sdk("DescribeClusterVersions", e)));
    match versions {
        Ok(r) => {
            let offered: Vec<&str> = r
                .cluster_versions()
                .iter()
                .filter_map(|v| v.cluster_version())
                .collect();
            if !offered.is_empty() && !offered.contains(&section.kubernetes_version.as_str()) {
                problems.push(format!(
                    "amazon_web_services.kubernetes_version: EKS does not offer `{}`; use one of {}",
                    section.kubernetes_version,
                    offered.join(", ")
                ));
            }
        }
        Err(e) => skipped("amazon_web_services.kubernetes_version", e)?,
    }

    let types: BTreeSet<&str> = section
        .node_groups
        .values()
        .map(|g| g.instance.as_str())
        .collect();
    let offerings = c
        .ec2
        .describe_instance_type_offerings()
        .location_type(LocationType::Region)
        .filters(
            Filter::builder()
                .name("instance-type")
                .set_values(Some(types.iter().map(|t| t.to_string()).collect()))
                .build(),
        )
        .send()
        .await
        .map_err(|e| p.err(AwsError::from_sdk("DescribeInstanceTypeOfferings", e)));
    // The types to describe next: those offered (DescribeInstanceTypes refuses the whole call
    // for one unknown type, InvalidInstanceType), or all when the offerings are not known.
    let mut describable: Vec<String> = types.iter().map(|t| t.to_string()).collect();
    match offerings {
        Ok(r) => {
            let offered: BTreeSet<String> = r
                .instance_type_offerings()
                .iter()
                .filter_map(|o| o.instance_type().map(|t| t.as_str().to_string()))
                .collect();
            for (group, g) in &section.node_groups {
                if !offered.contains(&g.instance) {
                    problems.push(format!(
                        "amazon_web_services.node_groups.{group}.instance: `{}` is not offered in {}; choose an instance type the region has (`aws ec2 describe-instance-type-offerings --region {}`)",
                        g.instance,
                        p.region(),
                        p.region()
                    ));
                }
            }
            describable.retain(|t| offered.contains(t));
        }
        Err(e) => skipped("amazon_web_services.node_groups.*.instance", e)?,
    }

    // The AMI type each group gets must run on its instance type: the architecture (a
    // Graviton type needs an ARM AMI) and, for a GPU group, a GPU to drive. One call for all
    // the types.
    let described = if describable.is_empty() {
        Ok(Vec::new())
    } else {
        c.ec2
            .describe_instance_types()
            .set_instance_types(Some(
                describable
                    .iter()
                    .map(|t| InstanceType::from(t.as_str()))
                    .collect(),
            ))
            .send()
            .await
            .map(|r| r.instance_types().to_vec())
            .map_err(|e| p.err(AwsError::from_sdk("DescribeInstanceTypes", e)))
    };
    match described {
        Ok(infos) => {
            for (group, g) in &section.node_groups {
                let Some(info) = infos
                    .iter()
                    .find(|i| i.instance_type().map(|t| t.as_str()) == Some(g.instance.as_str()))
                else {
                    // Not offered: reported above.
                    continue;
                };
                let ami = desired::ami_type(&section.kubernetes_version, &g.instance, g.gpu);
                let arch = desired::ami_architecture(ami);
                let archs: Vec<&str> = info
                    .processor_info()
                    .map(|p| p.supported_architectures())
                    .unwrap_or_default()
                    .iter()
                    .map(|a| a.as_str())
                    .collect();
                if !archs.is_empty() && !archs.contains(&arch) {
                    problems.push(format!(
                        "amazon_web_services.node_groups.{group}.instance: `{}` runs {} but its group would get the {arch} AMI type {ami}; choose an instance type of one architecture family (Graviton types such as m7g are arm64)",
                        g.instance,
                        archs.join("/"),
                    ));
                }
                let gpus = info
                    .gpu_info()
                    .map(|i| i.gpus().iter().filter_map(|d| d.count()).sum::<i32>())
                    .unwrap_or(0);
                if g.gpu && gpus == 0 {
                    problems.push(format!(
                        "amazon_web_services.node_groups.{group}.gpu: `{}` has no GPU; choose a GPU instance type (g4dn, g5, g6, p4d…) or set `gpu: false`",
                        g.instance
                    ));
                }
            }
        }
        Err(e) => skipped("amazon_web_services.node_groups.*.instance (AMI type)", e)?,
    }

    // No API call: EKS's calendar (crate::versions).
    if let Some(w) = crate::versions::support_warning(
        &config.resource_prefix(),
        &section.kubernetes_version,
        p.support_type,
        crate::versions::today(),
    ) {
        warnings.push(format!("amazon_web_services.kubernetes_version: {w}"));
    }

    if problems.is_empty() {
        Ok(Preflight { warnings })
    } else {
        Err(ProviderError::Fatal(problems.join("\n")))
    }
}
