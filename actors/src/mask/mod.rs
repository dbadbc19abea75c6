//! Masking of sensitive values in PostgreSQL query results, before they leave the
//! appliance (to the client and to the session recording).
//!
//! # Layout
//!
//! - `mod.rs` — configuration types ([`MaskRule`], [`Strategy`]), the compiled
//!   [`Masker`], column planning ([`Masker::plan`] → [`RowPlan`]), the per-value
//!   decision (column rule / detectors / pass), [`MaskStats`] and [`MaskError`].
//! - `detectors/` — the built-in detectors ([`DETECTORS`]) and custom regexes:
//!   byte-level scanners with cheap prechecks, producing byte ranges.
//! - `strategy.rs` — what replaces a match: `[redacted]`, partial `*`-masking,
//!   keyed hash, NULL.
//! - `row.rs` — [`Masker::mask_data_row`]: bounds-checked DataRow parsing and
//!   rewriting of only the masked columns.
//! - `copy/` — [`CopyMasker`]: COPY OUT streams in text, CSV and binary format,
//!   stateful across CopyData messages (rows may be split or batched); one file
//!   per format, `rows.rs` for the row buffer.
//! - `statement/` — masking of SQL text itself (literals in statements that
//!   reach recordings and logs), of Bind parameters ([`ParamRules`]), and of
//!   what the target's errors echo of them.
//! - `stream.rs` — [`stream::StreamMasker`]: a byte stream cut anywhere (SSH
//!   terminal output), with bounded hold-back so split secrets are caught.
//! - `detail.rs` — [`Masker::mask_text`]: ErrorResponse / NoticeResponse free text,
//!   with column-aware handling of `Key (..)=(..)` and `Failing row contains (..)`.
//!
//! # Column rules
//!
//! A rule's `columns` entries are `col`, `table.col` or `schema.table.col`,
//! compared case-insensitively (quoted identifiers are not supported; entries with
//! quotes or whitespace are rejected). An output column matches when its output
//! name equals a bare `col`, or when its resolved source matches (`col` → source
//! column, `table.col` → last part of the source table + column,
//! `schema.table.col` → exact). Aliases therefore do not bypass a rule whenever
//! the source is resolved. The first matching rule (configuration order) wins.
//!
//! **Computed columns (conservative).** A column without a resolved source (an
//! expression, a scalar sub-query, a function result) is masked with the first
//! rule whose column part (`col`, or the `col` of `table.col` /
//! `schema.table.col`) appears in the statement's `mentioned` identifiers. So
//! `SELECT lower(email) FROM customers` masks the computed column even though it
//! may not contain an e-mail any more; `SELECT count(*), max(id) FROM customers
//! WHERE email = ..` masks both computed columns too. This over-masks by design: we
//! cannot tell which expression derives from which column. `?`
//! (`ANY_COLUMN`: a whole row as one value, or a statement the gateway could
//! not read) in `mentioned` makes every computed column subject to the first
//! column rule; `*` (`SELECT *`) does not, its columns carry their sources.
//!
//! A rule may have both `columns` and detectors: the two parts are independent
//! (the columns are always masked; the detectors run on every other value).
//!
//! # Detectors
//!
//! Detectors run on every text-format value that no column rule masks, and on
//! text-like binary-format columns (OIDs 25 text, 1043 varchar, 1042 bpchar,
//! 19 name, 114 json, 3802 jsonb — its 1-byte version prefix is skipped —,
//! 142 xml, 705 unknown). Other binary-format columns are not scanned. `bytea` in
//! text format (hex) is not scanned either. When several rules enable the same
//! detector, the first rule's strategy applies. Each match is replaced in place
//! (`mail a@b.com now` → `mail [redacted] now`); overlapping matches are merged
//! into one span (the earliest-starting match's rule is used); if any match's
//! rule uses `null`, the whole value becomes NULL.
//!
//! Heuristics (see `detectors/` for the exact rules):
//! - `email`: `local@domain.tld`; local part `[A-Za-z0-9._%+-]` plus any non-ASCII
//!   byte, domain labels `[A-Za-z0-9-]`/non-ASCII separated by single dots, the
//!   TLD at least two letters (or `xn--` punycode). No dotless domains, no IP
//!   literals, no quoted local parts.
//! - `credit_card`: 13–19 digits passing Luhn, either glued together or in
//!   groups separated by one kind of single separator (space or dash); every group
//!   has ≥ 3 digits except a last group of 1–2 after groups of exactly 4
//!   (`4222 2222 2222 2`). Within a longer run of numbers the longest passing
//!   window of whole groups wins, so `call 555-1234 4242 4242 4242 4242` is found
//!   but phone numbers followed by dates never pair up. Digits glued to further
//!   digits are not considered (no 16-digit window inside a 20-digit number).
//! - `us_ssn`: `AAA-GG-SSSS` with dashes only (no undashed 9-digit form), area not
//!   000/666/9xx, group not 00, serial not 0000.
//! - `iban`: 2 letters, 2 digits, 11–30 alphanumerics, compact or in groups of 4
//!   separated by single spaces (the last group 1–4), not glued to a preceding
//!   alphanumeric; mod-97 must equal 1. Country codes/lengths are not checked.
//! - `aws_access_key`: `AKIA`/`ASIA` followed by 16 `[A-Z0-9]`.
//! - `secret_key`: (a) the value after `keyword=` / `keyword:` (also `:=`, and
//!   JSON `"keyword": "value"`) where the word before ends in password, passwd, pwd,
//!   secret, token, api_key/apikey/api-key, access_key, private_key, secret_key,
//!   signing_key, encryption_key, session_key, master_key, auth_key, passphrase,
//!   credentials or authorization — quoted values up to the closing quote,
//!   unquoted ones up to whitespace or `,;&)}]"'<>`, and `Bearer x`/`Basic x`
//!   including `x`; (b) a token of ≥ 32 chars of `[A-Za-z0-9+/_-]` (plus `=`
//!   padding) that looks random: at most 1/6 separators (`+/_-`); hex with digits
//!   and letters and Shannon entropy ≥ 3.0 bits/char; otherwise digits and
//!   letters (or ≥ 30 % each of upper and lower case), entropy ≥ 4.0 and a mean
//!   same-case letter run < 3 (CamelCase words have long lowercase runs). Tokens
//!   with `/_-` but not both letter cases (slugs, snake_case, paths, UUIDs) are
//!   judged on their longest segment only, which must be ≥ 20 chars
//!   (`secret_<hex>`). Random 32-char base64/hex tokens are caught > 99 % of the
//!   time; UUIDs, identifiers, paths and words are not. Undashed 32-hex ids and
//!   hashes (MD5, UUID without dashes) and base64 blobs ARE flagged: they cannot
//!   be told apart from keys. CamelCase identifiers with many one-letter words and
//!   digits (`GetCustomerOrdersByRegionAndDate2024V2`) can be false positives.
//! - `jwt`: `eyJ` + base64url (≥ 10 chars) `.` base64url (≥ 1) `.` base64url (≥ 0).
//! - `pem_private_key`: `-----BEGIN <LABEL> PRIVATE KEY-----` through the matching
//!   `-----END <LABEL> PRIVATE KEY-----`, or to the end of the value.
//! - custom `regex`: compiled with the `regex` crate (byte-oriented, linear time).
//!   Patterns that match the empty string (on a set of probe inputs) are rejected;
//!   empty matches are ignored at run time anyway.
//!
//! # Strategies
//!
//! - `redact` → `[redacted]` for the whole match.
//! - `partial{keep}` → every character (UTF-8 aware, not bytes) becomes `*` except
//!   the last `keep`; ASCII spaces and dashes are kept as they are and not counted,
//!   so `4242 4242 4242 4242` → `**** **** **** 4242`. At most half of the counted
//!   characters are ever revealed (`keep` is capped at `count / 2`).
//! - `hash` → `hash:` + the first 16 hex chars of HMAC-SHA256(key, matched bytes):
//!   stable for equal values under one key, not brute-forceable without the key.
//! - `null` → the whole value becomes NULL (COPY text/CSV: the null string). In free
//!   text ([`Masker::mask_text`]) `null` behaves like `redact`.
//!
//! **Binary format → NULL.** A binary-format value that must be masked (column
//! rule, or a detector match in a text-like binary column) is sent as NULL: we do
//! not re-encode binary representations.
//!
//! **Typed text columns → NULL.** A text-format value of a known non-string type
//! (bool, integers, float, numeric, money, date/time types, interval, uuid, inet,
//! cidr, macaddr, bit, bytea) that must be masked becomes NULL, because
//! `[redacted]`, `****4242` or `hash:..` would not parse as that type in the client.
//! Replacements inside json/jsonb text are not JSON-aware (a match inside a JSON
//! number produces invalid JSON).
//!
//! # Performance
//!
//! Values are scanned as bytes (no UTF-8 decoding). Each detector has a cheap
//! precheck (see `detectors/`): `memchr` for `@` and `=`/`:`, one multi-literal
//! search for `AKIA`/`ASIA`/`eyJ`/`-----BEGIN `; cards, SSNs, IBANs and long
//! tokens are located by classifying 64-byte blocks into per-class bit masks
//! (SSE2 on x86_64, a portable loop elsewhere) and searching those with bit
//! operations. Every scanner is linear in the value length (pathological inputs
//! are tested). Nothing is allocated for a value without
//! matches; [`CopyMasker`] reuses its scratch buffers. Unchanged rows are copied
//! verbatim, and a DataRow without changes is reported as `None` (zero copy).
//!
//! # Errors
//!
//! Malformed DataRow bodies and malformed binary COPY framing return
//! [`MaskError`]; the caller must end the session rather than forward the data.
//! Text/CSV COPY streams cannot be malformed at the framing level. A [`RowPlan`]
//! used with a different [`Masker`] than the one that made it (e.g. after a
//! configuration reload) yields [`MaskError::PlanMismatch`].
//!
//! # Ownership
//!
//! [`CopyMasker::new`] borrows the masker; [`CopyMasker::new_shared`] takes an
//! `Arc<Masker>` so the stream state can be stored in a session struct.
//!
//! # Limitations
//!
//! - Escapes inside values are not decoded beyond the COPY layer: an e-mail
//!   written as `alice\u0040example.com` inside JSON is not detected.
//! - `Failing row contains (..)` values are mapped to columns only with a
//!   [`TextContext`] listing the table's columns; otherwise only detectors apply.
//! - In COPY text/CSV a replacement is not checked against a custom NULL string
//!   that happens to equal it (CSV re-quotes such a value, text does not).
//! - Quoted identifiers in rules are not supported (names compare lowercased).

