//! Snapshots of what we generate from the default sandbox config: the infrastructure resources,
//! the Kubernetes manifests, and the plan on an empty world.

use qhub_core::config::init::{InitOptions, render};
use qhub_core::config::provider::ProviderKind;
use qhub_core::plan;
use qhub_core::provider::Provider;
use qhub_sandbox::SandboxProvider;
use qhub_sandbox::faults::FaultSpec;

fn config() -> qhub_core::Config {
    render(&InitOptions::new(
        ProviderKind::Sandbox,
        "demo",
        "demo.example.com",
        "0123456789abcdef",
    ))
    .expect("render")
}

#[test]
fn kubernetes_manifests() {
    let facts = qhub_core::provider::ClusterFacts::from_config(&config());
    let resources = qhub_core::kubernetes::desired(&config(), &facts).expect("desired");
    let manifests: Vec<_> = resources
        .iter()
        .map(|r| r.payload.clone().unwrap_or(r.spec.clone()))
        .collect();
    insta::assert_json_snapshot!(manifests);
    let order: Vec<String> = resources
        .iter()
        .map(|r| {
            format!(
                "{} <- [{}]",
                r.id,
                r.depends_on
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
        .collect();
    insta::assert_snapshot!(order.join("\n"));
}

#[test]
fn plan_on_an_empty_world() {
    let dir = tempfile::tempdir().unwrap();
    let provider = SandboxProvider::new(dir.path(), 0.001, FaultSpec::default());
    let mut desired = provider
        .desired(&config(), &qhub_core::provider::Facts::none())
        .expect("desired");
    let facts = provider.cluster_facts(&config(), &[]);
    desired.extend(qhub_core::kubernetes::desired(&config(), &facts).expect("k8s"));
    let p = plan::diff(&desired, &[]);
    assert!(p.changes.iter().all(|c| c.action == plan::Action::Create));
    // The Kubernetes diff lines are whole manifests; the infrastructure part is the readable one.
    let infra = plan::Plan {
        changes: p
            .changes
            .iter()
            .filter(|c| c.stage == plan::Stage::Infrastructure)
            .cloned()
            .collect(),
        ..plan::Plan::default()
    };
    insta::assert_snapshot!(infra.render_text());
    let ids: Vec<String> = p
        .changes
        .iter()
        .map(|c| format!("{} {}", c.action.symbol(), c.id))
        .collect();
    insta::assert_snapshot!(ids.join("\n"));
}
