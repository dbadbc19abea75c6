//! Keys that change while the gateway runs: a rotation at the identity
//! provider under a flood of forged key ids, and SIGHUP reloading a static
//! key set, roles and the TLS certificate without dropping anyone.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use common::{APP_DB, DEPLOY_GROUP, RawPg, Startup, World, query, tls_target};
use gatehouse_tests::config::quote;
use gatehouse_tests::tls::TestCa;
use gatehouse_tests::{
    Claims, ConfigBuilder, ConnectionSpec, Gatehouse, Issuer, OutputExt, PgCluster, RoleSpec,
    SigningKey,
};

/// How long a test waits for the daemon to log that it reloaded.
const RELOAD_WAIT: Duration = Duration::from_secs(30);

/// Logs in with the raw client; `Ok(None)` when ready, else the error.
fn raw_login(port: u16, user: &str, token: &str) -> Result<Option<(String, String)>> {
    let mut raw = RawPg::connect(port)?;
    Ok(match raw.login(user, APP_DB, token)? {
        Startup::Ready => {
            raw.terminate()?;
            None
        }
        Startup::Refused(e) => Some((e.sqlstate(), e.message())),
    })
}

/// Waits until the daemon log shows `needle` `count` times.
fn wait_for_log(gh: &Gatehouse, needle: &str, count: usize) -> Result<()> {
    let deadline = Instant::now() + RELOAD_WAIT;
    while gh.log().matches(needle).count() < count {
        if Instant::now() > deadline {
            bail!("no {needle:?} (x{count}) in the log:\n{}", gh.log());
        }
        thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Someone who can send tokens sends a steady stream of tokens under key
/// ids nobody publishes, while the provider rotates its signing key. Every
/// legitimate token under the new key is accepted (it waits for the next
/// allowed refresh instead of being refused for the rate limit), every
/// forged one is refused as an unknown key, and the provider sees one key
/// download per rate-limit interval, not one per forged token.
#[test]
fn a_flood_of_foreign_kids_cannot_keep_a_rotation_failing() -> Result<()> {
    let w = World::start(|c, _, _| c.postgres_plaintext(true).startup_timeout("20s"))?;
    let port = w.gh.pg_port();
    let flood = Claims::new("mallory")
        .groups([DEPLOY_GROUP])
        .key(SigningKey::Rogue);
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicUsize::new(0));
    let flooders: Vec<_> = (0..6)
        .map(|t| {
            let (stop, refused) = (stop.clone(), refused.clone());
            let minter = w.issuer.minter().clone();
            let flood = flood.clone();
            thread::spawn(move || -> Result<()> {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let token = minter.mint(&flood.clone().kid(&format!("forged-{t}-{n}")))?;
                    match raw_login(port, "flood", &token)? {
                        None => bail!("a forged key id was accepted"),
                        Some((code, message)) => {
                            if code != "28000" || message != "invalid token: unknown signing key" {
                                bail!("forged token refused as {code} {message:?}");
                            }
                            refused.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
                Ok(())
            })
        })
        .collect();

    // Let the flood run past a refresh or two, then rotate.
    thread::sleep(Duration::from_secs(3));
    let fetches_before = w.issuer.jwks_fetches();
    let started = Instant::now();
    w.issuer.rotate();
    let rotated = Claims::new("deployer")
        .groups([DEPLOY_GROUP])
        .key(SigningKey::Rsa2);
    for i in 0..6 {
        let token = w.issuer.mint(&rotated)?;
        let user = format!("rotated-{i}");
        if let Some((code, message)) = raw_login(port, &user, &token)? {
            stop.store(true, Ordering::SeqCst);
            bail!(
                "token under the rotated key refused: {code} {message}\nlog:\n{}",
                w.log()
            );
        }
        thread::sleep(Duration::from_millis(700));
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    for f in flooders {
        f.join().expect("flood thread")?;
    }
    assert!(refused.load(Ordering::SeqCst) >= 6, "the flood did run");
    // One download per 5 s interval, plus the one a waiting token may
    // start at the end of the window: never one per forged token.
    let fetched = w.issuer.jwks_fetches() - fetches_before;
    let allowed = elapsed.as_secs() as usize / 5 + 2;
    assert!(
        fetched <= allowed,
        "{fetched} key downloads in {elapsed:?} (at most {allowed})"
    );
    // The retired key no longer verifies, the new one still does.
    let old = w.issuer.mint(&Claims::new("old").groups([DEPLOY_GROUP]))?;
    let out = w.psql("old-key", &old, "select 1")?;
    assert!(
        out.stderr_text()
            .contains("invalid token: unknown signing key"),
        "{}",
        out.stderr_text()
    );
    Ok(())
}

/// The `iss` of the static-key issuer; nothing listens there.
const STATIC_ISSUER: &str = "https://127.0.0.1:9/air-gapped";

#[test]
fn sighup_reloads_the_key_file_and_roles_and_nobody_is_dropped() -> Result<()> {
    let pg = PgCluster::start()?;
    let keys = Issuer::start()?;
    let minter = keys.minter().for_issuer(STATIC_ISSUER);
    let files = tempfile::tempdir()?;
    let jwks = files.path().join("jwks.json");
    keys.write_jwks(&jwks)?;
    let config = static_config(
        &jwks,
        &pg,
        RoleSpec::new("deployers", &[DEPLOY_GROUP], &[APP_DB]),
    );
    let mut gh = Gatehouse::start(&config)?;
    let port = gh.pg_port();
    let before = minter.mint(&Claims::new("early").groups([DEPLOY_GROUP]))?;
    assert_eq!(
        raw_login(port, "early", &before)?,
        None,
        "log:\n{}",
        gh.log()
    );

    // A session that stays open across every reload below.
    let mut live = RawPg::connect(port)?;
    live.login_ok("live", APP_DB, &before)?;

    // The provider rotates; the file is replaced by hand, then SIGHUP.
    let rotated = minter.mint(
        &Claims::new("late")
            .groups([DEPLOY_GROUP])
            .key(SigningKey::Rsa2),
    )?;
    let refused = raw_login(port, "late-1", &rotated)?;
    assert_eq!(
        refused.as_ref().map(|(_, m)| m.as_str()),
        Some("invalid token: unknown signing key")
    );
    keys.rotate();
    keys.write_jwks(&jwks)?;
    gh.signal("HUP")?;
    wait_for_log(&gh, "reloaded issuers, roles and the TLS certificate", 1)?;
    assert_eq!(
        raw_login(port, "late-2", &rotated)?,
        None,
        "log:\n{}",
        gh.log()
    );
    let old = minter.mint(&Claims::new("old").groups([DEPLOY_GROUP]))?;
    assert!(
        raw_login(port, "old", &old)?.is_some(),
        "a retired key still verifies"
    );

    // A broken config is refused whole: the daemon keeps its running one.
    let good_config = std::fs::read_to_string(gh.config_path())?;
    std::fs::write(
        gh.config_path(),
        good_config.replace("[[roles]]", "[[rolez]]"),
    )?;
    gh.signal("HUP")?;
    wait_for_log(&gh, "reload refused, the running configuration stays", 1)?;
    assert!(
        gh.is_running(),
        "SIGHUP with a bad config killed the daemon"
    );
    assert_eq!(raw_login(port, "after-bad", &rotated)?, None);

    // A role removed by a reload refuses the next session, with the same
    // answer as an unknown connection; the open session goes on.
    let no_roles = static_config(
        &jwks,
        &pg,
        RoleSpec::new("others", &["someone-else"], &[APP_DB]),
    );
    gh.rewrite_config(&no_roles)?;
    gh.signal("HUP")?;
    wait_for_log(&gh, "reloaded issuers, roles and the TLS certificate", 2)?;
    let (code, message) = raw_login(port, "after-roles", &rotated)?.context("refused")?;
    assert_eq!(code, "3D000", "{message}");

    live.send(&query("select 'still here'"))?;
    let msgs = live.until_ready()?;
    assert!(
        msgs.iter().any(|m| m.tag == b'D'),
        "the open session lost its answer: {msgs:?}"
    );
    assert!(gh.is_running());
    Ok(())
}

/// A gateway trusting only the static key set in `jwks`, with one role.
fn static_config(jwks: &std::path::Path, pg: &PgCluster, role: RoleSpec) -> ConfigBuilder {
    ConfigBuilder::new(STATIC_ISSUER)
        .postgres_plaintext(true)
        .line_in(
            "auth.oidc",
            &format!("jwks_file = {}", quote(&jwks.to_string_lossy())),
        )
        .connection(ConnectionSpec::for_cluster(APP_DB, pg))
        .role(role)
}

#[test]
fn sighup_reloads_the_listener_certificate() -> Result<()> {
    let first = TestCa::generate("first")?;
    let second = TestCa::generate("second")?;
    let files = tempfile::tempdir()?;
    let cert = files.path().join("server.crt");
    let key = files.path().join("server.key");
    std::fs::copy(first.server_cert(), &cert)?;
    std::fs::copy(first.server_key(), &key)?;
    let w = World::start(|c, _, _| {
        c.raw(&format!(
            "[tls]\ncert = {}\nkey = {}\n",
            quote(&cert.to_string_lossy()),
            quote(&key.to_string_lossy())
        ))
    })?;
    let token = w.token("tls-check")?;
    let with_ca = |ca: &std::path::Path| {
        let mut target = tls_target(&w.gh, APP_DB, "tls", &token);
        target.sslrootcert = Some(ca.to_path_buf());
        target.psql("select 'tls'")
    };
    assert_eq!(with_ca(&first.ca_cert())?.success_text()?, "tls");
    assert!(!with_ca(&second.ca_cert())?.status.success());

    std::fs::copy(second.server_cert(), &cert)?;
    std::fs::copy(second.server_key(), &key)?;
    w.gh.signal("HUP")?;
    wait_for_log(&w.gh, "TLS certificate reloaded", 1)?;
    assert_eq!(with_ca(&second.ca_cert())?.success_text()?, "tls");
    let out = with_ca(&first.ca_cert())?;
    assert!(!out.status.success(), "the old certificate is still served");

    // A key that does not match the certificate is refused; the good pair
    // stays in service.
    std::fs::copy(first.server_key(), &key)?;
    w.gh.signal("HUP")?;
    wait_for_log(&w.gh, "TLS certificate not reloaded", 1)?;
    assert_eq!(with_ca(&second.ca_cert())?.success_text()?, "tls");
    Ok(())
}
