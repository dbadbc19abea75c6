//! Rows of text and CSV data: where one ends (the CSV quote state carried
//! across feeds), and one row masked field by field.

use memchr::{memchr, memchr2};

use super::csv::{csv_field_end, decode_csv, encode_csv};
use super::text::{decode_text, encode_text, text_field_end};
use super::{Action, CsvScan, Decision, Lines, MaskStats, Masker, RowPlan, Scratch};

/// Index of the newline ending the current row in `buf`, continuing from `st`.
pub(super) fn find_row_end(l: &Lines, st: &mut CsvScan, buf: &[u8]) -> Option<usize> {
    if !l.csv {
        return memchr(b'\n', buf);
    }
    let mut i = 0;
    // An escape that ended the previous piece applies to this piece's first
    // byte; an empty piece (an empty CopyData) leaves it pending.
    if st.escape_pending
        && let Some(&c) = buf.first()
    {
        st.escape_pending = false;
        if c == l.quote || c == l.escape {
            i = 1;
        }
    }
    loop {
        let rest = buf.get(i..)?;
        if !st.in_quotes {
            let p = i + memchr2(b'\n', l.quote, rest)?;
            if buf[p] == b'\n' {
                *st = CsvScan::default();
                return Some(p);
            }
            st.in_quotes = true;
            i = p + 1;
        } else {
            let p = i + if l.escape == l.quote {
                memchr(l.quote, rest)?
            } else {
                memchr2(l.quote, l.escape, rest)?
            };
            if buf[p] == l.quote {
                st.in_quotes = false;
                i = p + 1;
            } else {
                // Escape inside quotes: the next char is literal if it is quote/escape.
                match buf.get(p + 1) {
                    None => {
                        st.escape_pending = true;
                        return None;
                    }
                    Some(&c) if c == l.quote || c == l.escape => i = p + 2,
                    Some(_) => i = p + 1,
                }
            }
        }
    }
}

pub(super) struct RowCtx<'a> {
    pub(super) masker: &'a Masker,
    pub(super) plan: &'a RowPlan,
    pub(super) l: &'a Lines,
}

impl RowCtx<'_> {
    pub(super) fn text_row(
        &self,
        sc: &mut Scratch,
        row: &[u8],
        out: &mut Vec<u8>,
        stats: &mut MaskStats,
    ) {
        let l = self.l;
        let mut copied = 0;
        let mut fs = 0;
        let mut idx = 0;
        loop {
            let fe = text_field_end(row, fs, l.delim);
            let col = self.plan.col(idx);
            let raw = &row[fs..fe];
            if col.action != Action::Pass && raw != &l.null[..] {
                let v: &[u8] = if memchr(b'\\', raw).is_some() {
                    sc.decoded.clear();
                    decode_text(raw, &mut sc.decoded);
                    &sc.decoded
                } else {
                    raw
                };
                let d = self.masker.decide(col, false, v, &mut sc.hits, stats);
                if d != Decision::Unchanged {
                    out.extend_from_slice(&row[copied..fs]);
                    if d == Decision::Null {
                        out.extend_from_slice(&l.null);
                    } else {
                        sc.value.clear();
                        self.masker.render(d, v, &sc.hits, &mut sc.value);
                        encode_text(&sc.value, l.delim, out);
                    }
                    copied = fe;
                }
            }
            if fe >= row.len() {
                break;
            }
            fs = fe + 1;
            idx += 1;
        }
        out.extend_from_slice(&row[copied..]);
    }

    pub(super) fn csv_row(
        &self,
        sc: &mut Scratch,
        row: &[u8],
        out: &mut Vec<u8>,
        stats: &mut MaskStats,
    ) {
        let l = self.l;
        let mut copied = 0;
        let mut fs = 0;
        let mut idx = 0;
        loop {
            let (fe, quoted) = csv_field_end(l, row, fs);
            let col = self.plan.col(idx);
            let raw = &row[fs..fe];
            if col.action != Action::Pass && (quoted || raw != &l.null[..]) {
                let v: &[u8] = if quoted {
                    sc.decoded.clear();
                    decode_csv(l, raw, &mut sc.decoded);
                    &sc.decoded
                } else {
                    raw
                };
                let d = self.masker.decide(col, false, v, &mut sc.hits, stats);
                if d != Decision::Unchanged {
                    out.extend_from_slice(&row[copied..fs]);
                    if d == Decision::Null {
                        out.extend_from_slice(&l.null);
                    } else {
                        sc.value.clear();
                        self.masker.render(d, v, &sc.hits, &mut sc.value);
                        encode_csv(l, &sc.value, out);
                    }
                    copied = fe;
                }
            }
            if fe >= row.len() {
                break;
            }
            fs = fe + 1;
            idx += 1;
        }
        out.extend_from_slice(&row[copied..]);
    }
}
