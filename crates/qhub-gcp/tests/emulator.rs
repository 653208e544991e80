//! `qhub-gcp` against the GKE emulator over loopback (nothing here reaches the network).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use qhub_core::conformance;
use qhub_core::engine::StageFilter;
use qhub_core::provider::{Ownership, Provider};
use qhub_gcp::ApiStats;
use qhub_gke_emulator::{Faults, GkeEmulator, Options};

use common::*;

fn one_of_everything(pools: usize) -> BTreeMap<String, usize> {
    BTreeMap::from([("cluster".to_string(), 1), ("node_pool".to_string(), pools)])
}

#[tokio::test]
async fn conformance_with_no_operation_rejected() {
    let h = GkeHarness::start(gcp_config("conform")).await;
    let started = Instant::now();
    let report = conformance::run_all(&h).await.expect("conformance");
    for (check, detail) in &report.checks {
        eprintln!("conformance: {check}: {detail}");
    }
    // Without a Kubernetes API behind the cluster, the facts cannot reach a cluster.
    report.assert_skipped(&["cluster facts"]);
    let n = h.emu.counters();
    eprintln!(
        "conformance: {} checks in {:?}; emulator: {} requests, {} mutations, {} polls, {} rejected, {} throttled, {} 5xx, {} dropped",
        report.checks.len(),
        started.elapsed(),
        n.requests,
        n.mutations,
        n.polls,
        n.rejected,
        n.throttled,
        n.server_errors,
        n.dropped
    );
    assert_eq!(n.rejected, 0, "GKE's one-operation rule was broken: {n:?}");
}

/// With a Kubernetes API behind the cluster (the kubeconfig override), the Kubernetes stage
/// runs too, and the cluster facts reach it.
#[tokio::test]
async fn conformance_with_both_stages() {
    let h = GkeHarness::with_cluster(gcp_config("conformk8s")).await;
    let report = conformance::run_all(&h).await.expect("conformance");
    for (check, detail) in &report.checks {
        eprintln!("conformance (both stages): {check}: {detail}");
    }
    let facts = report
        .checks
        .iter()
        .find(|(c, _)| c.contains("facts"))
        .expect("facts check");
    assert!(!facts.1.starts_with("skipped"), "{facts:?}");
    report.assert_skipped(&[]);
    assert_eq!(h.emu.counters().rejected, 0);
}

#[tokio::test]
async fn gpu_conformance() {
    let h = GkeHarness::start(gpu_config("conformgpu")).await;
    let report = conformance::run_all(&h).await.expect("conformance");
    report.assert_skipped(&["cluster facts"]);
    assert_eq!(h.emu.counters().rejected, 0);
}

