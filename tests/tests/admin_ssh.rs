//! The admin SSH endpoint with stock OpenSSH clients: operators export
//! recordings with `ssh … recordings export`, copy them with `scp -r` and
//! browse them with `sftp`; the archive verifies on its own, the `.cast`
//! plays in asciinema, writes are refused, unknown keys and commands are
//! refused, approvals act as the authenticated operator, and every action
//! lands in an `admin-ssh` recording.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use common::admin::{Admin, run};
use common::{
    APP_DB, LivePsql, SmallDisk, ended_session_of_user, events_of_kind, kind_of, list_sessions,
    session_id, show_session,
};
use gatehouse_tests::OutputExt;
use serde_json::Value;

impl Admin {
    fn scp(&self, from: &str, to: &Path) -> Result<Output> {
        run(Command::new("scp")
            .args(self.options("alice"))
            .args(["-P", &self.port.to_string(), "-r"])
            .arg(format!("alice@127.0.0.1:{from}"))
            .arg(to))
    }

    /// `sftp -b -` with `batch` on stdin.
    fn sftp(&self, batch: &str, cwd: &Path) -> Result<Output> {
        let mut child = Command::new("sftp")
            .current_dir(cwd)
            .args(self.options("alice"))
            .args(["-P", &self.port.to_string(), "-b", "-"])
            .arg("alice@127.0.0.1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        use std::io::Write as _;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(batch.as_bytes())?;
        Ok(child.wait_with_output()?)
    }

    /// The `admin-ssh` recordings, oldest first, waiting until `n` have ended.
    fn admin_sessions(&self, n: usize) -> Result<Vec<Value>> {
        let deadline = Instant::now() + common::RECORDING_WAIT;
        loop {
            let ended: Vec<Value> = list_sessions(&self.w.gh)?
                .into_iter()
                .filter(|h| h["protocol"] == "admin-ssh" && !h["outcome"].is_null())
                .collect();
            if ended.len() >= n {
                return Ok(ended);
            }
            if Instant::now() > deadline {
                bail!(
                    "{} admin sessions ended, wanted {n}\n{}",
                    ended.len(),
                    self.w.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn asciinema_cat(cast: &Path) -> Result<String> {
    // asciinema 2 insists on a terminal; `script` gives it one.
    let out = Command::new("script")
        .args(["-q", "-e", "-c"])
        .arg(format!("asciinema cat '{}'", cast.display()))
        .arg("/dev/null")
        .stdin(Stdio::null())
        .output()
        .context("running asciinema (scripts/install-deps.sh installs it)")?;
    if !out.status.success() {
        bail!("asciinema cat {}: {}", cast.display(), out.stderr_text());
    }
    Ok(out.stdout_text())
}

fn today() -> String {
    // The UTC date the view files sessions under.
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .expect("date");
    out.stdout_text().trim().to_owned()
}

#[test]
fn operators_export_copy_and_browse_recordings_with_stock_clients() -> Result<()> {
    let a = Admin::start()?;
    let token = a.w.token("audited-bot")?;
    a.w.psql("audited-bot", &token, "select 'seen by the auditor'")?
        .success_text()?;
    let id = session_id(&ended_session_of_user(&a.w.gh, "audited-bot")?)?;
    let day = today();
    // Enough sessions that a day's listing spans several READDIR replies.
    let filler = a.w.token("filler-bot")?;
    for _ in 0..40 {
        a.w.psql("filler-bot", &filler, "select 1")?
            .success_text()?;
    }

    // Exec: list, with the CLI's own flags.
    let list = a.ssh("recordings list --since 1d")?;
    assert!(list.status.success(), "{}{}", list.stderr_text(), a.w.log());
    assert!(list.stdout_text().contains(&id), "{}", list.stdout_text());

    // Exec: an asciicast that asciinema plays.
    let away = tempfile::tempdir()?;
    let cast = a.ssh(&format!("recordings export {id} --format asciicast"))?;
    assert!(cast.status.success(), "{}", cast.stderr_text());
    std::fs::write(away.path().join("x.cast"), &cast.stdout)?;
    let played = asciinema_cat(&away.path().join("x.cast"))?;
    assert!(
        played.contains("query: select 'seen by the auditor'"),
        "{played}"
    );

    // Exec: an archive streamed to stdout verifies on its own.
    let archive = a.ssh("recordings export --since 1d --format archive")?;
    assert!(archive.status.success(), "{}", archive.stderr_text());
    let archive_path = away.path().join("day.tar.zst");
    std::fs::write(&archive_path, &archive.stdout)?;
    let verified = common::verify_archive_away(&a.w.gh, away.path(), &archive_path)?;
    let key = away.path().join("appliance.pub");
    assert!(
        verified.status.success(),
        "{}{}",
        verified.stdout_text(),
        verified.stderr_text()
    );
    assert!(verified.stdout_text().contains(&format!("{id}  ok (")));

    // scp -r of a day: every format of the session, the JSON Lines byte for
    // byte what the local CLI exports.
    let copy = away.path().join("copy");
    std::fs::create_dir(&copy)?;
    let scp = a.scp(&format!("/recordings/{day}"), &copy)?;
    assert!(
        scp.status.success(),
        "{:?} {}{}",
        scp.status,
        scp.stderr_text(),
        a.w.log()
    );
    let dir = copy.join(&day);
    // Every session of the day that had ended before the copy is there,
    // in all three formats.
    let before: Vec<String> = list_sessions(&a.w.gh)?
        .iter()
        .filter(|h| h["protocol"] == "postgres")
        .map(session_id)
        .collect::<Result<_>>()?;
    assert!(before.len() > 40, "{}", before.len());
    for sid in &before {
        for ext in ["jsonl", "json", "cast"] {
            assert!(
                dir.join(format!("{sid}.{ext}")).is_file(),
                "{sid}.{ext} missing"
            );
        }
    }
    let local =
        a.w.gh
            .run_cli(&["recordings", "export", &id, "--format", "jsonl"])?;
    assert_eq!(
        std::fs::read(dir.join(format!("{id}.jsonl")))?,
        local.stdout
    );
    let summary: Value = serde_json::from_slice(&std::fs::read(dir.join(format!("{id}.json")))?)?;
    assert_eq!(summary["header"]["id"], id.as_str());
    assert!(
        summary["verdict"].as_str().unwrap_or("").starts_with("ok"),
        "{summary:#}"
    );
    assert!(!summary["seal"].is_null(), "{summary:#}");
    let played = asciinema_cat(&dir.join(format!("{id}.cast")))?;
    assert!(played.contains("seen by the auditor"), "{played}");

    // sftp: browse and get work; every kind of write is refused.
    let batch = format!(
        "ls /recordings\ncd /recordings/{day}\nls\nget {id}.jsonl fetched.jsonl\n\
         -put {key} intruder.pub\n-rm {id}.jsonl\n-mkdir extra\n-rename {id}.json y.json\nbye\n",
        key = key.display()
    );
    let sftp = a.sftp(&batch, away.path())?;
    let (out, err) = (sftp.stdout_text(), sftp.stderr_text());
    assert!(sftp.status.success(), "{out}{err}{}", a.w.log());
    assert!(out.contains(&day), "{out}");
    assert_eq!(
        std::fs::read(away.path().join("fetched.jsonl"))?,
        local.stdout
    );
    assert!(
        err.contains("read-only") || err.contains("Permission denied"),
        "{err}"
    );
    // Nothing changed: the day still lists exactly the three files.
    let again = a.sftp(&format!("ls -1 /recordings/{day}\nbye\n"), away.path())?;
    let again_text = again.stdout_text();
    let names = again_text.lines().filter(|l| l.contains(&id)).count();
    assert_eq!(names, 3, "{again_text}");

    // The operator's actions are themselves recorded.
    let admin = a.admin_sessions(6)?;
    let mut commands = Vec::new();
    let mut sftp_ops = Vec::new();
    for h in &admin {
        assert_eq!(h["identity"], "operator:alice", "{h:#}");
        let (_, events) = show_session(&a.w.gh, &session_id(h)?)?;
        for e in &events {
            match kind_of(e) {
                "admin_command" => {
                    commands.push(e["kind"]["command"].as_str().unwrap_or("").to_owned())
                }
                "sftp" => sftp_ops.push((
                    e["kind"]["op"].as_str().unwrap_or("").to_owned(),
                    e["kind"]["outcome"].as_str().unwrap_or("").to_owned(),
                )),
                _ => {}
            }
        }
    }
    assert!(
        commands.contains(&"recordings list --since 1d".to_owned()),
        "{commands:?}"
    );
    assert!(
        commands.contains(&format!("recordings export {id} --format asciicast")),
        "{commands:?}"
    );
    for (op, outcome) in [
        ("open-for-write", "refused: read-only"),
        ("remove", "refused: read-only"),
        ("mkdir", "refused: read-only"),
        ("rename", "refused: read-only"),
        ("read", "ok"),
    ] {
        assert!(
            sftp_ops.iter().any(|(o, r)| o == op && r == outcome),
            "{op}: {sftp_ops:?}"
        );
    }
    // And those recordings verify like any other.
    let verify = a.w.gh.run_cli(&["recordings", "verify", "--all"])?;
    assert!(verify.status.success(), "{}", verify.stdout_text());
    Ok(())
}

#[test]
fn unknown_keys_names_and_commands_are_refused_and_recorded() -> Result<()> {
    let a = Admin::start()?;

    // A key that is nobody's, and alice's name with bob's key.
    for (user, key) in [
        ("alice", "mallory"),
        ("mallory", "mallory"),
        ("alice", "bob"),
    ] {
        let out = a.ssh_as(user, key, "recordings list")?;
        assert_eq!(
            out.status.code(),
            Some(255),
            "{user} with {key}'s key got in"
        );
        assert!(
            out.stderr_text().contains("Permission denied (publickey)"),
            "{}",
            out.stderr_text()
        );
        assert!(out.stdout.is_empty());
    }
    // Every refusal is logged; the first from an address is also recorded
    // (one recording per address per minute, so a flood cannot fill the
    // store).
    let deadline = Instant::now() + common::RECORDING_WAIT;
    let refused = loop {
        let refused: Vec<Value> = list_sessions(&a.w.gh)?
            .into_iter()
            .filter(|h| h["protocol"] == "admin-ssh" && h["outcome"] == "refused")
            .collect();
        if !refused.is_empty() || Instant::now() > deadline {
            break refused;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert!(
        refused[0]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("is not operator \"alice\"'s key"),
        "{refused:#?}"
    );
    assert_eq!(refused[0]["client_user"], "alice");
    let log = a.w.log();
    assert!(log.contains("no operator named \"mallory\""), "{log}");
    assert!(log.matches("admin SSH login refused").count() >= 3, "{log}");

    // Commands outside the operator's grammar never run.
    for (command, why) in [
        ("recordings purge --before 1d", "not available here"),
        (
            "recordings list --config /tmp/other.toml",
            "not available on the admin endpoint",
        ),
        (
            "recordings verify --archive /etc/shadow --public-key /etc/shadow",
            "not available",
        ),
        ("sh -c id", "unknown command"),
        ("serve", "unknown command"),
        (
            "approvals approve 1 --as bob",
            "not available on the admin endpoint",
        ),
    ] {
        let out = a.ssh(command)?;
        assert_eq!(
            out.status.code(),
            Some(2),
            "{command}: {}",
            out.stderr_text()
        );
        assert!(
            out.stderr_text().contains(why),
            "{command}: {}",
            out.stderr_text()
        );
    }
    // Garbage instead of SSH, and a connection that stops mid-handshake:
    // each is dropped, and the endpoint goes on serving.
    for junk in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"SSH-2.0-x\r\n\x00\x00\xff\xff\xff\xffjunk",
    ] {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", a.port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(junk)?;
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    let out = a.ssh("recordings list")?;
    assert!(out.status.success(), "{}{}", out.stderr_text(), a.w.log());

    // A failing command reports the CLI's own error and exit status.
    let out = a.ssh("recordings show no-such-id")?;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr_text().contains("no single recording matches"),
        "{}",
        out.stderr_text()
    );
    // No command: the help text.
    let out = a.ssh("help")?;
    assert!(out.status.success());
    assert!(out.stdout_text().contains("recordings export"));
    Ok(())
}

#[test]
fn approvals_over_ssh_are_decided_as_the_authenticated_operator() -> Result<()> {
    let a = Admin::start()?;
    a.w.pg.psql_direct(
        "app",
        "CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders VALUES (1), (2);",
    )?;
    let token = a.w.token("held-bot")?;
    let mut psql = LivePsql::spawn(
        &a.w.tls_target(APP_DB, "held-bot", &token),
        &[
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "DELETE FROM orders WHERE id = 1",
        ],
    )?;
    // Wait for the request to show over the endpoint.
    let deadline = Instant::now() + Duration::from_secs(20);
    let request: Value = loop {
        let out = a.ssh("approvals list --json")?;
        assert!(out.status.success(), "{}", out.stderr_text());
        if let Some(line) = out
            .stdout_text()
            .lines()
            .find(|l| l.contains("DELETE FROM orders"))
        {
            break serde_json::from_str(line)?;
        }
        if Instant::now() > deadline {
            bail!("no pending request\n{}", a.w.log());
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let id = request["id"].as_str().context("request id")?.to_owned();

    // bob is an operator but not an approver: refused, still pending.
    let out = a.ssh_as("bob", "bob", &format!("approvals approve {id}"))?;
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr_text());
    assert_eq!(
        a.w.pg
            .psql_direct("app", "select count(*) from orders")?
            .trim(),
        "2"
    );

    let out = a.ssh(&format!("approvals approve {id}"))?;
    assert!(out.status.success(), "{}{}", out.stderr_text(), a.w.log());
    let status = psql.wait(Duration::from_secs(20))?;
    assert!(status.success(), "{}", psql.stderr());
    assert_eq!(
        a.w.pg
            .psql_direct("app", "select count(*) from orders")?
            .trim(),
        "1"
    );
    let (_, events) = show_session(
        &a.w.gh,
        &session_id(&ended_session_of_user(&a.w.gh, "held-bot")?)?,
    )?;
    let decided = events_of_kind(&events, "approval_decided");
    assert_eq!(decided.len(), 1, "{events:#?}");
    let by = decided[0]["kind"]["by"].as_str().unwrap_or("");
    assert!(by.starts_with("alice (admin ssh from 127.0.0.1:"), "{by}");
    Ok(())
}

#[test]
fn a_connection_that_never_logs_in_is_dropped_after_the_grace_time() -> Result<()> {
    use std::io::Read as _;
    let a = Admin::start()?;
    // Says nothing at all: holds a connection slot until the endpoint
    // gives up on it (30 s), then sees the socket closed, not a hang.
    let mut idle = std::net::TcpStream::connect(("127.0.0.1", a.port))?;
    idle.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut seen = Vec::new();
    let closed = idle.read_to_end(&mut seen);
    assert!(closed.is_ok(), "still open after 120 s: {closed:?}");
    assert!(seen.starts_with(b"SSH-2.0-"), "{seen:?}");
    // The log line may follow the close by a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !a.w.log().contains("no SSH version within") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(a.w.log().contains("no SSH version within"), "{}", a.w.log());
    Ok(())
}

#[test]
fn a_client_that_stops_reading_an_export_stops_the_export() -> Result<()> {
    let a = Admin::start()?;
    let token = a.w.token("bulky-bot")?;
    // ~60 MB of recorded rows: far more than a pipe and an SSH window hold.
    a.w.psql(
        "bulky-bot",
        &token,
        "select repeat(md5(g::text), 1900) from generate_series(1, 1000) g",
    )?
    .success_text()?;
    let id = session_id(&ended_session_of_user(&a.w.gh, "bulky-bot")?)?;

    // The auditor's ssh reads the first kilobyte, stalls, then is killed.
    let mut ssh = Command::new("ssh")
        .args(a.options("alice"))
        .args(["-p", &a.port.to_string(), "alice@127.0.0.1"])
        .arg(format!("recordings export {id} --format jsonl"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut first = [0u8; 1000];
    std::io::Read::read_exact(ssh.stdout.as_mut().expect("piped"), &mut first)?;
    assert!(first.starts_with(b"{\"header\""));
    // Stop reading long enough for the pipe, the TCP buffers and the SSH
    // window to fill, so the gateway's writer is stuck waiting for window
    // space when the client disappears.
    std::thread::sleep(Duration::from_secs(3));
    ssh.kill()?;
    ssh.wait()?;

    // The export child is killed, not left blocked on a full pipe, and the
    // recording says the command ended early.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut admin;
    loop {
        admin = a.admin_sessions(1)?;
        let (_, events) = show_session(&a.w.gh, &session_id(&admin[0])?)?;
        let exits = events_of_kind(&events, "admin_exit");
        if let Some(exit) = exits.first() {
            assert_eq!(exit["kind"]["status"], 255, "{exit:#}");
            let sent = exit["kind"]["bytes"].as_u64().unwrap_or(0);
            assert!(sent >= 1000, "{exit:#}");
            break;
        }
        if Instant::now() > deadline {
            bail!("no admin_exit recorded: {events:#?}\n{}", a.w.log());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let children = Command::new("pgrep")
        .args(["-f", &format!("recordings export {id}")])
        .output()?;
    assert!(children.stdout.is_empty(), "{}", children.stdout_text());
    Ok(())
}

#[test]
fn a_command_that_cannot_be_recorded_does_not_run() -> Result<()> {
    // data_dir on a 16 MiB tmpfs, filled once the daemon is up.
    let disk = std::cell::RefCell::new(None);
    let a = Admin::start_with(|gh| {
        *disk.borrow_mut() = Some(SmallDisk::mount(&gh.data_dir(), "16m")?);
        Ok(())
    })?;
    let disk = disk.into_inner().context("tmpfs mounted")?;
    // One recorded command first, so the store has been written.
    assert!(a.ssh("recordings list")?.status.success());
    disk.fill()?;
    // A long command (as a quoted id, incompressible) needs new pages.
    let noise: String = (0..40_000u32)
        .map(|i| format!("{:x}", i.wrapping_mul(2_654_435_761) % 16))
        .collect();
    let out = a.ssh(&format!("recordings show '{noise}'"))?;
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr_text());
    assert!(
        out.stderr_text()
            .contains("refused: the command could not be recorded"),
        "{}",
        out.stderr_text()
    );
    assert!(out.stdout.is_empty());
    // It never ran: the CLI would have said the id matches nothing.
    assert!(!out.stderr_text().contains("no single recording matches"));
    assert!(
        a.w.log()
            .contains("admin command refused: it could not be recorded")
    );
    Ok(())
}
