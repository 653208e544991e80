//! Observing the network: VPCs, subnets, internet gateways, route tables, security groups (EC2 `tag:` filters).

use super::*;

/// The deployment's VPCs.
pub async fn vpcs(p: &AwsProvider, o: &Ownership) -> Result<Vec<Found>, ProviderError> {
    let ec2 = &p.clients().await?.ec2;
    let r = ec2
        .describe_vpcs()
        .set_filters(Some(owner_filters(o, None)))
        .send()
        .await
        .sent(p, "DescribeVpcs")?;
    let mut out = Vec::new();
    for v in r.vpcs() {
        let id = v.vpc_id().unwrap_or_default().to_string();
        let attr = |a: aws_sdk_ec2::types::VpcAttributeName| {
            ec2.describe_vpc_attribute().vpc_id(&id).attribute(a).send()
        };
        let support = attr(aws_sdk_ec2::types::VpcAttributeName::EnableDnsSupport)
            .await
            .sent(p, "DescribeVpcAttribute")?
            .enable_dns_support()
            .and_then(|a| a.value())
            .unwrap_or(false);
        let hostnames = attr(aws_sdk_ec2::types::VpcAttributeName::EnableDnsHostnames)
            .await
            .sent(p, "DescribeVpcAttribute")?
            .enable_dns_hostnames()
            .and_then(|a| a.value())
            .unwrap_or(false);
        let spec = VpcSpec {
            cidr: v.cidr_block().unwrap_or_default().to_string(),
            dns_support: support,
            dns_hostnames: hostnames,
        };
        let state = v
            .state()
            .map(|s| s.as_str().to_lowercase())
            .unwrap_or_default();
        out.push(Found::new(
            ResourceId::new(VPC, name_or(v.tags(), &id)),
            id,
            &spec,
            state,
        )?);
    }
    if has_duplicates(&out) {
        // The VPC with the most of our subnets is kept.
        let r = ec2
            .describe_subnets()
            .set_filters(Some(owner_filters(o, None)))
            .send()
            .await
            .sent(p, "DescribeSubnets")?;
        let mut subnets: BTreeMap<String, usize> = BTreeMap::new();
        for v in r.subnets().iter().filter_map(|s| s.vpc_id()) {
            *subnets.entry(v.to_string()).or_default() += 1;
        }
        out = dedupe(out, |f| subnets.get(&f.cloud_id).copied().unwrap_or(0));
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
        .sent(p, "DescribeSubnets")?;
    let out: Vec<Found> = r
        .subnets()
        .iter()
        .map(|s| {
            let id = s.subnet_id().unwrap_or_default().to_string();
            let spec = SubnetObserved {
                cidr: s.cidr_block().unwrap_or_default().to_string(),
                map_public_ip_on_launch: s.map_public_ip_on_launch().unwrap_or(false),
                availability_zone: s.availability_zone().unwrap_or_default().to_string(),
                vpc_id: s.vpc_id().map(str::to_string),
            };
            let state = s
                .state()
                .map(|s| s.as_str().to_lowercase())
                .unwrap_or_default();
            Ok(Found::new(
                ResourceId::new(SUBNET, name_or(s.tags(), &id)),
                id,
                &spec,
                state,
            )?
            .within(s.vpc_id()))
        })
        .collect::<Result<_, ProviderError>>()?;
    dedupe_in_vpc(p, o, out, |_| ()).await
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
        .sent(p, "DescribeInternetGateways")?;
    let out: Vec<Found> = r
        .internet_gateways()
        .iter()
        .map(|g| {
            let id = g.internet_gateway_id().unwrap_or_default().to_string();
            let vpc_ids: Vec<String> = g
                .attachments()
                .iter()
                .filter_map(|a| a.vpc_id())
                .map(str::to_string)
                .collect();
            let attached = vpc_ids
                .first()
                .map(|v| vpc_names.get(v).cloned().unwrap_or_else(|| v.clone()));
            let spec = InternetGatewayObserved {
                attached_to: attached,
                vpc_ids: vpc_ids.clone(),
            };
            let name = name_or(g.tags(), &id);
            Ok(Found::new(
                ResourceId::new(INTERNET_GATEWAY, name),
                id,
                &spec,
                "available",
            )?
            .within(vpc_ids))
        })
        .collect::<Result<_, ProviderError>>()?;
    // The gateway attached to the kept VPC is kept (a VPC has at most one), else an attached one.
    dedupe_in_vpc(p, o, out, |f| !f.lives_in.is_empty()).await
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
        .sent(p, "DescribeRouteTables")?;
    let mut rank: BTreeMap<String, (bool, usize)> = BTreeMap::new();
    let out: Vec<Found> = r
        .route_tables()
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
                .then_some(DefaultRoute::InternetGateway);
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
            // How much it is in use, for choosing among copies.
            rank.insert(id.clone(), (default_route.is_some(), subnets.len()));
            let spec = RouteTableObserved {
                default_route,
                subnets,
                vpc_id: t.vpc_id().map(str::to_string),
            };
            let name = name_or(t.tags(), &id);
            Ok(
                Found::new(ResourceId::new(ROUTE_TABLE, name), id, &spec, "available")?
                    .within(t.vpc_id()),
            )
        })
        .collect::<Result<_, ProviderError>>()?;
    // The table with the default route and the most subnets is kept.
    dedupe_in_vpc(p, o, out, |f| rank.get(&f.cloud_id).copied()).await
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
        .sent(p, "DescribeSecurityGroups")?;
    let mut from_itself = std::collections::BTreeSet::new();
    let out: Vec<Found> = r
        .security_groups()
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
            // The range NFS (TCP 2049) is allowed from, when a rule allows it by range.
            let nfs_from = g
                .ip_permissions()
                .iter()
                .filter(|perm| {
                    perm.ip_protocol() == Some("-1")
                        || (perm.ip_protocol() == Some("tcp")
                            && perm.from_port().unwrap_or(0) <= NFS_PORT
                            && perm.to_port().unwrap_or(0) >= NFS_PORT)
                })
                .flat_map(|perm| perm.ip_ranges().iter().filter_map(|r| r.cidr_ip()))
                .min_by_key(|cidr| usize::from(*cidr != VPC_CIDR));
            let spec = SecurityGroupObserved {
                ingress_from_self: from_self,
                nfs_from: nfs_from.map(str::to_string),
                vpc_id: g.vpc_id().map(str::to_string),
            };
            if from_self {
                from_itself.insert(id.clone());
            }
            let name = name_or(g.tags(), &id);
            Ok(Found::new(
                ResourceId::new(SECURITY_GROUP, name),
                id,
                &spec,
                "available",
            )?
            .within(g.vpc_id()))
        })
        .collect::<Result<_, ProviderError>>()?;
    // The group allowing traffic from itself is kept.
    dedupe_in_vpc(p, o, out, |f| from_itself.contains(&f.cloud_id)).await
}
