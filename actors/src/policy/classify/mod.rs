//! Per-statement SQL classification for Gatehouse policy checks.
//!
//! [`classify`] parses a string of PostgreSQL SQL (sqlparser 0.64, PostgreSQL dialect) and returns one
//! [`StatementInfo`] per top-level statement: which kinds of statement it is (from the fixed vocabulary
//! [`KINDS`]), every table/view/sequence it names, every function it calls, the column identifiers its
//! expressions reference, and a few facts policy needs (`UPDATE`/`DELETE` without `WHERE`, prepared
//! statement names, code that could not be read).
//!
//! # Layout
//!
//! - `mod.rs` — the public API ([`StatementInfo`], [`classify`], [`parse_each`], [`KINDS`], ...) and resource limits.
//! - `lexical.rs` — tokens, lexical checks, the depth bound, the statement loop, statements sqlparser cannot parse.
//! - `names.rs` — normalisation: identifiers, object names, relation names given as strings.
//! - `collector.rs` — the AST walk: `Collector`, CTE scopes and whole rows, and its `Visitor` impl.
//! - `statements.rs` — what each kind of statement adds: kinds, target tables, `EXPLAIN` and `EXECUTE` details.
//! - `functions.rs` — code given as text: DO and function bodies, dynamic-SQL strings, `set_config`, `nextval` names.
//! - `plpgsql.rs` — the small PL/pgSQL scanner: the SQL, queries and expressions in plpgsql bodies.
//! - `tests.rs` — unit tests.
//!
//! # What is classified
//! * Every statement sqlparser can parse. Statements it parses but this module does not map get the kind
//!   `"other"`; nothing is dropped. Nested statements count too: data-modifying CTEs, `EXPLAIN ANALYZE`
//!   (which runs its statement), `PREPARE ... AS`, `COPY (query) TO`, `CREATE RULE` actions,
//!   `BEGIN ATOMIC` function bodies. Any `SELECT` anywhere (subquery, `INSERT ... SELECT`, view or
//!   `CREATE TABLE AS` body) adds the kind `"select"`; `ON CONFLICT DO UPDATE` adds `"update"`; `MERGE` adds the
//!   kinds of its `WHEN` actions. Plain `EXPLAIN` only adds `"explain"`; its statement's names still count.
//! * A few statements that sqlparser 0.64 cannot parse are read by this module itself: `DO [LANGUAGE l] '...'`,
//!   `PREPARE TRANSACTION`, `COMMIT PREPARED`, `ROLLBACK PREPARED`, `CHECKPOINT`, and
//!   `CREATE [OR REPLACE] PROCEDURE` (parsed as `CREATE FUNCTION`, whose syntax PostgreSQL shares).
//! * Code bodies: `DO` blocks and `CREATE FUNCTION`/`PROCEDURE` bodies written as strings are read for what
//!   they do. `LANGUAGE sql` bodies are classified recursively. `plpgsql` bodies are split into plpgsql
//!   statements; SQL statements in them (`PERFORM` read as `SELECT`, with plpgsql's `INTO target` stripped),
//!   queries after `FOR ... IN`, `RETURN QUERY`, `OPEN ... FOR` and cursor declarations, and plpgsql expressions
//!   (conditions, assignments, `RETURN`, defaults, read as `SELECT <expr>`) are classified and merged into the
//!   outer statement. Anything not read sets [`StatementInfo::opaque`]: any `EXECUTE` (dynamic SQL), a piece
//!   that does not parse, a query inside a `RAISE`/cursor argument, a language other than `sql`/`plpgsql`
//!   (`c`, `internal`, `plpython3u`, ...), bodies nested more than a few levels deep.
//! * SQL passed as a string literal to known dynamic-SQL functions (`dblink`, `dblink_exec`, `dblink_open`,
//!   `dblink_send_query`, `query_to_xml*`) is classified and merged too; when none of the arguments is a
//!   readable literal the statement is opaque.
//!
//! # Normalisation
//! Names are normalised as PostgreSQL resolves them lexically: unquoted identifier parts are ASCII-lowercased
//! (PostgreSQL does not fold non-ASCII letters in UTF-8 databases), quoted parts are kept verbatim, every part
//! is truncated to 63 bytes (NAMEDATALEN - 1, like the server), and parts are joined with `.`: `"public"."Customers"`
//! → `public.Customers`, `PUBLIC.customers` → `public.customers`. No search-path resolution is done: `customers`
//! and `public.customers` are different strings and callers must match both forms.
//!
//! # Conservative choices
//! * When unsure, report more: the target of `INSERT`/`UPDATE`/`DELETE`/`MERGE` is always a table even when a
//!   CTE of the same name is in scope (PostgreSQL never resolves a DML target to a CTE); only unqualified names
//!   read in `FROM`/`JOIN`/`USING` positions while a CTE of that name is visible are left out.
//! * `ALTER ... RENAME TO x` also reports the new name (and its schema-qualified form).
//! * Schema-wide operations (`GRANT ... ON ALL TABLES IN SCHEMA s`, `GRANT ... ON SCHEMA s`, `DROP SCHEMA s`) report
//!   the pseudo-table `s.*`.
//! * Strings that name relations for the server (`'x'::regclass`, `nextval('s')`, `currval`, `setval`,
//!   `table_to_xml*`) report the named relation. `COPY` to or from a server file reports the pseudo-function
//!   `pg_server_file`; `COPY ... PROGRAM` the kind `copy_program`.
//! * Columns: `t.*`, `SELECT *`, `RETURNING *` and a `COPY` without a column list add `"*"` (each output column
//!   then carries its own source); a whole row as one value (`SELECT c FROM customers c`, `row_to_json(c.*)`) adds
//!   [`ANY_COLUMN`]. A bare `*` argument (`count(*)`) does not, because PostgreSQL only
//!   accepts it for zero-argument aggregates.
//! * Lexical traps that make sqlparser and PostgreSQL disagree about where a string ends are refused (`Err`):
//!   inline `COPY ... FROM STDIN` data (sqlparser hides the following lines in it; the server runs them as SQL after
//!   the copy), dollar-quote tags PostgreSQL does not accept (`$1a$`: parameter `$1` for the server, a string for
//!   sqlparser), `B'...'`/`X'...'` literals containing a quote or backslash.
//!   `SET standard_conforming_strings`, and `set_config` on it or on a computed name, are opaque because they change
//!   how later strings are lexed.
//! * Any statement that fails to parse makes the whole string `Err`. After each statement only `;` or the end may
//!   follow. (sqlparser's own `parse_statements` stops at an `END` after a statement and drops the rest, but
//!   PostgreSQL 15 runs `SELECT 1 END; DROP TABLE t` as `SELECT 1 AS "end"` and a DROP; here that is `Err`.)
//!
//! # Resource limits
//! * Parser recursion limit 128 (sqlparser's default is 50): enough for about 120 nested parentheses or 40 nested
//!   subqueries, far beyond hand-written or ORM SQL, while `SELECT ((((...))))` with 10,000 levels fails fast.
//! * sqlparser builds long operator chains (`a OR b OR ...`, `x::t::t`, `a[1][1]`, `UNION` chains) as deep left-leaning
//!   trees without using its recursion counter, and dropping such a tree recurses once per level, which overflows a
//!   2 MiB stack at roughly 15,000 levels. Before parsing, an upper bound of the tree depth is computed from the
//!   tokens (tokens per comma-separated segment summed along the nesting path, plus set operators). Up to 2,000 the
//!   statement is handled on the caller's stack; up to 250,000 on a helper thread whose stack is sized from the bound;
//!   beyond that the input is refused as too complex. Bodies of `DO`/functions are nested at most 6 levels.
//!   (Measured in a debug build: 6 nested `DO` levels with a 1,000-term `OR` chain inside need under 384 KiB.)
//! * Memory: sqlparser's AST is large (a `Select` is ~2 KB, an `Expr` 328 bytes), so one big statement can take
//!   ~1,000x its size in memory (600 KB of `SELECT (SELECT 1), (SELECT 1), ...` ≈ 590 MB; a 1 MB `UNION` chain
//!   ≈ 800 MB and ~2 s). Statements of a multi-statement string are parsed and dropped one at a time, so 1 MiB of
//!   `SELECT 1;` stays small. Callers facing untrusted clients should cap statement size well below 1 MiB or limit
//!   how many classifications run at once.
//!
//! # Known limits
//! * sqlparser 0.64 rejects some valid PostgreSQL, which then comes back as `Err` (the safe direction); the test
//!   `known_sqlparser_gaps_are_errors` lists them: `VACUUM (FULL, ANALYZE) t`, `VACUUM a, b`, `ANALYZE a, b`,
//!   `ANALYZE VERBOSE t`, `ROWS FROM (...)`, `CLUSTER`, `REINDEX`, `ALTER SYSTEM`, `ALTER SEQUENCE`, `ALTER DATABASE`,
//!   `ALTER EXTENSION`, `TABLE t` as a statement, `DELETE ... WHERE CURRENT OF c`, `COPY ... FROM ... WHERE`,
//!   `U&"..."` identifiers, string literals continued on the next line, `FOR NO KEY UPDATE`, `COLLATION FOR`,
//!   `xmlelement(name ...)`, `json_table(... COLUMNS (a int))`, `IMPORT FOREIGN SCHEMA`, `SECURITY LABEL`,
//!   `DROP OWNED`, `REASSIGN OWNED`, `MOVE`, `CREATE EVENT TRIGGER`, `CREATE CAST`, `CREATE PUBLICATION`, and
//!   `SELECT 1 END` (see above).
//! * Implicit code is not seen: triggers, rules, RLS policies, column defaults and views run functions that are not in
//!   the statement text; operators (`a ### b`, `OPERATOR(s.op)`) and casts may call user functions; the attribute
//!   notation `t.f` calls `f(t)` when `t` has no column `f` (reported as a column). Views are reported by name only.
//! * Dynamic SQL that is not a literal (`EXECUTE` in plpgsql, `dblink(conn, var)`) is opaque, but SQL hidden in other
//!   functions (user functions that run `EXECUTE`, extensions) is only visible as a function name.
//! * `EXECUTE name` only reports the name; the caller must substitute the info of the matching `PREPARE`.
//! * The lexer assumes `standard_conforming_strings = on` (the default since PostgreSQL 9.1). A session where it is
//!   off (for example via `ALTER ROLE ... SET`, connection options or `PGOPTIONS`) can lex backslashes differently;
//!   the gateway must keep it on.
//! * plpgsql is read by a small scanner, not a full parser. Code it does not recognise is opaque rather than ignored,
//!   with one exception: a plpgsql expression sqlparser cannot parse (`x := 1 +`, `WHEN SQLSTATE '22012'`) is read
//!   lexically: every `name(` counts as a function call, and any SQL statement word in it makes the body opaque.
//!   plpgsql's `INTO target` is stripped (not made opaque) so `SELECT x INTO v FROM t` is classified as a SELECT.
//! * Columns are last identifier parts as specified: in `t.a` the `t` is taken as a qualifier even when it is a
//!   composite column.

