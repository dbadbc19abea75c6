//! `{issuer}/.well-known/openid-configuration` → the JWKS URL.

use serde::Deserialize;

use crate::config::load::check_issuer_url;

#[derive(Debug, Deserialize)]
struct Document {
    issuer: String,
    jwks_uri: String,
}

/// Fetch the discovery document and return the JWKS URL, checking that the
/// document speaks for the configured issuer.
pub async fn jwks_uri(http: &reqwest::Client, issuer: &str) -> Result<String, String> {
    let url = format!("{issuer}/.well-known/openid-configuration");
    let doc: Document = http
        .get(&url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("discovery {url}: {e}"))?
        .json()
        .await
        .map_err(|e| format!("discovery {url}: {e}"))?;
    if doc.issuer.trim_end_matches('/') != issuer {
        return Err(format!(
            "discovery {url} names issuer {:?}, not the configured one",
            doc.issuer
        ));
    }
    check_issuer_url(&doc.jwks_uri).map_err(|_| {
        format!(
            "discovery {url}: jwks_uri {:?} must be https:// (or loopback http)",
            doc.jwks_uri
        )
    })?;
    Ok(doc.jwks_uri)
}
