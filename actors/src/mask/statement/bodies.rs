//! Code inside string literals: `DO` blocks and function bodies.
//!
//! `DO $$BEGIN UPDATE customers SET ssn = '123-45-6789' …; END$$` writes to
//! a masked column from inside a string, where the statement's own parse
//! sees one literal. A string in a body's place (after `DO`, `DO LANGUAGE
//! name` or `AS`; dollar-quoted, standard, `E'…'` or `U&'…'`) that names a
//! masked column, or may spell one in escapes, is read as code: split at
//! its top-level `;`, each piece's SQL statement (from its first `SELECT`,
//! `INSERT`, `UPDATE`, `DELETE`, `MERGE`, `WITH`, `VALUES` or `PERFORM`
//! outside brackets) parsed for where its values go, as a statement is.
//! Everything else masks more, never less, by the first rule the body
//! names:
//!
//! - the PL/pgSQL of a piece before its statement (`DECLARE v text :=
//!   '…'`, `v := …`, `IF … THEN`, `RAISE`, `EXECUTE '…'`) has every literal
//!   masked, since a variable may carry a value to a masked column later;
//!   so has a statement whose rows go into variables (`SELECT … INTO v`,
//!   `FOR v IN SELECT …`, cursors, `RETURN QUERY`) or that the parser
//!   cannot read (`PERFORM` is read as the `SELECT` it is);
//! - a body in a language other than `sql` and `plpgsql` (its SQL is in
//!   strings of its own), too long to parse (over `MAX_PARSED_SQL`), that
//!   cannot be tokenized, or nested deeper than [`MAX_BODY_DEPTH`] is
//!   masked whole;
//! - `$n` in a body is the function's argument, not the statement's
//!   parameter: bodies never change how Bind parameters are masked.
//!
//! Not followed: values that reach a masked column through a function's
//! arguments, a session setting (`set_config`) or a table (the statement
//! that writes the column does not hold the value), and values an agent
//! splits or encodes on purpose. Other strings, and bodies that name no
//! masked column, get detectors as every string does.

use std::borrow::Cow;
use std::collections::HashMap;

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

use super::ParamRules;
use super::literals::{LineIndex, MAX_PARSED_SQL, literal};
use super::sites::{Place, To, sites};
use crate::mask::{MaskStats, Masker};
use crate::policy::classify::{parse_each, word_in};

/// Bodies inside bodies followed this deep (the policy classifier's own
/// limit); a deeper one that names a masked column is masked whole.
pub(super) const MAX_BODY_DEPTH: usize = 4;

/// PL/pgSQL words before a statement whose rows go into variables.
const VARIABLE_FEEDS: &[&str] = &["FOR", "FOREACH", "OPEN", "CURSOR", "FETCH", "RETURN"];

/// Languages whose bodies are read as SQL; any other (`plpython3u`,
/// `plperl`) holds its SQL in strings of its own, so a body in it that
/// names a masked column is masked whole.
const READ_LANGUAGES: &[&str] = &["sql", "plpgsql"];

/// Words that start the SQL statement of a PL/pgSQL piece.
const STATEMENT_STARTS: &[&str] = &[
    "SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "WITH", "VALUES", "PERFORM",
];

impl Masker {
    /// `body` (a string literal's value) with the literals its code writes
    /// to or compares with masked columns masked, and detectors on the
    /// rest; `None` when it names no masked column, so it is no code worth
    /// reading and detectors run over it whole. `depth`: bodies around it.
    /// `read`: whether the body's language is one read as SQL (see
    /// [`language_is_read`]).
    pub(super) fn mask_body(
        &self,
        body: &str,
        read: bool,
        depth: usize,
        stats: &mut MaskStats,
    ) -> Option<String> {
        let named = self.named_column_rule(&body.to_ascii_lowercase())?;
        let tokens = match Tokenizer::new(&PostgreSqlDialect {}, body)
            .with_unescape(true)
            .tokenize_with_location()
        {
            Ok(tokens) if read && depth < MAX_BODY_DEPTH && body.len() <= MAX_PARSED_SQL => tokens,
            _ => return Some(self.whole(named, body.as_bytes(), "body", stats)),
        };
        let columns = self.body_columns(body, &tokens, named);
        // Parameters in a body are the function's: collected, then dropped.
        let mut params = ParamRules::default();
        let masked =
            self.replace_literals(body, &tokens, &columns, None, &mut params, depth + 1, stats);
        Some(masked.unwrap_or_else(|| body.to_owned()))
    }

