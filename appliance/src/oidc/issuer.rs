//! One configured issuer: where its keys come from, their cache, and the
//! checks a token it signed must pass.
//!
//! Keys come from discovery and the JWKS over HTTPS (trusting the
//! system's roots, or only `ca_file`'s), or from a static `jwks_file`.
//! An unknown `kid` makes the token wait, single-flight, for the next
//! refresh the rate limit allows (see [`Issuer::key`]).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use gatehouse_actors::auth::{Identity, TokenError};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily, Validation};

use super::keys::{self, KeyMap, VerificationKey};
use super::{discovery, same_issuer};

/// Claims about the token's own lifetime: meaningless for roles, and kept
/// out of identities so certificates do not carry stale times.
const TIME_CLAIMS: &[&str] = &["exp", "iat", "nbf", "jti"];

/// Clock skew tolerated on `exp`, `nbf` and `iat`.
const LEEWAY_SECS: u64 = 30;

/// JWKS downloads happen at most this often, so a flood of tokens with
/// made-up key ids cannot turn into a flood of requests to the identity
/// provider. Tokens with an unknown `kid` wait for the next allowed
/// download instead of being refused for the rate limit.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// Identity provider requests give up after this long.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// Where an issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Discovery and JWKS over HTTPS; with `ca_file`, trusting only that
    /// CA (a private IdP), else the system's roots.
    Discovery { ca_file: Option<PathBuf> },
    /// A static JWKS (air-gapped appliance), read at start and on SIGHUP.
    File(PathBuf),
}

/// One `[[auth.oidc]]` entry, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuerSettings {
    /// The issuer's name in identities (`NAME:sub`) and roles; no `:`.
    pub name: String,
    /// The `iss` its tokens carry (and the discovery base URL).
    pub issuer: String,
    pub audience: String,
    /// Claim (or dotted path) holding the groups.
    pub groups_claim: String,
    pub algorithms: Vec<Algorithm>,
    pub keys: KeySource,
}

#[derive(Default)]
struct KeyCache {
    keys: KeyMap,
    jwks_uri: Option<String>,
    /// When the last download began (successful or not).
    last_attempt: Option<Instant>,
    /// Whether keys were ever loaded: until then a failure to find a key
    /// means the provider is unavailable, not that the key is unknown.
    loaded: bool,
}

pub struct Issuer {
    settings: IssuerSettings,
    allowed: HashSet<Algorithm>,
    /// `None` for a `jwks_file` issuer: it never goes to the network.
    http: Option<reqwest::Client>,
    cache: RwLock<KeyCache>,
    /// Held for a download and for the wait before it: one at a time.
    refreshing: tokio::sync::Mutex<()>,
    /// How long a token may wait for the next allowed refresh (the
    /// session's startup timeout: it cannot wait longer anyway).
    max_wait: Duration,
}

impl Issuer {
    pub fn new(settings: IssuerSettings, max_wait: Duration) -> Result<Self, String> {
        let allowed = settings.algorithms.iter().copied().collect();
        let http = match &settings.keys {
            KeySource::File(_) => None,
            KeySource::Discovery { ca_file } => {
                let mut builder = reqwest::Client::builder()
                    .timeout(HTTP_TIMEOUT)
                    .redirect(reqwest::redirect::Policy::none());
                if let Some(ca) = ca_file {
                    let roots = crate::tls::load_roots(ca)
                        .map_err(|e| format!("issuer {:?}: ca_file: {e}", settings.name))?;
                    builder =
                        builder.use_preconfigured_tls(crate::tls::verifying_client_config(roots));
                }
                Some(builder.build().map_err(|e| e.to_string())?)
            }
        };
        let issuer = Issuer {
            settings,
            allowed,
            http,
            cache: RwLock::new(KeyCache::default()),
            refreshing: tokio::sync::Mutex::new(()),
            max_wait,
        };
        if let KeySource::File(path) = &issuer.settings.keys {
            issuer.store(keys::read_file(path)?, None);
        }
        Ok(issuer)
    }

