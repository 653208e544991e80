//! `qhub-core`: the heart of qhub-rs.
//!
//! - [`config`]: the `qhub-config.yaml` model (every key of QHub 0.4.x), loading with source
//!   positions, validation that reports every problem at once, `qhub init` defaults, `qhub
//!   upgrade` migrations, and the JSON Schema.
//!
//! - [`provider`]: the `Provider` trait every cloud implements, and the registry.
//! - [`engine`]: the plan model and the plan/apply engine (no state file).
//! - [`retry`], [`error`] and [`events`]: the retry policy, the error it classes and the progress
//!   events, shared by the engine, the provider contract and the REST clients; they import
//!   nothing of the engine, the provider contract or the cloud toolkit.
//! - `conformance` (cargo feature `conformance`): the provider conformance suite, with the
//!   in-memory deploy-lock store. The built-in simulated cloud (the sandbox) is its own crate,
//!   `qhub-sandbox`.
//!
//! - [`keycloak`]: Keycloak's realm, groups, identity provider and clients as planned
//!   resources, applied through its admin REST API.
//! - [`kubernetes`]: the shared Kubernetes deployment layer (server-side apply, ApplySet
//!   pruning, readiness) and the platform components.

mod builtin;
pub mod cicd;
pub mod cloud;
pub mod conda_store;
pub mod config;
// The suite drives the engine, so it lives beside it; behind a feature so that an embedder's
// build carries no test harness.
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod cost;
pub mod dns;
pub mod engine;
pub mod error;
pub mod events;
pub mod existing;
pub mod fs;
pub mod keycloak;
pub mod kubernetes;
pub mod plan;
pub mod provider;
pub mod retry;
pub mod support;
pub mod tls;

pub use config::{Config, ConfigError, Loaded, load_file, load_str};
