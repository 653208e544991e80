//! The full part-2 platform on the sandbox, through the engine, with a GPU node group and a
//! GPU Dask worker profile: every component is present and JupyterHub answers at `/`; the
//! DaskCluster CRD is established and the gateway's hub token generated once; a re-deploy
//! makes no Kubernetes or Keycloak write; a JupyterLab profile change is the hub's
//! ConfigMap and the hub's roll and nothing else; dropping the worker profiles prunes Dask
//! Gateway and nothing else; jupyterhub-ssh's ssh and sftp servers are deployed, their host
//! keys generated once and kept. Prints the numbers issue #21 asks for (objects, clients, wall
//! times): `cargo nextest run --workspace -E 'binary(full_platform)' --no-capture`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use qhub_core::Config;
use qhub_core::engine::{Engine, EngineOptions, StageFilter};
use qhub_core::kubernetes::components::{
    conda_store, dask_gateway, ingress, jupyterhub, jupyterhub_ssh, keycloak,
};
use qhub_core::plan::Action;
use qhub_core::provider::{Ownership, Provider};
use qhub_sandbox::SandboxProvider;
use qhub_sandbox::faults::FaultSpec;
use serde_json::{Value as Json, json};

mod support;
use support::{deploy, find, ids, sandbox_config};

/// The sandbox's default config with a GPU group, a GPU JupyterLab profile and a GPU Dask
/// worker profile.
fn config() -> Config {
    let mut config = sandbox_config();
    let groups = &mut config.sandbox.as_mut().unwrap().node_groups;
    let mut gpu = groups["worker"].clone();
    gpu.gpu = true;
    groups.insert("gpu".into(), gpu);
    config.profiles.dask_worker.insert(
        "GPU Worker".into(),
        serde_json::from_value(json!({
            "worker_cores_limit": 4, "worker_cores": 3,
            "worker_memory_limit": "16G", "worker_memory": "10G",
            "worker_extra_container_config": {"resources": {"limits": {"nvidia.com/gpu": 1}}},
        }))
        .unwrap(),
    );
    config.profiles.jupyterlab.push(
        serde_json::from_value(json!({
            "display_name": "GPU Instance",
            "description": "4 CPU / 16GB RAM / 1 GPU",
            "access": "yaml",
            "groups": ["gpu-users"],
            "kubespawner_override": {
                "cpu_limit": 4, "cpu_guarantee": 3, "mem_limit": "16G", "mem_guarantee": "10G",
                "extra_resource_limits": {"nvidia.com/gpu": 1},
            },
        }))
        .unwrap(),
    );
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_platform_deploys_converges_rolls_only_the_hub_and_prunes_one_component() {
    let dir = tempfile::tempdir().unwrap();
    let provider = SandboxProvider::new(dir.path(), 0.0, FaultSpec::default());
    let engine = Engine::new(
        Arc::new(provider.clone()) as Arc<dyn Provider>,
        EngineOptions {
            min_deadline: Duration::from_secs(60),
            deadline_factor: 0.01,
            poll_interval: Duration::from_millis(20),
            ..EngineOptions::default()
        },
    );
    let mut config = config();
    let ns = config.namespace.clone();

    let started = Instant::now();
    let first = deploy(&engine, &config).await;
    let first_secs = started.elapsed().as_secs_f64();
    let kube = provider.kube_api(&Ownership::of(&config)).unwrap();
    let keycloak_api = provider.keycloak().await.expect("Keycloak runs");
    let created = ids(&first, Action::Create);

    // Every component is present: its workloads, and its login client where it has one.
    for id in [
        format!("Deployment.apps/{ns}/{}", ingress::NAME),
        format!("Deployment.apps/{ns}/{}", keycloak::NAME),
        format!("Deployment.apps/{ns}/{}", jupyterhub::HUB_SERVICE),
        format!("Deployment.apps/{ns}/{}", jupyterhub::PROXY),
        format!("Deployment.apps/{ns}/{}", dask_gateway::API),
        format!("Deployment.apps/{ns}/{}", dask_gateway::CONTROLLER),
        format!("Deployment.apps/{ns}/{}", conda_store::SERVER),
        format!("Deployment.apps/{ns}/{}", conda_store::WORKER),
        format!("Deployment.apps/{ns}/{}", jupyterhub_ssh::SSH),
        format!("IngressRouteTCP.traefik.io/{ns}/{}", jupyterhub_ssh::SSH),
        format!(
            "Deployment.apps/{ns}-privileged/{}",
            jupyterhub_ssh::sftp::SFTP
        ),
        format!(
            "IngressRouteTCP.traefik.io/{ns}-privileged/{}",
            jupyterhub_ssh::sftp::SFTP
        ),
        format!("PersistentVolumeClaim/{ns}-privileged/shared"),
        format!(
            "CustomResourceDefinition.apiextensions.k8s.io/{}.{}",
            dask_gateway::crd::PLURAL,
            dask_gateway::crd::GROUP
        ),
    ] {
        assert!(created.contains(&id), "{id} not deployed: {created:#?}");
    }
    let clients: BTreeSet<String> = created
        .iter()
        .filter_map(|id| id.strip_prefix("keycloak_client/"))
        .map(str::to_string)
        .collect();
    for id in [jupyterhub::config::CLIENT_ID, conda_store::CLIENT_ID] {
        assert!(clients.contains(id), "no client {id}: {clients:?}");
        assert!(
            keycloak_api.client("qhub", id).is_some(),
            "{id} not in Keycloak"
        );
    }

    // JupyterHub answers at `/`, below every other prefix.
    let objects = kube.objects();
    let hub_route = find(&objects, "IngressRoute", jupyterhub::NAME).expect("the hub's route");
    let rule = hub_route["spec"]["routes"][0]["match"].as_str().unwrap();
    assert!(rule.contains("PathPrefix(`/`)"), "{rule}");
    let hub_priority = hub_route["spec"]["routes"][0]["priority"].as_i64().unwrap();
    for route in objects.iter().filter(|o| o["kind"] == "IngressRoute") {
        let name = route["metadata"]["name"].as_str().unwrap();
        if name != jupyterhub::NAME {
            let priority = route["spec"]["routes"][0]["priority"].as_i64().unwrap();
            assert!(
                priority > hub_priority,
                "{name} (priority {priority}) does not outrank JupyterHub's `/` ({hub_priority})"
            );
        }
    }

    // The GPU profiles reach their configuration files with the GPU group's placement.
    let hub_values: Json = serde_json::from_str(
        find(&objects, "ConfigMap", jupyterhub::CONFIG_MAP).unwrap()["data"]["values.json"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let gpu_lab = hub_values["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["display_name"] == "GPU Instance")
        .expect("the GPU JupyterLab profile");
    assert_eq!(
        gpu_lab["kubespawner_override"]["node_selector"]["qhub.dev/node-group"], "gpu",
        "{gpu_lab:#}"
    );
    let gateway: Json = serde_json::from_str(
        find(&objects, "ConfigMap", dask_gateway::config::CONFIG_MAP).unwrap()["data"]
            [dask_gateway::config::SETTINGS_FILE]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let gpu_worker = gateway["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "GPU Worker")
        .expect("the GPU worker profile");
    assert_eq!(
        gpu_worker["config"]["worker_extra_pod_config"]["nodeSelector"]["qhub.dev/node-group"],
        "gpu"
    );

    // The DaskCluster CRD is established (the gateway's objects waited for it), with the
    // status subresource the controller writes; the gateway's hub token is generated.
    let crd = find(
        &objects,
        "CustomResourceDefinition",
        &format!("{}.{}", dask_gateway::crd::PLURAL, dask_gateway::crd::GROUP),
    )
    .expect("the DaskCluster CRD");
    assert!(
        crd["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Established" && c["status"] == "True"),
        "{crd:#}"
    );
    assert_eq!(
        crd["spec"]["versions"][0]["subresources"],
        json!({"status": {}})
    );
    let token = kube
        .secret_value(
            &ns,
            dask_gateway::HUB_TOKEN_SECRET,
            dask_gateway::HUB_TOKEN_KEY,
        )
        .expect("the hub token is generated");
    assert!(token.len() >= 32, "a short token: {} chars", token.len());
    // jupyterhub-ssh's host keys (ssh's in the platform namespace, sftp's beside the sftp
    // server), generated at apply.
    let host_keys = || {
        [
            (ns.clone(), jupyterhub_ssh::HOST_KEY_SECRET),
            (
                format!("{ns}-privileged"),
                jupyterhub_ssh::sftp::HOST_KEY_SECRET,
            ),
        ]
        .map(|(namespace, name)| kube.secret_value(&namespace, name, jupyterhub_ssh::HOST_KEY))
    };
    let keys = host_keys();
    for key in &keys {
        let key = key.as_deref().expect("a host key is generated");
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
    }
    assert_ne!(keys[0], keys[1]);

    // A re-deploy plans nothing and writes nothing anywhere.
    let (kube_before, kc_before) = (kube.mutations(), keycloak_api.counts().mutating);
    let started = Instant::now();
    let again = deploy(&engine, &config).await;
    let noop_secs = started.elapsed().as_secs_f64();
    assert!(again.is_empty(), "{}", again.render_text());
    assert_eq!(
        kube.mutations(),
        kube_before,
        "Kubernetes writes on a no-op"
    );
    assert_eq!(
        keycloak_api.counts().mutating,
        kc_before,
        "Keycloak writes on a no-op"
    );

    assert_eq!(
        kube.secret_value(
            &ns,
            dask_gateway::HUB_TOKEN_SECRET,
            dask_gateway::HUB_TOKEN_KEY
        ),
        Some(token),
        "the hub token changed on a no-op"
    );
    assert_eq!(host_keys(), keys, "a host key changed on a no-op");

    // A JupyterLab profile change: the hub's ConfigMap, and the hub's Deployment rolled by
    // its configuration hash; no other object, no Keycloak change.
    config.profiles.jupyterlab[0].description = "a changed description".into();
    let plan = deploy(&engine, &config).await;
    let changed: BTreeSet<String> = plan.changes.iter().map(|c| c.id.to_string()).collect();
    assert_eq!(
        changed,
        BTreeSet::from([
            format!("ConfigMap/{ns}/{}", jupyterhub::CONFIG_MAP),
            format!("Deployment.apps/{ns}/{}", jupyterhub::HUB_SERVICE),
        ]),
        "{}",
        plan.render_text()
    );
    let hub = plan
        .changes
        .iter()
        .find(|c| c.id.kind == "Deployment.apps")
        .unwrap();
    assert_eq!(hub.action, Action::Update);
    assert!(
        hub.diff
            .iter()
            .any(|d| d.field.contains("template") && d.field.contains("annotations")),
        "the hub is not rolled by its pod template: {}",
        plan.render_text()
    );

    // A user's cluster, as the gateway's API server writes it.
    let resource = kube::discovery::ApiResource {
        group: dask_gateway::crd::GROUP.into(),
        version: dask_gateway::crd::VERSION.into(),
        api_version: dask_gateway::crd::API_VERSION.into(),
        kind: dask_gateway::crd::KIND.into(),
        plural: dask_gateway::crd::PLURAL.into(),
    };
    let clusters: kube::Api<kube::api::DynamicObject> =
        kube::Api::namespaced_with(kube.client(), &ns, &resource);
    let user_cluster: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": dask_gateway::crd::API_VERSION,
        "kind": dask_gateway::crd::KIND,
        "metadata": {"name": "abc123", "namespace": ns},
        "spec": {"scheduler": {}, "worker": {}, "replicas": 2},
    }))
    .unwrap();
    clusters
        .create(&kube::api::PostParams::default(), &user_cluster)
        .await
        .expect("a DaskCluster is created");
    // A deploy that keeps the gateway leaves users' clusters alone.
    assert!(
        engine
            .plan(&config, StageFilter::All)
            .await
            .unwrap()
            .is_empty()
    );

    // No worker profile: Dask Gateway is pruned with the users' clusters its controller
    // would have stopped; nothing else is touched.
    let objects_before = kube.objects().len();
    config.profiles.dask_worker.clear();
    let plan = deploy(&engine, &config).await;
    let deleted = ids(&plan, Action::Delete);
    assert_eq!(
        plan.changes.len(),
        deleted.len(),
        "pruning the gateway changed more than it deleted: {}",
        plan.render_text()
    );
    for id in [
        format!("Deployment.apps/{ns}/{}", dask_gateway::API),
        format!("Deployment.apps/{ns}/{}", dask_gateway::CONTROLLER),
        format!("Secret/{ns}/{}", dask_gateway::HUB_TOKEN_SECRET),
        format!(
            "{}.{}/{ns}/abc123",
            dask_gateway::crd::KIND,
            dask_gateway::crd::GROUP
        ),
    ] {
        assert!(deleted.contains(&id), "{id} not pruned: {deleted:#?}");
    }
    assert!(
        clusters.get_opt("abc123").await.unwrap().is_none(),
        "the user's DaskCluster outlived the gateway"
    );
    // A deploy never prunes a CRD (crd_policy): the plan says it keeps the DaskCluster CRD.
    let crd = format!(
        "CustomResourceDefinition.apiextensions.k8s.io/{}.{}",
        dask_gateway::crd::PLURAL,
        dask_gateway::crd::GROUP
    );
    assert!(
        plan.kept.iter().any(|k| k.id.to_string() == crd),
        "{crd} not named as kept: {:?}",
        plan.kept
    );
    assert!(
        deleted
            .iter()
            .all(|id| id.contains("dask") || id.contains("gateway") || id.contains("Dask")),
        "pruned beyond Dask Gateway: {deleted:#?}"
    );
    let left: Vec<String> = kube
        .objects()
        .iter()
        .filter(|o| o["kind"] != "CustomResourceDefinition")
        .filter(|o| {
            o["kind"] == dask_gateway::crd::KIND || {
                o["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.contains("dask-gateway"))
            }
        })
        .filter_map(|o| o["metadata"]["name"].as_str())
        .map(str::to_string)
        .collect();
    assert!(left.is_empty(), "left after the prune: {left:?}");

    println!(
        "full platform on the sandbox: {} changes in the first deploy ({} Kubernetes objects, \
         {} Keycloak clients: {clients:?}), {} objects in the cluster; first deploy \
         {first_secs:.2} s, no-op deploy {noop_secs:.2} s; pruning Dask Gateway deleted {}",
        first.changes.len(),
        first
            .changes
            .iter()
            .filter(|c| !c.id.kind.starts_with("keycloak_"))
            .count(),
        clients.len(),
        objects_before,
        deleted.len(),
    );
}
