//! Per-statement SQL classification for Gatehouse policy checks.
//!
//! [`classify`] parses a string of PostgreSQL SQL (sqlparser 0.64, PostgreSQL dialect) and returns one
//! [`StatementInfo`] per top-level statement: which kinds of statement it is (from the fixed vocabulary
//! [`KINDS`]), every table/view/sequence it names, every function it calls, the column identifiers its
//! expressions reference, and a few facts policy needs (`UPDATE`/`DELETE` without `WHERE`, prepared
//! statement names, code that could not be read).
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

use std::collections::{BTreeSet, HashMap};
use std::ops::ControlFlow;

use sqlparser::ast::{
    ColumnDef, ColumnOption, CommentObject, CopySource, CopyTarget, CreateFunctionBody,
    CreateTableLikeKind, DataType, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments,
    GrantObjects, Ident, MergeAction, ObjectName, ObjectNamePart, ObjectType, OnConflictAction,
    OnInsert, Query, Select, SelectItem, Set, SetExpr, Statement, TableConstraint, TableFactor,
    TableObject, TableWithJoins, UtilityOption, Value, Visit, Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Span, Token, TokenWithSpan, Tokenizer, Whitespace};

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

/// [`classify`], always parsing.
pub fn classify_uncached(sql: &str) -> Result<Vec<StatementInfo>, Unparsed> {
    classify_text(sql, 0)
}

// ---------------------------------------------------------------------------------------------------------------
// Tokens, lexical checks and the statement loop
// ---------------------------------------------------------------------------------------------------------------

fn classify_text(sql: &str, nesting: usize) -> Result<Vec<StatementInfo>, Unparsed> {
    classify_tokens(tokenize(sql)?, nesting)
}

fn tokenize(sql: &str) -> Result<Vec<TokenWithSpan>, Unparsed> {
    Tokenizer::new(&PostgreSqlDialect {}, sql)
        .with_unescape(true)
        .tokenize_with_location()
        .map_err(|e| Unparsed(format!("sql parser error: {e}")))
}

