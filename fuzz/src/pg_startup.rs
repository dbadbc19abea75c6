//! Target `pg_startup`: the start of a connection as a state machine fed
//! arbitrary bytes — GSSENCRequest, SSLRequest (with TLS offered or not),
//! CancelRequest, StartupMessage, then the PasswordMessage carrying the
//! token — through `pg::startup::Negotiation` and `decode_password`, the
//! sans-I/O core of `pg::startup::accept` and `read_token`.
//!
//! The first input byte chooses whether TLS is offered (bit 0) and how many
//! of the next bytes give the sizes of the client's first writes (bits
//! 1–3, each size byte + 1); the rest is what the client sends. Invariants:
//! - at most three requests are answered, TLS is started at most once and
//!   only when offered, and never with bytes buffered behind the request;
//! - the outcome does not depend on how the bytes were split, except that
//!   bytes sent together with an SSLRequest are refused (they would
//!   otherwise be trusted as if they came through TLS);
//! - a startup message re-encodes to exactly the bytes it was read from, a
//!   cancel request to its 16 bytes, a password message to its frame;
//! - the startup settings check (`pg::options`) passes on an `options`
//!   string that reads back as the settings it checked.
//!
//! A CancelRequest inside TLS (libpq 17) ends the negotiation as one in
//! plaintext does.

use bytes::BytesMut;
use gatehouse_actors::error::SessionError;
use gatehouse_actors::pg::codec::{self, HEADER_LEN};
use gatehouse_actors::pg::options;
use gatehouse_actors::pg::startup::{Negotiation, Request, decode_password};

use crate::wire;

/// How a negotiation ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The client stopped sending before the negotiation finished.
    Incomplete {
        startup: bool,
    },
    Cancel(i32, i32),
    Token(Vec<(String, String)>, String),
    /// The error's text (SessionError is not `PartialEq`).
    Refused(String),
}

struct Run {
    outcome: Outcome,
    /// What the server answered: `N` or `S` per request.
    answers: Vec<u8>,
    /// Bytes sent together with an SSLRequest were refused.
    glued_to_ssl: bool,
}

/// The client's side: its bytes, delivered in writes of the given sizes.
struct Client<'a> {
    stream: &'a [u8],
    writes: std::slice::Iter<'a, usize>,
    fed: usize,
}

impl Client<'_> {
    /// Deliver the next write; false when the client has nothing more.
    fn feed(&mut self, buf: &mut BytesMut) -> bool {
        let left = self.stream.len() - self.fed;
        if left == 0 {
            return false;
        }
        let n = self.writes.next().copied().unwrap_or(left).clamp(1, left);
        buf.extend_from_slice(&self.stream[self.fed..self.fed + n]);
        self.fed += n;
        true
    }
}

