//! `OidcVerifier`: the appliance's [`TokenVerifier`].

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use gatehouse_actors::auth::{Identity, TokenError, TokenVerifier, VerifyFuture};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily, Validation};

use super::{discovery, keys};

/// Clock skew tolerated on `exp`, `nbf` and `iat`.
const LEEWAY_SECS: u64 = 30;

/// An unknown `kid` triggers a JWKS refresh at most this often, so a flood
/// of tokens with made-up key ids cannot turn into a flood of requests to
/// the identity provider.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// Keys are refetched on this period even when every `kid` is known, so a
/// key the provider withdrew stops verifying.
pub const REFRESH_PERIOD: Duration = Duration::from_secs(15 * 60);

/// Identity provider requests give up after this long.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct OidcSettings {
    pub issuer: String,
    pub audience: String,
    pub groups_claim: String,
    pub algorithms: Vec<String>,
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, keys::VerificationKey>,
    jwks_uri: Option<String>,
    last_attempt: Option<Instant>,
}

pub struct OidcVerifier {
    settings: OidcSettings,
    allowed: HashSet<Algorithm>,
    http: reqwest::Client,
    cache: RwLock<KeyCache>,
    refreshing: tokio::sync::Mutex<()>,
}

impl OidcVerifier {
    pub fn new(settings: OidcSettings) -> anyhow::Result<Self> {
        let allowed = settings
            .algorithms
            .iter()
            .map(|a| Algorithm::from_str(a).map_err(|_| anyhow::anyhow!("unknown algorithm {a}")))
            .collect::<Result<HashSet<_>, _>>()?;
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(OidcVerifier {
            settings,
            allowed,
            http,
            cache: RwLock::new(KeyCache::default()),
            refreshing: tokio::sync::Mutex::new(()),
        })
    }

    /// Fetch discovery and keys now. Called at start and on a timer; tokens
    /// with an unknown `kid` call it too, rate-limited.
    pub async fn refresh(&self) -> Result<usize, String> {
        let _guard = self.refreshing.lock().await;
        self.refresh_locked().await
    }

    async fn refresh_locked(&self) -> Result<usize, String> {
        let uri = self.read_cache().jwks_uri.clone();
        self.write_cache().last_attempt = Some(Instant::now());
        let uri = match uri {
            Some(u) => u,
            None => discovery::jwks_uri(&self.http, &self.settings.issuer).await?,
        };
        let set = keys::fetch(&self.http, &uri).await?;
        let fresh = keys::from_jwks(&set);
        let n = fresh.len();
        let mut cache = self.write_cache();
        cache.keys = fresh;
        cache.jwks_uri = Some(uri);
        Ok(n)
    }

    /// Refresh for an unknown `kid`, unless one happened very recently.
    /// Tokens queued behind a refresh re-check after taking the lock, so a
    /// burst of unknown kids costs one fetch, not one each.
    async fn refresh_for_unknown_kid(&self, kid: &str) {
        let recent = || {
            let cache = self.read_cache();
            cache.keys.contains_key(kid)
                || cache
                    .last_attempt
                    .is_some_and(|t| t.elapsed() < MIN_REFRESH_INTERVAL)
        };
        if recent() {
            return;
        }
        let _guard = self.refreshing.lock().await;
        if recent() {
            return;
        }
        if let Err(e) = self.refresh_locked().await {
            tracing::warn!("JWKS refresh failed: {e}");
        }
    }