    /// The rule of each literal in `body` that a column rule reaches;
    /// `named`, the first rule the body names, for what cannot be followed.
    fn body_columns(
        &self,
        body: &str,
        tokens: &[TokenWithSpan],
        named: u32,
    ) -> HashMap<Location, u32> {
        let mut columns = HashMap::new();
        let mut lines = LineIndex::new(body);
        let mut depth = 0usize;
        let mut piece = 0;
        for (i, t) in tokens.iter().enumerate() {
            match t.token {
                Token::LParen | Token::LBracket => depth += 1,
                Token::RParen | Token::RBracket => depth = depth.saturating_sub(1),
                Token::SemiColon if depth == 0 => {
                    let piece_tokens = &tokens[piece..i];
                    self.piece_columns(body, piece_tokens, named, &mut lines, &mut columns);
                    piece = i + 1;
                }
                _ => {}
            }
        }
        self.piece_columns(body, &tokens[piece..], named, &mut lines, &mut columns);
        columns
    }

    /// One `;`-separated piece of a body: its PL/pgSQL head, then its SQL
    /// statement. `named`: the first rule the body names.
    fn piece_columns(
        &self,
        body: &str,
        piece: &[TokenWithSpan],
        named: u32,
        lines: &mut LineIndex<'_>,
        columns: &mut HashMap<Location, u32>,
    ) {
        let mut depth = 0usize;
        let start = piece.iter().position(|t| {
            match t.token {
                Token::LParen | Token::LBracket => depth += 1,
                Token::RParen | Token::RBracket => depth = depth.saturating_sub(1),
                _ => {}
            }
            depth == 0 && word_in(&t.token, STATEMENT_STARTS)
        });
        let (head, statement) = piece.split_at(start.unwrap_or(piece.len()));
        let text = |tokens: &[TokenWithSpan], lines: &mut LineIndex<'_>| {
            let (first, last) = (tokens.first()?, tokens.last()?);
            let from = lines.offset(first.span.start)?;
            let to = lines.offset(last.span.end)?;
            body.get(from..to)
        };
        // PL/pgSQL: a literal here may reach a masked column through a
        // variable.
        let head_rule = text(head, lines)
            .and_then(|head| self.named_column_rule(&head.to_ascii_lowercase()))
            .unwrap_or(named);
        every_literal(head, head_rule, columns);
        let Some(sql) = text(statement, lines) else {
            return;
        };
        let statement_rule = self.named_column_rule(&sql.to_ascii_lowercase());
        // Rows a loop, a cursor or RETURN takes, and what INTO stores:
        // their values may reach a masked column later.
        let feeds_variables =
            head.iter().any(|t| word_in(&t.token, VARIABLE_FEEDS)) || fills_variables(statement);
        if feeds_variables {
            every_literal(statement, statement_rule.unwrap_or(named), columns);
            return;
        }
        // PERFORM is read as the SELECT it is: "SELECT " is as long as
        // "PERFORM", so every location stays where it was.
        let sql: Cow<'_, str> = match sql.get(..7) {
            Some(word) if word.eq_ignore_ascii_case("perform") => {
                format!("SELECT {}", &sql[7..]).into()
            }
            _ => sql.into(),
        };
        let parsed = (sql.len() <= MAX_PARSED_SQL)
            .then(|| parse_each(&sql, sites).ok())
            .flatten();
        let (Some(_), Some(parsed)) = (statement_rule, parsed.as_ref()) else {
            // Unreadable and so maybe feeding a variable: masked. Readable
            // and naming no masked column: as written.
            if parsed.is_none() {
                every_literal(statement, statement_rule.unwrap_or(named), columns);
            }
            return;
        };
        let origin = statement[0].span.start;
        for (place, to) in parsed.iter().flat_map(|s| s.values.iter()) {
            let Place::Literal(at) = place else { continue };
            let rule = match to {
                To::Column(written) => self.column_rule(written),
                // `EXECUTE name(…)` in a body is PL/pgSQL's dynamic SQL,
                // or a name this gateway never saw prepared.
                To::Param { .. } => self.first_column_rule(),
            };
            if let Some(rule) = rule {
                columns.entry(shifted(origin, *at)).or_insert(rule);
            }
        }
    }
}

