//! The provider conformance suite, for provider authors.
//!
//! Every [`Provider`] must pass it: against the sandbox, against each cloud's emulator, and
//! against your in-house provider. Implement [`Harness`] for your provider's test environment
//! (an emulator you can reset and inject faults into), then call [`run_all`] from a test:
//!
//! ```no_run
//! # async fn example(h: &dyn qhub_core::conformance::Harness) {
//! let report = qhub_core::conformance::run_all(h).await.expect("conformance");
//! // Every check ran; name the ones your harness cannot support (none here).
//! report.assert_skipped(&[]);
//! # }
//! ```
//!
//! The checks: the plan is deterministic; deploy then plan is empty (and a no-op deploy makes no
//! mutating call); an edit plans only updates; destroying nothing succeeds; destroy after a
//! deploy interrupted at every step leaves nothing; re-deploying after an interruption converges
//! without duplicates; retryable faults are survived; every call (preflight, plan, apply,
//! destroy, the "nothing remains" check) rides out a storm of 30% refused calls and 10% lost
//! answers; serial groups are honoured (no operation
//! rejected as busy); children created with their parent appear once; cluster facts reach the
//! Kubernetes stage; and, where the harness can inject them, a failed resource is repaired by the
//! next deploy and destroy works from a pending and from a failed resource. A check the
//! harness cannot support is reported as skipped, with why.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, NodeGroups, ProviderKind};
use crate::engine::{ApplyReport, Engine, EngineError, EngineOptions, StageFilter};
use crate::events::NoEvents;
use crate::plan::{Action, Plan};
use crate::provider::{Ownership, Provider};
use crate::retry::{Budget, RetryPolicy};

/// Faults a harness must be able to inject into its provider's backend.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Probability that a call fails with a retryable error (5xx).
    pub error_rate: f64,
    /// Probability that a call is throttled (429).
    pub throttle_rate: f64,
    /// After this many successful mutations, the next one is carried out and then the provider
    /// reports a [`crate::provider::ProcessKilled`] error (the process "dies").
    pub die_after: Option<u64>,
    /// Seed for reproducible fault sequences.
    pub seed: u64,
    /// Probability that a mutating call is carried out and its answer then lost (a 5xx or a
    /// dropped connection after the fact), where the harness can do it
    /// ([`Knobs::lost_answers`]).
    pub lost_rate: f64,
    /// A created cluster stays pending for a while (see [`Knobs::pending`]).
    pub pending: bool,
    /// The first creation of a resource of this kind fails (it ends in a failed state).
    pub fail_once: Option<String>,
}

/// What a harness can make its backend do beyond faults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Knobs {
    /// [`Faults::pending`] works: a created cluster is reported pending for a while.
    pub pending: bool,
    /// [`Faults::fail_once`] works for the harness's [`Harness::cluster_kind`].
    pub fail_once: bool,
    /// [`Faults::lost_rate`] works.
    pub lost_answers: bool,
}

/// What the suite needs from a provider's test environment.
#[async_trait]
pub trait Harness: Send + Sync {
    /// A valid config for this provider (the suite edits node groups' `max_nodes`).
    fn config(&self) -> Config;
    /// A provider over the current backend state, injecting `faults`.
    fn provider(&self, faults: Faults) -> Arc<dyn Provider>;
    /// Empties the backend (removes everything, owned or not).
    async fn reset(&self);
    /// How many mutating calls the backend has served since it was created.
    async fn mutations(&self) -> u64;
    /// Of those, how many the provider's own cloud served, when the harness can tell them from
    /// the Kubernetes stage's writes (`None`, the default: it cannot). The interruption checks
    /// then try every cloud mutation but only every [`KUBE_STRIDE`]th Kubernetes write: this
    /// suite tests the provider, and the shared Kubernetes stage is interrupted at each of its
    /// writes by the CLI's lifecycle tests. Without it every mutation is tried.
    async fn cloud_mutations(&self) -> Option<u64> {
        None
    }
    /// Counts of resources in the backend carrying `ownership`'s marks, by kind, read from the
    /// backend directly (not through the provider), so duplicates cannot hide.
    async fn census(&self, ownership: &Ownership) -> BTreeMap<String, usize>;
    /// Operations the backend refused because another one was in progress on the same
    /// resource (GKE's one operation per cluster); 0 for backends without such a rule.
    async fn rejected(&self) -> u64 {
        0
    }
    /// What the harness can inject beyond faults.
    fn knobs(&self) -> Knobs {
        Knobs::default()
    }
    /// The resource kind of the provider's cluster (what [`Faults::fail_once`] names and the
    /// repair check looks for): `cluster` by default, `eks_cluster` on AWS.
    fn cluster_kind(&self) -> &'static str {
        "cluster"
    }
}

/// A failed check.
#[derive(Debug, thiserror::Error)]
#[error("conformance check `{check}` failed: {message}")]
pub struct Failure {
    /// The check.
    pub check: &'static str,
    /// What went wrong.
    pub message: String,
}

/// The suite's checks, in the order [`run_all`] runs them.
pub const CHECKS: [&str; 13] = [
    "plan is deterministic",
    "deploy then plan is empty",
    "an edit plans only updates",
    "destroy of nothing succeeds",
    "destroy after interruption",
    "re-deploy after interruption",
    "retryable faults",
    "storm on every call",
    "serial groups",
    "children once",
    "cluster facts",
    "failed repaired",
    "destroy from pending/failed",
];

/// The checks that passed, with what they measured.
#[derive(Debug, Default)]
pub struct Report {
    /// `(check, detail)` per passed check.
    pub checks: Vec<(&'static str, String)>,
}

impl Report {
    /// The checks reported as skipped (their detail starts with `skipped`), in run order.
    pub fn skipped(&self) -> Vec<&'static str> {
        self.checks
            .iter()
            .filter(|(_, detail)| detail.starts_with("skipped"))
            .map(|(check, _)| *check)
            .collect()
    }

    /// Panics unless exactly the suite's [`CHECKS`] ran, in order, and exactly `skipped` of
    /// them were skipped: a harness states what it cannot support instead of counting checks,
    /// so a check that starts skipping (or stops running) fails its test.
    pub fn assert_skipped(&self, skipped: &[&str]) {
        let ran: Vec<&str> = self.checks.iter().map(|(check, _)| *check).collect();
        assert_eq!(ran, CHECKS, "the checks that ran: {self:#?}");
        assert_eq!(self.skipped(), skipped, "the checks skipped: {self:#?}");
    }
}