    fn read_cache(&self) -> std::sync::RwLockReadGuard<'_, KeyCache> {
        self.cache.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_cache(&self) -> std::sync::RwLockWriteGuard<'_, KeyCache> {
        self.cache.write().unwrap_or_else(|p| p.into_inner())
    }

    async fn verify_token(&self, token: &str) -> Result<Identity, TokenError> {
        // Name a refused algorithm (`none`, `HS256`, ...) before the JWT
        // library, which knows only the algorithms it implements, calls the
        // token malformed.
        if let Some(alg) = header_alg(token)
            && Algorithm::from_str(&alg).map_or(true, |a| !self.allowed.contains(&a))
        {
            return Err(TokenError::Algorithm(alg));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            ErrorKind::InvalidAlgorithmName | ErrorKind::UnsupportedAlgorithm => {
                TokenError::Algorithm("in the header".into())
            }
            _ => TokenError::Malformed("not a signed JWT".into()),
        })?;
        if !self.allowed.contains(&header.alg) {
            return Err(TokenError::Algorithm(format!("{:?}", header.alg)));
        }
        let kid = header
            .kid
            .ok_or_else(|| TokenError::Malformed("no key id (kid) in the header".into()))?;

        if !self.read_cache().keys.contains_key(&kid) {
            self.refresh_for_unknown_kid(&kid).await;
        }
        let claims = {
            let cache = self.read_cache();
            if cache.jwks_uri.is_none() {
                return Err(TokenError::IssuerUnavailable);
            }
            let key = cache.keys.get(&kid).ok_or(TokenError::UnknownKey)?;
            // The key decides which algorithm family may use it, never the
            // token: an RSA key can never verify an HMAC or EC signature.
            let family_ok = match header.alg.family() {
                AlgorithmFamily::Rsa => key.key.family() == AlgorithmFamily::Rsa,
                AlgorithmFamily::Ec => key.key.family() == AlgorithmFamily::Ec,
                AlgorithmFamily::Ed => key.key.family() == AlgorithmFamily::Ed,
                AlgorithmFamily::Hmac => false,
            };
            if !family_ok || key.algorithm.is_some_and(|a| a != header.alg) {
                return Err(TokenError::Algorithm(format!(
                    "{:?} does not match the signing key",
                    header.alg
                )));
            }
            let mut v = Validation::new(header.alg);
            v.leeway = LEEWAY_SECS;
            v.validate_nbf = true;
            v.set_issuer(&[&self.settings.issuer]);
            v.set_audience(&[&self.settings.audience]);
            v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &key.key, &v)
                .map_err(|e| match e.kind() {
                    ErrorKind::ExpiredSignature => TokenError::Expired,
                    ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                    ErrorKind::InvalidAudience => TokenError::WrongAudience,
                    ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
                    ErrorKind::InvalidSignature => TokenError::BadSignature,
                    ErrorKind::InvalidAlgorithm => {
                        TokenError::Algorithm(format!("{:?}", header.alg))
                    }
                    ErrorKind::MissingRequiredClaim(c) => {
                        TokenError::Malformed(format!("missing claim {c}"))
                    }
                    _ => TokenError::Malformed("claims do not verify".into()),
                })?
                .claims
        };

        if let Some(iat) = claims.get("iat") {
            let iat = iat
                .as_f64()
                .ok_or_else(|| TokenError::Malformed("iat is not a number".into()))?;
            let now = jsonwebtoken::get_current_timestamp() as f64;
            if iat > now + LEEWAY_SECS as f64 {
                return Err(TokenError::IssuedInFuture);
            }
        }
        let subject = claims
            .get("sub")
            .and_then(|s| s.as_str())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| TokenError::Malformed("sub is not a non-empty string".into()))?
            .to_owned();
        let groups = match claims.get(&self.settings.groups_claim) {
            None => Vec::new(),
            Some(serde_json::Value::String(g)) => vec![g.clone()],
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Some(_) => {
                return Err(TokenError::Malformed(format!(
                    "{} claim is not a list of strings",
                    self.settings.groups_claim
                )));
            }
        };
        Ok(Identity { subject, groups })
    }
}

/// The `alg` a token's header claims, if the header is readable JSON.
/// Bounded so an absurd header cannot cost much: the whole token is at most
/// the size of a password message.
fn header_alg(token: &str) -> Option<String> {
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

impl TokenVerifier for OidcVerifier {
    fn verify<'a>(&'a self, token: &'a str) -> VerifyFuture<'a> {
        Box::pin(self.verify_token(token))
    }
}
