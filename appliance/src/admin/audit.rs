//! Operator actions on the admin endpoint, recorded like any session.
//!
//! Each SSH connection that tries to log in becomes one recording
//! (`protocol = "admin-ssh"`): who, from where, every command and its exit
//! status, every SFTP operation. A command runs only after its record is
//! durable, so an export can never happen without a trace; a connection
//! that never authenticates is recorded as `refused` with the reason.

use gatehouse_actors::recorder::{PendingEvent, RecorderHandle, RecorderMsg, now_micros};
use gatehouse_actors::recording::{Direction, EventKind, Outcome, RecordingId, SessionHeader};

/// The recording of one admin SSH connection. Cloned into the tasks that
/// run its channels; the connection's handler closes it.
#[derive(Clone)]
pub struct Audit {
    id: RecordingId,
    recorder: RecorderHandle,
}

impl Audit {
    /// Open the recording of an authenticated operator's connection.
    pub fn open(recorder: RecorderHandle, peer: &str, user: &str, operator: &str) -> Audit {
        let audit = Audit {
            id: RecordingId::new(),
            recorder,
        };
        audit.recorder.send_now(RecorderMsg::Header(header(
            audit.id,
            peer,
            user,
            Some(operator),
        )));
        audit
    }

    /// Record a connection that tried to log in and never did.
    pub fn refused(recorder: &RecorderHandle, peer: &str, user: &str, reason: String) {
        let id = RecordingId::new();
        recorder.send_now(RecorderMsg::Header(header(id, peer, user, None)));
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
        self.recorder
            .record_durably(self.id, vec![event(kind)])
            .await
    }

    /// Record `kind` (durable within the recorder's flush interval).
    pub fn note(&self, kind: EventKind) {
        self.recorder
            .send_now(RecorderMsg::Events(self.id, vec![event(kind)]));
    }

    pub fn close(&self) {
        self.recorder.send_now(RecorderMsg::Close {
            id: self.id,
            outcome: Outcome::Closed,
            reason: None,
            at: now_micros(),
        });
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
        id,
        protocol: "admin-ssh".into(),
        started_at: now_micros(),
        ended_at: None,
        client_addr: peer.to_owned(),
        client_user: Some(user.to_owned()),
        connection: None,
        identity: operator.map(|o| format!("operator:{o}")),
        groups: Vec::new(),
        outcome: None,
        reason: None,
        event_count: 0,
    }
}
