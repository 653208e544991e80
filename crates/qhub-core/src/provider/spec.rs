//! Typed specs: a provider writes its resources' specs and payloads from its own structs and
//! reads them back typed in apply, so no field is looked up by name with a default (an
//! instance type read as `""` from a plan made by another version).

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value as Json;

use super::ProviderError;
use crate::plan::ResourceId;

/// A spec or payload that does not read back as its type (or cannot be written as JSON):
/// which resource, what of it, the type expected, and serde's error.
#[derive(Debug, thiserror::Error)]
#[error("{id}: its {what} does not read as {ty}")]
#[non_exhaustive]
pub struct SpecError {
    /// The resource.
    pub id: ResourceId,
    /// What of it: `spec`, `payload`, `observed spec`.
    pub what: &'static str,
    /// The type expected (its last path segment).
    pub ty: &'static str,
    /// serde's error.
    #[source]
    pub source: serde_json::Error,
}

fn type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

/// Reads `value`, the `what` of resource `id`, as `T`; fatal, naming the resource, when it
/// does not parse.
pub fn read<T: DeserializeOwned>(
    id: &ResourceId,
    what: &'static str,
    value: &Json,
) -> Result<T, ProviderError> {
    T::deserialize(value).map_err(|source| {
        ProviderError::other(SpecError {
            id: id.clone(),
            what,
            ty: type_name::<T>(),
            source,
        })
    })
}

/// Writes `value`, the `what` of resource `id`, as the plan's JSON.
pub fn write<T: Serialize>(
    id: &ResourceId,
    what: &'static str,
    value: &T,
) -> Result<Json, ProviderError> {
    serde_json::to_value(value).map_err(|source| {
        ProviderError::other(SpecError {
            id: id.clone(),
            what,
            ty: type_name::<T>(),
            source,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Pool {
        size: String,
    }

    #[test]
    fn a_spec_reads_back_or_names_its_resource_and_keeps_the_cause() {
        let id = ResourceId::new("node_pool", "demo-dev-user");
        let pool = Pool {
            size: "s-2vcpu-4gb".into(),
        };
        let json = write(&id, "spec", &pool).unwrap();
        assert_eq!(read::<Pool>(&id, "spec", &json).unwrap(), pool);
        let e = read::<Pool>(&id, "spec", &serde_json::json!({})).unwrap_err();
        assert!(e.to_string().contains("demo-dev-user"), "{e}");
        assert!(e.to_string().contains("Pool"), "{e}");
        let cause = std::error::Error::source(&e).expect("serde's error is kept");
        assert!(cause.to_string().contains("size"), "{cause}");
    }
}
