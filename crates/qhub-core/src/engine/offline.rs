//! Planning the Kubernetes stage before the cluster exists.
//!
//! Every Kubernetes object, Keycloak resource and DNS record of a deployment follows from the
//! config and the provider's cluster facts ([`crate::provider::Provider::cluster_facts`]), and
//! those facts follow from the config too, except the few only the cloud makes (named
//! placeholders, [`crate::provider::facts::AFTER_APPLY`], such as the address of an EFS file
//! system).
//! So before the cluster exists nothing of the stage can exist either, and a preview (`qhub
//! plan`) lists the whole stage as creates, from the config alone.
//!
//! Two cases reach that plan:
//! - a provider that hands out cluster access finds no cluster ([`super::connect`] gives no
//!   client): the stage is planned against nothing, as it always was; the preview says so;
//! - a provider that hands out no cluster access here (a cloud emulator without a kubeconfig
//!   override) answers [`ProviderError::NoCluster`]: the preview plans the stage all the same,
//!   and Keycloak's configuration with it (there is nothing of it to observe yet either).
//!
//! A plan made to be applied ([`super::Locked::plan`]) keeps the stage out in the second case:
//! the apply could not reach the cluster it creates. After the infrastructure stage the apply
//! builds the objects again from the facts of the infrastructure that now exists (the
//! `rebuild` of [`super::Engine`]'s apply), so a placeholder never reaches the cluster.

use crate::plan::Stage;
use crate::provider::{Ownership, ProviderError};

use super::{Engine, EngineError, StageFilter};

/// The one line a preview prints when the cluster does not exist yet.
pub(crate) const PLANNED_FROM_CONFIG: &str =
    "the cluster does not exist yet: the Kubernetes stage is planned from the config";

/// How a plan covers the Kubernetes stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct KubernetesStage {
    /// The stage is planned.
    pub(super) planned: bool,
    /// It is planned from the config alone: the provider hands out no cluster access, and the
    /// cluster does not exist (so neither does anything in it).
    pub(super) offline: bool,
}

impl Engine {
    /// Whether (and how) a plan covers the Kubernetes stage. `preview`: the plan is shown, not
    /// applied (`qhub plan`), so a provider without cluster access still plans the stage when
    /// its cluster does not exist.
    pub(super) async fn kubernetes_planned(
        &self,
        ownership: &Ownership,
        stages: StageFilter,
        preview: bool,
    ) -> Result<KubernetesStage, EngineError> {
        if preview
            && stages.includes(Stage::Kubernetes)
            && !self.provider.capabilities().cluster_access
            && self.cluster_missing(ownership).await?
        {
            return Ok(KubernetesStage {
                planned: true,
                offline: true,
            });
        }
        Ok(KubernetesStage {
            planned: self.kubernetes_stage(stages)?,
            offline: false,
        })
    }

    /// Whether the provider says the deployment's cluster does not exist (or cannot hold
    /// anything yet: creating). Any answer but [`ProviderError::NoCluster`] (a cluster this
    /// process cannot reach, an operation the provider does not support) is "it may exist".
    async fn cluster_missing(&self, ownership: &Ownership) -> Result<bool, EngineError> {
        let provider = &*self.provider;
        self.read("looking for the cluster", || async {
            match provider.cluster_access(ownership).await {
                Err(ProviderError::NoCluster(why)) => {
                    tracing::debug!("no cluster: {why}");
                    Ok(true)
                }
                Err(e) if e.is_retryable() => Err(e),
                Ok(_) | Err(_) => Ok(false),
            }
        })
        .await
    }
}

/// Says, once per preview, that the Kubernetes stage comes from the config.
pub(super) fn planned_from_config(preview: bool, connected: bool) {
    if preview && !connected {
        tracing::warn!("{PLANNED_FROM_CONFIG}");
    }
}
