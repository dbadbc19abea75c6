//! Recording taps: turn relayed frames into recording events.
//!
//! A tap sees each complete frame once, by reference, while the bytes are
//! forwarded untouched; it only allocates for what it records. Rows are
//! recorded up to a per-statement cap and counted after it.

use std::borrow::Cow;
use std::collections::VecDeque;

use super::client_mask::ClientMask;
use super::codec::{CodecError, Reader};
use super::copy_record::CopyRecord;
use super::encoding::{ClientEncoding, SessionEncoding};
use super::messages;
use crate::policy::copy_source::{CopySource, copy_sinks};
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

/// A value as recorded: text decoded with the session's client encoding,
/// binary values (and text that does not decode) as `\x` and hex.
fn value_text(enc: ClientEncoding, binary: bool, v: &[u8]) -> String {
    if v.len() <= MAX_RECORDED_VALUE {
        return if binary {
            format!("\\x{}", hex::encode(v))
        } else {
            enc.text_or_hex(v)
        };
    }
    // A cut inside a multibyte character would make a decodable value look
    // undecodable: step back up to three bytes to a character boundary.
    let kept = (!binary)
        .then(|| {
            (0..4).find_map(|back| {
                let end = MAX_RECORDED_VALUE - back;
                enc.decode(&v[..end]).map(|t| (t.into_owned(), end))
            })
        })
        .flatten();
    let (mut s, end) = kept.unwrap_or_else(|| {
        let head = &v[..MAX_RECORDED_VALUE];
        (format!("\\x{}", hex::encode(head)), MAX_RECORDED_VALUE)
    });
    let cut = v.len() - end;
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
    /// Statements run (Query, Execute, FunctionCall) since the relay last
    /// took the count for the session's statistics.
    pub statements: u64,
    encoding: SessionEncoding,
    /// The policy's masks, applied to what the client sends before it is
    /// recorded (the target gets the original).
    mask: Option<ClientMask>,
    /// The COPY FROM STDIN statements of the last Query not yet run, in
    /// order, and the one whose data is arriving.
    copy_sinks: VecDeque<CopySource>,
    copy_in: Option<CopyRecord>,
}

impl ClientTap {
    pub fn new(encoding: SessionEncoding, masker: Option<&'static crate::mask::Masker>) -> Self {
        ClientTap {
            encoding,
            mask: masker.map(ClientMask::new),
            ..Default::default()
        }
    }

    /// A Query's or Parse's SQL: decoded with the client encoding (or kept
    /// as bytes when it does not decode), masked.
    fn sql_event(&mut self, parse_of: Option<&[u8]>, sql: &[u8]) -> EventKind {
        let enc = self.encoding.get();
        match enc.decode(sql) {
            Some(text) => {
                if parse_of.is_none() {
                    // A prepared COPY is not matched to its data (module
                    // docs of copy_record): only a Query's are queued.
                    self.copy_sinks = copy_sinks(&text).into();
                }
                let text = match self.mask.as_mut() {
                    Some(mask) => Cow::Owned(mask.sql(parse_of, &text).into_owned()),
                    None => text,
                };
                match parse_of {
                    None => EventKind::Query {
                        sql: capped(&text, MAX_RECORDED_SQL),
                    },
                    Some(name) => EventKind::Parse {
                        statement: capped(&enc.decode_lossy(name), 256),
                        sql: capped(&text, MAX_RECORDED_SQL),
                    },
                }
            }
            None => {
                let sql = match self.mask.as_mut() {
                    Some(mask) => mask.sql_bytes(sql),
                    None => Cow::Borrowed(sql),
                };
                EventKind::SqlBytes {
                    statement: parse_of.map(|n| capped(&enc.decode_lossy(n), 256)),
                    encoding: enc.name().to_owned(),
                    sql: sql[..sql.len().min(MAX_RECORDED_SQL)].to_vec().into(),
                }
            }
        }
    }

    /// A Bind parameter (`statement` = Some) or FunctionCall argument as
    /// recorded: masked, then cut like any value.
    fn value(&mut self, statement: Option<&[u8]>, index: usize, binary: bool, v: &[u8]) -> String {
        let enc = self.encoding.get();
        let masked = self.mask.as_mut().and_then(|mask| match statement {
            Some(name) => mask.param(enc, name, index, binary, v),
            None => mask.argument(enc, binary, v),
        });
        match masked {
            Some(text) => capped(&text, MAX_RECORDED_VALUE),
            None => value_text(enc, binary, v),
        }
    }

