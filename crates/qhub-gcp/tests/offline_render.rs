//! What `qhub render` writes offline for GCP is what a deploy applies: the objects built from
//! [`qhub_gcp::facts::cluster_facts`] (no client, no credentials) are compared with the
//! objects a deploy of both stages left in the cluster (the GKE emulator for the cloud, the
//! in-memory Kubernetes API as the cluster, through the kubeconfig override). On GKE nothing
//! waits for the apply: no object may differ.

mod common;

use common::{GkeHarness, gcp_config};
use qhub_core::conformance::{Faults, Harness};
use qhub_core::kubernetes::compare::check_render;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offline_render_is_what_a_gke_deploy_applies() {
    let config = gcp_config("offline");
    let facts = qhub_gcp::facts::cluster_facts(&config);
    assert!(facts.unknown().is_empty(), "{:?}", facts.unknown());
    let rendered = qhub_core::kubernetes::desired(&config, &facts).unwrap();

    let h = GkeHarness::with_cluster(config.clone()).await;
    let provider = h.provider(Faults::default());
    let report = common::deploy(provider.clone(), &config).await;
    assert!(report.succeeded(), "deploy: {report:?}");
    let check = check_render(&*provider, &config, &rendered).await.unwrap();
    let c = &check.rendered;
    println!("gcp: {}", c.summary());
    assert!(c.differ.is_empty(), "{:#?}", c.differ);
    assert!(c.placeholders.is_empty(), "{:#?}", c.placeholders);
    assert!(c.same > 0);

    // The comparison can fail: the generic facts differ from what GKE gets (storage class,
    // node labels, no cluster autoscaler).
    let c = &check.generic;
    assert!(!c.differ.is_empty(), "{}", c.summary());
}
