//! Observing EKS: clusters, add-ons, Pod Identity associations and node groups, listed and
//! described (their list calls do not filter by tag).

use super::*;

/// The deployment's EKS clusters and their node groups. Not deduplicated: a cluster's name is
/// unique in the region, a node group's in its cluster.
pub async fn clusters(
    p: &AwsProvider,
    o: &Ownership,
    subnet_names: &BTreeMap<String, String>,
    sg_names: &BTreeMap<String, String>,
) -> Result<Vec<Found>, ProviderError> {
    let eks = &p.clients().await?.eks;
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let r = eks
            .list_clusters()
            .set_next_token(token.clone())
            .send()
            .await
            .sent(p, "ListClusters")?;
        names.extend(r.clusters().iter().cloned());
        match r.next_token() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    let mut out = Vec::new();
    for name in names {
        let c = match eks
            .describe_cluster()
            .name(&name)
            .send()
            .await
            .unless_gone(p, "DescribeCluster")?
        {
            Some(r) => r.cluster,
            None => continue,
        };
        let Some(c) = c else { continue };
        let tags: BTreeMap<String, String> =
            c.tags().cloned().unwrap_or_default().into_iter().collect();
        if !o.owns(&tags) {
            continue;
        }
        let vpc = c.resources_vpc_config();
        let mut subnets: Vec<String> = vpc
            .map(|v| v.subnet_ids())
            .unwrap_or_default()
            .iter()
            .map(|s| subnet_names.get(s).cloned().unwrap_or_else(|| s.clone()))
            .collect();
        subnets.sort();
        let sg = vpc
            .and_then(|v| v.security_group_ids().first())
            .map(|s| sg_names.get(s).cloned().unwrap_or_else(|| s.clone()));
        // Real EKS always answers the upgrade policy; an emulator that does not (moto) is
        // taken to hold what the config asks, so it plans no endless update.
        let support_type = c
            .upgrade_policy()
            .and_then(|u| u.support_type())
            .map(|s| s.as_str().to_string())
            .or_else(|| p.emulator().then(|| p.support_type.to_string()));
        // Real EKS always answers the access configuration (`CONFIG_MAP` for a cluster made
        // without one); an emulator that does not (moto) is taken to hold what we ask.
        let access_entries = c
            .access_config()
            .and_then(|a| a.authentication_mode())
            .map(|m| mode_has_access_entries(m.as_str()))
            .unwrap_or(p.emulator());
        let spec = ClusterObserved {
            kubernetes_version: c.version().map(str::to_string),
            role: c.role_arn().map(|r| arn_name(r).to_string()),
            subnets,
            security_group: sg,
            support_type,
            access_entries,
        };
        let state = c
            .status()
            .map(|s| s.as_str().to_lowercase())
            .unwrap_or_default();
        out.push(Found::new(
            ResourceId::new(EKS_CLUSTER, &name),
            name.clone(),
            &spec,
            state,
        )?);
        out.extend(node_groups(p, o, &name, subnet_names).await?);
        out.extend(addons(p, o, &name).await?);
        if access_entries {
            out.extend(super::access_entries(p, o, &name).await?);
        }
        out.extend(pod_identities(p, o, &name).await?);
    }
    Ok(out)
}

/// The deployment's EKS Pod Identity associations on cluster `cluster`: those carrying our
/// tags, so an association someone else made for another service account (or an add-on made
/// for itself) is never seen, changed or deleted. Each is named
/// [`desired::pod_identity_name`]. An endpoint that does not implement them (an emulator) has
/// none, as for add-ons.
pub async fn pod_identities(
    p: &AwsProvider,
    o: &Ownership,
    cluster: &str,
) -> Result<Vec<Found>, ProviderError> {
    let eks = &p.clients().await?.eks;
    let mut ids = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let Some(r) = eks
            .list_pod_identity_associations()
            .cluster_name(cluster)
            .set_next_token(token.clone())
            .send()
            .await
            .unless_absent(p, "ListPodIdentityAssociations", &[], true)?
        else {
            return Ok(Vec::new());
        };
        ids.extend(
            r.associations()
                .iter()
                // One an add-on made for itself (`ownerArn`) is the add-on's, never ours.
                .filter(|a| a.owner_arn().is_none())
                .filter_map(|a| a.association_id().map(str::to_string)),
        );
        match r.next_token() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    let mut out = Vec::new();
    for id in ids {
        let a = eks
            .describe_pod_identity_association()
            .cluster_name(cluster)
            .association_id(&id)
            .send()
            .await
            .unless_gone(p, "DescribePodIdentityAssociation")?
            .and_then(|r| r.association);
        let Some(a) = a else { continue };
        let tags: BTreeMap<String, String> =
            a.tags().cloned().unwrap_or_default().into_iter().collect();
        if !o.owns(&tags) {
            continue;
        }
        let namespace = a.namespace().unwrap_or_default();
        let service_account = a.service_account().unwrap_or_default();
        let spec = PodIdentityObserved {
            cluster: cluster.to_string(),
            namespace: namespace.to_string(),
            service_account: service_account.to_string(),
            role: a.role_arn().map(|r| arn_name(r).to_string()),
        };
        out.push(Found::new(
            ResourceId::new(
                POD_IDENTITY,
                desired::pod_identity_name(cluster, namespace, service_account),
            ),
            id,
            &spec,
            "active",
        )?);
    }
    Ok(out)
}

