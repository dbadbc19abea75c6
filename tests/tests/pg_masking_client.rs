//! What the client sends is masked in the recording too: literals in SQL
//! text (INSERT values, UPDATE SET, WHERE comparisons, ON CONFLICT, multi-
//! row VALUES), Bind parameters mapped to columns through Parse, COPY FROM
//! STDIN rows by their column list (text and CSV), statements the parser
//! cannot read, statements inside DO blocks and function bodies, and what
//! approvers are shown. The target always gets the original values; the
//! recording, the store file and an exported archive hold none of them.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use common::{
    World, assert_absent, assert_exported_archive_lacks, assert_stored_recordings_lack,
    ended_session_of_user, events_of_kind, session_id, show_session,
};
use gatehouse_tests::{OutputExt, PSYCOPG_LIBPQ17, PolicySpec};
use serde_json::Value;

const MASKS: &str = r#"
[[policies.default.masks]]
name = "pii-columns"
columns = ["email", "customers.ssn"]
strategy = "partial"
keep = 4

[[policies.default.masks]]
name = "content"
detectors = ["credit_card", "email"]
strategy = "redact"

[[policies.default.rules]]
name = "deletes-wait"
action = "approve"
statements = ["delete"]
timeout = "60s"
"#;

const DDL: &str = "create table customers (
    id int primary key, name text, email text unique, ssn text, note text)";

/// Everything the clients below send that must not be recorded.
const SENT: [&str; 18] = [
    // psql, literals
    "marguerite@example.org",
    "512-33-7890",
    "quentin@example.net",
    "4000 0566 5566 5556",
    "733-21-0042",
    "845-12-3344",
    "906-55-1212",
    // psycopg, Bind parameters
    "theo@example.com",
    "601-44-2211",
    // pgbench, prepared statement text
    "345-67-8901",
    // psql, a statement the parser cannot read
    "nobody@example.com",
    // held for approval
    "held@example.com",
    // psql's \copy, CSV and text
    "copy.person@example.com",
    "111-22-3344",
    "text.person@example.com",
    "222-33-4455",
    // psycopg's COPY
    "psy.copy@example.com",
    "333-44-5566",
];

/// The end of every SSN of the bulk INSERT (`NNN-77-1234`); the masked
/// form keeps only `1234`.
const BULK_SSN: &str = "-77-1234";

/// `unparsed`: what the policy does with SQL the parser cannot read (or
/// is too long to): `allow` lets the target show what it did; either way
/// its recording is masked.
/// A value only a column rule knows, in a statement the parser cannot read.
const UNREAD_SSN: &str = "512-00-1111";

fn world(unparsed: &str) -> Result<World> {
    let w = World::start(|c, _, _| {
        c.policy(
            PolicySpec::new("default")
                .recording("batched")
                .line(&format!("unparsed = \"{unparsed}\"")),
        )
        .raw(MASKS)
    })?;
    w.pg.psql_direct("app", DDL)?;
    Ok(w)
}

/// The `partial` strategy with `keep = 4` (README): every character but
/// the last four counted ones becomes `*`; spaces and dashes stay and are
/// not counted; at most half are revealed.
fn partial(original: &str) -> String {
    let counted = original.chars().filter(|c| *c != ' ' && *c != '-').count();
    let shown = 4.min(counted / 2);
    let mut seen = 0;
    original
        .chars()
        .map(|c| {
            if c == ' ' || c == '-' {
                return c;
            }
            seen += 1;
            if seen > counted - shown { c } else { '*' }
        })
        .collect()
}

fn psql(w: &World, user: &str, sql: &str) -> Result<std::process::Output> {
    let token = w.token(user)?;
    w.tls_target("app-db", user, &token).psql(sql)
}

/// `statements` in one psql session, one message each (`-c` per
/// statement), so what one prepares is known when the next runs.
fn psql_session(
    w: &World,
    user: &str,
    statements: &[impl AsRef<str>],
) -> Result<std::process::Output> {
    let mut args = vec!["-A", "-t"];
    for sql in statements {
        args.extend(["-c", sql.as_ref()]);
    }
    let token = w.token(user)?;
    w.tls_target("app-db", user, &token).psql_args(&args)
}

