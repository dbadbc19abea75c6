//! Target `mask_copy`: COPY TO STDOUT masking in text, CSV and binary
//! formats, with the same oracle as `mask_rows`.
//!
//! Generated rows (with NULLs and planted secrets) are encoded here, from
//! the COPY documentation, in a format with generated options (delimiter,
//! quote, escape, NULL string, header), cut into CopyData messages at
//! generated points and fed to `CopyMasker`. The output, decoded here
//! again, must hold the same rows and fields, NULLs kept, passed columns
//! unchanged, every masked or scanned value exactly as the reference model
//! says and no planted secret. Arbitrary bytes as COPY data must never
//! panic and must come out as the same number of lines.

use arbitrary::Unstructured;
use gatehouse_actors::mask::{CopyFormat, CopyMasker, MaskStats};

use crate::mask_model;

type Row = Vec<Option<Vec<u8>>>;

pub fn check(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let _ = run(&mut u);
}

fn run(u: &mut Unstructured) -> arbitrary::Result<()> {
    let s = mask_model::setup(u, false)?;
    let format = match u.int_in_range(0..=4)? {
        0 => CopyFormat::Binary,
        1 | 2 => CopyFormat::Text {
            delimiter: *u.choose(b"\t,|;")?,
            // Text format does not escape a value equal to the NULL string,
            // so only PostgreSQL's default, which no value can equal once
            // its backslash is escaped, keeps the oracle exact.
            null: b"\\N".to_vec(),
        },
        _ => {
            let quote = *u.choose(b"\"'")?;
            CopyFormat::Csv {
                delimiter: *u.choose(b",;|\t")?,
                quote,
                escape: if u.arbitrary()? { quote } else { b'\\' },
                null: u.choose(&["", "NULL", "\\N"])?.as_bytes().to_vec(),
                header: u.arbitrary()?,
            }
        }
    };
    let raw = u.ratio(1, 6)?;
    let width = u.int_in_range(1..=s.columns.len() + 2)?;
    let mut rows: Vec<Row> = Vec::new();
    let mut planted: Vec<Vec<Vec<&str>>> = Vec::new();
    for _ in 0..u.int_in_range(0..=5)? {
        let mut row = Vec::new();
        let mut p = Vec::new();
        for _ in 0..width {
            if u.ratio(1, 6)? {
                row.push(None);
                p.push(Vec::new());
            } else {
                let (v, secrets) = mask_model::value(u)?;
                row.push(Some(v));
                p.push(secrets);
            }
        }
        rows.push(row);
        planted.push(p);
    }
    let (stream, header) = if raw {
        (u.bytes(u.len().min(512))?.to_vec(), None)
    } else {
        encode(&format, &rows)
    };
    // Cut into CopyData messages.
    let mut cuts: Vec<usize> = Vec::new();
    for _ in 0..u.int_in_range(0..=6)? {
        cuts.push(u.int_in_range(0..=stream.len())?);
    }
    cuts.sort_unstable();
    cuts.push(stream.len());
    let mut masker = CopyMasker::new(s.masker, s.plan.clone(), format.clone());
    let mut stats = MaskStats::default();
    let mut out = Vec::new();
    let mut at = 0;
    let mut failed = false;
    for cut in cuts {
        if masker.feed(&stream[at..cut], &mut out, &mut stats).is_err() {
            failed = true;
            break;
        }
        at = cut;
    }
    if !failed && masker.finish(&mut out, &mut stats).is_err() {
        failed = true;
    }
    if raw {
        if !matches!(format, CopyFormat::Binary) {
            assert!(!failed, "text and CSV COPY data cannot be malformed");
            if stream.iter().all(|b| *b != b'"' && *b != b'\'') {
                let lines = |b: &[u8]| b.iter().filter(|c| **c == b'\n').count();
                assert_eq!(
                    lines(&stream),
                    lines(&out),
                    "masking changed the line count"
                );
            }
        }
        return Ok(());
    }
    assert!(!failed, "well-formed COPY data was refused");
    let got = decode(&format, &out, header.is_some());
    if let Some(h) = header {
        assert!(out.starts_with(&h), "the CSV header changed");
    }
    assert_eq!(got.len(), rows.len(), "masking changed the row count");
    for (r, (want, got)) in rows.iter().zip(&got).enumerate() {
        assert_eq!(want.len(), got.len(), "row {r}: masking changed the width");
        for (i, (input, output)) in want.iter().zip(got).enumerate() {
            let binary = matches!(format, CopyFormat::Binary);
            mask_model::check_value(
                &s,
                i,
                binary,
                input.as_deref(),
                output.as_deref(),
                &planted[r][i],
            );
        }
    }
    Ok(())
}

