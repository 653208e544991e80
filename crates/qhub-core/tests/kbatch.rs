//! kbatch, checked by the real software and on the sandbox:
//! - the real kbatch-proxy 0.4.2 (PyPI, installed by scripts/test in `.venv-kbatch`) starts
//!   with the settings qhub renders for it (its pydantic `Settings` from the container's
//!   environment, the job template from the mounted ConfigMap) and serves its API under
//!   `/services/kbatch`, where the hub's proxy routes it, checking a user's token with the
//!   hub (`tests/kbatch/check_settings.py`);
//! - on the sandbox with the Keycloak emulator, kbatch deploys with the hub's service token,
//!   a re-deploy is a no-op, and turning it off prunes exactly its objects (the hub's config
//!   changes, nothing else of the hub's is deleted).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use qhub_core::Config;
use qhub_core::config::components::Toggle;
use qhub_core::config::init::{InitOptions, render};
use qhub_core::config::provider::ProviderKind;
use qhub_core::kubernetes::components::{self, jupyterhub, kbatch};
use qhub_core::provider::{ClusterFacts, Ownership};
use qhub_sandbox::SandboxProvider;
use qhub_sandbox::faults::FaultSpec;
use serde_json::{Value as Json, json};

mod support;
use support::{assert_redeploy_is_a_noop, deleted, deploy, engine, find};

/// kbatch-proxy's python: `QHUB_KBATCH_PYTHON`, else the workspace's `.venv-kbatch`.
fn python() -> PathBuf {
    support::venv_python(
        "QHUB_KBATCH_PYTHON",
        ".venv-kbatch",
        "kbatch-proxy",
        "python3 -m venv .venv-kbatch && .venv-kbatch/bin/pip install kbatch-proxy==0.4.2 fastapi==0.103.1 'pydantic[dotenv]==1.10.12' jupyterhub==4.0.2 kubernetes==27.2.0 httpx==0.24.1 rich==13.5.2 escapism==1.0.1",
    )
}

fn config(provider: ProviderKind) -> Config {
    let mut opts = InitOptions::new(provider, "demo", "demo.example.com", "not-a-real-password");
    opts.gcp_project = Some("demo-project".into());
    let config = render(&opts).unwrap();
    assert!(
        kbatch::enabled(&config),
        "qhub init writes kbatch on, as QHub 0.4.5 did"
    );
    config
}

