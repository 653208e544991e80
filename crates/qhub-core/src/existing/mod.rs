//! The `existing` and `local` providers: the platform on a Kubernetes cluster the user already
//! has, reached through a kubeconfig context (`kube_context`, or the current one). They build
//! no infrastructure; the Kubernetes stage places pods with the config's `node_selectors` and
//! uses the cluster's default storage class.
//!
//! `local` is the same for kind, k3d or minikube; such clusters usually have no load-balancer
//! controller, so the ingress Service may stay without an address: reach the platform with
//! `kubectl -n NAMESPACE port-forward svc/traefik 8443:443` (or `minikube tunnel`).
//!
//! Before a deploy, the preflight reads the cluster's facts the platform relies on: a default
//! StorageClass (an error without one) and nodes for every `node_selectors` entry (warnings).
//!
//! The kubeconfig is read from `KUBECONFIG` (the first file of the list) or
//! `~/.kube/config`, at the moment cluster access is asked for: nothing is cached or written.

mod preflight;

use std::path::PathBuf;

use async_trait::async_trait;

use crate::config::{Config, ProviderKind};
use crate::plan::{Change, Observed, Resource};
use crate::provider::{
    ApplyContext, Capabilities, ClusterAccess, ClusterFacts, Facts, Ownership, Preflight, Provider,
    ProviderError,
};

/// A cluster the user brings.
#[derive(Debug, Clone)]
pub struct ExistingProvider {
    kind: ProviderKind,
    context: Option<String>,
    kubeconfig: Option<PathBuf>,
}

/// The kubeconfig file `KUBECONFIG` names (its first entry), else `~/.kube/config`.
pub fn default_kubeconfig() -> Option<PathBuf> {
    if let Some(list) = std::env::var_os("KUBECONFIG")
        && let Some(first) = std::env::split_paths(&list).find(|p| !p.as_os_str().is_empty())
    {
        return Some(first);
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube").join("config"))
}

impl ExistingProvider {
    /// The provider for a config with `provider: existing` or `local`.
    pub fn for_config(config: &Config) -> Result<Self, ProviderError> {
        let section = config.existing_section().ok_or_else(|| {
            ProviderError::Fatal(format!(
                "provider `{}` needs its `{}` section",
                config.provider, config.provider
            ))
        })?;
        Ok(Self {
            kind: config.provider,
            context: section.kube_context.clone(),
            kubeconfig: default_kubeconfig(),
        })
    }

    /// The same, reading the kubeconfig from `path` (tests, tools).
    #[must_use]
    pub fn with_kubeconfig(mut self, path: PathBuf) -> Self {
        self.kubeconfig = Some(path);
        self
    }

    fn key(&self) -> &'static str {
        if self.kind == ProviderKind::Local {
            "local.kube_context"
        } else {
            "existing.kube_context"
        }
    }
}

#[async_trait]
impl Provider for ExistingProvider {
    fn name(&self) -> &str {
        self.kind.as_str()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            infrastructure: false,
            cluster_access: true,
            scale_to_zero: false,
            gpu: false,
        }
    }

    fn node_group_keys(&self) -> &'static [&'static str] {
        &[]
    }

    /// Reads the cluster for what the platform relies on (module `existing::preflight`): a default
    /// StorageClass (an error without one) and nodes for every `node_selectors` entry.
    async fn preflight(&self, config: &Config) -> Result<Preflight, ProviderError> {
        let client = self
            .cluster_access(&Ownership::of(config))
            .await?
            .client()
            .await?;
        let section = if self.kind == ProviderKind::Local {
            "local"
        } else {
            "existing"
        };
        preflight::check(
            &client,
            config,
            section,
            &crate::retry::RetryPolicy::default(),
        )
        .await
    }

    async fn discover(&self, _config: &Config) -> Result<Facts, ProviderError> {
        Ok(Facts::none())
    }

    fn desired(&self, _config: &Config, _facts: &Facts) -> Result<Vec<Resource>, ProviderError> {
        Ok(Vec::new())
    }

    async fn observe(&self, _ownership: &Ownership) -> Result<Vec<Observed>, ProviderError> {
        Ok(Vec::new())
    }

    async fn apply(&self, change: &Change, _ctx: &ApplyContext) -> Result<(), ProviderError> {
        Err(ProviderError::NotSupported(format!(
            "provider `{}` builds no infrastructure ({})",
            self.name(),
            change.id
        )))
    }

    fn cluster_facts(&self, config: &Config, _infra: &[Observed]) -> ClusterFacts {
        // Node selectors from the config, the cluster's default storage class, an NFS server
        // in the cluster; whether GPUs have a device plugin is the cluster owner's business.
        let mut facts = ClusterFacts::from_config(config);
        facts.gpu.device_plugin = false;
        facts
    }

    async fn cluster_access(&self, _ownership: &Ownership) -> Result<ClusterAccess, ProviderError> {
        crate::tls::install_crypto_provider();
        let path = self.kubeconfig.clone().ok_or_else(|| {
            ProviderError::Fatal("no kubeconfig: set KUBECONFIG or create ~/.kube/config".into())
        })?;
        let kubeconfig = kube::config::Kubeconfig::read_from(&path).map_err(|e| {
            ProviderError::Fatal(format!("reading the kubeconfig {}: {e}", path.display()))
        })?;
        if let Some(ctx) = &self.context
            && !kubeconfig.contexts.iter().any(|c| &c.name == ctx)
        {
            let known: Vec<&str> = kubeconfig
                .contexts
                .iter()
                .map(|c| c.name.as_str())
                .collect();
            return Err(ProviderError::Fatal(format!(
                "{}: context `{ctx}` is not in {} (it has: {}); fix the key or switch KUBECONFIG",
                self.key(),
                path.display(),
                known.join(", ")
            )));
        }
        let options = kube::config::KubeConfigOptions {
            context: self.context.clone(),
            ..kube::config::KubeConfigOptions::default()
        };
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|e| {
                ProviderError::Fatal(format!(
                    "the kubeconfig {} is unusable: {e}",
                    path.display()
                ))
            })?;
        let client = kube::Client::try_from(config)
            .map_err(|e| ProviderError::Fatal(format!("cannot build a Kubernetes client: {e}")))?;
        Ok(ClusterAccess::Client(client))
    }
}
