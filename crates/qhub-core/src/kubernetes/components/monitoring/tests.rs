//! What the monitoring component builds: snapshots of its objects and generated files for the
//! default configs, and the rules a snapshot cannot show at a glance (dashboards that Grafana's
//! file provisioning accepts, the scrape configuration's service discovery, RBAC, placement).

use std::collections::BTreeSet;

use serde_json::{Value as Json, json};

use super::*;
use crate::config::ProviderKind;
use crate::kubernetes::components::{Context, assemble, oidc_clients, rbac, test_config};
use crate::provider::ClusterFacts;

fn objects(config: &crate::Config) -> Vec<Json> {
    let facts = ClusterFacts::from_config(config);
    assemble(config, &facts)
        .unwrap()
        .into_iter()
        .find(|a| a.name == NAME)
        .expect("monitoring is enabled")
        .built
        .manifests
}

fn find<'a>(objects: &'a [Json], kind: &str, name: &str) -> &'a Json {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn file<'a>(objects: &'a [Json], map: &str, key: &str) -> &'a str {
    find(objects, "ConfigMap", map)["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {map}"))
}

#[test]
fn qhub_init_turns_monitoring_on_as_qhub_did() {
    for provider in [ProviderKind::Aws, ProviderKind::Gcp, ProviderKind::Do] {
        assert!(enabled(&test_config(provider)), "{provider:?}");
    }
}

#[test]
fn manifests_per_provider() {
    for provider in [ProviderKind::Aws, ProviderKind::Gcp, ProviderKind::Do] {
        let name = format!("{provider:?}").to_lowercase();
        insta::assert_json_snapshot!(format!("manifests_{name}"), objects(&test_config(provider)));
    }
}

#[test]
fn generated_files() {
    let objects = objects(&test_config(ProviderKind::Aws));
    insta::assert_snapshot!(
        "prometheus_yml",
        file(&objects, prometheus::CONFIG_MAP, prometheus::FILE)
    );
    insta::assert_snapshot!(
        "grafana_ini",
        file(&objects, grafana::CONFIG_MAP, "grafana.ini")
    );
    insta::assert_snapshot!(
        "grafana_datasources",
        file(&objects, grafana::CONFIG_MAP, "datasources.yaml")
    );
    insta::assert_snapshot!(
        "grafana_dashboard_provider",
        file(&objects, grafana::CONFIG_MAP, "dashboards.yaml")
    );
}

#[test]
fn monitoring_off_deploys_nothing_and_declares_no_client() {
    let mut config = test_config(ProviderKind::Aws);
    config.monitoring = Some(crate::config::components::Toggle {
        enabled: false,
        overrides: None,
    });
    let facts = ClusterFacts::from_config(&config);
    assert!(
        assemble(&config, &facts)
            .unwrap()
            .iter()
            .all(|a| a.name != NAME)
    );
    let clients = oidc_clients(&config).unwrap();
    assert!(clients.iter().all(|c| c.client_id != grafana::CLIENT_ID));
    config.monitoring = None;
    assert!(!enabled(&config));
    // On, the client is declared with its roles mapped from the platform groups.
    config.monitoring = Some(crate::config::components::Toggle::on());
    let client = oidc_clients(&config)
        .unwrap()
        .into_iter()
        .find(|c| c.client_id == grafana::CLIENT_ID)
        .expect("the grafana client");
    assert_eq!(client.callback_path, "/monitoring/login/generic_oauth");
    assert_eq!(
        client.roles,
        vec![
            ("grafana_admin".to_string(), vec!["admin".to_string()]),
            (
                "grafana_developer".to_string(),
                vec!["developer".to_string()]
            ),
            ("grafana_viewer".to_string(), vec!["analyst".to_string()]),
        ]
    );
}

