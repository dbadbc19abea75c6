//! Running an operator's command or SFTP view as a child `gatehouse`
//! process and relaying it over the SSH channel.
//!
//! Children read the store through their own read-only handle, like the
//! local CLI, so a slow or failing export never touches the daemon's
//! memory or the recorder. Output flows through pipes and the SSH window:
//! a client that reads slowly slows the child down (back-pressure), and a
//! client that goes away kills it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use gatehouse_actors::recording::EventKind;
use russh::Channel;
use russh::server::Msg;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader, ReadBuf};
use tokio::process::Command;

use super::audit::Audit;

/// How to start a child `gatehouse`.
#[derive(Clone)]
pub struct ChildSpec {
    pub exe: PathBuf,
    pub config: PathBuf,
    /// Where running children are attributed to their operator.
    pub callers: crate::control::Callers,
    /// Children at once, across all operators; more wait their turn.
    pub slots: Arc<tokio::sync::Semaphore>,
}

/// Commands and SFTP views running at once: each may read whole
/// recordings, and the appliance's cores belong to the sessions.
const MAX_CHILDREN: usize = 8;

impl ChildSpec {
    fn command(&self, args: &[String]) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.env_clear()
            .arg0("gatehouse")
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .kill_on_drop(true);
        cmd
    }
}

/// Run `args` for an exec request: stdout to the channel, stderr as
/// extended data, then the exit status.
pub async fn exec(
    spec: &ChildSpec,
    args: &[String],
    channel: Channel<Msg>,
    audit: &Audit,
    via: String,
) {
    let (mut reader, writer) = channel.split();
    // Drain what the client sends (stdin is not read) so its messages
    // never back up the session.
    // It ends when the channel closes: the client is gone even if a write
    // to it is stuck waiting for window space that will never come.
    let mut drain = tokio::spawn(async move { while reader.wait().await.is_some() {} });
    let Ok(_slot) = spec.slots.clone().acquire_owned().await else {
        return;
    };
    let mut child = match spec
        .command(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            tracing::error!("admin command could not start: {e}");
            let _ = writer
                .extended_data(
                    1,
                    format!("gatehouse: cannot start the command: {e}\n").as_bytes(),
                )
                .await;
            finish(&writer, 127, 0, audit).await;
            drain.abort();
            return;
        }
    };
    let pid = child.id();
    if let (Some(pid), Ok(mut map)) = (pid, spec.callers.lock()) {
        map.insert(pid, via);
    }
    let _attributed = Attributed(&spec.callers, pid);
    let sent = Arc::new(AtomicU64::new(0));
    let stdout = Counting(child.stdout.take().expect("piped"), sent.clone());
    let stderr = child.stderr.take().expect("piped");
    // The first failure, or the channel closing, stops both relays, so a
    // child blocked on a full pipe is killed rather than waited for.
    let relayed = tokio::select! {
        r = async { tokio::try_join!(writer.data(stdout), writer.extended_data(1, stderr)) } => r.is_ok(),
        _ = &mut drain => false,
    };
    let status = match relayed {
        true => match child.wait().await {
            Ok(s) => exit_code(s),
            Err(e) => {
                tracing::error!("admin command: {e}");
                1
            }
        },
        // The client went away mid-stream: stop the work it asked for.
        false => {
            let _ = child.kill().await;
            tracing::info!("admin command ended early: the client closed the channel");
            255
        }
    };
    // The pid may be reused once reaped: stop attributing it now.
    drop(_attributed);
    finish(&writer, status, sent.load(Ordering::Relaxed), audit).await;
    drain.abort();
}

