//! How an SDK call's result becomes this crate's: every call site names its operation once,
//! and says which errors mean "nothing there" ([`Sent`]). Observe and apply share it.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use qhub_core::provider::ProviderError;

use crate::AwsProvider;
use crate::errors::AwsError;

/// An SDK call's answer, mapped with the provider's rules ([`AwsProvider::err`]).
pub(crate) trait Sent<T>: Sized {
    /// Any error is mapped.
    fn sent(self, p: &AwsProvider, operation: &'static str) -> Result<T, ProviderError>;

    /// `Ok(None)` when the error is one `done` accepts as "nothing to do" (not found when
    /// deleting, already exists when associating); any other error is mapped.
    fn sent_unless(
        self,
        p: &AwsProvider,
        operation: &'static str,
        done: impl Fn(&AwsError) -> bool,
    ) -> Result<Option<T>, ProviderError>;

    /// `Ok(None)` when what the call asked about is not found (gone since it was listed, a
    /// concurrent destroy); any other error is mapped.
    fn unless_gone(
        self,
        p: &AwsProvider,
        operation: &'static str,
    ) -> Result<Option<T>, ProviderError> {
        self.sent_unless(p, operation, AwsError::is_not_found)
    }

    /// `Ok(None)` when what the call asked about is absent: not found, an error code in
    /// `absent` (say `InvalidRequestException` for access entries on a `CONFIG_MAP` cluster),
    /// or, with `unsupported_is_absent`, an endpoint that does not implement the operation (an
    /// emulator without the API). Every other error is mapped.
    fn unless_absent(
        self,
        p: &AwsProvider,
        operation: &'static str,
        absent: &[&str],
        unsupported_is_absent: bool,
    ) -> Result<Option<T>, ProviderError> {
        let gone = |e: &AwsError| {
            e.is_not_found() || e.code.as_deref().is_some_and(|c| absent.contains(&c))
        };
        match self.sent_unless(p, operation, gone) {
            Err(ProviderError::NotSupported(_)) if unsupported_is_absent => Ok(None),
            other => other,
        }
    }

    /// A create by name: "already exists" means the name is taken by something not ours
    /// (we looked by our tags first), so it is never adopted.
    fn created(
        self,
        p: &AwsProvider,
        operation: &'static str,
        what: &str,
    ) -> Result<T, ProviderError> {
        self.sent_unless(p, operation, AwsError::is_already_exists)?
            .ok_or_else(|| {
                ProviderError::Fatal(format!("{what} exists and is not owned by this deployment"))
            })
    }
}

impl<T, E> Sent<T> for Result<T, SdkError<E, HttpResponse>>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    fn sent(self, p: &AwsProvider, operation: &'static str) -> Result<T, ProviderError> {
        self.map_err(|e| p.err(AwsError::from_sdk(operation, e)))
    }

    fn sent_unless(
        self,
        p: &AwsProvider,
        operation: &'static str,
        done: impl Fn(&AwsError) -> bool,
    ) -> Result<Option<T>, ProviderError> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                let e = AwsError::from_sdk(operation, e);
                if done(&e) { Ok(None) } else { Err(p.err(e)) }
            }
        }
    }
}
