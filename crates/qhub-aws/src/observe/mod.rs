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
use qhub_core::provider::{Ownership, ProviderError, spec};
use serde_json::Value as Json;

use crate::AwsProvider;
use crate::desired::{
    self, ACCESS_ENTRY, EFS, EFS_MOUNT_TARGET, EKS_ADDON, EKS_CLUSTER, IAM_PATH, IAM_ROLE,
    INTERNET_GATEWAY, LEGACY_IAM_PATH, NAME_TAG, NFS_PORT, NODE_GROUP, Names, POD_IDENTITY,
    ROUTE_TABLE, SECURITY_GROUP, SUBNET, VPC, VPC_CIDR,
};
use crate::sent::Sent;
use crate::spec::{
    AccessEntrySpec, AccessPolicy, AddonSpec, ClusterObserved, DefaultRoute, FileSystemSpec,
    InternetGatewayObserved, MountTargetObserved, NetworkInterfaceObserved, NodeGroupObserved,
    PodIdentityObserved, RoleObserved, RouteTableObserved, SecurityGroupObserved, SubnetObserved,
    VolumeObserved, VpcSpec,
};

mod access_entries;
mod efs;
mod eks;
mod iam;
pub mod left;
mod network;

pub use access_entries::*;
pub use efs::*;
pub use eks::*;
pub use iam::*;
pub use network::*;

/// One resource found.
#[derive(Debug, Clone)]
pub struct Found {
    /// Kind and name.
    pub id: ResourceId,
    /// The cloud's id (`vpc-…`, a role name, a cluster name, `fs-…`).
    pub cloud_id: String,
    /// Properties in the shape of the desired spec: one of [`crate::spec`]'s observed types,
    /// written with [`spec::write`] and read back with [`Found::spec_as`].
    pub spec: Json,
    /// The cloud's state word, lower case.
    pub state: String,
    /// The cloud ids of what it lives in: the VPCs of a subnet, route table, security group
    /// or internet gateway, the file system of a mount target. Beside
    /// [`desired::dependencies`] (by name, so naming the kept copies) these order an extra
    /// VPC's or file system's deletion after what is in it, and tell which VPC's copy to keep.
    pub lives_in: Vec<String>,
}

impl Found {
    /// A resource found with its typed observed `spec`, living in nothing.
    pub fn new<S: serde::Serialize>(
        id: ResourceId,
        cloud_id: impl Into<String>,
        spec: &S,
        state: impl Into<String>,
    ) -> Result<Self, ProviderError> {
        Ok(Self {
            spec: spec::write(&id, OBSERVED, spec)?,
            id,
            cloud_id: cloud_id.into(),
            state: state.into(),
            lives_in: Vec::new(),
        })
    }

    /// The same, living in the resources of cloud ids `lives_in`.
    pub fn within(mut self, lives_in: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.lives_in = lives_in.into_iter().map(Into::into).collect();
        self
    }

    /// Its spec, read back as `S` (an error naming the resource and the field otherwise).
    pub fn spec_as<S: serde::de::DeserializeOwned>(&self) -> Result<S, ProviderError> {
        spec::read(&self.id, OBSERVED, &self.spec)
    }
}

/// What a found resource's spec is called in errors.
const OBSERVED: &str = "observed spec";

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

