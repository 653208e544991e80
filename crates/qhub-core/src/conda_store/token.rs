//! The API token qhub sends to conda-store: a JWT signed with the server's own secret.
//!
//! conda-store's `AuthenticationBackend` (conda-incubator/conda-store 2025.2.2,
//! `conda_store_server/server/auth.py`) signs its tokens with `AuthenticationBackend.secret`,
//! HS256 by default (`jwt_algorithm`), and accepts any token it can verify
//! (`authenticate` → `decrypt_token`), sent as `Authorization: Bearer` (`authenticate_request`).
//! The component sets that secret from the generated Secret `conda-store` (key
//! `token-secret`), so qhub mints a short-lived token itself, with the claims of
//! `server/schema.py` `AuthenticationToken` (`exp`, `primary_namespace`, `role_bindings`): admin
//! of the config's namespace and nothing else. No admin token is stored anywhere, and the token
//! cannot touch a user's namespace.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use sha2::{Digest, Sha256};

/// HMAC-SHA256 (RFC 2104) of `message` under `key`.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// A token for conda-store, signed with `secret`, that expires at `exp` (seconds since the
/// epoch) and makes its bearer admin of `namespace` (`{namespace}/*`).
pub fn mint(secret: &str, namespace: &str, exp: u64) -> String {
    let header = json!({"alg": "HS256", "typ": "JWT"});
    let claims = json!({
        "exp": exp,
        "primary_namespace": namespace,
        "role_bindings": {format!("{namespace}/*"): ["admin"]},
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = hmac_sha256(secret.as_bytes(), signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// The claims of `token` when it is signed with `secret` (an HS256 JWT), else `None`. What a
/// conda-store emulator checks.
pub fn verify(secret: &str, token: &str) -> Option<serde_json::Value> {
    let (signing_input, signature) = token.rsplit_once('.')?;
    let (header, claims) = signing_input.split_once('.')?;
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
    if header["alg"] != "HS256" {
        return None;
    }
    let expected = hmac_sha256(secret.as_bytes(), signing_input.as_bytes());
    if URL_SAFE_NO_PAD.decode(signature).ok()? != expected {
        return None;
    }
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_test_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_minted_token_verifies_with_its_secret_only() {
        let token = mint("s3cret", "nebari-git", 2_000_000_000);
        let claims = verify("s3cret", &token).expect("verifies");
        assert_eq!(claims["role_bindings"]["nebari-git/*"][0], "admin");
        assert_eq!(claims["exp"], 2_000_000_000u64);
        assert!(verify("other", &token).is_none());
    }
}
