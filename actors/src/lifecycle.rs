//! The recorded life of a session, whatever its protocol: the header
//! written as soon as there is something to say, completed as the session
//! learns who it is, and the end with its outcome and reason.
//!
//! ```text
//! new ─▶ send_header (client claimed a user / connection) ─▶ … identity known: send_header ─▶ end(outcome, reason)
//! ```
//!
//! `end` always writes the header first if nothing was written yet, so a
//! session refused before it said anything is still on record.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use actix::prelude::*;
use futures_util::FutureExt;
use tracing::Instrument;

use crate::recorder::{PendingEvent, RecorderHandle, RecorderMsg, now_micros};
use crate::recording::{Direction, EventKind, Outcome, RecordingId, SessionHeader};
use crate::registry::{Kill, Register, RegistryHandle, SessionInfo, SessionState, SessionStats};

/// Longest client-claimed name recorded in a session header; a longer one
/// cannot match a configured name anyway.
pub const MAX_HEADER_NAME: usize = 256;

/// A session's header and the recorder it goes to.
pub struct SessionRecord {
    recorder: RecorderHandle,
    pub header: SessionHeader,
    header_sent: bool,
    /// The live counters consoles read; the end sets the final state.
    stats: std::sync::Arc<SessionStats>,
}

impl SessionRecord {
    pub fn new(
        recorder: RecorderHandle,
        id: RecordingId,
        protocol: &str,
        started_at: i64,
        client_addr: String,
        stats: std::sync::Arc<SessionStats>,
    ) -> Self {
        SessionRecord {
            recorder,
            header: SessionHeader::new(id, protocol, started_at, client_addr),
            header_sent: false,
            stats,
        }
    }

    pub fn id(&self) -> RecordingId {
        self.header.id
    }

    /// Write (or rewrite) the header as it stands.
    pub async fn send_header(&mut self) {
        self.header_sent = true;
        self.recorder
            .send(RecorderMsg::Header(Box::new(self.header.clone())))
            .await;
    }

    /// Record one event now.
    pub async fn event(&self, dir: Direction, kind: EventKind) {
        self.recorder
            .send(RecorderMsg::Events(
                self.header.id,
                vec![PendingEvent {
                    at: now_micros(),
                    dir,
                    kind,
                }],
            ))
            .await;
    }

    /// Record how the session ended; the recorder appends the End event
    /// and seals the recording.
    pub async fn end(mut self, outcome: Outcome, reason: Option<String>) {
        crate::metrics::session_ended(&self.header.protocol, outcome);
        self.stats.set_state(SessionState::Ended(outcome));
        if !self.header_sent {
            self.send_header().await;
        }
        self.recorder
            .send(RecorderMsg::Close {
                id: self.header.id,
                outcome,
                reason,
                at: now_micros(),
            })
            .await;
    }
}

/// A client-supplied name as the header keeps it: at most
/// [`MAX_HEADER_NAME`] bytes, with a note of what was cut.
pub fn capped(name: &str) -> String {
    crate::pg::tap::capped(name, MAX_HEADER_NAME)
}

/// Put a starting session in the registry, with its kill inbox.
pub fn register(
    registry: &RegistryHandle,
    record: &SessionRecord,
    protocol: &'static str,
    kill: Recipient<Kill>,
) {
    registry.do_send(Register {
        info: SessionInfo {
            id: record.header.id,
            protocol,
            client_addr: record.header.client_addr.clone(),
            started_at: record.header.started_at,
            identity: None,
            connection: None,
            stats: record.stats.clone(),
        },
        kill,
    });
}

/// What a panicking session's end is recorded with: taken from its
/// [`SessionRecord`] before the record moves into the session's life.
pub struct PanicEnd {
    id: RecordingId,
    protocol: String,
    recorder: RecorderHandle,
    stats: std::sync::Arc<SessionStats>,
}

impl SessionRecord {
    pub fn panic_end(&self) -> PanicEnd {
        PanicEnd {
            id: self.header.id,
            protocol: self.header.protocol.clone(),
            recorder: self.recorder.clone(),
            stats: self.stats.clone(),
        }
    }
}

/// Run a session's life in its actor's context, inside `span`. A panic is
/// caught, logged and recorded as the session's `failed` end; it never
/// reaches other sessions. The actor stops when the life ends.
pub fn spawn_life<A>(
    actor: &A,
    ctx: &mut Context<A>,
    life: impl Future<Output = ()> + 'static,
    span: tracing::Span,
    end: PanicEnd,
) where
    A: Actor<Context = Context<A>>,
{
    let fut = AssertUnwindSafe(life.instrument(span.clone())).catch_unwind();
    ctx.spawn(fut.into_actor(actor).map(move |result, _, ctx| {
        if result.is_err() {
            let _span = span.enter();
            tracing::error!("session panicked; ended as failed");
            crate::metrics::session_ended(&end.protocol, Outcome::Failed);
            end.stats.set_state(SessionState::Ended(Outcome::Failed));
            end.recorder.send_now(RecorderMsg::Close {
                id: end.id,
                outcome: Outcome::Failed,
                reason: Some("internal error: session panicked".into()),
                at: now_micros(),
            });
        }
        ctx.stop();
    }));
}
