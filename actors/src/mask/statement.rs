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
//!   `c IN (…)`, `c LIKE …`, `c BETWEEN … AND …`, `… = ANY(…)`), looking
//!   through casts, parentheses and function calls on either side.
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
//! Not followed: statements inside `DO` bodies (detectors run on the body).

use std::collections::HashMap;
use std::ops::ControlFlow;

use sqlparser::ast::{
    AssignmentTarget, Expr, Ident, InTarget, MergeAction, MergeInsertKind, MergeUpdateKind,
    ObjectName, OnConflictAction, OnInsert, SelectItem, SetExpr, Statement, TableFactor,
    TableObject, Value, Values, visit_expressions, visit_statements,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer, Whitespace};

use super::strategy;
use super::{MaskStats, Masker, Strategy};
use crate::policy::classify::parse_each;
use crate::policy::shape::parameter_len;

/// Statements longer than this are not parsed for masking (the policy does
/// not classify them either): detectors still run over their whole text.
const MAX_PARSED_SQL: usize = crate::policy::tracker::MAX_CLASSIFIED_SQL;

/// PostgreSQL's limit on a statement's parameters (a Bind counts them in
/// 16 bits): a larger `$n` in a text it does not parse is no parameter.
const MAX_PARAMS: usize = 65_535;

/// A column as a statement names it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Written {
    /// `schema.table` or `table` of an INSERT or UPDATE target; `None` for
    /// a column compared somewhere (its qualifier may be an alias).
    table: Option<String>,
    column: String,
}

/// Where a value sits in the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// A literal starting at this line and column.
    Literal(Location),
    /// `$n`.
    Param(u32),
}

/// Where a value goes.
#[derive(Clone, Debug, PartialEq, Eq)]
enum To {
    Column(Written),
    /// Argument `index` (from 0) of `EXECUTE statement(…)`: the column of
    /// that prepared statement's `$index+1`, as remembered by the session
    /// (`None`: a name that cannot be a prepared statement's).
    Param {
        statement: Option<String>,
        index: usize,
    },
}

