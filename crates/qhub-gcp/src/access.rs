//! Access to the cluster: a Kubernetes client whose bearer token is a fresh OAuth access token
//! from the provider's credentials (google-cloud-auth caches it and mints a new one before it
//! expires, so a long apply never sends a stale token), and a kubeconfig for people that holds
//! no secret (an `exec` stanza running `gke-gcloud-auth-plugin`).

use std::fmt;

use async_trait::async_trait;
use base64::Engine as _;
use google_cloud_auth::credentials::AccessTokenCredentials;
use qhub_core::kubernetes::auth::{ClusterEndpoint, TokenSource};
use qhub_core::provider::ProviderError;

use qhub_core::cloud::kubeconfig::Kubeconfig;

use crate::observe::ClusterFacts;

/// Tokens for the cluster's API server, from the provider's credentials.
#[derive(Clone)]
pub struct GkeTokens(pub AccessTokenCredentials);

impl fmt::Debug for GkeTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GkeTokens(..)")
    }
}

#[async_trait]
impl TokenSource for GkeTokens {
    async fn token(&self) -> Result<String, ProviderError> {
        // Cached by google-cloud-auth and refreshed ahead of its expiry.
        self.0.access_token().await.map(|t| t.token).map_err(|e| {
            ProviderError::Unauthorized(format!("cannot mint a GKE access token: {e}"))
        })
    }
}

/// The API server of a running cluster.
pub fn endpoint(facts: &ClusterFacts) -> Result<ClusterEndpoint, ProviderError> {
    let ca_pem = base64::engine::general_purpose::STANDARD
        .decode(facts.ca.trim())
        .map_err(|e| ProviderError::Fatal(format!("GKE's cluster CA is not base64: {e}")))?;
    Ok(ClusterEndpoint {
        server: format!("https://{}", facts.endpoint),
        ca_pem,
    })
}

/// The kubeconfig `gcloud container clusters get-credentials` writes: the cluster's endpoint
/// and CA, and a user that runs `gke-gcloud-auth-plugin` for a token (no stored secret).
pub fn exec_kubeconfig(project: &str, region: &str, cluster: &str, facts: &ClusterFacts) -> String {
    // gcloud's naming of the context.
    let name = format!("gke_{project}_{region}_{cluster}");
    Kubeconfig::with_exec(
        &name,
        &format!("https://{}", facts.endpoint),
        facts.ca.trim(),
        "gke-gcloud-auth-plugin",
        &[],
        "Install gke-gcloud-auth-plugin for use with kubectl by following https://cloud.google.com/kubernetes-engine/docs/how-to/cluster-access-for-kubectl#install_plugin",
    )
    .to_yaml()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubeconfig_runs_the_auth_plugin_and_holds_no_token() {
        let facts = ClusterFacts {
            status: "RUNNING".into(),
            current_version: "1.33.5-gke.1201000".into(),
            endpoint: "10.0.0.2".into(),
            ca: "Q0E=".into(),
            label_fingerprint: String::new(),
        };
        let text = exec_kubeconfig("p1", "us-central1", "demo-dev", &facts);
        let k = kube::config::Kubeconfig::from_yaml(&text).expect("valid kubeconfig");
        let user = k.auth_infos[0].auth_info.as_ref().unwrap();
        let exec = user.exec.as_ref().unwrap();
        assert_eq!(exec.command.as_deref(), Some("gke-gcloud-auth-plugin"));
        assert!(user.token.is_none());
        assert_eq!(
            k.current_context.as_deref(),
            Some("gke_p1_us-central1_demo-dev")
        );
        assert_eq!(
            k.clusters[0].cluster.as_ref().unwrap().server.as_deref(),
            Some("https://10.0.0.2")
        );
    }
}
