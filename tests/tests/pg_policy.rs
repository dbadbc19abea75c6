//! SQL policy through the real gateway against a real PostgreSQL: a
//! table-driven adversarial suite.
//!
//! One cluster, one gateway, one fixture schema created directly. Every
//! case is a SQL string, a psql script (several `-c`, one session) or a raw
//! protocol exchange; it names the errors the client must see (in order)
//! and the database state afterwards, as a fingerprint of the whole fixture
//! read directly from PostgreSQL: a blocked DELETE deleted nothing, an
//! allowed UPDATE changed exactly one row. The fixture is rebuilt after any
//! case that changed it, so cases are independent. At the end, every
//! case's recording must hold one `blocked` event per blocked statement,
//! naming the rule.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use common::{
    RawPg, World, bind, execute, frame, kind_of, list_sessions, parse, query, session_id,
    show_session, sync,
};
use gatehouse_tests::{OutputExt, PolicySpec};
use serde_json::Value;

/// The policy under test. First match wins, so the order matters: the
/// `allow` rule for `scratch` comes before `no-ddl`, table rules come
/// before the generic `mass-update` rule. `audit.*` matches every
/// *unqualified* table too (the session's search_path could resolve it
/// into `audit`), so the allowed writes below name `public.` explicitly
/// and one case checks the over-match.
const RULES: &str = r#"
[[policies.default.rules]]
name = "scratch-truncate"
action = "allow"
statements = ["truncate"]
tables = ["public.scratch"]

[[policies.default.rules]]
name = "no-ddl"
action = "block"
statements = ["drop", "truncate", "alter", "rename"]
message = "schema changes go through migrations"

[[policies.default.rules]]
name = "no-program"
action = "block"
statements = ["copy_program"]

[[policies.default.rules]]
name = "no-grant"
action = "block"
statements = ["grant", "revoke"]

[[policies.default.rules]]
name = "no-customer-delete"
action = "block"
statements = ["delete"]
tables = ["public.customers"]
message = "customers are never deleted"

[[policies.default.rules]]
name = "secrets"
action = "block"
tables = ["public.secrets"]

[[policies.default.rules]]
name = "payroll"
action = "block"
tables = ["payroll"]

[[policies.default.rules]]
name = "mass-update"
action = "block"
statements = ["update", "delete"]
without_where = true
message = "UPDATE and DELETE need a WHERE clause"

[[policies.default.rules]]
name = "audit"
action = "block"
statements = ["insert", "update", "delete"]
tables = ["audit.*"]
message = "the audit log is append-only through the application"

[[policies.default.rules]]
name = "file-access"
action = "block"
functions = ["pg_read_file", "pg_read_binary_file", "pg_ls_dir", "lo_import", "lo_export", "dblink*"]

[[policies.default.rules]]
name = "purge"
action = "block"
functions = ["purge"]
message = "purge() runs from the maintenance job only"
"#;

/// What each configured rule says to the client (`None`: the default
/// message).
const RULE_MESSAGES: &[(&str, Option<&str>)] = &[
    ("no-ddl", Some("schema changes go through migrations")),
    ("no-customer-delete", Some("customers are never deleted")),
    ("secrets", None),
    (
        "audit",
        Some("the audit log is append-only through the application"),
    ),
    ("payroll", None),
    ("mass-update", Some("UPDATE and DELETE need a WHERE clause")),
    ("file-access", None),
    ("purge", Some("purge() runs from the maintenance job only")),
    ("no-program", None),
    ("no-grant", None),
];

const DEFAULT_BLOCK_MESSAGE: &str = "statement not allowed";

