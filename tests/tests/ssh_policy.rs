//! SSH policy and robustness with stock clients: an interactive shell in
//! tmux replayed by its asciicast, blocked and approved exec, masked output,
//! scp in both protocols and sftp relayed, port forwarding refused, and the
//! bad-input cases (garbage, a stalled handshake, target down, host key
//! mismatch, SIGTERM).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use common::{events_of_kind, show_session};
use gatehouse_tests::ssh_client::SSH_CONNECTION;
use gatehouse_tests::{OutputExt, PolicySpec, SshWorld};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

fn ssh_sessions(w: &SshWorld, n: usize) -> Result<Vec<Value>> {
    common::ended_sessions(&w.gh, "ssh", n)
}

/// A gateway whose policy allows port forwarding.
fn forwarding_world() -> Result<SshWorld> {
    SshWorld::start(|c, _| {
        c.policy(
            PolicySpec::new("default")
                .recording("batched")
                .line("port_forwarding = true"),
        )
    })
}

fn policy_world(lines: &str) -> Result<SshWorld> {
    let lines = lines.to_owned();
    SshWorld::start(move |c, _| {
        c.policy(PolicySpec::new("default").recording("batched"))
            .raw(&lines)
    })
}

#[test]
fn a_blocked_exec_never_reaches_the_target() -> Result<()> {
    let w = policy_world(
        r#"
[[policies.default.rules]]
name = "no-wipe"
action = "block"
commands = ["rm -rf *", "touch /tmp/forbidden*"]
message = "destructive commands go through change control"
"#,
    )?;
    let scratch = w.sshd.scratch()?;
    let marker = scratch.path().join("marker");
    let auth = w.token_auth(&w.token("ci")?)?;
    let out = w.ssh(
        &auth,
        SSH_CONNECTION,
        &[&format!("rm  -rf {}", scratch.path().display())],
    )?;
    assert_eq!(out.status.code(), Some(126), "{}", out.stderr_text());
    assert!(
        out.stderr_text().contains(
            "blocked by policy rule \"no-wipe\": destructive commands go through change control"
        ),
        "{}",
        out.stderr_text()
    );
    assert!(
        scratch.path().exists(),
        "the target ran the blocked command"
    );
    // An allowed command still runs on the same gateway.
    let out = w.ssh(
        &auth,
        SSH_CONNECTION,
        &[&format!("touch {}", marker.display())],
    )?;
    assert!(out.status.success(), "{}", out.stderr_text());
    assert!(marker.exists());
    let sessions = ssh_sessions(&w, 2)?;
    let blocked = sessions
        .iter()
        .find_map(|h| {
            let (_, events) = show_session(&w.gh, h["id"].as_str()?).ok()?;
            events_of_kind(&events, "blocked")
                .first()
                .map(|e| (*e).clone())
        })
        .context("a blocked event")?;
    assert_eq!(blocked["kind"]["rule"], "no-wipe");
    Ok(())
}

