//! `tf_extensions` deployed on the sandbox with the Keycloak emulator: a private extension with
//! a login client and a public one; the client's secret in Keycloak is the one its pod reads;
//! a re-deploy is a no-op; removing the private one prunes exactly its objects, its client,
//! and forward-auth (nothing else needs it), leaving the public one untouched; and that is a
//! no-op again.

use std::collections::BTreeSet;

use qhub_core::Config;
use qhub_core::config::components::Toggle;
use qhub_core::kubernetes::components::{
    CLIENT_SECRET_KEY, client_secret_name, extensions, forward_auth,
};
use qhub_core::plan::Action;
use qhub_core::provider::Ownership;
use qhub_sandbox::SandboxProvider;
use qhub_sandbox::faults::FaultSpec;
use serde_json::{Value as Json, json};

mod support;
use support::{assert_redeploy_is_a_noop, deploy, engine, sandbox_config};

/// The sandbox config with monitoring off (not what this test is about) and two extensions.
fn config() -> Config {
    let mut config = sandbox_config();
    config.monitoring = Some(Toggle {
        enabled: false,
        overrides: None,
    });
    config.tf_extensions = Some(
        serde_json::from_value(json!([
            {"name": "dash", "image": "docker.io/acme/dash:1.2", "urlslug": "dash",
             "private": true, "oauth2client": true, "keycloakadmin": true, "jwt": true,
             "qhubconfigyaml": true},
            {"name": "docs", "image": "docker.io/acme/docs:3", "urlslug": "docs"},
        ]))
        .unwrap(),
    );
    config
}

/// Every object as `kind namespace/name`, with its resourceVersion.
fn inventory(objects: &[Json]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = objects
        .iter()
        .map(|o| {
            (
                format!(
                    "{} {}/{}",
                    o["kind"].as_str().unwrap_or_default(),
                    o["metadata"]["namespace"].as_str().unwrap_or_default(),
                    o["metadata"]["name"].as_str().unwrap_or_default()
                ),
                o["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extension_deploys_with_its_client_and_removing_it_prunes_exactly_its_objects() {
    let dir = tempfile::tempdir().unwrap();
    let provider = SandboxProvider::new(dir.path(), 0.0, FaultSpec::default());
    let engine = engine(&provider);
    let mut config = config();
    let ns = config.namespace.clone();
    deploy(&engine, &config).await;
    let kube = provider.kube_api(&Ownership::of(&config)).unwrap();
    let keycloak = provider.keycloak().await.expect("Keycloak runs");
    let before = inventory(&kube.objects());
    let has = |kind: &str, name: &str| {
        before
            .iter()
            .any(|(k, _)| k == &format!("{kind} {ns}/{name}"))
    };
    for (kind, name) in [
        ("Deployment", "qhub-ext-dash"),
        ("Service", "qhub-ext-dash"),
        ("IngressRoute", "qhub-ext-dash"),
        ("Secret", "qhub-ext-dash-jwt"),
        ("ConfigMap", extensions::CONFIG_YAML),
        ("Deployment", "qhub-ext-docs"),
        ("IngressRoute", "qhub-ext-docs"),
        ("Deployment", forward_auth::NAME),
        ("Middleware", forward_auth::MIDDLEWARE),
        ("Secret", forward_auth::COOKIE_SECRET),
    ] {
        assert!(has(kind, name), "no {kind} {name} in {before:#?}");
    }
    // Each client holds the secret its pod reads.
    for client in ["qhub-ext-dash-client", forward_auth::CLIENT_ID] {
        let secret = kube.secret_value(&ns, &client_secret_name(client), CLIENT_SECRET_KEY);
        let held = keycloak
            .client("qhub", client)
            .and_then(|c| c["secret"].as_str().map(str::to_string));
        assert!(secret.is_some(), "no secret for {client}");
        assert_eq!(secret, held, "Keycloak holds what {client}'s pod reads");
    }
    assert!(
        kube.secret_value(&ns, "qhub-ext-dash-jwt", extensions::JWT_SECRET_KEY)
            .is_some_and(|s| s.len() >= 32),
        "the JWT secret is generated"
    );

    // A re-deploy writes nothing.
    assert_redeploy_is_a_noop(&engine, &config, &kube, &keycloak).await;

    // The private extension removed: its objects, its client and forward-auth go; nothing
    // else changes.
    config
        .tf_extensions
        .as_mut()
        .unwrap()
        .retain(|e| e.name != "dash");
    let plan = deploy(&engine, &config).await;
    let deleted: BTreeSet<String> = plan
        .changes
        .iter()
        .filter(|c| c.action == Action::Delete)
        .map(|c| c.id.to_string())
        .collect();
    for client in ["qhub-ext-dash-client", forward_auth::CLIENT_ID] {
        assert!(
            deleted.contains(&format!("keycloak_client/{client}")),
            "{deleted:?}"
        );
        assert!(keycloak.client("qhub", client).is_none(), "{client} left");
    }
    let after = inventory(&kube.objects());
    let gone: BTreeSet<String> = before
        .iter()
        .filter(|(k, _)| !after.iter().any(|(a, _)| a == k))
        .map(|(k, _)| k.clone())
        .collect();
    let expected: BTreeSet<String> = [
        ("Deployment", "qhub-ext-dash"),
        ("Service", "qhub-ext-dash"),
        ("IngressRoute", "qhub-ext-dash"),
        ("Middleware", "qhub-ext-dash-strip"),
        ("Secret", "qhub-ext-dash-jwt"),
        ("Secret", "qhub-ext-dash-client-oidc-client"),
        ("ConfigMap", extensions::CONFIG_YAML),
        ("Deployment", forward_auth::NAME),
        ("Service", forward_auth::NAME),
        ("IngressRoute", forward_auth::NAME),
        ("Middleware", forward_auth::MIDDLEWARE),
        ("Secret", forward_auth::COOKIE_SECRET),
        ("Secret", "forwardauth-oidc-client"),
    ]
    .into_iter()
    .map(|(kind, name)| format!("{kind} {ns}/{name}"))
    .collect();
    // What the cluster makes at run time for the Deployments and Services goes with them.
    let gone_declared: BTreeSet<String> = gone
        .iter()
        .filter(|k| {
            !["Pod ", "ReplicaSet ", "EndpointSlice "]
                .iter()
                .any(|run_time| k.starts_with(run_time))
        })
        .cloned()
        .collect();
    assert_eq!(gone_declared, expected);
    // The public extension's objects are untouched.
    for (k, rv) in before.iter().filter(|(k, _)| k.contains("qhub-ext-docs")) {
        assert!(
            after.iter().any(|(a, v)| a == k && v == rv),
            "{k} changed or went"
        );
    }
    assert_redeploy_is_a_noop(&engine, &config, &kube, &keycloak).await;
}
