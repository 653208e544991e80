//! Cluster access: the EKS bearer token, the client the engine uses, and a kubeconfig for
//! users' own kubectl.
//!
//! An EKS token is `k8s-aws-v1.` followed by the unpadded base64url of a presigned STS
//! `GetCallerIdentity` URL whose signature covers the `x-k8s-aws-id: <cluster>` header; the API
//! server calls that URL to learn who we are, and accepts the token for 15 minutes after it was
//! signed. [`EksTokens`] mints one from the default credential chain, reuses it for at most
//! [`TOKEN_REUSE`], and the engine's client asks for it on every request
//! ([`qhub_core::kubernetes::auth`]), so a long deploy never sends a stale token.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use base64::Engine as _;
use qhub_core::kubernetes::auth::{ClusterEndpoint, TokenSource};
use qhub_core::provider::{Ownership, ProviderError};

use crate::partition::Partition;
use crate::{AwsError, AwsProvider};

/// The prefix of every EKS token.
pub const TOKEN_PREFIX: &str = "k8s-aws-v1.";

/// The header naming the cluster, signed into the token.
pub const CLUSTER_ID_HEADER: &str = "x-k8s-aws-id";

/// How long a minted token is reused. EKS accepts a token for 15 minutes after it was signed;
/// a request sent with one at most 5 minutes old has 10 minutes to spare for clock skew and
/// long-running watches.
pub const TOKEN_REUSE: Duration = Duration::from_secs(5 * 60);

fn failed(msg: String) -> ProviderError {
    ProviderError::Fatal(msg)
}

/// The EKS token for `cluster` in `region`, signed at `at` with `credentials`.
pub fn eks_token(
    credentials: &Credentials,
    region: &str,
    cluster: &str,
    at: SystemTime,
) -> Result<String, ProviderError> {
    // The regional STS endpoint of the region's partition: `aws eks get-token` presigns for
    // `sts.cn-north-1.amazonaws.com.cn` in China, and EKS there calls that host.
    let host = Partition::host("sts", region);
    let url = format!("https://{host}/?Action=GetCallerIdentity&Version=2011-06-15");
    let identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    // The presigned URL itself; EKS applies its own 15-minute limit from X-Amz-Date.
    settings.expires_in = Some(Duration::from_secs(60));
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(at)
        .settings(settings)
        .build()
        .map_err(|e| failed(format!("signing the EKS token: {e}")))?
        .into();
    let signable = SignableRequest::new(
        "GET",
        url.as_str(),
        [(CLUSTER_ID_HEADER, cluster)].into_iter(),
        // The hash of the empty body, as `aws eks get-token` (botocore) and
        // aws-iam-authenticator sign it.
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| failed(format!("signing the EKS token: {e}")))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| failed(format!("signing the EKS token: {e}")))?
        .into_parts();
    let mut request = http::Request::builder()
        .uri(&url)
        .body(())
        .map_err(|e| failed(format!("signing the EKS token: {e}")))?;
    instructions.apply_to_request_http1x(&mut request);
    Ok(format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(request.uri().to_string())
    ))
}

/// Mints EKS tokens for one cluster from a credentials provider, reusing each for
/// [`TOKEN_REUSE`].
pub struct EksTokens {
    credentials: SharedCredentialsProvider,
    region: String,
    cluster: String,
    cached: Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for EksTokens {
    // The token is a credential: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EksTokens")
            .field("region", &self.region)
            .field("cluster", &self.cluster)
            .finish()
    }
}

impl EksTokens {
    /// Tokens for `cluster` in `region`.
    pub fn new(credentials: SharedCredentialsProvider, region: &str, cluster: &str) -> Self {
        Self {
            credentials,
            region: region.into(),
            cluster: cluster.into(),
            cached: Mutex::new(None),
        }
    }
}

#[async_trait]
impl TokenSource for EksTokens {
    async fn token(&self) -> Result<String, ProviderError> {
        if let Ok(cached) = self.cached.lock()
            && let Some((token, minted)) = cached.as_ref()
            && minted.elapsed() < TOKEN_REUSE
        {
            return Ok(token.clone());
        }
        // The chain refreshes expiring credentials (SSO, instance roles) itself.
        let credentials = self.credentials.provide_credentials().await.map_err(|e| {
            ProviderError::Unauthorized(format!("AWS credentials for the EKS token: {e}"))
        })?;
        let token = eks_token(&credentials, &self.region, &self.cluster, SystemTime::now())?;
        tracing::debug!(cluster = %self.cluster, "minted an EKS token");
        if let Ok(mut cached) = self.cached.lock() {
            *cached = Some((token.clone(), Instant::now()));
        }
        Ok(token)
    }
}

