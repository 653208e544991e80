//! The admin token as the REST toolkit's [`TokenSource`]: a password grant of `admin-cli` on the
//! `master` realm (Keycloak's own `kcadm.sh config credentials` does the same; Keycloak
//! Server Administration Guide, "Admin CLI", 26.x), fetched again a little before it expires,
//! and once more when a call answers 401 (revoked, or expired in flight).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::{AdminCredentials, SecretString, encode, message_of};
use crate::cloud::http::{
    BearerToken, Body, HttpError, Request, RestClient, TokenError, TokenSource,
};

/// The realm and client the admin token is asked of.
pub(super) const LOGIN: &str = "admin login to realm master (client admin-cli)";

/// The token endpoint's path below the base URL.
const TOKEN_PATH: &str = "/realms/master/protocol/openid-connect/token";

#[derive(Deserialize)]
struct TokenResponse {
    access_token: SecretString,
    #[serde(default)]
    expires_in: Option<u64>,
}

struct Token {
    access: BearerToken,
    /// When to fetch a new one (a little before Keycloak's expiry).
    refresh_at: Instant,
}

/// The admin tokens of one [`super::AdminClient`] and its clones: one cached token, fetched
/// under a lock so concurrent calls share it.
pub(super) struct AdminTokens {
    /// The token endpoint's client: the password travels in the form
    /// ([`crate::cloud::http::Auth::InBody`]).
    login: RestClient,
    credentials: AdminCredentials,
    cached: tokio::sync::Mutex<Option<Token>>,
    logins: AtomicU64,
}

impl AdminTokens {
    /// Tokens for `credentials` from the Keycloak `login` points at.
    pub(super) fn new(login: RestClient, credentials: AdminCredentials) -> Self {
        Self {
            login,
            credentials,
            cached: tokio::sync::Mutex::new(None),
            logins: AtomicU64::new(0),
        }
    }

    /// The user the tokens are for.
    pub(super) fn username(&self) -> &str {
        &self.credentials.username
    }

    /// How many tokens were asked for.
    pub(super) fn logins(&self) -> u64 {
        self.logins.load(Ordering::SeqCst)
    }

    async fn fetch(&self) -> Result<Token, TokenError> {
        let url = self.login.url(TOKEN_PATH);
        let form = format!(
            "grant_type=password&client_id=admin-cli&username={}&password={}",
            encode(&self.credentials.username),
            encode(self.credentials.password.expose())
        );
        let headers = [(
            "content-type",
            "application/x-www-form-urlencoded".to_string(),
        )];
        let mut request = Request::new(
            "POST /realms/master/protocol/openid-connect/token",
            Method::POST,
            &url,
        );
        request.mutating = false;
        request.headers = &headers;
        request.body = Body::Bytes(form.as_bytes());
        self.logins.fetch_add(1, Ordering::SeqCst);
        let started = Instant::now();
        let failed = |transient: bool, message: String| TokenError {
            message: format!("{LOGIN}: {message}"),
            transient,
        };
        let reply = match self.login.send_once(&request).await {
            Ok(reply) => reply,
            Err(e @ (HttpError::Transport { .. } | HttpError::Body { .. })) => {
                return Err(failed(true, e.to_string()));
            }
            Err(e) => return Err(failed(false, e.to_string())),
        };
        let status = reply.status;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::BAD_REQUEST {
            return Err(failed(
                false,
                format!("refused: {}", message_of(&reply.body, status)),
            ));
        }
        if !status.is_success() {
            let transient = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
            return Err(failed(
                transient,
                format!(
                    "HTTP {}: {}",
                    status.as_u16(),
                    message_of(&reply.body, status)
                ),
            ));
        }
        let token: TokenResponse = serde_json::from_slice(&reply.body)
            .map_err(|e| failed(false, format!("unexpected answer: {e}")))?;
        // Keycloak's default admin token lives 60 s; renew a fifth of it early (at most 10 s)
        // so a call never starts with a token that expires in flight.
        let lifetime = Duration::from_secs(token.expires_in.unwrap_or(60));
        let margin = (lifetime / 5).min(Duration::from_secs(10));
        tracing::debug!(
            lifetime_s = lifetime.as_secs(),
            "fetched a Keycloak admin token"
        );
        Ok(Token {
            access: BearerToken::new(token.access_token.expose()),
            refresh_at: started + lifetime.saturating_sub(margin),
        })
    }
}

#[async_trait]
impl TokenSource for AdminTokens {
    async fn token(&self) -> Result<BearerToken, TokenError> {
        let mut slot = self.cached.lock().await;
        if let Some(t) = slot.as_ref().filter(|t| Instant::now() < t.refresh_at) {
            return Ok(t.access.clone());
        }
        let fresh = self.fetch().await?;
        let access = fresh.access.clone();
        *slot = Some(fresh);
        Ok(access)
    }

    fn refreshes(&self) -> bool {
        true
    }

    async fn refresh(&self, rejected: &BearerToken) -> Result<BearerToken, TokenError> {
        let mut slot = self.cached.lock().await;
        // Another call refused the same token first and fetched a new one: use it.
        if let Some(t) = slot
            .as_ref()
            .filter(|t| t.access != *rejected && Instant::now() < t.refresh_at)
        {
            return Ok(t.access.clone());
        }
        *slot = None;
        let fresh = self.fetch().await?;
        let access = fresh.access.clone();
        *slot = Some(fresh);
        Ok(access)
    }
}
