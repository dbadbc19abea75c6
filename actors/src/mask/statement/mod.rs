//! What the client sends, masked for the record: SQL text, Bind parameters
//! and FunctionCall arguments as the recording, approval requests and logs
//! show them. The target always gets the original bytes; only the copies
//! the appliance keeps or shows are masked.
//!
//! - Detectors run on every string literal (unescaped, so `E'a\x40b.org'`
//!   is seen as the address it is), then over the whole text (comments,
//!   identifiers, and SQL the parser cannot read).
//! - Column rules apply to the literals and `$n` parameters a statement
//!   assigns to or compares with a masked column: `INSERT INTO t (c, …)
//!   VALUES (…), (…)` and `INSERT … SELECT`, `UPDATE … SET c = …`, `ON
//!   CONFLICT … DO UPDATE SET c = …`, `MERGE`'s `UPDATE SET` and `INSERT
//!   (c, …) VALUES`, and comparisons anywhere (`c = …`,
//!   `c IN (…)`, `c IN (SELECT …)`, `c LIKE …`, `c BETWEEN … AND …`,
//!   `… = ANY(…)`), looking through casts, typed literals (`text '…'`),
//!   parentheses and function calls on either side; hex and bit strings
//!   (`X'…'`, `B'…'`) are masked by column rules like any literal.
//! - Masked literals are replaced in the text by a quoted marker
//!   (`VALUES (3, '[redacted]')`), so the statement stays readable.
//!
//! Conservative choices (they mask more, never less): a column compared
//! anywhere is matched by its name alone (its qualifier may be an alias),
//! so a `table.col` rule masks every `col` compared; a table named without
//! a schema matches `schema.table.col` rules; an `INSERT` without a column
//! list masks all its values when any column rule could apply to its
//! table; a statement the parser cannot read, or too long to parse, that
//! names a masked column (or is an INSERT naming its table) has all its
//! literals and parameters masked by that rule.
//! - `EXECUTE name(…)`: each argument is masked by the column of the
//!   prepared statement's parameter in its place, known from the session's
//!   earlier `PREPARE name AS …` or Parse (one namespace in PostgreSQL);
//!   for a name not known, every argument is masked by the first column
//!   rule. A message that prepares several statements gives each the
//!   parameter rules of all of them.
//!
//! - `DO` blocks and function bodies that name a masked column are read as
//!   code: each statement in them is followed as above, the PL/pgSQL the
//!   parser cannot read masks every literal it holds (see `bodies`).
//!
//! # Layout
//!
//! - `mod.rs` — what sessions call: [`Masker::mask_sql`] and
//!   [`Masker::mask_sql_in`], parameters ([`Masker::mask_param`],
//!   [`Masker::hides_binary`]), refusal messages, raw bytes;
//!   [`ParamRules`], [`MaskedSql`], [`Prepared`]; the tests.
//! - `literals.rs` — the literal pass: tokenize, decide whether to parse
//!   (by the words it looks for, [`Words`], searchers built once per
//!   masker), map each literal and `$n` to its rule, rewrite the text with
//!   markers.
//! - `echo.rs` — [`Masker::mask_echo`]: what the target's errors quote of
//!   the client's statement (data exceptions, syntax errors, a function's
//!   internal query).
//! - `bodies.rs` — code inside strings: which strings are bodies, and the
//!   rule of each literal of a body's statements.
//! - `sites.rs` — where a parsed statement's values go: INSERT, UPDATE,
//!   MERGE, comparisons, `PREPARE`/`EXECUTE`/`DEALLOCATE` names.
//! - `rules.rs` — which column rule covers a value written to a column or
//!   table, and the first column rule (for values whose column is unknown).

use std::collections::HashMap;

use super::strategy;
use super::{MaskStats, Masker, Strategy};

mod bodies;
mod echo;
mod literals;
mod rules;
mod sites;

pub(crate) use literals::Words;
pub use sites::followed_name;

/// For each `$n` of a prepared statement (index n - 1), the column rule its
/// value is written to or compared with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParamRules(Vec<Option<u32>>);

impl ParamRules {
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Option::is_none)
    }

    /// Fold in `other`, keeping whichever masks each parameter: a name
    /// prepared again (which PostgreSQL may refuse, keeping the first) is
    /// never masked less than before.
    pub fn merge_stricter(&mut self, other: &ParamRules) {
        if self.0.len() < other.0.len() {
            self.0.resize(other.0.len(), None);
        }
        for (mine, theirs) in self.0.iter_mut().zip(&other.0) {
            *mine = mine.or(*theirs);
        }
    }
}

