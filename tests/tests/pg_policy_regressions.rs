//! Regressions from a security review, one test per fixed bug: pipelined
//! client_encoding changes, a DEALLOCATE the target skipped, one approval
//! reused by a second portal, sensitive values in NOTIFY payloads and
//! ParameterStatus, `COPY ... TO STDIN`, and fast-path FunctionCall under a
//! masking-only policy. Each checks what the client saw and the database
//! (or the recording) afterwards.

mod common;

use anyhow::{Result, anyhow, bail};
use common::{
    APP_DB, Msg, RawPg, World, bind, ended_session_of_user, events_of_kind, execute, frame, parse,
    query, session_id, show_session, sync,
};
use gatehouse_tests::{OutputExt, PolicySpec};
use serde_json::Value;

const SSN: &str = "123-45-6789";
const REDACTED: &str = "[redacted]";

/// A gateway whose `default` policy (recording `batched`, default allow)
/// carries `extra` TOML; plaintext clients allowed for the raw client.
fn policy_world(extra: &str) -> Result<World> {
    World::start(|c, _, _| {
        c.postgres_plaintext(true)
            .policy(
                PolicySpec::new("default")
                    .recording("batched")
                    .line("default = \"allow\""),
            )
            .raw(extra)
    })
}

/// A gateway whose standard `default` policy carries only `masks`.
fn masked_world(masks: &str) -> Result<World> {
    World::start(|c, _, _| c.postgres_plaintext(true).raw(masks))
}

fn approve_rule(timeout: &str) -> String {
    format!(
        r#"
[[policies.default.rules]]
name = "orders-delete"
action = "approve"
statements = ["delete"]
timeout = "{timeout}"
"#
    )
}

const ORDERS: &str =
    "CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders VALUES (1), (2), (3);";

fn raw_session(w: &World, user: &str) -> Result<RawPg> {
    let token = w.token(user)?;
    let mut raw = RawPg::connect(w.gh.pg_port())?;
    raw.login_ok(user, APP_DB, &token)?;
    Ok(raw)
}

/// Reads until `n` ReadyForQuery messages have arrived.
fn until_readies(raw: &mut RawPg, n: usize) -> Result<Vec<Msg>> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.extend(raw.until_ready()?);
    }
    Ok(out)
}

fn errors(msgs: &[Msg]) -> Vec<(String, String)> {
    msgs.iter()
        .filter(|m| m.tag == b'E')
        .map(|m| (m.sqlstate(), m.message()))
        .collect()
}

fn tags(msgs: &[Msg]) -> Vec<String> {
    msgs.iter()
        .filter(|m| m.tag == b'C')
        .map(Msg::tag_text)
        .collect()
}

/// Reads until a NoticeResponse `waiting for approval ID` and returns ID.
fn wait_notice_id(raw: &mut RawPg) -> Result<String> {
    Ok(wait_notice(raw)?.0)
}

/// Like [`wait_notice_id`], also returning the messages before the notice.
fn wait_notice(raw: &mut RawPg) -> Result<(String, Vec<Msg>)> {
    let mut seen = Vec::new();
    loop {
        let msg = raw
            .read_msg()?
            .ok_or_else(|| anyhow!("gateway closed before the approval notice"))?;
        match msg.tag {
            b'N' => {
                if let Some(id) = msg.message().strip_prefix("waiting for approval ") {
                    return Ok((id.trim().to_owned(), seen));
                }
            }
            b'E' => bail!(
                "error instead of an approval notice: {} {}",
                msg.sqlstate(),
                msg.message()
            ),
            b'Z' => bail!("ReadyForQuery before any approval notice: {seen:?}"),
            _ => {}
        }
        seen.push(msg);
    }
}

/// The events of the ended session of `user`.
fn recording(w: &World, user: &str) -> Result<Vec<Value>> {
    let header = ended_session_of_user(&w.gh, user)?;
    let (_, events) = show_session(&w.gh, &session_id(&header)?)?;
    Ok(events)
}

fn direct(w: &World, sql: &str) -> Result<String> {
    w.pg.psql_direct("app", sql)
}

