//! Classification by statement shape: the parse skipped for statements
//! that differ from one already read only in their integer operands.
//!
//! Agents send the same statements over and over with different numbers
//! (`SELECT abalance FROM pgbench_accounts WHERE aid = 48213`), and
//! parsing is most of what policy costs per statement. A statement's
//! *shape* is its text with each integer operand of an operator replaced
//! by a placeholder; statements of one shape are classified once per
//! worker thread and the result reused.
//!
//! Why that is sound. Only text in a small language gets a shape — ASCII;
//! no comments, dollar quotes, backslashes, prefixed strings (`E''`,
//! `U&''`, `B''`, `X''`, `N''`) or `$` other than parameters — so where
//! each token starts and ends is plain, and the same for sqlparser,
//! PostgreSQL and this scanner. Placeholders stand only for a run of
//! digits that follows an operator character (`= < > + - * /`) and then
//! whitespace, and is followed by neither a word character nor `.`, nine
//! digits at most: a whole integer constant, an operand in an expression.
//! There is one placeholder per digit, so statements of one shape have
//! integers of the same lengths there. (Both rules answer what fuzzing
//! found: sqlparser 0.64 drops a lone digit glued to some operators, so
//! `a &>0& b` and `a &>10& b` are different token streams.) No
//! classification depends on such a value: the classifier reads numbers
//! only as utility option values (`EXPLAIN (ANALYZE 0)`, after a word)
//! and checks that dynamic SQL arguments are constants of some kind. Two
//! statements of one shape therefore have the same tokens but for integer
//! values at those places, the same tree but for those values, and the
//! same classification; the `sql_text` fuzz target checks that on every
//! input (see [`vary_operands`]). Strings, identifiers, typmods
//! (`varchar(10)`), `LIMIT 5` and every other number stay in the shape
//! verbatim.
//!
//! Unreadable results are not kept: an unparsed statement is parsed
//! again each time, so its error message is its own. Nor are large ones
//! (more than four statements or 64 names): the cache's memory is bounded
//! by what it keeps as well as by its keys.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::classify::{StatementInfo, Unparsed};

/// Longest statement given a shape: longer ones are rarely repeated, and
/// the bound keeps the cache's memory small (two generations of
/// [`GENERATION`] shapes of at most this many bytes per worker thread).
const MAX_SHAPED_SQL: usize = 2048;

/// Shapes per generation; see [`Cache`].
const GENERATION: usize = 512;

/// Largest classification kept: statements, and names in all of them
/// (kinds, tables, functions, columns). A few KiB per shape at most.
const MAX_KEPT_STATEMENTS: usize = 4;
const MAX_KEPT_NAMES: usize = 64;

/// Longest integer abstracted: nine digits fit every integer type a
/// parser reads a number into, so no value of a shape fails to parse
/// where another parses. Longer integers stay in the shape.
const MAX_OPERAND_DIGITS: usize = 9;

/// Stands for an integer operand in a shape; never in ASCII text.
const PLACEHOLDER: char = '\u{80}';

