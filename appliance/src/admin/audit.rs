//! Operator actions on the admin endpoint, recorded like any session.
//!
//! Each SSH connection that tries to log in becomes one recording
//! (`protocol = "admin-ssh"`): who, from where, every command and its exit
//! status, every SFTP operation. A command runs only after its record is
//! durable, so an export can never happen without a trace; a connection
//! that never authenticates is recorded as `refused` with the reason.

use std::sync::Arc;

use gatehouse_actors::metrics;
use gatehouse_actors::recorder::{PendingEvent, RecorderHandle, RecorderMsg, now_micros};
use gatehouse_actors::recording::{Direction, EventKind, Outcome, RecordingId, SessionHeader};

/// The recording of one admin SSH connection. Cloned into the tasks that
/// run its channels; the recording ends when the connection and every
/// command it started are done (the last clone is dropped), so a command
/// that outlives its connection still lands inside the recording.
#[derive(Clone)]
pub struct Audit(Arc<Inner>);

struct Inner {
    id: RecordingId,
    recorder: RecorderHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        metrics::session_ended("admin-ssh", Outcome::Closed);
        self.recorder.send_now(RecorderMsg::Close {
            id: self.id,
            outcome: Outcome::Closed,
            reason: None,
            at: now_micros(),
        });
    }
}

impl Audit {
    /// Open the recording of an authenticated operator's connection.
    pub fn open(recorder: RecorderHandle, peer: &str, user: &str, operator: &str) -> Audit {
        let id = RecordingId::new();
        recorder.send_now(RecorderMsg::Header(Box::new(header(
            id,
            peer,
            user,
            Some(operator),
        ))));
        Audit(Arc::new(Inner { id, recorder }))
    }

    /// Open the recording of a console on the appliance itself: `who` says
    /// how it connected (uid and pid), `operator` the name it acts as.
    pub fn open_local(recorder: RecorderHandle, who: &str, operator: Option<&str>) -> Audit {
        let id = RecordingId::new();
        let mut h = header(id, who, "root", operator);
        h.protocol = "console".into();
        if operator.is_none() {
            h.identity = Some("root".into());
        }
        recorder.send_now(RecorderMsg::Header(Box::new(h)));
        Audit(Arc::new(Inner { id, recorder }))
    }

    /// Record a connection that tried to log in and never did.
    pub fn refused(recorder: &RecorderHandle, peer: &str, user: &str, reason: String) {
        let id = RecordingId::new();
        recorder.send_now(RecorderMsg::Header(Box::new(header(id, peer, user, None))));
        metrics::session_ended("admin-ssh", Outcome::Refused);
        recorder.send_now(RecorderMsg::Close {
            id,
            outcome: Outcome::Refused,
            reason: Some(reason),
            at: now_micros(),
        });
    }

    /// Record `kind` and wait until it is durable: the action it describes
    /// may happen only after this returns `Ok`.
    pub async fn durably(&self, kind: EventKind) -> Result<(), String> {
        self.0
            .recorder
            .record_durably(self.0.id, vec![event(kind)])
            .await
    }

    /// Record `kind` (durable within the recorder's flush interval).
    pub fn note(&self, kind: EventKind) {
        self.0
            .recorder
            .send_now(RecorderMsg::Events(self.0.id, vec![event(kind)]));
    }
}

fn event(kind: EventKind) -> PendingEvent {
    PendingEvent {
        at: now_micros(),
        dir: Direction::Client,
        kind,
    }
}

fn header(id: RecordingId, peer: &str, user: &str, operator: Option<&str>) -> SessionHeader {
    SessionHeader {
        client_user: Some(user.to_owned()),
        identity: operator.map(|o| format!("operator:{o}")),
        ..SessionHeader::new(id, "admin-ssh", now_micros(), peer.to_owned())
    }
}
