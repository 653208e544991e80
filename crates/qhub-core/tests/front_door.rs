//! "Deploy succeeded" means the front door can answer: after the Kubernetes stage, every URL
//! has a route, its Service exists with ready endpoints, and the ingress controller may read
//! everything its providers watch; otherwise the deploy fails naming the missing piece. The
//! network probe through the load balancer runs against a loopback server here; the sandbox
//! skips it and says so. A re-deploy right after the namespace was deleted waits for its
//! termination instead of failing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use qhub_core::Config;
use qhub_core::config::init::{InitOptions, render};
use qhub_core::config::provider::ProviderKind;
use qhub_core::engine::{ApplyReport, Engine, EngineOptions, StageFilter};
use qhub_core::events::{Event, EventSink, NoEvents};
use qhub_core::kubernetes::front_door::{self, FrontDoorError, Missing};
use qhub_core::provider::{Ownership, Provider};
use qhub_sandbox::SandboxProvider;
use qhub_sandbox::faults::FaultSpec;
use qhub_sandbox::kube_api::KubeApi;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

fn config() -> Config {
    render(&InitOptions::new(
        ProviderKind::Sandbox,
        "demo",
        "demo.example.com",
        "not-a-real-password",
    ))
    .unwrap()
}

fn engine(provider: &SandboxProvider) -> Engine {
    Engine::new(
        Arc::new(provider.clone()) as Arc<dyn Provider>,
        EngineOptions {
            min_deadline: Duration::from_secs(60),
            deadline_factor: 0.01,
            poll_interval: Duration::from_millis(20),
            endpoints_grace: Duration::from_millis(300),
            ..EngineOptions::default()
        },
    )
}

async fn deploy_with(engine: &Engine, config: &Config, events: Arc<dyn EventSink>) -> ApplyReport {
    engine
        .deploy(config, StageFilter::All, events, CancellationToken::new())
        .await
        .expect("deploy runs")
        .1
}

