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

fn with_overrides(overrides: Json) -> Result<Vec<Json>, KubeError> {
    let mut config = config(true);
    config.argo_workflows = Some(crate::config::Toggle {
        enabled: true,
        overrides: serde_json::from_value(overrides).unwrap(),
    });
    let facts = ClusterFacts::from_config(&config);
    Ok(components::build(&config, &facts)?
        .into_iter()
        .filter(|(name, _)| *name == NAME)
        .flat_map(|(_, objects)| objects)
        .collect())
}

fn deployment<'a>(objects: &'a [Json], name: &str) -> &'a Json {
    objects
        .iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no Deployment {name}"))
}

#[test]
fn overrides_reach_the_controller_the_server_and_the_configmap() {
    let overridden = with_overrides(serde_json::json!({
        "controller": {
            "extraEnv": [{"name": "FOO", "value": "bar"}],
            "extraArgs": ["--qps=50"],
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
            "parallelism": 7,
            "workflowDefaults": {"spec": {"ttlStrategy": {"secondsAfterCompletion": 86400}}},
        },
        "server": {"extraEnv": [{"name": "BAZ", "value": "qux"}], "extraArgs": ["--x-frame-options=DENY"]},
    }))
    .expect("builds");
    let controller =
        &deployment(&overridden, CONTROLLER)["spec"]["template"]["spec"]["containers"][0];
    assert!(
        controller["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "FOO" && e["value"] == "bar"),
        "{controller}"
    );
    let args = controller["args"].as_array().unwrap();
    assert_eq!(args.last().unwrap(), "--qps=50");
    assert!(
        args.contains(&serde_json::json!("--namespaced")),
        "qhub's stay"
    );
    assert_eq!(controller["resources"]["limits"]["memory"], "2Gi");
    assert_eq!(controller["resources"]["requests"]["cpu"], "1");
    let server = &deployment(&overridden, SERVER)["spec"]["template"]["spec"]["containers"][0];
    assert!(
        server["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "BAZ" && e["value"] == "qux")
    );
    assert_eq!(
        server["args"].as_array().unwrap().last().unwrap(),
        "--x-frame-options=DENY"
    );
    // Untouched: the server's own resources.
    assert_eq!(server["resources"]["limits"]["memory"], "512Mi");
    let cm = overridden
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == CONTROLLER_CONFIGMAP)
        .unwrap();
    assert_eq!(cm["data"]["parallelism"], "7");
    let defaults = crate::config::yaml::parse(cm["data"]["workflowDefaults"].as_str().unwrap())
        .unwrap()
        .to_json();
    // Merged over qhub's: the workflows' account stays.
    assert_eq!(defaults["spec"]["serviceAccountName"], WORKFLOW_ACCOUNT);
    assert_eq!(
        defaults["spec"]["ttlStrategy"]["secondsAfterCompletion"],
        86400
    );
    // Without overrides, neither is there.
    let plain = objects(true);
    let cm = plain
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == CONTROLLER_CONFIGMAP)
        .unwrap();
    assert!(cm["data"].get("parallelism").is_none());
    let plain_controller =
        &deployment(&plain, CONTROLLER)["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(plain_controller["resources"]["limits"]["memory"], "512Mi");
}

#[test]
fn an_unknown_or_malformed_override_is_an_error_naming_the_key() {
    let err = with_overrides(serde_json::json!({"controller": {"nodeSelector": {"a": "b"}}}))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("argo_workflows.overrides.controller.nodeSelector is not supported"),
        "{err}"
    );
    assert!(err.contains("controller.extraEnv"), "{err}");
    let err = with_overrides(serde_json::json!({"singleNamespace": true}))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("argo_workflows.overrides.singleNamespace is not supported"),
        "{err}"
    );
    let err = with_overrides(serde_json::json!({"server": {"extraArgs": "--oops"}}))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("argo_workflows.overrides.server.extraArgs must be a list of strings"),
        "{err}"
    );
    let err = with_overrides(serde_json::json!({"controller": {"parallelism": "many"}}))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("controller.parallelism must be a whole number"),
        "{err}"
    );
}

