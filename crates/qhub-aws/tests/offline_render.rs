//! What `qhub render` writes offline for AWS is what a deploy applies: the objects built from
//! [`qhub_aws::facts::offline`] (no client, no credentials) are compared with the objects a deploy
//! of both stages left in the cluster (moto for the cloud, behind the rules layer that serves
//! EKS add-ons; the in-memory Kubernetes API as the cluster, reached through the kubeconfig
//! override). Only the named placeholder may differ: the EFS file system's id and DNS name,
//! which exist once AWS made the file system.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{aws_config, engine};
use qhub_aws::{AwsOptions, AwsProvider};
use qhub_core::engine::StageFilter;
use qhub_core::engine::events::NoEvents;
use qhub_core::kubernetes::compare::check_render;
use qhub_core::provider::Provider;
use qhub_sandbox::kube_api::KubeApi;
use qhub_tests::fault_proxy::{FaultPlan, FaultProxy};
use qhub_tests::moto::Moto;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_offline_render_is_what_an_eks_deploy_applies() {
    let moto = Moto::start();
    let proxy = FaultProxy::in_front_of(&moto, FaultPlan::none())
        .await
        .expect("proxy");
    let api = KubeApi::new();
    let server = api.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let keycloak = qhub_sandbox::keycloak_api::KeycloakApi::default();
    let _keycloak_server = keycloak.run_in_cluster(&api, "dev").await.unwrap();
    // So does conda-store: qhub registers the config's environments through a port-forward.
    let _conda_store = qhub_sandbox::conda_store_api::run_in_cluster(&api, "dev")
        .await
        .expect("conda-store emulator");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig()).unwrap();
    let config = aws_config("offline");

    let facts = qhub_aws::facts::offline(&config);
    assert_eq!(facts.unknown(), ["shared filesystem"]);
    let rendered = qhub_core::kubernetes::desired(&config, &facts).unwrap();

    let provider: Arc<dyn Provider> = Arc::new(
        AwsProvider::new(
            &config,
            AwsOptions {
                endpoint: Some(proxy.endpoint()),
                credentials: Some(("testing".into(), "testing".into())),
                poll_interval: Some(Duration::from_millis(10)),
                kubeconfig: Some(kubeconfig.clone()),
                ..AwsOptions::default()
            },
        )
        .unwrap(),
    );
    let (_, report) = engine(provider.clone())
        .deploy(
            &config,
            StageFilter::All,
            Arc::new(NoEvents),
            CancellationToken::new(),
        )
        .await
        .expect("deploy runs");
    assert!(report.succeeded(), "deploy: {report:?}");

    let check = check_render(&*provider, &config, &rendered).await.unwrap();
    let c = &check.rendered;
    println!("aws: {}", c.summary());
    assert!(c.differ.is_empty(), "{:#?}", c.differ);
    // The named placeholder: the EFS file system's address, in its volumes (the platform's and
    // sftp's in the privileged namespace, and the layout Job's) and on the welcome page that shows it.
    assert_eq!(
        c.placeholders.keys().collect::<Vec<_>>(),
        [
            "ConfigMap/dev/qhub-welcome",
            "Job.batch/dev-privileged/shared-storage-layout",
            "PersistentVolume/dev-privileged-shared",
            "PersistentVolume/dev-shared"
        ],
        "{}",
        c.summary()
    );

    // The comparison can fail: the generic facts differ from what EKS gets (storage class,
    // load-balancer annotations).
    let c = &check.generic;
    assert!(!c.differ.is_empty(), "{}", c.summary());
}