#[test]
fn pipelined_client_encoding_change_is_refused() -> Result<()> {
    let w = policy_world(
        r#"
[[policies.default.rules]]
name = "no-drop"
action = "block"
statements = ["drop"]
"#,
    )?;
    direct(&w, "CREATE TABLE victim (id int)")?;

    let mut raw = raw_session(&w, "sjis-bot")?;
    let mut pipeline = query("SET client_encoding TO 'SJIS'");
    // U+3041 is E3 81 81: under SJIS, 81 swallows the backslash, the quote
    // closes the string and the DROP runs.
    pipeline.extend(query("SELECT E'\u{3041}\\'; DROP TABLE victim; --'"));
    raw.send(&pipeline)?;
    let msgs = until_readies(&mut raw, 2)?;
    let errs = errors(&msgs);
    let (code, msg) = errs
        .first()
        .ok_or_else(|| anyhow!("SET client_encoding was not refused: {msgs:?}"))?;
    assert_eq!(code, "42501", "{errs:?}");
    assert!(
        msg.contains("\"unparsed\"") && msg.contains("client_encoding"),
        "{errs:?}"
    );
    assert!(
        !tags(&msgs).iter().any(|t| t.starts_with("DROP")),
        "{:?}",
        tags(&msgs)
    );
    raw.terminate()?;
    assert_eq!(direct(&w, "SELECT to_regclass('victim') IS NOT NULL")?, "t");

    let mut raw = raw_session(&w, "names-bot")?;
    raw.send(&query("SET NAMES 'SJIS'"))?;
    let msgs = raw.until_ready()?;
    let errs = errors(&msgs);
    assert_eq!(errs.len(), 1, "{msgs:?}");
    assert_eq!(errs[0].0, "42501", "{errs:?}");
    assert!(
        errs[0].1.contains("\"unparsed\"") && errs[0].1.contains("client_encoding"),
        "{errs:?}"
    );
    raw.terminate()?;
    assert_eq!(direct(&w, "SELECT to_regclass('victim') IS NOT NULL")?, "t");

    for user in ["sjis-bot", "names-bot"] {
        let events = recording(&w, user)?;
        let blocked = events_of_kind(&events, "blocked");
        assert!(
            blocked
                .first()
                .is_some_and(|e| e["kind"]["rule"] == "unparsed"),
            "{user}: {blocked:?}"
        );
    }
    Ok(())
}

#[test]
fn a_deallocate_the_target_skipped_does_not_forget_the_statement() -> Result<()> {
    let w = policy_world(&approve_rule("2s"))?;
    direct(&w, ORDERS)?;
    let token = w.token("dealloc-bot")?;
    let out = w.tls_target(APP_DB, "dealloc-bot", &token).psql_args(&[
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=0",
        "-v",
        "VERBOSITY=verbose",
        "-c",
        "PREPARE d AS DELETE FROM orders WHERE id = 1",
        "-c",
        "SELECT 1/0; DEALLOCATE d",
        "-c",
        "PREPARE d AS SELECT 1",
        "-c",
        "EXECUTE d",
    ])?;
    let stderr = out.stderr_text();
    let codes: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("ERROR:  "))
        .map(|r| r.split(':').next().unwrap_or_default())
        .collect();
    assert_eq!(codes, ["22012", "42P05", "57014"], "stderr: {stderr}");
    assert!(
        stderr.contains("waiting for approval"),
        "EXECUTE d was not held; stderr: {stderr}"
    );
    assert!(
        !out.stdout_text().contains("DELETE"),
        "{}",
        out.stdout_text()
    );
    assert_eq!(direct(&w, "SELECT count(*) FROM orders WHERE id = 1")?, "1");

    let events = recording(&w, "dealloc-bot")?;
    let decided = events_of_kind(&events, "approval_decided");
    assert_eq!(decided.len(), 1, "{decided:?}");
    assert_eq!(decided[0]["kind"]["decision"], "timed_out", "{decided:?}");
    Ok(())
}

