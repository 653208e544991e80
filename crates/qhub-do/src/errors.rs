//! From DigitalOcean's errors to the provider contract's classes.

use qhub_core::provider::ProviderError;

use crate::client::{DoError, ErrorClass};

/// Maps a client error to the contract's error, naming `what` was being done.
///
/// "Not found" and "already exists" are normally handled where they mean something (a delete
/// that finds nothing is done; a create whose name is taken adopts); when they reach this
/// point they are failures of the step.
pub fn to_provider(what: &str, e: DoError) -> ProviderError {
    let message = format!("{what}: {e}");
    match e.class() {
        ErrorClass::Throttled | ErrorClass::Retryable => ProviderError::Retryable {
            message,
            retry_after: e.retry_after(),
        },
        // The engine's backoff spaces the retries; the provider itself waits for a cluster
        // to be running before changing its pools, so this is the rare race.
        ErrorClass::Busy => ProviderError::Retryable {
            message,
            retry_after: None,
        },
        ErrorClass::Unauthorized => ProviderError::Auth(message),
        ErrorClass::NotFound | ErrorClass::AlreadyExists | ErrorClass::Invalid => {
            ProviderError::Failed(message)
        }
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
            ProviderError::Retryable { retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_secs(3)));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            to_provider("x", api(401, "")),
            ProviderError::Auth(_)
        ));
        assert!(matches!(
            to_provider("x", api(422, "bad size")),
            ProviderError::Failed(_)
        ));
    }
}