#[test]
fn an_approved_exec_runs_once_the_operator_says_so() -> Result<()> {
    let w = policy_world(
        r#"
[[policies.default.rules]]
name = "restarts"
action = "approve"
commands = ["echo restart*"]
timeout = "60s"
"#,
    )?;
    let auth = w.token_auth(&w.token("ci")?)?;
    let port = w.port;
    let mut cmd = Command::new("ssh");
    auth.apply(&mut cmd);
    cmd.args(["-p", &port.to_string()])
        .arg(format!("{SSH_CONNECTION}@127.0.0.1"))
        .arg("echo restarted-$((1+1))")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn()?;
    // The command waits; the operator approves it from the box.
    let deadline = Instant::now() + WAIT;
    let id = loop {
        let out = w.gh.run_cli(&["approvals", "list", "--json"])?;
        let pending: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if let Some(p) = pending.iter().find(|p| {
            p["statement"]
                .as_str()
                .is_some_and(|s| s.contains("echo restarted"))
        }) {
            assert_eq!(p["connection"], SSH_CONNECTION);
            break p["id"].as_str().context("id")?.to_owned();
        }
        if Instant::now() > deadline {
            bail!("no pending approval\n{}", w.gh.log());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = w.gh.run_cli(&["approvals", "approve", &id])?;
    assert!(out.status.success(), "{}", out.stderr_text());
    let out = child.wait_with_output()?;
    assert!(out.status.success(), "{}", out.stderr_text());
    assert_eq!(out.stdout_text(), "restarted-2");
    assert!(
        out.stderr_text()
            .contains(&format!("waiting for approval {id}"))
    );
    let sessions = ssh_sessions(&w, 1)?;
    let (_, events) = show_session(&w.gh, sessions[0]["id"].as_str().context("id")?)?;
    let decided = events_of_kind(&events, "approval_decided");
    assert_eq!(decided[0]["kind"]["decision"], "approved");
    Ok(())
}

#[test]
fn output_is_masked_for_the_agent_and_the_recording() -> Result<()> {
    let w = policy_world(
        r#"
[[policies.default.masks]]
detectors = ["credit_card", "email"]
"#,
    )?;
    let auth = w.token_auth(&w.token("ci")?)?;
    // Secrets split across packets are covered by the stream masker's
    // unit tests (every cut position); here the whole path is.
    let out = w.ssh(
        &auth,
        SSH_CONNECTION,
        &["printf '\\033[1mcard\\033[0m 4242 4242 '; printf '4242 4242 mail alice@example.com\\n'"],
    )?;
    assert!(out.status.success(), "{}", out.stderr_text());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(text, "\u{1b}[1mcard\u{1b}[0m [redacted] mail [redacted]\n");
    let sessions = ssh_sessions(&w, 1)?;
    let id = sessions[0]["id"].as_str().context("id")?;
    let (_, events) = show_session(&w.gh, id)?;
    // The command line is the agent's own input and recorded as sent; the
    // output it produced is recorded masked.
    let recorded: String = events_of_kind(&events, "ssh_data")
        .iter()
        .filter(|e| e["kind"]["stream"] != "stdin")
        .map(|e| e["kind"]["data"].to_string())
        .collect();
    assert!(recorded.contains("[redacted]"), "{recorded}");
    assert!(!recorded.contains("4242 4242") && !recorded.contains("alice@example.com"));
    assert!(!events_of_kind(&events, "masked").is_empty());
    Ok(())
}

/// Start `cmd` in a detached tmux session of `cols`×`rows`.
fn tmux(name: &str, cmd: &str) -> Result<()> {
    let out = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            "100",
            "-y",
            "30",
            cmd,
        ])
        .output()?;
    if !out.status.success() {
        bail!("tmux: {}", out.stderr_text());
    }
    Ok(())
}

