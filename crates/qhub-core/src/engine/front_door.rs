//! The front-door check after a deploy: what "deploy succeeded" means.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cluster::connect;
use super::reconciler::Scope;
use super::{ApplyReport, Engine, EngineError};
use crate::config::Config;
use crate::events::{Event, EventSink};
use crate::kubernetes::health::HealthReport;
use crate::plan::{Action, ResourceId, Stage};

impl Engine {
    /// The front-door check ([`crate::kubernetes::front_door`]): routes, Services, ready
    /// endpoints and the ingress controller's RBAC in the cluster, then each listed service's
    /// health check through the load balancer where one can be reached
    /// ([`crate::kubernetes::health`]). A failure fails the deploy, naming what is missing or
    /// unhealthy.
    pub(super) async fn front_door(
        &self,
        shared: &Scope,
        config: &Config,
        events: &Arc<dyn EventSink>,
        report: &mut ApplyReport,
    ) {
        use crate::kubernetes::front_door::{self, FrontDoorError, Missing};
        use crate::kubernetes::health::{self, Timing, Via};
        const KILLED: &str = "the process was killed";
        let id = ResourceId::new("FrontDoor", &config.domain);
        let started = Instant::now();
        events.emit(&Event::Started {
            stage: Stage::Kubernetes,
            resource: id.clone(),
            action: Action::Wait,
            expected: Duration::from_secs(1),
        });
        let outcome: Result<Vec<String>, String> = async {
            let client = match shared.cluster.get() {
                Some(Some(c)) => c.applier.client(),
                _ => match connect(&*self.provider, &shared.ownership).await {
                    Ok(Some(applier)) => applier.client(),
                    Ok(None) => return Err("the cluster does not exist".to_string()),
                    Err(e) => return Err(format!("connecting to the cluster: {e}")),
                },
            };
            let checked = loop {
                match front_door::check_cluster(&client, config).await {
                    Ok(c) => break c,
                    // Endpoints follow ready pods within seconds: wait a little for them.
                    Err(FrontDoorError::Missing(m))
                        if m.iter().all(|x| matches!(x, Missing::Endpoints { .. }))
                            && started.elapsed() < self.options.endpoints_grace =>
                    {
                        let detail = m.iter().map(ToString::to_string).collect::<Vec<_>>();
                        events.emit(&Event::Waiting {
                            stage: Some(Stage::Kubernetes),
                            resource: id.clone(),
                            detail: detail.join("; "),
                        });
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(FrontDoorError::Kube(e)) if crate::provider::find_killed(&e).is_some() => {
                        return Err(KILLED.to_string());
                    }
                    // Reads that ran out of their own retries (throttling, 5xx): the whole
                    // check again, within the grace.
                    Err(FrontDoorError::Kube(e))
                        if e.is_retryable()
                            && started.elapsed()
                                < self.options.endpoints_grace.max(Duration::from_secs(30)) =>
                    {
                        events.emit(&Event::Waiting {
                            stage: Some(Stage::Kubernetes),
                            resource: id.clone(),
                            detail: format!("{e}; checking again"),
                        });
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(e) => return Err(e.to_string()),
                }
            };
            let urls = crate::kubernetes::endpoints::urls(config);
            let address = match self.load_balancer(&client, config).await? {
                Ok(address) => address,
                Err(why) => {
                    return Ok(vec![format!(
                        "front door: routes, Services, ready endpoints and the ingress \
                         controller's RBAC ({} permissions) were checked for {} URL(s); the \
                         health checks through the load balancer were skipped: {why}",
                        checked.permissions, checked.urls
                    )]);
                }
            };
            let progress = |detail: &str| {
                events.emit(&Event::Waiting {
                    stage: Some(Stage::Kubernetes),
                    resource: id.clone(),
                    detail: detail.to_string(),
                });
            };
            let report = health::run(
                &urls,
                &Via::new(address.clone()),
                Timing::within(self.options.front_door_deadline),
                &progress,
            )
            .await;
            let missing = front_door::unhealthy(&report);
            if !missing.is_empty() {
                return Err(FrontDoorError::Missing(missing).to_string());
            }
            Ok(vec![format!(
                "front door: {} health check(s) passed through the load balancer {address} ({})",
                report.checks.len(),
                report
                    .checks
                    .iter()
                    .map(|r| r.url.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )])
        }
        .await;
        match outcome {
            Err(e) if e == KILLED => report.killed = true,
            Ok(notes) => {
                // A check, not a change of the plan: not counted among the changes done.
                report.notes.extend(notes);
                events.emit(&Event::Done {
                    stage: Stage::Kubernetes,
                    resource: id,
                    action: Action::Wait,
                    elapsed: started.elapsed(),
                });
            }
            Err(error) => {
                events.emit(&Event::Failed {
                    stage: Some(Stage::Kubernetes),
                    resource: id.clone(),
                    action: Action::Wait,
                    error: error.clone(),
                });
                report.failed.push((id, Action::Wait, error));
            }
        }
    }
}

impl Engine {
    /// The load balancer's address the health checks go through (`Ok(Ok(address))`), or why
    /// they cannot run from here (`Ok(Err(why))`): the sandbox's and the in-memory API's load
    /// balancers are simulated, and a new one may have no address yet.
    async fn load_balancer(
        &self,
        client: &kube::Client,
        config: &Config,
    ) -> Result<Result<String, String>, String> {
        use crate::kubernetes::front_door;
        if config.provider == crate::config::ProviderKind::Sandbox {
            return Ok(Err(format!(
                "the sandbox's load balancer is simulated and {} does not resolve offline",
                config.domain
            )));
        }
        let services: kube::Api<k8s_openapi::api::core::v1::Service> =
            kube::Api::namespaced(client.clone(), &config.namespace);
        let ingress = services
            .get_opt(crate::kubernetes::components::ingress::NAME)
            .await
            .map_err(|e| format!("reading the ingress Service: {e}"))?;
        if ingress.as_ref().is_some_and(|s| {
            s.metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(front_door::SIMULATED_LOAD_BALANCER))
        }) {
            return Ok(Err(format!(
                "the cluster's load balancer is simulated (annotation {}) and nothing answers \
                 at its address",
                front_door::SIMULATED_LOAD_BALANCER
            )));
        }
        let live = crate::kubernetes::endpoints::read(client.clone(), config)
            .await
            .map_err(|e| e.to_string())?;
        Ok(live.load_balancer.ok_or_else(|| {
            format!(
                "the ingress has no load balancer address ({})",
                live.hint.unwrap_or_default()
            )
        }))
    }

    /// `qhub status`'s health table: each listed service's check through the load balancer
    /// within `deadline` ([`crate::kubernetes::health`]), or every check listed as not run and
    /// why (the sandbox, a simulated load balancer, no address yet, no cluster). `None` when the
    /// provider gives no cluster access. `events` hears the waits.
    pub async fn health(
        &self,
        config: &Config,
        deadline: Duration,
        events: &Arc<dyn EventSink>,
    ) -> Result<Option<HealthReport>, EngineError> {
        if !self.provider.capabilities().cluster_access {
            return Ok(None);
        }
        let urls = crate::kubernetes::endpoints::urls(config);
        let ownership = crate::provider::Ownership::of(config);
        let provider = &*self.provider;
        let applier = self
            .read("connecting to the cluster", || async {
                connect(provider, &ownership).await
            })
            .await?;
        let Some(applier) = applier else {
            return Ok(Some(HealthReport::skipped(
                &urls,
                "the cluster does not exist",
            )));
        };
        let address = match self.load_balancer(&applier.client(), config).await {
            Ok(Ok(address)) => address,
            Ok(Err(why)) => return Ok(Some(HealthReport::skipped(&urls, why))),
            Err(e) => {
                return Err(EngineError::Provider {
                    what: "finding the load balancer".into(),
                    source: crate::provider::ProviderError::Fatal(e),
                });
            }
        };
        let id = ResourceId::new("FrontDoor", &config.domain);
        let progress = |detail: &str| {
            events.emit(&Event::Waiting {
                stage: Some(Stage::Kubernetes),
                resource: id.clone(),
                detail: detail.to_string(),
            });
        };
        Ok(Some(
            crate::kubernetes::health::run(
                &urls,
                &crate::kubernetes::health::Via::new(address),
                crate::kubernetes::health::Timing::within(deadline),
                &progress,
            )
            .await,
        ))
    }
}
