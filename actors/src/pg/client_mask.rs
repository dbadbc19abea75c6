//! Masking what the client sends, for the recording: the session's side of
//! [`crate::mask::Masker::mask_sql`]. It remembers, per prepared statement,
//! which column rule each `$n` falls under, so a later Bind's values are
//! masked by the column they are written to or compared with; the target
//! always gets the original bytes.

use std::borrow::Cow;

use super::encoding::ClientEncoding;
use crate::mask::{MaskStats, Masker, ParamRules, Prepared, followed_name};

/// Prepared statements whose parameter rules are remembered. Beyond it, a
/// new name's Binds are treated like a statement never seen (see
/// [`ClientMask::param`]).
const MAX_PREPARED: usize = 10_000;

/// What a masked binary value is recorded as: the gateway does not
/// re-encode binary formats, and a partial hex dump would hide nothing.
pub const REDACTED: &str = "[redacted]";

pub struct ClientMask {
    masker: &'static Masker,
    /// Parameter rules by statement name as sent (SQL names folded).
    prepared: Prepared,
    stats: MaskStats,
}

impl ClientMask {
    pub fn new(masker: &'static Masker) -> Self {
        ClientMask {
            masker,
            prepared: Prepared::new(),
            stats: MaskStats::default(),
        }
    }

