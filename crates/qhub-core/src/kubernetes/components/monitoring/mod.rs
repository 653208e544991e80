//! Monitoring (when `monitoring.enabled`): Prometheus ([`prometheus`]) scraping the cluster
//! (kubelets and cAdvisor, kube-state-metrics and the node exporter of [`exporters`], anything
//! annotated `prometheus.io/scrape`), Traefik, JupyterHub, conda-store and Dask's schedulers
//! through Kubernetes service discovery; Grafana ([`grafana`]) at `/monitoring`, login through
//! Keycloak, with Prometheus as its data source and dashboards for the cluster, JupyterHub and
//! Dask Gateway provisioned from files; Loki with Grafana Alloy shipping every pod's log
//! ([`loki`]), so Grafana shows pod logs beside the metrics.

pub mod exporters;
pub mod grafana;
pub mod loki;
pub mod prometheus;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use serde_json::Value as Json;

use super::{Built, Component, Context, KubeError, manifest};
use crate::kubernetes::recipes;
use crate::kubernetes::versions;

/// The component's name.
pub const NAME: &str = "monitoring";

/// The API token Prometheus presents to JupyterHub's `/hub/metrics`: a generated Secret,
/// which the hub registers as the service `monitoring` with the `read:metrics` scope
/// (contract with jupyterhub, see docs/platform.md).
pub mod hub_token {
    /// The Secret.
    pub const SECRET: &str = "monitoring-hub-token";
    /// Its key.
    pub const KEY: &str = "token";
    /// The hub service's name.
    pub const SERVICE: &str = "monitoring";
}

/// Monitoring.
#[derive(Debug, Clone, Copy)]
pub struct Monitoring;

/// Whether the config turns monitoring on.
pub fn enabled(config: &crate::Config) -> bool {
    config.monitoring.as_ref().is_some_and(|t| t.enabled)
}

fn hub_token_secret(ctx: &Context<'_>) -> Result<Json, KubeError> {
    let recipe = recipes::Recipe::Passwords {
        keys: vec![hub_token::KEY.into()],
        fixed: BTreeMap::new(),
    };
    let mut meta = ctx.meta(NAME, hub_token::SECRET);
    meta.annotations = Some(BTreeMap::from([(
        recipes::ANNOTATION.to_string(),
        recipe.to_string(),
    )]));
    manifest(&Secret {
        metadata: meta,
        type_: Some("Opaque".into()),
        ..Secret::default()
    })
}

impl Component for Monitoring {
    fn name(&self) -> &'static str {
        NAME
    }

    fn enabled(&self, ctx: &Context<'_>) -> bool {
        enabled(ctx.config)
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &["ingress", "keycloak"]
    }

    fn build(&self, ctx: &Context<'_>) -> Result<Built, KubeError> {
        let mut out = vec![hub_token_secret(ctx)?];
        out.extend(prometheus::objects(ctx)?);
        out.extend(exporters::kube_state_metrics(ctx)?);
        out.extend(exporters::node_exporter(ctx)?);
        out.extend(loki::objects(ctx)?);
        out.extend(grafana::objects(ctx)?);
        let [config, dashboards] = grafana::config_files(ctx);
        let [loki_config, alloy_config] = loki::config_files(ctx);
        Ok(Built::new(out)
            .images([
                versions::PROMETHEUS,
                versions::KUBE_STATE_METRICS,
                versions::NODE_EXPORTER,
                versions::GRAFANA,
                versions::LOKI,
                versions::ALLOY,
            ])
            .config_file(prometheus::config_file(ctx))
            .config_file(config)
            .config_file(dashboards)
            .config_file(loki_config)
            .config_file(alloy_config)
            .client(grafana::client())
            .route(grafana::route())
            // Prometheus replays its write-ahead log at start: a minute or two on a full
            // volume.
            .ready_within(Duration::from_secs(180)))
    }
}

#[cfg(test)]
mod tests;
