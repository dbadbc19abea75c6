//! What the console and the daemon say to each other.
//!
//! The console sends [`Request`]s and receives [`Update`]s. In-process
//! (the admin SSH endpoint) they travel over channels; from `gatehouse
//! console` on the box, as JSON lines over the control socket. The daemon
//! pushes: the console never polls. Everything the console shows comes from
//! these updates, so a console is exactly as current as its feed — and
//! says so when updates were dropped.

use gatehouse_actors::approval::{ApprovalUpdate, PendingApproval};
use gatehouse_actors::recording::{Event, RecordingId, SessionHeader};
use gatehouse_actors::registry::{SessionSummary, StatsSnapshot};
use serde::{Deserialize, Serialize};

/// Recordings listed per page.
pub const PAGE_SIZE: usize = 200;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// End a live session; its client gets 57P01 (or an SSH message).
    Kill { id: RecordingId },
    /// Approve or deny a held statement.
    Decide {
        id: String,
        approve: bool,
        reason: Option<String>,
    },
    /// Follow a session's events (the live view); replaces any earlier
    /// watch.
    Watch { id: RecordingId },
    /// Stop following.
    Unwatch,
    /// A page of recordings, newest first, matching `filter` (see
    /// [`RecordingFilter`]), below `before` (a previous page's `next`).
    Recordings {
        filter: String,
        before: Option<RecordingId>,
    },
    /// A whole recording, for replay.
    Replay { id: RecordingId },
    /// Recompute a recording's chain and check its seal.
    Verify { id: RecordingId },
    /// Updates were dropped: send fresh snapshots.
    Resync,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "update", rename_all = "snake_case")]
pub enum Update {
    /// Who this console acts as, and where.
    Hello {
        operator: String,
        appliance: String,
    },
    /// Live sessions and the recently ended ones (a full snapshot).
    Sessions {
        live: Vec<SessionSummary>,
        recent: Vec<SessionSummary>,
    },
    SessionStarted(SessionSummary),
    SessionChanged {
        id: RecordingId,
        identity: Option<String>,
        connection: Option<String>,
    },
    /// Counters of live sessions that changed since the last sample.
    Stats {
        stats: Vec<(RecordingId, StatsSnapshot)>,
    },
    SessionEnded(SessionSummary),
    /// The approval queue (a full snapshot), oldest first.
    Approvals {
        pending: Vec<PendingApproval>,
    },
    Approval(ApprovalUpdate),
    /// The start of a live view: the session's header and its latest
    /// events; more follow as [`Update::Event`].
    Watching {
        id: RecordingId,
        header: Option<SessionHeader>,
        history: Vec<Event>,
    },
    /// One more event of the watched session.
    Event {
        id: RecordingId,
        event: Event,
    },
    /// A page of recordings.
    Recordings {
        filter: String,
        /// True when this page continues the previous one.
        more: bool,
        headers: Vec<SessionHeader>,
        next: Option<RecordingId>,
    },
    /// A recording to replay. `truncated` when it was longer than the
    /// console loads (the first events are shown).
    Replay {
        header: SessionHeader,
        events: Vec<Event>,
        truncated: bool,
    },
    /// The verdict of verifying one recording.
    Verdict {
        id: RecordingId,
        ok: bool,
        verdict: String,
    },
    /// An action was carried out (shown on the status line).
    Done {
        message: String,
    },
    /// An action failed, and why.
    Failed {
        message: String,
    },
    /// Updates dropped so far because this console fell behind.
    Dropped {
        count: u64,
    },
}

/// The recordings filter: words separated by spaces, all of which must
/// match. `day:2026-11-26`, `outcome:terminated`, `identity:bot`,
/// `connection:orders`, `protocol:postgres` match one field; any other
/// word matches any of them (and the id and client address),
/// case-insensitively.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordingFilter {
    /// `day:` as unix µs of UTC midnight.
    pub day: Option<i64>,
    terms: Vec<(Field, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Any,
    Identity,
    Connection,
    Outcome,
    Protocol,
}

impl RecordingFilter {
    /// Read a filter; a malformed `day:` is an error to show the operator.
    pub fn parse(text: &str) -> Result<RecordingFilter, String> {
        let mut filter = RecordingFilter::default();
        for word in text.split_whitespace() {
            let (field, value) = match word.split_once(':') {
                Some(("day", d)) => {
                    filter.day = Some(parse_day(d)?);
                    continue;
                }
                Some(("identity", v)) => (Field::Identity, v),
                Some(("connection", v)) => (Field::Connection, v),
                Some(("outcome", v)) => (Field::Outcome, v),
                Some(("protocol", v)) => (Field::Protocol, v),
                _ => (Field::Any, word),
            };
            filter.terms.push((field, value.to_lowercase()));
        }
        Ok(filter)
    }

    pub fn matches(&self, h: &SessionHeader) -> bool {
        let outcome = h.outcome.map_or("live", |o| o.as_str());
        let has = |v: Option<&str>, term: &str| v.is_some_and(|v| v.to_lowercase().contains(term));
        self.terms.iter().all(|(field, term)| match field {
            Field::Identity => has(h.identity.as_deref(), term),
            Field::Connection => has(h.connection.as_deref(), term),
            Field::Outcome => has(Some(outcome), term),
            Field::Protocol => has(Some(&h.protocol), term),
            Field::Any => {
                has(h.identity.as_deref(), term)
                    || has(h.connection.as_deref(), term)
                    || has(Some(outcome), term)
                    || has(Some(&h.protocol), term)
                    || has(Some(&h.client_addr), term)
                    || has(Some(&h.id.to_string()), term)
            }
        })
    }
}

/// `2026-11-26` as unix µs of that UTC midnight.
pub fn parse_day(text: &str) -> Result<i64, String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text, format)
        .map(|d| d.midnight().assume_utc().unix_timestamp() * 1_000_000)
        .map_err(|_| format!("{text:?} is not a day like 2026-11-26"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_actors::recording::Outcome;

    fn header() -> SessionHeader {
        SessionHeader {
            id: RecordingId::new(),
            protocol: "postgres".into(),
            started_at: 0,
            ended_at: Some(1),
            client_addr: "10.1.2.3:5000".into(),
            client_user: None,
            connection: Some("orders-db".into()),
            identity: Some("ci-bot".into()),
            groups: vec![],
            outcome: Some(Outcome::Terminated),
            reason: None,
            event_count: 3,
            ..SessionHeader::new(RecordingId::new(), "postgres", 0, String::new())
        }
    }

    #[test]
    fn filters_match_fields_or_anything() {
        let h = header();
        for yes in [
            "",
            "orders",
            "ORDERS ci",
            "identity:ci",
            "outcome:term",
            "connection:orders protocol:postgres",
            "10.1.2",
        ] {
            assert!(RecordingFilter::parse(yes).unwrap().matches(&h), "{yes}");
        }
        for no in ["identity:orders", "outcome:closed", "orders nobody"] {
            assert!(!RecordingFilter::parse(no).unwrap().matches(&h), "{no}");
        }
        assert_eq!(
            RecordingFilter::parse("day:1970-01-02").unwrap().day,
            Some(86_400_000_000)
        );
        assert!(RecordingFilter::parse("day:yesterday").is_err());
    }

    #[test]
    fn requests_and_updates_travel_as_json() {
        let r = Request::Decide {
            id: "ab12".into(),
            approve: false,
            reason: Some("not now".into()),
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), r);
        let u = Update::Done {
            message: "killed".into(),
        };
        let text = serde_json::to_string(&u).unwrap();
        assert_eq!(serde_json::from_str::<Update>(&text).unwrap(), u);
    }
}
