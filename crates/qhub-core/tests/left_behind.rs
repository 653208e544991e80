//! What our workloads write in the platform namespace outlives nothing: the cluster
//! autoscaler's status ConfigMap (`--namespace` puts it in ours) is left alone by a deploy and
//! deleted by a destroy.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use qhub_core::kubernetes::apply::Applier;
use qhub_core::kubernetes::applyset::ApplySet;
use qhub_core::plan::{self, Action, ResourceId};
use qhub_sandbox::kube_api::KubeApi;

#[tokio::test]
async fn the_autoscaler_status_configmap_is_deleted_by_destroy_only() {
    let server = KubeApi::new();
    let client = server.client();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "dev");
    let status: ConfigMap = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cluster-autoscaler-status", "namespace": "dev"},
        "data": {"status": "Cluster-autoscaler status at ..."},
    }))
    .unwrap();
    cms.create(&PostParams::default(), &status).await.unwrap();
    // Another namespace's is not ours.
    let other: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    let mut theirs = status.clone();
    theirs.metadata.namespace = Some("kube-system".into());
    other.create(&PostParams::default(), &theirs).await.unwrap();

    let observed = Applier::new(client)
        .observe(&ApplySet::new("dev"), &[])
        .await
        .unwrap();
    let id = ResourceId::new("ConfigMap", "dev/cluster-autoscaler-status");
    let found = observed.iter().find(|o| o.id == id).expect("not observed");
    assert!(found.made_by_cluster);
    assert!(
        !observed
            .iter()
            .any(|o| o.id.name.starts_with("kube-system/")),
        "{observed:?}"
    );

    let deploy = plan::diff(&[], &observed);
    assert!(
        !deploy.changes.iter().any(|c| c.id == id),
        "{}",
        deploy.render_text()
    );
    let destroy = plan::destroy(&observed);
    let change = destroy
        .changes
        .iter()
        .find(|c| c.id == id)
        .expect("kept by destroy");
    assert_eq!(change.action, Action::Delete);
}
