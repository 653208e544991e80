//! API call counters: every request a provider sends, split into reads and mutations, per
//! operation. Tests assert "a no-op deploy makes no mutating call" with them; benchmarks quote
//! them.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts of the API calls a provider sent (every attempt, retries included), and of the
/// retries the one retry policy ([`crate::retry`]) granted them.
#[derive(Debug, Default)]
pub struct ApiStats {
    calls: AtomicU64,
    mutating: AtomicU64,
    by_operation: Mutex<BTreeMap<String, u64>>,
    retries: AtomicU64,
    longest_chain: AtomicU64,
    gave_up: AtomicU64,
}

impl ApiStats {
    /// Every request sent.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Requests that change something.
    pub fn mutating(&self) -> u64 {
        self.mutating.load(Ordering::SeqCst)
    }

    /// Requests per operation name.
    pub fn by_operation(&self) -> BTreeMap<String, u64> {
        self.by_operation
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// True for an operation name that does not change anything (`Describe*`, `List*`,
    /// `Get*`, in any case: AWS's `DescribeVpcs`, GKE's `getServerConfig`).
    pub fn is_read_only(operation: &str) -> bool {
        let op = operation.rsplit('.').next().unwrap_or(operation);
        ["describe", "list", "get"].iter().any(|p| {
            op.get(..p.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(p))
        })
    }

    /// Retries granted to single calls (each one another request of the same call).
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::SeqCst)
    }

    /// The most attempts one call took, the first included (1 when nothing was retried).
    pub fn longest_chain(&self) -> u64 {
        self.longest_chain.load(Ordering::SeqCst).max(1)
    }

    /// Calls whose retry budget ran out.
    pub fn gave_up(&self) -> u64 {
        self.gave_up.load(Ordering::SeqCst)
    }

    /// Counts one retry of a call: `attempt` is the number of the attempt about to be sent
    /// (2 for the first retry).
    pub fn record_retry(&self, attempt: u32) {
        self.retries.fetch_add(1, Ordering::SeqCst);
        self.longest_chain
            .fetch_max(u64::from(attempt), Ordering::SeqCst);
    }

    /// Counts a call whose retry budget ran out after `attempts` attempts.
    pub fn record_gave_up(&self, attempts: u32) {
        self.gave_up.fetch_add(1, Ordering::SeqCst);
        self.longest_chain
            .fetch_max(u64::from(attempts), Ordering::SeqCst);
    }

    /// Counts one request of `operation`; `mutating` says whether it changes anything (by
    /// [`Self::is_read_only`] for named operations, by the HTTP method for REST APIs).
    pub fn record(&self, operation: &str, mutating: bool) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if mutating {
            self.mutating.fetch_add(1, Ordering::SeqCst);
        }
        if let Ok(mut m) = self.by_operation.lock() {
            *m.entry(operation.to_string()).or_insert(0) += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_not_mutations() {
        assert!(ApiStats::is_read_only("DescribeVpcs"));
        assert!(ApiStats::is_read_only("ListRoles"));
        assert!(ApiStats::is_read_only("EKS.DescribeCluster"));
        assert!(ApiStats::is_read_only("getServerConfig"));
        assert!(!ApiStats::is_read_only("CreateVpc"));
        assert!(!ApiStats::is_read_only("AttachRolePolicy"));
        let s = ApiStats::default();
        s.record("EC2.CreateVpc", true);
        s.record("EC2.DescribeVpcs", false);
        assert_eq!((s.calls(), s.mutating()), (2, 1));
        assert_eq!(s.by_operation()["EC2.CreateVpc"], 1);
        assert_eq!((s.retries(), s.longest_chain()), (0, 1));
        s.record_retry(2);
        s.record_retry(3);
        s.record_retry(2);
        s.record_gave_up(2);
        assert_eq!((s.retries(), s.longest_chain(), s.gave_up()), (3, 3, 1));
    }
}
