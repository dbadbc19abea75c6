//! `POST /v1/ssh/certificate`: a token in, an SSH user certificate out.
//!
//! ```text
//! Authorization: Bearer <JWT>
//! {"public_key": "ssh-ed25519 AAAA..."}
//! → 200 {"certificate": "ssh-ed25519-cert-v01@openssh.com AAAA...",
//!        "valid_before": UNIX, "host_key": "ssh-ed25519 AAAA...", "ssh_port": PORT}
//! ```
//!
//! The token is verified exactly as a PostgreSQL login verifies it; the
//! certificate carries the identity it names
//! ([`gatehouse_actors::auth::certificate`]) and expires no later than the
//! token and `[auth.ssh] max_certificate_lifetime`. A bad token is 401, a
//! bad key or body 400, too many requests at once 429; the reason is in
//! `{"error": ...}` and never repeats the token.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use gatehouse_actors::auth::TokenVerifier;
use gatehouse_actors::auth::certificate::{CertError, issue};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{Request, StatusCode};
use russh::keys::{Algorithm, HashAlg, PrivateKey, PublicKey};
use serde::Deserialize;
use tokio::sync::Semaphore;

use super::{Reply, error, json, read_body};
use crate::oidc::OidcVerifier;

/// Certificate requests handled at once; more get 429. Each one verifies
/// a signature (and may wait for a key refresh): a burst must not starve
/// the PostgreSQL listener's token checks of CPU.
pub const MAX_CONCURRENT: usize = 32;

/// Sustained certificate issuance, per second, with a burst of
/// [`BURST`]: far above what a fleet of CI jobs asks for, low enough that
/// a client looping on this endpoint cannot make it the appliance's
/// main work.
pub const RATE_PER_SECOND: f64 = 50.0;
pub const BURST: f64 = 100.0;

/// A token check gives up after this (it may wait for a key refresh,
/// bounded by the startup timeout, and one download).
const VERIFY_TIMEOUT: Duration = Duration::from_secs(30);

/// Smallest RSA key certified; shorter ones are refused as weak.
const MIN_RSA_BITS: u32 = 2048;

#[derive(Deserialize)]
struct CertificateRequest {
    public_key: String,
}

pub struct CertificateIssuer {
    verifier: Arc<OidcVerifier>,
    ca: PrivateKey,
    /// The SSH listener's host key, OpenSSH text.
    host_key: String,
    ssh_port: u16,
    lifetime: Duration,
    slots: Arc<Semaphore>,
    bucket: std::sync::Mutex<Bucket>,
}