fn fail(check: &'static str, message: impl Into<String>) -> Failure {
    Failure {
        check,
        message: message.into(),
    }
}

/// The suite's retry policy: the production policy's attempts with millisecond backoffs (a
/// test waits for no real cloud), the busy class allowed many attempts. Give it to a
/// provider's client too, so that the call level and the engine retry alike.
pub fn test_policy() -> RetryPolicy {
    RetryPolicy {
        busy: Budget::attempts(200, Duration::from_millis(5), Duration::from_millis(50)),
        ..RetryPolicy::uniform(Budget::attempts(
            20,
            Duration::from_millis(1),
            Duration::from_millis(20),
        ))
    }
}

/// An engine with the suite's settings: [`test_policy`], short deadlines, a quick poll. For
/// provider authors' own tests too.
pub fn test_engine(provider: Arc<dyn Provider>) -> Engine {
    Engine::new(
        provider,
        EngineOptions {
            concurrency: 8,
            retry: test_policy(),
            min_deadline: Duration::from_secs(120),
            deadline_factor: 4.0,
            lease: crate::kubernetes::lease::LeaseTiming::default(),
            observe_deadline: Duration::from_secs(60),
            poll_interval: Duration::from_millis(200),
            ..EngineOptions::default()
        },
    )
}

/// Deploys `config` (both stages) through `engine`, with no events and no cancellation: a
/// test's one-liner. `Err` when planning failed.
pub async fn deploy_once(engine: &Engine, config: &Config) -> Result<ApplyReport, EngineError> {
    engine
        .deploy(
            config,
            StageFilter::All,
            Arc::new(NoEvents),
            CancellationToken::new(),
        )
        .await
        .map(|(_, report)| report)
}

/// Destroys `config`'s deployment (both stages) through `engine`, like [`deploy_once`].
pub async fn destroy_once(engine: &Engine, config: &Config) -> Result<ApplyReport, EngineError> {
    engine
        .destroy(
            config,
            StageFilter::All,
            Arc::new(NoEvents),
            CancellationToken::new(),
        )
        .await
        .map(|(_, report)| report)
}

async fn plan(
    check: &'static str,
    h: &dyn Harness,
    config: &Config,
    faults: Faults,
) -> Result<Plan, Failure> {
    test_engine(h.provider(faults))
        .plan(config, StageFilter::All)
        .await
        .map_err(|e| fail(check, format!("plan: {e}")))
}

async fn deploy(h: &dyn Harness, config: &Config, faults: Faults) -> Result<ApplyReport, String> {
    deploy_once(&test_engine(h.provider(faults)), config)
        .await
        .map_err(|e| format!("deploy: {e}"))
}

async fn destroy(h: &dyn Harness, config: &Config, faults: Faults) -> Result<ApplyReport, String> {
    destroy_once(&test_engine(h.provider(faults)), config)
        .await
        .map_err(|e| format!("destroy: {e}"))
}

fn succeeded(
    check: &'static str,
    what: &str,
    r: Result<ApplyReport, String>,
) -> Result<ApplyReport, Failure> {
    let r = r.map_err(|e| fail(check, format!("{what}: {e}")))?;
    if !r.succeeded() {
        return Err(fail(
            check,
            format!(
                "{what} did not succeed: failed {:?}, not started {:?}",
                r.failed, r.not_started
            ),
        ));
    }
    Ok(r)
}

/// Plans again and fails the check unless nothing would change (`after`: what just ran).
async fn expect_empty_plan(
    check: &'static str,
    h: &dyn Harness,
    config: &Config,
    after: &str,
) -> Result<Plan, Failure> {
    let p = plan(check, h, config, Faults::default()).await?;
    if !p.is_empty() {
        return Err(fail(
            check,
            format!("plan after {after} is not empty:\n{}", p.render_text()),
        ));
    }
    Ok(p)
}

/// Fails the check unless the backend holds nothing of the deployment (`after`: what just ran).
async fn expect_nothing_left(
    check: &'static str,
    h: &dyn Harness,
    config: &Config,
    after: &str,
) -> Result<(), Failure> {
    let left = h.census(&Ownership::of(config)).await;
    if left.values().any(|c| *c > 0) {
        return Err(fail(check, format!("{after} left {left:?}")));
    }
    Ok(())
}

/// The node groups of a config, for editing.
fn node_groups_mut(config: &mut Config) -> Option<&mut NodeGroups> {
    match config.provider {
        ProviderKind::Aws => config
            .amazon_web_services
            .as_mut()
            .map(|p| &mut p.node_groups),
        ProviderKind::Gcp => config
            .google_cloud_platform
            .as_mut()
            .map(|p| &mut p.node_groups),
        ProviderKind::Do => config.digital_ocean.as_mut().map(|p| &mut p.node_groups),
        ProviderKind::Sandbox => config.sandbox.as_mut().map(|p| &mut p.node_groups),
        _ => None,
    }
}

/// Two plans of the same config against the same state are identical.
pub async fn plan_is_deterministic(h: &dyn Harness) -> Result<String, Failure> {
    const CHECK: &str = "plan is deterministic";
    h.reset().await;
    let config = h.config();
    let a = plan(CHECK, h, &config, Faults::default()).await?;
    let b = plan(CHECK, h, &config, Faults::default()).await?;
    if a.to_json() != b.to_json() {
        return Err(fail(CHECK, "two plans of the same config differ"));
    }
    if a.changes.is_empty() || a.changes.iter().any(|c| c.action != Action::Create) {
        return Err(fail(
            CHECK,
            "the plan on an empty backend must be creates only",
        ));
    }
    Ok(format!("{} creates", a.changes.len()))
}

