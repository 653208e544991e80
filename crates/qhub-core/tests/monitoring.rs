//! Monitoring checked by the real software and deployed on the sandbox.
//!
//! - `promtool check config` (Debian's `prometheus` package, installed by scripts/test into the
//!   git-ignored `.tools/prometheus` without root) on the rendered `prometheus.yml` of each
//!   provider. Debian builds Prometheus without Kubernetes service discovery (its promtool
//!   refuses `kubernetes_sd_configs` as an unknown field), and no package registry we can use
//!   ships a build with it: each `kubernetes_sd_configs` block is replaced by a static target
//!   before the check, so promtool checks everything else (globals, schemes, TLS and
//!   authorization files, every relabelling rule and regex); the service discovery blocks
//!   themselves are checked by the component's schema test
//!   (`monitoring::tests::the_scrape_config_uses_only_known_service_discovery`).
//! - On the sandbox with the Keycloak emulator: monitoring deployed with the Grafana client in
//!   Keycloak holding the secret Grafana's pod reads; a re-deploy is a no-op; turning it off
//!   prunes every object, the cluster-wide RBAC and the Keycloak client; and that is a no-op
//!   again.

use std::path::{Path, PathBuf};
use std::process::Command;

use qhub_core::Config;
use qhub_core::config::components::Toggle;
use qhub_core::config::init::{InitOptions, render};
use qhub_core::config::provider::ProviderKind;
use qhub_core::kubernetes::components::monitoring::{self, exporters, grafana, prometheus};
use qhub_core::kubernetes::components::{CLIENT_SECRET_KEY, Context, client_secret_name};
use qhub_core::provider::{ClusterFacts, Ownership};
use qhub_sandbox::SandboxProvider;
use qhub_sandbox::faults::FaultSpec;
use serde_json::{Value as Json, json};

mod support;
use support::{assert_redeploy_is_a_noop, deleted, deploy, engine, find};

/// promtool: `QHUB_PROMTOOL`, else the workspace's `.tools/prometheus/usr/bin/promtool`
/// (scripts/test puts it there). Missing, the test fails rather than passing unchecked.
fn promtool() -> PathBuf {
    let tool = std::env::var_os("QHUB_PROMTOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/prometheus/usr/bin/promtool")
        });
    assert!(
        tool.is_file(),
        "promtool not found at {} (run scripts/test once, or `mkdir -p .tools && cd .tools && \
         apt-get download prometheus && dpkg-deb -x prometheus_*.deb prometheus` and set \
         QHUB_PROMTOOL)",
        tool.display()
    );
    tool
}

fn config(provider: ProviderKind) -> Config {
    let mut opts = InitOptions::new(provider, "demo", "demo.example.com", "not-a-real-password");
    opts.gcp_project = Some("demo-project".into());
    let config = render(&opts).unwrap();
    assert!(
        monitoring::enabled(&config),
        "qhub init turns monitoring on"
    );
    config
}

/// The config Prometheus gets, made checkable by Debian's promtool in `dir`: service
/// discovery replaced by a static target, the files it reads (service-account token and CA,
/// the hub token) created under `dir`.
fn checkable(doc: &Json, dir: &Path) -> String {
    let mut text = serde_json::to_string_pretty(doc).unwrap();
    for prefix in [
        "/var/run/secrets/kubernetes.io/serviceaccount",
        "/etc/prometheus-secrets",
    ] {
        let local = dir.join(prefix.trim_start_matches('/'));
        std::fs::create_dir_all(&local).unwrap();
        for file in ["token", "ca.crt"] {
            std::fs::write(local.join(file), "x").unwrap();
        }
        text = text.replace(prefix, local.to_str().unwrap());
    }
    let mut doc: Json = serde_json::from_str(&text).unwrap();
    for job in doc["scrape_configs"].as_array_mut().unwrap() {
        if let Some(obj) = job.as_object_mut()
            && obj.remove("kubernetes_sd_configs").is_some()
        {
            obj.insert(
                "static_configs".into(),
                json!([{"targets": ["target.example.invalid:80"]}]),
            );
        }
    }
    serde_json::to_string_pretty(&doc).unwrap()
}

fn check(tool: &Path, dir: &Path, text: &str) -> std::process::Output {
    let path = dir.join("prometheus.yml");
    std::fs::write(&path, text).unwrap();
    Command::new(tool)
        .args(["check", "config"])
        .arg(&path)
        .output()
        .expect("promtool runs")
}