/// A token bucket: `tokens` refill at [`RATE_PER_SECOND`] up to [`BURST`].
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl CertificateIssuer {
    pub fn new(
        verifier: Arc<OidcVerifier>,
        ca: PrivateKey,
        host_key: &PublicKey,
        ssh_port: u16,
        lifetime: Duration,
    ) -> anyhow::Result<Self> {
        Ok(CertificateIssuer {
            verifier,
            ca,
            host_key: host_key.to_openssh()?,
            ssh_port,
            lifetime,
            slots: Arc::new(Semaphore::new(MAX_CONCURRENT)),
            bucket: std::sync::Mutex::new(Bucket {
                tokens: BURST,
                at: Instant::now(),
            }),
        })
    }

    fn take_rate_token(&self) -> bool {
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * RATE_PER_SECOND).min(BURST);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Reply {
        let Ok(_slot) = self.slots.try_acquire() else {
            return too_many();
        };
        if !self.take_rate_token() {
            return too_many();
        }
        let token = match bearer(&req) {
            Some(t) => t.to_owned(),
            None => {
                return unauthorized(&peer, "missing bearer token (Authorization: Bearer <JWT>)");
            }
        };
        let body = match read_body(req).await {
            Ok(body) => body,
            Err(reply) => return reply,
        };
        let identity =
            match tokio::time::timeout(VERIFY_TIMEOUT, self.verifier.verify(&token)).await {
                Ok(Ok(identity)) => identity,
                Ok(Err(e)) => return unauthorized(&peer, &format!("invalid token: {e}")),
                Err(_) => {
                    return unauthorized(&peer, "invalid token: identity provider unavailable");
                }
            };
        let request: CertificateRequest = match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(_) => {
                return bad_request(
                    &peer,
                    "the body must be JSON: {\"public_key\": \"ssh-ed25519 AAAA...\"}",
                );
            }
        };
        let key = match agent_key(&request.public_key) {
            Ok(key) => key,
            Err(why) => return bad_request(&peer, &why),
        };
        // The token verified, so its `exp` is the issuer's word.
        let Some(expires) = expiry(&token) else {
            return unauthorized(&peer, "invalid token: malformed token: exp is not a number");
        };
        let now = now_secs();
        let cert = match issue(&self.ca, &identity, &key, now, expires, self.lifetime) {
            Ok(cert) => cert,
            Err(e @ CertError::TooShort) => return unauthorized(&peer, &e.to_string()),
            Err(e @ CertError::Signing(_)) => {
                tracing::error!(%peer, "SSH certificate not issued: {e}");
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the certificate could not be signed",
                );
            }
            Err(e) => return bad_request(&peer, &e.to_string()),
        };
        let text = match cert.to_openssh() {
            Ok(text) => text,
            Err(e) => {
                tracing::error!(%peer, "SSH certificate not encoded: {e}");
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the certificate could not be encoded",
                );
            }
        };
        tracing::info!(
            %peer,
            identity = ?identity.qualified(),
            key = %key.fingerprint(HashAlg::Sha256),
            serial = cert.serial(),
            valid_before = cert.valid_before(),
            "SSH certificate issued"
        );
        json(
            StatusCode::OK,
            &serde_json::json!({
                "certificate": text,
                "valid_before": cert.valid_before(),
                "host_key": self.host_key,
                "ssh_port": self.ssh_port,
            }),
        )
    }
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive).
fn bearer(req: &Request<Incoming>) -> Option<&str> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// An agent's public key as certificates may carry it: ed25519, ECDSA, or
/// RSA of at least [`MIN_RSA_BITS`] bits.
fn agent_key(text: &str) -> Result<PublicKey, String> {
    let key = PublicKey::from_openssh(text.trim()).map_err(|_| {
        "public_key is not an OpenSSH public key (\"ssh-ed25519 AAAA...\")".to_owned()
    })?;
    match key.algorithm() {
        Algorithm::Ed25519 | Algorithm::Ecdsa { .. } => Ok(key),
        Algorithm::Rsa { .. } => {
            let bits = key.key_data().rsa().map_or(0, |rsa| rsa.key_size());
            if bits >= MIN_RSA_BITS {
                Ok(key)
            } else {
                Err(format!("RSA keys need at least {MIN_RSA_BITS} bits"))
            }
        }
        other => Err(format!(
            "{} keys are not certified; use ssh-ed25519",
            other.as_str()
        )),
    }
}

/// The `exp` of a token that already verified.
fn expiry(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?;
    exp.as_u64()
        .or_else(|| exp.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn unauthorized(peer: &SocketAddr, why: &str) -> Reply {
    tracing::info!(%peer, "SSH certificate refused: {why}");
    let mut reply = error(StatusCode::UNAUTHORIZED, why);
    reply.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    reply
}

fn bad_request(peer: &SocketAddr, why: &str) -> Reply {
    tracing::info!(%peer, "SSH certificate request refused: {why}");
    error(StatusCode::BAD_REQUEST, why)
}

fn too_many() -> Reply {
    let mut reply = error(
        StatusCode::TOO_MANY_REQUESTS,
        "too many certificate requests; retry in a second",
    );
    reply
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_keys_must_be_strong_openssh_keys() {
        let ed = crate::keyfile::generate().unwrap();
        let text = ed.public_key().to_openssh().unwrap();
        assert!(agent_key(&text).is_ok());
        assert!(agent_key(&format!("  {text} comment \n")).is_ok());
        assert!(agent_key("ssh-ed25519 AAAA").is_err());
        assert!(agent_key("").is_err());
        assert!(agent_key(&"A".repeat(10_000)).is_err());
    }

    #[test]
    fn expiry_reads_integer_and_float_exp() {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let token = |payload: &str| format!("{}.{}.sig", b64("{}"), b64(payload));
        assert_eq!(
            expiry(&token(r#"{"exp": 1800000000}"#)),
            Some(1_800_000_000)
        );
        assert_eq!(
            expiry(&token(r#"{"exp": 1800000000.5}"#)),
            Some(1_800_000_000)
        );
        assert_eq!(expiry(&token(r#"{"exp": "soon"}"#)), None);
        assert_eq!(expiry(&token(r#"{"exp": -1}"#)), None);
        assert_eq!(expiry("garbage"), None);
    }
}
