//! `qhub-core`: the heart of qhub-rs.
//!
//! - [`config`]: the `qhub-config.yaml` model (every key of QHub 0.4.x), loading with source
//!   positions, validation that reports every problem at once, `qhub init` defaults, `qhub
//!   upgrade` migrations, and the JSON Schema.
//!
//! Coming next (see the roadmap in DESIGN.md): the `Provider` trait and registry, the plan/apply
//! engine, the shared Kubernetes deployment layer and the built-in sandbox.

pub mod config;
pub mod fs;

pub use config::{Config, ConfigError, Loaded, load_file, load_str};
