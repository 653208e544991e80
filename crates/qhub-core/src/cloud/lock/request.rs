//! What the engine asks for when it takes the deploy lock ([`LockRequest`]), cloud-side
//! ([`super::acquire`]) or local ([`crate::provider::local_lock`]).

use std::sync::Arc;
use std::time::Duration;

use crate::events::{EventSink, NoEvents};
use crate::kubernetes::lease::LeaseTiming;
use crate::retry::RetryPolicy;

/// What the engine asks for when it takes the deploy lock
/// ([`crate::provider::take_deploy_lock`]): who takes the lock, for what, how long
/// to wait for another holder, and where to report the wait.
#[derive(Clone)]
pub struct LockRequest {
    /// The holder's identity (default [`crate::kubernetes::lease::holder_identity`]); two
    /// runs must never share one.
    pub holder: String,
    /// The command taking it (`deploy`, `destroy`); a destroy lets the provider remove the
    /// lock's store once it is empty.
    pub command: String,
    /// How long to wait while another run holds the lock; zero fails at once.
    pub wait: Duration,
    /// The lease's duration, renewal interval and when it counts as lost (the Kubernetes
    /// stage's Lease timing).
    pub timing: LeaseTiming,
    /// Retries of failed lock calls.
    pub retry: RetryPolicy,
    /// Where the wait is reported ([`crate::events::Event::Waiting`]).
    pub events: Arc<dyn EventSink>,
}

impl std::fmt::Debug for LockRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockRequest")
            .field("holder", &self.holder)
            .field("command", &self.command)
            .field("wait", &self.wait)
            .field("timing", &self.timing)
            .finish_non_exhaustive()
    }
}

impl LockRequest {
    /// A request for `command` by this run, failing at once when the lock is held, with the
    /// default timing and retries and no events.
    pub fn new(command: impl Into<String>) -> Self {
        Self {
            holder: crate::kubernetes::lease::holder_identity(),
            command: command.into(),
            wait: Duration::ZERO,
            timing: LeaseTiming::default(),
            retry: RetryPolicy::default(),
            events: Arc::new(NoEvents),
        }
    }
}
