//! Authentication and authorization failures as an agent sees them, as the
//! recording shows them, and what the daemon log must never contain.
//!
//! Each case is checked twice: with `psql` over verified TLS (the message a
//! user reads) and with a raw plaintext client (the exact SQLSTATE, which
//! libpq does not print for connection-time errors).

mod common;

use std::thread;
use std::time::Duration;

use anyhow::Result;
use common::{
    APP_DB, DEPLOY_GROUP, RawPg, Startup, World, assert_token_not_logged, ended_session_of_user,
};
use gatehouse_tests::token::now;
use gatehouse_tests::{Claims, ConnectionSpec, OutputExt, RoleSpec, SigningKey};

/// A connection that exists but is granted only to another group.
const REPORTS_DB: &str = "reports-db";
const ANALYSTS_GROUP: &str = "analysts";
/// A connection whose target does not listen.
const DEAD_DB: &str = "dead-db";
/// A connection whose held credential the target rejects.
const BADPW_DB: &str = "badpw-db";
const WRONG_PASSWORD: &str = "definitely-not-the-password-7f3a";

/// The standard world plus plaintext (for the raw client) and the extra
/// connections the authorization tests need.
fn auth_world() -> Result<World> {
    World::start(|config, _, pg| {
        config
            .postgres_plaintext(true)
            .connection(ConnectionSpec::for_cluster(REPORTS_DB, pg))
            .role(RoleSpec::new("analysts", &[ANALYSTS_GROUP], &[REPORTS_DB]))
            .connection(ConnectionSpec::dead(DEAD_DB).expect("a free port"))
            .connection(ConnectionSpec::postgres(
                BADPW_DB,
                &pg.address(),
                "app",
                "gatehouse",
                WRONG_PASSWORD,
            ))
            .role(RoleSpec::new(
                "deployers-extra",
                &[DEPLOY_GROUP],
                &[DEAD_DB, BADPW_DB],
            ))
    })
}

/// What a refused connection attempt must look like.
struct Refusal<'a> {
    /// The exact message the client receives.
    message: &'a str,
    sqlstate: &'a str,
    outcome: &'a str,
    /// Text the recorded reason must contain.
    reason_contains: &'a str,
}

/// Connects with `token` to `dbname` with psql (TLS) as `psql-<case>` and
/// with the raw client (plaintext) as `raw-<case>`, and checks both
/// attempts and their recordings against `want`. Returns psql's stderr.
fn check_refused(
    w: &World,
    case: &str,
    dbname: &str,
    token: &str,
    want: &Refusal,
) -> Result<String> {
    let psql_user = format!("psql-{case}");
    let out = w.tls_target(dbname, &psql_user, token).psql("select 1")?;
    let stderr = out.stderr_text();
    assert!(
        !out.status.success(),
        "[{case}] psql succeeded with a token that must be refused; stdout: {}",
        out.stdout_text()
    );
    assert!(
        stderr.contains(&format!("FATAL:  {}", want.message)),
        "[{case}] psql stderr does not carry {:?}: {stderr}",
        want.message
    );

    let raw_user = format!("raw-{case}");
    let mut raw = RawPg::connect(w.gh.pg_port())?;
    match raw.login(&raw_user, dbname, token)? {
        Startup::Ready => panic!("[{case}] raw login succeeded with a token that must be refused"),
        Startup::Refused(e) => {
            assert_eq!(e.sqlstate(), want.sqlstate, "[{case}] SQLSTATE of {e:?}");
            assert_eq!(e.message(), want.message, "[{case}] message");
            assert_eq!(
                e.fields().get(&'S').map(String::as_str),
                Some("FATAL"),
                "[{case}] severity"
            );
        }
    }
    raw.until_closed()?;

    for user in [&psql_user, &raw_user] {
        let header = ended_session_of_user(&w.gh, user)?;
        assert_eq!(
            header["outcome"], want.outcome,
            "[{case}] outcome of {user}'s session: {header:#}"
        );
        let reason = header["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains(want.reason_contains),
            "[{case}] recorded reason {reason:?} does not mention {:?}",
            want.reason_contains
        );
        assert_eq!(header["connection"], dbname, "[{case}] recorded connection");
    }
    assert_token_not_logged(&w.gh, token);
    Ok(stderr)
}