/// The statement's shape, or `None` when it is outside the language whose
/// tokens are plain (see the module docs) or too long to keep.
pub fn shape(sql: &str) -> Option<String> {
    let b = sql.as_bytes();
    if b.len() > MAX_SHAPED_SQL || !sql.is_ascii() || b.contains(&b'\\') {
        return None;
    }
    let mut key = String::with_capacity(b.len() + 8);
    let mut prev = b' '; // last byte outside whitespace, strings and identifiers' quotes
    let mut i = 0;
    while i < b.len() {
        // Bytes that start nothing are copied a run at a time.
        let run = b[i..].iter().take_while(|&&c| plain(c)).count();
        if run > 0 {
            key.push_str(&sql[i..i + run]);
            if let Some(&last) = b[i..i + run].iter().rfind(|c| !c.is_ascii_whitespace()) {
                prev = last;
            }
            i += run;
            continue;
        }
        let c = b[i];
        match c {
            b'-' if b.get(i + 1) == Some(&b'-') => return None,
            b'/' if b.get(i + 1) == Some(&b'*') => return None,
            b'\'' | b'"' => {
                // A quote right after a word character or `&` is a
                // prefixed string (E'', U&'', B'', X'', N'') or glued to
                // something the scanner does not model.
                if c == b'\'' && i > 0 && (word(b[i - 1]) || b[i - 1] == b'&') {
                    return None;
                }
                let end = quoted_end(b, i)?;
                key.push_str(&sql[i..end]);
                prev = c;
                i = end;
                continue;
            }
            b'$' => {
                // Only `$N` parameters; anything else may open a dollar quote.
                let end = i + parameter_len(b, i)?;
                key.push_str(&sql[i..end]);
                prev = b'0';
                i = end;
                continue;
            }
            b'0'..=b'9' if i == 0 || !(word(b[i - 1]) || b[i - 1] == b'.') => {
                let end = i + b[i..].iter().take_while(|d| d.is_ascii_digit()).count();
                // After whitespace only: sqlparser 0.64 drops a lone digit
                // glued to some operators (`a &>0& b` reads as `a &> & b`),
                // which the fuzz target found; and the placeholder keeps
                // the integer's length, which that lexer's bugs may see.
                let operand = b"=<>+-*/".contains(&prev)
                    && i > 0
                    && b[i - 1].is_ascii_whitespace()
                    && end - i <= MAX_OPERAND_DIGITS
                    && !b.get(end).is_some_and(|&n| word(n) || n == b'.');
                if operand {
                    key.extend(std::iter::repeat_n(PLACEHOLDER, end - i));
                } else {
                    key.push_str(&sql[i..end]);
                }
                prev = b'0';
                i = end;
                continue;
            }
            _ => {}
        }
        key.push(c as char);
        if !c.is_ascii_whitespace() {
            prev = c;
        }
        i += 1;
    }
    Some(key)
}

/// A byte that ends no token of its own in [`shape`]: not a quote, `$`,
/// digit, or the start of a comment, and not an operator character a
/// placeholder may follow. Runs of these are copied as they are.
fn plain(c: u8) -> bool {
    !matches!(
        c,
        b'\'' | b'"' | b'$' | b'0'..=b'9' | b'-' | b'/' | b'=' | b'<' | b'>' | b'+' | b'*'
    )
}

/// A byte that continues an identifier or a number in PostgreSQL's lexer.
fn word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$'
}

/// Length of the parameter (`$` and digits) at `b[at]`, or `None` when the
/// `$` there may instead open a dollar quote or belong to an identifier:
/// no digits, or an identifier byte (any byte outside ASCII among them,
/// as tokenizers differ on which a tag may hold) or `$` beside them.
pub(crate) fn parameter_len(b: &[u8], at: usize) -> Option<usize> {
    let ident = |c: u8| word(c) || !c.is_ascii();
    let digits = b[at + 1..]
        .iter()
        .take_while(|d| d.is_ascii_digit())
        .count();
    let glued = (at > 0 && ident(b[at - 1])) || b.get(at + 1 + digits).is_some_and(|&n| ident(n));
    (digits > 0 && !glued).then_some(1 + digits)
}

