//! What kbatch renders: kbatch-proxy's objects, its settings, its job template, its RBAC, its
//! listing, and the hub's side of the service.

use serde_json::{Value as Json, json};

use super::*;
use crate::config::ProviderKind;
use crate::kubernetes::components::{self, jupyterhub};
use crate::provider::ClusterFacts;

fn config(provider: ProviderKind, enabled: bool) -> Config {
    let mut config = crate::kubernetes::components::test_config(provider);
    config.kbatch = Some(crate::config::Toggle {
        enabled,
        overrides: None,
    });
    config
}

fn objects_of(config: &Config, component: &str) -> Vec<Json> {
    let facts = ClusterFacts::from_config(config);
    components::build(config, &facts)
        .expect("builds")
        .into_iter()
        .filter(|(name, _)| *name == component)
        .flat_map(|(_, objects)| objects)
        .collect()
}

fn find<'a>(objects: &'a [Json], kind: &str, name: &str) -> &'a Json {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn env_of(deployment: &Json) -> Vec<Json> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn manifests_aws() {
    insta::assert_json_snapshot!(objects_of(&config(ProviderKind::Aws, true), NAME));
}

#[test]
fn qhub_init_turns_it_on_and_nothing_is_built_when_off() {
    for p in [ProviderKind::Aws, ProviderKind::Gcp, ProviderKind::Do] {
        let init = crate::kubernetes::components::test_config(p);
        assert!(enabled(&init), "{p:?}: qhub init writes kbatch on");
        let off = config(p, false);
        assert!(objects_of(&off, NAME).is_empty());
        // The hub neither registers the service nor requires its token.
        let hub = objects_of(&off, jupyterhub::NAME);
        let cm = find(&hub, "ConfigMap", jupyterhub::CONFIG_MAP);
        let values: Json =
            serde_json::from_str(cm["data"]["values.json"].as_str().unwrap()).unwrap();
        assert!(
            values["services"]
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s["name"] != SERVICE),
            "{values}"
        );
        assert!(values["spawner"]["environment"].get("KBATCH_URL").is_none());
        let token = env_of(find(&hub, "Deployment", jupyterhub::HUB_SERVICE))
            .into_iter()
            .find(|e| e["name"] == "QHUB_KBATCH_API_TOKEN")
            .expect("the variable");
        assert_eq!(token["valueFrom"]["secretKeyRef"]["optional"], true);
    }
}

#[test]
fn kbatch_proxy_gets_its_settings_token_template_and_a_restricted_pod() {
    let config = config(ProviderKind::Aws, true);
    let objects = objects_of(&config, NAME);
    let d = find(&objects, "Deployment", SERVER);
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], SERVER);
    assert_eq!(pod["automountServiceAccountToken"], true);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let c = &pod["containers"][0];
    assert_eq!(c["image"], versions::KBATCH_PROXY.reference());
    assert_eq!(c["ports"][0]["containerPort"], CONTAINER_PORT);
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/");
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    let env = env_of(d);
    let value = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no {name}: {env:?}"))
            .clone()
    };
    assert_eq!(value("APP_PORT")["value"], "8080");
    assert_eq!(
        value("JUPYTERHUB_API_URL")["value"],
        "http://hub.dev.svc:8081/hub/api"
    );
    assert_eq!(value("KBATCH_PREFIX")["value"], "/services/kbatch");
    assert_eq!(
        value("JUPYTERHUB_SERVICE_PREFIX")["value"],
        "/services/kbatch/"
    );
    assert_eq!(
        value("KBATCH_JOB_TEMPLATE_FILE")["value"],
        "/etc/kbatch/job-template.yaml"
    );
    let extra: Json =
        serde_json::from_str(value("KBATCH_JOB_EXTRA_ENV")["value"].as_str().unwrap()).unwrap();
    assert_eq!(
        extra["DASK_GATEWAY__ADDRESS"],
        "https://demo.example.com/gateway"
    );
    let token = value("JUPYTERHUB_API_TOKEN");
    assert_eq!(token["valueFrom"]["secretKeyRef"]["name"], HUB_TOKEN_SECRET);
    assert_eq!(token["valueFrom"]["secretKeyRef"]["key"], HUB_TOKEN_KEY);
    // The token Secret is generated in the cluster, never in the manifest.
    let secret = find(&objects, "Secret", HUB_TOKEN_SECRET);
    assert!(secret.get("data").is_none() && secret.get("stringData").is_none());
    assert!(
        secret["metadata"]["annotations"][crate::kubernetes::recipes::ANNOTATION]
            .as_str()
            .unwrap()
            .contains(HUB_TOKEN_KEY)
    );
    // The job template puts jobs on the user group, and is mounted where the setting says.
    let cm = find(&objects, "ConfigMap", JOB_TEMPLATE_CONFIGMAP);
    let template: Json =
        serde_json::from_str(cm["data"][JOB_TEMPLATE_FILE].as_str().unwrap()).unwrap();
    let facts = ClusterFacts::from_config(&config);
    assert_eq!(
        template["spec"]["template"]["spec"]["nodeSelector"],
        json!(facts.node_selector.for_group("user").unwrap())
    );
    assert_eq!(template["kind"], "Job");
    assert!(
        c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mountPath"] == JOB_TEMPLATE_DIR)
    );
    // An edit of the template rolls kbatch-proxy.
    assert!(
        d["spec"]["template"]["metadata"]["annotations"][components::CONFIG_HASH_ANNOTATION]
            .is_string()
    );
    // Its Service is what the hub registers.
    let service = find(&objects, "Service", SERVER);
    assert_eq!(service["spec"]["ports"][0]["port"], 80);
    assert_eq!(service_url("dev"), "http://kbatch-proxy.dev.svc:80");
}