fn tmux_screen(name: &str) -> Result<String> {
    let out = Command::new("tmux")
        .args(["capture-pane", "-p", "-t", name])
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn tmux_wait(name: &str, needle: &str) -> Result<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let screen = tmux_screen(name)?;
        if screen.contains(needle) {
            return Ok(screen);
        }
        if Instant::now() > deadline {
            bail!("{needle:?} never appeared on the screen:\n{screen}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct TmuxSession(String);

impl Drop for TmuxSession {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .output();
    }
}

#[test]
fn an_interactive_shell_in_tmux_is_recorded_and_replays() -> Result<()> {
    let w = SshWorld::start(|c, _| c)?;
    let auth = w.token_auth(&w.token("human-ish")?)?;
    let name = format!("gh-ssh-{}", std::process::id());
    let _guard = TmuxSession(name.clone());
    tmux(&name, &w.ssh_command_line(&auth, SSH_CONNECTION))?;
    tmux_wait(&name, "$")?;
    let send = |keys: &[&str]| {
        Command::new("tmux")
            .args(["send-keys", "-t", &name])
            .args(keys)
            .output()
    };
    send(&["echo tty-$((20+22))", "Enter"])?;
    tmux_wait(&name, "tty-42")?;
    send(&["exit", "Enter"])?;
    let sessions = ssh_sessions(&w, 1)?;
    let id = sessions[0]["id"].as_str().context("id")?;
    let (_, events) = show_session(&w.gh, id)?;
    assert_eq!(events_of_kind(&events, "ssh_pty")[0]["kind"]["cols"], 100);
    assert_eq!(
        events_of_kind(&events, "ssh_start")[0]["kind"]["request"],
        "shell"
    );
    // The asciicast is the terminal's real output.
    let out =
        w.gh.run_cli(&["recordings", "export", id, "--format", "asciicast"])?;
    assert!(out.status.success(), "{}", out.stderr_text());
    let cast = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = cast.lines();
    let head: Value = serde_json::from_str(lines.next().context("head")?)?;
    assert_eq!(head["width"], 100);
    let output: String = lines
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|f| f[1] == "o")
        .filter_map(|f| f[2].as_str().map(str::to_owned))
        .collect();
    assert!(output.contains("tty-42"), "{output}");
    Ok(())
}

#[test]
fn scp_in_both_protocols_and_an_sftp_batch_go_through() -> Result<()> {
    let w = SshWorld::start(|c, _| c)?;
    let auth = w.token_auth(&w.token("files")?)?;
    let scratch = w.sshd.scratch()?;
    let local = tempfile::tempdir()?;
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(local.path().join("up.bin"), &data)?;
    for (proto, flag) in [("sftp", None), ("legacy", Some("-O"))] {
        let extra: Vec<&str> = flag.into_iter().collect();
        let remote = format!(
            "{SSH_CONNECTION}@127.0.0.1:{}/{proto}.bin",
            scratch.path().display()
        );
        let out = w.scp(
            &auth,
            &extra,
            &local.path().join("up.bin").display().to_string(),
            &remote,
        )?;
        assert!(
            out.status.success(),
            "{proto} upload: {}",
            out.stderr_text()
        );
        let back = local.path().join(format!("{proto}-back.bin"));
        let out = w.scp(&auth, &extra, &remote, &back.display().to_string())?;
        assert!(
            out.status.success(),
            "{proto} download: {}",
            out.stderr_text()
        );
        assert_eq!(std::fs::read(&back)?, data, "{proto}");
        assert_eq!(
            std::fs::read(scratch.path().join(format!("{proto}.bin")))?,
            data
        );
    }
    let dir = scratch.path().display().to_string();
    let batch = format!(
        "cd {dir}\nput up.bin batch.bin\nls\nrename batch.bin renamed.bin\nget renamed.bin got.bin\nrm renamed.bin\n"
    );
    let out = w.sftp(&auth, &batch, local.path())?;
    assert!(
        out.status.success(),
        "{}\n{}",
        out.stderr_text(),
        w.gh.log()
    );
    assert_eq!(std::fs::read(local.path().join("got.bin"))?, data);
    assert!(!scratch.path().join("renamed.bin").exists());
    Ok(())
}

#[test]
fn port_forwarding_is_refused_and_recorded() -> Result<()> {
    let w = SshWorld::start(|c, _| c)?;
    let auth = w.token_auth(&w.token("tunnel")?)?;
    // The local end opens once the client is logged in; a connection
    // through it must not reach the target's sshd.
    let (mut child, local_port) = forward(&w, &auth)?;
    let mut s = TcpStream::connect(("127.0.0.1", local_port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    assert!(
        !String::from_utf8_lossy(&buf[..n]).starts_with("SSH-"),
        "the forward reached sshd"
    );
    drop(s);
    let _ = child.wait();
    let sessions = ssh_sessions(&w, 1)?;
    let (_, events) = show_session(&w.gh, sessions[0]["id"].as_str().context("id")?)?;
    let forwards = events_of_kind(&events, "port_forward");
    assert_eq!(forwards[0]["kind"]["outcome"], "refused");

    // -R too: the client is told, and the target never listens.
    let agent_port = gatehouse_tests::ports::free_loopback_port()?;
    let remote_port = gatehouse_tests::ports::free_loopback_port()?;
    let mut cmd = Command::new("ssh");
    auth.apply(&mut cmd);
    let out = cmd
        .args(["-p", &w.port.to_string(), "-o", "ExitOnForwardFailure=yes"])
        .args([
            "-R",
            &format!("127.0.0.1:{remote_port}:127.0.0.1:{agent_port}"),
        ])
        .arg(format!("{SSH_CONNECTION}@127.0.0.1"))
        .arg("sleep 3")
        .output()?;
    assert!(!out.status.success(), "{}", out.stderr_text());
    assert!(
        out.stderr_text().contains("remote port forwarding failed"),
        "{}",
        out.stderr_text()
    );
    assert!(TcpStream::connect(("127.0.0.1", remote_port)).is_err());
    let sessions = ssh_sessions(&w, 2)?;
    let mut refused = Vec::new();
    for s in &sessions {
        let (_, events) = show_session(&w.gh, s["id"].as_str().context("id")?)?;
        refused.extend(
            events_of_kind(&events, "port_forward")
                .into_iter()
                .filter(|e| e["kind"]["forward"] == "tcpip-forward")
                .map(|e| e["kind"]["outcome"].clone()),
        );
    }
    assert_eq!(refused, vec![Value::from("refused")]);
    Ok(())
}

#[test]
fn remote_forwarding_allowed_by_policy_reaches_the_agent_and_is_counted() -> Result<()> {
    let w = forwarding_world()?;
    let auth = w.token_auth(&w.token("tunnel")?)?;
    // What the agent serves on its side: a greeting per connection.
    let agent = std::net::TcpListener::bind("127.0.0.1:0")?;
    let agent_port = agent.local_addr()?.port();
    std::thread::spawn(move || {
        for s in agent.incoming().flatten() {
            let mut s = s;
            let _ = s.write_all(b"hello from the agent's side\n");
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf);
        }
    });
    let remote_port = gatehouse_tests::ports::free_loopback_port()?;
    let mut cmd = Command::new("ssh");
    auth.apply(&mut cmd);
    let mut child = cmd
        .args(["-p", &w.port.to_string(), "-o", "ExitOnForwardFailure=yes"])
        .args([
            "-R",
            &format!("127.0.0.1:{remote_port}:127.0.0.1:{agent_port}"),
        ])
        .arg(format!("{SSH_CONNECTION}@127.0.0.1"))
        .arg("sleep 20")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    // The target (sshd on this host) listens on remote_port once the
    // gateway passed the request on; a connection there reaches the
    // agent's service through the gateway.
    let deadline = Instant::now() + WAIT;
    let mut s = loop {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", remote_port)) {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!(
                "the target never listened on the remote port\n{}",
                w.gh.log()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    s.set_read_timeout(Some(WAIT))?;
    let mut greeting = Vec::new();
    let mut buf = [0u8; 64];
    while !greeting.ends_with(b"\n") {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        greeting.extend_from_slice(&buf[..n]);
    }
    assert_eq!(greeting, b"hello from the agent's side\n");
    s.write_all(b"thanks\n")?;
    drop(s);
    let _ = child.wait();
    let sessions = ssh_sessions(&w, 1)?;
    let (_, events) = show_session(&w.gh, sessions[0]["id"].as_str().context("id")?)?;
    let forwards: Vec<&Value> = events_of_kind(&events, "port_forward")
        .into_iter()
        .map(|e| &e["kind"])
        .filter(|f| f["forward"] == "tcpip-forward")
        .collect();
    let listen = format!("target 127.0.0.1:{remote_port}");
    assert!(
        forwards
            .iter()
            .any(|f| f["from"] == listen.as_str() && f["outcome"] == "opened"),
        "{forwards:#?}"
    );
    let closed = forwards
        .iter()
        .find(|f| f["outcome"] == "closed")
        .with_context(|| format!("no closed connection: {forwards:#?}"))?;
    assert_eq!(closed["to"], format!("agent via 127.0.0.1:{remote_port}"));
    // The greeting came from the agent; "thanks" went to it.
    assert_eq!(closed["bytes_in"].as_u64(), Some(28), "{closed}");
    assert_eq!(closed["bytes_out"].as_u64(), Some(7), "{closed}");
    Ok(())
}

/// `ssh -L LOCAL:127.0.0.1:TARGET_SSHD ... sleep 20` through the gateway
/// (long enough for a loaded machine);
/// the child and the local port, once it listens.
fn forward(
    w: &SshWorld,
    auth: &gatehouse_tests::ssh_client::Auth,
) -> Result<(std::process::Child, u16)> {
    let local_port = gatehouse_tests::ports::free_loopback_port()?;
    let mut cmd = Command::new("ssh");
    auth.apply(&mut cmd);
    cmd.args(["-p", &w.port.to_string()])
        .args([
            "-L",
            &format!("127.0.0.1:{local_port}:127.0.0.1:{}", w.sshd.port()),
        ])
        .arg(format!("{SSH_CONNECTION}@127.0.0.1"))
        .arg("sleep 20")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn()?;
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(("127.0.0.1", local_port)).is_err() {
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("the client never listened on the forwarded port");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok((child, local_port))
}

#[test]
fn port_forwarding_allowed_by_policy_is_relayed_and_counted() -> Result<()> {
    let w = forwarding_world()?;
    let auth = w.token_auth(&w.token("tunnel")?)?;
    let (mut child, local_port) = forward(&w, &auth)?;
    // The readiness probe above opened (and closed) one forward already;
    // this one talks to the target's sshd through it.
    let mut s = TcpStream::connect(("127.0.0.1", local_port))?;
    s.set_read_timeout(Some(WAIT))?;
    s.write_all(b"SSH-2.0-forward-test\r\n")?;
    let mut banner = Vec::new();
    let mut buf = [0u8; 256];
    // The version line ends at its first newline; sshd's key exchange
    // packet may follow it in the same read (it does when the machine is
    // busy enough for the two to be relayed as one), so the read must not
    // wait for a chunk that ends with the newline.
    while !banner.contains(&b'\n') {
        let n = s.read(&mut buf).with_context(|| {
            format!(
                "reading sshd's banner through the forward\n{}\n--- sshd ---\n{}",
                w.gh.log(),
                w.sshd.log()
            )
        })?;
        if n == 0 {
            break;
        }
        banner.extend_from_slice(&buf[..n]);
    }
    assert!(
        String::from_utf8_lossy(&banner).starts_with("SSH-2.0-OpenSSH"),
        "the forward did not reach sshd: {:?}",
        String::from_utf8_lossy(&banner)
    );
    drop(s);
    let _ = child.wait();
    let sessions = ssh_sessions(&w, 1)?;
    let (_, events) = show_session(&w.gh, sessions[0]["id"].as_str().context("id")?)?;
    let forwards: Vec<&Value> = events_of_kind(&events, "port_forward")
        .into_iter()
        .map(|e| &e["kind"])
        .collect();
    let to = format!("127.0.0.1:{}", w.sshd.port());
    assert!(
        forwards.iter().all(|f| f["to"] == to.as_str()),
        "{forwards:#?}"
    );
    assert!(
        forwards.iter().any(|f| f["outcome"] == "opened"),
        "{forwards:#?}"
    );
    let closed = forwards
        .iter()
        .find(|f| f["outcome"] == "closed" && f["bytes_in"].as_u64().unwrap_or(0) > 0)
        .with_context(|| format!("no closed forward with the client's bytes: {forwards:#?}"))?;
    // Our version line went in; sshd's banner (and its reply) came out.
    assert!(closed["bytes_in"].as_u64().unwrap_or(0) >= 22, "{closed}");
    assert!(
        closed["bytes_out"].as_u64().unwrap_or(0) >= banner.len() as u64,
        "{closed}"
    );
    Ok(())
}

#[test]
fn garbage_and_stalled_handshakes_end_only_their_session() -> Result<()> {
    let w = SshWorld::start(|c, _| c.startup_timeout("2s"))?;
    // Garbage instead of an SSH version line.
    let mut s = TcpStream::connect(("127.0.0.1", w.port))?;
    s.write_all(b"GET / HTTP/1.1\r\n\r\n")?;
    s.set_read_timeout(Some(WAIT))?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    // A client that connects and says nothing is dropped.
    let mut stalled = TcpStream::connect(("127.0.0.1", w.port))?;
    stalled.set_read_timeout(Some(Duration::from_secs(15)))?;
    let started = Instant::now();
    let mut sink = Vec::new();
    let _ = stalled.read_to_end(&mut sink);
    assert!(
        started.elapsed() < Duration::from_secs(14),
        "the stalled connection was never dropped"
    );
    // Others are served meanwhile and after.
    let auth = w.token_auth(&w.token("ok")?)?;
    let out = w.ssh(&auth, SSH_CONNECTION, &["echo still-serving"])?;
    assert_eq!(out.success_text()?, "still-serving");
    let sessions = ssh_sessions(&w, 3)?;
    let ended_badly: Vec<&Value> = sessions
        .iter()
        .filter(|h| h["outcome"] == "failed" || h["outcome"] == "refused")
        .collect();
    assert_eq!(ended_badly.len(), 2, "{sessions:#?}");
    Ok(())
}

#[test]
fn target_down_and_host_key_mismatch_are_clear() -> Result<()> {
    let w = SshWorld::start(|c, sshd| {
        let dead = format!(
            "127.0.0.1:{}",
            gatehouse_tests::ports::free_loopback_port().unwrap_or(1)
        );
        // A connection whose pinned key is not the target's.
        let wrong_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBnBkvAUCONUy0I4qy6FNIoZTiGrIhc61ETZpnjoeghT wrong";
        c.connection(gatehouse_tests::ConnectionSpec::ssh(
            "dead",
            &dead,
            gatehouse_tests::sshd::TEST_USER,
            &sshd.gateway_key(),
            &sshd.host_key().unwrap_or_default(),
        ))
        .connection(gatehouse_tests::ConnectionSpec::ssh(
            "impostor",
            &sshd.address(),
            gatehouse_tests::sshd::TEST_USER,
            &sshd.gateway_key(),
            wrong_key,
        ))
        .role(gatehouse_tests::RoleSpec::new(
            "more",
            &["ci-deploy"],
            &["dead", "impostor"],
        ))
    })?;
    let auth = w.token_auth(&w.token("ci")?)?;
    let out = w.ssh(&auth, "dead", &["echo hi"])?;
    assert_eq!(out.status.code(), Some(255));
    assert!(
        out.stderr_text()
            .contains("connection \"dead\" is unreachable"),
        "{}",
        out.stderr_text()
    );
    let out = w.ssh(&auth, "impostor", &["echo hi"])?;
    assert_eq!(out.status.code(), Some(255));
    assert!(
        out.stderr_text()
            .contains("host key does not match the pinned key"),
        "{}",
        out.stderr_text()
    );
    assert!(w.gh.log().contains("not the pinned"), "{}", w.gh.log());
    let sessions = ssh_sessions(&w, 2)?;
    assert!(
        sessions.iter().all(|h| h["outcome"] == "failed"),
        "{sessions:#?}"
    );
    Ok(())
}

#[test]
fn sigterm_ends_shells_with_a_message_and_records_them_terminated() -> Result<()> {
    let mut w = SshWorld::start(|c, _| c.line_in("limits", "shutdown_grace = \"1s\""))?;
    let auth = w.token_auth(&w.token("long")?)?;
    let mut cmd = Command::new("ssh");
    auth.apply(&mut cmd);
    cmd.args(["-p", &w.port.to_string()])
        .arg(format!("{SSH_CONNECTION}@127.0.0.1"))
        .arg("echo started; sleep 600")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn()?;
    let mut first = [0u8; 8];
    child
        .stdout
        .as_mut()
        .context("stdout")?
        .read_exact(&mut first)?;
    w.gh.signal("TERM")?;
    let deadline = Instant::now() + WAIT;
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("the agent was not disconnected");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output()?;
    assert!(
        out.stderr_text()
            .contains("terminating connection: the gateway is shutting down"),
        "{}",
        out.stderr_text()
    );
    w.gh.wait_exit(WAIT)?.context("gatehouse did not exit")?;
    let sessions = ssh_sessions(&w, 1)?;
    assert_eq!(sessions[0]["outcome"], "terminated");
    Ok(())
}