/// True when `f` lives in VPC `vpc`.
fn in_vpc(f: &Found, vpc: Option<&str>) -> bool {
    vpc.is_some_and(|v| f.lives_in.iter().any(|l| l == v))
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
    let spanned: std::collections::BTreeSet<&str> = found
        .iter()
        .flat_map(|f| f.lives_in.iter().map(String::as_str))
        .collect();
    if spanned.len() <= 1 && !has_duplicates(&found) {
        return Ok(found);
    }
    let vpc = kept_vpc(p, o).await?;
    let mut found = dedupe(found, |f| (in_vpc(f, vpc.as_deref()), in_use(f)));
    if vpc.is_some() {
        for f in &mut found {
            if !is_extra(&f.id.name) && !f.lives_in.is_empty() && !in_vpc(f, vpc.as_deref()) {
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

/// The ids of the found resources that `f` lives in ([`Found::lives_in`]).
fn containers(f: &Found, by_cloud_id: &BTreeMap<&str, &ResourceId>) -> Vec<ResourceId> {
    f.lives_in
        .iter()
        .filter_map(|id| by_cloud_id.get(id.as_str()).map(|r| (*r).clone()))
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
    let left = left_by_the_cluster(p, o, &found).await?;
    warn_about_support(p, &found)?;
    Ok(found
        .into_iter()
        .zip(depends_on)
        .map(|(f, depends_on)| {
            let state = state_of(&f.id.kind, &f.state);
            let mut observed = Observed::new(f.id, Stage::Infrastructure, f.spec, state);
            observed.depends_on = depends_on;
            observed.cloud_id = Some(f.cloud_id);
            // An access entry goes with its cluster: a destroy deletes the cluster first (an
            // identity listed in cluster_admins must not lose its access before the cluster's
            // LoadBalancer Services are deleted through it), and the entry's own delete then
            // finds nothing to do.
            if observed.id.kind == ACCESS_ENTRY {
                observed.created_with = Some(ResourceId::new(EKS_CLUSTER, o.prefix()));
            }
            observed
        })
        .chain(left)
        .collect())
}

/// Warns (once per cluster and process) when a cluster is within
/// [`crate::versions::WARN_DAYS`] of leaving EKS standard support, or past it: `plan`,
/// `status` and `deploy` all observe.
fn warn_about_support(p: &AwsProvider, found: &[Found]) -> Result<(), ProviderError> {
    for f in found.iter().filter(|f| f.id.kind == EKS_CLUSTER) {
        let c: ClusterObserved = f.spec_as()?;
        // A cluster that does not say its version has nothing to warn about; one that does not
        // say its support type is on EKS's default, EXTENDED (EKS API reference,
        // UpgradePolicyRequest).
        let Some(version) = c.kubernetes_version.as_deref() else {
            continue;
        };
        let support = c.support_type.as_deref().unwrap_or("EXTENDED");
        let Some(warning) = crate::versions::support_warning(
            &f.id.name,
            version,
            support,
            crate::versions::today(),
        ) else {
            continue;
        };
        let first = p
            .warned
            .lock()
            .map(|mut w| w.insert(f.id.name.clone()))
            .unwrap_or(false);
        if first {
            tracing::warn!("{warning}");
        }
    }
    Ok(())
}

/// What the cluster's controllers made for its workloads and would outlive it: the EBS volumes
/// of PersistentVolumeClaims and the network interfaces load balancers left in our VPC
/// ([`Observed::made_by_cluster`]). Each is deleted with the cluster when it exists (its delete
/// sweeps them), and a network interface before the subnet it is in.
async fn left_by_the_cluster(
    p: &AwsProvider,
    o: &Ownership,
    found: &[Found],
) -> Result<Vec<Observed>, ProviderError> {
    let cluster = found
        .iter()
        .find(|f| f.id.kind == EKS_CLUSTER && f.id.name == o.prefix())
        .map(|f| f.id.clone());
    let subnet_of = |cloud_id: &str| {
        found
            .iter()
            .find(|f| f.id.kind == SUBNET && f.cloud_id == cloud_id)
            .map(|f| f.id.clone())
    };
    let observed = |f: Found| {
        let mut x = Observed::new(f.id, Stage::Infrastructure, f.spec, ResourceState::Ready);
        x.cloud_id = Some(f.cloud_id);
        x.created_with.clone_from(&cluster);
        x.made_by_cluster = true;
        x
    };
    let mut out = Vec::new();
    for v in left::left_volumes(p, o).await? {
        let id = v.volume_id().unwrap_or_default().to_string();
        let tag = |k: &str| {
            v.tags()
                .iter()
                .find(|t| t.key() == Some(k))
                .and_then(|t| t.value())
                .unwrap_or_default()
                .to_string()
        };
        let spec = VolumeObserved {
            claim: tag(left::PVC_NAME_TAG),
            namespace: tag("kubernetes.io/created-for/pvc/namespace"),
            size_gib: v.size(),
            state: v.state().map(|s| s.as_str().to_string()),
        };
        let f = Found::new(ResourceId::new(desired::EBS_VOLUME, &id), id, &spec, "")?;
        out.push(observed(f));
    }
    let Some(vpc) = found
        .iter()
        .find(|f| f.id.kind == VPC && f.id.name == o.prefix())
    else {
        return Ok(out);
    };
    for eni in left::left_interfaces(p, &vpc.cloud_id, &o.prefix()).await? {
        let id = eni.network_interface_id().unwrap_or_default().to_string();
        let subnet = eni.subnet_id().and_then(subnet_of);
        let spec = NetworkInterfaceObserved {
            description: eni.description().map(str::to_string),
            subnet: subnet.as_ref().map(|s| s.name.clone()),
            status: eni.status().map(|s| s.as_str().to_string()),
        };
        let f = Found::new(
            ResourceId::new(desired::NETWORK_INTERFACE, &id),
            id,
            &spec,
            "",
        )?;
        let mut x = observed(f);
        x.depends_on = subnet.into_iter().collect();
        out.push(x);
    }
    Ok(out)
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

/// What exists, as the price table prices it ([`qhub_core::provider::Provider::priced_shape`]):
/// the EKS cluster, each node group's first instance type and scaling bounds (named by its
/// [`desired::GROUP_LABEL`]), the EFS file system, and the load balancer from the Kubernetes
/// objects. EFS has no provisioned size (it bills the bytes stored), so an existing one is
/// priced at the config's `storage.shared_filesystem` as the upper bound, as `qhub cost` does:
/// a size change moves no AWS cost. `None` when a node group lacks what pricing needs.
pub fn priced_shape(
    config: &qhub_core::config::Config,
    observed: &[Observed],
) -> Option<qhub_core::cost::Shape> {
    let mut shape = qhub_core::kubernetes::priced::shape_of_objects(observed);
    for o in observed.iter().filter(|o| o.stage == Stage::Infrastructure) {
        match o.id.kind.as_str() {
            EKS_CLUSTER => shape.cluster = true,
            EFS => shape.storage = Some(config.storage.shared_filesystem.clone()),
            NODE_GROUP => {
                // The fields [`NodeGroupObserved`] and the desired spec share, read alone: the
                // rest of the spec is not needed to price it.
                let text = |key: &str| o.spec.get(key).and_then(Json::as_str).map(str::to_string);
                let bound = |key: &str| {
                    o.spec
                        .get(key)
                        .and_then(Json::as_u64)
                        .and_then(|n| u32::try_from(n).ok())
                };
                let group = o
                    .spec
                    .get("labels")
                    .and_then(|l| l.get(desired::GROUP_LABEL))
                    .and_then(Json::as_str)?;
                shape.node_groups.insert(
                    group.to_string(),
                    qhub_core::cost::GroupShape {
                        instance: text("instance_type")?,
                        min_nodes: bound("min_nodes")?,
                        max_nodes: bound("max_nodes")?,
                        accelerators: false,
                    },
                );
            }
            _ => {}
        }
    }
    Some(shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a deploy of the default AWS config makes (EFS, priced at the config's size) is
    /// priced as the config; a node group scaled outside qhub is priced as it is.
    #[test]
    fn what_a_deploy_makes_is_priced_as_the_config() {
        qhub_core::conformance::priced_as_the_config(
            qhub_core::config::ProviderKind::Aws,
            |config| crate::desired::desired(config, true).unwrap(),
            false,
            "node_group",
            priced_shape,
        )
        .unwrap();
    }

    fn found(kind: &str, name: &str, cloud_id: &str, lives_in: &[&str]) -> Found {
        Found {
            id: ResourceId::new(kind, name),
            cloud_id: cloud_id.into(),
            spec: Json::Null,
            state: "available".into(),
            lives_in: lives_in.iter().map(|s| s.to_string()).collect(),
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
            found(VPC, "demo-dev", "vpc-2", &[]),
            found(SUBNET, "demo-dev-subnet-0", "subnet-1", &[]),
            // Same name, another kind: not a duplicate.
            found(INTERNET_GATEWAY, "demo-dev", "igw-1", &[]),
        ];
        assert!(!has_duplicates(&all));
        let out = dedupe(all.clone(), |_| ());
        assert_eq!(names(&out), names(&all));
    }

    #[test]
    fn the_most_used_copy_keeps_the_name_and_the_others_become_extras() {
        let all = vec![
            found(INTERNET_GATEWAY, "demo-dev", "igw-1", &[]),
            found(INTERNET_GATEWAY, "demo-dev", "igw-2", &["vpc-1"]),
            found(INTERNET_GATEWAY, "demo-dev", "igw-3", &[]),
            found(VPC, "demo-dev", "vpc-1", &[]),
        ];
        assert!(has_duplicates(&all));
        let out = dedupe(all, |f| !f.lives_in.is_empty());
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
        let a = found(SECURITY_GROUP, "demo-dev", "sg-b", &[]);
        let b = found(SECURITY_GROUP, "demo-dev", "sg-a", &[]);
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
            found(VPC, "demo-dev", "vpc-1", &[]),
            found(VPC, "demo-dev~vpc-2", "vpc-2", &[]),
            found(EFS, "demo-dev-shared~fs-2", "fs-2", &[]),
        ];
        let by_cloud_id: BTreeMap<&str, &ResourceId> =
            all.iter().map(|f| (f.cloud_id.as_str(), &f.id)).collect();
        let subnet = found(SUBNET, "demo-dev-subnet-0~subnet-9", "subnet-9", &["vpc-2"]);
        assert_eq!(
            containers(&subnet, &by_cloud_id),
            [ResourceId::new(VPC, "demo-dev~vpc-2")]
        );
        let igw = found(
            INTERNET_GATEWAY,
            "demo-dev~igw-9",
            "igw-9",
            &["vpc-2", "vpc-unknown"],
        );
        assert_eq!(
            containers(&igw, &by_cloud_id),
            [ResourceId::new(VPC, "demo-dev~vpc-2")]
        );
        let mt = found(
            EFS_MOUNT_TARGET,
            "demo-dev-shared-0~fsmt-9",
            "fsmt-9",
            &["fs-2"],
        );
        assert_eq!(
            containers(&mt, &by_cloud_id),
            [ResourceId::new(EFS, "demo-dev-shared~fs-2")]
        );
    }
}
