//! The errors of the Keycloak admin client, and how the engine classifies them.

use std::time::Duration;

use crate::provider::ProviderError;

/// Errors talking to Keycloak's admin REST API. No variant ever carries a token, a password or a
/// client secret: messages name the object and quote Keycloak's own `errorMessage`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KeycloakError {
    /// The client cannot be built as asked (a malformed URL, plain HTTP to a remote host).
    #[error("Keycloak client setup: {0}")]
    Setup(String),
    /// The request did not get an answer (connection refused, reset, timed out).
    #[error("Keycloak request {what} failed: {message}")]
    Transport {
        /// The call, e.g. `GET client jupyterhub`.
        what: String,
        /// What the HTTP stack said (never a header).
        message: String,
    },
    /// Keycloak answered with an error status.
    #[error("Keycloak {what}: HTTP {status}: {message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The call and the object, e.g. `create client jupyterhub`.
        what: String,
        /// Keycloak's `errorMessage` / `error_description` / `error`, or the status text.
        message: String,
        /// The `Retry-After` Keycloak (or its proxy) sent, if any.
        retry_after: Option<Duration>,
    },
    /// The admin login was refused, or a call was still refused after a fresh token.
    #[error("Keycloak refused the admin credentials for {what}: {message}")]
    Unauthorized {
        /// The call.
        what: String,
        /// Keycloak's message.
        message: String,
    },
    /// An answer could not be decoded.
    #[error("Keycloak {what}: unexpected answer: {message}")]
    Decode {
        /// The call.
        what: String,
        /// What was wrong with it.
        message: String,
    },
    /// A secret a change needs is not known to this [`super::Keycloak`] (it was planned with
    /// other secrets).
    #[error("the secret for {0} is not known here: plan again with the same secrets")]
    MissingSecret(String),
    /// The change is one this client does not make.
    #[error("not supported yet: {0}")]
    NotSupported(String),
    /// A call kept failing until its retry budget ran out (the message says which and for how
    /// long); no outer loop retries it again.
    #[error("{0}")]
    GaveUp(String),
}

impl crate::retry::RetryableError for KeycloakError {
    fn retry_class(&self) -> Option<crate::provider::RetryClass> {
        use crate::provider::RetryClass;
        match self {
            // 429, and 503 (Keycloak, or the proxy in front of it, refused the call before
            // doing anything): safe to send again, even a create.
            Self::Api {
                status: 429 | 503, ..
            } => Some(RetryClass::Throttled),
            Self::Api {
                status: 500 | 502 | 504,
                ..
            }
            | Self::Transport { .. } => Some(RetryClass::Transient),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    fn gave_up(self, note: &str) -> Self {
        Self::GaveUp(format!("{self}; {note}"))
    }
}

impl KeycloakError {
    /// The HTTP status, when Keycloak answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            Self::Unauthorized { .. } => Some(401),
            _ => None,
        }
    }

    /// True for a 404.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// True for a 409 (a duplicate clientId, group name or alias).
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409)
    }

    /// True when the same call may succeed later (429, 5xx, no answer).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Api { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

impl From<KeycloakError> for ProviderError {
    fn from(e: KeycloakError) -> Self {
        let message = e.to_string();
        match e {
            KeycloakError::Api {
                status: 404, what, ..
            } => ProviderError::NotFound(what),
            KeycloakError::Api {
                status: 409, what, ..
            } => ProviderError::AlreadyExists(what),
            KeycloakError::Api {
                status: 429,
                retry_after,
                ..
            } => ProviderError::throttled(message, retry_after),
            KeycloakError::Api {
                status,
                retry_after,
                ..
            } if status >= 500 => ProviderError::Retryable {
                message,
                retry_after,
            },
            KeycloakError::Transport { .. } => ProviderError::retryable(message),
            KeycloakError::Unauthorized { .. } => ProviderError::Unauthorized(message),
            KeycloakError::NotSupported(what) => ProviderError::NotSupported(what),
            KeycloakError::Api { .. }
            | KeycloakError::Setup(_)
            | KeycloakError::Decode { .. }
            | KeycloakError::MissingSecret(_)
            | KeycloakError::GaveUp(_) => ProviderError::Fatal(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16) -> KeycloakError {
        KeycloakError::Api {
            status,
            what: "create client jupyterhub".into(),
            message: "Client jupyterhub already exists".into(),
            retry_after: Some(Duration::from_secs(3)),
        }
    }

    #[test]
    fn keycloak_errors_map_to_provider_classes() {
        assert!(matches!(
            ProviderError::from(api(404)),
            ProviderError::NotFound(w) if w == "create client jupyterhub"
        ));
        assert!(matches!(
            ProviderError::from(api(409)),
            ProviderError::AlreadyExists(_)
        ));
        let throttled = ProviderError::from(api(429));
        assert!(matches!(throttled, ProviderError::Throttled { .. }));
        assert_eq!(throttled.retry_after(), Some(Duration::from_secs(3)));
        let unavailable = ProviderError::from(api(503));
        assert!(unavailable.is_retryable(), "{unavailable}");
        assert!(matches!(unavailable, ProviderError::Retryable { .. }));
        let transport = ProviderError::from(KeycloakError::Transport {
            what: "GET realm qhub".into(),
            message: "connection refused".into(),
        });
        assert!(transport.is_retryable());
        let fatal = ProviderError::from(api(400));
        assert!(matches!(&fatal, ProviderError::Fatal(m)
            if m.contains("create client jupyterhub") && m.contains("already exists")));
        assert!(!fatal.is_retryable());
        assert!(matches!(
            ProviderError::from(KeycloakError::Unauthorized {
                what: "admin login".into(),
                message: "Invalid user credentials".into()
            }),
            ProviderError::Unauthorized(_)
        ));
    }
}
