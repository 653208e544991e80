//! The domain's DNS record as part of the Kubernetes stage: planned beside the objects
//! (`DnsRecord/<domain>`), applied through the DNS provider's API ([`crate::dns`]) once the
//! ingress load balancer has an address, and, with `certificate.type: lets-encrypt`, waited
//! for until the name resolves to the load balancer.
//!
//! Order: the record depends on the ingress Service (its address); the IngressRoutes that make
//! Traefik request a certificate (those with a `certResolver`) depend on the record. Traefik
//! asks Let's Encrypt as soon as such a router exists, so on a deploy that creates them the
//! request comes only after the name resolves; an IngressRoute that already exists is not held
//! back (Traefik has asked already, and renews by itself).
//!
//! The resource is planned when qhub manages the record (`--dns-provider cloudflare
//! --dns-auto-provision`), or when Let's Encrypt is used on a cloud (then qhub only waits, and
//! on timeout says which record to create). On the sandbox and local clusters no name can
//! resolve to the load balancer, so without an injected resolver nothing is waited for.
//!
//! Destroy: when qhub manages the record, the destroy plan observes it like any resource it
//! owns ([`super::Engine::observe_all`]) — only a record carrying our comment
//! ([`crate::dns::owner_comment`]) counts as ours — so it is planned as a delete, before the
//! ingress Service it depends on. A record at the name without our comment is never deleted;
//! the plan names it in a note. Without a DNS provider nothing is observed and the record is
//! left in place.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

use async_trait::async_trait;

use super::reconciler::{ObserveContext, PlanContext, Reconciler, Scope};
use super::{ApplyReport, Engine, EngineError};
use crate::config::certificate::CertificateKind;
use crate::config::{Config, ProviderKind};
use crate::dns::cloudflare::{Cloudflare, CloudflareOptions};
use crate::dns::resolve::{Resolver, SystemResolver, WaitOptions};
use crate::dns::{DnsError, DnsReport, Outcome};
use crate::events::Event;
use crate::kubernetes::components::ingress;
use crate::kubernetes::endpoints::DnsRecord;
use crate::plan::{self, Action, Change, ResourceId, ResourceState, Stage};
use crate::provider::ProviderError;

/// The plan's kind for the domain's record.
pub const KIND: &str = "DnsRecord";

/// Stands for the load balancer's address before it exists.
const UNKNOWN: &str = crate::provider::facts::AFTER_APPLY;

/// The DNS provider that holds the domain's record, when qhub manages it.
#[derive(Debug, Clone)]
pub enum DnsProvider {
    /// Cloudflare (`--dns-provider cloudflare --dns-auto-provision`).
    Cloudflare(CloudflareOptions),
}

impl DnsProvider {
    /// Its name, as `--dns-provider` spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Cloudflare(_) => "cloudflare",
        }
    }
}

/// DNS settings of the engine.
#[derive(Debug, Clone, Default)]
pub struct DnsOptions {
    /// The provider that holds the record (`None`: qhub does not write it).
    pub provider: Option<DnsProvider>,
    /// The resolver of the wait (`None`: the system resolver on a cloud; no wait on the
    /// sandbox and local clusters).
    pub resolver: Option<Arc<dyn Resolver>>,
    /// How long to wait for the name to resolve, and how often to look.
    pub wait: WaitOptions,
}

impl DnsOptions {
    /// The resolver to wait with, or `None` when nothing is waited for.
    fn resolver_for(&self, config: &Config) -> Option<Arc<dyn Resolver>> {
        if config.certificate.kind != CertificateKind::LetsEncrypt {
            return None;
        }
        match (&self.resolver, config.provider) {
            (Some(r), _) => Some(r.clone()),
            (None, ProviderKind::Sandbox | ProviderKind::Local) => None,
            (None, _) => Some(Arc::new(SystemResolver)),
        }
    }

    /// Whether the record is planned at all.
    fn active(&self, config: &Config) -> bool {
        self.provider.is_some() || self.resolver_for(config).is_some()
    }
}

/// The id of the domain's record.
pub(crate) fn id(config: &Config) -> ResourceId {
    ResourceId::new(KIND, crate::dns::cloudflare::normalise(&config.domain))
}

/// Whether a resource is the domain's record.
pub(crate) fn is_dns(id: &ResourceId) -> bool {
    id.kind == KIND
}

