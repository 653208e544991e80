//! The network: VPC, subnets, internet gateway, route table and security group (EC2).

use std::collections::BTreeMap;

use super::{Sent, by_name, failed, names_by_id, need, spec_of, tags_with_name};
use crate::AwsProvider;
use crate::desired::{self, Names};
use crate::errors::AwsError;
use crate::observe;
use crate::spec::{
    DefaultRoute, InternetGatewayObserved, RouteTableObserved, RouteTableSpec,
    SecurityGroupObserved, SecurityGroupSpec, SubnetObserved, SubnetSpec, VpcSpec,
};
use aws_sdk_ec2::types::{
    AttributeBooleanValue, IpPermission, IpRange, ResourceType, Tag, TagSpecification,
    UserIdGroupPair,
};
use qhub_core::plan::Resource;
use qhub_core::provider::{Ownership, ProviderError};

fn tag_spec(kind: ResourceType, o: &Ownership, name: &str) -> TagSpecification {
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

fn yes() -> AttributeBooleanValue {
    AttributeBooleanValue::builder().value(true).build()
}

/// The created resource's id, or an error naming the operation that returned none.
fn returned(id: Option<&str>, operation: &str) -> Result<String, ProviderError> {
    id.map(str::to_string)
        .ok_or_else(|| failed(format!("{operation} returned no id")))
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
        .sent(p, "DescribeAvailabilityZones")?;
    let mut zones: Vec<String> = r
        .availability_zones()
        .iter()
        .filter(|z| z.state().is_some_and(|s| s.as_str() == "available"))
        .filter_map(|z| z.zone_name().map(str::to_string))
        .collect();
    zones.sort();
    Ok(zones)
}

pub(super) async fn vpc_id(p: &AwsProvider, o: &Ownership) -> Result<String, ProviderError> {
    let v = by_name(observe::vpcs(p, o).await?, &o.prefix());
    Ok(need("the VPC", v)?.cloud_id)
}

pub(super) async fn ensure_vpc(
    p: &AwsProvider,
    o: &Ownership,
    r: &Resource,
) -> Result<(), ProviderError> {
    let ec2 = &p.clients().await?.ec2;
    let want: VpcSpec = spec_of(r)?;
    let (id, have) = match by_name(observe::vpcs(p, o).await?, &r.id.name) {
        Some(f) => {
            let have: VpcSpec = f.spec_as()?;
            (f.cloud_id, Some(have))
        }
        None => {
            let v = ec2
                .create_vpc()
                .cidr_block(&want.cidr)
                .tag_specifications(tag_spec(ResourceType::Vpc, o, &r.id.name))
                .send()
                .await
                .sent(p, "CreateVpc")?;
            (
                returned(v.vpc().and_then(|v| v.vpc_id()), "CreateVpc")?,
                None,
            )
        }
    };
    // One attribute per call: the API refuses both at once.
    if want.dns_support && !have.as_ref().is_some_and(|h| h.dns_support) {
        ec2.modify_vpc_attribute()
            .vpc_id(&id)
            .enable_dns_support(yes())
            .send()
            .await
            .sent(p, "ModifyVpcAttribute")?;
    }
    if want.dns_hostnames && !have.as_ref().is_some_and(|h| h.dns_hostnames) {
        ec2.modify_vpc_attribute()
            .vpc_id(&id)
            .enable_dns_hostnames(yes())
            .send()
            .await
            .sent(p, "ModifyVpcAttribute")?;
    }
    Ok(())
}

pub(super) async fn ensure_subnet(
    p: &AwsProvider,
    o: &Ownership,
    r: &Resource,
) -> Result<(), ProviderError> {
    let ec2 = &p.clients().await?.ec2;
    let want: SubnetSpec = spec_of(r)?;
    let (id, public) = match by_name(observe::subnets(p, o).await?, &r.id.name) {
        Some(f) => {
            let have: SubnetObserved = f.spec_as()?;
            (f.cloud_id, have.map_public_ip_on_launch)
        }
        None => {
            let zone = match &want.availability_zone {
                Some(z) => z.clone(),
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
            let mut spec = tag_spec(ResourceType::Subnet, o, &r.id.name);
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
                .vpc_id(vpc_id(p, o).await?)
                .cidr_block(&want.cidr)
                .availability_zone(zone)
                .tag_specifications(spec)
                .send()
                .await
                .sent(p, "CreateSubnet")?;
            let id = returned(s.subnet().and_then(|s| s.subnet_id()), "CreateSubnet")?;
            (id, false)
        }
    };
    // Nodes of managed node groups in public subnets need public IPs (EKS docs, "Managed node
    // groups": MapPublicIpOnLaunch must be true since April 2020).
    if want.map_public_ip_on_launch && !public {
        ec2.modify_subnet_attribute()
            .subnet_id(id)
            .map_public_ip_on_launch(yes())
            .send()
            .await
            .sent(p, "ModifySubnetAttribute")?;
    }
    Ok(())
}

pub(super) async fn ensure_internet_gateway(
    p: &AwsProvider,
    o: &Ownership,
    r: &Resource,
) -> Result<(), ProviderError> {
    let ec2 = &p.clients().await?.ec2;
    let vpc = vpc_id(p, o).await?;
    let found = observe::internet_gateways(p, o, &BTreeMap::new()).await?;
    let (id, attached) = match by_name(found, &r.id.name) {
        Some(f) => {
            let vpcs = f.spec_as::<InternetGatewayObserved>()?.vpc_ids;
            // Attached elsewhere (to an extra copy of the VPC, being deleted): a gateway
            // attaches to one VPC only, so it leaves that one first.
            for other in vpcs.iter().filter(|v| **v != vpc) {
                ec2.detach_internet_gateway()
                    .internet_gateway_id(&f.cloud_id)
                    .vpc_id(other)
                    .send()
                    .await
                    .sent_unless(p, "DetachInternetGateway", |e| {
                        e.is_not_found() || e.code.as_deref() == Some("Gateway.NotAttached")
                    })?;
            }
            (f.cloud_id.clone(), vpcs.contains(&vpc))
        }
        None => {
            let g = ec2
                .create_internet_gateway()
                .tag_specifications(tag_spec(ResourceType::InternetGateway, o, &r.id.name))
                .send()
                .await
                .sent(p, "CreateInternetGateway")?;
            let id = g.internet_gateway().and_then(|g| g.internet_gateway_id());
            (returned(id, "CreateInternetGateway")?, false)
        }
    };
    if !attached {
        ec2.attach_internet_gateway()
            .internet_gateway_id(id)
            .vpc_id(vpc)
            .send()
            .await
            .sent(p, "AttachInternetGateway")?;
    }
    Ok(())
}

pub(super) async fn ensure_route_table(
    p: &AwsProvider,
    o: &Ownership,
    r: &Resource,
) -> Result<(), ProviderError> {
    let ec2 = &p.clients().await?.ec2;
    let want: RouteTableSpec = spec_of(r)?;
    let subnets = observe::subnets(p, o).await?;
    let found = observe::route_tables(p, o, &names_by_id(&subnets)).await?;
    let (id, have) = match by_name(found, &r.id.name) {
        Some(f) => {
            let have: RouteTableObserved = f.spec_as()?;
            (f.cloud_id, Some(have))
        }
        None => {
            let t = ec2
                .create_route_table()
                .vpc_id(vpc_id(p, o).await?)
                .tag_specifications(tag_spec(ResourceType::RouteTable, o, &r.id.name))
                .send()
                .await
                .sent(p, "CreateRouteTable")?;
            let id = t.route_table().and_then(|t| t.route_table_id());
            (returned(id, "CreateRouteTable")?, None)
        }
    };
    let (route, associated) = match have {
        Some(h) => (h.default_route, h.subnets),
        None => (None, Vec::new()),
    };
    // The only default route there is goes to the internet gateway.
    if route != Some(want.default_route) && want.default_route == DefaultRoute::InternetGateway {
        let igws = observe::internet_gateways(p, o, &BTreeMap::new()).await?;
        let igw = need("the internet gateway", by_name(igws, &o.prefix()))?;
        ec2.create_route()
            .route_table_id(&id)
            .destination_cidr_block("0.0.0.0/0")
            .gateway_id(igw.cloud_id)
            .send()
            .await
            .sent_unless(p, "CreateRoute", AwsError::is_already_exists)?;
    }
    for name in want.subnets.iter().filter(|n| !associated.contains(n)) {
        let subnet = need(
            &format!("subnet {name}"),
            subnets.iter().find(|s| s.id.name == *name),
        )?;
        ec2.associate_route_table()
            .route_table_id(&id)
            .subnet_id(&subnet.cloud_id)
            .send()
            .await
            .sent_unless(p, "AssociateRouteTable", AwsError::is_already_exists)?;
    }
    Ok(())
}

pub(super) async fn ensure_security_group(
    p: &AwsProvider,
    o: &Ownership,
    r: &Resource,
) -> Result<(), ProviderError> {
    let ec2 = &p.clients().await?.ec2;
    let want: SecurityGroupSpec = spec_of(r)?;
    let (id, from_self, nfs_from) = match by_name(observe::security_groups(p, o).await?, &r.id.name)
    {
        Some(f) => {
            let have: SecurityGroupObserved = f.spec_as()?;
            (f.cloud_id, have.ingress_from_self, have.nfs_from)
        }
        None => {
            let g = ec2
                .create_security_group()
                .group_name(&r.id.name)
                .description(format!("qhub-rs {}: cluster, nodes and EFS", r.id.name))
                .vpc_id(vpc_id(p, o).await?)
                .tag_specifications(tag_spec(ResourceType::SecurityGroup, o, &r.id.name))
                .send()
                .await
                .sent(p, "CreateSecurityGroup")?;
            (returned(g.group_id(), "CreateSecurityGroup")?, false, None)
        }
    };
    if want.ingress_from_self && !from_self {
        // Everything inside the group talks to everything else (nodes, control plane ENIs, NFS).
        let perm = IpPermission::builder()
            .ip_protocol("-1")
            .user_id_group_pairs(UserIdGroupPair::builder().group_id(&id).build())
            .build();
        ec2.authorize_security_group_ingress()
            .group_id(&id)
            .ip_permissions(perm)
            .send()
            .await
            .sent_unless(p, "AuthorizeSecurityGroupIngress", |e| {
                e.code.as_deref() == Some("InvalidPermission.Duplicate")
            })?;
    }
    let cidr = want.nfs_from.as_str();
    if nfs_from.as_deref() != Some(cidr) {
        // NFS to the EFS mount targets from the nodes, which are not in this group (see
        // desired::NFS_PORT for why by address range).
        let perm = IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(desired::NFS_PORT)
            .to_port(desired::NFS_PORT)
            .ip_ranges(
                IpRange::builder()
                    .cidr_ip(cidr)
                    .description("NFS to EFS from the cluster's nodes and pods")
                    .build(),
            )
            .build();
        ec2.authorize_security_group_ingress()
            .group_id(&id)
            .ip_permissions(perm)
            .send()
            .await
            .sent_unless(p, "AuthorizeSecurityGroupIngress", |e| {
                e.code.as_deref() == Some("InvalidPermission.Duplicate")
            })?;
    }
    Ok(())
}

pub(super) async fn delete_vpc(
    p: &AwsProvider,
    o: &Ownership,
    name: &str,
) -> Result<(), ProviderError> {
    if let Some(f) = by_name(observe::vpcs(p, o).await?, name) {
        let ec2 = &p.clients().await?.ec2;
        ec2.delete_vpc()
            .vpc_id(f.cloud_id)
            .send()
            .await
            .unless_gone(p, "DeleteVpc")?;
    }
    Ok(())
}

/// The ids of route table associations, except the main one (which goes with its VPC).
fn not_main<'a>(
    associations: impl IntoIterator<Item = &'a aws_sdk_ec2::types::RouteTableAssociation>,
) -> Vec<String> {
    associations
        .into_iter()
        .filter(|a| a.main() != Some(true))
        .filter_map(|a| a.route_table_association_id().map(str::to_string))
        .collect()
}

/// Removes the route table associations `ids`; one gone already is done.
async fn disassociate(p: &AwsProvider, ids: Vec<String>) -> Result<(), ProviderError> {
    let ec2 = &p.clients().await?.ec2;
    for id in ids {
        ec2.disassociate_route_table()
            .association_id(id)
            .send()
            .await
            .unless_gone(p, "DisassociateRouteTable")?;
    }
    Ok(())
}

pub(super) async fn delete_subnet(
    p: &AwsProvider,
    o: &Ownership,
    name: &str,
) -> Result<(), ProviderError> {
    if let Some(f) = by_name(observe::subnets(p, o).await?, name) {
        let ec2 = &p.clients().await?.ec2;
        // A subnet being replaced keeps the route table (it is updated with the new subnet
        // afterwards): its association goes first, so it can never hold the delete.
        let tables = ec2
            .describe_route_tables()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("association.subnet-id")
                    .values(&f.cloud_id)
                    .build(),
            )
            .send()
            .await
            .sent(p, "DescribeRouteTables")?;
        let of_subnet = not_main(
            tables
                .route_tables()
                .iter()
                .flat_map(|t| t.associations())
                .filter(|a| a.subnet_id() == Some(f.cloud_id.as_str())),
        );
        disassociate(p, of_subnet).await?;
        ec2.delete_subnet()
            .subnet_id(f.cloud_id)
            .send()
            .await
            .unless_gone(p, "DeleteSubnet")?;
    }
    Ok(())
}

