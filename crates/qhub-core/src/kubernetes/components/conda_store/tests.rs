use serde_json::{Value as Json, json};

use super::*;
use crate::config::ProviderKind;
use crate::kubernetes::components::{CONFIG_HASH_ANNOTATION, build, oidc_clients, test_config};
use crate::provider::ClusterFacts;

fn objects_of(config: &crate::Config) -> Vec<Json> {
    let facts = ClusterFacts::from_config(config);
    build(config, &facts)
        .unwrap()
        .into_iter()
        .find(|(n, _)| *n == NAME)
        .expect("conda-store is deployed")
        .1
}

fn find<'a>(objects: &'a [Json], kind: &str, name: &str) -> &'a Json {
    objects
        .iter()
        .find(|m| m["kind"] == kind && m["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn pod(objects: &[Json], name: &str) -> Json {
    find(objects, "Deployment", name)["spec"]["template"]["spec"].clone()
}

#[test]
fn server_and_worker_share_the_store_config_and_secrets_as_the_contract_says() {
    let objects = objects_of(&test_config(ProviderKind::Aws));
    for name in [SERVER, WORKER] {
        let pod = pod(&objects, name);
        let container = &pod["containers"][0];
        assert_eq!(container["image"], versions::CONDA_STORE.reference());
        assert_eq!(
            container["args"],
            json!([name, "--config", "/etc/conda-store/conda_store_config.py"])
        );
        // The shared claim, subPath conda-store, read-write at /home/conda.
        let store = container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == STORE_DIRECTORY)
            .expect("the store is mounted");
        assert_eq!(store["subPath"], SUB_PATH);
        assert!(store.get("readOnly").is_none(), "{store}");
        let volume = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == store["name"])
            .unwrap();
        assert_eq!(volume["persistentVolumeClaim"]["claimName"], storage::CLAIM);
        // Both wait for the database and Redis before conda-store starts.
        let init: Vec<&str> = pod["initContainers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(init, ["wait-for-database", "wait-for-redis"]);
    }
    // Only the server holds the login client's secret, from the Secret the framework makes.
    let secret_of = |pod: &Json, var: &str| -> Option<Json> {
        pod["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == var)
            .map(|e| e["valueFrom"]["secretKeyRef"].clone())
    };
    assert_eq!(
        secret_of(&pod(&objects, SERVER), "QHUB_CONDA_STORE_CLIENT_SECRET"),
        Some(json!({
            "name": client_secret_name(CLIENT_ID),
            "key": CLIENT_SECRET_KEY,
            "optional": false
        }))
    );
    assert_eq!(
        secret_of(&pod(&objects, WORKER), "QHUB_CONDA_STORE_CLIENT_SECRET"),
        None
    );
    // No pod watches environment files: the engine registers them through the API (one
    // writer).
    for name in [WORKER, SERVER] {
        let mounts = pod(&objects, name)["containers"][0]["volumeMounts"].to_string();
        assert!(!mounts.contains("environments"), "{name}: {mounts}");
    }
    assert!(!config::PYTHON.contains("c.CondaStoreWorker.watch_paths"));
    // No secret value in any manifest: the generated Secret has a recipe and no data.
    let secret = find(&objects, "Secret", SECRET);
    assert!(secret.get("data").is_none(), "{secret}");
    assert!(
        secret["metadata"]["annotations"][recipes::ANNOTATION]
            .as_str()
            .unwrap()
            .contains("token-secret")
    );
}

#[test]
fn the_server_is_routed_listed_and_logs_in_through_keycloak() {
    let config = test_config(ProviderKind::Gcp);
    let objects = objects_of(&config);
    let route = find(&objects, "IngressRoute", SERVER);
    assert!(
        route["spec"]["routes"][0]["match"]
            .as_str()
            .unwrap()
            .ends_with("PathPrefix(`/conda-store`)"),
        "{route}"
    );
    assert_eq!(route["spec"]["routes"][0]["services"][0]["port"], PORT);
    let urls = crate::kubernetes::endpoints::urls(&config);
    assert!(
        urls.iter()
            .any(|u| u.component == NAME && u.url == "https://demo.example.com/conda-store/"),
        "{urls:?}"
    );
    let probe = &pod(&objects, SERVER)["containers"][0]["readinessProbe"]["httpGet"];
    assert_eq!(probe["path"], HEALTH_PATH);
    let clients = oidc_clients(&config).unwrap();
    let client = clients
        .iter()
        .find(|c| c.client_id == CLIENT_ID)
        .expect("conda_store client");
    assert_eq!(client.callback_path, CALLBACK_PATH);
    // QHub 0.4.5's mapping: admin → admin role; developer and analyst → developer role.
    assert_eq!(
        client.roles,
        [
            ("conda_store_admin".to_string(), vec!["admin".to_string()]),
            (
                "conda_store_developer".to_string(),
                vec!["developer".to_string(), "analyst".to_string()]
            ),
            ("conda_store_viewer".to_string(), vec![]),
        ]
    );
    // Every role the client has is one the configuration maps onto a conda-store role.
    for (role, _) in &client.roles {
        assert!(
            config::ROLE_MAPPINGS.iter().any(|(r, _)| r == role),
            "{role}"
        );
    }
}

#[test]
fn an_edited_environment_changes_no_object() {
    let before_config = test_config(ProviderKind::Aws);
    let mut after_config = before_config.clone();
    let env = after_config
        .environments
        .get_mut("environment-dask.yaml")
        .unwrap();
    env.dependencies
        .push(crate::config::Dependency::Package("xarray".into()));
    // The environments are conda-store's data, registered by the engine: no manifest changes.
    assert_eq!(objects_of(&before_config), objects_of(&after_config));
    let spec = config::environment_files(&after_config)["environment-dask.yaml"].clone();
    assert!(spec.contains("- xarray"), "{spec}");
}

#[test]
fn an_edited_setting_rolls_the_server_and_the_worker_only() {
    let before_config = test_config(ProviderKind::Aws);
    let mut after_config = before_config.clone();
    after_config.conda_store = Some(crate::config::CondaStore {
        extra_settings: None,
        extra_config: Some("c.CondaStoreWorker.concurrency = 2\n".into()),
        image_tag: None,
        default_namespace: None,
    });
    let facts = ClusterFacts::from_config(&before_config);
    let templates = |config| -> Vec<(String, Json)> {
        build(config, &facts)
            .unwrap()
            .into_iter()
            .flat_map(|(_, ms)| ms)
            .filter(|m| m.pointer("/spec/template").is_some())
            .map(|m| {
                (
                    m["metadata"]["name"].as_str().unwrap().to_string(),
                    m["spec"]["template"].clone(),
                )
            })
            .collect()
    };
    let (b, a) = (templates(&before_config), templates(&after_config));
    let changed: Vec<&str> = b
        .iter()
        .zip(&a)
        .filter(|(x, y)| x != y)
        .map(|(x, _)| x.0.as_str())
        .collect();
    assert_eq!(changed, [SERVER, WORKER]);
    for (name, template) in &a {
        if name == SERVER || name == WORKER {
            assert!(
                template["metadata"]["annotations"]
                    .get(CONFIG_HASH_ANNOTATION)
                    .is_some()
            );
        }
    }
}

#[test]
fn the_image_tag_comes_from_the_config_when_set() {
    let mut config = test_config(ProviderKind::Aws);
    config.conda_store = Some(crate::config::CondaStore {
        extra_settings: None,
        extra_config: None,
        image_tag: Some("2025.1.1".into()),
        default_namespace: None,
    });
    let objects = objects_of(&config);
    for name in [SERVER, WORKER] {
        assert_eq!(
            pod(&objects, name)["containers"][0]["image"],
            "quay.io/quansight/conda-store-server:2025.1.1"
        );
    }
    let facts = ClusterFacts::from_config(&config);
    let images = crate::kubernetes::components::images(&config, &facts).unwrap();
    assert!(
        images
            .iter()
            .any(|i| i.reference() == "quay.io/quansight/conda-store-server:2025.1.1"),
        "{images:?}"
    );
    // Interning gives the same text back for the same tag.
    assert!(std::ptr::eq(interned("2025.1.1"), interned("2025.1.1")));
}

#[test]
fn environment_specs_carry_name_channels_and_pip_dependencies() {
    let env: crate::config::CondaEnvironment = serde_json::from_value(json!({
        "name": "ml",
        "channels": ["conda-forge"],
        "dependencies": ["python=3.12", {"pip": ["torch==2.5.1"]}],
    }))
    .unwrap();
    let text = config::environment_spec(&env);
    let parsed = crate::config::yaml::parse(&text).unwrap().to_json();
    assert_eq!(
        parsed,
        json!({"name": "ml", "channels": ["conda-forge"],
               "dependencies": ["python=3.12", {"pip": ["torch==2.5.1"]}]})
    );
}
