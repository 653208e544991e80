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

/// A held lease; renewed in the background, released when dropped.
#[derive(Debug)]
pub struct LeaseGuard {
    renew: tokio::task::JoinHandle<()>,
    api: Api<Lease>,
    name: String,
    holder: String,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        // Without `release`, the lease stays held until it expires, as after a crash.
        self.renew.abort();
    }
}

impl LeaseGuard {
    /// Stops renewing and clears the holder, so the next deploy need not wait for expiry.
    pub async fn release(self) {
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
                    tracing::warn!(error = %e, "releasing the deploy lease failed; it expires in {LEASE_SECONDS}s");
                }
            }
        }
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
                    && crate::provider::find_killed(&e).is_none() =>
            {
                tokio::time::sleep(policy.backoff(attempt)).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
    let renew_api = api.clone();
    let renew_name = name.clone();
    let renew = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(
                u64::try_from(LEASE_SECONDS / 3).unwrap_or(20),
            ))
            .await;
            if let Ok(mut lease) = renew_api.get(&renew_name).await {
                if let Some(spec) = lease.spec.as_mut() {
                    spec.renew_time = Some(now());
                }
                if let Err(e) = renew_api
                    .replace(&renew_name, &PostParams::default(), &lease)
                    .await
                {
                    tracing::warn!(error = %e, "renewing the deploy lease failed");
                }
            }
        }
    });
    Ok(LeaseGuard {
        renew,
        api,
        name,
        holder: holder.to_string(),
    })
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

/// An identity for this process: host name and process id.
pub fn holder_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into());
    format!("qhub@{host}/{}", std::process::id())
}

/// True when `holder` is a process of this host that no longer runs (a deploy that was killed):
/// its lease need not be waited out.
fn holder_is_dead(holder: &str) -> bool {
    let ours = holder_identity();
    let host_of = |h: &str| h.rsplit_once('/').map(|(host, _)| host.to_string());
    match (host_of(holder), host_of(&ours), holder.rsplit_once('/')) {
        (Some(theirs), Some(mine), Some((_, pid))) if theirs == mine => pid
            .parse::<u32>()
            .is_ok_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()),
        _ => false,
    }
}
