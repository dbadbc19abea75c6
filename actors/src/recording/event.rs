//! What a recording holds: a session header and an ordered event stream.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::access::Grant;
use crate::auth::Identity;

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
    /// The verified identity as `ISSUER:subject`, once authentication
    /// succeeded.
    pub identity: Option<String>,
    pub groups: Vec<String>,
    pub outcome: Option<Outcome>,
    /// Why the session failed or was refused, as the log would say it.
    pub reason: Option<String>,
    pub event_count: u64,
    // Fields below were added after recordings existed: headers are JSON,
    // and older ones load with these empty.
    /// The configured issuer (its name) that vouched for the identity.
    #[serde(default)]
    pub issuer: Option<String>,
    /// The roles that granted the connection.
    #[serde(default)]
    pub roles: Vec<String>,
    /// The token claims those roles matched on (claim path → value; for a
    /// list, the entries that matched). Never the whole token.
    #[serde(default)]
    pub claims: BTreeMap<String, serde_json::Value>,
}

impl SessionHeader {
    /// A header for a session that just started: nothing known yet but
    /// where it came from.
    pub fn new(id: RecordingId, protocol: &str, started_at: i64, client_addr: String) -> Self {
        SessionHeader {
            id,
            protocol: protocol.into(),
            started_at,
            ended_at: None,
            client_addr,
            client_user: None,
            connection: None,
            identity: None,
            groups: Vec::new(),
            outcome: None,
            reason: None,
            event_count: 0,
            issuer: None,
            roles: Vec::new(),
            claims: BTreeMap::new(),
        }
    }

    /// Record a verified identity (before authorization, so a refused
    /// session still says who asked).
    pub fn identify(&mut self, identity: &Identity) {
        self.identity = Some(identity.qualified());
        self.groups = identity.groups.clone();
        self.issuer = Some(identity.issuer.clone());
    }

    /// Record what granted the connection.
    pub fn granted(&mut self, grant: &Grant) {
        self.roles = grant.roles.clone();
        self.claims = grant.claims.clone();
    }
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
    // Stored chunks name each kind but hold its fields by position (see
    // `store::schema`): a new field only ever goes at the end of its kind,
    // with `#[serde(default)]`. New kinds go at the end too, by habit.
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
    /// Client SQL that does not decode in the session's client encoding
    /// (`encoding`, as the target reported it), or is in one the gateway
    /// cannot decode: the bytes as sent. A simple Query, or a Parse of
    /// `statement`.
    SqlBytes {
        statement: Option<String>,
        encoding: String,
        sql: RawBytes,
    },
    // SSH sessions. `channel` is the agent-side channel number, so events of
    // one channel can be told apart when a connection runs several; the
    // time of each is the event's `at`.
    /// An SSH channel opened: `channel_type` is `session`, `direct-tcpip`
    /// or `forwarded-tcpip`.
    SshChannelOpen {
        channel: u32,
        channel_type: String,
    },
    /// A pseudo-terminal was requested: terminal type and size.
    SshPty {
        channel: u32,
        term: String,
        cols: u32,
        rows: u32,
    },
    /// The agent's terminal changed size.
    SshResize {
        channel: u32,
        cols: u32,
        rows: u32,
    },
    /// An environment variable the agent asked to set. `accepted` is false
    /// when the allowlist refused it; its value is then not recorded.
    SshEnv {
        channel: u32,
        name: String,
        value: Option<String>,
        accepted: bool,
    },
    /// What the channel runs: `request` is `shell`, `exec` or `subsystem`;
    /// `command` the exec command line or the subsystem name (empty for a
    /// shell).
    SshStart {
        channel: u32,
        request: String,
        command: String,
    },
    /// Bytes on a channel: `stream` is `stdin` (agent to target), `stdout`
    /// or `stderr` (target to agent, after masking).
    SshData {
        channel: u32,
        stream: String,
        data: SshBytes,
    },
    /// A command line typed in an interactive shell, as the terminal showed
    /// it when Enter was pressed.
    SshLine {
        channel: u32,
        line: String,
    },
    /// A signal the agent sent to the running command (`INT`, `TERM` ...).
    SshSignal {
        channel: u32,
        signal: String,
    },
    /// The command on the channel ended: its exit status, or the signal
    /// that killed it.
    SshExit {
        channel: u32,
        status: Option<u32>,
        signal: Option<String>,
    },
    /// The channel closed: bytes from the agent (`bytes_in`) and to it
    /// (`bytes_out`).
    SshChannelClose {
        channel: u32,
        bytes_in: u64,
        bytes_out: u64,
    },
    /// A file operation through SFTP or scp. `op` is the operation (`open`,
    /// `read`, `write`, `close`, `remove`, `rename`, `mkdir`, `rmdir`,
    /// `setstat`, `symlink`, `realpath`, `opendir`, `readdir`, `stat`;
    /// for scp `upload` or `download`), `to` the second path of a rename or
    /// symlink, `flags` how a file was opened, `bytes` the bytes a closed
    /// handle read or wrote, `sha256` their hash when they were read or
    /// written in order, `outcome` `ok`, the target's error, or `denied: RULE`.
    FileOp {
        channel: u32,
        protocol: String,
        op: String,
        path: String,
        to: Option<String>,
        flags: Option<String>,
        bytes: u64,
        sha256: Option<String>,
        outcome: String,
    },
    /// A forwarded port: `forward` is `direct-tcpip` (agent to a host the
    /// target reaches) or `tcpip-forward` (a port on the target back to
    /// the agent: the listen, `from` `target ADDR:PORT`, and each
    /// connection to it, `to` `agent via ADDR:PORT`); `outcome` `opened`,
    /// `closed`, `cancelled`, `refused…` or `failed: …`; byte counts are
    /// those relayed until the connection closed (`bytes_in` from the
    /// agent).
    PortForward {
        channel: Option<u32>,
        forward: String,
        from: String,
        to: String,
        bytes_in: u64,
        bytes_out: u64,
        outcome: String,
    },
    // PostgreSQL again (new kinds at the end).
    /// COPY data as recorded (`COPY … FROM STDIN` in text or CSV, from
    /// the client): decoded with the client encoding, masked like every
    /// recorded value, kept up to a cap; `cut` counts the bytes after it.
    /// Comes just before that COPY's `Copy` summary.
    CopyData {
        direction: Direction,
        data: String,
        cut: u64,
    },
}

