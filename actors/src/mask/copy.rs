//! COPY OUT masking (text, CSV and binary formats).
//!
//! CopyData message boundaries are not row boundaries: [`CopyMasker`] keeps the
//! incomplete tail of a row between [`feed`](CopyMasker::feed) calls (with the CSV
//! quote state, so a long row is never rescanned) and emits every complete row.
//! Rows whose values do not change are copied verbatim; a masked text field is
//! re-escaped, a masked CSV field re-quoted when needed, a masked binary field
//! becomes NULL.
//!
//! When the plan cannot change anything, data is forwarded without parsing.

use std::ops::Deref;
use std::sync::Arc;

use memchr::{memchr, memchr2};

use super::detectors::Hit;
use super::{Action, Decision, MaskError, MaskStats, Masker, RowPlan};

/// COPY data format, from the COPY statement's options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CopyFormat {
    Text {
        delimiter: u8,
        null: Vec<u8>,
    },
    Csv {
        delimiter: u8,
        quote: u8,
        escape: u8,
        null: Vec<u8>,
        header: bool,
    },
    Binary,
}

impl CopyFormat {
    /// PostgreSQL's text defaults: tab delimiter, `\N` for NULL.
    pub fn text() -> CopyFormat {
        CopyFormat::Text {
            delimiter: b'\t',
            null: b"\\N".to_vec(),
        }
    }

    /// PostgreSQL's CSV defaults: `,` delimiter, `"` quote and escape, NULL = unquoted empty.
    pub fn csv(header: bool) -> CopyFormat {
        CopyFormat::Csv {
            delimiter: b',',
            quote: b'"',
            escape: b'"',
            null: Vec::new(),
            header,
        }
    }
}

/// Line-oriented format parameters (text and CSV).
#[derive(Default)]
struct Lines {
    csv: bool,
    delim: u8,
    quote: u8,
    escape: u8,
    null: Vec<u8>,
}

/// CSV row-boundary scan state carried across feeds.
#[derive(Default, Clone, Copy)]
struct CsvScan {
    in_quotes: bool,
    escape_pending: bool,
}

#[derive(Default)]
struct BinState {
    header_done: bool,
    has_oids: bool,
    trailer_seen: bool,
    /// Bytes the pending buffer needs before parsing is worth retrying.
    need: usize,
}

#[derive(Default)]
struct Scratch {
    decoded: Vec<u8>,
    value: Vec<u8>,
    hits: Vec<Hit>,
}

/// The masker a [`CopyMasker`] uses: borrowed, or shared (`Arc`) so that the
/// stream state can live in a session struct without borrowing.
enum MaskerRef<'m> {
    Borrowed(&'m Masker),
    Shared(Arc<Masker>),
}

impl Deref for MaskerRef<'_> {
    type Target = Masker;
    fn deref(&self) -> &Masker {
        match self {
            MaskerRef::Borrowed(m) => m,
            MaskerRef::Shared(m) => m,
        }
    }
}

/// Masks one COPY OUT stream; stateful across CopyData messages.
pub struct CopyMasker<'m> {
    masker: MaskerRef<'m>,
    /// The plan was made by another masker: every feed fails.
    mismatch: bool,
    plan: RowPlan,
    binary: bool,
    lines: Lines,
    passthrough: bool,
    pending: Vec<u8>,
    csv: CsvScan,
    header_pending: bool,
    bin: BinState,
    scratch: Scratch,
}

impl<'m> CopyMasker<'m> {
    /// `plan` is per column position; positions beyond it get the plan's default action.
    /// The plan's per-column `binary` flags are ignored: the COPY format decides.
    pub fn new(masker: &'m Masker, plan: RowPlan, format: CopyFormat) -> Self {
        Self::with(MaskerRef::Borrowed(masker), plan, format)
    }