/// The deployment's add-ons of cluster `cluster` (those tagged ours). An endpoint that does
/// not implement add-ons (an emulator) has none, and the provider then stops wanting them.
pub async fn addons(
    p: &AwsProvider,
    o: &Ownership,
    cluster: &str,
) -> Result<Vec<Found>, ProviderError> {
    let eks = &p.clients().await?.eks;
    // An endpoint without add-ons (an emulator) has none.
    let listed = eks.list_addons().cluster_name(cluster).send().await;
    let Some(listed) = listed.unless_absent(p, "ListAddons", &[], true)? else {
        return Ok(Vec::new());
    };
    let names = listed.addons().to_vec();
    let mut out = Vec::new();
    for name in names {
        let a = match eks
            .describe_addon()
            .cluster_name(cluster)
            .addon_name(&name)
            .send()
            .await
            .unless_gone(p, "DescribeAddon")?
        {
            Some(r) => r.addon,
            None => continue,
        };
        let Some(a) = a else { continue };
        let tags: BTreeMap<String, String> =
            a.tags().cloned().unwrap_or_default().into_iter().collect();
        if !o.owns(&tags) {
            continue;
        }
        let spec = AddonSpec {
            cluster: cluster.to_string(),
        };
        let state = a
            .status()
            .map(|s| s.as_str().to_lowercase())
            .unwrap_or_default();
        out.push(Found::new(
            ResourceId::new(EKS_ADDON, &name),
            name,
            &spec,
            state,
        )?);
    }
    Ok(out)
}

/// The deployment's node groups of cluster `cluster`.
///
/// `subnet_names` names subnets by id (a subnet not in it is reported by its id).
pub async fn node_groups(
    p: &AwsProvider,
    o: &Ownership,
    cluster: &str,
    subnet_names: &BTreeMap<String, String>,
) -> Result<Vec<Found>, ProviderError> {
    let eks = &p.clients().await?.eks;
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let r = match eks
            .list_nodegroups()
            .cluster_name(cluster)
            .set_next_token(token.clone())
            .send()
            .await
            .unless_gone(p, "ListNodegroups")?
        {
            Some(r) => r,
            None => return Ok(Vec::new()),
        };
        names.extend(r.nodegroups().iter().cloned());
        match r.next_token() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    let mut out = Vec::new();
    for name in names {
        let g = match eks
            .describe_nodegroup()
            .cluster_name(cluster)
            .nodegroup_name(&name)
            .send()
            .await
            .unless_gone(p, "DescribeNodegroup")?
        {
            Some(r) => r.nodegroup,
            None => continue,
        };
        let Some(g) = g else { continue };
        let tags: BTreeMap<String, String> =
            g.tags().cloned().unwrap_or_default().into_iter().collect();
        if !o.owns(&tags) {
            continue;
        }
        let autoscaler: BTreeMap<String, String> = tags
            .iter()
            .filter(|(k, _)| k.starts_with("k8s.io/cluster-autoscaler/"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut taints: Vec<String> = g
            .taints()
            .iter()
            .map(|t| {
                format!(
                    "{}={}:{}",
                    t.key().unwrap_or_default(),
                    t.value().unwrap_or_default(),
                    desired::k8s_effect(t.effect().map(|e| e.as_str()).unwrap_or_default())
                )
            })
            .collect();
        taints.sort();
        let labels: BTreeMap<String, String> = g
            .labels()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let scaling = g.scaling_config();
        let mut subnets: Vec<String> = g
            .subnets()
            .iter()
            .map(|s| subnet_names.get(s).cloned().unwrap_or_else(|| s.clone()))
            .collect();
        subnets.sort();
        let id = ResourceId::new(NODE_GROUP, &name);
        let spec = NodeGroupObserved {
            instance_type: g.instance_types().first().cloned(),
            ami_type: g.ami_type().map(|a| a.as_str().to_string()),
            disk_size: g.disk_size(),
            min_nodes: scaling.and_then(|s| s.min_size()),
            max_nodes: scaling.and_then(|s| s.max_size()),
            desired_nodes: scaling.and_then(|s| s.desired_size()),
            node_role: g.node_role().map(|r| arn_name(r).to_string()),
            labels,
            taints,
            autoscaler_tags: autoscaler,
            subnets,
            version: g.version().map(str::to_string),
        };
        let state = g
            .status()
            .map(|s| s.as_str().to_lowercase())
            .unwrap_or_default();
        out.push(Found::new(id, name, &spec, state)?);
    }
    Ok(out)
}