/// A kubeconfig for users' own `kubectl`: the cluster's endpoint and CA, and an `exec` stanza
/// running `aws eks get-token`, so the file holds no credential and never goes stale.
pub fn kubeconfig(cluster: &str, region: &str, server: &str, ca_data_b64: &str) -> String {
    qhub_core::cloud::kubeconfig::Kubeconfig::with_exec(
        cluster,
        server,
        ca_data_b64,
        "aws",
        &[
            "eks",
            "get-token",
            "--cluster-name",
            cluster,
            "--region",
            region,
            "--output",
            "json",
        ],
        "install the AWS CLI v2 (https://aws.amazon.com/cli/) and configure its credentials",
    )
    .to_yaml()
}

/// Reads a kubeconfig override (the file a test or an operator names for cluster access).
pub fn read_override(path: &Path) -> Result<String, ProviderError> {
    qhub_core::provider::local::read_kubeconfig_override(path)
}

/// The principal to list in `amazon_web_services.cluster_admins` for an STS caller ARN: the
/// role of an assumed-role session (`arn:aws:sts::1:assumed-role/NAME/SESSION` →
/// `arn:aws:iam::1:role/NAME`; the session ARN does not carry the role's path), else the
/// caller itself (an IAM user).
pub fn principal_of_caller(caller: &str) -> (String, bool) {
    let parts: Vec<&str> = caller.splitn(6, ':').collect();
    if let [_, partition, "sts", _, account, resource] = parts.as_slice()
        && let Some(role) = resource
            .strip_prefix("assumed-role/")
            .and_then(|r| r.split('/').next())
    {
        return (format!("arn:{partition}:iam::{account}:role/{role}"), true);
    }
    (caller.to_string(), false)
}

/// What an identity without access to cluster `cluster` is told (`caller`: its ARN as STS
/// gives it): the key to add it to, and that an identity with access must deploy that once.
pub fn no_access_message(caller: &str, cluster: &str) -> String {
    let (principal, role) = principal_of_caller(caller);
    let path = if role {
        " (with the role's path before its name, if it has one)"
    } else {
        ""
    };
    format!(
        "the AWS identity {caller} has no access entry on EKS cluster {cluster}, whose API server answers it 401 Unauthorized. Add `{principal}`{path} to `amazon_web_services.cluster_admins` in qhub-config.yaml, then deploy once with an identity that has access (the one that created the cluster, or one already listed there); after that this identity can deploy"
    )
}

impl AwsProvider {
    /// Where the engine reaches cluster `name`: the configured endpoint
    /// ([`crate::AwsOptions::cluster_endpoint`]), else EKS's own, which in emulator mode is
    /// not real (`None`).
    pub(crate) fn endpoint_of(
        &self,
        name: &str,
        cluster: &ActiveCluster,
    ) -> Result<Option<ClusterEndpoint>, ProviderError> {
        if let Some(server) = &self.options.cluster_endpoint {
            let loopback = server
                .parse::<http::Uri>()
                .ok()
                .and_then(|u| u.host().map(str::to_string))
                .is_some_and(|h| {
                    h == "localhost"
                        || h.parse::<std::net::IpAddr>()
                            .is_ok_and(|ip| ip.is_loopback())
                });
            if !server.starts_with("https://") && !loopback {
                return Err(failed(format!(
                    "the API server of EKS cluster {name}, {server}, must be https:// (plain http only on loopback)"
                )));
            }
            return Ok(Some(ClusterEndpoint {
                server: server.clone(),
                ca_pem: Vec::new(),
            }));
        }
        if self.emulator() {
            return Ok(None);
        }
        Ok(Some(ClusterEndpoint {
            server: cluster.endpoint.clone(),
            ca_pem: cluster.ca_pem.clone(),
        }))
    }

    /// A client for `endpoint` whose requests carry EKS tokens for cluster `name`.
    pub(crate) async fn token_client(
        &self,
        name: &str,
        endpoint: &ClusterEndpoint,
    ) -> Result<kube::Client, ProviderError> {
        let tokens = EksTokens::new(
            self.clients().await?.credentials.clone(),
            &self.region,
            name,
        );
        qhub_core::kubernetes::auth::client_with_token(endpoint, std::sync::Arc::new(tokens))
    }

