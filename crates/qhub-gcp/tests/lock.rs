//! The Cloud Storage deploy lock against the GKE emulator's GCS subset, over loopback only:
//! two engines with different holder identities and no shared lock folder stand for two CI
//! runners on different machines. The emulator insists on a bearer token, for GCS as for GKE.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use qhub_core::Config;
use qhub_core::cloud::lock::LockRecord;
use qhub_core::conformance;
use qhub_core::engine::{Engine, EngineOptions, StageFilter};
use qhub_core::events::NoEvents;
use qhub_core::kubernetes::lease::LeaseTiming;
use qhub_core::provider::Ownership;
use qhub_gcp::lock::{bucket_name, object_name};
use qhub_gcp::{ApiStats, CredentialSource, GcpOptions, GcpProvider};
use qhub_gke_emulator::{Faults, GkeEmulator, Options};
use tokio_util::sync::CancellationToken;

use common::{PROJECT, census, gcp_config};

const TOKEN: &str = "ya29.qhub-lock-test-token";

/// A short lease, so that expiry is seconds, not minutes.
fn timing() -> LeaseTiming {
    LeaseTiming {
        duration: Duration::from_secs(3),
        renew_every: Duration::from_millis(500),
        lost_after: Duration::from_secs(2),
    }
}

async fn emulator() -> GkeEmulator {
    GkeEmulator::start(Options {
        token: Some(TOKEN.into()),
        ..Options::default()
    })
    .await
    .expect("emulator")
}

/// A CI runner: its own provider (no lock folder), its own holder identity, its calls
/// counted in `stats`.
fn runner(
    emu: &GkeEmulator,
    config: &Config,
    name: &str,
    wait: Duration,
    stats: Arc<ApiStats>,
) -> Engine {
    let provider = GcpProvider::new(
        config,
        GcpOptions {
            endpoint: Some(emu.endpoint()),
            credentials: CredentialSource::AccessToken(TOKEN.into()),
            poll_interval: Some(Duration::from_millis(1)),
            stats: Some(stats),
            retry: Some(conformance::test_policy()),
            gcs_lock: true,
            ..GcpOptions::default()
        },
    )
    .expect("provider");
    Engine::new(
        Arc::new(provider),
        EngineOptions {
            min_deadline: Duration::from_secs(120),
            observe_deadline: Duration::from_secs(60),
            lease: timing(),
            lock_wait: wait,
            retry: conformance::test_policy(),
            // Another host: never "a dead process of this machine".
            holder: format!("qhub@{name}/-/1/00000000000000{name:0>2}"),
            ..EngineOptions::default()
        },
    )
}

