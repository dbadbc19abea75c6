//! Statements held for an operator's approval, end to end: psql runs a
//! DELETE under an `approve` rule, the gateway holds it (PostgreSQL has not
//! seen it), `gatehouse approvals list` shows it, and an operator approves
//! (it runs, once), denies (42501 with the reason), lets it time out
//! (57014), or the client leaves (the request is withdrawn). Every path
//! checks the row directly in PostgreSQL and the recorded decision.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use common::{
    APP_DB, LivePsql, Msg, RawPg, World, active_count_query, bind, ended_session_of_user,
    events_of_kind, execute, kind_of, parse, query, session_id, show_session, spawn_psql, sync,
};
use gatehouse_tests::{OutputExt, PolicySpec};
use serde_json::Value;

const RULES: &str = r#"
[[policies.default.rules]]
name = "orders-delete"
action = "approve"
statements = ["delete"]
tables = ["orders"]
timeout = "30s"

[[policies.default.rules]]
name = "refunds-alice-only"
action = "approve"
statements = ["delete", "update"]
tables = ["refunds"]
timeout = "30s"
approvers = ["alice"]

[[policies.default.rules]]
name = "quick"
action = "approve"
statements = ["delete"]
tables = ["slowpoke"]
timeout = "2s"
"#;

const OPERATORS: &str = r#"
[[operators]]
name = "alice"
public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKdfcLx8PNYnSNP8BQY5o+XGJOSfvqgzGdzHSVCFIGmK alice@laptop"
approver = true

[[operators]]
name = "bob"
public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG4TAibM0I9L7w6tkkNuZUZQkvuhWv2vekF8Ob+hE0yn bob@laptop"
approver = false

[[operators]]
name = "carol"
public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDxuzip7Ir3Kl5i44r4fAC1JBmOHfcVFqThOKNpjzLJ2 carol@laptop"
approver = true
"#;

const FIXTURE: &str = "\
CREATE TABLE orders (id int PRIMARY KEY, note text NOT NULL DEFAULT 'n');
INSERT INTO orders (id) VALUES (1), (2), (3);
CREATE TABLE refunds (id int PRIMARY KEY, amount int);
INSERT INTO refunds VALUES (1, 10), (2, 20);
CREATE TABLE slowpoke (id int PRIMARY KEY);
INSERT INTO slowpoke VALUES (1), (2);";

/// How long a test waits for the gateway to show, drop or answer a request.
const WAIT: Duration = Duration::from_secs(20);

fn world() -> Result<World> {
    let w = World::start(|c, _, _| {
        c.postgres_plaintext(true)
            .policy(
                PolicySpec::new("default")
                    .recording("batched")
                    .line("default = \"allow\""),
            )
            .raw(RULES)
            .raw(OPERATORS)
    })?;
    w.pg.psql_direct("app", FIXTURE)?;
    Ok(w)
}

/// `gatehouse approvals list --json`, parsed.
fn pending(w: &World) -> Result<Vec<Value>> {
    let out = w.gh.run_cli(&["approvals", "list", "--json"])?;
    if !out.status.success() {
        bail!("approvals list failed: {}", out.stderr_text());
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| anyhow!("parsing {l}: {e}")))
        .collect()
}

