//! The S3 deploy lock against moto (`moto_server`, PyPI `moto[server]`), over loopback only:
//! two engines with different holder identities and no shared lock folder stand for two CI
//! runners on different machines.
//!
//! The moto binary comes from `$QHUB_MOTO_SERVER` or `<workspace>/.venv/bin/moto_server`
//! (`scripts/test` installs it). Without it these tests fail, loudly.

use std::sync::Arc;
use std::time::Duration;

mod common;

use aws_sdk_s3::primitives::ByteStream;
use qhub_aws::lock::{bucket_name, object_key};
use qhub_aws::{ApiStats, AwsOptions, AwsProvider};
use qhub_core::Config;
use qhub_core::cloud::lock::LockRecord;
use qhub_core::conformance;
use qhub_core::engine::{Engine, EngineOptions, StageFilter};
use qhub_core::kubernetes::lease::LeaseTiming;
use qhub_core::provider::Ownership;
use qhub_tests::moto::{Moto, REGION};
use tokio_util::sync::CancellationToken;

use common::{aws_config, census, one_of_everything_on_bare_moto};

/// moto's account.
const ACCOUNT: &str = "123456789012";

/// A short lease, so that expiry is seconds, not minutes.
fn timing() -> LeaseTiming {
    LeaseTiming {
        duration: Duration::from_secs(3),
        renew_every: Duration::from_millis(500),
        lost_after: Duration::from_secs(2),
    }
}

/// A CI runner: its own provider (no lock folder), its own holder identity.
fn runner(moto: &Moto, config: &Config, name: &str, wait: Duration) -> Engine {
    counted_runner(moto, config, name, wait, Arc::default())
}

/// [`runner`], counting its API calls in `stats`.
fn counted_runner(
    moto: &Moto,
    config: &Config,
    name: &str,
    wait: Duration,
    stats: Arc<ApiStats>,
) -> Engine {
    let provider = AwsProvider::new(
        config,
        AwsOptions {
            endpoint: Some(moto.endpoint()),
            credentials: Some(("testing".into(), "testing".into())),
            stats: Some(stats),
            poll_interval: Some(Duration::from_millis(10)),
            retry: Some(conformance::test_policy()),
            s3_lock: true,
            ..AwsOptions::default()
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
            // Another host: never "a dead process of this machine".
            holder: format!("qhub@{name}/-/1/00000000000000{name:0>2}"),
            ..EngineOptions::default()
        },
    )
}

async fn s3(moto: &Moto) -> aws_sdk_s3::Client {
    let sdk = common::sdk(&moto.endpoint()).await;
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    )
}

/// The lock buckets moto holds, with their keys.
async fn lock_buckets(s3: &aws_sdk_s3::Client) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for b in s3.list_buckets().send().await.unwrap().buckets() {
        let name = b.name().unwrap_or_default().to_string();
        if !name.starts_with(qhub_aws::lock::BUCKET_PREFIX) {
            continue;
        }
        let keys = s3
            .list_objects_v2()
            .bucket(&name)
            .send()
            .await
            .unwrap()
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect();
        out.push((name, keys));
    }
    out
}

async fn record(s3: &aws_sdk_s3::Client, prefix: &str) -> Option<LockRecord> {
    let got = s3
        .get_object()
        .bucket(bucket_name(ACCOUNT, REGION))
        .key(object_key(prefix))
        .send()
        .await
        .ok()?;
    let body = got.body.collect().await.ok()?.into_bytes();
    serde_json::from_slice(&body).ok()
}