/// Grafana's provisioning accepts a dashboard file that is one JSON object with a title, a
/// uid, a `schemaVersion` and panels; every panel (and query) names the provisioned data
/// source by its uid, and panel ids are unique within the dashboard.
#[test]
fn dashboards_are_grafana_dashboards_on_the_provisioned_data_source() {
    let sources = datasources_of(&test_config(ProviderKind::Aws));
    let uids: BTreeSet<&str> = sources["datasources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["uid"].as_str().expect("a fixed uid"))
        .collect();
    assert!(uids.contains(grafana::PROMETHEUS_UID) && uids.contains(loki::LOKI_UID));
    let mut dashboard_uids = BTreeSet::new();
    assert!(grafana::DASHBOARDS.len() >= 3);
    for (name, text) in grafana::DASHBOARDS {
        let d: Json = serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            d["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
            "{name}"
        );
        assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()), "{name}");
        let uid = d["uid"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no uid"));
        assert!(uid.len() <= 40, "{name}: Grafana's uid limit");
        assert!(
            dashboard_uids.insert(uid.to_string()),
            "{name}: uid {uid} twice"
        );
        let panels = d["panels"].as_array().unwrap_or_else(|| panic!("{name}"));
        assert!(!panels.is_empty(), "{name}");
        let mut ids = BTreeSet::new();
        for p in panels {
            let id = p["id"].as_u64().unwrap_or_else(|| panic!("{name}: {p}"));
            assert!(ids.insert(id), "{name}: panel id {id} twice");
            let uid = p["datasource"]["uid"].as_str().unwrap_or_default();
            assert!(uids.contains(uid), "{name} panel {id}: data source {uid:?}");
            let targets = p["targets"].as_array().unwrap_or_else(|| panic!("{name}"));
            assert!(!targets.is_empty(), "{name} panel {id}: no query");
            for t in targets {
                assert!(t["expr"].as_str().is_some_and(|e| !e.is_empty()));
                let tuid = t["datasource"]["uid"].as_str().unwrap_or(uid);
                assert!(uids.contains(tuid), "{name} panel {id}: query on {tuid:?}");
            }
        }
    }
}

fn datasources_of(config: &crate::Config) -> Json {
    let facts = ClusterFacts::from_config(config);
    let ctx = Context {
        config,
        facts: &facts,
    };
    grafana::datasources(&ctx)
}

/// What promtool cannot check here (Debian's Prometheus is built without Kubernetes service
/// discovery; `tests/monitoring.rs` replaces those blocks before running it): every
/// `kubernetes_sd_configs` entry names a role Prometheus knows and only the keys it reads, and
/// job names are unique.
#[test]
fn the_scrape_config_uses_only_known_service_discovery() {
    let config = test_config(ProviderKind::Aws);
    let facts = ClusterFacts::from_config(&config);
    let doc = prometheus::document(&Context {
        config: &config,
        facts: &facts,
    });
    let roles = [
        "node",
        "pod",
        "service",
        "endpoints",
        "endpointslice",
        "ingress",
    ];
    let mut names = BTreeSet::new();
    for job in doc["scrape_configs"].as_array().unwrap() {
        let name = job["job_name"].as_str().unwrap();
        assert!(names.insert(name), "job {name} twice");
        for sd in job["kubernetes_sd_configs"]
            .as_array()
            .into_iter()
            .flatten()
        {
            assert!(
                roles.contains(&sd["role"].as_str().unwrap()),
                "{name}: {sd}"
            );
            for key in sd.as_object().unwrap().keys() {
                assert!(
                    ["role", "namespaces", "selectors", "attach_metadata"].contains(&key.as_str()),
                    "{name}: unknown key {key}"
                );
            }
        }
    }
    for job in [
        "kubelet",
        "cadvisor",
        "service-endpoints",
        "pods",
        "traefik",
        "jupyterhub",
        "conda-store",
        "dask-schedulers",
    ] {
        assert!(names.contains(job), "no {job} job: {names:?}");
    }
    // The hub's metrics need its token; the file is where the Secret is mounted.
    let hub = doc["scrape_configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job_name"] == "jupyterhub")
        .unwrap();
    assert_eq!(
        hub["authorization"]["credentials_file"],
        json!(format!("/etc/prometheus-secrets/{}", hub_token::KEY))
    );
}

#[test]
fn kube_state_metrics_watches_exactly_what_its_role_grants() {
    let granted: BTreeSet<&str> = rbac::KUBE_STATE_METRICS
        .permissions
        .iter()
        .flat_map(|p| p.resources.iter().copied())
        .collect();
    let watched: BTreeSet<&str> = rbac::KUBE_STATE_METRICS_RESOURCES.split(',').collect();
    assert_eq!(granted, watched);
    // No secret is readable by any monitoring piece.
    for table in [&rbac::PROMETHEUS, &rbac::KUBE_STATE_METRICS] {
        for p in table.permissions {
            assert!(
                !p.resources.contains(&"secrets"),
                "{}",
                table.service_account
            );
            assert!(
                !p.resources.contains(&"nodes/proxy"),
                "{}",
                table.service_account
            );
        }
    }
}

