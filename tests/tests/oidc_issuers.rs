//! Several issuers at once: one over HTTPS on a private CA (`ca_file`),
//! one from a static key set (`jwks_file`). Each token is matched to its
//! issuer by `iss` before any key is fetched, identities are recorded as
//! `NAME:sub`, and each issuer's misbehaviour is refused on its own.

mod common;

use std::path::PathBuf;

use anyhow::{Context, Result};
use common::{RawPg, Startup, assert_token_not_logged, ended_session_of_user, tls_target};
use gatehouse_tests::config::quote;
use gatehouse_tests::{
    Claims, ConfigBuilder, ConnectionSpec, Gatehouse, Issuer, IssuerSpec, Minter, OutputExt,
    PgCluster, RoleSpec, SigningKey,
};

/// The `iss` of the static-key issuer. Nothing listens there, and with
/// `jwks_file` the gateway never asks.
const CI_ISSUER: &str = "https://127.0.0.1:9/ci";
const DB: &str = "app-db";

/// A PostgreSQL cluster behind a gateway trusting two issuers: `corp`,
/// served over HTTPS by a harness issuer on its own CA with roles in
/// `realm_access.roles`, and `ci`, known only from a key set file.
struct TwoIssuers {
    gh: Gatehouse,
    corp: Issuer,
    /// Holds the keys behind `ci`; its own HTTP endpoint is never used.
    ci_keys: Issuer,
    ci: Minter,
    _files: tempfile::TempDir,
    _pg: PgCluster,
}

impl TwoIssuers {
    fn start() -> Result<Self> {
        let pg = PgCluster::start()?;
        let corp = Issuer::start_https("/realms/acme")?;
        let ci_keys = Issuer::start()?;
        let ci = ci_keys.minter().for_issuer(CI_ISSUER);
        let files = tempfile::tempdir()?;
        let jwks = files.path().join("ci-jwks.json");
        ci_keys.write_jwks(&jwks)?;
        let ca = corp.ca_cert().context("HTTPS issuer has a CA")?;
        let config = two_issuer_config(corp.url(), &ca, &jwks, &pg);
        let gh = Gatehouse::start(&config)?;
        Ok(TwoIssuers {
            gh,
            corp,
            ci_keys,
            ci,
            _files: files,
            _pg: pg,
        })
    }

    fn psql(&self, user: &str, token: &str) -> Result<std::process::Output> {
        tls_target(&self.gh, DB, user, token).psql("select 'in'")
    }
}

fn two_issuer_config(
    corp_url: &str,
    ca: &std::path::Path,
    jwks: &std::path::Path,
    pg: &PgCluster,
) -> ConfigBuilder {
    // Plaintext too, for the raw client's oversized password message.
    ConfigBuilder::new(corp_url)
        .postgres_plaintext(true)
        .issuer_name("corp")
        .groups_claim("realm_access.roles")
        .line_in("auth.oidc", &format!("ca_file = {}", quote(&path(ca))))
        .issuer(
            IssuerSpec::new("ci", CI_ISSUER).line(&format!("jwks_file = {}", quote(&path(jwks)))),
        )
        .connection(ConnectionSpec::for_cluster(DB, pg))
        .role(RoleSpec::new("readers", &["db-readers"], &[DB]).line("issuer = \"corp\""))
        .role(
            RoleSpec::new("ci-main", &[], &[DB])
                .line("issuer = \"ci\"")
                .line("claims = { project_path = \"acme/*\", ref = \"main\" }"),
        )
}

/// psql failed and said `text`.
fn assert_refused(out: &std::process::Output, text: &str) {
    assert!(!out.status.success(), "accepted: {}", out.stdout_text());
    assert!(
        out.stderr_text().contains(text),
        "expected {text:?}: {}",
        out.stderr_text()
    );
}

fn path(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}

fn keycloak_claims(sub: &str, roles: &[&str]) -> Claims {
    Claims::new(sub).claim("realm_access", serde_json::json!({ "roles": roles }))
}

fn ci_claims(sub: &str, project: &str, git_ref: &str) -> Claims {
    Claims::new(sub)
        .claim("project_path", serde_json::json!(project))
        .claim("ref", serde_json::json!(git_ref))
}

