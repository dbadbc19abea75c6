//! OIDC token verification: several issuers, each with discovery or a
//! static key set, a JWKS cache keyed by `kid`, and the checks a bearer
//! token must pass before it names an identity.
//!
//! The `openidconnect` crate from the design card targets relying-party
//! login flows (nonce, ID-token audience rules, redirects); Gatehouse
//! verifies access tokens that machines present, so it uses the same
//! building blocks directly: discovery over HTTPS, a JWKS, `jsonwebtoken`
//! for signatures and registered claims.
//!
//! Layout: `verifier` the set of issuers and the match by `iss`; `issuer`
//! one issuer's key cache and token checks; `discovery` the discovery
//! document; `keys` key sets from a URL or a file; `http` bounded fetches
//! without redirects.

use std::collections::HashSet;

use gatehouse_actors::auth::TokenError;
use jsonwebtoken::Algorithm;
use jsonwebtoken::errors::ErrorKind;

mod discovery;
mod http;
mod issuer;
mod keys;
mod verifier;

pub use http::chain as error_chain;
pub use issuer::{Issuer, IssuerSettings, KeySource};
pub use verifier::{MAX_TOKEN_BYTES, OidcVerifier, REFRESH_PERIOD, unverified_issuer};

/// Algorithms an operator may allow. Symmetric ones are absent on purpose:
/// an HMAC "key" made from a public key is the classic JWT forgery.
pub const ALLOWED_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// Whether `path` is a usable static key set (`jwks_file`).
pub fn check_jwks_file(path: &std::path::Path) -> Result<(), String> {
    keys::read_file(path).map(|_| ())
}

/// Whether two issuer identifiers name the same issuer: equal but for a
/// trailing slash, which providers write inconsistently.
pub fn same_issuer(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Everything an issuer decides from a token's header, before any key or
/// signature: the algorithm must be one the issuer allows (a refused one,
/// `none` or `HS256` included, is named before the JWT library, which knows
/// only the algorithms it implements, would call the token malformed), and
/// the header must name its key. Returns the header and its `kid`. Pure, so
/// the fuzz target `oidc_header` can drive it with any text.
pub fn check_header(
    token: &str,
    allowed: &HashSet<Algorithm>,
) -> Result<(jsonwebtoken::Header, String), TokenError> {
    if let Some(alg) = header_alg(token)
        && alg
            .parse::<Algorithm>()
            .map_or(true, |a| !allowed.contains(&a))
    {
        return Err(TokenError::Algorithm(alg));
    }
    let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
        ErrorKind::InvalidAlgorithmName | ErrorKind::UnsupportedAlgorithm => {
            TokenError::Algorithm("in the header".into())
        }
        _ => TokenError::Malformed("not a signed JWT".into()),
    })?;
    if !allowed.contains(&header.alg) {
        return Err(TokenError::Algorithm(format!("{:?}", header.alg)));
    }
    let kid = header
        .kid
        .clone()
        .ok_or_else(|| TokenError::Malformed("no key id (kid) in the header".into()))?;
    Ok((header, kid))
}

/// The `alg` a token's header claims, if the header is readable JSON.
/// Bounded so an absurd header cannot cost much: the whole token is at most
/// [`MAX_TOKEN_BYTES`].
pub fn header_alg(token: &str) -> Option<String> {
    use base64::Engine;
    let segment = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment.trim_end_matches('='))
        .ok()?;
    let header: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let alg = header.get("alg")?.as_str()?;
    Some(
        alg.chars()
            .filter(char::is_ascii_alphanumeric)
            .take(32)
            .collect(),
    )
}