    /// Record one client frame. Malformed frames of types the gateway must
    /// understand are protocol errors; unknown types are relayed and noted.
    pub fn observe(&mut self, tag: u8, body: &[u8]) -> Result<(), CodecError> {
        let enc = self.encoding.get();
        let name = |n: &[u8]| capped(&enc.decode_lossy(n), 256);
        let kind = match tag {
            b'Q' => {
                self.statements += 1;
                self.sql_event(None, messages::query(body)?)
            }
            b'P' => {
                let p = messages::parse(body)?;
                self.sql_event(Some(p.statement), p.query)
            }
            b'B' => {
                let b = messages::bind(body)?;
                EventKind::Bind {
                    portal: name(b.portal),
                    statement: name(b.statement),
                    params: b
                        .params
                        .iter()
                        .enumerate()
                        .map(|(i, (binary, v))| {
                            v.map(|v| self.value(Some(b.statement), i, *binary, v))
                        })
                        .collect(),
                }
            }
            b'E' => {
                self.statements += 1;
                let (portal, max_rows) = messages::execute(body)?;
                EventKind::Execute {
                    portal: name(portal),
                    max_rows,
                }
            }
            b'F' => {
                self.statements += 1;
                let f = messages::function_call(body)?;
                EventKind::FunctionCall {
                    oid: f.oid,
                    args: f
                        .args
                        .iter()
                        .enumerate()
                        .map(|(i, (binary, v))| v.map(|v| self.value(None, i, *binary, v)))
                        .collect(),
                }
            }
            b'd' => {
                self.copy.bytes += body.len() as u64;
                self.copy.messages += 1;
                let masker = self.mask.as_ref().map(ClientMask::masker);
                let sinks = &mut self.copy_sinks;
                self.copy_in
                    .get_or_insert_with(|| CopyRecord::start(masker, sinks.pop_front()))
                    .feed(body);
                return Ok(());
            }
            b'c' | b'f' => {
                if let Some(record) = self.copy_in.take() {
                    for event in record.finish(enc) {
                        self.batch.push(Direction::Client, event);
                    }
                }
                match self.copy.take(Direction::Client) {
                    Some(kind) => kind,
                    None => return Ok(()),
                }
            }
            b'C' => {
                if let (Some(mask), (b'S', name)) = (self.mask.as_mut(), messages::close(body)?) {
                    mask.forget(name);
                }
                return Ok(());
            }
            // Describe, Sync, Flush, Terminate carry nothing worth a record
            // of their own.
            b'D' | b'S' | b'H' | b'X' => return Ok(()),
            other => EventKind::Opaque {
                tag: other as char,
                len: body.len() as u32,
            },
        };
        self.batch.push(Direction::Client, kind);
        if let Some(counts) = self.mask.as_mut().and_then(ClientMask::take_counts) {
            self.batch
                .push(Direction::Client, EventKind::Masked { counts });
        }
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
    /// Set from the target's `client_encoding` reports.
    encoding: SessionEncoding,
}

impl TargetTap {
    pub fn new(row_cap: u64, encoding: SessionEncoding) -> Self {
        TargetTap {
            row_cap,
            rows: 0,
            recorded: 0,
            binary: Vec::new(),
            copy: CopyCount::default(),
            batch: Batch::default(),
            encoding,
        }
    }

