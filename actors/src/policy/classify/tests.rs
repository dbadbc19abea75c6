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
    assert!(v[0].kinds.contains("delete") && v[0].kinds.contains("prepare") && v[0].without_where);
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
