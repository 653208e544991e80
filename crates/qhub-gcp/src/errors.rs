//! Errors of the GKE provider, and how they map to the engine's error classes.
//!
//! GKE speaks `google.rpc.Status` (`{"error": {"code", "message", "status"}}`); the client
//! library turns it into a [`google_cloud_gax::error::Error`] with a [`Code`]. [`classify`]
//! decides what a caller can do about it:
//!
//! | GKE answer | class |
//! | --- | --- |
//! | 404 NOT_FOUND | [`Class::NotFound`] |
//! | 409 ALREADY_EXISTS | [`Class::AlreadyExists`] |
//! | 400 FAILED_PRECONDITION "operation … in progress / please wait", label fingerprint mismatch | [`Class::Conflict`] (busy: retry later) |
//! | 429 RESOURCE_EXHAUSTED | [`Class::Throttled`] |
//! | 5xx, UNAVAILABLE, INTERNAL, DEADLINE_EXCEEDED, ABORTED, a lost answer | [`Class::Retryable`] |
//! | 401 UNAUTHENTICATED, 403 PERMISSION_DENIED | [`Class::Unauthorized`] |
//! | 403 PERMISSION_DENIED "Insufficient … quota" | [`Class::Fatal`] (raise the quota) |
//! | anything else (INVALID_ARGUMENT…) | [`Class::Fatal`] |

use std::sync::Arc;
use std::time::Duration;

use google_cloud_gax::error::Error as GaxError;
use google_cloud_gax::error::rpc::Code;
use qhub_core::provider::ProviderError;

/// What a caller can do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Class {
    /// The resource does not exist.
    NotFound,
    /// The resource exists already.
    AlreadyExists,
    /// The cluster is busy (another operation runs on it): retry once it is done.
    Conflict,
    /// Rate limited: retry after a while.
    Throttled,
    /// Credentials missing or refused.
    Unauthorized,
    /// Transient: a 5xx, a timeout, an answer lost on the way.
    Retryable,
    /// Will not succeed as asked.
    Fatal,
}

/// An error of the GKE provider.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum GcpError {
    /// A call of the GKE client library failed: which call, about which object. Its
    /// [`Class::NotFound`] says that `object` is absent, nothing more: a `ListOperations` of
    /// the location that answers 404 does not mean a cluster in it is gone
    /// ([`Self::is_not_found_of`]).
    #[error("{rpc} {object}: {message}")]
    Call {
        /// The RPC, e.g. `DeleteCluster`.
        rpc: &'static str,
        /// The resource name the call was about (`projects/P/locations/L/clusters/C`).
        object: String,
        /// What can be done about it.
        class: Class,
        /// GKE's message (never a credential).
        message: String,
        /// The client library's error.
        #[source]
        source: Arc<GaxError>,
    },
    /// A step of the GKE provider failed (not a call's own answer: a wait, an adoption).
    #[error("{what}: {message}")]
    Api {
        /// What was being done, e.g. `creating GKE cluster demo-dev`.
        what: String,
        /// What can be done about it.
        class: Class,
        /// GKE's message (never a credential).
        message: String,
    },
    /// A GKE operation ended with an error.
    #[error("{what}: operation {operation} failed: {message}")]
    OperationFailed {
        /// What the operation was doing.
        what: String,
        /// The operation's name.
        operation: String,
        /// Its error message.
        message: String,
    },
    /// A wait ran past its deadline.
    #[error("{what}: still not done after {after:?}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long.
        after: Duration,
    },
    /// The config asks for something GKE cannot do; `key` is the config key at fault.
    #[error("{key}: {message}")]
    Config {
        /// The config key, e.g. `google_cloud_platform.node_groups.user.instance`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// Credentials could not be found or built.
    #[error("GCP credentials: {0}")]
    Credentials(String),
    /// Not supported (yet) by this provider.
    #[error("not supported: {0}")]
    NotSupported(String),
}

impl GcpError {
    /// The class of this error.
    pub fn class(&self) -> Class {
        match self {
            Self::Api { class, .. } | Self::Call { class, .. } => *class,
            Self::OperationFailed { .. } | Self::Config { .. } | Self::NotSupported(_) => {
                Class::Fatal
            }
            Self::Timeout { .. } => Class::Retryable,
            Self::Credentials(_) => Class::Unauthorized,
        }
    }