    fn with(masker: MaskerRef<'m>, plan: RowPlan, format: CopyFormat) -> Self {
        let binary = matches!(format, CopyFormat::Binary);
        let passthrough = plan.is_noop_in(binary);
        let (lines, header_pending) = match format {
            CopyFormat::Text { delimiter, null } => (
                Lines {
                    csv: false,
                    delim: delimiter,
                    quote: 0,
                    escape: 0,
                    null,
                },
                false,
            ),
            CopyFormat::Csv {
                delimiter,
                quote,
                escape,
                null,
                header,
            } => (
                Lines {
                    csv: true,
                    delim: delimiter,
                    quote,
                    escape,
                    null,
                },
                header,
            ),
            CopyFormat::Binary => (Lines::default(), false),
        };
        CopyMasker {
            mismatch: !plan.made_by(&masker),
            masker,
            plan,
            binary,
            lines,
            passthrough,
            pending: Vec::new(),
            csv: CsvScan::default(),
            header_pending,
            bin: BinState::default(),
            scratch: Scratch::default(),
        }
    }

    /// Feed one CopyData body; append to `out` the bytes to send for every complete
    /// row (masked); keep a partial row for the next call. Errors only on malformed
    /// binary framing.
    pub fn feed(
        &mut self,
        data: &[u8],
        out: &mut Vec<u8>,
        stats: &mut MaskStats,
    ) -> Result<(), MaskError> {
        if self.mismatch {
            return Err(MaskError::PlanMismatch);
        }
        if self.passthrough {
            out.extend_from_slice(data);
            return Ok(());
        }
        if self.binary {
            return self.feed_binary(data, out, stats);
        }
        let mut rest = data;
        if !self.pending.is_empty() {
            match find_row_end(&self.lines, &mut self.csv, rest) {
                None => {
                    self.pending.extend_from_slice(rest);
                    return Ok(());
                }
                Some(j) => {
                    let mut row = std::mem::take(&mut self.pending);
                    row.extend_from_slice(&rest[..=j]);
                    self.emit_row(&row, out, stats);
                    row.clear();
                    self.pending = row;
                    rest = &rest[j + 1..];
                }
            }
        }
        while !rest.is_empty() {
            match find_row_end(&self.lines, &mut self.csv, rest) {
                None => {
                    self.pending.extend_from_slice(rest);
                    break;
                }
                Some(j) => {
                    self.emit_row(&rest[..=j], out, stats);
                    rest = &rest[j + 1..];
                }
            }
        }
        Ok(())
    }

