//! Target `sql_splice`: structure-aware SQL for the classifier.
//!
//! The input drives a generator that writes statements the way PostgreSQL
//! lexes them: real statements (DROP, DELETE, TRUNCATE, COPY ... PROGRAM,
//! `pg_read_file`, DML in CTEs, `EXPLAIN ANALYZE`, `PREPARE`, `DO` blocks and
//! function bodies nested inside one another) with decoys spliced in
//! between their tokens — standard strings holding backslashes, `E''`
//! strings with `\'`, dollar quotes with and without tags, nested block
//! comments, line comments, quoted identifiers — each decoy holding text
//! that would be a statement if a lexer ended it in the wrong place.
//!
//! The generator knows what each statement really does, so the oracle is
//! semantic: the classifier must refuse the SQL (unparsed), mark it opaque,
//! or report every kind, table and function the real statements have. A
//! lexer that disagrees with PostgreSQL about where a string or comment
//! ends shows up as a missing kind. The prefix-comment invariant of
//! `sql_text` is checked on every generated text too.

use std::collections::BTreeSet;

use arbitrary::{Result, Unstructured};
use gatehouse_actors::policy::classify::classify;

use crate::sql_text;

/// What the generated SQL really does, as PostgreSQL would run it.
#[derive(Default, Debug)]
struct Expect {
    kinds: BTreeSet<&'static str>,
    tables: BTreeSet<String>,
    functions: BTreeSet<String>,
    /// Dynamic SQL was generated: only an opaque verdict (or a refusal) is right.
    dynamic: bool,
}

/// Text pieces for the inside of strings and comments: statement text,
/// quote and comment markers, escapes, non-ASCII.
const PIECES: &[&str] = &[
    "; DROP TABLE decoy; ",
    "'; DELETE FROM decoy; --",
    "--",
    "/*",
    "*/",
    "'",
    "''",
    "\\",
    "\\'",
    "$$",
    "$a$",
    "$_1$",
    "E'",
    "\"",
    "\n",
    "\r",
    " ",
    "x",
    "é",
    "\u{2028}",
    "SELECT 1",
    "END",
    "$1",
    "\\x27",
    "\\047",
    "\\u0027",
    ";",
];

struct Gen<'a, 'b> {
    u: &'b mut Unstructured<'a>,
    expect: Expect,
    /// Distinct names for victims and dollar tags.
    counter: u32,
    depth: u32,
}

impl Gen<'_, '_> {
    fn next_id(&mut self) -> u32 {
        self.counter += 1;
        self.counter
    }

    /// Raw text made of pieces (escaping is the container's job).
    fn text(&mut self) -> Result<String> {
        let mut s = String::new();
        for _ in 0..self.u.int_in_range(0..=4)? {
            s.push_str(self.u.choose(PIECES)?);
        }
        Ok(s)
    }

    /// Whitespace or a comment: what may separate any two tokens.
    fn gap(&mut self) -> Result<String> {
        Ok(match self.u.int_in_range(0..=5)? {
            0 => format!(" /*{}*/ ", self.comment_body(0)?),
            1 => {
                let t: String = self.text()?.replace(['\n', '\r'], " ");
                format!(" --{t}\n")
            }
            2 => "\n".into(),
            3 => "\t".into(),
            _ => " ".into(),
        })
    }

    /// The inside of a block comment: PostgreSQL nests them.
    fn comment_body(&mut self, level: u32) -> Result<String> {
        let mut s = String::new();
        for _ in 0..self.u.int_in_range(0..=3)? {
            if level < 3 && self.u.ratio(1, 4)? {
                s.push_str(&format!("/*{}*/", self.comment_body(level + 1)?));
            } else {
                // No piece may open or close a comment by itself, nor end
                // with `/` or `*` that the next piece could complete.
                let t = self.text()?.replace(['*', '/'], "");
                s.push_str(&t);
                s.push(' ');
            }
        }
        Ok(s)
    }

