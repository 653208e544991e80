//! Lifecycle bench on the sandbox (`cargo bench --workspace --bench lifecycle`).
//!
//! Measures, with the sandbox's latency model: deploy wall time against the critical-path lower
//! bound (the longest chain of the cloud's own waits), no-op plan and no-op deploy wall time,
//! mutating calls made by a no-op deploy, destroy wall time, and the process's peak memory.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use qhub_core::config::CiKind;
use qhub_core::config::init::{InitOptions, render};
use qhub_core::config::provider::ProviderKind;
use qhub_core::engine::{Engine, EngineOptions, StageFilter};
use qhub_core::events::NoEvents;
use qhub_core::plan::{Action, Plan, ResourceId, Stage};
use qhub_core::provider::Ownership;
use qhub_sandbox::SandboxProvider;
use qhub_sandbox::faults::FaultSpec;
use qhub_sandbox::world::World;
use tokio_util::sync::CancellationToken;

/// The lower bound of a plan's wall time: the longest chain of the cloud's own waits. A create
/// waits for what it depends on; a delete for the deletes of its dependants; Kubernetes objects
/// (instant in the sandbox) for all of the infrastructure, and infrastructure deletes for them.
fn critical_path(plan: &Plan, provider: &SandboxProvider) -> Duration {
    let mut finish: BTreeMap<ResourceId, Duration> = BTreeMap::new();
    let mut infra_done = Duration::ZERO;
    for c in &plan.changes {
        let deps: Vec<Duration> = if c.action == Action::Delete {
            plan.changes
                .iter()
                .filter(|o| {
                    o.depends_on().contains(&c.id)
                        || (c.stage == Stage::Infrastructure && o.stage == Stage::Kubernetes)
                })
                .filter_map(|o| finish.get(&o.id).copied())
                .collect()
        } else {
            let mut d: Vec<Duration> = c
                .depends_on()
                .iter()
                .filter_map(|d| finish.get(d).copied())
                .collect();
            if c.stage == Stage::Kubernetes {
                d.push(infra_done);
            }
            d
        };
        let start = deps.into_iter().max().unwrap_or_default();
        let took = match c.stage {
            Stage::Infrastructure => provider.latency(&c.id.kind, c.action),
            Stage::Kubernetes => Duration::ZERO,
        };
        finish.insert(c.id.clone(), start + took);
        if c.stage == Stage::Infrastructure && c.action != Action::Delete {
            infra_done = infra_done.max(start + took);
        }
    }
    finish.values().max().copied().unwrap_or_default()
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test" || a == "--quick");
    let scale = if quick { 0.0001 } else { 0.002 };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = render(&InitOptions {
        ci: CiKind::None,
        ..InitOptions::new(
            ProviderKind::Sandbox,
            "bench",
            "bench.example.com",
            "0123456789abcdef",
        )
    })
    .expect("render");
    let provider = SandboxProvider::new(dir.path(), scale, FaultSpec::default());
    let engine = Engine::new(Arc::new(provider.clone()), EngineOptions::default());
    let ownership = Ownership::of(&config);
    let all = StageFilter::All;
    runtime.block_on(async {
        let locked = engine.lock(&config).await.expect("lock");
        let t = Instant::now();
        let plan = locked.plan(all).await.expect("plan");
        let plan_time = t.elapsed();
        let bound = critical_path(&plan, &provider);
        let t = Instant::now();
        let report = locked
            .apply(&plan, Arc::new(NoEvents), CancellationToken::new())
            .await;
        drop(locked);
        let deploy = t.elapsed();
        assert!(report.succeeded(), "{report:?}");
        println!(
            "time scale {scale} (a 600 s cluster create takes {:?})",
            provider.latency("cluster", qhub_core::plan::Action::Create)
        );
        println!("initial plan:        {plan_time:>10.3?}");
        println!(
            "deploy:              {deploy:>10.3?}  critical path {bound:>10.3?}  ratio {:.3}",
            deploy.as_secs_f64() / bound.as_secs_f64()
        );

        let mut noop_plans = Vec::new();
        let mut noop_deploys = Vec::new();
        // Mutating calls in both stages: the cloud's counter and the cluster API's.
        let kube = provider.kube_api(&ownership).expect("cluster API");
        let writes = || World::load(dir.path()).expect("world").stats.mutations + kube.mutations();
        let before = writes();
        for _ in 0..20 {
            let t = Instant::now();
            let p = engine.plan(&config, all).await.expect("plan");
            noop_plans.push(t.elapsed());
            assert!(p.is_empty());
            let t = Instant::now();
            let (_, r) = engine
                .deploy(&config, all, Arc::new(NoEvents), CancellationToken::new())
                .await
                .expect("plan");
            noop_deploys.push(t.elapsed());
            assert!(r.succeeded());
        }
        let after = writes();
        noop_plans.sort();
        noop_deploys.sort();
        println!(
            "no-op plan:          {:>10.3?}  (median of 20)",
            noop_plans[10]
        );
        println!(
            "no-op deploy:        {:>10.3?}  (median of 20), mutating calls: {}",
            noop_deploys[10],
            after - before
        );

        let locked = engine.lock(&config).await.expect("lock");
        let t = Instant::now();
        let d = locked.destroy_plan(all).await.expect("destroy plan");
        let dbound = critical_path(&d, &provider);
        let r = locked
            .apply(&d, Arc::new(NoEvents), CancellationToken::new())
            .await;
        assert!(r.succeeded());
        println!(
            "destroy:             {:>10.3?}  critical path {dbound:>10.3?}  ratio {:.3}",
            t.elapsed(),
            t.elapsed().as_secs_f64() / dbound.as_secs_f64()
        );
    });
    if let Some(kib) = peak_rss_kib() {
        println!("peak memory (VmHWM): {:.1} MiB", kib as f64 / 1024.0);
    }
}
