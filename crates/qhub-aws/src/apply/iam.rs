//! IAM roles: the EKS cluster role, the node role, and the Pod Identity roles of the EBS CSI
//! controller and the cluster autoscaler, with their managed and inline policies.

use qhub_core::plan::Resource;
use qhub_core::provider::{Ownership, ProviderError};

use super::{Sent, by_name, failed, spec_of};
use crate::AwsProvider;
use crate::desired::{self, IAM_PATH};
use crate::observe;
use crate::spec::{RoleObserved, RoleSpec};

/// The trust policy of a role assumed by `service`. EKS Pod Identity assumes its roles with
/// session tags, so a role for [`desired::PODS_PRINCIPAL`] also allows `sts:TagSession` (EKS
/// user guide, "Create IAM role with trust policy required by EKS Pod Identity": "EKS Pod
/// Identity uses `TagSession` to include session tags in the requests to AWS STS").
pub(crate) fn trust_policy(service: &str) -> String {
    let action = if service == desired::PODS_PRINCIPAL {
        serde_json::json!(["sts:AssumeRole", "sts:TagSession"])
    } else {
        serde_json::json!("sts:AssumeRole")
    };
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": service},
            "Action": action,
        }],
    })
    .to_string()
}

pub(super) async fn ensure_role(
    p: &AwsProvider,
    o: &Ownership,
    r: &Resource,
) -> Result<(), ProviderError> {
    let iam = &p.clients().await?.iam;
    let want: RoleSpec = spec_of(r)?;
    let (attached, inline) = match by_name(observe::roles(p, o).await?, &r.id.name) {
        Some(f) => {
            let have: RoleObserved = f.spec_as()?;
            (have.policies, have.inline_policies)
        }
        None => {
            let tags = o
                .tags()
                .into_iter()
                .map(|(k, v)| {
                    aws_sdk_iam::types::Tag::builder()
                        .key(k)
                        .value(v)
                        .build()
                        .map_err(|e| failed(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            iam.create_role()
                .role_name(&r.id.name)
                .path(IAM_PATH)
                .assume_role_policy_document(trust_policy(&want.service))
                .set_tags(Some(tags))
                .send()
                .await
                .created(p, "CreateRole", &format!("IAM role {}", r.id.name))?;
            (Vec::new(), Vec::new())
        }
    };
    let wanted = &want.policies;
    for policy in wanted.iter().filter(|w| !attached.contains(w)) {
        iam.attach_role_policy()
            .role_name(&r.id.name)
            .policy_arn(desired::policy_arn(policy, p.region()))
            .send()
            .await
            .sent(p, "AttachRolePolicy")?;
    }
    for policy in attached.iter().filter(|a| !wanted.contains(a)) {
        iam.detach_role_policy()
            .role_name(&r.id.name)
            .policy_arn(desired::policy_arn(policy, p.region()))
            .send()
            .await
            .sent(p, "DetachRolePolicy")?;
    }
    let wanted = &want.inline_policies;
    for name in wanted.iter().filter(|w| !inline.contains(w)) {
        let document = desired::inline_policy_document(name, &o.prefix())
            .ok_or_else(|| failed(format!("no document for inline policy {name}")))?;
        iam.put_role_policy()
            .role_name(&r.id.name)
            .policy_name(name)
            .policy_document(document)
            .send()
            .await
            .sent(p, "PutRolePolicy")?;
    }
    for name in inline.iter().filter(|i| !wanted.contains(i)) {
        iam.delete_role_policy()
            .role_name(&r.id.name)
            .policy_name(name)
            .send()
            .await
            .unless_gone(p, "DeleteRolePolicy")?;
    }
    Ok(())
}

/// The ARN of role `name`; a role not there yet is retryable (IAM is eventually consistent).
pub(super) async fn role_arn(p: &AwsProvider, name: &str) -> Result<String, ProviderError> {
    let r = p
        .clients()
        .await?
        .iam
        .get_role()
        .role_name(name)
        .send()
        .await
        .unless_gone(p, "GetRole")?
        .ok_or_else(|| ProviderError::Retryable {
            message: format!("IAM role {name} does not exist (yet)"),
            retry_after: None,
        })?;
    Ok(r.role().map(|r| r.arn().to_string()).unwrap_or_default())
}

pub(super) async fn delete_role(
    p: &AwsProvider,
    o: &Ownership,
    name: &str,
) -> Result<(), ProviderError> {
    let Some(f) = by_name(observe::roles(p, o).await?, name) else {
        return Ok(());
    };
    let iam = &p.clients().await?.iam;
    let have: RoleObserved = f.spec_as()?;
    for policy in &have.policies {
        iam.detach_role_policy()
            .role_name(name)
            .policy_arn(desired::policy_arn(policy, p.region()))
            .send()
            .await
            .unless_gone(p, "DetachRolePolicy")?;
    }
    // A role with inline policies cannot be deleted (DeleteConflict).
    for policy in &have.inline_policies {
        iam.delete_role_policy()
            .role_name(name)
            .policy_name(policy)
            .send()
            .await
            .unless_gone(p, "DeleteRolePolicy")?;
    }
    iam.delete_role()
        .role_name(name)
        .send()
        .await
        .unless_gone(p, "DeleteRole")?;
    Ok(())
}
