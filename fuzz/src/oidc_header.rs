//! Target `oidc_header`: what the verifier decides from a token before any
//! key or signature is involved: which configured issuer it names
//! (`oidc::unverified_issuer`, which reads the unverified payload) and
//! what its header allows (`oidc::check_header`, which uses the bounded
//! `header_alg` pre-check and then `jsonwebtoken::decode_header`).
//!
//! Invariants, beyond "no panic, bounded memory, no hang": a header that
//! passes names an algorithm the config allows (never `none` or an HMAC
//! one, which no config allows), the pre-check and the JWT library read the
//! same algorithm from it, and the pre-check's answer is at most 32
//! alphanumeric characters however long the header is; a token refused for
//! its algorithm before the issuer is known names one no issuer may allow.

use std::collections::HashSet;
use std::sync::LazyLock;

use gatehouse_actors::auth::TokenError;
use gatehouse_appliance::oidc::{ALLOWED_ALGORITHMS, check_header, header_alg, unverified_issuer};
use jsonwebtoken::Algorithm;

/// The README's example `algorithms`.
static ALLOWED: LazyLock<HashSet<Algorithm>> =
    LazyLock::new(|| [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA].into());

pub fn check(data: &[u8]) {
    let token = String::from_utf8_lossy(data);
    let claimed = header_alg(&token);
    if let Some(alg) = &claimed {
        assert!(alg.len() <= 32 && alg.chars().all(|c| c.is_ascii_alphanumeric()));
    }
    if let Err(TokenError::Algorithm(alg)) = unverified_issuer(&token) {
        assert!(
            !ALLOWED_ALGORITHMS.contains(&alg.as_str()),
            "{alg} refused before its issuer was known"
        );
    }
    if let Ok((header, kid)) = check_header(&token, &ALLOWED) {
        assert!(ALLOWED.contains(&header.alg), "{:?} passed", header.alg);
        assert_eq!(header.kid.as_deref(), Some(kid.as_str()));
        assert_eq!(
            claimed.as_deref(),
            Some(format!("{:?}", header.alg).as_str()),
            "the pre-check and the JWT library read different algorithms"
        );
    }
}