    /// Asks the API server who we are in the cheapest way (`GET /version`, which a token the
    /// authenticator refuses gets 401 for like any path): refused, the identity
    /// (`sts:GetCallerIdentity`) and the fix ([`no_access_message`]).
    pub(crate) async fn check_access(
        &self,
        client: &kube::Client,
        cluster: &str,
    ) -> Result<(), ProviderError> {
        match client.apiserver_version().await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 401 => {
                let caller = self
                    .clients()
                    .await?
                    .sts
                    .get_caller_identity()
                    .send()
                    .await
                    .map_err(|e| self.err(AwsError::from_sdk("GetCallerIdentity", e)))?
                    .arn()
                    .unwrap_or("(unknown)")
                    .to_string();
                Err(ProviderError::Unauthorized(no_access_message(
                    &caller, cluster,
                )))
            }
            Err(e) => Err(ProviderError::retryable(format!(
                "reaching the API server of EKS cluster {cluster}: {e}"
            ))),
        }
    }
}

/// An active EKS cluster's API server.
#[derive(Debug)]
pub(crate) struct ActiveCluster {
    pub(crate) endpoint: String,
    pub(crate) ca_pem: Vec<u8>,
    /// The CA as EKS gives it (base64 of the PEM), for kubeconfigs.
    pub(crate) ca_data: String,
}

