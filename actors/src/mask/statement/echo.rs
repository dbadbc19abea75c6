//! Errors that echo what the client sent.
//!
//! PostgreSQL quotes the offending value of a data exception (SQLSTATE
//! class 22: `invalid input syntax for type integer: "…"`, `value "…" is
//! out of range for type integer`, and in COPY's context field `COPY
//! customers, line 1, column ssn: "…"`), the token a syntax error stopped
//! at (42601: `syntax error at or near "'123-45-6789'"`, `unterminated
//! quoted string at or near "'123-45-6789"`), and in an error raised inside
//! a function the SQL statement it ran (the internal query field). The
//! value may be one a column rule covers, and the text does not say which
//! column it was meant for. So, under column rules:
//!
//! - a data exception's quoted value, from its first `"` to its last, is
//!   masked by the first column rule;
//! - a syntax error's quoted token is masked the same way when it is a
//!   literal (a string, or a number): keywords and names stay, so the agent
//!   still sees where its SQL went wrong;
//! - the internal query is masked as SQL the client sent.
//!
//! Detectors run over every field afterwards, as on every error text.

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
        if code == b'q' {
            let sql = std::str::from_utf8(text).ok()?;
            return self.mask_sql(sql, stats).text.map(String::into_bytes);
        }
        let data_exception = sqlstate.starts_with(b"22");
        let syntax_error = sqlstate == b"42601";
        if !(data_exception || syntax_error) || !matches!(code, b'M' | b'D' | b'W') {
            return None;
        }
        let open = text.iter().position(|&b| b == b'"')?;
        let close = text.iter().rposition(|&b| b == b'"')?;
        if close <= open + 1 {
            return None;
        }
        let quoted = &text[open + 1..close];
        if !data_exception && !is_literal_token(quoted) {
            return None;
        }
        let mut out = Vec::with_capacity(text.len());
        out.extend_from_slice(&text[..=open]);
        out.extend_from_slice(self.whole(rule, quoted, "error", stats).as_bytes());
        out.extend_from_slice(&text[close..]);
        Some(out)
    }
}

/// Whether a token a syntax error quotes is a literal: a string (`'…'`,
/// `E'…'`, `U&'…'`, `$$…$$`, unterminated or not) or a number.
fn is_literal_token(token: &[u8]) -> bool {
    token.contains(&b'\'')
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
