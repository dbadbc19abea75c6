//! The relay: two pumps, one per direction, running concurrently inside the
//! session actor's context.
//!
//! Each pump reads what is available, walks the complete frames in place
//! (length checks, recording taps), sends the batch's events to the recorder
//! *before* forwarding, then writes the whole batch with one write. Bytes
//! are never copied or re-encoded. Directions are independent, so a client
//! that stops reading slows only its own results and cannot deadlock the
//! other direction. A stop signal (kill, shutdown, the other pump's
//! failure) is checked between batches, never in the middle of a frame, so
//! the final ErrorResponse is always a whole message.
//!
//! # Layout
//!
//! - `mod.rs` — [`Relay`], [`PolicyCtx`], [`Stop`], [`RelayEnd`]; `run`,
//!   which starts both pumps and decides how the relay ended; sending a
//!   batch's events to the recorder; read-buffer sizing.
//! - `up.rs` — the client pump (client → target): frames recorded, the
//!   statement gate, blocked and held statements.
//! - `approval.rs` — a statement held for an operator's approval: the
//!   request, the client's notice, the wait and its recorded outcome.
//! - `down.rs` — the target pump (target → client): results masked,
//!   refused statements' errors rewritten, the final ErrorResponse.
//! - `outgoing.rs` — `Outgoing`: a batch written as read, or with
//!   replaced frames swapped in.

use bytes::BytesMut;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::watch;

use super::codec::{self, HEADER_LEN};
use super::encoding::{ClientEncoding, SessionEncoding};
use super::gate::SharedRef;
use super::stream::PgStream;
use super::tap::ClientTap;
use crate::approval::BrokerHandle;
use crate::error::SessionError;
use crate::recorder::{RecorderHandle, RecorderMsg};
use crate::recording::RecordingId;
use crate::registry::SessionStats;

// The target pump names these `super::filter` and `super::messages`
// (written when it lived in `pg::relay`); in scope here, those paths
// still resolve from `down.rs`.
use super::{filter, messages};

mod approval;
mod down;
mod outgoing;
mod up;

use outgoing::Outgoing;

/// Read buffer reserve: big enough that a typical result arrives in one
/// read, small enough that 10,000 idle sessions stay cheap (the buffer only
/// grows while data flows).
const READ_CHUNK: usize = 16 << 10;

/// Why the relay is being stopped from outside a pump.
#[derive(Debug, Clone)]
pub enum Stop {
    /// The client pump ended normally (Terminate or EOF).
    ClientDone,
    /// The client sent something invalid; tell it (08P01) and end.
    ClientError {
        sqlstate: &'static str,
        message: String,
    },
    /// An operator or the shutdown path ended the session.
    Terminated(String),
}

/// How the client pump ended.
enum UpEnd {
    /// The client sent Terminate or closed its side.
    Done,
    /// A stop signal arrived; the target pump acts on it.
    Stopped,
}

/// A pump that ended, and how.
enum Pump {
    Up(Result<UpEnd, SessionError>),
    Down(Result<(), SessionError>),
}

/// How the relay ended.
pub enum RelayEnd {
    /// Client said Terminate or closed, target followed.
    Closed,
    Failed(SessionError),
}

pub struct Relay {
    pub id: RecordingId,
    pub connection: String,
    pub recorder: RecorderHandle,
    pub client_frames: codec::FrameLimits,
    pub max_target_message_bytes: usize,
    pub rows_per_statement: u64,
    /// Forward client statements only once their events are durable.
    pub strict: bool,
    /// The statement gate and result masking; `None` when the policy
    /// neither restricts nor masks (every frame passes untouched).
    pub policy: Option<PolicyCtx>,
    /// The target's settings at startup (ParameterStatus), for the gate.
    pub initial_settings: Vec<(String, String)>,
    /// Bytes, statements and state, as consoles see them.
    pub stats: std::sync::Arc<SessionStats>,
}

/// What the policy phases need beyond the frames.
pub struct PolicyCtx {
    pub policy: std::sync::Arc<crate::policy::SqlPolicy>,
    pub broker: Option<BrokerHandle>,
    pub identity: String,
    pub groups: Vec<String>,
    pub target: crate::gateway::PgTarget,
}