/// End (exclusive) of the quoted string or identifier opening at `start`,
/// a doubled quote standing for one; `None` when it does not end.
fn quoted_end(b: &[u8], start: usize) -> Option<usize> {
    let q = b[start];
    let mut i = start + 1;
    while i < b.len() {
        if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

/// `sql` with every digit of the integer operands its shape abstracts
/// replaced by `digit`: the same shape, other numbers. For the fuzz
/// target's check that a shape's statements classify alike.
pub fn vary_operands(sql: &str, digit: char) -> Option<String> {
    let key = shape(sql)?;
    key.contains(PLACEHOLDER)
        .then(|| key.replace(PLACEHOLDER, &digit.to_string()))
}

/// A classification as the cache keeps it: shared, so a hit costs no
/// copy, and comparable by address ([`Rc::ptr_eq`]) for callers that
/// remember what they made of one.
pub type Shared = Rc<Vec<StatementInfo>>;

/// Two generations of shapes: lookups promote from the old to the new;
/// when the new one is full it becomes the old one. Statements in use stay,
/// memory is bounded, and a flood of one-off statements costs a parse each,
/// as without the cache. The hasher (foldhash) is seeded per process.
#[derive(Default)]
struct Cache {
    new: HashMap<String, Shared, foldhash::fast::RandomState>,
    old: HashMap<String, Shared, foldhash::fast::RandomState>,
}

impl Cache {
    fn get(&mut self, key: &str) -> Option<Shared> {
        if let Some(v) = self.new.get(key) {
            return Some(v.clone());
        }
        let (k, v) = self.old.remove_entry(key)?;
        self.insert(k, v.clone());
        Some(v)
    }

    fn insert(&mut self, key: String, infos: Shared) {
        if self.new.len() >= GENERATION {
            self.old = std::mem::take(&mut self.new);
        }
        self.new.insert(key, infos);
    }
}

/// Whether a classification is small enough to keep: 2 KiB of text can
/// hold hundreds of statements (`END;END;…`), and the cache's memory must
/// be bounded by what it keeps, not only by its keys.
fn small(infos: &[StatementInfo]) -> bool {
    infos.len() <= MAX_KEPT_STATEMENTS
        && infos
            .iter()
            .map(|i| i.kinds.len() + i.tables.len() + i.functions.len() + i.columns.len())
            .sum::<usize>()
            <= MAX_KEPT_NAMES
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::default();
}

/// `classify(sql)`, reused for statements of a shape already read on this
/// thread. An unreadable statement is read again each time.
pub fn classify_shaped(
    sql: &str,
    classify: impl FnOnce(&str) -> Result<Vec<StatementInfo>, Unparsed>,
) -> Result<Vec<StatementInfo>, Unparsed> {
    classify_shared(sql, classify).map(|(infos, _)| Rc::unwrap_or_clone(infos))
}

/// [`classify_shaped`] without the copy: the classification, and whether
/// it is the one the cache keeps for its shape (then every statement of
/// that shape gets the same `Rc` while the cache keeps it).
pub fn classify_shared(
    sql: &str,
    classify: impl FnOnce(&str) -> Result<Vec<StatementInfo>, Unparsed>,
) -> Result<(Shared, bool), Unparsed> {
    let Some(key) = shape(sql) else {
        return classify(sql).map(|infos| (Rc::new(infos), false));
    };
    if let Some(hit) = CACHE.with(|c| c.borrow_mut().get(&key)) {
        return Ok((hit, true));
    }
    let infos = classify(sql)?;
    if !small(&infos) {
        return Ok((Rc::new(infos), false));
    }
    let infos = Rc::new(infos);
    CACHE.with(|c| c.borrow_mut().insert(key, infos.clone()));
    Ok((infos, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::classify::{classify, classify_uncached};

    fn abstracted(sql: &str) -> String {
        shape(sql).unwrap().replace(PLACEHOLDER, "?")
    }

    #[test]
    fn integer_operands_are_abstracted_and_nothing_else() {
        assert_eq!(
            abstracted("SELECT abalance FROM pgbench_accounts WHERE aid = 48213;"),
            "SELECT abalance FROM pgbench_accounts WHERE aid = ?????;"
        );
        assert_eq!(
            abstracted("UPDATE t SET a = a + - 12 WHERE id= 7 AND b<> 3 AND c=4"),
            "UPDATE t SET a = a + - ?? WHERE id= ? AND b<> ? AND c=4"
        );
        // Numbers that are not an operator's integer operand stay.
        for sql in [
            "SELECT 1",
            "SELECT * FROM t LIMIT 5 OFFSET 10",
            "CREATE TABLE t (a varchar(10), b numeric(10, 2))",
            "EXPLAIN (ANALYZE 0) DELETE FROM t",
            "SELECT a FROM t WHERE b = 1.5 OR c = 1e5 OR d = 0x1F OR e = 1_000 OR f = 5.",
            "SELECT f(1, 2) FROM t1 WHERE x = t2.c3",
            "SELECT * FROM t WHERE a = 'x = 5' AND \"c = 5\" = 1x",
            "SELECT $1, a[2] FROM t WHERE b = $2",
            "SELECT * FROM t WHERE a = 1234567890",
            "SELECT scut &>0& scut &>0",
        ] {
            assert_eq!(abstracted(sql), sql, "{sql}");
        }
    }

    #[test]
    fn text_whose_tokens_are_not_plain_gets_no_shape() {
        for sql in [
            "SELECT 1 -- x = 5",
            "SELECT /* x = 5 */ 1",
            "SELECT E'\\'' = 5",
            "SELECT U&'\\0041' = 5",
            "SELECT $$ x = 5 $$",
            "SELECT $tag$ x = 5 $tag$",
            "SELECT 'unterminated = 5",
            "SELECT 'é' = 5",
            "SELECT 'a\\' = 5",
            "SELECT a$1 = 5",
        ] {
            assert_eq!(shape(sql), None, "{sql}");
        }
        assert_eq!(shape(&format!("SELECT {}", "1,".repeat(2000))), None);
    }

    /// The property the cache rests on, over the statements the
    /// classifier's own tests use and a few with operands everywhere.
    #[test]
    fn statements_of_one_shape_classify_alike() {
        let statements = [
            "SELECT abalance FROM pgbench_accounts WHERE aid = 1",
            "UPDATE pgbench_accounts SET abalance = abalance + -5 WHERE aid = 3",
            "DELETE FROM t WHERE id = 5 RETURNING *",
            "EXPLAIN ANALYZE DELETE FROM t WHERE a = 1",
            "EXPLAIN (ANALYZE true) SELECT * FROM t WHERE a > 1",
            "SELECT pg_read_file('x') WHERE 1 = 1",
            "SELECT dblink_exec('c', 'DROP TABLE t') WHERE 2 > 1",
            "SELECT * FROM t WHERE a = -1 AND b * 2 = 4 / 2",
            "SET statement_timeout = 5",
            "SELECT set_config('role', 'x', false) WHERE 1 = 1",
            "PREPARE p AS SELECT * FROM t WHERE a = 5; EXECUTE p",
            "WITH d AS (DELETE FROM t WHERE a = 3 RETURNING *) SELECT * FROM d",
        ];
        for sql in statements {
            let base = classify_uncached(sql).unwrap();
            for digit in ['0', '1', '9'] {
                let other = vary_operands(sql, digit).unwrap();
                assert_eq!(classify_uncached(&other), Ok(base.clone()), "{other}");
            }
        }
    }

    #[test]
    fn a_cached_shape_gives_what_a_parse_gives() {
        let first = classify("SELECT email FROM customers WHERE id = 17").unwrap();
        let again = classify("SELECT email FROM customers WHERE id = 18").unwrap();
        assert_eq!(first, again);
        assert_eq!(
            again,
            classify_uncached("SELECT email FROM customers WHERE id = 18").unwrap()
        );
        // A different table is a different shape.
        let other = classify("SELECT email FROM secret_keys WHERE id = 18").unwrap();
        assert!(other[0].tables.contains("secret_keys"));
        // Errors are not kept and stay each statement's own.
        assert!(classify("SELEC x FROM t WHERE id = 1").is_err());
        assert!(classify("SELEC x FROM t WHERE id = 2").is_err());
    }

    #[test]
    fn large_classifications_are_not_kept() {
        let many = "END;".repeat(400);
        assert!(shape(&many).is_some());
        assert_eq!(classify(&many).unwrap().len(), 400);
        let kept = CACHE.with(|c| {
            let c = c.borrow();
            c.new.contains_key(&many) || c.old.contains_key(&many)
        });
        assert!(!kept);
        classify("SELECT 1; SELECT 2").unwrap();
        assert!(CACHE.with(|c| c.borrow().new.contains_key("SELECT 1; SELECT 2")));
    }

    #[test]
    fn the_cache_stays_bounded() {
        let mut cache = Cache::default();
        for i in 0..(GENERATION * 5) {
            cache.insert(format!("SELECT {i}"), Shared::default());
        }
        assert!(cache.new.len() + cache.old.len() <= 2 * GENERATION);
        // Recently used shapes survive a generation change.
        cache.insert("keep".into(), Shared::default());
        for i in 0..GENERATION {
            assert!(cache.get("keep").is_some());
            cache.insert(format!("SELECT x{i}"), Shared::default());
        }
        assert!(cache.get("keep").is_some());
    }
}