    /// A config error at `key`.
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config {
            key: key.into(),
            message: message.into(),
        }
    }

    /// Maps the client library error of the call `rpc` about `object`, keeping it as the
    /// source.
    pub fn from_gax(rpc: &'static str, object: impl Into<String>, e: GaxError) -> Self {
        let (class, message) = classify(&e);
        Self::Call {
            rpc,
            object: object.into(),
            class,
            message,
            source: Arc::new(e),
        }
    }

    /// True when this is a call's NotFound about `object` itself: only then is `object`
    /// known to be gone. A NotFound of another call (the location's operations, a parent)
    /// says nothing about it.
    pub fn is_not_found_of(&self, object: &str) -> bool {
        matches!(self, Self::Call { class: Class::NotFound, object: o, .. } if o == object)
    }

    /// A NotFound about something other than `object` becomes fatal, saying so: the engine
    /// takes a NotFound out of a delete as "gone already", which only a NotFound of the
    /// deleted object itself may mean.
    pub fn not_found_only_of(self, object: &str) -> Self {
        match self {
            Self::Call {
                rpc,
                object: other,
                class: Class::NotFound,
                message,
                source,
            } if other != object => Self::Call {
                rpc,
                message: format!(
                    "{message}; {other} was not found, which says nothing about {object}"
                ),
                object: other,
                class: Class::Fatal,
                source,
            },
            e => e,
        }
    }
}

/// True when a FAILED_PRECONDITION means "busy, try again later" rather than "never".
fn is_busy(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    // GKE: "Operation operation-… is currently upgrading cluster x. Please wait and try again
    // once it is done."; "Cluster is running incompatible operation …"; label fingerprints go
    // stale when another change lands between our read and our write.
    m.contains("please wait")
        || m.contains("incompatible operation")
        || m.contains("is currently")
        || m.contains("fingerprint")
}

/// The class and message of a client library error.
pub fn classify(e: &GaxError) -> (Class, String) {
    if let Some(status) = e.status() {
        let message = status.message.clone();
        let class = match status.code {
            Code::NotFound => Class::NotFound,
            Code::AlreadyExists => Class::AlreadyExists,
            Code::FailedPrecondition if is_busy(&message) => Class::Conflict,
            Code::ResourceExhausted => Class::Throttled,
            Code::Unavailable
            | Code::Internal
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::Unknown => Class::Retryable,
            // GKE answers a create over quota 403 PERMISSION_DENIED ("Insufficient regional
            // quota to satisfy request", GoogleCloudPlatform/cloud-ops-sandbox#44): not a
            // credentials problem, and no retry helps until the quota is raised.
            Code::PermissionDenied if message.to_ascii_lowercase().contains("quota") => {
                Class::Fatal
            }
            Code::Unauthenticated | Code::PermissionDenied => Class::Unauthorized,
            _ => match e.http_status_code() {
                Some(429) => Class::Throttled,
                Some(c) if c >= 500 => Class::Retryable,
                _ => Class::Fatal,
            },
        };
        return (class, format!("{message} ({:?})", status.code));
    }
    if let Some(code) = e.http_status_code() {
        let class = match code {
            404 => Class::NotFound,
            409 => Class::AlreadyExists,
            429 => Class::Throttled,
            401 | 403 => Class::Unauthorized,
            c if c >= 500 => Class::Retryable,
            _ => Class::Fatal,
        };
        return (class, format!("HTTP {code}"));
    }
    if e.is_authentication() {
        // The credentials could not produce a token; a transient failure (metadata server
        // busy) says so in its source.
        let transient = std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<google_cloud_gax::error::CredentialsError>())
            .is_some_and(google_cloud_gax::error::CredentialsError::is_transient);
        let class = if transient {
            Class::Retryable
        } else {
            Class::Unauthorized
        };
        return (class, format!("cannot get credentials: {e}"));
    }
    if e.is_binding() || e.is_serialization() {
        return (Class::Fatal, e.to_string());
    }
    // I/O, connect, transport, timeouts, an answer that could not be read: the request may or
    // may not have been carried out. A retry first re-observes (creates adopt what exists).
    (Class::Retryable, format!("no answer from GKE: {e}"))
}

impl qhub_core::retry::RetryableError for GcpError {
    fn retry_class(&self) -> Option<qhub_core::provider::RetryClass> {
        use qhub_core::provider::RetryClass;
        match self.class() {
            Class::Throttled => Some(RetryClass::Throttled),
            Class::Retryable => Some(RetryClass::Transient),
            Class::Conflict => Some(RetryClass::Busy),
            _ => None,
        }
    }

