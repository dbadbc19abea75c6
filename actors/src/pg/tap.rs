//! Recording taps: turn relayed frames into recording events.
//!
//! A tap sees each complete frame once, by reference, while the bytes are
//! forwarded untouched; it only allocates for what it records. Rows are
//! recorded up to a per-statement cap and counted after it.

use super::codec::CodecError;
use super::messages;
use crate::recorder::{PendingEvent, now_micros};
use crate::recording::{Direction, EventKind};

/// Longest single value (a parameter or a column) kept in a recording; the
/// rest is replaced by a note of how much was cut. Keeps one huge bytea from
/// bloating the store; the statement and row counts stay exact.
pub const MAX_RECORDED_VALUE: usize = 64 << 10;

/// Longest SQL text kept: generous, since the statement is the heart of
/// the record, but bounded so one statement cannot make a chunk too large
/// to read back. The cut is noted in the text.
pub const MAX_RECORDED_SQL: usize = 1 << 20;

/// Cut `s` to at most `max` bytes (on a character boundary), noting how
/// much was left out.
pub fn capped(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…[{} more bytes not recorded]", &s[..end], s.len() - end)
}

fn value_text(binary: bool, v: &[u8]) -> String {
    let (v, cut) = if v.len() > MAX_RECORDED_VALUE {
        (&v[..MAX_RECORDED_VALUE], v.len() - MAX_RECORDED_VALUE)
    } else {
        (v, 0)
    };
    let mut s = match (binary, std::str::from_utf8(v)) {
        (false, Ok(s)) => s.to_owned(),
        (false, Err(_)) => String::from_utf8_lossy(v).into_owned(),
        (true, _) => format!("\\x{}", hex::encode(v)),
    };
    if cut > 0 {
        s.push_str(&format!("…[{cut} more bytes not recorded]"));
    }
    s
}

#[derive(Default)]
struct CopyCount {
    bytes: u64,
    messages: u64,
}

impl CopyCount {
    fn take(&mut self, direction: Direction) -> Option<EventKind> {
        let c = std::mem::take(self);
        (c.messages > 0).then_some(EventKind::Copy {
            direction,
            bytes: c.bytes,
            messages: c.messages,
        })
    }
}

/// Events gathered from one batch of frames, sent to the recorder before
/// the batch is forwarded. Every event of a batch carries the time the batch
/// was read: they arrived together, and one clock read per batch instead of
/// per event is measurably cheaper on the hot path.
#[derive(Default)]
pub struct Batch {
    pub events: Vec<PendingEvent>,
    at: i64,
}

impl Batch {
    /// Start a new batch read now.
    pub fn stamp(&mut self) {
        self.at = now_micros();
    }

    /// An event the gateway itself causes (a block, an approval step),
    /// stamped when it happens.
    pub fn push_now(&mut self, dir: Direction, kind: EventKind) {
        self.events.push(PendingEvent {
            at: now_micros(),
            dir,
            kind,
        });
    }

    fn push(&mut self, dir: Direction, kind: EventKind) {
        if self.at == 0 {
            self.stamp();
        }
        self.events.push(PendingEvent {
            at: self.at,
            dir,
            kind,
        });
    }
}

/// Frames from the agent.
#[derive(Default)]
pub struct ClientTap {
    copy: CopyCount,
    pub batch: Batch,
}

impl ClientTap {
    /// Record one client frame. Malformed frames of types the gateway must
    /// understand are protocol errors; unknown types are relayed and noted.
    pub fn observe(&mut self, tag: u8, body: &[u8]) -> Result<(), CodecError> {
        let kind = match tag {
            b'Q' => EventKind::Query {
                sql: capped(messages::query(body)?, MAX_RECORDED_SQL),
            },
            b'P' => {
                let p = messages::parse(body)?;
                EventKind::Parse {
                    statement: capped(p.statement, 256),
                    sql: capped(p.query, MAX_RECORDED_SQL),
                }
            }
            b'B' => {
                let b = messages::bind(body)?;
                EventKind::Bind {
                    portal: capped(b.portal, 256),
                    statement: capped(b.statement, 256),
                    params: b
                        .params
                        .iter()
                        .map(|(binary, v)| v.map(|v| value_text(*binary, v)))
                        .collect(),
                }
            }
            b'E' => {
                let (portal, max_rows) = messages::execute(body)?;
                EventKind::Execute {
                    portal: capped(portal, 256),
                    max_rows,
                }
            }
            b'F' => {
                let f = messages::function_call(body)?;
                EventKind::FunctionCall {
                    oid: f.oid,
                    args: f
                        .args
                        .iter()
                        .map(|(binary, v)| v.map(|v| value_text(*binary, v)))
                        .collect(),
                }
            }
            b'd' => {
                self.copy.bytes += body.len() as u64;
                self.copy.messages += 1;
                return Ok(());
            }
            b'c' | b'f' => match self.copy.take(Direction::Client) {
                Some(kind) => kind,
                None => return Ok(()),
            },
            // Describe, Close, Sync, Flush, Terminate carry nothing worth a
            // record of their own.
            b'D' | b'C' | b'S' | b'H' | b'X' => return Ok(()),
            other => EventKind::Opaque {
                tag: other as char,
                len: body.len() as u32,
            },
        };
        self.batch.push(Direction::Client, kind);
        Ok(())
    }
}

/// Frames from the target.
pub struct TargetTap {
    row_cap: u64,
    rows: u64,
    recorded: u64,
    binary: Vec<bool>,
    copy: CopyCount,
    pub batch: Batch,
}