#[tokio::test]
async fn deploy_noop_destroy_call_counts() {
    let emu = GkeEmulator::start(Options::default()).await.unwrap();
    let config = gpu_config("counts");
    let o = Ownership::of(&config);

    let stats = Arc::new(ApiStats::default());
    let p = Arc::new(provider(&emu, &config, stats.clone()));
    let r = deploy(p, &config).await;
    assert!(r.succeeded(), "{:?}", r.failed);
    assert_eq!(census(&emu, &o), one_of_everything(4));
    eprintln!(
        "deploy: {} calls ({} mutating, {} polls): {:?}",
        stats.calls(),
        stats.mutating(),
        qhub_gcp::client::polls(&stats),
        stats.by_operation()
    );
    assert_eq!(stats.mutating(), 1, "one CreateCluster carries every pool");

    // The GPU pool: accelerator with GKE's driver installation, the taint, spot, label.
    let (_, _, cluster) = emu.clusters().remove(0);
    let gpu = cluster["nodePools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "gpu")
        .expect("gpu pool")
        .clone();
    assert_eq!(
        gpu["config"]["accelerators"][0]["acceleratorType"],
        "nvidia-tesla-t4"
    );
    assert_eq!(gpu["config"]["accelerators"][0]["acceleratorCount"], "1");
    assert_eq!(
        gpu["config"]["accelerators"][0]["gpuDriverInstallationConfig"]["gpuDriverVersion"],
        "DEFAULT"
    );
    assert_eq!(gpu["config"]["taints"][0]["key"], "nvidia.com/gpu");
    assert_eq!(gpu["config"]["taints"][0]["effect"], "NO_SCHEDULE");
    assert_eq!(gpu["config"]["spot"], true);
    assert_eq!(gpu["config"]["labels"]["qhub.dev/node-group"], "gpu");
    // The config's counts are the pool's totals, never per zone.
    assert_eq!(gpu["autoscaling"]["totalMaxNodeCount"], 2);
    assert!(gpu["autoscaling"].get("maxNodeCount").is_none());
    assert!(
        gpu["autoscaling"].get("totalMinNodeCount").is_none()
            || gpu["autoscaling"]["totalMinNodeCount"] == 0
    );
    // Every zone of the region that offers the T4 (Compute's accelerator list).
    assert_eq!(
        gpu["locations"],
        serde_json::json!([
            "us-central1-a",
            "us-central1-b",
            "us-central1-c",
            "us-central1-f"
        ])
    );
    assert_eq!(gpu["management"]["autoRepair"], true);
    assert_eq!(cluster["currentMasterVersion"], "1.33.5-gke.1201000");

    let stats = Arc::new(ApiStats::default());
    let p = Arc::new(provider(&emu, &config, stats.clone()));
    let r = deploy(p, &config).await;
    assert!(r.succeeded() && r.done.is_empty(), "{r:?}");
    eprintln!(
        "no-op deploy: {} calls: {:?}",
        stats.calls(),
        stats.by_operation()
    );
    assert_eq!(stats.mutating(), 0);

    let stats = Arc::new(ApiStats::default());
    let p = Arc::new(provider(&emu, &config, stats.clone()));
    let r = destroy(p, &config).await;
    assert!(r.succeeded(), "{:?}", r.failed);
    eprintln!(
        "destroy: {} calls ({} mutating, {} polls): {:?}",
        stats.calls(),
        stats.mutating(),
        qhub_gcp::client::polls(&stats),
        stats.by_operation()
    );
    assert_eq!(
        stats.mutating(),
        1,
        "one DeleteCluster removes the pools too"
    );
    assert!(census(&emu, &o).is_empty());
    assert_eq!(emu.counters().rejected, 0);
}

/// A NotFound names what was not found: an endpoint that refuses the location's
/// `ListOperations` (which a delete reads first, to wait for a running operation) answers 404
/// about the location, not about the cluster. The destroy must fail naming that call, never
/// report the cluster deleted without sending `DeleteCluster`.
#[tokio::test]
async fn a_not_found_list_of_operations_is_not_a_deleted_cluster() {
    let emu = GkeEmulator::start(Options::default()).await.unwrap();
    let config = gcp_config("refusedops");
    let o = Ownership::of(&config);
    let stats = Arc::new(ApiStats::default());
    let r = deploy(Arc::new(provider(&emu, &config, stats.clone())), &config).await;
    assert!(r.succeeded(), "{:?}", r.failed);
    assert_eq!(census(&emu, &o).get("cluster"), Some(&1));

    emu.set_faults(Faults {
        not_found_routes: vec!["GET operations".into()],
        ..Faults::default()
    });
    let stats = Arc::new(ApiStats::default());
    let r = destroy(Arc::new(provider(&emu, &config, stats.clone())), &config).await;
    eprintln!("destroy: done {:?}; failed {:?}", r.done, r.failed);
    assert!(
        !r.done.iter().any(|(id, _)| id.kind == "cluster"),
        "the cluster was reported deleted: {:?}",
        r.done
    );
    assert!(!r.succeeded());
    let (id, _, why) = r
        .failed
        .iter()
        .find(|(id, _, _)| id.kind == "cluster")
        .expect("the cluster's delete fails");
    assert!(
        why.contains("ListOperations") && why.contains(&format!("projects/{PROJECT}/locations/")),
        "{id}: {why}"
    );
    assert_eq!(stats.mutating(), 0, "{:?}", stats.by_operation());
    assert_eq!(census(&emu, &o).get("cluster"), Some(&1));

    // The endpoint answers again: the destroy finishes.
    emu.set_faults(Faults::default());
    let r = destroy(Arc::new(provider(&emu, &config, stats)), &config).await;
    assert!(r.succeeded(), "{:?}", r.failed);
    assert!(census(&emu, &o).is_empty());
}

#[tokio::test]
async fn faults_then_exactly_one_of_everything() {
    let emu = Arc::new(GkeEmulator::start(Options::default()).await.unwrap());
    let mut config = gpu_config("faulty");
    let o = Ownership::of(&config);
    let stats = Arc::new(ApiStats::default());
    // Die right after the first mutation (the cluster create is carried out, its answer lost).
    emu.set_faults(Faults {
        die_after: Some(0),
        ..Faults::default()
    });
    let p = Arc::new(Killable {
        inner: provider(&emu, &config, stats.clone()),
        emu: emu.clone(),
    });
    let r = deploy(p, &config).await;
    assert!(r.killed, "{r:?}");
    // Then 429s and 503s on a third of the calls: destroy what the dead run left, deploy
    // again, edit a pool.
    let faults = Faults {
        throttle_rate: 0.15,
        error_rate: 0.2,
        die_after: None,
        seed: 11,
        lost_rate: 0.0,
        ..Faults::default()
    };
    emu.set_faults(faults.clone());
    let r = destroy(Arc::new(provider(&emu, &config, stats.clone())), &config).await;
    assert!(r.succeeded(), "{:?}", r.failed);
    assert!(census(&emu, &o).is_empty());
    let r = deploy(Arc::new(provider(&emu, &config, stats.clone())), &config).await;
    assert!(r.succeeded(), "{:?}", r.failed);
    let mut retries = r.retries;
    config
        .google_cloud_platform
        .as_mut()
        .unwrap()
        .node_groups
        .get_mut("user")
        .unwrap()
        .max_nodes = 9;
    let r = deploy(Arc::new(provider(&emu, &config, stats.clone())), &config).await;
    assert!(r.succeeded(), "{:?}", r.failed);
    retries += r.retries;
    emu.set_faults(Faults::default());
    assert_eq!(census(&emu, &o), one_of_everything(4));
    let p = Arc::new(provider(&emu, &config, stats.clone()));
    let plan = engine(p).plan(&config, StageFilter::All).await.unwrap();
    assert!(plan.is_empty(), "{}", plan.render_text());
    let n = emu.counters();
    eprintln!("faults: {n:?}; engine retries {retries}");
    assert!(n.throttled + n.server_errors > 0, "faults were injected");
    assert_eq!(n.rejected, 0);
}

#[tokio::test]
async fn an_error_cluster_is_reported_then_replaced() {
    let emu = GkeEmulator::start(Options::default()).await.unwrap();
    let config = gcp_config("broken");
    let o = Ownership::of(&config);
    emu.fail_next(
        "CREATE_CLUSTER",
        "Insufficient regional quota to satisfy request: resource \"CPUS\"",
    );
    let stats = Arc::new(ApiStats::default());
    let r = deploy(Arc::new(provider(&emu, &config, stats.clone())), &config).await;
    assert!(!r.succeeded());
    let why = format!("{:?}", r.failed);
    assert!(
        why.contains("Insufficient regional quota"),
        "the operation's error is surfaced: {why}"
    );
    let p = provider(&emu, &config, stats.clone());
    let observed = p.observe(&o).await.unwrap();
    let state = observed[0].state.to_string();
    assert!(
        state.starts_with("failed") && state.contains("Insufficient regional quota"),
        "{state}"
    );
    // The next deploy repairs it: the failed cluster is replaced, with its pools.
    let p = Arc::new(provider(&emu, &config, stats.clone()));
    let plan = engine(p.clone())
        .plan(&config, StageFilter::All)
        .await
        .unwrap();
    assert!(
        plan.changes
            .iter()
            .any(|c| c.id.kind == "cluster" && c.action == qhub_core::plan::Action::Replace),
        "{}",
        plan.render_text()
    );
    let r = deploy(p, &config).await;
    assert!(r.succeeded(), "{:?}", r.failed);
    assert_eq!(census(&emu, &o), one_of_everything(3));
    let p = Arc::new(provider(&emu, &config, stats.clone()));
    assert!(
        engine(p)
            .plan(&config, StageFilter::All)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(emu.counters().rejected, 0);
}

#[tokio::test]
async fn preflight_names_every_problem_by_its_key() {
    let emu = GkeEmulator::start(Options {
        projects: Some(vec![PROJECT.into()]),
        ..Options::default()
    })
    .await
    .unwrap();
    let mut config = gpu_config("pre");
    let stats = Arc::new(ApiStats::default());
    let ok = provider(&emu, &config, stats.clone())
        .preflight(&config)
        .await;
    assert!(ok.is_ok(), "{ok:?}");

    // Keys GKE does not understand are warnings, named by their key.
    let mut odd = config.clone();
    let user = odd
        .google_cloud_platform
        .as_mut()
        .unwrap()
        .node_groups
        .get_mut("user")
        .unwrap();
    user.extra.insert("spott".into(), serde_json::json!(true));
    user.gpu = true;
    let warnings = provider(&emu, &odd, stats.clone())
        .preflight(&odd)
        .await
        .expect("warnings only")
        .warnings
        .join("\n");
    assert!(
        warnings.contains("google_cloud_platform.node_groups.user.spott"),
        "{warnings}"
    );
    assert!(
        warnings.contains("google_cloud_platform.node_groups.user.gpu"),
        "{warnings}"
    );

    let gcp = config.google_cloud_platform.as_mut().unwrap();
    gcp.kubernetes_version = "1.29".into();
    gcp.availability_zones = Some(vec!["europe-west1-b".into()]);
    gcp.node_groups.get_mut("gpu").unwrap().instance = "e2-standard-4".into();
    gcp.node_groups
        .get_mut("user")
        .unwrap()
        .extra
        .insert("preemptible".into(), serde_json::json!("yes"));
    let err = provider(&emu, &config, stats.clone())
        .preflight(&config)
        .await
        .unwrap_err()
        .to_string();
    for key in [
        "google_cloud_platform.kubernetes_version",
        "google_cloud_platform.availability_zones[0]",
        "google_cloud_platform.node_groups.gpu.guest_accelerators[0].name",
        "google_cloud_platform.node_groups.user.preemptible",
    ] {
        assert!(err.contains(key), "{key} missing from:\n{err}");
    }

    let mut config = gcp_config("pre");
    config.google_cloud_platform.as_mut().unwrap().project = "someone-else".into();
    let err = provider(&emu, &config, stats)
        .preflight(&config)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("google_cloud_platform.project"), "{err}");
}

/// GKE's real durations scaled down 1000× (a 7-minute cluster takes 0.42 s): a deploy takes
/// about the critical path (the one CreateCluster operation that carries every pool).
#[tokio::test]
async fn wall_time_with_scaled_latency_approaches_the_critical_path() {
    const SCALE: f64 = 0.001;
    let emu = GkeEmulator::start(Options {
        time_scale: SCALE,
        min_polls: 1,
        ..Options::default()
    })
    .await
    .unwrap();
    let config = gpu_config("timed");
    let stats = Arc::new(ApiStats::default());
    let p = || {
        Arc::new(
            qhub_gcp::GcpProvider::new(
                &config,
                qhub_gcp::GcpOptions {
                    endpoint: Some(emu.endpoint()),
                    credentials: qhub_gcp::CredentialSource::Anonymous,
                    poll_interval: Some(std::time::Duration::from_millis(20)),
                    stats: Some(stats.clone()),
                    ..Default::default()
                },
            )
            .unwrap(),
        )
    };
    let real = |op: &str| qhub_gke_emulator::state::real_seconds(op) * SCALE;

    let started = Instant::now();
    let r = deploy(p(), &config).await;
    let deploy_time = started.elapsed().as_secs_f64();
    assert!(r.succeeded(), "{:?}", r.failed);
    let deploy_bound = real("CREATE_CLUSTER");
    let deploy_calls = stats.calls();
    let deploy_polls = qhub_gcp::client::polls(&stats);

    let started = Instant::now();
    let r = destroy(p(), &config).await;
    let destroy_time = started.elapsed().as_secs_f64();
    assert!(r.succeeded(), "{:?}", r.failed);
    let destroy_bound = real("DELETE_CLUSTER");
    eprintln!(
        "scaled x{SCALE}: deploy {deploy_time:.3}s (critical path {deploy_bound:.3}s; {deploy_calls} calls, {deploy_polls} polls), destroy {destroy_time:.3}s (critical path {destroy_bound:.3}s; {} calls, {} polls)",
        stats.calls() - deploy_calls,
        qhub_gcp::client::polls(&stats) - deploy_polls,
    );
    // Overhead: one poll interval per operation plus the engine's own work; generous, so a
    // busy CI machine does not fail it (the call structure is asserted elsewhere).
    assert!(
        deploy_time < deploy_bound * 2.0 + 0.5,
        "deploy {deploy_time:.3}s"
    );
    // The pools go with the cluster: one DeleteCluster operation is the whole destroy.
    assert!(
        destroy_time < destroy_bound * 2.0 + 0.5,
        "destroy {destroy_time:.3}s"
    );
    assert_eq!(emu.counters().rejected, 0);
}

/// GKE upgrades clusters by itself: a cluster ahead of `kubernetes_version` is no drift; a
/// config asking for more than the cluster runs upgrades the control plane.
#[tokio::test]
async fn versions_follow_gke_upgrades_and_config_upgrades() {
    let emu = GkeEmulator::start(Options::default()).await.unwrap();
    let mut config = gcp_config("versions");
    config
        .google_cloud_platform
        .as_mut()
        .unwrap()
        .kubernetes_version = "1.32".into();
    let stats = Arc::new(ApiStats::default());
    let p = || Arc::new(provider(&emu, &config, stats.clone()));
    let r = deploy(p(), &config).await;
    assert!(r.succeeded(), "{:?}", r.failed);
    let version = |emu: &GkeEmulator| emu.clusters()[0].2["currentMasterVersion"].clone();
    assert_eq!(version(&emu), "1.32.9-gke.1108000");

    // The config asks for 1.33: one UpdateCluster upgrades the control plane.
    config
        .google_cloud_platform
        .as_mut()
        .unwrap()
        .kubernetes_version = "1.33".into();
    let p = || Arc::new(provider(&emu, &config, stats.clone()));
    let plan = engine(p()).plan(&config, StageFilter::All).await.unwrap();
    let s = plan.summary();
    assert_eq!(
        (s.create, s.update, s.replace, s.delete),
        (0, 1, 0, 0),
        "{}",
        plan.render_text()
    );
    let r = deploy(p(), &config).await;
    assert!(r.succeeded(), "{:?}", r.failed);
    assert_eq!(version(&emu), "1.33.5-gke.1201000");

    // GKE moves the cluster to 1.34 by itself: not drift, no change planned.
    assert!(emu.auto_upgrade(PROJECT, "us-central1", "versions-dev", "1.34.1-gke.1431000"));
    let plan = engine(p()).plan(&config, StageFilter::All).await.unwrap();
    assert!(plan.is_empty(), "{}", plan.render_text());
    assert_eq!(emu.counters().rejected, 0);
}

/// Killed in the middle of every node pool edit of a deploy (the operation keeps running on
/// GKE), then deployed again: the re-deploy waits for what runs instead of colliding with it.
#[tokio::test]
async fn interrupted_edits_then_redeploy_collide_with_nothing() {
    let emu = Arc::new(GkeEmulator::start(Options::default()).await.unwrap());
    let mut config = gpu_config("edits");
    let o = Ownership::of(&config);
    let stats = Arc::new(ApiStats::default());
    let r = deploy(Arc::new(provider(&emu, &config, stats.clone())), &config).await;
    assert!(r.succeeded(), "{:?}", r.failed);
    // Slow operations, so that a killed run leaves one running.
    emu.set_timing(2, 0.002);
    for n in 0..4u64 {
        for g in config
            .google_cloud_platform
            .as_mut()
            .unwrap()
            .node_groups
            .values_mut()
        {
            g.max_nodes += 1;
        }
        emu.set_faults(Faults {
            die_after: Some(n),
            ..Faults::default()
        });
        let killed = deploy(
            Arc::new(Killable {
                inner: provider(&emu, &config, stats.clone()),
                emu: emu.clone(),
            }),
            &config,
        )
        .await;
        assert!(killed.killed, "interruption {n}: {killed:?}");
        emu.set_faults(Faults::default());
        let r = deploy(Arc::new(provider(&emu, &config, stats.clone())), &config).await;
        assert!(r.succeeded(), "after interruption {n}: {:?}", r.failed);
        let plan = engine(Arc::new(provider(&emu, &config, stats.clone())))
            .plan(&config, StageFilter::All)
            .await
            .unwrap();
        assert!(plan.is_empty(), "{}", plan.render_text());
    }
    assert_eq!(census(&emu, &o), one_of_everything(4));
    assert_eq!(emu.counters().rejected, 0, "{:?}", emu.counters());
}

/// Moving the deployment to another region replaces the cluster, and the old one is deleted
/// where it is (observe looks in every location of the project).
#[tokio::test]
async fn a_region_change_replaces_the_cluster_where_it_was() {
    let emu = GkeEmulator::start(Options::default()).await.unwrap();
    let mut config = gcp_config("moving");
    let o = Ownership::of(&config);
    let stats = Arc::new(ApiStats::default());
    let r = deploy(Arc::new(provider(&emu, &config, stats.clone())), &config).await;
    assert!(r.succeeded(), "{:?}", r.failed);
    config.google_cloud_platform.as_mut().unwrap().region = "us-east1".into();
    let p = || Arc::new(provider(&emu, &config, stats.clone()));
    let plan = engine(p()).plan(&config, StageFilter::All).await.unwrap();
    assert!(
        plan.changes
            .iter()
            .any(|c| c.id.kind == "cluster" && c.action == qhub_core::plan::Action::Replace),
        "{}",
        plan.render_text()
    );
    let r = deploy(p(), &config).await;
    assert!(r.succeeded(), "{:?}", r.failed);
    let clusters = emu.clusters();
    assert_eq!(clusters.len(), 1, "the old cluster is gone");
    assert_eq!(clusters[0].1, "us-east1");
    assert_eq!(census(&emu, &o), one_of_everything(3));
    let r = destroy(p(), &config).await;
    assert!(r.succeeded(), "{:?}", r.failed);
    assert!(emu.clusters().is_empty());
}

/// A running cluster GKE reports in ERROR later is repaired by the next deploy (replaced with
/// its pools).
#[tokio::test]
async fn a_cluster_that_went_to_error_is_repaired() {
    let emu = GkeEmulator::start(Options::default()).await.unwrap();
    let config = gcp_config("erring");
    let o = Ownership::of(&config);
    let stats = Arc::new(ApiStats::default());
    let p = || Arc::new(provider(&emu, &config, stats.clone()));
    let r = deploy(p(), &config).await;
    assert!(r.succeeded(), "{:?}", r.failed);
    assert!(emu.set_cluster_status(PROJECT, "us-central1", "erring-dev", "ERROR"));
    let plan = engine(p()).plan(&config, StageFilter::All).await.unwrap();
    let repair = plan
        .changes
        .iter()
        .find(|c| c.id.kind == "cluster")
        .expect("the cluster is planned");
    assert_eq!(repair.action, qhub_core::plan::Action::Replace);
    let r = deploy(p(), &config).await;
    assert!(r.succeeded(), "{:?}", r.failed);
    assert_eq!(census(&emu, &o), one_of_everything(3));
    assert!(
        engine(p())
            .plan(&config, StageFilter::All)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(emu.counters().rejected, 0);
}

/// Issue #13 on GKE: 30% of requests refused with 503 UNAVAILABLE and 10% of the mutations'
/// answers lost after they were carried out, on every call, three seeds: preflight, deploy,
/// an empty plan, destroy and the "nothing remains" check each succeed the first time, with
/// exactly one of everything and nothing left; never an operation refused as busy.
#[tokio::test]
async fn deploy_and_destroy_ride_out_30_percent_refused_and_10_percent_lost() {
    let emu = GkeEmulator::start(Options::default()).await.unwrap();
    let run = |project: String, faults: Faults| {
        let config = gcp_config(&project);
        emu.set_faults(faults);
        let before = emu.counters();
        let stats = Arc::new(ApiStats::default());
        let p: Arc<dyn Provider> = Arc::new(provider(&emu, &config, stats.clone()));
        let emu = &emu;
        async move {
            let e = engine(p.clone());
            let started = Instant::now();
            let o = Ownership::of(&config);
            let d = conformance::deploy_like_the_cli(&*p, &e, &config)
                .await
                .unwrap_or_else(|e| panic!("{project}: {e}"));
            assert_eq!(census(emu, &o), one_of_everything(3), "{project}");
            let x = conformance::destroy_like_the_cli(&e, &config)
                .await
                .unwrap_or_else(|e| panic!("{project}: {e}"));
            assert!(census(emu, &o).is_empty(), "{project}");
            let n = emu.counters();
            (
                n.requests - before.requests,
                n.server_errors - before.server_errors,
                n.lost - before.lost,
                stats.retries(),
                d.retries + x.retries,
                stats.longest_chain(),
                started.elapsed(),
            )
        }
    };
    let calm = run("calm".to_string(), Faults::default()).await;
    let mut lost_in_all = 0;
    for seed in [1302, 1307, 1311] {
        let (requests, refused, lost, call_retries, engine_retries, chain, elapsed) = run(
            format!("storm{seed}"),
            Faults {
                error_rate: 0.3,
                lost_rate: 0.1,
                seed,
                ..Faults::default()
            },
        )
        .await;
        eprintln!(
            "GKE seed {seed}: {requests} requests, {refused} refused, {lost} answers lost, \
             {call_retries} call retries, {engine_retries} engine retries, longest chain \
             {chain} attempts, {:.2}s (fault-free: {} requests, {:.2}s)",
            elapsed.as_secs_f64(),
            calm.0,
            calm.6.as_secs_f64()
        );
        // Otherwise the storm did not happen and this test could not fail.
        assert!(refused > 0, "seed {seed}");
        lost_in_all += lost;
    }
    // A deploy and a destroy make few mutations here (the pools come with the cluster), so
    // 10% of them lose no answer under most seeds: these seeds each lose one (requests are
    // sent one at a time, so a seed's draws land on the same requests every run; a change
    // in the number of calls moves the draws: pick seeds that lose one again).
    assert!(lost_in_all > 0, "no answer was lost");
    assert_eq!(emu.counters().rejected, 0, "{:?}", emu.counters());
}