/// Encode rows as PostgreSQL's COPY TO would. Returns the stream and the
/// header line, if any.
fn encode(format: &CopyFormat, rows: &[Row]) -> (Vec<u8>, Option<Vec<u8>>) {
    let mut out = Vec::new();
    match format {
        CopyFormat::Binary => {
            out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
            out.extend_from_slice(&0i32.to_be_bytes());
            out.extend_from_slice(&0i32.to_be_bytes());
            for row in rows {
                out.extend_from_slice(&(row.len() as i16).to_be_bytes());
                for v in row {
                    crate::wire::value(&mut out, v.as_deref());
                }
            }
            out.extend_from_slice(&(-1i16).to_be_bytes());
            (out, None)
        }
        CopyFormat::Text { delimiter, null } => {
            for row in rows {
                for (i, v) in row.iter().enumerate() {
                    if i > 0 {
                        out.push(*delimiter);
                    }
                    match v {
                        None => out.extend_from_slice(null),
                        Some(v) => {
                            for &b in v {
                                match b {
                                    b'\\' => out.extend_from_slice(b"\\\\"),
                                    b'\n' => out.extend_from_slice(b"\\n"),
                                    b'\r' => out.extend_from_slice(b"\\r"),
                                    b'\t' => out.extend_from_slice(b"\\t"),
                                    b if b == *delimiter => out.extend_from_slice(&[b'\\', b]),
                                    b => out.push(b),
                                }
                            }
                        }
                    }
                }
                out.push(b'\n');
            }
            (out, None)
        }
        CopyFormat::Csv {
            delimiter,
            quote,
            escape,
            null,
            header,
        } => {
            let mut header_line = None;
            if *header {
                let line = b"col_a,col_b\n".to_vec();
                out.extend_from_slice(&line);
                header_line = Some(line);
            }
            for row in rows {
                for (i, v) in row.iter().enumerate() {
                    if i > 0 {
                        out.push(*delimiter);
                    }
                    match v {
                        None => out.extend_from_slice(null),
                        Some(v) => {
                            let needs = v == null
                                || v.as_slice() == b"\\."
                                || v.iter().any(|b| {
                                    [*delimiter, *quote, *escape, b'\n', b'\r'].contains(b)
                                });
                            if needs {
                                out.push(*quote);
                                for &b in v {
                                    if b == *quote || b == *escape {
                                        out.push(*escape);
                                    }
                                    out.push(b);
                                }
                                out.push(*quote);
                            } else {
                                out.extend_from_slice(v);
                            }
                        }
                    }
                }
                out.push(b'\n');
            }
            (out, header_line)
        }
    }
}

/// Decode COPY output back into rows, as a client would.
fn decode(format: &CopyFormat, data: &[u8], header: bool) -> Vec<Row> {
    match format {
        CopyFormat::Binary => {
            let mut rows = Vec::new();
            let mut p = 19;
            loop {
                let n = i16::from_be_bytes([data[p], data[p + 1]]);
                p += 2;
                if n == -1 {
                    assert_eq!(p, data.len(), "bytes after the binary trailer");
                    return rows;
                }
                let mut row = Vec::new();
                for _ in 0..n {
                    let len = i32::from_be_bytes([data[p], data[p + 1], data[p + 2], data[p + 3]]);
                    p += 4;
                    if len < 0 {
                        row.push(None);
                    } else {
                        row.push(Some(data[p..p + len as usize].to_vec()));
                        p += len as usize;
                    }
                }
                rows.push(row);
            }
        }
        CopyFormat::Text { delimiter, null } => {
            let mut rows = Vec::new();
            for line in data.split_inclusive(|b| *b == b'\n') {
                let line = line
                    .strip_suffix(b"\n")
                    .expect("every row ends in a newline");
                let mut row = Vec::new();
                for raw in split_text(line, *delimiter) {
                    if raw == null.as_slice() {
                        row.push(None);
                    } else {
                        row.push(Some(unescape(raw)));
                    }
                }
                rows.push(row);
            }
            rows
        }
        CopyFormat::Csv {
            delimiter,
            quote,
            escape,
            null,
            ..
        } => {
            let mut rows = Vec::new();
            let mut row = Vec::new();
            let mut field = Vec::new();
            let (mut quoted, mut in_quotes) = (false, false);
            let mut i = 0;
            let mut skip_header = header;
            while i < data.len() {
                let b = data[i];
                if skip_header {
                    if b == b'\n' {
                        skip_header = false;
                    }
                    i += 1;
                    continue;
                }
                if in_quotes {
                    if b == *escape
                        && i + 1 < data.len()
                        && (data[i + 1] == *quote || data[i + 1] == *escape)
                        && (escape != quote || data[i + 1] == *quote)
                    {
                        field.push(data[i + 1]);
                        i += 2;
                        continue;
                    }
                    if b == *quote {
                        in_quotes = false;
                    } else {
                        field.push(b);
                    }
                } else if b == *quote {
                    in_quotes = true;
                    quoted = true;
                } else if b == *delimiter || b == b'\n' {
                    let v = std::mem::take(&mut field);
                    row.push(if !quoted && v == *null { None } else { Some(v) });
                    quoted = false;
                    if b == b'\n' {
                        rows.push(std::mem::take(&mut row));
                    }
                } else {
                    field.push(b);
                }
                i += 1;
            }
            assert!(
                field.is_empty() && row.is_empty(),
                "a CSV row without its newline"
            );
            rows
        }
    }
}

/// Split a text-format line at unescaped delimiters.
fn split_text(line: &[u8], delimiter: u8) -> Vec<&[u8]> {
    let mut fields = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < line.len() {
        if line[i] == b'\\' {
            i += 2;
            continue;
        }
        if line[i] == delimiter {
            fields.push(&line[start..i]);
            start = i + 1;
        }
        i += 1;
    }
    fields.push(&line[start.min(line.len())..]);
    fields
}

/// Undo text-format escapes (the subset PostgreSQL writes, plus `\b \f \v`).
fn unescape(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\\' && i + 1 < raw.len() {
            out.push(match raw[i + 1] {
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'b' => 8,
                b'f' => 12,
                b'v' => 11,
                c => c,
            });
            i += 2;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    out
}