/// Waits until a pending request whose statement contains `needle` (and
/// whose id is not in `except`) is listed.
fn wait_pending(w: &World, needle: &str, except: &[&str]) -> Result<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let list = pending(w)?;
        if let Some(p) = list.iter().find(|p| {
            p["statement"].as_str().is_some_and(|s| s.contains(needle))
                && !except.contains(&p["id"].as_str().unwrap_or_default())
        }) {
            return Ok(p.clone());
        }
        if Instant::now() >= deadline {
            bail!(
                "no pending approval for {needle:?} within {WAIT:?}; list: {list:#?}\n--- log ---\n{}",
                w.log()
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until request `id` is no longer listed.
fn wait_not_pending(w: &World, id: &str) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let list = pending(w)?;
        if !list.iter().any(|p| p["id"] == id) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("approval {id} still listed after {WAIT:?}: {list:#?}");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn is_pending(w: &World, id: &str) -> Result<bool> {
    Ok(pending(w)?.iter().any(|p| p["id"] == id))
}

fn id_of(request: &Value) -> Result<String> {
    request["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("request without id: {request}"))
}

/// `gatehouse approvals approve|deny ID [--reason R] [--as OP]`.
fn decide(
    w: &World,
    verb: &str,
    id: &str,
    operator: Option<&str>,
    reason: Option<&str>,
) -> Result<std::process::Output> {
    let mut args = vec!["approvals", verb, id];
    if let Some(r) = reason {
        args.extend(["--reason", r]);
    }
    if let Some(op) = operator {
        args.extend(["--as", op]);
    }
    w.gh.run_cli(&args)
}

fn decide_ok(
    w: &World,
    verb: &str,
    id: &str,
    operator: Option<&str>,
    reason: Option<&str>,
) -> Result<()> {
    let out = decide(w, verb, id, operator, reason)?;
    if !out.status.success() {
        bail!(
            "approvals {verb} {id} --as {operator:?} failed: {}\n{}",
            out.stderr_text(),
            out.stdout_text()
        );
    }
    Ok(())
}

/// An operator who may not decide `id` is refused, and it stays pending.
fn assert_refused_decision(w: &World, verb: &str, id: &str, operator: Option<&str>) -> Result<()> {
    let out = decide(w, verb, id, operator, Some("should not count"))?;
    assert!(
        !out.status.success(),
        "approvals {verb} {id} --as {operator:?} succeeded: {}",
        out.stdout_text()
    );
    assert!(
        is_pending(w, id)?,
        "a refused {verb} by {operator:?} removed the request"
    );
    Ok(())
}

fn direct(w: &World, sql: &str) -> Result<String> {
    w.pg.psql_direct("app", sql)
}

/// PostgreSQL is not running (and has not been asked to run) `needle`.
fn assert_target_idle(w: &World, needle: &str) -> Result<()> {
    assert_eq!(
        direct(w, &active_count_query(needle))?,
        "0",
        "PostgreSQL is running {needle:?} while it waits for approval"
    );
    Ok(())
}

/// The recording of the ended session of `user`.
fn recording(w: &World, user: &str) -> Result<Vec<Value>> {
    let header = ended_session_of_user(&w.gh, user)?;
    let (_, events) = show_session(&w.gh, &session_id(&header)?)?;
    Ok(events)
}

/// The `approval_requested` and `approval_decided` events for `id`, in the
/// recording in that order (the request before the decision).
fn approval_events<'a>(events: &'a [Value], id: &str) -> Result<(&'a Value, &'a Value)> {
    let pos = |kind: &str| {
        events
            .iter()
            .position(|e| kind_of(e) == kind && e["kind"]["id"] == id)
    };
    let (Some(r), Some(d)) = (pos("approval_requested"), pos("approval_decided")) else {
        bail!("approval {id} not fully recorded: {events:#?}");
    };
    if r > d {
        bail!("approval {id}: decision recorded before the request: {events:#?}");
    }
    Ok((&events[r]["kind"], &events[d]["kind"]))
}

#[test]
fn approved_statement_runs_once_the_operator_says_so() -> Result<()> {
    let w = world()?;
    let sql = "DELETE FROM orders WHERE id = 1";
    let mut psql = spawn_psql(&w, "approve-bot", sql)?;

    let request = wait_pending(&w, sql, &[])?;
    let id = id_of(&request)?;
    assert_eq!(request["identity"], "oidc:approve-bot", "{request:#}");
    assert_eq!(request["connection"], APP_DB, "{request:#}");
    assert_eq!(request["statement"], sql, "{request:#}");
    assert_eq!(request["rule"], "orders-delete", "{request:#}");
    assert!(
        request["groups"]
            .as_array()
            .is_some_and(|g| g.iter().any(|x| x == common::DEPLOY_GROUP)),
        "{request:#}"
    );
    let requested_at = request["requested_at"].as_i64().unwrap_or_default();
    let deadline = request["deadline"].as_i64().unwrap_or_default();
    assert_eq!(
        deadline - requested_at,
        30_000_000,
        "deadline is the rule's 30 s timeout after the request: {request:#}"
    );
    assert!(request["session"].is_string(), "{request:#}");

    // The client is told, and PostgreSQL has not seen the statement.
    let notice = format!("waiting for approval {id}");
    wait_stderr(&psql, &notice)?;
    assert_eq!(direct(&w, "SELECT count(*) FROM orders WHERE id = 1")?, "1");
    assert_target_idle(&w, "FROM orders")?;
    assert!(psql.child.try_wait()?.is_none(), "psql stopped waiting");

    // With approvers configured, an unnamed or non-approver decision is refused.
    assert_refused_decision(&w, "approve", &id, None)?;
    assert_refused_decision(&w, "approve", &id, Some("bob"))?;
    assert_refused_decision(&w, "approve", &id, Some("mallory"))?;
    assert_eq!(direct(&w, "SELECT count(*) FROM orders WHERE id = 1")?, "1");

    decide_ok(&w, "approve", &id, Some("alice"), None)?;
    let status = psql.wait(WAIT)?;
    assert!(
        status.success(),
        "psql failed: {}\n{}",
        psql.stderr(),
        psql.stdout()
    );
    assert!(psql.stdout().contains("DELETE 1"), "{}", psql.stdout());
    assert_eq!(direct(&w, "SELECT count(*) FROM orders WHERE id = 1")?, "0");
    assert_eq!(direct(&w, "SELECT count(*) FROM orders")?, "2");
    wait_not_pending(&w, &id)?;
    // Decided once: a second decision finds nothing.
    assert!(
        !decide(&w, "approve", &id, Some("alice"), None)?
            .status
            .success()
    );

    let events = recording(&w, "approve-bot")?;
    let (requested, decided) = approval_events(&events, &id)?;
    assert_eq!(requested["rule"], "orders-delete", "{requested:#}");
    assert_eq!(
        requested["deadline"].as_i64(),
        Some(deadline),
        "{requested:#}"
    );
    assert_eq!(decided["decision"], "approved", "{decided:#}");
    assert!(
        decided["by"].as_str().is_some_and(|b| b.contains("alice")),
        "{decided:#}"
    );
    let completes: Vec<&str> = events_of_kind(&events, "complete")
        .iter()
        .filter_map(|e| e["kind"]["tag"].as_str())
        .collect();
    assert!(completes.contains(&"DELETE 1"), "{events:#?}");
    Ok(())
}

#[test]
fn denied_statement_fails_with_the_reason_and_changes_nothing() -> Result<()> {
    let w = world()?;
    let sql = "DELETE FROM orders WHERE id = 2";
    let mut psql = spawn_psql(&w, "deny-bot", sql)?;
    let request = wait_pending(&w, sql, &[])?;
    let id = id_of(&request)?;

    // bob is an operator but not an approver; mallory is nobody.
    assert_refused_decision(&w, "deny", &id, Some("bob"))?;
    assert_refused_decision(&w, "deny", &id, Some("mallory"))?;

    decide_ok(
        &w,
        "deny",
        &id,
        Some("carol"),
        Some("not during the freeze"),
    )?;
    let status = psql.wait(WAIT)?;
    assert!(!status.success(), "psql succeeded: {}", psql.stdout());
    let stderr = psql.stderr();
    let want = format!("ERROR:  42501: approval {id} denied by carol");
    assert!(stderr.contains(&want), "expected {want:?} in: {stderr}");
    assert!(stderr.contains(": not during the freeze"), "{stderr}");
    assert!(!psql.stdout().contains("DELETE"), "{}", psql.stdout());
    assert_eq!(direct(&w, "SELECT count(*) FROM orders WHERE id = 2")?, "1");
    assert_eq!(direct(&w, "SELECT count(*) FROM orders")?, "3");
    wait_not_pending(&w, &id)?;

    let events = recording(&w, "deny-bot")?;
    let (_, decided) = approval_events(&events, &id)?;
    assert_eq!(decided["decision"], "denied", "{decided:#}");
    assert!(
        decided["by"].as_str().is_some_and(|b| b.contains("carol")),
        "{decided:#}"
    );
    assert_eq!(decided["reason"], "not during the freeze", "{decided:#}");
    Ok(())
}

#[test]
fn a_rule_naming_its_approvers_refuses_other_approvers() -> Result<()> {
    let w = world()?;
    let sql = "DELETE FROM refunds WHERE id = 1";
    let mut psql = spawn_psql(&w, "refund-bot", sql)?;
    let request = wait_pending(&w, sql, &[])?;
    let id = id_of(&request)?;
    assert_eq!(request["rule"], "refunds-alice-only", "{request:#}");
    assert_eq!(
        request["approvers"],
        serde_json::json!(["alice"]),
        "{request:#}"
    );

    // carol approves other rules, but not this one; bob approves nothing.
    assert_refused_decision(&w, "approve", &id, Some("carol"))?;
    assert_refused_decision(&w, "deny", &id, Some("carol"))?;
    assert_refused_decision(&w, "approve", &id, Some("bob"))?;
    assert_refused_decision(&w, "approve", &id, None)?;
    assert_eq!(
        direct(&w, "SELECT count(*) FROM refunds WHERE id = 1")?,
        "1"
    );

    decide_ok(&w, "approve", &id, Some("alice"), None)?;
    let status = psql.wait(WAIT)?;
    assert!(status.success(), "psql failed: {}", psql.stderr());
    assert!(psql.stdout().contains("DELETE 1"), "{}", psql.stdout());
    assert_eq!(
        direct(&w, "SELECT count(*) FROM refunds WHERE id = 1")?,
        "0"
    );
    Ok(())
}

#[test]
fn an_undecided_request_times_out_with_57014() -> Result<()> {
    let w = world()?;
    let sql = "DELETE FROM slowpoke WHERE id = 1";
    let mut psql = spawn_psql(&w, "timeout-bot", sql)?;
    let request = wait_pending(&w, sql, &[])?;
    let id = id_of(&request)?;
    assert_eq!(request["rule"], "quick", "{request:#}");
    let span = request["deadline"].as_i64().unwrap_or_default()
        - request["requested_at"].as_i64().unwrap_or_default();
    assert_eq!(span, 2_000_000, "{request:#}");

    // Nobody decides; the gateway answers at the deadline.
    let status = psql.wait(WAIT)?;
    assert!(!status.success(), "psql succeeded: {}", psql.stdout());
    let stderr = psql.stderr();
    let want = format!("ERROR:  57014: approval timed out ({id})");
    assert!(stderr.contains(&want), "expected {want:?} in: {stderr}");
    assert_eq!(direct(&w, "SELECT count(*) FROM slowpoke")?, "2");
    assert!(!is_pending(&w, &id)?, "a timed-out request is still listed");
    assert!(
        !decide(&w, "approve", &id, Some("alice"), None)?
            .status
            .success(),
        "a timed-out request can still be approved"
    );
    assert_eq!(direct(&w, "SELECT count(*) FROM slowpoke")?, "2");

    let events = recording(&w, "timeout-bot")?;
    let (_, decided) = approval_events(&events, &id)?;
    assert_eq!(decided["decision"], "timed_out", "{decided:#}");
    Ok(())
}

#[test]
fn a_client_that_leaves_withdraws_its_request() -> Result<()> {
    let w = world()?;
    let sql = "DELETE FROM orders WHERE id = 3";
    let mut psql = spawn_psql(&w, "leaving-bot", sql)?;
    let request = wait_pending(&w, sql, &[])?;
    let id = id_of(&request)?;
    wait_stderr(&psql, &format!("waiting for approval {id}"))?;

    psql.signal("KILL")?;
    let _ = psql.wait(WAIT)?;
    wait_not_pending(&w, &id)?;
    assert!(
        !decide(&w, "approve", &id, Some("alice"), None)?
            .status
            .success(),
        "a withdrawn request can still be approved"
    );
    let header = ended_session_of_user(&w.gh, "leaving-bot")?;
    assert_eq!(direct(&w, "SELECT count(*) FROM orders WHERE id = 3")?, "1");
    assert_eq!(direct(&w, "SELECT count(*) FROM orders")?, "3");
    // Nothing is left running on the target on the session's behalf.
    assert_target_idle(&w, "FROM orders")?;

    let (_, events) = show_session(&w.gh, &session_id(&header)?)?;
    let (_, decided) = approval_events(&events, &id)?;
    assert_eq!(decided["decision"], "withdrawn", "{decided:#}");
    assert!(
        events_of_kind(&events, "complete")
            .iter()
            .all(|e| !e["kind"]["tag"]
                .as_str()
                .unwrap_or_default()
                .starts_with("DELETE")),
        "{events:#?}"
    );
    Ok(())
}

#[test]
fn an_approval_is_used_once_simple_protocol() -> Result<()> {
    let w = world()?;
    let token = w.token("again-bot")?;
    let mut psql = LivePsql::spawn(
        &w.tls_target(APP_DB, "again-bot", &token),
        &["-A", "-t", "-v", "VERBOSITY=verbose"],
    )?;
    let sql = "DELETE FROM orders WHERE id = 1";
    psql.write_stdin(&format!("{sql};\n"))?;
    let first = id_of(&wait_pending(&w, sql, &[])?)?;
    decide_ok(&w, "approve", &first, Some("alice"), None)?;
    psql.wait_stdout(WAIT, |out| out.contains("DELETE 1"))?;
    assert_eq!(direct(&w, "SELECT count(*) FROM orders WHERE id = 1")?, "0");

    // The row comes back; the same statement in the same session waits
    // again under a new id.
    direct(&w, "INSERT INTO orders (id) VALUES (1)")?;
    psql.write_stdin(&format!("{sql};\n"))?;
    let second = id_of(&wait_pending(&w, sql, &[&first])?)?;
    assert_ne!(first, second);
    assert_eq!(direct(&w, "SELECT count(*) FROM orders WHERE id = 1")?, "1");
    assert_target_idle(&w, "FROM orders")?;
    decide_ok(&w, "deny", &second, Some("alice"), Some("once is enough"))?;
    wait_stderr(&psql, &format!("approval {second} denied by alice"))?;
    assert_eq!(direct(&w, "SELECT count(*) FROM orders WHERE id = 1")?, "1");

    // The session goes on after the denial.
    psql.write_stdin("SELECT 'still here';\n")?;
    psql.wait_stdout(WAIT, |out| out.contains("still here"))?;
    psql.close_stdin();
    psql.wait(WAIT)?;
    Ok(())
}

#[test]
fn an_approval_is_used_once_extended_protocol() -> Result<()> {
    let w = world()?;
    let token = w.token("ext-bot")?;
    let mut raw = RawPg::connect(w.gh.pg_port())?;
    raw.login_ok("ext-bot", APP_DB, &token)?;
    let sql = "DELETE FROM orders WHERE id = 2";

    let mut pipeline = parse("del", sql);
    pipeline.extend(bind("", "del", &[]));
    pipeline.extend(execute("", 0));
    pipeline.extend(sync());
    raw.send(&pipeline)?;
    let first = wait_notice_id(&mut raw)?;
    let listed = wait_pending(&w, sql, &[])?;
    assert_eq!(listed["id"], first.as_str(), "{listed:#}");
    assert_eq!(direct(&w, "SELECT count(*) FROM orders WHERE id = 2")?, "1");
    decide_ok(&w, "approve", &first, Some("carol"), None)?;
    let msgs = raw.until_ready()?;
    assert_no_error(&msgs)?;
    assert!(
        tags(&msgs).contains(&"DELETE 1".to_owned()),
        "{:?}",
        tags(&msgs)
    );
    assert_eq!(direct(&w, "SELECT count(*) FROM orders WHERE id = 2")?, "0");

    // Running the approved prepared statement again is held again.
    direct(&w, "INSERT INTO orders (id) VALUES (2)")?;
    let mut again = bind("", "del", &[]);
    again.extend(execute("", 0));
    again.extend(sync());
    raw.send(&again)?;
    let second = wait_notice_id(&mut raw)?;
    assert_ne!(first, second);
    assert!(is_pending(&w, &second)?);
    assert_eq!(direct(&w, "SELECT count(*) FROM orders WHERE id = 2")?, "1");
    decide_ok(&w, "deny", &second, Some("alice"), Some("no second time"))?;
    let msgs = raw.until_ready()?;
    let errors: Vec<&Msg> = msgs.iter().filter(|m| m.tag == b'E').collect();
    assert_eq!(errors.len(), 1, "{msgs:?}");
    assert_eq!(errors[0].sqlstate(), "42501");
    assert!(
        errors[0]
            .message()
            .starts_with(&format!("approval {second} denied by alice")),
        "{}",
        errors[0].message()
    );
    assert!(errors[0].message().ends_with("no second time"));
    assert_eq!(direct(&w, "SELECT count(*) FROM orders WHERE id = 2")?, "1");
    raw.terminate()?;
    Ok(())
}

#[test]
fn other_sessions_keep_working_while_one_waits() -> Result<()> {
    let w = world()?;
    let held_sql = "DELETE FROM orders WHERE id = 1";
    let mut held = spawn_psql(&w, "waiting-bot", held_sql)?;
    let id = id_of(&wait_pending(&w, held_sql, &[])?)?;

    // A second session reads and writes (rules allow it) while the first waits.
    let token = w.token("busy-bot")?;
    let busy = w.tls_target(APP_DB, "busy-bot", &token);
    let out = busy.psql("SELECT 'count=' || count(*) FROM orders")?;
    assert_eq!(out.success_text()?, "count=3");
    let out = busy.psql_args(&[
        "-A",
        "-t",
        "-c",
        "UPDATE orders SET note = 'x' WHERE id = 2",
    ])?;
    assert_eq!(out.success_text()?, "UPDATE 1");
    assert_eq!(direct(&w, "SELECT note FROM orders WHERE id = 2")?, "x");

    // A second held statement from another session waits alongside.
    let other_sql = "DELETE FROM orders WHERE id = 3";
    let mut other = spawn_psql(&w, "other-bot", other_sql)?;
    let other_id = id_of(&wait_pending(&w, other_sql, &[])?)?;
    assert_ne!(id, other_id);

    // The first is still waiting throughout.
    assert!(is_pending(&w, &id)?, "the first request disappeared");
    assert!(
        held.child.try_wait()?.is_none(),
        "the first psql stopped waiting"
    );

    // Deciding one does not decide the other.
    decide_ok(&w, "approve", &other_id, Some("alice"), None)?;
    assert!(other.wait(WAIT)?.success(), "{}", other.stderr());
    assert_eq!(direct(&w, "SELECT count(*) FROM orders WHERE id = 3")?, "0");
    assert!(
        is_pending(&w, &id)?,
        "approving another request decided this one"
    );
    assert_eq!(direct(&w, "SELECT count(*) FROM orders WHERE id = 1")?, "1");

    decide_ok(&w, "deny", &id, Some("carol"), Some("later"))?;
    assert!(!held.wait(WAIT)?.success());
    assert_eq!(direct(&w, "SELECT count(*) FROM orders WHERE id = 1")?, "1");
    Ok(())
}

#[test]
fn messages_behind_a_held_one_wait_and_a_held_message_runs_whole_or_not_at_all() -> Result<()> {
    let w = world()?;
    let token = w.token("pipeline-bot")?;
    let mut raw = RawPg::connect(w.gh.pg_port())?;
    raw.login_ok("pipeline-bot", APP_DB, &token)?;

    // Two Query messages at once: the second must not overtake the first.
    let mut both = query("DELETE FROM orders WHERE id = 1");
    both.extend(query("UPDATE orders SET note = 'after' WHERE id = 2"));
    raw.send(&both)?;
    let id = wait_notice_id(&mut raw)?;
    assert!(is_pending(&w, &id)?);
    assert_eq!(direct(&w, "SELECT count(*) FROM orders WHERE id = 1")?, "1");
    assert_eq!(
        direct(&w, "SELECT note FROM orders WHERE id = 2")?,
        "n",
        "a statement queued behind the held one ran before it"
    );
    decide_ok(&w, "approve", &id, Some("alice"), None)?;
    let mut msgs = raw.until_ready()?;
    msgs.extend(raw.until_ready()?);
    assert_no_error(&msgs)?;
    assert_eq!(tags(&msgs), ["DELETE 1", "UPDATE 1"], "{msgs:?}");
    assert_eq!(direct(&w, "SELECT count(*) FROM orders WHERE id = 1")?, "0");
    assert_eq!(direct(&w, "SELECT note FROM orders WHERE id = 2")?, "after");

    // One message, two statements, one of them held: nothing runs until
    // the decision, and a denial runs none of it.
    raw.send(&query(
        "UPDATE orders SET note = 'multi' WHERE id = 2; DELETE FROM orders WHERE id = 3",
    ))?;
    let id = wait_notice_id(&mut raw)?;
    assert_eq!(direct(&w, "SELECT note FROM orders WHERE id = 2")?, "after");
    decide_ok(&w, "deny", &id, Some("carol"), Some("split it up"))?;
    let msgs = raw.until_ready()?;
    let errors: Vec<&Msg> = msgs.iter().filter(|m| m.tag == b'E').collect();
    assert_eq!(errors.len(), 1, "{msgs:?}");
    assert_eq!(errors[0].sqlstate(), "42501", "{}", errors[0].message());
    assert!(tags(&msgs).is_empty(), "{:?}", tags(&msgs));
    assert_eq!(direct(&w, "SELECT note FROM orders WHERE id = 2")?, "after");
    assert_eq!(direct(&w, "SELECT count(*) FROM orders WHERE id = 3")?, "1");

    // The session goes on.
    raw.send(&query("SELECT 'alive'"))?;
    let msgs = raw.until_ready()?;
    assert_no_error(&msgs)?;
    raw.terminate()?;
    Ok(())
}

#[test]
fn a_held_statement_inside_a_transaction() -> Result<()> {
    let w = world()?;
    let token = w.token("tx-bot")?;
    let mut psql = LivePsql::spawn(
        &w.tls_target(APP_DB, "tx-bot", &token),
        &["-A", "-t", "-v", "VERBOSITY=verbose"],
    )?;

    // Denied inside BEGIN: the transaction is aborted, COMMIT rolls back.
    psql.write_stdin(
        "BEGIN;\nINSERT INTO refunds VALUES (3, 30);\nDELETE FROM orders WHERE id = 1;\n",
    )?;
    let id = id_of(&wait_pending(&w, "DELETE FROM orders WHERE id = 1", &[])?)?;
    decide_ok(&w, "deny", &id, Some("alice"), Some("no"))?;
    wait_stderr(&psql, &format!("approval {id} denied by alice"))?;
    psql.write_stdin("SELECT 'inside';\nCOMMIT;\n")?;
    psql.wait_stdout(WAIT, |out| out.contains("ROLLBACK"))?;
    assert!(psql.stderr().contains("25P02"), "{}", psql.stderr());
    assert!(!psql.stdout().contains("inside"), "{}", psql.stdout());
    assert_eq!(direct(&w, "SELECT count(*) FROM refunds")?, "2");
    assert_eq!(direct(&w, "SELECT count(*) FROM orders")?, "3");

    // Approved inside BEGIN: it runs in the transaction, which commits.
    psql.write_stdin(
        "BEGIN;\nINSERT INTO refunds VALUES (4, 40);\nDELETE FROM orders WHERE id = 2;\n",
    )?;
    let id = id_of(&wait_pending(&w, "DELETE FROM orders WHERE id = 2", &[])?)?;
    decide_ok(&w, "approve", &id, Some("carol"), None)?;
    psql.wait_stdout(WAIT, |out| out.contains("DELETE 1"))?;
    psql.write_stdin("COMMIT;\n")?;
    psql.wait_stdout(WAIT, |out| out.contains("COMMIT"))?;
    assert_eq!(
        direct(&w, "SELECT count(*) FROM refunds WHERE id = 4")?,
        "1"
    );
    assert_eq!(direct(&w, "SELECT count(*) FROM orders WHERE id = 2")?, "0");
    psql.close_stdin();
    psql.wait(WAIT)?;
    Ok(())
}

#[test]
fn a_prepared_statement_is_held_at_every_execute() -> Result<()> {
    let w = world()?;
    let token = w.token("prep-bot")?;
    let mut psql = LivePsql::spawn(
        &w.tls_target(APP_DB, "prep-bot", &token),
        &["-A", "-t", "-v", "VERBOSITY=verbose"],
    )?;
    // Preparing runs nothing, so it is not held.
    psql.write_stdin("PREPARE d AS DELETE FROM orders WHERE id = 1;\n")?;
    psql.wait_stdout(WAIT, |out| out.contains("PREPARE"))?;
    assert!(pending(&w)?.is_empty(), "PREPARE was held");

    psql.write_stdin("EXECUTE d;\n")?;
    let request = wait_pending(&w, "", &[])?;
    let first = id_of(&request)?;
    assert_eq!(request["rule"], "orders-delete", "{request:#}");
    assert_eq!(direct(&w, "SELECT count(*) FROM orders WHERE id = 1")?, "1");
    // Checked last, so the rest of the behaviour is verified either way.
    let shown = request["statement"].clone();
    decide_ok(&w, "approve", &first, Some("alice"), None)?;
    psql.wait_stdout(WAIT, |out| out.contains("DELETE 1"))?;
    assert_eq!(direct(&w, "SELECT count(*) FROM orders WHERE id = 1")?, "0");

    direct(&w, "INSERT INTO orders (id) VALUES (1)")?;
    psql.write_stdin("EXECUTE d;\n")?;
    let second = id_of(&wait_pending(&w, "", &[&first])?)?;
    assert_eq!(direct(&w, "SELECT count(*) FROM orders WHERE id = 1")?, "1");
    decide_ok(&w, "deny", &second, Some("alice"), Some("once"))?;
    wait_stderr(&psql, &format!("approval {second} denied by alice"))?;
    assert_eq!(direct(&w, "SELECT count(*) FROM orders WHERE id = 1")?, "1");
    psql.close_stdin();
    psql.wait(WAIT)?;

    // The operator must see what runs, not just the name of a statement.
    assert!(
        shown
            .as_str()
            .is_some_and(|s| s.contains("DELETE FROM orders WHERE id = 1")),
        "the approval request does not show what EXECUTE d runs: statement = {shown}"
    );
    Ok(())
}

#[test]
fn a_reused_prepared_name_cannot_smuggle_a_held_statement() -> Result<()> {
    let w = world()?;
    // `x` is first a harmless statement; then one message drops it,
    // prepares a DELETE under the same name and runs it.
    let mut psql = {
        let token = w.token("smuggle-bot")?;
        LivePsql::spawn(
            &w.tls_target(APP_DB, "smuggle-bot", &token),
            &[
                "-A",
                "-t",
                "-v",
                "VERBOSITY=verbose",
                "-c",
                "PREPARE x AS SELECT 1",
                "-c",
                "DEALLOCATE x; PREPARE x AS DELETE FROM orders WHERE id = 1; EXECUTE x",
            ],
        )?
    };
    // Either it waits for an operator (deny it) or it is refused; it must
    // not run on its own.
    let deadline = Instant::now() + WAIT;
    let mut held = None;
    while held.is_none() && psql.child.try_wait()?.is_none() {
        if let Some(p) = pending(&w)?.into_iter().next() {
            held = Some(id_of(&p)?);
        } else if Instant::now() >= deadline {
            bail!("neither held nor answered within {WAIT:?}");
        } else {
            thread::sleep(Duration::from_millis(100));
        }
    }
    let ran_unapproved = direct(&w, "SELECT count(*) FROM orders WHERE id = 1")? == "0";
    if let Some(id) = &held {
        decide_ok(&w, "deny", id, Some("alice"), Some("no"))?;
    }
    psql.wait(WAIT)?;
    assert!(
        !ran_unapproved && !psql.stdout().contains("DELETE 1"),
        "the DELETE ran without approval (held: {held:?}); stdout: {}; stderr: {}",
        psql.stdout(),
        psql.stderr()
    );
    assert_eq!(direct(&w, "SELECT count(*) FROM orders WHERE id = 1")?, "1");
    Ok(())
}

/// Waits until psql's stderr contains `needle`.
fn wait_stderr(psql: &LivePsql, needle: &str) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    while !psql.stderr().contains(needle) {
        if Instant::now() >= deadline {
            bail!(
                "psql stderr has no {needle:?} within {WAIT:?}; stderr: {}; stdout: {}",
                psql.stderr(),
                psql.stdout()
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Reads until a NoticeResponse `waiting for approval ID` and returns ID.
fn wait_notice_id(raw: &mut RawPg) -> Result<String> {
    loop {
        let msg = raw
            .read_msg()?
            .ok_or_else(|| anyhow!("gateway closed before the approval notice"))?;
        match msg.tag {
            b'N' => {
                if let Some(id) = msg.message().strip_prefix("waiting for approval ") {
                    return Ok(id.trim().to_owned());
                }
            }
            b'E' => bail!(
                "error instead of an approval notice: {} {}",
                msg.sqlstate(),
                msg.message()
            ),
            b'Z' => bail!("ReadyForQuery before any approval notice"),
            _ => {}
        }
    }
}

fn assert_no_error(msgs: &[Msg]) -> Result<()> {
    if let Some(e) = msgs.iter().find(|m| m.tag == b'E') {
        bail!("unexpected error {} {}", e.sqlstate(), e.message());
    }
    Ok(())
}

fn tags(msgs: &[Msg]) -> Vec<String> {
    msgs.iter()
        .filter(|m| m.tag == b'C')
        .map(Msg::tag_text)
        .collect()
}
