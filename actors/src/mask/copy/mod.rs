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
//!
//! # Layout
//!
//! - `mod.rs` — [`CopyFormat`], [`CopyMasker`] and its stream state:
//!   `feed` and `finish`, cutting text and CSV data into rows.
//! - `rows.rs` — finding a row's end (with the CSV quote state carried
//!   across feeds) and masking one text or CSV row field by field.
//! - `text.rs` — text-format fields: where one ends, unescaping, escaping.
//! - `csv.rs` — CSV fields: where one ends, unquoting, quoting.
//! - `binary.rs` — binary format: header, tuples and trailer parsed across
//!   feeds; masked fields become NULL.
//! - `tests.rs` — the tests, property tests included.

use std::ops::Deref;
use std::sync::Arc;

use super::detectors::Hit;
use super::{Action, Decision, MaskError, MaskStats, Masker, RowPlan};

mod binary;
mod csv;
mod rows;
mod text;

use rows::{RowCtx, find_row_end};

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
}

impl CopyMasker<'static> {
    /// Like [`CopyMasker::new`], owning a shared handle to the masker.
    pub fn new_shared(masker: Arc<Masker>, plan: RowPlan, format: CopyFormat) -> Self {
        Self::with(MaskerRef::Shared(masker), plan, format)
    }
}

#[cfg(test)]
mod tests;
