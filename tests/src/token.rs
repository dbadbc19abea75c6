//! Minting ID tokens — good ones, and the classic bad ones a gateway must
//! refuse.
//!
//! Tokens are assembled by hand (header and payload as JSON values, then
//! `jsonwebtoken::crypto::sign`) instead of through `jsonwebtoken::encode`,
//! because the attacks need headers that no well-behaved encoder produces:
//! `alg: none`, HS256 under an RSA key's `kid`, a `kid` that lies about the
//! signing key.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Map, Value, json};

use crate::keys::{KeySet, SigningKey};

/// The audience the harness configures the gateway with.
pub const DEFAULT_AUDIENCE: &str = "gatehouse";

/// Lifetime of a token when the test does not say: long enough for a slow
/// test, short enough that a leaked log line is harmless.
pub const DEFAULT_TTL_SECS: i64 = 300;

/// The claim carrying group membership, matching `groups_claim` in the
/// harness config.
pub const GROUPS_CLAIM: &str = "groups";

/// What goes into one token. Defaults (applied by [`Minter`]): `iss` = the
/// issuer URL, `aud` = [`DEFAULT_AUDIENCE`], `iat` = now, `exp` = now +
/// [`DEFAULT_TTL_SECS`], signed RS256 with `rsa-1` under its own `kid`.
/// Every setter overrides a default; [`Claims::without`] removes a claim
/// entirely, for "missing exp" style tests.
#[derive(Clone, Debug)]
pub struct Claims {
    sub: String,
    groups: Option<Vec<String>>,
    set: BTreeMap<String, Value>,
    omit: BTreeSet<String>,
    key: Option<SigningKey>,
    alg: Option<Algorithm>,
    kid: KidChoice,
}

#[derive(Clone, Debug)]
enum KidChoice {
    /// The signing key's own kid.
    Key,
    Set(String),
    Omitted,
}

impl Claims {
    /// Claims for subject `sub`, with no groups.
    pub fn new(sub: impl Into<String>) -> Self {
        Claims {
            sub: sub.into(),
            groups: None,
            set: BTreeMap::new(),
            omit: BTreeSet::new(),
            key: None,
            alg: None,
            kid: KidChoice::Key,
        }
    }

    /// Sets the `groups` claim.
    pub fn groups<I, S>(mut self, groups: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.groups = Some(groups.into_iter().map(Into::into).collect());
        self
    }

    /// Sets `aud` to a single string.
    pub fn aud(self, aud: &str) -> Self {
        self.claim("aud", json!(aud))
    }

    /// Sets `aud` to an array, as some issuers do.
    pub fn auds(self, auds: &[&str]) -> Self {
        self.claim("aud", json!(auds))
    }

    /// Sets `iss`.
    pub fn iss(self, iss: &str) -> Self {
        self.claim("iss", json!(iss))
    }

    /// Sets `exp` to now + `secs`; negative values make an expired token.
    pub fn exp_in(self, secs: i64) -> Self {
        self.claim("exp", json!(now() + secs))
    }

    /// Sets `exp` to an absolute Unix time.
    pub fn exp(self, unix: i64) -> Self {
        self.claim("exp", json!(unix))
    }

    /// Sets `nbf` to now + `secs`; positive values make a not-yet-valid
    /// token.
    pub fn nbf_in(self, secs: i64) -> Self {
        self.claim("nbf", json!(now() + secs))
    }

    /// Sets `nbf` to an absolute Unix time.
    pub fn nbf(self, unix: i64) -> Self {
        self.claim("nbf", json!(unix))
    }

    /// Sets `iat` to an absolute Unix time.
    pub fn iat(self, unix: i64) -> Self {
        self.claim("iat", json!(unix))
    }

    /// Sets any claim to any JSON value, including the defaulted ones.
    pub fn claim(mut self, name: &str, value: Value) -> Self {
        self.omit.remove(name);
        self.set.insert(name.to_string(), value);
        self
    }

    /// Leaves `name` out of the payload, even if it has a default.
    pub fn without(mut self, name: &str) -> Self {
        self.set.remove(name);
        self.omit.insert(name.to_string());
        self
    }

    /// Chooses the signing algorithm: RS256 signs with `rsa-1`, ES256 with
    /// `ec-1`. Others fail at mint time.
    pub fn alg(mut self, alg: Algorithm) -> Self {
        self.alg = Some(alg);
        self
    }

    /// Shorthand for `.alg(Algorithm::ES256)`.
    pub fn es256(self) -> Self {
        self.alg(Algorithm::ES256)
    }

    /// Chooses the signing key (and with it the algorithm).
    pub fn key(mut self, key: SigningKey) -> Self {
        self.key = Some(key);
        self
    }

    /// Puts `kid` in the header regardless of the signing key.
    pub fn kid(mut self, kid: &str) -> Self {
        self.kid = KidChoice::Set(kid.to_string());
        self
    }

    /// Leaves `kid` out of the header.
    pub fn no_kid(mut self) -> Self {
        self.kid = KidChoice::Omitted;
        self
    }

    /// The key that signs, after reconciling `.key()` and `.alg()`.
    pub fn signing_key(&self) -> Result<SigningKey> {
        match (self.key, self.alg) {
            (Some(key), Some(alg)) if key.algorithm() != alg => {
                bail!("alg {alg:?} does not match key {}", key.kid())
            }
            (Some(key), _) => Ok(key),
            (None, None | Some(Algorithm::RS256)) => Ok(SigningKey::Rsa1),
            (None, Some(Algorithm::ES256)) => Ok(SigningKey::Ec1),
            (None, Some(alg)) => bail!("the test issuer has no {alg:?} key"),
        }
    }

