//! Preflight: what is checked before any change is made.
//!
//! The credentials work (`GetCallerIdentity`); `amazon_web_services.region` is a region the
//! account can use; the availability zones exist (and there are two, when none are named);
//! `kubernetes_version` is one EKS offers; every node group's instance type is offered in the
//! region, and that the AMI type each group gets (by Kubernetes version, architecture and GPU,
//! [`desired::ami_type`]) runs on its instance type; and that the account's On-Demand vCPU
//! quotas ([`VCPU_QUOTAS`], Service Quotas `GetServiceQuota`) hold the node groups
//! ([`judge_quota`]: the minimum, or one node of a group, beyond a quota is an error; only the
//! maximum beyond it, a warning).
//!
//! API calls: `GetCallerIdentity`, `DescribeRegions`, `DescribeAvailabilityZones`,
//! `DescribeClusterVersions`, `DescribeInstanceTypeOfferings`, `DescribeInstanceTypes` (one
//! each), and one `GetServiceQuota` per vCPU quota the groups' instance types fall under (1 for
//! the default config, 2 with a G-family GPU group, 3 with P types too), each followed by a
//! `GetAWSDefaultServiceQuota` only when the quota has no applied value. Every problem is reported at once, each naming its config key and the fix. A check
//! the endpoint cannot answer (an emulator) becomes a warning, never a silent pass.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{Filter, InstanceType, LocationType};
use qhub_core::config::Config;
use qhub_core::provider::{Preflight, ProviderError};

use crate::AwsProvider;
use crate::apply::availability_zones;
use crate::desired;
use crate::errors::AwsError;

/// An EC2 On-Demand vCPU quota (Service Quotas, service code `ec2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VcpuQuota {
    /// The quota code (`L-1216C47A`).
    pub code: &'static str,
    /// Its name, as the Service Quotas console lists it.
    pub name: &'static str,
}

/// The On-Demand vCPU quotas preflight checks: Standard (A, C, D, H, I, M, R, T, Z), G and
/// VT, and P instances (EC2 user guide, "Amazon EC2 service quotas", On-Demand Instance
/// quotas; codes as the Service Quotas console shows them). A new account often has 0 vCPUs
/// of G and VT instances, and a GPU group then fails after minutes with `VcpuLimitExceeded`
/// (issue 26, item 6). Other families (X, F, Inf, Trn, DL, high memory) have quotas of their
/// own that are not checked.
pub const VCPU_QUOTAS: &[VcpuQuota] = &[
    VcpuQuota {
        code: "L-1216C47A",
        name: "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances",
    },
    VcpuQuota {
        code: "L-DB2E81BA",
        name: "Running On-Demand G and VT instances",
    },
    VcpuQuota {
        code: "L-417A185B",
        name: "Running On-Demand P instances",
    },
];

/// The vCPU quota an instance type's family counts against, by the letters before its
/// generation digit (`m5.xlarge` → Standard, `g4dn.xlarge` → G and VT, `p4d.24xlarge` → P);
/// `None` for a family under another quota.
pub fn vcpu_quota(instance: &str) -> Option<VcpuQuota> {
    let family = instance.split('.').next().unwrap_or_default();
    let letters: String = family
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .collect();
    let index = match letters.as_str() {
        "a" | "c" | "d" | "h" | "i" | "im" | "is" | "m" | "r" | "t" | "z" => 0,
        "g" | "gr" | "vt" => 1,
        "p" => 2,
        _ => return None,
    };
    VCPU_QUOTAS.get(index).copied()
}

/// One node group's share of a quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupNeed {
    /// The config's name of the group.
    pub group: String,
    /// Its instance type.
    pub instance: String,
    /// vCPUs of one node (DescribeInstanceTypes `VCpuInfo.DefaultVCpus`).
    pub vcpus: u64,
    /// `min_nodes`.
    pub min: u64,
    /// `max_nodes`.
    pub max: u64,
}

/// How to raise `quota` to `desired` vCPUs in `region`: the CLI command and the console step.
pub fn raise_quota(quota: &VcpuQuota, desired: u64, region: &str) -> String {
    format!(
        "raise it with `aws service-quotas request-service-quota-increase --service-code ec2 --quota-code {code} --desired-value {desired} --region {region}`, or in the console: Service Quotas → AWS services → Amazon Elastic Compute Cloud (Amazon EC2) → \"{name}\" → Request increase at account level (https://{region}.console.aws.amazon.com/servicequotas/home/services/ec2/quotas/{code})",
        code = quota.code,
        name = quota.name,
    )
}

