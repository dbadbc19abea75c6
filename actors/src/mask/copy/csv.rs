//! CSV fields: where one ends, and its quoting undone and redone.

use memchr::{memchr, memchr2};

use super::Lines;

/// End of the CSV field starting at `start` (index of the delimiter or row end),
/// and whether it contained a quoted section. PostgreSQL semantics: a quote opens
/// a quoted section anywhere in a field.
pub(super) fn csv_field_end(l: &Lines, row: &[u8], start: usize) -> (usize, bool) {
    let mut i = start;
    let mut quoted = false;
    loop {
        let Some(k) = memchr2(l.delim, l.quote, &row[i..]) else {
            return (row.len(), quoted);
        };
        let p = i + k;
        if row[p] == l.delim {
            return (p, quoted);
        }
        quoted = true;
        i = p + 1;
        // Inside quotes.
        loop {
            let found = if l.escape == l.quote {
                memchr(l.quote, &row[i..])
            } else {
                memchr2(l.quote, l.escape, &row[i..])
            };
            let Some(k) = found else {
                return (row.len(), true);
            };
            let p = i + k;
            let next = row.get(p + 1).copied();
            if row[p] == l.escape && next.is_some_and(|c| c == l.quote || c == l.escape) {
                i = p + 2;
                continue;
            }
            if row[p] == l.quote {
                i = p + 1;
                break;
            }
            i = p + 1;
        }
    }
}

pub(super) fn decode_csv(l: &Lines, raw: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    let mut in_q = false;
    while i < raw.len() {
        let b = raw[i];
        if !in_q {
            if b == l.quote {
                in_q = true;
            } else {
                out.push(b);
            }
            i += 1;
            continue;
        }
        if b == l.escape
            && let Some(&c) = raw.get(i + 1)
            && (c == l.quote || c == l.escape)
        {
            out.push(c);
            i += 2;
            continue;
        }
        if b == l.quote {
            in_q = false;
        } else {
            out.push(b);
        }
        i += 1;
    }
}

/// Write a CSV field, quoted when it contains the delimiter, quote, CR/LF, or
/// would read back as NULL (or as the end-of-data marker).
pub(super) fn encode_csv(l: &Lines, v: &[u8], out: &mut Vec<u8>) {
    let needs = v == &l.null[..]
        || v == b"\\."
        || v.iter()
            .any(|&b| b == l.delim || b == l.quote || b == b'\n' || b == b'\r');
    if !needs {
        out.extend_from_slice(v);
        return;
    }
    out.push(l.quote);
    for &b in v {
        if b == l.quote || b == l.escape {
            out.push(l.escape);
        }
        out.push(b);
    }
    out.push(l.quote);
}
