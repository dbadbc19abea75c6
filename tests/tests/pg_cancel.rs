//! Cancelling a running statement: libpq sends a CancelRequest on a new
//! connection (libpq 15's psql in plaintext; libpq 17 through TLS when the
//! session uses TLS), which the gateway must route to the right backend
//! and close the way PostgreSQL does.

mod common;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use common::{
    LivePsql, World, active_count_query, ended_session_of_user, events_of_kind, kind_of,
    session_id, show_session, wait_direct,
};
use gatehouse_tests::{
    ConfigBuilder, ConnectionSpec, Gatehouse, Issuer, OutputExt, PSYCOPG_LIBPQ17,
    PSYCOPG_LIBPQ18_0, PgCluster, PgOptions, RoleSpec,
};

#[test]
fn sigint_cancels_a_running_statement() -> Result<()> {
    let w = World::standard()?;
    let token = w.token("alice")?;
    let target = w.tls_target("app-db", "canceller", &token);
    let mut psql = LivePsql::spawn(&target, &["-c", "select pg_sleep(30)"])?;
    wait_direct(
        &w.pg,
        &active_count_query("pg_sleep(30)"),
        "1",
        Duration::from_secs(20),
    )?;

    let sent = Instant::now();
    psql.signal("INT")?;
    // The statement would run 30 s; a cancel that works ends it at once.
    // 10 s is a functional bound, not a speed target.
    psql.wait(Duration::from_secs(10))?;
    let took = sent.elapsed();
    let stderr = psql.stderr();
    assert!(
        stderr.contains("canceling statement due to user request"),
        "psql did not report a cancel (after {took:?}): {stderr}\nlog:\n{}",
        w.log()
    );
    // The backend on the real server stopped sleeping.
    wait_direct(
        &w.pg,
        &active_count_query("pg_sleep(30)"),
        "0",
        Duration::from_secs(5),
    )?;

    let header = ended_session_of_user(&w.gh, "canceller")?;
    let (_, events) = show_session(&w.gh, &session_id(&header)?)?;
    let cancels = events_of_kind(&events, "cancel");
    assert_eq!(cancels.len(), 1, "{events:#?}");
    assert_eq!(cancels[0]["dir"], "client");
    let errors = events_of_kind(&events, "error");
    assert_eq!(errors.len(), 1, "{events:#?}");
    assert_eq!(errors[0]["kind"]["code"], "57014");
    // The cancel is recorded before the error it caused.
    let pos = |kind: &str| events.iter().position(|e| kind_of(e) == kind);
    assert!(pos("cancel") < pos("error"), "{events:#?}");
    Ok(())
}

#[test]
fn cancel_request_with_an_unknown_key_cancels_nothing() -> Result<()> {
    let w = World::standard()?;
    let token = w.token("alice")?;
    let target = w.tls_target("app-db", "sleeper", &token);
    let mut psql = LivePsql::spawn(&target, &["-A", "-t", "-c", "select pg_sleep(3), 'slept'"])?;
    wait_direct(
        &w.pg,
        &active_count_query("pg_sleep(3)"),
        "1",
        Duration::from_secs(20),
    )?;
    // A forged CancelRequest (plaintext, as libpq sends them).
    let mut forged = common::RawPg::connect(w.gh.pg_port())?;
    let mut msg = 16i32.to_be_bytes().to_vec();
    msg.extend_from_slice(&80_877_102i32.to_be_bytes());
    msg.extend_from_slice(&12345i32.to_be_bytes());
    msg.extend_from_slice(&67890i32.to_be_bytes());
    forged.send(&msg)?;
    let answer = forged.until_closed()?;
    assert!(
        answer.is_empty(),
        "a CancelRequest got an answer: {answer:?}"
    );

    psql.wait(Duration::from_secs(30))?;
    assert!(
        psql.stdout().contains("slept"),
        "the statement did not finish normally: {} {}",
        psql.stdout(),
        psql.stderr()
    );
    Ok(())
}