/// Serve the read-only SFTP view: the channel's bytes go to a child
/// `gatehouse recordings sftp-server`, its answers back; each operation it
/// reports on stderr (one JSON object per line) is recorded.
pub async fn sftp(spec: &ChildSpec, channel: Channel<Msg>, audit: Audit) {
    let Ok(_slot) = spec.slots.clone().acquire_owned().await else {
        return;
    };
    let mut child = match spec
        .command(&["recordings".into(), "sftp-server".into()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            tracing::error!("SFTP view could not start: {e}");
            audit.note(EventKind::Sftp {
                op: "start".into(),
                path: "/".into(),
                outcome: format!("failed: {e}"),
                bytes: 0,
            });
            let _ = channel.exit_status(127).await;
            let _ = channel.close().await;
            return;
        }
    };
    let (mut stdin, mut stdout, stderr) = (
        child.stdin.take().expect("piped"),
        child.stdout.take().expect("piped"),
        child.stderr.take().expect("piped"),
    );
    let (mut reader, writer) = channel.split();
    let upstream = async {
        let _ = tokio::io::copy(&mut reader.make_reader(), &mut stdin).await;
        drop(stdin);
    };
    let downstream = async {
        let _ = tokio::io::copy(&mut stdout, &mut writer.make_writer()).await;
    };
    // Read to the end, whatever ends the session: the last operations are
    // reported as the child exits.
    let audit_ops = audit.clone();
    let operations = tokio::spawn(async move {
        let audit = audit_ops;
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            match serde_json::from_str::<SftpOp>(&line) {
                Ok(op) => audit.note(EventKind::Sftp {
                    op: op.op,
                    path: op.path,
                    outcome: op.outcome,
                    bytes: op.bytes,
                }),
                Err(_) => tracing::warn!(line = %line.escape_debug(), "SFTP view"),
            }
        }
    });
    // The view ends when the client closes (its stdin ends) or the child
    // exits (its stdout ends); scp and sftp expect an exit status. A child
    // that does not exit after its stdin ended (blocked writing to a client
    // that left) is killed.
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
    }
    let status = match tokio::time::timeout(std::time::Duration::from_secs(5), child.wait()).await {
        Ok(Ok(s)) => exit_code(s),
        _ => {
            let _ = child.kill().await;
            255
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), operations).await;
    let _ = writer.exit_status(status).await;
    let _ = writer.eof().await;
    let _ = writer.close().await;
}

/// One operation as the SFTP view reports it.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct SftpOp {
    pub op: String,
    pub path: String,
    pub outcome: String,
    #[serde(default)]
    pub bytes: u64,
}

async fn finish(writer: &russh::ChannelWriteHalf<Msg>, status: u32, bytes: u64, audit: &Audit) {
    audit.note(EventKind::AdminExit { status, bytes });
    let _ = writer.exit_status(status).await;
    let _ = writer.eof().await;
    let _ = writer.close().await;
}

fn exit_code(status: std::process::ExitStatus) -> u32 {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(c), _) => c as u32,
        (None, Some(sig)) => 128 + sig as u32,
        _ => 1,
    }
}

/// Counts the bytes read through it.
struct Counting<R>(R, Arc<AtomicU64>);

impl<R: AsyncRead + Unpin> AsyncRead for Counting<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = std::pin::Pin::new(&mut self.0).poll_read(cx, buf);
        self.1
            .fetch_add((buf.filled().len() - before) as u64, Ordering::Relaxed);
        poll
    }
}

/// The running binary, for children: `/proc/self/exe` names the file this
/// process was started from even after an upgrade replaced it on disk, so
/// children are always the daemon's own version.
pub fn current_exe() -> anyhow::Result<PathBuf> {
    let proc_exe = PathBuf::from("/proc/self/exe");
    if proc_exe.exists() {
        Ok(proc_exe)
    } else {
        Ok(std::env::current_exe()?)
    }
}

pub fn spec(config: &Path, callers: crate::control::Callers) -> anyhow::Result<ChildSpec> {
    Ok(ChildSpec {
        exe: current_exe()?,
        config: std::fs::canonicalize(config)?,
        callers,
        slots: Arc::new(tokio::sync::Semaphore::new(MAX_CHILDREN)),
    })
}

/// Attributes a child's control-socket requests to its operator while it
/// lives.
struct Attributed<'a>(&'a crate::control::Callers, Option<u32>);

impl Drop for Attributed<'_> {
    fn drop(&mut self) {
        if let (Some(pid), Ok(mut map)) = (self.1, self.0.lock()) {
            map.remove(&pid);
        }
    }
}