impl Relay {
    pub async fn run(
        self,
        client: PgStream,
        client_buf: BytesMut,
        target: PgStream,
        target_buf: BytesMut,
        stop_tx: std::rc::Rc<watch::Sender<Option<Stop>>>,
    ) -> RelayEnd {
        let (client_rd, client_wr) = tokio::io::split(client);
        let (target_rd, target_wr) = tokio::io::split(target);
        let shared: SharedRef = Default::default();
        shared.borrow_mut().settings = self.initial_settings.clone();
        let encoding: SessionEncoding = std::rc::Rc::new(std::cell::Cell::new(
            self.initial_settings
                .iter()
                .rev()
                .find(|(k, _)| k == "client_encoding")
                .map_or(ClientEncoding::UTF8, |(_, v)| {
                    ClientEncoding::from_pg_name(v)
                }),
        ));
        let notify = std::rc::Rc::new(tokio::sync::Notify::new());
        let mut stop_rx = stop_tx.subscribe();
        // A kill that arrived while the session was still connecting is
        // already the current value; make the pumps see it.
        if stop_rx.borrow().is_some() {
            stop_rx.mark_changed();
        }
        let up = self.client_to_target(
            client_rd,
            client_buf,
            target_wr,
            stop_rx.clone(),
            shared.clone(),
            notify.clone(),
            encoding.clone(),
        );
        let down = self.target_to_client(
            target_rd, target_buf, client_wr, stop_rx, shared, notify, encoding,
        );
        // Each pump is polled only when its own socket or signal woke it:
        // `select!` would poll both on every wake, and each poll of the
        // idle one walks its TLS stream for nothing.
        let mut pumps: FuturesUnordered<std::pin::Pin<Box<dyn Future<Output = Pump> + '_>>> =
            FuturesUnordered::new();
        pumps.push(Box::pin(async move { Pump::Up(up.await) }));
        pumps.push(Box::pin(async move { Pump::Down(down.await) }));
        match pumps.next().await {
            Some(Pump::Up(up_end)) => {
                // A pump that ended because of a stop signal must not replace
                // that signal: the target pump still has to act on it.
                let signal = match &up_end {
                    Ok(UpEnd::Done) => Some(Stop::ClientDone),
                    Ok(UpEnd::Stopped) => None,
                    Err(e) => Some(Stop::ClientError {
                        sqlstate: e.sqlstate(),
                        message: e.client_message(),
                    }),
                };
                // Never replace a Terminated that is already pending: the
                // kill must reach the client and the recording.
                if let Some(signal) = signal {
                    stop_tx.send_if_modified(|current| {
                        if matches!(current, Some(Stop::Terminated(_))) {
                            false
                        } else {
                            *current = Some(signal);
                            true
                        }
                    });
                }
                // The one future left is the target pump's.
                let down_end = match pumps.next().await {
                    Some(Pump::Down(end)) => end,
                    Some(Pump::Up(_)) | None => Ok(()),
                };
                match (up_end, down_end) {
                    (Err(e), _) | (Ok(_), Err(e)) => RelayEnd::Failed(e),
                    (Ok(_), Ok(())) => RelayEnd::Closed,
                }
            }
            // The target side ended first (target closed, client gone, or
            // terminated); the client pump has nothing left to do.
            Some(Pump::Down(Ok(()))) => RelayEnd::Closed,
            Some(Pump::Down(Err(e))) => RelayEnd::Failed(e),
            None => RelayEnd::Closed,
        }
    }

    async fn flush_events(&self, events: &mut Vec<crate::recorder::PendingEvent>) {
        if !events.is_empty() {
            self.recorder
                .send(RecorderMsg::Events(self.id, std::mem::take(events)))
                .await;
        }
    }

    /// Send the batch's events: durably first under strict recording.
    async fn commit_events(&self, tap: &mut ClientTap) -> Result<(), SessionError> {
        if self.strict && !tap.batch.events.is_empty() {
            let events = std::mem::take(&mut tap.batch.events);
            self.recorder
                .record_durably(self.id, events)
                .await
                .map_err(SessionError::RecordingFailed)
        } else {
            self.flush_events(&mut tap.batch.events).await;
            Ok(())
        }
    }
}

/// Make room for the next read: at least `READ_CHUNK`, or the rest of a
/// frame whose header says it is larger (already bounded by `frame_len`).
fn reserve_for_next(buf: &mut BytesMut) {
    let mut want = READ_CHUNK;
    if buf.len() >= HEADER_LEN {
        let declared = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
        if declared > 0 {
            want = want.max(declared as usize + 1 - buf.len().min(declared as usize + 1));
        }
    }
    buf.reserve(want);
}
