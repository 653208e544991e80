//! The whole base platform on the sandbox, through the engine: every component's objects and
//! Keycloak's configuration (through the built-in admin-API emulator) are deployed; a
//! re-deploy makes no mutating Kubernetes or Keycloak call; a Keycloak client edited out of
//! band is planned and taken back; a component the config drops is pruned; a workload that
//! never becomes ready fails the deploy naming the object and its condition.

use std::sync::Arc;
use std::time::Duration;

use qhub_core::Config;
use qhub_core::engine::{Engine, EngineOptions, StageFilter};
use qhub_core::events::NoEvents;
use qhub_core::plan::Action;
use qhub_core::provider::{Ownership, Provider};
use qhub_sandbox::SandboxProvider;
use qhub_sandbox::faults::FaultSpec;
use tokio_util::sync::CancellationToken;

mod support;
use support::{deploy, engine_with as engine, sandbox_config};

/// The client id the example component (feature `example-component`, on in these tests) takes
/// from the config.
const CLIENT: &str = "hello";

fn base_config() -> Config {
    sandbox_config()
}

/// The base platform and the example component.
fn config() -> Config {
    let mut config = base_config();
    qhub_core::kubernetes::components::example::enable(&mut config, CLIENT, "hi").unwrap();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_deploys_the_base_platform_and_keeps_it_converged() {
    let dir = tempfile::tempdir().unwrap();
    let provider = SandboxProvider::new(dir.path(), 0.0, FaultSpec::default());
    let engine = engine(&provider, Duration::from_secs(60));
    let mut config = config();
    let first = deploy(&engine, &config).await;
    let kinds: Vec<&str> = first.changes.iter().map(|c| c.id.kind.as_str()).collect();
    for kind in [
        "Deployment.apps",
        "IngressRoute.traefik.io",
        "StatefulSet.apps",
        "keycloak_realm",
        "keycloak_client",
        "keycloak_group",
    ] {
        assert!(kinds.contains(&kind), "no {kind} deployed: {kinds:?}");
    }
    let ownership = Ownership::of(&config);
    let kube = provider.kube_api(&ownership).unwrap();
    let keycloak = provider.keycloak().await.expect("Keycloak runs");
    assert!(
        keycloak.client("qhub", CLIENT).is_some(),
        "the example's client exists"
    );
    // JupyterHub: its workloads, its client, its route.
    let hub = keycloak
        .client("qhub", "jupyterhub")
        .expect("JupyterHub's client exists");
    assert_eq!(
        hub["redirectUris"],
        serde_json::json!(["https://demo.example.com/hub/oauth_callback"])
    );
    let created: Vec<String> = first.changes.iter().map(|c| c.id.to_string()).collect();
    for id in [
        "Deployment.apps/dev/hub",
        "Deployment.apps/dev/proxy",
        "Service/dev/hub",
        "ConfigMap/dev/hub-config",
        "Secret/dev/hub-secrets",
        "PersistentVolumeClaim/dev/hub-db",
        "Role.rbac.authorization.k8s.io/dev/jupyterhub",
        "IngressRoute.traefik.io/dev/jupyterhub",
    ] {
        assert!(created.contains(&id.to_string()), "no {id}: {created:?}");
    }

    // A re-deploy plans nothing and makes no mutating call anywhere.
    let (kube_before, kc_before) = (kube.mutations(), keycloak.counts().mutating);
    let again = deploy(&engine, &config).await;
    assert!(again.is_empty(), "{}", again.render_text());
    assert_eq!(
        kube.mutations(),
        kube_before,
        "Kubernetes writes on a no-op"
    );
    assert_eq!(
        keycloak.counts().mutating,
        kc_before,
        "Keycloak writes on a no-op"
    );

    // A client edited out of band is planned as an update naming the field, and taken back.
    assert!(keycloak.edit_client("qhub", CLIENT, |c| {
        c["redirectUris"] = serde_json::json!(["https://evil.example.com/*"]);
    }));
    let plan = engine.plan(&config, StageFilter::All).await.unwrap();
    let change = plan
        .changes
        .iter()
        .find(|c| c.id.to_string() == format!("keycloak_client/{CLIENT}"))
        .unwrap_or_else(|| panic!("the edit is not planned:\n{}", plan.render_text()));
    assert_eq!(change.action, Action::Update, "{}", plan.render_text());
    assert!(
        change.diff.iter().any(|d| d.field.contains("redirectUris")),
        "{}",
        plan.render_text()
    );
    deploy(&engine, &config).await;
    let uris = keycloak.client("qhub", CLIENT).unwrap()["redirectUris"].clone();
    assert!(
        !uris.to_string().contains("evil.example.com"),
        "the edit was not taken back: {uris}"
    );
    assert!(
        engine
            .plan(&config, StageFilter::All)
            .await
            .unwrap()
            .is_empty()
    );

    // Dropping TLS prunes the certificate's objects.
    config.certificate.kind = qhub_core::config::certificate::CertificateKind::Disabled;
    let plan = deploy(&engine, &config).await;
    let deleted: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| c.action == Action::Delete)
        .map(|c| c.id.to_string())
        .collect();
    assert!(
        deleted.contains(&"TLSStore.traefik.io/dev/default".to_string())
            && deleted.contains(&"Secret/dev/qhub-self-signed-tls".to_string()),
        "{deleted:?}"
    );
    let names: Vec<String> = kube
        .objects()
        .iter()
        .filter_map(|o| o.pointer("/metadata/name").and_then(|n| n.as_str()))
        .map(str::to_string)
        .collect();
    assert!(!names.contains(&"qhub-self-signed-tls".to_string()));
}

