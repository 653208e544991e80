//! The deploy lock on Spaces. Spaces is S3-compatible; moto's S3 (`moto_server`, PyPI
//! `moto[server]`, an independent emulator) stands in for it, over loopback only, beside the
//! DOKS emulator. Two engines with different holder identities and no shared lock folder stand
//! for two CI runners on different machines.
//!
//! Spaces' documentation does not say whether it honours conditional writes, so a store that
//! ignores them is emulated too: a proxy in front of moto that drops `If-Match` and
//! `If-None-Match`, as an S3-compatible store without the feature would ignore them.
//!
//! The moto binary comes from `$QHUB_MOTO_SERVER` or `<workspace>/.venv/bin/moto_server`
//! (`scripts/test` installs it). Without it these tests fail, loudly.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

mod common;

use qhub_core::Config;
use qhub_core::cloud::RetryPolicy;
use qhub_core::cloud::lock::LockStore;
use qhub_core::cloud::lock::{LOCK_KIND, LockRecord};
use qhub_core::engine::{Engine, EngineOptions};
use qhub_core::kubernetes::lease::LeaseTiming;
use qhub_core::provider::{LockRequest, Ownership, take_deploy_lock};
use qhub_do::client::ApiStats;
use qhub_do::lock::{SpacesLockStore, SpacesOptions, bucket_name};
use qhub_do::{DigitalOceanProvider, DoOptions};
use qhub_doks_emulator::{DoksEmulator, Options, RateLimit, TEAM_UUID};
use qhub_tests::moto::Moto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use common::{do_config, emulator, emulator_with, options};

/// A short lease, so that expiry is seconds, not minutes.
fn timing() -> LeaseTiming {
    LeaseTiming {
        duration: Duration::from_secs(3),
        renew_every: Duration::from_millis(500),
        lost_after: Duration::from_secs(2),
    }
}

/// A Spaces key for `endpoint` (moto, or the proxy in front of it).
fn spaces(endpoint: &str) -> SpacesOptions {
    SpacesOptions {
        access_key: "DO00EMULATEDKEY".into(),
        secret_key: "emulated-secret".into(),
        endpoint: Some(endpoint.to_string()),
        region: None,
    }
}

/// A provider with the Spaces lock at `endpoint`, its local lock in `lock_dir`.
fn provider(
    emu: &DoksEmulator,
    config: &Config,
    endpoint: Option<&str>,
    lock_dir: Option<&Path>,
    stats: Arc<ApiStats>,
) -> DigitalOceanProvider {
    DigitalOceanProvider::new(
        config,
        DoOptions {
            lock_dir: lock_dir.map(Path::to_path_buf),
            spaces: endpoint.map(spaces),
            spaces_lock: true,
            ..options(emu, stats)
        },
    )
    .expect("provider")
}

/// A CI runner: its own provider (no lock folder), its own holder identity.
fn runner(
    emu: &DoksEmulator,
    moto: &Moto,
    config: &Config,
    name: &str,
    stats: Arc<ApiStats>,
) -> Engine {
    Engine::new(
        Arc::new(provider(emu, config, Some(&moto.endpoint()), None, stats)),
        EngineOptions {
            min_deadline: Duration::from_secs(120),
            observe_deadline: Duration::from_secs(60),
            poll_interval: Duration::from_millis(20),
            lease: timing(),
            lock_wait: Duration::from_secs(120),
            // Another host: never "a dead process of this machine".
            holder: format!("qhub@{name}/-/1/00000000000000{name:0>2}"),
            ..EngineOptions::default()
        },
    )
}

/// The lock record in moto, if there is one, read as qhub reads it (the object is private).
async fn record(moto: &Moto, prefix: &str) -> Option<LockRecord> {
    let store = SpacesLockStore::new(
        &spaces(&moto.endpoint()),
        TEAM_UUID,
        "nyc3",
        prefix,
        Arc::default(),
        RetryPolicy::default(),
    )
    .expect("store");
    let (body, _) = store.get().await.expect("read the lock object")?;
    serde_json::from_slice(&body).ok()
}

/// The Spaces calls in `stats`, by S3 operation.
fn spaces_calls(stats: &ApiStats) -> std::collections::BTreeMap<String, u64> {
    stats
        .by_operation()
        .into_iter()
        .filter(|(op, _)| op.ends_with("Object") || op.ends_with("Bucket"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_runner_waits_for_the_spaces_lock() {
    let moto = Moto::start();
    // A cluster takes 3 s to provision: A holds the lock that long at least.
    let emu = emulator_with(Options {
        provisioning_polls: 2,
        cluster_time: Duration::from_secs(3),
        rate_limit: RateLimit::unlimited(),
        ..Options::default()
    })
    .await;
    let config = do_config("locked");
    let o = Ownership::of(&config);
    let (a_stats, b_stats) = (Arc::new(ApiStats::default()), Arc::new(ApiStats::default()));
    let a = runner(&emu, &moto, &config, "a", a_stats.clone());
    let b = runner(&emu, &moto, &config, "b", b_stats.clone());
    let seen = qhub_core::conformance::second_runner_waits(
        a,
        b,
        &config,
        "qhub@a/-/1/000000000000000a",
        async || record(&moto, &o.prefix()).await.map(|r| r.holder),
        || (),
    )
    .await
    .expect("two runners, one lock");
    assert_eq!(
        seen.lock,
        format!(
            "spaces://nyc3/{}/qhub/locked-dev.lock",
            bucket_name(TEAM_UUID, "nyc3")
        )
    );
    // One cluster, made once.
    assert_eq!(emu.with_account(|acc| acc.clusters.len()), 1);
    // Both released: no record is left; the bucket stays (its name would be reserved for a
    // week after a delete).
    assert!(record(&moto, &o.prefix()).await.is_none(), "released");
    let a_calls = spaces_calls(&a_stats);
    let b_calls = spaces_calls(&b_stats);
    eprintln!(
        "A deployed in {:.1?}; B waited and finished {:.1?} after it started ({} lock-wait events)",
        seen.a_time, seen.b_time, seen.waits
    );
    eprintln!("Spaces calls of A: {a_calls:?}");
    eprintln!("Spaces calls of B: {b_calls:?}");
    // A made the bucket on its first write; B found it.
    assert_eq!(a_calls.get("CreateBucket"), Some(&1), "{a_calls:?}");
    assert_eq!(b_calls.get("CreateBucket"), None, "{b_calls:?}");
    // Each took it once and released it once, with the three refused checks: a refused
    // create, a refused replace and a refused delete.
    for calls in [&a_calls, &b_calls] {
        assert_eq!(calls.get("DeleteObject"), Some(&2), "{calls:?}");
    }
}

/// A loopback proxy in front of `upstream` that drops `If-Match` and `If-None-Match` from
/// every request: an S3-compatible store that ignores conditional writes. One request per
/// connection (`Connection: close` both ways), which keeps the proxy small.
async fn careless_proxy(upstream: SocketAddr) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = forward_one(client, upstream).await;
            });
        }
    });
    format!("http://{addr}")
}

