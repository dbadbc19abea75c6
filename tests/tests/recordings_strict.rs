//! Strict recording: a statement reaches PostgreSQL only after its event is
//! durable. A SIGKILL loses nothing the client saw succeed, and a recorder
//! that cannot write refuses the statement (58030) before the target sees it.

mod common;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use common::{LivePsql, SmallDisk, list_sessions, show_session, tls_target};
use gatehouse_tests::{Claims, ConfigBuilder, Gatehouse, Issuer, OutputExt, PgCluster, PolicySpec};

fn strict_config(issuer: &Issuer, pg: &PgCluster, mode: &str) -> ConfigBuilder {
    ConfigBuilder::standard(issuer, pg).policy(PolicySpec::new("default").recording(mode))
}

/// Sessions writing at once when the daemon is killed: each psql streams
/// its own numbers, so every acknowledged INSERT names its session.
const KILLED_SESSIONS: usize = 12;

#[test]
fn sigkill_loses_no_statement_the_client_saw_succeed() -> Result<()> {
    let pg = PgCluster::start()?;
    pg.psql_direct("app", "create table ledger (n int)")?;
    let issuer = Issuer::start()?;
    let mut gh = Gatehouse::start(&strict_config(&issuer, &pg, "strict"))?;
    let token = issuer.mint(&Claims::new("strict-bot").groups(["ci-deploy"]))?;

    let mut clients = Vec::new();
    for s in 0..KILLED_SESSIONS {
        let user = format!("strict-bot-{s}");
        let mut psql = LivePsql::spawn(&tls_target(&gh, "app-db", &user, &token), &["-A", "-t"])?;
        let script: String = (0..5000)
            .map(|i| format!("insert into ledger values ({});\n", s * 100_000 + i))
            .collect();
        psql.write_stdin(&script)?;
        clients.push((user, psql));
    }
    for (_, psql) in &clients {
        psql.wait_stdout(Duration::from_secs(90), |out| {
            out.matches("INSERT 0 1").count() >= 100
        })?;
    }
    gh.kill();
    // Input kept open until now, so every session was still writing; at its
    // end psql exits (it reports the lost connection and reads on).
    for (_, psql) in &mut clients {
        psql.close_stdin();
    }

    gh.serve()?;
    let headers = list_sessions(&gh)?;
    for (s, (user, mut psql)) in clients.into_iter().enumerate() {
        let _ = psql.wait(Duration::from_secs(20));
        let acknowledged = psql.stdout().matches("INSERT 0 1").count();
        assert!(acknowledged >= 100, "{user}: acknowledged {acknowledged}");
        let header = headers
            .iter()
            .find(|h| h["client_user"] == user.as_str())
            .with_context(|| format!("{user}'s session is recorded"))?;
        assert_eq!(header["outcome"], "interrupted");
        let (_, events) = show_session(&gh, header["id"].as_str().unwrap_or_default())?;
        let recorded: Vec<&str> = events
            .iter()
            .filter_map(|e| e["kind"]["sql"].as_str())
            .collect();
        for i in 0..acknowledged {
            let sql = format!("insert into ledger values ({});", s * 100_000 + i);
            if !recorded.contains(&sql.as_str()) {
                bail!(
                    "{user}: acknowledged statement {sql:?} is missing from the recording ({} recorded)",
                    recorded.len()
                );
            }
        }
    }
    let out = gh.run_cli(&["recordings", "verify", "--all"])?;
    assert!(out.status.success(), "{}", out.stdout_text());
    Ok(())
}

fn disk_full_world(mode: &str) -> Result<(PgCluster, Issuer, Gatehouse, SmallDisk, String)> {
    let pg = PgCluster::start()?;
    pg.psql_direct("app", "create table ledger (n int)")?;
    let issuer = Issuer::start()?;
    let mut gh = Gatehouse::stage(&strict_config(&issuer, &pg, mode))?;
    let disk = SmallDisk::mount(&gh.data_dir(), "16m")?;
    gh.serve()?;
    let token = issuer.mint(&Claims::new("disk-bot").groups(["ci-deploy"]))?;
    // One recorded session first, so the store exists and has been written.
    tls_target(&gh, "app-db", "warm-up", &token)
        .psql("select 1")?
        .success_text()?;
    Ok((pg, issuer, gh, disk, token))
}

#[test]
fn strict_refuses_statements_it_cannot_record() -> Result<()> {
    let (pg, _issuer, gh, disk, token) = disk_full_world("strict")?;
    disk.fill()?;
    let big = "x".repeat(100_000);
    let out = tls_target(&gh, "app-db", "disk-bot", &token)
        .psql(&format!("insert into ledger values (1) -- {big}"))?;
    let stderr = out.stderr_text();
    assert!(!out.status.success(), "the insert must be refused");
    assert!(stderr.contains("could not be recorded"), "{stderr}");
    assert_eq!(
        pg.psql_direct("app", "select count(*) from ledger")?,
        "0",
        "the target never saw it"
    );
    assert!(gh.log().contains("recording flush failed"), "{}", gh.log());
    Ok(())
}

#[test]
fn batched_goes_on_when_recording_fails_and_says_so() -> Result<()> {
    let (pg, _issuer, gh, disk, token) = disk_full_world("batched")?;
    disk.fill()?;
    let big = "x".repeat(100_000);
    let out = tls_target(&gh, "app-db", "disk-bot", &token)
        .psql(&format!("insert into ledger values (1) -- {big}"))?;
    out.success_text()?;
    assert_eq!(pg.psql_direct("app", "select count(*) from ledger")?, "1");
    common::wait_for_log(&gh, "recording flush failed", Duration::from_secs(10))?;
    Ok(())
}