/// Values of one statement paired with where they go, and the names the
/// statement prepares (`PREPARE name AS …`).
#[derive(Default)]
struct Sites {
    values: Vec<(Place, To)>,
    /// Names prepared (`None`: one the gateway cannot follow, see
    /// [`folded`]).
    prepares: Vec<Option<String>>,
    /// Names deallocated (`None`: `ALL`, or one it cannot follow).
    deallocates: Vec<Option<String>>,
}

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

    /// The first column rule that covers a value written to `w`.
    fn written_rule(&self, w: &Written) -> Option<u32> {
        let column = w.column.to_lowercase();
        let table = w.table.as_ref().map(|t| t.to_lowercase());
        let (schema, table) = match table.as_deref().map(|t| t.rsplit_once('.')) {
            Some(Some((s, t))) => (Some(s), Some(t)),
            Some(None) => (None, table.as_deref()),
            None => (None, None),
        };
        self.rules
            .iter()
            .position(|r| {
                r.columns.iter().any(|p| {
                    p.column == column
                        && match (&p.table, table) {
                            (Some(pt), Some(t)) => {
                                pt == t
                                    && match (&p.schema, schema) {
                                        (Some(ps), Some(s)) => ps == s,
                                        _ => true,
                                    }
                            }
                            _ => true,
                        }
                })
            })
            .map(|i| i as u32)
    }

    /// The first column rule that could cover some column of `table` (for
    /// an INSERT whose values cannot be matched to columns).
    fn any_rule_for_table(&self, table: &str) -> Option<u32> {
        let table = table.to_lowercase();
        let name = table.rsplit('.').next().unwrap_or(&table);
        self.rules
            .iter()
            .position(|r| {
                r.columns
                    .iter()
                    .any(|p| p.table.as_deref().is_none_or(|t| t == name))
            })
            .map(|i| i as u32)
    }

    /// Replace the literals that must be masked; fill in `params`.
    fn mask_literals(
        &self,
        sql: &str,
        prepared: Option<&Prepared>,
        out: &mut MaskedSql,
        stats: &mut MaskStats,
    ) -> Option<String> {
        let params = &mut out.params;
        // Without a column rule to follow, only detectors act on literals,
        // and only on strings: text with no quote and no `$` but parameters
        // holds none, and the pass over the whole text covers it.
        let named = self.named_column_rule(sql);
        if named.is_none()
            && !mentions_prepare(sql)
            && (!self.has_detectors() || !may_hold_strings(sql))
        {
            return None;
        }
        let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql)
            .with_unescape(true)
            .tokenize_with_location()
        else {
            out.prepares_unread = mentions_prepare(sql);
            return None;
        };
        // Column rules need the tree; skip the parse when no rule's column
        // is even named in the text. A statement too long to parse, or one
        // the parser cannot read, that names a masked column has every
        // value masked by that column's rule: which of them go to it is
        // unknown.
        let mut columns: HashMap<Location, u32> = HashMap::new();
        if let Some(named) = named {
            let parsed = (sql.len() <= MAX_PARSED_SQL)
                .then(|| parse_each(sql, sites).ok())
                .flatten();
            let Some(sites) = parsed else {
                out.prepares_unread = mentions_prepare(sql);
                return self.replace_literals(sql, &tokens, &columns, Some(named), params, stats);
            };
            let prepared_here = sites.iter().flat_map(|s| s.prepares.iter());
            out.prepares_unread = prepared_here.clone().any(Option::is_none);
            out.prepares = prepared_here.flatten().cloned().collect();
            // A name this message prepares or deallocates is not the one
            // the session knew when an EXECUTE of it runs: unknown.
            // (`None`: ALL, or a name it cannot follow: every name.)
            let touched: Vec<Option<&str>> = sites
                .iter()
                .flat_map(|s| s.prepares.iter().chain(&s.deallocates))
                .map(Option::as_deref)
                .collect();
            let touched_all = touched.contains(&None);
            for (place, to) in sites.iter().flat_map(|s| s.values.iter()) {
                let rule = match to {
                    To::Column(written) => match &written.column[..] {
                        "" => written
                            .table
                            .as_deref()
                            .and_then(|t| self.any_rule_for_table(t)),
                        _ => self.written_rule(written),
                    },
                    To::Param { statement, index } => {
                        let known = statement
                            .as_ref()
                            .filter(|s| !touched_all && !touched.contains(&Some(s.as_str())))
                            .and_then(|s| prepared.and_then(|p| p.get(s.as_bytes())));
                        match known {
                            Some(rules) => rules.0.get(*index).copied().flatten(),
                            // Never seen prepared: its columns are unknown.
                            None => self.first_column_rule(),
                        }
                    }
                };
                let Some(rule) = rule else { continue };
                match place {
                    Place::Literal(at) => {
                        columns.entry(*at).or_insert(rule);
                    }
                    Place::Param(n) => {
                        let i = *n as usize - 1;
                        if params.0.len() <= i {
                            params.0.resize(i + 1, None);
                        }
                        params.0[i].get_or_insert(rule);
                    }
                }
            }
        }
        self.replace_literals(sql, &tokens, &columns, None, params, stats)
    }

    /// Rewrite `sql` with the literals that must be masked replaced: those
    /// at `columns` by their rule, all of them by `every` if given (which
    /// also covers every `$n` in `params`), the other strings by detectors.
    fn replace_literals(
        &self,
        sql: &str,
        tokens: &[TokenWithSpan],
        columns: &HashMap<Location, u32>,
        every: Option<u32>,
        params: &mut ParamRules,
        stats: &mut MaskStats,
    ) -> Option<String> {
        let mut lines = LineIndex::new(sql);
        let mut out = String::with_capacity(sql.len());
        let mut copied = 0;
        let mut changed = false;
        for t in tokens {
            let (value, quoted) = match &t.token {
                Token::Placeholder(p) => {
                    if let (Some(rule), Some(n)) = (
                        every,
                        p.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()),
                    ) && (1..=MAX_PARAMS).contains(&n)
                    {
                        if params.0.len() < n {
                            params.0.resize(n, None);
                        }
                        params.0[n - 1].get_or_insert(rule);
                    }
                    continue;
                }
                Token::Number(n, _) => (n.as_str(), false),
                Token::SingleQuotedString(s)
                | Token::EscapedStringLiteral(s)
                | Token::NationalStringLiteral(s)
                | Token::UnicodeStringLiteral(s) => (s.as_str(), true),
                Token::DollarQuotedString(d) => (d.value.as_str(), true),
                Token::Whitespace(Whitespace::SingleLineComment { .. })
                | Token::Whitespace(Whitespace::MultiLineComment(_)) => continue,
                _ => continue,
            };
            let masked = match columns.get(&t.span.start).or(every.as_ref()) {
                Some(rule) => Some(self.whole(*rule, value.as_bytes(), "literal", stats)),
                None if quoted => self.mask_text(value, stats),
                None => None,
            };
            let Some(masked) = masked else { continue };
            let (Some(start), Some(end)) = (lines.offset(t.span.start), lines.offset(t.span.end))
            else {
                continue;
            };
            if start < copied || end > sql.len() {
                continue;
            }
            out.push_str(&sql[copied..start]);
            out.push('\'');
            out.push_str(&masked.replace('\'', "''"));
            out.push('\'');
            copied = end;
            changed = true;
        }
        if !changed {
            return None;
        }
        out.push_str(&sql[copied..]);
        Some(out)
    }

    /// The first column rule that could apply to `sql` at all, the cheap
    /// test before parsing (ASCII case-insensitive): a rule's column is
    /// named in it, or it may be an INSERT without a column list into the
    /// rule's table (or any table, for a rule without one). Every other
    /// site names its column (see [`sites`]), so a statement that only
    /// names a rule's table, like `SELECT a FROM t WHERE id = 5` under
    /// `t.secret`, is not parsed a second time.
    fn named_column_rule(&self, sql: &str) -> Option<u32> {
        if !self.has_column_rules() {
            return None;
        }
        let lower = sql.to_ascii_lowercase();
        self.rules
            .iter()
            .position(|r| {
                r.columns.iter().any(|p| {
                    lower.contains(&p.column)
                        || (lower.contains("insert")
                            && p.table.as_ref().is_none_or(|t| lower.contains(t.as_str())))
                })
            })
            .map(|i| i as u32)
            // EXECUTE's arguments go to columns its text does not name, and
            // a `U&"…"` identifier may spell a masked column's name.
            .or_else(|| {
                (lower.contains("execute") || lower.contains("u&"))
                    .then(|| self.first_column_rule())
                    .flatten()
            })
    }

    /// The first rule with columns: what masks a value whose column is
    /// unknown.
    fn first_column_rule(&self) -> Option<u32> {
        self.rules
            .iter()
            .position(|r| !r.columns.is_empty())
            .map(|i| i as u32)
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

/// Byte offsets of sqlparser's 1-based (line, character) locations.
/// Locations asked in text order cost one walk of the text in all: a
/// statement of one long line with many literals stays linear.
struct LineIndex<'a> {
    sql: &'a str,
    starts: Vec<usize>,
    /// The last location found: line, 0-based character, byte offset.
    cursor: (u64, usize, usize),
}