/// After a deploy the plan is empty, and deploying again makes no mutating call.
pub async fn deploy_then_plan_is_empty(h: &dyn Harness) -> Result<String, Failure> {
    const CHECK: &str = "deploy then plan is empty";
    h.reset().await;
    let config = h.config();
    succeeded(CHECK, "deploy", deploy(h, &config, Faults::default()).await)?;
    let p = expect_empty_plan(CHECK, h, &config, "deploy").await?;
    let before = h.mutations().await;
    succeeded(
        CHECK,
        "second deploy",
        deploy(h, &config, Faults::default()).await,
    )?;
    let made = h.mutations().await - before;
    if made != 0 {
        return Err(fail(
            CHECK,
            format!("a no-op deploy made {made} mutating call(s)"),
        ));
    }
    Ok(format!(
        "{} resources; no-op deploy made 0 mutating calls",
        p.unchanged
    ))
}

/// Raising a node group's `max_nodes` plans exactly one update.
pub async fn edit_plans_only_updates(h: &dyn Harness) -> Result<String, Failure> {
    const CHECK: &str = "an edit plans only updates";
    h.reset().await;
    let mut config = h.config();
    succeeded(CHECK, "deploy", deploy(h, &config, Faults::default()).await)?;
    let Some(group) = node_groups_mut(&mut config).and_then(|g| g.values_mut().last()) else {
        return Err(fail(CHECK, "the harness config has no node group to edit"));
    };
    group.max_nodes += 3;
    let p = plan(CHECK, h, &config, Faults::default()).await?;
    let s = p.summary();
    if (s.create, s.update, s.replace, s.delete) != (0, 1, 0, 0) {
        return Err(fail(
            CHECK,
            format!("expected exactly one update, got:\n{}", p.render_text()),
        ));
    }
    succeeded(
        CHECK,
        "deploy of the edit",
        deploy(h, &config, Faults::default()).await,
    )?;
    expect_empty_plan(CHECK, h, &config, "deploying the edit").await?;
    Ok("one update, then empty".into())
}

/// Destroying a deployment that does not exist succeeds and changes nothing.
pub async fn destroy_of_nothing_succeeds(h: &dyn Harness) -> Result<String, Failure> {
    const CHECK: &str = "destroy of nothing succeeds";
    h.reset().await;
    let config = h.config();
    let before = h.mutations().await;
    let r = succeeded(
        CHECK,
        "destroy",
        destroy(h, &config, Faults::default()).await,
    )?;
    if !r.done.is_empty() || h.mutations().await != before {
        return Err(fail(CHECK, "destroying nothing changed something"));
    }
    Ok("no changes".into())
}

/// The census of a clean deploy, and its cloud mutations ([`Harness::cloud_mutations`]).
async fn reference_census(
    check: &'static str,
    h: &dyn Harness,
    config: &Config,
) -> Result<(BTreeMap<String, usize>, Option<u64>), Failure> {
    h.reset().await;
    succeeded(
        check,
        "reference deploy",
        deploy(h, config, Faults::default()).await,
    )?;
    Ok((
        h.census(&Ownership::of(config)).await,
        h.cloud_mutations().await,
    ))
}

/// Most interruption points tried; a deploy with more mutations than this is cut short.
const MAX_POINTS: u64 = 500;

/// The stride between the Kubernetes writes at which the interruption checks interrupt a
/// deploy, once the cloud's mutations are behind it (see [`Harness::cloud_mutations`]).
pub const KUBE_STRIDE: u64 = 16;

/// The interruption point after `n`: the next mutation while the cloud's are being made, then
/// every [`KUBE_STRIDE`]th write of the Kubernetes stage (its first one included).
fn next_point(n: u64, cloud: Option<u64>) -> u64 {
    match cloud {
        Some(c) if n + 1 > c => n + KUBE_STRIDE,
        _ => n + 1,
    }
}

/// Deploys with the process "dying" after mutation `n + 1`; `None` once a deploy with that many
/// mutations allowed runs to completion (every interruption point has been tried).
///
/// When the harness counts the cloud's mutations (`cloud`, of a clean deploy), an interruption
/// in the Kubernetes stage must find all of them made: a cloud mutation after the stage began
/// would fall between the sampled points, so that is a failure, not a skipped point.
async fn interrupted_deploy(
    check: &'static str,
    h: &dyn Harness,
    config: &Config,
    n: u64,
    cloud: Option<u64>,
) -> Result<Option<()>, Failure> {
    h.reset().await;
    let faults = Faults {
        die_after: Some(n),
        ..Faults::default()
    };
    let r = deploy(h, config, faults)
        .await
        .map_err(|e| fail(check, e))?;
    if r.killed {
        if let Some(c) = cloud
            && n >= c
        {
            let made = h.cloud_mutations().await.unwrap_or(c);
            if made != c {
                return Err(fail(
                    check,
                    format!(
                        "interrupted at mutation {} (in the Kubernetes stage), the cloud had served {made} of a clean deploy's {c} mutations: a cloud mutation after the Kubernetes stage began would be missed by the sampled interruption points",
                        n + 1
                    ),
                ));
            }
        }
        return Ok(Some(()));
    }
    if !r.succeeded() {
        return Err(fail(
            check,
            format!(
                "deploy with die_after={n} failed without being interrupted: {:?}",
                r.failed
            ),
        ));
    }
    Ok(None)
}

/// Where the interruption points were tried, for a check's summary.
fn points_summary(points: u64, cloud: Option<u64>) -> String {
    match cloud {
        Some(c) => format!(
            "{points} interruption points (each of the {c} cloud mutations, then every {KUBE_STRIDE}th Kubernetes write)"
        ),
        None => format!("{points} interruption points"),
    }
}

/// For every interruption point of a deploy: destroy afterwards leaves nothing.
pub async fn destroy_after_interruption_leaves_nothing(h: &dyn Harness) -> Result<String, Failure> {
    const CHECK: &str = "destroy after an interrupted deploy leaves nothing";
    let config = h.config();
    let (_, cloud) = reference_census(CHECK, h, &config).await?;
    let mut points = 0;
    let mut n = 0;
    while n < MAX_POINTS {
        if interrupted_deploy(CHECK, h, &config, n, cloud)
            .await?
            .is_none()
        {
            break;
        }
        points += 1;
        succeeded(
            CHECK,
            &format!("destroy after interruption at mutation {}", n + 1),
            destroy(h, &config, Faults::default()).await,
        )?;
        expect_nothing_left(
            CHECK,
            h,
            &config,
            &format!("destroy after interruption at mutation {}", n + 1),
        )
        .await?;
        n = next_point(n, cloud);
    }
    if points == 0 {
        return Err(fail(
            CHECK,
            "no deploy was ever interrupted: the harness ignores die_after",
        ));
    }
    Ok(points_summary(points, cloud))
}

