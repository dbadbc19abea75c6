//! The literal pass: `sql` tokenized, parsed only when a column rule could
//! apply, each literal and `$n` mapped to the rule that masks it, and the
//! text rewritten with a quoted marker in place of each masked literal.

use std::collections::HashMap;

use memchr::memmem::Finder;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

use super::bodies::{is_body, language_is_read};
use super::sites::{Place, To, sites};
use super::{MaskedSql, ParamRules, Prepared};
use crate::mask::{CompiledRule, MaskStats, Masker};
use crate::policy::classify::parse_each;
use crate::policy::shape::parameter_len;

/// Statements longer than this are not parsed for masking (the policy does
/// not classify them either): detectors still run over their whole text.
pub(super) const MAX_PARSED_SQL: usize = crate::policy::tracker::MAX_CLASSIFIED_SQL;

/// PostgreSQL's limit on a statement's parameters (a Bind counts them in
/// 16 bits): a larger `$n` in a text it does not parse is no parameter.
const MAX_PARAMS: usize = 65_535;

impl Masker {
    /// Replace the literals that must be masked; fill in `params`.
    pub(super) fn mask_literals(
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
        let lower = sql.to_ascii_lowercase();
        let named = self.named_column_rule(&lower);
        let prepare = self.words.prepare.find(lower.as_bytes()).is_some();
        if named.is_none() && !prepare && (!self.has_detectors() || !may_hold_strings(sql)) {
            return None;
        }
        let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql)
            .with_unescape(true)
            .tokenize_with_location()
        else {
            out.prepares_unread = prepare;
            // Text the tokenizer cannot read (an unterminated quote or
            // comment): where its literals are is unknown, so one that
            // names a masked column is masked whole.
            return named.map(|rule| self.whole(rule, sql.as_bytes(), "statement", stats));
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
                out.prepares_unread = prepare;
                return self.replace_literals(
                    sql,
                    &tokens,
                    &columns,
                    Some(named),
                    params,
                    0,
                    stats,
                );
            };
            let prepared_here = sites.iter().flat_map(|s| s.prepares.iter());
            // A PREPARE the parse did not see (in a DO body's dynamic SQL)
            // redefines a name in a way this pass cannot follow.
            let mentioned = match prepare {
                true => self.words.prepare.find_iter(lower.as_bytes()).count(),
                false => 0,
            };
            out.prepares_unread = prepared_here.clone().any(Option::is_none)
                || mentioned > prepared_here.clone().count();
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
                    To::Column(written) => self.column_rule(written),
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
        self.replace_literals(sql, &tokens, &columns, None, params, 0, stats)
    }

    /// Rewrite `sql` with the literals that must be masked replaced: those
    /// at `columns` by their rule, all of them by `every` if given (which
    /// also covers every `$n` in `params`), code in the other strings as
    /// [`bodies`](super::bodies) says, the rest of them by detectors.
    /// `depth`: how many bodies `sql` is inside.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn replace_literals(
        &self,
        sql: &str,
        tokens: &[TokenWithSpan],
        columns: &HashMap<Location, u32>,
        every: Option<u32>,
        params: &mut ParamRules,
        depth: usize,
        stats: &mut MaskStats,
    ) -> Option<String> {
        let mut lines = LineIndex::new(sql);
        let mut out = String::with_capacity(sql.len());
        let mut copied = 0;
        let mut changed = false;
        // Whether bodies here are in a language read as SQL, found once.
        let mut read = None;
        for (i, t) in tokens.iter().enumerate() {
            if let Token::Placeholder(p) = &t.token {
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
            let Some((value, quoted)) = literal(&t.token) else {
                continue;
            };
            let mut tag = None;
            let masked = match columns.get(&t.span.start).or(every.as_ref()) {
                Some(rule) => Some(self.whole(*rule, value.as_bytes(), "literal", stats)),
                None if quoted && is_body(tokens, i) => match self.mask_body(
                    value,
                    *read.get_or_insert_with(|| language_is_read(tokens)),
                    depth,
                    stats,
                ) {
                    Some(code) => {
                        if let Token::DollarQuotedString(d) = &t.token {
                            tag = Some(d.tag.as_deref().unwrap_or(""));
                        }
                        Some(code)
                    }
                    None => self.mask_text(value, stats),
                },
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
            match tag.map(|tag| format!("${tag}$")) {
                // A body keeps its dollar quotes, so it reads as written.
                Some(quote) if !masked.contains(&quote) => {
                    out.push_str(&quote);
                    out.push_str(&masked);
                    out.push_str(&quote);
                }
                _ => {
                    out.push('\'');
                    out.push_str(&masked.replace('\'', "''"));
                    out.push('\'');
                }
            }
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
    /// `t.secret`, is not parsed a second time. `lower` is the statement
    /// in ASCII lowercase.
    pub(super) fn named_column_rule(&self, lower: &str) -> Option<u32> {
        if !self.has_column_rules() {
            return None;
        }
        let has = |word: &Finder<'_>| word.find(lower.as_bytes()).is_some();
        let words = &self.words;
        let insert = has(&words.insert);
        words
            .columns
            .iter()
            .position(|columns| {
                columns.iter().any(|(column, table)| {
                    has(column) || (insert && table.as_ref().is_none_or(has))
                })
            })
            .map(|i| i as u32)
            // EXECUTE's arguments go to columns its text does not name, a
            // `U&"…"` identifier may spell a masked column's name, and so
            // may the escapes of an `E'…'` body.
            .or_else(|| {
                (has(&words.execute)
                    || has(&words.unicode_ident)
                    || memchr::memchr(b'\\', lower.as_bytes()).is_some())
                .then(|| self.first_column_rule())
                .flatten()
            })
    }
}

/// The words the literal pass looks for in a statement's lowercased text,
/// each searcher built once with the masker instead of once per statement.
pub(crate) struct Words {
    insert: Finder<'static>,
    execute: Finder<'static>,
    prepare: Finder<'static>,
    /// `U&` (a Unicode-escaped identifier).
    unicode_ident: Finder<'static>,
    /// Per rule, per column pattern: its column's name and, if the pattern
    /// has one, its table's.
    columns: Vec<Vec<(Finder<'static>, Option<Finder<'static>>)>>,
}

impl Words {
    pub(crate) fn new(rules: &[CompiledRule]) -> Words {
        let finder = |word: &str| Finder::new(word.as_bytes()).into_owned();
        Words {
            insert: finder("insert"),
            execute: finder("execute"),
            prepare: finder("prepare"),
            unicode_ident: finder("u&"),
            columns: rules
                .iter()
                .map(|r| {
                    r.columns
                        .iter()
                        .map(|p| (finder(&p.column), p.table.as_deref().map(finder)))
                        .collect()
                })
                .collect(),
        }
    }
}

/// A literal token's value, and whether it is text detectors read (hex
/// and bit strings hold none: column rules only); `None` for any other
/// token.
pub(super) fn literal(token: &Token) -> Option<(&str, bool)> {
    match token {
        Token::Number(n, _)
        | Token::HexStringLiteral(n)
        | Token::SingleQuotedByteStringLiteral(n) => Some((n, false)),
        Token::SingleQuotedString(s)
        | Token::EscapedStringLiteral(s)
        | Token::NationalStringLiteral(s)
        | Token::UnicodeStringLiteral(s) => Some((s, true)),
        Token::DollarQuotedString(d) => Some((&d.value, true)),
        _ => None,
    }
}

/// Byte offsets of sqlparser's 1-based (line, character) locations.
/// Locations asked in text order cost one walk of the text in all: a
/// statement of one long line with many literals stays linear.
pub(super) struct LineIndex<'a> {
    sql: &'a str,
    starts: Vec<usize>,
    /// The last location found: line, 0-based character, byte offset.
    cursor: (u64, usize, usize),
}

impl<'a> LineIndex<'a> {
    pub(super) fn new(sql: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(sql.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex {
            sql,
            starts,
            cursor: (0, 0, 0),
        }
    }

    pub(super) fn offset(&mut self, at: Location) -> Option<usize> {
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

/// Whether `sql` may hold a string literal: it has a quote, or a `$` that
/// is not a parameter's and so may open a dollar quote (sqlparser takes
/// `$1é$` for a tag).
pub(super) fn may_hold_strings(sql: &str) -> bool {
    let b = sql.as_bytes();
    b.contains(&b'\'') || memchr::memchr_iter(b'$', b).any(|i| parameter_len(b, i).is_none())
}