/// The approved Parse is bound to two portals: p1 runs on the approval,
/// p2 is held again and times out.
#[test]
fn one_approval_never_runs_two_portals() -> Result<()> {
    let w = policy_world(&approve_rule("4s"))?;
    direct(&w, ORDERS)?;
    let mut raw = raw_session(&w, "portal-bot")?;

    let mut first = parse("", "DELETE FROM orders WHERE id = 2");
    first.extend(sync());
    raw.send(&first)?;
    let id = wait_notice_id(&mut raw)?;
    assert_eq!(direct(&w, "SELECT count(*) FROM orders WHERE id = 2")?, "1");
    let out = w.gh.run_cli(&["approvals", "approve", &id])?;
    assert!(
        out.status.success(),
        "approvals approve {id}: {}",
        out.stderr_text()
    );
    let msgs = raw.until_ready()?;
    assert!(errors(&msgs).is_empty(), "{msgs:?}");

    let mut second = bind("p1", "", &[]);
    second.extend(bind("p2", "", &[]));
    second.extend(execute("p1", 0));
    second.extend(execute("p2", 0));
    second.extend(sync());
    raw.send(&second)?;
    let (second_id, mut msgs) = wait_notice(&mut raw)?;
    assert_ne!(id, second_id);
    msgs.extend(raw.until_ready()?);
    let errs = errors(&msgs);
    assert_eq!(errs.len(), 1, "{msgs:?}");
    assert_eq!(errs[0].0, "57014", "{errs:?}");
    assert!(errs[0].1.contains(&second_id), "{errs:?}");
    // p1 ran once on the one approval; p2 never ran.
    assert_eq!(tags(&msgs), ["DELETE 1"], "{msgs:?}");
    raw.terminate()?;
    // The error on p2 aborted the pipeline's implicit transaction, so
    // PostgreSQL rolled p1's DELETE back: the row is there, and no
    // statement deleted anything outside that one approved run.
    assert_eq!(direct(&w, "SELECT count(*) FROM orders WHERE id = 2")?, "1");
    assert_eq!(direct(&w, "SELECT count(*) FROM orders")?, "3");

    let events = recording(&w, "portal-bot")?;
    let requested = events_of_kind(&events, "approval_requested");
    assert_eq!(requested.len(), 2, "{requested:?}");
    let decisions: Vec<&Value> = events_of_kind(&events, "approval_decided")
        .iter()
        .map(|e| &e["kind"]["decision"])
        .collect();
    assert_eq!(decisions, ["approved", "timed_out"], "{events:#?}");
    Ok(())
}

const SSN_MASKS: &str = r#"
[[policies.default.masks]]
name = "ssn"
columns = ["customers.ssn"]
detectors = ["us_ssn"]
strategy = "redact"
"#;

#[test]
fn notify_payloads_and_parameter_status_are_masked() -> Result<()> {
    let w = masked_world(SSN_MASKS)?;
    direct(
        &w,
        &format!(
            "CREATE TABLE customers (name text, ssn text); \
             INSERT INTO customers VALUES ('Alice Archer', '{SSN}');"
        ),
    )?;
    let token = w.token("notify-bot")?;
    let out = w.tls_target(APP_DB, "notify-bot", &token).psql_args(&[
        "-A",
        "-t",
        "-c",
        "LISTEN c",
        "-c",
        "SELECT pg_notify('c', ssn) FROM customers",
        "-c",
        "SELECT set_config('application_name', ssn, false) FROM customers",
        "-c",
        "SHOW application_name",
    ])?;
    let stdout = out.stdout_text();
    assert!(out.status.success(), "{stdout}\n{}", out.stderr_text());
    assert!(
        stdout.contains("Asynchronous notification \"c\" with payload \"[redacted]\""),
        "{stdout}"
    );
    assert!(!stdout.contains(SSN), "{stdout}");
    assert!(!out.stderr_text().contains(SSN), "{}", out.stderr_text());

    // The ParameterStatus the target reports after set_config.
    let mut raw = raw_session(&w, "status-bot")?;
    raw.send(&query(
        "SELECT set_config('application_name', ssn, false) FROM customers",
    ))?;
    let msgs = raw.until_ready()?;
    assert!(errors(&msgs).is_empty(), "{msgs:?}");
    let statuses: Vec<String> = msgs
        .iter()
        .filter(|m| m.tag == b'S')
        .map(|m| String::from_utf8_lossy(&m.body).replace('\0', "="))
        .collect();
    for m in &msgs {
        assert!(
            !String::from_utf8_lossy(&m.body).contains(SSN),
            "message {:?} carries the SSN: {statuses:?}",
            m.tag as char
        );
    }
    raw.terminate()?;

    assert_eq!(direct(&w, "SELECT ssn FROM customers")?, SSN);
    for user in ["notify-bot", "status-bot"] {
        let events = recording(&w, user)?;
        let text = serde_json::to_string(&events)?;
        assert!(!text.contains(SSN), "{user}'s recording holds the SSN");
        assert!(
            !events_of_kind(&events, "masked").is_empty(),
            "{user}: nothing masked"
        );
    }
    Ok(())
}

