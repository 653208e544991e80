//! Observing EKS access entries: those of the deployment's principals (tagged ours), with the
//! access policies associated with each. Entries we did not create (the ones EKS makes for the
//! cluster's creator and for node roles, other teams') carry no ownership tags and are never
//! reported, so nothing plans to change or delete them.

use super::*;

/// True when a cluster's `accessConfig.authenticationMode` allows access entries (`API`,
/// `API_AND_CONFIG_MAP`); `CONFIG_MAP` does not (EKS user guide, "Set Cluster Authentication
/// Mode").
pub fn mode_has_access_entries(mode: &str) -> bool {
    mode != "CONFIG_MAP"
}

/// The principal and the ARN-free name of an access entry's resource name
/// (`<cluster>/<principal ARN>` → principal).
pub fn principal_of(name: &str) -> &str {
    name.split_once('/')
        .map_or(name, |(_, principal)| principal)
}

/// The deployment's access entries on cluster `cluster`, as [`crate::desired::ACCESS_ENTRY`]
/// resources (`spec`: the principal and its associated policies with their scopes). A
/// cluster that is gone, a `CONFIG_MAP` cluster (EKS answers `InvalidRequestException`) and an
/// endpoint without the access-entry API (an emulator) have none.
pub async fn access_entries(
    p: &AwsProvider,
    o: &Ownership,
    cluster: &str,
) -> Result<Vec<Found>, ProviderError> {
    let eks = &p.clients().await?.eks;
    let mut principals = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let Some(r) = eks
            .list_access_entries()
            .cluster_name(cluster)
            .set_next_token(token.clone())
            .send()
            .await
            .unless_absent(p, "ListAccessEntries", &["InvalidRequestException"], true)?
        else {
            return Ok(Vec::new());
        };
        principals.extend(r.access_entries().iter().cloned());
        match r.next_token() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    let names = Names::new(o.prefix());
    let mut out = Vec::new();
    for principal in principals {
        let entry = eks
            .describe_access_entry()
            .cluster_name(cluster)
            .principal_arn(&principal)
            .send()
            .await
            .unless_gone(p, "DescribeAccessEntry")?
            .and_then(|r| r.access_entry);
        let Some(entry) = entry else { continue };
        let tags: BTreeMap<String, String> = entry
            .tags()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .collect();
        if !o.owns(&tags) {
            continue;
        }
        let mut policies = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let r = eks
                .list_associated_access_policies()
                .cluster_name(cluster)
                .principal_arn(&principal)
                .set_next_token(token.clone())
                .send()
                .await
                .sent(p, "ListAssociatedAccessPolicies")?;
            for a in r.associated_access_policies() {
                let scope = a.access_scope();
                let scope = match scope.and_then(|s| s.r#type()).map(|t| t.as_str()) {
                    Some("namespace") => format!(
                        "namespace:{}",
                        scope.map(|s| s.namespaces().join(",")).unwrap_or_default()
                    ),
                    Some(other) => other.to_string(),
                    None => "cluster".to_string(),
                };
                // An association always names its policy (EKS API reference,
                // AssociatedAccessPolicy); one that does not is nothing we could change.
                if let Some(policy) = a.policy_arn() {
                    policies.push(AccessPolicy {
                        policy: policy.to_string(),
                        scope,
                    });
                }
            }
            match r.next_token() {
                Some(t) => token = Some(t.to_string()),
                None => break,
            }
        }
        let id = ResourceId::new(ACCESS_ENTRY, names.access_entry(&principal));
        let spec = AccessEntrySpec {
            principal: principal.clone(),
            policies,
        };
        out.push(Found::new(id, principal, &spec, "active")?);
    }
    Ok(out)
}