/// A bad token: refused with 28000 `invalid token: <reason>`, recorded as
/// refused with the reason.
fn check_bad_token(
    case: &str,
    reason: &str,
    make: impl Fn(&World) -> Result<String>,
) -> Result<()> {
    let w = auth_world()?;
    let token = make(&w)?;
    let message = format!("invalid token: {reason}");
    check_refused(
        &w,
        case,
        APP_DB,
        &token,
        &Refusal {
            message: &message,
            sqlstate: "28000",
            outcome: "refused",
            reason_contains: &message,
        },
    )?;
    // The identity never verified, so the recording must not claim one.
    let header = ended_session_of_user(&w.gh, &format!("psql-{case}"))?;
    assert!(
        header["identity"].is_null(),
        "[{case}] a refused token left an identity in the recording: {header:#}"
    );
    // The same world accepts a good token: the refusal was about the token.
    let good = w.token("alice")?;
    let out = w.psql("control", &good, "select 'ok'")?;
    assert_eq!(out.success_text()?, "ok", "log:\n{}", w.log());
    assert_token_not_logged(&w.gh, &good);
    Ok(())
}

fn alice() -> Claims {
    Claims::new("alice").groups([DEPLOY_GROUP])
}

#[test]
fn expired_token_is_refused() -> Result<()> {
    // Well past the verifier's clock-skew leeway.
    check_bad_token("expired", "token expired", |w| {
        w.issuer.mint(&alice().exp_in(-600))
    })
}

#[test]
fn wrong_audience_is_refused() -> Result<()> {
    check_bad_token("audience", "wrong audience", |w| {
        w.issuer.mint(&alice().aud("some-other-service"))
    })
}

#[test]
fn wrong_issuer_is_refused() -> Result<()> {
    check_bad_token("issuer", "wrong issuer", |w| {
        w.issuer.mint(&alice().iss("https://issuer.evil.example"))
    })
}

#[test]
fn unknown_signing_key_is_refused() -> Result<()> {
    check_bad_token("rogue-kid", "unknown signing key", |w| {
        w.issuer.mint(&alice().key(SigningKey::Rogue))
    })
}

#[test]
fn tampered_signature_is_refused() -> Result<()> {
    check_bad_token("bad-sig", "bad signature", |w| {
        w.issuer.token_bad_signature(&alice())
    })
}

#[test]
fn token_signed_by_another_key_under_a_trusted_kid_is_refused() -> Result<()> {
    check_bad_token("wrong-key", "bad signature", |w| {
        w.issuer.token_wrong_key(&alice())
    })
}

