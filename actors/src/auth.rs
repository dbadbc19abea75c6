//! What a session needs from identity verification, without knowing how it
//! is done (the appliance implements OIDC; tests may implement others).

use std::future::Future;
use std::pin::Pin;

/// A verified agent identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token's `sub`.
    pub subject: String,
    /// Groups from the configured claim.
    pub groups: Vec<String>,
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
