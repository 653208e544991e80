//! Events the engine emits while it works; the CLI turns them into progress bars, lines or JSON.

use std::time::Duration;

use serde::Serialize;

use super::plan::{Action, ResourceId, Stage};

/// Something that happened during an apply.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The engine starts applying a plan.
    ApplyStarted {
        /// Number of changes.
        changes: usize,
    },
    /// A change started.
    Started {
        /// Stage.
        stage: Stage,
        /// Resource.
        resource: ResourceId,
        /// Action.
        action: Action,
        /// The provider's estimate.
        #[serde(with = "millis")]
        expected: Duration,
    },
    /// A change failed with a retryable error and will be tried again.
    Retrying {
        /// Resource.
        resource: ResourceId,
        /// The attempt that failed (from 1).
        attempt: u32,
        /// The wait before the next attempt.
        #[serde(with = "millis")]
        delay: Duration,
        /// The error.
        error: String,
    },
    /// A change (or a wait) is waiting on the cloud; `detail` says for what.
    Waiting {
        /// Resource.
        resource: ResourceId,
        /// What it waits for (`EKS cluster CREATING`).
        detail: String,
    },
    /// A change finished.
    Done {
        /// Resource.
        resource: ResourceId,
        /// Action.
        action: Action,
        /// How long it took.
        #[serde(with = "millis")]
        elapsed: Duration,
    },
    /// A change failed for good.
    Failed {
        /// Resource.
        resource: ResourceId,
        /// Action.
        action: Action,
        /// The error.
        error: String,
    },
    /// Cancellation was requested: no new change starts; changes in flight finish.
    Cancelling {
        /// Changes still in flight.
        in_flight: usize,
    },
}

mod millis {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
}

/// Receives events. Implementations must be cheap: they are called from the engine's tasks.
pub trait EventSink: Send + Sync {
    /// Handles one event.
    fn emit(&self, event: &Event);
}

/// Discards events.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoEvents;

impl EventSink for NoEvents {
    fn emit(&self, _: &Event) {}
}

/// Collects events in memory (for tests and embedding), and lets a task wait for one.
#[derive(Debug, Default)]
pub struct CollectEvents {
    events: std::sync::Mutex<Vec<Event>>,
    changed: tokio::sync::Notify,
}

impl EventSink for CollectEvents {
    fn emit(&self, event: &Event) {
        if let Ok(mut v) = self.events.lock() {
            v.push(event.clone());
        }
        self.changed.notify_waiters();
    }
}

impl CollectEvents {
    /// The events so far, oldest first.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// The first event matching `f`, waiting up to `limit` for it; `None` when none came.
    pub async fn until(&self, limit: Duration, f: impl Fn(&Event) -> bool) -> Option<Event> {
        tokio::time::timeout(limit, async {
            loop {
                // Registered before looking, so an event emitted in between still wakes us.
                let notified = self.changed.notified();
                if let Some(e) = self.events().into_iter().find(|e| f(e)) {
                    return e;
                }
                notified.await;
            }
        })
        .await
        .ok()
    }

    /// The details of the [`Event::Waiting`] events on resources of `kind` (e.g. the deploy
    /// lock's, [`crate::cloud::lock::LOCK_KIND`]).
    pub fn waits_on(&self, kind: &str) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Waiting { resource, detail } if resource.kind == kind => Some(detail),
                _ => None,
            })
            .collect()
    }
}