/// A statement's text as it may be recorded and shown.
#[derive(Debug, Default)]
pub struct MaskedSql {
    /// The masked text; `None` when nothing changed.
    pub text: Option<String>,
    /// What masks the values of its parameters (for a `PREPARE`, those of
    /// the statement it prepares).
    pub params: ParamRules,
    /// Statement names it prepares in SQL (`PREPARE name AS …`), folded as
    /// PostgreSQL folds them; `params` applies to their parameters.
    pub prepares: Vec<String>,
    /// It may prepare statements whose parameters could not be followed
    /// (it names a masked column but could not be parsed, or prepares a
    /// name the gateway cannot follow): a session must treat every
    /// statement it knows as unknown from now on.
    pub prepares_unread: bool,
}

/// What a session knows of its prepared statements: each name's parameter
/// rules, to mask the arguments of a later `EXECUTE name(…)`.
pub type Prepared = HashMap<Vec<u8>, ParamRules>;

impl Masker {
    /// Mask the literals of `sql` (see the module docs) and find which
    /// column rule each of its parameters falls under. Without a session's
    /// [`Prepared`] statements, every argument of an `EXECUTE` is masked
    /// under column rules.
    pub fn mask_sql(&self, sql: &str, stats: &mut MaskStats) -> MaskedSql {
        self.mask_sql_in(sql, None, stats)
    }

    /// [`Masker::mask_sql`] in a session that prepared `prepared`: the
    /// arguments of `EXECUTE name(…)` are masked by the columns of
    /// `name`'s parameters (every argument, under column rules, for a name
    /// it does not know).
    pub fn mask_sql_in(
        &self,
        sql: &str,
        prepared: Option<&Prepared>,
        stats: &mut MaskStats,
    ) -> MaskedSql {
        if self.is_empty() {
            return MaskedSql::default();
        }
        let mut out = MaskedSql::default();
        let rewritten = self.mask_literals(sql, prepared, &mut out, stats);
        let text = rewritten.as_deref().unwrap_or(sql);
        out.text = self.mask_text(text, stats).or(rewritten);
        out
    }

    /// A text parameter of a statement whose parameters are `rules`
    /// (index from 0): the column rule's marker, or detectors.
    pub fn mask_param(
        &self,
        rules: &ParamRules,
        index: usize,
        value: &str,
        stats: &mut MaskStats,
    ) -> Option<String> {
        match rules.0.get(index).copied().flatten() {
            Some(rule) => {
                Some(self.whole(rule, value.as_bytes(), &format!("${}", index + 1), stats))
            }
            None => self.mask_text(value, stats),
        }
    }

    /// Whether a binary parameter must not be recorded: it falls under a
    /// column rule, or a detector finds something in its bytes.
    pub fn hides_binary(
        &self,
        rules: &ParamRules,
        index: usize,
        value: &[u8],
        stats: &mut MaskStats,
    ) -> bool {
        if let Some(rule) = rules.0.get(index).copied().flatten() {
            let label = format!("${}", index + 1);
            stats.add(&self.rules[rule as usize].name, &label.as_str().into());
            return true;
        }
        self.mask_bytes(value, stats).is_some()
    }

