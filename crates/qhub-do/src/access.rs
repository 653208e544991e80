//! Access to the deployment's cluster.
//!
//! - For the engine ([`ACCESS_EXPIRY`]): DOKS's `/kubeconfig` with a token that expires after an
//!   hour, asked for afresh each time access is needed, so a long apply never holds a token
//!   near its end (QHub's EKS runs died of exactly that, nebari-dev/nebari#1106).
//! - For people (`qhub kubeconfig`): the cluster's server and CA from `/credentials`, and an
//!   `exec` stanza running `doctl` to mint tokens, as `doctl kubernetes cluster kubeconfig save`
//!   writes: no secret is stored in the file.

use std::time::Duration;

use crate::client::Credentials;

/// Lifetime of the tokens handed to the engine.
pub const ACCESS_EXPIRY: Duration = Duration::from_secs(3600);

/// The kubeconfig context name doctl uses: `do-<region>-<cluster name>`.
pub fn context_name(region: &str, cluster: &str) -> String {
    format!("do-{region}-{cluster}")
}

/// A kubeconfig for people: server and CA from `credentials`, tokens from `doctl`.
pub fn exec_kubeconfig(
    region: &str,
    cluster_name: &str,
    cluster_id: &str,
    credentials: &Credentials,
) -> String {
    let name = context_name(region, cluster_name);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: {server}
  name: {name}
contexts:
- context:
    cluster: {name}
    user: {name}-admin
  name: {name}
current-context: {name}
preferences: {{}}
users:
- name: {name}-admin
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: doctl
      args:
      - kubernetes
      - cluster
      - kubeconfig
      - exec-credential
      - --version=v1beta1
      - --context=default
      - {cluster_id}
      interactiveMode: IfAvailable
      provideClusterInfo: false
",
        ca = credentials.certificate_authority_data,
        server = credentials.server,
    )
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
        assert!(text.contains("command: doctl") && text.contains("- 1234"));
        assert!(text.contains("current-context: do-nyc3-demo-dev"));
        assert!(!format!("{c:?}").contains("secret-token"));
    }
}
