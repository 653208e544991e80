//! Observing IAM roles: read by the names we give them (and the old path listed), tags read
//! (IAM cannot filter by tag).

use super::*;

/// Decodes the `%XX` escapes IAM puts in a role's trust policy document
/// (<https://docs.aws.amazon.com/IAM/latest/APIReference/API_Role.html>: the document is
/// URL-encoded per RFC 3986). The text comes from the cloud, so anything is possible: a `%` not
/// followed by two hex digits stays as written, and it works on bytes, never slicing the text
/// where a character could be split. Escapes that do not form UTF-8 become U+FFFD.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex_digit),
                bytes.get(i + 2).copied().and_then(hex_digit),
            )
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of one hex digit (`u8::from_str_radix` would also take a sign: `%+1`).
fn hex_digit(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// The deployment's IAM roles: those of the names we give roles ([`Names::roles`]), read by
/// name whatever their path (a role's name is unique in the account, path or not), and any
/// other role carrying our tags under [`LEGACY_IAM_PATH`], where earlier versions made them.
/// IAM cannot filter by tag, and listing every role of the account would page through all of
/// them with a ListRoleTags each; so roles are found by name, which is why every role qhub
/// makes has a name derived from the deployment's prefix.
pub async fn roles(p: &AwsProvider, o: &Ownership) -> Result<Vec<Found>, ProviderError> {
    let iam = &p.clients().await?.iam;
    let mut out = Vec::new();
    for name in Names::new(o.prefix()).roles() {
        let role = match iam
            .get_role()
            .role_name(&name)
            .send()
            .await
            .unless_gone(p, "GetRole")?
        {
            Some(r) => r.role,
            None => continue,
        };
        if let Some(role) = role
            && let Some(found) = describe(p, o, &role).await?
        {
            out.push(found);
        }
    }
    let mut marker: Option<String> = None;
    loop {
        let r = iam
            .list_roles()
            .path_prefix(LEGACY_IAM_PATH)
            .set_marker(marker.clone())
            .send()
            .await
            .sent(p, "ListRoles")?;
        for role in r.roles() {
            if out.iter().any(|f| f.id.name == role.role_name()) {
                continue;
            }
            if let Some(found) = describe(p, o, role).await? {
                out.push(found);
            }
        }
        match r.marker() {
            Some(m) if r.is_truncated() => marker = Some(m.to_string()),
            _ => break,
        }
    }
    Ok(out)
}

/// A role as observed, if it carries our tags; `None` too when it was deleted meanwhile (a
/// concurrent destroy).
async fn describe(
    p: &AwsProvider,
    o: &Ownership,
    role: &aws_sdk_iam::types::Role,
) -> Result<Option<Found>, ProviderError> {
    let iam = &p.clients().await?.iam;
    let name = role.role_name().to_string();
    let tags = match iam
        .list_role_tags()
        .role_name(&name)
        .send()
        .await
        .unless_gone(p, "ListRoleTags")?
    {
        Some(t) => t
            .tags()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect::<BTreeMap<_, _>>(),
        None => return Ok(None),
    };
    if !o.owns(&tags) {
        return Ok(None);
    }
    if role.path() != IAM_PATH {
        // Made by an earlier version under /qhub-rs/: aws-auth cannot match a node role with a
        // path (see desired::IAM_PATH). It is kept (replacing it would replace every node
        // group); `qhub destroy` removes it like any other.
        tracing::warn!(
            role = %name,
            path = role.path(),
            "IAM role made under a path by an earlier qhub-rs; nodes of a node role with a path may fail to join (EKS troubleshooting, aws-iam-authenticator#268)"
        );
    }
    let policies = match iam
        .list_attached_role_policies()
        .role_name(&name)
        .send()
        .await
        .unless_gone(p, "ListAttachedRolePolicies")?
    {
        Some(r) => r,
        None => return Ok(None),
    };
    let mut names: Vec<String> = policies
        .attached_policies()
        .iter()
        .filter_map(|a| a.policy_name().map(str::to_string))
        .collect();
    names.sort();
    let inline = match iam
        .list_role_policies()
        .role_name(&name)
        .send()
        .await
        .unless_gone(p, "ListRolePolicies")?
    {
        Some(r) => r,
        None => return Ok(None),
    };
    let mut inline: Vec<String> = inline.policy_names().to_vec();
    inline.sort();
    let trust = percent_decode(role.assume_role_policy_document().unwrap_or_default());
    // `pods.eks.amazonaws.com` first: it contains `eks.amazonaws.com`.
    let service = [
        desired::PODS_PRINCIPAL,
        "eks.amazonaws.com",
        "ec2.amazonaws.com",
    ]
    .into_iter()
    .find(|s| trust.contains(s));
    let spec = RoleObserved {
        service: service.map(str::to_string),
        policies: names,
        inline_policies: inline,
    };
    Found::new(ResourceId::new(IAM_ROLE, &name), name, &spec, "available").map(Some)
}

#[cfg(test)]
mod tests {
    use super::percent_decode;
    use proptest::prelude::*;

    /// RFC 3986 percent-encoding of every byte outside the unreserved set, as IAM returns it.
    fn encode(s: &str) -> String {
        let mut out = String::new();
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }

    #[test]
    fn trust_policy_decoding_never_splits_a_character() {
        // A `%` before a multi-byte character: slicing the two bytes after it split the `é`.
        assert_eq!(percent_decode("%é1"), "%é1");
        assert_eq!(percent_decode("%1é"), "%1é");
        assert_eq!(percent_decode("a%"), "a%");
        assert_eq!(percent_decode("%4"), "%4");
        // Signs are not hex digits.
        assert_eq!(percent_decode("%+1%-1"), "%+1%-1");
        assert_eq!(
            percent_decode("%7B%22a%22%3A%22%C3%A9%22%7D"),
            r#"{"a":"é"}"#
        );
        // Escapes that are not UTF-8 are replaced, not a panic.
        assert_eq!(percent_decode("%FF"), "\u{fffd}");
    }

    proptest! {
        #![proptest_config(qhub_tests::proptest_config(512))]

        #[test]
        fn trust_policy_decoding_never_panics(
            s in "(%|%[0-9a-fA-F]|%[0-9a-fA-F]{2}|[+-]|\\PC|[\u{80}-\u{10ffff}])*",
        ) {
            let _ = percent_decode(&s);
        }

        #[test]
        fn trust_policy_decoding_round_trips(s in any::<String>()) {
            prop_assert_eq!(percent_decode(&encode(&s)), s.clone());
            // Text without escapes is left as it is.
            if !s.contains('%') {
                prop_assert_eq!(percent_decode(&s), s);
            }
        }
    }
}
