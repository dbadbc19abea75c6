//! Free text from ErrorResponse / NoticeResponse fields (message, detail, hint,
//! where, ...).
//!
//! Besides the detectors, PostgreSQL echoes row values in two well-known shapes:
//!
//! - `Key (col1, col2)=(v1, v2) already exists.` (also `is not present in table`,
//!   `is still referenced`, `conflicts with existing key (..)=(..)`): the column
//!   list is known, so each value whose column a column rule matches is masked
//!   with that rule. Expression index columns (`lower(email::text)`) match when any
//!   identifier in the expression matches. Without a table context, a rule entry
//!   `table.col` / `schema.table.col` matches on its column part (conservative).
//!   When the value list cannot be split unambiguously (a value contains `, `),
//!   the whole value list is masked with the first matching rule.
//! - `Failing row contains (v1, v2, ...)`: the columns are the table's, in
//!   attribute order, which the text does not name. With [`TextContext::columns`]
//!   values are mapped positionally; without it only the detectors apply
//!   (values of column-rule columns that no detector recognises stay visible — pass
//!   the context when the caller can resolve the table).
//!
//! The `null` strategy behaves like `redact` here.

use std::sync::Arc;

use memchr::{memchr, memchr_iter, memmem, memrchr};

use super::{MaskStats, Masker, split_table, strategy};

/// `ey (` of `Key (`, searched in every text masked: built once.
static KEY_OPEN: std::sync::LazyLock<memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memmem::Finder::new(b"ey (").into_owned());

/// Optional context for [`Masker::mask_text_with`], usually from the
/// ErrorResponse's `s` (schema) and `t` (table) fields plus a catalog lookup.
#[derive(Clone, Copy, Debug, Default)]
pub struct TextContext<'a> {
    /// `schema.table` (or just `table`) the error is about.
    pub table: Option<&'a str>,
    /// That table's columns in attribute order, for `Failing row contains (...)`.
    pub columns: Option<&'a [String]>,
}

/// Ends of the value list in `Key (..)=(..)<suffix>`.
const KEY_SUFFIXES: &[&[u8]] = &[
    b") already exists",
    b") is not present in table",
    b") is still referenced",
    b") conflicts with existing key",
    b") is duplicated",
];

#[derive(Clone, Copy)]
enum Kind {
    /// A column-aware span masked with this rule.
    Column(u32),
    /// A (merged) detector hit, index into the hits vector.
    Hit(usize),
}

impl Masker {
    /// Mask free text (see the module docs). `None` if unchanged.
    pub fn mask_text(&self, text: &str, stats: &mut MaskStats) -> Option<String> {
        self.mask_text_with(text, &TextContext::default(), stats)
    }

    /// [`mask_text`](Self::mask_text) for a text in a session's client
    /// encoding (an error or notice field). UTF-8 is masked as text;
    /// anything else (LATIN1, SJIS, ...) byte for byte, each byte read as
    /// the character of the same number, so ASCII contexts (`Key (col)=(`,
    /// `password=`) and ASCII detectors still match, as they do in
    /// DataRows, and the bytes around a masked span come back unchanged.
    pub fn mask_text_bytes(&self, value: &[u8], stats: &mut MaskStats) -> Option<Vec<u8>> {
        if let Ok(text) = std::str::from_utf8(value) {
            return self.mask_text(text, stats).map(String::into_bytes);
        }
        let wide: String = value.iter().map(|&b| char::from(b)).collect();
        let masked = self.mask_text(&wide, stats)?;
        Some(
            masked
                .chars()
                .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
                .collect(),
        )
    }

