//! The operator console end to end, driven through tmux like a person:
//! real PostgreSQL, the real daemon, psql as the agent, `gatehouse
//! console` on the box and `ssh -t` to the admin port. An approval shows
//! up (banner, then screen 2) and `a` lets psql finish; `d` with a reason
//! gives psql 42501 with it; `K` `y` on screen 1 ends a session with
//! 57P01; screen 3 replays a recorded session and verifies it. Every
//! decision and kill is recorded under the operator who made it.

mod common;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use common::admin::Admin;
use common::{
    ended_session_of_user, events_of_kind, list_sessions, session_id, show_session, spawn_psql,
};
use gatehouse_tests::gatehouse::gatehouse_bin;
use gatehouse_tests::{OutputExt, Tmux};
use serde_json::Value;

/// How long the screen or a client gets to show what is expected.
const WAIT: Duration = Duration::from_secs(30);

fn orders(a: &Admin) -> Result<()> {
    a.w.pg.psql_direct(
        "app",
        "CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders VALUES (1), (2), (3);",
    )?;
    Ok(())
}

fn count(a: &Admin) -> Result<String> {
    Ok(a.w
        .pg
        .psql_direct("app", "select count(*) from orders")?
        .trim()
        .to_owned())
}

/// `gatehouse console --as OPERATOR` in a tmux window.
fn local_console(a: &Admin, operator: &str, term: &str) -> Result<Tmux> {
    let command = format!(
        "{} --config {} console --as {operator}",
        gatehouse_bin()?.display(),
        a.w.gh.config_path().display()
    );
    Tmux::start(&command, 80, 24, term)
}

/// `ssh -t -p ADMIN USER@127.0.0.1` in a tmux window.
fn ssh_console(a: &Admin, user: &str, term: &str) -> Result<Tmux> {
    let command = format!(
        "ssh -t {} -p {} {user}@127.0.0.1",
        a.options(user).join(" "),
        a.port
    );
    Tmux::start(&command, 80, 24, term)
}

/// The recorded decision on the held statement of `user`'s session.
fn decision(a: &Admin, user: &str) -> Result<Value> {
    let header = ended_session_of_user(&a.w.gh, user)?;
    let (_, events) = show_session(&a.w.gh, &session_id(&header)?)?;
    events_of_kind(&events, "approval_decided")
        .first()
        .map(|e| e["kind"].clone())
        .with_context(|| format!("no decision recorded for {user}: {events:#?}"))
}

