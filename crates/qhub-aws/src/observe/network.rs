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
        .map_err(|e| p.err(AwsError::from_sdk("DescribeVpcs", e)))?;
    let mut out = Vec::new();
    for v in r.vpcs() {
        let id = v.vpc_id().unwrap_or_default().to_string();
        let attr = |a: aws_sdk_ec2::types::VpcAttributeName| {
            ec2.describe_vpc_attribute().vpc_id(&id).attribute(a).send()
        };
        let support = attr(aws_sdk_ec2::types::VpcAttributeName::EnableDnsSupport)
            .await
            .map_err(|e| p.err(AwsError::from_sdk("DescribeVpcAttribute", e)))?
            .enable_dns_support()
            .and_then(|a| a.value())
            .unwrap_or(false);
        let hostnames = attr(aws_sdk_ec2::types::VpcAttributeName::EnableDnsHostnames)
            .await
            .map_err(|e| p.err(AwsError::from_sdk("DescribeVpcAttribute", e)))?
            .enable_dns_hostnames()
            .and_then(|a| a.value())
            .unwrap_or(false);
        out.push(Found {
            id: ResourceId::new(VPC, name_or(v.tags(), &id)),
            spec: json!({
                "cidr": v.cidr_block().unwrap_or_default(),
                "dns_support": support,
                "dns_hostnames": hostnames,
            }),
            state: v
                .state()
                .map(|s| s.as_str().to_lowercase())
                .unwrap_or_default(),
            cloud_id: id,
        });
    }
    if has_duplicates(&out) {
        // The VPC with the most of our subnets is kept.
        let r = ec2
            .describe_subnets()
            .set_filters(Some(owner_filters(o, None)))
            .send()
            .await
            .map_err(|e| p.err(AwsError::from_sdk("DescribeSubnets", e)))?;
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
        .map_err(|e| p.err(AwsError::from_sdk("DescribeSubnets", e)))?;
    let out: Vec<Found> = r
        .subnets()
        .iter()
        .map(|s| {
            let id = s.subnet_id().unwrap_or_default().to_string();
            Found {
                id: ResourceId::new(SUBNET, name_or(s.tags(), &id)),
                spec: json!({
                    "cidr": s.cidr_block().unwrap_or_default(),
                    "map_public_ip_on_launch": s.map_public_ip_on_launch().unwrap_or(false),
                    "availability_zone": s.availability_zone().unwrap_or_default(),
                    "vpc_id": s.vpc_id(),
                }),
                state: s
                    .state()
                    .map(|s| s.as_str().to_lowercase())
                    .unwrap_or_default(),
                cloud_id: id,
            }
        })
        .collect();
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
        .map_err(|e| p.err(AwsError::from_sdk("DescribeInternetGateways", e)))?;
    let out: Vec<Found> = r
        .internet_gateways()
        .iter()
        .map(|g| {
            let id = g.internet_gateway_id().unwrap_or_default().to_string();
            let attached = g
                .attachments()
                .iter()
                .filter_map(|a| a.vpc_id())
                .map(|v| vpc_names.get(v).cloned().unwrap_or_else(|| v.to_string()))
                .next();
            Found {
                id: ResourceId::new(INTERNET_GATEWAY, name_or(g.tags(), &id)),
                spec: json!({"attached_to": attached, "vpc_ids": g.attachments().iter().filter_map(|a| a.vpc_id()).collect::<Vec<_>>()}),
                state: "available".into(),
                cloud_id: id,
            }
        })
        .collect();
    // The gateway attached to the kept VPC is kept (a VPC has at most one), else an attached one.
    dedupe_in_vpc(p, o, out, |f| !vpcs_of(f).is_empty()).await
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
        .map_err(|e| p.err(AwsError::from_sdk("DescribeRouteTables", e)))?;
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
                .then_some("internet_gateway");
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
            Found {
                id: ResourceId::new(ROUTE_TABLE, name_or(t.tags(), &id)),
                spec: json!({
                    "default_route": default_route,
                    "subnets": subnets,
                    "vpc_id": t.vpc_id(),
                }),
                state: "available".into(),
                cloud_id: id,
            }
        })
        .collect();
    // The table with the default route and the most subnets is kept.
    dedupe_in_vpc(p, o, out, |f| {
        (
            f.spec.get("default_route").is_some_and(|r| !r.is_null()),
            spec_strs(&f.spec, "subnets").len(),
        )
    })
    .await
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
        .map_err(|e| p.err(AwsError::from_sdk("DescribeSecurityGroups", e)))?;
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
            Found {
                id: ResourceId::new(SECURITY_GROUP, name_or(g.tags(), &id)),
                spec: json!({
                    "ingress_from_self": from_self,
                    "nfs_from": nfs_from,
                    "vpc_id": g.vpc_id(),
                }),
                state: "available".into(),
                cloud_id: id,
            }
        })
        .collect();
    // The group allowing traffic from itself is kept.
    dedupe_in_vpc(p, o, out, |f| {
        f.spec.get("ingress_from_self").and_then(Json::as_bool) == Some(true)
    })
    .await
}
