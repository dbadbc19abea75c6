//! The JWKS as Gatehouse uses it: verification keys by `kid`, from an
//! issuer's `jwks_uri` or from a static file.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use jsonwebtoken::jwk::{JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// Largest `jwks_file` read; real key sets are a few KiB.
const MAX_JWKS_FILE_BYTES: u64 = 1 << 20;

pub struct VerificationKey {
    pub key: DecodingKey,
    /// The algorithm the JWK pins, if it pins one.
    pub algorithm: Option<Algorithm>,
}

pub type KeyMap = HashMap<String, Arc<VerificationKey>>;

/// Keys usable for signatures, by `kid`. Symmetric (`oct`) keys, keys for
/// encryption, and keys without an id are skipped: a JWKS is public, so a
/// symmetric key in it would let anyone mint tokens.
pub fn from_jwks(set: &JwkSet) -> KeyMap {
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
        out.insert(kid.clone(), Arc::new(VerificationKey { key, algorithm }));
    }
    out
}

pub async fn fetch(http: &reqwest::Client, url: &str) -> Result<KeyMap, String> {
    let set: JwkSet = super::http::get_json(http, url, "JWKS").await?;
    Ok(from_jwks(&set))
}

/// A static key set (`jwks_file`): at least one usable key, or an error
/// that says why not.
pub fn read_file(path: &Path) -> Result<KeyMap, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut text = Vec::new();
    file.take(MAX_JWKS_FILE_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if text.len() as u64 > MAX_JWKS_FILE_BYTES {
        return Err(format!(
            "{} is larger than {MAX_JWKS_FILE_BYTES} bytes",
            path.display()
        ));
    }
    let set: JwkSet = serde_json::from_slice(&text).map_err(|e| {
        format!(
            "{} is not a JWKS ({{\"keys\": [...]}}): {e}",
            path.display()
        )
    })?;
    let keys = from_jwks(&set);
    if keys.is_empty() {
        return Err(format!(
            "{} holds no usable signing key (each needs a kid; symmetric and encryption keys are skipped)",
            path.display()
        ));
    }
    Ok(keys)
}
