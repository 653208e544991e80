//! The deploy lock of the `kubernetes` stage: a `coordination.k8s.io/v1` Lease, so that two
//! `qhub deploy` runs against one cluster (two CI jobs, a laptop and CI) cannot interleave.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PostParams};
use serde_json::json;

use super::KubeError;

/// Namespace of the lease: one that exists in every cluster, before the platform's does.
pub const LEASE_NAMESPACE: &str = "kube-system";

/// How long a lease is valid without renewal; a holder that died releases it after this.
pub const LEASE_SECONDS: i32 = 60;

/// How a lease is held: its duration, how often it is renewed, and after how long without a
/// successful renewal it counts as lost (before another run could take it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    /// The lease's duration (`leaseDurationSeconds`).
    pub duration: Duration,
    /// Time between renewals.
    pub renew_every: Duration,
    /// Time without a successful renewal after which the lease counts as lost.
    pub lost_after: Duration,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        let duration = Duration::from_secs(u64::try_from(LEASE_SECONDS).unwrap_or(60));
        Self {
            duration,
            renew_every: duration / 6,
            // A third of the duration before anyone else may take it.
            lost_after: duration * 2 / 3,
        }
    }
}

/// A held lease; renewed in the background, released when dropped.
#[derive(Debug)]
pub struct LeaseGuard {
    renew: tokio::task::JoinHandle<()>,
    api: Api<Lease>,
    name: String,
    holder: String,
    lost: tokio_util::sync::CancellationToken,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        // Without `release`, the lease stays held until it expires, as after a crash.
        self.renew.abort();
    }
}

impl LeaseGuard {
    /// Cancelled when the lease is lost: another run took it, or it could not be renewed for
    /// [`LeaseTiming::lost_after`]. The holder must then start no new change.
    pub fn lost(&self) -> tokio_util::sync::CancellationToken {
        self.lost.clone()
    }

    /// The lease's name (in [`LEASE_NAMESPACE`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stops renewing and clears the holder, so the next deploy need not wait for expiry.
    pub async fn release(self) {
        self.release_checked().await;
    }

