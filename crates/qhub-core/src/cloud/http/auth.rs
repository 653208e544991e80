//! How a [`super::RestClient`] authenticates: bearer tokens from a [`TokenSource`] (which may
//! refresh a token the server refused), request [`Signer`]s, or credentials the request
//! carries itself. None of them shows a secret in `Debug`.

use std::sync::Arc;

use async_trait::async_trait;

/// A bearer token as a [`TokenSource`] hands it out. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token itself, for the `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

/// Why a [`TokenSource`] handed out no token.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TokenError {
    /// What went wrong, in the source's words.
    pub message: String,
    /// True when asking again may succeed (a token endpoint that did not answer), false when
    /// the credentials themselves are refused.
    pub transient: bool,
}

/// Where bearer tokens come from: asked before every request, so a source that refreshes its
/// token (Google's application default credentials) does so when it must.
///
/// A source that can fetch a new token on demand (a password or client-credentials grant)
/// says so with [`Self::refreshes`]: when the server answers 401 to one of its tokens (revoked,
/// or expired in flight), the client asks [`Self::refresh`] once and sends the request once
/// more; a second 401 goes back to the caller, and a failed refresh is
/// [`super::HttpError::TokenRefresh`].
#[async_trait]
pub trait TokenSource: Send + Sync {
    /// A token for the next request.
    async fn token(&self) -> Result<BearerToken, TokenError>;

    /// Whether a 401 is worth one more attempt with a [`Self::refresh`]ed token (false, the
    /// default: a fixed token would be refused again).
    fn refreshes(&self) -> bool {
        false
    }

    /// A fresh token after the server refused `rejected`. A source shared by concurrent
    /// requests hands out a token another request already fetched when it is not `rejected`,
    /// so that one expiry costs one new token, not one per request in flight. The default
    /// asks [`Self::token`] again.
    async fn refresh(&self, rejected: &BearerToken) -> Result<BearerToken, TokenError> {
        let _ = rejected;
        self.token().await
    }
}

#[async_trait]
impl TokenSource for BearerToken {
    async fn token(&self) -> Result<BearerToken, TokenError> {
        Ok(self.clone())
    }
}

/// Signs a request (AWS Signature Version 4 for S3-compatible stores): given what is sent, the
/// headers to add.
pub trait Signer: Send + Sync {
    /// The headers that authenticate a `method` request of `url` with `headers` and `body`.
    fn sign(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Vec<(String, String)>, String>;
}

/// How a [`super::RestClient`] authenticates its requests.
#[derive(Clone)]
#[non_exhaustive]
pub enum Auth {
    /// No credentials: allowed for a loopback endpoint only.
    Anonymous,
    /// `Authorization: Bearer …` from a token source.
    Bearer(Arc<dyn TokenSource>),
    /// Headers from a request signer.
    Signed(Arc<dyn Signer>),
    /// The requests carry their credentials themselves (an OAuth token endpoint's form with a
    /// password or client secret): nothing is added, but unlike [`Auth::Anonymous`] a remote
    /// `https` endpoint is allowed (plain HTTP still only on loopback).
    InBody,
}

impl std::fmt::Debug for Auth {
    // The credentials stay out of logs: only which kind there is.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::Anonymous => "Anonymous",
            Auth::Bearer(_) => "Bearer(<redacted>)",
            Auth::Signed(_) => "Signed(<redacted>)",
            Auth::InBody => "InBody(<redacted>)",
        })
    }
}