impl<'a> LineIndex<'a> {
    fn new(sql: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(sql.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex {
            sql,
            starts,
            cursor: (0, 0, 0),
        }
    }

    fn offset(&mut self, at: Location) -> Option<usize> {
        let line_start = *self.starts.get((at.line as usize).checked_sub(1)?)?;
        let column = (at.column as usize).checked_sub(1)?;
        // Resume from the last location when it is on this line, not past.
        let (mut byte, mut character) = match self.cursor {
            (line, c, b) if line == at.line && c <= column => (b, c),
            _ => (line_start, 0),
        };
        let mut chars = self.sql[byte..].chars();
        while character < column {
            byte += chars.next()?.len_utf8();
            character += 1;
        }
        self.cursor = (at.line, column, byte);
        Some(byte)
    }
}

/// Where the values of one statement go (and of every statement inside
/// it: `PREPARE … AS`, `EXPLAIN ANALYZE`, data-modifying CTEs).
fn sites(statement: &Statement) -> Sites {
    let mut sites = Sites::default();
    let _ = visit_statements(statement, |s| {
        written_by(s, &mut sites);
        ControlFlow::<()>::Continue(())
    });
    // Comparisons anywhere in the statement.
    let _ = visit_expressions(statement, |expr| {
        compared(expr, &mut sites);
        ControlFlow::<()>::Continue(())
    });
    sites
}

/// The values an INSERT or UPDATE writes, with their columns.
fn written_by(statement: &Statement, sites: &mut Sites) {
    let sites = &mut *sites;
    match statement {
        Statement::Insert(insert) => {
            let table = match &insert.table {
                TableObject::TableName(name) => Some(object_name(name)),
                _ => None,
            };
            let columns: Vec<String> = insert.columns.iter().map(last_part).collect();
            if let Some(source) = &insert.source {
                match source.body.as_ref() {
                    SetExpr::Values(values) => rows_written(values, &table, &columns, sites),
                    SetExpr::Select(select) => {
                        for (i, item) in select.projection.iter().enumerate() {
                            if let SelectItem::UnnamedExpr(e)
                            | SelectItem::ExprWithAlias { expr: e, .. } = item
                            {
                                values_in(e, &positional(&table, &columns, i), sites);
                            }
                        }
                    }
                    _ => {}
                }
            }
            if let Some(OnInsert::OnConflict(conflict)) = &insert.on
                && let OnConflictAction::DoUpdate(update) = &conflict.action
            {
                for a in &update.assignments {
                    assigned(&a.target, &a.value, table.as_deref(), sites);
                }
            }
        }
        Statement::Update(update) => {
            let table = match &update.table.relation {
                TableFactor::Table { name, .. } => Some(object_name(name)),
                _ => None,
            };
            for a in &update.assignments {
                assigned(&a.target, &a.value, table.as_deref(), sites);
            }
        }
        Statement::Merge(merge) => {
            let table = match &merge.table {
                TableFactor::Table { name, .. } => Some(object_name(name)),
                _ => None,
            };
            for clause in &merge.clauses {
                match &clause.action {
                    MergeAction::Update(update) => {
                        if let MergeUpdateKind::Set(assignments) = &update.kind {
                            for a in assignments {
                                assigned(&a.target, &a.value, table.as_deref(), sites);
                            }
                        }
                    }
                    MergeAction::Insert(insert) => {
                        if let MergeInsertKind::Values(values) = &insert.kind {
                            let columns: Vec<String> =
                                insert.columns.iter().map(last_part).collect();
                            rows_written(values, &table, &columns, sites);
                        }
                    }
                    _ => {}
                }
            }
        }
        Statement::Prepare { name, .. } => sites.prepares.push(folded(name)),
        Statement::Deallocate { name, .. } => sites
            .deallocates
            .push(folded(name).filter(|n| !(name.quote_style.is_none() && n == "all"))),
        Statement::Execute {
            name: Some(name),
            parameters,
            ..
        } => {
            let statement = match &name.0[..] {
                [part] => part.as_ident().and_then(folded),
                _ => None,
            };
            for (index, expr) in parameters.iter().enumerate() {
                let to = To::Param {
                    statement: statement.clone(),
                    index,
                };
                values_in(expr, &to, sites);
            }
        }
        _ => {}
    }
}

/// Value `i` of an INSERT's row, written to `columns[i]` of `table`. No
/// column there (no list): the empty name asks for any rule of the table.
fn positional(table: &Option<String>, columns: &[String], i: usize) -> To {
    To::Column(Written {
        table: table.clone(),
        column: columns.get(i).cloned().unwrap_or_default(),
    })
}

/// Every value of `VALUES (…), (…)` inserted into `columns` of `table`.
fn rows_written(values: &Values, table: &Option<String>, columns: &[String], sites: &mut Sites) {
    for row in &values.rows {
        for (i, expr) in row.content.iter().enumerate() {
            values_in(expr, &positional(table, columns, i), sites);
        }
    }
}

/// A statement name as PostgreSQL keeps it, unquoted names folded to
/// lower case (ASCII only, as PostgreSQL does on a UTF-8 server); `None`
/// for a name it may keep differently: one of [`MAX_FOLLOWED_NAME`] bytes
/// or more (PostgreSQL cuts names to 63 bytes, so two long names can be
/// one statement) or with non-ASCII characters.
fn folded(name: &Ident) -> Option<String> {
    let value = match name.quote_style {
        Some(_) => name.value.clone(),
        None => name.value.to_ascii_lowercase(),
    };
    followed_name(value.as_bytes()).then_some(value)
}

/// Statement names this long or longer are not followed (see [`folded`]).
pub const MAX_FOLLOWED_NAME: usize = 63;

/// Whether a statement name (SQL, folded, or a Parse's as sent) can be
/// matched to what PostgreSQL keeps under it.
pub fn followed_name(name: &[u8]) -> bool {
    name.len() < MAX_FOLLOWED_NAME && name.is_ascii()
}

/// Whether `sql` may hold a string literal: it has a quote, or a `$` that
/// is not a parameter's and so may open a dollar quote (sqlparser takes
/// `$1é$` for a tag).
fn may_hold_strings(sql: &str) -> bool {
    let b = sql.as_bytes();
    b.contains(&b'\'')
        || b.iter()
            .enumerate()
            .any(|(i, &c)| c == b'$' && parameter_len(b, i).is_none())
}

/// Whether unparsed text may contain a `PREPARE` (any case).
fn mentions_prepare(sql: &str) -> bool {
    sql.to_ascii_lowercase().contains("prepare")
}

/// `SET target = value`.
fn assigned(target: &AssignmentTarget, value: &Expr, table: Option<&str>, sites: &mut Sites) {
    let written = |name: &ObjectName| {
        To::Column(Written {
            table: table.map(str::to_owned),
            column: last_part(name),
        })
    };
    match target {
        AssignmentTarget::ColumnName(name) => values_in(value, &written(name), sites),
        AssignmentTarget::Tuple(names) => match value {
            Expr::Tuple(values) => {
                for (name, v) in names.iter().zip(values) {
                    values_in(v, &written(name), sites);
                }
            }
            // `SET (a, b) = (SELECT …)`: every value may go to any of them.
            other => {
                for name in names {
                    values_in(other, &written(name), sites);
                }
            }
        },
    }
}

/// A comparison between a column and values.
fn compared(expr: &Expr, sites: &mut Sites) {
    let pairs: Vec<(&Expr, Vec<&Expr>)> = match expr {
        Expr::BinaryOp { left, right, .. } => {
            vec![(left, vec![right.as_ref()]), (right, vec![left.as_ref()])]
        }
        Expr::AnyOp { left, right, .. } | Expr::AllOp { left, right, .. } => {
            vec![(left, vec![right.as_ref()])]
        }
        Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b) => {
            vec![(a, vec![b.as_ref()]), (b, vec![a.as_ref()])]
        }
        Expr::In {
            expr,
            target: InTarget::List(list),
            ..
        } => vec![(expr, list.iter().collect())],
        Expr::Between {
            expr, low, high, ..
        } => vec![(expr, vec![low.as_ref(), high.as_ref()])],
        Expr::Like { expr, pattern, .. }
        | Expr::ILike { expr, pattern, .. }
        | Expr::SimilarTo { expr, pattern, .. } => vec![(expr, vec![pattern.as_ref()])],
        _ => return,
    };
    for (side, others) in pairs {
        let mut columns = Vec::new();
        columns_in(side, &mut columns);
        for column in columns {
            let written = To::Column(Written {
                table: None,
                column,
            });
            for other in &others {
                values_in(other, &written, sites);
            }
        }
    }
}