/// Bytes of an SSH stream. In JSON (exports, `recordings show --json`,
/// the write-ahead log) `{"text": "..."}` when they are UTF-8 and mostly
/// printable, otherwise `{"base64": "..."}`; inside a stored chunk
/// `{"blob": [offset, length]}` into the chunk's byte area (see
/// [`blob`](super::blob)), so the relay and the recorder never encode them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SshBytes(pub Vec<u8>);

impl SshBytes {
    pub fn from_bytes(data: &[u8]) -> SshBytes {
        SshBytes(data.to_vec())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The bytes as text when they are UTF-8 and mostly printable
    /// (terminal output with its escape sequences stays readable in
    /// exports). Control bytes cost six in JSON (`\u0000`), so binary that
    /// happens to be UTF-8 (`/dev/zero`, many file formats) is not text.
    pub fn as_text(&self) -> Option<&str> {
        let escaped = self
            .0
            .iter()
            .filter(|&&b| b < 0x20 && !matches!(b, b'\n' | b'\r' | b'\t'))
            .count();
        if escaped * 4 > self.0.len() {
            return None;
        }
        std::str::from_utf8(&self.0).ok()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for SshBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = s.serialize_map(Some(1))?;
        if let Some((offset, length)) = super::blob::store(&self.0) {
            map.serialize_entry("blob", &[offset, length])?;
        } else if let Some(text) = self.as_text() {
            map.serialize_entry("text", text)?;
        } else {
            use base64::Engine as _;
            let encoded = base64::engine::general_purpose::STANDARD.encode(&self.0);
            map.serialize_entry("base64", &encoded)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for SshBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "snake_case")]
        enum Repr {
            Text(String),
            Base64(String),
            Blob([u64; 2]),
        }
        use serde::de::Error as _;
        match Repr::deserialize(d)? {
            Repr::Text(t) => Ok(SshBytes(t.into_bytes())),
            Repr::Base64(b) => {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map(SshBytes)
                    .map_err(D::Error::custom)
            }
            Repr::Blob([offset, length]) => super::blob::load(offset, length)
                .map(SshBytes)
                .map_err(D::Error::custom),
        }
    }
}

/// Bytes in a recording, written as hex (events are stored and exported
/// as JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawBytes(pub Vec<u8>);

impl From<Vec<u8>> for RawBytes {
    fn from(v: Vec<u8>) -> Self {
        RawBytes(v)
    }
}

impl Serialize for RawBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for RawBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(text)
            .map(RawBytes)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// bench/ssh.sh found it: `head -c 256M /dev/zero` is UTF-8, recorded
    /// as JSON text with `\u0000` escapes it took six bytes per byte.
    #[test]
    fn ssh_bytes_mostly_control_are_base64() {
        let json = |b: &[u8]| serde_json::to_value(SshBytes::from_bytes(b)).unwrap();
        let zeros = vec![0u8; 4096];
        assert!(json(&zeros)["base64"].is_string());
        let prompt = b"\x1b[01;32malice@web-1\x1b[00m:\x1b[01;34m~\x1b[00m$ ls\r\n";
        assert_eq!(
            json(prompt)["text"],
            std::str::from_utf8(prompt).unwrap(),
            "terminal output stays readable"
        );
        assert!(json(&[0xff, b'a'])["base64"].is_string());
        for b in [&zeros[..], prompt, &[0xff, b'a']] {
            let back: SshBytes = serde_json::from_value(json(b)).unwrap();
            assert_eq!(back.as_bytes(), b);
        }
    }

    /// Inside a stored chunk the bytes go to the byte area, and a reference
    /// that points outside it is an error, never a panic.
    #[test]
    fn ssh_bytes_in_a_chunk_are_blobs() {
        let sink = super::super::blob::Sink::attach(Vec::new());
        let json = serde_json::to_string(&SshBytes::from_bytes(b"\0\0abc")).unwrap();
        let area = sink.finish();
        assert_eq!(json, r#"{"blob":[0,5]}"#);
        assert_eq!(area, b"\0\0abc");
        let source = super::super::blob::Source::attach(area);
        let back: SshBytes = serde_json::from_str(&json).unwrap();
        assert_eq!(back.as_bytes(), b"\0\0abc");
        assert!(source.all_read());
        assert!(serde_json::from_str::<SshBytes>(r#"{"blob":[5,1]}"#).is_err());
        drop(source);
        let _source = super::super::blob::Source::attach(b"ab".to_vec());
        assert!(serde_json::from_str::<SshBytes>(r#"{"blob":[0,18446744073709551615]}"#).is_err());
    }

    #[test]
    fn raw_bytes_are_hex() {
        let kind = EventKind::SqlBytes {
            statement: None,
            encoding: "EUC_TW".into(),
            sql: RawBytes(vec![0xc4, 0xa1]),
        };
        let json = serde_json::to_value(&kind).unwrap();
        assert_eq!(json["sql"], "c4a1");
        assert_eq!(serde_json::from_value::<EventKind>(json).unwrap(), kind);
        assert!(serde_json::from_str::<RawBytes>("\"zz\"").is_err());
    }
}
