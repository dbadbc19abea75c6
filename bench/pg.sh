#!/usr/bin/env bash
# PostgreSQL gateway benchmark: Gatehouse against a direct connection and
# PgBouncer (session pooling), measured in one run on this machine, every
# client on TLS; and Gatehouse's strict recording mode against batched.
# Prints ratios; never pass/fail.
#
#   ROUNDS     interleaved pgbench rounds            (default 2)
#   DURATION   seconds per pgbench run               (default 20)
#   COPY_ROWS  rows of ~1 KiB for the bulk COPY      (default 1100000, ≈1.1 GB)
#   IDLE       idle sessions for the memory figure   (default 1000)
#   WORKERS    Gatehouse session threads             (default: one per core)
#   PROFILE=1  also sample Gatehouse's CPU with perf during one extra run
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-20}
COPY_ROWS=${COPY_ROWS:-1100000}
IDLE=${IDLE:-1000}
# Each session holds two sockets; the idle-session figure needs room.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
source bench/lib.sh

# Gatehouse, recording on: batched and strict.
{
    config_head bench bench-strict
    connection bench default
    connection bench-strict strict
    printf '[policies.default]\nrecording = "batched"\n[policies.strict]\nrecording = "strict"\n'
} > "$work/gatehouse.toml"
start_gatehouse

# PgBouncer 1.18, session pooling, TLS to clients, plain to the server
# (the same shape as Gatehouse's upstream here).
printf '"gatehouse" "%s"\n' "$password" > "$work/pgbouncer/userlist.txt"
cp "$work/pg/data/server.key" "$work/pg/data/server.crt" "$work/pgbouncer/"
chown -R postgres:postgres "$work/pgbouncer"
cat > "$work/pgbouncer/pgbouncer.ini" <<INI
[databases]
bench = host=127.0.0.1 port=$PG_PORT dbname=bench
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGB_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $work/pgbouncer/userlist.txt
pool_mode = session
max_client_conn = 200
default_pool_size = 50
client_tls_sslmode = require
client_tls_key_file = $work/pgbouncer/server.key
client_tls_cert_file = $work/pgbouncer/server.crt
logfile = $work/pgbouncer/pgbouncer.log
INI
chown postgres:postgres "$work/pgbouncer/pgbouncer.ini"
runuser -u postgres -- pgbouncer "$work/pgbouncer/pgbouncer.ini" > /dev/null 2>&1 &
pgb_pid=$!
wait_port "$PGB_PORT" || { cat "$work/pgbouncer/pgbouncer.log"; exit 1; }
# PgBouncer itself, not runuser: its CPU and context switches are counted.
pgb_proc=$(pgrep -x -P "$pgb_pid" pgbouncer || echo "$pgb_pid")

declare -A sum=([direct]=0 [gatehouse]=0 [pgbouncer]=0 [strict]=0)
gh_ticks=0; gh_tx=0; pgb_ticks=0; pgb_tx=0; gh_uticks=0; pgb_uticks=0
gh_vol=0; gh_invol=0; pgb_vol=0; pgb_invol=0
echo "== pgbench -S -c 8 -j 2 -T $DURATION, $ROUNDS interleaved rounds (order rotated each round), all TLS"
# `tps "${@:3}"` while process $1's CPU ticks, context switches and
# transactions are added to the totals $2_ticks, $2_vol, $2_invol and
# $2_tx; its TPS in $counted_tps.
counted() { # pid totals tps-args...
    local pid=$1 t0 t1 u0 u1 v0 n0 v1 n1
    local -n ticks=${2}_ticks uticks=${2}_uticks vol=${2}_vol invol=${2}_invol tx=${2}_tx
    shift 2
    read -r u0 t0 < <(user_and_cpu_ticks "$pid"); read -r v0 n0 < <(ctx_switches "$pid")
    counted_tps=$(tps "$@")
    read -r u1 t1 < <(user_and_cpu_ticks "$pid"); read -r v1 n1 < <(ctx_switches "$pid")
    ticks=$((ticks + t1 - t0)); uticks=$((uticks + u1 - u0))
    vol=$((vol + v1 - v0)); invol=$((invol + n1 - n0))
    tx=$(python3 -c "print($tx + $counted_tps * $DURATION)")
}
# One side's run, its TPS in $d, $g, $b or $st; Gatehouse's and
# PgBouncer's CPU and context switches added to the totals.
measure() {
    case $1 in
    direct) d=$(tps direct "$PG_PORT" "$password" gatehouse bench require) ;;
    gatehouse)
        counted "$gh_pid" gh gatehouse "$GH_PORT" "$token" bench bench verify-full "$ca"
        g=$counted_tps ;;
    pgbouncer)
        counted "$pgb_proc" pgb pgbouncer "$PGB_PORT" "$password" gatehouse bench require
        b=$counted_tps ;;
    strict) st=$(tps gatehouse-strict "$GH_PORT" "$token" bench bench-strict verify-full "$ca") ;;
    esac
}
sides=(direct gatehouse pgbouncer strict)
for r in $(seq "$ROUNDS"); do
    # Each side takes each place in the order in turn: whatever a run
    # leaves behind falls on every side alike.
    for i in 0 1 2 3; do
        measure "${sides[$(((i + r - 1) % 4))]}"
    done
    printf "round %d: direct %.0f  gatehouse %.0f  pgbouncer %.0f  gatehouse-strict %.0f tps\n" "$r" "$d" "$g" "$b" "$st"
    sum[strict]=$(python3 -c "print(${sum[strict]} + $st)")
    sum[direct]=$(python3 -c "print(${sum[direct]} + $d)")
    sum[gatehouse]=$(python3 -c "print(${sum[gatehouse]} + $g)")
    sum[pgbouncer]=$(python3 -c "print(${sum[pgbouncer]} + $b)")
