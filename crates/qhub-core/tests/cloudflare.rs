//! The Cloudflare DNS client against the Cloudflare emulator on loopback.

use std::sync::Arc;
use std::time::{Duration, Instant};

use qhub_cloudflare_emulator::{CloudflareEmulator, DEFAULT_TOKEN, Options};
use qhub_core::dns::cloudflare::{Cloudflare, CloudflareOptions};
use qhub_core::dns::{DnsError, Outcome, owner_comment};
use qhub_core::keycloak::SecretString;
use qhub_core::kubernetes::endpoints::DnsRecord;
use qhub_core::retry::{Budget, RetryPolicy};

fn quick() -> RetryPolicy {
    RetryPolicy::uniform(Budget::attempts(
        6,
        Duration::from_millis(5),
        Duration::from_millis(50),
    ))
}

fn client(emulator: &CloudflareEmulator, token: &str) -> Cloudflare {
    let mut o = CloudflareOptions::new(SecretString::new(token));
    o.base_url = emulator.url();
    o.retry = quick();
    Cloudflare::new(o, Arc::default()).unwrap()
}

fn a(name: &str, ip: &str) -> DnsRecord {
    DnsRecord {
        name: name.into(),
        kind: "A".into(),
        value: ip.into(),
    }
}

fn comment() -> String {
    owner_comment("demo-dev")
}

#[tokio::test]
async fn creates_the_record_then_leaves_it_unchanged_with_zero_writes() {
    let cf = CloudflareEmulator::start(Options::default()).await.unwrap();
    let c = client(&cf, DEFAULT_TOKEN);
    let want = a("Demo.Example.com", "203.0.113.7");
    assert_eq!(c.ensure(&want, &comment()).await.unwrap(), Outcome::Created);
    let records = cf.records();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(
        (
            r.kind.as_str(),
            r.name.as_str(),
            r.content.as_str(),
            r.proxied
        ),
        ("A", "demo.example.com", "203.0.113.7", false)
    );
    assert_eq!(r.comment.as_deref(), Some("managed by qhub: demo-dev"));
    let writes = cf.mutations();
    assert_eq!(writes, 1);
    assert_eq!(
        c.ensure(&want, &comment()).await.unwrap(),
        Outcome::Unchanged
    );
    assert_eq!(cf.mutations(), writes, "a re-run writes nothing");
    assert_eq!(cf.records().len(), 1);
}

#[tokio::test]
async fn updates_a_record_with_the_wrong_value() {
    let cf = CloudflareEmulator::start(Options::default()).await.unwrap();
    cf.insert("A", "demo.example.com", "198.51.100.1", None);
    let c = client(&cf, DEFAULT_TOKEN);
    let want = a("demo.example.com", "203.0.113.7");
    assert_eq!(c.ensure(&want, &comment()).await.unwrap(), Outcome::Updated);
    let records = cf.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].content, "203.0.113.7");
    assert_eq!(records[0].comment.as_deref(), Some(comment().as_str()));
    assert_eq!(
        cf.counters()
            .by_operation
            .get("PATCH /client/v4/zones/{id}/dns_records/{id}"),
        Some(&1)
    );
}

#[tokio::test]
async fn refuses_a_foreign_record_of_the_other_type_and_replaces_its_own() {
    let cf = CloudflareEmulator::start(Options::default()).await.unwrap();
    cf.insert(
        "CNAME",
        "demo.example.com",
        "somewhere.example.net",
        Some("hand-made"),
    );
    // Another name's record is never touched.
    cf.insert("A", "other.example.com", "192.0.2.9", None);
    let c = client(&cf, DEFAULT_TOKEN);
    let want = a("demo.example.com", "203.0.113.7");
    let e = c.ensure(&want, &comment()).await.unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, DnsError::Conflict(_)), "{e:?}");
    assert!(
        text.contains("CNAME demo.example.com -> somewhere.example.net")
            && text.contains("Delete that record in Cloudflare")
            && text.contains("A demo.example.com -> 203.0.113.7"),
        "{text}"
    );
    assert_eq!(cf.mutations(), 0, "nothing was changed");

    // The same CNAME with our comment is ours to replace.
    let cf = CloudflareEmulator::start(Options::default()).await.unwrap();
    cf.insert(
        "CNAME",
        "demo.example.com",
        "old-lb.example.net",
        Some(&comment()),
    );
    cf.insert("A", "other.example.com", "192.0.2.9", None);
    let c = client(&cf, DEFAULT_TOKEN);
    assert_eq!(
        c.ensure(&want, &comment()).await.unwrap(),
        Outcome::Replaced
    );
    let records = cf.records();
    assert_eq!(records.len(), 2);
    assert!(
        records
            .iter()
            .any(|r| r.name == "other.example.com" && r.content == "192.0.2.9")
    );
    assert!(
        records
            .iter()
            .any(|r| r.kind == "A" && r.name == "demo.example.com")
    );
}

