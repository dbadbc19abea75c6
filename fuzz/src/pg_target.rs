//! Target `pg_target`: a target's byte stream, read the way the target pump
//! reads it — cut by `frame_len` under the target message limit, recorded by
//! the `TargetTap`, and filtered for masking (RowDescription plans the
//! result, DataRows and COPY data are masked, error and notice texts too) —
//! plus every backend decoder of `pg::messages` on every body.
//!
//! Invariants, beyond "no panic, bounded memory, no hang":
//! - cutting the stream anywhere behaves as in `pg_frames`;
//! - each backend decoder agrees with rust-postgres's parser
//!   (`postgres_protocol::message::backend`): whatever Gatehouse accepts,
//!   it reads exactly as that independent parser does, and it refuses only
//!   what it documents refusing (non-UTF-8 text, negative counts or
//!   lengths other than NULL's -1);
//! - no strict prefix of an accepted body is accepted;
//! - a masked DataRow is a well-formed row of the same width with NULLs
//!   kept; a masked error keeps its fields in order.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::LazyLock;

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use gatehouse_actors::mask::{
    ColumnInfo, CopyFormat, CopyMasker, MaskRule, MaskStats, Masker, Strategy,
};
use gatehouse_actors::pg::codec::{FrameLimits, HEADER_LEN};
use gatehouse_actors::pg::encoding::ClientEncoding;
use gatehouse_actors::pg::messages;
use gatehouse_actors::pg::tap::TargetTap;
use postgres_protocol::message::backend::Message;

use crate::pg_frames::{self, prefixes_rejected};
use crate::wire::{self, b};

/// Every detector, so the filter does real work on every value.
static MASKER: LazyLock<Masker> = LazyLock::new(|| {
    Masker::new(
        vec![MaskRule {
            name: "all".into(),
            columns: vec![],
            detectors: gatehouse_actors::mask::DETECTORS
                .iter()
                .map(|d| d.to_string())
                .collect(),
            regex: vec!["ACME-[0-9]{6}".into()],
            strategy: Strategy::Redact,
        }],
        [3; 32],
    )
    .expect("valid mask rules")
});

