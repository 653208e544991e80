//! A failed request of the in-memory API and the `Status` document it is sent as (Kubernetes
//! API conventions, "Response Status Kind"). Its own module so that the request handlers
//! ([`super::ops`]) and the admission chain ([`super::admission`]) both use it without importing
//! each other.

use serde_json::{Value, json};

use super::discovery::ResType;

/// A failed request, sent as a `Status`.
#[derive(Debug, Clone)]
pub(crate) struct ApiErr {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiErr {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(422, "Invalid", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "NotFound", message)
    }

    pub(super) fn object_not_found(rt: &ResType, name: &str) -> Self {
        Self {
            details: Some(json!({"name": name, "group": rt.group, "kind": rt.plural})),
            ..Self::not_found(format!("{} \"{name}\" not found", rt.qualified()))
        }
    }

    pub(super) fn modified(rt: &ResType, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                rt.qualified()
            ),
        )
    }

    /// The `Status` document.
    pub fn to_status(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let (Some(d), Some(m)) = (&self.details, v.as_object_mut()) {
            m.insert("details".into(), d.clone());
        }
        v
    }
}
