//! The manifests Argo Workflows renders, the CRDs as upstream ships them, and its Keycloak
//! client.

use serde_json::Value as Json;

use super::*;
use crate::kubernetes::components::{self, Component};
use crate::provider::ClusterFacts;

fn config(enabled: bool) -> crate::config::Config {
    let mut config = crate::config::init::render(&crate::config::init::InitOptions::new(
        crate::config::provider::ProviderKind::Aws,
        "demo",
        "demo.example.com",
        "not-a-real-password",
    ))
    .expect("init renders");
    config.argo_workflows = Some(crate::config::Toggle {
        enabled,
        overrides: None,
    });
    config
}

fn objects(enabled: bool) -> Vec<Json> {
    let config = config(enabled);
    let facts = ClusterFacts::from_config(&config);
    components::build(&config, &facts)
        .expect("builds")
        .into_iter()
        .filter(|(name, _)| *name == NAME)
        .flat_map(|(_, objects)| objects)
        .collect()
}

/// A CRD's name, kind and size instead of its long schema.
fn summarized(objects: &[Json]) -> Vec<Json> {
    objects
        .iter()
        .map(|o| {
            if o["kind"] == "CustomResourceDefinition" {
                serde_json::json!({
                    "kind": "CustomResourceDefinition",
                    "name": o["metadata"]["name"],
                    "labels": o["metadata"]["labels"],
                    "scope": o["spec"]["scope"],
                    "versions": o["spec"]["versions"].as_array().map(|v| v.iter().map(|v| v["name"].clone()).collect::<Vec<_>>()),
                })
            } else {
                o.clone()
            }
        })
        .collect()
}

#[test]
fn manifests() {
    let objects = objects(true);
    insta::assert_json_snapshot!(summarized(&objects));
}

#[test]
fn nothing_when_disabled() {
    assert!(objects(false).is_empty());
    let config = config(false);
    let clients = components::oidc_clients(&config).expect("clients");
    assert!(clients.iter().all(|c| c.client_id != CLIENT_ID));
}

#[test]
fn the_crds_are_upstreams_namespaced_ones() {
    let objects = objects(true);
    let crds: Vec<&Json> = objects
        .iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
        .collect();
    let names: Vec<&str> = crds
        .iter()
        .filter_map(|c| c["metadata"]["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "cronworkflows.argoproj.io",
            "workflowartifactgctasks.argoproj.io",
            "workfloweventbindings.argoproj.io",
            "workflows.argoproj.io",
            "workflowtaskresults.argoproj.io",
            "workflowtasksets.argoproj.io",
            "workflowtemplates.argoproj.io",
        ]
    );
    for crd in &crds {
        assert_eq!(crd["spec"]["group"], GROUP);
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        assert_eq!(crd["spec"]["versions"][0]["name"], "v1alpha1");
        // Every kind the component says users create has its CRD.
    }
    for (api_version, kind) in ArgoWorkflows.creates_at_run_time() {
        assert_eq!(*api_version, API_VERSION);
        assert!(
            crds.iter().any(|c| c["spec"]["names"]["kind"] == *kind),
            "no CRD for {kind}"
        );
    }
    // Kept unchanged: the schema of a Workflow keeps every field of spec and status.
    let wf = crds
        .iter()
        .find(|c| c["spec"]["names"]["kind"] == "Workflow")
        .expect("Workflow");
    assert_eq!(
        wf["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-preserve-unknown-fields"],
        true
    );
}

#[test]
fn argo_server_logs_in_through_keycloak() {
    let config = config(true);
    let clients = components::oidc_clients(&config).expect("clients");
    let client = clients
        .iter()
        .find(|c| c.client_id == CLIENT_ID)
        .expect("argo's client");
    assert_eq!(client.callback_path, "/argo/oauth2/callback");
    let objects = objects(true);
    let cm = objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == CONTROLLER_CONFIGMAP)
        .expect("controller ConfigMap");
    let sso = cm["data"]["sso"].as_str().expect("sso");
    let parsed = crate::config::yaml::parse(sso)
        .expect("sso is YAML")
        .to_json();
    assert_eq!(
        parsed["issuer"],
        "https://demo.example.com/auth/realms/qhub"
    );
    assert_eq!(
        parsed["redirectUrl"],
        "https://demo.example.com/argo/oauth2/callback"
    );
    assert_eq!(
        parsed["clientSecret"]["name"],
        client_secret_name(CLIENT_ID)
    );
    assert_eq!(parsed["clientSecret"]["key"], CLIENT_SECRET_KEY);
    assert_eq!(parsed["clientId"]["name"], CLIENT_ID_SECRET);
    // The secret it names is the generated one the framework makes for the client.
    assert!(objects.iter().any(|o| o["kind"] == "Secret"
        && o["metadata"]["name"] == client_secret_name(CLIENT_ID).as_str()));
    let server = objects
        .iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == SERVER)
        .expect("argo-server");
    let c = &server["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Json::as_str)
        .collect();
    assert!(
        args.windows(2).any(|w| w == ["--auth-mode", "sso"]),
        "{args:?}"
    );
    assert!(args.contains(&"--namespaced"));
    assert!(
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "ARGO_BASE_HREF" && e["value"] == "/argo/")
    );
    // An edit of `sso` rolls argo-server (it reads it at start).
    assert!(
        server["spec"]["template"]["metadata"]["annotations"]
            [crate::kubernetes::components::CONFIG_HASH_ANNOTATION]
            .is_string()
    );
}