fn failure(report: &ApplyReport) -> String {
    assert!(!report.succeeded(), "the deploy succeeded: {report:?}");
    report
        .failed
        .iter()
        .map(|(id, _, e)| format!("{id}: {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The ClusterRole that grants the ingress controller's service account its watches.
fn ingress_cluster_role(kube: &KubeApi) -> String {
    kube.objects()
        .into_iter()
        // The ingress's own (Dask Gateway's controller also names `ingressroutes`).
        .find(|o| {
            o["kind"] == "ClusterRole"
                && o["metadata"]["labels"]["app.kubernetes.io/component"] == "ingress"
                && o.to_string().contains("ingressroutes")
        })
        .and_then(|o| o["metadata"]["name"].as_str().map(str::to_string))
        .expect("the ingress ClusterRole exists")
}

fn drop_configmaps(role: &mut Value) {
    for rule in role["rules"].as_array_mut().into_iter().flatten() {
        if let Some(resources) = rule["resources"].as_array_mut() {
            resources.retain(|r| r != "configmaps");
        }
    }
}

/// Runs `f` once, the moment the front-door check starts (after every Kubernetes change):
/// another actor's edit the plan could not have seen.
struct AtFrontDoor(Mutex<Option<Box<dyn FnOnce() + Send>>>);

impl EventSink for AtFrontDoor {
    fn emit(&self, event: &Event) {
        if let Event::Started { resource, .. } = event
            && resource.kind == "FrontDoor"
            && let Some(f) = self.0.lock().unwrap().take()
        {
            f();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_deploy_checks_the_front_door_and_says_the_probe_was_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let provider = SandboxProvider::new(dir.path(), 0.0, FaultSpec::default());
    let config = config();
    let report = deploy_with(&engine(&provider), &config, Arc::new(NoEvents)).await;
    assert!(report.succeeded(), "{report:?}");
    assert!(
        report.notes.iter().any(|n| n
            .contains("health checks through the load balancer were skipped")
            && n.contains("sandbox")
            && n.contains("7 URL(s)")),
        "{:?}",
        report.notes
    );
    // And in the cluster's own terms: every URL has a route, a Service, ready endpoints.
    let kube = provider.kube_api(&Ownership::of(&config)).unwrap();
    let checked = front_door::check_cluster(&kube.client(), &config)
        .await
        .unwrap();
    // `/`, `/auth/`, `/hub/`, `/conda-store/`, `/gateway/`, `/monitoring/` and
    // `/services/kbatch/` (behind the hub's route).
    assert_eq!(checked.urls, 7);
    assert_eq!(
        checked.permissions, 44,
        "every permission of the Traefik table"
    );
}

/// Traefik v3.4+ waits for its ConfigMaps watch before it loads any route
/// (traefik/traefik#11739): without `configmaps` in its ClusterRole every URL is a 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_whose_ingress_may_not_watch_configmaps_fails_naming_rbac() {
    let dir = tempfile::tempdir().unwrap();
    let provider = SandboxProvider::new(dir.path(), 0.0, FaultSpec::default());
    let config = config();
    let engine = engine(&provider);
    assert!(
        deploy_with(&engine, &config, Arc::new(NoEvents))
            .await
            .succeeded()
    );
    let kube = provider.kube_api(&Ownership::of(&config)).unwrap();
    let role = ingress_cluster_role(&kube);
    let edit = kube.clone();
    let sink = AtFrontDoor(Mutex::new(Some(Box::new(move || {
        assert!(edit.edit(
            "rbac.authorization.k8s.io",
            "ClusterRole",
            "",
            &role,
            drop_configmaps
        ));
    }))));
    let report = deploy_with(&engine, &config, Arc::new(sink)).await;
    let error = failure(&report);
    assert!(
        error.contains("FrontDoor")
            && error.contains("RBAC")
            && error.contains("get core/configmaps")
            && error.contains("watch core/configmaps")
            && !error.contains("secrets"),
        "{error}"
    );
}

/// A route whose Service has no ready endpoint (its pods fail their readiness probe): the
/// ingress would answer 503, so the deploy fails naming the endpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_whose_route_has_no_ready_endpoints_fails_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let provider = SandboxProvider::new(dir.path(), 0.0, FaultSpec::default());
    let config = config();
    let engine = engine(&provider);
    assert!(
        deploy_with(&engine, &config, Arc::new(NoEvents))
            .await
            .succeeded()
    );
    let kube = provider.kube_api(&Ownership::of(&config)).unwrap();
    let welcome_pods: Vec<String> = kube
        .objects()
        .into_iter()
        .filter(|o| {
            o["kind"] == "Pod"
                && o["metadata"]["ownerReferences"][0]["name"]
                    == qhub_core::kubernetes::components::welcome::NAME
        })
        .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    assert!(!welcome_pods.is_empty());
    let edit = kube.clone();
    let namespace = config.namespace.clone();
    let sink = AtFrontDoor(Mutex::new(Some(Box::new(move || {
        for pod in &welcome_pods {
            assert!(edit.edit("", "Pod", &namespace, pod, |p| {
                p["status"]["conditions"][0]["status"] = "False".into();
            }));
        }
    }))));
    let report = deploy_with(&engine, &config, Arc::new(sink)).await;
    let error = failure(&report);
    assert!(
        error.contains("endpoints: Service")
            && error.contains(&format!(
                "{}/{}",
                config.namespace,
                qhub_core::kubernetes::components::welcome::NAME
            ))
            && error.contains("https://demo.example.com/"),
        "{error}"
    );
}

/// Without a route for a URL, or with a route to a missing Service, the check names them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_route_or_service_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let provider = SandboxProvider::new(dir.path(), 0.0, FaultSpec::default());
    let config = config();
    assert!(
        deploy_with(&engine(&provider), &config, Arc::new(NoEvents))
            .await
            .succeeded()
    );
    let kube = provider.kube_api(&Ownership::of(&config)).unwrap();
    let client = kube.client();
    let keycloak = qhub_core::kubernetes::components::keycloak::NAME;
    let routes: Vec<Value> = kube
        .objects()
        .into_iter()
        .filter(|o| o["kind"] == "IngressRoute")
        .collect();
    let keycloak_route = routes
        .iter()
        .find(|r| r.to_string().contains("/auth"))
        .and_then(|r| r["metadata"]["name"].as_str())
        .unwrap()
        .to_string();
    assert!(kube.edit(
        "traefik.io",
        "IngressRoute",
        &config.namespace,
        &keycloak_route,
        |r| {
            r["spec"]["routes"][0]["services"][0]["name"] = "gone".into();
        }
    ));
    let Err(FrontDoorError::Missing(m)) = front_door::check_cluster(&client, &config).await else {
        panic!("the check passed");
    };
    assert_eq!(
        m,
        [Missing::Service {
            url: "https://demo.example.com/auth/".into(),
            route: format!("{}/{keycloak_route}", config.namespace),
            service: format!("{}/gone", config.namespace),
        }],
        "{keycloak}"
    );
    for r in &routes {
        let name = r["metadata"]["name"].as_str().unwrap();
        kube.edit("traefik.io", "IngressRoute", &config.namespace, name, |r| {
            r["spec"]["routes"][0]["match"] = "Host(`elsewhere.example.com`)".into();
        });
    }
    let Err(e) = front_door::check_cluster(&client, &config).await else {
        panic!("the check passed");
    };
    let message = e.to_string();
    assert!(
        message.contains("route: no IngressRoute matches https://demo.example.com/ ")
            && message.contains("route: no IngressRoute matches https://demo.example.com/auth/"),
        "{message}"
    );
}

/// A namespace deleted out of band (`kubectl delete namespace`, an interrupted destroy) is
/// still Terminating when the next deploy starts: the deploy waits for it to go, says so, and
/// creates it again (before: the namespace's apply waited for `Active` until its deadline and
/// everything applied into it was refused with 403).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_right_after_the_namespace_was_deleted_waits_for_its_termination() {
    let dir = tempfile::tempdir().unwrap();
    let provider = SandboxProvider::new(dir.path(), 0.0, FaultSpec::default());
    let config = config();
    let engine = Engine::new(
        Arc::new(provider.clone()) as Arc<dyn Provider>,
        EngineOptions {
            // Short deadlines: the namespace's wait must fit, not a retry budget.
            min_deadline: Duration::from_secs(8),
            deadline_factor: 0.01,
            poll_interval: Duration::from_millis(20),
            ..EngineOptions::default()
        },
    );
    assert!(
        deploy_with(&engine, &config, Arc::new(NoEvents))
            .await
            .succeeded()
    );
    let kube = provider.kube_api(&Ownership::of(&config)).unwrap();
    kube.set_finalize_after(Duration::from_secs(2));
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
        kube::Api::all(kube.client());
    namespaces
        .delete(&config.namespace, &Default::default())
        .await
        .unwrap();
    let events = Arc::new(qhub_core::events::CollectEvents::default());
    let report = deploy_with(&engine, &config, events.clone()).await;
    assert!(report.succeeded(), "{report:?}");
    let live = namespaces.get(&config.namespace).await.unwrap();
    assert!(live.metadata.deletion_timestamp.is_none());
    assert!(
        events
            .events()
            .iter()
            .any(|e| matches!(e, Event::Waiting { detail, .. }
            if detail.contains("still being deleted") && detail.contains("Terminating"))),
        "no progress said why the deploy waited"
    );
}