    /// A dollar-quote tag that does not occur in `body`.
    fn tag_for(&mut self, body: &str) -> Result<String> {
        let mut tag = match self.u.int_in_range(0..=2)? {
            0 => String::new(),
            1 => "a".into(),
            _ => "_1".into(),
        };
        // The body may neither hold the closing delimiter nor end in a way
        // that completes it early (`...$a` + `$a$`).
        while format!("{body}${tag}$").find(&format!("${tag}$")) != Some(body.len()) {
            tag = format!("t{}", self.next_id());
        }
        Ok(tag)
    }

    /// `body` as a string constant, in one of PostgreSQL's quotings.
    fn quote(&mut self, body: &str) -> Result<String> {
        Ok(match self.u.int_in_range(0..=2)? {
            0 => format!("'{}'", body.replace('\'', "''")),
            1 => {
                let q = if self.u.arbitrary()? { "\\'" } else { "''" };
                format!("E'{}'", body.replace('\\', "\\\\").replace('\'', q))
            }
            _ => {
                let tag = self.tag_for(body)?;
                format!("${tag}${body}${tag}$")
            }
        })
    }

    /// An expression holding a decoy.
    fn expr(&mut self) -> Result<String> {
        let text = self.text()?;
        Ok(match self.u.int_in_range(0..=6)? {
            0 => self.quote(&text)?,
            1 => format!("'{}'", text.replace('\'', "''")),
            2 => format!("\"{}\"", text.replace('\0', "").replace('"', "\"\"")),
            3 => format!("lower({})", self.quote(&text)?),
            4 => format!("1{}+{}2", self.gap()?, self.gap()?),
            5 => format!("{}::text", self.quote(&text)?),
            _ => "42".into(),
        })
    }

    fn victim(&mut self) -> String {
        let name = format!("victim_{}", self.next_id());
        self.expect.tables.insert(name.clone());
        name
    }

    fn kind(&mut self, k: &'static str) {
        self.expect.kinds.insert(k);
    }

    /// One real SQL statement (no trailing semicolon).
    fn statement(&mut self) -> Result<String> {
        let g = self.gap()?;
        let choice = if self.depth >= 3 {
            self.u.int_in_range(0..=9)?
        } else {
            self.u.int_in_range(0..=13)?
        };
        Ok(match choice {
            0 => {
                self.kind("drop");
                format!("DROP{g}TABLE {}", self.victim())
            }
            1 => {
                self.kind("delete");
                let where_ = if self.u.arbitrary()? {
                    format!(" WHERE a ={g}{}", self.expr()?)
                } else {
                    String::new()
                };
                format!("DELETE FROM{g}{}{where_}", self.victim())
            }
            2 => {
                self.kind("truncate");
                format!("TRUNCATE{g}{}", self.victim())
            }
            3 => {
                self.kind("update");
                format!("UPDATE {}{g}SET a = {}", self.victim(), self.expr()?)
            }
            4 => {
                self.kind("insert");
                format!("INSERT INTO {} VALUES ({}{g})", self.victim(), self.expr()?)
            }
            5 => {
                self.kind("select");
                format!(
                    "SELECT {},{g}{} FROM {}",
                    self.expr()?,
                    self.expr()?,
                    self.victim()
                )
            }
            6 => {
                self.kind("select");
                self.expect.functions.insert("pg_read_file".into());
                format!("SELECT pg_read_file({}{g})", self.expr()?)
            }
            7 => {
                self.kind("copy");
                self.kind("copy_program");
                let program = self.quote("cat /etc/passwd")?;
                format!("COPY {} TO{g}PROGRAM {program}", self.victim())
            }
            8 => {
                self.kind("select");
                self.kind("delete");
                format!(
                    "WITH d AS (DELETE FROM {} RETURNING *){g}SELECT {}",
                    self.victim(),
                    self.expr()?
                )
            }
            9 => {
                self.kind("explain");
                self.kind("delete");
                format!("EXPLAIN ANALYZE{g}DELETE FROM {}", self.victim())
            }
            10 => {
                self.kind("prepare");
                self.kind("delete");
                format!(
                    "PREPARE p{}{g}AS DELETE FROM {}",
                    self.next_id(),
                    self.victim()
                )
            }
            11 => {
                self.kind("do");
                self.depth += 1;
                let body = self.plpgsql()?;
                self.depth -= 1;
                let lang = if self.u.arbitrary()? {
                    " LANGUAGE plpgsql"
                } else {
                    ""
                };
                format!("DO{lang}{g}{}", self.quote(&body)?)
            }
            12 => {
                self.kind("create_function");
                self.depth += 1;
                let body = self.plpgsql()?;
                self.depth -= 1;
                format!(
                    "CREATE FUNCTION f{}() RETURNS void LANGUAGE plpgsql{g}AS {}",
                    self.next_id(),
                    self.quote(&body)?
                )
            }
            _ => {
                self.kind("create_function");
                self.depth += 1;
                let body = self.statement()?;
                self.depth -= 1;
                format!(
                    "CREATE FUNCTION f{}() RETURNS void LANGUAGE sql{g}AS {}",
                    self.next_id(),
                    self.quote(&body)?
                )
            }
        })
    }