/// For every interruption point: re-deploying converges to exactly one of everything.
pub async fn redeploy_after_interruption_converges(h: &dyn Harness) -> Result<String, Failure> {
    const CHECK: &str = "re-deploy after an interruption converges without duplicates";
    let config = h.config();
    let (expected, cloud) = reference_census(CHECK, h, &config).await?;
    let mut points = 0;
    let mut n = 0;
    while n < MAX_POINTS {
        if interrupted_deploy(CHECK, h, &config, n, cloud)
            .await?
            .is_none()
        {
            break;
        }
        points += 1;
        succeeded(
            CHECK,
            &format!("re-deploy after interruption at mutation {}", n + 1),
            deploy(h, &config, Faults::default()).await,
        )?;
        expect_empty_plan(
            CHECK,
            h,
            &config,
            &format!("re-deploy (interruption at {})", n + 1),
        )
        .await?;
        let census = h.census(&Ownership::of(&config)).await;
        if census != expected {
            return Err(fail(
                CHECK,
                format!(
                    "after interruption at mutation {}: {census:?}, expected {expected:?}",
                    n + 1
                ),
            ));
        }
        n = next_point(n, cloud);
    }
    if points == 0 {
        return Err(fail(
            CHECK,
            "no deploy was ever interrupted: the harness ignores die_after",
        ));
    }
    Ok(format!(
        "{}, census {expected:?}",
        points_summary(points, cloud)
    ))
}

/// Deploy and destroy succeed with retryable errors and throttling injected.
pub async fn retryable_faults_are_survived(h: &dyn Harness) -> Result<String, Failure> {
    const CHECK: &str = "retryable faults are survived";
    h.reset().await;
    let config = h.config();
    let faults = Faults {
        error_rate: 0.25,
        throttle_rate: 0.15,
        die_after: None,
        seed: 7,
        ..Faults::default()
    };
    let d = succeeded(
        CHECK,
        "deploy with faults",
        deploy(h, &config, faults.clone()).await,
    )?;
    expect_empty_plan(CHECK, h, &config, "a deploy with faults").await?;
    let x = succeeded(
        CHECK,
        "destroy with faults",
        destroy(h, &config, faults).await,
    )?;
    expect_nothing_left(CHECK, h, &config, "destroy with faults").await?;
    Ok(format!(
        "{} retries in deploy, {} in destroy",
        d.retries, x.retries
    ))
}

/// The storm of [`every_call_rides_out_a_storm`] (issue #13): the share of calls refused with a
/// retryable 5xx, and the share of mutations whose answer is lost after they were carried out.
pub const STORM: (f64, f64) = (0.3, 0.1);

/// What `qhub deploy` does, once, through `provider` and `engine`: preflight, the plan and its
/// apply, which must succeed the first time, then a plan (through the same provider) that must
/// be empty. For runs under faults: every step's calls meet them. `Err` says which step failed.
pub async fn deploy_like_the_cli(
    provider: &dyn Provider,
    engine: &Engine,
    config: &Config,
) -> Result<ApplyReport, String> {
    provider
        .preflight(config)
        .await
        .map_err(|e| format!("preflight: {e}"))?;
    let r = deploy_once(engine, config)
        .await
        .map_err(|e| format!("deploy: {e}"))?;
    if !r.succeeded() {
        return Err(format!(
            "deploy did not succeed: failed {:?}, not started {:?}",
            r.failed, r.not_started
        ));
    }
    let p = engine
        .plan(config, StageFilter::All)
        .await
        .map_err(|e| format!("plan after the deploy: {e}"))?;
    if !p.is_empty() {
        return Err(format!(
            "plan after the deploy is not empty:\n{}",
            p.render_text()
        ));
    }
    Ok(r)
}

/// What [`second_runner_waits`] measured.
#[derive(Debug, Clone)]
pub struct TwoRunners {
    /// The lock B waited for, as its wait event named it (`s3://…`, `gs://…`, `spaces://…`).
    pub lock: String,
    /// How long A's deploy took.
    pub a_time: Duration,
    /// How long after it started B's deploy finished.
    pub b_time: Duration,
    /// How many times B reported that it waits.
    pub waits: usize,
}

