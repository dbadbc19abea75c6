//! One session channel's relay: the agent's requests and bytes in the
//! order they arrived, the target's answers and output, and what policy
//! does in between.
//!
//! ```text
//! handler ──ChannelInput (ordered)──▶ up pump ──▶ target channel
//!   requests wait for the up pump's       │ pty, env (allowlist), shell, exec (command
//!   verdict, so replies stay in order     │ rules, approvals), subsystem, signals, resize
//! agent channel ◀── down pump ◀───────────┘ data (masked), stderr, exit status/signal,
//!                                          request replies, eof, close
//! ```
//!
//! Every wait has a way out: the connection ending aborts the relay, a
//! kill (`terminate`) makes both pumps stop at once with a message on the
//! agent's stderr, and a request the target never answers fails after
//! [`REQUEST_TIMEOUT`].
//!
//! Layout: this file holds the relay, its requests and pumps; `shell.rs`
//! the command rules on lines typed in shells (with [`crate::ssh::line`]);
//! `files.rs` SFTP through [`crate::ssh::sftp`] and legacy scp.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use russh::{ChannelId, ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Pty, Sig};
use tokio::sync::{mpsc, oneshot, watch};

mod files;
mod shell;

use super::SshTarget;
use super::policy::Verdict;
use super::record::{ChannelTap, Stream};
use super::sftp::SftpFilter;
use super::sftp::scp;
use super::sftp::scp_stream::ScpStream;
use crate::approval::{ApprovalOutcome, BrokerHandle, PendingApproval, Submit, Withdraw};
use crate::auth::Identity;
use crate::mask::stream::StreamMasker;
use crate::recorder::{RecorderHandle, now_micros};
use crate::recording::{Direction, EventKind, RecordingId};
use crate::registry::{SessionState, SessionStats};

/// A target that does not answer a request within this fails it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Exit status of a command policy refused, as shells report a command
/// found but not executable.
pub const EXIT_REFUSED: u32 = 126;

/// While an exec waits for approval the agent may keep sending (stdin);
/// beyond this many bytes the relay stops taking input until the decision.
const MAX_HELD_BYTES: usize = 1 << 20;
/// What a held input other than data counts towards [`MAX_HELD_BYTES`].
const HELD_ITEM_COST: usize = 64;

/// What the handler hands a channel's relay, in arrival order.
#[derive(Debug)]
pub enum ChannelInput {
    Data(Bytes),
    ExtendedData(u32, Bytes),
    Eof,
    Close,
    WindowChange {
        cols: u32,
        rows: u32,
        pix_width: u32,
        pix_height: u32,
    },
    Signal(Sig),
    /// A request the agent wants answered; the relay says yes or no.
    Request(Request, oneshot::Sender<bool>),
}

#[derive(Debug)]
pub enum Request {
    Pty {
        term: String,
        cols: u32,
        rows: u32,
        pix_width: u32,
        pix_height: u32,
        modes: Vec<(Pty, u32)>,
    },
    Env {
        name: String,
        value: String,
    },
    Shell,
    Exec(Vec<u8>),
    Subsystem(String),
}

/// What every relay of one connection shares.
pub struct Relays {
    pub session: RecordingId,
    pub recorder: RecorderHandle,
    pub target: Arc<SshTarget>,
    pub identity: Identity,
    pub broker: Option<BrokerHandle>,
    /// The agent's connection, for what channel halves cannot send
    /// (exit-signal).
    pub server: russh::server::Handle,
    /// Set when the session is killed or the gateway shuts down.
    pub terminate: watch::Receiver<Option<String>>,
    /// The session's live counters: bytes, commands, waiting.
    pub stats: Arc<SessionStats>,
    /// Ports the target listens on for the agent's remote forwards: the
    /// only ones whose connections reach the agent.
    pub remote_ports: std::sync::Mutex<std::collections::HashSet<u32>>,
}

/// The session shown as waiting for approval while this lives (several
/// channels may wait at once; the first to finish shows it active again,
/// which understates the wait but never leaves a session "waiting").
struct Waiting<'a>(&'a SessionStats);

impl<'a> Waiting<'a> {
    fn on(stats: &'a SessionStats) -> Self {
        stats.set_state(SessionState::WaitingForApproval);
        Waiting(stats)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.set_state(SessionState::Active);
    }
}

