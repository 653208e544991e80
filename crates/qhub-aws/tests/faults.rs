//! `qhub-aws` against moto with API-level faults injected by a loopback proxy in front of it
//! ([`qhub_tests::fault_proxy`]): throttling and 5xx must be survived, and lost responses (the
//! proxy forwards a mutating request, moto carries it out, the proxy answers 503) must create
//! no duplicates. Every count is taken straight from moto, never through the proxy.
//!
//! The moto binary comes from `$QHUB_MOTO_SERVER` or `<workspace>/.venv/bin/moto_server`.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use qhub_aws::{ApiStats, AwsError, AwsOptions, AwsProvider};
use qhub_core::Config;
use qhub_core::engine::events::NoEvents;
use qhub_core::engine::{ApplyReport, StageFilter};
use qhub_core::provider::{Ownership, Provider};
use qhub_tests::fault_proxy::{FaultCounts, FaultPlan, FaultProxy};
use qhub_tests::moto::Moto;
use tokio_util::sync::CancellationToken;

use common::{aws_config, census, engine, one_of_everything};

/// Deploys or destroys re-run until one succeeds, at most this many times.
const MAX_RUNS: usize = 5;

/// The operations that create a resource the census counts: a duplicate of one of these is
/// what a lost response must not cause.
const CREATES: &[&str] = &[
    "CreateVpc",
    "CreateSubnet",
    "CreateInternetGateway",
    "CreateRouteTable",
    "CreateSecurityGroup",
    "CreateRole",
    "CreateCluster",
    "CreateNodegroup",
    "CreateFileSystem",
    "CreateMountTarget",
];

fn provider(config: &Config, proxy: &FaultProxy, stats: Arc<ApiStats>) -> Arc<dyn Provider> {
    Arc::new(
        AwsProvider::new(
            config,
            AwsOptions {
                endpoint: Some(proxy.endpoint()),
                credentials: Some(("testing".into(), "testing".into())),
                stats: Some(stats),
                poll_interval: Some(Duration::from_millis(10)),
                ..AwsOptions::default()
            },
        )
        .expect("provider"),
    )
}

/// One deploy (or destroy) through the engine; a plan that fails (observe gave up) is an `Err`.
async fn run_once(
    p: Arc<dyn Provider>,
    config: &Config,
    destroy: bool,
) -> Result<ApplyReport, String> {
    let e = engine(p);
    let sink = Arc::new(NoEvents);
    let cancel = CancellationToken::new();
    if destroy {
        e.destroy(config, StageFilter::All, sink, cancel).await
    } else {
        e.deploy(config, StageFilter::All, sink, cancel).await
    }
    .map(|(_, report)| report)
    .map_err(|e| e.to_string())
}

/// What converging took.
#[derive(Debug, Default)]
struct Outcome {
    runs: usize,
    retries: u32,
    failures: Vec<String>,
    elapsed: Duration,
}

/// Deploys (or destroys) until a run succeeds, at most [`MAX_RUNS`] times.
async fn converge(config: &Config, proxy: &FaultProxy, destroy: bool) -> Outcome {
    let what = if destroy { "destroy" } else { "deploy" };
    let start = Instant::now();
    let mut out = Outcome::default();
    for run in 1..=MAX_RUNS {
        out.runs = run;
        let p = provider(config, proxy, Arc::new(ApiStats::default()));
        match run_once(p, config, destroy).await {
            Ok(r) => {
                out.retries += r.retries;
                if r.succeeded() {
                    out.elapsed = start.elapsed();
                    return out;
                }
                let failed: Vec<String> = r
                    .failed
                    .iter()
                    .map(|(id, action, e)| format!("{} {id}: {e}", action.symbol()))
                    .collect();
                eprintln!("{what} run {run} failed: {failed:#?}");
                out.failures.extend(failed);
            }
            Err(e) => {
                eprintln!("{what} run {run}: plan failed: {e}");
                out.failures.push(format!("plan: {e}"));
            }
        }
    }
    panic!(
        "{what} did not converge in {MAX_RUNS} runs: {:#?}; proxy: {:?}",
        out.failures,
        proxy.counts()
    );
}

