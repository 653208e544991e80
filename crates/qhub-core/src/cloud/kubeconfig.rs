//! Kubeconfigs for a cluster: with a bearer token (the engine's own short-lived access) or an
//! `exec` stanza that mints tokens when kubectl needs them (what `qhub kubeconfig` writes: no
//! stored secret).

use serde_json::json;

/// A kubeconfig for one cluster.
#[derive(Clone)]
pub struct Kubeconfig {
    name: String,
    server: String,
    ca_data_b64: String,
    user: serde_json::Value,
}

impl std::fmt::Debug for Kubeconfig {
    // A token user holds a secret: leave it out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kubeconfig")
            .field("name", &self.name)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Kubeconfig {
    /// A kubeconfig whose user presents a bearer `token`.
    pub fn with_token(name: &str, server: &str, ca_data_b64: &str, token: &str) -> Self {
        Self {
            name: name.to_string(),
            server: server.to_string(),
            ca_data_b64: ca_data_b64.to_string(),
            user: json!({"token": token}),
        }
    }

    /// A kubeconfig whose user runs `command args…` for a token (client.authentication.k8s.io
    /// v1beta1), with a hint printed when the command is missing.
    pub fn with_exec(
        name: &str,
        server: &str,
        ca_data_b64: &str,
        command: &str,
        args: &[&str],
        install_hint: &str,
    ) -> Self {
        Self {
            name: name.to_string(),
            server: server.to_string(),
            ca_data_b64: ca_data_b64.to_string(),
            user: json!({"exec": {
                "apiVersion": "client.authentication.k8s.io/v1beta1",
                "command": command,
                "args": args,
                "installHint": install_hint,
                "interactiveMode": "Never",
                "provideClusterInfo": false,
            }}),
        }
    }

    /// The kubeconfig document (JSON is valid YAML; kubectl and kube-rs read it).
    pub fn to_yaml(&self) -> String {
        let doc = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": self.name, "cluster": {
                "server": self.server,
                "certificate-authority-data": self.ca_data_b64,
            }}],
            "contexts": [{"name": self.name, "context": {"cluster": self.name, "user": self.name}}],
            "current-context": self.name,
            "users": [{"name": self.name, "user": self.user}],
        });
        serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_and_token_kubeconfigs_parse() {
        let exec = Kubeconfig::with_exec(
            "demo",
            "https://1.2.3.4",
            "Q0E=",
            "gke-gcloud-auth-plugin",
            &[],
            "install gke-gcloud-auth-plugin",
        );
        let parsed = kube::config::Kubeconfig::from_yaml(&exec.to_yaml()).unwrap();
        let user = parsed.auth_infos[0].auth_info.as_ref().unwrap();
        assert_eq!(
            user.exec.as_ref().unwrap().command.as_deref(),
            Some("gke-gcloud-auth-plugin")
        );
        let token = Kubeconfig::with_token("demo", "https://1.2.3.4", "Q0E=", "s3cret");
        assert!(!format!("{token:?}").contains("s3cret"));
        let parsed = kube::config::Kubeconfig::from_yaml(&token.to_yaml()).unwrap();
        assert_eq!(parsed.current_context.as_deref(), Some("demo"));
    }
}
