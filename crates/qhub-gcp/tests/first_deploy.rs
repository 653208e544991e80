//! What a first real deploy meets on GKE and our emulator now refuses as GKE does (issue 26,
//! items 10–13): per-zone node counts against the regional CPU quota, GPUs only in the zones
//! that have them, the claims' disks left after the cluster, a missing `default` network.

mod common;

use std::sync::Arc;

use qhub_core::config::provider::{GuestAccelerator, NodeGroup};
use qhub_core::provider::Provider;
use qhub_gcp::ApiStats;
use qhub_gke_emulator::{GkeEmulator, Options};
use serde_json::{Value, json};

use common::*;

const REGION: &str = "us-central1";

fn pool<'a>(cluster: &'a Value, name: &str) -> &'a Value {
    cluster["nodePools"]
        .as_array()
        .expect("pools")
        .iter()
        .find(|p| p["name"] == name)
        .expect("pool")
}

fn compute_calls(stats: &ApiStats) -> u64 {
    stats
        .by_operation()
        .iter()
        .filter(|(k, _)| k.starts_with("compute."))
        .map(|(_, n)| *n)
        .sum()
}

/// Item 10: QHub's defaults asked for 3 × n1-standard-8 (one per zone of a regional cluster)
/// and let `user`/`worker` reach 15 nodes each. The config's counts are totals now: the
/// default config starts one node, so it fits a free-trial project's 8 vCPUs in the region
/// (amygdala/tensorflow-workshop#13), which GKE refused before (24 asked).
#[tokio::test]
async fn the_default_config_starts_one_node_and_fits_a_trial_quota() {
    let emu = GkeEmulator::start(Options::default()).await.unwrap();
    emu.set_quota(PROJECT, REGION, "CPUS", 8.0);
    let config = gcp_config("trial");
    let stats = Arc::new(ApiStats::default());
    let p = Arc::new(provider(&emu, &config, stats.clone()));
    let r = deploy(p.clone(), &config).await;
    assert!(r.succeeded(), "{:?}", r.failed);
    let (_, _, cluster) = emu.clusters().remove(0);
    assert_eq!(cluster["currentNodeCount"], 1, "one node at the minimum");
    let general = pool(&cluster, "general");
    assert_eq!(general["locations"], json!(["us-central1-a"]), "pinned");
    assert_eq!(general["initialNodeCount"], 1);
    assert_eq!(general["autoscaling"]["totalMinNodeCount"], 1);
    assert_eq!(general["autoscaling"]["totalMaxNodeCount"], 1);
    for name in ["user", "worker"] {
        let p = pool(&cluster, name);
        assert_eq!(p["autoscaling"]["totalMaxNodeCount"], 5, "{p}");
        assert!(p["autoscaling"].get("maxNodeCount").is_none(), "{p}");
        assert!(p.get("initialNodeCount").is_none_or(|n| *n == 0), "{p}");
        assert_eq!(p["locations"], cluster["locations"], "the cluster's zones");
    }
    // Converged: a second plan changes nothing.
    let r = deploy(p, &config).await;
    assert!(r.succeeded() && r.done.is_empty(), "{r:?}");
}

/// Item 10, upgrade path: a pool made per zone (3 zones × 0..5 = 0..15 in all) is moved to
/// totals in place.
#[tokio::test]
async fn per_zone_counts_of_an_older_pool_become_totals() {
    let emu = GkeEmulator::start(Options::default()).await.unwrap();
    let config = gcp_config("older");
    let p = Arc::new(provider(&emu, &config, Arc::new(ApiStats::default())));
    assert!(deploy(p.clone(), &config).await.succeeded());
    // What an earlier qhub-rs made: per-zone autoscaling.
    let (project, location, cluster) = emu.clusters().remove(0);
    let _ = (project, location);
    let name = cluster["name"].as_str().unwrap().to_string();
    let client = reqwest_free_set_autoscaling(&emu, &name).await;
    assert_eq!(client, 200);
    let plan = engine(p.clone())
        .plan(&config, qhub_core::engine::StageFilter::All)
        .await
        .expect("plan");
    let user: Vec<String> = plan
        .changes
        .iter()
        .map(|c| format!("{} {}", c.action.symbol(), c.id))
        .collect();
    assert!(
        user.contains(&"~ node_pool/older-dev-user".to_string()),
        "{user:?}"
    );
    assert!(deploy(p, &config).await.succeeded());
    let (_, _, cluster) = emu.clusters().remove(0);
    assert_eq!(
        pool(&cluster, "user")["autoscaling"]["totalMaxNodeCount"],
        5
    );
}