/// The id of the ingress Service, whose address the record points at.
fn service_id(config: &Config) -> ResourceId {
    ResourceId::new("Service", format!("{}/{}", config.namespace, ingress::NAME))
}

fn spec(record: Option<&DnsRecord>, managed: bool) -> Json {
    let mut spec = match record {
        Some(r) => json!({"type": r.kind, "content": r.value}),
        None => json!({"type": UNKNOWN, "content": UNKNOWN}),
    };
    if managed {
        spec["proxied"] = Json::Bool(false);
    }
    spec
}

/// Makes the objects that trigger an ACME request (IngressRoutes with a `certResolver`) wait
/// for the record.
fn gate(k8s: &mut [plan::Resource], record: &ResourceId) {
    for r in k8s {
        let manifest = r.payload.as_ref().unwrap_or(&r.spec);
        let acme = manifest.get("kind").and_then(Json::as_str) == Some("IngressRoute")
            && manifest.pointer("/spec/tls/certResolver").is_some();
        if acme && !r.depends_on.contains(record) {
            r.depends_on.push(record.clone());
        }
    }
}

/// The domain's record as a reconciler of the Kubernetes stage.
#[derive(Debug, Default)]
pub(crate) struct Dns {
    /// What the apply did to the record.
    report: std::sync::Mutex<Option<DnsReport>>,
}

impl Dns {
    fn set_report(&self, report: DnsReport) {
        *self.report.lock().unwrap_or_else(|p| p.into_inner()) = Some(report);
    }
}

#[async_trait]
impl Reconciler for Dns {
    fn owns(&self, id: &ResourceId) -> bool {
        is_dns(id)
    }

    async fn plan(&self, engine: &Engine, cx: &mut PlanContext<'_>) -> Result<(), EngineError> {
        if let Some((record, existing)) = plan_record(
            engine,
            cx.config,
            &mut cx.objects,
            &cx.objects_observed,
            cx.applier.as_ref(),
        )
        .await?
        {
            cx.desired.push(record);
            cx.observed.extend(existing);
        }
        Ok(())
    }

    async fn observe(
        &self,
        engine: &Engine,
        cx: &mut ObserveContext<'_>,
    ) -> Result<(), EngineError> {
        // Read whether or not the cluster still exists: a destroy interrupted after the
        // cluster went can still delete the record.
        let (record, notes) = observe_record(engine, cx.config).await?;
        cx.observed.extend(record);
        cx.notes.extend(notes);
        Ok(())
    }

    async fn apply(
        &self,
        scope: &Scope,
        change: &Change,
        _deadline: Duration,
    ) -> Result<(), ProviderError> {
        apply(self, scope, change).await
    }

    fn finish(&self, plan: &plan::Plan, scope: &Scope, report: &mut ApplyReport) {
        report.dns = self
            .report
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .or_else(|| unchanged(plan, &scope.options.dns));
    }
}

