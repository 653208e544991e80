//! Access to the deployment's cluster.
//!
//! - For the engine: a client of the cluster's API server whose bearer token comes from
//!   [`DoTokens`]: `/credentials` with a token valid for [`ACCESS_EXPIRY`], fetched again
//!   [`REFRESH_MARGIN`] before it expires, so a long apply never sends a stale token (QHub's
//!   EKS runs died of exactly that, nebari-dev/nebari#1106) and no token is written to disk.
//! - For people (`qhub kubeconfig`): the cluster's server and CA from `/credentials`, and an
//!   `exec` stanza running `doctl` to mint tokens, as `doctl kubernetes cluster kubeconfig save`
//!   writes: no secret is stored in the file.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use qhub_core::kubernetes::auth::TokenSource;
use qhub_core::provider::ProviderError;

use crate::client::{Credentials, DoClient};
use crate::errors::to_provider;

/// Lifetime of the tokens handed to the engine.
pub const ACCESS_EXPIRY: Duration = Duration::from_secs(3600);

/// A token is replaced this long before it expires.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(600);

/// Bearer tokens for one DOKS cluster, from `/credentials`, cached until [`REFRESH_MARGIN`]
/// before they expire.
pub struct DoTokens {
    client: DoClient,
    cluster_id: String,
    expiry: Duration,
    margin: Duration,
    cached: Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for DoTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DoTokens")
            .field("cluster_id", &self.cluster_id)
            .field("expiry", &self.expiry)
            .finish_non_exhaustive()
    }
}

impl DoTokens {
    /// Tokens for `cluster_id`, each valid for `expiry`, replaced `margin` before they expire.
    pub fn new(client: DoClient, cluster_id: &str, expiry: Duration, margin: Duration) -> Self {
        Self {
            client,
            cluster_id: cluster_id.to_string(),
            expiry,
            margin: margin.min(expiry / 2),
            cached: Mutex::new(None),
        }
    }

    /// The cluster's credentials with a fresh token.
    pub async fn fetch(&self) -> Result<(Credentials, Instant), ProviderError> {
        // The expiry counts from before the request, so it is never later than the server's.
        let asked = Instant::now();
        let c = self
            .client
            .credentials(&self.cluster_id, self.expiry)
            .await
            .map_err(|e| to_provider("reading the cluster's credentials", e))?;
        Ok((c, asked + self.expiry))
    }
}

#[async_trait]
impl TokenSource for DoTokens {
    async fn token(&self) -> Result<String, ProviderError> {
        if let Ok(cached) = self.cached.lock()
            && let Some((token, expires)) = cached.as_ref()
            && Instant::now() + self.margin < *expires
        {
            return Ok(token.clone());
        }
        let (credentials, expires) = self.fetch().await?;
        let token = credentials.token.clone().ok_or_else(|| {
            ProviderError::Fatal(
                "DOKS credentials hold no token (a client certificate is not supported)".into(),
            )
        })?;
        if let Ok(mut cached) = self.cached.lock() {
            *cached = Some((token.clone(), expires));
        }
        Ok(token)
    }
}

/// The kubeconfig context name doctl uses: `do-<region>-<cluster name>`.
pub fn context_name(region: &str, cluster: &str) -> String {
    format!("do-{region}-{cluster}")
}

/// A kubeconfig for people: server and CA from `credentials`, tokens minted by `doctl`
/// (`doctl kubernetes cluster kubeconfig exec-credential`, as `doctl kubernetes cluster
/// kubeconfig save` writes it), so the file holds no secret.
pub fn exec_kubeconfig(
    region: &str,
    cluster_name: &str,
    cluster_id: &str,
    credentials: &Credentials,
) -> String {
    qhub_core::cloud::kubeconfig::Kubeconfig::with_exec(
        &context_name(region, cluster_name),
        &credentials.server,
        &credentials.certificate_authority_data,
        "doctl",
        &[
            "kubernetes",
            "cluster",
            "kubeconfig",
            "exec-credential",
            "--version=v1beta1",
            "--context=default",
            cluster_id,
        ],
        "install doctl (https://docs.digitalocean.com/reference/doctl/how-to/install/) and run `doctl auth init`",
    )
    .to_yaml()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_people_kubeconfig_holds_no_token() {
        let c = Credentials {
            server: "https://x.k8s.ondigitalocean.com".into(),
            certificate_authority_data: "Q0E=".into(),
            token: Some("secret-token".into()),
            expires_at: None,
        };
        let text = exec_kubeconfig("nyc3", "demo-dev", "1234", &c);
        assert!(!text.contains("secret-token"));
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["current-context"], "do-nyc3-demo-dev");
        let exec = &doc["users"][0]["user"]["exec"];
        assert_eq!(exec["command"], "doctl");
        assert_eq!(exec["args"][6], "1234");
        assert!(!format!("{c:?}").contains("secret-token"));
    }
}
