//! Ctrl-C in psql: libpq sends a CancelRequest on a new connection, which
//! the gateway must route to the right backend.

mod common;

use std::time::{Duration, Instant};

use anyhow::Result;
use common::{
    LivePsql, World, active_count_query, ended_session_of_user, events_of_kind, kind_of,
    session_id, show_session, wait_direct,
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