/// How long the target's EOF waits for its exit status. sshd sends EOF,
/// then the exit status, then CLOSE; an agent whose own input has ended
/// answers EOF with CLOSE at once, and russh answers that CLOSE for the
/// gateway, so an exit status arriving after it could no longer be sent
/// (OpenSSH's ControlMaster then exits 255 with no output). Held, the EOF
/// goes right after the exit status (or with the target's CLOSE, or after
/// this long when neither comes).
const EOF_HOLD: Duration = Duration::from_secs(2);

/// Replies the target owes, oldest first.
type Pending = Arc<Mutex<VecDeque<oneshot::Sender<bool>>>>;

/// Output held back for masking goes out after this much silence, so a
/// prompt without a newline (or the echo of a key) still appears promptly.
/// A secret whose pieces arrive further apart than this is not joined.
const MASK_FLUSH: Duration = Duration::from_millis(50);

/// Whether the channel's output is text a terminal or a person reads (and
/// is masked), or a protocol (SFTP, scp) whose bytes must pass unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    Text,
    Protocol,
}

/// SFTP refusals waiting for the down pump; a full queue stops the up
/// pump (and so the agent) until the agent reads its replies.
const INJECT_QUEUE: usize = 16;

/// Start the relay of one session channel.
pub fn spawn(
    relays: Arc<Relays>,
    id: ChannelId,
    client: russh::Channel<russh::server::Msg>,
    upstream: russh::Channel<russh::client::Msg>,
    inbox: mpsc::Receiver<ChannelInput>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // The agent's bytes come from the handler, in order with its
        // requests; the channel's own queue is not read.
        let (_, client_wr) = client.split();
        let (up_rd, up_wr) = upstream.split();
        let tap = Arc::new(Mutex::new(ChannelTap::new(
            relays.recorder.clone(),
            relays.session,
            u32::from(id),
            relays.stats.clone(),
        )));
        let pending: Pending = Default::default();
        let (inject, injected) = mpsc::channel(INJECT_QUEUE);
        let relay = Relay {
            relays: relays.clone(),
            id,
            tap: tap.clone(),
            pending,
            output: Arc::new(Mutex::new(Output::Text)),
            sftp: Arc::new(Mutex::new(None)),
            scp: Mutex::new(None),
            inject,
            pty: Mutex::new(None),
            shell: Mutex::new(None),
            echo: AtomicU64::new(0),
            shown: tokio::sync::Notify::new(),
            started: AtomicBool::new(false),
        };
        relay
            .tap_note(
                Direction::Client,
                EventKind::SshChannelOpen {
                    channel: u32::from(id),
                    channel_type: "session".into(),
                },
            )
            .await;
        let up = relay.up(inbox, &up_wr, &client_wr);
        let down = relay.down(up_rd, injected, &client_wr);
        tokio::join!(up, down);
        relay.scp_finish().await;
        let (events, close) = {
            let Ok(mut t) = tap.lock() else { return };
            let close = t.event(
                Direction::Gateway,
                EventKind::SshChannelClose {
                    channel: t.channel,
                    bytes_in: t.bytes_in,
                    bytes_out: t.bytes_out,
                },
            );
            (t.drain(), close)
        };
        relays
            .recorder
            .send(crate::recorder::RecorderMsg::Events(relays.session, {
                let mut all = events;
                all.push(close);
                all
            }))
            .await;
    })
}

struct Relay {
    relays: Arc<Relays>,
    id: ChannelId,
    tap: Arc<Mutex<ChannelTap>>,
    pending: Pending,
    /// Set by the up pump when it learns what the channel runs.
    output: Arc<Mutex<Output>>,
    /// The SFTP conversation, once the channel runs the `sftp` subsystem.
    sftp: Arc<Mutex<Option<SftpFilter>>>,
    /// A legacy scp transfer's stream, once the channel runs one.
    scp: Mutex<Option<ScpStream>>,
    /// Replies the gateway gives in the target's place (SFTP refusals),
    /// written by the down pump between whole packets of the target's.
    inject: mpsc::Sender<Bytes>,
    /// The agent's terminal size (cols, rows), once it asked for one.
    pty: Mutex<Option<(u32, u32)>>,
    /// Lines of a shell under command rules.
    shell: Mutex<Option<shell::Watch>>,
    /// Counts output shown to the agent, so Enter can wait for the echo.
    echo: AtomicU64,
    /// Woken when output is shown to the agent.
    shown: tokio::sync::Notify,
    /// A shell, exec or subsystem was asked for: a channel runs one thing,
    /// so a second request (an `sftp` subsystem on a shell's channel, to
    /// route its keys past the line judgement) is refused.
    started: AtomicBool,
}

