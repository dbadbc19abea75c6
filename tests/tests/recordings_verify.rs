//! `gatehouse recordings verify`: recordings of real sessions verify, and a
//! daemon killed with SIGKILL leaves sessions that are marked interrupted,
//! sealed, and still verify after the restart.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{LivePsql, World, list_sessions};
use gatehouse_tests::OutputExt;

#[test]
fn recorded_sessions_verify_with_the_appliance_key() -> Result<()> {
    let w = World::standard()?;
    let token = w.token("verify-bot")?;
    for i in 0..3 {
        let user = format!("verify-bot-{i}");
        w.psql(&user, &token, &format!("select {i}"))?
            .success_text()?;
        common::ended_session_of_user(&w.gh, &user)?;
    }
    let out = w.gh.run_cli(&["recordings", "verify", "--all"])?;
    let text = out.stdout_text();
    assert!(
        out.status.success(),
        "verify failed: {text}{}",
        out.stderr_text()
    );
    assert_eq!(
        text.lines().filter(|l| l.contains("  ok (")).count(),
        3,
        "{text}"
    );
    assert!(text.starts_with("key sha256:"), "{text}");
    Ok(())
}

#[test]
fn sessions_cut_by_sigkill_are_interrupted_sealed_and_verify() -> Result<()> {
    let mut w = World::standard()?;
    let token = w.token("crash-bot")?;
    let mut psql = LivePsql::spawn(&w.tls_target("app-db", "crash-bot", &token), &["-A", "-t"])?;
    psql.write_stdin("select 'before-crash';\n")?;
    psql.wait_stdout(Duration::from_secs(20), |out| out.contains("before-crash"))?;
    // Well past the 200 ms flush interval, so the statement is durable.
    std::thread::sleep(Duration::from_millis(800));
    w.gh.kill();
    w.gh.serve()?;

    let sessions = list_sessions(&w.gh)?;
    let crashed = sessions
        .iter()
        .find(|h| h["client_user"] == "crash-bot")
        .expect("the crashed session is recorded");
    assert_eq!(crashed["outcome"], "interrupted", "{crashed}");
    let id = crashed["id"].as_str().unwrap_or_default().to_owned();
    let (_, events) = common::show_session(&w.gh, &id)?;
    assert!(
        events
            .iter()
            .any(|e| e["kind"]["sql"] == "select 'before-crash';"),
        "the durable statement survives: {events:?}"
    );
    let out = w.gh.run_cli(&["recordings", "verify", &id])?;
    assert!(
        out.status.success(),
        "{}{}",
        out.stdout_text(),
        out.stderr_text()
    );
    assert!(out.stdout_text().contains("ok ("), "{}", out.stdout_text());
    drop(psql);
    Ok(())
}
