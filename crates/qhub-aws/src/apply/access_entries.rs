//! EKS access entries: one per `amazon_web_services.cluster_admins` principal, tagged ours,
//! with the access policies its spec names associated (EKS user guide, "Create access
//! entries", "Associate access policies with access entries").
//!
//! Only entries carrying our tags are ever changed or deleted: EKS makes its own for the
//! cluster's creator (`bootstrapClusterCreatorAdminPermissions`) and for managed node groups'
//! roles (aws/containers-roadmap#185, #2425), and other teams may add theirs.

use aws_sdk_eks::types::{AccessScope, AccessScopeType};
use qhub_core::plan::Resource;
use qhub_core::provider::{Ownership, ProviderError};

use super::token::request_token;
use super::{Sent, by_name, failed, spec_of};
use crate::AwsProvider;
use crate::observe::{self, Found};
use crate::spec::{AccessEntrySpec, AccessPolicy};

/// The access policies associated with an observed access entry.
fn policies(found: &Found) -> Result<Vec<AccessPolicy>, ProviderError> {
    Ok(found.spec_as::<AccessEntrySpec>()?.policies)
}

/// The access scope of a spec scope: `cluster`, or `namespace:a,b`.
fn scope(text: &str) -> AccessScope {
    match text.strip_prefix("namespace:") {
        Some(namespaces) => AccessScope::builder()
            .r#type(AccessScopeType::Namespace)
            .set_namespaces(Some(namespaces.split(',').map(str::to_string).collect()))
            .build(),
        None => AccessScope::builder()
            .r#type(AccessScopeType::Cluster)
            .build(),
    }
}

/// Creates the access entry `r` names (or adopts ours), then associates the policies its spec
/// names and disassociates the others.
pub(super) async fn ensure_access_entry(
    p: &AwsProvider,
    o: &Ownership,
    r: &Resource,
) -> Result<(), ProviderError> {
    let eks = &p.clients().await?.eks;
    let cluster = o.prefix();
    let spec: AccessEntrySpec = spec_of(r)?;
    let principal = spec.principal.as_str();
    let have = match by_name(observe::access_entries(p, o, &cluster).await?, &r.id.name) {
        Some(f) => policies(&f)?,
        None => {
            let token = request_token(
                o,
                p.region(),
                "CreateAccessEntry",
                &serde_json::json!({"cluster": cluster, "principal": principal, "tags": o.tags()}),
            );
            let created = eks
                .create_access_entry()
                .cluster_name(&cluster)
                .principal_arn(principal)
                .set_tags(Some(o.tags().into_iter().collect()))
                .client_request_token(token)
                .send()
                .await
                .sent_unless(p, "CreateAccessEntry", crate::AwsError::is_already_exists)?;
            if created.is_none() {
                // Taken: ours after a lost answer (adopt it), or an entry we did not create.
                match by_name(observe::access_entries(p, o, &cluster).await?, &r.id.name) {
                    Some(f) => policies(&f)?,
                    None => {
                        return Err(failed(format!(
                            "amazon_web_services.cluster_admins: {principal} already has an access entry on EKS cluster {cluster} that this deployment did not create (EKS makes one for the identity that created the cluster; another team may have made it); it has access already, so remove it from cluster_admins, or delete that entry and deploy again"
                        )));
                    }
                }
            } else {
                Vec::new()
            }
        }
    };
    let want = &spec.policies;
    for w in want.iter().filter(|w| !have.contains(w)) {
        // Associating again with another scope replaces the scope (EKS user guide, "Associate
        // access policies with access entries").
        eks.associate_access_policy()
            .cluster_name(&cluster)
            .principal_arn(principal)
            .policy_arn(&w.policy)
            .access_scope(scope(&w.scope))
            .send()
            .await
            .sent(p, "AssociateAccessPolicy")?;
    }
    for h in have
        .iter()
        .filter(|h| !want.iter().any(|w| w.policy == h.policy))
    {
        eks.disassociate_access_policy()
            .cluster_name(&cluster)
            .principal_arn(principal)
            .policy_arn(&h.policy)
            .send()
            .await
            .unless_gone(p, "DisassociateAccessPolicy")?;
    }
    Ok(())
}

/// Deletes our access entry `name` (`<cluster>/<principal>`); its policy associations go with
/// it ("If the access entry that you're deleting is associated to any access policies, the
/// associations are automatically deleted"). An entry that is gone, or not ours, is left be.
pub(super) async fn delete_access_entry(
    p: &AwsProvider,
    o: &Ownership,
    name: &str,
) -> Result<(), ProviderError> {
    let cluster = o.prefix();
    let Some(found) = by_name(observe::access_entries(p, o, &cluster).await?, name) else {
        return Ok(());
    };
    p.clients()
        .await?
        .eks
        .delete_access_entry()
        .cluster_name(&cluster)
        .principal_arn(&found.cloud_id)
        .send()
        .await
        .unless_gone(p, "DeleteAccessEntry")?;
    Ok(())
}
