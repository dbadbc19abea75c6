//! Tests of COPY OUT masking: text, CSV and binary streams fed in pieces,
//! the field codecs, and property tests (random streams never panic,
//! nothing matched is identity, masked output keeps its shape).

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::super::{ColumnInfo, MaskRule, Strategy};
use super::csv::csv_field_end;
use super::text::{decode_text, encode_text, text_field_end};
use super::*;

fn masker(strategy: Strategy) -> Masker {
    Masker::new(
        vec![
            MaskRule {
                name: "cols".into(),
                columns: vec!["secret".into()],
                detectors: vec![],
                regex: vec![],
                strategy,
            },
            MaskRule {
                name: "det".into(),
                columns: vec![],
                detectors: vec!["email".into(), "credit_card".into()],
                regex: vec![],
                strategy: Strategy::Redact,
            },
        ],
        [9; 32],
    )
    .unwrap()
}

fn plan(m: &Masker, names: &[&str]) -> RowPlan {
    let cols: Vec<ColumnInfo> = names.iter().map(|n| ColumnInfo::named(n)).collect();
    m.plan(&cols, &BTreeSet::new())
}

fn run(m: &Masker, p: &RowPlan, f: &CopyFormat, chunks: &[&[u8]]) -> Vec<u8> {
    let mut cm = CopyMasker::new(m, p.clone(), f.clone());
    let mut out = Vec::new();
    let mut st = MaskStats::default();
    for c in chunks {
        cm.feed(c, &mut out, &mut st).unwrap();
    }
    cm.finish(&mut out, &mut st).unwrap();
    out
}

/// Output is identical for every split into two feeds and for byte-wise feeding.
fn check_splits(m: &Masker, p: &RowPlan, f: &CopyFormat, data: &[u8]) -> Vec<u8> {
    let whole = run(m, p, f, &[data]);
    for i in 0..=data.len() {
        assert_eq!(
            run(m, p, f, &[&data[..i], &data[i..]]),
            whole,
            "split at {i}"
        );
    }
    let bytes: Vec<&[u8]> = data.chunks(1).collect();
    assert_eq!(run(m, p, f, &bytes), whole, "byte-wise");
    whole
}

#[test]
fn text_escapes_and_nulls() {
    let m = masker(Strategy::Redact);
    let p = plan(&m, &["id", "secret", "notes"]);
    let data = b"1\ts3cr\\\\t\tmail bob@x.org\\there\n2\t\\N\t\\N\n3\tx\tno match\\\\here\n";
    let out = check_splits(&m, &p, &CopyFormat::text(), data);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "1\t[redacted]\tmail [redacted]\\there\n2\t\\N\t\\N\n3\t[redacted]\tno match\\\\here\n"
    );
    // Escaped delimiter / newline inside a value, octal and hex escapes decoded.
    let data = b"9\tx\t\\101\\x42 c@d.org\\nline2\n";
    assert_eq!(
        run(&m, &p, &CopyFormat::text(), &[data]),
        b"9\t[redacted]\tAB [redacted]\\nline2\n"
    );
    // Unterminated final row is masked at finish; CRLF kept.
    assert_eq!(
        run(
            &m,
            &p,
            &CopyFormat::text(),
            &[b"1\ta\tq@w.io\r\n2\tb\te@r.io"]
        ),
        b"1\t[redacted]\t[redacted]\r\n2\t[redacted]\t[redacted]"
    );
}

/// Found by the mask_copy fuzz target: an empty CopyData right after
/// an escape inside quotes dropped the pending escape, so the escaped
/// quote that followed closed the field and the masker's fields no
/// longer matched PostgreSQL's (a crafted split could move a masked
/// column's text into a passed one).
#[test]
fn csv_escape_survives_an_empty_piece() {
    let m = masker(Strategy::Redact);
    let p = plan(&m, &["secret", "id"]);
    let f = CopyFormat::Csv {
        delimiter: b',',
        quote: b'"',
        escape: b'\\',
        null: Vec::new(),
        header: false,
    };
    let data: &[u8] = b"\"a\\\",378282246310005\",7\n\"b\",8\n";
    let whole = check_splits(&m, &p, &f, data);
    assert_eq!(whole, b"[redacted],7\n[redacted],8\n");
    let at = data.iter().position(|&b| b == b'\\').unwrap() + 1;
    assert_eq!(
        run(&m, &p, &f, &[&data[..at], b"", &data[at..]]),
        whole,
        "an empty piece between an escape and its quote"
    );
}