    pub fn settings(&self) -> &IssuerSettings {
        &self.settings
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// Whether `iss` names this issuer.
    pub fn serves(&self, iss: &str) -> bool {
        same_issuer(iss, &self.settings.issuer)
    }

    /// Load the keys now: download them (discovery first, once), or read
    /// the `jwks_file` again. Called at start, on a timer and on SIGHUP.
    pub async fn refresh(&self) -> Result<usize, String> {
        let _guard = self.refreshing.lock().await;
        self.refresh_locked().await
    }

    async fn refresh_locked(&self) -> Result<usize, String> {
        let Some(http) = &self.http else {
            let KeySource::File(path) = &self.settings.keys else {
                return Err("no key source".into());
            };
            let keys = keys::read_file(path)?;
            let n = keys.len();
            self.store(keys, None);
            return Ok(n);
        };
        let uri = {
            let mut cache = self.write_cache();
            cache.last_attempt = Some(Instant::now());
            cache.jwks_uri.clone()
        };
        let uri = match uri {
            Some(u) => u,
            None => discovery::jwks_uri(http, &self.settings.issuer).await?,
        };
        let keys = keys::fetch(http, &uri).await?;
        let n = keys.len();
        self.store(keys, Some(uri));
        Ok(n)
    }

    fn store(&self, keys: KeyMap, jwks_uri: Option<String>) {
        let mut cache = self.write_cache();
        cache.keys = keys;
        if jwks_uri.is_some() {
            cache.jwks_uri = jwks_uri;
        }
        cache.loaded = true;
    }

    fn cached(&self, kid: &str) -> Option<Arc<VerificationKey>> {
        self.read_cache().keys.get(kid).cloned()
    }

    /// The key for `kid`. An unknown `kid` waits for a download that began
    /// after the token `arrived`: at once if the rate limit allows one,
    /// else at the next allowed moment. Waiters queue behind one lock, so a
    /// burst of unknown kids costs one download per interval, and a key
    /// the provider just rotated in is found however many forged kids
    /// arrived before it. Refused only when such a download did not bring
    /// the key, or none can start within `max_wait`.
    async fn key(&self, kid: &str, arrived: Instant) -> Result<Arc<VerificationKey>, TokenError> {
        if let Some(key) = self.cached(kid) {
            return Ok(key);
        }
        if self.http.is_none() {
            // A static key set changes only on SIGHUP.
            return Err(TokenError::UnknownKey);
        }
        let deadline = tokio::time::Instant::from_std(arrived + self.max_wait);
        loop {
            let Ok(guard) = tokio::time::timeout_at(deadline, self.refreshing.lock()).await else {
                return Err(TokenError::UnknownKey);
            };
            if let Some(key) = self.cached(kid) {
                return Ok(key);
            }
            let (last, loaded) = {
                let cache = self.read_cache();
                (cache.last_attempt, cache.loaded)
            };
            if last.is_some_and(|t| t >= arrived) {
                return Err(if loaded {
                    TokenError::UnknownKey
                } else {
                    TokenError::IssuerUnavailable
                });
            }
            let next = last.map_or_else(Instant::now, |t| t + MIN_REFRESH_INTERVAL);
            let next = tokio::time::Instant::from_std(next);
            if next > deadline {
                tracing::info!(
                    issuer = %self.settings.name,
                    "token with an unknown key id refused: no key refresh is allowed before its deadline"
                );
                return Err(TokenError::UnknownKey);
            }
            tokio::time::sleep_until(next).await;
            if let Err(e) = self.refresh_locked().await {
                tracing::warn!(issuer = %self.settings.name, "JWKS refresh failed: {e}");
            }
            drop(guard);
        }
    }

    fn read_cache(&self) -> std::sync::RwLockReadGuard<'_, KeyCache> {
        self.cache.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_cache(&self) -> std::sync::RwLockWriteGuard<'_, KeyCache> {
        self.cache.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Verify a token whose `iss` named this issuer.
    pub async fn verify(&self, token: &str, arrived: Instant) -> Result<Identity, TokenError> {
        let (header, kid) = super::check_header(token, &self.allowed)?;
        let key = self.key(&kid, arrived).await?;
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
        // `iss` was matched to this issuer before; the library checks it
        // again against the exact configured text and its slash variant.
        let iss = self.settings.issuer.trim_end_matches('/');
        v.set_issuer(&[iss.to_owned(), format!("{iss}/")]);
        v.set_audience(&[&self.settings.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims =
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
                .claims;
        self.identity_from_claims(claims)
    }

    /// The identity a token's claims name (verified ones, or unverified for
    /// `check-config --explain-token`).
    pub fn identity_from_claims(
        &self,
        claims: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Identity, TokenError> {
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
        let groups_claim = &self.settings.groups_claim;
        let groups = match gatehouse_actors::access::claim(&claims, groups_claim) {
            None => Vec::new(),
            Some(serde_json::Value::String(g)) => vec![g.clone()],
            Some(serde_json::Value::Array(items)) if items.iter().all(|v| v.is_string()) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Some(_) => {
                return Err(TokenError::Malformed(format!(
                    "{groups_claim} claim is not a list of strings"
                )));
            }
        };
        let claims = claims
            .into_iter()
            .filter(|(k, _)| !TIME_CLAIMS.contains(&k.as_str()))
            .collect();
        Ok(Identity {
            issuer: self.settings.name.clone(),
            subject,
            groups,
            claims,
        })
    }
}