/// Helpers outside the schemas under test, created once: they survive the
/// fixture resets and read a table even when a case dropped or renamed it.
const FIXTURE_HELPERS: &str = r#"
CREATE SCHEMA fixture;
CREATE FUNCTION fixture.q(rel text, expr text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE out text;
BEGIN
  IF to_regclass(rel) IS NULL THEN RETURN 'missing'; END IF;
  EXECUTE format('SELECT (%s)::text FROM %s', expr, to_regclass(rel)) INTO out;
  RETURN coalesce(out, 'null');
END $$;
"#;

/// The fixture: rebuilt from nothing, so any damage a case did is undone.
const RESET: &str = r#"
DROP SCHEMA IF EXISTS public CASCADE;
DROP SCHEMA IF EXISTS audit CASCADE;
SELECT count(lo_unlink(oid)) FROM pg_largeobject_metadata;
CREATE SCHEMA public;
CREATE SCHEMA audit;
CREATE TABLE public.customers (id int PRIMARY KEY, name text NOT NULL, note text NOT NULL DEFAULT 'n');
INSERT INTO public.customers (id, name) SELECT g, 'c' || g FROM generate_series(1, 5) g;
CREATE TABLE public.secrets (id int PRIMARY KEY, value text);
INSERT INTO public.secrets VALUES (1, 'hunter2'), (2, 'swordfish');
CREATE TABLE public.secrets_public (id int);
INSERT INTO public.secrets_public VALUES (1);
CREATE TABLE audit.log (id int, entry text);
INSERT INTO audit.log VALUES (1, 'a'), (2, 'b'), (3, 'c');
CREATE TABLE public."Payroll" (id int, amount int);
INSERT INTO public."Payroll" VALUES (1, 1000), (2, 2000);
CREATE TABLE public.droppable (id int);
INSERT INTO public.droppable VALUES (1);
CREATE TABLE public.scratch (n int);
CREATE FUNCTION public.purge() RETURNS void LANGUAGE sql AS $$ DELETE FROM customers $$;
"#;

/// How long to wait for every case's session to show up as ended.
const RECORDINGS_WAIT: Duration = Duration::from_secs(30);

/// One error the client must see.
#[derive(Clone, Debug)]
enum Want {
    /// 42501 `blocked by policy rule "<rule>": <message>`.
    Blocked(&'static str),
    /// 42501 `blocked by policy rule "...": ...`, whatever the rule.
    BlockedAny,
    /// 42501 by one of these rules (e.g. a construct the parser may or
    /// may not read: blocked by the rule it hides, or as `unparsed`).
    BlockedEither(&'static [&'static str]),
    /// This SQLSTATE.
    Code(&'static str),
}

impl Want {
    fn is_block(&self) -> bool {
        matches!(
            self,
            Want::Blocked(_) | Want::BlockedAny | Want::BlockedEither(_)
        )
    }
}

/// How a case talks to the gateway.
enum Run {
    /// One psql `-c` (one Query message, possibly several statements).
    Sql(String),
    /// Several `-c` in one psql session, each its own Query message.
    Script(Vec<String>),
    /// Raw protocol frames, sent at once after login; read until one
    /// ReadyForQuery per Query, Sync and FunctionCall.
    Wire(Vec<Vec<u8>>),
}

struct Case {
    name: &'static str,
    run: Run,
    /// Every error the client sees, in order; empty: none.
    errors: Vec<Want>,
    /// Must appear in what the client received (rows, command tags).
    output: Option<&'static str>,
    /// Fingerprint entries that differ from the baseline afterwards.
    state: Vec<(&'static str, &'static str)>,
}

fn case(name: &'static str, run: Run) -> Case {
    Case {
        name,
        run,
        errors: Vec::new(),
        output: None,
        state: Vec::new(),
    }
}

impl Case {
    fn blocked(mut self, rule: &'static str) -> Self {
        self.errors.push(Want::Blocked(rule));
        self
    }
    fn blocked_any(mut self) -> Self {
        self.errors.push(Want::BlockedAny);
        self
    }
    fn blocked_either(mut self, rules: &'static [&'static str]) -> Self {
        self.errors.push(Want::BlockedEither(rules));
        self
    }
    fn code(mut self, code: &'static str) -> Self {
        self.errors.push(Want::Code(code));
        self
    }
    fn output(mut self, text: &'static str) -> Self {
        self.output = Some(text);
        self
    }
    fn state(mut self, key: &'static str, value: &'static str) -> Self {
        self.state.push((key, value));
        self
    }
}

fn sql(text: &str) -> Run {
    Run::Sql(text.to_owned())
}

fn script(parts: &[&str]) -> Run {
    Run::Script(parts.iter().map(|s| s.to_string()).collect())
}

/// What the client saw.
#[derive(Debug, Default)]
struct Observed {
    /// (SQLSTATE, message) of every ErrorResponse, in order.
    errors: Vec<(String, String)>,
    /// Rows and command tags (psql's stdout, or the raw client's DataRows
    /// as `a|b` lines and CommandComplete tags).
    output: String,
    /// Anything else worth showing on failure.
    detail: String,
}

/// The suite's world: the cluster, the gateway, a token.
struct Suite {
    w: World,
    token: String,
    lo_file: String,
    baseline: BTreeMap<String, String>,
}

impl Suite {
    fn start() -> Result<Self> {
        let w = World::start(|c, _, _| {
            c.postgres_plaintext(true)
                .policy(
                    PolicySpec::new("default")
                        .recording("batched")
                        .line("default = \"allow\"")
                        .line("unparsed = \"block\""),
                )
                .raw(RULES)
        })?;
        w.pg.psql_direct("app", FIXTURE_HELPERS)?;
        w.pg.psql_direct("app", RESET)?;
        let token = w.token("policy-bot")?;
        let lo_file = format!(
            "/tmp/gatehouse-policy-lo-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_nanos()
        );
        let mut suite = Suite {
            w,
            token,
            lo_file,
            baseline: BTreeMap::new(),
        };
        suite.baseline = suite.fingerprint()?;
        Ok(suite)
    }

    /// The whole fixture's state, read directly from PostgreSQL.
    fn fingerprint(&self) -> Result<BTreeMap<String, String>> {
        let q = format!(
            "SELECT concat_ws(' ', \
             'customers=' || fixture.q('public.customers', 'count(*)'), \
             'notes=' || fixture.q('public.customers', $$count(*) FILTER (WHERE note <> 'n')$$), \
             'secrets=' || fixture.q('public.secrets', 'count(*)'), \
             'log=' || fixture.q('audit.log', 'count(*)'), \
             'payroll=' || fixture.q('public.\"Payroll\"', 'sum(amount)'), \
             'droppable=' || fixture.q('public.droppable', 'count(*)'), \
             'scratch=' || fixture.q('public.scratch', 'count(*)'), \
             'cols=' || (SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass('public.customers') AND attnum > 0 AND NOT attisdropped), \
             'acl=' || (SELECT count(*) FROM pg_class WHERE relacl IS NOT NULL AND relnamespace IN ('public'::regnamespace, 'audit'::regnamespace)), \
             'relations=' || (SELECT string_agg(nspname || '.' || relname, ',' ORDER BY nspname, relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE nspname IN ('public', 'audit') AND relkind IN ('r', 'v', 'm', 'p')), \
             'functions=' || (SELECT string_agg(proname, ',' ORDER BY proname) FROM pg_proc WHERE pronamespace = 'public'::regnamespace), \
             'lo=' || (SELECT count(*) FROM pg_largeobject_metadata), \
             'lofile=' || ((pg_stat_file('{}', true)).size IS NOT NULL))",
            self.lo_file
        );
        let text = self.w.pg.psql_direct("app", &q)?;
        Ok(text
            .split(' ')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect())
    }

    fn reset(&self) -> Result<()> {
        let _ = std::fs::remove_file(&self.lo_file);
        self.w.pg.psql_direct("app", RESET)?;
        Ok(())
    }

    /// Runs one case as client user `user`.
    fn run(&self, user: &str, run: &Run) -> Result<Observed> {
        match run {
            Run::Sql(text) => self.psql(user, std::slice::from_ref(text)),
            Run::Script(parts) => self.psql(user, parts),
            Run::Wire(frames) => self.wire(user, frames),
        }
    }

    fn psql(&self, user: &str, commands: &[String]) -> Result<Observed> {
        let mut args: Vec<&str> = vec![
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=0",
            "-v",
            "VERBOSITY=verbose",
        ];
        for c in commands {
            args.push("-c");
            args.push(c);
        }
        let out = self
            .w
            .tls_target(common::APP_DB, user, &self.token)
            .psql_args(&args)?;
        let stderr = out.stderr_text();
        let errors = stderr
            .lines()
            .filter_map(|l| l.strip_prefix("ERROR:  "))
            .map(|rest| match rest.split_once(": ") {
                Some((code, msg)) if code.len() == 5 => (code.to_owned(), msg.to_owned()),
                _ => (String::new(), rest.to_owned()),
            })
            .collect();
        Ok(Observed {
            errors,
            output: out.stdout_text(),
            detail: format!("psql exit {}; stderr: {stderr}", out.status),
        })
    }

    fn wire(&self, user: &str, frames: &[Vec<u8>]) -> Result<Observed> {
        let mut raw = RawPg::connect(self.w.gh.pg_port())?;
        raw.login_ok(user, common::APP_DB, &self.token)?;
        let mut bytes = Vec::new();
        let mut readies = 0;
        for f in frames {
            if matches!(f.first(), Some(b'Q' | b'S' | b'F')) {
                readies += 1;
            }
            bytes.extend_from_slice(f);
        }
        raw.send(&bytes)?;
        let mut seen = Observed::default();
        let mut tags = Vec::new();
        while readies > 0 {
            let msg = raw
                .read_msg()?
                .ok_or_else(|| anyhow!("gateway closed; so far {seen:?}"))?;
            tags.push(msg.tag as char);
            match msg.tag {
                b'E' => seen.errors.push((msg.sqlstate(), msg.message())),
                b'D' => {
                    let row: Vec<String> = msg
                        .row()
                        .into_iter()
                        .map(|v| v.unwrap_or_default())
                        .collect();
                    let _ = writeln!(seen.output, "{}", row.join("|"));
                }
                b'C' => {
                    let _ = writeln!(seen.output, "{}", msg.tag_text());
                }
                b'Z' => readies -= 1,
                _ => {}
            }
        }
        raw.terminate()?;
        seen.detail = format!("messages: {}", tags.into_iter().collect::<String>());
        Ok(seen)
    }
}

/// The expected full message of a block by `rule`, if the suite knows it.
fn block_message(rule: &str) -> Option<String> {
    RULE_MESSAGES
        .iter()
        .find(|(r, _)| *r == rule)
        .map(|(r, m)| {
            format!(
                "blocked by policy rule \"{r}\": {}",
                m.unwrap_or(DEFAULT_BLOCK_MESSAGE)
            )
        })
}

/// Differences between what the client saw and what the case wants.
fn check_client(case: &Case, seen: &Observed) -> Vec<String> {
    let mut problems = Vec::new();
    if seen.errors.len() != case.errors.len() {
        problems.push(format!(
            "client saw {} error(s) {:?}, expected {:?}",
            seen.errors.len(),
            seen.errors,
            case.errors
        ));
    }
    for (i, (want, (code, msg))) in case.errors.iter().zip(&seen.errors).enumerate() {
        let ok = match want {
            Want::Blocked(rule) => {
                let prefix = format!("blocked by policy rule \"{rule}\": ");
                code == "42501"
                    && msg.starts_with(&prefix)
                    && block_message(rule).is_none_or(|full| *msg == full)
            }
            Want::BlockedAny => code == "42501" && msg.starts_with("blocked by policy rule \""),
            Want::BlockedEither(rules) => {
                code == "42501"
                    && rules
                        .iter()
                        .any(|r| msg.starts_with(&format!("blocked by policy rule \"{r}\": ")))
            }
            Want::Code(want_code) => code == want_code,
        };
        if !ok {
            problems.push(format!(
                "error #{} was {code} {msg:?}, expected {want:?}{}",
                i + 1,
                match want {
                    Want::Blocked(rule) => block_message(rule)
                        .map(|m| format!(" = 42501 {m:?}"))
                        .unwrap_or_default(),
                    _ => String::new(),
                }
            ));
        }
    }
    if let Some(text) = case.output
        && !seen.output.contains(text)
    {
        problems.push(format!(
            "client output {:?} does not contain {text:?}",
            seen.output
        ));
    }
    problems
}

fn check_state(
    case: &Case,
    baseline: &BTreeMap<String, String>,
    got: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut want = baseline.clone();
    for (k, v) in &case.state {
        want.insert((*k).to_owned(), (*v).to_owned());
    }
    let mut problems = Vec::new();
    for (k, v) in &want {
        let g = got.get(k).map(String::as_str).unwrap_or("<absent>");
        if g != v {
            problems.push(format!("database: {k} is {g:?}, expected {v:?}"));
        }
    }
    problems
}

/// A fast-path FunctionCall of `oid` with one binary int4/oid argument.
fn function_call(oid: u32, arg: i32) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&oid.to_be_bytes());
    body.extend_from_slice(&1i16.to_be_bytes());
    body.extend_from_slice(&1i16.to_be_bytes());
    body.extend_from_slice(&1i16.to_be_bytes());
    body.extend_from_slice(&4i32.to_be_bytes());
    body.extend_from_slice(&arg.to_be_bytes());
    body.extend_from_slice(&1i16.to_be_bytes());
    frame(b'F', &body)
}

