//! The DigitalOcean REST client against the DOKS emulator (loopback only): pagination, the
//! rate-limit budget, `retry-after`, typed errors, retry rules, and the token kept secret.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use qhub_do::client::{
    ApiStats, ClientOptions, ClusterCreate, DoClient, DoError, ErrorClass, NodePoolCreate, Token,
};
use qhub_doks_emulator::{Faults, Options, RateLimit};
use serde_json::json;

use common::{assert_on_spec, client_options, emulator, emulator_with};

fn client(options: ClientOptions) -> (DoClient, Arc<ApiStats>) {
    let stats = Arc::new(ApiStats::default());
    (
        DoClient::new(options, stats.clone()).expect("client"),
        stats,
    )
}

fn cluster_request(name: &str) -> ClusterCreate {
    ClusterCreate {
        name: name.into(),
        region: "nyc3".into(),
        version: "1.33.10-do.1".into(),
        tags: vec!["qhub-project:test".into()],
        node_pools: vec![NodePoolCreate {
            name: format!("{name}-general"),
            size: "s-2vcpu-4gb".into(),
            count: 1,
            tags: vec![],
            labels: Default::default(),
            taints: vec![],
            auto_scale: true,
            min_nodes: 1,
            max_nodes: 3,
        }],
    }
}

#[tokio::test]
async fn lists_follow_every_page() {
    let emu = emulator().await;
    for i in 0..45 {
        emu.with_account(|a| {
            a.create_cluster(
                &json!({"name": format!("c{i:02}"), "region": "nyc3", "version": "1.33.10-do.1",
                "node_pools": [{"name": "p", "size": "s-1vcpu-2gb", "count": 1}]}),
            )
        })
        .expect("seed");
    }
    let (c, stats) = client(client_options(&emu));
    let all = c.list_clusters().await.expect("list");
    assert_eq!(all.len(), 45);
    let names: std::collections::BTreeSet<&str> = all.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names.len(), 45, "a cluster seen twice or missed");
    // 20 + 20 + 5.
    assert_eq!(stats.calls(), 3, "{:?}", stats.by_operation());
    assert_on_spec(&emu);
}