    /// A plpgsql block: `DECLARE ... BEGIN ... END`.
    fn plpgsql(&mut self) -> Result<String> {
        let mut s = String::from("DECLARE v text; BEGIN ");
        for _ in 0..self.u.int_in_range(1..=3)? {
            s.push_str(&self.plpgsql_statement()?);
            s.push_str(&self.gap()?);
        }
        s.push_str("END");
        Ok(s)
    }

    fn plpgsql_statement(&mut self) -> Result<String> {
        Ok(match self.u.int_in_range(0..=6)? {
            0 => format!("PERFORM {};", self.expr()?),
            1 => format!("v := {};", self.expr()?),
            2 => format!("RAISE NOTICE '%', {};", self.expr()?),
            3 => {
                let inner = self.plpgsql_statement()?;
                format!("IF {} IS NULL THEN {inner} END IF;", self.expr()?)
            }
            4 => {
                self.expect.dynamic = true;
                format!("EXECUTE {};", self.expr()?)
            }
            _ => format!("{};", self.statement()?),
        })
    }
}

pub fn check(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut g = Gen {
        u: &mut u,
        expect: Expect::default(),
        counter: 0,
        depth: 0,
    };
    let Ok(sql) = generate(&mut g) else { return };
    if sql.len() > sql_text::MAX_SQL {
        return;
    }
    let expect = g.expect;
    match classify(&sql) {
        Err(_) => {}
        Ok(infos) if infos.iter().any(|i| i.opaque.is_some()) => {}
        Ok(infos) => {
            assert!(!expect.dynamic, "dynamic SQL was not marked opaque:\n{sql}");
            let kinds: BTreeSet<&str> =
                infos.iter().flat_map(|i| i.kinds.iter().copied()).collect();
            let tables: BTreeSet<&str> = infos
                .iter()
                .flat_map(|i| i.tables.iter().map(String::as_str))
                .collect();
            let functions: BTreeSet<&str> = infos
                .iter()
                .flat_map(|i| i.functions.iter().map(String::as_str))
                .collect();
            for k in &expect.kinds {
                assert!(
                    kinds.contains(k),
                    "kind {k} missed in:\n{sql}\nsaw {kinds:?}"
                );
            }
            for t in &expect.tables {
                assert!(
                    tables.contains(t.as_str()),
                    "table {t} missed in:\n{sql}\nsaw {tables:?}"
                );
            }
            for f in &expect.functions {
                assert!(
                    functions.contains(f.as_str()),
                    "function {f} missed in:\n{sql}"
                );
            }
        }
    }
    let prefix = format!("/*{}*/\n", "x");
    sql_text::prefix_changes_nothing(&sql, &prefix);
    sql_text::operands_change_nothing(&sql);
}

/// Statements separated by semicolons, with gaps around them.
fn generate(g: &mut Gen) -> Result<String> {
    let mut sql = g.gap()?;
    for i in 0..g.u.int_in_range(1..=3)? {
        if i > 0 {
            sql.push(';');
            sql.push_str(&g.gap()?);
        }
        sql.push_str(&g.statement()?);
    }
    if g.u.arbitrary()? {
        sql.push(';');
    }
    Ok(sql)
}
