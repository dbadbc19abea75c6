//! Target `pg_frames`: a client's byte stream, read the way the relay reads
//! it — cut into frames by `frame_len_limited`, recorded by the `ClientTap`,
//! judged by the statement `Gate` under a policy that blocks, holds and
//! masks, in one of several client encodings — plus every frontend decoder of `pg::messages` on every body.
//!
//! Invariants checked, beyond "no panic, bounded memory, no hang":
//! - a stream cut anywhere yields exactly the frames wholly before the cut,
//!   then "need more" or the same error: never a different frame;
//! - every decoder that accepts a body re-encodes (with [`crate::wire`]) to
//!   the same bytes, or, where it drops fields by design, decodes again to
//!   the same value; no strict prefix of an accepted body is accepted;
//! - a Query whose text (in the session's encoding) the classifier reads
//!   as a `DROP`, or cannot read, is never forwarded, and every substitute the gate sends is one well-formed frame.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, LazyLock};

use gatehouse_actors::mask::{MaskRule, Masker, Strategy};
use gatehouse_actors::pg::codec::{self, CodecError, FrameLimits, HEADER_LEN};
use gatehouse_actors::pg::encoding::{ClientEncoding, SessionEncoding};
use gatehouse_actors::pg::gate::{Gate, Shared, Step};
use gatehouse_actors::pg::messages;
use gatehouse_actors::pg::tap::ClientTap;
use gatehouse_actors::policy::classify::classify;
use gatehouse_actors::policy::{Action, NamePattern, Rule, SqlPolicy, Unreadable};

use crate::wire::{self, b};

/// The frame cap: small, so the limit paths are reached by short inputs.
const LIMIT: usize = 1 << 12;

/// A policy exercising every gate path: blocks, a hold, masking (which
/// turns on Describe bookkeeping and COPY reading).
static POLICY: LazyLock<Arc<SqlPolicy>> = LazyLock::new(|| {
    let masker: &'static Masker = Box::leak(Box::new(
        Masker::new(
            vec![MaskRule {
                name: "pii".into(),
                columns: vec!["customers.email".into()],
                detectors: vec!["email".into()],
                regex: vec![],
                strategy: Strategy::Redact,
            }],
            [7; 32],
        )
        .expect("a valid mask rule"),
    ));
    let rule =
        |name: &str, action, statements: &[&str], tables: &[&str], functions: &[&str]| Rule {
            name: name.into(),
            action,
            statements: statements.iter().map(|s| s.to_string()).collect(),
            tables: tables
                .iter()
                .map(|t| NamePattern::parse(t).expect("a valid pattern"))
                .collect(),
            functions: functions
                .iter()
                .map(|t| NamePattern::parse(t).expect("a valid pattern"))
                .collect(),
            without_where: false,
        };
    Arc::new(SqlPolicy {
        name: "fuzz".into(),
        rules: vec![
            rule(
                "no-ddl",
                Action::Block { message: None },
                &["drop", "truncate"],
                &[],
                &[],
            ),
            rule(
                "files",
                Action::Block { message: None },
                &[],
                &[],
                &["pg_read_file"],
            ),
            rule(
                "approve",
                Action::Approve {
                    timeout: std::time::Duration::from_secs(60),
                    approvers: vec![],
                },
                &["delete"],
                &["customers"],
                &[],
            ),
        ],
        default_block: false,
        unparsed: Unreadable::Block,
        masker: Some(masker),
    })
});

/// The client encodings a session may run in, picked by the selector.
const ENCODINGS: [&str; 4] = ["UTF8", "LATIN1", "SJIS", "EUC_TW"];

/// The frames of `stream` as `(start, len)` and how the walk ended.
fn walk(stream: &[u8], limits: &FrameLimits) -> (Vec<(usize, usize)>, Result<(), CodecError>) {
    let mut frames = Vec::new();
    let mut at = 0;
    loop {
        match codec::frame_len_limited(&stream[at..], limits) {
            Ok(Some(len)) => {
                assert!(len >= HEADER_LEN, "frame shorter than its header");
                assert!(at + len <= stream.len(), "frame past the buffer");
                assert_eq!(
                    len,
                    i32::from_be_bytes([
                        stream[at + 1],
                        stream[at + 2],
                        stream[at + 3],
                        stream[at + 4]
                    ]) as usize
                        + 1
                );
                assert!(len <= limits.get(stream[at]), "frame over its limit");
                frames.push((at, len));
                at += len;
            }
            Ok(None) => return (frames, Ok(())),
            Err(e) => return (frames, Err(e)),
        }
    }
}

