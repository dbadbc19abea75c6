//! The JWKS as Gatehouse uses it: verification keys by `kid`.

use std::collections::HashMap;

use jsonwebtoken::jwk::{JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

pub struct VerificationKey {
    pub key: DecodingKey,
    /// The algorithm the JWK pins, if it pins one.
    pub algorithm: Option<Algorithm>,
}

/// Keys usable for signatures, by `kid`. Symmetric (`oct`) keys, keys for
/// encryption, and keys without an id are skipped: a JWKS is public, so a
/// symmetric key in it would let anyone mint tokens.
pub fn from_jwks(set: &JwkSet) -> HashMap<String, VerificationKey> {
    let mut out = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = &jwk.common.key_id else {
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            tracing::warn!(kid, "JWKS key skipped: unsupported or malformed");
            continue;
        };
        if key.family() == jsonwebtoken::AlgorithmFamily::Hmac {
            tracing::warn!(kid, "JWKS key skipped: symmetric keys are never trusted");
            continue;
        }
        let algorithm = jwk
            .common
            .key_algorithm
            .and_then(|a| Algorithm::try_from(a).ok());
        out.insert(kid.clone(), VerificationKey { key, algorithm });
    }
    out
}

pub async fn fetch(http: &reqwest::Client, url: &str) -> Result<JwkSet, String> {
    http.get(url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("JWKS {url}: {e}"))?
        .json()
        .await
        .map_err(|e| format!("JWKS {url}: {e}"))
}
