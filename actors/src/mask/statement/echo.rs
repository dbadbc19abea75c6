//! Errors that echo what the client sent.
//!
//! PostgreSQL quotes the offending value of a data exception (SQLSTATE
//! class 22: `invalid input syntax for type integer: "…"`, `value "…" is
//! out of range for type integer`), the token a syntax error stopped at
//! (42601: `syntax error at or near "'123-45-6789'"`, `unterminated quoted
//! string at or near "'123-45-6789"`), and in its context field the SQL
//! statement a function ran (`SQL statement "UPDATE …"`) and the COPY line
//! that failed (`COPY customers, line 1: "…"`, or `column ssn: "…"`), as
//! it does the whole statement a function ran in the internal query
//! field. The value may be one a column rule covers, and the text does not
//! say which column it was meant for. So, under column rules:
//!
//! - a data exception's quoted value is masked by the first column rule:
//!   from the `"` after `: ` (the message's last quoted part) or, without
//!   one, from the first `"`, to the last `"`;
//! - a syntax error's quoted token is masked the same way when it is a
//!   literal (a string, a number, an unterminated quoted identifier or
//!   comment, which runs to the end of the statement): keywords and names
//!   stay, so the agent still sees where its SQL went wrong;
//! - SQL a context line or the internal query quotes is masked as SQL the
//!   client sent, and a COPY line's quoted data by the first column rule,
//!   whatever the error;
//! - text that is not UTF-8 where SQL is expected is masked whole.
//!
//! Detectors run over every field first, as on every error text, so a
//! value a detector knows is masked the detector's way.
//!
//! Not covered: `Failing row contains (…)` in a NOT NULL or CHECK
//! violation's detail is masked by detectors only (its columns need the
//! table's, which this path does not look up); an unquoted token a syntax
//! error names (`at or near "Smith"`) reads as a name and stays.

use crate::mask::{MaskStats, Masker};

impl Masker {
    /// Field `code` of an ErrorResponse or NoticeResponse whose SQLSTATE is
    /// `sqlstate`, with what it echoes of the client's statement masked;
    /// `None` when nothing is.
    pub fn mask_echo(
        &self,
        sqlstate: &[u8],
        code: u8,
        text: &[u8],
        stats: &mut MaskStats,
    ) -> Option<Vec<u8>> {
        let rule = self.first_column_rule()?;
        match code {
            b'q' => Some(self.echoed_sql(rule, text, stats)),
            b'W' => self.context(rule, sqlstate, text, stats),
            b'M' | b'D' => self.quoted_value(rule, sqlstate, text, stats),
            _ => None,
        }
    }

    /// SQL an error quotes, masked as the client's SQL is (whole when it is
    /// not UTF-8); the bytes as given when nothing in it is masked.
    fn echoed_sql(&self, rule: u32, sql: &[u8], stats: &mut MaskStats) -> Vec<u8> {
        match std::str::from_utf8(sql) {
            Ok(sql) => self
                .mask_sql(sql, stats)
                .text
                .map_or_else(|| sql.as_bytes().to_vec(), String::into_bytes),
            Err(_) => self.whole(rule, sql, "error", stats).into_bytes(),
        }
    }

    /// A context field, line by line.
    fn context(
        &self,
        rule: u32,
        sqlstate: &[u8],
        text: &[u8],
        stats: &mut MaskStats,
    ) -> Option<Vec<u8>> {
        const SQL: &[u8] = b"SQL statement \"";
        let mut out = Vec::with_capacity(text.len());
        let mut changed = false;
        for (i, line) in text.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                out.push(b'\n');
            }
            let masked = if line.starts_with(SQL) && line.len() > SQL.len() && line.ends_with(b"\"")
            {
                let inner = &line[SQL.len()..line.len() - 1];
                let sql = self.echoed_sql(rule, inner, stats);
                (sql != inner).then(|| [SQL, &sql, b"\""].concat())
            } else if line.starts_with(b"COPY ") {
                quoted_span(line).map(|span| self.mask_span(rule, line, span, stats))
            } else if sqlstate.starts_with(b"22") {
                self.quoted_value(rule, sqlstate, line, stats)
            } else {
                None
            };
            changed |= masked.is_some();
            out.extend_from_slice(masked.as_deref().unwrap_or(line));
        }
        changed.then_some(out)
    }

    /// A message or detail: a data exception's value, a syntax error's
    /// literal.
    fn quoted_value(
        &self,
        rule: u32,
        sqlstate: &[u8],
        text: &[u8],
        stats: &mut MaskStats,
    ) -> Option<Vec<u8>> {
        let data_exception = sqlstate.starts_with(b"22");
        if !data_exception && sqlstate != b"42601" {
            return None;
        }
        let (open, close) = quoted_span(text)?;
        if !data_exception && !is_literal_token(&text[open + 1..close]) {
            return None;
        }
        Some(self.mask_span(rule, text, (open, close), stats))
    }

    /// `text` with its value between the quotes at `open` and `close` (see
    /// [`quoted_span`]) masked by `rule`.
    fn mask_span(
        &self,
        rule: u32,
        text: &[u8],
        (open, close): (usize, usize),
        stats: &mut MaskStats,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len());
        out.extend_from_slice(&text[..=open]);
        out.extend_from_slice(
            self.whole(rule, &text[open + 1..close], "error", stats)
                .as_bytes(),
        );
        out.extend_from_slice(&text[close..]);
        out
    }
}

