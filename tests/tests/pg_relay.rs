//! What users do through the gateway with psql: queries, transactions,
//! `\copy` in both directions, LISTEN/NOTIFY. Results are compared with the
//! same thing done directly against the cluster.

mod common;

use std::fmt::Write as _;
use std::fs;
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};
use common::{
    World, active_count_query, ended_session_of_user, events_of_kind, session_id, show_session,
    wait_direct,
};
use gatehouse_tests::OutputExt;

#[test]
fn simple_queries_match_the_cluster() -> Result<()> {
    let w = World::standard()?;
    let token = w.token("alice")?;
    let via = w.tls_target("app-db", "alice", &token);
    let direct = w.pg.target("app");

    for sql in [
        "select 1",
        "select 'héllo wörld' as greeting, null::text is null, 1.5::numeric * 2, array[1,2,3]",
        // Several statements in one Query message: psql 15 shows every result.
        "select 1; select 2",
        "select 'a' as x; select g from generate_series(1, 3) g; select 'z'",
        // A result large enough to span many reads and writes.
        "select g, md5(g::text), repeat('x', g % 100) from generate_series(1, 50000) g",
    ] {
        let got = via.psql(sql)?;
        let want = direct.psql(sql)?;
        assert_eq!(
            got.success_text()?,
            want.success_text()?,
            "{sql} differs through the gateway; log:\n{}",
            w.log()
        );
    }
    assert_eq!(via.psql("select 1; select 2")?.success_text()?, "1\n2");
    Ok(())
}

