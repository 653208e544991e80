//! The `QHUB_*` variables whose values the CLI checks before it runs a command: a value none of
//! them takes is a usage error naming the accepted ones, never silently the default
//! (docs/environment.md lists every variable).

use crate::UsageError;

/// Checks the variables read from `get` (the process environment in [`crate::run`]).
pub fn check(get: impl Fn(&str) -> Option<String>) -> Result<(), UsageError> {
    use qhub_core::cloud::lock::{DEPLOY_LOCK_ENV, DEPLOY_LOCK_VALUES};
    if let Some(v) = get(DEPLOY_LOCK_ENV) {
        let v = v.trim();
        if !v.is_empty() && !DEPLOY_LOCK_VALUES.contains(&v) {
            return Err(UsageError {
                message: format!(
                    "{DEPLOY_LOCK_ENV}={v}: not a value it takes; accepted: `cloud` (the provider's cloud-side lock, the default) or `local` (a lock file beside the config, for one machine)"
                ),
            });
        }
    }
    if let Some(v) = get("QHUB_LOG")
        && let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&v)
    {
        return Err(UsageError {
            message: format!(
                "QHUB_LOG={v}: not a log filter ({e}); accepted: a level (error, warn, info, debug, trace) or target=level pairs, comma-separated (`qhub_core=debug,warn`)"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check;

    fn with(name: &'static str, value: &'static str) -> impl Fn(&str) -> Option<String> {
        move |n| (n == name).then(|| value.to_string())
    }

    #[test]
    fn unknown_values_are_usage_errors_naming_the_accepted_ones() {
        let e = check(with("QHUB_DEPLOY_LOCK", "bogus")).unwrap_err();
        assert!(
            e.message.contains("QHUB_DEPLOY_LOCK=bogus")
                && e.message.contains("`cloud`")
                && e.message.contains("`local`"),
            "{}",
            e.message
        );
        let e = check(with("QHUB_LOG", "qhub_core=loud")).unwrap_err();
        assert!(
            e.message.contains("QHUB_LOG=qhub_core=loud"),
            "{}",
            e.message
        );
        for ok in ["local", "cloud", " local ", ""] {
            check(with("QHUB_DEPLOY_LOCK", ok)).unwrap();
        }
        check(with("QHUB_LOG", "qhub_core=debug,warn")).unwrap();
        check(|_| None).unwrap();
    }
}
