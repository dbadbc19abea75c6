//! `gatehouse check-config --explain-token FILE`: what the gateway would
//! make of a token — its claims, the issuer it names, whether it verifies,
//! the roles it would get and why each other role would not, and the
//! connections those roles grant.
//!
//! The token is verified for real (keys are fetched from the issuer, or
//! read from its `jwks_file`). A token that does not verify is still
//! explained from its claims, marked as unverified, and the command exits
//! non-zero.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use base64::Engine as _;
use gatehouse_actors::access::{Miss, Role, scalar_text};
use gatehouse_actors::auth::Identity;

use crate::config::LoadedConfig;
use crate::oidc::{MAX_TOKEN_BYTES, OidcVerifier};

/// How long fetching an issuer's keys may take here.
const FETCH_WAIT: Duration = Duration::from_secs(10);

/// Print the explanation; `Ok(true)` when the token verified.
pub fn run(cfg: &LoadedConfig, token_file: &Path) -> anyhow::Result<bool> {
    let text = read_token(token_file)?;
    let (explanation, verified) = explain(cfg, &text)?;
    // Claim names and values come from whoever made the token: shown with
    // control and bidi characters escaped, one claim per line.
    for line in explanation.lines() {
        println!("{}", gatehouse_actors::recording::clean(line));
    }
    Ok(verified)
}

fn read_token(path: &Path) -> anyhow::Result<String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_TOKEN_BYTES as u64 + 2)
        .read_to_string(&mut text)
        .with_context(|| format!("reading {} (a JWT is text)", path.display()))?;
    Ok(text.trim().to_owned())
}

/// The explanation as text, and whether the token verified.
pub fn explain(cfg: &LoadedConfig, token: &str) -> anyhow::Result<(String, bool)> {
    let claims = unverified_claims(token)?;
    let mut out = String::new();
    let verifier =
        OidcVerifier::new(cfg.issuers.clone(), FETCH_WAIT).map_err(|e| anyhow::anyhow!("{e}"))?;
    let iss = claims.get("iss").and_then(|v| v.as_str()).unwrap_or("");
    let issuer = match verifier.issuer_for(token) {
        Ok(issuer) => issuer,
        Err(e) => {
            let known: Vec<&str> = cfg.issuers.iter().map(|i| i.issuer.as_str()).collect();
            writeln!(out, "iss:        {iss:?}")?;
            writeln!(out, "issuer:     none — invalid token: {e}")?;
            writeln!(out, "configured: {}", known.join(", "))?;
            return Ok((out, false));
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime")?;
    let (keys, verdict) = runtime.block_on(async {
        // Arrived before the refresh: an unknown key id is decided by it,
        // without waiting for another.
        let arrived = Instant::now();
        let keys = issuer.refresh().await;
        (keys, issuer.verify(token, arrived).await)
    });
    let settings = issuer.settings();
    writeln!(out, "issuer:     {} ({})", settings.name, settings.issuer)?;
    if let Err(e) = &keys {
        writeln!(out, "keys:       not loaded: {e}")?;
    }
    let (identity, verified) = match verdict {
        Ok(identity) => {
            writeln!(out, "verified:   yes")?;
            (identity, true)
        }
        Err(e) => {
            writeln!(
                out,
                "verified:   NO — invalid token: {e} (the roles below are what its claims would get)"
            )?;
            match issuer.identity_from_claims(claims.clone()) {
                Ok(identity) => (identity, false),
                Err(e) => {
                    writeln!(out, "identity:   none — {e}")?;
                    return Ok((out, false));
                }
            }
        }
    };
    writeln!(out, "identity:   {}", identity.qualified())?;
    writeln!(
        out,
        "groups:     {} (from {})",
        list_or_none(&identity.groups),
        settings.groups_claim
    )?;
    writeln!(out, "claims:")?;
    for (name, value) in &claims {
        writeln!(out, "  {name} = {value}")?;
    }
    write_roles(&mut out, &cfg.roles, &identity)?;
    Ok((out, verified))
}

/// Granted roles with what matched, refused ones with every reason, and
/// the connections granted.
fn write_roles(out: &mut String, roles: &[Role], identity: &Identity) -> std::fmt::Result {
    writeln!(out, "roles:")?;
    let mut connections = BTreeSet::new();
    for role in roles {
        match role.check(identity) {
            Ok(claims) => {
                let mut why = Vec::new();
                if let Some(i) = &role.issuer {
                    why.push(format!("issuer {i}"));
                }
                let groups: Vec<&String> = role
                    .groups
                    .iter()
                    .filter(|g| identity.groups.contains(g))
                    .collect();
                if !groups.is_empty() {
                    why.push(format!(
                        "group {}",
                        groups
                            .iter()
                            .map(|g| g.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                for (path, value) in &claims {
                    let rule = role.claims.iter().find(|r| &r.path == path);
                    let patterns = rule.map(|r| r.patterns.join(" | ")).unwrap_or_default();
                    let shown = scalar_text(value).unwrap_or_else(|| value.to_string());
                    why.push(format!("{path} = {shown:?} matches {patterns:?}"));
                }
                writeln!(out, "  + {}: {}", role.name, why.join("; "))?;
                for c in &role.connections {
                    connections.insert((c.clone(), role.name.clone()));
                }
            }
            Err(misses) => {
                let why: Vec<String> = misses.iter().map(Miss::to_string).collect();
                writeln!(out, "  - {}: {}", role.name, why.join("; "))?;
            }
        }
    }
    let mut by_connection: Vec<(String, Vec<String>)> = Vec::new();
    for (c, role) in connections {
        match by_connection.last_mut() {
            Some((last, roles)) if *last == c => roles.push(role),
            _ => by_connection.push((c, vec![role])),
        }
    }
    let listed: Vec<String> = by_connection
        .iter()
        .map(|(c, roles)| format!("{c} (via {})", roles.join(", ")))
        .collect();
    writeln!(out, "connections: {}", list_or_none(&listed))
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// The payload of a compact JWS, without checking anything.
fn unverified_claims(token: &str) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    if token.len() > MAX_TOKEN_BYTES {
        anyhow::bail!("the token is longer than {MAX_TOKEN_BYTES} bytes");
    }
    let payload = token
        .split('.')
        .nth(1)
        .context("not a JWT: expected header.payload.signature")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .context("not a JWT: the payload is not base64url")?;
    serde_json::from_slice(&bytes).context("not a JWT: the payload is not a JSON object")
}
