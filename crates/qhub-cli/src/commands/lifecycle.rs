//! `qhub plan`, `deploy`, `status` and `destroy`: load the config, build its provider, and run
//! the engine.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use qhub_core::config::{self, Config};
use qhub_core::engine::{ApplyReport, Engine, EngineError, EngineOptions, Locked, StageFilter};
use qhub_core::plan::{Plan, ResourceState, Stage};
use qhub_core::provider::{Ownership, ProviderRegistry};
use tokio_util::sync::CancellationToken;

use crate::UsageError;
use crate::cli::{
    ApplyArgs, DeployArgs, DestroyArgs, DnsArgs, KubeconfigArgs, OutputFormat, PlanArgs, StageArg,
    StatusArgs, TargetArgs,
};

/// A loaded config with its engine and a runtime to run it on.
pub(crate) struct Session {
    /// The config, secrets resolved.
    pub(crate) config: Config,
    /// The engine over the config's provider.
    pub(crate) engine: Engine,
    stages: StageFilter,
    /// The async runtime.
    pub(crate) runtime: tokio::runtime::Runtime,
}

/// The providers this build knows: `existing`/`local` from qhub-core, the cloud crates, and the
/// sandbox when the `sandbox` feature (on by default) is compiled in.
pub(crate) fn registry() -> ProviderRegistry {
    let mut r = ProviderRegistry::with_builtin();
    #[cfg(feature = "sandbox")]
    qhub_sandbox::register(&mut r);
    r.register(
        qhub_aws::PROVIDER,
        std::sync::Arc::new(|config: &Config, dir: &std::path::Path| {
            qhub_aws::AwsProvider::from_env(config, dir).map(|p| {
                std::sync::Arc::new(p) as std::sync::Arc<dyn qhub_core::provider::Provider>
            })
        }),
    );
    r.register(
        qhub_gcp::PROVIDER,
        std::sync::Arc::new(|config: &Config, dir: &std::path::Path| {
            qhub_gcp::GcpProvider::from_env(config, dir).map(|p| {
                std::sync::Arc::new(p) as std::sync::Arc<dyn qhub_core::provider::Provider>
            })
        }),
    );
    r.register(
        qhub_do::PROVIDER,
        std::sync::Arc::new(|config: &Config, dir: &std::path::Path| {
            qhub_do::DigitalOceanProvider::from_env(config, dir).map(|p| {
                std::sync::Arc::new(p) as std::sync::Arc<dyn qhub_core::provider::Provider>
            })
        }),
    );
    // What `qhub render` uses: the cloud providers' factories read credentials (a token, the
    // default chain), their cluster facts need none.
    r.register_offline_facts(
        qhub_aws::PROVIDER,
        std::sync::Arc::new(qhub_aws::facts::offline),
    );
    r.register_offline_facts(
        qhub_gcp::PROVIDER,
        std::sync::Arc::new(qhub_gcp::facts::cluster_facts),
    );
    r.register_offline_facts(
        qhub_do::PROVIDER,
        std::sync::Arc::new(qhub_do::facts::cluster_facts),
    );
    r
}

/// The DNS settings `--dns-provider` and `--dns-auto-provision` ask for, the same for plan,
/// deploy, status and destroy; checked before anything is read or changed (QHub's meaning: the
/// provider names where the record lives, the switch lets qhub manage it).
fn dns_options(args: &DnsArgs) -> anyhow::Result<qhub_core::engine::dns::DnsOptions> {
    use qhub_core::engine::dns::{DnsOptions, DnsProvider};
    let provider = match args.dns_provider.as_deref().map(str::trim) {
        None => None,
        Some("cloudflare") => Some("cloudflare"),
        Some(other) => {
            return Err(UsageError {
                message: format!(
                    "--dns-provider {other}: not supported yet; supported: {}",
                    qhub_core::dns::PROVIDERS.join(", ")
                ),
            }
            .into());
        }
    };
    let mut options = DnsOptions::default();
    match (provider, args.dns_auto_provision) {
        (None, true) => {
            return Err(UsageError {
                message: "--dns-auto-provision needs --dns-provider (cloudflare)".into(),
            }
            .into());
        }
        (Some(name), false) => {
            tracing::warn!(
                "--dns-provider {name} without --dns-auto-provision: qhub neither writes nor deletes the record; add --dns-auto-provision to let it"
            );
        }
        (Some(_), true) => {
            let cloudflare = qhub_core::dns::cloudflare::CloudflareOptions::from_env()?;
            options.provider = Some(DnsProvider::Cloudflare(cloudflare));
        }
        (None, false) => {}
    }
    Ok(options)
}

