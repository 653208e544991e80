//! The hub's rendered configuration, checked by the real software: the ConfigMap's files are
//! written to a directory and loaded by JupyterHub's own loader (`JupyterHub.load_config_file`)
//! with the packages the pinned hub image runs (jupyterhub 5.5.0, jupyterhub-kubespawner
//! 7.0.0, oauthenticator 17.4.0, jupyterhub-idle-culler 1.4.0; `versions::JUPYTERHUB_HUB`),
//! installed by scripts/test in `.venv-jupyterhub`. `tests/jupyterhub/check_config.py` builds
//! the authenticator and KubeSpawner (in its `_mock` mode) from that config and, for users in
//! different groups, evaluates the login (allowed, admin), the profiles offered, the profiles
//! refused, and the pod each offered profile makes; and JupyterHub starts its services from it
//! (`init_services`), kbatch with the URL its proxy routes `/services/kbatch/` to.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, PostParams};
use qhub_core::config::init::{InitOptions, render};
use qhub_core::config::provider::ProviderKind;
use qhub_core::kubernetes::components;
use qhub_core::provider::ClusterFacts;
use serde_json::{Value as Json, json};

/// The venv's python: `QHUB_JUPYTERHUB_PYTHON`, else the workspace's `.venv-jupyterhub`.
fn python() -> PathBuf {
    support::venv_python(
        "QHUB_JUPYTERHUB_PYTHON",
        ".venv-jupyterhub",
        "JupyterHub",
        "python3 -m venv .venv-jupyterhub && .venv-jupyterhub/bin/pip install jupyterhub==5.5.0 jupyterhub-kubespawner==7.0.0 oauthenticator==17.4.0 jupyterhub-idle-culler==1.4.0",
    )
}

/// QHub's default AWS config with a GPU group and profiles of every kind of access.
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
    let extra: qhub_core::config::profiles::Profiles = serde_json::from_value(json!({
        "jupyterlab": [
            {"display_name": "GPU Instance", "access": "yaml", "groups": ["developer"],
             "kubespawner_override": {"cpu_limit": 4, "cpu_guarantee": 3,
                "mem_limit": "16G", "mem_guarantee": "10G",
                "image": "quay.io/example/gpu-lab:1.0",
                "extra_resource_limits": {"nvidia.com/gpu": 1}}},
            {"display_name": "Named Instance", "access": "yaml", "users": ["nadia"],
             "kubespawner_override": {"cpu_limit": 1, "cpu_guarantee": 1,
                "mem_limit": "2G", "mem_guarantee": "1G"}},
            {"display_name": "Keycloak Instance", "access": "keycloak",
             "kubespawner_override": {"cpu_limit": 1, "cpu_guarantee": 1,
                "mem_limit": "2G", "mem_guarantee": "1G"}},
        ]
    }))
    .unwrap();
    config.profiles.jupyterlab.extend(extra.jupyterlab);
    config
}

/// A user named by e-mail address.
const MAIL_USER: &str = "ada@example.com";

fn user(name: &str, groups: &[&str], roles: &[&str], keycloak: &[&str]) -> Json {
    json!({"name": name, "groups": groups, "roles": roles, "keycloak_profiles": keycloak})
}