/// Found by the mask_copy fuzz target: with a delimiter other than
/// tab, PostgreSQL writes one inside a value as `\;`; the masker split
/// the value there, so the rest of it was judged by later columns'
/// rules (and a column passed unmasked would have let it through).
#[test]
fn text_escaped_delimiter_stays_in_its_field() {
    let m = masker(Strategy::Redact);
    let p = plan(&m, &["secret", "id"]);
    let f = CopyFormat::Text {
        delimiter: b';',
        null: b"\\N".to_vec(),
    };
    let data = b"a\\;b\\; 378282246310005;7\n";
    assert_eq!(
        check_splits(&m, &p, &f, data),
        b"[redacted];7\n",
        "the whole first field is the secret column's"
    );
    // A trailing backslash (malformed) ends the field with the row.
    assert_eq!(text_field_end(b"ab\\", 0, b';'), 3);
    assert_eq!(text_field_end(b"a\\\\;b", 0, b';'), 3);
}

#[test]
fn text_custom_delimiter_and_null_strategy() {
    // A replacement containing the delimiter is escaped.
    let m = masker(Strategy::Hash);
    let p = plan(&m, &["id", "secret"]);
    let f = CopyFormat::Text {
        delimiter: b':',
        null: b"NULL".to_vec(),
    };
    let out = String::from_utf8(run(&m, &p, &f, &[b"1:abc\n2:NULL\n"])).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("1:hash\\:") && lines[0].len() == 2 + 6 + 16,
        "{out}"
    );
    assert_eq!(lines[1], "2:NULL");

    let m = masker(Strategy::Null);
    let p = plan(&m, &["id", "secret"]);
    assert_eq!(run(&m, &p, &f, &[b"1:abc\n"]), b"1:NULL\n");
    assert_eq!(
        run(&m, &p, &CopyFormat::text(), &[b"1\tabc\n"]),
        b"1\t\\N\n"
    );
}

#[test]
fn csv_quoting() {
    let m = masker(Strategy::Redact);
    let p = plan(&m, &["id", "email", "notes"]);
    let data = b"id,email,notes\n1,\"a,b@x.com\",\"line1\nline2 \"\"q\"\" c@d.org\"\n2,,\"\"\n3,plain,\"x,y\"\n";
    let out = check_splits(&m, &p, &CopyFormat::csv(true), data);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "id,email,notes\n1,\"a,[redacted]\",\"line1\nline2 \"\"q\"\" [redacted]\"\n2,,\"\"\n3,plain,\"x,y\"\n"
    );
    // Header line with an e-mail-looking column name is not masked.
    assert_eq!(
        run(&m, &p, &CopyFormat::csv(true), &[b"a@b.com\nc@d.io\n"]),
        b"a@b.com\n[redacted]\n"
    );
    // Without header the first line is data.
    assert_eq!(
        run(&m, &p, &CopyFormat::csv(false), &[b"a@b.com\n"]),
        b"[redacted]\n"
    );
}

#[test]
fn csv_escape_and_null_strategy() {
    let m = masker(Strategy::Null);
    let p = plan(&m, &["id", "secret", "notes"]);
    let f = CopyFormat::Csv {
        delimiter: b';',
        quote: b'\'',
        escape: b'\\',
        null: b"NULL".to_vec(),
        header: false,
    };
    let data = b"1;'x';'it\\'s c@d.org; ok'\n2;NULL;'NULL'\n";
    let out = check_splits(&m, &p, &f, data);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "1;NULL;'it\\'s [redacted]; ok'\n2;NULL;'NULL'\n"
    );
    // Quoted "NULL" is a string, masked → re-quoted so it stays a string.
    let m = masker(Strategy::Redact);
    let m2 = Masker::new(
        vec![MaskRule {
            name: "n".into(),
            columns: vec![],
            detectors: vec![],
            regex: vec!["zz".into()],
            strategy: Strategy::Partial { keep: 0 },
        }],
        [0; 32],
    )
    .unwrap();
    let _ = m;
    let f = CopyFormat::Csv {
        delimiter: b',',
        quote: b'"',
        escape: b'"',
        null: b"**".to_vec(),
        header: false,
    };
    assert_eq!(
        run(&m2, &m2.default_plan(), &f, &[b"\"zz\"\n"]),
        b"\"**\"\n"
    );
}

