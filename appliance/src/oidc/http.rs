//! Fetching an identity provider's JSON documents: no redirects, bounded
//! size, errors that name the URL and never a body.

use serde::de::DeserializeOwned;

/// Largest discovery document or key set accepted. Real ones are a few
/// KiB; a provider (or whoever answers in its name) must not make the
/// appliance buffer without bound.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// GET `url` and parse its JSON body. A redirect is an error: the client
/// follows none, so an answer that moves the document elsewhere is
/// refused here with where it pointed (OpenID Connect Discovery requires
/// the document at the issuer's own URL).
pub async fn get_json<T: DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
    what: &str,
) -> Result<T, String> {
    let mut response = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("{what} {url}: {}", chain(&e)))?;
    let status = response.status();
    if status.is_redirection() {
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .map(|l| {
                String::from_utf8_lossy(l.as_bytes())
                    .chars()
                    .take(200)
                    .collect::<String>()
            })
            .unwrap_or_default();
        return Err(format!(
            "{what} {url} redirects ({status}) to {location:?}: refused, the document must be served at the issuer's own URL"
        ));
    }
    if !status.is_success() {
        return Err(format!("{what} {url}: HTTP {status}"));
    }
    if response
        .content_length()
        .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
    {
        return Err(format!(
            "{what} {url}: larger than {MAX_DOCUMENT_BYTES} bytes"
        ));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("{what} {url}: {}", chain(&e)))?
    {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(format!(
                "{what} {url}: larger than {MAX_DOCUMENT_BYTES} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| format!("{what} {url}: not the expected JSON: {e}"))
}

/// An error with its causes: reqwest's own text hides whether TLS failed
/// because of an unknown CA, which is what an admin needs to read.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
