//! What a `COPY ... TO STDOUT` sends, or a `COPY ... FROM STDIN` receives,
//! so its data can be masked by column: the table and listed columns (or a
//! query), and the text/CSV options.

use std::collections::BTreeSet;

use sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource as AstSource, CopyTarget,
    ObjectName, Statement,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::mask::CopyFormat;

/// One COPY TO STDOUT (or FROM STDIN) of a query message, in order.
#[derive(Debug, Clone)]
pub struct CopySource {
    /// The table (normalised like the classifier's names), when copying a
    /// table rather than a query.
    pub table: Option<String>,
    /// Listed columns, in order; empty = all columns of `table`.
    pub columns: Vec<String>,
    /// Columns a copied query mentions.
    pub mentioned: BTreeSet<String>,
    pub format: CopyFormatSpec,
}

/// Text or CSV options as written (binary is known from the response).
#[derive(Debug, Clone, PartialEq)]
pub struct CopyFormatSpec {
    pub csv: bool,
    pub delimiter: Option<u8>,
    pub null: Option<String>,
    pub quote: Option<u8>,
    pub escape: Option<u8>,
    pub header: bool,
    /// `FORMAT binary`: rows of typed fields, not lines.
    pub binary: bool,
}

impl CopyFormatSpec {
    pub fn to_format(&self) -> CopyFormat {
        if self.csv {
            let quote = self.quote.unwrap_or(b'"');
            CopyFormat::Csv {
                delimiter: self.delimiter.unwrap_or(b','),
                quote,
                escape: self.escape.unwrap_or(quote),
                null: self.null.clone().unwrap_or_default().into_bytes(),
                header: self.header,
            }
        } else {
            CopyFormat::Text {
                delimiter: self.delimiter.unwrap_or(b'\t'),
                null: self
                    .null
                    .clone()
                    .unwrap_or_else(|| "\\N".into())
                    .into_bytes(),
            }
        }
    }
}

fn ident(s: &sqlparser::ast::Ident) -> String {
    if s.quote_style.is_some() {
        s.value.clone()
    } else {
        s.value.to_lowercase()
    }
}

fn object_name(n: &ObjectName) -> String {
    n.0.iter()
        .filter_map(|p| p.as_ident().map(ident))
        .collect::<Vec<_>>()
        .join(".")
}

fn byte(c: char) -> Option<u8> {
    u8::try_from(c as u32).ok()
}

/// The COPY TO STDOUT statements of `sql`, in order. Unparseable SQL gives
/// none (the caller masks conservatively when a COPY arrives unannounced).
pub fn copy_sources(sql: &str) -> Vec<CopySource> {
    copies(sql, true)
}

/// The COPY FROM STDIN statements of `sql`, in order: what the client's
/// COPY data goes to. Unparseable SQL gives none, as above.
pub fn copy_sinks(sql: &str) -> Vec<CopySource> {
    copies(sql, false)
}

/// The COPY statements of `sql` in one direction: `to` the client
/// (`TO STDOUT`) or from it (`FROM STDIN`).
fn copies(sql: &str, to: bool) -> Vec<CopySource> {
    // Cheap check first: this runs on every query. It looks for the `y`,
    // far rarer in SQL than the `c`, and then for the `cop` before it.
    let b = sql.as_bytes();
    if !memchr::memchr2_iter(b'y', b'Y', b)
        .any(|i| i >= 3 && b[i - 3..i].eq_ignore_ascii_case(b"cop"))
    {
        return Vec::new();
    }
    // The parser's tree is hundreds of times the text's size: big texts are
    // not parsed here either (the COPY is then masked without its columns).
    if sql.len() > crate::policy::tracker::MAX_CLASSIFIED_SQL {
        return Vec::new();
    }
    let Ok(statements) = Parser::parse_sql(&PostgreSqlDialect {}, sql) else {
        return Vec::new();
    };
    statements
        .iter()
        .filter_map(|s| match s {
            // PostgreSQL takes `TO STDIN` as `TO STDOUT` and `FROM STDOUT`
            // as `FROM STDIN`.
            Statement::Copy {
                source,
                to: direction,
                target: CopyTarget::Stdout | CopyTarget::Stdin,
                options,
                legacy_options,
                ..
            } if *direction == to => Some(describe(source, options, legacy_options)),
            _ => None,
        })
        .collect()
}

