//! What the Dask Gateway component builds: snapshots of its objects and settings for the
//! default configs and a GPU variant, and the rules a snapshot cannot show at a glance.

use serde_json::{Value as Json, json};

use super::*;
use crate::config::ProviderKind;
use crate::config::profiles::DaskWorkerProfile;
use crate::kubernetes::components::{CONFIG_HASH_ANNOTATION, assemble, test_config};
use crate::provider::ClusterFacts;

/// The default config of `provider` with a `gpu: true` group named `gpu` and a "GPU Worker"
/// profile asking for one GPU (the GPU variant of the snapshots).
pub(crate) fn gpu_config(provider: ProviderKind) -> crate::Config {
    let mut config = test_config(provider);
    let groups = match provider {
        ProviderKind::Aws => &mut config.amazon_web_services.as_mut().unwrap().node_groups,
        ProviderKind::Gcp => &mut config.google_cloud_platform.as_mut().unwrap().node_groups,
        ProviderKind::Do => &mut config.digital_ocean.as_mut().unwrap().node_groups,
        _ => &mut config.sandbox.as_mut().unwrap().node_groups,
    };
    let mut gpu = groups["worker"].clone();
    gpu.gpu = true;
    groups.insert("gpu".into(), gpu);
    let profile: DaskWorkerProfile = serde_json::from_value(json!({
        "worker_cores_limit": 4, "worker_cores": 3,
        "worker_memory_limit": "16G", "worker_memory": "10G", "worker_threads": 4,
        "worker_extra_container_config": {"resources": {"limits": {"nvidia.com/gpu": 1}}},
        "worker_extra_pod_annotations": {"team": "ml"},
    }))
    .unwrap();
    config
        .profiles
        .dask_worker
        .insert("GPU Worker".into(), profile);
    config
}

fn objects(config: &crate::Config) -> Vec<Json> {
    let facts = ClusterFacts::from_config(config);
    assemble(config, &facts)
        .unwrap()
        .into_iter()
        .find(|a| a.name == NAME)
        .expect("Dask Gateway is enabled")
        .built
        .manifests
}

fn settings_of(objects: &[Json]) -> Json {
    let map = objects
        .iter()
        .find(|m| m["kind"] == "ConfigMap" && m["metadata"]["name"] == config::CONFIG_MAP)
        .expect("the ConfigMap");
    serde_json::from_str(map["data"][config::SETTINGS_FILE].as_str().unwrap()).unwrap()
}

fn profile<'a>(settings: &'a Json, name: &str) -> &'a Json {
    settings["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .map(|p| &p["config"])
        .unwrap_or_else(|| panic!("no profile {name} in {settings:#}"))
}

#[test]
fn manifests_per_provider_and_the_gpu_variant() {
    for provider in [ProviderKind::Aws, ProviderKind::Gcp, ProviderKind::Do] {
        let name = format!("{provider:?}").to_lowercase();
        insta::assert_json_snapshot!(format!("manifests_{name}"), objects(&test_config(provider)));
    }
    insta::assert_json_snapshot!("manifests_aws_gpu", objects(&gpu_config(ProviderKind::Aws)));
}

#[test]
fn the_config_file_is_static_and_the_settings_carry_what_varies() {
    insta::assert_snapshot!("dask_gateway_config_py", config::SCRIPT);
    let settings = settings_of(&objects(&gpu_config(ProviderKind::Aws)));
    insta::assert_json_snapshot!("settings_aws_gpu", settings);
}

#[test]
fn workers_land_on_the_worker_group_and_a_gpu_profile_on_the_gpu_group() {
    let config = gpu_config(ProviderKind::Aws);
    let facts = ClusterFacts::from_config(&config);
    let label = facts.node_selector.label.clone();
    let settings = settings_of(&objects(&config));
    let small = profile(&settings, "Small Worker");
    assert_eq!(
        small["worker_extra_pod_config"]["nodeSelector"][&label],
        "worker"
    );
    assert!(
        small["worker_extra_pod_config"]
            .get("tolerations")
            .is_none()
    );
    assert_eq!(small["image"], json!(config.default_images.dask_worker));
    let gpu = profile(&settings, "GPU Worker");
    assert_eq!(
        gpu["worker_extra_pod_config"]["nodeSelector"][&label],
        "gpu"
    );
    assert_eq!(
        gpu["worker_extra_pod_config"]["tolerations"],
        json!([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])
    );
    // The limit once: ours and the profile's name the same key.
    assert_eq!(
        gpu["worker_extra_container_config"]["resources"]["limits"],
        json!({"nvidia.com/gpu": 1})
    );
    // Every other key as the config wrote it.
    assert_eq!(gpu["worker_extra_pod_annotations"], json!({"team": "ml"}));
    // Schedulers stay on the worker group.
    assert_eq!(
        settings["cluster"]["scheduler_extra_pod_config"]["nodeSelector"][&label],
        "worker"
    );
}