#[tokio::test]
async fn a_refused_token_says_which_variable_and_which_permission() {
    let cf = CloudflareEmulator::start(Options {
        read_only_tokens: vec!["read-only".into()],
        ..Options::default()
    })
    .await
    .unwrap();
    let e = client(&cf, "not-a-token")
        .ensure(&a("demo.example.com", "203.0.113.7"), &comment())
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with("CLOUDFLARE_TOKEN was refused")
            && text.contains("Invalid access token (code 9109)")
            && text.contains("Zone:DNS:Edit")
            && text.contains("demo.example.com"),
        "{text}"
    );
    assert!(!text.contains("not-a-token"), "{text}");
    let e = client(&cf, "read-only")
        .ensure(&a("demo.example.com", "203.0.113.7"), &comment())
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("Authentication error (code 10000)"),
        "{e}"
    );
    assert!(cf.records().is_empty());
}

#[tokio::test]
async fn rides_out_injected_429s_honouring_retry_after() {
    let cf = CloudflareEmulator::start(Options::default()).await.unwrap();
    cf.throttle_next(2, 1);
    let c = client(&cf, DEFAULT_TOKEN);
    let started = Instant::now();
    let outcome = c
        .ensure(&a("demo.example.com", "203.0.113.7"), &comment())
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Created);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After: 1 was honoured twice: {:?}",
        started.elapsed()
    );
    assert_eq!(cf.counters().throttled, 2);
    assert_eq!(c.stats().retries(), 2);
    assert_eq!(cf.records().len(), 1);
}

#[tokio::test]
async fn the_zone_is_found_walking_up_the_labels_or_named_when_missing() {
    let cf = CloudflareEmulator::start(Options::default()).await.unwrap();
    let c = client(&cf, DEFAULT_TOKEN);
    let zone = c.find_zone("a.b.example.com").await.unwrap();
    assert_eq!(zone.name, "example.com");
    let zone_lookups = cf.counters().by_operation["GET /client/v4/zones"];
    assert_eq!(
        zone_lookups, 3,
        "a.b.example.com, b.example.com, example.com"
    );
    assert_eq!(
        c.ensure(&a("a.b.example.com", "203.0.113.7"), &comment())
            .await
            .unwrap(),
        Outcome::Created
    );
    assert_eq!(cf.records()[0].name, "a.b.example.com");

    let e = c.find_zone("demo.example.org").await.unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("no Cloudflare zone holds demo.example.org")
            && text.contains("demo.example.org, example.org")
            && text.contains("must be in the Cloudflare account"),
        "{text}"
    );
}

#[tokio::test]
async fn finds_its_record_on_a_later_page() {
    let cf = CloudflareEmulator::start(Options::default()).await.unwrap();
    for i in 0..7 {
        cf.insert("TXT", "demo.example.com", &format!("v=note{i}"), None);
    }
    cf.insert("A", "demo.example.com", "203.0.113.7", Some(&comment()));
    let mut o = CloudflareOptions::new(SecretString::new(DEFAULT_TOKEN));
    o.base_url = cf.url();
    o.retry = quick();
    o.per_page = 5;
    let c = Cloudflare::new(o, Arc::default()).unwrap();
    let found = c.lookup("demo.example.com").await.unwrap();
    assert_eq!(found.records.len(), 1, "{:?}", found.records);
    assert_eq!(
        c.ensure(&a("demo.example.com", "203.0.113.7"), &comment())
            .await
            .unwrap(),
        Outcome::Unchanged,
        "a client reading only the first page would create a duplicate"
    );
    assert_eq!(cf.mutations(), 0);
}

