use serde_json::{Value as Json, json};

use super::*;
use crate::config::ProviderKind;
use crate::kubernetes::components::{self, test_config};
use crate::provider::ClusterFacts;

/// QHub's default config for `provider` with a GPU group and a GPU profile, and profiles for
/// each kind of access.
pub(crate) fn gpu_config(provider: ProviderKind) -> crate::Config {
    let mut config = test_config(provider);
    let groups = match provider {
        ProviderKind::Aws => &mut config.amazon_web_services.as_mut().unwrap().node_groups,
        ProviderKind::Gcp => &mut config.google_cloud_platform.as_mut().unwrap().node_groups,
        ProviderKind::Do => &mut config.digital_ocean.as_mut().unwrap().node_groups,
        other => panic!("no node groups for {other:?}"),
    };
    let mut gpu = groups["user"].clone();
    gpu.gpu = true;
    groups.insert("gpu".into(), gpu);
    let extra: crate::config::profiles::Profiles = serde_json::from_value(json!({
        "jupyterlab": [
            {"display_name": "GPU Instance", "description": "One GPU", "access": "yaml",
             "groups": ["developer"],
             "kubespawner_override": {"cpu_limit": 4, "cpu_guarantee": "3500m",
                "mem_limit": "16Gi", "mem_guarantee": "10G",
                "image": "quay.io/example/gpu-lab:1.0",
                "extra_resource_limits": {"nvidia.com/gpu": 1}, "lifecycle_hooks": {}}},
            {"display_name": "Keycloak Instance", "access": "keycloak",
             "kubespawner_override": {"cpu_limit": 1, "cpu_guarantee": 1,
                "mem_limit": "2G", "mem_guarantee": "1G"}},
        ]
    }))
    .unwrap();
    config.profiles.jupyterlab.extend(extra.jupyterlab);
    config
}

fn objects(config: &crate::Config) -> Vec<Json> {
    let facts = ClusterFacts::from_config(config);
    components::build(config, &facts)
        .unwrap()
        .into_iter()
        .find(|(name, _)| *name == NAME)
        .expect("JupyterHub is deployed")
        .1
}

fn find<'a>(objects: &'a [Json], kind: &str, name: &str) -> &'a Json {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn values(objects: &[Json]) -> Json {
    let map = find(objects, "ConfigMap", CONFIG_MAP);
    serde_json::from_str(map["data"][config::VALUES_NAME].as_str().unwrap()).unwrap()
}

#[test]
fn manifests_and_values_of_a_gpu_config() {
    for provider in [ProviderKind::Aws, ProviderKind::Gcp, ProviderKind::Do] {
        let objects = objects(&gpu_config(provider));
        let name = format!("{provider:?}").to_lowercase();
        insta::assert_json_snapshot!(format!("jupyterhub_gpu_{name}"), objects);
    }
}

#[test]
fn the_python_config_is_the_static_file() {
    let objects = objects(&test_config(ProviderKind::Aws));
    let map = find(&objects, "ConfigMap", CONFIG_MAP);
    assert_eq!(map["data"][config::CONFIG_PY_NAME], config::CONFIG_PY);
    insta::assert_snapshot!("jupyterhub_config_py", config::CONFIG_PY);
}

