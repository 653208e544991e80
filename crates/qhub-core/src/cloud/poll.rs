//! Waiting for a cloud operation: poll until ready, with a deadline and progress.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::provider::ProviderError;

/// One look at an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll<T> {
    /// Done, with its result.
    Ready(T),
    /// Not yet: what it is waiting for (`cluster PROVISIONING`).
    Pending(String),
}

/// Calls `check` every `interval` until it is [`Poll::Ready`] or fails, for at most `deadline`.
/// Each change of what it waits for is logged once. At the deadline the error names what it
/// waited for, how long, and the last state seen (a fatal error: the engine's own deadline and
/// retries are for the whole change).
pub async fn poll_until<T, F, Fut>(
    what: &str,
    deadline: Duration,
    interval: Duration,
    mut check: F,
) -> Result<T, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Poll<T>, ProviderError>>,
{
    let started = Instant::now();
    let mut last: Option<String> = None;
    loop {
        match check().await? {
            Poll::Ready(v) => return Ok(v),
            Poll::Pending(state) => {
                if last.as_deref() != Some(state.as_str()) {
                    tracing::info!(what, state = %state, "waiting");
                    last = Some(state);
                }
            }
        }
        if started.elapsed() + interval > deadline {
            return Err(ProviderError::Fatal(format!(
                "{what}: not done after {:.0}s (last seen: {})",
                started.elapsed().as_secs_f64(),
                last.unwrap_or_default()
            )));
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn polls_until_ready_and_gives_up_at_the_deadline() {
        let mut n = 0;
        let v = poll_until(
            "op",
            Duration::from_secs(5),
            Duration::from_millis(1),
            || {
                n += 1;
                let n = n;
                async move {
                    Ok(if n < 3 {
                        Poll::Pending("RUNNING".into())
                    } else {
                        Poll::Ready(n)
                    })
                }
            },
        )
        .await
        .unwrap();
        assert_eq!(v, 3);
        let e = poll_until::<(), _, _>(
            "cluster create",
            Duration::from_millis(5),
            Duration::from_millis(2),
            || async { Ok(Poll::Pending("PROVISIONING".into())) },
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("cluster create: not done"), "{e}");
        assert!(e.to_string().contains("PROVISIONING"), "{e}");
    }
}