mod copy;
mod detail;
mod detectors;
mod row;
mod statement;
mod strategy;
pub mod stream;

/// A DataRow body built from its values, for tests here and elsewhere.
#[cfg(test)]
pub(crate) use row::tests::build_row;

use std::collections::BTreeSet;
use std::sync::Arc;

use aws_lc_rs::hmac;

pub use copy::{CopyFormat, CopyMasker};
pub use detail::TextContext;
pub use detectors::{Detector, detect};
pub use statement::{MaskedSql, ParamRules, Prepared, followed_name};

use detectors::{Hit, Scanner, Source};

/// What replaces a sensitive value (or the sensitive part of a value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Replace the match with `[redacted]`.
    Redact,
    /// Replace all but the last `keep` characters with `*` (spaces/dashes kept).
    Partial { keep: usize },
    /// `hash:` + 16 hex chars of HMAC-SHA256(key, value).
    Hash,
    /// The whole value becomes NULL.
    Null,
}

/// One masking rule as configured.
#[derive(Clone, Debug)]
pub struct MaskRule {
    pub name: String,
    pub columns: Vec<String>,
    pub detectors: Vec<String>,
    pub regex: Vec<String>,
    pub strategy: Strategy,
}

/// Names of the built-in detectors, as accepted in [`MaskRule::detectors`].
pub const DETECTORS: &[&str] = &[
    "email",
    "credit_card",
    "us_ssn",
    "iban",
    "aws_access_key",
    "secret_key",
    "jwt",
    "pem_private_key",
];