    /// [`LeaseGuard::release`], returning true when the process was (simulated as) killed
    /// while releasing: nothing may happen after that.
    pub async fn release_checked(self) -> bool {
        self.renew.abort();
        if let Ok(mut lease) = self.api.get(&self.name).await {
            let held_by = lease.spec.as_ref().and_then(|s| s.holder_identity.clone());
            if held_by.as_deref() == Some(self.holder.as_str()) {
                if let Some(spec) = lease.spec.as_mut() {
                    spec.holder_identity = None;
                }
                if let Err(e) = self
                    .api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                {
                    if crate::error::find_killed(&e).is_some() {
                        return true;
                    }
                    tracing::warn!(error = %e, "releasing the deploy lease failed; it expires in {LEASE_SECONDS}s");
                }
            }
        }
        false
    }
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// Takes the lease `qhub-deploy-{deployment}` for `holder`, or fails naming who holds it.
pub async fn acquire(
    client: kube::Client,
    deployment: &str,
    holder: &str,
) -> Result<LeaseGuard, KubeError> {
    acquire_with(client, deployment, holder, LeaseTiming::default()).await
}

/// [`acquire`] with the given timing.
pub async fn acquire_with(
    client: kube::Client,
    deployment: &str,
    holder: &str,
    timing: LeaseTiming,
) -> Result<LeaseGuard, KubeError> {
    let api: Api<Lease> = Api::namespaced(client, LEASE_NAMESPACE);
    let name = format!("qhub-deploy-{deployment}");
    // Read, decide, write; a lost race (409) or a throttled/failed request means reading again.
    let policy = super::READ_RETRY;
    let mut attempt = 1;
    loop {
        match try_take(&api, &name, holder).await {
            Ok(()) => break,
            Err(e)
                if e.is_retryable()
                    && attempt < policy.max_attempts
                    && crate::error::find_killed(&e).is_none() =>
            {
                tokio::time::sleep(policy.backoff(attempt)).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
    let lost = tokio_util::sync::CancellationToken::new();
    let renew = tokio::spawn(renew(
        api.clone(),
        name.clone(),
        holder.to_string(),
        timing,
        lost.clone(),
    ));
    Ok(LeaseGuard {
        renew,
        api,
        name,
        holder: holder.to_string(),
        lost,
    })
}

/// Renews the lease every [`LeaseTiming::renew_every`] while it is ours; cancels `lost` when
/// another holder has it or no renewal succeeded for [`LeaseTiming::lost_after`].
async fn renew(
    api: Api<Lease>,
    name: String,
    holder: String,
    timing: LeaseTiming,
    lost: tokio_util::sync::CancellationToken,
) {
    let mut renewed = std::time::Instant::now();
    let policy = super::READ_RETRY;
    loop {
        tokio::time::sleep(timing.renew_every).await;
        // Each round retries quickly (a throttled or failed request is no reason to lose the
        // lock); the lease is lost only when it is another's or no round succeeded for
        // `lost_after`.
        let mut attempt = 1;
        loop {
            match renew_once(&api, &name, &holder).await {
                Ok(None) => {
                    renewed = std::time::Instant::now();
                    break;
                }
                Ok(Some(other)) => {
                    tracing::error!(
                        holder = %other,
                        "the deploy lease {LEASE_NAMESPACE}/{name} was taken by another run"
                    );
                    lost.cancel();
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "renewing the deploy lease failed");
                    if renewed.elapsed() >= timing.lost_after {
                        tracing::error!(
                            "the deploy lease {LEASE_NAMESPACE}/{name} was not renewed for {:?}: it counts as lost",
                            renewed.elapsed()
                        );
                        lost.cancel();
                        return;
                    }
                    if attempt >= policy.max_attempts {
                        break;
                    }
                    tokio::time::sleep(policy.backoff(attempt).min(timing.renew_every)).await;
                    attempt += 1;
                }
            }
        }
    }
}

/// One renewal: `Ok(None)` when renewed, `Ok(Some(holder))` when another run holds it.
async fn renew_once(
    api: &Api<Lease>,
    name: &str,
    holder: &str,
) -> Result<Option<String>, kube::Error> {
    let mut lease = api.get(name).await?;
    let held_by = lease.spec.as_ref().and_then(|s| s.holder_identity.clone());
    if held_by.as_deref() != Some(holder) {
        return Ok(Some(held_by.unwrap_or_else(|| "nobody".into())));
    }
    if let Some(spec) = lease.spec.as_mut() {
        spec.renew_time = Some(now());
    }
    api.replace(name, &PostParams::default(), &lease).await?;
    Ok(None)
}

/// One attempt at taking the lease.
async fn try_take(api: &Api<Lease>, name: &str, holder: &str) -> Result<(), KubeError> {
    let err = |what: &str| {
        let what = format!("{what} the deploy lease {LEASE_NAMESPACE}/{name}");
        move |source| KubeError::Api { what, source }
    };
    match api.get_opt(name).await.map_err(err("reading"))? {
        None => {
            let body = json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": name, "namespace": LEASE_NAMESPACE},
                "spec": {
                    "holderIdentity": holder,
                    "leaseDurationSeconds": LEASE_SECONDS,
                    "acquireTime": now(),
                    "renewTime": now(),
                },
            });
            let lease: Lease =
                serde_json::from_value(body).map_err(|e| KubeError::Invalid(e.to_string()))?;
            // A racing taker (or our own lost response) makes this a 409: read again.
            api.create(&PostParams::default(), &lease)
                .await
                .map_err(err("creating"))?;
        }
        Some(mut lease) => {
            let spec = lease.spec.clone().unwrap_or_default();
            let held_by = spec.holder_identity.clone().filter(|h| !h.is_empty());
            if held_by.as_deref() == Some(holder) {
                return Ok(());
            }
            let expired = spec.renew_time.as_ref().is_none_or(|t| {
                let age = k8s_openapi::jiff::Timestamp::now().duration_since(t.0);
                age.as_secs() > i64::from(spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS))
            });
            if let Some(other) = held_by.filter(|h| !expired && !holder_is_dead(h)) {
                return Err(KubeError::Invalid(format!(
                    "another qhub deploy ({other}) holds the deploy lease {LEASE_NAMESPACE}/{name}; wait for it to finish (a lease not renewed for {LEASE_SECONDS}s expires)"
                )));
            }
            let mut new_spec = spec;
            new_spec.holder_identity = Some(holder.to_string());
            new_spec.lease_duration_seconds = Some(LEASE_SECONDS);
            new_spec.acquire_time = Some(now());
            new_spec.renew_time = Some(now());
            lease.spec = Some(new_spec);
            // `replace` carries the resourceVersion we read: a racing taker gets a 409.
            api.replace(name, &PostParams::default(), &lease)
                .await
                .map_err(err("taking"))?;
        }
    }
    Ok(())
}