/// The quotes around a message's value: the `"` after the first `: "`, or
/// else the first `"`, and the last `"`. A value may hold quotes itself, so
/// everything between is the value.
fn quoted_span(text: &[u8]) -> Option<(usize, usize)> {
    let open = text
        .windows(3)
        .position(|w| w == b": \"")
        .map(|i| i + 2)
        .or_else(|| text.iter().position(|&b| b == b'"'))?;
    let close = text.iter().rposition(|&b| b == b'"')?;
    (close > open + 1).then_some((open, close))
}

/// Whether a token a syntax error quotes is a literal: a string (`'…'`,
/// `E'…'`, `U&'…'`, `$$…$$`, unterminated or not), a number, or an
/// unterminated quoted identifier or comment (the rest of the statement).
fn is_literal_token(token: &[u8]) -> bool {
    token.contains(&b'\'')
        || token.starts_with(b"\"")
        || token.starts_with(b"/*")
        || token
            .first()
            .is_some_and(|b| b.is_ascii_digit() || matches!(b, b'$' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::super::tests::masker;
    use crate::mask::MaskStats;

    fn echo(sqlstate: &str, code: u8, text: &str) -> Option<String> {
        let mut stats = MaskStats::default();
        masker()
            .mask_echo(sqlstate.as_bytes(), code, text.as_bytes(), &mut stats)
            .map(|m| String::from_utf8(m).unwrap())
    }

    #[test]
    fn values_echoed_by_data_exceptions_and_syntax_errors_are_masked() {
        assert_eq!(
            echo("42601", b'M', "syntax error at or near \"'512-00-1111'\"").as_deref(),
            Some("syntax error at or near \"[redacted]\"")
        );
        assert_eq!(
            echo(
                "42601",
                b'M',
                "unterminated quoted string at or near \"'512-00-2222\""
            )
            .as_deref(),
            Some("unterminated quoted string at or near \"[redacted]\"")
        );
        assert_eq!(
            echo("42601", b'M', "syntax error at or near \"5120011\"").as_deref(),
            Some("syntax error at or near \"[redacted]\"")
        );
        assert_eq!(
            echo(
                "22P02",
                b'M',
                "invalid input syntax for type integer: \"512-00-3333\""
            )
            .as_deref(),
            Some("invalid input syntax for type integer: \"[redacted]\"")
        );
        assert_eq!(
            echo(
                "22003",
                b'M',
                "value \"51200444455\" is out of range for type integer"
            )
            .as_deref(),
            Some("value \"[redacted]\" is out of range for type integer")
        );
        // COPY's context names the column, the value in quotes; a value
        // holding quotes is masked from the first to the last.
        assert_eq!(
            echo("22P02", b'W', "COPY customers, line 1, column id: \"a\"b\"").as_deref(),
            Some("COPY customers, line 1, column id: \"[redacted]\"")
        );
        // A function's statement, masked as the client's SQL is.
        assert_eq!(
            echo(
                "23514",
                b'q',
                "UPDATE customers SET ssn = '512-00-5555' WHERE id = 1"
            )
            .as_deref(),
            Some("UPDATE customers SET ssn = '[redacted]' WHERE id = 1")
        );
    }

    #[test]
    fn context_lines_and_what_review_found() {
        // A function's statement in the context of any error.
        assert_eq!(
            echo(
                "23505",
                b'W',
                "SQL statement \"UPDATE customers SET ssn = '512-00-1111' WHERE id = 1\"\n\
                 PL/pgSQL function inline_code_block line 1 at SQL statement"
            )
            .as_deref(),
            Some(
                "SQL statement \"UPDATE customers SET ssn = '[redacted]' WHERE id = 1\"\n\
                 PL/pgSQL function inline_code_block line 1 at SQL statement"
            )
        );
        // The COPY line a constraint rejected.
        assert_eq!(
            echo(
                "23514",
                b'W',
                "COPY customers, line 1: \"1\t512-00-1111\t\\N\""
            )
            .as_deref(),
            Some("COPY customers, line 1: \"[redacted]\"")
        );
        // A name quoted before the value stays.
        assert_eq!(
            echo(
                "22023",
                b'M',
                "invalid value for parameter \"TimeZone\": \"512\""
            )
            .as_deref(),
            Some("invalid value for parameter \"TimeZone\": \"[redacted]\"")
        );
        // An unterminated quoted identifier or comment runs to the end.
        assert_eq!(
            echo(
                "42601",
                b'M',
                "unterminated quoted identifier at or near \"\"x FROM customers WHERE ssn = 51\""
            )
            .as_deref(),
            Some("unterminated quoted identifier at or near \"[redacted]\"")
        );
        // An internal query that is not UTF-8 is masked whole.
        let mut stats = MaskStats::default();
        assert_eq!(
            masker().mask_echo(b"22P02", b'q', b"UPDATE t SET a = '\xe9'", &mut stats),
            Some(b"[redacted]".to_vec())
        );
    }

    #[test]
    fn names_keywords_and_other_errors_are_left_alone() {
        // A syntax error at a keyword or a name still says where.
        assert_eq!(echo("42601", b'M', "syntax error at or near \"frm\""), None);
        assert_eq!(echo("42601", b'M', "syntax error at end of input"), None);
        // Quoted names in other errors are not values.
        assert_eq!(
            echo("42P01", b'M', "relation \"customerz\" does not exist"),
            None
        );
        // Severity, SQLSTATE and position fields are never touched.
        assert_eq!(echo("22P02", b'C', "22P02"), None);
        assert_eq!(echo("22P02", b'M', "invalid input syntax: \"\""), None);
    }
}