#[tokio::test]
async fn the_emulator_refuses_what_cloudflare_refuses() {
    let cf = CloudflareEmulator::start(Options::default()).await.unwrap();
    qhub_core::tls::install_crypto_provider();
    let http = reqwest::Client::new();
    let zone = client(&cf, DEFAULT_TOKEN)
        .find_zone("example.com")
        .await
        .unwrap();
    let post = |body: serde_json::Value| {
        http.post(format!("{}/zones/{}/dns_records", cf.url(), zone.id))
            .bearer_auth(DEFAULT_TOKEN)
            .json(&body)
            .send()
    };
    for (body, code) in [
        (
            serde_json::json!({"type": "A", "name": "x", "content": "1.2.3.4", "colour": "red"}),
            9207,
        ),
        (
            serde_json::json!({"type": "B", "name": "x", "content": "1.2.3.4"}),
            9004,
        ),
        (
            serde_json::json!({"type": "A", "name": "x", "content": "lb.example.net"}),
            9005,
        ),
    ] {
        let res = post(body).await.unwrap();
        assert_eq!(res.status(), 400);
        let v: serde_json::Value = res.json().await.unwrap();
        assert_eq!(v["success"], false);
        assert_eq!(v["errors"][0]["code"], code);
    }
    let res = post(serde_json::json!({"type": "A", "name": "x", "content": "1.2.3.4"}))
        .await
        .unwrap();
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(
        v["result"]["name"], "x.example.com",
        "names come back in full"
    );
    let res = http
        .get(format!("{}/zones", cf.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400, "no token");
}

#[tokio::test]
async fn delete_owned_deletes_only_records_carrying_our_comment_riding_out_429s() {
    let cf = CloudflareEmulator::start(Options::default()).await.unwrap();
    cf.insert("A", "demo.example.com", "203.0.113.7", Some(&comment()));
    // The user's own records: beside ours at the name, another deployment's, another name's.
    cf.insert("AAAA", "demo.example.com", "2001:db8::7", None);
    cf.insert("TXT", "demo.example.com", "v=mine", Some(&comment()));
    cf.insert(
        "A",
        "other.example.com",
        "192.0.2.9",
        Some(&owner_comment("demo-prod")),
    );
    let c = client(&cf, DEFAULT_TOKEN);
    cf.throttle_next(2, 1);
    let started = Instant::now();
    let done = c
        .delete_owned("Demo.Example.com.", &comment())
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After: 1 was honoured twice: {:?}",
        started.elapsed()
    );
    assert_eq!(cf.counters().throttled, 2);
    let deleted: Vec<(&str, &str)> = done
        .deleted
        .iter()
        .map(|r| (r.kind.as_str(), r.content.as_str()))
        .collect();
    assert_eq!(deleted, [("A", "203.0.113.7")]);
    let kept: Vec<(&str, &str)> = done
        .kept
        .iter()
        .map(|r| (r.kind.as_str(), r.content.as_str()))
        .collect();
    assert_eq!(kept, [("AAAA", "2001:db8::7")]);
    let mut left: Vec<(String, String)> = cf
        .records()
        .into_iter()
        .map(|r| (r.kind, r.content))
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            ("A".to_string(), "192.0.2.9".to_string()),
            ("AAAA".to_string(), "2001:db8::7".to_string()),
            ("TXT".to_string(), "v=mine".to_string()),
        ]
    );
    assert_eq!(cf.mutations(), 1);
    // Again: nothing of ours is left, nothing is written.
    let done = c
        .delete_owned("demo.example.com", &comment())
        .await
        .unwrap();
    assert!(done.deleted.is_empty());
    assert_eq!(cf.mutations(), 1);
}
