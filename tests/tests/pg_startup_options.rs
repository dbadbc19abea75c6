//! Settings a client gives at startup (`PGOPTIONS` / `options`, or startup
//! parameters that name a setting): those on the connection's allowlist
//! reach the target, anything else refuses the session with a FATAL that
//! names the setting. Never silently dropped.

mod common;

use std::process::Command;

use anyhow::Result;
use common::{RawPg, Startup, World, ended_session_of_user};
use gatehouse_tests::{ConnectionSpec, OutputExt, PSYCOPG_LIBPQ17, RoleSpec};

/// psql through the gateway with `PGOPTIONS`, printing each `show`.
fn psql_with_options(
    w: &World,
    user: &str,
    options: &str,
    shows: &[&str],
) -> Result<std::process::Output> {
    let token = w.token(user)?;
    let target = w.tls_target("app-db", user, &token);
    let mut cmd = Command::new("psql");
    target.apply_env(&mut cmd);
    cmd.env("PGOPTIONS", options).args(["-X", "-w", "-A", "-t"]);
    for show in shows {
        cmd.args(["-c", &format!("show {show}")]);
    }
    gatehouse_tests::process::run(&mut cmd, target.timeout)
}

#[test]
fn allowed_options_reach_the_target() -> Result<()> {
    let w = World::standard()?;
    w.pg.psql_direct("app", "create schema app_schema")?;
    let out = psql_with_options(
        &w,
        "options-bot",
        r"-c search_path=app_schema,\ public -c statement_timeout=1234 --default-transaction-isolation=serializable",
        &[
            "search_path",
            "statement_timeout",
            "default_transaction_isolation",
        ],
    )?;
    let text = out.success_text()?;
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        ["app_schema, public", "1234ms", "serializable"],
        "log:\n{}",
        w.log()
    );
    Ok(())
}

#[test]
fn other_settings_are_refused_naming_the_setting() -> Result<()> {
    // Plaintext allowed too, for the protocol-level checks.
    let w = World::start(|c, _, _| c.postgres_plaintext(true))?;
    let out = psql_with_options(
        &w,
        "work-mem-bot",
        "-c search_path=public -c work_mem=1GB",
        &["work_mem"],
    )?;
    assert!(!out.status.success(), "{}", out.stdout_text());
    let stderr = out.stderr_text();
    assert!(
        stderr.contains(
            r#"FATAL:  setting "work_mem" may not be set at startup on connection "app-db""#
        ),
        "{stderr}"
    );
    let header = ended_session_of_user(&w.gh, "work-mem-bot")?;
    assert_eq!(header["outcome"], "refused", "{header:#}");
    assert!(
        header["reason"].as_str().unwrap_or("").contains("work_mem"),
        "{header:#}"
    );

    // Switches that are not settings are refused too.
    let out = psql_with_options(&w, "switch-bot", "-B 100", &["shared_buffers"])?;
    assert!(
        out.stderr_text()
            .contains(r#"startup option "-B" is not supported"#),
        "{}",
        out.stderr_text()
    );

    // The SQLSTATEs, which libpq does not show at startup.
    let token = w.token("raw-options")?;
    let refusals = [
        (vec![("options", "-c work_mem=1GB")], "42501"),
        // A setting given directly as a startup parameter, as drivers do
        // with TimeZone: the same allowlist.
        (vec![("default_transaction_read_only", "off")], "42501"),
        (vec![("options", "-c work_mem")], "42601"),
    ];
    for (extra, sqlstate) in refusals {
        let mut params = vec![("user", "raw-options"), ("database", "app-db")];
        params.extend(extra.iter().copied());
        let mut raw = RawPg::connect(w.gh.pg_port())?;
        match raw.login_with(&params, &token)? {
            Startup::Refused(msg) => assert_eq!(msg.sqlstate(), sqlstate, "{extra:?}: {msg:?}"),
            Startup::Ready => panic!("{extra:?} was accepted"),
        }
    }
    let mut raw = RawPg::connect(w.gh.pg_port())?;
    let startup = raw.login_with(
        &[
            ("user", "raw-options"),
            ("database", "app-db"),
            ("TimeZone", "Pacific/Auckland"),
        ],
        &token,
    )?;
    assert!(
        matches!(startup, Startup::Ready),
        "TimeZone is on the default list"
    );
    Ok(())
}

#[test]
fn a_connection_configures_its_own_list() -> Result<()> {
    let w = World::start(|c, _, pg| {
        c.connection(
            ConnectionSpec::for_cluster("tuned-db", pg).line(r#"startup_options = ["work_mem"]"#),
        )
        .role(RoleSpec::new("tuned", &["ci-deploy"], &["tuned-db"]))
    })?;
    let token = w.token("tuner")?;
    let target = w.tls_target("tuned-db", "tuner", &token);
    let run = |options: &str| -> Result<std::process::Output> {
        let mut cmd = Command::new("psql");
        target.apply_env(&mut cmd);
        cmd.env("PGOPTIONS", options)
            .args(["-X", "-w", "-A", "-t", "-c", "show work_mem"]);
        gatehouse_tests::process::run(&mut cmd, target.timeout)
    };
    assert_eq!(run("-c work_mem=7MB")?.success_text()?, "7MB");
    let refused = run("-c search_path=public")?;
    assert!(
        refused.stderr_text().contains(r#"setting "search_path""#),
        "{}",
        refused.stderr_text()
    );
    Ok(())
}

#[test]
fn a_libpq17_driver_gets_its_options_or_a_clear_refusal() -> Result<()> {
    let w = World::standard()?;
    let token = w.token("alice")?;
    let target = w.tls_target("app-db", "psycopg-options", &token);
    let script = r#"
import psycopg
assert psycopg.pq.version() // 10000 == 17, psycopg.pq.version()
with psycopg.connect("", options="-c lock_timeout=2500 -c TimeZone=UTC") as conn:
    print(*conn.execute("select current_setting('lock_timeout'), current_setting('TimeZone')").fetchone())
try:
    psycopg.connect("", options="-c session_replication_role=replica")
    print("accepted")
except psycopg.OperationalError as e:
    print("refused:", "session_replication_role" in str(e))
"#;
    let out = target.python(PSYCOPG_LIBPQ17, script, &[])?;
    assert_eq!(
        out.success_text()?,
        "2500ms UTC\nrefused: True",
        "log:\n{}",
        w.log()
    );
    Ok(())
}
