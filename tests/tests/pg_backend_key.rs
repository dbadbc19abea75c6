//! The backend key a client gets: the target's real pid (so
//! `pg_backend_pid()`, the pid of a notification and the pid the driver
//! knows agree) with a secret the gateway minted.

mod common;

use anyhow::Result;
use common::World;
use gatehouse_tests::{OutputExt, PSYCOPG_LIBPQ17};

#[test]
fn the_driver_the_server_and_notifications_agree_on_the_pid() -> Result<()> {
    let w = World::standard()?;
    let token = w.token("alice")?;
    let target = w.tls_target("app-db", "pid-checker", &token);
    let script = r#"
import psycopg
assert psycopg.pq.version() // 10000 == 17, psycopg.pq.version()
with psycopg.connect("", autocommit=True) as conn:
    driver = conn.info.backend_pid
    server = conn.execute("select pg_backend_pid()").fetchone()[0]
    conn.execute("listen pids")
    conn.execute("notify pids, 'hello'")
    note = next(conn.notifies(timeout=10))
    print(driver, server, note.pid)
"#;
    let out = target.python(PSYCOPG_LIBPQ17, script, &[])?;
    let text = out.success_text()?;
    let pids: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(pids.len(), 3, "{text}");
    assert!(
        pids.iter().all(|p| *p == pids[0]),
        "driver, pg_backend_pid() and the notification disagree: {text}"
    );
    Ok(())
}