done
python3 - "${sum[direct]}" "${sum[gatehouse]}" "${sum[pgbouncer]}" "${sum[strict]}" "$ROUNDS" "$gh_ticks" "$gh_tx" "$(getconf CLK_TCK)" \
    "$pgb_ticks" "$pgb_tx" "$gh_vol" "$gh_invol" "$pgb_vol" "$pgb_invol" "$gh_uticks" "$pgb_uticks" <<'PY'
import sys
d, g, b, st, n, ticks, tx, hz, pticks, ptx, gv, gn, pv, pn, gu, pu = map(float, sys.argv[1:])
d, g, b, st = d / n, g / n, b / n, st / n
print(f"mean tps: direct {d:.0f}  gatehouse {g:.0f}  pgbouncer {b:.0f}  gatehouse-strict {st:.0f}")
print(f"ratio gatehouse/direct {g/d:.2f}   gatehouse/pgbouncer {g/b:.2f}   pgbouncer/direct {b/d:.2f}")
print(f"ratio strict/batched recording {st/g:.2f}")
us = lambda t, x: t / hz / x * 1e6
print(f"CPU per transaction: gatehouse {us(ticks, tx):.1f} us   pgbouncer {us(pticks, ptx):.1f} us")
print(f"  of which user space: gatehouse {us(gu, tx):.1f} us   pgbouncer {us(pu, ptx):.1f} us;"
      f"  kernel: gatehouse {us(ticks - gu, tx):.1f} us   pgbouncer {us(pticks - pu, ptx):.1f} us")
print(f"context switches per transaction (voluntary + involuntary): "
      f"gatehouse {gv / tx:.2f} + {gn / tx:.2f}   pgbouncer {pv / ptx:.2f} + {pn / ptx:.2f}")
PY

if [ "${PROFILE:-0}" = 1 ] && command -v perf >/dev/null; then
    echo "== where Gatehouse's CPU goes (perf, cpu-clock samples, top symbols)"
    perf record -q -F 499 -e cpu-clock -g -p "$gh_pid" -o "$work/perf.data" -- sleep "$DURATION" 2>/dev/null &
    perf_pid=$!
    tps gatehouse "$GH_PORT" "$token" bench bench verify-full "$ca" >/dev/null
    wait "$perf_pid" || true
    perf report -i "$work/perf.data" --no-children --sort symbol --stdio 2>/dev/null \
        | grep -E '^ +[0-9.]+%' | head -40 || true
fi

echo "== bulk COPY TO STDOUT, $COPY_ROWS rows of ~1 KiB"
copy_sql="\\copy (select g, repeat('x', 1000) from generate_series(1, $COPY_ROWS) g) to '/dev/null'"
copy_run() { # port password sslmode sslrootcert
    local s e
    s=$(date +%s.%N)
    PGPASSWORD=$2 PGSSLMODE=$3 PGSSLROOTCERT=${4:-} psql -qX -h 127.0.0.1 -p "$1" -U gatehouse -d bench -c "$copy_sql" >/dev/null
    e=$(date +%s.%N)
    python3 -c "print($e - $s)"
}
bytes=$(PGPASSWORD=$password psql -qXAt -h 127.0.0.1 -p "$PG_PORT" -U gatehouse -d bench \
    -c "select sum(length(g::text) + 1002) from generate_series(1, $COPY_ROWS) g")
cd_t=$(copy_run "$PG_PORT" "$password" require)
cg_t=$(copy_run "$GH_PORT" "$token" verify-full "$ca")
python3 - "$bytes" "$cd_t" "$cg_t" <<'PY'
import sys
b, d, g = map(float, sys.argv[1:])
print(f"direct {b/d/1e6:.0f} MB/s   gatehouse {b/g/1e6:.0f} MB/s   ratio {d/g:.2f}   ({b/1e9:.2f} GB)")
PY

echo "== resident memory with $IDLE idle TLS sessions"
python3 bench/idle_sessions.py "$GH_PORT" "$ca" "$token" bench "$gh_pid" "$IDLE"