#[test]
fn a_gpu_profile_lands_on_the_gpu_group_and_tolerates_its_taint() {
    let config = gpu_config(ProviderKind::Aws);
    let facts = ClusterFacts::from_config(&config);
    let values = values(&objects(&config));
    let profiles = values["profiles"].as_array().unwrap();
    let gpu = profiles
        .iter()
        .find(|p| p["display_name"] == "GPU Instance")
        .unwrap();
    let over = &gpu["kubespawner_override"];
    let gpu_selector = facts.node_selector.for_group("gpu").unwrap();
    assert_eq!(over["node_selector"], json!(gpu_selector), "{over}");
    let taint = facts.gpu.taint.clone().unwrap();
    assert!(
        over["tolerations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["key"] == taint.key.as_str() && t["effect"] == taint.effect.as_str()),
        "{over}"
    );
    assert_eq!(over["extra_resource_limits"]["nvidia.com/gpu"], 1);
    assert_eq!(over["image"], "quay.io/example/gpu-lab:1.0");
    assert_eq!(over["cpu_guarantee"], 3.5);
    assert_eq!(over["mem_limit"], "16G");
    assert_eq!(over["lifecycle_hooks"], json!({}), "other keys pass as is");
    // Every other profile: the user group, no toleration, the default image.
    let small = &profiles[0]["kubespawner_override"];
    assert_eq!(
        small["node_selector"],
        json!(facts.node_selector.for_group("user").unwrap())
    );
    assert!(small.get("tolerations").is_none(), "{small}");
    assert_eq!(small["image"], json!(config.default_images.jupyterlab));
}

#[test]
fn a_profile_change_rolls_the_hub_and_nothing_else() {
    let config = test_config(ProviderKind::Do);
    let mut edited = config.clone();
    edited.profiles.jupyterlab[0].description = "changed".into();
    let hash = |objects: &[Json], name: &str| {
        find(objects, "Deployment", name)["spec"]["template"]["metadata"]["annotations"]
            [components::CONFIG_HASH_ANNOTATION]
            .clone()
    };
    let (before, after) = (objects(&config), objects(&edited));
    assert!(hash(&before, HUB_SERVICE).is_string());
    assert_ne!(hash(&before, HUB_SERVICE), hash(&after, HUB_SERVICE));
    assert_eq!(hash(&before, PROXY), Json::Null);
    assert_eq!(
        find(&before, "Deployment", PROXY),
        find(&after, "Deployment", PROXY)
    );
}

#[test]
fn overrides_honour_documented_keys_and_refuse_others() {
    let mut config = test_config(ProviderKind::Aws);
    config.jupyterhub = Some(crate::config::components::JupyterHub {
        overrides: serde_json::from_value(json!({
            "hub": {"config": {"KubeSpawner": {"start_timeout": 900}}},
            "cull": {"timeout": 7200},
        }))
        .unwrap(),
    });
    let v = values(&objects(&config));
    assert_eq!(v["config"]["KubeSpawner"]["start_timeout"], 900);
    assert_eq!(v["culler"]["timeout"], 7200);
    assert_eq!(v["culler"]["every"], config::CULL_EVERY);
    config.jupyterhub = Some(crate::config::components::JupyterHub {
        overrides: serde_json::from_value(json!({"singleuser": {"extraEnv": {}}})).unwrap(),
    });
    let facts = ClusterFacts::from_config(&config);
    let err = components::build(&config, &facts).unwrap_err().to_string();
    assert!(
        err.contains("jupyterhub.overrides.singleuser.extraEnv is not supported yet"),
        "{err}"
    );
}

#[test]
fn the_hub_reads_its_secrets_from_secrets_and_its_client_has_the_profiles_claim() {
    let objects = objects(&test_config(ProviderKind::Gcp));
    let hub = find(&objects, "Deployment", HUB_SERVICE);
    let env = hub["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    assert!(env.iter().all(|e| e.get("value").is_none()), "{env:?}");
    let secret_of = |var: &str| {
        env.iter()
            .find(|e| e["name"] == var)
            .map(|e| e["valueFrom"]["secretKeyRef"].clone())
            .unwrap_or_else(|| panic!("no {var}"))
    };
    assert_eq!(
        secret_of(config::CLIENT_SECRET_ENV),
        json!({"name": client_secret_name("jupyterhub"), "key": CLIENT_SECRET_KEY, "optional": false})
    );
    assert_eq!(
        secret_of("QHUB_DASK_GATEWAY_API_TOKEN"),
        json!({"name": "dask-gateway-hub-token", "key": "token", "optional": true})
    );
    let c = client();
    assert_eq!(c.callback_path, "/hub/oauth_callback");
    let rep = crate::keycloak::desired::client_representation(
        &test_config(ProviderKind::Gcp),
        &c,
        crate::keycloak::client::SecretString::new("x"),
    );
    let mapper = rep
        .protocol_mappers
        .iter()
        .find(|m| m.name == config::PROFILES_CLAIM)
        .expect("the jupyterlab_profiles mapper");
    assert_eq!(mapper.config["aggregate.attrs"], "true");
    assert_eq!(mapper.config["user.attribute"], config::PROFILES_CLAIM);
}

#[test]
fn conda_store_environments_are_offered_as_kernels() {
    let mut config = test_config(ProviderKind::Aws);
    config.conda_store = Some(crate::config::CondaStore {
        extra_settings: None,
        extra_config: None,
        image_tag: None,
        default_namespace: Some("shared-envs".into()),
    });
    let objects = objects(&config);
    let map = find(&objects, "ConfigMap", kernels::CONFIG_MAP);
    let condarc = map["data"][kernels::CONDARC_KEY].as_str().unwrap();
    // The user's own namespace (expanded by conda from JupyterHub's variable), the config's
    // environments, and users' default namespace, where conda-store builds them.
    assert!(
        condarc.contains("  - /home/conda/${JUPYTERHUB_USER}/envs\n"),
        "{condarc}"
    );
    assert!(
        condarc.contains("  - /home/conda/shared-envs/envs\n"),
        "{condarc}"
    );
    assert!(
        condarc.contains("  - /home/conda/global/envs\n"),
        "{condarc}"
    );
    let jupyter: Json =
        serde_json::from_str(map["data"][kernels::JUPYTER_KEY].as_str().unwrap()).unwrap();
    assert_eq!(
        jupyter["CondaKernelSpecManager"]["name_format"],
        "{environment}"
    );
    // Users' servers mount both files from it, read-only, beside the store.
    let spawner = &values(&objects)["spawner"];
    assert!(
        spawner["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["configMap"]["name"] == kernels::CONFIG_MAP)
    );
    let mounts = spawner["volume_mounts"].as_array().unwrap();
    for (path, key) in [
        (kernels::CONDARC_MOUNT, kernels::CONDARC_KEY),
        (kernels::JUPYTER_MOUNT, kernels::JUPYTER_KEY),
    ] {
        let m = mounts
            .iter()
            .find(|m| m["mountPath"] == path)
            .unwrap_or_else(|| panic!("no mount at {path}"));
        assert_eq!(m["subPath"], key);
        assert_eq!(m["readOnly"], true);
        assert_eq!(m["name"], kernels::VOLUME);
    }
    insta::assert_snapshot!("jupyterlab_condarc", condarc);
}
