//! The domain's DNS record through the engine, on the sandbox: Cloudflare is the emulator on
//! loopback and the resolver a table, so nothing leaves this machine. The record is created
//! after the ingress Service has its address; with Let's Encrypt, the IngressRoutes that make
//! Traefik ask for a certificate are applied only after the name resolves; a re-deploy writes
//! nothing to Cloudflare; a name that never resolves fails the deploy with the instruction,
//! before any ACME-triggering object exists.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qhub_cloudflare_emulator::{CloudflareEmulator, DEFAULT_TOKEN, Options};
use qhub_core::Config;
use qhub_core::config::certificate::CertificateKind;
use qhub_core::config::init::{InitOptions, render};
use qhub_core::config::provider::ProviderKind;
use qhub_core::dns::Outcome;
use qhub_core::dns::cloudflare::CloudflareOptions;
use qhub_core::dns::resolve::{StaticResolver, WaitOptions};
use qhub_core::engine::dns::{DnsOptions, DnsProvider};
use qhub_core::engine::{ApplyReport, Engine, EngineOptions, StageFilter};
use qhub_core::events::{Event, EventSink};
use qhub_core::keycloak::SecretString;
use qhub_core::plan::Action;
use qhub_core::provider::Provider;
use qhub_core::retry::{Budget, RetryPolicy};
use qhub_sandbox::SandboxProvider;
use qhub_sandbox::faults::FaultSpec;
use tokio_util::sync::CancellationToken;

fn config() -> Config {
    let mut c = render(&InitOptions::new(
        ProviderKind::Sandbox,
        "demo",
        "demo.example.com",
        "not-a-real-password",
    ))
    .unwrap();
    c.certificate.kind = CertificateKind::LetsEncrypt;
    c.certificate.acme_email = Some("ops@example.com".into());
    c
}

/// Records the events, and makes the name resolve once the engine says it waits for it (the
/// record "propagating").
struct Propagate {
    events: Mutex<Vec<Event>>,
    resolver: StaticResolver,
    propagate: bool,
}

impl EventSink for Propagate {
    fn emit(&self, event: &Event) {
        if let Event::Waiting { detail, .. } = event
            && self.propagate
            && detail.starts_with("demo.example.com must resolve to 127.0.0.1")
        {
            let lb: IpAddr = "127.0.0.1".parse().unwrap();
            self.resolver.set("demo.example.com", &[lb]);
        }
        self.events.lock().unwrap().push(event.clone());
    }
}

fn engine(
    provider: &SandboxProvider,
    cf: &CloudflareEmulator,
    resolver: &StaticResolver,
    timeout: Duration,
) -> Engine {
    let mut cloudflare = CloudflareOptions::new(SecretString::new(DEFAULT_TOKEN));
    cloudflare.base_url = cf.url();
    Engine::new(
        Arc::new(provider.clone()) as Arc<dyn Provider>,
        EngineOptions {
            min_deadline: Duration::from_secs(60),
            deadline_factor: 0.01,
            poll_interval: Duration::from_millis(20),
            retry: RetryPolicy::uniform(Budget::attempts(
                5,
                Duration::from_millis(5),
                Duration::from_millis(50),
            )),
            dns: DnsOptions {
                provider: Some(DnsProvider::Cloudflare(cloudflare)),
                resolver: Some(Arc::new(resolver.clone())),
                wait: WaitOptions {
                    timeout,
                    poll: Duration::from_millis(10),
                },
            },
            ..EngineOptions::default()
        },
    )
}

/// What each test starts from: a sandbox, the Cloudflare emulator, the resolver the deploy
/// waits on, an engine whose wait gives up after the given time, the config, and a sink that
/// makes the name resolve once the record is written (when told to propagate).
struct World {
    _dir: tempfile::TempDir,
    cf: CloudflareEmulator,
    resolver: StaticResolver,
    engine: Engine,
    config: Config,
    sink: Arc<Propagate>,
}

async fn world(timeout: Duration, propagate: bool) -> World {
    let dir = tempfile::tempdir().unwrap();
    let provider = SandboxProvider::new(dir.path(), 0.0, FaultSpec::default());
    let cf = CloudflareEmulator::start(Options::default()).await.unwrap();
    let resolver = StaticResolver::new();
    let engine = engine(&provider, &cf, &resolver, timeout);
    let sink = Arc::new(Propagate {
        events: Mutex::new(Vec::new()),
        resolver: resolver.clone(),
        propagate,
    });
    World {
        _dir: dir,
        cf,
        resolver,
        engine,
        config: config(),
        sink,
    }
}