/// Judges the node groups `groups` that count against `quota`, whose value is `value` vCPUs.
///
/// The decision: an **error** when the groups' minimum does not fit (their nodes cannot all
/// start, and the deploy fails after minutes with `VcpuLimitExceeded`), or when one node of a
/// group that may have nodes does not fit (the group can never run a node: a GPU group on a new
/// account's 0 G vCPUs); a **warning** when only the maximum exceeds it (the deploy works;
/// scaling stops at the quota). Instances already running in the region count against the
/// quota too, so a fit is not a guarantee.
pub fn judge_quota(
    quota: &VcpuQuota,
    value: f64,
    groups: &[&GroupNeed],
    region: &str,
) -> (Vec<String>, Option<String>) {
    // Quota values are whole vCPUs; a fraction would only come from a bad answer.
    let have = if value.is_finite() && value > 0.0 {
        value.floor() as u64
    } else {
        0
    };
    let min: u64 = groups.iter().map(|g| g.min * g.vcpus).sum();
    let max: u64 = groups.iter().map(|g| g.max * g.vcpus).sum();
    let share = |g: &GroupNeed| {
        format!(
            "{} × {} ({} vCPUs each, {}–{} nodes)",
            g.group, g.instance, g.vcpus, g.min, g.max
        )
    };
    let all: Vec<String> = groups.iter().map(|g| share(g)).collect();
    let mut errors = Vec::new();
    if min > have {
        let keys: Vec<String> = groups
            .iter()
            .filter(|g| g.min > 0)
            .map(|g| format!("amazon_web_services.node_groups.{}.min_nodes", g.group))
            .collect();
        errors.push(format!(
            "{}: the EC2 quota {} ({}) in {region} is {have} vCPUs, and the node groups' minimum needs {min} ({}); lower the minimum, or {}",
            keys.join(", "),
            quota.code,
            quota.name,
            all.join(", "),
            raise_quota(quota, max.max(min), region)
        ));
        return (errors, None);
    }
    for g in groups.iter().filter(|g| g.max > 0 && g.vcpus > have) {
        errors.push(format!(
            "amazon_web_services.node_groups.{}.instance: the EC2 quota {} ({}) in {region} is {have} vCPUs, less than one {} node ({} vCPUs): the group can never start a node; choose another instance type, or {}",
            g.group,
            quota.code,
            quota.name,
            g.instance,
            g.vcpus,
            raise_quota(quota, max, region)
        ));
    }
    if !errors.is_empty() {
        return (errors, None);
    }
    let warning = (max > have).then(|| {
        let keys: Vec<String> = groups
            .iter()
            .map(|g| format!("amazon_web_services.node_groups.{}.max_nodes", g.group))
            .collect();
        format!(
            "{}: the EC2 quota {} ({}) in {region} is {have} vCPUs; the node groups start with {min} but may grow to {max} ({}), so scaling stops at the quota; {}",
            keys.join(", "),
            quota.code,
            quota.name,
            all.join(", "),
            raise_quota(quota, max, region)
        )
    });
    (errors, warning)
}

