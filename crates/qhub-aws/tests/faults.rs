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
use qhub_core::conformance;
use qhub_core::engine::{ApplyReport, Engine, EngineOptions, StageFilter};
use qhub_core::events::NoEvents;
use qhub_core::provider::{Ownership, Provider};
use qhub_core::retry::{Budget, RetryPolicy};
use qhub_tests::fault_proxy::{FaultCounts, FaultPlan, FaultProxy};
use qhub_tests::moto::Moto;
use tokio_util::sync::CancellationToken;

use common::{aws_config, census, one_of_everything};

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
                retry: Some(storm_policy()),
                ..AwsOptions::default()
            },
        )
        .expect("provider"),
    )
}

/// An engine with [`storm_policy`] and deadlines generous enough for moto on a busy machine.
fn storm_engine(p: Arc<dyn Provider>) -> Engine {
    Engine::new(
        p,
        EngineOptions {
            retry: storm_policy(),
            min_deadline: Duration::from_secs(120),
            observe_deadline: Duration::from_secs(60),
            poll_interval: Duration::from_millis(200),
            ..EngineOptions::default()
        },
    )
}

/// One deploy (or destroy) through the engine; a plan that fails (observe gave up) is an `Err`.
async fn run_once(
    p: Arc<dyn Provider>,
    config: &Config,
    destroy: bool,
) -> Result<ApplyReport, String> {
    let e = storm_engine(p);
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

/// The production retry policy with millisecond backoffs: the same attempts and the same
/// time budgets, so a test exercises the budgets a user gets, minus the waiting.
fn storm_policy() -> RetryPolicy {
    let fast = |b: Budget| Budget {
        base: Duration::from_millis(1),
        cap: Duration::from_millis(25),
        ..b
    };
    let p = RetryPolicy::default();
    RetryPolicy {
        throttled: fast(p.throttled),
        transient: fast(p.transient),
        busy: fast(p.busy),
    }
}

/// What one `qhub deploy` + `qhub destroy` cost through the proxy.
#[derive(Debug)]
struct StormRun {
    seed: u64,
    requests: u64,
    refused: u64,
    lost: u64,
    call_retries: u64,
    engine_retries: u32,
    longest_chain: u64,
    elapsed: Duration,
}

/// Runs what `qhub deploy` then `qhub destroy` run, once each, through the proxy with `plan`
/// ([`conformance::deploy_like_the_cli`]: preflight, the plan and its apply, an empty plan;
/// [`conformance::destroy_like_the_cli`]: the destroy and the check that nothing remains).
/// Every step must succeed the first time: a deploy rides the storm out, it is never re-run.
/// Counts come from moto.
async fn storm(moto: &Moto, proxy: &FaultProxy, plan: FaultPlan, project: &str) -> StormRun {
    let config = aws_config(project);
    let o = Ownership::of(&config);
    let sdk = common::sdk(&moto.endpoint()).await;
    proxy.set_plan(plan);
    proxy.reset_counts();
    let stats = Arc::new(ApiStats::default());
    let p: Arc<dyn Provider> = Arc::new(
        AwsProvider::new(
            &config,
            AwsOptions {
                endpoint: Some(proxy.endpoint()),
                credentials: Some(("testing".into(), "testing".into())),
                stats: Some(stats.clone()),
                poll_interval: Some(Duration::from_millis(10)),
                retry: Some(storm_policy()),
                ..AwsOptions::default()
            },
        )
        .expect("provider"),
    );
    let e = storm_engine(p.clone());
    let seed = plan.seed;
    let started = Instant::now();
    let deployed = conformance::deploy_like_the_cli(&*p, &e, &config)
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: {e}; proxy {:?}", proxy.counts()));
    assert_eq!(
        census(&sdk, &o).await,
        one_of_everything(),
        "seed {seed}: lost answers to {:?}",
        proxy.counts().lost_by_operation
    );
    let destroyed = conformance::destroy_like_the_cli(&e, &config)
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    let left = census(&sdk, &o).await;
    assert!(left.is_empty(), "seed {seed}: destroy left {left:?}");
    let c = proxy.counts();
    StormRun {
        seed,
        requests: c.seen,
        refused: c.server_errors + c.throttled,
        lost: c.lost,
        call_retries: stats.retries(),
        engine_retries: deployed.retries + destroyed.retries,
        longest_chain: stats.longest_chain(),
        elapsed: started.elapsed(),
    }
}

/// Issue #13: 30% of requests refused with `ServiceUnavailable` and 10% of the mutating ones'
/// answers lost after they were carried out, on every call (preflight, observe, the apply's
/// reads, the destroy sweep, the "nothing remains" check), three seeds: deploy and destroy each
/// succeed in one run, with exactly one of everything and nothing left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deploy_and_destroy_ride_out_30_percent_refused_and_10_percent_lost() {
    let moto = Moto::start();
    let proxy = FaultProxy::in_front_of(&moto, FaultPlan::none())
        .await
        .expect("proxy");
    // The first run also warms moto up (it loads IAM's managed policies on first use).
    let warm = storm(&moto, &proxy, FaultPlan::none(), "warm").await;
    assert_eq!(warm.call_retries, 0, "{warm:?}");
    let calm = storm(&moto, &proxy, FaultPlan::none(), "calm").await;
    eprintln!("fault-free: {calm:?}");
    let mut runs = Vec::new();
    for seed in [1301, 1302, 1303] {
        let plan = FaultPlan {
            seed,
            throttle: 0.0,
            server_error: 0.3,
            lost: 0.1,
        };
        let run = storm(&moto, &proxy, plan, &format!("storm{seed}")).await;
        eprintln!(
            "seed {}: {} requests, {} refused, {} answers lost, {} call retries, \
             {} engine retries, longest chain {} attempts, {:.1}s (fault-free {:.1}s)",
            run.seed,
            run.requests,
            run.refused,
            run.lost,
            run.call_retries,
            run.engine_retries,
            run.longest_chain,
            run.elapsed.as_secs_f64(),
            calm.elapsed.as_secs_f64()
        );
        // Otherwise the storm did not happen and this test could not fail.
        assert!(run.refused * 5 > run.requests, "{run:?}");
        assert!(run.lost > 0 && run.call_retries > 0, "{run:?}");
        runs.push(run);
    }
    let longest = runs.iter().map(|r| r.longest_chain).max().unwrap_or(0);
    eprintln!("longest retry chain over all seeds: {longest} attempts");
}

