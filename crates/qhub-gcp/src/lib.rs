//! `qhub-gcp`: the Google Cloud provider (GKE through google-cloud-container-v1).
//!
//! Not built yet: this crate will implement `qhub-core`'s `Provider` trait for
//! `provider: gcp`, tested against the GKE emulator in `tests/`.

/// The provider name this crate serves (`provider: gcp` in qhub-config.yaml).
pub const PROVIDER: &str = "gcp";
