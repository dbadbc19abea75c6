//! Hostile and broken clients: malformed frames, oversized messages,
//! silent sockets, too many sessions. Each must end only its own session,
//! cleanly, while the gateway keeps serving everyone else.

mod common;

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use common::{LivePsql, RawPg, Startup, World, ended_session_of_user, frame, query};
use gatehouse_tests::OutputExt;

const MAX_MESSAGE: u64 = 4096;

fn robust_world() -> Result<World> {
    World::start(|c, _, _| {
        c.postgres_plaintext(true)
            .max_message_bytes(MAX_MESSAGE)
            .startup_timeout("2s")
    })
}

/// Logs in with the raw client as `user`, sends `bytes`, and expects one
/// FATAL 08P01 protocol violation followed by the server closing. Then
/// checks that psql still works and that the bad session is recorded as
/// failed.
fn check_violation(w: &World, user: &str, bytes: &[u8], message_contains: &str) -> Result<()> {
    let token = w.token("alice")?;
    // A healthy session open across the bad one must not notice it.
    let bystander = w.tls_target("app-db", "bystander", &token);
    let mut healthy = LivePsql::spawn(&bystander, &["-A", "-t", "-v", "ON_ERROR_STOP=1"])?;
    healthy.write_stdin("select 'before';\n")?;
    healthy.wait_stdout(Duration::from_secs(20), |s| s.contains("before"))?;

    let mut raw = RawPg::connect(w.gh.pg_port())?;
    raw.login_ok(user, "app-db", &token)?;
    raw.send(bytes)?;
    let error = raw.expect_fatal_then_close()?;
    assert_eq!(error.sqlstate(), "08P01", "{error:?}");
    assert_eq!(error.fields().get(&'S').map(String::as_str), Some("FATAL"));
    assert!(
        error.message().starts_with("protocol violation"),
        "{error:?}"
    );
    assert!(
        error.message().contains(message_contains),
        "{:?} does not mention {message_contains:?}",
        error.message()
    );

    // The bystander's session is unaffected, and new sessions work.
    healthy.write_stdin("select 'after';\n")?;
    healthy.wait_stdout(Duration::from_secs(20), |s| s.contains("after"))?;
    healthy.close_stdin();
    let status = healthy.wait(Duration::from_secs(20))?;
    assert!(status.success(), "{}", healthy.stderr());
    let out = w.psql("next", &token, "select 'still serving'")?;
    assert_eq!(out.success_text()?, "still serving", "log:\n{}", w.log());

    let header = ended_session_of_user(&w.gh, user)?;
    assert_eq!(header["outcome"], "failed", "{header:#}");
    assert!(
        header["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("protocol violation"),
        "{header:#}"
    );
    let bystander = ended_session_of_user(&w.gh, "bystander")?;
    assert_eq!(bystander["outcome"], "closed", "{bystander:#}");
    Ok(())
}

#[test]
fn frame_with_length_below_four_is_a_protocol_violation() -> Result<()> {
    let w = robust_world()?;
    check_violation(&w, "short-length", b"Q\0\0\0\x03", "length 3")
}

#[test]
fn message_over_max_message_bytes_is_refused() -> Result<()> {
    let w = robust_world()?;
    // Only the head of the oversized Query is sent: the declared length
    // alone must be enough to refuse it, without buffering the body.
    let sql = format!("select '{}'", "x".repeat(MAX_MESSAGE as usize * 2));
    let whole = query(&sql);
    check_violation(&w, "oversized", &whole[..200], "over the limit")?;

    // psql sending the whole oversized query is told why.
    let token = w.token("alice")?;
    let out = w.psql("oversized-psql", &token, &sql)?;
    assert!(!out.status.success(), "an oversized query ran");
    assert!(
        out.stderr_text().contains(&format!(
            "FATAL:  protocol violation: message of type 'Q' is {} bytes, over the limit of {MAX_MESSAGE}",
            whole.len()
        )),
        "{}",
        out.stderr_text()
    );

    // A query just under the limit still works.
    let fits = format!(
        "select length('{}')",
        "y".repeat(MAX_MESSAGE as usize - 200)
    );
    let out = w.psql("fits", &token, &fits)?;
    assert_eq!(
        out.success_text()?,
        (MAX_MESSAGE - 200).to_string(),
        "log:\n{}",
        w.log()
    );
    Ok(())
}

#[test]
fn truncated_bind_is_a_protocol_violation() -> Result<()> {
    let w = robust_world()?;
    check_violation(&w, "truncated-bind", &frame(b'B', &[]), "Bind")
}

#[test]
fn bind_with_a_lying_parameter_length_is_a_protocol_violation() -> Result<()> {
    let w = robust_world()?;
    // portal "", statement "", no formats, one parameter claiming 1000
    // bytes but carrying 3, no result formats.
    let mut body = vec![0, 0];
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&1i16.to_be_bytes());
    body.extend_from_slice(&1000i32.to_be_bytes());
    body.extend_from_slice(b"abc");
    body.extend_from_slice(&0i16.to_be_bytes());
    check_violation(&w, "lying-bind", &frame(b'B', &body), "Bind")
}