/// Sets the `user` pool's autoscaling per zone (0..5 in each zone) through the emulator's
/// REST API, as a pool made before totals looks; returns the HTTP status.
async fn reqwest_free_set_autoscaling(emu: &GkeEmulator, cluster: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body =
        json!({"autoscaling": {"enabled": true, "minNodeCount": 0, "maxNodeCount": 5}}).to_string();
    let path = format!(
        "/v1/projects/{PROJECT}/locations/{REGION}/clusters/{cluster}/nodePools/user:setAutoscaling"
    );
    let mut s = tokio::net::TcpStream::connect(emu.addr()).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        emu.addr(),
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    // Let the operation finish (no poller: it ends after `abandon_after`).
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Item 10: preflight reads the regional and global quotas and compares them with the
/// groups' minimum (a problem) and maximum (a warning), naming the quota and the step that
/// raises it.
#[tokio::test]
async fn preflight_checks_quota_against_the_groups() {
    let emu = GkeEmulator::start(Options::default()).await.unwrap();
    let config = gcp_config("quota");
    let stats = Arc::new(ApiStats::default());
    emu.set_quota(PROJECT, REGION, "CPUS", 8.0);
    let ok = provider(&emu, &config, stats.clone())
        .preflight(&config)
        .await
        .expect("the minimum fits");
    let warnings = ok.warnings.join("\n");
    // Maximum: general 1 × 8 + user 5 × 4 + worker 5 × 4 = 48 vCPUs.
    assert!(warnings.contains("need 48 of quota CPUS"), "{warnings}");
    assert!(
        warnings.contains("--quota-id=CPUS-per-project-region"),
        "{warnings}"
    );
    eprintln!(
        "preflight, no GPU group: {} calls, {} to Compute Engine: {:?}",
        stats.calls(),
        compute_calls(&stats),
        stats.by_operation()
    );
    // regions.get, one machineTypes.get per machine type (n1-standard-8, n1-standard-4),
    // networks.get, projects.get.
    assert_eq!(compute_calls(&stats), 5);

    // Minimum over what is free: general 1 × 8 + user 1 × 4 = 12 > 10.
    emu.set_quota(PROJECT, REGION, "CPUS", 10.0);
    let mut more = config.clone();
    let gcp = more.google_cloud_platform.as_mut().unwrap();
    gcp.node_groups.get_mut("user").unwrap().min_nodes = 1;
    let e = provider(&emu, &more, stats.clone())
        .preflight(&more)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("the minimum node counts need 12 of quota CPUS in us-central1"),
        "{e}"
    );
    // One node over the limit: never runs.
    emu.set_quota(PROJECT, REGION, "CPUS", 4.0);
    let e = provider(&emu, &config, stats.clone())
        .preflight(&config)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("google_cloud_platform.node_groups.general: one node needs 8 of quota CPUS"),
        "{e}"
    );

    // A GPU group in a project without GPU quota can never get a node.
    emu.set_quota(PROJECT, REGION, "CPUS", 24.0);
    emu.set_quota(PROJECT, "global", "GPUS_ALL_REGIONS", 0.0);
    let config = gpu_config("quota");
    let stats = Arc::new(ApiStats::default());
    let e = provider(&emu, &config, stats.clone())
        .preflight(&config)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(
            "google_cloud_platform.node_groups.gpu: one node needs 1 of quota GPUS_ALL_REGIONS"
        ),
        "{e}"
    );
    assert!(e.contains("--quota-id=GPUS-ALL-REGIONS-per-project"), "{e}");
    eprintln!(
        "preflight, with a GPU group: {} calls, {} to Compute Engine: {:?}",
        stats.calls(),
        compute_calls(&stats),
        stats.by_operation()
    );
    // + acceleratorTypes.aggregatedList.
    assert_eq!(compute_calls(&stats), 6);
}