/// Whether the bodies among `tokens` are in a language read as SQL: every
/// `LANGUAGE name` there names one of [`READ_LANGUAGES`] (none: `DO`'s
/// plpgsql).
pub(super) fn language_is_read(tokens: &[TokenWithSpan]) -> bool {
    let mut significant = tokens
        .iter()
        .map(|t| &t.token)
        .filter(|t| !matches!(t, Token::Whitespace(_)));
    while let Some(t) = significant.next() {
        if word_in(t, &["LANGUAGE"]) {
            let name = match significant.next() {
                Some(Token::Word(w)) => w.value.as_str(),
                Some(Token::SingleQuotedString(s)) => s.as_str(),
                _ => return false,
            };
            if !READ_LANGUAGES.iter().any(|l| name.eq_ignore_ascii_case(l)) {
                return false;
            }
        }
    }
    true
}

/// Whether a string token at `i` of `tokens` is code: a string in a
/// body's place.
pub(super) fn is_body(tokens: &[TokenWithSpan], i: usize) -> bool {
    is_string(&tokens[i].token) && where_a_body_goes(tokens, i)
}

fn is_string(token: &Token) -> bool {
    matches!(
        token,
        Token::DollarQuotedString(_)
            | Token::SingleQuotedString(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
    )
}

/// Whether the token at `i` follows `DO`, `DO LANGUAGE name` (the name
/// may be a string) or `AS`.
fn where_a_body_goes(tokens: &[TokenWithSpan], i: usize) -> bool {
    let mut before = tokens[..i]
        .iter()
        .rev()
        .map(|t| &t.token)
        .filter(|t| !matches!(t, Token::Whitespace(_)));
    match before.next() {
        Some(t) if word_in(t, &["DO", "AS"]) => true,
        Some(Token::Word(_) | Token::SingleQuotedString(_)) => {
            before.next().is_some_and(|t| word_in(t, &["LANGUAGE"]))
                && before.next().is_some_and(|t| word_in(t, &["DO"]))
        }
        _ => false,
    }
}

/// Whether a statement of a body stores into PL/pgSQL variables: an
/// `INTO` outside brackets that is not `INSERT INTO` or `MERGE INTO`.
fn fills_variables(statement: &[TokenWithSpan]) -> bool {
    let mut depth = 0usize;
    let mut previous: Option<&Token> = None;
    for t in statement {
        match &t.token {
            Token::Whitespace(_) => continue,
            Token::LParen | Token::LBracket => depth += 1,
            Token::RParen | Token::RBracket => depth = depth.saturating_sub(1),
            token
                if depth == 0
                    && word_in(token, &["INTO"])
                    && !previous.is_some_and(|p| word_in(p, &["INSERT", "MERGE"])) =>
            {
                return true;
            }
            _ => {}
        }
        previous = Some(&t.token);
    }
    false
}

/// Every literal among `tokens` masked by `rule`, but for the body of a
/// `DO` or function there: it is read as code in turn.
fn every_literal(tokens: &[TokenWithSpan], rule: u32, columns: &mut HashMap<Location, u32>) {
    for (i, t) in tokens.iter().enumerate() {
        // The literals the literal pass replaces, bodies aside.
        let masked =
            literal(&t.token).is_some() && !(is_string(&t.token) && where_a_body_goes(tokens, i));
        if masked {
            columns.entry(t.span.start).or_insert(rule);
        }
    }
}

/// A location in a text that starts at `origin` of the body, as a location
/// in the body.
fn shifted(origin: Location, at: Location) -> Location {
    if at.line <= 1 {
        Location::new(origin.line, (origin.column + at.column).saturating_sub(1))
    } else {
        Location::new(origin.line + at.line - 1, at.column)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::masked;

    #[test]
    fn statements_in_do_blocks_and_function_bodies_follow_column_rules() {
        // Only the values written to or compared with a masked column.
        assert_eq!(
            masked(
                "DO $$BEGIN INSERT INTO customers (id, ssn) VALUES (7, '123-45-6789'); \
                 UPDATE t SET note = 'kept' WHERE id = 1; END$$"
            ),
            "DO $$BEGIN INSERT INTO customers (id, ssn) VALUES (7, '[redacted]'); \
             UPDATE t SET note = 'kept' WHERE id = 1; END$$"
        );
        assert_eq!(
            masked(
                "DO LANGUAGE plpgsql $body$\nBEGIN\n  PERFORM 1;\n  UPDATE customers\n    SET ssn = '1' WHERE id = 2;\nEND\n$body$"
            ),
            "DO LANGUAGE plpgsql $body$\nBEGIN\n  PERFORM 1;\n  UPDATE customers\n    SET ssn = '[redacted]' WHERE id = 2;\nEND\n$body$"
        );
        assert_eq!(
            masked(
                "CREATE FUNCTION f() RETURNS void AS $$ DELETE FROM customers WHERE ssn IN ('1', '2') $$ LANGUAGE sql"
            ),
            "CREATE FUNCTION f() RETURNS void AS $$ DELETE FROM customers WHERE ssn IN ('[redacted]', '[redacted]') $$ LANGUAGE sql"
        );
        // A single-quoted body, its quotes doubled as written.
        assert_eq!(
            masked("DO 'BEGIN UPDATE customers SET ssn = ''9'' WHERE id = 3; END'"),
            "DO 'BEGIN UPDATE customers SET ssn = ''[redacted]'' WHERE id = 3; END'"
        );
        assert_eq!(
            masked("CREATE PROCEDURE p() LANGUAGE sql AS 'UPDATE customers SET ssn = ''9'''"),
            "CREATE PROCEDURE p() LANGUAGE sql AS 'UPDATE customers SET ssn = ''[redacted]'''"
        );
    }

    #[test]
    fn code_the_pass_cannot_read_has_every_literal_masked() {
        // PL/pgSQL around a statement: a condition naming a masked column.
        assert_eq!(
            masked(
                "DO $$BEGIN IF EXISTS (SELECT 1 FROM customers WHERE ssn = '555') THEN \
                 UPDATE t SET n = 2; END IF; END$$"
            ),
            "DO $$BEGIN IF EXISTS (SELECT '[redacted]' FROM customers WHERE ssn = '[redacted]') THEN \
             UPDATE t SET n = 2; END IF; END$$"
        );
        // A statement the parser cannot read (PERFORM is PL/pgSQL's).
        assert_eq!(
            masked("DO $$BEGIN PERFORM f(x) FROM customers WHERE ssn = '555'; END$$"),
            "DO $$BEGIN PERFORM f(x) FROM customers WHERE ssn = '[redacted]'; END$$"
        );
        // Dynamic SQL: the string it runs is masked whole.
        for quoted in [
            "'UPDATE customers SET ssn = ''7'''",
            "$i$UPDATE customers SET ssn = '7'$i$",
        ] {
            assert_eq!(
                masked(&format!("DO $o$BEGIN EXECUTE {quoted}; END$o$")),
                "DO $o$BEGIN EXECUTE '[redacted]'; END$o$"
            );
        }
        // A DO inside a DO.
        assert_eq!(
            masked("DO $o$BEGIN DO $i$BEGIN UPDATE customers SET ssn = '7'; END$i$; END$o$"),
            "DO $o$BEGIN DO $i$BEGIN UPDATE customers SET ssn = '[redacted]'; END$i$; END$o$"
        );
        // Bodies in bodies, past the depth followed: masked whole.
        let mut sql = "UPDATE customers SET ssn = '8'".to_owned();
        for depth in 0..6 {
            sql = format!("DO $d{depth}$BEGIN PERFORM 1; {sql}; END$d{depth}$");
        }
        let out = masked(&sql);
        assert!(!out.contains("'8'"), "{out}");
        // Followed to the depth, then the rest is one marker.
        assert!(
            out.contains("PERFORM 1; DO $d1$[redacted]$d1$; END"),
            "{out}"
        );
    }

    #[test]
    fn strings_that_are_not_code_are_left_to_detectors() {
        // Names no masked column: detectors only, as any string.
        assert_eq!(
            masked("DO $$BEGIN RAISE NOTICE 'mail a@example.org'; END$$"),
            "DO 'BEGIN RAISE NOTICE ''mail [redacted]''; END'"
        );
        // A plain single-quoted value is not code, even naming a column.
        assert_eq!(masked("select 'ssn 123'"), "select 'ssn 123'");
        // Parameters in a body are the function's, not the statement's.
        let mut stats = crate::mask::MaskStats::default();
        let out = super::super::tests::masker().mask_sql(
            "CREATE FUNCTION g(text) RETURNS void AS $$ UPDATE customers SET ssn = $1 $$ LANGUAGE sql",
            &mut stats,
        );
        assert!(out.params.is_empty(), "{:?}", out.params);
    }

    #[test]
    fn what_review_found_is_followed() {
        // A column spelled in escapes of a nested E'' body.
        assert_eq!(
            masked(
                r"DO $$BEGIN DO E'BEGIN UPDATE customers SET s\x73n = ''X03'' WHERE id = 1; END'; END$$"
            ),
            "DO $$BEGIN DO 'BEGIN UPDATE customers SET ssn = ''[redacted]'' WHERE id = 1; END'; END$$"
        );
        // U&'' bodies, and the language given as a string.
        assert_eq!(
            masked("DO U&'BEGIN UPDATE customers SET ssn = ''X04'' WHERE id = 1; END'"),
            "DO 'BEGIN UPDATE customers SET ssn = ''[redacted]'' WHERE id = 1; END'"
        );
        assert_eq!(
            masked("DO LANGUAGE 'plpgsql' 'BEGIN UPDATE customers SET ssn = ''Y01''; END'"),
            "DO LANGUAGE 'plpgsql' 'BEGIN UPDATE customers SET ssn = ''[redacted]''; END'"
        );
        // Hex and bit strings are literals there too.
        assert_eq!(
            masked("DO $$DECLARE v bytea := X'0A1F'; BEGIN UPDATE customers SET ssn = v; END$$"),
            "DO $$DECLARE v bytea := '[redacted]'; BEGIN UPDATE customers SET ssn = v; END$$"
        );
        // Values carried by variables.
        assert_eq!(
            masked("DO $$DECLARE v text := 'X01'; BEGIN UPDATE customers SET ssn = v; END$$"),
            "DO $$DECLARE v text := '[redacted]'; BEGIN UPDATE customers SET ssn = v; END$$"
        );
        assert_eq!(
            masked(
                "DO $$DECLARE v text; BEGIN SELECT 'X02' INTO v; UPDATE customers SET ssn = v; END$$"
            ),
            "DO $$DECLARE v text; BEGIN SELECT '[redacted]' INTO v; UPDATE customers SET ssn = v; END$$"
        );
        // A dollar-quoted value is data, not code: detectors over it whole,
        // as before bodies were read.
        assert_eq!(
            masked("INSERT INTO notes (body) VALUES ($$name john.1990@example.org$$)"),
            "INSERT INTO notes (body) VALUES ('name [redacted]')"
        );
        // A PREPARE in dynamic SQL: what the session knew is unknown now.
        let mut stats = crate::mask::MaskStats::default();
        let out = super::super::tests::masker().mask_sql(
            "DO $$BEGIN EXECUTE 'PREPARE p(text) AS UPDATE customers SET ssn = $1'; END$$",
            &mut stats,
        );
        assert!(out.prepares_unread);
    }

    #[test]
    fn loops_cursors_and_other_languages_mask_what_they_carry() {
        for (sql, original) in [
            (
                "DO $$DECLARE v text; BEGIN FOR v IN SELECT '512-00-1111' LOOP \
                 UPDATE customers SET ssn = v; END LOOP; END$$",
                "512-00-1111",
            ),
            (
                "DO $$DECLARE c CURSOR FOR SELECT '512-00-2222'; v text; BEGIN OPEN c; \
                 FETCH c INTO v; UPDATE customers SET ssn = v; END$$",
                "512-00-2222",
            ),
            (
                "DO $$DECLARE c refcursor; v text; BEGIN OPEN c FOR SELECT '512-00-3333'; \
                 FETCH c INTO v; UPDATE customers SET ssn = v; END$$",
                "512-00-3333",
            ),
            (
                "DO LANGUAGE plpython3u $$plpy.execute(\"UPDATE customers SET ssn = '512-00-4444'\")$$",
                "512-00-4444",
            ),
            (
                "CREATE FUNCTION f() RETURNS void AS $$ spi_exec_query(\"UPDATE customers SET ssn = '512-00-5555'\"); $$ LANGUAGE plperl",
                "512-00-5555",
            ),
        ] {
            let out = masked(sql);
            assert!(!out.contains(original), "{out}");
        }
        // PERFORM is read as a SELECT: what it does not compare with a
        // masked column stays.
        assert_eq!(
            masked(
                "DO $$BEGIN PERFORM pg_notify('jobs', 'go'); UPDATE customers SET ssn = '1'; END$$"
            ),
            "DO $$BEGIN PERFORM pg_notify('jobs', 'go'); UPDATE customers SET ssn = '[redacted]'; END$$"
        );
    }

    proptest::proptest! {
        #[test]
        fn bodies_never_make_masking_panic(parts in proptest::collection::vec(proptest::sample::select(vec![
            "DO ", "do language plpgsql ", "AS ", "$$", "$t$", "'", "''", "E'", "\\", ";", "(", ")", " ",
            "\n", "BEGIN ", "END", "IF ", "THEN ", "PERFORM ", "EXECUTE ", "update customers set ssn = ",
            "insert into customers (ssn) values (", "select ", "ssn", " = ", "'123-45-6789'", "$1", "1",
            "é", "--", "/*", "*/", "into v ", "where ssn in (", "a@example.org",
        ]), 0..40)) {
            let sql: String = parts.concat();
            let _ = masked(&sql);
        }
    }
}