/// Reads until the server closes the socket, failing if it stays open for
/// `limit`. Returns everything read.
fn read_until_server_closes(raw: &mut RawPg, limit: Duration) -> Result<Vec<common::Msg>> {
    raw.set_read_timeout(limit)?;
    let start = Instant::now();
    match raw.until_closed() {
        Ok(msgs) => Ok(msgs),
        Err(e) => {
            let timed_out = e
                .root_cause()
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| matches!(io.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut));
            if timed_out {
                bail!(
                    "the server kept the connection open for {:?}",
                    start.elapsed()
                );
            }
            Err(e)
        }
    }
}

#[test]
fn silent_client_is_dropped_after_the_startup_timeout() -> Result<()> {
    let w = robust_world()?;
    // Connects and never says anything.
    let mut silent = RawPg::connect(w.gh.pg_port())?;
    let msgs = read_until_server_closes(&mut silent, Duration::from_secs(10))?;
    assert!(
        msgs.iter().all(|m| m.tag == b'E'),
        "unexpected messages to a silent client: {msgs:?}"
    );

    // Asks for TLS, is told yes, and never starts the handshake.
    let mut no_handshake = RawPg::connect(w.gh.pg_port())?;
    no_handshake.send(&common::special_request(common::SSL_REQUEST))?;
    assert_eq!(no_handshake.read_byte()? as char, 'S');
    read_until_server_closes(&mut no_handshake, Duration::from_secs(10))?;

    // Sends its startup message, then never answers the password request.
    let mut stalled = RawPg::connect(w.gh.pg_port())?;
    stalled.send_startup("stalled", "app-db")?;
    let msgs = read_until_server_closes(&mut stalled, Duration::from_secs(10))?;
    assert_eq!(msgs.first().map(|m| m.tag), Some(b'R'), "{msgs:?}");
    let error = msgs
        .iter()
        .find(|m| m.tag == b'E')
        .context("no ErrorResponse before the close")?;
    assert_eq!(error.sqlstate(), "08P01", "{error:?}");
    assert!(
        error.message().contains("startup did not complete"),
        "{error:?}"
    );
    let header = ended_session_of_user(&w.gh, "stalled")?;
    assert_eq!(header["outcome"], "failed", "{header:#}");

    // Still serving.
    let token = w.token("alice")?;
    let out = w.psql("after-timeouts", &token, "select 'ok'")?;
    assert_eq!(out.success_text()?, "ok", "log:\n{}", w.log());
    Ok(())
}