#[test]
fn sso_rbac_maps_the_client_roles_to_annotated_accounts_with_their_roles() {
    let objects = objects(true);
    let cm = objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == CONTROLLER_CONFIGMAP)
        .unwrap();
    let sso = crate::config::yaml::parse(cm["data"]["sso"].as_str().unwrap())
        .unwrap()
        .to_json();
    assert_eq!(sso["rbac"]["enabled"], true);
    assert_eq!(sso["customGroupClaimName"], GROUP_CLAIM);
    let expected = [
        ("argo-admin", "'argo_admin' in groups", "11", "admin"),
        ("argo-edit", "'argo_developer' in groups", "10", "developer"),
        ("argo-view", "'argo_viewer' in groups", "9", "analyst"),
    ];
    let client = client();
    for (account, rule, precedence, group) in expected {
        let sa = objects
            .iter()
            .find(|o| o["kind"] == "ServiceAccount" && o["metadata"]["name"] == account)
            .unwrap_or_else(|| panic!("no account {account}"));
        assert_eq!(sa["metadata"]["annotations"][RBAC_RULE_ANNOTATION], rule);
        assert_eq!(
            sa["metadata"]["annotations"][RBAC_PRECEDENCE_ANNOTATION],
            precedence
        );
        let token = objects
            .iter()
            .find(|o| {
                o["kind"] == "Secret"
                    && o["metadata"]["name"] == format!("{account}.service-account-token")
            })
            .unwrap_or_else(|| panic!("no token for {account}"));
        assert_eq!(token["type"], "kubernetes.io/service-account-token");
        assert_eq!(
            token["metadata"]["annotations"]["kubernetes.io/service-account.name"],
            account
        );
        let binding = objects
            .iter()
            .find(|o| o["kind"] == "RoleBinding" && o["metadata"]["name"] == account)
            .unwrap_or_else(|| panic!("no binding for {account}"));
        assert_eq!(binding["subjects"][0]["name"], account);
        assert_eq!(binding["roleRef"]["name"], account);
        // The role the rule reads is the client role Keycloak maps from the group.
        let role = rule.trim_start_matches('\'').split('\'').next().unwrap();
        assert!(
            client
                .roles
                .iter()
                .any(|(r, groups)| r == role && groups == &[group.to_string()]),
            "{:?}",
            client.roles
        );
    }
    // The viewer only reads; the developer writes workflows but not task sets.
    let rules = |name: &str| -> Vec<Json> {
        objects
            .iter()
            .find(|o| o["kind"] == "Role" && o["metadata"]["name"] == name)
            .unwrap()["rules"]
            .as_array()
            .unwrap()
            .clone()
    };
    for r in rules("argo-view") {
        for verb in r["verbs"].as_array().unwrap() {
            assert!(
                ["get", "list", "watch"].contains(&verb.as_str().unwrap()),
                "{r}"
            );
        }
    }
    let edit = rules("argo-edit");
    assert!(edit.iter().any(|r| {
        r["resources"]
            .as_array()
            .unwrap()
            .contains(&"workflows".into())
            && r["verbs"].as_array().unwrap().contains(&"create".into())
    }));
    assert!(edit.iter().all(|r| {
        !r["resources"]
            .as_array()
            .unwrap()
            .contains(&"workflowtasksets".into())
    }));
    // argo-server may read the accounts and their token Secrets.
    let server_rules = rbac::ARGO_SERVER.permissions;
    assert!(
        server_rules
            .iter()
            .any(|p| p.resources.contains(&"serviceaccounts"))
    );
    assert!(
        server_rules
            .iter()
            .any(|p| p.resources.contains(&"secrets") && p.verbs.contains(&"get"))
    );
}