/// Feed `stream` in the given writes and run the negotiation to its end.
fn run(stream: &[u8], writes: &[usize], tls_offered: bool) -> Run {
    let mut negotiation = Negotiation::new(tls_offered);
    let mut buf = BytesMut::new();
    let mut client = Client {
        stream,
        writes: writes.iter(),
        fed: 0,
    };
    let mut answers = Vec::new();
    let refused = |e: SessionError, answers| Run {
        glued_to_ssl: e.to_string().contains("data after SSLRequest"),
        outcome: Outcome::Refused(e.to_string()),
        answers,
    };
    let params = loop {
        let before = buf.len();
        match negotiation.next(&mut buf) {
            Ok(None) => {
                assert_eq!(buf.len(), before, "need-more consumed bytes");
                if !client.feed(&mut buf) {
                    return Run {
                        outcome: Outcome::Incomplete { startup: false },
                        answers,
                        glued_to_ssl: false,
                    };
                }
            }
            Ok(Some(request)) => {
                let consumed = before - buf.len();
                match request {
                    Request::Refuse => answers.push(b'N'),
                    Request::StartTls => {
                        assert!(tls_offered, "TLS started though none is offered");
                        assert!(!answers.contains(&b'S'), "TLS started twice");
                        assert!(buf.is_empty(), "TLS started with plaintext buffered");
                        assert_eq!(consumed, 8);
                        answers.push(b'S');
                        negotiation.tls_started();
                    }
                    Request::Cancel {
                        process_id,
                        secret_key,
                    } => {
                        assert_eq!(consumed, 16);
                        return Run {
                            outcome: Outcome::Cancel(process_id, secret_key),
                            answers,
                            glued_to_ssl: false,
                        };
                    }
                    Request::Startup { params } => {
                        let mut out = Vec::new();
                        wire::i32(&mut out, 0);
                        wire::i32(&mut out, codec::PROTOCOL_3_0);
                        for (k, v) in &params {
                            assert!(!k.is_empty(), "an empty parameter name");
                            wire::cstr(&mut out, k.as_bytes());
                            wire::cstr(&mut out, v.as_bytes());
                        }
                        out.push(0);
                        let len = out.len() as i32;
                        out[..4].copy_from_slice(&len.to_be_bytes());
                        let start = client.fed - before;
                        assert_eq!(
                            out,
                            stream[start..start + consumed],
                            "the startup message does not re-encode to its bytes"
                        );
                        startup_options(&params);
                        break params;
                    }
                }
                assert!(answers.len() <= 3, "more than three requests answered");
            }
            Err(e) => return refused(e, answers),
        }
    };
    // The password exchange.
    loop {
        let before = buf.len();
        match decode_password(&mut buf) {
            Ok(None) => {
                if !client.feed(&mut buf) {
                    return Run {
                        outcome: Outcome::Incomplete { startup: true },
                        answers,
                        glued_to_ssl: false,
                    };
                }
            }
            Ok(Some(token)) => {
                let consumed = before - buf.len();
                let start = client.fed - before;
                let frame = &stream[start..start + consumed];
                assert_eq!(frame[0], b'p');
                assert!(consumed <= gatehouse_actors::pg::startup::MAX_PASSWORD_MESSAGE);
                let raw = std::str::from_utf8(&frame[HEADER_LEN..consumed - 1])
                    .expect("an accepted token is UTF-8");
                assert_eq!(raw.trim(), token);
                assert_eq!(wire::frame(b'p', &[raw.as_bytes(), b"\0"].concat()), frame);
                return Run {
                    outcome: Outcome::Token(params, token),
                    answers,
                    glued_to_ssl: false,
                };
            }
            Err(e) => return refused(e, answers),
        }
    }
}

/// The settings check the session runs on a startup's parameters once it
/// is authorized (`pg::options`): the `options` string it passes on is
/// split by PostgreSQL into exactly the settings it checked, and checking
/// what it passes on again changes nothing.
fn startup_options(params: &[(String, String)]) {
    for (_, value) in params.iter().filter(|(k, _)| k == "options") {
        if let Ok(settings) = options::parse(value) {
            assert_eq!(
                options::parse(&options::encode(&settings)).as_ref(),
                Ok(&settings),
                "the rewritten options string reads differently"
            );
        }
    }
    let allowed: Vec<String> = options::DEFAULT_ALLOWED
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Ok(out) = options::check(params, &allowed) {
        assert!(out.iter().all(|(k, _)| !k.starts_with("_pq_.")));
        assert_eq!(
            options::check(&out, &allowed).as_ref(),
            Ok(&out),
            "what is passed on does not pass the check unchanged"
        );
    }
}

pub fn check(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let tls_offered = sel & 1 != 0;
    // The client's first writes: up to seven sizes of 1 to 256 bytes, one
    // byte each; whatever follows is one last write.
    let n_writes = usize::from(sel >> 1 & 7);
    let (sizes, stream) = rest.split_at(n_writes.min(rest.len()));
    let writes: Vec<usize> = sizes.iter().map(|s| usize::from(*s) + 1).collect();
    let as_sent = run(stream, &writes, tls_offered);
    // The finest split: one byte per read.
    let bytewise = run(stream, &vec![1; stream.len()], tls_offered);
    assert!(
        !bytewise.glued_to_ssl,
        "nothing is buffered when reading a byte at a time"
    );
    if !as_sent.glued_to_ssl {
        assert_eq!(
            as_sent.outcome, bytewise.outcome,
            "the split changed the outcome"
        );
        assert_eq!(as_sent.answers, bytewise.answers);
    }
}
