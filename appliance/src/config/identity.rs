//! Validating who may connect: `[[auth.oidc]]` issuers and `[[roles]]`.

use std::collections::HashSet;

use gatehouse_actors::access::{ClaimRule, Role};
use jsonwebtoken::Algorithm;
use toml::Spanned;

use super::load::{Checker, check_issuer_url};
use crate::oidc::{ALLOWED_ALGORITHMS, IssuerSettings, KeySource, same_issuer};

/// The name of a single issuer configured without one.
pub const DEFAULT_ISSUER_NAME: &str = "oidc";

/// The issuers, validated: names unique and usable in `NAME:sub`, one
/// entry per `iss`, algorithms asymmetric, key sources readable.
pub(super) fn issuers(c: &mut Checker<'_>, raw: &[super::Oidc]) -> Vec<IssuerSettings> {
    let mut out = Vec::new();
    let mut names = HashSet::new();
    if raw.is_empty() {
        c.problem_at(
            1,
            "auth.oidc has no entries: add [[auth.oidc]] with name, issuer and audience",
        );
    }
    for (i, oidc) in raw.iter().enumerate() {
        let name = match &oidc.name {
            Some(n) => {
                let name = n.get_ref().clone();
                if name.is_empty()
                    || !name
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch))
                {
                    c.problem(
                        n,
                        format!(
                            "auth.oidc name {name:?} must be letters, digits, . _ - (it prefixes identities as NAME:sub)"
                        ),
                    );
                }
                if !names.insert(name.clone()) {
                    c.problem(n, format!("auth.oidc name {name:?} is used twice"));
                }
                name
            }
            None if raw.len() == 1 => DEFAULT_ISSUER_NAME.to_owned(),
            None => {
                c.problem(
                    &oidc.issuer,
                    format!(
                        "auth.oidc entry {} needs a `name` when several issuers are configured",
                        i + 1
                    ),
                );
                String::new()
            }
        };
        let issuer = oidc.issuer.get_ref().clone();
        if issuer.trim().is_empty() {
            c.problem(&oidc.issuer, "auth.oidc.issuer is empty");
        }
        if raw[..i]
            .iter()
            .any(|o| same_issuer(o.issuer.get_ref(), &issuer))
        {
            c.problem(
                &oidc.issuer,
                format!(
                    "issuer {issuer:?} is configured twice: one [[auth.oidc]] per issuer (tell its tokens apart with roles)"
                ),
            );
        }
        let keys = match (&oidc.jwks_file, &oidc.ca_file) {
            (Some(file), ca) => {
                if let Some(ca) = ca {
                    c.problem(
                        ca,
                        "auth.oidc: ca_file is for fetching keys; with jwks_file nothing is fetched",
                    );
                }
                c.existing_file(file, "jwks_file").and_then(|path| {
                    match crate::oidc::check_jwks_file(&path) {
                        Ok(()) => Some(KeySource::File(path)),
                        Err(e) => {
                            c.problem(file, format!("jwks_file: {e}"));
                            None
                        }
                    }
                })
            }
            (None, ca) => {
                if let Err(e) = check_issuer_url(&issuer) {
                    c.problem(&oidc.issuer, e);
                }
                let ca_file = ca.as_ref().and_then(|ca| {
                    let path = c.existing_file(ca, "ca_file")?;
                    match crate::tls::load_roots(&path) {
                        Ok(_) => Some(path),
                        Err(e) => {
                            c.problem(ca, format!("ca_file: {e}"));
                            None
                        }
                    }
                });
                Some(KeySource::Discovery { ca_file })
            }
        };
        let mut algorithms = Vec::new();
        for alg in oidc.algorithms.get_ref() {
            match alg.parse::<Algorithm>() {
                Ok(a) if ALLOWED_ALGORITHMS.contains(&alg.as_str()) => algorithms.push(a),
                _ => c.problem(
                    &oidc.algorithms,
                    format!(
                        "auth.oidc.algorithms: {alg:?} is not allowed; choose from {}",
                        ALLOWED_ALGORITHMS.join(", ")
                    ),
                ),
            }
        }
        if oidc.algorithms.get_ref().is_empty() {
            c.problem(
                &oidc.algorithms,
                "auth.oidc.algorithms is empty: no token could verify",
            );
        }
        if let Some(keys) = keys {
            out.push(IssuerSettings {
                name,
                issuer,
                audience: oidc.audience.clone(),
                groups_claim: oidc.groups_claim.clone(),
                algorithms,
                keys,
            });
        }
    }
    out
}

