//! SIGTERM: the daemon stops accepting, gives sessions `shutdown_grace` to
//! finish, then ends the rest with 57P01, records them as terminated, and
//! exits cleanly, leaving recordings readable.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{
    LivePsql, RawPg, World, ended_session_of_user, list_sessions, session_id, show_session,
};
use gatehouse_tests::OutputExt;

/// Idle raw sessions open at shutdown besides the psql one. Several,
/// because each session is a separate chance for the drain to go wrong.
const RAW_SESSIONS: usize = 4;

#[test]
fn sigterm_drains_idle_sessions_and_records_them_terminated() -> Result<()> {
    let mut w = World::start(|c, _, _| {
        c.postgres_plaintext(true)
            .line_in("limits", "shutdown_grace = \"1s\"")
    })?;
    let token = w.token("alice")?;

    // An idle psql session over TLS, its script still open.
    let target = w.tls_target("app-db", "drain-psql", &token);
    let mut psql = LivePsql::spawn(
        &target,
        &[
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            "VERBOSITY=verbose",
        ],
    )?;
    psql.write_stdin("select 'ready';\n")?;
    psql.wait_stdout(Duration::from_secs(20), |s| s.contains("ready"))?;

    // Idle raw sessions, which read what the gateway says as it says it.
    let mut raws = Vec::new();
    for i in 0..RAW_SESSIONS {
        let mut raw = RawPg::connect(w.gh.pg_port())?;
        raw.login_ok(&format!("drain-raw-{i}"), "app-db", &token)?;
        raws.push(raw);
    }

    w.gh.signal("TERM")?;
    let mut problems = Vec::new();
    for (i, raw) in raws.iter_mut().enumerate() {
        match raw.expect_fatal_then_close() {
            Ok(e)
                if e.sqlstate() == "57P01" && e.message().starts_with("terminating connection") => {
            }
            Ok(e) => problems.push(format!("drain-raw-{i}: unexpected error {e:?}")),
            Err(e) => problems.push(format!("drain-raw-{i}: {e:#}")),
        }
    }
    let status = w.gh.wait_exit(Duration::from_secs(30))?;
    let status = status.unwrap_or_else(|| panic!("the daemon did not exit; log:\n{}", w.log()));
    assert!(status.success(), "daemon exit {status}; log:\n{}", w.log());

    // psql notices when it next talks to the server.
    psql.write_stdin("select 'after';\n").ok();
    psql.close_stdin();
    psql.wait(Duration::from_secs(20))?;
    let stderr = psql.stderr();
    assert!(!psql.stdout().contains("after"), "{}", psql.stdout());
    if !(stderr.contains("57P01") && stderr.contains("terminating connection")) {
        problems.push(format!("drain-psql did not see the termination: {stderr}"));
    }

    // Read the recordings through a restarted daemon (reading them from a
    // stopped one is covered by its own test). A session the drain missed
    // shows up as "interrupted" here.
    w.gh.serve()?;
    let users: Vec<String> = std::iter::once("drain-psql".to_owned())
        .chain((0..RAW_SESSIONS).map(|i| format!("drain-raw-{i}")))
        .collect();
    for user in &users {
        let header = ended_session_of_user(&w.gh, user)?;
        if header["outcome"] != "terminated" {
            problems.push(format!(
                "{user}: recorded outcome {} (reason {})",
                header["outcome"], header["reason"]
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "the drain went wrong:\n{}\n--- log ---\n{}",
        problems.join("\n"),
        w.log()
    );
    Ok(())
}

#[test]
fn recordings_are_readable_after_a_clean_shutdown() -> Result<()> {
    let mut w = World::standard()?;
    let token = w.token("alice")?;
    let out = w.psql("before-stop", &token, "select 'recorded'")?;
    assert_eq!(out.success_text()?, "recorded");
    let before = ended_session_of_user(&w.gh, "before-stop")?;

    w.gh.signal("TERM")?;
    let status = w.gh.wait_exit(Duration::from_secs(30))?;
    let status = status.unwrap_or_else(|| panic!("the daemon did not exit; log:\n{}", w.log()));
    assert!(status.success(), "daemon exit {status}; log:\n{}", w.log());

    // An operator reviewing sessions after stopping the appliance.
    let sessions = list_sessions(&w.gh)?;
    assert_eq!(sessions, vec![before.clone()], "recordings after shutdown");
    let (header, events) = show_session(&w.gh, &session_id(&before)?)?;
    assert_eq!(header, before);
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == serde_json::json!({"kind": "row", "values": ["recorded"]})),
        "{events:#?}"
    );
    Ok(())
}
