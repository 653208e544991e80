//! The error every backend call returns ([`ProviderError`]), in classes the retry policy
//! ([`crate::retry`]) and the engine act on. It sits below the provider contract, the cloud
//! toolkit and the retry policy, which all use it, and imports none of them.

use std::sync::Arc;
use std::time::Duration;

/// Errors a provider returns. The class decides what the engine does: retry soon
/// ([`Self::Throttled`], [`Self::Retryable`]), retry for minutes ([`Self::Conflict`]), treat as
/// done ([`Self::NotFound`] on a delete), or stop.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// The resource does not exist (a delete of it is done).
    #[error("not found: {0}")]
    NotFound(String),
    /// A resource with this identity exists already (a create should adopt it if it is ours).
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The cloud is busy with the resource or waits for a dependency: another operation is in
    /// progress on the cluster (GKE), a role is not assumable yet (IAM eventual consistency),
    /// a dependency is still being deleted. Retried for minutes, not seconds.
    #[error("{message} (busy; will retry)")]
    Conflict {
        /// What happened.
        message: String,
        /// How long the cloud asked us to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// The cloud refuses to delete the resource because something still uses it (AWS
    /// `DependencyViolation`). Retried like [`ProviderError::Conflict`] while what uses it may
    /// still be going away (network interfaces of a deleted cluster drain for minutes); the
    /// engine fails it at once when a resource that depends on it stays (see
    /// [`crate::engine`]).
    #[error("{message} (in use)")]
    InUse {
        /// What happened: the cloud's own words, naming what uses it when it says.
        message: String,
        /// How long the cloud asked us to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// Rate limited (HTTP 429, `Throttling`, `RequestLimitExceeded`): the call did nothing.
    #[error("{message} (throttled)")]
    Throttled {
        /// What happened.
        message: String,
        /// How long the cloud asked us to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// A transient failure (5xx, timeout, a lost answer): the call may or may not have been
    /// carried out, so a retried create must re-observe first.
    #[error("{message} (retryable)")]
    Retryable {
        /// What happened.
        message: String,
        /// How long the cloud asked us to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// Credentials are missing, expired or refused.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The provider (or this endpoint) does not support the operation (yet).
    #[error("not supported: {0}")]
    NotSupported(String),
    /// The operation cannot succeed as asked; retrying will not help.
    #[error("{0}")]
    Fatal(String),
    /// The cluster does not exist or cannot be reached now (absent, being created, failed,
    /// being deleted): there is nothing to connect to.
    #[error("the cluster is not reachable: {0}")]
    NoCluster(String),
    /// An error of the provider's own type, fatal to the change, kept whole: its message is
    /// this error's and its source chain this error's (the cause a `Fatal(e.to_string())`
    /// would drop). The engine looks into its source chain for errors it knows (the
    /// sandbox's simulated process death).
    #[error(transparent)]
    Other(Arc<dyn std::error::Error + Send + Sync>),
}

/// How a retryable error is retried: each class has its own budget in
/// [`crate::retry::RetryPolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RetryClass {
    /// Rate limited: back off and try again.
    Throttled,
    /// 5xx, timeouts, lost answers.
    Transient,
    /// The cloud is busy or waits for a dependency: minutes.
    Busy,
}

impl ProviderError {
    /// The retry class, or `None` when retrying cannot help.
    pub fn retry_class(&self) -> Option<RetryClass> {
        match self {
            Self::Throttled { .. } => Some(RetryClass::Throttled),
            Self::Retryable { .. } => Some(RetryClass::Transient),
            Self::Conflict { .. } | Self::InUse { .. } => Some(RetryClass::Busy),
            _ => None,
        }
    }

    /// True when the same call may succeed if tried again.
    pub fn is_retryable(&self) -> bool {
        self.retry_class().is_some()
    }

    /// How long the cloud asked us to wait before trying again, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Throttled { retry_after, .. }
            | Self::Retryable { retry_after, .. }
            | Self::Conflict { retry_after, .. }
            | Self::InUse { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A transient failure with no retry-after.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::Retryable {
            message: message.into(),
            retry_after: None,
        }
    }

    /// A busy/conflict failure with no retry-after.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict {
            message: message.into(),
            retry_after: None,
        }
    }

    /// A delete refused because something still uses the resource, with no retry-after.
    pub fn in_use(message: impl Into<String>) -> Self {
        Self::InUse {
            message: message.into(),
            retry_after: None,
        }
    }

    /// A throttled call with an optional retry-after.
    pub fn throttled(message: impl Into<String>, retry_after: Option<Duration>) -> Self {
        Self::Throttled {
            message: message.into(),
            retry_after,
        }
    }

    /// Wraps an error of the provider's own type.
    pub fn other(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Other(Arc::new(error))
    }
}

/// The error a simulated backend returns through a client library (e.g. the Kubernetes
/// client) to report that the process "died": anything that finds it in an error's source chain
/// must stop at once, without any clean-up (the sandbox's and the conformance suite's
/// simulated SIGKILL).
#[derive(Debug, Clone, thiserror::Error)]
#[error("interrupted: {0}")]
pub struct ProcessKilled(pub String);

/// Finds a [`ProcessKilled`] in an error's source chain (through [`ProviderError::Other`]).
pub fn find_killed<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a ProcessKilled> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(k) = e.downcast_ref::<ProcessKilled>() {
            return Some(k);
        }
        if let Some(ProviderError::Other(inner)) = e.downcast_ref::<ProviderError>() {
            let inner: &(dyn std::error::Error + 'static) = &**inner;
            if let Some(k) = inner.downcast_ref::<ProcessKilled>() {
                return Some(k);
            }
            current = inner.source();
            continue;
        }
        current = e.source();
    }
    None
}

impl ProviderError {
    /// True when this is (or wraps) a simulated process death.
    pub fn is_killed(&self) -> bool {
        find_killed(self).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_killed() {
        assert_eq!(
            ProviderError::throttled("429", None).retry_class(),
            Some(RetryClass::Throttled)
        );
        assert_eq!(
            ProviderError::conflict("operation in progress").retry_class(),
            Some(RetryClass::Busy)
        );
        assert!(!ProviderError::NotFound("x".into()).is_retryable());
        let killed = ProviderError::other(ProcessKilled("after create".into()));
        assert!(killed.is_killed());
        assert!(!ProviderError::Fatal("x".into()).is_killed());
    }

    #[test]
    fn a_wrapped_error_keeps_its_cause() {
        #[derive(Debug, thiserror::Error)]
        #[error("deleting x")]
        struct Outer(#[source] std::io::Error);
        let e = ProviderError::other(Outer(std::io::Error::other("refused")));
        assert_eq!(e.to_string(), "deleting x");
        let cause = std::error::Error::source(&e).expect("the cause is kept");
        assert_eq!(cause.to_string(), "refused");
    }
}
