//! An agent that stops reading its channel (the russh trap: a relay
//! writing to it waits for a window adjust that never comes), against a
//! real sshd with stock OpenSSH. Its own test binary: it loads the
//! machine, and the other SSH tests run beside each other.

mod common;

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use gatehouse_tests::ssh_client::{CLIENT_TIMEOUT, SSH_CONNECTION};
use gatehouse_tests::{OutputExt, SshWorld};

/// The gateway's resident memory, from /proc.
fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS")
}

/// The gateway's CPU time so far, user + system, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').context("stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> Result<u64> { Ok(fields.get(i).context("stat field")?.parse()?) };
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    Ok(field(11)? + field(12)?)
}

/// Whether a process whose command line starts with `prefix` runs (the
/// target's side of a command: the agent's `ssh` has it in its arguments
/// too, but not at the start).
fn target_runs(prefix: &str) -> bool {
    Command::new("pgrep")
        .args(["-f", &format!("^{prefix}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The russh trap: a relay writing to an agent that stopped reading waits
/// for a window adjust that never comes. While it waits, everyone else is
/// served and the gateway stops reading the target (memory stays flat);
/// when the agent vanishes, the relay gets out, the session ends in the
/// recording and the target's command is gone.
#[test]
fn an_agent_that_stops_reading_holds_nobody_else_and_ends_when_it_vanishes() -> Result<()> {
    let w = SshWorld::start(|c, _| c)?;
    let pid = w.gh.pid().context("gateway pid")?;
    let marker = format!("yes gh-stalled-{}", std::process::id());
    let mut cmd = Command::new("ssh");
    w.token_auth(&w.token("stalled")?)?.apply(&mut cmd);
    // stdout is a pipe nobody reads: ssh stops reading its channel once
    // the pipe is full.
    let mut stalled = cmd
        .args(["-p", &w.port.to_string()])
        .arg(format!("{SSH_CONNECTION}@127.0.0.1"))
        .arg(&marker)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let deadline = std::time::Instant::now() + CLIENT_TIMEOUT;
    while !target_runs(&marker) {
        if std::time::Instant::now() > deadline {
            let _ = stalled.kill();
            bail!("the target never ran {marker:?}\n{}", w.gh.log());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Let every window and buffer on the way fill up.
    std::thread::sleep(Duration::from_secs(2));
    let before = rss_kib(pid)?;
    // A relay that waits must wait, not spin: at most a tenth of a CPU
    // while nothing moves (measured here: 0.02).
    let ticks = cpu_ticks(pid)?;
    std::thread::sleep(Duration::from_secs(3));
    let spent = cpu_ticks(pid)? - ticks;
    assert!(
        spent <= 30,
        "the gateway used {spent} CPU ticks in 3 s while an agent did not read"
    );

    let out = w.ssh(
        &w.token_auth(&w.token("other")?)?,
        SSH_CONNECTION,
        &["echo still-served"],
    )?;
    assert_eq!(out.success_text()?, "still-served");
    std::thread::sleep(Duration::from_secs(2));
    let after = rss_kib(pid)?;
    assert!(
        after < before + 32 * 1024,
        "the gateway grew from {before} KiB to {after} KiB while an agent did not read"
    );
    assert!(target_runs(&marker), "the stalled command ended on its own");

    stalled.kill()?;
    stalled.wait()?;
    let sessions = common::ended_sessions(&w.gh, "ssh", 2)?;
    let ended = sessions
        .iter()
        .find(|h| h["identity"] == "oidc:stalled")
        .context("the stalled session is not recorded as ended")?;
    assert!(
        ended["outcome"] == "closed" || ended["outcome"] == "interrupted",
        "{ended}"
    );
    let deadline = std::time::Instant::now() + CLIENT_TIMEOUT;
    while target_runs(&marker) {
        if std::time::Instant::now() > deadline {
            bail!("the target still runs {marker:?} after the agent left");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
