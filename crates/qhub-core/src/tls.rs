//! TLS set-up shared by every client we build.

/// Installs ring as the process-wide rustls crypto provider, unless one is installed already.
///
/// kube's TLS uses ring, the AWS SDK's aws-lc-rs; with both compiled into one binary rustls
/// cannot choose a default by itself and panics when a client is built without an explicit
/// provider ("Could not automatically determine the process-level CryptoProvider"). Calling
/// this before building a Kubernetes client from a kubeconfig avoids that. Idempotent.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another thread installing one is fine: a provider is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