fn bin_stream(rows: &[Vec<Option<&[u8]>>]) -> Vec<u8> {
    let mut b = b"PGCOPY\n\xff\r\n\0".to_vec();
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&4u32.to_be_bytes());
    b.extend_from_slice(b"ext!");
    for r in rows {
        b.extend_from_slice(&(r.len() as i16).to_be_bytes());
        for f in r {
            match f {
                None => b.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(v) => {
                    b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    b.extend_from_slice(v);
                }
            }
        }
    }
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b
}

fn bin_plan(m: &Masker) -> RowPlan {
    let c = |name: &str, oid| ColumnInfo {
        name: name.into(),
        source: None,
        binary: true,
        type_oid: oid,
    };
    m.plan(
        &[c("id", 23), c("secret", 25), c("notes", 25), c("j", 3802)],
        &BTreeSet::new(),
    )
}

#[test]
fn binary_copy() {
    let m = masker(Strategy::Redact);
    let p = bin_plan(&m);
    let one = 1i32.to_be_bytes();
    let data = bin_stream(&[
        vec![
            Some(&one),
            Some(b"s"),
            Some(b"hi a@b.io"),
            Some(b"\x01{\"e\":\"x@y.io\"}"),
        ],
        vec![Some(&one), None, Some(b"clean"), Some(b"\x01{}")],
    ]);
    let out = check_splits(&m, &p, &CopyFormat::Binary, &data);
    let expect = bin_stream(&[
        vec![Some(&one), None, None, None],
        vec![Some(&one), None, Some(b"clean"), Some(b"\x01{}")],
    ]);
    assert_eq!(out, expect);
}

#[test]
fn binary_copy_with_oids() {
    let m = masker(Strategy::Redact);
    let p = bin_plan(&m);
    let mut data = b"PGCOPY\n\xff\r\n\0".to_vec();
    data.extend_from_slice(&(1u32 << 16).to_be_bytes());
    data.extend_from_slice(&0u32.to_be_bytes());
    // 2 fields + oid: oid "secret"-looking bytes must not be treated as column 0.
    data.extend_from_slice(&2i16.to_be_bytes());
    for v in [&b"oid1"[..], b"1234", b"s"] {
        data.extend_from_slice(&(v.len() as i32).to_be_bytes());
        data.extend_from_slice(v);
    }
    data.extend_from_slice(&(-1i16).to_be_bytes());
    let out = run(&m, &p, &CopyFormat::Binary, &[&data]);
    let mut expect = data[..19].to_vec();
    expect.extend_from_slice(&2i16.to_be_bytes());
    for v in [&b"oid1"[..], b"1234"] {
        expect.extend_from_slice(&(v.len() as i32).to_be_bytes());
        expect.extend_from_slice(v);
    }
    expect.extend_from_slice(&(-1i32).to_be_bytes());
    expect.extend_from_slice(&(-1i16).to_be_bytes());
    assert_eq!(out, expect);
}