    /// At CopyDone: flush what is left. A final text/CSV row without a newline is
    /// masked as a row; a partial binary tuple is an error.
    pub fn finish(&mut self, out: &mut Vec<u8>, stats: &mut MaskStats) -> Result<(), MaskError> {
        if self.mismatch {
            return Err(MaskError::PlanMismatch);
        }
        if self.passthrough {
            return Ok(());
        }
        if self.binary {
            if self.pending.is_empty() && (self.bin.trailer_seen || !self.bin.header_done) {
                return Ok(());
            }
            self.pending.clear();
            return Err(MaskError::Copy("truncated binary COPY data (no trailer)"));
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut row = std::mem::take(&mut self.pending);
        self.emit_row(&row, out, stats);
        row.clear();
        self.pending = row;
        self.csv = CsvScan::default();
        Ok(())
    }

    /// One complete line (with its terminator, if any).
    fn emit_row(&mut self, line: &[u8], out: &mut Vec<u8>, stats: &mut MaskStats) {
        if self.header_pending {
            self.header_pending = false;
            out.extend_from_slice(line);
            return;
        }
        let mut body = line;
        let mut term: &[u8] = b"";
        if let Some(b) = body.strip_suffix(b"\n") {
            body = b;
            term = b"\n";
            if let Some(b) = body.strip_suffix(b"\r") {
                body = b;
                term = b"\r\n";
            }
        }
        let ctx = RowCtx {
            masker: &self.masker,
            plan: &self.plan,
            l: &self.lines,
        };
        if self.lines.csv {
            ctx.csv_row(&mut self.scratch, body, out, stats);
        } else {
            ctx.text_row(&mut self.scratch, body, out, stats);
        }
        out.extend_from_slice(term);
    }

    fn feed_binary(
        &mut self,
        data: &[u8],
        out: &mut Vec<u8>,
        stats: &mut MaskStats,
    ) -> Result<(), MaskError> {
        if self.pending.is_empty() {
            let used = self.process_binary(data, out, stats)?;
            self.pending.extend_from_slice(&data[used..]);
            return Ok(());
        }
        self.pending.extend_from_slice(data);
        if self.pending.len() < self.bin.need {
            return Ok(());
        }
        let mut buf = std::mem::take(&mut self.pending);
        let res = self.process_binary(&buf, out, stats);
        if let Ok(used) = res {
            buf.drain(..used);
        }
        self.pending = buf;
        res.map(|_| ())
    }

    /// Parse as many complete header/tuple/trailer units of `buf` as possible,
    /// appending their (masked) bytes to `out`. Returns the bytes consumed.
    fn process_binary(
        &mut self,
        buf: &[u8],
        out: &mut Vec<u8>,
        stats: &mut MaskStats,
    ) -> Result<usize, MaskError> {
        const SIG: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
        let mut pos = 0usize;
        self.bin.need = 0;
        if !self.bin.header_done {
            let k = buf.len().min(11);
            if buf[..k] != SIG[..k] {
                return Err(MaskError::Copy("bad signature"));
            }
            let (Some(flags), Some(ext)) = (read_i32(buf, 11), read_i32(buf, 15)) else {
                self.bin.need = 19;
                return Ok(0);
            };
            let flags = flags as u32;
            if flags & 0xfffe_0000 != 0 {
                return Err(MaskError::Copy("unknown critical header flags"));
            }
            let ext = usize::try_from(ext)
                .map_err(|_| MaskError::Copy("negative header extension length"))?;
            let end = 19 + ext;
            if buf.len() < end {
                self.bin.need = end;
                return Ok(0);
            }
            out.extend_from_slice(&buf[..end]);
            pos = end;
            self.bin.header_done = true;
            self.bin.has_oids = flags & (1 << 16) != 0;
        }
        loop {
            if pos >= buf.len() {
                return Ok(pos);
            }
            if self.bin.trailer_seen {
                return Err(MaskError::Copy("data after trailer"));
            }
            let Some(count) = buf
                .get(pos..pos + 2)
                .map(|s| i16::from_be_bytes([s[0], s[1]]))
            else {
                self.bin.need = 2;
                return Ok(pos);
            };
            if count == -1 {
                out.extend_from_slice(&buf[pos..pos + 2]);
                pos += 2;
                self.bin.trailer_seen = true;
                continue;
            }
            if count < 0 {
                return Err(MaskError::Copy("negative field count"));
            }
            let nf = count as usize + usize::from(self.bin.has_oids);
            let mut q = pos + 2;
            for _ in 0..nf {
                let Some(len) = read_i32(buf, q) else {
                    self.bin.need = q + 4 - pos;
                    return Ok(pos);
                };
                q += 4;
                if len == -1 {
                    continue;
                }
                let len =
                    usize::try_from(len).map_err(|_| MaskError::Copy("invalid field length"))?;
                let end = q + len;
                if end > buf.len() {
                    self.bin.need = end - pos;
                    return Ok(pos);
                }
                q = end;
            }
            self.mask_tuple(&buf[pos..q], nf, out, stats);
            pos = q;
        }
    }

    /// `tuple` is complete and validated; masked fields become NULL.
    fn mask_tuple(&mut self, tuple: &[u8], nf: usize, out: &mut Vec<u8>, stats: &mut MaskStats) {
        let mut copied = 0;
        let mut q = 2;
        for fi in 0..nf {
            let Some(len) = read_i32(tuple, q) else { break };
            let vs = q + 4;
            if len < 0 {
                q = vs;
                continue;
            }
            let ve = vs + len as usize;
            let idx = if self.bin.has_oids {
                if fi == 0 {
                    q = ve;
                    continue;
                }
                fi - 1
            } else {
                fi
            };
            let col = self.plan.col(idx);
            let d = self
                .masker
                .decide(col, true, &tuple[vs..ve], &mut self.scratch.hits, stats);
            if d != Decision::Unchanged {
                out.extend_from_slice(&tuple[copied..q]);
                out.extend_from_slice(&(-1i32).to_be_bytes());
                copied = ve;
            }
            q = ve;
        }
        out.extend_from_slice(&tuple[copied..]);
    }
}

impl CopyMasker<'static> {
    /// Like [`CopyMasker::new`], owning a shared handle to the masker.
    pub fn new_shared(masker: Arc<Masker>, plan: RowPlan, format: CopyFormat) -> Self {
        Self::with(MaskerRef::Shared(masker), plan, format)
    }
}