    /// A refusal message as recorded. It may quote part of the statement
    /// whose column is unknown (a parser's `found: '…'`): each quoted span,
    /// and a number the parser says it found, is masked by the first column
    /// rule (by detectors without one); detectors run over the rest.
    pub fn mask_refusal(&self, message: &str, stats: &mut MaskStats) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let rule = self.first_column_rule();
        let mut mask = |value: &str| match rule {
            Some(r) => Some(self.whole(r, value.as_bytes(), "refusal", stats)),
            None => self.mask_text(value, stats),
        };
        let mut out = String::with_capacity(message.len());
        let mut changed = false;
        let mut rest = message;
        while let Some((start, body, end)) = quoted_or_found_number(rest) {
            out.push_str(&rest[..start]);
            match mask(body) {
                Some(masked) => {
                    out.push('\'');
                    out.push_str(&masked.replace('\'', "''"));
                    out.push('\'');
                    changed = true;
                }
                None => out.push_str(&rest[start..end]),
            }
            rest = &rest[end..];
        }
        out.push_str(rest);
        let out = changed.then_some(out);
        let text = out.as_deref().unwrap_or(message);
        self.mask_text(text, stats).or(out)
    }

    /// Count parameter `index` of a statement whose columns are unknown as
    /// masked under the first column rule.
    pub fn count_unmatched(&self, index: usize, stats: &mut MaskStats) {
        if let Some(rule) = self.first_column_rule() {
            let rule = &self.rules[rule as usize];
            stats.add(&rule.name, &format!("${}", index + 1).as_str().into());
        }
    }

    /// Detectors over raw bytes (text in an encoding the gateway cannot
    /// decode): `None` when nothing matched.
    pub fn mask_bytes(&self, v: &[u8], stats: &mut MaskStats) -> Option<Vec<u8>> {
        let mut hits = Vec::new();
        self.find_hits(v, &mut hits)?;
        self.count_hits(&hits, stats);
        let mut out = Vec::with_capacity(v.len());
        self.render_spans(v, &hits, &mut out);
        Some(out)
    }

    /// The whole value masked with `rule` (`null` renders as `[redacted]`:
    /// a recorded NULL would claim the client sent one).
    fn whole(&self, rule: u32, v: &[u8], label: &str, stats: &mut MaskStats) -> String {
        let r = &self.rules[rule as usize];
        stats.add(&r.name, &label.into());
        let mut out = Vec::new();
        let strategy = match r.strategy {
            Strategy::Null => &Strategy::Redact,
            ref s => s,
        };
        strategy::render(strategy, &self.key, v, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// The first value quoted in `text` (`'…'`, `''` inside it), or a number
/// a parser error says it found (`found: 123`): where it starts, its body,
/// where it ends.
fn quoted_or_found_number(text: &str) -> Option<(usize, &str, usize)> {
    const FOUND: &str = "found: ";
    let number = text.find(FOUND).map(|at| at + FOUND.len()).filter(|&at| {
        text[at..]
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_digit() || b == b'-' || b == b'.')
    });
    let quote = text.find('\'');
    match (quote, number) {
        (Some(q), n) if n.is_none_or(|n| q < n) => {
            let bytes = text.as_bytes();
            let mut i = q + 1;
            loop {
                match bytes.get(i) {
                    Some(b'\'') if bytes.get(i + 1) == Some(&b'\'') => i += 2,
                    Some(b'\'') => return Some((q, &text[q + 1..i], i + 1)),
                    Some(_) => i += 1,
                    // Unterminated: the rest is the value.
                    None => return Some((q, &text[q + 1..], text.len())),
                }
            }
        }
        (_, Some(n)) => {
            let end = text[n..]
                .find(char::is_whitespace)
                .map_or(text.len(), |e| n + e);
            Some((n, &text[n..end], end))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::literals::{MAX_PARSED_SQL, may_hold_strings};
    use super::*;
    use crate::mask::MaskRule;

    pub(super) fn masker() -> Masker {
        Masker::new(
            vec![
                MaskRule {
                    name: "pii".into(),
                    columns: vec!["customers.ssn".into(), "name".into()],
                    detectors: vec![],
                    regex: vec![],
                    strategy: Strategy::Redact,
                },
                MaskRule {
                    name: "contact".into(),
                    columns: vec![],
                    detectors: vec!["email".into(), "credit_card".into()],
                    regex: vec![],
                    strategy: Strategy::Redact,
                },
            ],
            [7; 32],
        )
        .unwrap()
    }

    pub(super) fn masked(sql: &str) -> String {
        let mut stats = MaskStats::default();
        masker()
            .mask_sql(sql, &mut stats)
            .text
            .unwrap_or_else(|| sql.to_owned())
    }

    #[test]
    fn detectors_mask_literals_and_the_rest_of_the_text() {
        assert_eq!(
            masked("INSERT INTO t (id, note) VALUES (3, 'mail marguerite@example.org now')"),
            "INSERT INTO t (id, note) VALUES (3, 'mail [redacted] now')"
        );
        // An escaped form only the unescaped literal reveals.
        assert_eq!(
            masked(r"select E'marguerite\x40example.org'"),
            "select '[redacted]'"
        );
        // Comments, and text the parser cannot read.
        assert_eq!(
            masked("select 1 -- card 4242 4242 4242 4242"),
            "select 1 -- card [redacted]"
        );
        assert_eq!(
            masked("selec 'x' frm marguerite@example.org"),
            "selec 'x' frm [redacted]"
        );
        assert_eq!(masked("select 'plain'"), "select 'plain'");
    }

    #[test]
    fn typed_literals_subqueries_and_hex_and_bit_strings_follow_their_column() {
        for (sql, want) in [
            (
                "update customers set ssn = text 'X1' where id = 1",
                "update customers set ssn = text '[redacted]' where id = 1",
            ),
            (
                "select * from customers where ssn = text 'X2'",
                "select * from customers where ssn = text '[redacted]'",
            ),
            (
                "select * from customers where ssn in (select 'X3' union select 'X4')",
                "select * from customers where ssn in (select '[redacted]' union select '[redacted]')",
            ),
            (
                "update customers set ssn = X'0A1F' where id = 1",
                "update customers set ssn = '[redacted]' where id = 1",
            ),
            (
                "insert into customers (id, ssn) values (1, B'0101')",
                "insert into customers (id, ssn) values (1, '[redacted]')",
            ),
        ] {
            assert_eq!(masked(sql), want, "{sql}");
        }
    }

    #[test]
    fn text_the_tokenizer_cannot_read_is_masked_whole_when_it_names_a_masked_column() {
        assert_eq!(
            masked("update customers set ssn = '512-00-2222"),
            "[redacted]"
        );
        assert_eq!(
            masked("insert into customers (ssn) values ($a$512-00-2222"),
            "[redacted]"
        );
        // Naming none, detectors only, as before.
        assert_eq!(
            masked("update t set note = 'mail a@example.org"),
            "update t set note = 'mail [redacted]"
        );
    }

    #[test]
    fn strings_in_every_form_are_seen_before_the_literal_pass_is_skipped() {
        for sql in [
            "select 'x'",
            "select $$x$$",
            "select $t$x$t$",
            "select E'x'",
            "select a$$x$$",
            "SELECT $1é$123456789 $1é$",
            "select $1$x$1$",
            "select $1a",
        ] {
            assert!(may_hold_strings(sql), "{sql}");
        }
        for sql in ["select 1", "select $1, $12 from t where a = $2"] {
            assert!(!may_hold_strings(sql), "{sql}");
        }
        assert_eq!(
            masked("select $q$4242 4242 4242 4242$q$"),
            "select '[redacted]'"
        );
    }

    #[test]
    fn column_rules_follow_values_to_their_columns() {
        assert_eq!(
            masked(
                "INSERT INTO public.customers (id, ssn, name) VALUES (1, '123-45-6789', 'Ann'), (2, '987-65-4320', 'Bob')"
            ),
            "INSERT INTO public.customers (id, ssn, name) VALUES (1, '[redacted]', '[redacted]'), (2, '[redacted]', '[redacted]')"
        );
        // customers.ssn does not cover another table's ssn.
        assert_eq!(
            masked("insert into staff (ssn) values ('x')"),
            "insert into staff (ssn) values ('x')"
        );
        assert_eq!(
            masked(
                "UPDATE customers SET ssn = '111-22-3333', note = 'ok' WHERE name IN ('Ann', 'Bob') OR lower(name) LIKE 'c%'"
            ),
            "UPDATE customers SET ssn = '[redacted]', note = 'ok' WHERE name IN ('[redacted]', '[redacted]') OR lower(name) LIKE '[redacted]'"
        );
        assert_eq!(
            masked("select * from customers c where c.ssn = 123456789 and 'Ann' = c.name"),
            "select * from customers c where c.ssn = '[redacted]' and '[redacted]' = c.name"
        );
        assert_eq!(
            masked(
                "insert into customers (id, ssn) values (1, 'a') on conflict (id) do update set ssn = 'b'"
            ),
            "insert into customers (id, ssn) values (1, '[redacted]') on conflict (id) do update set ssn = '[redacted]'"
        );
        // No column list: every value, when a rule could cover the table.
        assert_eq!(
            masked("insert into customers values (1, 'x')"),
            "insert into customers values ('[redacted]', '[redacted]')"
        );
    }

    #[test]
    fn parameters_are_mapped_to_their_columns() {
        let m = masker();
        let mut stats = MaskStats::default();
        let out = m.mask_sql(
            "UPDATE customers SET ssn = $1, note = $3 WHERE name = $2::text",
            &mut stats,
        );
        assert_eq!(out.text, None);
        assert_eq!(
            m.mask_param(&out.params, 0, "123-45-6789", &mut stats)
                .as_deref(),
            Some("[redacted]")
        );
        assert_eq!(
            m.mask_param(&out.params, 1, "Ann", &mut stats).as_deref(),
            Some("[redacted]")
        );
        assert_eq!(m.mask_param(&out.params, 2, "fine", &mut stats), None);
        assert_eq!(
            m.mask_param(&out.params, 2, "to a@b.org", &mut stats)
                .as_deref(),
            Some("to [redacted]")
        );
        assert!(m.hides_binary(&out.params, 0, b"\x01", &mut stats));
        assert!(!m.hides_binary(&out.params, 2, b"\x01", &mut stats));
        let counts = stats.take();
        assert!(
            counts.iter().any(|(r, what, _)| r == "pii" && what == "$1"),
            "{counts:?}"
        );
    }

    #[test]
    fn unreadable_or_huge_statements_naming_a_masked_column_mask_every_value() {
        // sqlparser does not read this, PostgreSQL might: the ssn is not
        // found by any detector, so only the column rule can hide it.
        assert_eq!(
            masked("update customers set ssn = '111-22-3333' wherx id = 1"),
            "update customers set ssn = '[redacted]' wherx id = '[redacted]'"
        );
        // Too long to parse: every literal, by the rule the text names.
        let rows: Vec<String> = (0..8000)
            .map(|i| format!("({i}, '9{i:02}-11-2222')"))
            .collect();
        let sql = format!("insert into customers (id, ssn) values {}", rows.join(", "));
        assert!(sql.len() > MAX_PARSED_SQL);
        let out = masked(&sql);
        assert!(!out.contains("-11-2222"), "{}", &out[..200]);
        assert!(
            out.starts_with(
                "insert into customers (id, ssn) values ('[redacted]', '[redacted]'), "
            )
        );
        // Its parameters too.
        let m = masker();
        let mut stats = MaskStats::default();
        let unread = m.mask_sql("update customers set ssn = $2 wherx id = $1", &mut stats);
        assert_eq!(
            m.mask_param(&unread.params, 1, "111-22-3333", &mut stats)
                .as_deref(),
            Some("[redacted]")
        );
        // MERGE's UPDATE SET and INSERT VALUES, with and without a column
        // list.
        assert_eq!(
            masked(
                "merge into customers c using src s on c.id = s.id \
                 when matched then update set ssn = '111-22-3333' \
                 when not matched then insert (id, ssn) values (s.id, '222-33-4444')"
            ),
            "merge into customers c using src s on c.id = s.id \
             when matched then update set ssn = '[redacted]' \
             when not matched then insert (id, ssn) values (s.id, '[redacted]')"
        );
        assert_eq!(
            masked(
                "merge into customers using src s on true when not matched then insert values (1, '9')"
            ),
            "merge into customers using src s on true when not matched then insert values ('[redacted]', '[redacted]')"
        );
        // A U& identifier may spell a masked column: not left to detectors.
        assert_eq!(
            masked(r#"update customers set U&"\0073sn" = '111-22-3333' where id = 1"#),
            r#"update customers set U&"\0073sn" = '[redacted]' where id = '[redacted]'"#
        );
        // Text naming no masked column is left to detectors.
        assert_eq!(masked("selec 'x' frm t"), "selec 'x' frm t");
        // So is text naming only a column rule's table: without the column
        // named, or an INSERT's positional values, nothing reaches it.
        assert_eq!(
            masked("update customers set note = 'x' wherx id = 1"),
            "update customers set note = 'x' wherx id = 1"
        );
        assert_eq!(
            masked("insert into customers values (1, 'x') returnin id"),
            "insert into customers values ('[redacted]', '[redacted]') returnin id"
        );
    }

    #[test]
    fn refusals_quoting_the_statement_are_masked() {
        let m = masker();
        let mut stats = MaskStats::default();
        let reason = "blocked by policy rule \"unparsed\": statement could not be analysed \
             (sql parser error: Expected: ), found: '123-45-6789' at Line: 1, Column: 40)";
        assert_eq!(
            m.mask_refusal(reason, &mut stats).as_deref(),
            Some(
                "blocked by policy rule \"unparsed\": statement could not be analysed \
                 (sql parser error: Expected: ), found: '[redacted]' at Line: 1, Column: 40)"
            )
        );
        let reason = "Expected: ), found: 123456789 at Line: 1, Column: 9; 'it''s' 'open";
        assert_eq!(
            m.mask_refusal(reason, &mut stats).as_deref(),
            Some(
                "Expected: ), found: '[redacted]' at Line: 1, Column: 9; '[redacted]' '[redacted]'"
            )
        );
        assert_eq!(
            m.mask_refusal("no rule allows this statement", &mut stats),
            None
        );
    }

    #[test]
    fn locations_map_to_byte_offsets_across_lines_and_wide_characters() {
        let sql = "select 'é'\n, 'a@b.org'";
        assert_eq!(masked(sql), "select 'é'\n, '[redacted]'");
    }
}
