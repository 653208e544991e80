//! The two halves of an idempotent apply: create-or-adopt and delete-if-found.
//!
//! A create may have been carried out by an earlier attempt whose answer was lost, or by an
//! interrupted run; a delete may find the resource gone already. Both are success.

use std::future::Future;

use crate::provider::ProviderError;

/// Finds the resource by its ownership marks (`find`); creates it when it is not there
/// (`create`). A create refused with [`ProviderError::AlreadyExists`] looks again: if the
/// resource is now found (a racing or lost create) it is adopted; if it is still not found by
/// our marks, the name is taken by something that is not ours, and that is an error naming
/// `what`, never an adoption.
pub async fn adopt_or_create<T, F, FFut, C, CFut>(
    what: &str,
    mut find: F,
    create: C,
) -> Result<T, ProviderError>
where
    F: FnMut() -> FFut,
    FFut: Future<Output = Result<Option<T>, ProviderError>>,
    C: FnOnce() -> CFut,
    CFut: Future<Output = Result<T, ProviderError>>,
{
    if let Some(found) = find().await? {
        tracing::debug!(what, "found; adopting");
        return Ok(found);
    }
    match create().await {
        Ok(v) => Ok(v),
        Err(ProviderError::AlreadyExists(why)) => match find().await? {
            Some(found) => Ok(found),
            None => Err(ProviderError::Fatal(format!(
                "{what} exists and is not owned by this deployment ({why})"
            ))),
        },
        Err(e) => Err(e),
    }
}

/// Runs a delete; "not found" means it is gone already, which is what was wanted.
pub async fn delete_if_found<F, Fut>(what: &str, delete: F) -> Result<bool, ProviderError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(), ProviderError>>,
{
    match delete().await {
        Ok(()) => Ok(true),
        Err(ProviderError::NotFound(_)) => {
            tracing::debug!(what, "already gone");
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn adopts_what_a_lost_create_made_and_refuses_what_is_not_ours() {
        // Found at once: no create.
        let creates = AtomicU32::new(0);
        let v = adopt_or_create(
            "vpc",
            || async { Ok(Some(1)) },
            || async {
                creates.fetch_add(1, Ordering::SeqCst);
                Ok(2)
            },
        )
        .await
        .unwrap();
        assert_eq!((v, creates.load(Ordering::SeqCst)), (1, 0));
        // Not found, the create says it exists, found on the second look: adopted.
        let looks = AtomicU32::new(0);
        let v = adopt_or_create(
            "cluster",
            || async { Ok((looks.fetch_add(1, Ordering::SeqCst) > 0).then_some(7)) },
            || async { Err(ProviderError::AlreadyExists("409".into())) },
        )
        .await
        .unwrap();
        assert_eq!(v, 7);
        // Still not ours: an error, not an adoption.
        let e = adopt_or_create::<u32, _, _, _, _>(
            "cluster demo",
            || async { Ok(None) },
            || async { Err(ProviderError::AlreadyExists("409".into())) },
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("not owned"), "{e}");
    }

    #[tokio::test]
    async fn a_delete_of_what_is_gone_is_done() {
        assert!(
            !delete_if_found("x", || async { Err(ProviderError::NotFound("x".into())) })
                .await
                .unwrap()
        );
        assert!(delete_if_found("x", || async { Ok(()) }).await.unwrap());
        assert!(
            delete_if_found("x", || async { Err(ProviderError::Fatal("no".into())) })
                .await
                .is_err()
        );
    }
}
