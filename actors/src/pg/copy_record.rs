//! COPY data the client sends (`COPY … FROM STDIN`), as recorded: whole
//! rows up to [`MAX_RECORDED_COPY`], masked by the COPY's column list (text
//! and CSV) when the policy masks, then counted. The target always gets
//! the original bytes; this only shapes the copy the recording keeps.
//!
//! Conservative where the columns are not known (they mask more, never
//! less): a COPY without a column list, or data the gateway did not see
//! announced by a simple Query (a COPY prepared with Parse), has every
//! field masked by the first column rule, and is read as text format.
//! Binary COPY data is counted, not recorded: its typed fields would only
//! be hex.

use std::collections::BTreeSet;

use super::encoding::ClientEncoding;
use crate::mask::{ColumnInfo, CopyFormat, CopyMasker, MaskStats, Masker};
use crate::policy::classify::ANY_COLUMN;
use crate::policy::copy_source::CopySource;
use crate::recording::{Direction, EventKind};

/// COPY data kept per COPY; what follows is counted. Also bounds the
/// masking work one bulk load costs.
pub const MAX_RECORDED_COPY: usize = 1 << 20;

/// PostgreSQL's limit on a table's columns: a plan this wide covers every
/// field of a row whose columns are unknown.
const MAX_COLUMNS: usize = 1600;

/// The signature binary COPY data starts with.
const BINARY_SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// One COPY FROM STDIN being recorded.
pub struct CopyRecord {
    /// `None` without masks: rows are kept as sent.
    masker: Option<CopyMasker<'static>>,
    /// What the statement said, or `None` when the data was not announced.
    binary: Option<bool>,
    kept: Vec<u8>,
    /// Bytes sent that are not kept.
    cut: u64,
    /// The cap was reached (or the data could not be masked): everything
    /// from here on is only counted.
    full: bool,
    out: Vec<u8>,
    stats: MaskStats,
}

impl CopyRecord {
    /// Start recording the data of `sink` (the next COPY FROM STDIN of the
    /// running Query), or of a COPY the gateway did not see announced.
    pub fn start(masker: Option<&'static Masker>, sink: Option<CopySource>) -> Self {
        let binary = sink.as_ref().map(|s| s.format.binary);
        let masker = masker.map(|m| {
            let format = match &sink {
                Some(s) => s.format.to_format(),
                None => CopyFormat::text(),
            };
            let plan = match &sink {
                Some(s) if !s.columns.is_empty() => {
                    let columns: Vec<ColumnInfo> = s
                        .columns
                        .iter()
                        .map(|c| match &s.table {
                            Some(t) => ColumnInfo::from_table(c, t, c),
                            None => ColumnInfo::named(c),
                        })
                        .collect();
                    m.plan(&columns, &BTreeSet::new())
                }
                // Any field may be any column of the table.
                _ => m.plan(
                    &vec![ColumnInfo::named(""); MAX_COLUMNS],
                    &BTreeSet::from([ANY_COLUMN.to_owned()]),
                ),
            };
            CopyMasker::new(m, plan, format)
        });
        CopyRecord {
            masker,
            binary,
            kept: Vec::new(),
            cut: 0,
            full: false,
            out: Vec::new(),
            stats: MaskStats::default(),
        }
    }

    /// One CopyData body from the client.
    pub fn feed(&mut self, data: &[u8]) {
        if self.binary.is_none() {
            // Unannounced: binary data shows itself by its signature.
            self.binary = Some(data.starts_with(BINARY_SIGNATURE));
        }
        if self.full || self.binary == Some(true) {
            self.cut += data.len() as u64;
            return;
        }
        self.out.clear();
        let masked = match self.masker.as_mut() {
            Some(m) => m.feed(data, &mut self.out, &mut self.stats).is_ok(),
            None => {
                self.out.extend_from_slice(data);
                true
            }
        };
        if !masked {
            self.stop(data.len());
            return;
        }
        self.keep();
    }

    /// CopyDone or CopyFail: the events to record, the data kept (if any
    /// was) and what masking changed (if anything).
    pub fn finish(mut self, enc: ClientEncoding) -> Vec<EventKind> {
        if !self.full && self.binary != Some(true) {
            self.out.clear();
            if let Some(m) = self.masker.as_mut() {
                // A row left incomplete: masked as a row, or not kept.
                if m.finish(&mut self.out, &mut self.stats).is_ok() {
                    self.keep();
                }
            }
        }
        let mut events = Vec::new();
        if !self.kept.is_empty() {
            events.push(EventKind::CopyData {
                direction: Direction::Client,
                data: enc.text_or_hex(&self.kept),
                cut: self.cut,
            });
        }
        if !self.stats.is_empty() {
            events.push(EventKind::Masked {
                counts: self.stats.take(),
            });
        }
        events
    }

