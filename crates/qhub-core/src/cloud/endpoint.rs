//! Endpoints: anonymous credentials are allowed only for an endpoint on this machine (an
//! emulator), never for a cloud (DESIGN.md §1).

use crate::provider::ProviderError;

/// True when `endpoint`'s host is a loopback address (`localhost`, 127.0.0.0/8, `::1`).
pub fn is_loopback(endpoint: &str) -> bool {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Allows running without credentials only against a loopback `endpoint`; otherwise the error
/// says where credentials come from (`how`).
pub fn check_anonymous(endpoint: Option<&str>, how: &str) -> Result<(), ProviderError> {
    match endpoint {
        Some(e) if is_loopback(e) => {
            tracing::warn!(endpoint = %e, "no credentials found; using anonymous credentials for the loopback endpoint");
            Ok(())
        }
        Some(e) => Err(ProviderError::Unauthorized(format!(
            "no credentials found, and anonymous access is allowed only for a loopback endpoint, not {e}; {how}"
        ))),
        None => Err(ProviderError::Unauthorized(format!(
            "no credentials found; {how}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_endpoints_are_recognised() {
        assert!(is_loopback("http://127.0.0.1:5000"));
        assert!(is_loopback("http://localhost:4566/"));
        assert!(is_loopback("http://[::1]:5000"));
        assert!(!is_loopback("https://ec2.us-west-2.amazonaws.com"));
        assert!(!is_loopback("http://10.0.0.1:5000"));
        assert!(!is_loopback("http://127.0.0.1.example.com:80"));
        assert!(!is_loopback("http://127.0.0.1@evil.example.com/"));
        assert!(check_anonymous(Some("http://127.0.0.1:1"), "x").is_ok());
        let e = check_anonymous(
            Some("https://api.digitalocean.com"),
            "set DIGITALOCEAN_TOKEN",
        )
        .unwrap_err();
        assert!(e.to_string().contains("DIGITALOCEAN_TOKEN"), "{e}");
    }
}
