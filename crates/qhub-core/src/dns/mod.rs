//! DNS for the deployment's domain: the record the domain needs (an `A` or `CNAME` to the
//! ingress load balancer, [`crate::kubernetes::endpoints::DnsRecord`]) made through a DNS
//! provider's API ([`cloudflare`]), and the wait until the name resolves ([`resolve`]) before
//! Let's Encrypt is asked for a certificate.
//!
//! Used by every cloud provider, so it lives here rather than in one of them. The engine plans
//! the record as a resource of the Kubernetes stage (`DnsRecord/<domain>`, see
//! `engine/dns.rs`): it depends on the ingress Service, and the IngressRoutes that make
//! Traefik request a certificate depend on it.

pub mod cloudflare;
pub mod resolve;

use std::time::Duration;

use serde::Serialize;

use crate::provider::ProviderError;

/// The DNS providers `--dns-provider` accepts.
pub const PROVIDERS: &[&str] = &["cloudflare"];

/// The comment marking a record as made by qhub for one deployment (Cloudflare shows it in its
/// dashboard; qhub replaces a record of the other type, and deletes a record on destroy, only
/// when it carries it).
pub fn owner_comment(prefix: &str) -> String {
    format!("managed by qhub: {prefix}")
}

/// What the apply did to the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The record did not exist and was created.
    Created,
    /// The record existed with another value and was updated.
    Updated,
    /// A record of the other type (ours) was deleted and the wanted one created.
    Replaced,
    /// The record was already as wanted: nothing was written.
    Unchanged,
    /// No DNS provider is configured: qhub only waited for the name to resolve.
    NotManaged,
    /// The record qhub wrote was deleted (`qhub destroy` with the DNS flags).
    Deleted,
}

/// What happened to the domain's record during a deploy or destroy (`dns` in `qhub deploy
/// --output json`, `applied.dns` in `qhub destroy --output json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DnsReport {
    /// The provider that holds the record (`cloudflare`), if qhub manages it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The record's name.
    pub name: String,
    /// `A` or `CNAME`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The load balancer's address it points to.
    pub value: String,
    /// What was done.
    pub outcome: Outcome,
    /// Seconds waited until the name resolved to the load balancer (`None`: not waited for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waited_secs: Option<f64>,
}

/// Errors of DNS providers and of the wait for a name to resolve. No variant ever carries a
/// token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DnsError {
    /// The client cannot be built as asked (a malformed URL, plain HTTP to a remote host).
    #[error("DNS provider setup: {0}")]
    Setup(String),
    /// The token variable is not set.
    #[error(
        "{var} is not set: `--dns-provider cloudflare --dns-auto-provision` needs a Cloudflare API token with Zone:DNS:Edit (and Zone:Zone:Read) on the domain's zone"
    )]
    MissingToken {
        /// The variable.
        var: &'static str,
    },
    /// The request got no answer (connection refused or reset, timeout).
    #[error("Cloudflare {what}: no answer: {message}")]
    Transport {
        /// The call.
        what: String,
        /// What the HTTP stack said (never a header).
        message: String,
    },
    /// The API answered with an error.
    #[error("Cloudflare {what}: HTTP {status}: {}", join(errors))]
    Api {
        /// The call.
        what: String,
        /// The HTTP status.
        status: u16,
        /// Cloudflare's `errors[]` as `(code, message)`.
        errors: Vec<(i64, String)>,
        /// The `Retry-After` of a 429.
        retry_after: Option<Duration>,
    },
    /// The token was refused (HTTP 400 with a header error, 401, 403).
    #[error(
        "CLOUDFLARE_TOKEN was refused ({what}): {message}; the token needs Zone:DNS:Edit (and Zone:Zone:Read) on the zone of {domain}"
    )]
    Refused {
        /// The call.
        what: String,
        /// Cloudflare's errors.
        message: String,
        /// The record's name.
        domain: String,
    },
    /// No zone of the account holds the name.
    #[error(
        "no Cloudflare zone holds {domain} (looked for {}): the domain's zone must be in the Cloudflare account of CLOUDFLARE_TOKEN, and the token must be allowed to read it (Zone:Zone:Read)",
        tried.join(", ")
    )]
    ZoneNotFound {
        /// The record's name.
        domain: String,
        /// The zone names looked up.
        tried: Vec<String>,
    },
    /// A record qhub does not own stands where the wanted one must go.
    #[error("{0}")]
    Conflict(String),
    /// An answer could not be decoded.
    #[error("Cloudflare {what}: unexpected answer: {message}")]
    Decode {
        /// The call.
        what: String,
        /// What was wrong.
        message: String,
    },
    /// The name did not resolve to the load balancer in time.
    #[error("{0}")]
    NotResolved(String),
    /// A call kept failing until its retry budget ran out.
    #[error("{0}")]
    GaveUp(String),
}

fn join(errors: &[(i64, String)]) -> String {
    if errors.is_empty() {
        return "no error details".into();
    }
    errors
        .iter()
        .map(|(code, message)| format!("{message} (code {code})"))
        .collect::<Vec<_>>()
        .join("; ")
}

impl DnsError {
    /// The HTTP status, when the API answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl crate::retry::RetryableError for DnsError {
    fn retry_class(&self) -> Option<crate::provider::RetryClass> {
        use crate::provider::RetryClass;
        match self {
            // Refused before anything was done: safe to send again, even a create.
            Self::Api { status: 429, .. } => Some(RetryClass::Throttled),
            Self::Api { status, .. } if *status >= 500 => Some(RetryClass::Transient),
            Self::Transport { .. } => Some(RetryClass::Transient),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    fn gave_up(self, note: &str) -> Self {
        Self::GaveUp(format!("{self}; {note}"))
    }
}

impl From<DnsError> for ProviderError {
    fn from(e: DnsError) -> Self {
        let message = e.to_string();
        match e {
            DnsError::Api {
                status: 429,
                retry_after,
                ..
            } => ProviderError::throttled(message, retry_after),
            DnsError::Api {
                status,
                retry_after,
                ..
            } if status >= 500 => ProviderError::Retryable {
                message,
                retry_after,
            },
            DnsError::Transport { .. } => ProviderError::retryable(message),
            DnsError::Refused { .. } | DnsError::MissingToken { .. } => {
                ProviderError::Unauthorized(message)
            }
            _ => ProviderError::Fatal(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_provider_classes_and_read_well() {
        let throttled = DnsError::Api {
            what: "list records".into(),
            status: 429,
            errors: vec![(
                971,
                "Please wait and consider throttling your request speed".into(),
            )],
            retry_after: Some(Duration::from_secs(2)),
        };
        assert!(throttled.to_string().contains("(code 971)"));
        let p = ProviderError::from(throttled);
        assert_eq!(p.retry_after(), Some(Duration::from_secs(2)));
        let refused = DnsError::Refused {
            what: "GET /zones".into(),
            message: "Invalid access token (code 9109)".into(),
            domain: "demo.example.com".into(),
        };
        let text = refused.to_string();
        assert!(text.starts_with("CLOUDFLARE_TOKEN was refused"), "{text}");
        assert!(text.contains("Zone:DNS:Edit") && text.contains("demo.example.com"));
        assert!(matches!(
            ProviderError::from(refused),
            ProviderError::Unauthorized(_)
        ));
        let missing = DnsError::MissingToken {
            var: "CLOUDFLARE_TOKEN",
        };
        assert!(
            missing
                .to_string()
                .starts_with("CLOUDFLARE_TOKEN is not set")
        );
        assert_eq!(owner_comment("demo-dev"), "managed by qhub: demo-dev");
    }
}