#[test]
fn the_node_exporter_runs_on_every_node_in_the_privileged_namespace() {
    let config = test_config(ProviderKind::Aws);
    let objects = objects(&config);
    let set = find(&objects, "DaemonSet", exporters::NODE_EXPORTER);
    assert_eq!(
        set["metadata"]["namespace"],
        json!(format!("{}-privileged", config.namespace))
    );
    let pod = &set["spec"]["template"]["spec"];
    assert_eq!(pod["tolerations"], json!([{"operator": "Exists"}]));
    assert!(pod.get("nodeSelector").is_none_or(Json::is_null));
    assert_eq!(
        set["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"],
        "true"
    );
    // The privileged namespace exists whenever monitoring is on.
    let facts = ClusterFacts::from_config(&config);
    let ns = assemble(&config, &facts)
        .unwrap()
        .into_iter()
        .find(|a| a.name == "namespace")
        .unwrap();
    assert!(
        ns.built
            .manifests
            .iter()
            .any(|m| m["metadata"]["name"] == json!(format!("{}-privileged", config.namespace)))
    );
}

#[test]
fn grafana_is_served_under_its_prefix_with_its_client_secret_from_the_generated_secret() {
    let objects = objects(&test_config(ProviderKind::Aws));
    let deployment = find(&objects, "Deployment", grafana::GRAFANA);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let env = container["env"].as_array().unwrap();
    let var = |n: &str| env.iter().find(|e| e["name"] == n).cloned();
    assert_eq!(
        var("GF_SERVER_ROOT_URL").unwrap()["value"],
        "https://demo.example.com/monitoring/"
    );
    assert_eq!(
        var("GF_SERVER_SERVE_FROM_SUB_PATH").unwrap()["value"],
        "true"
    );
    assert_eq!(
        var("GF_AUTH_GENERIC_OAUTH_CLIENT_SECRET").unwrap()["valueFrom"]["secretKeyRef"]["name"],
        crate::kubernetes::components::client_secret_name(grafana::CLIENT_ID)
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"],
        grafana::HEALTH_PATH
    );
    // Its route keeps the prefix (no strip middleware) and is listed with its health.
    let route = find(&objects, "IngressRoute", grafana::GRAFANA);
    assert!(
        route["spec"]["routes"][0]
            .get("middlewares")
            .is_none_or(Json::is_null)
    );
    let ini = file(&objects, grafana::CONFIG_MAP, "grafana.ini");
    assert!(ini.contains(&format!(
        "role_attribute_path = {}",
        grafana::ROLE_ATTRIBUTE_PATH
    )));
    assert!(ini.contains("disable_login_form = true"));
    // An edit of a dashboard rolls Grafana and nothing else.
    let prom = find(&objects, "Deployment", prometheus::SERVER);
    let stamp = |d: &Json| {
        d["spec"]["template"]["metadata"]["annotations"]["qhub.dev/config-sha256"].clone()
    };
    assert!(stamp(deployment).is_string() && stamp(prom).is_string());
    assert_ne!(stamp(deployment), stamp(prom));
}

#[test]
fn logs_are_shipped_by_one_alloy_through_the_api_to_loki() {
    let config = test_config(ProviderKind::Aws);
    let objects = objects(&config);
    insta::assert_snapshot!("loki_yaml", file(&objects, loki::CONFIG_MAP, loki::FILE));
    insta::assert_snapshot!(
        "config_alloy",
        file(&objects, loki::ALLOY_CONFIG_MAP, loki::ALLOY_FILE)
    );
    let alloy = find(&objects, "Deployment", loki::ALLOY);
    assert_eq!(alloy["spec"]["replicas"], 1);
    assert_eq!(alloy["spec"]["strategy"]["type"], "Recreate");
    // In the platform namespace: no hostPath, so the restricted level admits it.
    assert_eq!(alloy["metadata"]["namespace"], json!(config.namespace));
    let pod = &alloy["spec"]["template"]["spec"];
    assert!(
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v.get("hostPath").is_none())
    );
    let granted: Vec<(&str, &str)> = rbac::ALLOY
        .permissions
        .iter()
        .flat_map(|p| {
            p.resources
                .iter()
                .flat_map(move |r| p.verbs.iter().map(move |v| (*r, *v)))
        })
        .collect();
    assert_eq!(
        granted,
        [("pods", "list"), ("pods", "watch"), ("pods/log", "get")]
    );
    let text = file(&objects, loki::ALLOY_CONFIG_MAP, loki::ALLOY_FILE);
    assert!(text.contains(&format!(
        "http://loki.{}.svc:3100/loki/api/v1/push",
        config.namespace
    )));
}