#[test]
fn promtool_accepts_the_rendered_prometheus_configuration() {
    let tool = promtool();
    for provider in [ProviderKind::Aws, ProviderKind::Gcp, ProviderKind::Do] {
        let config = config(provider);
        let facts = ClusterFacts::from_config(&config);
        let doc = prometheus::document(&Context {
            config: &config,
            facts: &facts,
        });
        let dir = tempfile::tempdir().unwrap();
        let out = check(&tool, dir.path(), &checkable(&doc, dir.path()));
        assert!(
            out.status.success(),
            "{provider:?}: promtool refused prometheus.yml:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // The same check fails on a broken relabelling rule: the check can fail.
        let mut broken = doc.clone();
        broken["scrape_configs"][1]["relabel_configs"][0]["regex"] = json!("(unclosed");
        let out = check(&tool, dir.path(), &checkable(&broken, dir.path()));
        assert!(!out.status.success(), "promtool accepted a broken regex");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitoring_deploys_with_its_login_client_and_is_pruned_whole_when_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let provider = SandboxProvider::new(dir.path(), 0.0, FaultSpec::default());
    let engine = engine(&provider);
    let mut config = config(ProviderKind::Sandbox);
    let ns = config.namespace.clone();
    let privileged = format!("{ns}-privileged");
    deploy(&engine, &config).await;
    let kube = provider.kube_api(&Ownership::of(&config)).unwrap();
    let keycloak = provider.keycloak().await.expect("Keycloak runs");
    let objects = kube.objects();
    for (kind, name) in [
        ("Deployment", prometheus::SERVER),
        ("Deployment", exporters::KUBE_STATE_METRICS),
        ("Deployment", grafana::GRAFANA),
        ("DaemonSet", exporters::NODE_EXPORTER),
        ("PersistentVolumeClaim", prometheus::CLAIM),
        ("ConfigMap", prometheus::CONFIG_MAP),
        ("ConfigMap", grafana::DASHBOARDS_MAP),
        ("IngressRoute", grafana::GRAFANA),
        ("ClusterRole", &format!("{ns}-{}", prometheus::SERVER)),
        (
            "ClusterRole",
            &format!("{ns}-{}", exporters::KUBE_STATE_METRICS),
        ),
    ] {
        assert!(find(&objects, kind, name).is_some(), "no {kind} {name}");
    }
    assert_eq!(
        find(&objects, "DaemonSet", exporters::NODE_EXPORTER).unwrap()["metadata"]["namespace"],
        json!(privileged)
    );
    // Grafana's client holds the secret its pod reads.
    let secret = kube.secret_value(
        &ns,
        &client_secret_name(grafana::CLIENT_ID),
        CLIENT_SECRET_KEY,
    );
    let held = keycloak
        .client("qhub", grafana::CLIENT_ID)
        .and_then(|c| c["secret"].as_str().map(str::to_string));
    assert!(secret.is_some(), "no client secret");
    assert_eq!(secret, held, "Keycloak holds what Grafana reads");
    assert!(
        kube.secret_value(
            &ns,
            monitoring::hub_token::SECRET,
            monitoring::hub_token::KEY
        )
        .is_some_and(|t| t.len() >= 32),
        "the hub token is generated"
    );

    // A re-deploy writes nothing.
    assert_redeploy_is_a_noop(&engine, &config, &kube, &keycloak).await;

    // Off: everything of monitoring is pruned, the Keycloak client too.
    config.monitoring = Some(Toggle {
        enabled: false,
        overrides: None,
    });
    let plan = deploy(&engine, &config).await;
    let deleted = deleted(&plan);
    assert!(
        deleted.contains(&format!("keycloak_client/{}", grafana::CLIENT_ID)),
        "{deleted:?}"
    );
    assert!(keycloak.client("qhub", grafana::CLIENT_ID).is_none());
    let left = kube.objects();
    let labelled: Vec<String> = left
        .iter()
        .filter(|o| o["metadata"]["labels"]["app.kubernetes.io/component"] == monitoring::NAME)
        .map(|o| format!("{} {}", o["kind"], o["metadata"]["name"]))
        .collect();
    assert!(labelled.is_empty(), "left behind: {labelled:?}");
    for (kind, name) in [
        ("Deployment", prometheus::SERVER),
        ("DaemonSet", exporters::NODE_EXPORTER),
        ("ClusterRole", &format!("{ns}-{}", prometheus::SERVER)),
        ("Secret", &client_secret_name(grafana::CLIENT_ID)),
    ] {
        assert!(
            find(&left, kind, name).is_none(),
            "{kind} {name} not pruned"
        );
    }
    assert_redeploy_is_a_noop(&engine, &config, &kube, &keycloak).await;
}
