//! Checked by the real software: dask-gateway-server 2026.3.0 (PyPI, installed by
//! scripts/test into `.venv-dask-gateway`) loads the rendered `dask_gateway_config.py` and its
//! settings as its API server and its controller do, with no warning; its cluster options
//! offer every worker profile and conda environment, and for each profile the options handler
//! gives the KubeClusterConfig the config asks for (the GPU profile: the GPU group's selector,
//! the GPU taint's toleration and the GPU limit); the routes its controller would write use
//! the Traefik group, entry points and middleware the platform serves.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use qhub_core::config::init::{InitOptions, render};
use qhub_core::config::provider::ProviderKind;
use qhub_core::kubernetes::components::{self, dask_gateway, ingress};
use qhub_core::provider::ClusterFacts;
use serde_json::{Value as Json, json};

const VERSION: &str = "2026.3.0";

/// The Python of the virtualenv holding dask-gateway-server: `QHUB_DASK_GATEWAY_PYTHON`, else
/// the workspace's `.venv-dask-gateway` (scripts/test installs it there). Missing, the test
/// fails rather than passing unchecked.
fn python() -> PathBuf {
    support::venv_python(
        "QHUB_DASK_GATEWAY_PYTHON",
        ".venv-dask-gateway",
        "dask-gateway-server",
        &format!(
            "python3 -m venv .venv-dask-gateway && .venv-dask-gateway/bin/pip install 'dask-gateway-server[kubernetes]=={VERSION}'"
        ),
    )
}

/// The default AWS config with a `gpu: true` group and a profile asking for one GPU.
fn config() -> qhub_core::Config {
    let mut config = render(&InitOptions::new(
        ProviderKind::Aws,
        "demo",
        "demo.example.com",
        "not-a-real-password",
    ))
    .unwrap();
    let groups = &mut config.amazon_web_services.as_mut().unwrap().node_groups;
    let mut gpu = groups["worker"].clone();
    gpu.gpu = true;
    groups.insert("gpu".into(), gpu);
    config.profiles.dask_worker.insert(
        "GPU Worker".into(),
        serde_json::from_value(json!({
            "worker_cores_limit": 4, "worker_cores": "3500m",
            "worker_memory_limit": "16Gi", "worker_memory": "10G", "worker_threads": 4,
            "image": "example.com/ml/dask-gpu:1.0",
            "worker_extra_container_config": {"resources": {"limits": {"nvidia.com/gpu": 2}}},
            "worker_extra_pod_annotations": {"team": "ml"},
        }))
        .unwrap(),
    );
    config
}