/// The lock conditions this provider relies on, checked on the emulator itself, so that an
/// emulator regression (an older moto answered 500) shows as what it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_honours_s3_conditional_writes() {
    let moto = Moto::start();
    let s3 = s3(&moto).await;
    s3.create_bucket()
        .bucket("qhub-conditions")
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(REGION))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let put = |body: &'static str| {
        s3.put_object()
            .bucket("qhub-conditions")
            .key("k")
            .body(ByteStream::from_static(body.as_bytes()))
    };
    fn status<E>(
        e: &aws_sdk_s3::error::SdkError<E, aws_smithy_runtime_api::http::Response>,
    ) -> Option<u16> {
        e.raw_response().map(|r| r.status().as_u16())
    }
    let first = put("1").if_none_match("*").send().await.expect("create");
    let again = put("2").if_none_match("*").send().await.unwrap_err();
    assert_eq!(
        status(&again),
        Some(412),
        "If-None-Match on an existing key: {again:?}"
    );
    let etag = first.e_tag().unwrap().to_string();
    let second = put("2").if_match(&etag).send().await.expect("replace");
    let stale = put("3").if_match(&etag).send().await.unwrap_err();
    assert_eq!(
        status(&stale),
        Some(412),
        "If-Match with a stale ETag: {stale:?}"
    );
    let gone = s3
        .delete_object()
        .bucket("qhub-conditions")
        .key("k")
        .if_match(&etag)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        status(&gone),
        Some(412),
        "DeleteObject If-Match stale: {gone:?}"
    );
    s3.delete_object()
        .bucket("qhub-conditions")
        .key("k")
        .if_match(second.e_tag().unwrap())
        .send()
        .await
        .expect("delete with the current ETag");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_runner_waits_for_the_cloud_lock() {
    let moto = Moto::start();
    let s3 = s3(&moto).await;
    let config = aws_config("locked");
    let o = Ownership::of(&config);
    let (a_stats, b_stats) = (Arc::new(ApiStats::default()), Arc::new(ApiStats::default()));
    let a = counted_runner(
        &moto,
        &config,
        "a",
        Duration::from_secs(120),
        a_stats.clone(),
    );
    let b = counted_runner(
        &moto,
        &config,
        "b",
        Duration::from_secs(120),
        b_stats.clone(),
    );
    let seen = conformance::second_runner_waits(
        a,
        b,
        &config,
        "qhub@a/-/1/000000000000000a",
        async || record(&s3, &o.prefix()).await.map(|r| r.holder),
        || (),
    )
    .await
    .expect("two runners, one lock");
    assert_eq!(
        seen.lock,
        format!("s3://{}/qhub/locked-dev.lock", bucket_name(ACCOUNT, REGION))
    );
    eprintln!(
        "A deployed in {:.1?}; B waited and finished {:.1?} after it started ({} lock-wait events)",
        seen.a_time, seen.b_time, seen.waits
    );
    // The lock's calls (S3, and STS for the account), by operation name.
    let lock_calls = |stats: &ApiStats| {
        stats
            .by_operation()
            .into_iter()
            .filter(|(op, _)| {
                let op = op.to_ascii_lowercase();
                op.starts_with("s3.") || op.starts_with("sts.")
            })
            .map(|(op, n)| (op.rsplit('.').next().unwrap_or_default().to_string(), n))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    eprintln!("lock calls of A: {:?}", lock_calls(&a_stats));
    eprintln!("lock calls of B: {:?}", lock_calls(&b_stats));
    // B: a read per poll while it waited (at least one, then the free lock's); one release.
    let b_ops = lock_calls(&b_stats);
    // One create, then one renewal per 500 ms it held the lock.
    assert!(b_ops.get("PutObject").is_some_and(|n| *n >= 1), "{b_ops:?}");
    assert_eq!(b_ops.get("DeleteObject"), Some(&1), "{b_ops:?}");
    assert!(b_ops.get("GetObject").is_some_and(|n| *n >= 2), "{b_ops:?}");
    assert_eq!(
        census(&common::sdk(&moto.endpoint()).await, &o).await,
        one_of_everything_on_bare_moto()
    );
    // Both released: the bucket stays (a deploy keeps it), the lock object is gone.
    assert_eq!(
        lock_buckets(&s3).await,
        vec![(bucket_name(ACCOUNT, REGION), Vec::<String>::new())]
    );
    let tags = s3
        .get_bucket_tagging()
        .bucket(bucket_name(ACCOUNT, REGION))
        .send()
        .await
        .unwrap();
    assert!(
        tags.tag_set()
            .iter()
            .any(|t| t.key() == "qhub-managed-by" && t.value() == "qhub-rs"),
        "{tags:?}"
    );

    // A destroy removes everything, the lock bucket included.
    let destroyer = runner(&moto, &config, "c", Duration::from_secs(30));
    let (_, r) = destroyer
        .destroy(
            &config,
            StageFilter::All,
            Arc::new(qhub_core::events::NoEvents),
            CancellationToken::new(),
        )
        .await
        .expect("destroy");
    assert!(r.succeeded(), "{r:?}");
    assert!(
        census(&common::sdk(&moto.endpoint()).await, &o)
            .await
            .is_empty()
    );
    assert!(
        lock_buckets(&s3).await.is_empty(),
        "{:?}",
        lock_buckets(&s3).await
    );
}

/// Writes `body` straight into the lock bucket as another runner's record.
async fn plant(moto: &Moto, config: &Config, body: Vec<u8>) {
    // The bucket comes from a run that took and released the lock.
    let e = runner(moto, config, "p", Duration::ZERO);
    e.lock(config).await.expect("lock").release().await;
    s3(moto)
        .await
        .put_object()
        .bucket(bucket_name(ACCOUNT, REGION))
        .key(object_key(&Ownership::of(config).prefix()))
        .body(ByteStream::from(body))
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crashed_holder_is_taken_over_and_a_live_one_never_is() {
    let moto = Moto::start();
    let s3 = s3(&moto).await;
    let config = aws_config("crashed");
    let prefix = Ownership::of(&config).prefix();
    let seen = conformance::crashed_holder_is_taken_over(
        |name, wait| runner(&moto, &config, name, wait),
        &config,
        timing().duration,
        async |body| plant(&moto, &config, body).await,
        async || record(&s3, &prefix).await.map(|r| r.holder),
    )
    .await
    .expect("the takeover rules hold on S3");
    eprintln!(
        "took over a long-expired record in {:.2?}, a fresh never renewed one after {:.2?}; gave up on a live holder after {:.2?}",
        seen.long_expired, seen.never_renewed, seen.gave_up_after
    );
}