/// Two CI runners deploying one config at once, through the cloud-side deploy lock: `a` (whose
/// holder identity is `a_holder`) deploys; once it applies, `holder_now` (a read of the lock
/// object straight from the store) must name `a_holder`; then `b` deploys, must report that it
/// waits for the lock (naming `a_holder` and since when) and start nothing meanwhile; both must
/// succeed, and `b`, planning from what `a` left, must find nothing to do. `a`'s deploy must
/// take long enough for `b` to start while `a` holds the lock (a cluster that takes seconds to
/// provision, or one the emulator holds back until `b_waits` is called, once `b` was seen
/// waiting). `Err` says which expectation failed.
pub async fn second_runner_waits(
    a: Engine,
    b: Engine,
    config: &Config,
    a_holder: &str,
    holder_now: impl AsyncFn() -> Option<String>,
    b_waits: impl FnOnce(),
) -> Result<TwoRunners, String> {
    use crate::cloud::lock::LOCK_KIND;
    use crate::events::{CollectEvents, Event};
    use tokio::time::Instant;

    let (a_events, b_events) = (
        Arc::new(CollectEvents::default()),
        Arc::new(CollectEvents::default()),
    );
    let (ea, ca) = (a_events.clone(), config.clone());
    let first = tokio::spawn(async move {
        let t = Instant::now();
        let r = a
            .deploy(&ca, StageFilter::All, ea, CancellationToken::new())
            .await;
        (r, t.elapsed())
    });
    // A holds the lock once it applies; then B starts.
    a_events
        .until(Duration::from_secs(60), |e| {
            matches!(e, Event::ApplyStarted { .. })
        })
        .await
        .ok_or("A did not start applying within 60 s")?;
    let holder = holder_now().await;
    if holder.as_deref() != Some(a_holder) {
        return Err(format!(
            "while A applies the lock should name A ({a_holder}), it names {holder:?}"
        ));
    }
    let (eb, cb) = (b_events.clone(), config.clone());
    let b_started = Instant::now();
    let second = tokio::spawn(async move {
        let r = b
            .deploy(&cb, StageFilter::All, eb, CancellationToken::new())
            .await;
        (r, b_started.elapsed())
    });
    // B says it waits, naming A and since when; it starts nothing meanwhile.
    let waiting = b_events
        .until(
            Duration::from_secs(60),
            |e| matches!(e, Event::Waiting { resource, .. } if resource.kind == LOCK_KIND),
        )
        .await
        .ok_or("B did not report a wait for the lock within 60 s")?;
    let Event::Waiting {
        resource, detail, ..
    } = waiting
    else {
        return Err(format!("not a wait: {waiting:?}"));
    };
    if !detail.contains(&format!("held by {a_holder} (deploy) since")) {
        return Err(format!("B's wait does not name A and since when: {detail}"));
    }
    b_waits();
    if b_events
        .events()
        .iter()
        .any(|e| matches!(e, Event::ApplyStarted { .. }))
    {
        return Err("B applied while A held the lock".into());
    }
    let ((a_result, a_time), (b_result, b_time)) = (
        first.await.map_err(|e| format!("A's task: {e}"))?,
        second.await.map_err(|e| format!("B's task: {e}"))?,
    );
    let (a_plan, a_report) = a_result.map_err(|e| format!("A's deploy: {e}"))?;
    if !a_report.succeeded() || a_plan.is_empty() {
        return Err(format!(
            "A's deploy should change things and succeed: {a_report:?}"
        ));
    }
    let (b_plan, b_report) = b_result.map_err(|e| format!("B's deploy: {e}"))?;
    if !b_report.succeeded() {
        return Err(format!("B's deploy failed: {b_report:?}"));
    }
    if !b_plan.changes.is_empty() {
        return Err(format!(
            "B planned after A and should find nothing to do:\n{}",
            b_plan.render_text()
        ));
    }
    Ok(TwoRunners {
        lock: resource.name,
        a_time,
        b_time,
        waits: b_events.waits_on(LOCK_KIND).len(),
    })
}

/// What [`crashed_holder_is_taken_over`] measured.
#[derive(Debug, Clone)]
pub struct Takeovers {
    /// How long taking over a record that expired an hour ago took.
    pub long_expired: Duration,
    /// How long taking over a fresh record that was never renewed took.
    pub never_renewed: Duration,
    /// How long a runner waited for a live holder before it gave up.
    pub gave_up_after: Duration,
    /// The error it gave up with.
    pub live_error: String,
}

/// The deploy lock's takeover rules, on a cloud's lock store: a record whose holder died long
/// ago is taken at once; a fresh record that is never renewed is taken after one lease
/// duration (`lease`) of watching; a live, renewing holder is waited for and never taken, the
/// waiter giving up after its wait naming the holder and `--lock-timeout`. `runner(name,
/// wait)` makes an engine with its own holder identity (`EngineOptions::holder`), the lease
/// `lease` and the lock wait `wait`; `plant(body)` writes a record body straight into the
/// store as another runner's; `holder_now` reads the record's holder straight from the store.
/// `Err` says which rule was broken.
pub async fn crashed_holder_is_taken_over(
    runner: impl Fn(&str, Duration) -> Engine,
    config: &Config,
    lease: Duration,
    plant: impl AsyncFn(Vec<u8>),
    holder_now: impl AsyncFn() -> Option<String>,
) -> Result<Takeovers, String> {
    use crate::cloud::lock::{LOCK_KIND, LockRecord};
    use crate::events::CollectEvents;
    use k8s_openapi::jiff::{SignedDuration, Timestamp};
    use tokio::time::Instant;

    let stale = |holder: &str, ago: Duration| {
        let renewed = Timestamp::now() - SignedDuration::try_from(ago).unwrap_or_default();
        serde_json::to_vec(&LockRecord {
            holder: holder.into(),
            deployment: Ownership::of(config).prefix(),
            command: "deploy".into(),
            acquired: renewed.to_string(),
            renewed: renewed.to_string(),
            expires: (renewed + SignedDuration::try_from(lease).unwrap_or_default()).to_string(),
        })
        .unwrap_or_default()
    };
    let take = |e: EngineError| format!("taking the lock: {e}");

    // A runner that died long ago: its record is taken at once.
    plant(stale(
        "qhub@gone/-/7/0000000000000007",
        Duration::from_secs(3600),
    ))
    .await;
    let a = runner("a", Duration::from_secs(30));
    let a_holder = a.options().holder.clone();
    let t = Instant::now();
    let locked = a.lock(config).await.map_err(take)?;
    let long_expired = t.elapsed();
    if holder_now().await != Some(a_holder.clone()) {
        return Err("a record that expired long ago was not taken over".into());
    }
    locked.release().await;

    // A runner that died just now (its record looks fresh): taken once it has not been renewed
    // for a lease duration while we watched.
    let died = "qhub@died/-/8/0000000000000008";
    plant(stale(died, Duration::ZERO)).await;
    let events = Arc::new(CollectEvents::default());
    let t = Instant::now();
    let locked = a
        .lock_with(config, "deploy", events.clone())
        .await
        .map_err(take)?;
    let never_renewed = t.elapsed();
    if never_renewed < lease {
        return Err(format!(
            "a fresh record was taken over after {never_renewed:?}, before one lease duration"
        ));
    }
    if !events
        .waits_on(LOCK_KIND)
        .first()
        .is_some_and(|w| w.contains(died))
    {
        return Err(format!(
            "the wait did not name {died}: {:?}",
            events.waits_on(LOCK_KIND)
        ));
    }
    locked.release().await;

    // A live holder (renewing) is waited for and never taken over, however long the wait.
    let holder = runner("h", Duration::ZERO);
    let h_holder = holder.options().holder.clone();
    let held = holder.lock(config).await.map_err(take)?;
    let t = Instant::now();
    let live_error = match runner("b", lease * 2).lock(config).await {
        Ok(_) => return Err("a live holder's lock was taken".into()),
        Err(e) => e.to_string(),
    };
    let gave_up_after = t.elapsed();
    if gave_up_after < lease * 2
        || !live_error.contains(&format!("held by {h_holder} (deploy)"))
        || !live_error.contains("--lock-timeout")
    {
        return Err(format!(
            "giving up on a live holder after {gave_up_after:?} should name it and --lock-timeout: {live_error}"
        ));
    }
    if holder_now().await != Some(h_holder) {
        return Err("a live holder's record was replaced or deleted".into());
    }
    held.release().await;
    if holder_now().await.is_some() {
        return Err("the lock was not released".into());
    }
    Ok(Takeovers {
        long_expired,
        never_renewed,
        gave_up_after,
        live_error,
    })
}