fn cases(suite: &Suite) -> Result<Vec<Case>> {
    let lo_create: u32 = suite
        .w
        .pg
        .psql_direct("app", "SELECT 'lo_create(oid)'::regprocedure::oid")?
        .parse()
        .context("lo_create's oid")?;
    let lo_export = format!(
        "SELECT lo_export(lo_import('/etc/hostname'), '{}')",
        suite.lo_file
    );
    let lo_export_in_do = format!(
        "DO $$ BEGIN PERFORM lo_export(lo_import('/etc/hostname'), '{}'); END $$",
        suite.lo_file
    );
    Ok(vec![
        // --- ordinary statements are not over-blocked ------------------
        case("read customers", sql("SELECT id, name FROM customers ORDER BY id"))
            .output("5|c5"),
        case(
            "read with mixed case, comments and quoted names",
            sql("sElEcT   name /* c */ FROM \"public\".\"customers\" -- x\n WHERE id = 1"),
        )
        .output("c1"),
        case("read audit log (only writes are ruled)", sql("SELECT count(*) FROM audit.log"))
            .output("3"),
        case(
            "read a table whose name extends a ruled one",
            sql("SELECT count(*) FROM secrets_public"),
        )
        .output("1"),
        case("update with WHERE", sql("UPDATE public.customers SET note = 'x' WHERE id = 1"))
            .output("UPDATE 1")
            .state("notes", "1"),
        case("delete with WHERE from an unruled table", sql("DELETE FROM public.droppable WHERE id = 1"))
            .output("DELETE 1")
            .state("droppable", "0"),
        case(
            "insert into an unruled table",
            sql("INSERT INTO public.scratch VALUES (1)"),
        )
        .state("scratch", "1"),
        case(
            "unqualified write matches a schema-wildcard rule (search_path-proof)",
            sql("INSERT INTO scratch VALUES (1)"),
        )
        .blocked("audit"),
        case(
            "first matching rule wins: allow rule before no-ddl",
            script(&[
                "INSERT INTO public.scratch VALUES (1)",
                "TRUNCATE scratch",
                "SELECT 'left ' || count(*) FROM scratch",
            ]),
        )
        .output("left 0"),
        case("COPY TO STDOUT of an unruled table", sql("COPY customers TO STDOUT"))
            .output("c3"),
        case(
            "DO block with an allowed insert",
            sql("DO $$ BEGIN INSERT INTO public.scratch VALUES (1); END $$"),
        )
        .state("scratch", "1"),
        // --- DELETE on customers in every disguise ---------------------
        case("plain delete", sql("DELETE FROM customers")).blocked("no-customer-delete"),
        case("mixed case and spaces", sql("DeLeTe   FROM   CuStOmErS"))
            .blocked("no-customer-delete"),
        case("tabs and newlines", sql("delete\tfrom\n\tcustomers\n"))
            .blocked("no-customer-delete"),
        case("leading block comment", sql("/* c */ DELETE FROM customers"))
            .blocked("no-customer-delete"),
        case("comment between keywords", sql("DELETE /* c */ FROM customers"))
            .blocked("no-customer-delete"),
        case("leading line comment", sql("-- c\nDELETE FROM customers"))
            .blocked("no-customer-delete"),
        case(
            "nested block comment before the table",
            sql("DELETE FROM /* outer /* nested */ still comment */ customers"),
        )
        .blocked("no-customer-delete"),
        case("trailing line comment", sql("DELETE FROM customers -- WHERE false"))
            .blocked("no-customer-delete"),
        case("quoted schema and table", sql("DELETE FROM \"public\".\"customers\""))
            .blocked("no-customer-delete"),
        case("upper-case qualified name", sql("DELETE FROM PUBLIC.CUSTOMERS"))
            .blocked("no-customer-delete"),
        case(
            "ONLY, alias and a WHERE",
            sql("DELETE FROM ONLY customers AS c WHERE c.id > 0"),
        )
        .blocked("no-customer-delete"),
        case(
            "DELETE in a CTE under a SELECT",
            sql("WITH d AS (DELETE FROM customers RETURNING *) SELECT count(*) FROM d"),
        )
        .blocked("no-customer-delete"),
        case(
            "DELETE after a CTE",
            sql("WITH ids AS (SELECT id FROM customers) DELETE FROM customers WHERE id IN (SELECT id FROM ids)"),
        )
        .blocked("no-customer-delete"),
        case(
            "DELETE inside COPY (...) TO",
            sql("COPY (DELETE FROM customers RETURNING id) TO STDOUT"),
        )
        .blocked("no-customer-delete"),
        case("EXPLAIN ANALYZE runs the DELETE", sql("EXPLAIN ANALYZE DELETE FROM customers"))
            .blocked("no-customer-delete"),
        case(
            "EXPLAIN (ANALYZE, BUFFERS) runs the DELETE",
            sql("EXPLAIN (ANALYZE, BUFFERS) DELETE FROM customers WHERE id = 1"),
        )
        .blocked("no-customer-delete"),
        case("plain EXPLAIN does not run it", sql("EXPLAIN DELETE FROM customers"))
            .output("Delete on customers"),
        case("PREPARE of a DELETE", sql("PREPARE p AS DELETE FROM customers"))
            .blocked("no-customer-delete"),
        case(
            "PREPARE and EXECUTE of a SELECT",
            script(&["PREPARE ok AS SELECT 'n=' || count(*) FROM customers", "EXECUTE ok"]),
        )
        .output("n=5"),
        case(
            "PREPARE and EXECUTE of an UPDATE with WHERE",
            script(&[
                "PREPARE u(int) AS UPDATE public.customers SET note = 'p' WHERE id = $1",
                "EXECUTE u(2)",
            ]),
        )
        .output("UPDATE 1")
        .state("notes", "1"),
        case("EXECUTE of a name never prepared", sql("EXECUTE never_prepared"))
            .blocked("unknown-statement"),
        case(
            "DO block deleting customers",
            sql("DO $$ BEGIN DELETE FROM customers; END $$"),
        )
        .blocked("no-customer-delete"),
        case(
            "DO block with dynamic EXECUTE",
            sql("DO $$ BEGIN EXECUTE 'DELETE FROM ' || 'customers'; END $$"),
        )
        .blocked("unparsed"),
        case(
            "CREATE FUNCTION whose body deletes customers",
            sql("CREATE FUNCTION purge2() RETURNS void LANGUAGE sql AS $$ DELETE FROM customers $$"),
        )
        .blocked("no-customer-delete"),
        case("calling a deleting function", sql("SELECT purge()")).blocked("purge"),
        case(
            "deleting function in a subquery",
            sql("SELECT id FROM customers WHERE id IN (SELECT 1 FROM (SELECT purge()) s)"),
        )
        .blocked("purge"),
        case(
            "multi-statement message: harmless first, blocked second",
            sql("INSERT INTO public.scratch VALUES (1); DELETE FROM customers"),
        )
        .blocked("no-customer-delete"),
        case(
            "session goes on after a block",
            script(&["DELETE FROM customers", "SELECT 'n=' || count(*) FROM customers"]),
        )
        .blocked("no-customer-delete")
        .output("n=5"),
        case(
            "DELETE in a DO block with another dollar tag",
            sql("DO $body$ BEGIN DELETE FROM customers; END $body$"),
        )
        .blocked("no-customer-delete"),
        case(
            "DO with LANGUAGE before the body",
            sql("DO LANGUAGE plpgsql $$ BEGIN DELETE FROM customers; END $$"),
        )
        .blocked("no-customer-delete"),
        case(
            "DROP inside a DO block",
            sql("DO $$ BEGIN DROP TABLE droppable; END $$"),
        )
        .blocked("no-ddl"),
        case(
            "GRANT inside a DO block",
            sql("DO $$ BEGIN GRANT SELECT ON customers TO PUBLIC; END $$"),
        )
        .blocked("no-grant"),
        case(
            "DO with EXECUTE format()",
            sql("DO $$ BEGIN EXECUTE format('DELETE FROM %I', 'customers'); END $$"),
        )
        .blocked("unparsed"),
        case(
            "DO with EXECUTE of a constant string",
            sql("DO $$ BEGIN EXECUTE 'DELETE FROM customers'; END $$"),
        )
        .blocked_either(&["unparsed", "no-customer-delete"]),
        case(
            "SQL function body in single quotes",
            sql("CREATE FUNCTION purge3() RETURNS void LANGUAGE sql AS 'DELETE FROM customers'"),
        )
        .blocked("no-customer-delete"),
        case(
            "SQL-standard function body (BEGIN ATOMIC)",
            sql("CREATE FUNCTION purge4() RETURNS void LANGUAGE sql BEGIN ATOMIC DELETE FROM customers WHERE id > 0; END"),
        )
        .blocked_either(&["no-customer-delete", "unparsed"]),
        case(
            "plpgsql function with dynamic SQL, then called",
            script(&[
                "CREATE FUNCTION sneaky() RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'DELETE FROM ' || 'customers'; END $$",
                "SELECT sneaky()",
            ]),
        )
        .blocked("unparsed")
        .code("42883"),
        case(
            "rewrite rule that deletes customers on insert",
            sql("CREATE RULE sneaky AS ON INSERT TO public.scratch DO ALSO DELETE FROM customers"),
        )
        .blocked_either(&["no-customer-delete", "unparsed"]),
        case(
            "MERGE whose action deletes customers",
            sql("MERGE INTO customers c USING (SELECT 1 AS id) s ON c.id = s.id WHEN MATCHED THEN DELETE"),
        )
        .blocked("no-customer-delete"),
        case(
            "Unicode-escaped table name",
            sql("DELETE FROM U&\"\\0063ustomers\" WHERE id > 0"),
        )
        .blocked_either(&["no-customer-delete", "unparsed"]),
        case(
            "transaction in one message",
            sql("BEGIN; DELETE FROM customers; COMMIT"),
        )
        .blocked("no-customer-delete"),
        case(
            "a blocked PREPARE cannot be EXECUTEd later",
            script(&["PREPARE p AS DELETE FROM customers", "EXECUTE p"]),
        )
        .blocked("no-customer-delete")
        .blocked("unknown-statement"),
        case(
            "PREPARE and EXECUTE of a SELECT in one message",
            sql("PREPARE same AS SELECT 'n=' || count(*) FROM customers; EXECUTE same"),
        )
        .output("n=5"),
        case(
            "re-PREPAREd name in one message still judged by what it runs",
            script(&[
                "PREPARE x AS SELECT 1",
                "DEALLOCATE x; PREPARE x AS DELETE FROM customers; EXECUTE x",
            ]),
        )
        .blocked("no-customer-delete"),
        case(
            "EXECUTE with a case-folded name",
            script(&["PREPARE Ok AS SELECT 'n=' || count(*) FROM customers", "EXECUTE OK"]),
        )
        .output("n=5"),
        case(
            "a string literal mentioning DELETE is not a DELETE",
            sql("SELECT $$DELETE FROM customers$$, 'DROP TABLE droppable'"),
        )
        .output("DELETE FROM customers|DROP TABLE droppable"),
        case(
            "a comment hiding a second statement",
            sql("SELECT 'n=' || count(*) FROM customers /* ; DROP TABLE droppable */"),
        )
        .output("n=5"),
        case(
            "unparsable second statement refuses the whole message",
            sql("INSERT INTO public.scratch VALUES (1); SELEC 2"),
        )
        .blocked("unparsed"),
        // --- tables by name ---------------------------------------------
        // The parser may not know `TABLE x`; either way it must not run.
        case("TABLE command", sql("TABLE secrets")).blocked_either(&["secrets", "unparsed"]),
        case("spaces around the dot", sql("SELECT * FROM public . secrets")).blocked("secrets"),
        case(
            "CREATE TABLE AS from secrets",
            sql("CREATE TABLE stolen AS SELECT * FROM secrets"),
        )
        .blocked("secrets"),
        case("SELECT INTO from secrets", sql("SELECT * INTO stolen FROM secrets"))
            .blocked("secrets"),
        case(
            "cursor over secrets in a transaction",
            script(&[
                "BEGIN",
                "DECLARE c CURSOR FOR SELECT * FROM secrets",
                "FETCH ALL FROM c",
                "COMMIT",
            ]),
        )
        .blocked("secrets")
        .code("25P02")
        .output("ROLLBACK"),
        case("read secrets, unqualified", sql("SELECT * FROM secrets")).blocked("secrets"),
        case(
            "secrets in a subquery",
            sql("SELECT * FROM customers WHERE id IN (SELECT id FROM secrets)"),
        )
        .blocked("secrets"),
        case(
            "secrets in a scalar subquery",
            sql("SELECT (SELECT count(*) FROM public.secrets)"),
        )
        .blocked("secrets"),
        case(
            "copy secrets into another table",
            sql("INSERT INTO scratch SELECT id FROM public.secrets"),
        )
        .blocked("secrets"),
        case(
            "a view over secrets",
            sql("CREATE VIEW leak AS SELECT * FROM secrets"),
        )
        .blocked("secrets"),
        case("COPY secrets TO STDOUT", sql("COPY secrets TO STDOUT")).blocked("secrets"),
        case(
            "search_path changed, then secrets unqualified",
            script(&["SET search_path = audit, public", "SELECT value FROM secrets"]),
        )
        .blocked("secrets"),
        case("quoted mixed-case table", sql("SELECT * FROM \"Payroll\"")).blocked("payroll"),
        case(
            "qualified quoted mixed-case table",
            sql("UPDATE public.\"Payroll\" SET amount = 0 WHERE id = 1"),
        )
        .blocked("payroll"),
        case(
            "search_path to audit, unqualified DELETE, one message",
            sql("SET search_path = audit; DELETE FROM log WHERE id > 0"),
        )
        .blocked("audit"),
        case(
            "search_path to audit, unqualified DELETE, two messages",
            script(&["SET search_path = audit", "DELETE FROM log WHERE id = 1"]),
        )
        .blocked("audit"),
        case(
            "insert into the audit log, quoted",
            sql("INSERT INTO \"audit\".\"log\" VALUES (9, 'forged')"),
        )
        .blocked("audit"),
        case("COPY FROM into the audit log", sql("COPY audit.log FROM STDIN"))
            .blocked("audit"),
        // --- functions ----------------------------------------------------
        case("pg_read_file", sql("SELECT pg_read_file('/etc/hostname')"))
            .blocked("file-access"),
        case("pg_ls_dir in FROM", sql("SELECT * FROM pg_ls_dir('.')")).blocked("file-access"),
        case(
            "schema-qualified quoted function name",
            sql("SELECT \"pg_catalog\".\"pg_read_file\"('/etc/hostname')"),
        )
        .blocked("file-access"),
        case(
            "upper-case function name",
            sql("SELECT PG_CATALOG.PG_READ_FILE('/etc/hostname')"),
        )
        .blocked("file-access"),
        case(
            "function in a WHERE subquery",
            sql("SELECT id FROM customers WHERE id = (SELECT length(pg_read_file('/etc/hostname')))"),
        )
        .blocked("file-access"),
        case(
            "function in a CASE",
            sql("SELECT CASE WHEN id = 1 THEN pg_read_file('/etc/hostname') ELSE '' END FROM customers"),
        )
        .blocked("file-access"),
        case(
            "function in ORDER BY",
            sql("SELECT id FROM customers ORDER BY pg_read_file('/etc/hostname')"),
        )
        .blocked("file-access"),
        case("lo_import and lo_export", Run::Sql(lo_export)).blocked("file-access"),
        case(
            "lo_import and lo_export inside a DO block",
            Run::Sql(lo_export_in_do),
        )
        .blocked("file-access"),
        case(
            "function in a CTE",
            sql("WITH f AS (SELECT pg_read_file('/etc/hostname') AS t) SELECT length(t) FROM f"),
        )
        .blocked("file-access"),
        case(
            "set-returning function in a LATERAL join",
            sql("SELECT c.id FROM customers c JOIN LATERAL pg_ls_dir('.') d ON true"),
        )
        .blocked("file-access"),
        case(
            "dblink_exec with the DELETE in a string",
            sql("SELECT dblink_exec('dbname=app', 'DELETE FROM customers')"),
        )
        // The classifier may read the remote SQL too; first match then
        // names the DELETE rule.
        .blocked_either(&["file-access", "no-customer-delete"]),
        case(
            "dblink (extension not installed: still 42501, not 42883)",
            sql("SELECT * FROM dblink('host=127.0.0.1 dbname=app', 'SELECT 1') AS t(a int)"),
        )
        .blocked("file-access"),
        // --- COPY with programs ------------------------------------------
        case("COPY TO PROGRAM", sql("COPY customers TO PROGRAM 'id'")).blocked("no-program"),
        case(
            "COPY FROM PROGRAM",
            sql("COPY customers FROM PROGRAM 'echo 99,x,n' WITH (FORMAT csv)"),
        )
        .blocked("no-program"),
        // --- unreadable SQL -----------------------------------------------
        case("misspelt keyword", sql("SELEC 1")).blocked("unparsed"),
        case("truncated statement", sql("DELETE FROM customers WHERE")).blocked("unparsed"),
        // --- WHERE-less writes ---------------------------------------------
        case("UPDATE without WHERE", sql("UPDATE customers SET note = 'x'"))
            .blocked("mass-update"),
        case(
            "UPDATE whose WHERE is commented out",
            sql("UPDATE customers SET note = 'x' -- WHERE id = 1"),
        )
        .blocked("mass-update"),
        // --- DDL and privileges ---------------------------------------------
        case("TRUNCATE", sql("TRUNCATE customers")).blocked("no-ddl"),
        case(
            "TRUNCATE TABLE ONLY, quoted",
            sql("TRUNCATE TABLE ONLY \"public\".\"droppable\""),
        )
        .blocked("no-ddl"),
        case("DROP TABLE", sql("DROP TABLE droppable")).blocked("no-ddl"),
        case(
            "ALTER TABLE ADD COLUMN",
            sql("ALTER TABLE customers ADD COLUMN pwned int"),
        )
        .blocked("no-ddl"),
        case("ALTER TABLE RENAME", sql("ALTER TABLE droppable RENAME TO renamed"))
            .blocked("no-ddl"),
        case("GRANT", sql("GRANT SELECT ON customers TO PUBLIC")).blocked("no-grant"),
        case(
            "multi-statement message: SELECT then DROP",
            sql("SELECT 1; DROP TABLE droppable"),
        )
        .blocked("no-ddl"),
        case(
            "blocked statement aborts the transaction",
            script(&[
                "BEGIN",
                "INSERT INTO public.scratch VALUES (1)",
                "DROP TABLE droppable",
                "SELECT 'inside'",
                "COMMIT",
            ]),
        )
        .blocked("no-ddl")
        .code("25P02")
        .output("ROLLBACK"),
        // --- extended protocol and fast path ---------------------------------
        case(
            "extended: Parse of a blocked DELETE, then the session goes on",
            Run::Wire(vec![
                parse("", "DELETE FROM customers"),
                bind("", "", &[]),
                execute("", 0),
                sync(),
                query("SELECT 'n=' || count(*) FROM customers"),
            ]),
        )
        .blocked("no-customer-delete")
        .output("n=5"),
        case(
            "extended: blocked Parse rolls back the pipeline's implicit transaction",
            Run::Wire(vec![
                parse("s1", "INSERT INTO public.scratch VALUES (1)"),
                bind("", "s1", &[]),
                execute("", 0),
                parse("s2", "DELETE FROM customers WHERE id = 1"),
                bind("", "s2", &[]),
                execute("", 0),
                sync(),
            ]),
        )
        .blocked("no-customer-delete"),
        case(
            "extended: a committed Sync stays, the next is blocked",
            Run::Wire(vec![
                parse("", "INSERT INTO public.scratch VALUES (1)"),
                bind("", "", &[]),
                execute("", 0),
                sync(),
                parse("", "DELETE FROM customers"),
                bind("", "", &[]),
                execute("", 0),
                sync(),
            ]),
        )
        .blocked("no-customer-delete")
        .state("scratch", "1"),
        case(
            "extended: a blocked unnamed Parse replaces the previous unnamed statement",
            Run::Wire(vec![
                parse("", "SELECT 'stale'"),
                sync(),
                parse("", "DELETE FROM customers"),
                sync(),
                bind("", "", &[]),
                execute("", 0),
                sync(),
            ]),
        )
        .blocked("no-customer-delete")
        .code("26000"),
        case(
            "extended: parameterised UPDATE with WHERE",
            Run::Wire(vec![
                parse("", "UPDATE public.customers SET note = $1 WHERE id = $2"),
                bind("", "", &[Some("x"), Some("2")]),
                execute("", 0),
                sync(),
            ]),
        )
        .output("UPDATE 1")
        .state("notes", "1"),
        case(
            "extended: function with its argument as a parameter",
            Run::Wire(vec![
                parse("", "SELECT pg_read_file($1)"),
                bind("", "", &[Some("/etc/hostname")]),
                execute("", 0),
                sync(),
            ]),
        )
        .blocked("file-access"),
        case(
            "extended: PREPARE of a DELETE inside a Parse",
            Run::Wire(vec![
                parse("", "PREPARE p AS DELETE FROM customers"),
                bind("", "", &[]),
                execute("", 0),
                sync(),
            ]),
        )
        .blocked("no-customer-delete"),
        case(
            "extended: Bind to a SQL-level prepared SELECT",
            Run::Wire(vec![
                query("PREPARE q AS SELECT 'n=' || count(*) FROM customers"),
                bind("", "q", &[]),
                execute("", 0),
                sync(),
            ]),
        )
        .output("n=5"),
        case(
            "fast-path FunctionCall (lo_create) is refused",
            Run::Wire(vec![function_call(lo_create, 0)]),
        )
        .blocked_any(),
    ])
}