impl TargetTap {
    pub fn new(row_cap: u64) -> Self {
        TargetTap {
            row_cap,
            rows: 0,
            recorded: 0,
            binary: Vec::new(),
            copy: CopyCount::default(),
            batch: Batch::default(),
        }
    }

    /// Record one target frame. The target's frames are relayed even when
    /// they do not decode; the recording then notes them as opaque.
    pub fn observe(&mut self, tag: u8, body: &[u8]) {
        let kind = match tag {
            b'T' => match messages::row_description(body) {
                Ok(cols) => {
                    self.rows = 0;
                    self.recorded = 0;
                    self.binary = cols.iter().map(|(_, b)| *b).collect();
                    EventKind::Columns {
                        names: cols.iter().map(|(n, _)| capped(n, 256)).collect(),
                    }
                }
                Err(_) => opaque(tag, body),
            },
            b'D' => {
                self.rows += 1;
                if self.recorded >= self.row_cap {
                    return;
                }
                self.recorded += 1;
                match messages::data_row(body) {
                    Ok(values) => EventKind::Row {
                        values: values
                            .iter()
                            .enumerate()
                            .map(|(i, v)| {
                                v.map(|v| {
                                    value_text(self.binary.get(i).copied().unwrap_or(false), v)
                                })
                            })
                            .collect(),
                    },
                    Err(_) => opaque(tag, body),
                }
            }
            b'C' => {
                let tag_text = capped(messages::command_complete(body).unwrap_or("?"), 256);
                let copied = self.copy.take(Direction::Target);
                if let Some(kind) = copied {
                    self.batch.push(Direction::Target, kind);
                }
                let kind = EventKind::Complete {
                    tag: tag_text,
                    rows: self.rows,
                    rows_recorded: self.recorded,
                };
                self.rows = 0;
                self.recorded = 0;
                kind
            }
            b'E' | b'N' => match messages::error_fields(body) {
                Ok(f) => {
                    let (severity, code, message) = (
                        f.severity.to_owned(),
                        f.code.to_owned(),
                        f.message.to_owned(),
                    );
                    if tag == b'E' {
                        EventKind::Error {
                            severity,
                            code,
                            message,
                        }
                    } else {
                        EventKind::Notice {
                            severity,
                            code,
                            message,
                        }
                    }
                }
                Err(_) => opaque(tag, body),
            },
            b'A' => match messages::notification(body) {
                Ok((_, channel, payload)) => EventKind::Notification {
                    channel: capped(channel, 256),
                    payload: capped(payload, MAX_RECORDED_VALUE),
                },
                Err(_) => opaque(tag, body),
            },
            b'd' => {
                self.copy.bytes += body.len() as u64;
                self.copy.messages += 1;
                return;
            }
            // ReadyForQuery, ParseComplete, BindComplete, CloseComplete,
            // NoData, PortalSuspended, ParameterDescription, ParameterStatus,
            // EmptyQueryResponse, CopyIn/Out/Both responses, CopyDone.
            b'Z' | b'1' | b'2' | b'3' | b'n' | b's' | b't' | b'S' | b'I' | b'G' | b'H' | b'W'
            | b'c' | b'K' => return,
            _ => opaque(tag, body),
        };
        self.batch.push(Direction::Target, kind);
    }
}

fn opaque(tag: u8, body: &[u8]) -> EventKind {
    EventKind::Opaque {
        tag: tag as char,
        len: body.len() as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_past_the_cap_are_counted_not_recorded() {
        let mut tap = TargetTap::new(2);
        let row = [0u8, 1, 0, 0, 0, 1, b'x'];
        for _ in 0..5 {
            tap.observe(b'D', &row);
        }
        tap.observe(b'C', b"SELECT 5\0");
        let kinds: Vec<_> = tap.batch.events.iter().map(|e| &e.kind).collect();
        assert_eq!(kinds.len(), 3);
        assert_eq!(
            kinds[2],
            &EventKind::Complete {
                tag: "SELECT 5".into(),
                rows: 5,
                rows_recorded: 2
            }
        );
    }

    #[test]
    fn long_sql_is_cut_on_a_char_boundary_with_a_note() {
        let sql = format!("select '{}'", "é".repeat(MAX_RECORDED_SQL));
        let mut tap = ClientTap::default();
        let mut body = sql.clone().into_bytes();
        body.push(0);
        tap.observe(b'Q', &body).unwrap();
        let EventKind::Query { sql: recorded } = &tap.batch.events[0].kind else {
            panic!("not a query event");
        };
        assert!(recorded.len() < MAX_RECORDED_SQL + 64);
        assert!(recorded.ends_with("more bytes not recorded]"));
        assert!(sql.starts_with(recorded.split('…').next().unwrap()));
    }

    #[test]
    fn big_values_are_cut_with_a_note() {
        let v = vec![b'a'; MAX_RECORDED_VALUE + 10];
        let s = value_text(false, &v);
        assert!(s.ends_with("…[10 more bytes not recorded]"));
        assert_eq!(value_text(true, &[1, 255]), "\\x01ff");
    }

    #[test]
    fn malformed_client_frames_are_errors() {
        let mut tap = ClientTap::default();
        assert!(tap.observe(b'Q', b"no terminator").is_err());
        assert!(tap.observe(b'B', b"").is_err());
        assert!(tap.observe(b'F', b"whatever").is_err());
        assert!(tap.observe(b'?', b"whatever").is_ok());
    }
}
