#!/usr/bin/env bash
# Seed the fuzz corpora from real traffic: a throwaway PostgreSQL 15 on
# loopback that asks for a cleartext password (as Gatehouse asks for the
# agent's token), a recording proxy in front of it (capture.py), and stock
# clients through the proxy: psql (simple protocol, COPY both ways, errors,
# notices, LISTEN/NOTIFY, DO blocks), pgbench (COPY FROM STDIN at -i, then
# simple, extended and prepared protocols) and psycopg 3 (server-side
# parameters, binary results, pipelines, COPY). Writes seeds into OUT
# (default fuzz/corpus), one file per input, named real-*.
#
# Needs root, PostgreSQL 15 (scripts/install-deps.sh) and psycopg
# (`pip install --target DIR "psycopg[binary]"`, DIR given as PYDEPS).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/../corpus}"
bin=/usr/lib/postgresql/15/bin
work="$(mktemp -d /tmp/gatehouse-fuzz-capture.XXXXXX)"
chown postgres "$work"
port=$((20000 + RANDOM % 20000))
proxy=$((port + 1))
cleanup() {
    runuser -u postgres -- "$bin/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

runuser -u postgres -- "$bin/initdb" -D "$work/data" -U postgres --auth-local=trust >/dev/null
cat > "$work/data/pg_hba.conf" <<HBA
local all all trust
host all all 127.0.0.1/32 password
HBA
runuser -u postgres -- "$bin/pg_ctl" -D "$work/data" -o "-p $port -k $work -c listen_addresses=127.0.0.1" -w start >/dev/null
runuser -u postgres -- "$bin/psql" -h "$work" -p "$port" -qc "ALTER ROLE postgres PASSWORD 'seed-password'"

coproc PROXY { python3 "$here/capture.py" "$out" "$proxy" "$port"; }
read -r ready <&"${PROXY[0]}"
export PGHOST=127.0.0.1 PGPORT=$proxy PGUSER=postgres PGPASSWORD=seed-password PGDATABASE=postgres

psql -q -v ON_ERROR_STOP=0 -f "$here/session.sql" >/dev/null 2>&1 || true
psql -q -c "COPY (SELECT g, 'user' || g || '@example.com', '4242 4242 4242 4242' FROM generate_series(1, 50) g) TO STDOUT WITH (FORMAT csv, HEADER)" >/dev/null
pgbench -q -i -s 1 >/dev/null 2>&1
for mode in simple extended prepared; do
    pgbench -M "$mode" -c 2 -t 20 >/dev/null 2>&1
done
PYTHONPATH="${PYDEPS:-}" python3 "$here/session.py" >/dev/null

echo done >&"${PROXY[1]}"
cat <&"${PROXY[0]}"
wait "$PROXY_PID" 2>/dev/null || true