/// Malformed input from the server. The caller must end the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaskError {
    #[error("malformed DataRow: {0}")]
    DataRow(&'static str),
    #[error("malformed binary COPY data: {0}")]
    Copy(&'static str),
    /// The [`RowPlan`] was made by another [`Masker`] (e.g. before a configuration
    /// reload). A programming error: re-plan with the current masker.
    #[error("row plan was built by a different masker")]
    PlanMismatch,
}

/// One output column, from RowDescription (plus the caller's source resolution).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnInfo {
    /// Output name from RowDescription (may be an alias).
    pub name: String,
    /// Resolved source (`"schema.table"`, `"column"`) when the column comes
    /// straight from a table.
    pub source: Option<(String, String)>,
    /// Format code 1.
    pub binary: bool,
    pub type_oid: u32,
}

impl ColumnInfo {
    /// A text-format column of unknown type without a resolved source.
    pub fn named(name: &str) -> Self {
        ColumnInfo {
            name: name.to_string(),
            source: None,
            binary: false,
            type_oid: 0,
        }
    }

    /// A text-format column of unknown type resolved to `table` (`schema.table`) and `column`.
    pub fn from_table(name: &str, table: &str, column: &str) -> Self {
        ColumnInfo {
            name: name.to_string(),
            source: Some((table.to_string(), column.to_string())),
            binary: false,
            type_oid: 0,
        }
    }
}

/// How a column's values are treated, as decided by [`Masker::plan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ColumnAction {
    /// Forwarded untouched.
    Pass,
    /// Detectors (and custom regexes) run on each value.
    Detect,
    /// Every non-NULL value is masked with the named rule.
    Mask { rule: String },
}