pub fn check(data: &[u8]) {
    let Some((&sel, stream)) = data.split_first() else {
        return;
    };
    let limits = FrameLimits::uniform(1 << 14);
    let frames = pg_frames::frames_and_cuts(stream, &limits);

    // UTF-8 until the stream's own ParameterStatus says otherwise, as in a
    // session.
    let encoding = Rc::new(Cell::new(ClientEncoding::UTF8));
    let mut tap = TargetTap::new(u64::from(sel % 4), encoding);
    let mut plan = None;
    let mut copy: Option<CopyMasker> = None;
    let mut stats = MaskStats::default();
    for &(start, len) in &frames {
        let (tag, body) = (stream[start], &stream[start + HEADER_LEN..start + len]);
        decoders(&stream[start..start + len], body);
        tap.observe(tag, body);
        // The result filter's reading, minus the catalog (no column rules).
        match tag {
            b'T' => {
                plan = messages::row_columns(body).ok().map(|cols| {
                    let infos: Vec<ColumnInfo> = cols
                        .iter()
                        .map(|c| ColumnInfo {
                            name: c.name.to_lowercase(),
                            source: None,
                            binary: c.binary,
                            type_oid: c.type_oid,
                        })
                        .collect();
                    MASKER.plan(&infos, &BTreeSet::new())
                })
            }
            b'D' => {
                let plan = plan.clone().unwrap_or_else(|| MASKER.default_plan());
                match MASKER.mask_data_row(&plan, body, &mut stats) {
                    Ok(None) => {}
                    Ok(Some(out)) => {
                        let before =
                            messages::data_row(body).expect("a masked row was well-formed");
                        let after = messages::data_row(&out).expect("a masked row is well-formed");
                        assert_eq!(before.len(), after.len(), "masking changed the row's width");
                        for (x, y) in before.iter().zip(&after) {
                            if x.is_none() {
                                assert!(y.is_none(), "masking filled a NULL");
                            }
                        }
                    }
                    Err(_) => assert!(
                        messages::data_row(body).is_err(),
                        "the masker refused a row the decoder accepts"
                    ),
                }
            }
            b'H' => {
                if let Ok((format, _)) = messages::copy_response(body) {
                    let format = match (format, sel & 8 != 0) {
                        (1, _) => CopyFormat::Binary,
                        (_, true) => CopyFormat::csv(false),
                        (_, false) => CopyFormat::text(),
                    };
                    copy = Some(CopyMasker::new(&MASKER, MASKER.default_plan(), format));
                }
            }
            b'd' => {
                if let Some(c) = copy.as_mut() {
                    let mut out = Vec::new();
                    if c.feed(body, &mut out, &mut stats).is_err() {
                        copy = None;
                    }
                }
            }
            b'c' => {
                if let Some(mut c) = copy.take() {
                    let _ = c.finish(&mut Vec::new(), &mut stats);
                }
            }
            b'E' | b'N' => {
                if let Ok(fields) = messages::error_field_list(body) {
                    for (code, value) in &fields {
                        if matches!(code, b'M' | b'D' | b'H')
                            && let Ok(value) = std::str::from_utf8(value)
                            && let Some(masked) = MASKER.mask_text(value, &mut stats)
                        {
                            assert_ne!(&masked, value);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let _ = stats.take();
}

/// The decoders of backend messages, checked against rust-postgres's
/// parser on the whole frame.
fn decoders(frame: &[u8], body: &[u8]) {
    let theirs = Message::parse(&mut BytesMut::from(frame));
    let utf8 = |s: &[u8]| std::str::from_utf8(s).is_ok();

    let ours = messages::data_row(body);
    if let Ok(values) = &ours {
        prefixes_rejected(body, |p| messages::data_row(p).is_ok());
        let mut out = Vec::new();
        wire::i16(&mut out, values.len() as i16);
        for v in values {
            wire::value(&mut out, *v);
        }
        assert_eq!(out, body, "DataRow re-encodes");
    }
    if frame[0] == b'D' {
        let theirs = match &theirs {
            Ok(Some(Message::DataRow(row))) => row
                .ranges()
                .map(|r| Ok(r.map(|r| &row.buffer()[r])))
                .collect::<Vec<_>>()
                .ok(),
            _ => None,
        };
        match (&ours, theirs) {
            (Ok(ours), Some(theirs)) => assert_eq!(ours, &theirs, "DataRow read differently"),
            (Ok(_), None) => panic!("DataRow accepted that rust-postgres refuses"),
            (Err(_), Some(theirs)) => {
                // rust-postgres reads any negative length as NULL, and
                // counts as unsigned; Gatehouse refuses both.
                let count = i16::from_be_bytes([body[0], body[1]]);
                assert!(
                    count < 0 || !lengths_plain(&body[2..], theirs.len()),
                    "DataRow refused that rust-postgres reads"
                );
            }
            (Err(_), None) => {}
        }
    }

    let ours = messages::row_columns(body);
    let names = messages::row_description(body);
    assert_eq!(
        ours.is_ok(),
        names.is_ok(),
        "the two RowDescription decoders disagree"
    );
    if let (Ok(cols), Ok(names)) = (&ours, &names) {
        prefixes_rejected(body, |p| messages::row_columns(p).is_ok());
        for (c, (n, binary)) in cols.iter().zip(names) {
            assert_eq!((c.name, c.binary), (*n, *binary));
        }
    }
    if frame[0] == b'T' {
        let theirs = match &theirs {
            Ok(Some(Message::RowDescription(d))) => d
                .fields()
                .map(|f| {
                    Ok((
                        f.name().to_owned(),
                        f.table_oid(),
                        f.column_id(),
                        f.type_oid(),
                        f.format() == 1,
                    ))
                })
                .collect::<Vec<_>>()
                .ok(),
            _ => None,
        };
        match (&ours, theirs) {
            (Ok(ours), Some(theirs)) => {
                let ours: Vec<_> = ours
                    .iter()
                    .map(|c| {
                        (
                            c.name.to_owned(),
                            c.table_oid,
                            c.attnum,
                            c.type_oid,
                            c.binary,
                        )
                    })
                    .collect();
                assert_eq!(ours, theirs, "RowDescription read differently");
            }
            (Ok(_), None) => panic!("RowDescription accepted that rust-postgres refuses"),
            (Err(_), Some(_)) => {
                let count = i16::from_be_bytes([body[0], body[1]]);
                assert!(count < 0, "RowDescription refused that rust-postgres reads");
            }
            (Err(_), None) => {}
        }
    }

    let ours = messages::error_field_list(body);
    let summary = messages::error_fields(body);
    assert_eq!(
        ours.is_ok(),
        summary.is_ok(),
        "the two ErrorResponse decoders disagree"
    );
    if let Ok(fields) = &ours {
        prefixes_rejected(body, |p| messages::error_field_list(p).is_ok());
        let mut out = Vec::new();
        for (code, value) in fields {
            out.push(*code);
            wire::cstr(&mut out, value);
        }
        out.push(0);
        assert_eq!(out, body, "ErrorResponse re-encodes");
        let s = summary.expect("checked above");
        // The summary reads only UTF-8 values (others as empty).
        let last = |c: u8| {
            fields
                .iter()
                .rev()
                .find(|(k, _)| *k == c)
                .and_then(|(_, v)| std::str::from_utf8(v).ok())
        };
        assert_eq!(s.code, last(b'C').unwrap_or(""));
        assert_eq!(s.message, last(b'M').unwrap_or(""));
    }
    if matches!(frame[0], b'E' | b'N') {
        let fields = match &theirs {
            Ok(Some(Message::ErrorResponse(e))) => Some(e.fields()),
            Ok(Some(Message::NoticeResponse(e))) => Some(e.fields()),
            _ => None,
        };
        let theirs = fields.and_then(|f| {
            f.map(|f| Ok((f.type_(), f.value_bytes().to_vec())))
                .collect::<Vec<_>>()
                .ok()
        });
        match (&ours, theirs) {
            (Ok(ours), Some(theirs)) => {
                let ours: Vec<_> = ours.iter().map(|(c, v)| (*c, b(*v).to_vec())).collect();
                assert_eq!(ours, theirs, "ErrorResponse read differently");
            }
            (Ok(_), None) => panic!("ErrorResponse accepted that rust-postgres refuses"),
            (Err(_), Some(theirs)) => assert!(
                theirs.iter().any(|(_, v)| !utf8(v)),
                "ErrorResponse refused that rust-postgres reads"
            ),
            (Err(_), None) => {}
        }
    }

    if let Ok(tag) = messages::command_complete(body) {
        let mut out = Vec::new();
        wire::cstr(&mut out, b(tag));
        assert_eq!(out, body, "CommandComplete re-encodes");
        let _ = messages::tag_rows(tag);
    }
    if let Ok((pid, channel, payload)) = messages::notification(body) {
        let mut out = Vec::new();
        wire::i32(&mut out, pid);
        wire::cstr(&mut out, b(channel));
        wire::cstr(&mut out, b(payload));
        assert_eq!(out, body, "NotificationResponse re-encodes");
        if frame[0] == b'A' {
            match &theirs {
                Ok(Some(Message::NotificationResponse(n))) => {
                    assert_eq!(n.process_id(), pid);
                    assert_eq!(n.channel().ok(), Some(channel));
                    assert_eq!(n.message().ok(), Some(payload));
                }
                _ => panic!("NotificationResponse accepted that rust-postgres refuses"),
            }
        }
    }
    if let Ok((name, value)) = messages::parameter_status(body) {
        let mut out = Vec::new();
        wire::cstr(&mut out, b(name));
        wire::cstr(&mut out, b(value));
        assert_eq!(out, body, "ParameterStatus re-encodes");
    }
    if let Ok((format, columns)) = messages::copy_response(body) {
        let mut out = vec![format];
        wire::i16(&mut out, columns.len() as i16);
        for c in &columns {
            wire::i16(&mut out, *c);
        }
        assert_eq!(out, body, "CopyOutResponse re-encodes");
        prefixes_rejected(body, |p| messages::copy_response(p).is_ok());
        if frame[0] == b'H' {
            match &theirs {
                Ok(Some(Message::CopyOutResponse(r))) => {
                    assert_eq!(r.format(), format);
                    let theirs: Vec<i16> = r
                        .column_formats()
                        .map(|f| Ok(f as i16))
                        .collect()
                        .unwrap_or_default();
                    assert_eq!(theirs, columns);
                }
                _ => panic!("CopyOutResponse accepted that rust-postgres refuses"),
            }
        }
    }
}

/// Whether every column length in a DataRow's values is -1 or non-negative
/// (rust-postgres reads other negative lengths as NULL).
fn lengths_plain(mut values: &[u8], n: usize) -> bool {
    for _ in 0..n {
        let Some(len) = values
            .get(..4)
            .map(|l| i32::from_be_bytes([l[0], l[1], l[2], l[3]]))
        else {
            return true;
        };
        values = &values[4..];
        match len {
            -1 => {}
            l if l < 0 => return false,
            l => values = values.get(l as usize..).unwrap_or_default(),
        }
    }
    true
}