/// The commands recorded in ended operator recordings of `protocol`, once
/// at least `sessions` of them have ended (each operator's connection
/// ends its recording on its own time after its client exits).
fn operator_commands(a: &Admin, protocol: &str, sessions: usize) -> Result<Vec<String>> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let ended: Vec<Value> = list_sessions(&a.w.gh)?
            .into_iter()
            .filter(|h| h["protocol"] == protocol && !h["outcome"].is_null())
            .collect();
        if ended.len() >= sessions {
            let mut commands = Vec::new();
            for h in ended {
                let (_, events) = show_session(&a.w.gh, &session_id(&h)?)?;
                for e in events_of_kind(&events, "admin_command") {
                    commands.push(e["kind"]["command"].as_str().unwrap_or_default().to_owned());
                }
            }
            return Ok(commands);
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "fewer than {sessions} ended {protocol} recordings\n{}",
                a.w.log()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The id of the request shown in the approval banner.
fn banner_id(screen: &str) -> Result<String> {
    let line = screen
        .lines()
        .find(|l| l.starts_with("! approval "))
        .with_context(|| format!("no approval banner:\n{screen}"))?;
    Ok(line["! approval ".len()..]
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned())
}

#[test]
fn an_operator_approves_denies_kills_and_replays_from_the_local_console() -> Result<()> {
    let a = Admin::start()?;
    orders(&a)?;
    // A finished session to replay later.
    let token = a.w.token("replay-bot")?;
    let out =
        a.w.psql("replay-bot", &token, "select 'needle-' || 42 as marker")?;
    assert_eq!(out.success_text()?.trim(), "needle-42");

    let tm = local_console(&a, "alice", "xterm")?;
    tm.wait_for("1 Sessions", WAIT)?;

    // A held statement raises the banner on screen 1, then shows on 2.
    let mut held = spawn_psql(&a.w, "held-bot", "DELETE FROM orders WHERE id = 1")?;
    let screen = tm.wait_for("! approval ", WAIT)?;
    let id = banner_id(&screen)?;
    tm.keys(&["2"])?;
    tm.wait_for("DELETE FROM orders WHERE id = 1", WAIT)?;
    tm.keys(&["a"])?;
    let status = held.wait(WAIT)?;
    assert!(status.success(), "{}", held.stderr());
    assert_eq!(count(&a)?, "2");
    let decided = decision(&a, "held-bot")?;
    assert_eq!(decided["id"], id.as_str());
    assert_eq!(decided["decision"], "approved");
    let by = decided["by"].as_str().unwrap_or_default();
    assert!(by.starts_with("alice (local console uid=0 pid="), "{by}");

    // Denied with a reason: the client's 42501 carries it.
    let mut denied = spawn_psql(&a.w, "denied-bot", "DELETE FROM orders WHERE id = 2")?;
    tm.wait_for("WHERE id = 2", WAIT)?;
    tm.keys(&["d"])?;
    tm.wait_for("reason:", WAIT)?;
    tm.type_text("not on a friday")?;
    tm.keys(&["Enter"])?;
    let status = denied.wait(WAIT)?;
    assert!(!status.success());
    let err = denied.stderr();
    assert!(
        err.contains("42501") && err.contains("not on a friday"),
        "{err}"
    );
    assert_eq!(count(&a)?, "2");

    // The live view follows a session; K y kills it, and psql says so.
    let mut sleepy = spawn_psql(
        &a.w,
        "sleepy-bot",
        "select 'live-' || 'marker'; select pg_sleep(60)",
    )?;
    tm.keys(&["1"])?;
    tm.wait_for("sleepy-bot", WAIT)?;
    tm.keys(&["/"])?;
    tm.type_text("sleepy")?;
    tm.keys(&["Enter", "Enter"])?;
    tm.wait_for("select 'live-' || 'marker'", WAIT)?;
    tm.keys(&["K"])?;
    tm.wait_for("y kills it", WAIT)?;
    tm.keys(&["y"])?;
    let status = sleepy.wait(WAIT)?;
    assert!(!status.success());
    let err = sleepy.stderr();
    assert!(
        err.contains("57P01") && err.contains("killed by alice"),
        "{err}"
    );
    let header = ended_session_of_user(&a.w.gh, "sleepy-bot")?;
    assert_eq!(header["outcome"], "terminated");
    let reason = header["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("killed by alice (local console"),
        "{reason}"
    );

    // Screen 3: find the finished session, replay it, verify it.
    tm.keys(&["q", "3"])?;
    tm.wait_for("STARTED (UTC)", WAIT)?;
    tm.keys(&["/"])?;
    tm.type_text("identity:replay-bot")?;
    tm.keys(&["Enter"])?;
    tm.wait_for("1 shown", WAIT)?;
    tm.keys(&["Enter"])?;
    tm.wait_for("statement 1 of", WAIT)?;
    tm.keys(&["Right"])?;
    tm.wait_for("needle-42", WAIT)?;
    tm.keys(&["v"])?;
    tm.wait_for("verify: ok", WAIT)?;
    tm.keys(&["q", "q"])?;
    tm.wait_until(WAIT, "the console to exit", |_| {
        tm.exited().unwrap_or(false)
    })?;

    // The console's own recording has every action, as alice.
    let commands = operator_commands(&a, "console", 1)?;
    for expected in [
        format!("console: approve {id}"),
        "not on a friday".to_owned(),
        "console: kill ".to_owned(),
        "console: replay ".to_owned(),
        "console: verify ".to_owned(),
    ] {
        assert!(
            commands.iter().any(|c| c.contains(&expected)),
            "{expected:?} not in {commands:#?}"
        );
    }
    Ok(())
}

#[test]
fn operators_over_ssh_share_the_queue_and_decide_as_themselves() -> Result<()> {
    let a = Admin::start()?;
    orders(&a)?;
    // Two operators at once: bob (not an approver) on a VT100, alice.
    let bob = ssh_console(&a, "bob", "vt100")?;
    let alice = ssh_console(&a, "alice", "xterm")?;
    bob.wait_for("1 Sessions", WAIT)?;
    alice.wait_for("1 Sessions", WAIT)?;

    let mut held = spawn_psql(&a.w, "held-bot", "DELETE FROM orders WHERE id = 3")?;
    let id = banner_id(&bob.wait_for("! approval ", WAIT)?)?;
    assert_eq!(banner_id(&alice.wait_for("! approval ", WAIT)?)?, id);

    // bob may watch but not decide; the request stays.
    bob.keys(&["2"])?;
    bob.wait_for("DELETE FROM orders WHERE id = 3", WAIT)?;
    bob.keys(&["a"])?;
    bob.wait_for("not an operator marked approver", WAIT)?;
    assert_eq!(count(&a)?, "3");
    // A VT100 gets structure without colour: reverse video, no SGR colours.
    let raw = bob.screen_with_attributes()?;
    assert!(raw.contains("\x1b[7m"), "no reverse video:\n{raw:?}");
    for colour in [
        "\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[34m", ";31m", ";33m",
    ] {
        assert!(
            !raw.contains(colour),
            "colour {colour:?} on a vt100:\n{raw:?}"
        );
    }

    // The window changes size: the console lays out for it.
    alice.keys(&["1"])?;
    alice.resize(120, 30)?;
    alice.wait_for("CLIENT", WAIT)?;
    alice.resize(80, 24)?;
    alice.wait_until(WAIT, "the narrow layout", |s| {
        !s.contains("CLIENT") && s.lines().count() <= 24
    })?;

    alice.keys(&["2"])?;
    alice.wait_for("DELETE FROM orders WHERE id = 3", WAIT)?;
    alice.keys(&["a"])?;
    let status = held.wait(WAIT)?;
    assert!(status.success(), "{}", held.stderr());
    assert_eq!(count(&a)?, "2");
    let decided = decision(&a, "held-bot")?;
    let by = decided["by"].as_str().unwrap_or_default();
    assert!(
        by.starts_with("alice (console over admin ssh from 127.0.0.1:"),
        "{by}"
    );
    bob.wait_until(WAIT, "the request to leave bob's queue", |s| {
        !s.contains("WHERE id = 3")
    })?;

    for tm in [&alice, &bob] {
        tm.keys(&["q"])?;
        tm.wait_until(WAIT, "ssh to exit", |_| tm.exited().unwrap_or(false))?;
    }
    // Alice's and Bob's connections.
    let commands = operator_commands(&a, "admin-ssh", 2)?;
    assert!(
        commands
            .iter()
            .any(|c| c == &format!("console: approve {id}")),
        "{commands:#?}"
    );
    assert!(
        commands.iter().filter(|c| *c == "console").count() >= 2,
        "{commands:#?}"
    );
    Ok(())
}

#[test]
fn a_shell_without_a_terminal_explains_itself() -> Result<()> {
    let a = Admin::start()?;
    let out = std::process::Command::new("ssh")
        .args(a.options("alice"))
        .args(["-T", "-p", &a.port.to_string(), "alice@127.0.0.1"])
        .stdin(std::process::Stdio::null())
        .output()?;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout_text().contains("ssh -t"),
        "{}",
        out.stdout_text()
    );
    Ok(())
}
