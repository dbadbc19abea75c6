//! Client encodings other than UTF-8: the gateway relays the client's
//! bytes untouched, and records them decoded with the session's client
//! encoding where it can, as bytes where it cannot.

mod common;

use std::os::unix::ffi::OsStrExt;
use std::process::Command;

use anyhow::Result;
use common::{World, ended_session_of_user, events_of_kind, session_id, show_session};
use gatehouse_tests::{OutputExt, PSYCOPG_LIBPQ17};

/// `café €` in LATIN9 (ISO 8859-15): é is 0xE9, the euro sign 0xA4.
const CAFE_LATIN9: &[u8] = b"caf\xe9 \xa4";
const CAFE: &str = "café €";

/// psql through the gateway with `PGCLIENTENCODING`, running `sql` given
/// as raw bytes (psql passes them on as it got them).
fn psql_bytes(w: &World, user: &str, encoding: &str, sql: &[u8]) -> Result<std::process::Output> {
    let token = w.token(user)?;
    let target = w.tls_target("app-db", user, &token);
    let mut cmd = Command::new("psql");
    cmd.args(["-X", "-w", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c"])
        .arg(std::ffi::OsStr::from_bytes(sql));
    target.apply_env(&mut cmd);
    cmd.env("PGCLIENTENCODING", encoding);
    gatehouse_tests::process::run(&mut cmd, target.timeout)
}

#[test]
fn latin9_statements_reach_the_target_and_are_recorded_decoded() -> Result<()> {
    let w = World::standard()?;
    w.pg.psql_direct("app", "create table notes (v text)")?;

    let mut sql = b"insert into notes values ('".to_vec();
    sql.extend_from_slice(CAFE_LATIN9);
    sql.extend_from_slice(b"'); select v from notes");
    let out = psql_bytes(&w, "latin9-writer", "LATIN9", &sql)?;
    assert!(
        out.status.success(),
        "psql failed: {}\nlog:\n{}",
        out.stderr_text(),
        w.log()
    );
    // The client reads its own encoding back, byte for byte.
    assert_eq!(out.stdout.trim_ascii(), CAFE_LATIN9);
    // The target stored the characters, not the bytes.
    assert_eq!(w.pg.psql_direct("app", "select v from notes")?, CAFE);

    let header = ended_session_of_user(&w.gh, "latin9-writer")?;
    let (_, events) = show_session(&w.gh, &session_id(&header)?)?;
    let queries = events_of_kind(&events, "query");
    assert_eq!(queries.len(), 1, "{events:#?}");
    assert_eq!(
        queries[0]["kind"]["sql"],
        format!("insert into notes values ('{CAFE}'); select v from notes")
    );
    let rows = events_of_kind(&events, "row");
    assert_eq!(rows[0]["kind"]["values"][0], CAFE, "{events:#?}");
    assert_eq!(header["outcome"], "closed");
    Ok(())
}

#[test]
fn text_no_decoder_reads_is_recorded_as_the_bytes_sent() -> Result<()> {
    let w = World::standard()?;
    // EUC_TW: PostgreSQL converts it, nothing in the gateway decodes it.
    // 0xC4A1 is a CNS 11643 plane 1 character.
    let sql = b"select '\xc4\xa1' as ch";
    let out = psql_bytes(&w, "euc-tw", "EUC_TW", sql)?;
    assert!(
        out.status.success(),
        "psql failed: {}\nlog:\n{}",
        out.stderr_text(),
        w.log()
    );
    assert_eq!(out.stdout.trim_ascii(), b"\xc4\xa1");

    let header = ended_session_of_user(&w.gh, "euc-tw")?;
    let (_, events) = show_session(&w.gh, &session_id(&header)?)?;
    let raw = events_of_kind(&events, "sql_bytes");
    assert_eq!(raw.len(), 1, "{events:#?}");
    assert_eq!(raw[0]["kind"]["encoding"], "EUC_TW");
    assert_eq!(raw[0]["kind"]["sql"], hex(sql));
    assert!(raw[0]["kind"]["statement"].is_null());
    Ok(())
}

#[test]
fn a_libpq17_driver_in_latin9_binds_and_reads_its_own_text() -> Result<()> {
    let w = World::standard()?;
    w.pg.psql_direct("app", "create table notes (v text)")?;
    let token = w.token("alice")?;
    let target = w.tls_target("app-db", "psycopg-latin9", &token);
    // Server-side binding: Parse with $1, Bind with the LATIN9 bytes.
    let script = r#"
import sys, psycopg
assert psycopg.pq.version() // 10000 == 17, psycopg.pq.version()
with psycopg.connect("", client_encoding="latin9") as conn:
    conn.execute("insert into notes values (%s), ('é€ literal')", [sys.argv[1]])
    print(conn.execute("select string_agg(v, '|' order by v) from notes").fetchone()[0])
"#;
    let out = target.python(PSYCOPG_LIBPQ17, script, &[CAFE])?;
    assert_eq!(
        out.success_text()?,
        format!("{CAFE}|é€ literal"),
        "log:\n{}",
        w.log()
    );
    assert_eq!(
        w.pg.psql_direct("app", "select count(*) from notes where v like '%€%'")?,
        "2"
    );

    let header = ended_session_of_user(&w.gh, "psycopg-latin9")?;
    let (_, events) = show_session(&w.gh, &session_id(&header)?)?;
    let binds = events_of_kind(&events, "bind");
    assert!(
        binds.iter().any(|b| b["kind"]["params"][0] == CAFE),
        "{events:#?}"
    );
    let parses = events_of_kind(&events, "parse");
    assert!(
        parses.iter().any(|p| p["kind"]["sql"]
            .as_str()
            .unwrap_or("")
            .contains("'é€ literal'")),
        "{events:#?}"
    );
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