/// The record's part of a plan: the resource and what exists of it; the IngressRoutes that
/// trigger an ACME request in `k8s` are made to depend on it. Nothing when neither a DNS
/// provider nor a wait applies.
async fn plan_record(
    engine: &Engine,
    config: &Config,
    k8s: &mut [plan::Resource],
    k8s_observed: &[plan::Observed],
    applier: Option<&crate::kubernetes::apply::Applier>,
) -> Result<Option<(plan::Resource, Option<plan::Observed>)>, EngineError> {
    let options = &engine.options().dns;
    if !options.active(config) {
        return Ok(None);
    }
    let managed = options.provider.is_some();
    let id = id(config);
    gate(k8s, &id);
    let service = service_id(config);
    // The address the live Service has, when it exists.
    // (Through the client observing the objects used: no second connection.)
    let address = match applier {
        Some(applier) if k8s_observed.iter().any(|o| o.id == service) => {
            engine
                .read("reading the ingress load balancer's address", || async {
                    crate::kubernetes::endpoints::read(applier.client(), config)
                        .await
                        .map(|e| e.dns)
                        .map_err(ProviderError::from)
                })
                .await?
        }
        _ => None,
    };
    let resource = plan::Resource::new(
        KIND,
        id.name.clone(),
        Stage::Kubernetes,
        spec(address.as_ref(), managed),
    )
    .depends_on([service])
    .expected(Duration::from_secs(60));
    let observed = match &options.provider {
        Some(DnsProvider::Cloudflare(o)) => {
            let client = Cloudflare::new(o.clone(), Arc::default())
                .map_err(|e| EngineError::Provider {
                    what: "setting up the Cloudflare client".into(),
                    source: e.into(),
                })?
                .with_retry(engine.options().retry);
            // The client retries each call itself.
            let found = client
                .lookup(&config.domain)
                .await
                .map_err(|e| EngineError::Provider {
                    what: format!("reading the DNS record of {} in Cloudflare", config.domain),
                    source: e.into(),
                })?;
            let wanted = address.as_ref().map(|a| a.kind.as_str());
            let record = found
                .records
                .iter()
                .find(|r| Some(r.kind.as_str()) == wanted)
                .or_else(|| found.records.iter().find(|r| r.kind != "AAAA"));
            record.map(|r| {
                let mut o = plan::Observed::new(
                    id.clone(),
                    Stage::Kubernetes,
                    json!({"type": r.kind, "content": r.content, "proxied": r.proxied}),
                    ResourceState::Ready,
                );
                o.cloud_id = Some(r.id.clone());
                o
            })
        }
        None => match (&address, options.resolver_for(config)) {
            // Not managed: it "exists" when the name already resolves to the load balancer.
            (Some(record), Some(resolver)) => {
                let once = WaitOptions {
                    timeout: Duration::ZERO,
                    poll: Duration::from_millis(1),
                };
                crate::dns::resolve::wait_until_resolves(&*resolver, record, once, false, |_| {})
                    .await
                    .ok()
                    .map(|_| {
                        plan::Observed::new(
                            id.clone(),
                            Stage::Kubernetes,
                            spec(Some(record), false),
                            ResourceState::Ready,
                        )
                    })
            }
            _ => None,
        },
    };
    Ok(Some((resource, observed)))
}

/// The record as a destroy sees it: the record at the domain that carries this
/// deployment's comment (planned as a delete), and a note for each `A`/`AAAA`/`CNAME`
/// record at the name without it (never deleted). Nothing when qhub does not manage the
/// record.
async fn observe_record(
    engine: &Engine,
    config: &Config,
) -> Result<(Option<plan::Observed>, Vec<String>), EngineError> {
    let Some(DnsProvider::Cloudflare(o)) = &engine.options().dns.provider else {
        return Ok((None, Vec::new()));
    };
    let failed = |e: DnsError| EngineError::Provider {
        what: format!("reading the DNS record of {} in Cloudflare", config.domain),
        source: e.into(),
    };
    let client = Cloudflare::new(o.clone(), Arc::default())
        .map_err(failed)?
        .with_retry(engine.options().retry);
    // The client retries each call itself.
    let found = client.lookup(&config.domain).await.map_err(failed)?;
    let comment = crate::dns::owner_comment(&super::Ownership::of(config).prefix());
    let (ours, theirs): (Vec<_>, Vec<_>) = found.records.iter().partition(|r| r.is_owned(&comment));
    let notes = theirs
            .iter()
            .map(|r| {
                format!(
                    "Cloudflare has {} {} -> {} in zone {}, not made by qhub (its comment is not `{comment}`): destroy leaves it in place; delete it in Cloudflare if it is no longer wanted",
                    r.kind, r.name, r.content, found.zone.name
                )
            })
            .collect();
    let observed = ours.first().map(|r| {
        let mut o = plan::Observed::new(
            id(config),
            Stage::Kubernetes,
            json!({"type": r.kind, "content": r.content, "proxied": r.proxied}),
            ResourceState::Ready,
        );
        o.cloud_id = Some(r.id.clone());
        // Deleted before the load balancer it points at.
        o.depends_on = vec![service_id(config)];
        o
    });
    Ok((observed, notes))
}

/// Deletes the records at the domain that carry this deployment's comment (all of them, should
/// there be more than the one qhub writes); leaves every other record, with a warning.
async fn delete(dns: &Dns, shared: &Scope, change: &Change) -> Result<(), ProviderError> {
    let Some(DnsProvider::Cloudflare(o)) = &shared.options.dns.provider else {
        // Not managed: left in place (the destroy plan has no such change then).
        return Ok(());
    };
    let client = Cloudflare::new(o.clone(), Arc::default())?.with_retry(shared.options.retry);
    let comment = crate::dns::owner_comment(&shared.ownership.prefix());
    let done = client.delete_owned(&change.id.name, &comment).await?;
    for r in &done.kept {
        tracing::warn!(
            record = %r.name,
            kind = %r.kind,
            content = %r.content,
            "a DNS record not made by qhub stands at the domain: left in place"
        );
    }
    if let Some(r) = done.deleted.first() {
        dns.set_report(DnsReport {
            provider: Some("cloudflare".into()),
            name: r.name.clone(),
            kind: r.kind.clone(),
            value: r.content.clone(),
            outcome: Outcome::Deleted,
            waited_secs: None,
        });
    }
    Ok(())
}

