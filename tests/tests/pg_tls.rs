//! Client-side TLS: verified TLS against the generated CA works, plaintext
//! is refused unless configured, and GSSAPI encryption is declined so
//! clients fall back to TLS.

mod common;

use anyhow::{Result, bail};
use common::{
    GSSENC_REQUEST, RawPg, SSL_REQUEST, Startup, World, list_sessions, special_request,
    startup_message,
};
use gatehouse_tests::process::run;
use gatehouse_tests::{OutputExt, SslMode};
use std::process::Command;
use std::time::{Duration, Instant};

const REQUIRES_TLS: &str = "Gatehouse requires TLS: connect with sslmode=require or stricter";

#[test]
fn verify_full_against_the_generated_ca() -> Result<()> {
    let w = World::standard()?;
    let token = w.token("alice")?;
    // Both names the certificate is issued for.
    for host in ["127.0.0.1", "localhost"] {
        let mut target = w.tls_target("app-db", "alice", &token);
        target.host = host.into();
        let out = target.psql("select 'verified'")?;
        assert_eq!(
            out.success_text()?,
            "verified",
            "host {host}; log:\n{}",
            w.log()
        );
    }
    Ok(())
}

#[test]
fn plaintext_startup_is_refused_when_not_allowed() -> Result<()> {
    let w = World::standard()?;
    let token = w.token("alice")?;

    let mut target = w.tls_target("app-db", "plain-psql", &token);
    target.sslmode = SslMode::Disable;
    target.sslrootcert = None;
    let out = target.psql("select 1")?;
    assert!(!out.status.success(), "a plaintext session got in");
    assert!(
        out.stderr_text()
            .contains(&format!("FATAL:  {REQUIRES_TLS}")),
        "{}",
        out.stderr_text()
    );

    let mut raw = RawPg::connect(w.gh.pg_port())?;
    match raw.login("plain-raw", "app-db", &token)? {
        Startup::Ready => bail!("a plaintext raw session got in"),
        Startup::Refused(e) => {
            assert_eq!(e.sqlstate(), "08P01", "{e:?}");
            assert_eq!(e.message(), REQUIRES_TLS);
        }
    }
    // The token was never asked for, let alone checked.
    assert!(!w.log().contains(&token));

    // Both refusals are recorded as such.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let sessions = list_sessions(&w.gh)?;
        let plaintext: Vec<_> = sessions
            .iter()
            .filter(|h| {
                h["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("plaintext"))
            })
            .collect();
        if plaintext.len() == 2 {
            for h in plaintext {
                assert_eq!(h["outcome"], "refused", "{h:#}");
                assert!(h["identity"].is_null(), "{h:#}");
            }
            break;
        }
        if Instant::now() >= deadline {
            bail!("expected two recorded plaintext refusals: {sessions:#?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    // sslmode=prefer falls through to TLS and works.
    let mut target = w.tls_target("app-db", "prefer", &token);
    target.sslmode = SslMode::Prefer;
    target.sslrootcert = None;
    let out = target.psql("select 'tls via prefer'")?;
    assert_eq!(out.success_text()?, "tls via prefer", "log:\n{}", w.log());
    Ok(())
}

#[test]
fn gssenc_request_is_declined_and_negotiation_continues() -> Result<()> {
    let w = World::standard()?;
    let token = w.token("alice")?;

    // GSSENCRequest → 'N', then SSLRequest → 'S' on the same connection.
    let mut raw = RawPg::connect(w.gh.pg_port())?;
    raw.send(&special_request(GSSENC_REQUEST))?;
    assert_eq!(raw.read_byte()? as char, 'N');
    raw.send(&special_request(SSL_REQUEST))?;
    assert_eq!(raw.read_byte()? as char, 'S');
    drop(raw);

    // GSSENCRequest → 'N', then a plaintext startup: still refused for
    // want of TLS, with a proper error rather than a dropped connection.
    let mut raw = RawPg::connect(w.gh.pg_port())?;
    raw.send(&special_request(GSSENC_REQUEST))?;
    assert_eq!(raw.read_byte()? as char, 'N');
    raw.send(&startup_message(&[("user", "gss"), ("database", "app-db")]))?;
    let error = raw.expect_fatal_then_close()?;
    assert_eq!(error.sqlstate(), "08P01", "{error:?}");
    assert_eq!(error.message(), REQUIRES_TLS);

    // psql asked to prefer GSSAPI encryption still ends up on TLS.
    let target = w.tls_target("app-db", "alice", &token);
    let mut cmd = Command::new("psql");
    cmd.args(["-X", "-w", "-A", "-t", "-c", "select 'gss prefer ok'"]);
    target.apply_env(&mut cmd);
    cmd.env("PGGSSENCMODE", "prefer");
    let out = run(&mut cmd, Duration::from_secs(60))?;
    assert_eq!(out.success_text()?, "gss prefer ok", "log:\n{}", w.log());
    Ok(())
}
