//! pgbench through the gateway in each query mode: the standard benchmark
//! must complete every transaction, with none failed.

mod common;

use anyhow::{Context, Result};
use common::World;
use gatehouse_tests::OutputExt;

const CLIENTS: u32 = 4;
const TRANSACTIONS: u32 = 50;

/// Initializes pgbench's tables through the gateway, runs one benchmark in
/// `mode`, and checks pgbench's own accounting and the database's.
fn bench(mode: &str) -> Result<()> {
    let w = World::standard()?;
    let token = w.token("bench")?;
    let target = w.tls_target("app-db", "bench", &token);

    let init = target.pgbench(&["-i", "-s", "1"])?;
    init.success_text().with_context(|| {
        format!(
            "pgbench -i failed: {}\nlog:\n{}",
            init.stderr_text(),
            w.log()
        )
    })?;
    assert_eq!(
        w.pg.psql_direct("app", "select count(*) from pgbench_accounts")?,
        "100000"
    );

    let run = target.pgbench(&[
        "-M",
        mode,
        "-c",
        &CLIENTS.to_string(),
        "-j",
        "2",
        "-t",
        &TRANSACTIONS.to_string(),
    ])?;
    let stdout = run.stdout_text();
    let stderr = run.stderr_text();
    assert!(
        run.status.success(),
        "pgbench -M {mode} failed ({}): {stdout}\n{stderr}\nlog:\n{}",
        run.status,
        w.log()
    );
    let total = CLIENTS * TRANSACTIONS;
    assert!(
        stdout.contains(&format!(
            "number of transactions actually processed: {total}/{total}"
        )),
        "-M {mode}: {stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("number of failed transactions: 0 (0.000%)"),
        "-M {mode}: {stdout}\n{stderr}"
    );
    assert!(stdout.contains(&format!("query mode: {mode}")), "{stdout}");
    // Every transaction inserted its history row on the real database.
    assert_eq!(
        w.pg.psql_direct("app", "select count(*) from pgbench_history")?,
        total.to_string()
    );
    Ok(())
}

#[test]
fn pgbench_simple_protocol() -> Result<()> {
    bench("simple")
}

#[test]
fn pgbench_extended_protocol() -> Result<()> {
    bench("extended")
}

#[test]
fn pgbench_prepared_statements() -> Result<()> {
    bench("prepared")
}
