//! What a session needs from identity verification, without knowing how it
//! is done (the appliance implements OIDC; tests may implement others).
//!
//! Layout: this module holds the verified [`Identity`] and the token
//! interface; [`certificate`] turns an identity into an OpenSSH user
//! certificate signed by the appliance's user CA and back, so stock `ssh`
//! clients can log in without sending a token.

pub mod certificate;

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

/// A verified agent identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// The name of the configured issuer that vouched for it. Never
    /// contains `:`, so `issuer:subject` is unambiguous.
    pub issuer: String,
    /// The token's `sub`.
    pub subject: String,
    /// Groups from the configured claim.
    pub groups: Vec<String>,
    /// The token's other claims (registered time claims left out), for
    /// roles that match on claims. Never recorded whole: a session records
    /// only the claims that granted its role.
    #[serde(default)]
    pub claims: serde_json::Map<String, serde_json::Value>,
}

impl Identity {
    /// `issuer:subject`: what recordings and logs name, so two issuers'
    /// subjects never collide.
    pub fn qualified(&self) -> String {
        format!("{}:{}", self.issuer, self.subject)
    }
}

/// Why a token was refused. The `Display` text is what the client sees after
/// "invalid token: ", so it names the reason and never the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token issued in the future")]
    IssuedInFuture,
    #[error("wrong audience")]
    WrongAudience,
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("unknown signing key")]
    UnknownKey,
    #[error("bad signature")]
    BadSignature,
    #[error("algorithm {0} is not allowed")]
    Algorithm(String),
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("identity provider unavailable")]
    IssuerUnavailable,
}

pub type VerifyFuture<'a> = Pin<Box<dyn Future<Output = Result<Identity, TokenError>> + Send + 'a>>;

/// Verifies the bearer token an agent presents as its password.
pub trait TokenVerifier: Send + Sync {
    fn verify<'a>(&'a self, token: &'a str) -> VerifyFuture<'a>;
}
