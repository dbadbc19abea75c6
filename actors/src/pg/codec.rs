//! PostgreSQL wire codec: framing, the handful of messages Gatehouse reads,
//! and the messages it writes itself. No I/O happens here.
//!
//! Every decoder works on bytes that were already cut to the length the frame
//! declares, so a lying length can never make a decoder read past its frame;
//! every field read is bounds-checked and malformed input is an error value,
//! never a panic. "Not enough bytes yet" is `Ok(None)`, never an error.
//!
//! pgwire's decoders were not used on this path: 0.42 panics on truncated
//! bodies and reads text fields past the frame, which is exactly the input an
//! attacker controls.

use bytes::{BufMut, BytesMut};

/// Length of a tagged frame's header: one type byte and a four-byte length.
pub const HEADER_LEN: usize = 5;

/// PostgreSQL's own limit on a startup packet (`MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP_LEN: usize = 10_000;

/// Backend frames are produced by a target we trust more than clients, but a
/// bound is still needed so a confused server cannot make us allocate without
/// limit; 1 GiB is PostgreSQL's own `MaxAllocSize` for a single value.
pub const MAX_BACKEND_FRAME: usize = 1 << 30;

pub const SSL_REQUEST_CODE: i32 = 80_877_103;
pub const GSSENC_REQUEST_CODE: i32 = 80_877_104;
pub const CANCEL_REQUEST_CODE: i32 = 80_877_102;
pub const PROTOCOL_3_0: i32 = 196_608;

/// A framing or decoding failure. The session turns it into SQLSTATE 08P01.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("message length {0} is invalid")]
    BadLength(i64),
    /// The first four bytes of a connection are not a startup packet's
    /// length: a client speaking something else (an HTTP probe, a
    /// Terminate before any startup). PostgreSQL logs this and closes
    /// without answering; so does the gateway.
    #[error("invalid length of startup packet ({0})")]
    StartupLength(i64),
    #[error("message of type '{tag}' is {len} bytes, over the limit of {limit}")]
    TooLarge { tag: char, len: usize, limit: usize },
    #[error("malformed {0} message")]
    Malformed(&'static str),
    #[error("unsupported protocol version {0}.{1}")]
    Protocol(u16, u16),
}

/// Where the next complete tagged frame ends, if the buffer holds one.
///
/// `limit` caps the whole frame (header included) for that direction.
pub fn frame_len(buf: &[u8], limit: usize) -> Result<Option<usize>, CodecError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let declared = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if declared < 4 {
        return Err(CodecError::BadLength(declared.into()));
    }
    let total = declared as usize + 1;
    if total > limit {
        return Err(CodecError::TooLarge {
            tag: buf[0] as char,
            len: total,
            limit,
        });
    }
    Ok((buf.len() >= total).then_some(total))
}

/// Per message type caps on frame size (header included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameLimits {
    by_tag: [usize; 256],
}

impl FrameLimits {
    /// Every type capped at `limit` bytes.
    pub fn uniform(limit: usize) -> Self {
        FrameLimits {
            by_tag: [limit; 256],
        }
    }

    pub fn set(&mut self, tag: u8, limit: usize) {
        self.by_tag[tag as usize] = limit;
    }

    pub fn get(&self, tag: u8) -> usize {
        self.by_tag[tag as usize]
    }

    /// Frontend message types by the names the config uses.
    pub fn tag_for_name(name: &str) -> Option<u8> {
        Some(match name {
            "query" => b'Q',
            "parse" => b'P',
            "bind" => b'B',
            "execute" => b'E',
            "describe" => b'D',
            "close" => b'C',
            "sync" => b'S',
            "flush" => b'H',
            "copy_data" => b'd',
            "copy_done" => b'c',
            "copy_fail" => b'f',
            "function_call" => b'F',
            "password" => b'p',
            "terminate" => b'X',
            _ => return None,
        })
    }
}

/// [`frame_len`] with the cap chosen by the frame's type.
pub fn frame_len_limited(buf: &[u8], limits: &FrameLimits) -> Result<Option<usize>, CodecError> {
    match buf.first() {
        None => Ok(None),
        Some(tag) => frame_len(buf, limits.get(*tag)),
    }
}

/// The first message of a connection, which has no type byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Initial {
    SslRequest,
    GssEncRequest,
    Cancel { process_id: i32, secret_key: i32 },
    Startup { params: Vec<(String, String)> },
}

