//! What a recording holds: a session header and an ordered event stream.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A session's identifier: a UUIDv7, so ids sort by start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RecordingId(pub Uuid);

impl RecordingId {
    pub fn new() -> Self {
        RecordingId(Uuid::now_v7())
    }
}

impl Default for RecordingId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for RecordingId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for RecordingId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(RecordingId)
    }
}

/// Who and what a session is. Written when the session opens, completed when
/// it ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionHeader {
    pub id: RecordingId,
    pub protocol: String,
    /// Unix time in microseconds.
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub client_addr: String,
    /// The `user` the client claimed in its startup message: recorded, never
    /// trusted.
    pub client_user: Option<String>,
    /// The connection the client asked for (`dbname`).
    pub connection: Option<String>,
    /// The verified token subject, once authentication succeeded.
    pub identity: Option<String>,
    pub groups: Vec<String>,
    pub outcome: Option<Outcome>,
    /// Why the session failed or was refused, as the log would say it.
    pub reason: Option<String>,
    pub event_count: u64,
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The client or the target closed the session normally.
    Closed,
    /// Refused before relaying: bad token, connection not allowed, limits.
    Refused,
    /// Ended by an error: malformed input, target unreachable, internal fault.
    Failed,
    /// Ended by the appliance: shutdown or an operator's kill.
    Terminated,
    /// Found without an end when the appliance started again (crash or
    /// power loss); everything durable before that is kept.
    Interrupted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Closed => "closed",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
            Outcome::Terminated => "terminated",
            Outcome::Interrupted => "interrupted",
        }
    }
}

/// Which way the recorded bytes travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the agent to the target.
    Client,
    /// From the target to the agent.
    Target,
    /// Gatehouse's own doing.
    Gateway,
}

/// One recorded event. `seq` is assigned by the recorder in arrival order,
/// which is the order the session observed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    /// Unix time in microseconds.
    pub at: i64,
    pub dir: Direction,
    pub kind: EventKind,
}

/// The kinds of events a PostgreSQL session records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// The session reached the target and is relaying.
    Connected {
        target: String,
    },
    /// A simple-protocol query string, possibly several statements.
    Query {
        sql: String,
    },
    /// An extended-protocol Parse.
    Parse {
        statement: String,
        sql: String,
    },
    /// An extended-protocol Bind: parameter values as text, binary ones as
    /// `\x` hex, `None` for NULL.
    Bind {
        portal: String,
        statement: String,
        params: Vec<Option<String>>,
    },
    Execute {
        portal: String,
        max_rows: i32,
    },
    /// A fast-path FunctionCall: the function's OID and its arguments (text
    /// as is, binary as `\x` hex, `None` for NULL).
    FunctionCall {
        oid: i32,
        args: Vec<Option<String>>,
    },
    /// A message relayed without interpretation.
    Opaque {
        tag: char,
        len: u32,
    },
    /// Column names of the result that follows.
    Columns {
        names: Vec<String>,
    },
    /// One result row as text; binary values as `\x` hex.
    Row {
        values: Vec<Option<String>>,
    },
    /// A statement finished. `rows` counts every DataRow the target sent;
    /// `rows_recorded` how many of them the recording kept.
    Complete {
        tag: String,
        rows: u64,
        rows_recorded: u64,
    },
    Error {
        severity: String,
        code: String,
        message: String,
    },
    Notice {
        severity: String,
        code: String,
        message: String,
    },
    Notification {
        channel: String,
        payload: String,
    },
    /// COPY data passed through, summarised per COPY.
    Copy {
        direction: Direction,
        bytes: u64,
        messages: u64,
    },
    /// The client asked to cancel the running statement.
    Cancel,
    /// The session ended. Always the last event.
    End {
        outcome: Outcome,
        reason: Option<String>,
    },
    // Variants below were added after recordings existed: postcard stores
    // the variant index, so new kinds only ever go at the end.
    /// Policy refused a statement; the target never saw it. `rule` names
    /// the rule (or `unparsed`, `default`), `reason` is what the client saw.
    Blocked {
        rule: String,
        reason: String,
    },
    /// A statement waits for an operator; the target has not seen it.
    ApprovalRequested {
        id: String,
        rule: String,
        deadline: i64,
    },
    /// The operator's decision (or the timeout, or the client leaving).
    ApprovalDecided {
        id: String,
        decision: String,
        by: String,
        reason: Option<String>,
    },
    /// What masking changed in one result: per rule, which column or
    /// detector and how many values. Never the original values.
    Masked {
        counts: Vec<(String, String, u64)>,
    },
    /// An operator ran a command on the admin SSH endpoint (as typed).
    AdminCommand {
        command: String,
    },
    /// That command finished: its exit status and the bytes it sent.
    AdminExit {
        status: u32,
        bytes: u64,
    },
    /// One operation of the read-only SFTP view of recordings: `op` is the
    /// SFTP request (`open`, `opendir`, `write`, ...), `outcome` `ok` or
    /// why it was refused, `bytes` what a closed file handle delivered.
    Sftp {
        op: String,
        path: String,
        outcome: String,
        bytes: u64,
    },
}
