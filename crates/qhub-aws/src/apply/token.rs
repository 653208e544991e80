//! Idempotency tokens for create requests (EKS `clientRequestToken`, EFS `CreationToken`).
//!
//! A token is a hash of the deployment's identity and of the whole create request, so a retry
//! of the same request (a lost response, a re-run after a kill) carries the same token and AWS
//! answers it with what the first attempt made, while any other request carries another token:
//! a replace (another version, another role), or a re-deploy after a destroy, whose request
//! names the new network's subnet and security group ids, is never taken for a replay of an
//! older request and answered with a resource that no longer exists or is being deleted.

use qhub_core::provider::Ownership;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

/// The longest token EKS and EFS both accept (EFS `CreationToken`: 1 to 64 characters).
pub const MAX_TOKEN_LEN: usize = 64;

/// The token of `operation` with `request` (its content as JSON: every field that is sent) for
/// the deployment `o` in `region`: `qhub-` and 32 hex digits (128 bits of a SHA-256).
pub fn request_token(o: &Ownership, region: &str, operation: &str, request: &Json) -> String {
    let mut h = Sha256::new();
    // Length-prefixed fields, so no two different inputs hash the same bytes.
    for part in [
        o.project.as_str(),
        o.namespace.as_str(),
        region,
        operation,
        &canonical(request),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    let digest = h.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("qhub-{hex}")
}

/// JSON text with object keys sorted at every level, so a token does not depend on the order
/// the request's fields were gathered in.
fn canonical(v: &Json) -> String {
    fn sorted(v: &Json) -> Json {
        match v {
            Json::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                Json::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&m[k])))
                        .collect(),
                )
            }
            Json::Array(a) => Json::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(v).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn o(project: &str) -> Ownership {
        Ownership {
            project: project.into(),
            namespace: "dev".into(),
        }
    }

    fn cluster(version: &str, subnets: &[&str]) -> Json {
        json!({"name": "demo-dev", "version": version, "subnets": subnets, "security_group": "sg-1"})
    }

    #[test]
    fn a_retry_of_the_same_request_carries_the_same_token() {
        let a = request_token(
            &o("demo"),
            "eu-west-1",
            "CreateCluster",
            &cluster("1.29", &["subnet-a", "subnet-b"]),
        );
        let b = request_token(
            &o("demo"),
            "eu-west-1",
            "CreateCluster",
            &cluster("1.29", &["subnet-a", "subnet-b"]),
        );
        assert_eq!(a, b);
        assert!(a.starts_with("qhub-") && a.len() <= MAX_TOKEN_LEN, "{a}");
        // The order the fields were gathered in does not matter.
        let reordered = json!({"security_group": "sg-1", "subnets": ["subnet-a", "subnet-b"], "version": "1.29", "name": "demo-dev"});
        assert_eq!(
            request_token(&o("demo"), "eu-west-1", "CreateCluster", &reordered),
            a
        );
    }

    #[test]
    fn different_requests_carry_different_tokens() {
        let base = request_token(
            &o("demo"),
            "eu-west-1",
            "CreateCluster",
            &cluster("1.29", &["subnet-a", "subnet-b"]),
        );
        let others = [
            // A replace: another version.
            request_token(
                &o("demo"),
                "eu-west-1",
                "CreateCluster",
                &cluster("1.30", &["subnet-a", "subnet-b"]),
            ),
            // A re-deploy after a destroy: the new network's subnets.
            request_token(
                &o("demo"),
                "eu-west-1",
                "CreateCluster",
                &cluster("1.29", &["subnet-c", "subnet-d"]),
            ),
            // Another deployment, region or operation.
            request_token(
                &o("other"),
                "eu-west-1",
                "CreateCluster",
                &cluster("1.29", &["subnet-a", "subnet-b"]),
            ),
            request_token(
                &o("demo"),
                "us-east-1",
                "CreateCluster",
                &cluster("1.29", &["subnet-a", "subnet-b"]),
            ),
            request_token(
                &o("demo"),
                "eu-west-1",
                "CreateNodegroup",
                &cluster("1.29", &["subnet-a", "subnet-b"]),
            ),
        ];
        for (i, t) in others.iter().enumerate() {
            assert_ne!(*t, base, "case {i}");
        }
        // Field boundaries count: moving text between fields changes the token.
        assert_ne!(
            request_token(&o("ab"), "c", "X", &json!({})),
            request_token(&o("a"), "bc", "X", &json!({}))
        );
    }
}