/// The whole frames of `stream`, after checking that a cut anywhere yields
/// exactly the frames before it, then "need more" or the same error.
pub fn frames_and_cuts(stream: &[u8], limits: &FrameLimits) -> Vec<(usize, usize)> {
    let (frames, outcome) = walk(stream, limits);

    for cut in wire::cuts(stream.len()) {
        let (got, end) = walk(&stream[..cut], limits);
        let whole: Vec<_> = frames
            .iter()
            .copied()
            .filter(|(s, l)| s + l <= cut)
            .collect();
        assert_eq!(got, whole, "cut at {cut} changed the frames before it");
        let next = whole.last().map_or(0, |(s, l)| s + l);
        let all_before = next == frames.last().map_or(0, |(s, l)| s + l);
        if all_before && cut - next >= HEADER_LEN {
            assert_eq!(end, outcome, "cut at {cut}: the same header is in view");
        } else {
            assert_eq!(
                end,
                Ok(()),
                "cut at {cut}: an incomplete frame is not an error"
            );
        }
    }

    frames
}

pub fn check(data: &[u8]) {
    let Some((&sel, stream)) = data.split_first() else {
        return;
    };
    let mut limits = FrameLimits::uniform(LIMIT);
    if sel & 1 != 0 {
        limits.set(b'Q', 64);
    }
    if sel & 2 != 0 {
        limits.set(b'd', 16);
    }
    let frames = frames_and_cuts(stream, &limits);

    for &(start, len) in &frames {
        decoders(&stream[start + HEADER_LEN..start + len]);
    }

    // The relay's view: tap, then gate, in the client_encoding the
    // selector picks (UTF-8, a single-byte table, a multi-byte one whose
    // second bytes include ASCII quote and backslash, one nothing decodes).
    let encoding = ClientEncoding::from_pg_name(ENCODINGS[usize::from(sel >> 3) % ENCODINGS.len()]);
    let session: SessionEncoding = Rc::new(std::cell::Cell::new(encoding));
    let shared: Rc<RefCell<Shared>> = Default::default();
    let mut gate = Gate::new(POLICY.clone(), shared.clone(), session.clone());
    let mut tap = ClientTap::new(session, POLICY.masker);
    for &(start, len) in &frames {
        let frame = &stream[start..start + len];
        let (tag, body) = (frame[0], &frame[HEADER_LEN..]);
        if tap.observe(tag, body).is_err() {
            break;
        }
        let step = match gate.check(tag, body) {
            Ok(step) => step,
            Err(_) => break,
        };
        if tag == b'Q'
            && let Ok(sql) = messages::query(body)
            && let Some(sql) = encoding.decode(sql)
        {
            let must_refuse = match classify(&sql) {
                Ok(infos) => infos.iter().any(|i| i.kinds.contains("drop")),
                Err(_) => true,
            };
            if must_refuse {
                assert!(
                    matches!(step, Step::Replace(..)),
                    "a DROP or unreadable Query was let through: {sql:?}"
                );
            }
        }
        match step {
            Step::Forward => {
                if tag == b'E'
                    && let Some(out) = gate.describe_before(frame)
                {
                    let n = codec::frame_len(&out, usize::MAX)
                        .expect("injected Describe is framed")
                        .expect("injected Describe is whole");
                    assert_eq!(out[0], b'D');
                    assert_eq!(&out[n..], frame, "the Execute follows unchanged");
                }
            }
            Step::Replace(bytes, _) => {
                let n = codec::frame_len(&bytes, usize::MAX)
                    .expect("substitute is framed")
                    .expect("substitute is whole");
                assert_eq!(n, bytes.len(), "substitute is exactly one frame");
                match bytes[0] {
                    b'P' => assert!(messages::parse(&bytes[HEADER_LEN..]).is_ok()),
                    b'Q' => assert!(messages::query(&bytes[HEADER_LEN..]).is_ok()),
                    other => panic!("substitute of type {other}"),
                }
            }
            Step::Hold(_) => {}
        }
        // The target answers each unit at once, without errors, so the
        // bookkeeping drains the way a live session's does.
        let mut sh = shared.borrow_mut();
        while sh.units.pop_front().is_some() {
            sh.unit_results.push(sel & 4 != 0);
        }
    }
}

