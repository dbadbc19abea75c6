//! `{issuer}/.well-known/openid-configuration` → the JWKS URL.

use serde::Deserialize;

use super::http::get_json;
use crate::config::load::check_issuer_url;

#[derive(Debug, Deserialize)]
struct Document {
    issuer: String,
    jwks_uri: String,
}

/// Fetch the discovery document and return the JWKS URL, checking that the
/// document speaks for the configured issuer (OpenID Connect Discovery
/// §4.3: the `issuer` it names must be the one it was fetched for).
pub async fn jwks_uri(http: &reqwest::Client, issuer: &str) -> Result<String, String> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let doc: Document = get_json(http, &url, "discovery").await?;
    if !super::same_issuer(&doc.issuer, issuer) {
        return Err(format!(
            "discovery {url} names issuer {:?}, not the configured {issuer:?}: refused",
            doc.issuer.chars().take(200).collect::<String>()
        ));
    }
    check_issuer_url(&doc.jwks_uri).map_err(|_| {
        format!(
            "discovery {url}: jwks_uri {:?} must be https:// (or loopback http)",
            doc.jwks_uri.chars().take(200).collect::<String>()
        )
    })?;
    Ok(doc.jwks_uri)
}