#[test]
fn two_issuers_at_once_each_with_its_own_keys_and_names() -> Result<()> {
    let w = TwoIssuers::start()?;

    // corp: HTTPS on a private CA, groups from a nested claim.
    let token = w.corp.mint(&keycloak_claims(
        "svc-ai",
        &["offline_access", "db-readers"],
    ))?;
    let out = w.psql("corp-user", &token)?;
    assert_eq!(out.success_text()?, "in", "log:\n{}", w.gh.log());
    let h = ended_session_of_user(&w.gh, "corp-user")?;
    assert_eq!(h["identity"], "corp:svc-ai", "{h:#}");
    assert_eq!(h["issuer"], "corp", "{h:#}");
    assert_eq!(
        h["groups"],
        serde_json::json!(["offline_access", "db-readers"])
    );
    assert_eq!(h["roles"], serde_json::json!(["readers"]), "{h:#}");
    assert_token_not_logged(&w.gh, &token);

    // ci: keys from the file, role by claims; the subject is the same
    // text as corp's, the identity is not.
    let token = w.ci.mint(&ci_claims("svc-ai", "acme/deploy", "main"))?;
    let out = w.psql("ci-user", &token)?;
    assert_eq!(out.success_text()?, "in", "log:\n{}", w.gh.log());
    let h = ended_session_of_user(&w.gh, "ci-user")?;
    assert_eq!(h["identity"], "ci:svc-ai", "{h:#}");
    assert_eq!(h["roles"], serde_json::json!(["ci-main"]), "{h:#}");
    assert_eq!(
        h["claims"],
        serde_json::json!({ "project_path": "acme/deploy", "ref": "main" }),
        "{h:#}"
    );

    // A ci token from another project gets no role; a corp token without
    // the realm role neither.
    let token = w.ci.mint(&ci_claims("other", "evil/deploy", "main"))?;
    let out = w.psql("ci-other", &token)?;
    assert_refused(
        &out,
        &format!("connection \"{DB}\" does not exist or is not allowed"),
    );
    let token = w
        .corp
        .mint(&keycloak_claims("svc-x", &["offline_access"]))?;
    let out = w.psql("corp-other", &token)?;
    assert!(!out.status.success(), "{}", out.stdout_text());
    let h = ended_session_of_user(&w.gh, "corp-other")?;
    assert_eq!(h["outcome"], "refused", "{h:#}");
    assert_eq!(h["identity"], "corp:svc-x", "{h:#}");
    assert_eq!(h["roles"], serde_json::json!([]), "{h:#}");
    Ok(())
}

#[test]
fn a_token_naming_one_issuer_signed_by_the_others_key_is_refused() -> Result<()> {
    let w = TwoIssuers::start()?;
    // Both harness issuers call their first key `rsa-1`: the kid is
    // found, under the named issuer, and the signature does not verify.
    let forged = w
        .ci_keys
        .minter()
        .for_issuer(w.corp.url())
        .mint(&keycloak_claims("mallory", &["db-readers"]))?;
    let out = w.psql("forged-kid", &forged)?;
    assert_refused(&out, "invalid token: bad signature");
    // And the other way round, under a kid corp never published.
    let forged = w
        .corp
        .minter()
        .for_issuer(CI_ISSUER)
        .mint(&ci_claims("mallory", "acme/deploy", "main").key(SigningKey::Rsa2))?;
    let out = w.psql("forged-file", &forged)?;
    assert_refused(&out, "invalid token: unknown signing key");
    for user in ["forged-kid", "forged-file"] {
        let h = ended_session_of_user(&w.gh, user)?;
        assert_eq!(h["outcome"], "refused", "{h:#}");
        assert!(h["identity"].is_null(), "{h:#}");
    }
    Ok(())
}

#[test]
fn an_unknown_issuer_is_refused_without_a_network_call() -> Result<()> {
    let w = TwoIssuers::start()?;
    let (jwks, discovery) = (w.corp.jwks_fetches(), w.corp.discovery_fetches());
    let (ci_jwks, ci_discovery) = (w.ci_keys.jwks_fetches(), w.ci_keys.discovery_fetches());
    // An issuer that really serves discovery and keys, but is not
    // configured: its URL is never contacted.
    let stranger = Issuer::start()?;
    let token = stranger.mint(&Claims::new("eve").claim(
        "realm_access",
        serde_json::json!({ "roles": ["db-readers"] }),
    ))?;
    let out = w.psql("stranger", &token)?;
    assert_refused(&out, "invalid token: wrong issuer");
    assert_eq!(stranger.discovery_fetches() + stranger.jwks_fetches(), 0);
    assert_eq!(
        (w.corp.jwks_fetches(), w.corp.discovery_fetches()),
        (jwks, discovery)
    );
    assert_eq!(
        (w.ci_keys.jwks_fetches(), w.ci_keys.discovery_fetches()),
        (ci_jwks, ci_discovery)
    );
    let h = ended_session_of_user(&w.gh, "stranger")?;
    assert_eq!(h["outcome"], "refused", "{h:#}");
    Ok(())
}

