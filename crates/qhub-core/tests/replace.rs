//! Changes the API server refuses as updates are planned as replaces, and a replace that
//! destroys data is refused unless the user allows it (`--allow-replace`), as the cloud stage
//! refuses a cascade onto a resource holding data.

use std::sync::Arc;
use std::time::Duration;

use qhub_core::Config;
use qhub_core::config::init::{InitOptions, render};
use qhub_core::config::provider::ProviderKind;
use qhub_core::engine::{Engine, EngineError, EngineOptions, StageFilter};
use qhub_core::events::NoEvents;
use qhub_core::plan::{Action, ResourceId};
use qhub_core::provider::facts::{Known, SharedFilesystem};
use qhub_core::provider::{ClusterFacts, Provider};
use qhub_sandbox::SandboxProvider;
use qhub_sandbox::faults::FaultSpec;
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

fn engine(provider: &SandboxProvider, allow: Vec<ResourceId>) -> Engine {
    Engine::new(
        Arc::new(provider.clone()) as Arc<dyn Provider>,
        EngineOptions {
            min_deadline: Duration::from_secs(60),
            deadline_factor: 0.01,
            poll_interval: Duration::from_millis(20),
            allow_replace: allow,
            ..EngineOptions::default()
        },
    )
}

async fn deploy(engine: &Engine, config: &Config) -> Result<qhub_core::plan::Plan, EngineError> {
    let (plan, report) = engine
        .deploy(
            config,
            StageFilter::All,
            Arc::new(NoEvents),
            CancellationToken::new(),
        )
        .await?;
    assert!(report.succeeded(), "{report:?}");
    Ok(plan)
}

/// The plan from a deployment made with `before` to the config `after`, on `facts`, with
/// `allow` allowed to be replaced.
fn plan_between(
    before: &Config,
    after: &Config,
    facts: &ClusterFacts,
    allow: &[ResourceId],
) -> qhub_core::plan::Plan {
    let observed: Vec<qhub_core::plan::Observed> = qhub_core::kubernetes::desired(before, facts)
        .unwrap()
        .iter()
        .map(|r| {
            qhub_core::plan::Observed::new(
                r.id.clone(),
                r.stage,
                r.spec.clone(),
                qhub_core::plan::ResourceState::Ready,
            )
        })
        .collect();
    let desired = qhub_core::kubernetes::desired(after, facts).unwrap();
    qhub_core::plan::diff_allowing(&desired, &observed, allow)
}

/// Growing `storage.shared_filesystem` on the in-cluster NFS server: the server would refuse a
/// resize of its claim (403 without an expandable class; 422 when shrinking), so the plan
/// replaces the claim, and refuses to without `--allow-replace`, naming the data at stake.
#[test]
fn a_new_in_cluster_nfs_size_is_a_refused_replace_naming_the_data() {
    let before = config();
    let mut facts = ClusterFacts::from_config(&before);
    facts.shared_filesystem = Known::Known(SharedFilesystem::InCluster);
    let mut after = before.clone();
    after.storage.shared_filesystem = "500Gi".into();
    let data = ResourceId::new("PersistentVolumeClaim", "dev-privileged/nfs-server-data");

    let plan = plan_between(&before, &after, &facts, &[]);
    let text = plan.refusal().expect("the replace was not refused");
    assert!(
        text.contains(&format!("replacing {data}"))
            && text.contains("spec.resources.requests.storage")
            && text.contains("every user's home directory")
            && text.contains(&format!("--allow-replace {data}")),
        "{text}"
    );
    let change = plan.changes.iter().find(|c| c.id == data).unwrap();
    assert_eq!(change.action, Action::Replace);
    // The shared claim itself does not change: it could not (a claim without a class never
    // grows).
    assert!(
        !plan
            .changes
            .iter()
            .any(|c| c.id == ResourceId::new("PersistentVolumeClaim", "dev/shared")),
        "{}",
        plan.render_text()
    );

    let allowed = plan_between(&before, &after, &facts, std::slice::from_ref(&data));
    assert!(allowed.refused.is_empty(), "{:?}", allowed.refused);
    // Shrinking is refused the same way.
    let mut smaller = before.clone();
    smaller.storage.shared_filesystem = "100Gi".into();
    assert!(
        plan_between(&before, &smaller, &facts, &[])
            .refusal()
            .is_some()
    );
}