/// This host's name: the kernel's, `/etc/hostname`, or `HOSTNAME` (macOS has no `/proc`).
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "unknown-host".into())
}

/// This process's pid namespace (`pid:[4026531836]`), so that two containers sharing a host
/// name are told apart; `-` where there is none to read (macOS).
fn pid_namespace() -> String {
    std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "-".into())
}

/// The identity of this run: `qhub@HOST/PIDNS/PID/RANDOM`, unique per run even in
/// containers that share a host name and a pid.
pub fn holder_identity() -> String {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        use rand::Rng as _;
        let run: u64 = rand::rng().random();
        format!(
            "qhub@{}/{}/{}/{run:016x}",
            host_name(),
            pid_namespace(),
            std::process::id()
        )
    })
    .clone()
}

/// True when `holder` is a process of this host and pid namespace that no longer runs (a
/// deploy that was killed): its lease need not be waited out. A holder from another host,
/// another container, or a system where this cannot be known is never taken for dead.
pub(crate) fn holder_is_dead(holder: &str) -> bool {
    let parts = |h: &str| -> Option<(String, String, u32)> {
        let rest = h.strip_prefix("qhub@")?;
        let mut it = rest.split('/');
        let host = it.next()?.to_string();
        let ns = it.next()?.to_string();
        let pid = it.next()?.parse().ok()?;
        Some((host, ns, pid))
    };
    match (parts(holder), parts(&holder_identity())) {
        (Some((host, ns, pid)), Some((my_host, my_ns, _)))
            if host == my_host && ns == my_ns && ns != "-" =>
        {
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_identity_names_host_pid_namespace_pid_and_a_random_run_id() {
        let id = holder_identity();
        let parts: Vec<&str> = id.strip_prefix("qhub@").unwrap().split('/').collect();
        assert_eq!(parts.len(), 4, "{id}");
        assert_eq!(parts[2], std::process::id().to_string(), "{id}");
        assert_eq!(parts[3].len(), 16, "{id}");
        assert_eq!(holder_identity(), id, "one identity per run");
    }

    #[test]
    fn a_live_holder_elsewhere_is_never_taken_for_dead() {
        let me = holder_identity();
        let parts: Vec<&str> = me.strip_prefix("qhub@").unwrap().split('/').collect();
        let (host, ns) = (parts[0], parts[1]);
        // A pid that does not exist here, in another container with the same host name.
        let other_container = format!("qhub@{host}/pid:[1]/4194303/0000000000000000");
        assert!(!holder_is_dead(&other_container));
        // Another host, and a system whose pid namespace is unknown.
        assert!(!holder_is_dead("qhub@elsewhere/pid:[1]/4194303/00"));
        assert!(!holder_is_dead(&format!("qhub@{host}/-/4194303/00")));
        // The same host and namespace, a process that is gone: dead (where /proc exists).
        if ns != "-" {
            assert!(holder_is_dead(&format!("qhub@{host}/{ns}/4194303/00")));
            assert!(!holder_is_dead(&me), "this process is alive");
        }
    }
}