#[test]
fn adversarial_statements_are_judged_as_postgres_runs_them() -> Result<()> {
    let suite = Suite::start()?;
    let cases = cases(&suite)?;
    let mut failures = Vec::new();
    let mut users = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let user = format!("policy-case-{i:02}");
        users.push(user.clone());
        let seen = match suite.run(&user, &case.run) {
            Ok(seen) => seen,
            Err(e) => {
                failures.push(format!("[{user}] {}: client run failed: {e:#}", case.name));
                suite.reset()?;
                continue;
            }
        };
        let mut problems = check_client(case, &seen);
        let state = suite.fingerprint();
        match &state {
            Ok(state) => problems.extend(check_state(case, &suite.baseline, state)),
            Err(e) => problems.push(format!("database check failed: {e:#}")),
        }
        if !problems.is_empty() {
            failures.push(format!(
                "[{user}] {}: {}\n    client: errors {:?}, output {:?}, {}",
                case.name,
                problems.join("; "),
                seen.errors,
                seen.output,
                seen.detail
            ));
        }
        if !matches!(&state, Ok(s) if *s == suite.baseline) {
            suite.reset()?;
        }
    }

    // Every blocked statement is in its session's recording, after the
    // statement it refused, with the rule's name.
    let sessions = wait_sessions_ended(&suite, &users)?;
    for (case, user) in cases.iter().zip(&users) {
        let Some(header) = sessions.get(user) else {
            failures.push(format!("[{user}] {}: no recorded session", case.name));
            continue;
        };
        let (_, events) = show_session(&suite.w.gh, &session_id(header)?)?;
        if let Err(e) = check_blocked_events(case, &events) {
            failures.push(format!("[{user}] {}: recording: {e:#}", case.name));
        }
    }

    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}\n--- gateway log tail ---\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n"),
        tail(&suite.w.log(), 30)
    );
    assert!(cases.len() >= 40);
    Ok(())
}

