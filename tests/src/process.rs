//! Running helper programs (`initdb`, `openssl`, `psql`, the gatehouse CLI)
//! with a deadline.
//!
//! An end-to-end test that waits forever on a hung client is worse than one
//! that fails: it blocks the whole run and says nothing. Every external
//! program the harness starts therefore goes through [`run`], which kills the
//! child when its deadline passes and reports what it had printed so far.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Default deadline for helper programs. Generous, because `initdb` or an
/// RSA key generation on a loaded CI machine can take several seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// How long to wait for pipe readers after the child has exited. A grandchild
/// that inherited the pipe (a daemon the child forked) would otherwise keep us
/// waiting for an end-of-file that never comes.
const PIPE_DRAIN_GRACE: Duration = Duration::from_secs(5);

/// Runs `cmd` with stdin closed, capturing stdout and stderr, and kills it if
/// it has not exited within `timeout`. A non-zero exit is *not* an error here;
/// use [`run_checked`] when it should be.
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let what = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {what}"))?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());

    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .with_context(|| format!("waiting for {what}"))?
        {
            break Some(status);
        }
        if Instant::now() >= deadline {
            // Best effort: the child may have exited between the two calls.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(10));
    };
    let stdout = collect(stdout);
    let stderr = collect(stderr);
    match status {
        Some(status) => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        None => bail!(
            "{what} did not finish within {timeout:?}; stdout: {}; stderr: {}",
            String::from_utf8_lossy(&stdout).trim(),
            String::from_utf8_lossy(&stderr).trim()
        ),
    }
}

/// Like [`run`], but a non-zero exit becomes an error carrying the program's
/// stderr and stdout, which is what a test failure message needs.
pub fn run_checked(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let what = describe(cmd);
    let out = run(cmd, timeout)?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            stdout_suffix(&out.stdout)
        );
    }
    Ok(out)
}

/// Calls `poll` until it reports an exit status or `timeout` passes; `None`
/// means still running. For children owned longer than one call (the
/// gateway daemon).
pub fn wait_until(
    timeout: Duration,
    mut poll: impl FnMut() -> Result<Option<ExitStatus>>,
) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = poll()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The last `lines` lines of a log file, for error messages. A missing or
/// unreadable file yields a note instead of an error: the caller is already
/// reporting a failure and should not lose it to a second one.
pub fn log_tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            all[start..].join("\n")
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// A short human description of a command for error messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

fn stdout_suffix(stdout: &[u8]) -> String {
    let text = String::from_utf8_lossy(stdout);
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!("; stdout: {text}")
    }
}

/// Reads a pipe to its end on a thread, so a chatty child never blocks on a
/// full pipe while we wait for it to exit.
/// What a pipe delivered so far, and whether it reached its end.
type Drained = std::sync::Arc<std::sync::Mutex<(Vec<u8>, bool)>>;

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> Drained {
    let out: Drained = Default::default();
    match pipe {
        Some(mut pipe) => {
            let sink = out.clone();
            thread::spawn(move || {
                let mut buf = [0u8; 8192];
                // A read error just truncates what we report; the exit
                // status still tells the caller whether it succeeded.
                loop {
                    let n = pipe.read(&mut buf).unwrap_or(0);
                    let Ok(mut o) = sink.lock() else { return };
                    if n == 0 {
                        o.1 = true;
                        return;
                    }
                    o.0.extend_from_slice(&buf[..n]);
                }
            });
        }
        None => {
            if let Ok(mut o) = out.lock() {
                o.1 = true;
            }
        }
    }
    out
}

/// Everything the pipe delivers until its end, or what it delivered within
/// the grace period: a grandchild holding the pipe open (ssh's background
/// ControlMaster) must not hide what the child itself printed.
fn collect(drained: Drained) -> Vec<u8> {
    let deadline = Instant::now() + PIPE_DRAIN_GRACE;
    loop {
        if let Ok(o) = drained.lock()
            && (o.1 || Instant::now() >= deadline)
        {
            return o.0.clone();
        }
        thread::sleep(Duration::from_millis(10));
    }
}