/// Decode the untagged first message. `Ok(None)` means wait for more bytes.
pub fn decode_initial(buf: &mut BytesMut) -> Result<Option<Initial>, CodecError> {
    if buf.len() < 8 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if !(8..=MAX_STARTUP_LEN as i32).contains(&len) {
        return Err(CodecError::StartupLength(len.into()));
    }
    let len = len as usize;
    if buf.len() < len {
        return Ok(None);
    }
    let frame = buf.split_to(len);
    let code = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let body = &frame[8..];
    match code {
        SSL_REQUEST_CODE if body.is_empty() => Ok(Some(Initial::SslRequest)),
        GSSENC_REQUEST_CODE if body.is_empty() => Ok(Some(Initial::GssEncRequest)),
        CANCEL_REQUEST_CODE if body.len() == 8 => Ok(Some(Initial::Cancel {
            process_id: i32::from_be_bytes([body[0], body[1], body[2], body[3]]),
            secret_key: i32::from_be_bytes([body[4], body[5], body[6], body[7]]),
        })),
        PROTOCOL_3_0 => {
            let mut r = Reader::new(body);
            let mut params = Vec::new();
            loop {
                let key = r.cstr("startup")?;
                if key.is_empty() {
                    break;
                }
                let value = r.cstr("startup")?;
                params.push((key.to_owned(), value.to_owned()));
            }
            // PostgreSQL refuses bytes after the terminator ("expected
            // terminator as last byte"); ignoring them would accept a
            // packet the server would not.
            r.finish("startup")?;
            Ok(Some(Initial::Startup { params }))
        }
        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE | CANCEL_REQUEST_CODE => {
            Err(CodecError::Malformed("startup"))
        }
        other => Err(CodecError::Protocol((other >> 16) as u16, other as u16)),
    }
}