#[test]
fn a_profile_named_for_a_gpu_group_gets_it_with_one_gpu() {
    let mut config = gpu_config(ProviderKind::Aws);
    let small = config.profiles.dask_worker["Small Worker"].clone();
    config.profiles.dask_worker.insert("gpu".into(), small);
    let settings = settings_of(&objects(&config));
    let gpu = profile(&settings, "gpu");
    assert_eq!(
        gpu["worker_extra_container_config"]["resources"]["limits"],
        json!({"nvidia.com/gpu": 1})
    );
    assert!(gpu["worker_extra_pod_config"]["tolerations"].is_array());
}

#[test]
fn a_gpu_profile_without_a_gpu_group_is_an_error_naming_it() {
    let mut config = gpu_config(ProviderKind::Aws);
    config
        .amazon_web_services
        .as_mut()
        .unwrap()
        .node_groups
        .shift_remove("gpu");
    let facts = ClusterFacts::from_config(&config);
    let err = assemble(&config, &facts).unwrap_err().to_string();
    assert!(
        err.contains("profiles.dask_worker.GPU Worker") && err.contains("gpu: true"),
        "{err}"
    );
}

#[test]
fn a_profile_edit_rolls_the_gateway_and_its_controller_only() {
    let before = gpu_config(ProviderKind::Aws);
    let mut after = before.clone();
    after
        .profiles
        .dask_worker
        .get_mut("Small Worker")
        .unwrap()
        .worker_threads = Some(3);
    let facts = ClusterFacts::from_config(&before);
    let templates = |c: &crate::Config| -> Vec<(String, Json)> {
        assemble(c, &facts)
            .unwrap()
            .into_iter()
            .flat_map(|a| a.built.manifests)
            .filter(|m| m.pointer("/spec/template").is_some())
            .map(|m| {
                let name = m["metadata"]["name"].as_str().unwrap().to_string();
                (name, m["spec"]["template"].clone())
            })
            .collect()
    };
    let (b, a) = (templates(&before), templates(&after));
    let changed: Vec<&str> = b
        .iter()
        .zip(&a)
        .filter(|(x, y)| x != y)
        .map(|(x, _)| x.0.as_str())
        .collect();
    assert_eq!(changed, [API, CONTROLLER]);
    let api = &a.iter().find(|(n, _)| n == API).unwrap().1;
    assert!(api["metadata"]["annotations"][CONFIG_HASH_ANNOTATION].is_string());
}

#[test]
fn no_worker_profile_no_gateway() {
    let mut config = test_config(ProviderKind::Aws);
    config.profiles.dask_worker.clear();
    let facts = ClusterFacts::from_config(&config);
    assert!(
        assemble(&config, &facts)
            .unwrap()
            .iter()
            .all(|a| a.name != NAME)
    );
}

#[test]
fn the_api_is_routed_at_gateway_and_the_scheduler_entry_point_is_exposed() {
    let config = test_config(ProviderKind::Aws);
    let all = objects(&config);
    let route = all
        .iter()
        .find(|m| m["kind"] == "IngressRoute")
        .expect("a route");
    assert!(
        route["spec"]["routes"][0]["match"]
            .as_str()
            .unwrap()
            .ends_with("PathPrefix(`/gateway`)"),
        "{route}"
    );
    assert_eq!(route["spec"]["entryPoints"], json!(["websecure"]));
    let settings = settings_of(&all);
    assert_eq!(settings["proxy_web_entrypoint"], "websecure");
    assert_eq!(settings["proxy_tcp_entrypoint"], "tcp-8786");
    assert!(
        ingress::ENTRY_POINTS
            .iter()
            .any(|e| e.name == "tcp-8786" && e.port == 8786)
    );
    let secret = all
        .iter()
        .find(|m| m["kind"] == "Secret")
        .expect("the hub token");
    assert_eq!(secret["metadata"]["name"], HUB_TOKEN_SECRET);
    assert!(secret.get("data").is_none_or(Json::is_null));
}
