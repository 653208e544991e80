//! `certificate`: where the TLS certificate of the domain comes from.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The `certificate` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    /// `self-signed`, `lets-encrypt`, `existing` or `disabled`.
    #[serde(rename = "type")]
    pub kind: CertificateKind,
    /// `existing`: the Kubernetes TLS secret to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// `lets-encrypt`: the contact address for the ACME account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme_email: Option<String>,
    /// `lets-encrypt`: the ACME directory (default: Let's Encrypt production).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme_server: Option<String>,
}

impl Default for Certificate {
    fn default() -> Self {
        Self {
            kind: CertificateKind::SelfSigned,
            secret_name: None,
            acme_email: None,
            acme_server: None,
        }
    }
}

/// Certificate sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CertificateKind {
    /// A certificate Traefik generates itself (browsers warn).
    SelfSigned,
    /// Let's Encrypt through ACME TLS-ALPN.
    LetsEncrypt,
    /// A TLS secret that already exists in the namespace.
    Existing,
    /// No TLS.
    Disabled,
}

/// The ACME directory used when `acme_server` is not set.
pub const LETS_ENCRYPT_PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";