/// The value of EC2 quota `code` in the provider's region: the applied value
/// (`GetServiceQuota`), or AWS's default when no applied value is available for it
/// (`GetAWSDefaultServiceQuota`; the Service Quotas API reference, GetServiceQuota: "If the
/// applied quota value is not available for a quota, the quota is not retrieved").
async fn quota_value(p: &AwsProvider, code: &str) -> Result<f64, ProviderError> {
    let c = p.clients().await?;
    let applied = c
        .quotas
        .get_service_quota()
        .service_code("ec2")
        .quota_code(code)
        .send()
        .await;
    let quota = match applied {
        Ok(r) => r.quota,
        Err(e) => {
            let e = AwsError::from_sdk("GetServiceQuota", e);
            if e.code.as_deref() != Some("NoSuchResourceException") {
                return Err(p.err(e));
            }
            if p.emulator() {
                // moto knows only the `vpc` quotas and answers GetAWSDefaultServiceQuota with
                // an HTML 500 that would be retried: a custom endpoint without the quota
                // cannot tell (a warning).
                return Err(ProviderError::NotSupported(format!(
                    "the custom endpoint has no value for {code}"
                )));
            }
            c.quotas
                .get_aws_default_service_quota()
                .service_code("ec2")
                .quota_code(code)
                .send()
                .await
                .map_err(|e| p.err(AwsError::from_sdk("GetAWSDefaultServiceQuota", e)))?
                .quota
        }
    };
    quota
        .and_then(|q| q.value)
        .ok_or_else(|| ProviderError::Fatal(format!("Service Quotas answered no value for {code}")))
}

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
    let infos = match described {
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
            infos
        }
        Err(e) => {
            skipped("amazon_web_services.node_groups.*.instance (AMI type)", e)?;
            Vec::new()
        }
    };

    // The account's On-Demand vCPU quotas against what the node groups may run: one
    // GetServiceQuota per quota the groups' instance types fall under.
    let vcpus: BTreeMap<&str, i32> = infos
        .iter()
        .filter_map(|i| {
            Some((
                i.instance_type()?.as_str(),
                i.v_cpu_info()?.default_v_cpus()?,
            ))
        })
        .collect();
    let groups: Vec<GroupNeed> = section
        .node_groups
        .iter()
        .filter_map(|(name, g)| {
            Some(GroupNeed {
                group: name.clone(),
                instance: g.instance.clone(),
                vcpus: u64::try_from(*vcpus.get(g.instance.as_str())?).ok()?,
                min: u64::from(g.min_nodes),
                max: u64::from(g.max_nodes),
            })
        })
        .collect();
    for quota in VCPU_QUOTAS {
        let in_it: Vec<&GroupNeed> = groups
            .iter()
            .filter(|g| vcpu_quota(&g.instance).map(|q| q.code) == Some(quota.code))
            .collect();
        if in_it.is_empty() {
            continue;
        }
        match quota_value(p, quota.code).await {
            Ok(value) => {
                let (errors, warning) = judge_quota(quota, value, &in_it, p.region());
                problems.extend(errors);
                warnings.extend(warning);
            }
            Err(e) => warnings.push(format!(
                "amazon_web_services.node_groups: the EC2 vCPU quota {} ({}) was not checked: {e}; preflight needs `servicequotas:GetServiceQuota` to check it",
                quota.code, quota.name
            )),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn need(group: &str, instance: &str, vcpus: u64, min: u64, max: u64) -> GroupNeed {
        GroupNeed {
            group: group.into(),
            instance: instance.into(),
            vcpus,
            min,
            max,
        }
    }

    #[test]
    fn instance_families_fall_under_their_vcpu_quota() {
        let code = |t: &str| vcpu_quota(t).map(|q| q.code);
        for t in [
            "m5.xlarge",
            "c6gn.large",
            "r7i.large",
            "t3.small",
            "im4gn.large",
            "z1d.large",
        ] {
            assert_eq!(code(t), Some("L-1216C47A"), "{t}");
        }
        for t in ["g4dn.xlarge", "g6e.xlarge", "vt1.3xlarge", "gr6.4xlarge"] {
            assert_eq!(code(t), Some("L-DB2E81BA"), "{t}");
        }
        assert_eq!(code("p4d.24xlarge"), Some("L-417A185B"));
        for t in [
            "x2idn.large",
            "inf2.xlarge",
            "trn1.2xlarge",
            "f1.2xlarge",
            "hpc6a.48xlarge",
        ] {
            assert_eq!(code(t), None, "{t}");
        }
    }

    #[test]
    fn the_minimum_or_one_node_beyond_the_quota_is_an_error_the_maximum_a_warning() {
        let q = &VCPU_QUOTAS[0];
        let general = need("general", "m5.2xlarge", 8, 1, 1);
        let user = need("user", "m5.xlarge", 4, 1, 5);
        let groups = [&general, &user];
        // Minimum 12, maximum 28.
        let (errors, warning) = judge_quota(q, 10.0, &groups, "us-west-2");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("needs 12") && errors[0].contains("--desired-value 28"));
        assert!(warning.is_none());
        let (errors, warning) = judge_quota(q, 20.0, &groups, "us-west-2");
        assert!(errors.is_empty(), "{errors:?}");
        assert!(warning.is_some_and(|w| w.contains("may grow to 28")));
        assert_eq!(judge_quota(q, 28.0, &groups, "us-west-2"), (vec![], None));
        // A group at zero whose one node does not fit: it can never run.
        let gpu = need("gpu", "g4dn.xlarge", 4, 0, 1);
        let (errors, _) = judge_quota(&VCPU_QUOTAS[1], 0.0, &[&gpu], "eu-west-1");
        assert!(
            errors[0].starts_with("amazon_web_services.node_groups.gpu.instance")
                && errors[0].contains("--region eu-west-1"),
            "{errors:?}"
        );
        // A group that may have no node at all needs nothing.
        let off = need("gpu", "g4dn.xlarge", 4, 0, 0);
        assert_eq!(
            judge_quota(&VCPU_QUOTAS[1], 0.0, &[&off], "us-west-2"),
            (vec![], None)
        );
    }
}