/// The roles, validated: each has a criterion, names a configured issuer,
/// and grants only defined connections.
pub(super) fn roles(
    c: &mut Checker<'_>,
    raw: &[super::Role],
    issuers: &[IssuerSettings],
    connections: &HashSet<String>,
) -> Vec<Role> {
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for spec in raw {
        let name = spec.name.get_ref().clone();
        if !names.insert(name.clone()) {
            c.problem(&spec.name, format!("role {name:?} is defined twice"));
        }
        for conn in &spec.connections {
            if !connections.contains(conn.get_ref()) {
                c.problem(
                    conn,
                    format!(
                        "role {name:?} grants connection {:?}, which is not defined",
                        conn.get_ref()
                    ),
                );
            }
        }
        if let Some(issuer) = &spec.issuer
            && !issuers.iter().any(|i| i.name == *issuer.get_ref())
        {
            let known: Vec<&str> = issuers.iter().map(|i| i.name.as_str()).collect();
            c.problem(
                issuer,
                format!(
                    "role {name:?} names issuer {:?}, which is not configured (auth.oidc names: {})",
                    issuer.get_ref(),
                    known.join(", ")
                ),
            );
        }
        let claims = spec
            .claims
            .as_ref()
            .map(|table| claim_rules(c, &name, table))
            .unwrap_or_default();
        let role = Role {
            name: name.clone(),
            issuer: spec.issuer.as_ref().map(|i| i.get_ref().clone()),
            groups: spec.groups.clone(),
            claims,
            connections: spec
                .connections
                .iter()
                .map(|c| c.get_ref().clone())
                .collect(),
        };
        if !role.has_criteria() {
            c.problem(
                &spec.name,
                format!(
                    "role {name:?} has no criteria (issuer, groups or claims): it would grant its connections to every token"
                ),
            );
        } else if role.groups.is_empty() && role.claims.is_empty() {
            c.warn(
                &spec.name,
                format!(
                    "role {name:?} matches on the issuer alone: every token that issuer signs for this audience gets it"
                ),
            );
        }
        out.push(role);
    }
    out
}

/// `claims = { path = "pattern" | ["p1", "p2"] | true | 42 }`. A nested
/// table is a dotted path: `{ realm_access.roles = "x" }` (which TOML
/// reads as a table) and `{ "realm_access.roles" = "x" }` mean the same.
fn claim_rules(c: &mut Checker<'_>, role: &str, table: &Spanned<toml::Table>) -> Vec<ClaimRule> {
    let mut rules = Vec::new();
    if table.get_ref().is_empty() {
        c.problem(table, format!("role {role:?}: claims is empty"));
    }
    let mut flat = Vec::new();
    flatten("", table.get_ref(), &mut flat);
    for (path, value) in flat {
        let scalar = |v: &toml::Value| match v {
            toml::Value::String(s) => Some(s.clone()),
            toml::Value::Boolean(b) => Some(b.to_string()),
            toml::Value::Integer(i) => Some(i.to_string()),
            toml::Value::Float(f) => Some(serde_json::Value::from(*f).to_string()),
            _ => None,
        };
        let patterns = match value {
            toml::Value::Array(items) if !items.is_empty() => {
                items.iter().map(scalar).collect::<Option<Vec<_>>>()
            }
            toml::Value::Array(_) => None,
            v => scalar(v).map(|p| vec![p]),
        };
        match patterns {
            Some(patterns) if !path.is_empty() => rules.push(ClaimRule { path, patterns }),
            _ => c.problem(
                table,
                format!(
                    "role {role:?}: claims.{path} must be a string (with * wildcards), a boolean, a number, or a non-empty list of them"
                ),
            ),
        }
    }
    rules
}

/// Leaves of nested tables as `(dotted.path, value)`.
fn flatten<'a>(prefix: &str, table: &'a toml::Table, out: &mut Vec<(String, &'a toml::Value)>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(inner) if !inner.is_empty() => flatten(&path, inner, out),
            v => out.push((path, v)),
        }
    }
}