/// [`dns_options`] with deploy's `--dns-wait`.
fn deploy_dns_options(args: &DeployArgs) -> anyhow::Result<qhub_core::engine::dns::DnsOptions> {
    let mut dns = dns_options(&args.dns)?;
    dns.wait.timeout = args.dns_wait;
    Ok(dns)
}

/// Loads the config file and logs its warnings; hints name the file given.
pub(crate) fn load(path: &std::path::Path) -> anyhow::Result<config::Loaded> {
    let mut loaded = match config::load_file(path) {
        Ok(loaded) => loaded,
        Err(config::ConfigError::Invalid { file, mut report }) => {
            crate::hints_for(&mut report, path);
            return Err(config::ConfigError::Invalid { file, report }.into());
        }
        Err(e) => return Err(e.into()),
    };
    crate::hints_for(&mut loaded.report, path);
    for w in loaded.report.warnings() {
        tracing::warn!("{}: {w}", path.display());
    }
    Ok(loaded)
}

/// Loads the config and builds its engine: `apply` and `allow_replace` as the command's flags
/// give them (the defaults for commands without those flags).
pub(crate) fn session_with(
    args: &TargetArgs,
    apply: &ApplyArgs,
    allow_replace: &[qhub_core::plan::ResourceId],
    dns: qhub_core::engine::dns::DnsOptions,
) -> anyhow::Result<Session> {
    let loaded = load(&args.config)?;
    // QHUB_SECRET_ values are resolved in memory only, never written anywhere.
    let config = loaded.resolve_secrets(|name| std::env::var(name).ok())?;
    let dir: PathBuf = match args.config.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let provider = registry()
        .build(&config, &dir)
        .with_context(|| format!("provider `{}`", config.provider))?;
    for w in loaded.node_group_key_warnings(provider.node_group_keys()) {
        tracing::warn!("{}: {w}", args.config.display());
    }
    let engine = Engine::new(
        provider,
        EngineOptions {
            concurrency: usize::from(apply.concurrency),
            dns,
            allow_replace: allow_replace.to_vec(),
            lock_wait: apply.lock_timeout,
            ..EngineOptions::default()
        },
    );
    let stages = match args.stage {
        None => StageFilter::All,
        Some(StageArg::Infrastructure) => StageFilter::Only(Stage::Infrastructure),
        Some(StageArg::Kubernetes) => StageFilter::Only(Stage::Kubernetes),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    Ok(Session {
        config,
        engine,
        stages,
        runtime,
    })
}

fn confirm(question: &str, args: &ApplyArgs) -> anyhow::Result<bool> {
    if args.disable_prompt {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(UsageError {
            message: "refusing to change anything without confirmation: stdin is not a terminal; pass --disable-prompt".into(),
        }
        .into());
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// `qhub plan`.
pub fn plan(args: &PlanArgs, format: OutputFormat) -> anyhow::Result<u8> {
    let s = session_with(
        &args.target,
        &ApplyArgs::default(),
        &args.replace.allow_replace,
        dns_options(&args.dns)?,
    )?;
    let plan = s.runtime.block_on(s.engine.plan(&s.config, s.stages))?;
    match format {
        OutputFormat::Json => {
            let mut doc = plan.to_json();
            doc["time"] = crate::output::now_rfc3339().into();
            doc["in_sync"] = plan.is_empty().into();
            crate::output::json(&doc)?;
        }
        OutputFormat::Text => crate::output::stdout(&super::groups::plan_text(
            &plan,
            crate::output::verbose() > 0,
        ))?,
    }
    Ok(detailed(args.detailed_exitcode, plan.is_empty()))
}

/// The exit code of a successful plan or status: with `--detailed-exitcode`, whether the
/// deployment is in sync.
fn detailed(asked: bool, in_sync: bool) -> u8 {
    if asked && !in_sync {
        crate::EXIT_CHANGES_PENDING
    } else {
        0
    }
}

fn apply(
    s: &Session,
    locked: &Locked<'_>,
    plan: &Plan,
    format: OutputFormat,
    question: &str,
    args: &ApplyArgs,
) -> anyhow::Result<(u8, Option<ApplyReport>)> {
    if plan.is_empty() {
        if format == OutputFormat::Text {
            print!("{}", plan.render_text());
        }
        return Ok((0, None));
    }
    if format == OutputFormat::Text {
        print!(
            "{}",
            super::groups::plan_text(plan, crate::output::verbose() > 0)
        );
    }
    if !confirm(question, args)? {
        eprintln!("nothing changed");
        return Ok((crate::EXIT_FAILED, None));
    }
    // The exit code a signal asks for: Ctrl-C and SIGTERM (a cancelled CI job) both stop new
    // changes, let those in flight finish and release the locks; a second one exits at once.
    let interrupted = std::sync::Arc::new(std::sync::atomic::AtomicU8::new(0));
    let report = s.runtime.block_on(async {
        let cancel = CancellationToken::new();
        let on_signal = cancel.clone();
        let code = interrupted.clone();
        tokio::spawn(async move {
            let first = next_signal().await;
            code.store(first, std::sync::atomic::Ordering::SeqCst);
            on_signal.cancel();
            let second = next_signal().await;
            eprintln!("aborted; re-run the command to converge");
            std::process::exit(i32::from(second));
        });
        let sink = super::progress::grouped(format, super::groups::of_plan(plan));
        anyhow::Ok(locked.apply(plan, sink, cancel).await)
    })?;
    if format == OutputFormat::Text {
        summarize(&report);
    }
    let signal = interrupted.load(std::sync::atomic::Ordering::SeqCst);
    Ok((
        if report.succeeded() {
            0
        } else if report.cancelled && signal != 0 {
            signal
        } else {
            crate::EXIT_FAILED
        },
        Some(report),
    ))
}

/// Waits for Ctrl-C or SIGTERM; returns the exit code it asks for.
async fn next_signal() -> u8 {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => crate::EXIT_INTERRUPTED,
                _ = term.recv() => crate::EXIT_TERMINATED,
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                crate::EXIT_INTERRUPTED
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        crate::EXIT_INTERRUPTED
    }
}

fn summarize(report: &ApplyReport) {
    println!(
        "{} done, {} failed, {} not started in {:.1}s ({} retries){}",
        report.done.len(),
        report.failed.len(),
        report.not_started.len(),
        report.elapsed.as_secs_f64(),
        report.retries,
        if report.cancelled { "; cancelled" } else { "" }
    );
    for note in &report.notes {
        println!("  note: {note}");
    }
    for (id, action, error) in &report.failed {
        eprintln!("  failed: {action:?} {id}: {error}");
    }
    for (id, action) in &report.not_started {
        eprintln!("  not started: {action:?} {id}");
    }
    if !report.succeeded() {
        eprintln!("re-run the same command to converge: it picks up from what exists");
    }
}

fn result_json(plan: &Plan, report: Option<&ApplyReport>) -> serde_json::Value {
    serde_json::json!({
        "time": crate::output::now_rfc3339(),
        "plan": plan.to_json(),
        "applied": report,
        "succeeded": report.is_none_or(ApplyReport::succeeded),
    })
}

/// `qhub deploy`.
pub fn deploy(deploy: &DeployArgs, format: OutputFormat) -> anyhow::Result<u8> {
    let dns = deploy_dns_options(deploy)?;
    let args = &deploy.apply;
    let s = session_with(&deploy.target, args, &deploy.replace.allow_replace, dns)?;
    if s.config.prevent_deploy {
        bail!(
            "{}: prevent_deploy is true; remove it to allow deploys",
            deploy.target.config.display()
        );
    }
    if s.stages == StageFilter::Only(Stage::Kubernetes) {
        cluster_first(&s, &deploy.target.config)?;
    }
    let preflight = s
        .runtime
        .block_on(s.engine.provider().preflight(&s.config))?;
    for w in &preflight.warnings {
        tracing::warn!("preflight: {w}");
    }
    // The lock first, then the plan: nothing else can change the deployment between the two.
    // Waiting for another run's lock shows as progress.
    let locked = s.runtime.block_on(s.engine.lock_with(
        &s.config,
        "deploy",
        super::progress::sink(format),
    ))?;
    let applied = s
        .runtime
        .block_on(locked.plan(s.stages))
        .map_err(anyhow::Error::from)
        .and_then(|plan| {
            apply(&s, &locked, &plan, format, APPLY_QUESTION, args).map(|done| (plan, done))
        });
    s.runtime.block_on(locked.release());
    let (plan, (code, report)) = applied?;
    // What was done to the domain's record, also when the plan was empty.
    let dns = report
        .as_ref()
        .and_then(|r| r.dns.clone())
        .or_else(|| qhub_core::engine::dns::unchanged(&plan, &s.engine.options().dns));
    if format == OutputFormat::Json {
        let mut doc = result_json(&plan, report.as_ref());
        doc["dns"] = serde_json::json!(dns);
        crate::output::json(&doc)?;
    } else if code == 0 && s.stages.includes(Stage::Kubernetes) {
        if let Some(d) = &dns {
            print_dns(d);
        }
        // Where the platform answers, and the DNS record the domain needs.
        match s.runtime.block_on(s.engine.endpoints(&s.config)) {
            Ok(Some(e)) if s.engine.options().dns.provider.is_some() => {
                print_endpoints(&qhub_core::kubernetes::endpoints::Endpoints { dns: None, ..e });
            }
            Ok(Some(e)) => print_endpoints(&e),
            Ok(None) => {}
            Err(e) => tracing::warn!("could not read the platform's endpoints: {e}"),
        }
    }
    Ok(code)
}

/// `deploy --stage kubernetes` on a provider that makes the cluster: fails in one line, before
/// the lock and the plan, when the cluster does not exist yet (instead of a failed change per
/// object and "re-run to converge", which cannot help).
fn cluster_first(s: &Session, config: &std::path::Path) -> anyhow::Result<()> {
    use qhub_core::config::ProviderKind;
    let provider = s.engine.provider();
    if matches!(
        s.config.provider,
        ProviderKind::Existing | ProviderKind::Local
    ) || !provider.capabilities().cluster_access
    {
        return Ok(());
    }
    let ownership = Ownership::of(&s.config);
    match s.runtime.block_on(provider.cluster_access(&ownership)) {
        Err(qhub_core::provider::ProviderError::NoCluster(why)) => bail!(
            "the cluster does not exist yet ({why}): deploy the infrastructure stage first, `{} --stage infrastructure` (or `{}` for both stages)",
            crate::command_for("deploy", config),
            crate::command_for("deploy", config)
        ),
        _ => Ok(()),
    }
}

/// `qhub destroy`.
pub fn destroy(destroy: &DestroyArgs, format: OutputFormat) -> anyhow::Result<u8> {
    let args = &destroy.apply;
    let mut s = session_with(&destroy.target, args, &[], dns_options(&destroy.dns)?)?;
    if destroy.delete_crds {
        s.engine = Engine::new(
            s.engine.provider().clone(),
            EngineOptions {
                delete_crds: true,
                ..s.engine.options().clone()
            },
        );
    }
    let locked = s.runtime.block_on(s.engine.lock_with(
        &s.config,
        "destroy",
        super::progress::sink(format),
    ))?;
    let applied = s
        .runtime
        .block_on(locked.destroy_plan(s.stages))
        .map_err(anyhow::Error::from)
        .and_then(|plan| {
            apply(&s, &locked, &plan, format, DESTROY_QUESTION, args).map(|done| (plan, done))
        });
    // Released before the check below: a destroy's release also removes an empty lock bucket.
    s.runtime.block_on(locked.release());
    let (plan, (mut code, report)) = applied?;
    // Verify: look again, and fail if anything carrying our marks is still there.
    let remaining: Vec<String> = if code == 0 && report.is_some() {
        s.runtime
            .block_on(s.engine.observe_all(&s.config, s.stages))?
            .iter()
            // What the plan keeps on purpose (CRDs) is not left over.
            .filter(|o| !plan.kept.iter().any(|k| k.id == o.id))
            .map(|o| o.id.to_string())
            .collect()
    } else {
        Vec::new()
    };
    if !remaining.is_empty() {
        code = crate::EXIT_FAILED;
        if format == OutputFormat::Text {
            eprintln!(
                "destroy finished, but these still exist: {}; re-run the same command",
                remaining.join(", ")
            );
        }
    }
    // The record qhub may have written for the domain is deleted only with the DNS flags.
    let left = (s.stages.includes(Stage::Kubernetes) && s.engine.options().dns.provider.is_none())
        .then(|| {
            format!(
                "DNS: the record of {} (if any) was left in place: delete it at your DNS provider, or re-run destroy with --dns-provider cloudflare --dns-auto-provision (CLOUDFLARE_TOKEN) to delete the one qhub wrote",
                s.config.domain
            )
        });
    if format == OutputFormat::Json {
        let mut doc = result_json(&plan, report.as_ref());
        doc["remaining"] = serde_json::json!(remaining);
        if !remaining.is_empty() {
            doc["succeeded"] = serde_json::json!(false);
        }
        let notes: Vec<&String> = plan.notes.iter().chain(&left).collect();
        doc["notes"] = serde_json::json!(notes);
        crate::output::json(&doc)?;
    } else {
        if let Some(d) = report.as_ref().and_then(|r| r.dns.as_ref()) {
            print_dns(d);
        }
        if let Some(line) = &left {
            println!("{line}");
        }
    }
    Ok(code)
}

/// What the deploy did to the domain's record.
fn print_dns(d: &qhub_core::dns::DnsReport) {
    use qhub_core::dns::Outcome;
    let what = match d.outcome {
        Outcome::Created => "created",
        Outcome::Updated => "updated",
        Outcome::Replaced => "replaced",
        Outcome::Unchanged => "unchanged",
        Outcome::NotManaged => "resolves",
        Outcome::Deleted => "deleted",
    };
    let at = d
        .provider
        .as_deref()
        .map(|p| format!(" at {p}"))
        .unwrap_or_default();
    let waited = d
        .waited_secs
        .map(|s| format!(" (resolved after {s:.0}s)"))
        .unwrap_or_default();
    println!(
        "DNS: {} {} -> {} {what}{at}{waited}",
        d.kind, d.name, d.value
    );
}

/// The platform's URLs, the DNS record its domain needs, or what to do first.
fn print_endpoints(e: &qhub_core::kubernetes::endpoints::Endpoints) {
    println!("platform:");
    for u in &e.urls {
        println!("  {:<20} {}", u.component, u.url);
    }
    if let Some(r) = &e.dns {
        println!(
            "  DNS: create (or update) the {} record {} -> {} at your DNS provider",
            r.kind, r.name, r.value
        );
    }
    if let Some(h) = &e.hint {
        println!("  {h}");
    }
}

/// How long `qhub status` retries a health check that does not pass yet (a deploy's final
/// check waits longer: [`qhub_core::engine::EngineOptions::front_door_deadline`]).
const STATUS_HEALTH_DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);

/// `qhub status`.
pub fn status(status: &StatusArgs, format: OutputFormat) -> anyhow::Result<u8> {
    let args = &status.target;
    let s = session_with(args, &ApplyArgs::default(), &[], dns_options(&status.dns)?)?;
    let ownership = Ownership::of(&s.config);
    let (observed, plan, refused, running) = s.runtime.block_on(async {
        // A deploy or destroy in progress explains an out-of-sync status.
        let running = match s.engine.provider().lock_holder(&ownership).await {
            Ok(holder) => holder,
            Err(e) => {
                tracing::warn!("could not read the deploy lock: {e}");
                None
            }
        };
        let observed = s.engine.observe_all(&s.config, s.stages).await?;
        // A config whose plan is refused is out of sync; status still says what exists.
        let (plan, refused) = match s.engine.plan(&s.config, s.stages).await {
            Ok(plan) => (plan, None),
            Err(EngineError::Refused(why)) => (Plan::default(), Some(why)),
            Err(e) => return Err(e.into()),
        };
        anyhow::Ok((observed, plan, refused, running))
    })?;
    let endpoints = if s.stages.includes(Stage::Kubernetes) {
        s.runtime.block_on(s.engine.endpoints(&s.config))?
    } else {
        None
    };
    // Each listed service's health through the load balancer, where it can be reached.
    let health = if s.stages.includes(Stage::Kubernetes) {
        let events = super::progress::sink(format);
        s.runtime
            .block_on(s.engine.health(&s.config, STATUS_HEALTH_DEADLINE, &events))?
    } else {
        None
    };
    let summary = plan.summary();
    match format {
        OutputFormat::Json => crate::output::json(&serde_json::json!({
            "time": crate::output::now_rfc3339(),
            "deployment": ownership.prefix(),
            "provider": s.config.provider,
            "resources": observed.iter().map(|o| {
                let mut r = serde_json::json!({
                    "resource": o.id, "stage": o.stage, "state": o.state.word(), "cloud_id": o.cloud_id,
                });
                match &o.state {
                    ResourceState::Pending(d) | ResourceState::Failed(d) => r["detail"] = d.as_str().into(),
                    ResourceState::Ready => {}
                }
                r
            }).collect::<Vec<_>>(),
            "in_sync": plan.is_empty() && refused.is_none() && running.is_none(),
            "deploy_running": running,
            "pending": summary,
            "refused": refused,
            "endpoints": endpoints,
            "health": health,
        }))?,
        OutputFormat::Text => {
            println!(
                "deployment {} (provider {}):",
                ownership.prefix(),
                s.config.provider
            );
            if observed.is_empty() {
                println!("  nothing deployed");
            } else if crate::output::verbose() == 0 {
                print!("{}", super::groups::status_text(&observed, &plan));
                println!("  (`-v` lists every object with its cloud id)");
            }
            // Every object with `-v`; the column as wide as the longest id, so that none breaks
            // the table.
            let width = observed
                .iter()
                .map(|o| o.id.to_string().len())
                .max()
                .unwrap_or(0);
            for o in observed.iter().filter(|_| crate::output::verbose() > 0) {
                let detail = match &o.state {
                    ResourceState::Pending(d) | ResourceState::Failed(d) => format!("  ({d})"),
                    ResourceState::Ready => String::new(),
                };
                println!(
                    "  {:<width$}  {:<7}  {}{detail}",
                    o.id.to_string(),
                    o.state.word(),
                    o.cloud_id.as_deref().unwrap_or("-")
                );
            }
            if let Some(e) = &endpoints {
                print_endpoints(e);
            }
            if let Some(h) = &health {
                print!("{}", super::health::text(h));
            }
            if let Some(holder) = &running {
                println!(
                    "a deploy or destroy is running (the deploy lock is held by {holder}): what follows may change until it ends"
                );
            }
            if let Some(why) = &refused {
                println!("out of sync, and the config's plan is refused: {why}");
            } else if plan.is_empty() {
                println!("in sync with {}", args.config.display());
            } else {
                println!(
                    "out of sync: {} to create, {} to update, {} to replace, {} to delete (run `{}` for details)",
                    summary.create,
                    summary.update,
                    summary.replace,
                    summary.delete,
                    crate::command_for("plan", &args.config)
                );
            }
        }
    }
    Ok(detailed(
        status.detailed_exitcode,
        plan.is_empty() && refused.is_none() && running.is_none(),
    ))
}

/// What to do instead of `qhub kubeconfig` on a provider that writes none.
fn kubeconfig_instead(config: &Config, path: &std::path::Path) -> String {
    use qhub_core::config::ProviderKind;
    match config.provider {
        ProviderKind::Sandbox => format!(
            "the sandbox's Kubernetes API is simulated inside each qhub command (its objects are kept in .qhub-sandbox/ beside the config), so there is no server for kubectl to reach; see what is deployed with `{}` and the objects with `qhub render -c {} --manifests DIR`",
            crate::command_for("status", path),
            path.display()
        ),
        ProviderKind::Existing | ProviderKind::Local => {
            let context = [&config.existing, &config.local]
                .into_iter()
                .flatten()
                .find_map(|s| s.kube_context.clone());
            format!(
                "qhub deploys into a cluster you already reach: use the kubeconfig it reads, $KUBECONFIG (its first file) or ~/.kube/config, {}",
                match context {
                    Some(c) => format!("with `kubectl --context {c}`"),
                    None => "at its current context".to_string(),
                }
            )
        }
        _ => "this provider hands out no kubeconfig".to_string(),
    }
}

/// `qhub kubeconfig`.
pub fn kubeconfig(args: &KubeconfigArgs, format: OutputFormat) -> anyhow::Result<u8> {
    let target = TargetArgs {
        config: args.config.clone(),
        stage: None,
    };
    let s = session_with(
        &target,
        &ApplyArgs::default(),
        &[],
        qhub_core::engine::dns::DnsOptions::default(),
    )?;
    let ownership = Ownership::of(&s.config);
    let text = match s
        .runtime
        .block_on(s.engine.provider().kubeconfig(&ownership))
    {
        Ok(text) => text,
        Err(qhub_core::provider::ProviderError::NotSupported(why)) => {
            bail!("{why}: {}", kubeconfig_instead(&s.config, &args.config))
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(path) = &args.write {
        qhub_core::fs::replace(path, text.as_bytes())?;
        match format {
            OutputFormat::Json => crate::output::json(&serde_json::json!({
                "written": path.display().to_string(),
            }))?,
            OutputFormat::Text => eprintln!("wrote {}", path.display()),
        }
    } else {
        match format {
            OutputFormat::Json => crate::output::json(&serde_json::json!({ "kubeconfig": text }))?,
            OutputFormat::Text => print!("{text}"),
        }
    }
    Ok(0)
}

/// The confirmation question of deploy.
const APPLY_QUESTION: &str = "Apply these changes?";
/// The confirmation question of destroy.
const DESTROY_QUESTION: &str = "Delete everything above?";

#[cfg(test)]
mod tests {
    use super::deploy_dns_options;

    #[test]
    fn the_questions_read_as_english() {
        for q in [super::APPLY_QUESTION, super::DESTROY_QUESTION] {
            let words: Vec<String> = q.split(' ').map(str::to_lowercase).collect();
            assert!(words.windows(2).all(|w| w[0] != w[1]), "{q}");
            assert!(q.ends_with('?'), "{q}");
        }
    }
    use crate::cli::{Cli, Command};
    use clap::Parser as _;
    use std::time::Duration;

    #[test]
    fn dns_wait_sets_the_deploys_dns_wait() {
        let wait = |args: &[&str]| {
            let cli = Cli::try_parse_from(args.iter().copied()).unwrap();
            let Command::Deploy(deploy) = cli.command else {
                panic!("not a deploy")
            };
            deploy_dns_options(&deploy).unwrap().wait.timeout
        };
        assert_eq!(wait(&["qhub", "deploy"]), Duration::from_secs(600));
        assert_eq!(
            wait(&["qhub", "deploy", "--dns-wait", "90s"]),
            Duration::from_secs(90)
        );
    }
}