#[test]
fn alg_none_is_refused() -> Result<()> {
    let w = auth_world()?;
    let token = w.issuer.token_alg_none(&alice())?;
    // The reason text may say the algorithm is not allowed or that the
    // token is not a signed JWT; what matters is 28000, "invalid token"
    // and a refusal.
    let psql_user = "psql-alg-none";
    let out = w.tls_target(APP_DB, psql_user, &token).psql("select 1")?;
    assert!(!out.status.success(), "alg none accepted");
    let stderr = out.stderr_text();
    assert!(
        stderr.contains("FATAL:  invalid token: algorithm")
            || stderr.contains("FATAL:  invalid token: malformed token"),
        "unexpected refusal text: {stderr}"
    );
    let mut raw = RawPg::connect(w.gh.pg_port())?;
    match raw.login("raw-alg-none", APP_DB, &token)? {
        Startup::Ready => panic!("alg none accepted by the raw login"),
        Startup::Refused(e) => {
            assert_eq!(e.sqlstate(), "28000", "{e:?}");
            assert!(e.message().starts_with("invalid token: "), "{e:?}");
        }
    }
    let header = ended_session_of_user(&w.gh, psql_user)?;
    assert_eq!(header["outcome"], "refused", "{header:#}");
    assert!(
        header["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("invalid token: "),
        "{header:#}"
    );
    assert!(header["identity"].is_null(), "{header:#}");
    assert_token_not_logged(&w.gh, &token);
    Ok(())
}

#[test]
fn hs256_signed_with_the_public_key_is_refused() -> Result<()> {
    check_bad_token("hs256", "algorithm HS256 is not allowed", |w| {
        w.issuer.token_hs256_with_public_key(&alice())
    })
}

#[test]
fn not_yet_valid_token_is_refused() -> Result<()> {
    check_bad_token("nbf", "token not yet valid", |w| {
        w.issuer.mint(&alice().nbf_in(600))
    })
}

#[test]
fn token_issued_in_the_future_is_refused() -> Result<()> {
    check_bad_token("iat", "token issued in the future", |w| {
        w.issuer.mint(&alice().iat(now() + 600).exp_in(1200))
    })
}

#[test]
fn garbage_token_is_refused_as_malformed() -> Result<()> {
    let w = auth_world()?;
    let token = "this-is-not-a-jwt-0123456789";
    let stderr = check_refused(
        &w,
        "garbage",
        APP_DB,
        token,
        &Refusal {
            message: "invalid token: malformed token: not a signed JWT",
            sqlstate: "28000",
            outcome: "refused",
            reason_contains: "malformed token",
        },
    )?;
    assert!(
        !stderr.contains(token),
        "the token is echoed back: {stderr}"
    );
    Ok(())
}

#[test]
fn unknown_and_forbidden_connections_read_the_same() -> Result<()> {
    let w = auth_world()?;
    let token = w.token("alice")?;
    let message = |name: &str| {
        format!("connection \"{name}\" does not exist or is not allowed for this identity")
    };

    let unknown = check_refused(
        &w,
        "unknown-conn",
        "nope-db",
        &token,
        &Refusal {
            message: &message("nope-db"),
            sqlstate: "3D000",
            outcome: "refused",
            reason_contains: "no such connection",
        },
    )?;
    let forbidden = check_refused(
        &w,
        "forbidden-conn",
        REPORTS_DB,
        &token,
        &Refusal {
            message: &message(REPORTS_DB),
            sqlstate: "3D000",
            outcome: "refused",
            reason_contains: "no role grants it",
        },
    )?;
    // Apart from the name the client itself sent, nothing tells the two
    // apart.
    assert_eq!(
        unknown.replace("nope-db", "NAME"),
        forbidden.replace(REPORTS_DB, "NAME"),
        "unknown and forbidden connections are distinguishable"
    );
    // The identity did verify, so the recording names it.
    let header = ended_session_of_user(&w.gh, "psql-forbidden-conn")?;
    assert_eq!(header["identity"], "oidc:alice", "{header:#}");

    // The forbidden connection works for the group it is granted to, so the
    // refusal above was about the grant, not a broken connection.
    let analyst = w
        .issuer
        .mint(&Claims::new("bob").groups([ANALYSTS_GROUP]))?;
    let out = w
        .tls_target(REPORTS_DB, "bob", &analyst)
        .psql("select 'reports'")?;
    assert_eq!(out.success_text()?, "reports", "log:\n{}", w.log());
    // ...and the analyst is not granted app-db.
    let out = w.tls_target(APP_DB, "bob", &analyst).psql("select 1")?;
    assert!(
        out.stderr_text().contains(&message(APP_DB)),
        "{}",
        out.stderr_text()
    );
    Ok(())
}

#[test]
fn unreachable_target_is_reported_without_its_address() -> Result<()> {
    let w = auth_world()?;
    let token = w.token("alice")?;
    let stderr = check_refused(
        &w,
        "dead",
        DEAD_DB,
        &token,
        &Refusal {
            message: &format!("connection \"{DEAD_DB}\" is unreachable"),
            sqlstate: "08006",
            outcome: "failed",
            reason_contains: "unreachable",
        },
    )?;
    let dead_address =
        w.gh.config()
            .render(w.gh.workdir(), w.gh.pg_port())
            .lines()
            .skip_while(|l| !l.contains(&format!("name = \"{DEAD_DB}\"")))
            .find_map(|l| {
                l.strip_prefix("address = ")
                    .map(|a| a.trim_matches('"').to_owned())
            })
            .expect("dead-db address in the config");
    let dead_port = dead_address.rsplit(':').next().unwrap_or_default();
    assert!(
        !stderr.contains(dead_port),
        "the client learns the target address {dead_address}: {stderr}"
    );
    Ok(())
}

#[test]
fn target_refusing_the_gateway_credential_is_generic_for_the_client() -> Result<()> {
    let w = auth_world()?;
    let token = w.token("alice")?;
    let stderr = check_refused(
        &w,
        "badpw",
        BADPW_DB,
        &token,
        &Refusal {
            message: "the gateway could not authenticate to the target; an administrator has the details",
            sqlstate: "28000",
            outcome: "refused",
            reason_contains: "password authentication failed",
        },
    )?;
    assert!(
        !stderr.contains("password authentication failed"),
        "the client sees the target's reason: {stderr}"
    );
    assert!(!stderr.contains(WRONG_PASSWORD), "{stderr}");
    let log = w.log();
    assert!(
        log.contains("password authentication failed"),
        "the daemon log lacks the real cause:\n{log}"
    );
    assert!(
        !log.contains(WRONG_PASSWORD),
        "the daemon log contains the held credential:\n{log}"
    );
    assert!(
        !log.contains(w.pg.password()),
        "the daemon log contains a held credential:\n{log}"
    );
    Ok(())
}

#[test]
fn unknown_kid_triggers_a_rate_limited_key_refresh() -> Result<()> {
    let w = World::standard()?;
    let claims = Claims::new("rotator")
        .groups([DEPLOY_GROUP])
        .key(SigningKey::Rsa2);

    // rsa-2 is not published yet.
    let early = w.issuer.mint(&claims)?;
    let out = w.psql("rotator", &early, "select 1")?;
    assert!(
        out.stderr_text()
            .contains("FATAL:  invalid token: unknown signing key"),
        "{}",
        out.stderr_text()
    );

    // Publish it and wait out the refresh rate limit (5 s).
    w.issuer.publish_rsa2();
    thread::sleep(Duration::from_millis(6500));
    let late = w.issuer.mint(&claims)?;
    let out = w.psql("rotator", &late, "select 'rotated'")?;
    assert_eq!(out.success_text()?, "rotated", "log:\n{}", w.log());

    // A burst of tokens under a kid nobody publishes, arriving together
    // after the rate-limit window: at most a couple of key set downloads.
    thread::sleep(Duration::from_millis(6500));
    let before = w.issuer.jwks_fetches();
    let rogue = w.issuer.mint(
        &Claims::new("flood")
            .groups([DEPLOY_GROUP])
            .key(SigningKey::Rogue),
    )?;
    let target = w.tls_target(APP_DB, "flood", &rogue);
    let attempts: Vec<_> = (0..20)
        .map(|_| {
            let target = target.clone();
            thread::spawn(move || target.psql("select 1"))
        })
        .collect();
    for attempt in attempts {
        let out = attempt.join().expect("psql thread")?;
        assert!(
            out.stderr_text()
                .contains("FATAL:  invalid token: unknown signing key"),
            "{}",
            out.stderr_text()
        );
    }
    let fetched = w.issuer.jwks_fetches() - before;
    assert!(
        fetched <= 2,
        "20 unknown-kid tokens caused {fetched} JWKS downloads (rate limit is one per 5 s)"
    );
    Ok(())
}

#[test]
fn es256_token_is_accepted_and_recorded_with_its_identity() -> Result<()> {
    let w = World::standard()?;
    let token = w.issuer.mint(
        &Claims::new("ec-agent")
            .groups([DEPLOY_GROUP, "other"])
            .es256(),
    )?;
    let out = w.psql("ec-user", &token, "select 'ec ok'")?;
    assert_eq!(out.success_text()?, "ec ok", "log:\n{}", w.log());
    let header = ended_session_of_user(&w.gh, "ec-user")?;
    assert_eq!(header["outcome"], "closed", "{header:#}");
    assert_eq!(header["identity"], "oidc:ec-agent", "{header:#}");
    assert_eq!(header["issuer"], "oidc", "{header:#}");
    assert_eq!(
        header["roles"],
        serde_json::json!(["deployers"]),
        "{header:#}"
    );
    assert_eq!(
        header["groups"],
        serde_json::json!([DEPLOY_GROUP, "other"]),
        "{header:#}"
    );
    assert_token_not_logged(&w.gh, &token);
    Ok(())
}