    /// [`mask_text`](Self::mask_text) with the table context of the error, which
    /// enables `table.col` matching and positional `Failing row contains` mapping.
    pub fn mask_text_with(
        &self,
        text: &str,
        ctx: &TextContext<'_>,
        stats: &mut MaskStats,
    ) -> Option<String> {
        if self.is_empty() || text.is_empty() {
            return None;
        }
        let b = text.as_bytes();
        let mut spans: Vec<(usize, usize, Kind)> = Vec::new();
        if self.has_columns {
            self.key_details(text, ctx, &mut spans, stats);
            self.failing_rows(text, ctx, &mut spans, stats);
        }
        let mut hits = Vec::new();
        if self.has_detectors() && self.find_hits(b, &mut hits).is_some() {
            spans.extend(
                hits.iter()
                    .enumerate()
                    .map(|(i, h)| (h.start, h.end, Kind::Hit(i))),
            );
        }
        if spans.is_empty() {
            return None;
        }
        // Column spans first at equal starts; overlapping spans merge into the first.
        spans.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then(matches!(a.2, Kind::Hit(_)).cmp(&matches!(b.2, Kind::Hit(_))))
        });
        let mut merged: Vec<(usize, usize, Kind)> = Vec::with_capacity(spans.len());
        for s in spans {
            match merged.last_mut() {
                Some(last) if s.0 < last.1 => last.1 = last.1.max(s.1),
                _ => merged.push(s),
            }
        }
        let mut out = Vec::with_capacity(b.len() + 16);
        let mut last = 0;
        for (s, e, kind) in merged {
            out.extend_from_slice(&b[last..s]);
            let rule = match kind {
                Kind::Column(r) => r,
                Kind::Hit(i) => {
                    self.count_hits(&hits[i..=i], stats);
                    self.hit_rule(&hits[i])
                }
            };
            strategy::render(
                &self.rules[rule as usize].strategy,
                &self.key,
                &b[s..e],
                &mut out,
            );
            last = e;
        }
        out.extend_from_slice(&b[last..]);
        Some(match String::from_utf8(out) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// First rule matching a column named in error text (lowercased identifier).
    fn rule_for_text_column(&self, ident: &str, table: Option<&str>) -> Option<u32> {
        let (schema, tbl) = match table {
            Some(t) => {
                let (s, t) = split_table(t);
                (s.map(str::to_lowercase), Some(t.to_lowercase()))
            }
            None => (None, None),
        };
        self.rules
            .iter()
            .position(|r| {
                r.columns.iter().any(|p| {
                    p.column == ident
                        && (tbl.is_none() || p.table.is_none() || p.table == tbl)
                        && (schema.is_none() || p.schema.is_none() || p.schema == schema)
                })
            })
            .map(|i| i as u32)
    }

    /// Rule for one entry of a `Key (..)` column list: any identifier in it.
    fn rule_for_key_column(&self, col: &str, table: Option<&str>) -> Option<u32> {
        identifiers(col).find_map(|id| self.rule_for_text_column(&id, table))
    }

    /// `Key (col, …)=(value, …)` spans of an error detail: every text
    /// masked is searched for them, statements included.
    fn key_details(
        &self,
        text: &str,
        ctx: &TextContext<'_>,
        spans: &mut Vec<(usize, usize, Kind)>,
        stats: &mut MaskStats,
    ) {
        let b = text.as_bytes();
        // Occurrences before `floor` were covered by an earlier one (keeps it linear).
        let mut floor = 0;
        for p in KEY_OPEN.find_iter(b) {
            if p < floor
                || p == 0
                || !matches!(b[p - 1], b'K' | b'k')
                || (p >= 2 && b[p - 2].is_ascii_alphanumeric())
            {
                continue;
            }
            let cs = p + 4;
            let line_end = memchr(b'\n', &b[cs..]).map_or(b.len(), |k| cs + k);
            let Some(eq) = memmem::find(&b[cs..line_end], b")=(").map(|k| cs + k) else {
                floor = line_end;
                continue;
            };
            let vs = eq + 3;
            let Some(ve) = key_values_end(b, vs) else {
                floor = line_end;
                continue;
            };
            floor = ve;
            let names = split_list(b, cs, eq);
            let rules: Vec<Option<u32>> = names
                .iter()
                .map(|&(s, e)| self.rule_for_key_column(&text[s..e], ctx.table))
                .collect();
            let labels: Vec<&str> = names.iter().map(|&(s, e)| &text[s..e]).collect();
            self.map_values(b, vs, ve, &rules, &labels, spans, stats);
        }
    }

    fn failing_rows(
        &self,
        text: &str,
        ctx: &TextContext<'_>,
        spans: &mut Vec<(usize, usize, Kind)>,
        stats: &mut MaskStats,
    ) {
        let Some(cols) = ctx.columns else { return };
        let b = text.as_bytes();
        let rules: Vec<Option<u32>> = cols
            .iter()
            .map(|c| self.rule_for_text_column(&c.to_lowercase(), ctx.table))
            .collect();
        if rules.iter().all(Option::is_none) {
            return;
        }
        let labels: Vec<&str> = cols.iter().map(String::as_str).collect();
        let mut floor = 0;
        for p in memmem::find_iter(b, b"Failing row contains (") {
            if p < floor {
                continue;
            }
            let vs = p + 22;
            let line_end = memchr(b'\n', &b[vs..]).map_or(b.len(), |k| vs + k);
            floor = line_end;
            let Some(ve) = memrchr(b')', &b[vs..line_end]).map(|k| vs + k) else {
                continue;
            };
            self.map_values(b, vs, ve, &rules, &labels, spans, stats);
        }
    }

    /// Mask the values of `b[vs..ve]` (a `, `-separated list) whose column has a rule.
    #[allow(clippy::too_many_arguments)]
    fn map_values(
        &self,
        b: &[u8],
        vs: usize,
        ve: usize,
        rules: &[Option<u32>],
        labels: &[&str],
        spans: &mut Vec<(usize, usize, Kind)>,
        stats: &mut MaskStats,
    ) {
        let Some(first) = rules.iter().position(Option::is_some) else {
            return;
        };
        let mut add = |s: usize, e: usize, i: usize| {
            let r = rules[i].unwrap_or(0);
            if s < e && &b[s..e] != b"null" {
                spans.push((s, e, Kind::Column(r)));
                stats.add(&self.rules[r as usize].name, &Arc::from(labels[i]));
            }
        };
        let vals = split_list(b, vs, ve);
        if vals.len() == rules.len() {
            for (i, &(s, e)) in vals.iter().enumerate() {
                if rules[i].is_some() {
                    add(s, e, i);
                }
            }
        } else {
            // Ambiguous split: mask the whole list with the first matching rule.
            add(vs, ve, first);
        }
    }
}

