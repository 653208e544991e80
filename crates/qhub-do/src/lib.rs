//! `qhub-do`: the DigitalOcean provider (DOKS through DigitalOcean's REST API v2).
//!
//! Not built yet: this crate will implement `qhub-core`'s `Provider` trait for
//! `provider: do`, tested against the DOKS emulator in `tests/`, checked against DigitalOcean's
//! OpenAPI spec.

/// The provider name this crate serves (`provider: do` in qhub-config.yaml).
pub const PROVIDER: &str = "do";