mod collector;
mod functions;
mod lexical;
mod names;
mod plpgsql;
mod statements;
#[cfg(test)]
mod tests;

pub(crate) use lexical::word_in;

use std::collections::BTreeSet;

use sqlparser::ast::Statement;

use lexical::{Read, bounded, classify_text, each_statement, tokenize};

/// What one top-level statement does, as far as policy is concerned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatementInfo {
    /// Statement kinds, from the fixed vocabulary below; a statement may have several
    /// (e.g. `WITH x AS (DELETE ...) SELECT` = {"select","delete"}).
    pub kinds: BTreeSet<&'static str>,
    /// Every table/view/sequence the statement names anywhere (FROM, JOIN, subqueries, CTEs' bodies,
    /// INSERT/UPDATE/DELETE/MERGE targets, USING, COPY, TRUNCATE, DROP/ALTER/CREATE targets, LOCK, GRANT ON ...).
    /// Normalised: unquoted identifier parts lowercased, quoted parts kept verbatim, parts joined with '.'
    /// ("public.customers", "customers", "Weird Name"). CTE names themselves are NOT tables (but a CTE name that
    /// shadows nothing is harmless to include; prefer excluding names defined by WITH in scope).
    pub tables: BTreeSet<String>,
    /// Every function/procedure called anywhere (expressions, FROM-clause table functions, CALL, default values,
    /// inside DO bodies that could be read), normalised the same way ("pg_read_file", "pg_catalog.pg_read_file").
    pub functions: BTreeSet<String>,
    /// Column identifiers referenced anywhere in expressions (last identifier part, normalised), e.g. for
    /// `SELECT lower(c.email) FROM customers c` → {"email"}; used to decide whether computed output columns could
    /// carry a masked column's value. `SELECT *` adds "*".
    pub columns: BTreeSet<String>,
    /// An UPDATE or DELETE (anywhere in the tree, including in CTEs, EXPLAIN ANALYZE, PREPARE) has no WHERE clause.
    pub without_where: bool,
    /// `PREPARE name AS <stmt>`: the name (normalised). The info's kinds/tables/functions are those of the inner
    /// statement PLUS "prepare".
    pub prepares: Option<String>,
    /// `EXECUTE name(...)`: the name (normalised). kinds = {"execute"}; the caller substitutes the prepared
    /// statement's info.
    pub executes: Option<String>,
    /// `DEALLOCATE name` → Some(Some(name)); `DEALLOCATE ALL` → Some(None).
    pub deallocates: Option<Option<String>>,
    /// Set when the statement runs code the classifier could not fully read (dynamic SQL via EXECUTE inside a DO
    /// block or function body, a body that fails to parse, a language other than sql/plpgsql). The string says why.
    /// Callers treat an opaque statement like unparseable SQL.
    pub opaque: Option<String>,
}