/// The bound on the whole: a call that keeps failing is sent exactly as often as the policy's
/// budget allows, then fails for good, naming the call and how long it kept failing, and the
/// engine does not retry it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_that_keeps_failing_gives_up_naming_the_call() {
    let moto = Moto::start();
    let down = FaultPlan {
        server_error: 1.0,
        ..FaultPlan::none()
    };
    let proxy = FaultProxy::in_front_of(&moto, down).await.expect("proxy");
    let config = aws_config("down");
    let stats = Arc::new(ApiStats::default());
    let p = provider(&config, &proxy, stats.clone());
    let e = p.preflight(&config).await.expect_err("everything fails");
    let text = e.to_string();
    let attempts = storm_policy().transient.max_attempts;
    assert!(
        text.contains(&format!(
            "STS.GetCallerIdentity kept failing: gave up after {attempts} attempts"
        )),
        "{text}"
    );
    assert!(!e.is_retryable(), "{e:?}");
    assert_eq!(proxy.counts().seen, u64::from(attempts));
    assert_eq!(
        (stats.retries(), stats.gave_up()),
        (u64::from(attempts) - 1, 1)
    );

    // Through the engine: the plan's observe gives up the same way, once.
    proxy.reset_counts();
    let started = Instant::now();
    let err = run_once(p, &config, false).await.expect_err("plan fails");
    assert!(err.contains("kept failing: gave up after"), "{err}");
    assert_eq!(proxy.counts().seen, u64::from(attempts), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
}
