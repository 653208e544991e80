//! The front-door check after a deploy: what "deploy succeeded" means.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cluster::connect;
use super::reconciler::Scope;
use super::{ApplyReport, Engine};
use crate::config::Config;
use crate::events::{Event, EventSink};
use crate::plan::{Action, ResourceId, Stage};

impl Engine {
    /// The front-door check ([`crate::kubernetes::front_door`]): routes, Services, ready
    /// endpoints and the ingress controller's RBAC in the cluster, then each URL through the
    /// load balancer where one can be reached. A failure fails the deploy, naming what is
    /// missing.
    pub(super) async fn front_door(
        &self,
        shared: &Scope,
        config: &Config,
        events: &Arc<dyn EventSink>,
        report: &mut ApplyReport,
    ) {
        use crate::kubernetes::front_door::{self, FrontDoorError, Missing};
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
            let mut notes = Vec::new();
            let urls = crate::kubernetes::endpoints::urls(config);
            if config.provider == crate::config::ProviderKind::Sandbox {
                notes.push(format!(
                    "front door: routes, Services, ready endpoints and the ingress controller's \
                     RBAC ({} permissions) were checked for {} URL(s); the request through the \
                     load balancer was skipped: the sandbox's load balancer is simulated and \
                     {} does not resolve offline",
                    checked.permissions, checked.urls, config.domain
                ));
                return Ok(notes);
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
                notes.push(format!(
                    "front door: routes, Services, ready endpoints and the ingress controller's \
                     RBAC ({} permissions) were checked for {} URL(s); the request through the \
                     load balancer was skipped: the cluster's load balancer is simulated \
                     (annotation {}) and nothing answers at its address",
                    checked.permissions,
                    checked.urls,
                    front_door::SIMULATED_LOAD_BALANCER
                ));
                return Ok(notes);
            }
            let live = crate::kubernetes::endpoints::read(client.clone(), config)
                .await
                .map_err(|e| e.to_string())?;
            let Some(address) = live.load_balancer else {
                notes.push(format!(
                    "front door: routes, Services, ready endpoints and RBAC were checked; the \
                     request through the load balancer was skipped: the ingress has no load \
                     balancer address ({})",
                    live.hint.unwrap_or_default()
                ));
                return Ok(notes);
            };
            let progress = |detail: &str| {
                events.emit(&Event::Waiting {
                    stage: Some(Stage::Kubernetes),
                    resource: id.clone(),
                    detail: detail.to_string(),
                });
            };
            front_door::probe(
                &urls,
                &address,
                None,
                self.options.front_door_deadline,
                &progress,
            )
            .await
            .map_err(|m| FrontDoorError::Missing(m).to_string())?;
            Ok(notes)
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
