//! Argo Workflows on the sandbox with the Keycloak emulator: deployed with its login client
//! holding the secret argo-server reads; a re-deploy is a no-op; turned off, every object and
//! the Keycloak client are pruned while its CRDs stay (named in the plan's kept list), and that
//! is a no-op again.

use qhub_core::Config;
use qhub_core::config::components::Toggle;
use qhub_core::kubernetes::components::argo_workflows as argo;
use qhub_core::kubernetes::components::{CLIENT_SECRET_KEY, client_secret_name};
use qhub_core::provider::Ownership;
use qhub_sandbox::SandboxProvider;
use qhub_sandbox::faults::FaultSpec;

mod support;
use support::{assert_redeploy_is_a_noop, deleted, deploy, engine, find, sandbox_config};

fn config() -> Config {
    let mut config = sandbox_config();
    assert!(
        config.argo_workflows.as_ref().is_some_and(|t| !t.enabled),
        "Argo Workflows is opt-in in qhub init"
    );
    config.argo_workflows = Some(Toggle::on());
    config
}

const CRDS: [&str; 7] = [
    "cronworkflows.argoproj.io",
    "workflowartifactgctasks.argoproj.io",
    "workfloweventbindings.argoproj.io",
    "workflows.argoproj.io",
    "workflowtaskresults.argoproj.io",
    "workflowtasksets.argoproj.io",
    "workflowtemplates.argoproj.io",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_deploys_with_its_login_client_and_is_pruned_but_its_crds_when_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let provider = SandboxProvider::new(dir.path(), 0.0, FaultSpec::default());
    let engine = engine(&provider);
    let mut config = config();
    let ns = config.namespace.clone();
    deploy(&engine, &config).await;
    let kube = provider.kube_api(&Ownership::of(&config)).unwrap();
    let keycloak = provider.keycloak().await.expect("Keycloak runs");
    let objects = kube.objects();
    for (kind, name) in [
        ("Deployment", argo::CONTROLLER),
        ("Deployment", argo::SERVER),
        ("Service", argo::SERVER),
        ("ConfigMap", argo::CONTROLLER_CONFIGMAP),
        ("IngressRoute", argo::SERVER),
        ("Role", "argo"),
        ("Role", argo::SERVER),
        ("Role", argo::WORKFLOW_ACCOUNT),
        ("ServiceAccount", argo::WORKFLOW_ACCOUNT),
        ("Secret", argo::CLIENT_ID_SECRET),
    ] {
        assert!(find(&objects, kind, name).is_some(), "no {kind} {name}");
    }
    for crd in CRDS {
        assert!(
            find(&objects, "CustomResourceDefinition", crd).is_some(),
            "no CRD {crd}"
        );
    }
    // argo-server's client holds the secret argo-server reads.
    let secret = kube.secret_value(&ns, &client_secret_name(argo::CLIENT_ID), CLIENT_SECRET_KEY);
    let held = keycloak
        .client("qhub", argo::CLIENT_ID)
        .and_then(|c| c["secret"].as_str().map(str::to_string));
    assert!(secret.is_some(), "no client secret");
    assert_eq!(secret, held, "Keycloak holds what argo-server reads");
    assert_eq!(
        kube.secret_value(&ns, argo::CLIENT_ID_SECRET, argo::CLIENT_ID_KEY)
            .as_deref(),
        Some(argo::CLIENT_ID)
    );

    // A re-deploy writes nothing.
    assert_redeploy_is_a_noop(&engine, &config, &kube, &keycloak).await;

    // Off: everything of Argo is pruned, the Keycloak client too; the CRDs stay, named.
    config.argo_workflows = Some(Toggle {
        enabled: false,
        overrides: None,
    });
    let plan = deploy(&engine, &config).await;
    let deleted = deleted(&plan);
    assert!(
        deleted.contains(&format!("keycloak_client/{}", argo::CLIENT_ID)),
        "{deleted:?}"
    );
    assert!(keycloak.client("qhub", argo::CLIENT_ID).is_none());
    let kept: Vec<String> = plan.kept.iter().map(|k| k.id.to_string()).collect();
    for crd in CRDS {
        assert!(
            kept.iter().any(|k| k.contains(crd)),
            "{crd} not named as kept: {kept:?}"
        );
    }
    let left = kube.objects();
    let labelled: Vec<String> = left
        .iter()
        .filter(|o| o["metadata"]["labels"]["app.kubernetes.io/component"] == argo::NAME)
        .filter(|o| o["kind"] != "CustomResourceDefinition")
        .map(|o| format!("{} {}", o["kind"], o["metadata"]["name"]))
        .collect();
    assert!(labelled.is_empty(), "left behind: {labelled:?}");
    for crd in CRDS {
        assert!(
            find(&left, "CustomResourceDefinition", crd).is_some(),
            "CRD {crd} was deleted"
        );
    }
    for (kind, name) in [
        ("Deployment", argo::SERVER),
        ("Deployment", argo::CONTROLLER),
        ("Secret", &client_secret_name(argo::CLIENT_ID)),
        ("Secret", argo::CLIENT_ID_SECRET),
    ] {
        assert!(
            find(&left, kind, name).is_none(),
            "{kind} {name} not pruned"
        );
    }
    assert_redeploy_is_a_noop(&engine, &config, &kube, &keycloak).await;
}
