//! Mapping AWS SDK errors to [`ProviderError`].
//!
//! The SDK sends each call again by qhub-core's one retry policy (reads after throttling, 5xx
//! and transport failures; mutations only after throttling: `ApiPolicy` in `client.rs`). What
//! still fails with throttling, 5xx, a lost response or eventual consistency is reported as
//! [`ProviderError::Retryable`] (or throttled, or busy), so the engine tries the whole step
//! again later, with backoff, after re-observing; a call whose own budget ran out is fatal
//! ([`AwsError::gave_up`]), so no loop is stacked on another.

use std::sync::Arc;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use qhub_core::provider::ProviderError;

/// A failed AWS API call, reduced to what a caller can act on, with the SDK's error as its
/// source.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation}: {message}")]
#[non_exhaustive]
pub struct AwsError {
    /// The API operation, e.g. `CreateVpc`.
    pub operation: &'static str,
    /// The AWS error code (`InvalidVpcID.NotFound`, `ThrottlingException`), when the service
    /// sent one.
    pub code: Option<String>,
    /// What went wrong: the service's code and message, or what happened to the request.
    pub message: String,
    /// The HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// The response was a 404 with an HTML body: the endpoint does not implement the
    /// operation (moto answers so for EKS add-ons and version APIs).
    pub html_not_found: bool,
    /// No response arrived (timeout, connection failure).
    pub no_response: bool,
    /// The call's retry budget ran out: which call kept failing, and for how long.
    pub gave_up: Option<String>,
    /// The cause: the service's modelled error, or why no answer came (timeout, connection).
    /// Never the raw response (its headers and body stay out).
    #[source]
    pub source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

/// Error codes meaning "try again later": throttling, server errors, and eventual consistency.
const RETRYABLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "TooManyRequestsException",
    "ResourceInUseException",
    "ServiceUnavailable",
    // EC2's code for a 503.
    "Unavailable",
    "ServiceUnavailableException",
    "InternalError",
    "InternalFailure",
    "ServerException",
    "ServiceFailure",
    // A delete that raced with its dependants going away (ENIs are released asynchronously).
    "DependencyViolation",
    // EFS: a mount target or file system still being created or deleted.
    "IncorrectFileSystemLifeCycleState",
    "IncorrectMountTargetState",
    // EFS: a file system whose mount targets are still being deleted.
    "FileSystemInUse",
    // EC2: a volume or network interface still attached to what is being deleted.
    "VolumeInUse",
    "InvalidNetworkInterface.InUse",
    // IAM is eventually consistent: a just-attached policy or just-created role may not be
    // visible to another service yet.
    "ConcurrentModification",
    "ConcurrentModificationException",
    // S3 (409): a conditional write raced another write to the same key; "retry the request"
    // (S3 user guide, "Conditional writes"). The deploy lock reads again before it does.
    "ConditionalRequestConflict",
    // S3 (409): a conflicting operation on the bucket (create/delete) is in progress.
    "OperationAborted",
];

/// The codes of [`RETRYABLE_CODES`] that say the call was throttled (it did nothing).
const THROTTLED_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "TooManyRequestsException",
];

/// The codes of [`RETRYABLE_CODES`] that say the cloud is busy with the resource or waits for a
/// dependency: retried for minutes. EKS answers `ResourceInUseException` to a delete of a
/// cluster that is still CREATING; IAM roles are not assumable for seconds after creation.
const BUSY_CODES: &[&str] = &[
    "ResourceInUseException",
    "DependencyViolation",
    "IncorrectFileSystemLifeCycleState",
    "IncorrectMountTargetState",
    "FileSystemInUse",
    "VolumeInUse",
    "InvalidNetworkInterface.InUse",
    "ConcurrentModification",
    "ConcurrentModificationException",
];

/// Error codes meaning the credentials are missing, wrong or not allowed.
const AUTH_CODES: &[&str] = &[
    "AuthFailure",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
];

