//! Each third-party workload gets the RBAC its upstream project publishes for the pinned
//! version, no less and no more: the rendered roles and bindings, stored in the in-memory API,
//! grant every permission of each table (`kubernetes::components::rbac`) to the workload's
//! service account, namespaced rules in the platform namespace, as the API server's RBAC
//! authorizer evaluates them (`qhub_sandbox::kube_api::rbac`).

use std::time::Duration;

use qhub_core::config::init::{InitOptions, render};
use qhub_core::config::provider::ProviderKind;
use qhub_core::kubernetes::apply::Applier;
use qhub_core::kubernetes::components::{self, rbac};
use qhub_core::provider::ClusterFacts;
use qhub_sandbox::kube_api::KubeApi;
use qhub_sandbox::kube_api::rbac::AccessRequest;

/// The default AWS config with a GPU group: every component with a table is enabled.
fn config() -> qhub_core::Config {
    let mut config = render(&InitOptions::new(
        ProviderKind::Aws,
        "demo",
        "demo.example.com",
        "not-a-real-password",
    ))
    .unwrap();
    let aws = config.amazon_web_services.as_mut().unwrap();
    let mut gpu = aws.node_groups["user"].clone();
    gpu.gpu = true;
    aws.node_groups.insert("gpu".into(), gpu);
    // Opt-in in `qhub init`; its tables are checked too.
    config.argo_workflows = Some(qhub_core::config::components::Toggle::on());
    config
}

/// The in-memory API holding every rendered RBAC object and service account.
async fn deployed(config: &qhub_core::Config) -> KubeApi {
    let facts = ClusterFacts::from_config(config);
    let api = KubeApi::new();
    let applier = Applier::new(api.client());
    for m in components::manifests(config, &facts).unwrap() {
        let av = m["apiVersion"].as_str().unwrap_or_default();
        if av.starts_with("rbac.authorization.k8s.io/") || m["kind"] == "ServiceAccount" {
            applier.apply(&m, &m, Duration::from_secs(5)).await.unwrap();
        }
    }
    api
}

fn request(
    ns: &str,
    sa: &str,
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
    name: Option<&str>,
) -> AccessRequest {
    AccessRequest {
        sa_namespace: ns.into(),
        sa_name: sa.into(),
        verb: verb.into(),
        group: group.into(),
        resource: resource.into(),
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
    }
}

#[tokio::test]
async fn every_upstream_permission_is_granted_to_the_workloads_service_account() {
    let config = config();
    let ns = config.namespace.clone();
    let api = deployed(&config).await;
    let mut checked = 0;
    let mut missing = Vec::new();
    for table in rbac::TABLES {
        for p in table.permissions {
            let names: Vec<Option<&str>> = if p.names.is_empty() {
                vec![None]
            } else {
                p.names.iter().map(|n| Some(*n)).collect()
            };
            // A cluster-wide rule must hold without a namespace; a namespaced one in ours.
            let namespace = match p.reach {
                rbac::Reach::Cluster => None,
                rbac::Reach::Namespace => Some(ns.as_str()),
            };
            for group in p.groups {
                for resource in p.resources {
                    for verb in p.verbs {
                        for name in &names {
                            let req = request(
                                &ns,
                                table.service_account,
                                verb,
                                group,
                                resource,
                                namespace,
                                *name,
                            );
                            checked += 1;
                            if !api.can(&req) {
                                missing.push(format!(
                                    "{}: {verb} {group}/{resource} {namespace:?} {name:?} (from {})",
                                    table.service_account, table.source
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(missing.is_empty(), "not granted:\n{}", missing.join("\n"));
    eprintln!("{checked} permissions checked");
    assert!(checked > 50, "only {checked} permissions checked");
}

#[tokio::test]
async fn nothing_beyond_the_tables_is_granted() {
    let config = config();
    let ns = config.namespace.clone();
    let api = deployed(&config).await;
    // The autoscaler writes ConfigMaps only in the platform namespace, and only its own by name.
    for (verb, namespace, name) in [
        ("create", Some("kube-system"), None),
        ("update", Some("kube-system"), Some("aws-auth")),
        ("update", Some(ns.as_str()), Some("aws-auth")),
        ("delete", Some("kube-system"), Some("coredns")),
        ("create", None, None),
    ] {
        let req = request(
            &ns,
            "cluster-autoscaler",
            verb,
            "",
            "configmaps",
            namespace,
            name,
        );
        assert!(
            !api.can(&req),
            "the autoscaler may {verb} configmaps {namespace:?} {name:?}"
        );
    }
    // Traefik reads; it writes nothing.
    for (verb, resource) in [
        ("update", "secrets"),
        ("create", "configmaps"),
        ("delete", "services"),
    ] {
        let req = request(
            &ns,
            "traefik",
            verb,
            "",
            resource,
            Some(ns.as_str()),
            Some("x"),
        );
        assert!(!api.can(&req), "traefik may {verb} {resource}");
    }
    // The device plugin has no role at all.
    let req = request(&ns, "nvidia-device-plugin", "get", "", "nodes", None, None);
    assert!(!api.can(&req));
}

#[test]
fn every_rendered_service_account_has_a_table() {
    let config = config();
    let facts = ClusterFacts::from_config(&config);
    let accounts: Vec<String> = components::manifests(&config, &facts)
        .unwrap()
        .into_iter()
        .filter(|m| m["kind"] == "ServiceAccount")
        .filter_map(|m| m["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    assert!(!accounts.is_empty());
    for a in accounts {
        assert!(
            rbac::TABLES.iter().any(|t| t.service_account == a),
            "service account {a} has no RBAC table"
        );
    }
}