/// libpq 17's cancel (`PQcancelBlocking`, psycopg's `cancel_safe`) sends
/// its CancelRequest after an SSLRequest when the session is on TLS;
/// libpq 18 also treats a connection closed without a TLS close_notify as
/// a failed cancel ("SSL error: unexpected eof while reading").
#[test]
fn libpq17_and_18_drivers_cancel_through_tls() -> Result<()> {
    let w = World::standard()?;
    let token = w.token("alice")?;
    for (psycopg, libpq) in [(PSYCOPG_LIBPQ17, "17"), (PSYCOPG_LIBPQ18_0, "18")] {
        let user = format!("tls-canceller-{libpq}");
        let target = w.tls_target("app-db", &user, &token);
        let out = target.python(psycopg, CANCEL_SCRIPT, &[libpq])?;
        let text = out.success_text()?;
        assert_eq!(
            text,
            "cancelled\ncancel failures: []\nstill usable",
            "libpq {libpq}; log:\n{}",
            w.log()
        );
        let header = ended_session_of_user(&w.gh, &user)?;
        let (_, events) = show_session(&w.gh, &session_id(&header)?)?;
        assert!(!events_of_kind(&events, "cancel").is_empty(), "{events:#?}");
    }
    Ok(())
}

/// Runs `select pg_sleep(30)` and cancels it from another thread with
/// `cancel_safe`; prints what happened. `sys.argv[1]`: the libpq major.
const CANCEL_SCRIPT: &str = r#"
import sys, threading, psycopg
assert psycopg.pq.version() // 10000 == int(sys.argv[1]), psycopg.pq.version()
conn = psycopg.connect("", autocommit=True)
assert conn.info.pgconn.ssl_in_use
done = threading.Event()
failures = []
def cancel():
    # A cancel that arrives before the statement runs cancels nothing:
    # repeat until the statement has ended.
    while not done.wait(0.5):
        try:
            conn.cancel_safe(timeout=10)
        except Exception as e:
            failures.append(repr(e))
            return
t = threading.Thread(target=cancel)
t.start()
try:
    conn.execute("select pg_sleep(30)")
    print("not cancelled")
except psycopg.errors.QueryCanceled:
    print("cancelled")
done.set()
t.join()
print("cancel failures:", failures)
print(conn.execute("select 'still usable'").fetchone()[0])
"#;

/// The gateway forwards a cancel the way its session reached the target:
/// through TLS for a `tls = "require"` connection.
#[test]
fn a_cancel_reaches_a_target_behind_tls() -> Result<()> {
    let pg = PgCluster::start_with(PgOptions::default().ssl(true))?;
    let issuer = Issuer::start()?;
    let config = ConfigBuilder::standard(&issuer, &pg)
        .connection(ConnectionSpec::for_cluster("tls-db", &pg).tls("require"))
        .role(RoleSpec::new("tls", &["ci-deploy"], &["tls-db"]));
    let gh = Gatehouse::start(&config)?;
    let token = issuer.mint(&gatehouse_tests::Claims::new("alice").groups(["ci-deploy"]))?;
    let target = common::tls_target(&gh, "tls-db", "tls-target-canceller", &token);
    let mut psql = LivePsql::spawn(&target, &["-c", "select pg_sleep(30)"])?;
    wait_direct(
        &pg,
        &active_count_query("pg_sleep(30)"),
        "1",
        Duration::from_secs(20),
    )
    .with_context(|| format!("psql: {}\nlog:\n{}", psql.stderr(), gh.log()))?;
    psql.signal("INT")?;
    psql.wait(Duration::from_secs(10))?;
    assert!(
        psql.stderr()
            .contains("canceling statement due to user request"),
        "{}\nlog:\n{}",
        psql.stderr(),
        gh.log()
    );
    Ok(())
}