/// Per-column plan for one result set. Cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct RowPlan {
    cols: Arc<[ColPlan]>,
    default: ColPlan,
    noop: bool,
    rule_names: Arc<[Arc<str>]>,
    /// [`Masker::id`] of the masker that made the plan (rule indices refer to it).
    masker_id: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Pass,
    Scan,
    Rule(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TypeClass {
    /// String-like in both formats; `skip` leading bytes in binary format (jsonb version).
    TextLike { skip: u8 },
    /// Known non-string scalar: text-format replacements become NULL.
    Typed,
    /// Never scanned by detectors (bytea); masking it yields NULL.
    NoScan,
    /// Unknown / other types: scanned in text format, not in binary format.
    Other,
}

impl TypeClass {
    pub(crate) fn of(oid: u32) -> TypeClass {
        match oid {
            25 | 1043 | 1042 | 19 | 114 | 142 | 705 => TypeClass::TextLike { skip: 0 },
            3802 => TypeClass::TextLike { skip: 1 },
            17 => TypeClass::NoScan,
            16 | 20 | 21 | 23 | 26 | 700 | 701 | 1700 | 790 | 1082 | 1083 | 1266 | 1114 | 1184
            | 1186 | 2950 | 869 | 650 | 829 | 774 | 1560 | 1562 => TypeClass::Typed,
            _ => TypeClass::Other,
        }
    }

    /// Whether detectors run on a value of this class in the given format.
    fn scanned(self, binary: bool) -> bool {
        match self {
            TypeClass::TextLike { .. } => true,
            TypeClass::Typed | TypeClass::Other => !binary,
            TypeClass::NoScan => false,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct ColPlan {
    pub(crate) action: Action,
    pub(crate) binary: bool,
    pub(crate) tclass: TypeClass,
    pub(crate) label: Arc<str>,
}

impl ColPlan {
    fn noop_in(&self, binary: bool) -> bool {
        match self.action {
            Action::Pass => true,
            Action::Scan => !self.tclass.scanned(binary),
            Action::Rule(_) => false,
        }
    }
}

impl RowPlan {
    /// True when no value of any column can change: the caller may skip masking.
    pub fn is_noop(&self) -> bool {
        self.noop
    }

    /// Number of planned columns (positions beyond use the default action).
    pub fn columns(&self) -> usize {
        self.cols.len()
    }

    /// The action for column `i` (positions beyond [`columns`](Self::columns) get the default).
    pub fn action(&self, i: usize) -> ColumnAction {
        let c = self.col(i);
        match c.action {
            Action::Pass => ColumnAction::Pass,
            Action::Scan if !c.tclass.scanned(c.binary) => ColumnAction::Pass,
            Action::Scan => ColumnAction::Detect,
            Action::Rule(r) => ColumnAction::Mask {
                rule: self.rule_names[r as usize].to_string(),
            },
        }
    }

    #[inline]
    pub(crate) fn col(&self, i: usize) -> &ColPlan {
        self.cols.get(i).unwrap_or(&self.default)
    }

    /// Whether this plan was made by `masker` (its rule indices are valid there).
    pub(crate) fn made_by(&self, masker: &Masker) -> bool {
        self.masker_id == masker.id
    }

    /// No-op check when every column is read in `binary` (or text) format.
    pub(crate) fn is_noop_in(&self, binary: bool) -> bool {
        self.default.noop_in(binary) && self.cols.iter().all(|c| c.noop_in(binary))
    }
}

/// Counts of masked values per (rule name, column name or detector name).
#[derive(Default, Debug, Clone)]
pub struct MaskStats {
    entries: Vec<(Arc<str>, Arc<str>, u64)>,
}

impl MaskStats {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drain the counts: `(rule, column-or-detector, count)`.
    pub fn take(&mut self) -> Vec<(String, String, u64)> {
        self.entries
            .drain(..)
            .map(|(r, l, n)| (r.to_string(), l.to_string(), n))
            .collect()
    }

    #[inline]
    pub(crate) fn add(&mut self, rule: &Arc<str>, label: &Arc<str>) {
        for e in &mut self.entries {
            if (Arc::ptr_eq(&e.0, rule) || *e.0 == **rule)
                && (Arc::ptr_eq(&e.1, label) || *e.1 == **label)
            {
                e.2 += 1;
                return;
            }
        }
        self.entries.push((rule.clone(), label.clone(), 1));
    }
}

/// A parsed `columns` entry, lowercased.
#[derive(Clone, Debug)]
struct ColumnPattern {
    schema: Option<String>,
    table: Option<String>,
    column: String,
}

/// A lowercased, split source: (schema, table, column).
struct SourceRef<'a> {
    schema: Option<&'a str>,
    table: &'a str,
    column: &'a str,
}

impl ColumnPattern {
    fn parse(s: &str) -> Result<ColumnPattern, String> {
        if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c == '"' || c == '`') {
            return Err(format!(
                "invalid column '{s}' (expected col, table.col or schema.table.col; quoted identifiers are not supported)"
            ));
        }
        let parts: Vec<String> = s.split('.').map(|p| p.to_lowercase()).collect();
        if parts.iter().any(|p| p.is_empty()) || parts.len() > 3 {
            return Err(format!(
                "invalid column '{s}' (expected col, table.col or schema.table.col)"
            ));
        }
        let mut it = parts.into_iter().rev();
        let column = it.next().unwrap_or_default();
        let table = it.next();
        let schema = it.next();
        Ok(ColumnPattern {
            schema,
            table,
            column,
        })
    }

    fn matches(&self, name: &str, source: Option<&SourceRef<'_>>) -> bool {
        match (&self.schema, &self.table) {
            (None, None) => name == self.column || source.is_some_and(|s| s.column == self.column),
            (None, Some(t)) => source.is_some_and(|s| s.column == self.column && s.table == t),
            (Some(sc), Some(t)) => source.is_some_and(|s| {
                s.column == self.column && s.table == t && s.schema == Some(sc.as_str())
            }),
            (Some(_), None) => false,
        }
    }
}

fn split_table(table: &str) -> (Option<&str>, &str) {
    match table.rsplit_once('.') {
        Some((s, t)) => (Some(s), t),
        None => (None, table),
    }
}

struct CompiledRule {
    name: Arc<str>,
    columns: Vec<ColumnPattern>,
    strategy: Strategy,
}

/// The compiled masking configuration. `Send + Sync`; share it behind an `Arc`.
pub struct Masker {
    rules: Vec<CompiledRule>,
    rule_names: Arc<[Arc<str>]>,
    key: hmac::Key,
    scanner: Scanner,
    /// Rule index per detector (first rule that enables it).
    det_rule: [Option<u32>; 8],
    det_labels: [Arc<str>; 8],
    /// Rule index and stats label per custom regex (global index).
    regex_rule: Vec<(u32, Arc<str>)>,
    has_columns: bool,
    /// The words the literal pass of client SQL looks for, compiled.
    words: statement::Words,
    /// Unique per `Masker::new`, to catch plans used with the wrong masker.
    id: u64,
}

static NEXT_MASKER_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Masker")
            .field("rules", &self.rule_names)
            .finish_non_exhaustive()
    }
}