#[tokio::test]
async fn jupyterhub_loads_the_rendered_config_and_offers_each_user_their_profiles() {
    let python = python();
    let config = config();
    let facts = ClusterFacts::from_config(&config);
    let manifests = components::manifests(&config, &facts).unwrap();
    let map = manifests
        .iter()
        .find(|m| m["kind"] == "ConfigMap" && m["metadata"]["name"] == "hub-config")
        .expect("the hub's ConfigMap");
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in map["data"].as_object().unwrap() {
        std::fs::write(dir.path().join(name), content.as_str().unwrap()).unwrap();
    }
    // The hub's mount of the users' home directories, here a directory of the test's.
    let homes = dir.path().join("homes");
    std::fs::create_dir(&homes).unwrap();
    let values_file = dir.path().join("values.json");
    let mut values: Json =
        serde_json::from_str(&std::fs::read_to_string(&values_file).unwrap()).unwrap();
    assert_eq!(values["homes"]["root"], "/srv/homes");
    values["homes"]["root"] = json!(homes.to_str().unwrap());
    std::fs::write(&values_file, values.to_string()).unwrap();
    let cases = json!([
        user("ada", &["admin"], &["jupyterhub_admin"], &[]),
        user("dev", &["developer"], &["jupyterhub_developer"], &[]),
        user("ana", &["analyst"], &[], &["Keycloak Instance"]),
        user("nadia", &["analyst"], &[], &[]),
        user("rolf", &["developer"], &["jupyterhub_admin"], &[]),
        user("stranger", &[], &[], &["Keycloak Instance"]),
        // QHub's users were often named by e-mail address.
        user(MAIL_USER, &["analyst"], &[], &[]),
    ]);
    let cases_file = dir.path().join("cases.json");
    std::fs::write(&cases_file, cases.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/jupyterhub/check_config.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(dir.path())
        .arg(&cases_file)
        .output()
        .expect("python runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "check_config.py failed:\n{stderr}");
    let report: Json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{stderr}", String::from_utf8_lossy(&out.stdout)));

    // No key of the config is unknown to the class it configures.
    assert_eq!(report["warnings"], json!([]), "{stderr}");
    assert_eq!(report["spawner_class"], "kubespawner.KubeSpawner");
    assert_eq!(report["authenticator_class"], "generic-oauth");
    assert_eq!(
        report["services"],
        json!(["jupyterhub-idle-culler", "dask-gateway", "kbatch"])
    );
    // JupyterHub's own start-up of its services: kbatch, with the URL of kbatch-proxy's
    // Service, is what the hub's proxy routes /services/kbatch/ to.
    let kbatch = &report["registered_services"]["kbatch"];
    assert_eq!(
        kbatch,
        &json!({"prefix": "/services/kbatch/", "url": "http://kbatch-proxy.dev.svc:80",
            "proxy_spec": "/services/kbatch/", "has_token": true, "managed": false}),
        "{}",
        report["registered_services"]
    );
    assert_eq!(
        kbatch["url"],
        json!(qhub_core::kubernetes::components::kbatch::service_url(
            "dev"
        ))
    );
    // A service without a URL (Dask Gateway) gets no proxy route.
    assert_eq!(report["registered_services"]["dask-gateway"]["url"], "");
    assert_eq!(
        report["registered_services"]["dask-gateway"]["proxy_spec"],
        Json::Null
    );
    assert_eq!(
        report["registered_services"]["jupyterhub-idle-culler"]["managed"],
        true
    );
    assert_eq!(report["hub_connect_url"], "http://hub.dev.svc:8081");
    assert_eq!(report["proxy_api_url"], "http://proxy-api.dev.svc:8001");
    let auth = &report["authenticator"];
    let realm = "https://demo.example.com/auth/realms/qhub/protocol/openid-connect";
    assert_eq!(auth["authorize_url"], format!("{realm}/auth"));
    assert_eq!(auth["token_url"], format!("{realm}/token"));
    assert_eq!(auth["userdata_url"], format!("{realm}/userinfo"));
    assert_eq!(
        auth["oauth_callback_url"],
        "https://demo.example.com/hub/oauth_callback"
    );
    assert_eq!(auth["client_id"], "jupyterhub");
    assert_eq!(auth["client_secret_set"], true);
    assert_eq!(auth["manage_groups"], true);
    assert_eq!(auth["enable_auth_state"], true);
    assert_eq!(auth["admin_groups"], json!(["admin"]));
    // Every platform group Keycloak has, sorted.
    let mut groups: Vec<&str> = qhub_core::keycloak::desired::groups(&config)
        .into_iter()
        .map(|(g, _)| g)
        .collect();
    groups.sort_unstable();
    assert!(groups.contains(&"analyst"), "{groups:?}");
    assert_eq!(auth["allowed_groups"], json!(groups));

    let users = &report["users"];
    let everyone = ["Small Instance", "Medium Instance"];
    let all = [
        "Small Instance",
        "Medium Instance",
        "GPU Instance",
        "Named Instance",
        "Keycloak Instance",
    ];
    let expect = |name: &str, allowed: bool, admin: bool, extra: &[&str]| {
        let u = &users[name];
        assert_eq!(u["allowed"], allowed, "{name}: {u}");
        if !allowed {
            return;
        }
        assert_eq!(u["admin"], admin, "{name}");
        let offered: Vec<&str> = everyone.iter().chain(extra).copied().collect();
        assert_eq!(u["profiles"], json!(offered), "{name}");
        // Every other profile is refused when asked for by name.
        let refused: Vec<&str> = u["refused"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r[0].as_str().unwrap())
            .collect();
        let others: Vec<&str> = all
            .iter()
            .filter(|p| !offered.contains(p))
            .copied()
            .collect();
        assert_eq!(refused, others, "{name}: {u}");
    };
    expect("ada", true, true, &[]);
    expect("dev", true, false, &["GPU Instance"]);
    expect("ana", true, false, &["Keycloak Instance"]);
    expect("nadia", true, false, &["Named Instance"]);
    expect("rolf", true, true, &["GPU Instance"]);
    expect("stranger", false, false, &[]);

    // The hub's pod hook made each home directory a pod mounts, named as KubeSpawner expanded
    // the mount's `home/{escaped_username}` (every case had a pod built, the stranger's too;
    // `ada@example.com` is escaped as sftp serves it).
    assert_eq!(
        report["homes"],
        json!([
            "ada",
            "ada-40example-2ecom",
            "ana",
            "dev",
            "nadia",
            "rolf",
            "stranger"
        ]),
        "{stderr}"
    );
    let mounts = &users["ada"]["pods"]["Small Instance"]["spec"]["containers"][0]["volumeMounts"];
    assert!(
        mounts
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mountPath"] == "/home/jovyan" && m["subPath"] == "home/ada"),
        "{mounts}"
    );

    // The GPU profile's pod: the GPU group, its taint tolerated, the GPU asked for.
    let pod = &users["dev"]["pods"]["GPU Instance"];
    let spec = &pod["spec"];
    let gpu_selector = facts.node_selector.for_group("gpu").unwrap();
    assert_eq!(spec["nodeSelector"], json!(gpu_selector), "{spec}");
    let taint = facts.gpu.taint.clone().unwrap();
    assert!(
        spec["tolerations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["key"] == taint.key.as_str() && t["effect"] == taint.effect.as_str()),
        "{spec}"
    );
    let container = &spec["containers"][0];
    // A quantity, as a number or a string (the API server reads either).
    let quantity = |v: &Json| v.to_string().trim_matches('"').to_string();
    assert_eq!(
        quantity(&container["resources"]["limits"]["nvidia.com/gpu"]),
        "1"
    );
    assert_eq!(container["image"], "quay.io/example/gpu-lab:1.0");
    // Any other profile: the user group, no toleration, the default image, its sizes.
    let small = &users["dev"]["pods"]["Small Instance"]["spec"];
    assert_eq!(
        small["nodeSelector"],
        json!(facts.node_selector.for_group("user").unwrap())
    );
    assert!(
        !small["tolerations"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["key"] == taint.key.as_str()),
        "{small}"
    );
    let c = &small["containers"][0];
    assert_eq!(c["image"], json!(config.default_images.jupyterlab));
    assert_eq!(quantity(&c["resources"]["limits"]["cpu"]), "2.0");
    assert_eq!(quantity(&c["resources"]["requests"]["cpu"]), "1.5");
    // Home on the shared claim, per user; conda-store's environments read-only.
    let mounts = c["volumeMounts"].as_array().unwrap();
    let mount = |path: &str| {
        mounts
            .iter()
            .find(|m| m["mountPath"] == path)
            .unwrap_or_else(|| panic!("no mount at {path}: {mounts:?}"))
    };
    assert_eq!(mount("/home/jovyan")["subPath"], "home/dev");
    // A name with characters outside [a-z0-9]: escapism's escape, which is both QHub's home
    // directory names and what jupyterhub-ssh's sftp server serves
    // (`jupyterhub-sftp/jupyterhub-token-verify.py`: `escape(name, safe=set(ascii_lowercase
    // + digits), escape_char="-").lower()` under `/mnt/home`, the claim's `home`), computed
    // here by the same escapism the venv's KubeSpawner uses.
    let mail = &users[MAIL_USER]["pods"]["Small Instance"]["spec"]["containers"][0];
    let home = mail["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == "/home/jovyan")
        .unwrap();
    let sftp = Command::new(&python)
        .args([
            "-c",
            "import string, sys; from escapism import escape; \
             print(escape(sys.argv[1], safe=set(string.ascii_lowercase + string.digits), \
             escape_char='-').lower())",
            MAIL_USER,
        ])
        .output()
        .expect("python runs");
    assert!(sftp.status.success(), "{sftp:?}");
    let served = String::from_utf8(sftp.stdout).unwrap();
    assert_eq!(served.trim(), "ada-40example-2ecom");
    assert_eq!(
        home["subPath"],
        format!("home/{}", served.trim()),
        "sftp would serve another directory than the server's home"
    );
    assert_eq!(mount("/home/conda")["readOnly"], true);
    assert_eq!(mount("/home/conda")["subPath"], "conda-store");
    // Every pod KubeSpawner would create is admitted by the platform namespace's Pod Security
    // level (`restricted`), in the in-memory API.
    let api = qhub_sandbox::kube_api::KubeApi::new();
    let client = api.client();
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "dev",
        "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}))
    .unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let pods = Api::<Pod>::namespaced(client, "dev");
    let mut admitted = 0;
    for (name, u) in users.as_object().unwrap() {
        for (profile, manifest) in u["pods"].as_object().into_iter().flatten() {
            let mut pod: Pod = serde_json::from_value(manifest.clone()).unwrap();
            pod.metadata.name = Some(format!("user-{admitted}"));
            pods.create(&PostParams::default(), &pod)
                .await
                .unwrap_or_else(|e| panic!("{name}'s {profile} pod is refused: {e}"));
            admitted += 1;
        }
    }
    assert!(admitted >= 10, "{admitted} pods");
    let env: Vec<(String, Json)> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e["value"].clone()))
        .collect();
    assert!(
        env.contains(&(
            "DASK_GATEWAY__ADDRESS".into(),
            json!("https://demo.example.com/gateway")
        )),
        "{env:?}"
    );
    // kbatch's client finds kbatch-proxy through the server's environment.
    assert!(
        env.contains(&(
            "KBATCH_URL".into(),
            json!("http://kbatch-proxy.dev.svc/services/kbatch/")
        )),
        "{env:?}"
    );
}