/// How a held exec ended.
enum Decision {
    Approved,
    Refused(String),
}

impl Relay {
    fn channel(&self) -> u32 {
        u32::from(self.id)
    }

    fn record_streams(&self, on: bool) {
        if let Ok(mut t) = self.tap.lock() {
            t.record_streams = on;
        }
    }

    fn set_output(&self, output: Output) {
        if let Ok(mut o) = self.output.lock() {
            *o = output;
        }
    }

    fn masked_output(&self) -> bool {
        self.relays.target.policy.masker.is_some()
            && self
                .output
                .lock()
                .map(|o| *o == Output::Text)
                .unwrap_or(true)
    }

    async fn tap_note(&self, dir: Direction, kind: EventKind) {
        let event = match self.tap.lock() {
            Ok(t) => t.event(dir, kind),
            Err(_) => return,
        };
        self.send_events(vec![event]).await;
    }

    async fn send_events(&self, events: Vec<crate::recorder::PendingEvent>) {
        if !events.is_empty() {
            self.relays
                .recorder
                .send(crate::recorder::RecorderMsg::Events(
                    self.relays.session,
                    events,
                ))
                .await;
        }
    }

    /// Record events that must be durable before what they describe
    /// happens (strict recording); `Err` when they could not be.
    async fn commit(&self, kind: EventKind) -> Result<(), String> {
        let event = crate::recorder::PendingEvent {
            at: now_micros(),
            dir: Direction::Client,
            kind,
        };
        if self.relays.target.policy.strict_recording {
            self.relays
                .recorder
                .record_durably(self.relays.session, vec![event])
                .await
        } else {
            self.send_events(vec![event]).await;
            Ok(())
        }
    }