#[test]
fn its_rbac_is_its_table_cluster_wide() {
    let objects = objects_of(&config(ProviderKind::Aws, true), NAME);
    let role = find(&objects, "ClusterRole", "dev-kbatch");
    let rules = role["rules"].as_array().unwrap();
    assert_eq!(rules.len(), rbac::KBATCH_PROXY.permissions.len());
    assert!(
        rules
            .iter()
            .any(|r| r["resources"] == json!(["namespaces"]) && r["verbs"] == json!(["create"]))
    );
    // Never Secrets (QHub's ClusterRole granted every core resource).
    assert!(rules.iter().all(|r| {
        !r["resources"]
            .as_array()
            .unwrap()
            .contains(&json!("secrets"))
            && !r["resources"].as_array().unwrap().contains(&json!("*"))
    }));
    let binding = find(&objects, "ClusterRoleBinding", "dev-kbatch");
    assert_eq!(binding["subjects"][0]["name"], SERVER);
    assert_eq!(binding["subjects"][0]["namespace"], "dev");
    find(&objects, "ServiceAccount", SERVER);
}

#[test]
fn the_hub_registers_the_service_and_waits_for_its_token() {
    let config = config(ProviderKind::Aws, true);
    let hub = objects_of(&config, jupyterhub::NAME);
    let cm = find(&hub, "ConfigMap", jupyterhub::CONFIG_MAP);
    let values: Json = serde_json::from_str(cm["data"]["values.json"].as_str().unwrap()).unwrap();
    let service = values["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == SERVICE)
        .expect("the kbatch service")
        .clone();
    assert_eq!(service["url"], "http://kbatch-proxy.dev.svc:80");
    assert_eq!(service["token_env"], "QHUB_KBATCH_API_TOKEN");
    assert_eq!(
        values["spawner"]["environment"]["KBATCH_URL"],
        "http://kbatch-proxy.dev.svc/services/kbatch/"
    );
    let token = env_of(find(&hub, "Deployment", jupyterhub::HUB_SERVICE))
        .into_iter()
        .find(|e| e["name"] == "QHUB_KBATCH_API_TOKEN")
        .expect("the variable");
    assert_eq!(token["valueFrom"]["secretKeyRef"]["name"], HUB_TOKEN_SECRET);
    assert_eq!(token["valueFrom"]["secretKeyRef"]["optional"], false);
}

#[test]
fn it_is_listed_with_its_own_check_behind_the_hubs_route() {
    let config = config(ProviderKind::Aws, true);
    let listed = components::listed_routes(&config).unwrap();
    let (_, listing) = listed
        .iter()
        .find(|(c, _)| *c == NAME)
        .expect("kbatch is listed");
    assert_eq!(listing.path, "/services/kbatch/");
    assert_eq!(
        listing.health.expected(),
        "GET /services/kbatch/ answers 200 with JSON `message: kbatch`"
    );
    let urls: Vec<String> = crate::kubernetes::endpoints::urls(&config)
        .into_iter()
        .map(|u| u.url)
        .collect();
    assert!(
        urls.contains(&"https://demo.example.com/services/kbatch/".to_string()),
        "{urls:?}"
    );
}

#[test]
fn overrides_are_refused_naming_the_key() {
    let mut config = config(ProviderKind::Aws, true);
    config.kbatch = Some(crate::config::Toggle {
        enabled: true,
        overrides: serde_json::from_value(json!({"image": {"tag": "0.4.1"}})).unwrap(),
    });
    let facts = ClusterFacts::from_config(&config);
    let err = components::build(&config, &facts).unwrap_err().to_string();
    assert!(
        err.contains("kbatch.overrides.image is not supported"),
        "{err}"
    );
}