/// The lock record of `prefix`, read straight from the emulator.
fn record(emu: &GkeEmulator, prefix: &str) -> Option<LockRecord> {
    emu.object(&bucket_name(PROJECT), &object_name(prefix))
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// The buckets the emulator holds, with their object names.
fn buckets(emu: &GkeEmulator) -> Vec<(String, Vec<String>)> {
    emu.buckets()
        .into_iter()
        .map(|(name, _, objects)| (name, objects))
        .collect()
}

/// The Cloud Storage calls counted in `stats`, by operation.
fn gcs_calls(stats: &ApiStats) -> BTreeMap<String, u64> {
    stats
        .by_operation()
        .into_iter()
        .filter(|(op, _)| op.starts_with("storage."))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_runner_waits_for_the_cloud_lock() {
    let emu = emulator().await;
    let config = gcp_config("locked");
    let o = Ownership::of(&config);
    let (a_stats, b_stats) = (Arc::new(ApiStats::default()), Arc::new(ApiStats::default()));
    let a = runner(
        &emu,
        &config,
        "a",
        Duration::from_secs(120),
        a_stats.clone(),
    );
    let b = runner(
        &emu,
        &config,
        "b",
        Duration::from_secs(120),
        b_stats.clone(),
    );
    // A's cluster creation does not finish until B is seen waiting: GKE's operations stay
    // RUNNING however often A polls them.
    emu.set_timing(u32::MAX, 0.0);
    let seen = conformance::second_runner_waits(
        a,
        b,
        &config,
        "qhub@a/-/1/000000000000000a",
        async || record(&emu, &o.prefix()).map(|r| r.holder),
        // Now A's operation may finish.
        || emu.set_timing(Options::default().min_polls, 0.0),
    )
    .await
    .expect("two runners, one lock");
    assert_eq!(
        seen.lock,
        format!("gs://{}/qhub/locked-dev.lock", bucket_name(PROJECT))
    );
    eprintln!(
        "A deployed in {:.1?}; B waited and finished {:.1?} after it started ({} lock-wait events)",
        seen.a_time, seen.b_time, seen.waits
    );
    let (a_ops, b_ops) = (gcs_calls(&a_stats), gcs_calls(&b_stats));
    eprintln!("Cloud Storage calls of A: {a_ops:?}");
    eprintln!("Cloud Storage calls of B: {b_ops:?}");
    // A made the bucket: a failed upload (no bucket), the bucket, the upload, renewals.
    assert_eq!(a_ops.get("storage.buckets.insert"), Some(&1), "{a_ops:?}");
    assert_eq!(a_ops.get("storage.objects.delete"), Some(&1), "{a_ops:?}");
    // B: a read per poll while it waited, then the free lock's; one create; one release.
    assert!(
        b_ops.get("storage.objects.get").is_some_and(|n| *n >= 2),
        "{b_ops:?}"
    );
    assert!(
        b_ops.get("storage.objects.insert").is_some_and(|n| *n >= 1),
        "{b_ops:?}"
    );
    assert_eq!(b_ops.get("storage.objects.delete"), Some(&1), "{b_ops:?}");
    assert_eq!(b_ops.get("storage.buckets.insert"), None, "{b_ops:?}");
    assert_eq!(
        census(&emu, &o),
        BTreeMap::from([("cluster".to_string(), 1), ("node_pool".to_string(), 3)])
    );
    assert_eq!(emu.counters().rejected, 0);
    // Both released: the bucket stays (a deploy keeps it), the lock object is gone. It is
    // labelled as qhub's, private and in the config's region.
    assert_eq!(buckets(&emu), vec![(bucket_name(PROJECT), Vec::new())]);
    let (_, labels, _) = emu.buckets().remove(0);
    assert_eq!(labels, qhub_gcp::lock::bucket_labels());
    let bucket = emu.bucket(&bucket_name(PROJECT)).unwrap();
    let iam = &bucket["iamConfiguration"];
    assert_eq!(iam["uniformBucketLevelAccess"]["enabled"], true);
    assert_eq!(iam["publicAccessPrevention"], "enforced");
    assert_eq!(bucket["softDeletePolicy"]["retentionDurationSeconds"], "0");
    assert_eq!(bucket["location"], "US-CENTRAL1");
    // Every request carried the token.
    assert_eq!(emu.counters().unauthenticated, 0);

    // A destroy removes everything, the lock bucket included.
    let destroyer = runner(&emu, &config, "c", Duration::from_secs(30), Arc::default());
    let (_, r) = destroyer
        .destroy(
            &config,
            StageFilter::All,
            Arc::new(NoEvents),
            CancellationToken::new(),
        )
        .await
        .expect("destroy");
    assert!(r.succeeded(), "{r:?}");
    assert!(census(&emu, &o).is_empty());
    assert!(buckets(&emu).is_empty(), "{:?}", buckets(&emu));
}

/// Writes `body` straight into the lock bucket as another runner's record.
async fn plant(emu: &GkeEmulator, config: &Config, body: Vec<u8>) {
    // The bucket comes from a run that took and released the lock.
    let e = runner(emu, config, "p", Duration::ZERO, Arc::default());
    e.lock(config).await.expect("lock").release().await;
    assert!(emu.put_object(
        &bucket_name(PROJECT),
        &object_name(&Ownership::of(config).prefix()),
        &body,
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crashed_holder_is_taken_over_and_a_live_one_never_is() {
    let emu = emulator().await;
    let config = gcp_config("crashed");
    let prefix = Ownership::of(&config).prefix();
    let seen = conformance::crashed_holder_is_taken_over(
        |name, wait| runner(&emu, &config, name, wait, Arc::default()),
        &config,
        timing().duration,
        async |body| plant(&emu, &config, body).await,
        async || record(&emu, &prefix).map(|r| r.holder),
    )
    .await
    .expect("the takeover rules hold on Cloud Storage");
    eprintln!(
        "took over a long-expired record in {:.2?}, a fresh never renewed one after {:.2?}; gave up on a live holder after {:.2?}",
        seen.long_expired, seen.never_renewed, seen.gave_up_after
    );
    assert!(
        seen.live_error.contains("gs://qhub-locks-"),
        "{}",
        seen.live_error
    );
}

/// Throttling reaches Cloud Storage like GKE: every lock call is retried through it, and the
/// lock is taken and released cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_rides_out_throttling() {
    let emu = emulator().await;
    let config = gcp_config("throttled");
    let prefix = Ownership::of(&config).prefix();
    emu.set_faults(Faults {
        throttle_rate: 0.5,
        seed: 7,
        ..Faults::default()
    });
    let stats = Arc::new(ApiStats::default());
    let e = runner(&emu, &config, "a", Duration::from_secs(30), stats.clone());
    for _ in 0..3 {
        let locked = e.lock(&config).await.expect("lock under throttling");
        assert_eq!(
            record(&emu, &prefix).unwrap().holder,
            "qhub@a/-/1/000000000000000a"
        );
        locked.release().await;
        assert!(record(&emu, &prefix).is_none(), "released");
    }
    let n = emu.counters();
    eprintln!(
        "3 lock/release rounds at 50% throttling: {} requests, {} throttled, calls {:?}",
        n.requests,
        n.throttled,
        gcs_calls(&stats)
    );
    assert!(n.throttled > 0, "{n:?}");
}

/// A wrong token is refused by Cloud Storage as by GKE, and the lock says so.
#[tokio::test]
async fn a_refused_token_fails_the_lock_naming_it() {
    let emu = emulator().await;
    let config = gcp_config("refused");
    let provider = GcpProvider::new(
        &config,
        GcpOptions {
            endpoint: Some(emu.endpoint()),
            credentials: CredentialSource::AccessToken("ya29.wrong".into()),
            retry: Some(conformance::test_policy()),
            gcs_lock: true,
            ..GcpOptions::default()
        },
    )
    .expect("provider");
    let e = Engine::new(Arc::new(provider), EngineOptions::default());
    let err = e.lock(&config).await.map(|_| ()).unwrap_err().to_string();
    assert!(
        err.contains("storage.objects.get") && err.contains("401"),
        "{err}"
    );
    assert!(!err.contains("ya29.wrong"), "{err}");
    assert!(emu.counters().unauthenticated > 0);
    assert!(emu.buckets().is_empty());
}

/// Eight runners reach for a free lock at once: GCS's `ifGenerationMatch=0` lets exactly one
/// create the object; the others see it held and (with no wait) fail naming the winner.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_eight_runners_racing_for_a_free_lock_exactly_one_wins() {
    let emu = emulator().await;
    let config = gcp_config("race");
    let prefix = Ownership::of(&config).prefix();
    // The bucket exists, so that every runner goes straight to the object.
    let e = runner(&emu, &config, "p", Duration::ZERO, Arc::default());
    e.lock(&config).await.expect("lock").release().await;
    let runners: Vec<Engine> = (0..8)
        .map(|i| {
            runner(
                &emu,
                &config,
                &format!("r{i}"),
                Duration::ZERO,
                Arc::default(),
            )
        })
        .collect();
    let start = Arc::new(tokio::sync::Barrier::new(runners.len()));
    let tried = Arc::new(tokio::sync::Barrier::new(runners.len()));
    let tasks: Vec<_> = runners
        .into_iter()
        .map(|r| {
            let (config, start, tried) = (config.clone(), start.clone(), tried.clone());
            tokio::spawn(async move {
                start.wait().await;
                let got = r.lock(&config).await;
                // A winner holds the lock until every runner has tried.
                tried.wait().await;
                match got {
                    Ok(held) => {
                        held.release().await;
                        Ok(())
                    }
                    Err(e) => Err(e.to_string()),
                }
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => won += 1,
            Err(e) => assert!(e.contains("held by qhub@r"), "{e}"),
        }
    }
    assert_eq!(won, 1, "exactly one runner holds the lock");
    assert!(record(&emu, &prefix).is_none(), "the winner released it");
}
