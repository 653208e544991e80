//! What jupyterhub-ssh builds: snapshots of its objects and settings, and the rules a snapshot
//! does not show at a glance (sftp serves the hub's home directories, the routes reach the
//! Services, the Pod Security each pod needs, the host keys are generated, not rendered).

use serde_json::{Value as Json, json};

use super::*;
use crate::config::ProviderKind;
use crate::kubernetes::components::{assemble, storage, test_config};
use crate::provider::ClusterFacts;

fn all(config: &crate::Config) -> Vec<(&'static str, Vec<Json>)> {
    let facts = ClusterFacts::from_config(config);
    assemble(config, &facts)
        .unwrap()
        .into_iter()
        .map(|a| (a.name, a.built.manifests))
        .collect()
}

fn objects(config: &crate::Config) -> Vec<Json> {
    all(config)
        .into_iter()
        .find(|(n, _)| *n == NAME)
        .expect("jupyterhub-ssh is enabled")
        .1
}

fn find<'a>(objects: &'a [Json], kind: &str, name: &str) -> &'a Json {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn pod(deployment: &Json) -> &Json {
    &deployment["spec"]["template"]["spec"]
}

#[test]
fn manifests_per_provider() {
    for provider in [ProviderKind::Aws, ProviderKind::Gcp, ProviderKind::Do] {
        let name = format!("{provider:?}").to_lowercase();
        insta::assert_json_snapshot!(format!("manifests_{name}"), objects(&test_config(provider)));
    }
}

#[test]
fn the_ssh_settings_name_the_hub_inside_the_cluster_and_the_mounted_host_key() {
    let config = test_config(ProviderKind::Aws);
    let objects = objects(&config);
    let text = find(&objects, "ConfigMap", CONFIG_MAP)["data"][VALUES_FILE]
        .as_str()
        .unwrap()
        .to_string();
    insta::assert_snapshot!("values_yaml", text);
    let values: Json = serde_json::from_str(&text).unwrap();
    assert_eq!(values["hubUrl"], "http://proxy-public.dev.svc:80");
    // The key path is where the Secret is mounted, under the chart's key name.
    let ssh = find(&objects, "Deployment", SSH);
    let mounts = &pod(ssh)["containers"][0]["volumeMounts"];
    let secrets = mounts
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "secrets")
        .unwrap();
    assert_eq!(
        values["ssh"]["config"]["JupyterHubSSH"]["host_key_path"],
        json!(format!(
            "{}/{HOST_KEY}",
            secrets["mountPath"].as_str().unwrap()
        ))
    );
    assert_eq!(
        pod(ssh)["volumes"][1]["secret"]["secretName"],
        HOST_KEY_SECRET
    );
    // The settings file is where the image's config file reads it.
    let config_mount = mounts
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "config")
        .unwrap();
    assert_eq!(
        config_mount["mountPath"], "/etc/jupyterhub-ssh/config",
        "helm-chart/images/jupyterhub-ssh/jupyterhub_ssh_config.py reads values.yaml there"
    );
    assert!(
        ssh["spec"]["template"]["metadata"]["annotations"][super::super::CONFIG_HASH_ANNOTATION]
            .is_string()
    );
}