    fn header_kid(&self, key: SigningKey) -> Option<String> {
        match &self.kid {
            KidChoice::Key => Some(key.kid().to_string()),
            KidChoice::Set(kid) => Some(kid.clone()),
            KidChoice::Omitted => None,
        }
    }
}

/// Signs tokens for one issuer URL. Cheap to clone; the keys are shared.
#[derive(Clone, Debug)]
pub struct Minter {
    keys: Arc<KeySet>,
    issuer: String,
}

impl Minter {
    /// A minter for tokens claiming to come from `issuer`.
    pub fn new(keys: Arc<KeySet>, issuer: impl Into<String>) -> Self {
        Minter {
            keys,
            issuer: issuer.into(),
        }
    }

    /// The same keys minting for another issuer URL: tokens for a gateway
    /// that knows these keys from a `jwks_file` under that issuer.
    pub fn for_issuer(&self, issuer: impl Into<String>) -> Minter {
        Minter {
            keys: self.keys.clone(),
            issuer: issuer.into(),
        }
    }

    /// The issuer URL used as the default `iss`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The keys tokens are signed with.
    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    /// The payload `claims` produce, defaults applied.
    pub fn payload(&self, claims: &Claims) -> Value {
        let now = now();
        let mut p = Map::new();
        p.insert("iss".into(), json!(self.issuer));
        p.insert("aud".into(), json!(DEFAULT_AUDIENCE));
        p.insert("sub".into(), json!(claims.sub));
        p.insert("iat".into(), json!(now));
        p.insert("exp".into(), json!(now + DEFAULT_TTL_SECS));
        if let Some(groups) = &claims.groups {
            p.insert(GROUPS_CLAIM.into(), json!(groups));
        }
        for (name, value) in &claims.set {
            p.insert(name.clone(), value.clone());
        }
        for name in &claims.omit {
            p.remove(name);
        }
        Value::Object(p)
    }

    /// A correctly signed token.
    pub fn mint(&self, claims: &Claims) -> Result<String> {
        let key = claims.signing_key()?;
        self.sign_with(&self.header(claims, key, key.algorithm()), claims, key)
    }

    /// Signs `claims` under a caller-supplied header, verbatim, with the
    /// claims' signing key — for header tricks (`jku`, `crit`, an embedded
    /// `jwk`) not covered by the helpers below.
    pub fn token_with_header(&self, header: &Value, claims: &Claims) -> Result<String> {
        self.sign_with(header, claims, claims.signing_key()?)
    }

    /// `alg: none` with an empty signature: accepted only by a verifier
    /// that trusts the header's choice of algorithm.
    pub fn token_alg_none(&self, claims: &Claims) -> Result<String> {
        let header = json!({ "alg": "none", "typ": "JWT" });
        Ok(format!(
            "{}.",
            signing_input(&header, &self.payload(claims))?
        ))
    }

    /// HS256 keyed with the RSA public key's PEM bytes, under the RSA key's
    /// `kid`: the key-confusion attack against verifiers that pick the
    /// algorithm from the header and feed "the key" to it.
    pub fn token_hs256_with_public_key(&self, claims: &Claims) -> Result<String> {
        let key = claims.signing_key()?;
        let secret = EncodingKey::from_secret(&self.keys.get(key).public_pem);
        let header = self.header(claims, key, Algorithm::HS256);
        sign_raw(&header, &self.payload(claims), &secret, Algorithm::HS256)
    }

    /// A correctly signed token with one signature character changed in the
    /// middle (not the last character, whose low bits may be padding that
    /// a lenient base64 decoder ignores).
    pub fn token_bad_signature(&self, claims: &Claims) -> Result<String> {
        let token = self.mint(claims)?;
        let sig_start = token.rfind('.').context("token has no signature part")? + 1;
        let mut bytes = token.into_bytes();
        let i = sig_start + (bytes.len() - sig_start) / 2;
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).context("base64url stays ASCII")
    }

    /// A token whose header names the claims' key (`rsa-1` by default) but
    /// which is signed RS256 by the never-published rogue key.
    pub fn token_wrong_key(&self, claims: &Claims) -> Result<String> {
        let named = claims.signing_key()?;
        let header = self.header(claims, named, Algorithm::RS256);
        self.sign_with(&header, claims, SigningKey::Rogue)
    }

    fn header(&self, claims: &Claims, key: SigningKey, alg: Algorithm) -> Value {
        // Algorithm serializes as its JOSE name ("RS256").
        let mut header = json!({ "alg": alg, "typ": "JWT" });
        if let (Some(kid), Some(obj)) = (claims.header_kid(key), header.as_object_mut()) {
            obj.insert("kid".into(), json!(kid));
        }
        header
    }

    fn sign_with(&self, header: &Value, claims: &Claims, key: SigningKey) -> Result<String> {
        let encoding = self.keys.get(key).encoding_key()?;
        sign_raw(header, &self.payload(claims), &encoding, key.algorithm())
    }
}

/// `base64url(header) . base64url(payload) . base64url(signature)`.
pub fn sign_raw(
    header: &Value,
    payload: &Value,
    key: &EncodingKey,
    alg: Algorithm,
) -> Result<String> {
    let input = signing_input(header, payload)?;
    let signature =
        jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).context("signing the token")?;
    Ok(format!("{input}.{signature}"))
}

fn signing_input(header: &Value, payload: &Value) -> Result<String> {
    let header = serde_json::to_vec(header).context("serializing the header")?;
    let payload = serde_json::to_vec(payload).context("serializing the payload")?;
    Ok(format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    ))
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