/// SQL text the parser could not read; the message is sqlparser's, safe to show the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unparsed(pub String);

/// In [`StatementInfo::columns`]: a value that may carry any column (a whole
/// row turned into one value, or a statement the gateway could not read).
pub const ANY_COLUMN: &str = "?";

/// The statement kinds a config may name (validate rule `statements` against this).
pub const KINDS: &[&str] = &[
    "select",
    "insert",
    "update",
    "delete",
    "merge",
    "copy",
    "copy_program",
    "create",
    "alter",
    "drop",
    "truncate",
    "rename",
    "comment",
    "grant",
    "revoke",
    "call",
    "do",
    "set",
    "show",
    "transaction",
    "prepare",
    "execute",
    "deallocate",
    "explain",
    "vacuum",
    "analyze",
    "lock",
    "listen",
    "notify",
    "create_function",
    "create_role",
    "alter_role",
    "drop_role",
    "create_extension",
    "discard",
    "other",
];

/// Parser recursion limit; see the module docs.
const RECURSION_LIMIT: usize = 128;
/// Largest tree-depth bound handled on the caller's stack.
const INLINE_COMPLEXITY: usize = 2_000;
/// Largest tree-depth bound handled at all.
const MAX_COMPLEXITY: usize = 250_000;
/// Helper-thread stack: a fixed part plus this many bytes per unit of the depth bound (measured need: about 140
/// bytes per unit in debug builds, 70 in release).
const HELPER_STACK_BASE: usize = 16 << 20;
const HELPER_STACK_PER_UNIT: usize = 512;
/// How deep DO/function bodies (and SQL strings given to dynamic-SQL functions) may nest.
const MAX_BODY_NESTING: usize = 6;
/// PostgreSQL truncates identifiers to NAMEDATALEN - 1 bytes.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// Classify every statement of `sql` (PostgreSQL dialect) in order. An empty string or only comments/semicolons → Ok(vec![]).
/// A statement of a shape already read on this thread is not parsed again (see [`super::shape`]).
pub fn classify(sql: &str) -> Result<Vec<StatementInfo>, Unparsed> {
    super::shape::classify_shaped(sql, classify_uncached)
}