/// Column names an expression reads (through casts, parentheses,
/// operators and function calls).
fn columns_in(expr: &Expr, out: &mut Vec<String>) {
    let _ = visit_expressions(expr, |e| {
        match e {
            Expr::Identifier(ident) => out.push(ident.value.clone()),
            Expr::CompoundIdentifier(parts) => {
                if let Some(last) = parts.last() {
                    out.push(last.value.clone());
                }
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Every literal and parameter inside `expr` (function arguments, casts and
/// subqueries included), as written to `written`.
fn values_in(expr: &Expr, to: &To, sites: &mut Sites) {
    let _ = visit_expressions(expr, |e| {
        if let Expr::Value(v) = e {
            let place = match &v.value {
                Value::Placeholder(p) => match p.strip_prefix('$').and_then(|n| n.parse().ok()) {
                    Some(n) if n > 0 => Place::Param(n),
                    _ => return ControlFlow::Continue(()),
                },
                Value::Null | Value::Boolean(_) => return ControlFlow::Continue(()),
                _ => Place::Literal(v.span.start),
            };
            sites.values.push((place, to.clone()));
        }
        ControlFlow::<()>::Continue(())
    });
}

fn last_part(name: &ObjectName) -> String {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .map(|i| i.value.clone())
        .unwrap_or_default()
}

fn object_name(name: &ObjectName) -> String {
    name.0
        .iter()
        .filter_map(|p| p.as_ident())
        .map(|i| i.value.as_str())
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::MaskRule;

    fn masker() -> Masker {
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

    fn masked(sql: &str) -> String {
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
