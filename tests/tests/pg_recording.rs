//! Recording accuracy: for sessions whose traffic the test controls
//! exactly, the recording holds exactly what was sent and answered, in
//! order, with the right header.

mod common;

use anyhow::{Context, Result};
use common::{
    RawPg, World, bind, describe_portal, ended_session_of_user, execute, parse, session_id,
    show_session, sync,
};
use gatehouse_tests::OutputExt;
use serde_json::{Value, json};

/// `(dir, kind)` of every event, the part a reviewer reads.
fn flow(events: &[Value]) -> Vec<Value> {
    events
        .iter()
        .map(|e| json!([e["dir"], e["kind"]]))
        .collect()
}

/// Checks header fields every ended, authenticated session must have, and
/// the event numbering.
fn check_header(header: &Value, events: &[Value], client_user: &str) {
    assert_eq!(header["protocol"], "postgres", "{header:#}");
    assert_eq!(header["client_user"], client_user, "{header:#}");
    assert_eq!(header["connection"], "app-db", "{header:#}");
    assert_eq!(header["identity"], "oidc:alice", "{header:#}");
    assert_eq!(header["groups"], json!(["ci-deploy"]), "{header:#}");
    assert_eq!(header["outcome"], "closed", "{header:#}");
    assert!(header["reason"].is_null(), "{header:#}");
    assert!(
        header["client_addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{header:#}"
    );
    let started = header["started_at"].as_i64().unwrap_or_default();
    let ended = header["ended_at"].as_i64().unwrap_or_default();
    assert!(started > 0 && ended >= started, "{header:#}");
    assert_eq!(
        header["event_count"],
        events.len() as u64,
        "event_count disagrees with the events shown"
    );
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    let expected: Vec<u64> = (0..events.len() as u64).collect();
    assert_eq!(seqs, expected, "event sequence numbers");
    let ats: Vec<i64> = events.iter().filter_map(|e| e["at"].as_i64()).collect();
    assert!(
        ats.windows(2).all(|w| w[0] <= w[1]),
        "event times go backwards: {ats:?}"
    );
    assert!(
        ats.first().is_some_and(|a| *a >= started) && ats.last().is_some_and(|a| *a <= ended),
        "events outside the session's span"
    );
}

#[test]
fn simple_protocol_session_is_recorded_exactly() -> Result<()> {
    let w = World::standard()?;
    let token = w.token("alice")?;
    let sql = "select 1 as a; select 'x' as b";
    let out = w.psql("rec-simple", &token, sql)?;
    assert_eq!(out.success_text()?, "1\nx");

    let header = ended_session_of_user(&w.gh, "rec-simple")?;
    let (shown, events) = show_session(&w.gh, &session_id(&header)?)?;
    assert_eq!(shown, header, "show and list disagree on the header");
    check_header(&header, &events, "rec-simple");
    assert_eq!(
        flow(&events),
        vec![
            json!(["gateway", {"kind": "connected", "target": "app-db"}]),
            json!(["client", {"kind": "query", "sql": sql}]),
            json!(["target", {"kind": "columns", "names": ["a"]}]),
            json!(["target", {"kind": "row", "values": ["1"]}]),
            json!(["target", {"kind": "complete", "tag": "SELECT 1", "rows": 1, "rows_recorded": 1}]),
            json!(["target", {"kind": "columns", "names": ["b"]}]),
            json!(["target", {"kind": "row", "values": ["x"]}]),
            json!(["target", {"kind": "complete", "tag": "SELECT 1", "rows": 1, "rows_recorded": 1}]),
            json!(["gateway", {"kind": "end", "outcome": "closed", "reason": null}]),
        ],
        "{events:#?}"
    );
    Ok(())
}

#[test]
fn extended_protocol_session_is_recorded_exactly() -> Result<()> {
    let w = World::start(|c, _, _| c.postgres_plaintext(true))?;
    let token = w.token("alice")?;
    let mut pg = RawPg::connect(w.gh.pg_port())?;
    pg.login_ok("rec-extended", "app-db", &token)?;

    let sql1 = "select $1::int + $2::int as sum, $3::text as t";
    let sql2 = "select g from generate_series(1, $1::int) g";
    let sql3 = "select * from missing_tbl";

    // Named statement, unnamed portal, described, with a NULL parameter.
    let mut batch = parse("s1", sql1);
    batch.extend(bind("", "s1", &[Some("40"), Some("2"), None]));
    batch.extend(describe_portal(""));
    batch.extend(execute("", 0));
    batch.extend(sync());
    pg.send(&batch)?;
    let msgs = pg.until_ready()?;
    let rows: Vec<_> = msgs
        .iter()
        .filter(|m| m.tag == b'D')
        .map(|m| m.row())
        .collect();
    assert_eq!(rows, vec![vec![Some("42".to_owned()), None]], "{msgs:?}");

    // The same statement again through a named portal.
    let mut batch = bind("p2", "s1", &[Some("1"), Some("1"), Some("two words")]);
    batch.extend(execute("p2", 0));
    batch.extend(sync());
    pg.send(&batch)?;
    let msgs = pg.until_ready()?;
    let rows: Vec<_> = msgs
        .iter()
        .filter(|m| m.tag == b'D')
        .map(|m| m.row())
        .collect();
    assert_eq!(
        rows,
        vec![vec![Some("2".to_owned()), Some("two words".to_owned())]]
    );

    // Unnamed statement, several rows.
    let mut batch = parse("", sql2);
    batch.extend(bind("", "", &[Some("5")]));
    batch.extend(execute("", 0));
    batch.extend(sync());
    pg.send(&batch)?;
    let msgs = pg.until_ready()?;
    assert_eq!(msgs.iter().filter(|m| m.tag == b'D').count(), 5);

    // A statement the server rejects at Parse.
    let mut batch = parse("", sql3);
    batch.extend(sync());
    pg.send(&batch)?;
    let msgs = pg.until_ready()?;
    let error = msgs.iter().find(|m| m.tag == b'E').context("no error")?;
    assert_eq!(error.sqlstate(), "42P01");
    pg.terminate()?;
    pg.until_closed()?;

    let header = ended_session_of_user(&w.gh, "rec-extended")?;
    let (_, events) = show_session(&w.gh, &session_id(&header)?)?;
    check_header(&header, &events, "rec-extended");
    let complete = |tag: &str, rows: u64| json!(["target", {"kind": "complete", "tag": tag, "rows": rows, "rows_recorded": rows}]);
    let mut want = vec![
        json!(["gateway", {"kind": "connected", "target": "app-db"}]),
        json!(["client", {"kind": "parse", "statement": "s1", "sql": sql1}]),
        json!(["client", {"kind": "bind", "portal": "", "statement": "s1", "params": ["40", "2", null]}]),
        json!(["client", {"kind": "execute", "portal": "", "max_rows": 0}]),
        json!(["target", {"kind": "columns", "names": ["sum", "t"]}]),
        json!(["target", {"kind": "row", "values": ["42", null]}]),
        complete("SELECT 1", 1),
        json!(["client", {"kind": "bind", "portal": "p2", "statement": "s1", "params": ["1", "1", "two words"]}]),
        json!(["client", {"kind": "execute", "portal": "p2", "max_rows": 0}]),
        json!(["target", {"kind": "row", "values": ["2", "two words"]}]),
        complete("SELECT 1", 1),
        json!(["client", {"kind": "parse", "statement": "", "sql": sql2}]),
        json!(["client", {"kind": "bind", "portal": "", "statement": "", "params": ["5"]}]),
        json!(["client", {"kind": "execute", "portal": "", "max_rows": 0}]),
    ];
    for g in 1..=5 {
        want.push(json!(["target", {"kind": "row", "values": [g.to_string()]}]));
    }
    want.extend([
        complete("SELECT 5", 5),
        json!(["client", {"kind": "parse", "statement": "", "sql": sql3}]),
        json!(["target", {"kind": "error", "severity": "ERROR", "code": "42P01",
            "message": "relation \"missing_tbl\" does not exist"}]),
        json!(["gateway", {"kind": "end", "outcome": "closed", "reason": null}]),
    ]);
    assert_eq!(flow(&events), want, "{events:#?}");
    Ok(())
}

#[test]
fn rows_past_the_per_statement_cap_are_counted_not_recorded() -> Result<()> {
    let w = World::start(|c, _, _| c.line_in("limits", "rows_per_statement = 3"))?;
    let token = w.token("alice")?;
    let out = w.psql(
        "rec-cap",
        &token,
        "select g from generate_series(1, 10) g; select 'after'",
    )?;
    assert_eq!(out.success_text()?.lines().count(), 11);

    let header = ended_session_of_user(&w.gh, "rec-cap")?;
    let (_, events) = show_session(&w.gh, &session_id(&header)?)?;
    let rows: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"]["kind"] == "row")
        .map(|e| &e["kind"]["values"])
        .collect();
    assert_eq!(
        rows,
        [
            &json!(["1"]),
            &json!(["2"]),
            &json!(["3"]),
            &json!(["after"])
        ],
        "{events:#?}"
    );
    let completes: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"]["kind"] == "complete")
        .map(|e| &e["kind"])
        .collect();
    assert_eq!(
        completes,
        [
            &json!({"kind": "complete", "tag": "SELECT 10", "rows": 10, "rows_recorded": 3}),
            &json!({"kind": "complete", "tag": "SELECT 1", "rows": 1, "rows_recorded": 1}),
        ]
    );
    Ok(())
}