fn lost_creates(c: &FaultCounts) -> BTreeMap<String, u64> {
    c.lost_by_operation
        .iter()
        .filter(|(op, _)| CREATES.contains(&op.as_str()))
        .map(|(op, n)| (op.clone(), *n))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn throttling_and_5xx_are_survived() {
    let moto = Moto::start();
    let plan = FaultPlan {
        seed: 20,
        throttle: 0.15,
        server_error: 0.10,
        lost: 0.0,
    };
    let proxy = FaultProxy::in_front_of(&moto, plan).await.expect("proxy");
    let config = aws_config("faults");
    let o = Ownership::of(&config);
    let sdk = common::sdk(&moto.endpoint()).await;

    let deployed = converge(&config, &proxy, false).await;
    let after_deploy = proxy.counts();
    assert_eq!(census(&sdk, &o).await, one_of_everything());

    proxy.reset_counts();
    let destroyed = converge(&config, &proxy, true).await;
    let after_destroy = proxy.counts();
    let left = census(&sdk, &o).await;
    assert!(left.is_empty(), "destroy left {left:?}");

    for (what, out, c) in [
        ("deploy", &deployed, &after_deploy),
        ("destroy", &destroyed, &after_destroy),
    ] {
        eprintln!(
            "{what}: {} requests, {} faults injected ({} throttled, {} 5xx), {} run(s), \
             {} engine retries, {:?}",
            c.seen,
            c.injected(),
            c.throttled,
            c.server_errors,
            out.runs,
            out.retries,
            out.elapsed
        );
        assert!(c.throttled > 0 && c.server_errors > 0, "{what}: {c:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lost_responses_create_no_duplicates() {
    let moto = Moto::start();
    let plan = FaultPlan {
        seed: 7,
        throttle: 0.0,
        server_error: 0.0,
        lost: 0.4,
    };
    let proxy = FaultProxy::in_front_of(&moto, plan).await.expect("proxy");
    let config = aws_config("lost");
    let o = Ownership::of(&config);
    let sdk = common::sdk(&moto.endpoint()).await;

    let deployed = converge(&config, &proxy, false).await;
    let after_deploy = proxy.counts();
    let lost = lost_creates(&after_deploy);
    eprintln!(
        "deploy: {} requests, {} lost responses, {} run(s), {} engine retries, {:?}; \
         lost by operation: {:?}",
        after_deploy.seen,
        after_deploy.lost,
        deployed.runs,
        deployed.retries,
        deployed.elapsed,
        after_deploy.lost_by_operation
    );
    // Otherwise this test could not fail.
    assert!(
        !lost.is_empty(),
        "no create lost its response: {after_deploy:?}"
    );
    let sent: BTreeMap<&String, &u64> = after_deploy
        .by_operation
        .iter()
        .filter(|(op, _)| CREATES.contains(&op.as_str()))
        .collect();
    assert_eq!(
        census(&sdk, &o).await,
        one_of_everything(),
        "lost responses to {lost:?}; creates sent (SDK attempts included): {sent:?}"
    );

    proxy.reset_counts();
    let destroyed = converge(&config, &proxy, true).await;
    let after_destroy = proxy.counts();
    eprintln!(
        "destroy: {} requests, {} lost responses, {} run(s), {} engine retries, {:?}; \
         lost by operation: {:?}",
        after_destroy.seen,
        after_destroy.lost,
        destroyed.runs,
        destroyed.retries,
        destroyed.elapsed,
        after_destroy.lost_by_operation
    );
    assert!(after_destroy.lost > 0, "{after_destroy:?}");
    let left = census(&sdk, &o).await;
    assert!(left.is_empty(), "destroy left {left:?}");
}

/// Checks one injected error: the SDK retried it (so it classifies it as retryable), and what
/// is left after its retries maps to a retryable error for the engine. Returns the code.
fn check<E>(
    proxy: &FaultProxy,
    op: &'static str,
    r: Result<impl Sized, SdkError<E, HttpResponse>>,
) -> String
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let err = match r {
        Ok(_) => panic!("{op} succeeded through a proxy failing every request"),
        Err(e) => AwsError::from_sdk(op, e),
    };
    let seen = proxy.counts().seen;
    assert_eq!(seen, 3, "{op}: the SDK did not retry {err:?}");
    assert!(err.is_retryable(), "{op}: not retryable: {err:?}");
    assert!(
        err.clone().into_provider(true).is_retryable(),
        "{op}: {err:?}"
    );
    format!(
        "{}/{}",
        err.status.unwrap_or(0),
        err.code.unwrap_or_default()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn injected_faults_are_classified_retryable() {
    let moto = Moto::start();
    let proxy = FaultProxy::in_front_of(&moto, FaultPlan::none())
        .await
        .expect("proxy");
    let sdk = common::sdk(&proxy.endpoint())
        .await
        .into_builder()
        .retry_config(
            aws_config::retry::RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(1)),
        )
        .build();
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let iam = aws_sdk_iam::Client::new(&sdk);
    let eks = aws_sdk_eks::Client::new(&sdk);
    let efs = aws_sdk_efs::Client::new(&sdk);
    let sts = aws_sdk_sts::Client::new(&sdk);
    let throttle = FaultPlan {
        throttle: 1.0,
        ..FaultPlan::none()
    };
    let unavailable = FaultPlan {
        server_error: 1.0,
        ..FaultPlan::none()
    };
    for (name, plan) in [("throttling", throttle), ("5xx", unavailable)] {
        proxy.set_plan(plan);
        let mut codes = Vec::new();
        proxy.reset_counts();
        codes.push(check(
            &proxy,
            "DescribeVpcs",
            ec2.describe_vpcs().send().await,
        ));
        proxy.reset_counts();
        codes.push(check(&proxy, "ListRoles", iam.list_roles().send().await));
        proxy.reset_counts();
        codes.push(check(
            &proxy,
            "GetCallerIdentity",
            sts.get_caller_identity().send().await,
        ));
        proxy.reset_counts();
        codes.push(check(
            &proxy,
            "ListClusters",
            eks.list_clusters().send().await,
        ));
        proxy.reset_counts();
        codes.push(check(
            &proxy,
            "DescribeFileSystems",
            efs.describe_file_systems().send().await,
        ));
        eprintln!("{name}: ec2, iam, sts, eks, efs answered {codes:?}");
    }
}
