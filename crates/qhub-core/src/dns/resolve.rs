//! Waiting until the domain resolves to the load balancer, so that Let's Encrypt's
//! validation (TLS-ALPN-01, which connects to the name on port 443) reaches Traefik and the
//! first certificate order does not fail (five failed validations an hour per account and
//! name is Let's Encrypt's "failed validation" limit, letsencrypt.org/docs/rate-limits).
//!
//! The resolver is a trait so that tests answer from a table and never query a DNS server;
//! production asks the system resolver (what `getaddrinfo` answers on this machine, which
//! may cache a negative answer for the zone's SOA minimum TTL).

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::DnsError;
use crate::kubernetes::endpoints::DnsRecord;

/// Resolves a host name to its addresses.
#[async_trait::async_trait]
pub trait Resolver: Send + Sync + fmt::Debug {
    /// The addresses of `name`; empty when it has none (NXDOMAIN, no record). `Err` only for
    /// a failure of the resolver itself.
    async fn resolve(&self, name: &str) -> Result<Vec<IpAddr>, String>;
}

/// The system resolver (`getaddrinfo` through Tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

#[async_trait::async_trait]
impl Resolver for SystemResolver {
    async fn resolve(&self, name: &str) -> Result<Vec<IpAddr>, String> {
        match tokio::net::lookup_host((name, 443)).await {
            Ok(addrs) => {
                let mut ips: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
                ips.sort();
                ips.dedup();
                Ok(ips)
            }
            // getaddrinfo reports "no such name" and "no address" as errors; both mean "not
            // yet" here.
            Err(e) => {
                tracing::debug!(name, error = %e, "name does not resolve (yet)");
                Ok(Vec::new())
            }
        }
    }
}

/// A resolver answering from a table that tests change while a deploy runs. Each lookup is
/// counted.
#[derive(Debug, Clone, Default)]
pub struct StaticResolver {
    table: Arc<Mutex<std::collections::BTreeMap<String, Vec<IpAddr>>>>,
    lookups: Arc<std::sync::atomic::AtomicU64>,
}

impl StaticResolver {
    /// An empty table: nothing resolves.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `name` resolve to `ips` (empty: to nothing).
    pub fn set(&self, name: &str, ips: &[IpAddr]) {
        self.table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(super::cloudflare::normalise(name), ips.to_vec());
    }

    /// Lookups made so far.
    pub fn lookups(&self) -> u64 {
        self.lookups.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Resolver for StaticResolver {
    async fn resolve(&self, name: &str) -> Result<Vec<IpAddr>, String> {
        self.lookups
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let Ok(ip) = name.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        Ok(self
            .table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&super::cloudflare::normalise(name))
            .cloned()
            .unwrap_or_default())
    }
}

/// How long to wait, and how often to look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitOptions {
    /// Longest wait (default 10 minutes: a new record at a DNS provider is usually served
    /// within a minute or two; resolvers that cached "no such name" keep it for the zone's
    /// negative TTL, often 5 minutes).
    pub timeout: Duration,
    /// Longest pause between two lookups (the first ones come sooner).
    pub poll: Duration,
}

impl Default for WaitOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(600),
            poll: Duration::from_secs(10),
        }
    }
}

/// True when what `record.name` resolves to is what the record points at: the address of an
/// `A`, or one of the addresses of a `CNAME`'s target.
async fn points_at(
    resolver: &dyn Resolver,
    record: &DnsRecord,
) -> Result<(bool, Vec<IpAddr>), String> {
    let got = resolver.resolve(&record.name).await?;
    let want: Vec<IpAddr> = match record.value.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => resolver.resolve(&record.value).await?,
    };
    let ok = !got.is_empty() && got.iter().any(|ip| want.contains(ip));
    Ok((ok, got))
}