/// The example's login client secret: what its pod reads (the Secret its component owns) and
/// what Keycloak holds for the client.
fn client_secrets(
    kube: &qhub_sandbox::kube_api::KubeApi,
    keycloak: &qhub_sandbox::keycloak_api::KeycloakApi,
) -> (Option<String>, Option<String>) {
    use qhub_core::kubernetes::components::{CLIENT_SECRET_KEY, client_secret_name};
    let in_secret = kube.secret_value("dev", &client_secret_name(CLIENT), CLIENT_SECRET_KEY);
    let in_keycloak = keycloak
        .client("qhub", CLIENT)
        .and_then(|c| c["secret"].as_str().map(str::to_string));
    (in_secret, in_keycloak)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_client_secret_lives_in_its_components_secret_and_comes_back_when_deleted() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Secret;
    use kube::Api;
    use qhub_core::kubernetes::components::{CLIENT_SECRET_KEY, client_secret_name};
    let dir = tempfile::tempdir().unwrap();
    let provider = SandboxProvider::new(dir.path(), 0.0, FaultSpec::default());
    let engine = engine(&provider, Duration::from_secs(60));
    let config = config();
    let secret_name = client_secret_name(CLIENT);

    // Before the Secret exists, the plan says the client's secret is known after apply.
    let plan = engine.plan(&config, StageFilter::All).await.unwrap();
    assert!(
        plan.known_after_apply
            .iter()
            .any(|n| n.contains(&format!("Secret dev/{secret_name}"))),
        "{}",
        plan.render_text()
    );
    deploy(&engine, &config).await;
    let ownership = Ownership::of(&config);
    let kube = provider.kube_api(&ownership).unwrap();
    let keycloak = provider.keycloak().await.expect("Keycloak runs");

    // The example's pod reads the client secret from the Secret its component owns, and
    // Keycloak holds the same value.
    let deployments: Api<Deployment> = Api::namespaced(kube.client(), "dev");
    let pod = deployments
        .get(CLIENT)
        .await
        .unwrap()
        .spec
        .unwrap()
        .template;
    let env = pod.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap_or_default();
    let from = env
        .iter()
        .find_map(|e| e.value_from.as_ref()?.secret_key_ref.as_ref())
        .expect("the pod reads a Secret");
    assert_eq!(
        (from.name.as_str(), from.key.as_str()),
        (secret_name.as_str(), CLIENT_SECRET_KEY)
    );
    let secrets: Api<Secret> = Api::namespaced(kube.client(), "dev");
    let owner = secrets
        .get(&secret_name)
        .await
        .unwrap()
        .metadata
        .labels
        .unwrap();
    assert_eq!(
        owner.get("app.kubernetes.io/component").map(String::as_str),
        Some(qhub_core::kubernetes::components::example::NAME)
    );
    let (first, held) = client_secrets(&kube, &keycloak);
    assert!(first.as_deref().is_some_and(|s| s.len() >= 32), "{first:?}");
    assert_eq!(first, held, "Keycloak holds what the pod reads");
    assert!(
        engine
            .plan(&config, StageFilter::All)
            .await
            .unwrap()
            .is_empty()
    );

    // Deleted by hand: the next plan makes a new one and updates the client with it.
    secrets
        .delete(&secret_name, &Default::default())
        .await
        .unwrap();
    let plan = engine.plan(&config, StageFilter::All).await.unwrap();
    let actions: Vec<(String, Action)> = plan
        .changes
        .iter()
        .map(|c| (c.id.to_string(), c.action))
        .collect();
    assert!(
        actions.contains(&(format!("Secret/dev/{secret_name}"), Action::Create))
            && actions.contains(&(format!("keycloak_client/{CLIENT}"), Action::Update)),
        "{}",
        plan.render_text()
    );
    deploy(&engine, &config).await;
    let (second, held) = client_secrets(&kube, &keycloak);
    assert!(
        second.is_some() && second != first,
        "a new secret: {second:?}"
    );
    assert_eq!(second, held, "the client was updated with the new secret");
    assert!(
        engine
            .plan(&config, StageFilter::All)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_that_never_becomes_ready_fails_naming_the_object_and_its_condition() {
    let dir = tempfile::tempdir().unwrap();
    let provider = SandboxProvider::new(dir.path(), 0.0, FaultSpec::default());
    let config = base_config();
    // The infrastructure first, then a cluster whose workloads never become ready.
    let engine = engine(&provider, Duration::from_secs(2));
    let (_, report) = engine
        .deploy(
            &config,
            StageFilter::Only(qhub_core::plan::Stage::Infrastructure),
            Arc::new(NoEvents),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(report.succeeded(), "{report:?}");
    provider
        .kube_api(&Ownership::of(&config))
        .unwrap()
        .set_auto_ready(false);
    let (_, report) = engine
        .deploy(
            &config,
            StageFilter::All,
            Arc::new(NoEvents),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(!report.succeeded());
    let text = format!("{report:?}");
    assert!(
        text.contains("Deployment.apps/dev/traefik not ready after") && text.contains("replicas"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_edit_of_a_managed_field_is_planned_and_taken_back() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, Patch, PatchParams};

    let dir = tempfile::tempdir().unwrap();
    let provider = SandboxProvider::new(dir.path(), 0.0, FaultSpec::default());
    let engine = engine(&provider, Duration::from_secs(60));
    let config = config();
    deploy(&engine, &config).await;
    let client = provider.kube_api(&Ownership::of(&config)).unwrap().client();
    // Someone edits two fields qhub manages, as `kubectl edit` would (another field manager).
    let by_hand = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..PatchParams::default()
    };
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "dev");
    maps.patch(
        "qhub-welcome",
        &by_hand,
        &Patch::Merge(serde_json::json!({"data": {"index.html": "defaced"}})),
    )
    .await
    .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client, "dev");
    deployments
        .patch(
            "traefik",
            &by_hand,
            &Patch::Merge(serde_json::json!({"spec": {"replicas": 0}})),
        )
        .await
        .unwrap();
    let plan = engine.plan(&config, StageFilter::All).await.unwrap();
    let text = plan.render_text();
    let fields = |id: &str| -> Vec<String> {
        plan.changes
            .iter()
            .filter(|c| c.id.to_string() == id && c.action == Action::Update)
            .flat_map(|c| c.diff.iter().map(|d| d.field.clone()))
            .collect()
    };
    assert_eq!(
        fields("ConfigMap/dev/qhub-welcome"),
        ["data.index.html"],
        "{text}"
    );
    assert_eq!(
        fields("Deployment.apps/dev/traefik"),
        ["spec.replicas"],
        "{text}"
    );
    assert_eq!(
        plan.changes.len(),
        2,
        "only the edited objects change:\n{text}"
    );
    deploy(&engine, &config).await;
    let page = maps.get("qhub-welcome").await.unwrap();
    assert!(
        page.data.unwrap()["index.html"].contains("Welcome to demo.example.com"),
        "the page was not taken back"
    );
    let traefik = deployments.get("traefik").await.unwrap();
    assert_eq!(traefik.spec.unwrap().replicas, Some(1));
    let after = engine.plan(&config, StageFilter::All).await.unwrap();
    assert!(after.is_empty(), "{}", after.render_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_key_from_a_map_is_planned_even_when_it_is_the_only_change() {
    use k8s_openapi::api::core::v1::Service;
    use kube::api::Api;

    let dir = tempfile::tempdir().unwrap();
    let provider = SandboxProvider::new(dir.path(), 0.0, FaultSpec::default());
    let engine = engine(&provider, Duration::from_secs(60));
    let mut config = config();
    config.ingress = Some(qhub_core::config::Ingress {
        terraform_overrides: Some(serde_json::json!({
            "load-balancer-annotations": {"example.com/internal": "true"}
        })),
    });
    deploy(&engine, &config).await;
    config.ingress = None;
    let plan = engine.plan(&config, StageFilter::All).await.unwrap();
    let text = plan.render_text();
    assert_eq!(plan.changes.len(), 1, "{text}");
    let change = &plan.changes[0];
    assert_eq!(change.id.to_string(), "Service/dev/traefik", "{text}");
    assert_eq!(change.action, Action::Update, "{text}");
    assert_eq!(
        change.diff[0].field, "metadata.annotations.example.com/internal",
        "{text}"
    );
    assert_eq!(change.diff[0].to, None, "{text}");
    deploy(&engine, &config).await;
    let services: Api<Service> = Api::namespaced(
        provider.kube_api(&Ownership::of(&config)).unwrap().client(),
        "dev",
    );
    let live = services.get("traefik").await.unwrap();
    assert!(
        !live
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key("example.com/internal"),
        "the annotation is still there"
    );
    assert!(
        engine
            .plan(&config, StageFilter::All)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_deploy_lease_starts_no_new_change_and_fails_saying_so() {
    use k8s_openapi::api::coordination::v1::Lease;
    use kube::api::{Api, Patch, PatchParams};
    use qhub_core::kubernetes::lease::LeaseTiming;

    let dir = tempfile::tempdir().unwrap();
    let provider = SandboxProvider::new(dir.path(), 0.0, FaultSpec::default());
    let engine = Engine::new(
        Arc::new(provider.clone()) as Arc<dyn Provider>,
        EngineOptions {
            min_deadline: Duration::from_secs(60),
            poll_interval: Duration::from_millis(20),
            lease: LeaseTiming {
                duration: Duration::from_secs(5),
                renew_every: Duration::from_millis(50),
                lost_after: Duration::from_millis(200),
            },
            ..EngineOptions::default()
        },
    );
    let config = config();
    let (_, report) = engine
        .deploy(
            &config,
            StageFilter::Only(qhub_core::plan::Stage::Infrastructure),
            Arc::new(NoEvents),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(report.succeeded(), "{report:?}");
    let kube = provider.kube_api(&Ownership::of(&config)).unwrap();
    // Workloads take a while, so the deploy is still running when the lease goes.
    kube.set_ready_after(Duration::from_millis(400));
    let running = {
        let engine = engine.clone();
        let config = config.clone();
        tokio::spawn(async move {
            engine
                .deploy(
                    &config,
                    StageFilter::All,
                    Arc::new(NoEvents),
                    CancellationToken::new(),
                )
                .await
        })
    };
    let leases: Api<Lease> = Api::namespaced(kube.client(), "kube-system");
    let name = "qhub-deploy-demo-dev";
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(l)) = leases.get_opt(name).await
            && l.spec.and_then(|s| s.holder_identity).is_some()
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the deploy never took the lease"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Another run takes it.
    leases
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"holderIdentity": "qhub@elsewhere/-/1/00"}})),
        )
        .await
        .unwrap();
    let (_, report) = running.await.unwrap().unwrap();
    assert!(!report.succeeded());
    let lost = report
        .failed
        .iter()
        .find(|(id, _, _)| id.to_string().contains(name))
        .unwrap_or_else(|| panic!("{report:?}"));
    assert!(lost.2.contains("deploy lease was lost"), "{lost:?}");
    assert!(
        !report.not_started.is_empty(),
        "nothing new may start: {report:?}"
    );
    // The thief's lease is not released by the run that lost it.
    let holder = leases
        .get(name)
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity;
    assert_eq!(holder.as_deref(), Some("qhub@elsewhere/-/1/00"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_deploy_lock_starts_no_new_change_and_fails_saying_so() {
    use qhub_core::cloud::lock::{LockRecord, MemoryStore};
    use qhub_core::kubernetes::lease::LeaseTiming;

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let provider =
        SandboxProvider::new(dir.path(), 0.0, FaultSpec::default()).with_lock_store(store.clone());
    let engine = Engine::new(
        Arc::new(provider.clone()) as Arc<dyn Provider>,
        EngineOptions {
            min_deadline: Duration::from_secs(60),
            poll_interval: Duration::from_millis(20),
            lease: LeaseTiming {
                duration: Duration::from_secs(5),
                renew_every: Duration::from_millis(50),
                lost_after: Duration::from_millis(200),
            },
            ..EngineOptions::default()
        },
    );
    let config = config();
    let (_, report) = engine
        .deploy(
            &config,
            StageFilter::Only(qhub_core::plan::Stage::Infrastructure),
            Arc::new(NoEvents),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(report.succeeded(), "{report:?}");
    assert!(store.body().is_none(), "released after the deploy");
    let kube = provider.kube_api(&Ownership::of(&config)).unwrap();
    // Workloads take a while, so the deploy is still running when the lock goes.
    kube.set_ready_after(Duration::from_millis(400));
    let running = {
        let engine = engine.clone();
        let config = config.clone();
        tokio::spawn(async move {
            engine
                .deploy(
                    &config,
                    StageFilter::All,
                    Arc::new(NoEvents),
                    CancellationToken::new(),
                )
                .await
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while store.record().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the deploy never took the lock"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Another run takes it (as if it had judged the lock expired).
    let mut other = store.record().unwrap();
    other.holder = "qhub@elsewhere/-/1/00".into();
    store.put(&serde_json::to_vec(&other).unwrap());
    let (_, report) = running.await.unwrap().unwrap();
    assert!(!report.succeeded());
    let lost = report
        .failed
        .iter()
        .find(|(id, _, _)| id.kind == qhub_core::cloud::lock::LOCK_KIND)
        .unwrap_or_else(|| panic!("{report:?}"));
    assert!(lost.2.contains("deploy lock was lost"), "{lost:?}");
    assert!(
        !report.not_started.is_empty(),
        "nothing new may start: {report:?}"
    );
    // The other run's record is not released by the run that lost it.
    let left: LockRecord = store.record().unwrap();
    assert_eq!(left.holder, "qhub@elsewhere/-/1/00");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_qhub_did_not_create_is_used_as_it_is_and_kept_by_destroy() {
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
    use kube::api::{Api, PostParams};
    use qhub_core::plan::Stage;

    let dir = tempfile::tempdir().unwrap();
    let provider = SandboxProvider::new(dir.path(), 0.0, FaultSpec::default());
    let engine = engine(&provider, Duration::from_secs(60));
    let config = config();
    let (_, report) = engine
        .deploy(
            &config,
            StageFilter::Only(Stage::Infrastructure),
            Arc::new(NoEvents),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(report.succeeded(), "{report:?}");
    // The cluster's owner made the namespace, with an object of their own in it.
    let client = provider.kube_api(&Ownership::of(&config)).unwrap().client();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let theirs: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "dev", "labels": {"team": "data"}}
    }))
    .unwrap();
    namespaces
        .create(&PostParams::default(), &theirs)
        .await
        .unwrap();
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "dev");
    let map: ConfigMap =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "their-settings"}}))
            .unwrap();
    maps.create(&PostParams::default(), &map).await.unwrap();

    deploy(&engine, &config).await;
    let ns = namespaces.get("dev").await.unwrap();
    let labels = ns.metadata.labels.clone().unwrap_or_default();
    assert!(
        !labels.contains_key("applyset.kubernetes.io/part-of"),
        "the namespace was taken over: {labels:?}"
    );
    assert_eq!(labels.get("team").map(String::as_str), Some("data"));
    // Used as it is: nothing to change on the next plan.
    let again = engine.plan(&config, StageFilter::All).await.unwrap();
    assert!(again.is_empty(), "{}", again.render_text());

    // A destroy removes the platform's objects and leaves their namespace and their object.
    let (plan, report) = engine
        .destroy(
            &config,
            StageFilter::Only(Stage::Kubernetes),
            Arc::new(NoEvents),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(report.succeeded(), "{report:?}");
    assert!(
        !plan
            .changes
            .iter()
            .any(|c| c.id.to_string() == "Namespace/dev"),
        "{}",
        plan.render_text()
    );
    assert!(namespaces.get_opt("dev").await.unwrap().is_some());
    assert!(maps.get_opt("their-settings").await.unwrap().is_some());
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client, "dev");
    assert!(
        deployments
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}