fn p4_config(project: &str) -> qhub_core::Config {
    let mut c = gcp_config(project);
    c.google_cloud_platform
        .as_mut()
        .unwrap()
        .node_groups
        .insert(
            "gpu".into(),
            NodeGroup {
                instance: "n1-standard-8".into(),
                min_nodes: 0,
                max_nodes: 2,
                gpu: false,
                guest_accelerators: vec![GuestAccelerator {
                    name: "nvidia-tesla-p4".into(),
                    count: 1,
                }],
                extra: serde_json::Map::new(),
            },
        );
    c
}

/// Item 11: the P4 exists in us-central1-a and -c only; a pool without `locations` asked for
/// it in every zone of the cluster and GKE refused the cluster.
#[tokio::test]
async fn gpu_pools_go_where_the_gpu_is() {
    let emu = GkeEmulator::start(Options::default()).await.unwrap();
    let config = p4_config("gpuzones");
    let p = Arc::new(provider(&emu, &config, Arc::new(ApiStats::default())));
    p.preflight(&config).await.expect("preflight");
    let r = deploy(p.clone(), &config).await;
    assert!(r.succeeded(), "{:?}", r.failed);
    let (_, _, cluster) = emu.clusters().remove(0);
    assert_eq!(
        pool(&cluster, "gpu")["locations"],
        json!(["us-central1-a", "us-central1-c"])
    );
    let r = deploy(p, &config).await;
    assert!(r.succeeded() && r.done.is_empty(), "{r:?}");

    // Zones named by the config that lack the GPU: preflight names the group and the GPU.
    let mut config = p4_config("gpuzones2");
    config
        .google_cloud_platform
        .as_mut()
        .unwrap()
        .availability_zones = Some(vec!["us-central1-b".into(), "us-central1-f".into()]);
    let e = provider(&emu, &config, Arc::new(ApiStats::default()))
        .preflight(&config)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("google_cloud_platform.node_groups.gpu.guest_accelerators: no zone")
            && e.contains("nvidia-tesla-p4"),
        "{e}"
    );
}