fn describe(source: &AstSource, options: &[CopyOption], legacy: &[CopyLegacyOption]) -> CopySource {
    let mut format = CopyFormatSpec {
        csv: false,
        delimiter: None,
        null: None,
        quote: None,
        escape: None,
        header: false,
        binary: false,
    };
    for o in options {
        match o {
            CopyOption::Format(f) => {
                format.csv = f.value.eq_ignore_ascii_case("csv");
                format.binary = f.value.eq_ignore_ascii_case("binary");
            }
            CopyOption::Delimiter(c) => format.delimiter = byte(*c),
            CopyOption::Null(n) => format.null = Some(n.clone()),
            CopyOption::Header(h) => format.header = *h,
            CopyOption::Quote(c) => format.quote = byte(*c),
            CopyOption::Escape(c) => format.escape = byte(*c),
            _ => {}
        }
    }
    for o in legacy {
        match o {
            CopyLegacyOption::Csv(csv) => {
                format.csv = true;
                for c in csv {
                    match c {
                        CopyLegacyCsvOption::Header => format.header = true,
                        CopyLegacyCsvOption::Quote(q) => format.quote = byte(*q),
                        CopyLegacyCsvOption::Escape(e) => format.escape = byte(*e),
                        _ => {}
                    }
                }
            }
            CopyLegacyOption::Delimiter(c) => format.delimiter = byte(*c),
            CopyLegacyOption::Null(n) => format.null = Some(n.clone()),
            CopyLegacyOption::Header => format.header = true,
            CopyLegacyOption::Binary => format.binary = true,
            _ => {}
        }
    }
    match source {
        AstSource::Table {
            table_name,
            columns,
        } => CopySource {
            table: Some(object_name(table_name)),
            columns: columns.iter().map(ident).collect(),
            mentioned: columns.iter().map(ident).collect(),
            format,
        },
        AstSource::Query(q) => {
            let mentioned = crate::policy::classify::classify(&q.to_string())
                .map(|infos| infos.into_iter().flat_map(|i| i.columns).collect())
                .unwrap_or_else(|_| {
                    std::iter::once(crate::policy::classify::ANY_COLUMN.to_owned()).collect()
                });
            CopySource {
                table: None,
                columns: Vec::new(),
                mentioned,
                format,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_sources_are_found_with_their_options() {
        let c = copy_sources(
            "COPY public.Customers (id, Email) TO STDOUT WITH (FORMAT csv, HEADER, DELIMITER ';')",
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].table.as_deref(), Some("public.customers"));
        assert_eq!(c[0].columns, vec!["id", "email"]);
        assert!(c[0].format.csv && c[0].format.header);
        assert_eq!(c[0].format.delimiter, Some(b';'));
        let c = copy_sources("copy t to stdout csv header");
        assert!(c[0].format.csv && c[0].format.header);
        let c = copy_sources("select 1; COPY t TO STDOUT; COPY t FROM STDIN");
        assert_eq!(c.len(), 1);
        assert!(!c[0].format.csv);
        assert!(copy_sources("select 'no copies here'").is_empty());
    }

    /// The cheap check before the parse finds COPY in any case, anywhere:
    /// first, last, after other statements, split by nothing else.
    #[test]
    fn the_cheap_check_finds_copy_in_any_case_and_place() {
        for sql in [
            "cOpY t TO STDOUT",
            "COPY t TO STDOUT",
            "select 1;copY t TO STDOUT",
            "select 1;\n  CoPy\tt TO STDOUT",
            "/* y */ copy t to stdout",
        ] {
            assert_eq!(copy_sources(sql).len(), 1, "{sql}");
        }
        for sql in ["y", "yy copy", "select 'y', 'opy', 'cop' from t"] {
            assert!(copy_sources(sql).is_empty(), "{sql}");
        }
    }

    #[test]
    fn copy_sinks_are_the_copies_from_stdin() {
        let c = copy_sinks(
            "COPY t TO STDOUT; copy Customers (id, Email) from stdin with (format csv, header); \
             COPY u FROM STDIN (FORMAT binary)",
        );
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].table.as_deref(), Some("customers"));
        assert_eq!(c[0].columns, vec!["id", "email"]);
        assert!(c[0].format.csv && c[0].format.header && !c[0].format.binary);
        assert!(c[1].format.binary && c[1].columns.is_empty());
        assert!(copy_sinks("copy t from '/tmp/file'").is_empty());
    }
}