#[test]
fn error_inside_a_transaction_aborts_it_until_rollback() -> Result<()> {
    let w = World::standard()?;
    let token = w.token("alice")?;
    let out = w.tls_target("app-db", "tx-user", &token).psql_args(&[
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=0",
        "-v",
        "VERBOSITY=verbose",
        "-c",
        "BEGIN",
        "-c",
        "create table tx_probe(a int)",
        "-c",
        "select * from no_such_table",
        "-c",
        "select 'still inside'",
        "-c",
        "ROLLBACK",
        "-c",
        "select 'after rollback'",
    ])?;
    let stdout = out.stdout_text();
    let stderr = out.stderr_text();
    assert!(
        stderr.contains("ERROR:  42P01: relation \"no_such_table\" does not exist"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "ERROR:  25P02: current transaction is aborted, commands ignored until end of transaction block"
        ),
        "{stderr}"
    );
    assert!(
        !stdout.contains("still inside"),
        "a statement ran in an aborted transaction: {stdout}"
    );
    assert!(stdout.contains("ROLLBACK"), "{stdout}\n{stderr}");
    assert!(stdout.contains("after rollback"), "{stdout}\n{stderr}");
    // The rolled-back table never existed.
    assert_eq!(
        w.pg.psql_direct("app", "select to_regclass('tx_probe') is null")?,
        "t"
    );

    // The recording holds both errors with their SQLSTATEs, in order.
    let header = ended_session_of_user(&w.gh, "tx-user")?;
    assert_eq!(header["outcome"], "closed", "{header:#}");
    let (_, events) = show_session(&w.gh, &session_id(&header)?)?;
    let codes: Vec<&str> = events_of_kind(&events, "error")
        .iter()
        .map(|e| e["kind"]["code"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(codes, ["42P01", "25P02"], "{events:#?}");
    Ok(())
}

#[test]
fn copy_out_through_the_gateway_equals_a_direct_copy() -> Result<()> {
    let w = World::standard()?;
    let token = w.token("alice")?;
    w.pg.psql_direct(
        "app",
        "create table gen as select g as id, md5(g::text) as h, \
         case when g % 5 = 0 then null else 'row ' || g || ', \"q\"' end as note, \
         (g % 7 = 0) as flag from generate_series(1, 20000) g",
    )?;
    let dir = tempfile::tempdir()?;
    let via_path = dir.path().join("via.csv");
    let direct_path = dir.path().join("direct.csv");
    let copy = |path: &std::path::Path| {
        format!(
            "\\copy (select * from gen order by id) to '{}' with (format csv)",
            path.display()
        )
    };

    let out = w
        .tls_target("app-db", "copy-out", &token)
        .psql(&copy(&via_path))?;
    out.success_text().with_context(|| w.log())?;
    w.pg.psql_direct("app", &copy(&direct_path))?;

    let via = fs::read(&via_path)?;
    let direct = fs::read(&direct_path)?;
    assert_eq!(via.iter().filter(|b| **b == b'\n').count(), 20000);
    assert!(via == direct, "COPY TO output differs through the gateway");

    let header = ended_session_of_user(&w.gh, "copy-out")?;
    let (_, events) = show_session(&w.gh, &session_id(&header)?)?;
    let copies = events_of_kind(&events, "copy");
    assert_eq!(copies.len(), 1, "{events:#?}");
    assert_eq!(copies[0]["kind"]["direction"], "target", "{:#}", copies[0]);
    assert_eq!(
        copies[0]["kind"]["bytes"],
        via.len() as u64,
        "recorded COPY byte count: {:#}",
        copies[0]
    );
    let completes = events_of_kind(&events, "complete");
    assert_eq!(completes.len(), 1, "{events:#?}");
    assert_eq!(completes[0]["kind"]["tag"], "COPY 20000");
    Ok(())
}

/// CSV exactly as PostgreSQL writes it, so a round trip is byte-equal:
/// quotes only around values with a comma, quote or newline, NULL as an
/// empty unquoted field.
fn canonical_csv(rows: usize) -> String {
    let mut csv = String::new();
    for i in 1..=rows {
        let txt = if i % 11 == 0 {
            String::new()
        } else if i % 3 == 0 {
            format!("\"line {i}, with \"\"quotes\"\"\"")
        } else if i % 4 == 0 {
            format!("\"two\nlines {i}\"")
        } else {
            format!("plain-{i}-ünïcödé")
        };
        let _ = writeln!(csv, "{i},{txt}");
    }
    csv
}

#[test]
fn copy_in_through_the_gateway_lands_intact() -> Result<()> {
    let w = World::standard()?;
    let token = w.token("alice")?;
    let rows = 20000;
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("in.csv");
    let csv = canonical_csv(rows);
    fs::write(&input, &csv)?;
    w.pg.psql_direct("app", "create table incoming(id int primary key, txt text)")?;

    let out = w.tls_target("app-db", "copy-in", &token).psql(&format!(
        "\\copy incoming from '{}' with (format csv)",
        input.display()
    ))?;
    out.success_text().with_context(|| w.log())?;

    assert_eq!(
        w.pg.psql_direct(
            "app",
            "select count(*), count(*) filter (where txt is null) from incoming"
        )?,
        format!("{rows}|{}", rows / 11)
    );
    let back = dir.path().join("back.csv");
    w.pg.psql_direct(
        "app",
        &format!(
            "\\copy (select * from incoming order by id) to '{}' with (format csv)",
            back.display()
        ),
    )?;
    assert!(
        fs::read(&back)? == csv.as_bytes(),
        "data copied in through the gateway differs from the input"
    );

    let header = ended_session_of_user(&w.gh, "copy-in")?;
    assert_eq!(header["outcome"], "closed", "{header:#}");
    let (_, events) = show_session(&w.gh, &session_id(&header)?)?;
    let copies = events_of_kind(&events, "copy");
    assert_eq!(copies.len(), 1, "{events:#?}");
    assert_eq!(copies[0]["kind"]["direction"], "client", "{:#}", copies[0]);
    assert_eq!(
        copies[0]["kind"]["bytes"],
        csv.len() as u64,
        "recorded COPY byte count: {:#}",
        copies[0]
    );
    let completes = events_of_kind(&events, "complete");
    assert_eq!(completes.len(), 1, "{events:#?}");
    assert_eq!(completes[0]["kind"]["tag"], format!("COPY {rows}"));
    Ok(())
}

#[test]
fn listen_notify_across_two_gateway_sessions() -> Result<()> {
    let w = World::standard()?;
    let token = w.token("alice")?;
    let listener_target = w.tls_target("app-db", "listener", &token);
    let listener = thread::spawn(move || {
        listener_target.psql_args(&[
            "-A",
            "-t",
            "-c",
            "LISTEN ch",
            "-c",
            "select pg_sleep(5)",
            "-c",
            "select 'listener done'",
        ])
    });
    // LISTEN has run once the listener is sleeping.
    wait_direct(
        &w.pg,
        &active_count_query("pg_sleep(5)"),
        "1",
        Duration::from_secs(20),
    )?;
    let out = w
        .tls_target("app-db", "notifier", &token)
        .psql("NOTIFY ch, 'payload-42'")?;
    out.success_text().with_context(|| w.log())?;

    let out = listener.join().expect("listener thread")?;
    let stdout = out.success_text().with_context(|| w.log())?;
    assert!(
        stdout.contains("Asynchronous notification \"ch\" with payload \"payload-42\" received"),
        "the listener did not receive the notification: {stdout}"
    );
    assert!(stdout.contains("listener done"), "{stdout}");

    let header = ended_session_of_user(&w.gh, "listener")?;
    let (_, events) = show_session(&w.gh, &session_id(&header)?)?;
    let notes = events_of_kind(&events, "notification");
    assert_eq!(notes.len(), 1, "{events:#?}");
    assert_eq!(notes[0]["kind"]["channel"], "ch");
    assert_eq!(notes[0]["kind"]["payload"], "payload-42");
    assert_eq!(notes[0]["dir"], "target");
    Ok(())
}

/// PostgreSQL reads Bind's parameter count as unsigned 16 bits: up to
/// 65,535 parameters (pg8000's own suite sends 60,000).
#[test]
fn a_bind_with_sixty_thousand_parameters_is_relayed() -> Result<()> {
    let w = World::standard()?;
    let token = w.token("alice")?;
    let target = w.tls_target("app-db", "many-params", &token);
    let script = r#"
import psycopg
assert psycopg.pq.version() // 10000 == 17, psycopg.pq.version()
n = 60000
with psycopg.connect("") as conn:
    sql = "select count(*) from (values " + ", ".join(["(%s::int)"] * n) + ") v(x)"
    print(conn.execute(sql, list(range(n))).fetchone()[0])
"#;
    let out = target.python(gatehouse_tests::PSYCOPG_LIBPQ17, script, &[])?;
    assert_eq!(out.success_text()?, "60000", "log:\n{}", w.log());
    Ok(())
}
