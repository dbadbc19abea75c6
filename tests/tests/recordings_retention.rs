//! Retention and purges: sealed recordings go by age, size or an
//! operator's purge, and every removal is written to an audit log that
//! `recordings purges` shows.

mod common;

use anyhow::Result;
use common::{World, list_sessions};
use gatehouse_tests::OutputExt;

fn two_sessions(w: &World, prefix: &str) -> Result<()> {
    let token = w.token(prefix)?;
    for i in 0..2 {
        let user = format!("{prefix}-{i}");
        w.psql(&user, &token, "select 1")?.success_text()?;
        common::ended_session_of_user(&w.gh, &user)?;
    }
    Ok(())
}

#[test]
fn an_operator_purge_removes_sealed_sessions_and_is_logged() -> Result<()> {
    let w = World::standard()?;
    two_sessions(&w, "purge-bot")?;
    let status = w.gh.run_cli(&["recordings", "status"])?;
    assert!(status.status.success(), "{}", status.stderr_text());
    assert!(
        status.stdout_text().contains("failed flushes:     0"),
        "{}",
        status.stdout_text()
    );

    let out =
        w.gh.run_cli(&["recordings", "purge", "--before", "2100-01-01"])?;
    assert!(out.status.success(), "{}", out.stderr_text());
    assert!(
        out.stdout_text().contains("purged 2 recordings"),
        "{}",
        out.stdout_text()
    );
    assert!(list_sessions(&w.gh)?.is_empty(), "nothing left");

    let log = w.gh.run_cli(&["recordings", "purges"])?.stdout_text();
    assert_eq!(log.lines().count(), 1, "{log}");
    assert!(
        log.contains("by local cli uid=0") && log.contains("2 recordings"),
        "{log}"
    );
    Ok(())
}

/// Two sessions under `config_line`, then a restart (retention runs at
/// start): both are gone and the audit log says why.
fn retention_at_restart(config_line: &str, prefix: &str, logged: &str) -> Result<()> {
    let mut w = World::start(|c, _, _| c.line_in("recordings", config_line))?;
    two_sessions(&w, prefix)?;
    w.gh.signal("TERM")?;
    w.gh.wait_exit(std::time::Duration::from_secs(20))?;
    w.gh.serve()?;
    assert!(
        list_sessions(&w.gh)?.is_empty(),
        "{config_line}: sessions remain"
    );
    let log = w.gh.run_cli(&["recordings", "purges"])?.stdout_text();
    assert!(
        log.contains("by retention") && log.contains(logged),
        "{log}"
    );
    Ok(())
}

#[test]
fn retention_by_age_applies_at_start_and_is_logged() -> Result<()> {
    // Sessions older than 0 days: all of them.
    retention_at_restart("keep_days = 0", "age-bot", "2 recordings")
}

#[test]
fn retention_by_size_removes_sealed_sessions_and_is_logged() -> Result<()> {
    // One byte cannot hold anything sealed: both go, oldest first.
    retention_at_restart("max_bytes = 1", "size-bot", "over 1 bytes")
}