pub(super) async fn delete_internet_gateway(
    p: &AwsProvider,
    o: &Ownership,
    name: &str,
) -> Result<(), ProviderError> {
    let found = observe::internet_gateways(p, o, &BTreeMap::new()).await?;
    let Some(f) = by_name(found, name) else {
        return Ok(());
    };
    let ec2 = &p.clients().await?.ec2;
    for vpc in f.spec_as::<InternetGatewayObserved>()?.vpc_ids {
        ec2.detach_internet_gateway()
            .internet_gateway_id(&f.cloud_id)
            .vpc_id(vpc)
            .send()
            .await
            .sent_unless(p, "DetachInternetGateway", |e| {
                e.is_not_found() || e.code.as_deref() == Some("Gateway.NotAttached")
            })?;
    }
    ec2.delete_internet_gateway()
        .internet_gateway_id(&f.cloud_id)
        .send()
        .await
        .unless_gone(p, "DeleteInternetGateway")?;
    Ok(())
}

pub(super) async fn delete_route_table(
    p: &AwsProvider,
    o: &Ownership,
    name: &str,
) -> Result<(), ProviderError> {
    // Found through observe, like every other kind, so an extra copy's name finds it too.
    let found = observe::route_tables(p, o, &BTreeMap::new()).await?;
    let Some(f) = by_name(found, name) else {
        return Ok(());
    };
    let ec2 = &p.clients().await?.ec2;
    let r = ec2
        .describe_route_tables()
        .route_table_ids(&f.cloud_id)
        .send()
        .await
        .unless_gone(p, "DescribeRouteTables")?;
    for t in r.iter().flat_map(|r| r.route_tables()) {
        let ids = not_main(t.associations());
        disassociate(p, ids).await?;
        if let Some(id) = t.route_table_id() {
            ec2.delete_route_table()
                .route_table_id(id)
                .send()
                .await
                .unless_gone(p, "DeleteRouteTable")?;
        }
    }
    Ok(())
}

pub(super) async fn delete_security_group(
    p: &AwsProvider,
    o: &Ownership,
    name: &str,
) -> Result<(), ProviderError> {
    if let Some(f) = by_name(observe::security_groups(p, o).await?, name) {
        let ec2 = &p.clients().await?.ec2;
        ec2.delete_security_group()
            .group_id(f.cloud_id)
            .send()
            .await
            .unless_gone(p, "DeleteSecurityGroup")?;
    }
    Ok(())
}