impl AwsError {
    /// Reduces an SDK error.
    pub fn from_sdk<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let code = err.code().map(str::to_string);
        let raw = err.raw_response();
        let status = raw.map(|r| r.status().as_u16());
        let html_not_found = raw.is_some_and(|r| {
            r.status().as_u16() == 404
                // An HTML page, not the XML error document IAM/EC2 send (which also starts
                // with `<`): moto's "no such route" answer.
                && r.body().bytes().is_some_and(|b| {
                    let head = String::from_utf8_lossy(&b[..b.len().min(64)]).to_ascii_lowercase();
                    let head = head.trim_start();
                    head.starts_with("<!doctype html") || head.starts_with("<html")
                })
        });
        let gave_up = raw
            .and_then(|r| r.headers().get(crate::client::GAVE_UP_HEADER))
            .map(str::to_string);
        let no_response = matches!(
            err,
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_)
        );
        // The service's own words when it sent any; never the raw response (headers, bodies).
        let message = match (err.code(), err.message()) {
            (Some(c), Some(m)) => format!("{c}: {m}"),
            (Some(c), None) => c.to_string(),
            (None, _) => match &err {
                SdkError::TimeoutError(_) => "timed out".to_string(),
                // The chain says why (connection refused, DNS); a dispatch failure has no
                // response to leak.
                SdkError::DispatchFailure(_) | SdkError::ConstructionFailure(_) => {
                    DisplayErrorContext(&err).to_string()
                }
                _ => match status {
                    Some(s) => format!("HTTP {s} without an AWS error code"),
                    None => "failed without a response".to_string(),
                },
            },
        };
        Self {
            operation,
            code,
            message,
            status,
            html_not_found,
            no_response,
            gave_up,
            // `into_source` gives the modelled service error, or the timeout's or dispatch
            // failure's own cause: never the raw response.
            source: err.into_source().ok().map(Arc::from),
        }
    }

    /// True when the error says the resource does not exist.
    pub fn is_not_found(&self) -> bool {
        if self.html_not_found {
            return false;
        }
        match self.code.as_deref() {
            Some(c) => {
                c.ends_with("NotFound")
                    || c.ends_with(".NotFound")
                    || c.ends_with("NotFoundException")
                    || c == "NoSuchEntity"
                    || c == "FileSystemNotFound"
                    || c == "MountTargetNotFound"
            }
            None => false,
        }
    }

    /// True when the error says a resource with this name exists already.
    pub fn is_already_exists(&self) -> bool {
        matches!(
            self.code.as_deref(),
            Some(
                "EntityAlreadyExists"
                    | "ResourceInUseException"
                    | "FileSystemAlreadyExists"
                    | "InvalidGroup.Duplicate"
                    | "RouteAlreadyExists"
                    | "Resource.AlreadyAssociated"
            )
        )
    }

    /// True when a retry may succeed.
    pub fn is_retryable(&self) -> bool {
        if self.no_response {
            return true;
        }
        if let Some(code) = self.code.as_deref() {
            if RETRYABLE_CODES.contains(&code) {
                return true;
            }
            // CreateCluster / CreateNodegroup right after the role was created: "Role with
            // arn ... could not be assumed because it does not exist or the trusted entity is
            // not correct" — IAM eventual consistency (REFERENCE.md §3).
            // CreatePodIdentityAssociation right after the role was created: EKS reads the
            // trust policy of a role IAM may not show it yet, and answers "Trust policy of the
            // role provided is invalid" (hashicorp/terraform-provider-aws#41483 shows the
            // message). qhub writes the trust EKS requires itself (apply::iam), so the answer
            // about its own new role is IAM's eventual consistency; the retry budget ends a
            // real misconfiguration.
            if code == "InvalidParameterException"
                && (self.message.contains("cannot be assumed")
                    || self.message.contains("could not be assumed")
                    || (self.operation == "CreatePodIdentityAssociation"
                        && self
                            .message
                            .contains("Trust policy of the role provided is invalid")))
            {
                return true;
            }
        }
        matches!(self.status, Some(429 | 500..=599))
    }

    /// The [`ProviderError`] for the engine. `emulator`: a custom endpoint is set, so an HTML
    /// 404 means "this endpoint does not implement the operation".
    pub fn into_provider(self, emulator: bool) -> ProviderError {
        if self.html_not_found && emulator {
            tracing::warn!(
                operation = self.operation,
                "the custom endpoint does not implement this operation; skipped"
            );
            return ProviderError::NotSupported(format!(
                "{} is not implemented by the custom endpoint",
                self.operation
            ));
        }
        if let Some(note) = self.gave_up.clone() {
            let mut e = self;
            e.message = format!("{}; {note}", e.message);
            return ProviderError::other(e);
        }
        let code = self.code.as_deref().unwrap_or_default();
        if THROTTLED_CODES.contains(&code) || self.status == Some(429) {
            return ProviderError::throttled(self.to_string(), None);
        }
        // Still used by something (a subnet with network interfaces in it): the engine judges
        // whether waiting can help (ProviderError::InUse).
        if code == "DependencyViolation" {
            return ProviderError::in_use(self.to_string());
        }
        if BUSY_CODES.contains(&code)
            || (self.is_retryable() && code == "InvalidParameterException")
        {
            return ProviderError::conflict(self.to_string());
        }
        if self.is_retryable() {
            return ProviderError::retryable(self.to_string());
        }
        if self.is_not_found() {
            return ProviderError::NotFound(self.to_string());
        }
        if self
            .code
            .as_deref()
            .is_some_and(|c| AUTH_CODES.contains(&c))
        {
            return ProviderError::Unauthorized(self.to_string());
        }
        // Kept whole: the SDK's error stays in the source chain.
        ProviderError::other(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(code: Option<&str>, status: Option<u16>, message: &str) -> AwsError {
        AwsError {
            operation: "Op",
            code: code.map(str::to_string),
            message: message.into(),
            status,
            html_not_found: false,
            no_response: false,
            gave_up: None,
            source: None,
        }
    }

    #[test]
    fn a_new_role_pod_identity_cannot_read_yet_is_retryable() {
        let mut err = e(
            Some("InvalidParameterException"),
            Some(400),
            "Trust policy of the role provided is invalid. Follow the official documentation to resolve the issue.",
        );
        assert!(!err.is_retryable(), "only for CreatePodIdentityAssociation");
        err.operation = "CreatePodIdentityAssociation";
        assert!(err.is_retryable());
    }

    #[test]
    fn throttling_5xx_and_unassumable_roles_are_retryable() {
        assert!(e(Some("ThrottlingException"), Some(400), "").is_retryable());
        assert!(e(None, Some(503), "").is_retryable());
        assert!(e(None, Some(429), "").is_retryable());
        assert!(
            e(
                Some("InvalidParameterException"),
                Some(400),
                "Role with arn: x could not be assumed because it does not exist"
            )
            .is_retryable()
        );
        assert!(!e(Some("InvalidParameterException"), Some(400), "bad subnet").is_retryable());
        assert!(!e(Some("InvalidVpcID.NotFound"), Some(400), "").is_retryable());
        // A conditional write that raced another: retried (after a fresh read).
        assert!(matches!(
            e(Some("ConditionalRequestConflict"), Some(409), "").into_provider(false),
            ProviderError::Retryable { .. }
        ));
        // One whose condition did not hold is no failure to retry.
        assert!(!e(Some("PreconditionFailed"), Some(412), "").is_retryable());
    }

    #[test]
    fn not_found_codes() {
        assert!(e(Some("InvalidVpcID.NotFound"), Some(400), "").is_not_found());
        assert!(e(Some("NoSuchEntity"), Some(404), "").is_not_found());
        assert!(e(Some("ResourceNotFoundException"), Some(404), "").is_not_found());
        assert!(!e(Some("ThrottlingException"), Some(400), "").is_not_found());
    }

    #[test]
    fn html_404_is_not_supported_only_on_a_custom_endpoint() {
        let mut x = e(None, Some(404), "<html>");
        x.html_not_found = true;
        assert!(matches!(
            x.clone().into_provider(true),
            ProviderError::NotSupported(_)
        ));
        assert!(matches!(x.into_provider(false), ProviderError::Other(_)));
    }

    #[test]
    fn classes_the_engine_acts_on() {
        let class = |e: AwsError| e.into_provider(false).retry_class();
        use qhub_core::provider::RetryClass;
        assert_eq!(
            class(e(Some("RequestLimitExceeded"), Some(400), "")),
            Some(RetryClass::Throttled)
        );
        assert_eq!(class(e(None, Some(503), "")), Some(RetryClass::Transient));
        assert_eq!(
            class(e(
                Some("ResourceInUseException"),
                Some(409),
                "Cluster is CREATING"
            )),
            Some(RetryClass::Busy)
        );
        assert_eq!(
            class(e(
                Some("InvalidParameterException"),
                Some(400),
                "Role could not be assumed"
            )),
            Some(RetryClass::Busy)
        );
        assert!(matches!(
            e(Some("ResourceNotFoundException"), Some(404), "").into_provider(false),
            ProviderError::NotFound(_)
        ));
        let in_use = e(
            Some("DependencyViolation"),
            Some(400),
            "The subnet 'subnet-1' has dependencies and cannot be deleted.",
        )
        .into_provider(false);
        assert!(matches!(in_use, ProviderError::InUse { .. }), "{in_use:?}");
        assert_eq!(in_use.retry_class(), Some(RetryClass::Busy));
        assert!(in_use.to_string().contains("subnet-1"), "{in_use}");
    }

    #[test]
    fn a_call_whose_budget_ran_out_is_fatal_and_says_so() {
        let mut x = e(Some("ServiceUnavailable"), Some(503), "");
        x.gave_up =
            Some("IAM.ListRolePolicies kept failing: gave up after 10 attempts over 93s".into());
        let p = x.into_provider(false);
        assert!(!p.is_retryable(), "{p}");
        assert!(p.to_string().contains("kept failing"), "{p}");
    }

    #[test]
    fn auth_errors() {
        assert!(matches!(
            e(Some("AuthFailure"), Some(401), "").into_provider(false),
            ProviderError::Unauthorized(_)
        ));
    }
}