#[test]
fn copy_to_stdin_is_masked_like_copy_to_stdout() -> Result<()> {
    let w = masked_world(
        r#"
[[policies.default.masks]]
name = "ssn"
columns = ["customers.ssn"]
strategy = "redact"
"#,
    )?;
    direct(
        &w,
        "CREATE TABLE customers (name text, ssn text); \
         INSERT INTO customers VALUES ('Alice Archer', 'AB-1234');",
    )?;
    let mut raw = raw_session(&w, "copy-bot")?;
    raw.send(&query(
        "COPY customers(ssn) TO STDIN; COPY customers(name) TO STDOUT",
    ))?;
    let msgs = raw.until_ready()?;
    assert!(errors(&msgs).is_empty(), "{msgs:?}");
    let data: Vec<String> = msgs
        .iter()
        .filter(|m| m.tag == b'd')
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect();
    assert_eq!(
        data,
        [format!("{REDACTED}\n"), "Alice Archer\n".to_owned()],
        "{msgs:?}"
    );
    for m in &msgs {
        assert!(!String::from_utf8_lossy(&m.body).contains("AB-1234"));
    }
    assert_eq!(tags(&msgs), ["COPY 1", "COPY 1"]);
    raw.terminate()?;

    assert_eq!(direct(&w, "SELECT ssn FROM customers")?, "AB-1234");
    let events = recording(&w, "copy-bot")?;
    assert!(!serde_json::to_string(&events)?.contains("AB-1234"));
    Ok(())
}

/// A fast-path FunctionCall of `oid` with one text argument, text result.
fn function_call_text(oid: u32, arg: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&oid.to_be_bytes());
    body.extend_from_slice(&1i16.to_be_bytes());
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&1i16.to_be_bytes());
    body.extend_from_slice(&(arg.len() as i32).to_be_bytes());
    body.extend_from_slice(arg.as_bytes());
    body.extend_from_slice(&0i16.to_be_bytes());
    frame(b'F', &body)
}

#[test]
fn fast_path_function_call_is_refused_under_a_masking_policy() -> Result<()> {
    let w = masked_world(SSN_MASKS)?;
    let oid: u32 = direct(&w, "select 'upper(text)'::regprocedure::oid")?.parse()?;
    let mut raw = raw_session(&w, "fastpath-bot")?;
    raw.send(&function_call_text(oid, "abc"))?;
    let msgs = raw.until_ready()?;
    let errs = errors(&msgs);
    assert_eq!(errs.len(), 1, "{msgs:?}");
    assert_eq!(errs[0].0, "42501", "{errs:?}");
    assert!(
        errs[0]
            .1
            .starts_with("blocked by policy rule \"function-call\""),
        "{errs:?}"
    );
    assert!(
        !msgs.iter().any(|m| m.tag == b'V'),
        "a FunctionCallResponse came back: {msgs:?}"
    );

    raw.send(&query("SELECT upper('abc')"))?;
    let msgs = raw.until_ready()?;
    assert!(errors(&msgs).is_empty(), "{msgs:?}");
    let rows: Vec<Vec<Option<String>>> = msgs
        .iter()
        .filter(|m| m.tag == b'D')
        .map(Msg::row)
        .collect();
    assert_eq!(rows, [[Some("ABC".to_owned())]]);
    raw.terminate()?;

    let events = recording(&w, "fastpath-bot")?;
    let blocked = events_of_kind(&events, "blocked");
    assert_eq!(blocked.len(), 1, "{blocked:?}");
    assert_eq!(blocked[0]["kind"]["rule"], "function-call");
    Ok(())
}