/// Fails unless each of `wanted` is part of some recorded query's SQL.
fn assert_queries_contain(events: &[Value], wanted: &[String]) {
    let queries: Vec<&str> = events_of_kind(events, "query")
        .iter()
        .filter_map(|e| e["kind"]["sql"].as_str())
        .collect();
    for want in wanted {
        assert!(
            queries.iter().any(|q| q.contains(want.as_str())),
            "{want} in {queries:#?}"
        );
    }
}

/// Every recorded event of `user`'s sessions (pgbench opens more than
/// one), once they have ended, and their raw `show --json` output.
fn recorded(w: &World, user: &str) -> Result<(Vec<Value>, Vec<u8>)> {
    recorded_sessions(w, user, 1)
}

/// [`recorded`] once at least `count` sessions of `user` are in the store:
/// a session that ended a moment ago may not be listed yet.
fn recorded_sessions(w: &World, user: &str, count: usize) -> Result<(Vec<Value>, Vec<u8>)> {
    let deadline = Instant::now() + common::RECORDING_WAIT;
    let ids = loop {
        let sessions: Vec<Value> = common::list_sessions(&w.gh)?
            .into_iter()
            .filter(|h| h["client_user"] == user)
            .collect();
        if sessions.len() >= count.max(1) && sessions.iter().all(|h| !h["outcome"].is_null()) {
            break sessions
                .iter()
                .map(session_id)
                .collect::<Result<Vec<_>>>()?;
        }
        if Instant::now() >= deadline {
            bail!("{user}'s sessions did not end: {sessions:#?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (mut events, mut raw) = (Vec::new(), Vec::new());
    for id in ids {
        raw.extend(w.gh.run_cli(&["recordings", "show", &id, "--json"])?.stdout);
        events.extend(show_session(&w.gh, &id)?.1);
    }
    Ok((events, raw))
}

#[test]
fn what_clients_send_is_recorded_masked_and_reaches_the_target_whole() -> Result<()> {
    let w = world("allow")?;

    // psql: INSERT with a column list and multi-row VALUES, UPDATE SET,
    // WHERE comparisons, ON CONFLICT DO UPDATE SET, and a card number
    // only a detector recognises.
    let statements = [
        "insert into customers (id, name, email, ssn) values \
         (1, 'Marguerite', 'marguerite@example.org', '512-33-7890'), \
         (2, 'Quentin', 'quentin@example.net', '733-21-0042')",
        "update customers set ssn = '845-12-3344', note = 'card 4000 0566 5566 5556' \
         where email = 'quentin@example.net'",
        "insert into customers (id, ssn) values (1, '906-55-1212') \
         on conflict (id) do update set ssn = '906-55-1212'",
        "select id from customers where note like '%4000 0566 5566 5556%'",
    ];
    let out = psql_session(&w, "psql-writer", &statements)?;
    assert!(out.status.success(), "{}", out.stderr_text());
    // A statement the parser cannot read: detectors over its raw text. It
    // fails at the target, whose error text is masked as before.
    let out = psql(&w, "psql-garbled", "selec 'x' frm nobody@example.com")?;
    assert!(!out.status.success());

    // psycopg with server-side binding: the values travel as Bind
    // parameters, masked by the column each $n is written to or compared
    // with (found in the Parse), and by detectors.
    let token = w.token("alice")?;
    let script = r#"
import psycopg
assert psycopg.pq.version() // 10000 == 17, psycopg.pq.version()
with psycopg.connect("") as conn:
    conn.execute("insert into customers (id, name, email) values (%s, %s, %s)",
                 [3, "Theo", "theo@example.com"])
    conn.execute("update customers set ssn = %s where email = %s",
                 ["601-44-2211", "theo@example.com"])
    print(conn.execute("select ssn from customers where id = %s", [3]).fetchone()[0])
    with conn.cursor().copy("copy customers (id, name, email, ssn) from stdin") as copy:
        copy.write_row((6, "Psy", "psy.copy@example.com", "333-44-5566"))
"#;
    let out =
        w.tls_target("app-db", "psycopg-binder", &token)
            .python(PSYCOPG_LIBPQ17, script, &[])?;
    // Results are masked for the client as before (ssn is a masked column).
    assert_eq!(
        out.success_text()?,
        partial("601-44-2211"),
        "log:\n{}",
        w.log()
    );

    // pgbench with a custom script, prepared: the literals are in the
    // Parse, the id a parameter.
    let dir = tempfile::tempdir()?;
    let script_path = dir.path().join("pii.sql");
    std::fs::write(
        &script_path,
        "\\set id 3\n\
         update customers set ssn = '345-67-8901', note = 'card 4000 0566 5566 5556' where id <= :id;\n",
    )?;
    let target = w.tls_target("app-db", "pgbench-writer", &token);
    let out = target.pgbench(&[
        "-n",
        "-M",
        "prepared",
        "-t",
        "20",
        "-f",
        &script_path.to_string_lossy(),
    ])?;
    out.success_text()?;

    // A multi-row INSERT too long for the parser (over 128 KiB): which
    // value goes to ssn is not worked out, so every literal is masked by
    // the rule of the column it names. No detector knows these values.
    let bulk = dir.path().join("bulk.sql");
    let rows: Vec<String> = (1000..8000)
        .map(|i| format!("({i}, '{:03}{BULK_SSN}')", i % 1000))
        .collect();
    std::fs::write(
        &bulk,
        format!(
            "insert into customers (id, ssn) values {};\n",
            rows.join(", ")
        ),
    )?;
    let out = w
        .tls_target("app-db", "psql-bulk", &token)
        .psql_args(&["-f", &bulk.to_string_lossy()])?;
    assert!(out.status.success(), "{}", out.stderr_text());

    // COPY FROM STDIN (psql's \copy), CSV and text: rows are recorded
    // masked by the COPY's column list.
    let csv = dir.path().join("rows.csv");
    std::fs::write(&csv, "4,Copy,copy.person@example.com,111-22-3344\n")?;
    let text = dir.path().join("rows.txt");
    std::fs::write(&text, "5\tText\ttext.person@example.com\t222-33-4455\n")?;
    let copy_csv = format!(
        "\\copy customers (id, name, email, ssn) from '{}' with (format csv)",
        csv.display()
    );
    let copy_text = format!(
        "\\copy customers (id, name, email, ssn) from '{}'",
        text.display()
    );
    let out = w
        .tls_target("app-db", "psql-copier", &token)
        .psql_args(&["-c", &copy_csv, "-c", &copy_text])?;
    assert!(out.status.success(), "{}", out.stderr_text());

    // The target has the originals.
    assert_eq!(
        w.pg.psql_direct(
            "app",
            &format!("select count(*) from customers where ssn like '%{BULK_SSN}'")
        )?,
        "7000"
    );
    assert_eq!(
        w.pg.psql_direct(
            "app",
            "select string_agg(id || ':' || coalesce(email, '') || ':' || coalesce(ssn, ''), ' ' order by id) \
             from customers where id < 1000"
        )?,
        "1:marguerite@example.org:345-67-8901 2:quentin@example.net:345-67-8901 \
         3:theo@example.com:345-67-8901 4:copy.person@example.com:111-22-3344 \
         5:text.person@example.com:222-33-4455 6:psy.copy@example.com:333-44-5566"
    );

    // The recordings: masked forms in place of every original.
    let (events, raw) = recorded(&w, "psql-writer")?;
    assert_absent(&raw, &SENT, "psql's recording");
    let queries: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"]["kind"] == "query")
        .filter_map(|e| e["kind"]["sql"].as_str())
        .collect();
    let has = |i: usize, part: String| {
        assert!(
            queries[i].contains(&part),
            "query {i} lacks {part:?}: {queries:#?}"
        )
    };
    has(
        0,
        format!(
            "(1, 'Marguerite', '{}', '{}')",
            partial("marguerite@example.org"),
            partial("512-33-7890")
        ),
    );
    has(
        0,
        format!(
            "(2, 'Quentin', '{}', '{}')",
            partial("quentin@example.net"),
            partial("733-21-0042")
        ),
    );
    has(1, format!("set ssn = '{}'", partial("845-12-3344")));
    has(1, "note = 'card [redacted]'".into());
    has(
        1,
        format!("where email = '{}'", partial("quentin@example.net")),
    );
    has(
        2,
        format!(
            "values (1, '{0}') on conflict (id) do update set ssn = '{0}'",
            partial("906-55-1212")
        ),
    );
    has(3, "like '%[redacted]%'".into());
    assert!(
        !events_of_kind(&events, "masked").is_empty(),
        "no masked counts recorded: {events:#?}"
    );

    let (events, raw) = recorded(&w, "psql-garbled")?;
    assert_absent(&raw, &SENT, "the unparsed statement's recording");
    let queries = events_of_kind(&events, "query");
    assert_eq!(queries[0]["kind"]["sql"], "selec 'x' frm [redacted]");

    let (events, raw) = recorded(&w, "psycopg-binder")?;
    assert_absent(&raw, &SENT, "psycopg's recording");
    let binds: Vec<&Value> = events_of_kind(&events, "bind");
    let params: Vec<&Value> = binds.iter().map(|b| &b["kind"]["params"]).collect();
    let email = partial("theo@example.com");
    assert!(
        params.iter().any(|p| p[2] == email.as_str()),
        "the e-mail written to the email column: {params:#?}"
    );
    assert!(
        params
            .iter()
            .any(|p| p[0] == partial("601-44-2211").as_str() && p[1] == email.as_str()),
        "ssn written, email compared: {params:#?}"
    );
    // psycopg's COPY, whatever protocol carries it, is recorded without its
    // originals (asserted above) but recorded.
    assert!(
        !events_of_kind(&events, "copy_data").is_empty(),
        "{events:#?}"
    );

    let (events, raw) = recorded(&w, "pgbench-writer")?;
    assert_absent(&raw, &SENT, "pgbench's recording");
    let parses = events_of_kind(&events, "parse");
    assert!(
        parses
            .iter()
            .any(|p| p["kind"]["sql"].as_str().is_some_and(|s| s
                .contains(&format!("ssn = '{}'", partial("345-67-8901")))
                && s.contains("'card [redacted]'"))),
        "{parses:#?}"
    );

    let (events, raw) = recorded(&w, "psql-bulk")?;
    assert_absent(&raw, &SENT, "the bulk INSERT's recording");
    assert_absent(&raw, &[BULK_SSN], "the bulk INSERT's recording");
    let queries = events_of_kind(&events, "query");
    assert!(
        queries.iter().any(|q| q["kind"]["sql"]
            .as_str()
            .is_some_and(|s| s.starts_with(&format!(
                "insert into customers (id, ssn) values ('{}', '{}'), ",
                partial("1000"),
                partial(&format!("000{BULK_SSN}"))
            )))),
        "{:.2000}",
        format!("{queries:?}")
    );

    let (events, raw) = recorded(&w, "psql-copier")?;
    assert_absent(&raw, &SENT, "the COPY's recording");
    let copies = events_of_kind(&events, "copy");
    assert_eq!(copies.len(), 2, "{events:#?}");
    let data: Vec<&str> = events_of_kind(&events, "copy_data")
        .iter()
        .filter_map(|e| e["kind"]["data"].as_str())
        .collect();
    assert_eq!(
        data,
        [
            format!(
                "4,Copy,{},{}\n",
                partial("copy.person@example.com"),
                partial("111-22-3344")
            ),
            format!(
                "5\tText\t{}\t{}\n",
                partial("text.person@example.com"),
                partial("222-33-4455")
            ),
        ],
        "{events:#?}"
    );
    // `recordings show` prints the rows, masked.
    let id = session_id(&ended_session_of_user(&w.gh, "psql-copier")?)?;
    let shown = w.gh.run_cli(&["recordings", "show", &id])?.success_text()?;
    assert!(
        shown.contains(&format!(
            "{},{}",
            partial("copy.person@example.com"),
            partial("111-22-3344")
        )),
        "{shown}"
    );

    let header = ended_session_of_user(&w.gh, "psql-writer")?;
    let everything: Vec<&str> = SENT.iter().copied().chain([BULK_SSN]).collect();
    assert_stored_recordings_lack(
        &w.gh,
        &everything,
        &[b"Marguerite", partial("512-33-7890").as_bytes()],
    )?;
    assert_exported_archive_lacks(&w.gh, &session_id(&header)?, &everything, b"Marguerite")?;
    Ok(())
}

#[test]
fn approvers_and_the_log_are_shown_masked_statements() -> Result<()> {
    let w = world("block")?;
    w.pg.psql_direct(
        "app",
        "insert into customers (id, email) values (9, 'held@example.com')",
    )?;
    let token = w.token("alice")?;
    let target = w.tls_target("app-db", "deleter", &token);
    let mut cmd = Command::new("psql");
    target.apply_env(&mut cmd);
    cmd.args([
        "-X",
        "-w",
        "-c",
        "delete from customers where email = 'held@example.com'",
    ]);
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;

    let deadline = Instant::now() + Duration::from_secs(20);
    let listed = loop {
        let out = w.gh.run_cli(&["approvals", "list", "--json"])?;
        if !out.stdout.trim_ascii().is_empty() {
            break out.stdout;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            bail!("the delete was never held; log:\n{}", w.log());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    let request: Value =
        serde_json::from_slice(listed.split(|b| *b == b'\n').next().unwrap_or_default())?;
    assert_eq!(
        request["statement"],
        format!(
            "delete from customers where email = '{}'",
            partial("held@example.com")
        ),
        "{request:#}"
    );
    assert_absent(&listed, &SENT, "approvals list");

    // Blocked as unreadable: the parser's reason quotes the value, whose
    // column it cannot know; no detector knows it either.
    let out = psql(
        &w,
        "psql-unreadable",
        &format!("insert into customers (id, ssn) values (10 '{UNREAD_SSN}')"),
    )?;
    assert!(!out.status.success());
    assert!(
        out.stderr_text()
            .contains("blocked by policy rule \"unparsed\""),
        "{}",
        out.stderr_text()
    );
    let (events, raw) = recorded(&w, "psql-unreadable")?;
    assert_absent(&raw, &[UNREAD_SSN], "the blocked statement's recording");
    let blocked = events_of_kind(&events, "blocked");
    assert!(
        blocked[0]["kind"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains(&partial(UNREAD_SSN))),
        "{blocked:#?}"
    );
    assert_absent(w.log().as_bytes(), &SENT, "the daemon's log");
    Ok(())
}

/// `PREPARE … AS` in SQL and a later `EXECUTE name(…)`: the arguments are
/// masked by the columns of the prepared statement's parameters, here an
/// SSN that no enabled detector recognises, so only the column rule can
/// hide it. The target gets the original value.
#[test]
fn executed_arguments_are_masked_by_the_prepared_statements_columns() -> Result<()> {
    let w = world("allow")?;
    const EXECUTED_SSN: &str = "634-11-2290";
    let statements = [
        "insert into customers (id, name) values (7, 'Exec')".to_owned(),
        "prepare set_ssn(int, text) as update customers set ssn = $2 where id = $1".to_owned(),
        format!("execute set_ssn(7, '{EXECUTED_SSN}')"),
    ];
    // The statement the second prepares is known when the third executes it.
    let out = psql_session(&w, "psql-executor", &statements)?;
    assert!(out.status.success(), "{}", out.stderr_text());
    assert_eq!(
        w.pg.psql_direct("app", "select ssn from customers where id = 7")?,
        EXECUTED_SSN,
        "the target got the original value"
    );

    let (events, raw) = recorded(&w, "psql-executor")?;
    assert_absent(&raw, &[EXECUTED_SSN], "the EXECUTE's recording");
    assert_queries_contain(
        &events,
        &[format!("execute set_ssn(7, '{}')", partial(EXECUTED_SSN))],
    );
    assert_stored_recordings_lack(&w.gh, &[EXECUTED_SSN], &[b"Exec"])?;
    Ok(())
}

/// A `DO` block and a `LANGUAGE sql` function body write SSNs from inside
/// a string: each is masked in the recorded text by its column's rule, the
/// body stays readable, and the target gets the originals.
#[test]
fn values_written_from_do_blocks_and_function_bodies_are_masked_by_column_rules() -> Result<()> {
    let w = world("allow")?;
    const DO_SSN: &str = "418-20-7731";
    const FUNCTION_SSN: &str = "529-31-8842";
    let statements = [
        format!(
            "do $$begin insert into customers (id, name) values (8, 'Body'); \
             update customers set ssn = '{DO_SSN}' where id = 8; end$$"
        ),
        format!(
            "create function set_ssn9() returns void language sql as \
             $f$ insert into customers (id, name, ssn) values (9, 'Func', '{FUNCTION_SSN}') $f$"
        ),
        "select set_ssn9()".to_owned(),
    ];
    let out = psql_session(&w, "psql-bodies", &statements)?;
    assert!(out.status.success(), "{}", out.stderr_text());
    assert_eq!(
        w.pg.psql_direct(
            "app",
            "select ssn from customers where id in (8, 9) order by id"
        )?,
        format!("{DO_SSN}\n{FUNCTION_SSN}"),
        "the target got the original values"
    );

    let (events, raw) = recorded(&w, "psql-bodies")?;
    assert_absent(&raw, &[DO_SSN, FUNCTION_SSN], "the bodies' recording");
    // The bodies stay readable, each value masked by its column's rule.
    assert_queries_contain(
        &events,
        &[
            format!(
                "update customers set ssn = '{}' where id = 8",
                partial(DO_SSN)
            ),
            format!("values (9, 'Func', '{}') $f$", partial(FUNCTION_SSN)),
        ],
    );
    assert_stored_recordings_lack(&w.gh, &[DO_SSN, FUNCTION_SSN], &[b"Body", b"Func"])?;
    Ok(())
}

/// The target's errors quote what the client sent: the literal a syntax
/// error stopped at, an unterminated string, the value a data exception
/// rejects, and the statement a function ran. Under `unparsed = "allow"`
/// these reach the target, and its errors are masked like the statements.
#[test]
fn values_the_targets_errors_echo_are_masked() -> Result<()> {
    let w = world("allow")?;
    const AT_OR_NEAR: &str = "512-00-1111";
    const UNTERMINATED: &str = "512-00-2222";
    const NOT_AN_ID: &str = "512-00-3333";
    const IN_A_FUNCTION: &str = "512-00-4444";
    const IN_CONTEXT: &str = "512-00-5555";
    let cases = [
        (
            format!("insert into customers (id, ssn) values (10 '{AT_OR_NEAR}')"),
            // The token as the target quotes it, quotes and all.
            format!(
                "syntax error at or near \"{}\"",
                partial(&format!("'{AT_OR_NEAR}'"))
            ),
        ),
        (
            format!("update customers set ssn = '{UNTERMINATED}"),
            "unterminated quoted string at or near \"".to_owned(),
        ),
        (
            format!("insert into customers (id, name) values ('{NOT_AN_ID}', 'x')"),
            format!(
                "invalid input syntax for type integer: \"{}\"",
                partial(NOT_AN_ID)
            ),
        ),
        (
            format!(
                "do $$begin execute 'update customers set ssn = ''{IN_A_FUNCTION}'' \
                 where id = ''x'''; end$$"
            ),
            "invalid input syntax for type integer".to_owned(),
        ),
        (
            format!(
                "do $$begin insert into customers (id, name) values (20, 'E'); \
                 insert into customers (id, ssn) values (20, '{IN_CONTEXT}'); end$$"
            ),
            "duplicate key value violates unique constraint".to_owned(),
        ),
    ];
    let mut stderr = String::new();
    for (sql, says) in &cases {
        let out = psql(&w, "psql-echo", sql)?;
        assert!(!out.status.success(), "{sql}");
        let first_line = out.stderr_text().lines().next().unwrap_or("").to_owned();
        assert!(first_line.contains(says.as_str()), "{first_line} for {sql}");
        stderr.push_str(&out.stderr_text());
    }
    // The statement the function ran, as psql shows it (QUERY: and
    // CONTEXT: SQL statement "…"), masked.
    assert!(
        stderr.contains(&format!("ssn = '{}'", partial(IN_A_FUNCTION))),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("values (20, '{}')", partial(IN_CONTEXT))),
        "{stderr}"
    );
    assert_absent(
        stderr.as_bytes(),
        &[IN_A_FUNCTION, IN_CONTEXT],
        "what psql showed",
    );
    let sent = [AT_OR_NEAR, UNTERMINATED, IN_A_FUNCTION, IN_CONTEXT];
    let (events, raw) = recorded_sessions(&w, "psql-echo", cases.len())?;
    assert_absent(&raw, &sent, "the echoing errors' recording");
    let errors: Vec<String> = events_of_kind(&events, "error")
        .iter()
        .map(|e| e.to_string())
        .collect();
    // The value given for `id` is no masked column's, so its statement is
    // recorded as sent; the error, which cannot say whose value it quotes,
    // is masked.
    assert_absent(errors.concat().as_bytes(), &[NOT_AN_ID], "the errors");
    assert_eq!(errors.len(), cases.len(), "{errors:#?}");
    assert_stored_recordings_lack(&w.gh, &sent, &[b"invalid input syntax"])?;
    assert_absent(w.log().as_bytes(), &sent, "the daemon's log");
    Ok(())
}