/// Inputs on which a custom regex must not produce an empty match.
const EMPTY_PROBES: &[&[u8]] = &[
    b"",
    b" ",
    b"a",
    b"0",
    b"-",
    b"\n",
    b"a b",
    b"@",
    b"\xc3\xa9",
];

/// Outcome of looking at one value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    Unchanged,
    Null,
    /// Mask the whole value with this rule.
    Whole(u32),
    /// Replace the (sorted, merged) hits in the scratch vector.
    Spans,
}

impl Masker {
    /// Compile rules. Errors name the rule and the bad detector/regex/column.
    pub fn new(rules: Vec<MaskRule>, hash_key: [u8; 32]) -> Result<Masker, String> {
        let mut compiled = Vec::with_capacity(rules.len());
        let mut det_rule: [Option<u32>; 8] = [None; 8];
        let mut regexes = Vec::new();
        let mut regex_rule = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, r) in rules.into_iter().enumerate() {
            if r.name.trim().is_empty() {
                return Err(format!("mask rule #{}: name is empty", i + 1));
            }
            if !seen.insert(r.name.clone()) {
                return Err(format!("mask rule '{}': duplicate rule name", r.name));
            }
            if r.columns.is_empty() && r.detectors.is_empty() && r.regex.is_empty() {
                return Err(format!(
                    "mask rule '{}': needs at least one of columns, detectors, regex",
                    r.name
                ));
            }
            let idx = u32::try_from(i).map_err(|_| "too many mask rules".to_string())?;
            let mut columns = Vec::new();
            for c in &r.columns {
                columns.push(
                    ColumnPattern::parse(c).map_err(|e| format!("mask rule '{}': {e}", r.name))?,
                );
            }
            for d in &r.detectors {
                let det = Detector::from_name(d).ok_or_else(|| {
                    format!(
                        "mask rule '{}': unknown detector '{d}' (known: {})",
                        r.name,
                        DETECTORS.join(", ")
                    )
                })?;
                let slot = &mut det_rule[det as usize];
                if slot.is_none() {
                    *slot = Some(idx);
                }
            }
            for (k, pat) in r.regex.iter().enumerate() {
                let re = regex::bytes::Regex::new(pat)
                    .map_err(|e| format!("mask rule '{}': invalid regex '{pat}': {e}", r.name))?;
                if EMPTY_PROBES
                    .iter()
                    .any(|p| re.find_iter(p).any(|m| m.is_empty()))
                {
                    return Err(format!(
                        "mask rule '{}': regex '{pat}' can match the empty string",
                        r.name
                    ));
                }
                regexes.push(re);
                regex_rule.push((idx, Arc::from(format!("regex[{k}]"))));
            }
            compiled.push(CompiledRule {
                name: Arc::from(r.name.as_str()),
                columns,
                strategy: r.strategy,
            });
        }
        let dets: Vec<Detector> = Detector::ALL
            .iter()
            .copied()
            .filter(|d| det_rule[*d as usize].is_some())
            .collect();
        let scanner = Scanner::new(&dets, regexes).map_err(|e| format!("mask regex set: {e}"))?;
        let rule_names: Arc<[Arc<str>]> = compiled.iter().map(|r| r.name.clone()).collect();
        let has_columns = compiled.iter().any(|r| !r.columns.is_empty());
        let words = statement::Words::new(&compiled);
        Ok(Masker {
            rules: compiled,
            rule_names,
            key: hmac::Key::new(hmac::HMAC_SHA256, &hash_key),
            scanner,
            det_rule,
            det_labels: Detector::ALL.map(|d| Arc::from(d.name())),
            regex_rule,
            has_columns,
            words,
            id: NEXT_MASKER_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// No rules at all.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Some rule masks columns by name/source.
    pub fn has_column_rules(&self) -> bool {
        self.has_columns
    }

    /// Some rule enables a detector or a custom regex.
    pub fn has_detectors(&self) -> bool {
        !self.scanner.is_empty()
    }

    /// Decide, per output column, what happens to its values.
    ///
    /// `mentioned`: column identifiers referenced by the statement (lowercased last
    /// parts; `"*"` for `SELECT *`). See the module docs on computed columns.
    pub fn plan(&self, cols: &[ColumnInfo], mentioned: &BTreeSet<String>) -> RowPlan {
        // A whole row as one value, or a statement the gateway could not
        // read, could carry any column: the first column rule covers the
        // computed columns.
        let anything = mentioned.contains(crate::policy::classify::ANY_COLUMN);
        let mentioned_rule = self.rules.iter().position(|r| {
            (anything && !r.columns.is_empty())
                || r.columns.iter().any(|p| {
                    mentioned.iter().any(|m| {
                        let last = m.rsplit('.').next().unwrap_or(m);
                        last.eq_ignore_ascii_case(&p.column)
                            || (!last.is_ascii() && last.to_lowercase() == p.column)
                    })
                })
        });
        let planned: Vec<ColPlan> = cols
            .iter()
            .map(|c| {
                let name = c.name.to_lowercase();
                let src = c
                    .source
                    .as_ref()
                    .map(|(t, col)| (t.to_lowercase(), col.to_lowercase()));
                let src_ref = src.as_ref().map(|(t, col)| {
                    let (schema, table) = split_table(t);
                    SourceRef {
                        schema,
                        table,
                        column: col,
                    }
                });
                let mut rule = self.rule_for(&name, src_ref.as_ref());
                if rule.is_none() && c.source.is_none() {
                    rule = mentioned_rule;
                }
                let tclass = TypeClass::of(c.type_oid);
                let action = match rule {
                    Some(r) => Action::Rule(r as u32),
                    None if self.has_detectors() && tclass.scanned(c.binary) => Action::Scan,
                    None => Action::Pass,
                };
                ColPlan {
                    action,
                    binary: c.binary,
                    tclass,
                    label: Arc::from(c.name.as_str()),
                }
            })
            .collect();
        self.make_plan(planned)
    }

    /// A plan without column information: every column gets the default action
    /// (detectors, if any). Useful for COPY when the column list is unknown.
    pub fn default_plan(&self) -> RowPlan {
        self.make_plan(Vec::new())
    }

    fn make_plan(&self, cols: Vec<ColPlan>) -> RowPlan {
        let default = ColPlan {
            action: if self.has_detectors() {
                Action::Scan
            } else {
                Action::Pass
            },
            binary: false,
            tclass: TypeClass::Other,
            label: Arc::from("?"),
        };
        let noop = default.noop_in(false) && cols.iter().all(|c| c.noop_in(c.binary));
        RowPlan {
            cols: cols.into(),
            default,
            noop,
            rule_names: self.rule_names.clone(),
            masker_id: self.id,
        }
    }

    /// First rule whose column patterns match this (lowercased) name/source.
    fn rule_for(&self, name: &str, src: Option<&SourceRef<'_>>) -> Option<usize> {
        self.rules
            .iter()
            .position(|r| r.columns.iter().any(|p| p.matches(name, src)))
    }

    #[inline]
    fn hit_rule(&self, h: &Hit) -> u32 {
        match h.source {
            Source::Detector(d) => self.det_rule[d as usize].unwrap_or(0),
            Source::Regex(i) => self.regex_rule[i as usize].0,
        }
    }

    fn hit_label(&self, h: &Hit) -> &Arc<str> {
        match h.source {
            Source::Detector(d) => &self.det_labels[d as usize],
            Source::Regex(i) => &self.regex_rule[i as usize].1,
        }
    }

    /// Run the detectors on `v`, leaving sorted, merged hits in `hits`. `None` when
    /// nothing matched, else whether any hit's rule wants NULL.
    pub(crate) fn find_hits(&self, v: &[u8], hits: &mut Vec<Hit>) -> Option<bool> {
        hits.clear();
        self.scanner.scan(v, hits);
        if hits.is_empty() {
            return None;
        }
        hits.sort_unstable_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
        let mut null = false;
        let mut w = 0usize;
        for r in 0..hits.len() {
            let h = hits[r];
            if self.rules[self.hit_rule(&h) as usize].strategy == Strategy::Null {
                null = true;
            }
            if w > 0 && h.start < hits[w - 1].end {
                if h.end > hits[w - 1].end {
                    hits[w - 1].end = h.end;
                }
            } else {
                hits[w] = h;
                w += 1;
            }
        }
        hits.truncate(w);
        Some(null)
    }

    /// Count each (merged) hit under its rule and detector/regex label.
    pub(crate) fn count_hits(&self, hits: &[Hit], stats: &mut MaskStats) {
        for h in hits {
            let rule = self.hit_rule(h) as usize;
            stats.add(&self.rules[rule].name, self.hit_label(h));
        }
    }

    /// Decide what happens to one non-NULL value of column `col` read in `binary` format.
    #[inline]
    pub(crate) fn decide(
        &self,
        col: &ColPlan,
        binary: bool,
        v: &[u8],
        hits: &mut Vec<Hit>,
        stats: &mut MaskStats,
    ) -> Decision {
        match col.action {
            Action::Pass => Decision::Unchanged,
            Action::Rule(r) => {
                let rule = &self.rules[r as usize];
                stats.add(&rule.name, &col.label);
                if binary
                    || rule.strategy == Strategy::Null
                    || matches!(col.tclass, TypeClass::Typed | TypeClass::NoScan)
                {
                    Decision::Null
                } else {
                    Decision::Whole(r)
                }
            }
            Action::Scan => {
                if !col.tclass.scanned(binary) {
                    return Decision::Unchanged;
                }
                let v = match col.tclass {
                    TypeClass::TextLike { skip } if binary => v.get(skip as usize..).unwrap_or(v),
                    _ => v,
                };
                let Some(null) = self.find_hits(v, hits) else {
                    return Decision::Unchanged;
                };
                self.count_hits(hits, stats);
                if null || binary || col.tclass == TypeClass::Typed {
                    Decision::Null
                } else {
                    Decision::Spans
                }
            }
        }
    }

    /// Append the masked form of `v` for a `Whole` or `Spans` decision.
    pub(crate) fn render(&self, d: Decision, v: &[u8], hits: &[Hit], out: &mut Vec<u8>) {
        match d {
            Decision::Whole(r) => {
                strategy::render(&self.rules[r as usize].strategy, &self.key, v, out)
            }
            Decision::Spans => self.render_spans(v, hits, out),
            Decision::Unchanged => out.extend_from_slice(v),
            Decision::Null => out.extend_from_slice(strategy::REDACTED),
        }
    }

    pub(crate) fn render_spans(&self, v: &[u8], hits: &[Hit], out: &mut Vec<u8>) {
        let mut last = 0;
        for h in hits {
            out.extend_from_slice(&v[last..h.start]);
            let rule = &self.rules[self.hit_rule(h) as usize];
            strategy::render(&rule.strategy, &self.key, &v[h.start..h.end], out);
            last = h.end;
        }
        out.extend_from_slice(&v[last..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn rule(name: &str, columns: &[&str], detectors: &[&str], s: Strategy) -> MaskRule {
        MaskRule {
            name: name.into(),
            columns: columns.iter().map(|s| s.to_string()).collect(),
            detectors: detectors.iter().map(|s| s.to_string()).collect(),
            regex: vec![],
            strategy: s,
        }
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn new_validates() {
        let e =
            Masker::new(vec![rule("r1", &[], &["emial"], Strategy::Redact)], [0; 32]).unwrap_err();
        assert!(e.contains("r1") && e.contains("emial"), "{e}");
        let mut r = rule("r2", &[], &[], Strategy::Redact);
        r.regex = vec!["(".into()];
        let e = Masker::new(vec![r], [0; 32]).unwrap_err();
        assert!(e.contains("r2") && e.contains("invalid regex"), "{e}");
        for pat in ["a*", "x?", r"\b", "(?m)^", "(?:foo)?"] {
            let mut r = rule("r3", &[], &[], Strategy::Redact);
            r.regex = vec![pat.into()];
            let e = Masker::new(vec![r], [0; 32]).unwrap_err();
            assert!(e.contains("r3") && e.contains("empty"), "{pat}: {e}");
        }
        let e =
            Masker::new(vec![rule("r4", &["a..b"], &[], Strategy::Redact)], [0; 32]).unwrap_err();
        assert!(e.contains("r4") && e.contains("a..b"), "{e}");
        let e = Masker::new(vec![rule("r5", &[], &[], Strategy::Redact)], [0; 32]).unwrap_err();
        assert!(e.contains("r5"), "{e}");
        let e = Masker::new(
            vec![
                rule("dup", &["a"], &[], Strategy::Redact),
                rule("dup", &["b"], &[], Strategy::Redact),
            ],
            [0; 32],
        )
        .unwrap_err();
        assert!(e.contains("duplicate"), "{e}");
        let m = Masker::new(vec![], [0; 32]).unwrap();
        assert!(m.is_empty() && !m.has_detectors() && !m.has_column_rules());
    }

    #[test]
    fn plan_alias_source_and_computed() {
        let m = Masker::new(
            vec![
                rule("pii", &["customers.email"], &[], Strategy::Redact),
                rule("ssn", &["hr.people.ssn"], &[], Strategy::Hash),
                rule("notes", &["notes"], &[], Strategy::Null),
            ],
            [0; 32],
        )
        .unwrap();
        let cols = vec![
            ColumnInfo::from_table("e", "public.customers", "email"),
            ColumnInfo::from_table("id", "public.customers", "id"),
            ColumnInfo::named("lower"),
            ColumnInfo::from_table("ssn", "public.people", "ssn"),
            ColumnInfo::from_table("x", "HR.People", "SSN"),
            ColumnInfo::named("NOTES"),
            ColumnInfo::from_table("n2", "public.t", "notes"),
        ];
        let p = m.plan(&cols, &set(&["email", "id"]));
        assert_eq!(p.columns(), 7);
        let mask = |r: &str| ColumnAction::Mask { rule: r.into() };
        assert_eq!(p.action(0), mask("pii"), "alias must not bypass");
        assert_eq!(p.action(1), ColumnAction::Pass);
        assert_eq!(p.action(2), mask("pii"), "computed column mentioning email");
        assert_eq!(p.action(3), ColumnAction::Pass, "schema mismatch");
        assert_eq!(p.action(4), mask("ssn"));
        assert_eq!(p.action(5), mask("notes"), "bare name matches output name");
        assert_eq!(
            p.action(6),
            mask("notes"),
            "bare name matches source column"
        );
        assert_eq!(p.action(99), ColumnAction::Pass);
        assert!(!p.is_noop());

        // No mention → computed column untouched, '*' too; '?' (could be
        // anything) masks it with the first column rule.
        let p = m.plan(&[ColumnInfo::named("lower")], &set(&["*", "id"]));
        assert_eq!(p.action(0), ColumnAction::Pass);
        assert!(p.is_noop());
        let p = m.plan(&[ColumnInfo::named("lower")], &set(&["?", "id"]));
        assert_eq!(p.action(0), mask("pii"));
        // Qualified or upper-case mentions still count.
        let p = m.plan(&[ColumnInfo::named("x")], &set(&["c.EMAIL"]));
        assert_eq!(p.action(0), mask("pii"));
        // table.col does not match output name alone.
        let p = m.plan(&[ColumnInfo::named("email")], &set(&[]));
        assert_eq!(p.action(0), ColumnAction::Pass);
    }

    #[test]
    fn plan_detectors_and_types() {
        let m = Masker::new(vec![rule("d", &[], &["email"], Strategy::Redact)], [0; 32]).unwrap();
        let mk = |binary, oid| ColumnInfo {
            name: "c".into(),
            source: None,
            binary,
            type_oid: oid,
        };
        let p = m.plan(
            &[
                mk(false, 23),
                mk(true, 23),
                mk(true, 25),
                mk(true, 3802),
                mk(false, 17),
            ],
            &set(&[]),
        );
        assert_eq!(p.action(0), ColumnAction::Detect);
        assert_eq!(p.action(1), ColumnAction::Pass);
        assert_eq!(p.action(2), ColumnAction::Detect);
        assert_eq!(p.action(3), ColumnAction::Detect);
        assert_eq!(p.action(4), ColumnAction::Pass, "bytea not scanned");
        assert_eq!(p.action(5), ColumnAction::Detect, "default");
        let p = m.plan(&[mk(true, 23)], &set(&[]));
        assert!(!p.is_noop(), "default action scans text columns");
        assert!(m.has_detectors() && !m.has_column_rules());
    }

    #[test]
    fn thread_safety() {
        fn check<T: Send + Sync>() {}
        check::<Masker>();
        check::<RowPlan>();
        check::<MaskStats>();
        check::<CopyMasker<'static>>();
    }

    #[test]
    fn stats_counts() {
        let mut s = MaskStats::default();
        let a: Arc<str> = Arc::from("r");
        let b: Arc<str> = Arc::from("email");
        let b2: Arc<str> = Arc::from("email");
        s.add(&a, &b);
        s.add(&a, &b2);
        s.add(&a, &a);
        assert!(!s.is_empty());
        let mut t = s.take();
        t.sort();
        assert_eq!(
            t,
            vec![("r".into(), "email".into(), 2), ("r".into(), "r".into(), 1)]
        );
        assert!(s.is_empty());
    }
}
