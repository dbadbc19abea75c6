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
//! Layout: this file holds the relay, what it is handed and its shared
//! helpers (recording, termination, signal names); `up.rs` the up pump
//! (agent → target); `requests.rs` the agent's requests judged by policy
//! and refusals; `approval.rs` commands held for an operator; `down.rs`
//! the down pump (target → agent: masking, exit status, termination
//! message); `shell.rs` the command rules on lines typed in shells (with
//! [`crate::ssh::line`]); `files.rs` SFTP through [`crate::ssh::sftp`] and
//! legacy scp.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use russh::{ChannelId, Pty, Sig};
use tokio::sync::{mpsc, oneshot, watch};

mod approval;
mod down;
mod files;
mod requests;
mod shell;
mod up;

use super::SshTarget;
use super::record::{ChannelTap, Stream};
use super::sftp::SftpFilter;
use super::sftp::scp_stream::ScpStream;
use crate::approval::BrokerHandle;
use crate::auth::Identity;
use crate::recorder::{RecorderHandle, now_micros};
use crate::recording::{Direction, EventKind, RecordingId};
use crate::registry::SessionStats;

/// A target that does not answer a request within this fails it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Exit status of a command policy refused, as shells report a command
/// found but not executable.
pub const EXIT_REFUSED: u32 = 126;

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
/// Replies the target owes, oldest first.
type Pending = Arc<Mutex<VecDeque<oneshot::Sender<bool>>>>;
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
