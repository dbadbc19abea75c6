"""A psycopg 3 session: server-side parameters (extended protocol), binary
results, a pipeline, COPY in both directions, notices and errors."""

import psycopg

with psycopg.connect() as conn:
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("CREATE TEMP TABLE t (id int, email text, payload bytea)")
    cur.executemany(
        "INSERT INTO t VALUES (%s, %s, %s)",
        [(i, f"user{i}@example.com", bytes(range(i % 256))) for i in range(20)],
    )
    cur.execute("SELECT * FROM t WHERE id < %s", (5,))
    cur.fetchall()
    bcur = conn.cursor(binary=True)
    bcur.execute("SELECT id, email, payload, now(), 1.5::numeric FROM t")
    bcur.fetchall()
    with conn.pipeline():
        for i in range(5):
            cur.execute("UPDATE t SET email = %s WHERE id = %s", (f"x{i}@example.org", i))
    with cur.copy("COPY t (id, email) TO STDOUT") as copy:
        for _ in copy:
            pass
    with cur.copy("COPY t (id, email) FROM STDIN") as copy:
        copy.write_row((99, "new@example.com"))
    try:
        cur.execute("SELECT %s::int", ("not a number",))
    except psycopg.Error:
        pass
    cur.execute("SELECT 'done'")
