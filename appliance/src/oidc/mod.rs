//! OIDC token verification: discovery, a JWKS cache keyed by `kid`, and the
//! checks a bearer token must pass before it names an identity.
//!
//! The `openidconnect` crate from the design card targets relying-party
//! login flows (nonce, ID-token audience rules, redirects); Gatehouse
//! verifies access tokens that machines present, so it uses the same
//! building blocks directly: discovery over HTTPS, a JWKS, `jsonwebtoken`
//! for signatures and registered claims.

mod discovery;
mod keys;
mod verifier;

pub use verifier::{OidcSettings, OidcVerifier, REFRESH_PERIOD};