/// Reads the load balancer's address, waiting (with progress) until the cloud has given one.
async fn address(shared: &Scope, change: &Change) -> Result<DnsRecord, ProviderError> {
    let cluster = shared.cluster().await?;
    let Some(cluster) = cluster else {
        return Err(ProviderError::NoCluster(format!(
            "cannot read the load balancer's address for {} before the cluster exists",
            change.id
        )));
    };
    let started = Instant::now();
    let timeout = shared.options.dns.wait.timeout;
    let mut pause = (shared.options.poll_interval / 16).max(Duration::from_millis(1));
    let mut announced = false;
    loop {
        let endpoints = crate::retry::retry(
            &shared.options.retry,
            "reading the ingress Service",
            || async {
                crate::kubernetes::endpoints::read(cluster.applier.client(), &shared.config)
                    .await
                    .map_err(ProviderError::from)
            },
        )
        .await?;
        if let Some(record) = endpoints.dns {
            return Ok(record);
        }
        if !announced {
            announced = true;
            shared.events.emit(&Event::Waiting {
                stage: Some(change.stage),
                resource: change.id.clone(),
                detail: "waiting for the cloud to give the ingress load balancer an address".into(),
            });
        }
        if started.elapsed() + pause > timeout {
            return Err(ProviderError::Fatal(format!(
                "the ingress load balancer ({}/{}) has no address after {}s, so no DNS record can point at it: check `kubectl -n {} describe svc {}` for the cloud's events, then re-run",
                shared.config.namespace,
                ingress::NAME,
                timeout.as_secs(),
                shared.config.namespace,
                ingress::NAME
            )));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(shared.options.poll_interval);
    }
}

/// Applies the record: writes it through the DNS provider when qhub manages it, then waits for
/// the name to resolve when Let's Encrypt will be asked.
async fn apply(dns: &Dns, shared: &Scope, change: &Change) -> Result<(), ProviderError> {
    if change.action == Action::Delete {
        return delete(dns, shared, change).await;
    }
    let record = address(shared, change).await?;
    let options = &shared.options.dns;
    let outcome = match &options.provider {
        Some(DnsProvider::Cloudflare(o)) => {
            let client =
                Cloudflare::new(o.clone(), Arc::default())?.with_retry(shared.options.retry);
            let comment = crate::dns::owner_comment(&shared.ownership.prefix());
            client.ensure(&record, &comment).await?
        }
        None => Outcome::NotManaged,
    };
    let mut report = DnsReport {
        provider: options.provider.as_ref().map(|p| p.name().to_string()),
        name: record.name.clone(),
        kind: record.kind.clone(),
        value: record.value.clone(),
        outcome,
        waited_secs: None,
    };
    dns.set_report(report.clone());
    if let Some(resolver) = options.resolver_for(&shared.config) {
        let waited = crate::dns::resolve::wait_until_resolves(
            &*resolver,
            &record,
            options.wait,
            options.provider.is_some(),
            |line| {
                shared.events.emit(&Event::Waiting {
                    stage: Some(change.stage),
                    resource: change.id.clone(),
                    detail: line.to_string(),
                });
            },
        )
        .await?;
        report.waited_secs = Some(waited.as_secs_f64());
        dns.set_report(report);
    }
    Ok(())
}

/// The report of a plan whose record needed no change (`None` when the record is not
/// planned, or a change to it is).
pub fn unchanged(plan: &plan::Plan, options: &DnsOptions) -> Option<DnsReport> {
    let r = plan.resources.iter().find(|r| is_dns(&r.id))?;
    if plan.changes.iter().any(|c| is_dns(&c.id)) {
        return None;
    }
    let s = |k: &str| {
        r.spec
            .get(k)
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string()
    };
    Some(DnsReport {
        provider: options.provider.as_ref().map(|p| p.name().to_string()),
        name: r.id.name.clone(),
        kind: s("type"),
        value: s("content"),
        outcome: if options.provider.is_some() {
            Outcome::Unchanged
        } else {
            Outcome::NotManaged
        },
        waited_secs: None,
    })
}