#[test]
fn binary_errors() {
    let m = masker(Strategy::Redact);
    let p = bin_plan(&m);
    let mut st = MaskStats::default();
    let mut out = Vec::new();
    let feed_all = |data: &[u8]| {
        let mut cm = CopyMasker::new(&m, p.clone(), CopyFormat::Binary);
        let mut out = Vec::new();
        let mut st = MaskStats::default();
        cm.feed(data, &mut out, &mut st)?;
        cm.finish(&mut out, &mut st)
    };
    assert!(feed_all(b"PGCOPZ").is_err());
    let good = bin_stream(&[vec![Some(b"x"), Some(b"y")]]);
    assert!(feed_all(&good).is_ok());
    for cut in 1..good.len() {
        assert!(feed_all(&good[..cut]).is_err(), "truncated at {cut}");
    }
    let mut after = good.clone();
    after.push(0);
    assert!(feed_all(&after).is_err());
    let mut neg = bin_stream(&[]);
    neg.truncate(neg.len() - 2);
    neg.extend_from_slice(&1i16.to_be_bytes());
    neg.extend_from_slice(&(-2i32).to_be_bytes());
    assert!(feed_all(&neg).is_err());
    let mut crit = good.clone();
    crit[11] = 0x80;
    assert!(feed_all(&crit).is_err());
    // Errors also surface when the bad part arrives in a later feed.
    let mut cm = CopyMasker::new(&m, p.clone(), CopyFormat::Binary);
    cm.feed(&good[..25], &mut out, &mut st).unwrap();
    assert!(
        cm.feed(&[0xff, 0xff, 0xff, 0xf0], &mut out, &mut st)
            .is_err()
    );
}

#[test]
fn shared_masker_and_plan_mismatch() {
    let m = Arc::new(masker(Strategy::Redact));
    let p = plan(&m, &["id", "secret"]);
    let mut cm = CopyMasker::new_shared(m.clone(), p.clone(), CopyFormat::text());
    let mut out = Vec::new();
    let mut st = MaskStats::default();
    cm.feed(b"1\tx\n", &mut out, &mut st).unwrap();
    assert_eq!(out, b"1\t[redacted]\n");
    let other = masker(Strategy::Redact);
    let mut cm = CopyMasker::new(&other, p, CopyFormat::text());
    assert_eq!(
        cm.feed(b"1\tx\n", &mut out, &mut st),
        Err(MaskError::PlanMismatch)
    );
    assert_eq!(cm.finish(&mut out, &mut st), Err(MaskError::PlanMismatch));
}

#[test]
fn noop_plan_passes_through() {
    let empty = Masker::new(vec![], [0; 32]).unwrap();
    let p = empty.default_plan();
    assert!(p.is_noop());
    let data = b"anything \\ goes\nno\"newline";
    for f in [
        CopyFormat::text(),
        CopyFormat::csv(true),
        CopyFormat::Binary,
    ] {
        assert_eq!(run(&empty, &p, &f, &[data]), data);
    }
}

#[test]
fn stats_are_counted() {
    let m = masker(Strategy::Redact);
    let p = plan(&m, &["id", "secret", "notes"]);
    let mut cm = CopyMasker::new(&m, p, CopyFormat::text());
    let mut out = Vec::new();
    let mut st = MaskStats::default();
    cm.feed(
        b"1\ta\tx@y.io 4242424242424242\n2\tb\tz@y.io\n",
        &mut out,
        &mut st,
    )
    .unwrap();
    let mut s = st.take();
    s.sort();
    assert_eq!(
        s,
        vec![
            ("cols".into(), "secret".into(), 2),
            ("det".into(), "credit_card".into(), 1),
            ("det".into(), "email".into(), 2),
        ]
    );
}

fn formats() -> Vec<CopyFormat> {
    vec![
        CopyFormat::text(),
        CopyFormat::csv(true),
        CopyFormat::Csv {
            delimiter: b'|',
            quote: b'\'',
            escape: b'\\',
            null: b"N".to_vec(),
            header: false,
        },
        CopyFormat::Binary,
    ]
}