    pub fn masker(&self) -> &'static Masker {
        self.masker
    }

    /// A Query's or Parse's SQL as recorded; a Parse's parameter rules are
    /// remembered under its name, and so are those of a `PREPARE name AS`
    /// in SQL (PostgreSQL keeps both in one namespace: a Bind or an
    /// `EXECUTE` may use either).
    pub fn sql<'a>(&mut self, parse_of: Option<&[u8]>, sql: &'a str) -> Cow<'a, str> {
        let masked = self
            .masker
            .mask_sql_in(sql, Some(&self.prepared), &mut self.stats);
        if masked.prepares_unread {
            // What it prepares cannot be followed: nothing known stays
            // known (every parameter of every statement is masked).
            self.prepared.clear();
        }
        let names = parse_of
            .filter(|n| followed_name(n))
            .map(<[u8]>::to_vec)
            .into_iter()
            .chain(masked.prepares.iter().map(|n| n.as_bytes().to_vec()));
        for name in names {
            let room = self.prepared.len() < MAX_PREPARED;
            match self.prepared.get_mut(&name) {
                // Prepared again: PostgreSQL may have refused it and kept
                // the first, so the stricter rules of the two are kept.
                Some(rules) => rules.merge_stricter(&masked.params),
                None if room => {
                    self.prepared.insert(name, masked.params.clone());
                }
                None => {}
            }
        }
        match masked.text {
            Some(text) => Cow::Owned(text),
            None => Cow::Borrowed(sql),
        }
    }

    /// A prepared statement closed: its name may be reused, and frees a
    /// place under `MAX_PREPARED` (10,000).
    pub fn forget(&mut self, statement: &[u8]) {
        self.prepared.remove(statement);
    }

    /// SQL that does not decode, as recorded: detectors over its bytes.
    pub fn sql_bytes<'a>(&mut self, sql: &'a [u8]) -> Cow<'a, [u8]> {
        match self.masker.mask_bytes(sql, &mut self.stats) {
            Some(masked) => Cow::Owned(masked),
            None => Cow::Borrowed(sql),
        }
    }

    /// Parameter `index` of a Bind to `statement`, as recorded; `None`
    /// when it is recorded as sent. A statement the session never prepared
    /// (`PREPARE` in SQL, or beyond `MAX_PREPARED` (10,000)) cannot be matched to
    /// columns: under column rules all its values are masked.
    pub fn param(
        &mut self,
        enc: ClientEncoding,
        statement: &[u8],
        index: usize,
        binary: bool,
        value: &[u8],
    ) -> Option<String> {
        let unknown = ParamRules::default();
        let known = followed_name(statement)
            .then(|| self.prepared.get(statement))
            .flatten();
        let rules = match known {
            Some(rules) => rules,
            None if self.masker.has_column_rules() => {
                self.masker.count_unmatched(index, &mut self.stats);
                return Some(REDACTED.to_owned());
            }
            None => &unknown,
        };
        if binary {
            return self
                .masker
                .hides_binary(rules, index, value, &mut self.stats)
                .then(|| REDACTED.to_owned());
        }
        match enc.decode(value) {
            Some(text) => self.masker.mask_param(rules, index, &text, &mut self.stats),
            None => self
                .masker
                .mask_bytes(value, &mut self.stats)
                .map(|masked| enc.text_or_hex(&masked)),
        }
    }

    /// A FunctionCall argument, as recorded: detectors only (nothing names
    /// its column).
    pub fn argument(&mut self, enc: ClientEncoding, binary: bool, value: &[u8]) -> Option<String> {
        let masked = self.masker.mask_bytes(value, &mut self.stats)?;
        Some(if binary {
            REDACTED.to_owned()
        } else {
            enc.text_or_hex(&masked)
        })
    }

    /// What was masked since the last call: `(rule, column or detector,
    /// count)`, never the values.
    pub fn take_counts(&mut self) -> Option<Vec<(String, String, u64)>> {
        (!self.stats.is_empty()).then(|| self.stats.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::{MaskRule, Strategy};

    fn pii() -> &'static Masker {
        let masker = Masker::new(
            vec![MaskRule {
                name: "pii".into(),
                columns: vec!["ssn".into()],
                detectors: vec![],
                regex: vec![],
                strategy: Strategy::Redact,
            }],
            [1; 32],
        )
        .unwrap();
        Box::leak(Box::new(masker))
    }

    #[test]
    fn execute_arguments_are_masked_by_the_prepared_statements_columns() {
        let mut m = ClientMask::new(pii());
        let enc = ClientEncoding::UTF8;
        // Before it is prepared, every argument (the columns are unknown).
        assert_eq!(
            m.sql(None, "EXECUTE p(5, '111-22-3333')"),
            "EXECUTE p('[redacted]', '[redacted]')"
        );
        m.sql(
            None,
            "PREPARE P(int, text) AS UPDATE customers SET ssn = $2 WHERE id = $1",
        );
        assert_eq!(
            m.sql(None, "execute p(5, '111-22-3333')"),
            "execute p(5, '[redacted]')"
        );
        // A quoted name is another statement.
        assert_eq!(
            m.sql(None, r#"EXECUTE "P"(5, 'x')"#),
            r#"EXECUTE "P"('[redacted]', '[redacted]')"#
        );
        // Binds to it (one namespace with Parse) follow its columns too.
        assert_eq!(m.param(enc, b"p", 0, false, b"5"), None);
        assert_eq!(
            m.param(enc, b"p", 1, false, b"111-22-3333").as_deref(),
            Some(REDACTED)
        );
        // Arguments that are expressions: every literal inside.
        assert_eq!(
            m.sql(None, "EXECUTE p(5, upper('111-22-3333'))"),
            "EXECUTE p(5, upper('[redacted]'))"
        );
    }

    /// Found in review: ways a client could have the recording follow a
    /// weaker statement than the one PostgreSQL runs.
    #[test]
    fn a_name_prepared_again_or_unfollowable_is_never_masked_less() {
        let ssn = "111-22-3333";
        let strict = "PREPARE p(text) AS UPDATE customers SET ssn = $1 WHERE id = 1";
        let weak = "PREPARE p(text) AS SELECT $1 -- ssn";
        // Prepared again (PostgreSQL refuses it and keeps the first).
        let mut m = ClientMask::new(pii());
        m.sql(None, strict);
        m.sql(None, weak);
        assert_eq!(
            m.sql(None, &format!("EXECUTE p('{ssn}')")),
            "EXECUTE p('[redacted]')"
        );
        // Deallocated and prepared again in the message that executes it.
        let mut m = ClientMask::new(pii());
        m.sql(None, "PREPARE q(text) AS SELECT $1 -- ssn");
        let message = format!(
            "DEALLOCATE q; PREPARE q(text) AS UPDATE customers SET ssn = $1 WHERE id = 1; EXECUTE q('{ssn}')"
        );
        assert!(!m.sql(None, &message).contains(ssn));
        // A PREPARE that names a masked column but cannot be parsed.
        let mut m = ClientMask::new(pii());
        m.sql(None, "PREPARE r(text) AS SELECT $1 -- ssn");
        m.sql(
            None,
            r#"PREPARE r(text) AS UPDATE customers SET U&"\0073sn" = $1 WHERE id = 1"#,
        );
        assert!(!m.sql(None, &format!("EXECUTE r('{ssn}')")).contains(ssn));
        // Names PostgreSQL may keep differently: non-ASCII, or cut at 63
        // bytes.
        let long = "a".repeat(63);
        for (first, second, executed) in [
            ("Ä", "\"ä\"", "Ä"),
            (
                &*format!("{long}x"),
                &*format!("{long}y"),
                &*format!("{long}y"),
            ),
        ] {
            let mut m = ClientMask::new(pii());
            m.sql(
                None,
                &format!("PREPARE {first}(text) AS UPDATE customers SET ssn = $1 WHERE id = 1"),
            );
            m.sql(None, &format!("PREPARE {second}(text) AS SELECT $1 -- ssn"));
            assert!(
                !m.sql(None, &format!("EXECUTE {executed}('{ssn}')"))
                    .contains(ssn),
                "{first} / {second}"
            );
            assert_eq!(
                m.param(
                    ClientEncoding::UTF8,
                    executed.as_bytes(),
                    0,
                    false,
                    ssn.as_bytes()
                )
                .as_deref(),
                Some(REDACTED)
            );
        }
    }

    #[test]
    fn a_closed_statement_is_forgotten() {
        let mut m = ClientMask::new(pii());
        let enc = ClientEncoding::UTF8;
        m.sql(
            Some(b"s1"),
            "update t set note = $1, ssn = $2 where id = $3",
        );
        assert_eq!(m.param(enc, b"s1", 0, false, b"fine"), None);
        assert_eq!(
            m.param(enc, b"s1", 1, false, b"123-45-6789").as_deref(),
            Some(REDACTED)
        );
        // Closed, its Binds can no longer be matched to columns: every
        // value is masked, not recorded by a stale or missing rule.
        m.forget(b"s1");
        assert_eq!(
            m.param(enc, b"s1", 0, false, b"fine").as_deref(),
            Some(REDACTED)
        );
    }
}