/// Refuse tokens on which sqlparser's lexer and PostgreSQL's disagree about where a literal ends.
fn check_lexical(tokens: &[TokenWithSpan]) -> Result<(), Unparsed> {
    for t in tokens {
        match &t.token {
            Token::CopyData { .. } => {
                return Err(Unparsed(format!(
                    "inline COPY data is not SQL; send it with the COPY protocol instead{}",
                    t.span.start
                )));
            }
            Token::DollarQuotedString(d) => {
                if let Some(tag) = &d.tag
                    && !valid_dollar_tag(tag)
                {
                    return Err(Unparsed(format!(
                        "dollar-quote tag ${tag}$ is not valid in PostgreSQL{}",
                        t.span.start
                    )));
                }
            }
            // PostgreSQL ends B'...' and X'...' at the first quote and has no escapes in them; sqlparser reads
            // `''` (and in X'...' also `\'`) as an escaped quote and would see one literal where the server sees two.
            Token::HexStringLiteral(s) | Token::SingleQuotedByteStringLiteral(s)
                if s.contains(['\'', '\\']) =>
            {
                return Err(Unparsed(format!(
                    "ambiguous quote or backslash inside a B'...' or X'...' literal{}",
                    t.span.start
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// PostgreSQL: `$tag$` where tag = [A-Za-z\200-\377_][A-Za-z\200-\377_0-9]*.
fn valid_dollar_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    match chars.next() {
        None => true,
        Some(c) if c.is_ascii_alphabetic() || c == '_' || !c.is_ascii() => {
            chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || !c.is_ascii())
        }
        Some(_) => false,
    }
}

/// Upper bound (in tree levels, up to a constant factor) of how deep the AST built from `tokens` can be.
///
/// Within one bracket level, operators chain into a left-deep tree, but a comma always ends an expression, so the
/// chain length is bounded by the longest comma-separated segment. Nesting adds up along the path, and set
/// operations (`UNION` ...) chain across commas, so they are counted for the whole statement.
fn complexity(tokens: &[TokenWithSpan]) -> usize {
    struct Level {
        segment: usize,
        longest: usize,
        deepest_child: usize,
    }
    impl Level {
        fn value(&self) -> usize {
            self.segment.max(self.longest) + self.deepest_child
        }
    }
    let new_level = || Level {
        segment: 0,
        longest: 0,
        deepest_child: 0,
    };
    let mut worst = 0usize;
    let mut set_ops = 0usize;
    let mut stack = vec![new_level()];
    let fold = |stack: &mut Vec<Level>| {
        if let Some(done) = stack.pop() {
            let v = done.value();
            if let Some(parent) = stack.last_mut() {
                parent.deepest_child = parent.deepest_child.max(v);
            }
        }
    };
    for t in tokens {
        match &t.token {
            Token::Whitespace(_) => {}
            Token::SemiColon if stack.len() == 1 => {
                worst = worst.max(stack[0].value() + set_ops);
                stack[0] = new_level();
                set_ops = 0;
            }
            Token::LParen | Token::LBracket | Token::LBrace => {
                if let Some(top) = stack.last_mut() {
                    top.segment += 1;
                }
                stack.push(new_level());
            }
            Token::RParen | Token::RBracket | Token::RBrace => {
                if stack.len() > 1 {
                    fold(&mut stack);
                } else {
                    stack[0].segment += 1;
                }
            }
            Token::Comma => {
                if let Some(top) = stack.last_mut() {
                    top.longest = top.longest.max(top.segment);
                    top.segment = 0;
                }
            }
            other => {
                if word_in(other, &["UNION", "INTERSECT", "EXCEPT", "MINUS"]) {
                    set_ops += 1;
                }
                if let Some(top) = stack.last_mut() {
                    top.segment += 1;
                }
            }
        }
    }
    while stack.len() > 1 {
        fold(&mut stack);
    }
    worst.max(stack[0].value() + set_ops)
}

fn classify_tokens(
    tokens: Vec<TokenWithSpan>,
    nesting: usize,
) -> Result<Vec<StatementInfo>, Unparsed> {
    bounded(tokens, move |tokens| parse_all(tokens, nesting))
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

/// Run `parse` over `tokens` within the resource limits (module docs): refused beyond [`MAX_COMPLEXITY`], on a
/// helper thread with a stack sized for the tree beyond [`INLINE_COMPLEXITY`].
fn bounded<R: Send + 'static>(
    mut tokens: Vec<TokenWithSpan>,
    parse: impl FnOnce(Vec<TokenWithSpan>) -> Result<R, Unparsed> + Send + 'static,
) -> Result<R, Unparsed> {
    check_lexical(&tokens)?;
    let bound = complexity(&tokens);
    if bound > MAX_COMPLEXITY {
        return Err(Unparsed(format!(
            "statement too complex to check (nesting/operator bound {bound} > {MAX_COMPLEXITY})"
        )));
    }
    rewrite_create_procedure(&mut tokens);
    if bound <= INLINE_COMPLEXITY {
        return parse(tokens);
    }
    let stack = HELPER_STACK_BASE + bound * HELPER_STACK_PER_UNIT;
    let spawned = std::thread::Builder::new()
        .name("gatehouse-classify".into())
        .stack_size(stack)
        .spawn(move || parse(tokens));
    match spawned {
        Ok(handle) => handle.join().unwrap_or_else(|_| {
            Err(Unparsed(
                "internal error while classifying a complex statement".into(),
            ))
        }),
        Err(_) => Err(Unparsed(
            "statement too complex to check (no helper thread available)".into(),
        )),
    }
}

/// sqlparser 0.64 only knows MS SQL's `CREATE PROCEDURE`; PostgreSQL's shares the `CREATE FUNCTION` syntax (minus
/// `RETURNS`), so `CREATE [OR REPLACE] PROCEDURE` is parsed as a function. Both classify as create/create_function.
fn rewrite_create_procedure(tokens: &mut [TokenWithSpan]) {
    let sig: Vec<usize> = significant(tokens);
    for (k, &i) in sig.iter().enumerate() {
        if !word_is(&tokens[i].token, "CREATE") {
            continue;
        }
        let mut j = k + 1;
        if sig.get(j).is_some_and(|&x| word_is(&tokens[x].token, "OR"))
            && sig
                .get(j + 1)
                .is_some_and(|&x| word_is(&tokens[x].token, "REPLACE"))
        {
            j += 2;
        }
        if let Some(&p) = sig.get(j)
            && word_is(&tokens[p].token, "PROCEDURE")
        {
            tokens[p].token = Token::make_keyword("FUNCTION");
        }
    }
}

fn significant(tokens: &[TokenWithSpan]) -> Vec<usize> {
    tokens
        .iter()
        .enumerate()
        .filter(|(_, t)| !matches!(t.token, Token::Whitespace(_)))
        .map(|(i, _)| i)
        .collect()
}

fn parse_all(tokens: Vec<TokenWithSpan>, nesting: usize) -> Result<Vec<StatementInfo>, Unparsed> {
    let renames: Vec<usize> = tokens
        .iter()
        .enumerate()
        .filter(|(_, t)| word_is(&t.token, "RENAME"))
        .map(|(i, _)| i)
        .collect();
    let mut out = Vec::new();
    each_statement(tokens, nesting, |read| {
        out.push(match read {
            Read::Special(info) => info,
            Read::Tree(statement, tokens) => {
                let first_rename = renames.partition_point(|&i| i < tokens.start);
                let renamed = renames.get(first_rename).is_some_and(|&i| i < tokens.end);
                classify_statement(&statement, renamed, nesting)
            }
        })
    })?;
    Ok(out)
}

/// One top-level statement as [`each_statement`] read it.
enum Read {
    /// One sqlparser cannot parse, read by [`special_statement`].
    Special(StatementInfo),
    /// sqlparser's tree, and the range of tokens it was parsed from.
    Tree(Box<Statement>, std::ops::Range<usize>),
}

/// Read every top-level statement of `tokens` in order, giving each to
/// `each`; a statement not followed by `;` or the end is an error.
fn each_statement(
    tokens: Vec<TokenWithSpan>,
    nesting: usize,
    mut each: impl FnMut(Read),
) -> Result<(), Unparsed> {
    let dialect = PostgreSqlDialect {};
    let mut parser = Parser::new(&dialect)
        .with_recursion_limit(RECURSION_LIMIT)
        .with_tokens_with_locations(tokens);
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        if parser.peek_token_ref().token == Token::EOF {
            return Ok(());
        }
        let start = parser.index();
        let read = match special_statement(&mut parser, nesting)? {
            Some(info) => Read::Special(info),
            None => {
                let statement = parser
                    .parse_statement()
                    .map_err(|e| Unparsed(e.to_string()))?;
                Read::Tree(Box::new(statement), start..parser.index())
            }
        };
        let next = parser.peek_token_ref();
        if !matches!(next.token, Token::SemiColon | Token::EOF) {
            return Err(Unparsed(format!(
                "sql parser error: Expected: end of statement, found: {}{}",
                next.token, next.span.start
            )));
        }
        each(read);
    }
}

/// Statements sqlparser 0.64 cannot parse but that are simple enough to read here.
fn special_statement(
    parser: &mut Parser,
    nesting: usize,
) -> Result<Option<StatementInfo>, Unparsed> {
    let first = parser.peek_nth_token_ref(0).token.clone();
    let second = parser.peek_nth_token_ref(1).token.clone();
    let third = parser.peek_nth_token_ref(2).token.clone();
    let mut info = StatementInfo::default();
    if word_is(&first, "DO") {
        parser.next_token();
        let (language, body) = parse_do_arguments(parser)?;
        info.kinds.insert("do");
        let language = language.unwrap_or_else(|| "plpgsql".to_string());
        let mut c = Collector::new(nesting);
        c.scan_body(&body, &language, "DO block");
        info.absorb(c.info);
        info.kinds.insert("do");
        return Ok(Some(info));
    }
    let two_words = |a: &str, b: &str| word_is(&first, a) && word_is(&second, b);
    // (`PREPARE transaction AS ...` prepares a statement named "transaction": left to sqlparser.)
    if (two_words("PREPARE", "TRANSACTION")
        || two_words("COMMIT", "PREPARED")
        || two_words("ROLLBACK", "PREPARED"))
        && string_literal(&third).is_some()
    {
        parser.next_token();
        parser.next_token();
        parser.next_token();
        info.kinds.insert("transaction");
        return Ok(Some(info));
    }
    if word_is(&first, "CHECKPOINT") {
        parser.next_token();
        info.kinds.insert("other");
        return Ok(Some(info));
    }
    Ok(None)
}

/// `DO [LANGUAGE lang] code [LANGUAGE lang]`, after the `DO` keyword.
fn parse_do_arguments(parser: &mut Parser) -> Result<(Option<String>, String), Unparsed> {
    let mut language = None;
    let mut body = None;
    loop {
        let t = parser.peek_token_ref().clone();
        if matches!(t.token, Token::SemiColon | Token::EOF) {
            break;
        }
        if word_is(&t.token, "LANGUAGE") && language.is_none() {
            parser.next_token();
            let l = parser.next_token();
            language = match &l.token {
                Token::Word(w) => Some(normalize_word(&w.value, w.quote_style.is_some())),
                other => string_literal(other).map(|s| s.to_ascii_lowercase()),
            };
            if language.is_none() {
                return Err(Unparsed(format!(
                    "sql parser error: Expected: language name, found: {}{}",
                    l.token, l.span.start
                )));
            }
            continue;
        }
        match string_literal(&t.token) {
            Some(s) if body.is_none() => {
                parser.next_token();
                body = Some(s);
            }
            _ => {
                return Err(Unparsed(format!(
                    "sql parser error: Expected: DO code string or LANGUAGE, found: {}{}",
                    t.token, t.span.start
                )));
            }
        }
    }
    match body {
        Some(b) => Ok((language, b)),
        None => Err(Unparsed(
            "sql parser error: Expected: DO code string".into(),
        )),
    }
}

fn string_literal(t: &Token) -> Option<String> {
    match t {
        Token::SingleQuotedString(s)
        | Token::EscapedStringLiteral(s)
        | Token::UnicodeStringLiteral(s) => Some(s.clone()),
        Token::DollarQuotedString(d) => Some(d.value.clone()),
        _ => None,
    }
}

fn word_is(t: &Token, kw: &str) -> bool {
    matches!(t, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw))
}

fn word_in(t: &Token, kws: &[&str]) -> bool {
    kws.iter().any(|k| word_is(t, k))
}

// ---------------------------------------------------------------------------------------------------------------
// Normalisation
// ---------------------------------------------------------------------------------------------------------------

fn normalize_word(value: &str, quoted: bool) -> String {
    let mut s = if quoted {
        value.to_string()
    } else {
        value.to_ascii_lowercase()
    };
    if s.len() > MAX_IDENTIFIER_BYTES {
        let mut n = MAX_IDENTIFIER_BYTES;
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        s.truncate(n);
    }
    s
}

fn norm_ident(i: &Ident) -> String {
    normalize_word(&i.value, i.quote_style.is_some())
}

fn norm_name(n: &ObjectName) -> String {
    let parts: Vec<String> =
        n.0.iter()
            .map(|p| match p {
                ObjectNamePart::Identifier(i) => norm_ident(i),
                other => other.to_string().to_ascii_lowercase(),
            })
            .collect();
    parts.join(".")
}

fn last_part(n: &ObjectName) -> Option<String> {
    match n.0.last() {
        Some(ObjectNamePart::Identifier(i)) => Some(norm_ident(i)),
        _ => None,
    }
}

/// A relation name given as a string (`'public.Foo'::regclass`, `nextval('s')`), read like PostgreSQL's regclassin.
fn name_from_string(s: &str) -> String {
    if let Ok(tokens) = tokenize(s) {
        let sig: Vec<&Token> = tokens
            .iter()
            .map(|t| &t.token)
            .filter(|t| !matches!(t, Token::Whitespace(_)))
            .collect();
        let mut parts = Vec::new();
        let mut ok = !sig.is_empty();
        for (k, t) in sig.iter().enumerate() {
            match (k % 2, t) {
                (0, Token::Word(w)) => {
                    parts.push(normalize_word(&w.value, w.quote_style.is_some()))
                }
                (1, Token::Period) => {}
                _ => ok = false,
            }
        }
        if ok && sig.len() % 2 == 1 {
            return parts.join(".");
        }
    }
    s.to_ascii_lowercase()
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

// ---------------------------------------------------------------------------------------------------------------
// AST walk
// ---------------------------------------------------------------------------------------------------------------

fn classify_statement(statement: &Statement, renamed: bool, nesting: usize) -> StatementInfo {
    let mut c = Collector::new(nesting);
    match statement {
        Statement::Prepare { name, .. } => c.info.prepares = Some(norm_ident(name)),
        Statement::Deallocate { name, .. } => {
            c.info.deallocates = Some(
                if name.quote_style.is_none() && name.value.eq_ignore_ascii_case("ALL") {
                    None
                } else {
                    Some(norm_ident(name))
                },
            );
        }
        Statement::Execute { .. } => c.info.executes = prepared_statement_name(statement),
        // EXPLAIN [ANALYZE] EXECUTE p: the caller substitutes p's info as for a plain EXECUTE.
        Statement::Explain {
            statement: inner, ..
        } => c.info.executes = prepared_statement_name(inner),
        _ => {}
    }
    let _ = statement.visit(&mut c);
    if renamed && c.info.kinds.contains("alter") {
        c.info.kinds.insert("rename");
    }
    c.finish()
}

struct CteScope {
    /// CTE name → position in the WITH list (first definition).
    names: HashMap<String, usize>,
    count: usize,
    recursive: bool,
    /// How many CTE bodies of this WITH have been walked (a non-recursive CTE sees only the earlier ones).
    done: usize,
}

struct Collector {
    info: StatementInfo,
    nesting: usize,
    scopes: Vec<CteScope>,
    /// > 0 while inside a plain (non-ANALYZE) EXPLAIN: names count, kinds and without_where do not.
    explain_only: usize,
    /// The name of the TableFactor::Table being visited; its relation visit is handled by the table factor.
    table_factor_name: Option<*const ObjectName>,
    /// Table names (last part), aliases and CTE names: a column with such a name is a whole-row reference.
    row_names: BTreeSet<String>,
    /// The root of `t.col[...]` (CompoundFieldAccess): a qualifier, not a column.
    qualifier: Option<*const Expr>,
}

impl Collector {
    fn new(nesting: usize) -> Self {
        Collector {
            info: StatementInfo::default(),
            nesting,
            scopes: Vec::new(),
            explain_only: 0,
            table_factor_name: None,
            row_names: BTreeSet::new(),
            qualifier: None,
        }
    }

    fn finish(mut self) -> StatementInfo {
        if self.info.columns.iter().any(|c| self.row_names.contains(c)) {
            self.whole_row();
        }
        self.info
    }

    /// A whole row as one value (`SELECT c FROM customers c`,
    /// `row_to_json(c.*)`): it carries every column of the row.
    fn whole_row(&mut self) {
        self.info.columns.insert(ANY_COLUMN.to_string());
    }

    fn kind(&mut self, k: &'static str) {
        if self.explain_only == 0 {
            self.info.kinds.insert(k);
        }
    }

    fn no_where(&mut self) {
        if self.explain_only == 0 {
            self.info.without_where = true;
        }
    }

    fn table(&mut self, name: &ObjectName) {
        self.info.tables.insert(norm_name(name));
        if let Some(last) = last_part(name) {
            self.row_names.insert(last);
        }
    }

    fn table_str(&mut self, name: String) {
        if let Some(last) = name.rsplit('.').next() {
            self.row_names.insert(last.to_string());
        }
        self.info.tables.insert(name);
    }

    fn schema_wide(&mut self, schema: &ObjectName) {
        self.info.tables.insert(format!("{}.*", norm_name(schema)));
    }

    /// Whether an unqualified relation name read here refers to a CTE in scope.
    fn cte_visible(&self, name: &str) -> bool {
        self.scopes.iter().any(|s| {
            let visible = if s.recursive { s.count } else { s.done };
            s.names.get(name).is_some_and(|&i| i < visible)
        })
    }

    /// A name read in a FROM/JOIN/USING position: an unqualified name that a visible CTE defines is not a table.
    fn read_table(&mut self, name: &ObjectName) {
        if let [ObjectNamePart::Identifier(i)] = name.0.as_slice()
            && self.cte_visible(&norm_ident(i))
        {
            return;
        }
        self.table(name);
    }

    fn function(&mut self, name: &ObjectName) {
        self.info.functions.insert(norm_name(name));
    }

    fn star(&mut self) {
        self.info.columns.insert("*".to_string());
    }

    fn select_items(&mut self, items: &[SelectItem]) {
        if items.iter().any(|i| {
            matches!(
                i,
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
            )
        }) {
            self.star();
        }
    }

    fn dml_target(&mut self, t: &TableWithJoins) {
        if let TableFactor::Table { name, .. } = &t.relation {
            self.table(name);
        }
        for j in &t.joins {
            if let TableFactor::Table { name, .. } = &j.relation {
                self.table(name);
            }
        }
    }

    fn foreign_keys_of_column(&mut self, c: &ColumnDef) {
        for o in &c.options {
            if let ColumnOption::ForeignKey(fk) = &o.option {
                self.table(&fk.foreign_table);
            }
        }
    }

    fn foreign_key_of_constraint(&mut self, c: &TableConstraint) {
        if let TableConstraint::ForeignKey(fk) = c {
            self.table(&fk.foreign_table);
        }
    }

    fn grant_objects(&mut self, objects: &Option<GrantObjects>) {
        match objects {
            Some(
                GrantObjects::Tables(names)
                | GrantObjects::Views(names)
                | GrantObjects::Sequences(names),
            ) => {
                for n in names {
                    self.table(n);
                }
            }
            Some(
                GrantObjects::AllTablesInSchema { schemas }
                | GrantObjects::AllSequencesInSchema { schemas }
                | GrantObjects::AllViewsInSchema { schemas }
                | GrantObjects::AllMaterializedViewsInSchema { schemas }
                | GrantObjects::AllExternalTablesInSchema { schemas }
                | GrantObjects::FutureTablesInSchema { schemas }
                | GrantObjects::FutureViewsInSchema { schemas }
                | GrantObjects::FutureExternalTablesInSchema { schemas }
                | GrantObjects::FutureMaterializedViewsInSchema { schemas }
                | GrantObjects::FutureSequencesInSchema { schemas }
                | GrantObjects::Schemas(schemas),
            ) => {
                for s in schemas {
                    self.schema_wide(s);
                }
            }
            _ => {}
        }
    }

    /// Read a DO block or function body written in `language`.
    fn scan_body(&mut self, body: &str, language: &str, what: &str) {
        if self.nesting >= MAX_BODY_NESTING {
            self.info
                .set_opaque(format!("{what} nested too deeply to read"));
            return;
        }
        match language {
            "sql" => match classify_text(body, self.nesting + 1) {
                Ok(infos) => {
                    for i in infos {
                        self.info.absorb(i);
                    }
                }
                Err(Unparsed(e)) => self
                    .info
                    .set_opaque(format!("{what} body could not be parsed: {e}")),
            },
            "plpgsql" => {
                let mut inner = StatementInfo::default();
                plpgsql::scan(body, self.nesting + 1, &mut inner);
                self.info.absorb(inner);
            }
            other => self.info.set_opaque(format!(
                "{what} is written in language {other}, which cannot be read"
            )),
        }
    }

    fn statement(&mut self, s: &Statement) {
        match s {
            Statement::Query(_) => self.kind("select"),
            Statement::Insert(ins) => {
                self.kind("insert");
                if let TableObject::TableName(n) = &ins.table {
                    self.table(n);
                }
                match &ins.on {
                    Some(OnInsert::OnConflict(oc))
                        if matches!(oc.action, OnConflictAction::DoUpdate(_)) =>
                    {
                        self.kind("update")
                    }
                    Some(OnInsert::DuplicateKeyUpdate(_)) => self.kind("update"),
                    _ => {}
                }
                if let Some(r) = &ins.returning {
                    self.select_items(r);
                }
            }
            Statement::Update(u) => {
                self.kind("update");
                self.dml_target(&u.table);
                if u.selection.is_none() {
                    self.no_where();
                }
                if let Some(r) = &u.returning {
                    self.select_items(r);
                }
            }
            Statement::Delete(d) => {
                self.kind("delete");
                for n in &d.tables {
                    self.table(n);
                }
                let from = match &d.from {
                    sqlparser::ast::FromTable::WithFromKeyword(v)
                    | sqlparser::ast::FromTable::WithoutKeyword(v) => v,
                };
                for t in from {
                    self.dml_target(t);
                }
                if d.selection.is_none() {
                    self.no_where();
                }
                if let Some(r) = &d.returning {
                    self.select_items(r);
                }
            }
            Statement::Merge(m) => {
                self.kind("merge");
                if let TableFactor::Table { name, .. } = &m.table {
                    self.table(name);
                }
                match &m.output {
                    Some(
                        sqlparser::ast::OutputClause::Returning { select_items, .. }
                        | sqlparser::ast::OutputClause::Output { select_items, .. },
                    ) => self.select_items(select_items),
                    None => {}
                }
                for clause in &m.clauses {
                    match &clause.action {
                        MergeAction::Insert(_) => self.kind("insert"),
                        MergeAction::Update(_) => self.kind("update"),
                        MergeAction::Delete { .. } => self.kind("delete"),
                        MergeAction::DoNothing { .. } => {}
                    }
                }
            }
            Statement::Copy {
                source, to, target, ..
            } => {
                self.kind("copy");
                match source {
                    CopySource::Table {
                        table_name,
                        columns,
                    } => {
                        self.table(table_name);
                        self.kind(if *to { "select" } else { "insert" });
                        if columns.is_empty() {
                            self.star();
                        }
                        for c in columns {
                            self.info.columns.insert(norm_ident(c));
                        }
                    }
                    CopySource::Query(_) => self.kind("select"),
                }
                match target {
                    CopyTarget::Program { .. } => self.kind("copy_program"),
                    CopyTarget::File { .. } => {
                        self.info.functions.insert("pg_server_file".to_string());
                    }
                    CopyTarget::Stdin | CopyTarget::Stdout => {}
                }
            }
            Statement::CopyIntoSnowflake { .. } => {
                self.kind("copy");
                self.kind("other");
            }
            Statement::CreateTable(ct) => {
                self.kind("create");
                match &ct.like {
                    Some(CreateTableLikeKind::Parenthesized(l) | CreateTableLikeKind::Plain(l)) => {
                        self.table(&l.name)
                    }
                    None => {}
                }
                if let Some(c) = &ct.clone {
                    self.table(c);
                }
                for i in ct.inherits.iter().flatten() {
                    self.table(i);
                }
                for c in &ct.columns {
                    self.foreign_keys_of_column(c);
                }
                for c in &ct.constraints {
                    self.foreign_key_of_constraint(c);
                }
            }
            Statement::CreateFunction(cf) => {
                self.kind("create");
                self.kind("create_function");
                self.create_function_body(cf);
            }
            Statement::CreateProcedure { .. } | Statement::CreateMacro { .. } => {
                self.kind("create");
                self.kind("create_function");
            }
            Statement::CreateRole(_) | Statement::CreateUser(_) => {
                self.kind("create");
                self.kind("create_role");
            }
            Statement::CreateExtension(_) => {
                self.kind("create");
                self.kind("create_extension");
            }
            Statement::CreateTrigger(t) => {
                self.kind("create");
                self.table(&t.table_name);
                if let Some(r) = &t.referenced_table_name {
                    self.table(r);
                }
                if let Some(b) = &t.exec_body {
                    self.function(&b.func_desc.name);
                }
            }
            Statement::CreateSequence { name, .. } => {
                self.kind("create");
                self.table(name);
            }
            Statement::CreateView(_)
            | Statement::CreateIndex(_)
            | Statement::CreateVirtualTable { .. }
            | Statement::CreateSecret { .. }
            | Statement::CreateServer(_)
            | Statement::CreateForeignTable(_)
            | Statement::CreateForeignDataWrapper(_)
            | Statement::CreateUserMapping(_)
            | Statement::CreatePolicy(_)
            | Statement::CreateRule(_)
            | Statement::CreateConnector(_)
            | Statement::CreateOperator(_)
            | Statement::CreateOperatorFamily(_)
            | Statement::CreateOperatorClass(_)
            | Statement::CreateTextSearch(_)
            | Statement::CreateAggregate(_)
            | Statement::CreateCollation(_)
            | Statement::CreateSchema { .. }
            | Statement::CreateDatabase { .. }
            | Statement::CreateStage { .. }
            | Statement::CreateFileFormat { .. }
            | Statement::CreateWarehouse(_)
            | Statement::CreateDomain(_)
            | Statement::CreateType { .. } => self.kind("create"),
            Statement::AlterTable(at) => {
                self.kind("alter");
                for op in &at.operations {
                    match op {
                        sqlparser::ast::AlterTableOperation::RenameTable { table_name } => {
                            let new = match table_name {
                                sqlparser::ast::RenameTableNameKind::As(n)
                                | sqlparser::ast::RenameTableNameKind::To(n) => n,
                            };
                            self.table(new);
                            // `ALTER TABLE s.x RENAME TO y` creates s.y.
                            if new.0.len() == 1 && at.name.0.len() > 1 {
                                let mut parts: Vec<String> =
                                    norm_name(&at.name).split('.').map(str::to_string).collect();
                                parts.pop();
                                parts.push(norm_name(new));
                                self.table_str(parts.join("."));
                            }
                        }
                        sqlparser::ast::AlterTableOperation::AddConstraint {
                            constraint, ..
                        } => self.foreign_key_of_constraint(constraint),
                        sqlparser::ast::AlterTableOperation::AddColumn { column_def, .. } => {
                            self.foreign_keys_of_column(column_def)
                        }
                        _ => {}
                    }
                }
            }
            Statement::AlterIndex { name, .. } => {
                self.kind("alter");
                self.table(name);
            }
            Statement::AlterRole { .. } | Statement::AlterUser(_) => {
                self.kind("alter");
                self.kind("alter_role");
            }
            Statement::AlterDefaultPrivileges(a) => {
                self.kind("alter");
                match &a.operation {
                    sqlparser::ast::AlterDefaultPrivilegesOperation::Grant { .. } => {
                        self.kind("grant")
                    }
                    sqlparser::ast::AlterDefaultPrivilegesOperation::Revoke { .. } => {
                        self.kind("revoke")
                    }
                }
            }
            Statement::AlterSchema(a) => {
                self.kind("alter");
                self.schema_wide(&a.name);
            }
            Statement::AlterView(a) => {
                self.kind("alter");
                if let sqlparser::ast::AlterViewOperation::RenameTo { new_name } = &a.operation {
                    self.table(new_name);
                }
            }
            Statement::AlterFunction(_)
            | Statement::AlterType(_)
            | Statement::AlterCollation(_)
            | Statement::AlterOperator(_)
            | Statement::AlterOperatorFamily(_)
            | Statement::AlterOperatorClass(_)
            | Statement::AlterTextSearch(_)
            | Statement::AlterPolicy(_)
            | Statement::AlterTrigger(_)
            | Statement::AlterConnector { .. }
            | Statement::AlterSession { .. } => self.kind("alter"),
            Statement::RenameTable(renames) => {
                self.kind("alter");
                self.kind("rename");
                for r in renames {
                    self.table(&r.old_name);
                    self.table(&r.new_name);
                }
            }
            Statement::Drop {
                object_type,
                names,
                table,
                ..
            } => {
                self.kind("drop");
                match object_type {
                    ObjectType::Role | ObjectType::User | ObjectType::Group => {
                        self.kind("drop_role")
                    }
                    ObjectType::Table
                    | ObjectType::ForeignTable
                    | ObjectType::View
                    | ObjectType::MaterializedView
                    | ObjectType::Index
                    | ObjectType::Sequence
                    | ObjectType::Stream => {
                        for n in names {
                            self.table(n);
                        }
                    }
                    ObjectType::Schema => {
                        for n in names {
                            self.schema_wide(n);
                        }
                    }
                    _ => {}
                }
                if let Some(t) = table {
                    self.table(t);
                }
            }
            Statement::DropTrigger(t) => {
                self.kind("drop");
                if let Some(n) = &t.table_name {
                    self.table(n);
                }
            }
            Statement::DropFunction(_)
            | Statement::DropDomain(_)
            | Statement::DropProcedure { .. }
            | Statement::DropSecret { .. }
            | Statement::DropPolicy(_)
            | Statement::DropRule(_)
            | Statement::DropConnector { .. }
            | Statement::DropExtension(_)
            | Statement::DropOperator(_)
            | Statement::DropOperatorFamily(_)
            | Statement::DropOperatorClass(_) => self.kind("drop"),
            Statement::Truncate(_) => self.kind("truncate"),
            Statement::Comment {
                object_type,
                object_name,
                ..
            } => {
                self.kind("comment");
                match object_type {
                    CommentObject::Table
                    | CommentObject::View
                    | CommentObject::MaterializedView
                    | CommentObject::ForeignTable
                    | CommentObject::Sequence => self.table(object_name),
                    CommentObject::Column if object_name.0.len() > 1 => {
                        let parent = ObjectName(object_name.0[..object_name.0.len() - 1].to_vec());
                        self.table(&parent);
                    }
                    _ => {}
                }
            }
            Statement::Grant(g) => {
                self.kind("grant");
                self.grant_objects(&g.objects);
            }
            Statement::GrantRole(_) => self.kind("grant"),
            Statement::Revoke(r) => {
                self.kind("revoke");
                self.grant_objects(&r.objects);
            }
            Statement::RevokeRole(_) => self.kind("revoke"),
            Statement::Call(f) => {
                self.kind("call");
                self.function(&f.name);
            }
            Statement::Set(set) => {
                self.kind("set");
                if matches!(set, Set::SetTransaction { .. }) {
                    self.kind("transaction");
                }
                let touches_lexing = |n: &ObjectName| {
                    last_part(n)
                        .is_some_and(|p| p.eq_ignore_ascii_case("standard_conforming_strings"))
                };
                let lexing = match set {
                    Set::SingleAssignment { variable, .. } => touches_lexing(variable),
                    Set::ParenthesizedAssignments { variables, .. } => {
                        variables.iter().any(touches_lexing)
                    }
                    Set::MultipleAssignments { assignments } => {
                        assignments.iter().any(|a| touches_lexing(&a.name))
                    }
                    _ => false,
                };
                if lexing {
                    self.info.set_opaque(
                        "SET standard_conforming_strings changes how later SQL is lexed",
                    );
                }
            }
            Statement::Reset(_) => self.kind("set"),
            Statement::ShowFunctions { .. }
            | Statement::ShowVariable { .. }
            | Statement::ShowStatus { .. }
            | Statement::ShowVariables { .. }
            | Statement::ShowCreate { .. }
            | Statement::ShowColumns { .. }
            | Statement::ShowCatalogs { .. }
            | Statement::ShowDatabases { .. }
            | Statement::ShowProcessList { .. }
            | Statement::ShowSchemas { .. }
            | Statement::ShowCharset(_)
            | Statement::ShowObjects(_)
            | Statement::ShowTables { .. }
            | Statement::ShowViews { .. }
            | Statement::ShowCollation { .. } => self.kind("show"),
            Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. } => self.kind("transaction"),
            Statement::Prepare { .. } => self.kind("prepare"),
            Statement::Execute { .. } => {
                self.kind("execute");
                if prepared_statement_name(s).is_none() {
                    self.info.set_opaque(
                        "EXECUTE of something other than a prepared statement name and parameters",
                    );
                }
            }
            Statement::Deallocate { .. } => self.kind("deallocate"),
            Statement::Explain {
                analyze, options, ..
            } => {
                self.kind("explain");
                if !explain_executes(*analyze, options) {
                    self.explain_only += 1;
                }
            }
            Statement::ExplainTable { table_name, .. } => {
                self.kind("explain");
                self.table(table_name);
            }
            Statement::Analyze(_) => self.kind("analyze"),
            Statement::Vacuum(v) => {
                self.kind("vacuum");
                if let Some(t) = &v.table_name {
                    self.table(t);
                }
            }
            Statement::Lock(_) | Statement::LockTables { .. } => self.kind("lock"),
            Statement::LISTEN { .. } | Statement::UNLISTEN { .. } => self.kind("listen"),
            Statement::NOTIFY { .. } => self.kind("notify"),
            Statement::Discard { .. } => self.kind("discard"),
            Statement::Load { .. } | Statement::LoadData { .. } | Statement::Install { .. } => {
                self.kind("other");
                self.info.set_opaque("LOAD runs code from a shared library");
            }
            _ => self.kind("other"),
        }
    }

    fn create_function_body(&mut self, cf: &sqlparser::ast::CreateFunction) {
        let language = cf
            .language
            .as_ref()
            .map(norm_ident)
            .unwrap_or_else(|| "sql".to_string());
        match &cf.function_body {
            Some(CreateFunctionBody::AsBeforeOptions { body, link_symbol }) => {
                if link_symbol.is_some() {
                    self.info.set_opaque(format!(
                        "function is object code (language {language}), which cannot be read"
                    ));
                } else {
                    self.string_body(body, &language);
                }
            }
            Some(CreateFunctionBody::AsAfterOptions(body)) => self.string_body(body, &language),
            // SQL-standard bodies (RETURN expr, BEGIN ATOMIC ... END) are part of the AST and walked as such.
            _ => {}
        }
    }

    fn string_body(&mut self, body: &Expr, language: &str) {
        match expr_string(body) {
            Some(text) => self.scan_body(&text, language, "function"),
            None => self
                .info
                .set_opaque("function body is not a string literal"),
        }
    }

    /// Functions whose arguments need a closer look.
    fn special_function(&mut self, name: &ObjectName, args: Vec<Option<&Expr>>) {
        let Some(base) = last_part(name) else { return };
        match base.as_str() {
            "dblink" | "dblink_exec" | "dblink_open" | "dblink_send_query" | "query_to_xml" | "query_to_xmlschema"
            | "query_to_xml_and_xmlschema" => {
                let mut read_any = false;
                let mut computed = false;
                for a in &args {
                    match a {
                        Some(e) => match expr_string(e) {
                            Some(text) => {
                                if self.nesting >= MAX_BODY_NESTING {
                                    continue;
                                }
                                if let Ok(infos) = classify_text(&text, self.nesting + 1) {
                                    if !infos.is_empty() {
                                        read_any = true;
                                    }
                                    for i in infos {
                                        self.info.absorb(i);
                                    }
                                }
                            }
                            None => {
                                if !matches!(e, Expr::Value(v) if matches!(v.value, Value::Boolean(_) | Value::Number(..)))
                                {
                                    computed = true;
                                }
                            }
                        },
                        None => computed = true,
                    }
                }
                if computed || !read_any {
                    self.info.set_opaque(format!("{base}() runs SQL that could not be read"));
                }
            }
            "set_config" => match args.first() {
                Some(Some(e)) => match expr_string(e) {
                    Some(name) if name.trim().eq_ignore_ascii_case("standard_conforming_strings") => self
                        .info
                        .set_opaque("set_config(standard_conforming_strings) changes how later SQL is lexed"),
                    Some(_) => {}
                    None => self.info.set_opaque("set_config() with a computed setting name"),
                },
                _ => self.info.set_opaque("set_config() with a computed setting name"),
            },
            "nextval" | "currval" | "setval" | "table_to_xml" | "table_to_xmlschema" | "table_to_xml_and_xmlschema" => {
                if let Some(Some(e)) = args.first()
                    && let Some(s) = expr_string(e) {
                        self.table_str(name_from_string(&s));
                    }
            }
            _ => {}
        }
    }

    /// `SELECT`/`VALUES`/`TABLE` bodies inside a set-operation tree, without recursing on the Rust stack.
    fn set_expr_tables(&mut self, body: &SetExpr) {
        let mut todo = vec![body];
        while let Some(e) = todo.pop() {
            match e {
                SetExpr::SetOperation { left, right, .. } => {
                    todo.push(left);
                    todo.push(right);
                }
                SetExpr::Table(t) => {
                    self.kind("select");
                    self.star();
                    if let Some(name) = &t.table_name {
                        let mut n = norm_ident(name);
                        if let Some(schema) = &t.schema_name {
                            n = format!("{}.{n}", norm_ident(schema));
                        }
                        if t.schema_name.is_none() && self.cte_visible(&n) {
                            continue;
                        }
                        self.table_str(n);
                    }
                }
                _ => {}
            }
        }
    }
}

/// The name of `EXECUTE name [(params)]` in PostgreSQL's form; `None` for the other dialects' forms
/// (`EXECUTE 'sql'`, `EXECUTE IMMEDIATE`, `USING`, `INTO`, ...), which PostgreSQL would reject or which cannot be read.
fn prepared_statement_name(s: &Statement) -> Option<String> {
    let Statement::Execute {
        name,
        parameters,
        has_parentheses,
        immediate,
        into,
        using,
        output,
        default,
    } = s
    else {
        return None;
    };
    if *immediate || !into.is_empty() || !using.is_empty() || *output || *default {
        return None;
    }
    if !*has_parentheses && !parameters.is_empty() {
        return None;
    }
    match name.as_ref().map(|n| n.0.as_slice()) {
        Some([ObjectNamePart::Identifier(i)]) if i.quote_style.is_none_or(|q| q == '"') => {
            Some(norm_ident(i))
        }
        _ => None,
    }
}

/// Whether an EXPLAIN runs its statement: `ANALYZE` given and not clearly switched off.
fn explain_executes(analyze: bool, options: &Option<Vec<UtilityOption>>) -> bool {
    analyze
        || options
            .iter()
            .flatten()
            .any(|o| norm_ident(&o.name) == "analyze" && !is_false_option(o.arg.as_ref()))
}

/// PostgreSQL boolean option values that mean false; anything else (including invalid values) counts as true.
fn is_false_option(arg: Option<&Expr>) -> bool {
    let word = match arg {
        None => return false,
        Some(Expr::Value(v)) => match &v.value {
            Value::Boolean(b) => return !*b,
            Value::Number(n, _) => n.to_string(),
            Value::SingleQuotedString(s) => s.clone(),
            _ => return false,
        },
        Some(Expr::Identifier(i)) => i.value.clone(),
        _ => return false,
    };
    let w = word.to_ascii_lowercase();
    !w.is_empty()
        && ("false".starts_with(&w) || "no".starts_with(&w) || w == "off" || w == "of" || w == "0")
}

fn expr_string(e: &Expr) -> Option<String> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s)
            | Value::EscapedStringLiteral(s)
            | Value::UnicodeStringLiteral(s)
            | Value::NationalStringLiteral(s) => Some(s.clone()),
            Value::DollarQuotedString(d) => Some(d.value.clone()),
            _ => None,
        },
        Expr::Nested(inner) => expr_string(inner),
        Expr::Cast { expr, .. } => expr_string(expr),
        _ => None,
    }
}