proptest! {
    #[test]
    fn random_streams_never_panic(
        chunks in proptest::collection::vec(proptest::collection::vec(
            prop_oneof![Just(b'\n'), Just(b'\t'), Just(b','), Just(b'"'), Just(b'\\'), Just(b'@'),
                        Just(b'.'), Just(b'4'), Just(b'\''), any::<u8>()], 0..40), 0..6),
    ) {
        let m = masker(Strategy::Partial { keep: 2 });
        for f in formats() {
            for p in [plan(&m, &["a", "secret", "c"]), m.default_plan()] {
                let mut cm = CopyMasker::new(&m, p, f.clone());
                let mut out = Vec::new();
                let mut st = MaskStats::default();
                for c in &chunks {
                    if cm.feed(c, &mut out, &mut st).is_err() { break; }
                }
                let _ = cm.finish(&mut out, &mut st);
            }
        }
    }

    /// Streams without anything to mask come out byte-identical, however split.
    #[test]
    fn no_match_is_identity(
        data in proptest::collection::vec(
            prop_oneof![Just(b'\n'), Just(b'\t'), Just(b','), Just(b'"'), Just(b'\\'),
                        Just(b'a'), Just(b'.'), Just(b' '), Just(b'\r')], 0..80),
        split in 0usize..80,
    ) {
        let m = masker(Strategy::Redact);
        let p = plan(&m, &["a", "b", "c"]);
        let split = split.min(data.len());
        for f in &formats()[..3] {
            prop_assert_eq!(&run(&m, &p, f, &[&data[..split], &data[split..]]), &data);
        }
    }

    /// Masked CSV/text output re-parses to the same number of rows and fields.
    #[test]
    fn masked_output_keeps_shape(
        rows in proptest::collection::vec(proptest::collection::vec(
            "[a-z@.,\"\\\\ \n\t]{0,12}", 3), 0..5),
    ) {
        let m = masker(Strategy::Redact);
        let p = plan(&m, &["a", "b", "c"]);
        // CSV: quote every field.
        let mut data = Vec::new();
        for r in &rows {
            let fields: Vec<String> = r.iter().map(|f| format!("\"{}\"", f.replace('"', "\"\""))).collect();
            data.extend_from_slice(fields.join(",").as_bytes());
            data.push(b'\n');
        }
        let out = run(&m, &p, &CopyFormat::csv(false), &[&data]);
        let l = Lines { csv: true, delim: b',', quote: b'"', escape: b'"', null: vec![] };
        let mut st = CsvScan::default();
        let mut rest = &out[..];
        let mut n = 0;
        while let Some(j) = find_row_end(&l, &mut st, rest) {
            let row = &rest[..j];
            let mut fs = 0; let mut nf = 1;
            loop { let (fe, _) = csv_field_end(&l, row, fs); if fe >= row.len() { break } fs = fe + 1; nf += 1; }
            prop_assert_eq!(nf, 3);
            rest = &rest[j + 1..];
            n += 1;
        }
        prop_assert_eq!(n, rows.len());
        // Text: escape every field.
        let mut data = Vec::new();
        for r in &rows {
            let fields: Vec<Vec<u8>> = r.iter().map(|f| { let mut o = Vec::new(); encode_text(f.as_bytes(), b'\t', &mut o); o }).collect();
            data.extend_from_slice(&fields.join(&b'\t'));
            data.push(b'\n');
        }
        let out = run(&m, &p, &CopyFormat::text(), &[&data]);
        let lines: Vec<&[u8]> = out.split(|&b| b == b'\n').collect();
        prop_assert_eq!(lines.len(), rows.len() + 1);
        for (line, r) in lines.iter().zip(&rows) {
            let fields: Vec<&[u8]> = line.split(|&b| b == b'\t').collect();
            prop_assert_eq!(fields.len(), 3);
            for (f, orig) in fields.iter().zip(r) {
                let mut d = Vec::new();
                decode_text(f, &mut d);
                if !orig.contains('@') { prop_assert_eq!(&d, orig.as_bytes()); }
            }
        }
    }
}

#[test]
fn text_codec_round_trip() {
    let all: Vec<u8> = (0u8..=255).collect();
    let mut enc = Vec::new();
    encode_text(&all, b'|', &mut enc);
    assert!(!enc.contains(&b'\n') && !enc.contains(&b'\t'));
    assert!(!enc.windows(2).any(|w| w[0] != b'\\' && w[1] == b'|'));
    let mut dec = Vec::new();
    decode_text(&enc, &mut dec);
    assert_eq!(dec, all);
    let mut d = Vec::new();
    decode_text(b"\\x4g\\777\\q\\", &mut d);
    assert_eq!(d, b"\x04g\xffq\\");
}