/// A change the server refuses as an update, whose replacement destroys nothing, is planned as
/// a replace (delete and create) without asking: a Deployment's selector, run through the
/// engine on the sandbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_immutable_selector_change_is_replaced_through_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let provider = SandboxProvider::new(dir.path(), 0.0, FaultSpec::default());
    let config = config();
    let engine = engine(&provider, Vec::new());
    deploy(&engine, &config).await.unwrap();
    // An earlier config gave the welcome page another selector; this one's cannot be applied
    // over it (the server refuses a selector update): the plan replaces the Deployment.
    let kube = provider
        .kube_api(&qhub_core::provider::Ownership::of(&config))
        .unwrap();
    let client = kube.client();
    let deployments: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
        client,
        "dev",
        &kube::core::ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk("apps", "v1", "Deployment"),
            "deployments",
        ),
    );
    let id = ResourceId::new("Deployment.apps", "dev/qhub-welcome");
    let mut live = serde_json::to_value(deployments.get("qhub-welcome").await.unwrap()).unwrap();
    deployments
        .delete("qhub-welcome", &Default::default())
        .await
        .unwrap();
    live["spec"]["selector"] =
        serde_json::json!({"matchLabels": {"app.kubernetes.io/name": "qhub-welcome", "x": "y"}});
    live["spec"]["template"]["metadata"]["labels"]["x"] = serde_json::json!("y");
    // As if an earlier config had applied that selector: what qhub last applied says so.
    let key = qhub_core::kubernetes::LAST_APPLIED;
    let mut applied: serde_json::Value =
        serde_json::from_str(live["metadata"]["annotations"][key].as_str().unwrap()).unwrap();
    applied["spec"]["selector"] = live["spec"]["selector"].clone();
    applied["spec"]["template"]["metadata"]["labels"]["x"] = serde_json::json!("y");
    live["metadata"]["annotations"][key] = serde_json::json!(applied.to_string());
    for k in [
        "resourceVersion",
        "uid",
        "managedFields",
        "creationTimestamp",
    ] {
        live["metadata"].as_object_mut().unwrap().remove(k);
    }
    live.as_object_mut().unwrap().remove("status");
    deployments
        .create(&Default::default(), &serde_json::from_value(live).unwrap())
        .await
        .unwrap();

    let plan = engine.plan(&config, StageFilter::All).await.unwrap();
    let change = plan
        .changes
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("{}", plan.render_text()));
    assert_eq!(change.action, Action::Replace, "{}", plan.render_text());
    deploy(&engine, &config).await.unwrap();
    let again = engine.plan(&config, StageFilter::All).await.unwrap();
    assert!(again.is_empty(), "{}", again.render_text());
}

/// On EFS nothing needs resizing: a new size changes the volume's nominal capacity (mutable)
/// and nothing else.
#[test]
fn on_efs_a_new_size_is_no_resize() {
    let mut config = config();
    let mut facts = ClusterFacts::from_config(&config);
    facts.shared_filesystem = Known::Known(SharedFilesystem::Efs {
        id: "fs-1".into(),
        dns_name: "fs-1.efs.us-west-2.amazonaws.com".into(),
    });
    let before = qhub_core::kubernetes::desired(&config, &facts).unwrap();
    config.storage.shared_filesystem = "900Gi".into();
    let after = qhub_core::kubernetes::desired(&config, &facts).unwrap();
    let observed: Vec<qhub_core::plan::Observed> = before
        .iter()
        .map(|r| {
            qhub_core::plan::Observed::new(
                r.id.clone(),
                r.stage,
                r.spec.clone(),
                qhub_core::plan::ResourceState::Ready,
            )
        })
        .collect();
    let plan = qhub_core::plan::diff(&after, &observed);
    let changed: Vec<(String, Action)> = plan
        .changes
        .iter()
        .map(|c| (c.id.to_string(), c.action))
        .collect();
    assert_eq!(
        changed,
        // The platform's volume and sftp's in the privileged namespace: the same file system.
        vec![
            ("PersistentVolume/dev-shared".to_string(), Action::Update),
            (
                "PersistentVolume/dev-privileged-shared".to_string(),
                Action::Update
            )
        ],
        "{}",
        plan.render_text()
    );
    assert!(plan.refused.is_empty());
}