/// The recorded session of each case user, once all have ended.
fn wait_sessions_ended(suite: &Suite, users: &[String]) -> Result<BTreeMap<String, Value>> {
    let deadline = Instant::now() + RECORDINGS_WAIT;
    loop {
        let mut found = BTreeMap::new();
        for h in list_sessions(&suite.w.gh)? {
            if let Some(u) = h["client_user"].as_str()
                && users.iter().any(|x| x == u)
                && !h["outcome"].is_null()
            {
                if found.contains_key(u) {
                    bail!("two sessions for {u}");
                }
                found.insert(u.to_owned(), h);
            }
        }
        if found.len() == users.len() || Instant::now() >= deadline {
            return Ok(found);
        }
        thread::sleep(Duration::from_millis(200));
    }
}

fn check_blocked_events(case: &Case, events: &[Value]) -> Result<()> {
    let wanted: Vec<&Want> = case.errors.iter().filter(|w| w.is_block()).collect();
    let blocked: Vec<(usize, &Value)> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| kind_of(e) == "blocked")
        .collect();
    if blocked.len() != wanted.len() {
        bail!(
            "{} blocked event(s), expected {}: {:?}",
            blocked.len(),
            wanted.len(),
            blocked.iter().map(|(_, e)| &e["kind"]).collect::<Vec<_>>()
        );
    }
    for ((at, event), want) in blocked.iter().zip(wanted) {
        let rule = event["kind"]["rule"].as_str().unwrap_or_default();
        let reason = event["kind"]["reason"].as_str().unwrap_or_default();
        match want {
            Want::Blocked(want_rule) if rule != *want_rule => {
                bail!("blocked event names rule {rule:?}, expected {want_rule:?}: {event}")
            }
            Want::BlockedEither(rules) if !rules.contains(&rule) => {
                bail!("blocked event names rule {rule:?}, expected one of {rules:?}: {event}")
            }
            _ => {}
        }
        if !reason.contains(&format!("\"{rule}\"")) {
            bail!("blocked event's reason does not name its rule: {event}");
        }
        let before = at
            .checked_sub(1)
            .map(|i| kind_of(&events[i]))
            .unwrap_or("<none>");
        if !["query", "parse", "execute", "function_call"].contains(&before) {
            bail!("blocked event follows a {before:?} event, not the statement it refused");
        }
    }
    Ok(())
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