/// End (index of the closing parenthesis) of a `Key (..)=(` value list.
fn key_values_end(b: &[u8], vs: usize) -> Option<usize> {
    let line_end = memchr(b'\n', &b[vs..]).map_or(b.len(), |k| vs + k);
    for j in memchr_iter(b')', &b[vs..line_end]) {
        let j = vs + j;
        if KEY_SUFFIXES.iter().any(|s| b[j..].starts_with(s)) {
            return Some(j);
        }
    }
    memrchr(b')', &b[vs..line_end]).map(|k| vs + k)
}

/// Ranges of the `, `-separated items of `b[s..e]`.
fn split_list(b: &[u8], s: usize, e: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = s;
    for k in memmem::find_iter(&b[s..e], b", ") {
        let k = s + k;
        if k >= start {
            out.push((start, k));
            start = k + 2;
        }
    }
    out.push((start, e));
    out
}

/// Lowercased identifiers in a column expression; `"Quoted"` identifiers unquoted.
fn identifiers(expr: &str) -> impl Iterator<Item = String> + '_ {
    let mut rest = expr;
    std::iter::from_fn(move || {
        loop {
            let c = rest.chars().next()?;
            if c == '"' {
                let body = &rest[1..];
                let mut id = String::new();
                let mut chars = body.char_indices().peekable();
                let mut end = body.len();
                while let Some((i, ch)) = chars.next() {
                    if ch == '"' {
                        if chars.peek().is_some_and(|&(_, n)| n == '"') {
                            id.push('"');
                            chars.next();
                            continue;
                        }
                        end = i + 1;
                        break;
                    }
                    id.push(ch);
                }
                rest = &body[end.min(body.len())..];
                return Some(id.to_lowercase());
            }
            if c.is_alphanumeric() || c == '_' {
                let end = rest
                    .char_indices()
                    .find(|&(_, ch)| !(ch.is_alphanumeric() || ch == '_' || ch == '$'))
                    .map_or(rest.len(), |(i, _)| i);
                let id = rest[..end].to_lowercase();
                rest = &rest[end..];
                return Some(id);
            }
            rest = &rest[c.len_utf8()..];
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::{MaskRule, Strategy};
    use super::*;

    fn m(columns: &[&str], detectors: &[&str], strategy: Strategy) -> Masker {
        Masker::new(
            vec![MaskRule {
                name: "r".into(),
                columns: columns.iter().map(|s| s.to_string()).collect(),
                detectors: detectors.iter().map(|s| s.to_string()).collect(),
                regex: vec![],
                strategy,
            }],
            [5; 32],
        )
        .unwrap()
    }

    const KEY: &str = "Key (email)=(alice@example.com) already exists.";

    /// Found by the pg_target fuzz target: error texts in a non-UTF-8
    /// client encoding could not be read, so under a masking policy any
    /// LATIN1 error with an accent ended the session.
    #[test]
    fn key_detail_in_latin1() {
        let mut st = MaskStats::default();
        let mk = m(&["email"], &["credit_card"], Strategy::Redact);
        // "clé" in LATIN1: 0xE9 is not UTF-8.
        let text = b"cl\xe9 Key (email)=(ren\xe9@example.com) already exists. 4111 1111 1111 1111";
        assert_eq!(
            mk.mask_text_bytes(text, &mut st).as_deref(),
            Some(&b"cl\xe9 Key (email)=([redacted]) already exists. [redacted]"[..])
        );
        assert_eq!(
            mk.mask_text_bytes(KEY.as_bytes(), &mut st).as_deref(),
            Some(&b"Key (email)=([redacted]) already exists."[..])
        );
    }

    #[test]
    fn key_detail_with_column_rule() {
        let mut st = MaskStats::default();
        let mk = m(&["email"], &[], Strategy::Redact);
        assert_eq!(
            mk.mask_text(KEY, &mut st).as_deref(),
            Some("Key (email)=([redacted]) already exists.")
        );
        assert_eq!(st.take(), vec![("r".into(), "email".into(), 1)]);
        // table.col without context matches on the column part (conservative).
        let mk = m(&["customers.email"], &[], Strategy::Partial { keep: 3 });
        assert_eq!(
            mk.mask_text(KEY, &mut st).as_deref(),
            Some("Key (email)=(**************com) already exists.")
        );
        // With a context naming another table it does not.
        let ctx = TextContext {
            table: Some("public.orders"),
            columns: None,
        };
        assert_eq!(mk.mask_text_with(KEY, &ctx, &mut st), None);
        // Null strategy behaves like redact.
        let mk = m(&["email"], &[], Strategy::Null);
        assert_eq!(
            mk.mask_text(KEY, &mut st).as_deref(),
            Some("Key (email)=([redacted]) already exists.")
        );
        // Unrelated column: untouched.
        let mk = m(&["ssn"], &[], Strategy::Redact);
        assert_eq!(mk.mask_text(KEY, &mut st), None);
    }

    #[test]
    fn key_detail_with_detector() {
        let mut st = MaskStats::default();
        let mk = m(&[], &["email"], Strategy::Redact);
        assert_eq!(
            mk.mask_text(KEY, &mut st).as_deref(),
            Some("Key (email)=([redacted]) already exists.")
        );
        assert_eq!(st.take(), vec![("r".into(), "email".into(), 1)]);
        // Both: the column span wins, counted once.
        let mk = m(&["email"], &["email"], Strategy::Hash);
        let out = mk.mask_text(KEY, &mut st).unwrap();
        assert!(out.starts_with("Key (email)=(hash:") && out.ends_with(") already exists."));
        assert_eq!(st.take().len(), 1);
    }

    #[test]
    fn multi_column_and_expression_keys() {
        let mut st = MaskStats::default();
        let mk = m(&["name"], &[], Strategy::Redact);
        assert_eq!(
            mk.mask_text(
                "Key (tenant_id, name)=(42, Bob Smith) already exists.",
                &mut st
            )
            .as_deref(),
            Some("Key (tenant_id, name)=(42, [redacted]) already exists.")
        );
        // Ambiguous split (a value contains ", "): whole list masked.
        assert_eq!(
            mk.mask_text(
                "Key (tenant_id, name)=(42, Smith, Bob) already exists.",
                &mut st
            )
            .as_deref(),
            Some("Key (tenant_id, name)=([redacted]) already exists.")
        );
        // Expression index and quoted identifier.
        let mk = m(&["email"], &[], Strategy::Redact);
        assert_eq!(
            mk.mask_text("Key (lower(email::text))=(a@b.c) already exists.", &mut st)
                .as_deref(),
            Some("Key (lower(email::text))=([redacted]) already exists.")
        );
        assert_eq!(
            mk.mask_text(
                "Key (\"Email\")=(x) is not present in table \"t\".",
                &mut st
            )
            .as_deref(),
            Some("Key (\"Email\")=([redacted]) is not present in table \"t\".")
        );
        // Value containing ')' is kept whole thanks to the suffix.
        assert_eq!(
            mk.mask_text("Key (email)=(a) b) already exists.", &mut st)
                .as_deref(),
            Some("Key (email)=([redacted]) already exists.")
        );
        // Exclusion constraint: both key lists.
        assert_eq!(
            mk.mask_text(
                "Key (email)=(x) conflicts with existing key (email)=(y).",
                &mut st
            )
            .as_deref(),
            Some("Key (email)=([redacted]) conflicts with existing key (email)=([redacted]).")
        );
    }

    #[test]
    fn failing_row() {
        let mut st = MaskStats::default();
        let text = "Failing row contains (1, Bob, bob@x.org, null).";
        let mk = m(&["customers.name", "phone"], &[], Strategy::Redact);
        // Unknown mapping → detectors only (none here).
        assert_eq!(mk.mask_text(text, &mut st), None);
        let cols: Vec<String> = ["id", "name", "email", "phone"].map(String::from).to_vec();
        let ctx = TextContext {
            table: Some("public.customers"),
            columns: Some(&cols),
        };
        assert_eq!(
            mk.mask_text_with(text, &ctx, &mut st).as_deref(),
            Some("Failing row contains (1, [redacted], bob@x.org, null).")
        );
        let mk = m(&[], &["email"], Strategy::Redact);
        assert_eq!(
            mk.mask_text(text, &mut st).as_deref(),
            Some("Failing row contains (1, Bob, [redacted], null).")
        );
    }

    #[test]
    fn plain_messages() {
        let mut st = MaskStats::default();
        let mk = m(&["email"], &["email", "credit_card"], Strategy::Redact);
        assert_eq!(
            mk.mask_text(
                "invalid input syntax for type integer: \"4242 4242 4242 4242\"",
                &mut st
            )
            .as_deref(),
            Some("invalid input syntax for type integer: \"[redacted]\"")
        );
        assert_eq!(mk.mask_text("relation \"x\" does not exist", &mut st), None);
        assert_eq!(mk.mask_text("", &mut st), None);
        // Non-ASCII text survives.
        assert_eq!(
            mk.mask_text("Schlüssel (email)=(jürgen@bücher.de) existiert", &mut st)
                .as_deref(),
            Some("Schlüssel (email)=([redacted]) existiert")
        );
    }

    /// Inputs that would make a naive scanner quadratic finish quickly.
    #[test]
    fn pathological_inputs_are_linear() {
        let mk = Masker::new(
            vec![MaskRule {
                name: "all".into(),
                columns: vec!["email".into()],
                detectors: super::super::DETECTORS
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                regex: vec![r"x+y".into()],
                strategy: Strategy::Partial { keep: 2 },
            }],
            [1; 32],
        )
        .unwrap();
        let cols: Vec<String> = vec!["email".into()];
        let ctx = TextContext {
            table: None,
            columns: Some(&cols),
        };
        let n = 100_000;
        for unit in [
            "eyJ",
            "eyJhbGciOiJIUzI1NiJ9.eyJ",
            "Key (",
            "Key (email)=(",
            "Failing row contains (",
            "a@",
            "@a.",
            "-----BEGIN RSA PRIVATE KEY-----",
            "password=\"\\\"",
            "token: ",
            "1 ",
            "12-",
            "AKIA",
            "DE89 ",
            "aB3+",
            "x",
        ] {
            let text = unit.repeat(n / unit.len());
            let t = std::time::Instant::now();
            let mut st = MaskStats::default();
            let _ = mk.mask_text_with(&text, &ctx, &mut st);
            let el = t.elapsed();
            assert!(el.as_secs_f64() < 5.0, "{unit:?} took {el:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn mask_text_never_panics(parts in proptest::collection::vec(proptest::sample::select(vec![
            "Key (", ")=(", ", ", ") already exists", "Failing row contains (", "email", "name",
            "@", "a", "x.com", ")", "(", "\"", "4242 ", "123-45-6789", "-----BEGIN RSA PRIVATE KEY-----",
            "eyJhbGciOiJIUzI1NiJ9", ".", "password=", "AKIA", "é", "\n", "null", "lower(",
        ]), 0..30)) {
            let text: String = parts.concat();
            let mk = Masker::new(
                vec![MaskRule {
                    name: "r".into(),
                    columns: vec!["email".into(), "t.name".into()],
                    detectors: super::super::DETECTORS.iter().map(|s| s.to_string()).collect(),
                    regex: vec![],
                    strategy: Strategy::Hash,
                }],
                [2; 32],
            )
            .unwrap();
            let cols: Vec<String> = vec!["id".into(), "email".into(), "name".into()];
            let mut st = MaskStats::default();
            let _ = mk.mask_text(&text, &mut st);
            let ctx = TextContext { table: Some("s.t"), columns: Some(&cols) };
            if let Some(out) = mk.mask_text_with(&text, &ctx, &mut st) {
                proptest::prop_assert!(!out.is_empty());
            }
        }
    }

    #[test]
    fn identifier_extraction() {
        let ids: Vec<String> = identifiers("lower((\"My \"\"Col\"\"\")::text), x_1").collect();
        assert_eq!(ids, ["lower", "my \"col\"", "text", "x_1"]);
    }
}
