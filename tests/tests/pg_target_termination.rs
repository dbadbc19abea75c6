//! The target ends a session (`pg_terminate_backend`, a timeout): the
//! client gets the target's own final ErrorResponse, as it would directly,
//! the connection closes cleanly, and the recording keeps the error.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{LivePsql, World, ended_session_of_user, events_of_kind, session_id, show_session};
use gatehouse_tests::{OutputExt, PSYCOPG_LIBPQ17};

/// Terminates the backends of `application_name = app` directly.
fn terminate(w: &World, app: &str) -> Result<String> {
    w.pg.psql_direct(
        "app",
        &format!(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity \
             where application_name = '{app}'"
        ),
    )
}

#[test]
fn psql_sees_the_targets_fatal_when_its_backend_is_terminated() -> Result<()> {
    let w = World::standard()?;
    let token = w.token("alice")?;
    let mut target = w.tls_target("app-db", "terminated-psql", &token);
    target.timeout = Duration::from_secs(30);
    let mut psql = LivePsql::spawn(&target, &["-A", "-t", "-v", "ON_ERROR_STOP=1"])?;
    psql.write_stdin("set application_name = 'victim-psql';\nselect 'ready';\n")?;
    psql.wait_stdout(Duration::from_secs(20), |out| out.contains("ready"))?;
    assert_eq!(terminate(&w, "victim-psql")?, "1");
    // The next statement finds the connection ended by the server.
    psql.write_stdin("select 'after';\n")?;
    psql.close_stdin();
    psql.wait(Duration::from_secs(20))?;
    let stderr = psql.stderr();
    assert!(
        stderr.contains("FATAL:  terminating connection due to administrator command"),
        "psql did not show the target's FATAL: {stderr}\nlog:\n{}",
        w.log()
    );
    // Directly, psql then says the TLS connection was closed (libpq's
    // words for a clean close) and nothing else.
    assert_eq!(
        stderr.matches("FATAL:").count(),
        1,
        "the gateway added an error of its own: {stderr}"
    );

    let header = ended_session_of_user(&w.gh, "terminated-psql")?;
    let (_, events) = show_session(&w.gh, &session_id(&header)?)?;
    let errors = events_of_kind(&events, "error");
    assert_eq!(errors.len(), 1, "{events:#?}");
    assert_eq!(errors[0]["kind"]["code"], "57P01");
    assert_eq!(errors[0]["kind"]["severity"], "FATAL");
    assert_eq!(header["outcome"], "closed", "{header:#?}");
    assert!(
        header["reason"].as_str().unwrap_or("").contains("57P01"),
        "{header:#?}"
    );
    Ok(())
}

#[test]
fn a_libpq17_driver_gets_the_targets_sqlstate() -> Result<()> {
    let w = World::standard()?;
    let token = w.token("alice")?;
    let target = w.tls_target("app-db", "terminated-driver", &token);
    // Two ways a target ends a session: an administrator's
    // pg_terminate_backend while a statement runs (57P01), and
    // idle_session_timeout while the client idles (57P05).
    let script = r#"
import time, psycopg
assert psycopg.pq.version() // 10000 == 17, psycopg.pq.version()
with psycopg.connect("", autocommit=True, application_name="victim-driver") as conn:
    try:
        conn.execute("select pg_sleep(30)")
        print("not terminated")
    except psycopg.Error as e:
        print(type(e).__name__, e.sqlstate)
with psycopg.connect("", autocommit=True) as conn:
    conn.execute("set idle_session_timeout = '500ms'")
    time.sleep(3)
    try:
        conn.execute("select 1")
        print("not timed out")
    except psycopg.Error as e:
        print(type(e).__name__, e.sqlstate)
"#;
    let mut child = {
        let mut cmd = std::process::Command::new("python3");
        cmd.arg("-c").arg(script);
        target.apply_env(&mut cmd);
        cmd.env(
            "PYTHONPATH",
            gatehouse_tests::clients::python_libs(PSYCOPG_LIBPQ17)?,
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
        cmd.spawn()?
    };
    common::wait_direct(
        &w.pg,
        &common::active_count_query("pg_sleep(30)"),
        "1",
        Duration::from_secs(20),
    )?;
    assert_eq!(terminate(&w, "victim-driver")?, "1");
    let out = common::wait_child(&mut child, Duration::from_secs(60))?;
    assert_eq!(
        out.success_text()?,
        "AdminShutdown 57P01\nIdleSessionTimeout 57P05",
        "log:\n{}",
        w.log()
    );
    Ok(())
}
