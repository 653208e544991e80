//! Observing IAM roles: our path listed, tags read (IAM cannot filter by tag).

use super::*;

/// Decodes the `%XX` escapes IAM puts in a role's trust policy document.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The deployment's IAM roles (under [`IAM_PATH`], carrying our tags). Not deduplicated: a
/// role's name is unique in the account.
pub async fn roles(p: &AwsProvider, o: &Ownership) -> Result<Vec<Found>, ProviderError> {
    let iam = &p.clients().await?.iam;
    let mut out = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let r = iam
            .list_roles()
            .path_prefix(IAM_PATH)
            .set_marker(marker.clone())
            .send()
            .await
            .map_err(|e| p.err(AwsError::from_sdk("ListRoles", e)))?;
        for role in r.roles() {
            let name = role.role_name().to_string();
            let tags = match iam.list_role_tags().role_name(&name).send().await {
                Ok(t) => t
                    .tags()
                    .iter()
                    .map(|t| (t.key().to_string(), t.value().to_string()))
                    .collect::<BTreeMap<_, _>>(),
                Err(e) => {
                    let e = AwsError::from_sdk("ListRoleTags", e);
                    if e.is_not_found() {
                        continue;
                    }
                    return Err(p.err(e));
                }
            };
            if !o.owns(&tags) {
                continue;
            }
            // A role deleted between the list and this call (a concurrent destroy) is gone.
            let policies = match iam
                .list_attached_role_policies()
                .role_name(&name)
                .send()
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    let e = AwsError::from_sdk("ListAttachedRolePolicies", e);
                    if e.is_not_found() {
                        continue;
                    }
                    return Err(p.err(e));
                }
            };
            let mut names: Vec<String> = policies
                .attached_policies()
                .iter()
                .filter_map(|a| a.policy_name().map(str::to_string))
                .collect();
            names.sort();
            let inline = match iam.list_role_policies().role_name(&name).send().await {
                Ok(r) => r,
                Err(e) => {
                    let e = AwsError::from_sdk("ListRolePolicies", e);
                    if e.is_not_found() {
                        continue;
                    }
                    return Err(p.err(e));
                }
            };
            let mut inline: Vec<String> = inline.policy_names().to_vec();
            inline.sort();
            let trust = percent_decode(role.assume_role_policy_document().unwrap_or_default());
            let service = ["eks.amazonaws.com", "ec2.amazonaws.com"]
                .into_iter()
                .find(|s| trust.contains(s));
            out.push(Found {
                id: ResourceId::new(IAM_ROLE, &name),
                spec: json!({"service": service, "policies": names, "inline_policies": inline}),
                state: "available".into(),
                cloud_id: name,
            });
        }
        match r.marker() {
            Some(m) if r.is_truncated() => marker = Some(m.to_string()),
            _ => break,
        }
    }
    Ok(out)
}