#[test]
fn sftp_serves_the_home_directory_a_users_server_mounts() {
    let config = test_config(ProviderKind::Do);
    let everything = all(&config);
    let hub = everything
        .iter()
        .find(|(n, _)| *n == jupyterhub::NAME)
        .unwrap();
    let hub_values: Json = serde_json::from_str(
        find(&hub.1, "ConfigMap", jupyterhub::CONFIG_MAP)["data"]["values.json"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let home = hub_values["spawner"]["volume_mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == "/home/jovyan")
        .unwrap();
    // The server's home: `home/<escaped name>` of the shared claim; sftp's token check serves
    // `/mnt/home/<escaped name>` (escapism, the same as KubeSpawner's `escaped_username`).
    assert_eq!(home["subPath"], "home/{escaped_username}");
    let shared = hub_values["spawner"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == home["name"])
        .unwrap();
    assert_eq!(shared["persistentVolumeClaim"]["claimName"], storage::CLAIM);
    let objects = objects(&config);
    let sftp = find(&objects, "Deployment", sftp::SFTP);
    let mount = &pod(sftp)["containers"][0]["volumeMounts"][0];
    assert_eq!(
        (mount["mountPath"].as_str(), mount["subPath"].as_str()),
        (Some(sftp::HOMES_DIR), Some(sftp::HOMES_SUB_PATH))
    );
    assert_eq!(
        pod(sftp)["volumes"][0]["persistentVolumeClaim"]["claimName"],
        storage::CLAIM
    );
    // Its claim is the same file system as the platform's: the same NFS export, options.
    let storage_objects = &everything
        .iter()
        .find(|(n, _)| *n == storage::NAME)
        .unwrap()
        .1;
    let platform_pv = find(storage_objects, "PersistentVolume", "dev-shared");
    let sftp_pv = find(&objects, "PersistentVolume", "dev-privileged-shared");
    assert_eq!(platform_pv["spec"]["nfs"], sftp_pv["spec"]["nfs"]);
    assert_eq!(
        platform_pv["spec"]["mountOptions"],
        sftp_pv["spec"]["mountOptions"]
    );
    assert_eq!(
        platform_pv["metadata"]["annotations"], sftp_pv["metadata"]["annotations"],
        "the in-cluster NFS server's address is derived the same way"
    );
    // The token check appends `/hub/api/user` to the file's text as it is: no newline.
    let hub_url = find(&objects, "ConfigMap", sftp::CONFIG_MAP)["data"][sftp::HUB_URL_FILE]
        .as_str()
        .unwrap();
    assert_eq!(hub_url, "http://proxy-public.dev.svc:80");
    let claim = find(&objects, "PersistentVolumeClaim", storage::CLAIM);
    assert_eq!(claim["metadata"]["namespace"], "dev-privileged");
    assert_eq!(claim["spec"]["volumeName"], "dev-privileged-shared");
}

#[test]
fn each_port_of_the_load_balancer_reaches_its_server() {
    let config = test_config(ProviderKind::Aws);
    let objects = objects(&config);
    let routes: Vec<&Json> = objects
        .iter()
        .filter(|o| o["kind"] == "IngressRouteTCP")
        .collect();
    assert_eq!(routes.len(), 2);
    for (entry, service_name, container_port) in [
        (SSH_ENTRY_POINT, SSH, SSH_PORT),
        (SFTP_ENTRY_POINT, sftp::SFTP, sftp::CONTAINER_PORT),
    ] {
        let route = routes
            .iter()
            .find(|r| r["spec"]["entryPoints"] == json!([entry.name]))
            .unwrap_or_else(|| panic!("no route on {}", entry.name));
        assert_eq!(route["spec"]["routes"][0]["match"], "HostSNI(`*`)");
        let target = &route["spec"]["routes"][0]["services"][0];
        assert_eq!(target["name"], service_name);
        let service = find(&objects, "Service", service_name);
        // Traefik resolves a route's Service in the route's namespace.
        assert_eq!(
            service["metadata"]["namespace"],
            route["metadata"]["namespace"]
        );
        assert_eq!(service["spec"]["ports"][0]["port"], target["port"]);
        let deployment = find(&objects, "Deployment", service_name);
        assert_eq!(
            deployment["metadata"]["namespace"],
            service["metadata"]["namespace"]
        );
        assert_eq!(
            service["spec"]["selector"],
            deployment["spec"]["template"]["metadata"]["labels"]
                .as_object()
                .map(|l| json!({"app.kubernetes.io/name": l["app.kubernetes.io/name"]}))
                .unwrap()
        );
        let port = &pod(deployment)["containers"][0]["ports"][0];
        assert_eq!(port["containerPort"], container_port);
        assert_eq!(port["name"], service["spec"]["ports"][0]["targetPort"]);
    }
    assert_eq!(SSH_ENTRY_POINT.port, 8022);
    assert_eq!(SFTP_ENTRY_POINT.port, 8023);
    // Traefik reads routes in the namespace of the sftp route.
    let ingress = all(&config)
        .into_iter()
        .find(|(n, _)| *n == "ingress")
        .unwrap()
        .1;
    let traefik = find(&ingress, "Deployment", ingress::NAME);
    let args = pod(traefik)["containers"][0]["args"].to_string();
    assert!(
        args.contains("--providers.kubernetescrd.namespaces=dev,dev-privileged"),
        "{args}"
    );
}

#[test]
fn ssh_is_restricted_and_sftp_asks_for_less_than_privileged() {
    let config = test_config(ProviderKind::Gcp);
    let objects = objects(&config);
    let ssh = find(&objects, "Deployment", SSH);
    assert_eq!(ssh["metadata"]["namespace"], "dev");
    assert_eq!(pod(ssh)["securityContext"]["runAsNonRoot"], true);
    let c = &pod(ssh)["containers"][0]["securityContext"];
    assert_eq!(c["allowPrivilegeEscalation"], false);
    assert_eq!(c["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(pod(ssh)["automountServiceAccountToken"], false);

    let sftp = find(&objects, "Deployment", sftp::SFTP);
    assert_eq!(sftp["metadata"]["namespace"], "dev-privileged");
    let c = &pod(sftp)["containers"][0]["securityContext"];
    assert!(c.get("privileged").is_none(), "{c}");
    assert_eq!(
        c["capabilities"]["add"],
        json!(["SYS_ADMIN", "AUDIT_CONTROL"])
    );
    assert_eq!(pod(sftp)["automountServiceAccountToken"], false);
    for field in ["hostNetwork", "hostPID", "hostIPC"] {
        assert!(pod(sftp).get(field).is_none(), "{field}");
    }
    // The host key only root reads; sshd refuses a key others can read.
    let sources = &pod(sftp)["volumes"][1]["projected"]["sources"];
    assert_eq!(sources[0]["secret"]["items"][0]["mode"], 0o400);
    // qhub's token check over the image's, executable, read-only.
    let check = &pod(sftp)["containers"][0]["volumeMounts"][2];
    assert_eq!(check["mountPath"], sftp::TOKEN_CHECK_PATH);
    assert_eq!(check["readOnly"], true);
    assert_eq!(
        pod(sftp)["volumes"][2]["configMap"]["items"][0]["mode"],
        0o555
    );
    // The privileged namespace exists because of it.
    let namespaces: Vec<Json> = all(&config)
        .into_iter()
        .flat_map(|(_, o)| o)
        .filter(|o| o["kind"] == "Namespace")
        .map(|o| o["metadata"]["name"].clone())
        .collect();
    assert!(
        namespaces.contains(&json!("dev-privileged")),
        "{namespaces:?}"
    );
}

#[test]
fn the_host_keys_are_generated_at_apply_and_never_rendered() {
    let objects = objects(&test_config(ProviderKind::Aws));
    for (namespace, name) in [
        ("dev", HOST_KEY_SECRET),
        ("dev-privileged", sftp::HOST_KEY_SECRET),
    ] {
        let secret = find(&objects, "Secret", name);
        assert_eq!(secret["metadata"]["namespace"], namespace);
        assert!(secret.get("data").is_none() && secret.get("stringData").is_none());
        let recipe = recipes::recipe(secret).unwrap();
        assert_eq!(
            recipe,
            Some(recipes::Recipe::SshHostKey {
                key: HOST_KEY.into()
            })
        );
    }
}

#[test]
fn deployed_with_jupyterhub() {
    let config = test_config(ProviderKind::Aws);
    let names: Vec<&str> = all(&config).into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&jupyterhub::NAME) && names.contains(&NAME));
    let facts = ClusterFacts::from_config(&config);
    let ctx = Context {
        config: &config,
        facts: &facts,
    };
    assert_eq!(
        JupyterHubSsh.enabled(&ctx),
        jupyterhub::JupyterHub.enabled(&ctx)
    );
}