/// A gateway whose only issuer is `issuer` over HTTPS, trusting `ca`
/// (or nothing but the system roots), granting `app-db` to group
/// `ci-deploy`; started, and a token tried against it.
fn try_issuer(issuer: &Issuer, ca: Option<PathBuf>) -> Result<(Gatehouse, std::process::Output)> {
    let pg = PgCluster::start()?;
    let mut config = ConfigBuilder::standard(issuer, &pg);
    if let Some(ca) = ca {
        config = config.line_in("auth.oidc", &format!("ca_file = {}", quote(&path(&ca))));
    }
    let gh = Gatehouse::start(&config)?;
    let token = issuer.mint(&Claims::new("alice").groups(["ci-deploy"]))?;
    let out = gh.target("app-db", "alice", &token).psql("select 1")?;
    drop(pg);
    Ok((gh, out))
}

#[test]
fn a_private_ca_is_trusted_only_when_configured() -> Result<()> {
    let issuer = Issuer::start_https("")?;
    let (gh, out) = try_issuer(&issuer, None)?;
    assert_refused(&out, "invalid token: identity provider unavailable");
    let log = gh.log();
    assert!(
        log.contains("identity provider not reachable yet") && log.contains("certificate"),
        "the log should say the certificate was not trusted:\n{log}"
    );

    let (gh, out) = try_issuer(&issuer, issuer.ca_cert())?;
    assert!(
        out.status.success(),
        "{}\nlog:\n{}",
        out.stderr_text(),
        gh.log()
    );
    Ok(())
}

#[test]
fn discovery_that_names_another_issuer_or_redirects_is_refused() -> Result<()> {
    let issuer = Issuer::start_https("/tenant")?;
    issuer.set_discovery_issuer(Some("https://127.0.0.1:9/impostor"));
    let (gh, out) = try_issuer(&issuer, issuer.ca_cert())?;
    assert_refused(&out, "invalid token: identity provider unavailable");
    assert!(
        gh.log().contains("not the configured"),
        "the log should name the mismatch:\n{}",
        gh.log()
    );
    assert_eq!(issuer.jwks_fetches(), 0, "keys fetched from an impostor");

    issuer.set_discovery_issuer(None);
    issuer.set_discovery_redirect(Some("https://127.0.0.1:9/elsewhere"));
    let (gh, out) = try_issuer(&issuer, issuer.ca_cert())?;
    assert_refused(&out, "invalid token: identity provider unavailable");
    assert!(
        gh.log().contains("redirects") && gh.log().contains("/elsewhere"),
        "the log should name the redirect:\n{}",
        gh.log()
    );
    assert_eq!(issuer.jwks_fetches(), 0);
    Ok(())
}

#[test]
fn a_groups_claim_of_the_wrong_type_and_an_oversized_token_are_refused() -> Result<()> {
    let w = TwoIssuers::start()?;
    let token = w.corp.mint(
        &Claims::new("typed").claim("realm_access", serde_json::json!({ "roles": "db-readers" })),
    )?;
    // A single string is accepted as one group; a number is not a group.
    let out = w.psql("typed-string", &token)?;
    assert_eq!(out.success_text()?, "in");
    let token = w.corp.mint(
        &Claims::new("typed").claim("realm_access", serde_json::json!({ "roles": [1, 2] })),
    )?;
    let out = w.psql("typed-number", &token)?;
    assert_refused(
        &out,
        "invalid token: malformed token: realm_access.roles claim is not a list of strings",
    );

    // Over the token cap (32 KiB) but under the password message cap: the
    // verifier refuses it before decoding anything.
    let fat = w.corp.mint(
        &keycloak_claims("fat", &["db-readers"])
            .claim("padding", serde_json::json!("x".repeat(40_000))),
    )?;
    let out = w.psql("fat", &fat)?;
    assert_refused(
        &out,
        "invalid token: malformed token: longer than 32768 bytes",
    );
    // Over the password message cap (64 KiB; too long for psql's
    // environment too): the frame itself is refused.
    let huge = w.corp.mint(
        &keycloak_claims("huge", &["db-readers"])
            .claim("padding", serde_json::json!("x".repeat(100_000))),
    )?;
    let mut raw = RawPg::connect(w.gh.pg_port())?;
    match raw.login("huge", DB, &huge)? {
        Startup::Ready => panic!("a 130 KB token was accepted"),
        Startup::Refused(e) => assert_eq!(e.sqlstate(), "08P01", "{e:?}"),
    }
    let h = ended_session_of_user(&w.gh, "huge")?;
    assert!(h["identity"].is_null(), "{h:#}");
    assert!(
        h["outcome"] == "failed" || h["outcome"] == "refused",
        "{h:#}"
    );
    // Everyone else is still served.
    let token = w.corp.mint(&keycloak_claims("after", &["db-readers"]))?;
    assert_eq!(w.psql("after", &token)?.success_text()?, "in");
    Ok(())
}