/// [`classify`], shared with the shape cache: see
/// [`super::shape::classify_shared`].
pub fn classify_shared(sql: &str) -> Result<(super::shape::Shared, bool), Unparsed> {
    super::shape::classify_shared(sql, classify_uncached)
}

/// [`classify`], always parsing.
pub fn classify_uncached(sql: &str) -> Result<Vec<StatementInfo>, Unparsed> {
    classify_text(sql, 0)
}

/// Parse every top-level statement of `sql` with the same lexical checks and resource limits as [`classify`], and
/// return what `visit` makes of each one sqlparser parses (statements this module reads by itself, such as `DO`,
/// are skipped). For readers of the tree other than policy, such as masking what a client sends.
pub fn parse_each<R: Send + 'static>(
    sql: &str,
    visit: fn(&Statement) -> R,
) -> Result<Vec<R>, Unparsed> {
    bounded(tokenize(sql)?, move |tokens| {
        let mut out = Vec::new();
        each_statement(tokens, MAX_BODY_NESTING, |read| {
            if let Read::Tree(statement, _) = read {
                out.push(visit(&statement));
            }
        })?;
        Ok(out)
    })
}

impl StatementInfo {
    fn set_opaque(&mut self, why: impl Into<String>) {
        if self.opaque.is_none() {
            self.opaque = Some(why.into());
        }
    }

    /// Merge what a nested statement (body, dynamic SQL string) does into this one.
    fn absorb(&mut self, other: StatementInfo) {
        self.kinds.extend(other.kinds);
        self.tables.extend(other.tables);
        self.functions.extend(other.functions);
        self.columns.extend(other.columns);
        self.without_where |= other.without_where;
        if other.executes.is_some() {
            self.set_opaque("EXECUTE of a prepared statement inside a body cannot be read");
        }
        if let Some(o) = other.opaque {
            self.set_opaque(o);
        }
    }
}