/// A bounds-checked cursor over one isolated frame body.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// A NUL-terminated string that must be UTF-8: the gateway's own
    /// vocabulary (startup parameter names, error fields it matches on).
    pub fn cstr(&mut self, what: &'static str) -> Result<&'a str, CodecError> {
        let bytes = self.cstr_bytes(what)?;
        std::str::from_utf8(bytes).map_err(|_| CodecError::Malformed(what))
    }

    /// A NUL-terminated string as bytes: text in the session's client
    /// encoding (SQL, names, values), which need not be UTF-8.
    pub fn cstr_bytes(&mut self, what: &'static str) -> Result<&'a [u8], CodecError> {
        let end = memchr::memchr(0, self.buf).ok_or(CodecError::Malformed(what))?;
        let s = &self.buf[..end];
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }

    pub fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
        if self.buf.len() < n {
            return Err(CodecError::Malformed(what));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, CodecError> {
        Ok(self.bytes(1, what)?[0])
    }

    pub fn i16(&mut self, what: &'static str) -> Result<i16, CodecError> {
        let b = self.bytes(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    pub fn i32(&mut self, what: &'static str) -> Result<i32, CodecError> {
        let b = self.bytes(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A count of parameters, formats or columns: unsigned 16 bits, as
    /// PostgreSQL reads it (a Bind may carry up to 65,535 parameters),
    /// bounded by what the remaining bytes could hold (`min_each` bytes per
    /// item) so a forged count cannot drive allocation.
    pub fn count(&mut self, min_each: usize, what: &'static str) -> Result<usize, CodecError> {
        let b = self.bytes(2, what)?;
        let n = usize::from(u16::from_be_bytes([b[0], b[1]]));
        if n.saturating_mul(min_each) > self.buf.len() {
            return Err(CodecError::Malformed(what));
        }
        Ok(n)
    }

    /// A length-prefixed value: `None` for SQL NULL (length -1).
    pub fn value(&mut self, what: &'static str) -> Result<Option<&'a [u8]>, CodecError> {
        match self.i32(what)? {
            -1 => Ok(None),
            n if n < 0 => Err(CodecError::Malformed(what)),
            n => self.bytes(n as usize, what).map(Some),
        }
    }

    pub fn finish(&self, what: &'static str) -> Result<(), CodecError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(CodecError::Malformed(what))
        }
    }
}

/// Encode an ErrorResponse (`E`) or NoticeResponse (`N`).
pub fn put_error(buf: &mut BytesMut, tag: u8, severity: &str, code: &str, message: &str) {
    let start = buf.len();
    buf.put_u8(tag);
    buf.put_i32(0);
    for (field, value) in [
        (b'S', severity),
        (b'V', severity),
        (b'C', code),
        (b'M', message),
    ] {
        buf.put_u8(field);
        put_cstr(buf, value.as_bytes());
    }
    buf.put_u8(0);
    patch_len(buf, start);
}

/// Encode an Authentication request with the given code and extra bytes.
pub fn put_auth(buf: &mut BytesMut, code: i32, extra: &[u8]) {
    buf.put_u8(b'R');
    buf.put_i32(8 + extra.len() as i32);
    buf.put_i32(code);
    buf.put_slice(extra);
}

pub fn put_parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    let start = buf.len();
    buf.put_u8(b'S');
    buf.put_i32(0);
    put_cstr(buf, name.as_bytes());
    put_cstr(buf, value.as_bytes());
    patch_len(buf, start);
}

pub fn put_backend_key(buf: &mut BytesMut, process_id: i32, secret_key: i32) {
    buf.put_u8(b'K');
    buf.put_i32(12);
    buf.put_i32(process_id);
    buf.put_i32(secret_key);
}

pub fn put_ready(buf: &mut BytesMut, status: u8) {
    buf.put_u8(b'Z');
    buf.put_i32(5);
    buf.put_u8(status);
}

fn put_cstr(buf: &mut BytesMut, s: &[u8]) {
    // A NUL inside a field would end it early on the wire; our own messages
    // never carry one, but a reason string might echo client input.
    buf.extend(s.iter().copied().filter(|b| *b != 0));
    buf.put_u8(0);
}

fn patch_len(buf: &mut BytesMut, start: usize) {
    let len = (buf.len() - start - 1) as i32;
    buf[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
}

/// Encode an ErrorResponse or NoticeResponse from its fields.
pub fn put_fields<V: AsRef<[u8]>>(buf: &mut BytesMut, tag: u8, fields: &[(u8, V)]) {
    let start = buf.len();
    buf.put_u8(tag);
    buf.put_i32(0);
    for (field, value) in fields {
        buf.put_u8(*field);
        put_cstr(buf, value.as_ref());
    }
    buf.put_u8(0);
    patch_len(buf, start);
}

/// Encode a message with the given tag and body.
pub fn put_frame(buf: &mut BytesMut, tag: u8, body: &[u8]) {
    buf.put_u8(tag);
    buf.put_i32(body.len() as i32 + 4);
    buf.extend_from_slice(body);
}

/// Encode a frontend Query.
pub fn put_query(buf: &mut BytesMut, sql: &str) {
    let start = buf.len();
    buf.put_u8(b'Q');
    buf.put_i32(0);
    put_cstr(buf, sql.as_bytes());
    patch_len(buf, start);
}

/// Encode a frontend Describe of a portal (`P`) or statement (`S`); the
/// name as the client sent it.
pub fn put_describe(buf: &mut BytesMut, what: u8, name: &[u8]) {
    let start = buf.len();
    buf.put_u8(b'D');
    buf.put_i32(0);
    buf.put_u8(what);
    put_cstr(buf, name);
    patch_len(buf, start);
}

/// Encode a frontend Parse of `sql` as statement `name` (as the client
/// sent it), no parameter types.
pub fn put_parse(buf: &mut BytesMut, name: &[u8], sql: &str) {
    let start = buf.len();
    buf.put_u8(b'P');
    buf.put_i32(0);
    put_cstr(buf, name);
    put_cstr(buf, sql.as_bytes());
    buf.put_i16(0);
    patch_len(buf, start);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_len_waits_for_header_and_body() {
        assert_eq!(frame_len(b"Q\0\0", 100), Ok(None));
        assert_eq!(frame_len(b"Q\0\0\0\x09sel", 100), Ok(None));
        assert_eq!(frame_len(b"Q\0\0\0\x09selec", 100), Ok(Some(10)));
    }

    #[test]
    fn frame_len_rejects_short_and_oversized() {
        assert_eq!(
            frame_len(b"Q\0\0\0\x03", 100),
            Err(CodecError::BadLength(3))
        );
        assert!(matches!(
            frame_len(b"Q\x7f\0\0\0", 100),
            Err(CodecError::TooLarge { tag: 'Q', .. })
        ));
        assert!(matches!(
            frame_len(b"Q\xff\xff\xff\xff", 100),
            Err(CodecError::BadLength(-1))
        ));
    }

    #[test]
    fn per_type_limits() {
        let mut limits = FrameLimits::uniform(100);
        limits.set(b'Q', 10);
        assert!(frame_len_limited(b"Q\0\0\0\x20", &limits).is_err());
        assert_eq!(frame_len_limited(b"P\0\0\0\x20", &limits), Ok(None));
        assert_eq!(FrameLimits::tag_for_name("copy_data"), Some(b'd'));
        assert_eq!(FrameLimits::tag_for_name("nope"), None);
    }

    #[test]
    fn initial_startup_round_trip() {
        let mut buf = BytesMut::new();
        postgres_protocol::message::frontend::startup_message(
            [("user", "bot"), ("database", "orders")],
            &mut buf,
        )
        .unwrap();
        let msg = decode_initial(&mut buf).unwrap().unwrap();
        assert_eq!(
            msg,
            Initial::Startup {
                params: vec![
                    ("user".into(), "bot".into()),
                    ("database".into(), "orders".into())
                ]
            }
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn initial_special_requests() {
        let mut buf = BytesMut::new();
        postgres_protocol::message::frontend::ssl_request(&mut buf);
        assert_eq!(decode_initial(&mut buf), Ok(Some(Initial::SslRequest)));
        postgres_protocol::message::frontend::cancel_request(7, -9, &mut buf);
        assert_eq!(
            decode_initial(&mut buf),
            Ok(Some(Initial::Cancel {
                process_id: 7,
                secret_key: -9
            }))
        );
    }

    #[test]
    fn initial_garbage_is_an_invalid_startup_length() {
        // A Terminate where a startup packet belongs.
        let mut buf = BytesMut::from(&b"X\0\0\0\x04\0\0\0"[..]);
        assert_eq!(
            decode_initial(&mut buf),
            Err(CodecError::StartupLength(0x5800_0000))
        );
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]);
        assert!(matches!(
            decode_initial(&mut buf),
            Err(CodecError::StartupLength(_))
        ));
    }

    #[test]
    fn initial_rejects_unterminated_params_and_old_protocol() {
        let mut buf = BytesMut::from(&b"\0\0\0\x0c\0\x03\0\0user"[..]);
        assert_eq!(
            decode_initial(&mut buf),
            Err(CodecError::Malformed("startup"))
        );
        let mut buf = BytesMut::from(&b"\0\0\0\x08\0\x02\0\0"[..]);
        assert_eq!(decode_initial(&mut buf), Err(CodecError::Protocol(2, 0)));
    }

    /// Found by the pg_startup fuzz target: bytes after the parameter
    /// list's terminator were ignored.
    #[test]
    fn initial_rejects_bytes_after_the_terminator() {
        let mut buf = BytesMut::from(&b"\0\0\0\x10\0\x03\0\0user\0\0\0X"[..]);
        assert_eq!(
            decode_initial(&mut buf),
            Err(CodecError::Malformed("startup"))
        );
        let mut buf = BytesMut::from(&b"\0\0\0\x0f\0\x03\0\0user\0\0\0"[..]);
        assert!(matches!(
            decode_initial(&mut buf),
            Ok(Some(Initial::Startup { .. }))
        ));
    }

    #[test]
    fn counts_are_unsigned_as_in_postgresql() {
        // 60,000 parameters, each a NULL (-1 length).
        let mut body = 60_000u16.to_be_bytes().to_vec();
        for _ in 0..60_000 {
            body.extend_from_slice(&(-1i32).to_be_bytes());
        }
        let mut r = Reader::new(&body);
        assert_eq!(r.count(4, "Bind"), Ok(60_000));
        // A count the bytes cannot hold is still refused.
        assert!(Reader::new(&[0xff, 0xff, 0, 0]).count(4, "Bind").is_err());
    }

    #[test]
    fn error_encoding_is_framed() {
        let mut buf = BytesMut::new();
        put_error(&mut buf, b'E', "FATAL", "28000", "bad\0token");
        let len = frame_len(&buf, 1000).unwrap().unwrap();
        assert_eq!(len, buf.len());
        assert!(!buf[5..].windows(4).any(|w| w == b"bad\0"));
    }
}
