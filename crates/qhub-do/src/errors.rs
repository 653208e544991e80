//! From DigitalOcean's errors to the provider contract's classes.

use qhub_core::provider::ProviderError;

use crate::client::{DoError, ErrorClass};

/// A DigitalOcean call that cannot succeed as asked (refused, or out of retries): what was
/// being done, with the client's error kept as the source.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
#[non_exhaustive]
pub struct CallFailed {
    /// What was being done, e.g. `creating cluster demo-dev`.
    pub what: String,
    /// The client's error.
    #[source]
    pub source: DoError,
}

/// Maps a client error to the contract's class, naming `what` was being done: 404
/// `NotFound`, a taken name `AlreadyExists`, a busy cluster `Conflict`, 429 `Throttled`
/// (after the client waited out what it could), 5xx and lost answers `Retryable`, 401/403
/// `Unauthorized`, any other refusal, and a call whose retry budget ran out, `Fatal`.
pub fn to_provider(what: &str, e: DoError) -> ProviderError {
    let message = format!("{what}: {e}");
    match e.class() {
        ErrorClass::NotFound => ProviderError::NotFound(message),
        ErrorClass::AlreadyExists => ProviderError::AlreadyExists(message),
        ErrorClass::Busy => ProviderError::Conflict {
            message,
            retry_after: e.retry_after(),
        },
        ErrorClass::Throttled => ProviderError::Throttled {
            message,
            retry_after: e.retry_after(),
        },
        ErrorClass::Retryable => ProviderError::Retryable {
            message,
            retry_after: e.retry_after(),
        },
        ErrorClass::Unauthorized if message.contains("DIGITALOCEAN_TOKEN") => {
            ProviderError::Unauthorized(message)
        }
        // Say where the token comes from: the fix is nearly always there.
        ErrorClass::Unauthorized => ProviderError::Unauthorized(format!(
            "{message} (check DIGITALOCEAN_TOKEN: a personal access token with read and write scope)"
        )),
        ErrorClass::Invalid | ErrorClass::GaveUp => ProviderError::other(CallFailed {
            what: what.to_string(),
            source: e,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn api(status: u16, message: &str) -> DoError {
        DoError::Api {
            operation: "POST /v2/kubernetes/clusters".into(),
            status,
            id: "x".into(),
            message: message.into(),
            request_id: None,
            retry_after: Some(Duration::from_secs(3)),
        }
    }

    #[test]
    fn classes_follow_status_and_message() {
        assert_eq!(api(404, "").class(), ErrorClass::NotFound);
        assert_eq!(
            api(422, "a cluster with the name `x` already exists").class(),
            ErrorClass::AlreadyExists
        );
        assert_eq!(
            api(422, "cluster is provisioning").class(),
            ErrorClass::Busy
        );
        assert_eq!(api(422, "size is invalid").class(), ErrorClass::Invalid);
        assert_eq!(
            api(401, "Unable to authenticate you").class(),
            ErrorClass::Unauthorized
        );
        assert_eq!(api(503, "").class(), ErrorClass::Retryable);
        match to_provider("create", api(429, "API Rate limit exceeded.")) {
            ProviderError::Throttled { retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_secs(3)));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            to_provider("x", api(401, "")),
            ProviderError::Unauthorized(_)
        ));
        let fatal = to_provider("x", api(422, "bad size"));
        assert!(matches!(fatal, ProviderError::Other(_)), "{fatal:?}");
        assert!(fatal.to_string().starts_with("x: DigitalOcean"), "{fatal}");
        let cause = std::error::Error::source(&fatal).expect("the client's error is kept");
        assert!(cause.to_string().contains("bad size"), "{cause}");
        assert!(matches!(
            to_provider("x", api(422, "cluster is provisioning")),
            ProviderError::Conflict { .. }
        ));
        assert!(matches!(
            to_provider("x", api(404, "")),
            ProviderError::NotFound(_)
        ));
        assert!(matches!(
            to_provider("x", api(500, "")),
            ProviderError::Retryable { .. }
        ));
    }
}
