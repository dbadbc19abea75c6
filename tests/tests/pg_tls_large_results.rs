//! Large results over TLS with psycopg 3.3.4's binary wheel (libpq 18.0).
//!
//! That libpq waits on the socket without first draining what OpenSSL
//! already decrypted, and hangs when a TLS record holds more than its
//! read asked for. PostgreSQL never sends such records (its TLS writes
//! carry at most 8 KiB of plaintext: one send buffer), so the client works
//! directly; the gateway's TLS records carried up to 16 KiB, and the same
//! client hung through it forever. The gateway now frames its TLS records
//! as PostgreSQL does.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::World;
use gatehouse_tests::{OutputExt, PSYCOPG_LIBPQ18_0};

/// The issue's reproduction: 1,024 rows of ~10 KB read at once, then a
/// COPY of 100 of them.
const SCRIPT: &str = r#"
import psycopg
assert psycopg.pq.version() == 180000, psycopg.pq.version()
with psycopg.connect("") as conn:
    assert conn.info.pgconn.ssl_in_use
    rows = conn.execute("select id, data from big").fetchall()
    print(len(rows), sum(len(d) for _, d in rows))
    copied = 0
    with conn.cursor().copy("copy (select * from big limit 100) to stdout") as copy:
        for block in copy:
            copied += len(block)
    print(copied > 100 * 10000)
"#;

fn fill(w: &World) -> Result<()> {
    w.pg.psql_direct(
        "app",
        "create table big as select g as id, repeat(md5(g::text), 313) as data \
         from generate_series(1, 1024) g",
    )?;
    Ok(())
}

#[test]
fn libpq_18_0_reads_large_results_through_tls() -> Result<()> {
    let w = World::standard()?;
    fill(&w)?;
    let token = w.token("alice")?;
    let mut target = w.tls_target("app-db", "big-reader", &token);
    // The hang is forever; a minute is ample for 10 MB on a busy machine.
    target.timeout = Duration::from_secs(60);
    let out = target.python(PSYCOPG_LIBPQ18_0, SCRIPT, &[])?;
    assert_eq!(
        out.success_text()?,
        "1024 10256384\nTrue",
        "log:\n{}",
        w.log()
    );
    Ok(())
}
