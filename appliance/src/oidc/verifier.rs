//! `OidcVerifier`: the appliance's [`TokenVerifier`] over every configured
//! issuer.
//!
//! A token is matched to its issuer by its `iss` claim, read before any
//! signature check and before any key is fetched: a token naming an issuer
//! that is not configured is refused without a network call, and each
//! issuer's tokens are checked only against that issuer's keys.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use gatehouse_actors::auth::{Identity, TokenError, TokenVerifier, VerifyFuture};

use super::issuer::{Issuer, IssuerSettings};

/// Longest token accepted. A JWT is a few KiB even with many groups; this
/// bounds what an unauthenticated peer makes the appliance decode.
pub const MAX_TOKEN_BYTES: usize = 32 << 10;

/// Keys are refetched on this period even when every `kid` is known, so a
/// key the provider withdrew stops verifying.
pub const REFRESH_PERIOD: Duration = Duration::from_secs(15 * 60);

pub struct OidcVerifier {
    issuers: RwLock<Arc<[Arc<Issuer>]>>,
    /// How long a token may wait for a key refresh.
    max_wait: Duration,
}

impl OidcVerifier {
    /// Verifiers for `settings`; `max_wait` bounds how long a token with an
    /// unknown key id waits for the next allowed refresh.
    pub fn new(settings: Vec<IssuerSettings>, max_wait: Duration) -> Result<Self, String> {
        let issuers = settings
            .into_iter()
            .map(|s| Issuer::new(s, max_wait).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(OidcVerifier {
            issuers: RwLock::new(issuers.into()),
            max_wait,
        })
    }

    /// The issuers as they are now.
    pub fn issuers(&self) -> Arc<[Arc<Issuer>]> {
        self.issuers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Swap in a new issuer list (a config reload). Issuers whose settings
    /// did not change keep their key caches; the others start empty.
    /// Returns the issuers that are new, which need a first refresh.
    pub fn replace(&self, settings: Vec<IssuerSettings>) -> Result<Vec<Arc<Issuer>>, String> {
        let old = self.issuers();
        let mut fresh = Vec::new();
        let mut next = Vec::new();
        for s in settings {
            match old.iter().find(|i| *i.settings() == s) {
                Some(kept) => next.push(kept.clone()),
                None => {
                    let issuer = Arc::new(Issuer::new(s, self.max_wait)?);
                    fresh.push(issuer.clone());
                    next.push(issuer);
                }
            }
        }
        *self.issuers.write().unwrap_or_else(|p| p.into_inner()) = next.into();
        Ok(fresh)
    }

    /// The configured issuer a token names, if any. Reads the unverified
    /// payload: nothing is trusted from it but the choice of issuer, whose
    /// own keys then decide.
    pub fn issuer_for(&self, token: &str) -> Result<Arc<Issuer>, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed(format!(
                "longer than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        let iss = unverified_issuer(token)?;
        self.issuers()
            .iter()
            .find(|i| i.serves(&iss))
            .cloned()
            .ok_or(TokenError::WrongIssuer)
    }

    async fn verify_token(&self, token: &str) -> Result<Identity, TokenError> {
        let arrived = Instant::now();
        let issuer = self.issuer_for(token)?;
        issuer.verify(token, arrived).await
    }
}

impl TokenVerifier for OidcVerifier {
    fn verify<'a>(&'a self, token: &'a str) -> VerifyFuture<'a> {
        Box::pin(self.verify_token(token))
    }
}

/// The `iss` of a compact JWS, unverified. A token that is not three
/// base64url segments with a JSON object in the middle is malformed; one
/// whose header names a refused algorithm says so first. Public for the
/// fuzz target `oidc_header`.
pub fn unverified_issuer(token: &str) -> Result<String, TokenError> {
    let malformed = || {
        // `none` and HMAC are refused by every issuer (config allows only
        // asymmetric algorithms): say that rather than "malformed".
        match super::header_alg(token) {
            Some(alg) if !super::ALLOWED_ALGORITHMS.contains(&alg.as_str()) => {
                TokenError::Algorithm(alg)
            }
            _ => TokenError::Malformed("not a signed JWT".into()),
        }
    };
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| malformed())?;
    let claims: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes).map_err(|_| malformed())?;
    match claims.get("iss") {
        Some(serde_json::Value::String(iss)) => Ok(iss.clone()),
        Some(_) => Err(TokenError::Malformed("iss is not a string".into())),
        None => Err(TokenError::Malformed("missing claim iss".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(json: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    #[test]
    fn the_issuer_is_read_before_anything_is_verified() {
        let token = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"RS256","kid":"k"}"#),
            b64(r#"{"iss":"https://idp.example.com","sub":"a"}"#)
        );
        assert_eq!(
            unverified_issuer(&token).as_deref(),
            Ok("https://idp.example.com")
        );
    }

    #[test]
    fn unreadable_tokens_are_malformed_or_name_their_algorithm() {
        let malformed = Err(TokenError::Malformed("not a signed JWT".into()));
        assert_eq!(unverified_issuer("garbage"), malformed);
        assert_eq!(unverified_issuer("a.b.c.d"), malformed);
        assert_eq!(unverified_issuer("a.!!!.c"), malformed);
        let none = format!("{}.!!!.", b64(r#"{"alg":"none"}"#));
        assert_eq!(
            unverified_issuer(&none),
            Err(TokenError::Algorithm("none".into()))
        );
        let no_iss = format!("{}.{}.s", b64(r#"{"alg":"RS256"}"#), b64(r#"{"sub":"a"}"#));
        assert_eq!(
            unverified_issuer(&no_iss),
            Err(TokenError::Malformed("missing claim iss".into()))
        );
        let bad_iss = format!("{}.{}.s", b64(r#"{"alg":"RS256"}"#), b64(r#"{"iss":7}"#));
        assert_eq!(
            unverified_issuer(&bad_iss),
            Err(TokenError::Malformed("iss is not a string".into()))
        );
    }

    #[test]
    fn an_unknown_issuer_and_an_oversized_token_are_refused_without_keys() {
        let verifier = OidcVerifier::new(Vec::new(), Duration::from_secs(1)).unwrap();
        let token = format!(
            "{}.{}.s",
            b64(r#"{"alg":"RS256","kid":"k"}"#),
            b64(r#"{"iss":"https://elsewhere.example"}"#)
        );
        assert_eq!(
            verifier.issuer_for(&token).err(),
            Some(TokenError::WrongIssuer)
        );
        let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert!(matches!(
            verifier.issuer_for(&huge).err(),
            Some(TokenError::Malformed(m)) if m.starts_with("longer than")
        ));
    }
}