    /// Keep `self.out` up to the cap; at the cap, whole rows only.
    fn keep(&mut self) {
        let room = MAX_RECORDED_COPY - self.kept.len();
        if self.out.len() <= room {
            self.kept.extend_from_slice(&self.out);
            return;
        }
        let whole = self.out[..room]
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        self.kept.extend_from_slice(&self.out[..whole]);
        self.full = true;
        self.cut += (self.out.len() - whole) as u64;
    }

    fn stop(&mut self, sent: usize) {
        self.full = true;
        self.cut += sent as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::{MaskRule, Strategy};
    use crate::policy::copy_source::copy_sinks;

    fn masker() -> &'static Masker {
        Box::leak(Box::new(
            Masker::new(
                vec![
                    MaskRule {
                        name: "pii".into(),
                        columns: vec!["customers.ssn".into()],
                        detectors: vec![],
                        regex: vec![],
                        strategy: Strategy::Redact,
                    },
                    MaskRule {
                        name: "contact".into(),
                        columns: vec![],
                        detectors: vec!["email".into()],
                        regex: vec![],
                        strategy: Strategy::Redact,
                    },
                ],
                [3; 32],
            )
            .unwrap(),
        ))
    }

    fn recorded(masker: Option<&'static Masker>, sql: &str, data: &[&[u8]]) -> (String, u64) {
        let sink = copy_sinks(sql).into_iter().next();
        let mut r = CopyRecord::start(masker, sink);
        for d in data {
            r.feed(d);
        }
        match r.finish(ClientEncoding::UTF8).first() {
            Some(EventKind::CopyData { data, cut, .. }) => (data.clone(), *cut),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rows_are_masked_by_the_column_list_across_messages() {
        let (data, cut) = recorded(
            Some(masker()),
            "copy customers (id, ssn, note) from stdin",
            &[b"1\t123-45-6789\tmail a@b.org\n2\t98", b"7-65-4320\tok\n"],
        );
        assert_eq!(data, "1\t[redacted]\tmail [redacted]\n2\t[redacted]\tok\n");
        assert_eq!(cut, 0);
        // What masking changed follows the data: counts, never values.
        let sink = copy_sinks("copy customers (ssn) from stdin").pop();
        let mut r = CopyRecord::start(Some(masker()), sink);
        r.feed(b"123-45-6789\n");
        let events = r.finish(ClientEncoding::UTF8);
        let Some(EventKind::Masked { counts }) = events.get(1) else {
            panic!("{events:?}");
        };
        assert!(
            counts.iter().all(|(_, what, _)| !what.contains("123")),
            "{counts:?}"
        );
        assert!(
            counts.iter().any(|(rule, _, n)| rule == "pii" && *n == 1),
            "{counts:?}"
        );
        let (data, _) = recorded(
            Some(masker()),
            "copy customers (ssn, id) from stdin with (format csv, header)",
            &[b"ssn,id\n\"123-45-6789\",1\n"],
        );
        assert_eq!(data, "ssn,id\n[redacted],1\n");
        // Another table's ssn is not covered; detectors still run.
        let (data, _) = recorded(
            Some(masker()),
            "copy staff (ssn, mail) from stdin",
            &[b"123-45-6789\tx@y.org\n"],
        );
        assert_eq!(data, "123-45-6789\t[redacted]\n");
    }

    #[test]
    fn unknown_columns_mask_every_field() {
        let (data, _) = recorded(Some(masker()), "copy customers from stdin", &[b"1\tAnn\n"]);
        assert_eq!(data, "[redacted]\t[redacted]\n");
        let (data, _) = recorded(Some(masker()), "not a copy", &[b"1,Ann\n"]);
        assert_eq!(data, "[redacted]\n");
    }

    #[test]
    fn the_cap_keeps_whole_rows_and_counts_the_rest() {
        let row = vec![b'x'; 999];
        let mut line = row.clone();
        line.push(b'\n');
        let data: Vec<&[u8]> = std::iter::repeat_n(line.as_slice(), 2000).collect();
        let (kept, cut) = recorded(None, "copy t from stdin", &data);
        assert_eq!(kept.len() % 1000, 0);
        assert!(kept.len() <= MAX_RECORDED_COPY, "{}", kept.len());
        assert_eq!(kept.len() as u64 + cut, 2_000_000);
    }

    #[test]
    fn binary_copy_is_counted_not_recorded() {
        let sink = copy_sinks("copy t from stdin (format binary)").pop();
        let mut r = CopyRecord::start(Some(masker()), sink);
        r.feed(b"PGCOPY\n\xff\r\n\0 whatever");
        assert!(r.finish(ClientEncoding::UTF8).is_empty());
        let mut r = CopyRecord::start(Some(masker()), None);
        r.feed(b"PGCOPY\n\xff\r\n\0 whatever");
        assert!(r.finish(ClientEncoding::UTF8).is_empty());
    }
}
