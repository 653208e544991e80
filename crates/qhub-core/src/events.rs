//! Events the engine emits while it works; the CLI turns them into progress bars, lines or JSON.
//!
//! The JSON shape of an event ([`Event::to_json`]) is part of the CLI's output contract
//! (`docs/output.md`): a `schema_version`, an RFC 3339 `time`, the `event` kind, the `stage`
//! (`null` for what concerns the whole run: the start, a cancellation, the deploy lock) and
//! durations in seconds, in fields named `*_secs`.

use std::time::Duration;

use serde::Serialize;

use crate::plan::{Action, ResourceId, Stage};

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
        #[serde(rename = "expected_secs", with = "secs")]
        expected: Duration,
    },
    /// A change failed with a retryable error and will be tried again.
    Retrying {
        /// Stage.
        stage: Stage,
        /// Resource.
        resource: ResourceId,
        /// The attempt that failed (from 1).
        attempt: u32,
        /// The wait before the next attempt.
        #[serde(rename = "delay_secs", with = "secs")]
        delay: Duration,
        /// The error.
        error: String,
    },
    /// A change (or a wait) is waiting on the cloud; `detail` says for what.
    Waiting {
        /// Stage; `None` for a wait of the whole run (the deploy lock).
        stage: Option<Stage>,
        /// Resource.
        resource: ResourceId,
        /// What it waits for (`EKS cluster CREATING`).
        detail: String,
    },
    /// A change finished.
    Done {
        /// Stage.
        stage: Stage,
        /// Resource.
        resource: ResourceId,
        /// Action.
        action: Action,
        /// How long it took.
        #[serde(rename = "elapsed_secs", with = "secs")]
        elapsed: Duration,
    },
    /// A change failed for good.
    Failed {
        /// Stage; `None` for what fails the whole run (the deploy lock lost).
        stage: Option<Stage>,
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

/// Durations in the output contract: seconds, as a number (milliseconds kept).
pub(crate) mod secs {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64((d.as_millis() as f64) / 1000.0)
    }
}

/// The version of the JSON shapes the CLI prints (documents on stdout, event lines on
/// stderr); raised when a field is removed or changes meaning, not when one is added.
pub const SCHEMA_VERSION: u32 = 1;

/// Now, as RFC 3339 in UTC with millisecond precision (`2026-12-06T22:54:50.123Z`).
pub fn now_rfc3339() -> String {
    let now = k8s_openapi::jiff::Timestamp::now();
    format!("{:.3}", now)
}

impl Event {
    /// The stage the event belongs to; `None` for what concerns the whole run.
    pub fn stage(&self) -> Option<Stage> {
        match self {
            Event::Started { stage, .. }
            | Event::Retrying { stage, .. }
            | Event::Done { stage, .. } => Some(*stage),
            Event::Waiting { stage, .. } | Event::Failed { stage, .. } => *stage,
            Event::ApplyStarted { .. } | Event::Cancelling { .. } => None,
        }
    }

    /// The event as one line of the output contract: `schema_version`, `time` (now, RFC 3339),
    /// `event`, `stage` (always present, `null` for the whole run) and the event's fields.
    pub fn to_json(&self) -> serde_json::Value {
        let mut doc = serde_json::Map::new();
        doc.insert("schema_version".into(), SCHEMA_VERSION.into());
        doc.insert("time".into(), now_rfc3339().into());
        if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(self) {
            doc.extend(fields);
        }
        doc.entry("stage").or_insert(serde_json::Value::Null);
        serde_json::Value::Object(doc)
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
                Event::Waiting {
                    resource, detail, ..
                } if resource.kind == kind => Some(detail),
                _ => None,
            })
            .collect()
    }
}