impl AwsProvider {
    /// The deployment's cluster when it exists, is ours (by tags) and is active; a cluster
    /// still being created is retryable.
    pub(crate) async fn active_cluster(
        &self,
        ownership: &Ownership,
    ) -> Result<Option<ActiveCluster>, ProviderError> {
        use base64::Engine as _;
        let name = ownership.prefix();
        let described = self
            .clients()
            .await?
            .eks
            .describe_cluster()
            .name(&name)
            .send()
            .await;
        let cluster = match described {
            Ok(d) => d.cluster,
            Err(e) => {
                let e = AwsError::from_sdk("DescribeCluster", e);
                if e.is_not_found() {
                    return Ok(None);
                }
                return Err(self.err(e));
            }
        };
        let Some(cluster) = cluster else {
            return Ok(None);
        };
        let tags: BTreeMap<String, String> = cluster
            .tags()
            .map(|t| t.clone().into_iter().collect())
            .unwrap_or_default();
        if !ownership.owns(&tags) {
            return Err(ProviderError::Fatal(format!(
                "EKS cluster {name} exists and is not owned by this deployment"
            )));
        }
        match cluster.status().map(|s| s.as_str()) {
            Some("ACTIVE" | "UPDATING") => {}
            // Creating, failed or being deleted: no API server to use now. A deploy waits for
            // the cluster in the infrastructure stage before it asks again; a destroy has no
            // object to delete through it.
            other => {
                return Err(ProviderError::NoCluster(format!(
                    "EKS cluster {name} is {}",
                    other.unwrap_or("in an unknown state")
                )));
            }
        }
        let endpoint = cluster.endpoint().unwrap_or_default().to_string();
        let ca_data = cluster
            .certificate_authority()
            .and_then(|c| c.data())
            .unwrap_or_default()
            .trim()
            .to_string();
        let ca_pem = Some(ca_data.as_str())
            .filter(|d| !d.is_empty())
            .map(|d| base64::engine::general_purpose::STANDARD.decode(d))
            .transpose()
            .map_err(|e| ProviderError::Fatal(format!("EKS cluster {name}: CA data: {e}")))?
            .unwrap_or_default();
        Ok(Some(ActiveCluster {
            endpoint,
            ca_pem,
            ca_data,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(token: &str) -> String {
        let b64 = token.strip_prefix(TOKEN_PREFIX).expect("prefix");
        String::from_utf8(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(b64)
                .expect("unpadded base64url"),
        )
        .expect("utf-8")
    }

    #[test]
    fn the_token_is_a_presigned_get_caller_identity_url_for_the_cluster() {
        let creds = Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", None, None, "t");
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let token = eks_token(&creds, "eu-west-1", "demo-dev", at).unwrap();
        assert!(!token.contains('='), "unpadded: {token}");
        let url = decode(&token);
        assert!(
            url.starts_with(
                "https://sts.eu-west-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&"
            ),
            "{url}"
        );
        // The reference: botocore 1.x (what `aws eks get-token` runs), same credentials,
        // region, cluster and time, `generate_presigned_url("get_caller_identity",
        // ExpiresIn=60)` with the x-k8s-aws-id header added before signing.
        assert_eq!(
            url,
            "https://sts.eu-west-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15\
             &X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIDEXAMPLE%2F20231114%2Feu-west-1%2Fsts%2Faws4_request\
             &X-Amz-Date=20231114T221320Z&X-Amz-Expires=60\
             &X-Amz-SignedHeaders=host%3Bx-k8s-aws-id\
             &X-Amz-Signature=f7c2a59db5d6e64d12b8d6d746917f26dac5d299dc60592387aad3279e6bc602"
        );
        // The secret never appears; the signature depends on the cluster name.
        assert!(!url.contains("wJalrXUtnFEMI"));
        let other = decode(&eks_token(&creds, "eu-west-1", "other-dev", at).unwrap());
        assert_ne!(url, other);
    }

    #[test]
    fn the_token_is_presigned_for_the_sts_host_of_the_regions_partition() {
        let creds = Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", None, None, "t");
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for (region, host) in [
            ("cn-north-1", "sts.cn-north-1.amazonaws.com.cn"),
            ("us-gov-west-1", "sts.us-gov-west-1.amazonaws.com"),
            ("eu-west-1", "sts.eu-west-1.amazonaws.com"),
        ] {
            let url = decode(&eks_token(&creds, region, "demo-dev", at).unwrap());
            let prefix = format!("https://{host}/?Action=GetCallerIdentity&Version=2011-06-15&");
            assert!(url.starts_with(&prefix), "{region}: {url}");
            // Signed for the region's own STS, and the host is a signed header.
            let scope = format!("%2F{region}%2Fsts%2Faws4_request");
            assert!(url.contains(&scope), "{region}: {url}");
            assert!(
                url.contains("X-Amz-SignedHeaders=host%3Bx-k8s-aws-id"),
                "{url}"
            );
        }
    }

    #[test]
    fn a_session_token_is_carried_in_the_url() {
        let creds = Credentials::new("ASIAX", "secret", Some("SESSION/TOKEN".into()), None, "t");
        let url = decode(&eks_token(&creds, "us-east-1", "c", SystemTime::now()).unwrap());
        assert!(
            url.contains("X-Amz-Security-Token=SESSION%2FTOKEN"),
            "{url}"
        );
    }

    #[tokio::test]
    async fn tokens_are_reused_then_reminted() {
        let creds = Credentials::new("AKID", "secret", None, None, "t");
        let tokens = EksTokens::new(SharedCredentialsProvider::new(creds), "us-west-2", "c");
        let a = tokens.token().await.unwrap();
        assert_eq!(tokens.token().await.unwrap(), a);
        // Age the cached token past the reuse window.
        if let Some((_, minted)) = tokens.cached.lock().unwrap().as_mut() {
            *minted = Instant::now() - TOKEN_REUSE - Duration::from_secs(1);
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let b = tokens.token().await.unwrap();
        assert_ne!(a, b, "an aged token is minted again (new X-Amz-Date)");
    }

    #[test]
    fn an_identity_without_access_is_told_which_key_to_add_it_to() {
        let m = no_access_message(
            "arn:aws:sts::111122223333:assumed-role/ci-deploy/gha-42",
            "demo-dev",
        );
        assert_eq!(
            m,
            "the AWS identity arn:aws:sts::111122223333:assumed-role/ci-deploy/gha-42 has no access entry on EKS cluster demo-dev, whose API server answers it 401 Unauthorized. Add `arn:aws:iam::111122223333:role/ci-deploy` (with the role's path before its name, if it has one) to `amazon_web_services.cluster_admins` in qhub-config.yaml, then deploy once with an identity that has access (the one that created the cluster, or one already listed there); after that this identity can deploy"
        );
        let (user, role) = principal_of_caller("arn:aws-cn:iam::111122223333:user/alice");
        assert_eq!(
            (user.as_str(), role),
            ("arn:aws-cn:iam::111122223333:user/alice", false)
        );
    }

    #[test]
    fn the_kubeconfig_holds_no_credential_and_parses() {
        let text = kubeconfig(
            "demo-dev",
            "us-west-2",
            "https://ABC.eks.amazonaws.com",
            "Q0E=",
        );
        let parsed = kube::config::Kubeconfig::from_yaml(&text).expect("valid kubeconfig");
        assert_eq!(parsed.current_context.as_deref(), Some("demo-dev"));
        let user = parsed.auth_infos[0].auth_info.as_ref().unwrap();
        assert!(user.token.is_none());
        let exec = user.exec.as_ref().unwrap();
        assert_eq!(exec.command.as_deref(), Some("aws"));
        assert!(
            exec.args
                .as_ref()
                .unwrap()
                .contains(&"demo-dev".to_string())
        );
    }
}