#[test]
fn the_real_kbatch_proxy_starts_with_the_rendered_settings_and_serves_under_the_prefix() {
    let python = python();
    for provider in [ProviderKind::Aws, ProviderKind::Gcp, ProviderKind::Do] {
        let config = config(provider);
        let facts = ClusterFacts::from_config(&config);
        let objects = components::manifests(&config, &facts).unwrap();
        let deployment = find(&objects, "Deployment", kbatch::SERVER).expect("kbatch-proxy");
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let token = "token-of-the-kbatch-service";
        let mut env = serde_json::Map::new();
        for e in container["env"].as_array().unwrap() {
            let value = match (&e["value"], &e["valueFrom"]["secretKeyRef"]) {
                (Json::String(v), _) => v.clone(),
                (_, r) if r["name"] == kbatch::HUB_TOKEN_SECRET => token.to_string(),
                _ => panic!("an environment variable of no known source: {e}"),
            };
            env.insert(e["name"].as_str().unwrap().to_string(), json!(value));
        }
        // The files its volumes mount: the job template, from its ConfigMap.
        let mut files = serde_json::Map::new();
        let volumes = deployment["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap();
        for m in container["volumeMounts"].as_array().unwrap() {
            let volume = volumes.iter().find(|v| v["name"] == m["name"]).unwrap();
            let map = volume["configMap"]["name"].as_str().expect("a ConfigMap");
            let cm = find(&objects, "ConfigMap", map).expect("the mounted ConfigMap");
            for (file, content) in cm["data"].as_object().unwrap() {
                files.insert(
                    format!("{}/{file}", m["mountPath"].as_str().unwrap()),
                    content.clone(),
                );
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("input.json");
        std::fs::write(
            &input,
            json!({"env": env, "files": files, "hub_token": "a-users-token"}).to_string(),
        )
        .unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kbatch/check_settings.py");
        let out = Command::new(&python)
            .arg(&script)
            .arg(&input)
            .output()
            .expect("python runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "check_settings.py failed:\n{stderr}");
        let report: Json = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}\n{stderr}", String::from_utf8_lossy(&out.stdout)));

        // kbatch-proxy's own Settings took what qhub rendered.
        let settings = &report["settings"];
        assert_eq!(settings["kbatch_prefix"], kbatch::PREFIX, "{provider:?}");
        assert_eq!(settings["jupyterhub_service_prefix"], "/services/kbatch/");
        assert_eq!(settings["jupyterhub_api_token"], token);
        assert_eq!(settings["kbatch_create_user_namespace"], true);
        assert_eq!(
            settings["kbatch_job_extra_env"]["DASK_GATEWAY__ADDRESS"],
            "https://demo.example.com/gateway"
        );
        assert_eq!(
            report["hub_api_url_rendered"],
            "http://hub.dev.svc:8081/hub/api"
        );
        // The job template, parsed by kbatch-proxy as a V1Job: users' jobs on the user group.
        let selector = facts.node_selector.for_group("user").unwrap();
        assert_eq!(
            report["job_template"]["spec"]["template"]["spec"]["node_selector"],
            json!(selector),
            "{provider:?}: {}",
            report["job_template"]
        );
        // The chart's probe path, and the listed health check's path and answer.
        assert_eq!(
            report["probe"],
            json!({"status": 200, "body": {"message": "kbatch"}})
        );
        assert_eq!(
            report["listing"],
            json!({"status": 200, "body": {"message": "kbatch"}})
        );
        // A user's token is checked with the hub; a wrong one or none is refused; the API is
        // under the prefix only (the hub's proxy does not cut it).
        assert_eq!(
            report["authorized"],
            json!({"status": 200, "body": {"name": "ada", "groups": ["developer"]}}),
            "{stderr}"
        );
        assert_eq!(report["refused"]["status"], 401);
        assert_eq!(report["no_token"]["status"], 401);
        assert_eq!(report["unprefixed"]["status"], 404);
        assert!(
            report["hub_requests"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p == "/hub/api/user"),
            "{}",
            report["hub_requests"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kbatch_deploys_with_the_hubs_token_and_off_prunes_exactly_its_objects() {
    let dir = tempfile::tempdir().unwrap();
    let provider = SandboxProvider::new(dir.path(), 0.0, FaultSpec::default());
    let engine = engine(&provider);
    let mut config = config(ProviderKind::Sandbox);
    let ns = config.namespace.clone();
    deploy(&engine, &config).await;
    let kube = provider.kube_api(&Ownership::of(&config)).unwrap();
    let keycloak = provider.keycloak().await.expect("Keycloak runs");
    let on = kube.objects();
    for (kind, name) in [
        ("Deployment", kbatch::SERVER),
        ("Service", kbatch::SERVER),
        ("ServiceAccount", kbatch::SERVER),
        ("ClusterRole", &format!("{ns}-{}", kbatch::NAME)),
        ("ClusterRoleBinding", &format!("{ns}-{}", kbatch::NAME)),
        ("ConfigMap", kbatch::JOB_TEMPLATE_CONFIGMAP),
        ("Secret", kbatch::HUB_TOKEN_SECRET),
    ] {
        assert!(find(&on, kind, name).is_some(), "no {kind} {name}");
    }
    // The token the hub registers the service with is the one kbatch-proxy presents: both
    // read the generated Secret.
    let token = kube.secret_value(&ns, kbatch::HUB_TOKEN_SECRET, kbatch::HUB_TOKEN_KEY);
    assert!(token.as_deref().is_some_and(|t| t.len() >= 16), "{token:?}");
    let hub = find(&on, "Deployment", jupyterhub::HUB_SERVICE).unwrap();
    assert!(
        hub["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "QHUB_KBATCH_API_TOKEN"
                && e["valueFrom"]["secretKeyRef"]["name"] == kbatch::HUB_TOKEN_SECRET)
    );
    let hub_config = find(&on, "ConfigMap", jupyterhub::CONFIG_MAP).unwrap();
    assert!(
        hub_config["data"]["values.json"]
            .as_str()
            .unwrap()
            .contains("http://kbatch-proxy.dev.svc:80")
    );
    let kbatch_objects: BTreeSet<String> = on
        .iter()
        .filter(|o| o["metadata"]["labels"]["app.kubernetes.io/component"] == kbatch::NAME)
        .filter(|o| !matches!(o["kind"].as_str(), Some("Pod" | "EndpointSlice")))
        .map(key)
        .collect();
    assert_eq!(
        kbatch_objects,
        [
            "ClusterRole /dev-kbatch",
            "ClusterRoleBinding /dev-kbatch",
            "ConfigMap dev/kbatch-job-template",
            "Deployment dev/kbatch-proxy",
            "Secret dev/kbatch-hub-token",
            "Service dev/kbatch-proxy",
            "ServiceAccount dev/kbatch-proxy",
        ]
        .into_iter()
        .map(String::from)
        .collect::<BTreeSet<String>>()
    );

    assert_redeploy_is_a_noop(&engine, &config, &kube, &keycloak).await;

    // Off: exactly kbatch's objects are gone; the hub's config drops the service.
    config.kbatch = Some(Toggle {
        enabled: false,
        overrides: None,
    });
    let plan = deploy(&engine, &config).await;
    let off = kube.objects();
    // What qhub applies, not what the simulated cluster's controllers make of it (pods,
    // endpoint slices: the hub's pod is replaced as its config changes).
    let applied = |o: &&Json| !matches!(o["kind"].as_str(), Some("Pod" | "EndpointSlice"));
    let before: BTreeSet<String> = on.iter().filter(applied).map(key).collect();
    let after: BTreeSet<String> = off.iter().filter(applied).map(key).collect();
    let gone: BTreeSet<String> = before.difference(&after).cloned().collect();
    assert_eq!(gone, kbatch_objects, "deleted: {:?}", deleted(&plan));
    assert!(after.difference(&before).next().is_none(), "nothing new");
    let hub_config = find(&off, "ConfigMap", jupyterhub::CONFIG_MAP).unwrap();
    assert!(
        !hub_config["data"]["values.json"]
            .as_str()
            .unwrap()
            .contains("kbatch-proxy")
    );
    assert_redeploy_is_a_noop(&engine, &config, &kube, &keycloak).await;
}

fn key(o: &Json) -> String {
    format!(
        "{} {}/{}",
        o["kind"].as_str().unwrap_or_default(),
        o["metadata"]["namespace"].as_str().unwrap_or_default(),
        o["metadata"]["name"].as_str().unwrap_or_default()
    )
}