#[test]
fn sessions_over_the_limit_are_refused_with_53300() -> Result<()> {
    let w = World::start(|c, _, _| c.postgres_plaintext(true).max_sessions(2))?;
    let token = w.token("alice")?;

    // Two idle, authenticated sessions hold both slots.
    let mut holders = Vec::new();
    for i in 0..2 {
        let target = w.tls_target("app-db", &format!("holder-{i}"), &token);
        let mut psql = LivePsql::spawn(&target, &["-A", "-t", "-v", "ON_ERROR_STOP=1"])?;
        psql.write_stdin("select 'holding';\n")?;
        psql.wait_stdout(Duration::from_secs(20), |s| s.contains("holding"))?;
        holders.push(psql);
    }

    let out = w.psql("third", &token, "select 1")?;
    assert!(!out.status.success(), "a third session got in");
    assert!(
        out.stderr_text()
            .contains("FATAL:  too many sessions on this gateway; try again later"),
        "{}",
        out.stderr_text()
    );
    let mut raw = RawPg::connect(w.gh.pg_port())?;
    match raw.login("third-raw", "app-db", &token)? {
        Startup::Ready => bail!("a third raw session got in"),
        Startup::Refused(e) => {
            assert_eq!(e.sqlstate(), "53300", "{e:?}");
            assert_eq!(e.fields().get(&'S').map(String::as_str), Some("FATAL"));
        }
    }
    let header = ended_session_of_user(&w.gh, "third")?;
    assert_eq!(header["outcome"], "refused", "{header:#}");

    // Ending one holder frees its slot.
    let mut first = holders.remove(0);
    first.close_stdin();
    first.wait(Duration::from_secs(20))?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = w.psql("fourth", &token, "select 'admitted'")?;
        if out.status.success() {
            assert_eq!(out.stdout_text(), "admitted");
            break;
        }
        if Instant::now() >= deadline {
            bail!(
                "a freed slot was not reusable: {}\nlog:\n{}",
                out.stderr_text(),
                w.log()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // The other holder was never disturbed.
    let second = &mut holders[0];
    second.write_stdin("select 'still holding';\n")?;
    second.wait_stdout(Duration::from_secs(20), |s| s.contains("still holding"))?;
    Ok(())
}

#[test]
fn malformed_startup_packets_are_refused() -> Result<()> {
    let w = robust_world()?;
    let token = w.token("alice")?;
    let mut huge_len = 100_000i32.to_be_bytes().to_vec();
    huge_len.extend_from_slice(&196_608i32.to_be_bytes());
    let mut tiny_len = 4i32.to_be_bytes().to_vec();
    tiny_len.extend_from_slice(&196_608i32.to_be_bytes());
    let mut protocol_2 = 8i32.to_be_bytes().to_vec();
    protocol_2.extend_from_slice(&0x0002_0000i32.to_be_bytes());
    // A parameter name with no terminator before the packet ends.
    let mut unterminated = 12i32.to_be_bytes().to_vec();
    unterminated.extend_from_slice(&196_608i32.to_be_bytes());
    unterminated.extend_from_slice(b"user");
    let mut oversized_password =
        common::startup_message(&[("user", "big-pw"), ("database", "app-db")]);
    let pw = common::password_message(&"x".repeat(100 << 10));

    for (what, bytes) in [
        ("protocol 2.0", &protocol_2),
        ("unterminated parameter", &unterminated),
    ] {
        let mut raw = RawPg::connect(w.gh.pg_port())?;
        raw.send(bytes)?;
        let error = raw.expect_fatal_then_close().context(what)?;
        assert_eq!(error.sqlstate(), "08P01", "{what}: {error:?}");
    }

    // Not a startup packet at all: closed without an answer, as PostgreSQL
    // does ("invalid length of startup packet").
    for (what, bytes) in [
        ("startup length 100000", &huge_len[..]),
        ("startup length 4", &tiny_len[..]),
        ("Terminate before startup", b"X\0\0\0\x04"),
        ("HTTP request", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    ] {
        let mut raw = RawPg::connect(w.gh.pg_port())?;
        raw.send(bytes)?;
        let answer = raw.until_closed().context(what)?;
        assert!(answer.is_empty(), "{what}: answered {answer:?}");
    }
    common::wait_for_log(
        &w.gh,
        "invalid length of startup packet",
        Duration::from_secs(10),
    )?;

    // A password message far beyond any token's size.
    let mut raw = RawPg::connect(w.gh.pg_port())?;
    raw.send(&oversized_password)?;
    let auth = raw.read_msg()?.context("no authentication request")?;
    assert_eq!(auth.tag, b'R');
    oversized_password.clear();
    // Only the head: the declared length must be enough to refuse it.
    raw.send(&pw[..200])?;
    let error = raw.expect_fatal_then_close()?;
    assert_eq!(error.sqlstate(), "08P01", "{error:?}");
    let header = ended_session_of_user(&w.gh, "big-pw")?;
    assert_eq!(header["outcome"], "failed", "{header:#}");
    assert!(header["identity"].is_null(), "{header:#}");

    let out = w.psql("after-startups", &token, "select 'ok'")?;
    assert_eq!(out.success_text()?, "ok", "log:\n{}", w.log());
    Ok(())
}