/// Reads up to the end of an HTTP head; returns the head and what was read past it.
async fn read_head(
    s: &mut (impl tokio::io::AsyncRead + Unpin),
) -> std::io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Ok((String::from_utf8_lossy(&buf).into_owned(), rest));
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// `head` without the headers `drop` names and without `Connection`, plus `Connection: close`.
fn rewrite(head: &str, drop: &[&str]) -> String {
    let mut out = String::new();
    for line in head.trim_end().split("\r\n") {
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if drop.contains(&name.as_str()) || name == "connection" {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

async fn forward_one(client: TcpStream, upstream: SocketAddr) -> std::io::Result<()> {
    let (mut client_read, mut client_write) = client.into_split();
    let (head, rest) = read_head(&mut client_read).await?;
    let server = TcpStream::connect(upstream).await?;
    let (mut server_read, mut server_write) = server.into_split();
    server_write
        .write_all(rewrite(&head, &["if-match", "if-none-match"]).as_bytes())
        .await?;
    server_write.write_all(&rest).await?;
    // The rest of the request's body, as it comes.
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
    });
    let (head, rest) = read_head(&mut server_read).await?;
    client_write
        .write_all(rewrite(&head, &[]).as_bytes())
        .await?;
    client_write.write_all(&rest).await?;
    tokio::io::copy(&mut server_read, &mut client_write).await?;
    client_write.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spaces_that_ignores_conditional_writes_falls_back_to_the_local_lock() {
    let moto = Moto::start();
    let careless = careless_proxy(SocketAddr::from(([127, 0, 0, 1], moto.port()))).await;
    let emu = emulator().await;
    let config = do_config("careless");
    let o = Ownership::of(&config);
    let dir = tempfile::tempdir().expect("tempdir");
    let stats = Arc::new(ApiStats::default());
    let p = provider(
        &emu,
        &config,
        Some(&careless),
        Some(dir.path()),
        stats.clone(),
    );
    let mut request = LockRequest::new("deploy");
    request.timing = timing();
    let held = take_deploy_lock(&p, &o, &request).await.expect("a lock");
    let held = held.expect("the local lock");
    // The local lock, not a cloud one: no lost signal, no cloud resource id.
    assert!(held.resource().is_none(), "{held:?}");
    assert!(
        dir.path().join(format!("{}.lock", o.prefix())).exists(),
        "the local lock file"
    );
    // The check wrote over our own record (the store ignored If-None-Match) and then took
    // it away again: nothing is left in the bucket.
    assert!(record(&moto, &o.prefix()).await.is_none());
    let calls = spaces_calls(&stats);
    assert!(
        calls.get("PutObject").copied().unwrap_or(0) >= 2,
        "{calls:?}"
    );
    // A second run on the same machine is kept out by the local lock.
    let other = provider(
        &emu,
        &config,
        Some(&careless),
        Some(dir.path()),
        Arc::default(),
    );
    let err = take_deploy_lock(&other, &o, &request).await.unwrap_err();
    assert!(err.to_string().contains("lock"), "{err}");
    held.release().await;

    // Straight to moto, which honours the conditions, the same provider takes the lock on
    // Spaces.
    let honest = provider(
        &emu,
        &config,
        Some(&moto.endpoint()),
        Some(dir.path()),
        Arc::default(),
    );
    let held = take_deploy_lock(&honest, &o, &request)
        .await
        .expect("a lock")
        .expect("held");
    assert_eq!(
        held.resource().map(|r| r.kind),
        Some(LOCK_KIND.to_string()),
        "{held:?}"
    );
    assert!(record(&moto, &o.prefix()).await.is_some());
    held.release().await;
    assert!(record(&moto, &o.prefix()).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_spaces_key_the_local_lock_is_kept_and_spaces_is_never_called() {
    let emu = emulator().await;
    let config = do_config("nokey");
    let o = Ownership::of(&config);
    let dir = tempfile::tempdir().expect("tempdir");
    let stats = Arc::new(ApiStats::default());
    let p = provider(&emu, &config, None, Some(dir.path()), stats.clone());
    let held = take_deploy_lock(&p, &o, &LockRequest::new("deploy"))
        .await
        .expect("a lock")
        .expect("the local lock");
    assert!(held.resource().is_none(), "{held:?}");
    assert!(spaces_calls(&stats).is_empty());
    assert!(
        stats.by_operation().is_empty(),
        "not even the account is read"
    );
    held.release().await;
}