    /// Record one target frame. The target's frames are relayed even when
    /// they do not decode; the recording then notes them as opaque.
    pub fn observe(&mut self, tag: u8, body: &[u8]) {
        let enc = self.encoding.get();
        let kind = match tag {
            b'T' => {
                // The flags are gathered as the names are read, into the
                // last description's vector. After a description that does
                // not read, the flags are unknown: values are recorded as
                // text, or as hex where they do not decode.
                let mut binary = std::mem::take(&mut self.binary);
                binary.clear();
                let names = messages::row_description_map(body, |name, is_binary| {
                    binary.push(is_binary);
                    capped(name, 256)
                });
                match names {
                    Ok(names) => {
                        self.rows = 0;
                        self.recorded = 0;
                        self.binary = binary;
                        EventKind::Columns { names }
                    }
                    Err(_) => opaque(tag, body),
                }
            }
            b'D' => {
                self.rows += 1;
                if self.recorded >= self.row_cap {
                    return;
                }
                self.recorded += 1;
                let binary = &self.binary;
                match messages::data_row_map(body, |i, v| {
                    v.map(|v| value_text(enc, binary.get(i).copied().unwrap_or(false), v))
                }) {
                    Ok(values) => EventKind::Row { values },
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
            b'E' | b'N' => match error_text(enc, body) {
                Ok((severity, code, message)) => {
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
            b'A' => match notification_text(enc, body) {
                Ok((channel, payload)) => EventKind::Notification {
                    channel: capped(&channel, 256),
                    payload: capped(&payload, MAX_RECORDED_VALUE),
                },
                Err(_) => opaque(tag, body),
            },
            b'S' => {
                // Everything after this frame is in the encoding it names.
                if let Ok(("client_encoding", value)) = messages::parameter_status(body) {
                    self.encoding.set(ClientEncoding::from_pg_name(value));
                }
                return;
            }
            b'd' => {
                self.copy.bytes += body.len() as u64;
                self.copy.messages += 1;
                return;
            }
            // ReadyForQuery, ParseComplete, BindComplete, CloseComplete,
            // NoData, PortalSuspended, ParameterDescription, ParameterStatus,
            // EmptyQueryResponse, CopyIn/Out/Both responses, CopyDone.
            b'Z' | b'1' | b'2' | b'3' | b'n' | b's' | b't' | b'I' | b'G' | b'H' | b'W' | b'c'
            | b'K' => return,
            _ => opaque(tag, body),
        };
        self.batch.push(Direction::Target, kind);
    }
}

/// Severity, SQLSTATE and message of an ErrorResponse or NoticeResponse,
/// whose texts are in the client encoding.
fn error_text(enc: ClientEncoding, body: &[u8]) -> Result<(String, String, String), CodecError> {
    let mut r = Reader::new(body);
    let (mut severity, mut code, mut message) = (None, None, None);
    loop {
        let kind = r.u8("ErrorResponse")?;
        if kind == 0 {
            break;
        }
        let value = r.cstr_bytes("ErrorResponse")?;
        match kind {
            b'V' => severity = Some(value),
            b'S' if severity.is_none() => severity = Some(value),
            b'C' => code = Some(value),
            b'M' => message = Some(value),
            _ => {}
        }
    }
    r.finish("ErrorResponse")?;
    let text = |v: Option<&[u8]>| enc.decode_lossy(v.unwrap_or_default()).into_owned();
    Ok((text(severity), text(code), text(message)))
}

/// Channel and payload of a NotificationResponse, in the client encoding.
fn notification_text(enc: ClientEncoding, body: &[u8]) -> Result<(String, String), CodecError> {
    let mut r = Reader::new(body);
    r.i32("NotificationResponse")?;
    let channel = r.cstr_bytes("NotificationResponse")?;
    let payload = r.cstr_bytes("NotificationResponse")?;
    r.finish("NotificationResponse")?;
    Ok((
        enc.decode_lossy(channel).into_owned(),
        enc.text_or_hex(payload),
    ))
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
        let mut tap = TargetTap::new(2, Default::default());
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

    /// A RowDescription body: each column's name and format code.
    fn description(cols: &[(&str, i16)]) -> Vec<u8> {
        let mut b = (cols.len() as i16).to_be_bytes().to_vec();
        for (name, format) in cols {
            b.extend_from_slice(name.as_bytes());
            b.push(0);
            b.extend_from_slice(&[0; 16]);
            b.extend_from_slice(&format.to_be_bytes());
        }
        b
    }

    /// A DataRow body of non-NULL values.
    fn row(values: &[&[u8]]) -> Vec<u8> {
        let values: Vec<Option<&[u8]>> = values.iter().copied().map(Some).collect();
        crate::mask::build_row(&values)
    }

    /// Each description's format codes decide how its rows' values are
    /// recorded (binary as hex), and a later description replaces them all:
    /// the flags' vector is reused from one description to the next.
    #[test]
    fn each_description_decides_its_rows_formats() {
        let mut tap = TargetTap::new(100, Default::default());
        let values = |tap: &TargetTap| match &tap.batch.events.last().unwrap().kind {
            EventKind::Row { values } => values.clone(),
            other => panic!("not a row: {other:?}"),
        };
        let text = |s: &str| Some(s.to_owned());
        tap.observe(b'T', &description(&[("a", 0), ("b", 1)]));
        assert_eq!(
            tap.batch.events[0].kind,
            EventKind::Columns {
                names: vec!["a".into(), "b".into()]
            }
        );
        tap.observe(b'D', &row(&[b"AB", b"AB"]));
        assert_eq!(values(&tap), vec![text("AB"), text("\\x4142")]);
        tap.observe(b'T', &description(&[("c", 1)]));
        tap.observe(b'D', &row(&[b"AB", b"AB"]));
        assert_eq!(values(&tap), vec![text("\\x4142"), text("AB")]);
        tap.observe(b'T', &description(&[("d", 0), ("e", 0)]));
        tap.observe(b'D', &row(&[b"AB", b"AB"]));
        assert_eq!(values(&tap), vec![text("AB"), text("AB")]);
        // A description that does not read is recorded as opaque; the
        // flags are unknown after it and values are recorded as text.
        tap.observe(b'T', &description(&[("f", 1)])[..8]);
        assert!(matches!(
            tap.batch.events.last().unwrap().kind,
            EventKind::Opaque { .. }
        ));
        tap.observe(b'D', &row(&[b"AB"]));
        assert_eq!(values(&tap), vec![text("AB")]);
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
        let s = value_text(ClientEncoding::UTF8, false, &v);
        assert!(s.ends_with("…[10 more bytes not recorded]"));
        assert_eq!(value_text(ClientEncoding::UTF8, true, &[1, 255]), "\\x01ff");
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