/// What to tell the user when the name does not resolve: how to make it so.
pub fn instruction(record: &DnsRecord, managed: bool) -> String {
    if managed {
        format!(
            "the record {} {} -> {} is in Cloudflare, but this machine does not resolve it yet: check that the zone is delegated to Cloudflare's name servers (`dig NS {}`) and that the record is not proxied, then re-run",
            record.kind, record.name, record.value, record.name
        )
    } else {
        format!(
            "create {} {} -> {} at your DNS provider, or pass --dns-provider cloudflare --dns-auto-provision (with CLOUDFLARE_TOKEN set), then re-run",
            record.kind, record.name, record.value
        )
    }
}

fn show(ips: &[IpAddr]) -> String {
    if ips.is_empty() {
        "no address".into()
    } else {
        ips.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Waits until `record.name` resolves to what the record points at, calling `progress` with a
/// line each time what it resolves to changes. Returns the time waited; on timeout, an error
/// saying what the name resolves to and what to do ([`instruction`]).
pub async fn wait_until_resolves(
    resolver: &dyn Resolver,
    record: &DnsRecord,
    options: WaitOptions,
    managed: bool,
    mut progress: impl FnMut(&str) + Send,
) -> Result<Duration, DnsError> {
    let started = Instant::now();
    let mut pause = (options.poll / 16).max(Duration::from_millis(1));
    let mut last = String::new();
    loop {
        let (ok, got) = match points_at(resolver, record).await {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(error = %e, "the resolver failed; trying again");
                (false, Vec::new())
            }
        };
        if ok {
            return Ok(started.elapsed());
        }
        let line = format!(
            "{} must resolve to {} before Let's Encrypt is asked; now: {}",
            record.name,
            record.value,
            show(&got)
        );
        if line != last {
            progress(&line);
            last = line;
        }
        if started.elapsed() + pause > options.timeout {
            return Err(DnsError::NotResolved(format!(
                "{} did not resolve to {} within {}s (it resolves to {}), so Let's Encrypt was not asked for a certificate: {}",
                record.name,
                record.value,
                options.timeout.as_secs(),
                show(&got),
                instruction(record, managed)
            )));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(options.poll);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: &str, value: &str) -> DnsRecord {
        DnsRecord {
            name: "demo.example.com".into(),
            kind: kind.into(),
            value: value.into(),
        }
    }

    #[tokio::test]
    async fn waits_until_the_name_resolves_and_times_out_with_the_instruction() {
        let r = StaticResolver::new();
        let quick = WaitOptions {
            timeout: Duration::from_millis(50),
            poll: Duration::from_millis(5),
        };
        let mut lines = Vec::new();
        let e = wait_until_resolves(&r, &record("A", "1.2.3.4"), quick, false, |l| {
            lines.push(l.to_string())
        })
        .await
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("create A demo.example.com -> 1.2.3.4 at your DNS provider, or pass --dns-provider cloudflare --dns-auto-provision"),
            "{text}"
        );
        assert_eq!(lines.len(), 1, "one line while nothing changes: {lines:?}");

        let r2 = r.clone();
        let later = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            r2.set("demo.example.com", &["1.2.3.4".parse().unwrap()]);
        });
        let long = WaitOptions {
            timeout: Duration::from_secs(5),
            poll: Duration::from_millis(5),
        };
        wait_until_resolves(&r, &record("A", "1.2.3.4"), long, false, |_| {})
            .await
            .unwrap();
        later.await.unwrap();

        // A CNAME is judged by the addresses of its target.
        r.set("lb.elb.example.net", &["1.2.3.4".parse().unwrap()]);
        wait_until_resolves(
            &r,
            &record("CNAME", "lb.elb.example.net"),
            long,
            true,
            |_| {},
        )
        .await
        .unwrap();
        r.set("demo.example.com", &["9.9.9.9".parse().unwrap()]);
        let e = wait_until_resolves(
            &r,
            &record("CNAME", "lb.elb.example.net"),
            quick,
            true,
            |_| {},
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("resolves to 9.9.9.9"), "{e}");
    }
}