/// What `qhub destroy` does, once, through `engine`: the destroy plan and its apply, which must
/// succeed the first time, then the check that nothing remains (an observe through the same
/// provider). `Err` says which step failed.
pub async fn destroy_like_the_cli(engine: &Engine, config: &Config) -> Result<ApplyReport, String> {
    let (plan, r) = engine
        .destroy(
            config,
            StageFilter::All,
            Arc::new(NoEvents),
            CancellationToken::new(),
        )
        .await
        .map_err(|e| format!("destroy: {e}"))?;
    if !r.succeeded() {
        return Err(format!(
            "destroy did not succeed: failed {:?}, not started {:?}",
            r.failed, r.not_started
        ));
    }
    let remaining = engine
        .observe_all(config, StageFilter::All)
        .await
        .map_err(|e| format!("the 'nothing remains' check: {e}"))?;
    // What the plan keeps on purpose (CRDs others may use) is not left over.
    let remaining: Vec<_> = remaining
        .into_iter()
        .filter(|o| !plan.kept.iter().any(|k| k.id == o.id))
        .collect();
    if !remaining.is_empty() {
        let ids: Vec<String> = remaining.iter().map(|o| o.id.to_string()).collect();
        return Err(format!("after the destroy {ids:?} remain"));
    }
    Ok(r)
}

/// What `qhub deploy` and `qhub destroy` do, each once, with [`STORM`] on every call through
/// one provider ([`deploy_like_the_cli`], [`destroy_like_the_cli`]). Each must succeed the
/// first time (a deploy rides the storm out; nobody re-runs it), with the census of a clean
/// deploy and nothing left.
pub async fn every_call_rides_out_a_storm(h: &dyn Harness) -> Result<String, Failure> {
    const CHECK: &str = "every call rides out a storm";
    let config = h.config();
    let (expected, _) = reference_census(CHECK, h, &config).await?;
    h.reset().await;
    let lost_answers = h.knobs().lost_answers;
    let faults = Faults {
        error_rate: STORM.0,
        lost_rate: if lost_answers { STORM.1 } else { 0.0 },
        seed: 13,
        ..Faults::default()
    };
    let provider = h.provider(faults);
    let engine = test_engine(provider.clone());
    let d = deploy_like_the_cli(&*provider, &engine, &config)
        .await
        .map_err(|e| fail(CHECK, format!("in a storm: {e}")))?;
    let census = h.census(&Ownership::of(&config)).await;
    if census != expected {
        return Err(fail(
            CHECK,
            format!("a deploy in a storm made {census:?}, a clean one {expected:?}"),
        ));
    }
    let x = destroy_like_the_cli(&engine, &config)
        .await
        .map_err(|e| fail(CHECK, format!("in a storm: {e}")))?;
    expect_nothing_left(CHECK, h, &config, "destroy in a storm").await?;
    Ok(format!(
        "{}% refused{}: {} engine retries in deploy, {} in destroy",
        STORM.0 * 100.0,
        if lost_answers {
            format!(", {}% of answers lost", STORM.1 * 100.0)
        } else {
            String::new()
        },
        d.retries,
        x.retries
    ))
}

/// Every node group edited at once, deployed, then destroyed: the backend refuses no operation
/// as busy, because the engine runs one mutating change per serial group at a time.
pub async fn serial_groups_are_honoured(h: &dyn Harness) -> Result<String, Failure> {
    const CHECK: &str = "serial groups are honoured";
    h.reset().await;
    let mut config = h.config();
    let before = h.rejected().await;
    let p = plan(CHECK, h, &config, Faults::default()).await?;
    let grouped = p
        .changes
        .iter()
        .filter(|c| c.serial_group().is_some())
        .count();
    succeeded(CHECK, "deploy", deploy(h, &config, Faults::default()).await)?;
    if let Some(groups) = node_groups_mut(&mut config) {
        for g in groups.values_mut() {
            g.max_nodes += 2;
        }
    }
    succeeded(
        CHECK,
        "deploy of the edit",
        deploy(h, &config, Faults::default()).await,
    )?;
    succeeded(
        CHECK,
        "destroy",
        destroy(h, &config, Faults::default()).await,
    )?;
    let rejected = h.rejected().await - before;
    if rejected != 0 {
        return Err(fail(
            CHECK,
            format!("the backend rejected {rejected} operation(s) as busy"),
        ));
    }
    Ok(format!(
        "{grouped} grouped changes in the first plan; 0 operations rejected"
    ))
}

/// A resource created with its parent is planned once, as its own change after the parent;
/// after the deploy it exists once and the plan is empty.
pub async fn children_appear_once(h: &dyn Harness) -> Result<String, Failure> {
    const CHECK: &str = "children created with their parent appear once";
    h.reset().await;
    let config = h.config();
    let p = plan(CHECK, h, &config, Faults::default()).await?;
    let mut seen = std::collections::BTreeSet::new();
    for c in &p.changes {
        if !seen.insert(c.id.clone()) {
            return Err(fail(CHECK, format!("{} is planned twice", c.id)));
        }
    }
    let children: Vec<_> = p
        .changes
        .iter()
        .filter_map(|c| {
            c.created_with()
                .map(|parent| (c.id.clone(), parent.clone()))
        })
        .collect();
    for (child, parent) in &children {
        let pos = |id: &crate::plan::ResourceId| p.changes.iter().position(|c| &c.id == id);
        match (pos(parent), pos(child)) {
            (Some(a), Some(b)) if a < b => {}
            _ => {
                return Err(fail(
                    CHECK,
                    format!("{child} is not planned after its parent {parent}"),
                ));
            }
        }
    }
    succeeded(CHECK, "deploy", deploy(h, &config, Faults::default()).await)?;
    expect_empty_plan(CHECK, h, &config, "deploy").await?;
    Ok(format!("{} children planned once each", children.len()))
}