#[inline]
fn read_i32(b: &[u8], pos: usize) -> Option<i32> {
    let s = b.get(pos..pos.checked_add(4)?)?;
    Some(i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Index of the newline ending the current row in `buf`, continuing from `st`.
fn find_row_end(l: &Lines, st: &mut CsvScan, buf: &[u8]) -> Option<usize> {
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

struct RowCtx<'a> {
    masker: &'a Masker,
    plan: &'a RowPlan,
    l: &'a Lines,
}

impl RowCtx<'_> {
    fn text_row(&self, sc: &mut Scratch, row: &[u8], out: &mut Vec<u8>, stats: &mut MaskStats) {
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

    fn csv_row(&self, sc: &mut Scratch, row: &[u8], out: &mut Vec<u8>, stats: &mut MaskStats) {
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

/// End of the text-format field starting at `start`: the next delimiter
/// that is not escaped, or the row's end. PostgreSQL writes a delimiter
/// inside a value as backslash + delimiter (any delimiter but the default
/// tab, which it writes as `\t`), so a bare search would split the value
/// and shift every later field onto another column's rule.
fn text_field_end(row: &[u8], start: usize, delim: u8) -> usize {
    let mut i = start;
    while let Some(k) = memchr2(b'\\', delim, &row[i..]) {
        let p = i + k;
        if row[p] == delim {
            return p;
        }
        // A backslash escapes the byte after it, whatever it is.
        i = p + 2;
        if i >= row.len() {
            return row.len();
        }
    }
    row.len()
}

/// Undo COPY text escapes (`\b \f \n \r \t \v \\`, octal `\NNN`, hex `\xHH`,
/// backslash + other char → that char).
fn decode_text(f: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while let Some(k) = memchr(b'\\', &f[i..]) {
        let p = i + k;
        out.extend_from_slice(&f[i..p]);
        let Some(&c) = f.get(p + 1) else {
            out.push(b'\\');
            return;
        };
        i = p + 2;
        match c {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut val = u32::from(c - b'0');
                while i < p + 4 && i < f.len() && (b'0'..=b'7').contains(&f[i]) {
                    val = val * 8 + u32::from(f[i] - b'0');
                    i += 1;
                }
                out.push((val & 0xff) as u8);
            }
            b'x' if f.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let mut val = 0u32;
                while i < p + 4 && i < f.len() && f[i].is_ascii_hexdigit() {
                    val = val * 16 + (f[i] as char).to_digit(16).unwrap_or(0);
                    i += 1;
                }
                out.push(val as u8);
            }
            _ => out.push(c),
        }
    }
    out.extend_from_slice(&f[i..]);
}

/// Escape a value for COPY text format.
fn encode_text(v: &[u8], delim: u8, out: &mut Vec<u8>) {
    for &b in v {
        let esc = match b {
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            8 => b'b',
            12 => b'f',
            11 => b'v',
            _ if b == delim => b,
            _ => {
                out.push(b);
                continue;
            }
        };
        out.push(b'\\');
        out.push(esc);
    }
}

/// End of the CSV field starting at `start` (index of the delimiter or row end),
/// and whether it contained a quoted section. PostgreSQL semantics: a quote opens
/// a quoted section anywhere in a field.
fn csv_field_end(l: &Lines, row: &[u8], start: usize) -> (usize, bool) {
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

fn decode_csv(l: &Lines, raw: &[u8], out: &mut Vec<u8>) {
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
fn encode_csv(l: &Lines, v: &[u8], out: &mut Vec<u8>) {
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::super::{ColumnInfo, MaskRule, Strategy};
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
}