#[tokio::test]
async fn a_page_link_to_another_host_is_not_followed() {
    let emu = emulator_with(Options {
        links_origin: Some("https://collector.example.com".into()),
        ..Options::default()
    })
    .await;
    for i in 0..3 {
        emu.with_account(|a| {
            a.create_cluster(
                &json!({"name": format!("c{i}"), "region": "nyc3", "version": "1.33.10-do.1",
                "node_pools": [{"name": "p", "size": "s-1vcpu-2gb", "count": 1}]}),
            )
        })
        .expect("seed");
    }
    let (c, stats) = client(ClientOptions {
        per_page: 2,
        ..client_options(&emu)
    });
    let e = c.list_clusters().await.expect_err("foreign link");
    assert!(e.to_string().contains("another host"), "{e}");
    assert_eq!(stats.calls(), 1, "the token went to the foreign host");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_within_the_unreported_burst_limit_gets_no_429() {
    // DigitalOcean's burst limit is in no header: the client counts its own requests.
    let emu = emulator_with(Options {
        rate_limit: RateLimit {
            burst_limit: 8,
            burst_window: Duration::from_secs(1),
            ..RateLimit::default()
        },
        ..Options::default()
    })
    .await;
    let (c, _) = client(ClientOptions {
        burst_limit: 8,
        burst_window: Duration::from_secs(1),
        ..client_options(&emu)
    });
    let t = Instant::now();
    // 24 requests, sequential then concurrent, against 8 a second.
    for _ in 0..12 {
        c.options().await.expect("options");
    }
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let c = c.clone();
        tasks.spawn(async move { c.options().await.map(|_| ()) });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task").expect("options");
    }
    let counters = emu.counters();
    assert_eq!(
        (counters.burst_limited, counters.rate_limited),
        (0, 0),
        "a 429 the client could have avoided"
    );
    assert_eq!(c.throttled(), 0);
    assert!(c.paced() > 0, "the client never waited");
    assert!(t.elapsed() >= Duration::from_secs(2), "{:?}", t.elapsed());
    eprintln!(
        "24 requests at 8/s: {:?}, {} waits, 0 x 429",
        t.elapsed(),
        c.paced()
    );
    assert_on_spec(&emu);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hourly_budget_of_the_headers_is_never_overdrawn() {
    // A sliding "hour" of one second holding 5 requests; the client learns it from the
    // ratelimit headers alone.
    let emu = emulator_with(Options {
        rate_limit: RateLimit {
            limit: 5,
            window: Duration::from_secs(1),
            ..RateLimit::unlimited()
        },
        ..Options::default()
    })
    .await;
    let (c, _) = client(client_options(&emu));
    // One answer teaches the budget; then a concurrent burst must stay within it.
    c.options().await.expect("options");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..15 {
        let c = c.clone();
        tasks.spawn(async move { c.options().await.map(|_| ()) });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task").expect("options");
    }
    assert_eq!(emu.counters().rate_limited, 0, "{:?}", emu.counters());
    assert!(c.paced() > 0);
    assert_on_spec(&emu);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavoidable_429_is_waited_out() {
    let emu = emulator_with(Options {
        rate_limit: RateLimit {
            burst_limit: 5,
            burst_window: Duration::from_secs(1),
            ..RateLimit::default()
        },
        ..Options::default()
    })
    .await;
    // Another client of the same token spends the budget behind this one's back.
    let (other, _) = client(client_options(&emu));
    let (c, stats) = client(ClientOptions {
        burst_limit: 5,
        burst_window: Duration::from_secs(1),
        ..client_options(&emu)
    });
    c.options().await.expect("first");
    for _ in 0..4 {
        other.options().await.expect("other");
    }
    c.options().await.expect("after a 429");
    assert_eq!(c.throttled(), 1, "{:?}", stats.by_operation());
    assert_eq!(emu.counters().burst_limited, 1);
    // An injected 429 with retry-after: waited out too.
    emu.set_faults(Faults {
        throttle_rate: 1.0,
        retry_after_secs: 1,
        ..Faults::default()
    });
    let t = Instant::now();
    let handle = {
        let c = c.clone();
        tokio::spawn(async move { c.options().await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    emu.set_faults(Faults::default());
    handle
        .await
        .expect("task")
        .expect("options after retry-after");
    assert!(t.elapsed() >= Duration::from_secs(1), "retry-after ignored");
    assert_on_spec(&emu);
}

#[tokio::test]
async fn errors_carry_digitalocean_ids_and_classes() {
    let emu = emulator().await;
    let (c, _) = client(client_options(&emu));
    let e = c
        .get_cluster("00000000-0000-4000-8000-000000000000")
        .await
        .expect_err("404");
    assert_eq!(e.class(), ErrorClass::NotFound);
    assert!(
        matches!(&e, DoError::Api { status: 404, id, request_id: Some(_), .. } if id == "not_found"),
        "{e:?}"
    );

    let created = c
        .create_cluster(&cluster_request("dup"))
        .await
        .expect("create");
    assert_eq!(created.status.state, "provisioning");
    let e = c
        .create_cluster(&cluster_request("dup"))
        .await
        .expect_err("taken");
    assert_eq!(e.class(), ErrorClass::AlreadyExists, "{e}");

    // Pools cannot change while the cluster provisions.
    let pool = NodePoolCreate {
        name: "more".into(),
        ..cluster_request("x").node_pools[0].clone()
    };
    let e = c.add_node_pool(&created.id, &pool).await.expect_err("busy");
    assert_eq!(e.class(), ErrorClass::Busy, "{e}");

    let mut bad = cluster_request("bad-size");
    bad.node_pools[0].size = "s-64vcpu-1tb".into();
    let e = c.create_cluster(&bad).await.expect_err("bad size");
    assert_eq!(e.class(), ErrorClass::Invalid);
    assert!(e.to_string().contains("s-64vcpu-1tb"), "{e}");

    let mut wrong = client_options(&emu);
    wrong.token = Some(Token::new("dop_v1_wrong"));
    let (w, _) = client(wrong);
    let e = w.options().await.expect_err("401");
    assert_eq!(e.class(), ErrorClass::Unauthorized);
    assert!(
        matches!(&e, DoError::Api { id, .. } if id == "unauthorized"),
        "{e:?}"
    );
    assert_on_spec(&emu);
}

#[tokio::test]
async fn reads_are_retried_and_mutations_are_not_after_a_5xx() {
    let emu = emulator().await;
    let (c, stats) = client(client_options(&emu));
    emu.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let e = c.options().await.expect_err("always 5xx");
    assert_eq!(e.class(), ErrorClass::GaveUp, "{e}");
    assert!(
        e.to_string()
            .contains("kept failing: gave up after 8 attempts"),
        "{e}"
    );
    assert_eq!(stats.calls(), 8, "a read gets the policy's attempts");
    assert_eq!((stats.retries(), stats.gave_up()), (7, 1));
    let e = c
        .create_cluster(&cluster_request("once"))
        .await
        .expect_err("5xx");
    assert_eq!(e.class(), ErrorClass::Retryable);
    assert_eq!(
        stats.mutating(),
        1,
        "a mutation after a 5xx goes back to the caller"
    );

    // A lost answer: the cluster was made; the caller must look before trying again.
    emu.set_faults(Faults {
        lost_rate: 1.0,
        ..Faults::default()
    });
    let e = c
        .create_cluster(&cluster_request("lost"))
        .await
        .expect_err("lost");
    assert!(
        matches!(
            e,
            DoError::Transport {
                not_sent: false,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.class(), ErrorClass::Retryable);
    emu.set_faults(Faults::default());
    let all = c.list_clusters().await.expect("list");
    assert_eq!(all.iter().filter(|c| c.name == "lost").count(), 1);
    assert_on_spec(&emu);
}

/// Captures every log line of the test's thread.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_token_never_shows_in_debug_output_errors_or_logs() {
    const SECRET: &str = "dop_v1_emulator";
    let emu = emulator().await;
    assert_eq!(emu.token().as_deref(), Some(SECRET));
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let options = client_options(&emu);
    let (c, _) = client(options.clone());
    let mut shown = vec![format!("{options:?}"), format!("{c:?}")];
    c.options().await.expect("options");
    let created = c
        .create_cluster(&cluster_request("secret"))
        .await
        .expect("create");
    shown.push(format!("{created:?}"));
    emu.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let e = c.options().await.expect_err("5xx");
    shown.push(format!("{e:?}"));
    shown.push(e.to_string());
    emu.set_faults(Faults::default());
    shown.push(String::from_utf8_lossy(&capture.0.lock().expect("lock")).into_owned());
    assert!(
        shown
            .last()
            .is_some_and(|logs| logs.contains("DigitalOcean API")),
        "nothing was logged"
    );
    for s in &shown {
        assert!(!s.contains(SECRET), "the token leaked: {s}");
    }
}

#[tokio::test]
async fn cluster_tokens_are_reused_then_fetched_again_before_they_expire() {
    use qhub_core::kubernetes::auth::TokenSource;
    let emu = emulator().await;
    let (c, stats) = client(client_options(&emu));
    let created = c
        .create_cluster(&cluster_request("tokens"))
        .await
        .expect("create");
    while c.get_cluster(&created.id).await.expect("get").status.state != "running" {}
    // Valid 2 s, replaced 1 s before the end: reused at once, replaced after a second.
    let tokens = qhub_do::access::DoTokens::new(
        c.clone(),
        &created.id,
        Duration::from_secs(2),
        Duration::from_secs(1),
    );
    let before = stats.calls();
    let first = tokens.token().await.expect("token");
    assert_eq!(tokens.token().await.expect("token"), first);
    assert_eq!(
        stats.calls() - before,
        1,
        "the second token was fetched again"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = tokens.token().await.expect("token");
    assert_eq!(stats.calls() - before, 2, "an expiring token was reused");
    assert_ne!(second, first);
    assert!(!format!("{tokens:?}").contains(&first));
    assert_on_spec(&emu);
}

#[test]
fn no_token_only_for_loopback_and_never_over_plain_http() {
    let stats = Arc::new(ApiStats::default());
    let anonymous = |url: &str| ClientOptions {
        base_url: url.into(),
        token: None,
        ..ClientOptions::default()
    };
    assert!(DoClient::new(anonymous("http://127.0.0.1:9"), stats.clone()).is_ok());
    assert!(DoClient::new(anonymous("http://[::1]:9"), stats.clone()).is_ok());
    let e = DoClient::new(anonymous("https://api.digitalocean.com"), stats.clone())
        .expect_err("no token");
    assert!(e.to_string().contains("DIGITALOCEAN_TOKEN"), "{e}");
    let plain = ClientOptions {
        base_url: "http://proxy.example.com".into(),
        token: Some(Token::new("x")),
        ..ClientOptions::default()
    };
    assert!(DoClient::new(plain, stats).is_err());
    assert_eq!(format!("{:?}", Token::new("abc")), "Token(<redacted>)");
}