/// The Kubernetes stage is built from the provider's cluster facts: what is unknown before the
/// first deploy is listed as known after apply, everything is known after it, and the objects
/// applied use the facts (the welcome page runs on the `general` group's selector).
pub async fn facts_reach_the_kubernetes_stage(h: &dyn Harness) -> Result<String, Failure> {
    const CHECK: &str = "cluster facts reach the Kubernetes stage";
    h.reset().await;
    let config = h.config();
    let provider = h.provider(Faults::default());
    if !provider.capabilities().cluster_access {
        return Ok("skipped: the provider hands out no cluster access here".into());
    }
    let before = provider.cluster_facts(&config, &[]);
    let p = plan(CHECK, h, &config, Faults::default()).await?;
    // Login clients' secrets are generated in the cluster at apply time: not cluster facts.
    if p.known_after_apply
        .iter()
        .filter(|k| !k.starts_with(crate::engine::identity::CLIENT_SECRET_AFTER_APPLY))
        .any(|k| !before.unknown().contains(k))
    {
        return Err(fail(
            CHECK,
            format!(
                "plan lists {:?} as known after apply; the facts say only {:?} is unknown",
                p.known_after_apply,
                before.unknown()
            ),
        ));
    }
    succeeded(CHECK, "deploy", deploy(h, &config, Faults::default()).await)?;
    let infra = provider
        .observe(&Ownership::of(&config))
        .await
        .map_err(|e| fail(CHECK, format!("observe: {e}")))?;
    let facts = provider.cluster_facts(&config, &infra);
    if !facts.unknown().is_empty() {
        return Err(fail(
            CHECK,
            format!("still unknown after deploy: {:?}", facts.unknown()),
        ));
    }
    let client = provider
        .cluster_access(&Ownership::of(&config))
        .await
        .map_err(|e| fail(CHECK, format!("cluster access: {e}")))?
        .client()
        .await
        .map_err(|e| fail(CHECK, format!("client: {e}")))?;
    let pages: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(client.clone(), &config.namespace);
    let page = pages
        .get(crate::kubernetes::components::welcome::NAME)
        .await
        .map_err(|e| fail(CHECK, format!("reading the welcome ConfigMap: {e}")))?;
    let text = serde_json::to_string(&page.data).unwrap_or_default();
    if text.contains(crate::provider::facts::AFTER_APPLY) {
        return Err(fail(
            CHECK,
            format!("an applied object still holds a placeholder: {text}"),
        ));
    }
    let api: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(client, &config.namespace);
    let deployment = api
        .get(crate::kubernetes::components::welcome::NAME)
        .await
        .map_err(|e| fail(CHECK, format!("reading the welcome Deployment: {e}")))?;
    let selector = deployment
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.node_selector);
    let expected = facts.node_selector.for_group("general");
    if selector != expected {
        return Err(fail(
            CHECK,
            format!("welcome page nodeSelector {selector:?}, facts say {expected:?}"),
        ));
    }
    Ok(format!(
        "known after apply before deploy: {:?}; nodeSelector {:?}",
        p.known_after_apply, expected
    ))
}

/// A resource that ends in a failed state is replaced by the next deploy, which converges.
pub async fn failed_resource_is_repaired(h: &dyn Harness) -> Result<String, Failure> {
    const CHECK: &str = "a failed resource is repaired";
    if !h.knobs().fail_once {
        return Ok("skipped: the harness cannot make a cluster fail".into());
    }
    let config = h.config();
    let (expected, _) = reference_census(CHECK, h, &config).await?;
    h.reset().await;
    let kind = h.cluster_kind();
    let failing = Faults {
        fail_once: Some(kind.into()),
        ..Faults::default()
    };
    let r = deploy(h, &config, failing)
        .await
        .map_err(|e| fail(CHECK, e))?;
    if r.succeeded() {
        return Err(fail(CHECK, "the deploy with a failing cluster succeeded"));
    }
    let p = plan(CHECK, h, &config, Faults::default()).await?;
    let repair = p
        .changes
        .iter()
        .find(|c| c.id.kind == kind && c.action == Action::Replace);
    if repair.is_none() {
        return Err(fail(
            CHECK,
            format!(
                "the plan does not replace the failed cluster:\n{}",
                p.render_text()
            ),
        ));
    }
    succeeded(
        CHECK,
        "repairing deploy",
        deploy(h, &config, Faults::default()).await,
    )?;
    let after = plan(CHECK, h, &config, Faults::default()).await?;
    let census = h.census(&Ownership::of(&config)).await;
    if !after.is_empty() || census != expected {
        return Err(fail(
            CHECK,
            format!(
                "after the repair: plan\n{}census {census:?}, expected {expected:?}",
                after.render_text()
            ),
        ));
    }
    Ok("failed cluster replaced; census as a clean deploy".into())
}