async fn deploy(engine: &Engine, config: &Config, sink: Arc<Propagate>) -> ApplyReport {
    let (_, report) = engine
        .deploy(config, StageFilter::All, sink, CancellationToken::new())
        .await
        .expect("deploy runs");
    report
}

fn position(events: &[Event], pred: impl Fn(&Event) -> bool) -> Option<usize> {
    events.iter().position(pred)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_record_is_made_after_the_load_balancer_and_acme_waits_for_it_to_resolve() {
    let World {
        _dir,
        cf,
        engine,
        config,
        sink,
        ..
    } = world(Duration::from_secs(30), true).await;
    let report = deploy(&engine, &config, sink.clone()).await;
    assert!(report.succeeded(), "{report:?}");
    let dns = report.dns.clone().expect("the record is reported");
    assert_eq!(dns.outcome, Outcome::Created);
    assert_eq!((dns.kind.as_str(), dns.value.as_str()), ("A", "127.0.0.1"));
    assert!(dns.waited_secs.is_some());
    let records = cf.records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        (records[0].name.as_str(), records[0].content.as_str()),
        ("demo.example.com", "127.0.0.1")
    );
    assert_eq!(
        records[0].comment.as_deref(),
        Some("managed by qhub: demo-dev")
    );

    // The order: the Service, then the record, then the name resolves, then the routes.
    let events = sink.events.lock().unwrap().clone();
    let done = |kind: &'static str| move |e: &Event| matches!(e, Event::Done { resource, .. } if resource.kind == kind);
    let service_done = position(&events, |e| {
        matches!(e, Event::Done { resource, .. } if resource.kind == "Service" && resource.name.ends_with("/traefik"))
    })
    .expect("the ingress Service was applied");
    let record_started = position(
        &events,
        |e| matches!(e, Event::Started { resource, .. } if resource.kind == "DnsRecord"),
    )
    .unwrap();
    let record_done = position(&events, done("DnsRecord")).unwrap();
    let first_route = position(&events, |e| {
        matches!(e, Event::Started { resource, .. } if resource.kind == "IngressRoute.traefik.io")
    })
    .expect("routes were applied");
    assert!(service_done < record_started, "{events:#?}");
    assert!(record_done < first_route, "{events:#?}");
    assert!(
        events.iter().any(|e| matches!(e, Event::Waiting { detail, .. } if detail.contains("before Let's Encrypt is asked"))),
        "the wait is shown as progress"
    );

    // Calls: 2 zone look-ups (demo.example.com, example.com) and 1 record list at plan time,
    // the same at apply time, and one create.
    let counters = cf.counters();
    assert_eq!(
        (counters.requests, counters.mutations),
        (7, 1),
        "{counters:?}"
    );

    // A re-deploy: nothing to write to Cloudflare.
    let writes = cf.mutations();
    let report = deploy(&engine, &config, sink.clone()).await;
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(
        cf.mutations(),
        writes,
        "a re-deploy writes nothing to Cloudflare"
    );
    assert_eq!(report.dns.map(|d| d.outcome), Some(Outcome::Unchanged));

    // An unrelated record at the name changes nothing.
    cf.insert("TXT", "demo.example.com", "v=unrelated", None);
    let plan = engine.plan(&config, StageFilter::All).await.unwrap();
    assert!(
        plan.changes.iter().all(|c| c.id.kind != "DnsRecord"),
        "an unrelated TXT record changes nothing: {:?}",
        plan.changes
    );

    // The record changed by hand is planned and put back.
    let id = cf.records()[0].id.clone();
    cf.set_content(&id, "198.51.100.1");
    let plan = engine.plan(&config, StageFilter::All).await.unwrap();
    let change = plan
        .changes
        .iter()
        .find(|c| c.id.kind == "DnsRecord")
        .expect("the drift is planned");
    assert_eq!(change.action, Action::Update);
    let report = deploy(&engine, &config, sink).await;
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(report.dns.map(|d| d.outcome), Some(Outcome::Updated));
    assert_eq!(cf.records()[0].content, "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_never_resolves_fails_the_deploy_before_any_certificate_is_asked_for() {
    let World {
        _dir,
        cf,
        engine,
        config,
        sink,
        ..
    } = world(Duration::from_millis(300), false).await;
    let report = deploy(&engine, &config, sink).await;
    assert!(!report.succeeded());
    let (id, action, error) = report
        .failed
        .iter()
        .find(|(id, _, _)| id.kind == "DnsRecord")
        .expect("the record's wait failed");
    assert_eq!(
        (id.name.as_str(), *action),
        ("demo.example.com", Action::Create)
    );
    assert!(
        error.contains("demo.example.com did not resolve to 127.0.0.1")
            && error.contains("Let's Encrypt was not asked"),
        "{error}"
    );
    assert!(
        report
            .not_started
            .iter()
            .any(|(id, _)| id.kind == "IngressRoute.traefik.io"),
        "no route with a certResolver was applied: {:?}",
        report.not_started
    );
    assert!(
        report
            .done
            .iter()
            .all(|(id, _)| id.kind != "IngressRoute.traefik.io"),
        "{:?}",
        report.done
    );
    assert_eq!(cf.records().len(), 1, "the record itself was made");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_deletes_the_dns_record_qhub_wrote_and_never_another() {
    let World {
        _dir,
        cf,
        resolver,
        engine,
        config,
        sink,
    } = world(Duration::from_secs(30), true).await;
    let report = deploy(&engine, &config, sink.clone()).await;
    assert!(report.succeeded(), "{report:?}");
    // The user's own records: an AAAA beside ours at the name, another name's A, and another
    // deployment's record at another name.
    cf.insert("AAAA", "demo.example.com", "2001:db8::7", None);
    cf.insert("A", "www.example.com", "192.0.2.9", None);
    cf.insert(
        "A",
        "prod.example.com",
        "192.0.2.10",
        Some("managed by qhub: demo-prod"),
    );
    let before = cf.records().len();

    // The destroy plan shows the record as a delete, and names the record it leaves.
    let plan = engine
        .destroy_plan(&config, StageFilter::All)
        .await
        .unwrap();
    let change = plan
        .changes
        .iter()
        .find(|c| c.id.kind == "DnsRecord")
        .expect("the record is planned");
    assert_eq!(
        (change.id.name.as_str(), change.action),
        ("demo.example.com", Action::Delete)
    );
    assert!(
        plan.render_text().contains("- DnsRecord/demo.example.com"),
        "{}",
        plan.render_text()
    );
    assert!(
        plan.notes
            .iter()
            .any(|n| n.contains("AAAA demo.example.com -> 2001:db8::7")
                && n.contains("not made by qhub")),
        "{:?}",
        plan.notes
    );

    // Throttled once on the way: Retry-After is honoured, the destroy goes through.
    cf.throttle_next(1, 1);
    let sink = Arc::new(Propagate {
        events: Mutex::new(Vec::new()),
        resolver: resolver.clone(),
        propagate: false,
    });
    let (_, report) = engine
        .destroy(
            &config,
            StageFilter::All,
            sink.clone(),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(cf.counters().throttled, 1);
    assert_eq!(report.dns.map(|d| d.outcome), Some(Outcome::Deleted));
    let left: Vec<(String, String)> = cf.records().into_iter().map(|r| (r.kind, r.name)).collect();
    assert_eq!(left.len(), before - 1, "{left:?}");
    assert!(
        !left.contains(&("A".into(), "demo.example.com".into())),
        "{left:?}"
    );
    // Deleted before the load balancer it points at.
    let events = sink.events.lock().unwrap().clone();
    let record = position(
        &events,
        |e| matches!(e, Event::Done { resource, .. } if resource.kind == "DnsRecord"),
    )
    .expect("the record's delete finished");
    let service = position(&events, |e| {
        matches!(e, Event::Started { resource, .. } if resource.kind == "Service" && resource.name.ends_with("/traefik"))
    })
    .expect("the ingress Service was deleted");
    assert!(record < service, "{events:#?}");

    // A second destroy: nothing of ours is left, nothing is written, the AAAA is named again.
    let writes = cf.mutations();
    let plan = engine
        .destroy_plan(&config, StageFilter::All)
        .await
        .unwrap();
    assert!(plan.changes.is_empty(), "{:?}", plan.changes);
    assert!(
        plan.render_text().contains("Note: Cloudflare has AAAA"),
        "{}",
        plan.render_text()
    );
    let (_, report) = engine
        .destroy(&config, StageFilter::All, sink, CancellationToken::new())
        .await
        .unwrap();
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(cf.mutations(), writes);

    // A record at the name without our comment (the user's own A) is never deleted.
    let theirs = cf.insert("A", "demo.example.com", "198.51.100.1", Some("hand-made"));
    let plan = engine
        .destroy_plan(&config, StageFilter::All)
        .await
        .unwrap();
    assert!(
        plan.changes.iter().all(|c| c.id.kind != "DnsRecord"),
        "{:?}",
        plan.changes
    );
    assert!(
        plan.notes
            .iter()
            .any(|n| n.contains("A demo.example.com -> 198.51.100.1")),
        "{:?}",
        plan.notes
    );
    assert!(cf.records().iter().any(|r| r.id == theirs));
}