fn report(config: &qhub_core::Config) -> (Json, Vec<Json>) {
    let facts = ClusterFacts::from_config(config);
    let objects: Vec<Json> = components::build(config, &facts)
        .unwrap()
        .into_iter()
        .find(|(n, _)| *n == dask_gateway::NAME)
        .expect("Dask Gateway is enabled")
        .1;
    let map = objects
        .iter()
        .find(|m| m["kind"] == "ConfigMap")
        .expect("its ConfigMap");
    let dir = tempfile::tempdir().unwrap();
    for (file, content) in map["data"].as_object().unwrap() {
        std::fs::write(dir.path().join(file), content.as_str().unwrap()).unwrap();
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dask_gateway/check_config.py");
    let out = Command::new(python())
        .arg(&script)
        .arg(dir.path())
        .arg(&config.namespace)
        .env("JUPYTERHUB_API_TOKEN", "not-a-real-token")
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "dask-gateway-server refused the config:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    });
    (report, objects)
}

#[tokio::test]
async fn dask_gateway_server_loads_the_config_and_resolves_every_profile() {
    let config = config();
    let ns = config.namespace.clone();
    let facts = ClusterFacts::from_config(&config);
    let label = facts.node_selector.label.clone();
    let (report, objects) = report(&config);
    assert_eq!(report["warnings"], json!([]), "{report:#}");

    // The server and its authenticator, as configured.
    assert_eq!(
        report["backend"]["api_url"],
        format!("http://dask-gateway-api.{ns}.svc:8000/api")
    );
    assert_eq!(
        report["auth"]["jupyterhub_api_url"],
        format!("http://hub.{ns}.svc:8081/hub/api")
    );
    assert_eq!(report["auth"]["token_from_env"], true);

    // Every profile is a choice, in the config's order; the conda environments too.
    let options = report["options"].as_array().unwrap();
    let choices = |field: &str| {
        options
            .iter()
            .find(|f| f["field"] == field)
            .unwrap_or_else(|| panic!("no {field} option: {options:?}"))["spec"]["options"]
            .clone()
    };
    let profiles: Vec<&String> = config.profiles.dask_worker.keys().collect();
    assert_eq!(choices("profile"), json!(profiles));
    let envs: Vec<&String> = config.environments.values().map(|e| &e.name).collect();
    assert_eq!(choices("conda_environment"), json!(envs));

    let resolved = &report["profiles"];
    let gib = 1u64 << 30;
    // The default profiles: their sizes, the default image, the worker group, no GPU.
    let small = &resolved["Small Worker"];
    assert_eq!(small["worker_cores"], json!(1.5));
    assert_eq!(small["worker_cores_limit"], json!(2.0));
    assert_eq!(small["worker_memory"], json!(5 * gib));
    assert_eq!(small["worker_memory_limit"], json!(8 * gib));
    assert_eq!(small["worker_threads"], json!(2));
    assert_eq!(small["image"], json!(config.default_images.dask_worker));
    assert_eq!(small["namespace"], json!(ns));
    assert_eq!(
        small["worker_extra_pod_config"]["nodeSelector"],
        json!({&label: "worker"})
    );
    assert!(
        small["worker_extra_pod_config"]
            .get("tolerations")
            .is_none()
    );
    assert!(
        small["worker_extra_container_config"]
            .get("resources")
            .is_none()
    );
    assert_eq!(
        small["scheduler_extra_pod_config"]["nodeSelector"],
        json!({&label: "worker"})
    );
    // The conda-store environments, mounted read-only.
    assert_eq!(
        small["worker_extra_container_config"]["volumeMounts"],
        json!([{"name": "conda-store", "mountPath": "/home/conda", "subPath": "conda-store", "readOnly": true}])
    );

    // The GPU profile: the GPU group, its taint tolerated, the limit it asked for, its image
    // and every other key it set.
    let gpu = &resolved["GPU Worker"];
    assert_eq!(
        gpu["worker_extra_pod_config"]["nodeSelector"],
        json!({&label: "gpu"})
    );
    assert_eq!(
        gpu["worker_extra_pod_config"]["tolerations"],
        json!([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])
    );
    assert_eq!(
        gpu["worker_extra_container_config"]["resources"]["limits"],
        json!({"nvidia.com/gpu": 2})
    );
    assert_eq!(gpu["worker_cores"], json!(3.5));
    assert_eq!(gpu["worker_memory_limit"], json!(16 * gib));
    assert_eq!(gpu["image"], "example.com/ml/dask-gpu:1.0");
    assert_eq!(gpu["worker_extra_pod_annotations"], json!({"team": "ml"}));

    // A conda environment runs the scheduler and workers from the environment.
    let with_env = &resolved[format!("Small Worker / {}", envs[0])];
    // In conda-store's namespace for the config's environments (`conda_store.default_namespace`,
    // QHub 0.4.5's `nebari-git` when unset), where conda-store builds them.
    let prefix = format!("/home/conda/nebari-git/envs/{}", envs[0]);
    assert_eq!(
        with_env["worker_cmd"],
        json!([format!("{prefix}/bin/dask-worker")])
    );
    assert_eq!(
        with_env["scheduler_cmd"],
        json!([format!("{prefix}/bin/dask-scheduler")])
    );
    assert_eq!(with_env["environment"]["CONDA_PREFIX"], json!(prefix));

    // The routes the controller writes meet our Traefik: its group, our entry points, and a
    // middleware we deploy.
    let controller = &report["controller"];
    let group = format!("{}/{}", ingress::crds::GROUP, ingress::crds::VERSION);
    let web = &controller["ingressroute"];
    let tcp = &controller["ingressroutetcp"];
    assert_eq!(web["apiVersion"], json!(group));
    assert_eq!(tcp["apiVersion"], json!(group));
    assert_eq!(web["spec"]["entryPoints"], json!([ingress::WEBSECURE.name]));
    assert_eq!(tcp["spec"]["entryPoints"], json!([ingress::DASK.name]));
    assert!(
        web["spec"]["routes"][0]["match"]
            .as_str()
            .unwrap()
            .starts_with("PathPrefix(`/gateway/clusters/"),
        "{web}"
    );
    for m in web["spec"]["routes"][0]["middlewares"].as_array().unwrap() {
        assert!(
            objects
                .iter()
                .any(|o| o["kind"] == "Middleware" && o["metadata"]["name"] == m["name"]),
            "the controller names middleware {m}, which is not deployed"
        );
    }
    assert_eq!(
        controller["api_url"], report["backend"]["api_url"],
        "the controller and the server agree on the API"
    );

    // The pods the controller makes: a GPU worker on the GPU group, tolerating the taint,
    // asking for the GPUs; every scheduler and worker admitted by the platform namespace's
    // `restricted` Pod Security level.
    let pods = &report["pods"];
    let gpu_worker = &pods["GPU Worker"]["worker"]["spec"];
    assert_eq!(gpu_worker["nodeSelector"], json!({&label: "gpu"}));
    assert_eq!(
        gpu_worker["tolerations"][0]["key"],
        json!(facts.gpu.resource)
    );
    assert_eq!(
        gpu_worker["containers"][0]["resources"]["limits"]["nvidia.com/gpu"],
        json!(2)
    );
    assert_eq!(
        pods["GPU Worker"]["scheduler"]["spec"]["nodeSelector"],
        json!({&label: "worker"})
    );
    assert_eq!(
        pods["Small Worker"]["worker"]["spec"]["nodeSelector"],
        json!({&label: "worker"})
    );
    admitted_in_a_restricted_namespace(pods).await;
}

/// Creates every pod of `pods` in a namespace enforcing `restricted`, in the in-memory API
/// (whose admission follows the Pod Security Standards).
async fn admitted_in_a_restricted_namespace(pods: &Json) {
    use k8s_openapi::api::core::v1::{Namespace, Pod};
    use kube::api::{Api, PostParams};
    let api = qhub_sandbox::kube_api::KubeApi::new();
    let client = api.client();
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "dev",
        "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}))
    .unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let created = Api::<Pod>::namespaced(client, "dev");
    let mut n = 0;
    for (profile, by_role) in pods.as_object().unwrap() {
        for (role, pod) in by_role.as_object().unwrap() {
            n += 1;
            let mut pod = pod.clone();
            pod["metadata"]["name"] = json!(format!("{role}-{n}"));
            pod["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("generateName");
            let pod: Pod = serde_json::from_value(pod).unwrap();
            if let Err(e) = created.create(&PostParams::default(), &pod).await {
                panic!("the {role} pod of profile {profile} is refused: {e}");
            }
        }
    }
    assert!(n >= 6, "only {n} pods checked");
}