    fn gave_up(self, note: &str) -> Self {
        match self {
            Self::Call {
                rpc,
                object,
                message,
                source,
                ..
            } => Self::Call {
                rpc,
                object,
                class: Class::Fatal,
                message: format!("{message}; {note}"),
                source,
            },
            Self::Api { what, message, .. } => Self::Api {
                what,
                class: Class::Fatal,
                message: format!("{message}; {note}"),
            },
            other => other,
        }
    }
}

impl From<GcpError> for ProviderError {
    fn from(e: GcpError) -> Self {
        let message = e.to_string();
        // GKE sends no Retry-After: the engine's budget per class decides the backoff.
        match e.class() {
            Class::NotFound => ProviderError::NotFound(message),
            Class::AlreadyExists => ProviderError::AlreadyExists(message),
            Class::Conflict => ProviderError::conflict(message),
            Class::Throttled => ProviderError::throttled(message, None),
            Class::Retryable => ProviderError::retryable(message),
            Class::Unauthorized => ProviderError::Unauthorized(message),
            Class::Fatal => match e {
                GcpError::NotSupported(m) => ProviderError::NotSupported(m),
                // Kept whole, with its source chain (the client library's error).
                e => ProviderError::other(e),
            },
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = GcpError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use google_cloud_gax::error::rpc::Status;

    fn service(code: Code, message: &str) -> GaxError {
        GaxError::service(Status::default().set_code(code).set_message(message))
    }

    #[test]
    fn gke_answers_map_to_classes() {
        let cases = [
            (
                Code::NotFound,
                "Not found: projects/p/locations/l/clusters/c.",
                Class::NotFound,
            ),
            (Code::AlreadyExists, "Already exists", Class::AlreadyExists),
            (
                Code::FailedPrecondition,
                "Operation operation-1 is currently creating cluster c. Please wait and try again once it is done.",
                Class::Conflict,
            ),
            (
                Code::FailedPrecondition,
                "Cluster is not regional",
                Class::Fatal,
            ),
            (Code::ResourceExhausted, "Quota exceeded", Class::Throttled),
            (Code::Unavailable, "unavailable", Class::Retryable),
            (Code::Unauthenticated, "no token", Class::Unauthorized),
            (Code::PermissionDenied, "denied", Class::Unauthorized),
            (
                Code::PermissionDenied,
                "Insufficient regional quota to satisfy request: resource \"CPUS\"",
                Class::Fatal,
            ),
            (Code::InvalidArgument, "bad", Class::Fatal),
        ];
        for (code, message, class) in cases {
            let (got, text) = classify(&service(code, message));
            assert_eq!(got, class, "{code:?} {message}");
            assert!(text.contains(message));
        }
    }

    #[test]
    fn a_not_found_is_only_about_its_own_object() {
        let cluster = "projects/p/locations/l/clusters/c";
        let list = GcpError::from_gax(
            "ListOperations",
            "projects/p/locations/l",
            service(Code::NotFound, "Not found: projects/p/locations/l."),
        );
        assert!(!list.is_not_found_of(cluster));
        let list = list.not_found_only_of(cluster);
        assert_eq!(list.class(), Class::Fatal);
        let e = ProviderError::from(list);
        assert!(!matches!(e, ProviderError::NotFound(_)), "{e}");
        assert!(
            e.to_string()
                .contains("ListOperations projects/p/locations/l"),
            "{e}"
        );
        // The cause stays in the chain.
        assert!(std::error::Error::source(&e).is_some(), "{e:?}");

        let gone = GcpError::from_gax("DeleteCluster", cluster, service(Code::NotFound, "gone"));
        assert!(gone.is_not_found_of(cluster));
        let gone = gone.not_found_only_of(cluster);
        assert!(matches!(
            ProviderError::from(gone),
            ProviderError::NotFound(_)
        ));
    }

    #[test]
    fn classes_map_to_the_engine_errors() {
        let busy = GcpError::Api {
            what: "CreateNodePool".into(),
            class: Class::Conflict,
            message: "busy".into(),
        };
        let busy = ProviderError::from(busy);
        assert_eq!(
            busy.retry_class(),
            Some(qhub_core::provider::RetryClass::Busy)
        );
        let bad = GcpError::config("google_cloud_platform.region", "unknown region");
        let e = ProviderError::from(bad);
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("google_cloud_platform.region"));
    }
}