/// The plain expression of each argument (`None` for wildcards and other non-expression arguments).
fn function_args(f: &Function) -> Vec<Option<&Expr>> {
    match &f.args {
        FunctionArguments::List(list) => plain_args(&list.args),
        _ => Vec::new(),
    }
}

fn plain_args(args: &[FunctionArg]) -> Vec<Option<&Expr>> {
    function_arg_exprs(args)
        .map(|arg| match arg {
            FunctionArgExpr::Expr(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn function_arg_exprs(args: &[FunctionArg]) -> impl Iterator<Item = &FunctionArgExpr> {
    args.iter().map(|a| match a {
        FunctionArg::Named { arg, .. }
        | FunctionArg::ExprNamed { arg, .. }
        | FunctionArg::Unnamed(arg) => arg,
    })
}

impl Visitor for Collector {
    type Break = ();

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        let mut names = HashMap::new();
        let (mut count, mut recursive) = (0, false);
        if let Some(w) = &q.with {
            recursive = w.recursive;
            count = w.cte_tables.len();
            for (i, c) in w.cte_tables.iter().enumerate() {
                let n = norm_ident(&c.alias.name);
                self.row_names.insert(n.clone());
                names.entry(n).or_insert(i);
            }
        }
        self.scopes.push(CteScope {
            names,
            count,
            recursive,
            done: 0,
        });
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        // Now every CTE of this query is visible to its body.
        if let Some(own) = self.scopes.last_mut() {
            own.done = own.count;
        }
        self.set_expr_tables(&q.body);
        self.scopes.pop();
        // The queries visited directly under a WITH, before its main body, are its CTE bodies, in order.
        if let Some(parent) = self.scopes.last_mut()
            && parent.done < parent.count
        {
            parent.done += 1;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, s: &Select) -> ControlFlow<()> {
        self.kind("select");
        self.select_items(&s.projection);
        if let Some(into) = &s.into {
            self.kind("create");
            for t in &into.targets {
                match t {
                    Expr::Identifier(i) => self.table_str(norm_ident(i)),
                    Expr::CompoundIdentifier(parts) => {
                        self.table_str(parts.iter().map(norm_ident).collect::<Vec<_>>().join("."))
                    }
                    _ => {}
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        if let Some(p) = self.table_factor_name.take()
            && std::ptr::eq(p, relation)
        {
            return ControlFlow::Continue(());
        }
        self.table(relation);
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, tf: &TableFactor) -> ControlFlow<()> {
        let alias = match tf {
            TableFactor::Table {
                name, alias, args, ..
            } => {
                if let Some(a) = args {
                    self.function(name);
                    if function_arg_exprs(&a.args)
                        .any(|x| matches!(x, FunctionArgExpr::QualifiedWildcard(_)))
                    {
                        self.whole_row();
                    }
                    self.special_function(name, plain_args(&a.args));
                } else {
                    self.read_table(name);
                }
                if let Some(last) = last_part(name) {
                    self.row_names.insert(last);
                }
                self.table_factor_name = Some(name as *const ObjectName);
                alias
            }
            TableFactor::Function {
                name, alias, args, ..
            } => {
                self.function(name);
                if function_arg_exprs(args)
                    .any(|x| matches!(x, FunctionArgExpr::QualifiedWildcard(_)))
                {
                    self.whole_row();
                }
                self.special_function(name, plain_args(args));
                alias
            }
            TableFactor::UNNEST { alias, .. } => {
                self.info.functions.insert("unnest".into());
                alias
            }
            TableFactor::JsonTable { alias, .. } => {
                self.info.functions.insert("json_table".into());
                alias
            }
            TableFactor::XmlTable { alias, .. } => {
                self.info.functions.insert("xmltable".into());
                alias
            }
            TableFactor::OpenJsonTable { alias, .. } => {
                self.info.functions.insert("openjson".into());
                alias
            }
            TableFactor::SemanticView { name, alias, .. } => {
                self.table(name);
                alias
            }
            TableFactor::Derived { alias, .. }
            | TableFactor::TableFunction { alias, .. }
            | TableFactor::NestedJoin { alias, .. }
            | TableFactor::Pivot { alias, .. }
            | TableFactor::Unpivot { alias, .. }
            | TableFactor::MatchRecognize { alias, .. } => alias,
            TableFactor::UnpivotExpr { .. } => &None,
        };
        if let Some(a) = alias {
            self.row_names.insert(norm_ident(&a.name));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        // Set by a CompoundFieldAccess for its root, which is the very next expression visited.
        let qualifier = self.qualifier.take();
        match e {
            Expr::Identifier(i) if qualifier.is_none_or(|q| !std::ptr::eq(q, e)) => {
                self.info.columns.insert(norm_ident(i));
            }
            Expr::CompoundFieldAccess { root, access_chain }
                if matches!(**root, Expr::Identifier(_))
                    && matches!(
                        access_chain.first(),
                        Some(sqlparser::ast::AccessExpr::Dot(_))
                    ) =>
            {
                self.qualifier = Some(&**root as *const Expr);
            }
            Expr::CompoundIdentifier(parts) => {
                if let Some(last) = parts.last() {
                    self.info.columns.insert(norm_ident(last));
                }
            }
            Expr::Wildcard(_) | Expr::QualifiedWildcard(..) => self.whole_row(),
            Expr::Function(f) => {
                self.function(&f.name);
                if let FunctionArguments::List(list) = &f.args
                    && function_arg_exprs(&list.args).any(|x| {
                        matches!(
                            x,
                            FunctionArgExpr::QualifiedWildcard(_)
                                | FunctionArgExpr::WildcardWithOptions(_)
                        )
                    })
                {
                    self.whole_row();
                }
                self.special_function(&f.name, function_args(f));
            }
            Expr::Cast {
                expr, data_type, ..
            } => {
                let regclass = matches!(data_type, DataType::Regclass)
                    || data_type.to_string().eq_ignore_ascii_case("regclass");
                if regclass && let Some(s) = expr_string(expr) {
                    self.table_str(name_from_string(&s));
                }
            }
            Expr::Substring { .. } => {
                self.info.functions.insert("substring".into());
            }
            Expr::Trim { .. } => {
                self.info.functions.insert("trim".into());
            }
            Expr::Position { .. } => {
                self.info.functions.insert("position".into());
            }
            Expr::Overlay { .. } => {
                self.info.functions.insert("overlay".into());
            }
            Expr::Extract { .. } => {
                self.info.functions.insert("extract".into());
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, s: &Statement) -> ControlFlow<()> {
        self.statement(s);
        ControlFlow::Continue(())
    }

    fn post_visit_statement(&mut self, s: &Statement) -> ControlFlow<()> {
        if let Statement::Explain {
            analyze, options, ..
        } = s
            && !explain_executes(*analyze, options)
        {
            self.explain_only = self.explain_only.saturating_sub(1);
        }
        ControlFlow::Continue(())
    }
}

// ---------------------------------------------------------------------------------------------------------------
// PL/pgSQL bodies
// ---------------------------------------------------------------------------------------------------------------

mod plpgsql {
    //! A small scanner for PL/pgSQL bodies: it finds the SQL statements, queries and expressions in them and
    //! classifies those; whatever it does not recognise makes the body opaque.

    use super::{
        Span, StatementInfo, Token, TokenWithSpan, Whitespace, check_lexical, classify_tokens,
        significant, tokenize, word_in, word_is,
    };

    /// Words that start a query; seeing one where only an expression was expected means a subquery.
    const QUERY_WORDS: &[&str] = &[
        "SELECT", "WITH", "VALUES", "TABLE", "INSERT", "UPDATE", "DELETE", "MERGE",
    ];
    /// Words that start an SQL statement; in text read only lexically they make the body opaque.
    const STATEMENT_WORDS: &[&str] = &[
        "SELECT",
        "WITH",
        "VALUES",
        "TABLE",
        "INSERT",
        "UPDATE",
        "DELETE",
        "MERGE",
        "CREATE",
        "ALTER",
        "DROP",
        "TRUNCATE",
        "GRANT",
        "REVOKE",
        "COPY",
        "CALL",
        "DO",
        "SET",
        "RESET",
        "LOCK",
        "COMMENT",
        "PERFORM",
        "VACUUM",
        "ANALYZE",
        "CLUSTER",
        "REINDEX",
        "REFRESH",
        "IMPORT",
        "SECURITY",
        "LISTEN",
        "NOTIFY",
        "LOAD",
        "DISCARD",
        "PREPARE",
        "DEALLOCATE",
        "COMMIT",
        "ROLLBACK",
        "SAVEPOINT",
        "RELEASE",
        "EXPLAIN",
        "REASSIGN",
        "CHECKPOINT",
    ];
    /// Words that cannot be a plpgsql `INTO` target (they continue the SQL statement).
    const NOT_TARGETS: &[&str] = &[
        "FROM",
        "WHERE",
        "GROUP",
        "HAVING",
        "ORDER",
        "LIMIT",
        "OFFSET",
        "UNION",
        "INTERSECT",
        "EXCEPT",
        "WINDOW",
        "FOR",
        "RETURNING",
        "ON",
        "USING",
        "VALUES",
        "SELECT",
        "FETCH",
        "INTO",
        "STRICT",
    ];
    /// Words followed by `(` that are syntax, not function calls.
    const NOT_FUNCTIONS: &[&str] = &[
        "IN",
        "VALUES",
        "AND",
        "OR",
        "NOT",
        "EXISTS",
        "ANY",
        "ALL",
        "SOME",
        "ARRAY",
        "ROW",
        "WHEN",
        "THEN",
        "ELSE",
        "IF",
        "ELSIF",
        "ELSEIF",
        "WHILE",
        "RETURN",
        "USING",
        "ON",
        "AS",
        "FROM",
        "WHERE",
        "SELECT",
        "INTO",
        "JOIN",
        "LOOP",
        "BEGIN",
        "END",
        "CASE",
        "RAISE",
        "PERFORM",
        "NEXT",
        "QUERY",
        "ASSERT",
        "BY",
        "FOR",
        "IS",
        "LIKE",
        "ILIKE",
        "BETWEEN",
        "DISTINCT",
        "OVER",
        "FILTER",
        "WITHIN",
        "GROUP",
        "ORDER",
        "PARTITION",
        "CAST",
    ];

    struct Scanner<'a> {
        toks: &'a [TokenWithSpan],
        sig: &'a [usize],
        nesting: usize,
        info: &'a mut StatementInfo,
        in_declare: bool,
    }

    pub(super) fn scan(body: &str, nesting: usize, info: &mut StatementInfo) {
        let toks = match tokenize(body) {
            Ok(t) => t,
            Err(e) => {
                info.set_opaque(format!("plpgsql body could not be tokenized: {}", e.0));
                return;
            }
        };
        if let Err(e) = check_lexical(&toks) {
            info.set_opaque(format!("plpgsql body: {}", e.0));
            return;
        }
        let sig = significant(&toks);
        if sig.iter().any(|&i| word_is(&toks[i].token, "EXECUTE")) {
            info.set_opaque("dynamic SQL (EXECUTE) in plpgsql body");
            return;
        }
        let mut s = Scanner {
            toks: &toks,
            sig: &sig,
            nesting,
            info,
            in_declare: false,
        };
        // Split into plpgsql statements at `;` outside brackets.
        let mut depth = 0usize;
        let mut start = 0usize;
        for k in 0..sig.len() {
            match &toks[sig[k]].token {
                Token::LParen | Token::LBracket => depth += 1,
                Token::RParen | Token::RBracket => depth = depth.saturating_sub(1),
                Token::SemiColon if depth == 0 => {
                    s.statement(start, k);
                    start = k + 1;
                }
                _ => {}
            }
        }
        s.statement(start, sig.len());
    }

    impl Scanner<'_> {
        fn tok(&self, k: usize) -> &Token {
            self.sig
                .get(k)
                .map_or(&Token::EOF, |&i| &self.toks[i].token)
        }

        fn is(&self, k: usize, w: &str) -> bool {
            word_is(self.tok(k), w)
        }

        /// First position in `from..end` holding one of `words`, outside brackets and SQL `CASE ... END`.
        fn find(&self, from: usize, end: usize, words: &[&str]) -> Option<usize> {
            let mut depth = 0usize;
            let mut case_depth = 0usize;
            for k in from..end {
                let t = self.tok(k);
                match t {
                    Token::LParen | Token::LBracket => depth += 1,
                    Token::RParen | Token::RBracket => depth = depth.saturating_sub(1),
                    _ if depth > 0 => {}
                    _ if word_is(t, "CASE") => case_depth += 1,
                    _ if word_is(t, "END") && case_depth > 0 => case_depth -= 1,
                    _ if case_depth == 0 && word_in(t, words) => return Some(k),
                    _ => {}
                }
            }
            None
        }

        fn opaque(&mut self, why: &str) {
            self.info.set_opaque(format!("plpgsql body: {why}"));
        }

        /// One plpgsql statement: significant positions `k..end`.
        fn statement(&mut self, mut k: usize, end: usize) {
            loop {
                if k >= end {
                    return;
                }
                // `<<label>>`
                if matches!(self.tok(k), Token::ShiftLeft) {
                    k += 3;
                    continue;
                }
                // `#option value` compiler directives.
                if matches!(self.tok(k), Token::Sharp) {
                    k += 3;
                    continue;
                }
                if self.in_declare && !self.is(k, "BEGIN") {
                    self.declaration(k, end);
                    return;
                }
                if let Some(rhs) = self.assignment(k, end) {
                    self.expression(rhs, end);
                    return;
                }
                let t = self.tok(k).clone();
                let w = |s: &str| word_is(&t, s);
                if w("DECLARE") {
                    self.in_declare = true;
                    k += 1;
                } else if w("BEGIN") {
                    self.in_declare = false;
                    k += 1;
                } else if w("EXCEPTION") || w("ELSE") || w("LOOP") {
                    k += 1;
                } else if w("END") || w("NULL") {
                    // `END [IF | LOOP | CASE] [label]`, `NULL`: anything longer is not plpgsql.
                    if end - k > 3 {
                        self.opaque("unexpected text after END/NULL");
                    }
                    return;
                } else if w("GET") {
                    self.lexical(k + 1, end);
                    return;
                } else if w("IF") || w("ELSIF") || w("ELSEIF") || w("WHEN") {
                    match self.find(k + 1, end, &["THEN"]) {
                        Some(then) => {
                            self.expression(k + 1, then);
                            k = then + 1;
                        }
                        None => return self.opaque("condition without THEN"),
                    }
                } else if w("CASE") {
                    match self.find(k + 1, end, &["WHEN"]) {
                        Some(when) => {
                            self.expression(k + 1, when);
                            k = when;
                        }
                        None => return self.opaque("CASE without WHEN"),
                    }
                } else if w("WHILE") {
                    match self.find(k + 1, end, &["LOOP"]) {
                        Some(l) => {
                            self.expression(k + 1, l);
                            k = l + 1;
                        }
                        None => return self.opaque("WHILE without LOOP"),
                    }
                } else if w("FOR") || w("FOREACH") {
                    let (Some(i), Some(l)) = (
                        self.find(k + 1, end, &["IN"]),
                        self.find(k + 1, end, &["LOOP"]),
                    ) else {
                        return self.opaque("FOR without IN ... LOOP");
                    };
                    if i > l {
                        return self.opaque("FOR without IN ... LOOP");
                    }
                    let mut from = i + 1;
                    if self.is(from, "REVERSE") || self.is(from, "ARRAY") {
                        from += 1;
                    }
                    if self.starts_query(from) {
                        self.sql(from, l, false);
                    } else {
                        self.lexical(from, l);
                    }
                    k = l + 1;
                } else if w("EXIT") || w("CONTINUE") {
                    if let Some(when) = self.find(k + 1, end, &["WHEN"]) {
                        self.expression(when + 1, end);
                    }
                    return;
                } else if w("RETURN") {
                    if self.is(k + 1, "QUERY") {
                        self.sql(k + 2, end, false);
                    } else if self.is(k + 1, "NEXT") {
                        self.expression(k + 2, end);
                    } else {
                        self.expression(k + 1, end);
                    }
                    return;
                } else if w("ASSERT") {
                    self.expression(k + 1, end);
                    return;
                } else if w("RAISE") || w("FETCH") || w("MOVE") || w("CLOSE") {
                    self.lexical(k + 1, end);
                    return;
                } else if w("OPEN") {
                    match self.find(k + 1, end, &["FOR"]) {
                        Some(f) => self.sql(f + 1, end, false),
                        None => self.lexical(k + 1, end),
                    }
                    return;
                } else if w("PERFORM") {
                    self.sql(k, end, true);
                    return;
                } else {
                    self.sql(k, end, false);
                    return;
                }
            }
        }

        /// `target := expr` / `target = expr` → position of `expr`.
        fn assignment(&self, k: usize, end: usize) -> Option<usize> {
            if !matches!(self.tok(k), Token::Word(_)) {
                return None;
            }
            let mut j = k + 1;
            while j < end {
                match self.tok(j) {
                    Token::Period if matches!(self.tok(j + 1), Token::Word(_)) => j += 2,
                    Token::LBracket => {
                        let mut depth = 0usize;
                        while j < end {
                            match self.tok(j) {
                                Token::LBracket => depth += 1,
                                Token::RBracket => {
                                    depth -= 1;
                                    if depth == 0 {
                                        break;
                                    }
                                }
                                _ => {}
                            }
                            j += 1;
                        }
                        j += 1;
                    }
                    _ => break,
                }
            }
            match self.tok(j) {
                Token::Assignment | Token::Eq => Some(j + 1),
                Token::Colon if matches!(self.tok(j + 1), Token::Eq) => Some(j + 2),
                _ => None,
            }
        }

        fn declaration(&mut self, k: usize, end: usize) {
            if let Some(c) = self.find(k, end, &["CURSOR"]) {
                match self.find(c + 1, end, &["FOR", "IS"]) {
                    Some(f) => self.sql(f + 1, end, false),
                    None => self.opaque("cursor declaration without a query"),
                }
                return;
            }
            if word_in(self.tok(k), STATEMENT_WORDS) {
                // Not `name type ...`: a malformed section, or a statement; read it as one.
                return self.sql(k, end, false);
            }
            if self.find(k, end, &["ALIAS"]).is_some() {
                return;
            }
            let mut depth = 0usize;
            for j in k..end {
                if depth == 0 && word_in(self.tok(j), STATEMENT_WORDS) {
                    return self.opaque("unrecognised declaration");
                }
                match self.tok(j) {
                    Token::LParen | Token::LBracket => depth += 1,
                    Token::RParen | Token::RBracket => depth = depth.saturating_sub(1),
                    Token::Assignment | Token::Eq if depth == 0 => {
                        return self.expression(j + 1, end);
                    }
                    t if depth == 0 && word_is(t, "DEFAULT") => return self.expression(j + 1, end),
                    _ => {}
                }
            }
        }

        fn starts_query(&self, k: usize) -> bool {
            let mut k = k;
            while matches!(self.tok(k), Token::LParen) {
                k += 1;
            }
            word_in(self.tok(k), QUERY_WORDS)
        }

        /// Original tokens (with whitespace) for significant positions `from..end`.
        fn slice(&self, from: usize, end: usize) -> Vec<TokenWithSpan> {
            if from >= end || from >= self.sig.len() {
                return Vec::new();
            }
            let last = self.sig[(end - 1).min(self.sig.len() - 1)];
            self.toks[self.sig[from]..=last].to_vec()
        }

        /// An SQL statement at `from..end`; `perform` = it starts with PERFORM, read as SELECT.
        fn sql(&mut self, from: usize, end: usize, perform: bool) {
            if from >= end {
                return self.opaque("missing SQL statement");
            }
            // plpgsql's `INTO [STRICT] target [, ...]` (not INSERT INTO / MERGE INTO) is stripped.
            let mut skip: Option<(usize, usize)> = None;
            let mut search = from;
            while let Some(into) = self.find(search, end, &["INTO"]) {
                search = into + 1;
                let after_insert = into > from && word_in(self.tok(into - 1), &["INSERT", "MERGE"]);
                if !after_insert {
                    let mut j = into + 1;
                    if self.is(j, "STRICT") {
                        j += 1;
                    }
                    loop {
                        if !matches!(self.tok(j), Token::Word(_))
                            || word_in(self.tok(j), NOT_TARGETS)
                        {
                            break;
                        }
                        j += 1;
                        while matches!(self.tok(j), Token::Period)
                            && matches!(self.tok(j + 1), Token::Word(_))
                        {
                            j += 2;
                        }
                        if matches!(self.tok(j), Token::Comma)
                            && matches!(self.tok(j + 1), Token::Word(_))
                        {
                            j += 1;
                        } else {
                            break;
                        }
                    }
                    skip = Some((into, j.min(end)));
                    break;
                }
            }
            let mut tokens = Vec::new();
            let mut k = from;
            while k < end {
                if let Some((a, b)) = skip
                    && k == a
                {
                    tokens.push(space());
                    k = b;
                    continue;
                }
                let mut piece = self.slice(k, k + 1);
                if k == from && perform {
                    piece = vec![TokenWithSpan {
                        token: Token::make_keyword("SELECT"),
                        span: Span::empty(),
                    }];
                }
                tokens.extend(piece);
                // keep the whitespace between significant tokens
                if k + 1 < end
                    && let (Some(&i), Some(&n)) = (self.sig.get(k), self.sig.get(k + 1))
                {
                    tokens.extend(self.toks[i + 1..n].iter().cloned());
                }
                k += 1;
            }
            match classify_tokens(tokens, self.nesting) {
                Ok(infos) => {
                    for i in infos {
                        self.info.absorb(i);
                    }
                }
                Err(e) => self.opaque(&format!("statement could not be parsed: {}", e.0)),
            }
        }

        /// A plpgsql expression at `from..end`, evaluated by the server as `SELECT <expr>`.
        fn expression(&mut self, from: usize, end: usize) {
            if from >= end {
                return;
            }
            let mut tokens = vec![
                TokenWithSpan {
                    token: Token::make_keyword("SELECT"),
                    span: Span::empty(),
                },
                space(),
            ];
            tokens.extend(self.slice(from, end));
            match classify_tokens(tokens, self.nesting) {
                Ok(infos) => {
                    for mut i in infos {
                        if i.tables.is_empty() {
                            i.kinds.remove("select");
                        }
                        self.info.absorb(i);
                    }
                }
                Err(_) => self.lexical(from, end),
            }
        }

        /// Tokens that are not SQL on their own: report `name(` as function calls; a query here is opaque.
        fn lexical(&mut self, from: usize, end: usize) {
            for k in from..end {
                let t = self.tok(k);
                if word_in(t, STATEMENT_WORDS) {
                    return self.opaque("SQL inside a plpgsql expression could not be parsed");
                }
                if let Token::Word(w) = t
                    && matches!(self.tok(k + 1), Token::LParen)
                    && !(w.quote_style.is_none()
                        && NOT_FUNCTIONS
                            .iter()
                            .any(|n| w.value.eq_ignore_ascii_case(n)))
                {
                    let mut parts = vec![super::normalize_word(&w.value, w.quote_style.is_some())];
                    let mut j = k;
                    while j >= from + 2 && matches!(self.tok(j - 1), Token::Period) {
                        if let Token::Word(q) = self.tok(j - 2) {
                            parts.insert(
                                0,
                                super::normalize_word(&q.value, q.quote_style.is_some()),
                            );
                            j -= 2;
                        } else {
                            break;
                        }
                    }
                    self.info.functions.insert(parts.join("."));
                }
            }
        }
    }

    fn space() -> TokenWithSpan {
        TokenWithSpan {
            token: Token::Whitespace(Whitespace::Space),
            span: Span::empty(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (sql, kinds (exact, union over statements), tables (exact), functions (must contain), without_where)
    type Case = (
        &'static str,
        &'static [&'static str],
        &'static [&'static str],
        &'static [&'static str],
        bool,
    );

    const CASES: &[Case] = &[
        // plain reads, case and whitespace
        (
            "SELECT id, email FROM customers WHERE id = 42",
            &["select"],
            &["customers"],
            &[],
            false,
        ),
        (
            "select * from Customers",
            &["select"],
            &["customers"],
            &[],
            false,
        ),
        (
            "  SeLeCt\t*\n\nFROM\r\n  customers  ;  ",
            &["select"],
            &["customers"],
            &[],
            false,
        ),
        (
            "SELECT * FROM \"public\".\"Customers\"",
            &["select"],
            &["public.Customers"],
            &[],
            false,
        ),
        (
            "SELECT * FROM PUBLIC.customers",
            &["select"],
            &["public.customers"],
            &[],
            false,
        ),
        (
            "SELECT * FROM \"Weird Name\" w",
            &["select"],
            &["Weird Name"],
            &[],
            false,
        ),
        (
            "SELECT * FROM db.Public.T",
            &["select"],
            &["db.public.t"],
            &[],
            false,
        ),
        // comments in every position
        ("-- c\nDELETE FROM t", &["delete"], &["t"], &[], true),
        ("DELETE /* x */ FROM t", &["delete"], &["t"], &[], true),
        (
            "/* a */ DELETE /* b */ FROM /* c */ t /* d */ WHERE /* e */ id = 1 -- f",
            &["delete"],
            &["t"],
            &[],
            false,
        ),
        (
            "/* nested /* comment */ still */ DELETE FROM t WHERE a = 1",
            &["delete"],
            &["t"],
            &[],
            false,
        ),
        ("SELECT 1 -- ; DELETE FROM t", &["select"], &[], &[], false),
        (
            "SELECT '--' || '/*', $$;DROP TABLE t;$$",
            &["select"],
            &[],
            &[],
            false,
        ),
        // DML
        (
            "INSERT INTO t (a) VALUES (1)",
            &["insert"],
            &["t"],
            &[],
            false,
        ),
        (
            "INSERT INTO t SELECT * FROM u",
            &["insert", "select"],
            &["t", "u"],
            &[],
            false,
        ),
        (
            "INSERT INTO t VALUES (1) ON CONFLICT (a) DO UPDATE SET b = excluded.b",
            &["insert", "update"],
            &["t"],
            &[],
            false,
        ),
        (
            "INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING",
            &["insert"],
            &["t"],
            &[],
            false,
        ),
        (
            "UPDATE t SET a = u.b FROM u WHERE t.id = u.id",
            &["update"],
            &["t", "u"],
            &[],
            false,
        ),
        ("UPDATE t SET a = 1", &["update"], &["t"], &[], true),
        (
            "UPDATE ONLY s.t SET a = f(1) RETURNING *",
            &["update"],
            &["s.t"],
            &["f"],
            true,
        ),
        (
            "DELETE FROM t USING u WHERE t.a = u.a RETURNING t.*",
            &["delete"],
            &["t", "u"],
            &[],
            false,
        ),
        ("DELETE FROM t USING u", &["delete"], &["t", "u"], &[], true),
        (
            "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = s.v WHEN NOT MATCHED THEN INSERT VALUES (s.id)",
            &["insert", "merge", "update"],
            &["s", "t"],
            &[],
            false,
        ),
        (
            "MERGE INTO t USING (SELECT * FROM s) x ON t.id = x.id WHEN MATCHED THEN DELETE",
            &["delete", "merge", "select"],
            &["s", "t"],
            &[],
            false,
        ),
        // CTEs
        (
            "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
            &["delete", "select"],
            &["t"],
            &[],
            true,
        ),
        (
            "WITH x AS (SELECT * FROM a) SELECT * FROM x JOIN b ON true",
            &["select"],
            &["a", "b"],
            &[],
            false,
        ),
        (
            "WITH t AS (SELECT 1) DELETE FROM t WHERE true",
            &["delete", "select"],
            &["t"],
            &[],
            false,
        ),
        (
            "WITH t AS (SELECT * FROM t) SELECT * FROM t",
            &["select"],
            &["t"],
            &[],
            false,
        ),
        (
            "WITH RECURSIVE r AS (SELECT 1 UNION ALL SELECT * FROM r) SELECT * FROM r",
            &["select"],
            &[],
            &[],
            false,
        ),
        (
            "WITH a AS (SELECT * FROM b), b AS (SELECT * FROM a) SELECT * FROM b",
            &["select"],
            &["b"],
            &[],
            false,
        ),
        (
            "SELECT * FROM (WITH x AS (SELECT 1) SELECT * FROM x) s, x",
            &["select"],
            &["x"],
            &[],
            false,
        ),
        (
            "WITH u AS (UPDATE t SET a = 1 RETURNING a) INSERT INTO log SELECT * FROM u",
            &["insert", "select", "update"],
            &["log", "t"],
            &[],
            true,
        ),
        (
            "WITH p AS (SELECT 1) SELECT * FROM public.p",
            &["select"],
            &["public.p"],
            &[],
            false,
        ),
        // subqueries, joins, nested functions
        (
            "SELECT a.x FROM a JOIN b ON a.id = b.id LEFT JOIN c USING (id) WHERE a.y IN (SELECT y FROM d WHERE EXISTS (SELECT 1 FROM e))",
            &["select"],
            &["a", "b", "c", "d", "e"],
            &[],
            false,
        ),
        (
            "SELECT CASE WHEN f(a) THEN g(b) ELSE h(c) END FROM t WHERE i(d) > (SELECT max(x) FROM u) ORDER BY k(lower(e))",
            &["select"],
            &["t", "u"],
            &["f", "g", "h", "i", "k", "lower", "max"],
            false,
        ),
        (
            "SELECT * FROM a, LATERAL (SELECT * FROM b WHERE b.x = a.x) s",
            &["select"],
            &["a", "b"],
            &[],
            false,
        ),
        (
            "SELECT * FROM t1 UNION SELECT * FROM t2 EXCEPT SELECT * FROM t3",
            &["select"],
            &["t1", "t2", "t3"],
            &[],
            false,
        ),
        // dangerous functions
        (
            "SELECT pg_read_file('/etc/passwd')",
            &["select"],
            &[],
            &["pg_read_file"],
            false,
        ),
        (
            "SELECT pg_catalog.pg_read_file('/etc/passwd')",
            &["select"],
            &[],
            &["pg_catalog.pg_read_file"],
            false,
        ),
        (
            "SELECT * FROM pg_ls_dir('.')",
            &["select"],
            &[],
            &["pg_ls_dir"],
            false,
        ),
        (
            "SELECT lo_export(123, '/tmp/x')",
            &["select"],
            &[],
            &["lo_export"],
            false,
        ),
        (
            "SELECT dblink('conn', 'DELETE FROM t')",
            &["delete", "select"],
            &["t"],
            &["dblink"],
            true,
        ),
        (
            "SELECT * FROM dblink('dbname=x', 'SELECT email FROM customers') AS r(email text)",
            &["select"],
            &["customers"],
            &["dblink"],
            false,
        ),
        (
            "SELECT set_config('search_path', 'x', false)",
            &["select"],
            &[],
            &["set_config"],
            false,
        ),
        (
            "SELECT nextval('public.Seq')",
            &["select"],
            &["public.seq"],
            &["nextval"],
            false,
        ),
        (
            "SELECT 'customers'::regclass",
            &["select"],
            &["customers"],
            &[],
            false,
        ),
        (
            "SELECT * FROM generate_series(1, 3) g, unnest(ARRAY[1]) u",
            &["select"],
            &[],
            &["generate_series", "unnest"],
            false,
        ),
        // multi-statement strings (union of kinds here; per-statement checks below)
        (
            "SELECT 1; DELETE FROM t; ;",
            &["delete", "select"],
            &["t"],
            &[],
            true,
        ),
        // PREPARE / EXPLAIN
        (
            "PREPARE p AS DELETE FROM t",
            &["delete", "prepare"],
            &["t"],
            &[],
            true,
        ),
        (
            "PREPARE q (int) AS SELECT * FROM t WHERE id = $1",
            &["prepare", "select"],
            &["t"],
            &[],
            false,
        ),
        (
            "EXPLAIN ANALYZE DELETE FROM t",
            &["delete", "explain"],
            &["t"],
            &[],
            true,
        ),
        (
            "EXPLAIN (ANALYZE) DELETE FROM t",
            &["delete", "explain"],
            &["t"],
            &[],
            true,
        ),
        (
            "EXPLAIN (ANALYZE true, BUFFERS) DELETE FROM t",
            &["delete", "explain"],
            &["t"],
            &[],
            true,
        ),
        (
            "EXPLAIN (FORMAT JSON, ANALYZE) UPDATE t SET a = 1",
            &["explain", "update"],
            &["t"],
            &[],
            true,
        ),
        (
            "EXPLAIN (ANALYZE off) DELETE FROM t",
            &["explain"],
            &["t"],
            &[],
            false,
        ),
        ("EXPLAIN DELETE FROM t", &["explain"], &["t"], &[], false),
        (
            "EXPLAIN SELECT f(x) FROM t",
            &["explain"],
            &["t"],
            &["f"],
            false,
        ),
        // code bodies
        (
            "DO $$ BEGIN DELETE FROM t; END $$",
            &["delete", "do"],
            &["t"],
            &[],
            true,
        ),
        (
            "DO LANGUAGE plpgsql 'BEGIN PERFORM pg_sleep(1); END'",
            &["do", "select"],
            &[],
            &["pg_sleep"],
            false,
        ),
        (
            "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $$ DELETE FROM t $$",
            &["create", "create_function", "delete"],
            &["t"],
            &[],
            true,
        ),
        (
            "CREATE OR REPLACE FUNCTION f(a int DEFAULT g()) RETURNS void AS $$ BEGIN UPDATE t SET x = h(a) WHERE id = a; END $$ LANGUAGE plpgsql",
            &["create", "create_function", "update"],
            &["t"],
            &["g", "h"],
            false,
        ),
        (
            "CREATE PROCEDURE p() LANGUAGE sql AS $$ TRUNCATE t $$",
            &["create", "create_function", "truncate"],
            &["t"],
            &[],
            false,
        ),
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT count(*) FROM t; END",
            &["create", "create_function", "select"],
            &["t"],
            &["count"],
            false,
        ),
        // COPY
        (
            "COPY t TO PROGRAM 'id'",
            &["copy", "copy_program", "select"],
            &["t"],
            &[],
            false,
        ),
        (
            "COPY t FROM PROGRAM 'id'",
            &["copy", "copy_program", "insert"],
            &["t"],
            &[],
            false,
        ),
        (
            "COPY t FROM '/etc/passwd'",
            &["copy", "insert"],
            &["t"],
            &["pg_server_file"],
            false,
        ),
        (
            "COPY t TO '/tmp/out'",
            &["copy", "select"],
            &["t"],
            &["pg_server_file"],
            false,
        ),
        (
            "COPY t (a, b) FROM STDIN WITH (FORMAT csv)",
            &["copy", "insert"],
            &["t"],
            &[],
            false,
        ),
        (
            "COPY (SELECT * FROM customers WHERE f(x)) TO STDOUT",
            &["copy", "select"],
            &["customers"],
            &["f"],
            false,
        ),
        (
            "COPY (DELETE FROM t RETURNING *) TO STDOUT",
            &["copy", "delete", "select"],
            &["t"],
            &[],
            true,
        ),
        // settings
        ("SET search_path = evil, public", &["set"], &[], &[], false),
        (
            "SET LOCAL statement_timeout TO 0",
            &["set"],
            &[],
            &[],
            false,
        ),
        ("RESET ALL", &["set"], &[], &[], false),
        ("SHOW search_path", &["show"], &[], &[], false),
        // DCL / DDL
        (
            "GRANT SELECT ON customers TO bob",
            &["grant"],
            &["customers"],
            &[],
            false,
        ),
        (
            "GRANT SELECT, UPDATE ON TABLE a, s.b TO bob WITH GRANT OPTION",
            &["grant"],
            &["a", "s.b"],
            &[],
            false,
        ),
        (
            "GRANT ALL ON ALL TABLES IN SCHEMA public TO bob",
            &["grant"],
            &["public.*"],
            &[],
            false,
        ),
        ("GRANT admin TO bob", &["grant"], &[], &[], false),
        (
            "REVOKE SELECT ON customers FROM bob",
            &["revoke"],
            &["customers"],
            &[],
            false,
        ),
        ("TRUNCATE a, b", &["truncate"], &["a", "b"], &[], false),
        (
            "TRUNCATE TABLE ONLY s.a RESTART IDENTITY CASCADE",
            &["truncate"],
            &["s.a"],
            &[],
            false,
        ),
        (
            "DROP TABLE IF EXISTS x CASCADE",
            &["drop"],
            &["x"],
            &[],
            false,
        ),
        ("DROP VIEW v, s.w", &["drop"], &["s.w", "v"], &[], false),
        ("DROP SCHEMA s CASCADE", &["drop"], &["s.*"], &[], false),
        (
            "ALTER TABLE x RENAME TO y",
            &["alter", "rename"],
            &["x", "y"],
            &[],
            false,
        ),
        (
            "ALTER TABLE s.x RENAME TO y",
            &["alter", "rename"],
            &["s.x", "s.y", "y"],
            &[],
            false,
        ),
        (
            "ALTER TABLE x RENAME COLUMN a TO b",
            &["alter", "rename"],
            &["x"],
            &[],
            false,
        ),
        (
            "ALTER TABLE x ADD COLUMN c int DEFAULT f() REFERENCES other(id)",
            &["alter"],
            &["other", "x"],
            &["f"],
            false,
        ),
        (
            "CREATE TABLE n (id int REFERENCES p(id), v text DEFAULT g()) ",
            &["create"],
            &["n", "p"],
            &["g"],
            false,
        ),
        (
            "CREATE TABLE n AS SELECT * FROM t",
            &["create", "select"],
            &["n", "t"],
            &[],
            false,
        ),
        (
            "SELECT * INTO newt FROM t",
            &["create", "select"],
            &["newt", "t"],
            &[],
            false,
        ),
        (
            "CREATE VIEW v AS SELECT secret FROM t",
            &["create", "select"],
            &["t", "v"],
            &[],
            false,
        ),
        (
            "CREATE INDEX i ON t (lower(a))",
            &["create"],
            &["t"],
            &["lower"],
            false,
        ),
        (
            "CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION trg()",
            &["create"],
            &["t"],
            &["trg"],
            false,
        ),
        (
            "COMMENT ON TABLE t IS 'x'",
            &["comment"],
            &["t"],
            &[],
            false,
        ),
        (
            "CREATE ROLE r LOGIN PASSWORD 'x'",
            &["create", "create_role"],
            &[],
            &[],
            false,
        ),
        ("CREATE USER u", &["create", "create_role"], &[], &[], false),
        (
            "ALTER ROLE r SUPERUSER",
            &["alter", "alter_role"],
            &[],
            &[],
            false,
        ),
        (
            "ALTER ROLE r RENAME TO s",
            &["alter", "alter_role", "rename"],
            &[],
            &[],
            false,
        ),
        (
            "DROP ROLE IF EXISTS r",
            &["drop", "drop_role"],
            &[],
            &[],
            false,
        ),
        (
            "CREATE EXTENSION IF NOT EXISTS dblink",
            &["create", "create_extension"],
            &[],
            &[],
            false,
        ),
        ("CALL proc(1, f(2))", &["call"], &[], &["f", "proc"], false),
        ("CALL s.proc()", &["call"], &[], &["s.proc"], false),
        // other utility statements
        ("LOCK TABLE t", &["lock"], &["t"], &[], false),
        (
            "LOCK a, b IN ACCESS EXCLUSIVE MODE NOWAIT",
            &["lock"],
            &["a", "b"],
            &[],
            false,
        ),
        ("VACUUM", &["vacuum"], &[], &[], false),
        ("VACUUM FULL t", &["vacuum"], &["t"], &[], false),
        ("ANALYZE t", &["analyze"], &["t"], &[], false),
        ("BEGIN", &["transaction"], &[], &[], false),
        (
            "START TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            &["transaction"],
            &[],
            &[],
            false,
        ),
        ("COMMIT", &["transaction"], &[], &[], false),
        ("ROLLBACK TO SAVEPOINT s", &["transaction"], &[], &[], false),
        (
            "PREPARE TRANSACTION 'tx1'",
            &["transaction"],
            &[],
            &[],
            false,
        ),
        ("COMMIT PREPARED 'tx1'", &["transaction"], &[], &[], false),
        ("LISTEN ch", &["listen"], &[], &[], false),
        ("NOTIFY ch, 'x'", &["notify"], &[], &[], false),
        ("DISCARD ALL", &["discard"], &[], &[], false),
        (
            "DECLARE c CURSOR FOR SELECT * FROM t",
            &["other", "select"],
            &["t"],
            &[],
            false,
        ),
        ("CHECKPOINT", &["other"], &[], &[], false),
    ];

    fn union(infos: &[StatementInfo]) -> StatementInfo {
        let mut u = StatementInfo::default();
        for i in infos {
            u.kinds.extend(i.kinds.iter().copied());
            u.tables.extend(i.tables.iter().cloned());
            u.functions.extend(i.functions.iter().cloned());
            u.columns.extend(i.columns.iter().cloned());
            u.without_where |= i.without_where;
        }
        u
    }

    fn one(sql: &str) -> StatementInfo {
        let v = classify(sql).unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        assert_eq!(v.len(), 1, "{sql}: {v:?}");
        v.into_iter().next().unwrap()
    }

    fn set<T: Ord + Clone>(items: &[T]) -> BTreeSet<T> {
        items.iter().cloned().collect()
    }

    #[test]
    fn table_driven_cases() {
        assert!(CASES.len() >= 60);
        let mut failures = Vec::new();
        for &(sql, kinds, tables, functions, without_where) in CASES {
            let infos = match classify(sql) {
                Ok(v) => v,
                Err(e) => {
                    failures.push(format!("{sql}: unexpected Err {e:?}"));
                    continue;
                }
            };
            let u = union(&infos);
            let want_tables: BTreeSet<String> = tables.iter().map(|s| s.to_string()).collect();
            if u.kinds != set(kinds) {
                failures.push(format!("{sql}: kinds {:?} want {kinds:?}", u.kinds));
            }
            if u.tables != want_tables {
                failures.push(format!("{sql}: tables {:?} want {tables:?}", u.tables));
            }
            for f in functions {
                if !u.functions.contains(*f) {
                    failures.push(format!("{sql}: functions {:?} lack {f}", u.functions));
                }
            }
            if u.without_where != without_where {
                failures.push(format!(
                    "{sql}: without_where {} want {without_where}",
                    u.without_where
                ));
            }
            for i in &infos {
                if let Some(o) = &i.opaque {
                    failures.push(format!("{sql}: unexpectedly opaque: {o}"));
                }
                for k in &i.kinds {
                    assert!(KINDS.contains(k), "{k} not in KINDS");
                }
            }
        }
        assert!(
            failures.is_empty(),
            "{} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }

    #[test]
    fn unparseable_and_empty() {
        for sql in [
            "",
            "   ",
            ";",
            ";;; ;",
            "-- only a comment",
            "/* c */ ; -- x\n;",
        ] {
            assert_eq!(classify(sql), Ok(vec![]), "{sql:?}");
        }
        for sql in [
            "DEL/**/ETE FROM t",
            "SELEC * FROM t",
            "SELECT * FROM",
            "SELECT 1; DELETE FROM t WHERE",
            "SELECT 'unterminated",
            "SELECT 1 /* unterminated",
            "DO",
            "DO 42",
            "DO $$ x $$ $$ y $$",
            "PREPARE TRANSACTION",
            "COPY t FROM STDIN;\n1\t2\n\\.\n",
            "COPY t FROM STDIN;\nDELETE FROM t;",
            "SELECT $1a$, (SELECT email FROM customers) AS x, $1a$",
            "SELECT X'1\\'; DELETE FROM t; --'",
            "SELECT B'1'', 1; DELETE FROM t; --'",
        ] {
            let r = classify(sql);
            assert!(r.is_err(), "{sql:?} should be Err, got {r:?}");
        }
        let Err(Unparsed(msg)) = classify("SELEC 1") else {
            panic!()
        };
        assert!(msg.contains("sql parser error"), "{msg}");
    }

    /// Valid PostgreSQL that sqlparser 0.64 cannot parse: refused, which callers treat as unparseable.
    #[test]
    fn known_sqlparser_gaps_are_errors() {
        for sql in [
            "VACUUM (FULL, ANALYZE) t",
            "VACUUM a, b",
            "ANALYZE a, b",
            "ANALYZE VERBOSE t",
            "SELECT * FROM ROWS FROM (f(1), g(2))",
            "CLUSTER t",
            "REINDEX TABLE t",
            "ALTER SYSTEM SET work_mem = '1GB'",
            "ALTER SEQUENCE s RESTART",
            "ALTER DATABASE d SET x = 1",
            "ALTER EXTENSION x UPDATE",
            "TABLE t",
            "DELETE FROM t WHERE CURRENT OF c",
            "COPY t FROM STDIN WHERE a > 1",
            "SELECT * FROM U&\"d\\0061t\"",
            "SELECT 'a'\n'b'",
            "SELECT * FROM t FOR NO KEY UPDATE",
            "SELECT COLLATION FOR ('x')",
            "SELECT xmlelement(name a, 'x')",
            "SELECT * FROM json_table(x, '$' COLUMNS (a int))",
            "IMPORT FOREIGN SCHEMA x FROM SERVER s INTO y",
            "SECURITY LABEL ON TABLE t IS 'x'",
            "DROP OWNED BY bob",
            "REASSIGN OWNED BY a TO b",
            "MOVE NEXT FROM c",
            "CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION f()",
            "CREATE CAST (int AS text) WITH FUNCTION f(int)",
            "CREATE PUBLICATION p FOR ALL TABLES",
            // refused on purpose: sqlparser ends the statement at END, PostgreSQL reads an alias
            "SELECT 1 END",
            "SELECT 1 END; DROP TABLE t",
        ] {
            let r = classify(sql);
            assert!(
                r.is_err(),
                "{sql:?} now parses ({r:?}): classify it and update the docs"
            );
        }
    }

    #[test]
    fn multi_statement_strings() {
        let v = classify("SELECT * FROM a; DELETE FROM b WHERE x = 1;UPDATE c SET y = 2").unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].kinds, set(&["select"]));
        assert_eq!(v[0].tables, set(&["a".to_string()]));
        assert_eq!(v[1].kinds, set(&["delete"]));
        assert!(!v[1].without_where);
        assert_eq!(v[2].kinds, set(&["update"]));
        assert!(v[2].without_where);
        // one bad statement spoils the whole string
        assert!(classify("SELECT 1; SELEC 2; SELECT 3").is_err());
        // a stray END after a statement is an error, not a silent stop
        assert!(classify("SELECT 1 END DROP TABLE t").is_err());
    }

    #[test]
    fn prepare_execute_deallocate() {
        let v = classify("PREPARE p AS DELETE FROM t; EXECUTE p; EXECUTE p(1, 'a'); DEALLOCATE p; DEALLOCATE ALL; DEALLOCATE PREPARE \"Q\"")
            .unwrap();
        assert_eq!(v[0].prepares.as_deref(), Some("p"));
        assert!(
            v[0].kinds.contains("delete") && v[0].kinds.contains("prepare") && v[0].without_where
        );
        assert_eq!(v[1].executes.as_deref(), Some("p"));
        assert_eq!(v[1].kinds, set(&["execute"]));
        assert_eq!(v[1].opaque, None);
        assert_eq!(v[2].executes.as_deref(), Some("p"));
        assert_eq!(v[3].deallocates, Some(Some("p".to_string())));
        assert_eq!(v[3].kinds, set(&["deallocate"]));
        assert_eq!(v[4].deallocates, Some(None));
        assert_eq!(v[5].deallocates, Some(Some("Q".to_string())));
        let e = one("EXPLAIN ANALYZE EXECUTE p");
        assert_eq!(e.executes.as_deref(), Some("p"));
        // PostgreSQL has no EXECUTE 'sql' / EXECUTE IMMEDIATE at top level: opaque, no name.
        for sql in [
            "EXECUTE 'DROP TABLE t'",
            "EXECUTE IMMEDIATE 'DROP TABLE t'",
            "EXECUTE ('x')",
            "EXECUTE p USING 1",
        ] {
            let i = one(sql);
            assert!(i.opaque.is_some() && i.executes.is_none(), "{sql}: {i:?}");
        }
    }

    #[test]
    fn code_bodies() {
        let i = one("DO $$ BEGIN EXECUTE 'DROP TABLE t'; END $$");
        assert!(i.kinds.contains("do"));
        assert!(i.opaque.as_deref().unwrap().contains("EXECUTE"), "{i:?}");

        let i = one("DO LANGUAGE plpython3u $$ import os $$");
        assert!(i.opaque.is_some());
        let i = one("CREATE FUNCTION f() RETURNS int LANGUAGE c AS 'lib', 'sym'");
        assert!(i.opaque.is_some());
        let i = one("CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $$ SELEC 1 $$");
        assert!(i.opaque.is_some());
        let i = one("DO $$ BEGIN RAISE NOTICE '%', (SELECT email FROM customers LIMIT 1); END $$");
        assert!(i.opaque.is_some(), "{i:?}");

        let body = "DO $$
DECLARE
  v int := (SELECT count(*) FROM secrets);
  c CURSOR FOR SELECT email FROM customers;
  w text DEFAULT lower('X');
BEGIN
  IF pg_read_file('/etc/passwd') IS NOT NULL THEN
    UPDATE t SET a = 1;
  ELSIF v > 2 THEN
    DELETE FROM u WHERE id = 1;
  ELSE
    PERFORM lo_export(1, '/tmp/x');
  END IF;
  FOR r IN SELECT * FROM orders LOOP
    INSERT INTO audit VALUES (r.id);
  END LOOP;
  FOR i IN 1..10 LOOP v := v + i; END LOOP;
  SELECT email INTO STRICT w FROM accounts WHERE id = 1;
  INSERT INTO log VALUES (1) RETURNING id INTO v;
  CASE v WHEN 1 THEN TRUNCATE t4; ELSE NULL; END CASE;
  <<blk>>
  BEGIN
    RAISE NOTICE 'x %', row_to_json(r);
  EXCEPTION WHEN others THEN
    COMMIT;
  END;
  RETURN;
END $$";
        let i = one(body);
        assert_eq!(i.opaque, None, "{i:?}");
        assert_eq!(
            i.kinds,
            set(&[
                "delete",
                "do",
                "insert",
                "select",
                "transaction",
                "truncate",
                "update"
            ])
        );
        for t in [
            "accounts",
            "audit",
            "customers",
            "log",
            "orders",
            "secrets",
            "t",
            "t4",
            "u",
        ] {
            assert!(i.tables.contains(t), "{t}: {:?}", i.tables);
        }
        for f in ["count", "lo_export", "lower", "pg_read_file", "row_to_json"] {
            assert!(i.functions.contains(f), "{f}: {:?}", i.functions);
        }
        assert!(i.without_where);

        // malformed bodies are read conservatively
        let i = one("DO $$ DECLARE x int; DELETE FROM t; END $$");
        assert!(i.kinds.contains("delete"));
        let i = one("DO $$ DECLARE x int := (1; DROP TABLE t; END $$");
        assert!(i.opaque.is_some());
        let i = one("DO $$ BEGIN x := 1 +; END $$");
        assert_eq!(i.kinds, set(&["do"]));
        // plpgsql assignments are `SELECT <expr>`, which may have a FROM clause
        let i = one("DO $$ DECLARE x numeric(10,2) DEFAULT 0; BEGIN x := count(*) FROM t; END $$");
        assert!(
            i.tables.contains("t") && i.functions.contains("count"),
            "{i:?}"
        );
        assert!(!i.functions.contains("numeric"));
        let i = one("DO $$ BEGIN FOR r IN EXECUTE 'select 1' LOOP END LOOP; END $$");
        assert!(i.opaque.is_some());

        let i = one("DO $$ BEGIN DO $x$ BEGIN DROP TABLE t; END $x$; END $$");
        assert!(i.kinds.contains("drop") && i.tables.contains("t"));
        // nesting is bounded
        let mut sql = "SELECT 1".to_string();
        for n in 0..10 {
            sql = format!("DO $t{n}$ BEGIN {sql}; END $t{n}$");
        }
        assert!(one(&sql).opaque.is_some());
    }

    #[test]
    fn columns_and_whole_rows() {
        assert_eq!(
            one("SELECT lower(c.email) FROM customers c").columns,
            set(&["email".to_string()])
        );
        assert!(one("SELECT * FROM customers").columns.contains("*"));
        assert!(one("SELECT c.* FROM customers c").columns.contains("*"));
        assert!(
            one("SELECT row_to_json(c.*) FROM customers c")
                .columns
                .contains(ANY_COLUMN)
        );
        assert!(
            one("SELECT c FROM customers c")
                .columns
                .contains(ANY_COLUMN)
        );
        assert!(
            one("SELECT to_json(customers) FROM customers")
                .columns
                .contains(ANY_COLUMN)
        );
        assert!(one("COPY customers TO STDOUT").columns.contains("*"));
        assert!(
            one("DELETE FROM customers WHERE id = 1 RETURNING *")
                .columns
                .contains("*")
        );
        assert!(!one("SELECT count(*) FROM customers").columns.contains("*"));
        assert_eq!(
            one("SELECT c.tags[1] FROM customers c").columns,
            set(&["tags".to_string()])
        );
        assert!(
            one("SELECT c[1] FROM customers c")
                .columns
                .contains(ANY_COLUMN)
        );
        assert!(
            one("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE RETURNING *")
                .columns
                .contains("*")
        );
        assert_eq!(
            one("SELECT id FROM customers WHERE name = 'x' ORDER BY created").columns,
            set(&["created".to_string(), "id".to_string(), "name".to_string()])
        );
    }

    #[test]
    fn lexical_traps_and_opaque_settings() {
        assert!(
            one("SET standard_conforming_strings = off")
                .opaque
                .is_some()
        );
        assert!(
            one("SELECT set_config('standard_conforming_strings', 'off', false)")
                .opaque
                .is_some()
        );
        assert!(
            one("SELECT set_config(x, 'off', false) FROM t")
                .opaque
                .is_some()
        );
        assert!(one("SELECT dblink('conn', some_var)").opaque.is_some());
        assert!(one("LOAD 'plugin'").opaque.is_some());
        // backslash is not an escape in standard strings, so this is two statements
        let v = classify("SELECT 'a\\'; DELETE FROM t; --'").unwrap();
        assert_eq!(v.len(), 2);
        assert!(v[1].kinds.contains("delete"));
        // but it is in E'' strings
        assert_eq!(
            classify("SELECT E'a\\'; DELETE FROM t; --'").unwrap().len(),
            1
        );
        // identifiers are truncated like the server does
        let long = format!("SELECT * FROM {}", "a".repeat(80));
        assert_eq!(one(&long).tables, set(&["a".repeat(63)]));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let n = 10_000;
        let sql = format!("SELECT {}1{}", "(".repeat(n), ")".repeat(n));
        assert!(classify(&sql).is_err());
        let sql = format!("SELECT {}1{}", "(SELECT ".repeat(n), ")".repeat(n));
        assert!(classify(&sql).is_err());
        let sql = format!("SELECT {}1{}", "ARRAY[".repeat(n), "]".repeat(n));
        assert!(classify(&sql).is_err());
        // a reasonable depth still parses
        let sql = format!("SELECT {}1{}", "(".repeat(100), ")".repeat(100));
        assert!(classify(&sql).is_ok());
        let sql = format!(
            "SELECT * FROM t WHERE a IN {}1{}",
            "(SELECT ".repeat(30),
            ")".repeat(30)
        );
        assert!(classify(&sql).is_ok());
    }

    #[test]
    fn long_operator_chains_do_not_overflow() {
        // Each shape builds a left-deep tree; below the inline bound it runs on this (2 MiB test) thread,
        // above it on a helper thread, and far above it is refused.
        let shapes: [(&str, &str, &str); 6] = [
            ("SELECT 1", " OR 1", ""),
            ("SELECT 'a'", " || 'a'", ""),
            ("SELECT 1", "::int", ""),
            ("SELECT a", "[1]", " FROM t"),
            ("SELECT 1", " UNION SELECT 1, 2", ""),
            ("SELECT * FROM t WHERE a = 1", " AND b IS NOT NULL", ""),
        ];
        for (head, link, tail) in shapes {
            for n in [INLINE_COMPLEXITY / 4, INLINE_COMPLEXITY / 2, 12_000] {
                let sql = format!("{head}{}{tail}", link.repeat(n));
                let r = classify(&sql);
                assert!(
                    matches!(&r, Ok(v) if v.len() == 1),
                    "{head}{link} x{n}: {r:?}"
                );
            }
        }
        // Deeper than a 2 MiB stack could drop in a debug build: handled on the helper thread.
        let sql = format!("SELECT 1{}", " OR 1".repeat(30_000));
        assert!(matches!(classify(&sql), Ok(v) if v.len() == 1));
        let sql = format!("SELECT 1{}", "+1".repeat(400_000));
        let Err(Unparsed(msg)) = classify(&sql) else {
            panic!("should be refused")
        };
        assert!(msg.contains("too complex"), "{msg}");
    }

    #[test]
    fn nested_bodies_fit_a_small_stack() {
        // The deepest readable nesting of DO blocks, with an operator chain just under the inline bound in the
        // innermost one, on a thread with the usual 2 MiB stack (debug build).
        let mut sql = format!("PERFORM f(1){}", " OR 1".repeat(INLINE_COMPLEXITY / 2 - 10));
        for n in 0..MAX_BODY_NESTING {
            sql = format!("DO $t{n}$ BEGIN {sql}; END $t{n}$");
        }
        let info = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || classify(&sql))
            .expect("spawn")
            .join()
            .expect("no stack overflow")
            .expect("parses");
        assert_eq!(info[0].opaque, None);
        assert!(info[0].kinds.contains("do") && info[0].kinds.contains("select"));
        assert!(info[0].functions.contains("f"));
    }

    #[test]
    fn one_mebibyte_of_short_statements() {
        let sql = "SELECT 1;".repeat((1 << 20) / 9);
        let t = std::time::Instant::now();
        let v = classify(&sql).unwrap();
        assert_eq!(v.len(), (1 << 20) / 9);
        // generous: debug builds are ~10x slower than release
        assert!(t.elapsed().as_secs() < 30, "{:?}", t.elapsed());
    }

    #[test]
    fn no_quadratic_blowups() {
        let many_statements = "SELECT rename FROM t;".repeat(20_000);
        let many_ctes = format!(
            "WITH {} SELECT 1 FROM {}",
            (0..5_000)
                .map(|i| format!("c{i} AS (SELECT 1)"))
                .collect::<Vec<_>>()
                .join(", "),
            (0..5_000)
                .map(|i| format!("c{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for sql in [many_statements, many_ctes] {
            let t = std::time::Instant::now();
            let v = classify(&sql).unwrap();
            assert!(v.iter().all(|i| i.tables.len() <= 1));
            assert!(t.elapsed().as_secs() < 10, "{:?}", t.elapsed());
        }
    }

    #[test]
    fn pathological_nesting_is_fast() {
        let shapes = [
            format!("SELECT {}1{}", "((".repeat(60), "))".repeat(60)),
            format!("SELECT * FROM {}t{}", "(".repeat(100), ")".repeat(100)),
            format!("SELECT {}", "(SELECT (".repeat(40)),
            format!(
                "SELECT * FROM t WHERE {}",
                "a IN (SELECT b FROM c WHERE ".repeat(60)
            ),
            format!("SELECT {}", "CASE WHEN (".repeat(60)),
        ];
        for sql in shapes {
            let t = std::time::Instant::now();
            let _ = classify(&sql);
            assert!(
                t.elapsed().as_secs() < 5,
                "{} took {:?}",
                &sql[..40],
                t.elapsed()
            );
        }
    }

    /// Tiny xorshift generator: deterministic, no dependencies.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    #[test]
    fn fuzz_mutated_corpus_never_panics() {
        const PIECES: &[&str] = &[
            "(",
            ")",
            "'",
            "\"",
            "$$",
            "$a$",
            "$1",
            ";",
            "--",
            "/*",
            "*/",
            "\n",
            " ",
            "\\",
            "E'",
            "U&'",
            "X'",
            "B'",
            "::",
            ",",
            ".",
            "[",
            "]",
            "*",
            "SELECT ",
            "DO ",
            "WITH x AS (",
            "DELETE FROM t",
            " LANGUAGE ",
            "BEGIN ",
            "END",
            " INTO ",
            "EXECUTE ",
            "PERFORM ",
            "UNION ",
            "COPY t FROM STDIN;\n",
            "\\.\n",
            "ä",
            "\u{0}",
            "IF ",
            " THEN ",
            " LOOP ",
            ":=",
            "<<",
            ">>",
            "#",
            "CASE ",
            "RETURN QUERY ",
            "ANALYZE ",
        ];
        let mut corpus: Vec<String> = CASES.iter().map(|c| c.0.to_string()).collect();
        corpus.push(
            "DO $$ DECLARE c CURSOR FOR SELECT 1; BEGIN IF a THEN x := f(1); END IF; END $$".into(),
        );
        corpus.push("CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS 'BEGIN FOR r IN SELECT 1 LOOP END LOOP; END'".into());
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for round in 0..4000 {
            let base = &corpus[rng.below(corpus.len())];
            let mut chars: Vec<char> = base.chars().collect();
            for _ in 0..=rng.below(4) {
                let at = rng.below(chars.len() + 1);
                match rng.below(5) {
                    0 => {
                        let piece = PIECES[rng.below(PIECES.len())];
                        chars.splice(at..at, piece.chars());
                    }
                    1 if !chars.is_empty() => {
                        let end = (at + 1 + rng.below(8)).min(chars.len());
                        chars.drain(at.min(chars.len())..end);
                    }
                    2 => {
                        let other: Vec<char> = corpus[rng.below(corpus.len())].chars().collect();
                        let from = rng.below(other.len());
                        let to = (from + rng.below(40)).min(other.len());
                        chars.splice(at..at, other[from..to].iter().copied());
                    }
                    3 if !chars.is_empty() => {
                        let i = at.min(chars.len() - 1);
                        chars[i] = char::from(b' ' + rng.below(95) as u8);
                    }
                    _ => {
                        let end = (at + rng.below(20)).min(chars.len());
                        let copy: Vec<char> = chars[at..end].to_vec();
                        chars.splice(at..at, copy);
                    }
                }
            }
            let sql: String = chars.into_iter().collect();
            if let Ok(infos) = classify(&sql) {
                for i in &infos {
                    for k in &i.kinds {
                        assert!(KINDS.contains(k), "round {round}: kind {k} from {sql:?}");
                    }
                }
            }
        }
    }
}