    /// Record what the channel runs before it runs (durably under strict
    /// recording); `false` when that failed and it must not run.
    async fn record_start(&self, request: &str, command: &str) -> bool {
        self.relays.stats.add_statements(1);
        let start = EventKind::SshStart {
            channel: self.channel(),
            request: request.into(),
            command: command.into(),
        };
        match self.commit(start).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!("{request} refused: it could not be recorded ({e})");
                false
            }
        }
    }

    fn data_event(&self, stream: Stream, data: &[u8]) -> Option<crate::recorder::PendingEvent> {
        self.tap.lock().ok().and_then(|mut t| t.data(stream, data))
    }

    /// Agent → target, in order.
    async fn up(
        &self,
        mut inbox: mpsc::Receiver<ChannelInput>,
        up: &ChannelWriteHalf<russh::client::Msg>,
        client: &ChannelWriteHalf<russh::server::Msg>,
    ) {
        let mut terminate = self.relays.terminate.clone();
        // Input held while a shell line waited for approval, judged next.
        let mut backlog = VecDeque::new();
        loop {
            let input = match backlog.pop_front() {
                Some(i) => Some(i),
                None => tokio::select! {
                    i = inbox.recv() => i,
                    _ = terminated(&mut terminate) => return,
                },
            };
            let Some(input) = input else { return };
            let ok = match input {
                ChannelInput::Data(data) => {
                    if let Some(e) = self.data_event(Stream::Stdin, &data) {
                        self.send_events(vec![e]).await;
                    }
                    self.scp_bytes(true, &data).await;
                    if self.is_sftp() {
                        self.sftp_up(data, up, client).await
                    } else if self.watching() {
                        self.shell_input(data, up, client, &mut inbox, &mut backlog)
                            .await
                    } else {
                        up.data_bytes(data).await.is_ok()
                    }
                }
                ChannelInput::ExtendedData(ext, data) => {
                    up.extended_data_bytes(ext, data).await.is_ok()
                }
                ChannelInput::Eof if self.watching() => {
                    self.shell_eof(up, client, &mut inbox, &mut backlog).await
                }
                ChannelInput::Eof => up.eof().await.is_ok(),
                ChannelInput::Close => {
                    let _ = up.close().await;
                    return;
                }
                ChannelInput::WindowChange {
                    cols,
                    rows,
                    pix_width,
                    pix_height,
                } => {
                    self.tap_note(
                        Direction::Client,
                        EventKind::SshResize {
                            channel: self.channel(),
                            cols,
                            rows,
                        },
                    )
                    .await;
                    self.resize_watch(cols, rows);
                    up.window_change(cols, rows, pix_width, pix_height)
                        .await
                        .is_ok()
                }
                ChannelInput::Signal(sig) => {
                    self.tap_note(
                        Direction::Client,
                        EventKind::SshSignal {
                            channel: self.channel(),
                            signal: signal_name(&sig),
                        },
                    )
                    .await;
                    up.signal(sig).await.is_ok()
                }
                ChannelInput::Request(request, reply) => {
                    self.request(request, reply, &mut inbox, &mut backlog, up, client)
                        .await
                }
            };
            if !ok {
                // The target's side of the channel is gone; the down pump
                // tells the agent.
                return;
            }
        }
    }

    /// Send a request upstream and wait for the target's answer.
    async fn ask(
        &self,
        send: impl std::future::Future<Output = Result<(), russh::Error>>,
    ) -> Option<bool> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            p.push_back(tx);
        }
        if send.await.is_err() {
            return None;
        }
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(answer)) => Some(answer),
            _ => None,
        }
    }

    /// Handle one request; `false` when the relay should stop.
    async fn request(
        &self,
        request: Request,
        reply: oneshot::Sender<bool>,
        inbox: &mut mpsc::Receiver<ChannelInput>,
        backlog: &mut VecDeque<ChannelInput>,
        up: &ChannelWriteHalf<russh::client::Msg>,
        client: &ChannelWriteHalf<russh::server::Msg>,
    ) -> bool {
        let channel = self.channel();
        let policy = self.relays.target.policy.clone();
        if matches!(
            request,
            Request::Shell | Request::Exec(_) | Request::Subsystem(_)
        ) && self.started.swap(true, Ordering::AcqRel)
        {
            tracing::info!(
                channel,
                "a second shell, exec or subsystem on one channel refused"
            );
            let _ = reply.send(false);
            return true;
        }
        match request {
            Request::Pty {
                term,
                cols,
                rows,
                pix_width,
                pix_height,
                modes,
            } => {
                self.tap_note(
                    Direction::Client,
                    EventKind::SshPty {
                        channel,
                        term: term.clone(),
                        cols,
                        rows,
                    },
                )
                .await;
                if let Ok(mut p) = self.pty.lock() {
                    *p = Some((cols, rows));
                }
                let answer = self
                    .ask(up.request_pty(true, &term, cols, rows, pix_width, pix_height, &modes))
                    .await;
                let _ = reply.send(answer == Some(true));
                answer.is_some()
            }
            Request::Env { name, value } => {
                let accepted = policy.env_allowed(&name);
                self.tap_note(
                    Direction::Client,
                    EventKind::SshEnv {
                        channel,
                        name: name.clone(),
                        value: accepted.then(|| value.clone()),
                        accepted,
                    },
                )
                .await;
                if !accepted {
                    let _ = reply.send(false);
                    return true;
                }
                let answer = self.ask(up.set_env(true, name, value)).await;
                let _ = reply.send(answer == Some(true));
                answer.is_some()
            }
            Request::Shell => {
                // Under command rules each line the shell would run is
                // judged first (shell.rs).
                if policy.has_command_rules() {
                    self.watch_shell();
                }
                if !self.record_start("shell", "").await {
                    let _ = reply.send(false);
                    return true;
                }
                let answer = self.ask(up.request_shell(true)).await;
                let _ = reply.send(answer == Some(true));
                answer.is_some()
            }
            Request::Subsystem(name) => {
                // SFTP is parsed and held to path rules; another subsystem
                // could not be, so under path rules it is refused.
                if name != "sftp" && policy.has_path_rules() {
                    // What was asked for, then why it was refused.
                    let _ = self.record_start("subsystem", &name).await;
                    self.tap_note(
                        Direction::Gateway,
                        EventKind::Blocked {
                            rule: "paths".into(),
                            reason: format!("subsystem {name} refused: policy \"{}\" has path rules, which only SFTP is checked against", policy.name),
                        },
                    )
                    .await;
                    let _ = reply.send(false);
                    return true;
                }
                if !self.record_start("subsystem", &name).await {
                    let _ = reply.send(false);
                    return true;
                }
                self.set_output(Output::Protocol);
                let answer = self.ask(up.request_subsystem(true, &name)).await;
                // Installed before the next input is read, and only once
                // the target runs SFTP: nothing reaches it unjudged, and a
                // refused subsystem leaves nothing behind.
                if answer == Some(true) && name == "sftp" {
                    if let Ok(mut f) = self.sftp.lock() {
                        *f = Some(SftpFilter::new());
                    }
                    // Files are recorded as operations with their hashes,
                    // not byte for byte (their contents are not masked).
                    self.record_streams(false);
                }
                let _ = reply.send(answer == Some(true));
                answer.is_some()
            }
            Request::Exec(command) => {
                let line = String::from_utf8_lossy(&command).into_owned();
                // scp's own protocol carries file bytes on stdout: they pass
                // unchanged (transfers are recorded as such, not as text).
                if let Some(parsed) = scp::parse(&line) {
                    // Only a plain scp switches masking off: `scp -f x;
                    // cat .env` is not a transfer.
                    let stream = parsed.as_ref().ok().map(ScpStream::new);
                    if parsed.is_ok() {
                        self.set_output(Output::Protocol);
                        self.record_streams(false);
                    }
                    if let Err((rule, why)) = self.judge_scp(parsed).await {
                        let _ = reply.send(true);
                        let _ = self.record_start("exec", &line).await;
                        tracing::info!(command = %line.escape_debug(), "scp refused: {why}");
                        self.block(client, &rule, why).await;
                        return true;
                    }
                    // Its files are recorded one by one as they pass.
                    if let Ok(mut s) = self.scp.lock() {
                        *s = stream;
                    }
                } else if policy.has_path_rules() && scp::is_file_server(&line) {
                    let _ = reply.send(true);
                    let _ = self.record_start("exec", &line).await;
                    let why = format!(
                        "{} is refused under policy \"{}\", which has path rules: use sftp or scp",
                        line.split_whitespace().next().unwrap_or_default(),
                        policy.name
                    );
                    self.block(client, "paths", why).await;
                    return true;
                }
                if !self.record_start("exec", &line).await {
                    let _ = reply.send(true);
                    self.refuse(client, "the command could not be recorded; it was not run")
                        .await;
                    return true;
                }
                match policy.judge_command(&line) {
                    Verdict::Allow => {
                        self.watch_exec(&line);
                        let answer = self.ask(up.exec(true, command)).await;
                        let _ = reply.send(answer == Some(true));
                        answer.is_some()
                    }
                    Verdict::Block { rule, message } => {
                        let _ = reply.send(true);
                        let reason = format!("blocked by policy rule \"{rule}\": {message}");
                        tracing::info!(command = %line.escape_debug(), "exec blocked: {reason}");
                        self.block(client, &rule, reason).await;
                        true
                    }
                    Verdict::Approve {
                        rule,
                        timeout,
                        approvers,
                    } => {
                        // The agent's request is accepted now; the command
                        // waits, and its stdin with it.
                        let _ = reply.send(true);
                        let mut held = VecDeque::new();
                        match self
                            .approval(&line, rule, timeout, approvers, inbox, &mut held, client)
                            .await
                        {
                            Decision::Approved => {
                                self.watch_exec(&line);
                                let answer = self.ask(up.exec(true, command)).await;
                                if answer != Some(true) {
                                    self.refuse(client, "the target refused to run the command")
                                        .await;
                                    return answer.is_some();
                                }
                                if self.watching() {
                                    // Keys for a watched program are judged
                                    // like any others.
                                    backlog.extend(held);
                                    return true;
                                }
                                for input in held {
                                    let ok = match input {
                                        ChannelInput::Data(d) => up.data_bytes(d).await.is_ok(),
                                        ChannelInput::Eof => up.eof().await.is_ok(),
                                        _ => true,
                                    };
                                    if !ok {
                                        return false;
                                    }
                                }
                                true
                            }
                            Decision::Refused(reason) => {
                                self.refuse(client, &reason).await;
                                true
                            }
                        }
                    }
                }
            }
        }
    }

    /// Record that policy refused what the channel asked for, and refuse it.
    async fn block(&self, client: &ChannelWriteHalf<russh::server::Msg>, rule: &str, why: String) {
        self.tap_note(
            Direction::Gateway,
            EventKind::Blocked {
                rule: rule.to_owned(),
                reason: why.clone(),
            },
        )
        .await;
        self.refuse(client, &why).await;
    }

    /// Tell the agent on stderr why its command did not run, exit 126,
    /// and close the channel.
    async fn refuse(&self, client: &ChannelWriteHalf<russh::server::Msg>, why: &str) {
        let text = format!("gatehouse: {why}\r\n");
        let _ = client.extended_data_bytes(1, Bytes::from(text)).await;
        self.tap_note(
            Direction::Gateway,
            EventKind::SshExit {
                channel: self.channel(),
                status: Some(EXIT_REFUSED),
                signal: None,
            },
        )
        .await;
        let _ = client.exit_status(EXIT_REFUSED).await;
        let _ = client.eof().await;
        let _ = client.close().await;
    }

    /// Hold a command for an operator. Input that arrives meanwhile is kept
    /// in `held` (bounded); the agent leaving withdraws the request.
    #[allow(clippy::too_many_arguments)]
    async fn approval(
        &self,
        line: &str,
        rule: String,
        timeout: Duration,
        approvers: Vec<String>,
        inbox: &mut mpsc::Receiver<ChannelInput>,
        held: &mut VecDeque<ChannelInput>,
        client: &ChannelWriteHalf<russh::server::Msg>,
    ) -> Decision {
        let decided = |id: &str, decision: &str, by: &str, reason: Option<String>| {
            EventKind::ApprovalDecided {
                id: id.to_owned(),
                decision: decision.to_owned(),
                by: by.to_owned(),
                reason,
            }
        };
        let Some(broker) = self.relays.broker.as_ref() else {
            self.tap_note(
                Direction::Gateway,
                decided("-", "denied", "gateway", Some("no approval broker".into())),
            )
            .await;
            return Decision::Refused(
                "approval required but no operator console is running".into(),
            );
        };
        let requested_at = now_micros();
        let deadline = requested_at + timeout.as_micros() as i64;
        let request = PendingApproval {
            id: String::new(),
            session: self.relays.session,
            identity: self.relays.identity.qualified(),
            groups: self.relays.identity.groups.clone(),
            connection: self.relays.target.name.clone(),
            statement: line.to_owned(),
            rule: rule.clone(),
            approvers,
            requested_at,
            deadline,
        };
        let Ok((id, mut rx)) = broker.send(Submit(request)).await else {
            return Decision::Refused("approval broker unavailable".into());
        };
        // Consoles show the session waiting until this returns.
        let _waiting = Waiting::on(&self.relays.stats);
        self.tap_note(
            Direction::Gateway,
            EventKind::ApprovalRequested {
                id: id.clone(),
                rule,
                deadline,
            },
        )
        .await;
        tracing::info!(approval = %id, command = %line.escape_debug(), "exec held for approval");
        let _ = client
            .extended_data_bytes(
                1,
                Bytes::from(format!(
                    "{}gatehouse: waiting for approval {id}\r\n",
                    // On a terminal the held line's cursor is still on it.
                    if self.watching() { "\r\n" } else { "" }
                )),
            )
            .await;
        let mut held_bytes = 0usize;
        let mut terminate = self.relays.terminate.clone();
        let sleep = tokio::time::sleep(timeout);
        tokio::pin!(sleep);
        let outcome = loop {
            tokio::select! {
                o = &mut rx => break o.ok(),
                _ = &mut sleep => {
                    broker.do_send(Withdraw(id.clone()));
                    self.tap_note(Direction::Gateway, decided(&id, "timed out", "gateway", None)).await;
                    return Decision::Refused(format!("approval timed out ({id})"));
                }
                _ = terminated(&mut terminate) => {
                    broker.do_send(Withdraw(id.clone()));
                    return Decision::Refused("the session was terminated".into());
                }
                input = inbox.recv(), if held_bytes < MAX_HELD_BYTES => match input {
                    Some(ChannelInput::Close) | None => {
                        broker.do_send(Withdraw(id.clone()));
                        self.tap_note(Direction::Gateway, decided(&id, "withdrawn", "client", Some("the agent closed the channel".into()))).await;
                        return Decision::Refused("the channel closed".into());
                    }
                    Some(ChannelInput::Request(_, reply)) => {
                        let _ = reply.send(false);
                    }
                    Some(ChannelInput::Data(d)) => {
                        held_bytes += d.len();
                        if let Some(e) = self.data_event(Stream::Stdin, &d) {
                            self.send_events(vec![e]).await;
                        }
                        held.push_back(ChannelInput::Data(d));
                    }
                    Some(other) => {
                        // Resizes, signals and EOF count too, so a flood of
                        // them cannot grow the queue without bound.
                        held_bytes += HELD_ITEM_COST;
                        held.push_back(other);
                    }
                },
            }
        };
        match outcome {
            Some(ApprovalOutcome::Approved { by }) => {
                self.tap_note(Direction::Gateway, decided(&id, "approved", &by, None))
                    .await;
                Decision::Approved
            }
            Some(ApprovalOutcome::Denied { by, reason }) => {
                self.tap_note(
                    Direction::Gateway,
                    decided(&id, "denied", &by, Some(reason.clone())),
                )
                .await;
                Decision::Refused(format!("approval {id} denied by {by}: {reason}"))
            }
            None => Decision::Refused(format!("approval {id} was withdrawn")),
        }
    }

    /// Target → agent.
    async fn down(
        &self,
        mut up: ChannelReadHalf,
        mut injected: mpsc::Receiver<Bytes>,
        client: &ChannelWriteHalf<russh::server::Msg>,
    ) {
        let mut terminate = self.relays.terminate.clone();
        // stdout and stderr maskers, made once output is known to be text.
        let mut maskers: Option<[StreamMasker; 2]> = None;
        // The target's EOF, held until its exit status (see EOF_HOLD).
        let eof_hold = tokio::time::sleep(Duration::MAX);
        tokio::pin!(eof_hold);
        let mut eof_held = false;
        loop {
            let holding = maskers
                .as_ref()
                .is_some_and(|m| m.iter().any(StreamMasker::holding));
            let msg = tokio::select! {
                m = up.wait() => m,
                Some(reply) = injected.recv() => {
                    if !self.emit(client, None, reply, &mut terminate).await {
                        return;
                    }
                    continue;
                }
                _ = tokio::time::sleep(MASK_FLUSH), if holding => {
                    if !self.flush_masked(&mut maskers, client, &mut terminate).await {
                        return;
                    }
                    continue;
                }
                why = terminated(&mut terminate) => {
                    self.terminated(client, &why).await;
                    return;
                }
                _ = &mut eof_hold, if eof_held => {
                    eof_held = false;
                    if client.eof().await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            if maskers.is_none()
                && self.masked_output()
                && let Some(m) = self.relays.target.policy.masker
            {
                maskers = Some([StreamMasker::new(m), StreamMasker::new(m)]);
            }
            let Some(msg) = msg else {
                // The target's connection is gone.
                tracing::info!(
                    channel = self.channel(),
                    "the target's side of the channel is gone"
                );
                self.flush_masked(&mut maskers, client, &mut terminate)
                    .await;
                let _ = client.eof().await;
                let _ = client.close().await;
                return;
            };
            let written = match msg {
                ChannelMsg::Data { data } if self.is_sftp() => {
                    self.sftp_down(data, client, &mut terminate).await
                }
                ChannelMsg::Data { data } => {
                    self.scp_bytes(false, &data).await;
                    let data = match maskers.as_mut() {
                        Some([out, _]) => Bytes::from(out.feed(&data)),
                        None => data,
                    };
                    self.emit(client, None, data, &mut terminate).await
                }
                ChannelMsg::ExtendedData { data, ext } => {
                    let data = match maskers.as_mut() {
                        Some([_, err]) => Bytes::from(err.feed(&data)),
                        None => data,
                    };
                    self.emit(client, Some(ext), data, &mut terminate).await
                }
                ChannelMsg::Eof => {
                    eof_held = true;
                    eof_hold
                        .as_mut()
                        .reset(tokio::time::Instant::now() + EOF_HOLD);
                    self.flush_masked(&mut maskers, client, &mut terminate)
                        .await
                }
                ChannelMsg::Close => {
                    self.flush_masked(&mut maskers, client, &mut terminate)
                        .await;
                    if eof_held {
                        let _ = client.eof().await;
                    }
                    let _ = client.close().await;
                    return;
                }
                ChannelMsg::ExitStatus { exit_status } => {
                    self.flush_masked(&mut maskers, client, &mut terminate)
                        .await;
                    self.tap_note(
                        Direction::Target,
                        EventKind::SshExit {
                            channel: self.channel(),
                            status: Some(exit_status),
                            signal: None,
                        },
                    )
                    .await;
                    client.exit_status(exit_status).await.is_ok()
                        && (!std::mem::take(&mut eof_held) || client.eof().await.is_ok())
                }
                ChannelMsg::ExitSignal {
                    signal_name,
                    core_dumped,
                    error_message,
                    lang_tag,
                } => {
                    self.flush_masked(&mut maskers, client, &mut terminate)
                        .await;
                    self.tap_note(
                        Direction::Target,
                        EventKind::SshExit {
                            channel: self.channel(),
                            status: None,
                            signal: Some(signal_name_of(&signal_name)),
                        },
                    )
                    .await;
                    self.relays
                        .server
                        .exit_signal_request(
                            self.id,
                            signal_name,
                            core_dumped,
                            error_message,
                            lang_tag,
                        )
                        .await
                        .is_ok()
                        && (!std::mem::take(&mut eof_held) || client.eof().await.is_ok())
                }
                ChannelMsg::Success | ChannelMsg::Failure => {
                    let answer = matches!(msg, ChannelMsg::Success);
                    if let Some(tx) = self.pending.lock().ok().and_then(|mut p| p.pop_front()) {
                        let _ = tx.send(answer);
                    }
                    true
                }
                _ => true,
            };
            if !written {
                return;
            }
        }
    }

    /// Record `data` (as the agent gets it) and send it.
    async fn emit(
        &self,
        client: &ChannelWriteHalf<russh::server::Msg>,
        ext: Option<u32>,
        data: Bytes,
        terminate: &mut watch::Receiver<Option<String>>,
    ) -> bool {
        if data.is_empty() {
            return true;
        }
        let stream = if ext.is_some() {
            Stream::Stderr
        } else {
            Stream::Stdout
        };
        if let Some(e) = self.data_event(stream, &data) {
            self.send_events(vec![e]).await;
        }
        self.shown_to_agent(&data);
        self.write(client, ext, data, terminate).await
    }

    /// Release what the maskers hold, and record what they masked.
    async fn flush_masked(
        &self,
        maskers: &mut Option<[StreamMasker; 2]>,
        client: &ChannelWriteHalf<russh::server::Msg>,
        terminate: &mut watch::Receiver<Option<String>>,
    ) -> bool {
        let Some([out, err]) = maskers.as_mut() else {
            return true;
        };
        let (o, e) = (Bytes::from(out.flush()), Bytes::from(err.flush()));
        let mut counts = out.stats.take();
        counts.extend(err.stats.take());
        if !counts.is_empty() {
            self.tap_note(Direction::Gateway, EventKind::Masked { counts })
                .await;
        }
        self.emit(client, None, o, terminate).await
            && self.emit(client, Some(1), e, terminate).await
    }

    /// Write to the agent, giving up when the session is terminated (a
    /// client that stopped reading never opens its window again).
    async fn write(
        &self,
        client: &ChannelWriteHalf<russh::server::Msg>,
        ext: Option<u32>,
        data: Bytes,
        terminate: &mut watch::Receiver<Option<String>>,
    ) -> bool {
        let send = async {
            match ext {
                None => client.data_bytes(data).await,
                Some(ext) => client.extended_data_bytes(ext, data).await,
            }
        };
        tokio::select! {
            r = send => r.is_ok(),
            why = terminated(terminate) => {
                self.terminated(client, &why).await;
                false
            }
        }
    }

    /// Tell the agent its session was ended (best effort: it may not read).
    async fn terminated(&self, client: &ChannelWriteHalf<russh::server::Msg>, why: &str) {
        let text = Bytes::from(format!("\r\ngatehouse: terminating connection: {why}\r\n"));
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = client.extended_data_bytes(1, text).await;
            let _ = client.exit_status(255).await;
            let _ = client.eof().await;
            let _ = client.close().await;
        })
        .await;
    }
}

/// Resolves when the session is told to end, with the reason.
pub(super) async fn terminated(rx: &mut watch::Receiver<Option<String>>) -> String {
    loop {
        if let Some(why) = rx.borrow_and_update().clone() {
            return why;
        }
        if rx.changed().await.is_err() {
            // The session is gone: nothing will ever terminate this relay
            // from outside; the connection's end aborts it.
            std::future::pending::<()>().await;
        }
    }
}

fn signal_name_of(sig: &Sig) -> String {
    signal_name(sig)
}

/// The signal's name without `SIG`, as SSH sends it.
pub fn signal_name(sig: &Sig) -> String {
    match sig {
        Sig::ABRT => "ABRT".into(),
        Sig::ALRM => "ALRM".into(),
        Sig::FPE => "FPE".into(),
        Sig::HUP => "HUP".into(),
        Sig::ILL => "ILL".into(),
        Sig::INT => "INT".into(),
        Sig::KILL => "KILL".into(),
        Sig::PIPE => "PIPE".into(),
        Sig::QUIT => "QUIT".into(),
        Sig::SEGV => "SEGV".into(),
        Sig::TERM => "TERM".into(),
        Sig::USR1 => "USR1".into(),
        Sig::Custom(name) => name.clone(),
    }
}