/// Destroy works from a pending resource (an interrupted create) and from a failed one; a
/// deploy waits for a pending resource and converges.
pub async fn destroy_from_pending_and_failed(h: &dyn Harness) -> Result<String, Failure> {
    const CHECK: &str = "destroy from pending and from failed leaves nothing";
    let knobs = h.knobs();
    let config = h.config();
    let mut done = Vec::new();
    if knobs.pending {
        // Interrupt deploys at each mutation until one leaves a pending resource behind.
        let mut found = None;
        for n in 0..MAX_POINTS {
            h.reset().await;
            let faults = Faults {
                die_after: Some(n),
                pending: true,
                ..Faults::default()
            };
            let r = deploy(h, &config, faults)
                .await
                .map_err(|e| fail(CHECK, e))?;
            if !r.killed {
                break;
            }
            let p = plan(CHECK, h, &config, Faults::default()).await?;
            if p.changes.iter().any(|c| c.action == Action::Wait) {
                found = Some(n);
                break;
            }
        }
        let Some(n) = found else {
            return Err(fail(CHECK, "no interrupted deploy left a pending resource"));
        };
        succeeded(
            CHECK,
            "destroy from pending",
            destroy(h, &config, Faults::default()).await,
        )?;
        expect_nothing_left(CHECK, h, &config, "destroy from pending").await?;
        // The same state again, then a deploy that waits for it.
        h.reset().await;
        let faults = Faults {
            die_after: Some(n),
            pending: true,
            ..Faults::default()
        };
        deploy(h, &config, faults)
            .await
            .map_err(|e| fail(CHECK, e))?;
        let waiting = Faults {
            pending: true,
            ..Faults::default()
        };
        succeeded(
            CHECK,
            "deploy over a pending resource",
            deploy(h, &config, waiting).await,
        )?;
        expect_empty_plan(CHECK, h, &config, "waiting").await?;
        done.push(format!("pending (interrupted at mutation {})", n + 1));
    }
    if knobs.fail_once {
        h.reset().await;
        let failing = Faults {
            fail_once: Some(h.cluster_kind().into()),
            ..Faults::default()
        };
        deploy(h, &config, failing)
            .await
            .map_err(|e| fail(CHECK, e))?;
        succeeded(
            CHECK,
            "destroy from failed",
            destroy(h, &config, Faults::default()).await,
        )?;
        expect_nothing_left(CHECK, h, &config, "destroy from failed").await?;
        done.push("failed".into());
    }
    if done.is_empty() {
        return Ok("skipped: the harness can make nothing pending or failed".into());
    }
    Ok(format!("destroyed from {}", done.join(" and ")))
}

/// Runs every check, stopping at the first failure.
pub async fn run_all(h: &dyn Harness) -> Result<Report, Failure> {
    let mut report = Report::default();
    report
        .checks
        .push(("plan is deterministic", plan_is_deterministic(h).await?));
    report.checks.push((
        "deploy then plan is empty",
        deploy_then_plan_is_empty(h).await?,
    ));
    report.checks.push((
        "an edit plans only updates",
        edit_plans_only_updates(h).await?,
    ));
    report.checks.push((
        "destroy of nothing succeeds",
        destroy_of_nothing_succeeds(h).await?,
    ));
    report.checks.push((
        "destroy after interruption",
        destroy_after_interruption_leaves_nothing(h).await?,
    ));
    report.checks.push((
        "re-deploy after interruption",
        redeploy_after_interruption_converges(h).await?,
    ));
    report
        .checks
        .push(("retryable faults", retryable_faults_are_survived(h).await?));
    report.checks.push((
        "storm on every call",
        every_call_rides_out_a_storm(h).await?,
    ));
    report
        .checks
        .push(("serial groups", serial_groups_are_honoured(h).await?));
    report
        .checks
        .push(("children once", children_appear_once(h).await?));
    report
        .checks
        .push(("cluster facts", facts_reach_the_kubernetes_stage(h).await?));
    report
        .checks
        .push(("failed repaired", failed_resource_is_repaired(h).await?));
    report.checks.push((
        "destroy from pending/failed",
        destroy_from_pending_and_failed(h).await?,
    ));
    Ok(report)
}

/// The check behind a provider's [`Provider::priced_shape`], for its unit tests: what a deploy
/// of `qhub init`'s config for `kind` makes is priced as the config asks
/// ([`crate::cost::Shape::of_config`]), and a node group scaled outside qhub is priced as it is.
///
/// What a deploy makes: the provider's own resources (`desired` of the config), observed
/// exactly as made; the platform's `LoadBalancer` Service; and, when `nfs_claim` (the
/// shared filesystem is the in-cluster NFS server), its data claim at the config's size. The
/// scaled group is the observed resource of kind `group_kind` named `…user`, its
/// `max_nodes` set to 9.
pub fn priced_as_the_config(
    kind: ProviderKind,
    desired: impl Fn(&Config) -> Vec<crate::plan::Resource>,
    nfs_claim: bool,
    group_kind: &str,
    priced: impl Fn(&Config, &[crate::plan::Observed]) -> Option<crate::cost::Shape>,
) -> Result<String, Failure> {
    use crate::plan::{Observed, ResourceId, ResourceState, Stage};
    let fail = |message: String| Failure {
        check: "priced shape",
        message,
    };
    let mut options =
        crate::config::init::InitOptions::new(kind, "demo", "demo.example.com", "0123456789abcdef");
    options.gcp_project = Some("demo-project".into());
    let config = crate::config::init::render(&options)
        .map_err(|e| fail(format!("qhub init's {kind} config: {e}")))?;
    let mut observed: Vec<Observed> = desired(&config)
        .iter()
        .map(|r| Observed::like(r, r.spec.clone(), None, ResourceState::Ready))
        .collect();
    observed.push(Observed::new(
        ResourceId::new("Service", "dev/traefik"),
        Stage::Kubernetes,
        serde_json::json!({"kind": "Service", "spec": {"type": "LoadBalancer"}}),
        ResourceState::Ready,
    ));
    if nfs_claim {
        observed.push(Observed::new(
            ResourceId::new(
                "PersistentVolumeClaim",
                format!(
                    "dev-privileged/{}",
                    crate::kubernetes::components::storage::NFS_DATA
                ),
            ),
            Stage::Kubernetes,
            serde_json::json!({"spec": {"resources": {"requests": {
                "storage": config.storage.shared_filesystem,
            }}}}),
            ResourceState::Ready,
        ));
    }
    let want = crate::cost::Shape::of_config(&config);
    let got = priced(&config, &observed);
    if got.as_ref() != Some(&want) {
        return Err(fail(format!(
            "what a deploy makes is priced as {got:?}, the config as {want:?}"
        )));
    }
    let group = observed
        .iter_mut()
        .find(|o| o.id.kind == group_kind && o.id.name.ends_with("user"))
        .ok_or_else(|| {
            fail(format!(
                "no {group_kind} named …user among what a deploy makes"
            ))
        })?;
    group.spec["max_nodes"] = serde_json::json!(9);
    let moved = priced(&config, &observed)
        .ok_or_else(|| fail("a scaled group made the shape unknown".into()))?;
    match moved.node_groups.get("user") {
        Some(g) if g.max_nodes == 9 && moved != want => Ok(format!(
            "priced as the config ({} node groups); the user group scaled to 9 outside qhub is priced at 9",
            want.node_groups.len()
        )),
        other => Err(fail(format!(
            "the user group scaled to 9 outside qhub is priced as {other:?}"
        ))),
    }
}
