//! Target `sql_text`: the SQL classifier on any text.
//!
//! Invariant, beyond "no panic, bounded memory, no hang": a comment in
//! front of a statement changes nothing PostgreSQL does, so it may not
//! change what the classifier reports in the direction that lets more
//! through. With a prefix comment added, SQL that did not parse still does
//! not parse (it stays unreadable, which policy refuses), and SQL that did
//! parse yields the same statements with at least the same kinds, tables
//! and functions, still opaque where it was.
//!
//! And the one the classification cache rests on: statements of one
//! shape (see `policy::shape`) classify alike, whatever their integer
//! operands.

use gatehouse_actors::policy::StatementInfo;
use gatehouse_actors::policy::classify::{classify, classify_uncached};
use gatehouse_actors::policy::shape::vary_operands;

/// Statements longer than this are not classified by the gateway either
/// (it refuses them as unreadable), and sqlparser's trees take about a
/// thousand times the text's size: a bound keeps one input from looking
/// like a memory leak.
pub const MAX_SQL: usize = 16 << 10;

/// Comments PostgreSQL ignores in front of any statement, including a
/// nested block comment (PostgreSQL nests them; the SQL standard does not).
const PREFIXES: &[&str] = &[
    "/* prefix */ ",
    "-- prefix\n",
    "/* outer /* nested */ still comment */\n",
    "--\r\n",
];

pub fn check(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    if rest.len() > MAX_SQL {
        return;
    }
    let sql = String::from_utf8_lossy(rest);
    let prefix = PREFIXES[usize::from(sel) % PREFIXES.len()];
    prefix_changes_nothing(&sql, prefix);
    operands_change_nothing(&sql);
}

/// Classify `sql` and the same shape with other integer operands: the
/// same statements, or unreadable both.
pub fn operands_change_nothing(sql: &str) {
    let base = classify_uncached(sql);
    for digit in ['0', '7', '9'] {
        let Some(other) = vary_operands(sql, digit) else {
            return;
        };
        match (&base, classify_uncached(&other)) {
            (Ok(a), Ok(b)) => assert_eq!(a, &b, "{other:?} classified unlike {sql:?}"),
            (Err(_), Err(_)) => {}
            (a, b) => panic!("{sql:?} gave {a:?}, {other:?} gave {b:?}"),
        }
    }
}

/// Classify `sql` with and without `prefix` and compare.
pub fn prefix_changes_nothing(sql: &str, prefix: &str) {
    let plain = classify(sql);
    let prefixed = classify(&format!("{prefix}{sql}"));
    match (plain, prefixed) {
        (Err(_), Err(_)) => {}
        (Err(e), Ok(_)) => panic!("a prefix comment made unreadable SQL readable: {}", e.0),
        (Ok(_), Err(e)) if prefix.contains("nested") => {
            // sqlparser not nesting comments would refuse, the safe way;
            // still worth knowing, so it fails the run.
            panic!(
                "a nested prefix comment made readable SQL unreadable: {}",
                e.0
            )
        }
        (Ok(_), Err(_)) => {}
        (Ok(a), Ok(b)) => {
            assert_eq!(
                a.len(),
                b.len(),
                "a prefix comment changed the statement count"
            );
            for (x, y) in a.iter().zip(&b) {
                covers(y, x);
            }
        }
    }
}

/// `wide` reports at least what `narrow` does.
pub fn covers(wide: &StatementInfo, narrow: &StatementInfo) {
    assert!(
        wide.kinds.is_superset(&narrow.kinds),
        "kinds {:?} lost some of {:?}",
        wide.kinds,
        narrow.kinds
    );
    assert!(wide.tables.is_superset(&narrow.tables), "tables lost");
    assert!(
        wide.functions.is_superset(&narrow.functions),
        "functions lost"
    );
    assert!(
        !narrow.without_where || wide.without_where,
        "without_where lost"
    );
    assert!(
        narrow.opaque.is_none() || wide.opaque.is_some(),
        "opacity lost"
    );
}