/// Item 12: GKE may keep the Persistent Disks of the cluster's claims after DeleteCluster
/// (the emulator does). A destroy deletes those of its cluster, after the cluster, and leaves
/// another deployment's alone.
#[tokio::test]
async fn destroy_leaves_no_disk_of_its_claims() {
    let emu = GkeEmulator::start(Options::default()).await.unwrap();
    let config = gcp_config("disks");
    let other = gcp_config("keep");
    let p = Arc::new(provider(&emu, &config, Arc::new(ApiStats::default())));
    let q = Arc::new(provider(&emu, &other, Arc::new(ApiStats::default())));
    assert!(deploy(p.clone(), &config).await.succeeded());
    assert!(deploy(q.clone(), &other).await.succeeded());
    for claim in ["keycloak-postgres", "traefik-acme"] {
        assert!(emu.add_pvc_disk(
            (PROJECT, REGION, "disks-dev"),
            "us-central1-a",
            ("dev", claim),
            10
        ));
    }
    assert!(emu.add_pvc_disk(
        (PROJECT, REGION, "keep-dev"),
        "us-central1-a",
        ("dev", "keycloak-postgres"),
        10
    ));
    // A deploy leaves them alone: they hold the platform's data.
    let r = deploy(p.clone(), &config).await;
    assert!(r.succeeded() && r.done.is_empty(), "{r:?}");
    assert_eq!(emu.disks().len(), 3);

    let plan = engine(p.clone())
        .destroy_plan(&config, qhub_core::engine::StageFilter::All)
        .await
        .expect("plan");
    let disks: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| c.id.kind == "disk")
        .map(|c| format!("{} {}", c.id, c.reason.clone().unwrap_or_default()))
        .collect();
    assert_eq!(disks.len(), 2, "{disks:?}");
    assert!(
        disks
            .iter()
            .all(|d| d.ends_with("deleted with cluster/disks-dev")),
        "{disks:?}"
    );

    let r = destroy(p.clone(), &config).await;
    assert!(r.succeeded(), "{:?}", r.failed);
    let left: Vec<String> = emu
        .disks()
        .iter()
        .map(|(_, d)| {
            d["labels"]["goog-k8s-cluster-name"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(left, ["keep-dev"], "only the other deployment's disk stays");
    // Nothing left to do.
    let r = destroy(p, &config).await;
    assert!(r.succeeded() && r.done.is_empty(), "{r:?}");
}

/// Item 13: a project without the `default` network (deleted, or an organisation policy):
/// preflight says so and how to fix it, and `network`/`subnetwork` put the cluster in the
/// producer's VPC (GKE refused the cluster before: `Project "P" has no network named
/// "default".`).
#[tokio::test]
async fn the_cluster_goes_into_the_configured_network() {
    let emu = GkeEmulator::start(Options::default()).await.unwrap();
    emu.set_networks(
        PROJECT,
        vec![qhub_gke_emulator::compute::Network {
            name: "corp".into(),
            auto_subnetworks: false,
            subnetworks: vec![(REGION.into(), "corp-us".into())],
        }],
    );
    let config = gcp_config("net");
    let stats = Arc::new(ApiStats::default());
    let e = provider(&emu, &config, stats.clone())
        .preflight(&config)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(
            "google_cloud_platform.network: project qhub-test-123 has no network named \"default\""
        ) && e.contains("gcloud compute networks create default --subnet-mode=auto"),
        "{e}"
    );
    assert_eq!(
        stats.by_operation().get("compute.networks.get").copied(),
        Some(1)
    );

    let mut config = gcp_config("net");
    let gcp = config.google_cloud_platform.as_mut().unwrap();
    gcp.network = Some("corp".into());
    gcp.subnetwork = Some("corp-eu".into());
    let e = provider(&emu, &config, stats.clone())
        .preflight(&config)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("google_cloud_platform.subnetwork: subnetwork corp-eu does not exist in region us-central1"),
        "{e}"
    );

    config.google_cloud_platform.as_mut().unwrap().subnetwork = Some("corp-us".into());
    let p = Arc::new(provider(&emu, &config, stats.clone()));
    p.preflight(&config).await.expect("preflight");
    let r = deploy(p.clone(), &config).await;
    assert!(r.succeeded(), "{:?}", r.failed);
    let (_, _, cluster) = emu.clusters().remove(0);
    assert_eq!(cluster["network"], "corp");
    assert_eq!(cluster["subnetwork"], "corp-us");
    let r = deploy(p, &config).await;
    assert!(r.succeeded() && r.done.is_empty(), "{r:?}");
}

/// Item 13: where automatic role grants are off, the nodes' service account (the Compute
/// Engine default) lacks `roles/container.defaultNodeServiceAccount`: preflight warns and names
/// the grant.
#[tokio::test]
async fn preflight_checks_the_node_service_account() {
    let emu = GkeEmulator::start(Options::default()).await.unwrap();
    let config = gcp_config("nodesa");
    let stats = Arc::new(ApiStats::default());
    let ok = provider(&emu, &config, stats.clone())
        .preflight(&config)
        .await
        .expect("preflight");
    assert!(
        !ok.warnings.join("\n").contains("service account"),
        "Editor is enough: {:?}",
        ok.warnings
    );
    assert_eq!(
        stats
            .by_operation()
            .get("resourcemanager.projects.getIamPolicy")
            .copied(),
        Some(1)
    );
    emu.set_iam_policy(PROJECT, json!({"version": 1, "bindings": []}));
    let warnings = provider(&emu, &config, stats)
        .preflight(&config)
        .await
        .expect("a warning, not a problem")
        .warnings
        .join("\n");
    assert!(
        warnings.contains("--role=roles/container.defaultNodeServiceAccount")
            && warnings.contains("123456789012-compute@developer.gserviceaccount.com"),
        "{warnings}"
    );
}