/// Every frontend decoder on one body, with its invariant.
fn decoders(body: &[u8]) {
    if let Ok(sql) = messages::query(body) {
        let mut out = Vec::new();
        wire::cstr(&mut out, b(sql));
        assert_eq!(out, body, "Query re-encodes");
        prefixes_rejected(body, |p| messages::query(p).is_ok());
    }
    if let Ok(p) = messages::parse(body) {
        let mut out = Vec::new();
        wire::cstr(&mut out, b(p.statement));
        wire::cstr(&mut out, b(p.query));
        // Parameter type OIDs are not decoded: they follow, count first.
        let rest = &body[out.len()..];
        let n = i16::from_be_bytes([rest[0], rest[1]]);
        assert!(
            n >= 0 && rest.len() == 2 + 4 * n as usize,
            "Parse accepted a bad OID list"
        );
        prefixes_rejected(body, |p| messages::parse(p).is_ok());
    }
    if let Ok(bind) = messages::bind(body) {
        // Format codes are decoded per value and result formats dropped:
        // re-encode with one code per value and none for results.
        let mut out = Vec::new();
        wire::cstr(&mut out, b(bind.portal));
        wire::cstr(&mut out, b(bind.statement));
        formatted_values(&mut out, &bind.params);
        let again = messages::bind(&out).expect("re-encoded Bind decodes");
        assert_eq!(again, bind, "Bind decodes to itself after re-encoding");
        prefixes_rejected(body, |p| messages::bind(p).is_ok());
    }
    if let Ok(f) = messages::function_call(body) {
        let mut out = Vec::new();
        wire::i32(&mut out, f.oid);
        formatted_values(&mut out, &f.args);
        let again = messages::function_call(&out).expect("re-encoded FunctionCall decodes");
        assert_eq!(again, f, "FunctionCall decodes to itself after re-encoding");
        prefixes_rejected(body, |p| messages::function_call(p).is_ok());
    }
    if let Ok((portal, max_rows)) = messages::execute(body) {
        let mut out = Vec::new();
        wire::cstr(&mut out, b(portal));
        wire::i32(&mut out, max_rows);
        assert_eq!(out, body, "Execute re-encodes");
        prefixes_rejected(body, |p| messages::execute(p).is_ok());
    }
    for decode in [messages::close, messages::describe] {
        if let Ok((what, name)) = decode(body) {
            let mut out = vec![what];
            wire::cstr(&mut out, b(name));
            assert_eq!(out, body, "Close/Describe re-encodes");
            prefixes_rejected(body, |p| decode(p).is_ok());
        }
    }
}

/// Values as Bind and FunctionCall carry them, re-encoded with one format
/// code per value, then a result format count of zero.
fn formatted_values(out: &mut Vec<u8>, values: &[messages::Value<'_>]) {
    wire::i16(out, values.len() as i16);
    for (binary, _) in values {
        wire::i16(out, i16::from(*binary));
    }
    wire::i16(out, values.len() as i16);
    for (_, v) in values {
        wire::value(out, *v);
    }
    wire::i16(out, 0);
}

/// No strict prefix of an accepted body is accepted: every message's
/// layout ends in a terminator or a fixed-size field, so a decoder that
/// accepts a prefix stopped reading early.
pub fn prefixes_rejected(body: &[u8], accepts: impl Fn(&[u8]) -> bool) {
    for cut in wire::cuts(body.len()) {
        assert!(!accepts(&body[..cut]), "accepted a prefix of {cut} bytes");
    }
}
