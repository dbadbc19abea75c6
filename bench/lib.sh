# Shared by the benchmark scripts: a throwaway PostgreSQL with TLS, the
# development OIDC issuer, helpers. Source it after setting IDLE (max
# connections headroom) if needed. Everything listens on 127.0.0.1.
set -euo pipefail
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/gatehouse-target}"

WITH_BENCH=1 bash scripts/install-deps.sh
# Benchmarks measure release builds; a script that only checks behaviour
# may set BUILD_PROFILE=debug first.
BUILD_PROFILE=${BUILD_PROFILE:-release}
if [ "$BUILD_PROFILE" = debug ]; then
    cargo build -q -p gatehouse -p gatehouse-tests --bins
else
    cargo build --release -q -p gatehouse -p gatehouse-tests --bins
fi
bin="$CARGO_TARGET_DIR/$BUILD_PROFILE"
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

work=$(mktemp -d /tmp/gatehouse-bench.XXXXXX)
chmod 755 "$work"
mkdir -p "$work"/{pg,issuer,secrets,pgbouncer}
chown postgres:postgres "$work/pg" "$work/pgbouncer"
as_pg() { runuser -u postgres -- "$@"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
PG_PORT=$(free_port); GH_PORT=$(free_port); PGB_PORT=$(free_port); ISS_PORT=$(free_port)

cleanup() {
    [ -n "${gh_pid:-}" ] && kill "$gh_pid" 2>/dev/null || true
    [ -n "${iss_pid:-}" ] && kill "$iss_pid" 2>/dev/null || true
    [ -n "${pgb_pid:-}" ] && kill "$pgb_pid" 2>/dev/null || true
    as_pg "$pgbin/pg_ctl" -D "$work/pg/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# PostgreSQL with TLS on, a superuser `gatehouse` and a pgbench database.
password=$(openssl rand -hex 16)
as_pg "$pgbin/initdb" -D "$work/pg/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 >/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$work/pg/data/server.key" -out "$work/pg/data/server.crt" 2>/dev/null
chown postgres:postgres "$work/pg/data/server.key" "$work/pg/data/server.crt"
chmod 600 "$work/pg/data/server.key"
as_pg "$pgbin/pg_ctl" -D "$work/pg/data" -l "$work/pg/log" -w -o "-p $PG_PORT -k $work/pg \
    -c listen_addresses=127.0.0.1 -c ssl=on -c max_connections=$((${IDLE:-0} + 100)) -c shared_buffers=256MB \
    -c fsync=off -c synchronous_commit=off" start >/dev/null
as_pg psql -qX -h "$work/pg" -p "$PG_PORT" -U postgres -d postgres \
    -c "CREATE ROLE gatehouse LOGIN SUPERUSER PASSWORD '$password'" -c "CREATE DATABASE bench OWNER gatehouse"
printf '%s\n' "$password" > "$work/secrets/pg.password"
PGPASSWORD=$password PGSSLMODE=require "$pgbin/pgbench" -q -i -s 10 -h 127.0.0.1 -p "$PG_PORT" -U gatehouse bench >/dev/null 2>&1

"$bin/gatehouse-dev-issuer" serve --dir "$work/issuer" --port "$ISS_PORT" > "$work/issuer.log" 2>&1 &
iss_pid=$!
wait_port "$ISS_PORT"

# A [[connections]] entry for the bench database under policy $2.
connection() { # name policy
    cat <<TOML
[[connections]]
name = "$1"
kind = "postgres"
address = "127.0.0.1:$PG_PORT"
database = "bench"
user = "gatehouse"
password_file = "secrets/pg.password"
tls = "disable"
policy = "$2"
TOML
}

# Config head: appliance, listener, issuer, a role granting $@.
config_head() {
    local list
    list=$(printf '"%s", ' "$@")
    cat <<TOML
[appliance]
name = "bench"
data_dir = "data"
[listen]
postgres = "127.0.0.1:$GH_PORT"
[auth.oidc]
issuer = "http://127.0.0.1:$ISS_PORT"
audience = "gatehouse"
algorithms = ["RS256"]
[limits]
max_sessions = $((${IDLE:-0} + 100))
${WORKERS:+workers = $WORKERS}
[[roles]]
name = "bench"
groups = ["bench"]
connections = [${list%, }]
TOML
}

start_gatehouse() {
    "$bin/gatehouse" serve --config "$work/gatehouse.toml" > "$work/gatehouse.log" 2>&1 &
    gh_pid=$!
    wait_port "$GH_PORT" || { cat "$work/gatehouse.log"; exit 1; }
    token=$("$bin/gatehouse-dev-issuer" mint --dir "$work/issuer" --issuer "http://127.0.0.1:$ISS_PORT" \
        --sub bench --groups bench --ttl 7200)
    ca="$work/data/tls/ca.crt"
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# User-space and total CPU ticks, from one read: "user total".
user_and_cpu_ticks() { awk '{print $14, $14 + $15}' "/proc/$1/stat"; }
# Context switches of every thread of a process, summed: "voluntary
# involuntary" (a voluntary one is a thread going to sleep for want of
# work; each costs a sleep and a wake-up in the kernel).
ctx_switches() {
    cat /proc/"$1"/task/*/status 2>/dev/null | awk '
        /^voluntary_ctxt_switches/ { v += $2 }
        /^nonvoluntary_ctxt_switches/ { n += $2 }
        END { print v + 0, n + 0 }'
}
tps() { # name port password user db sslmode [sslrootcert]
    local out
    out=$(PGPASSWORD=$3 PGSSLMODE=$6 PGSSLROOTCERT=${7:-} "$pgbin/pgbench" -n -S -c "${CLIENTS:-8}" -j 2 -T "$DURATION" \
        -h 127.0.0.1 -p "$2" -U "$4" "$5" 2>&1) || { echo "$out" >&2; return 1; }
    echo "$out" | awk '/^tps = .*without initial/ {print $3}'
}

# One pgbench run on a connection of the running gateway: its TPS in
# $side_tps, Gatehouse's CPU ticks during it in $side_ticks.
side() { # connection
    local t0
    t0=$(cpu_ticks "$gh_pid")
    side_tps=$(tps "$1" "$GH_PORT" "$token" bench "$1" verify-full "$ca")
    side_ticks=$(($(cpu_ticks "$gh_pid") - t0))
}

compare_tps() { # baseline candidate: connections (and labels) on the running gateway
    local a=$1 b=$2 sa=0 sb=0 ca_=0 cb_=0 r x y xt yt
    local hz
    hz=$(getconf CLK_TCK)
    echo "== pgbench -S -c ${CLIENTS:-8} -j 2 -T $DURATION through Gatehouse, $a vs $b, $ROUNDS interleaved rounds, all TLS"
    # Even rounds run the candidate first: whatever the first run of a
    # round leaves behind (the recorder sealing its sessions, caches)
    # falls on both sides alike.
    for r in $(seq "$ROUNDS"); do
        if [ $((r % 2)) = 1 ]; then
            side "$a"; x=$side_tps xt=$side_ticks
            side "$b"; y=$side_tps yt=$side_ticks
        else
            side "$b"; y=$side_tps yt=$side_ticks
            side "$a"; x=$side_tps xt=$side_ticks
        fi
        printf "round %d: %s %.0f  %s %.0f tps\n" "$r" "$a" "$x" "$b" "$y"
        sa=$(python3 -c "print($sa + $x)")
        sb=$(python3 -c "print($sb + $y)")
        # Gatehouse CPU per transaction, µs, summed over rounds.
        ca_=$(python3 -c "print($ca_ + $xt / $hz / ($x * $DURATION) * 1e6)")
        cb_=$(python3 -c "print($cb_ + $yt / $hz / ($y * $DURATION) * 1e6)")
    done
    python3 -c "
a, b = $sa / $ROUNDS, $sb / $ROUNDS
print(f'mean tps: $a {a:.0f}  $b {b:.0f}  ratio $b/$a {b/a:.2f}')
print(f'gatehouse CPU per transaction: $a {$ca_ / $ROUNDS:.1f} us  $b {$cb_ / $ROUNDS:.1f} us')"
}

# Where Gatehouse's CPU goes on each named connection: one pgbench run per
# side under perf (cpu-clock samples), top symbols. PERF_CALLGRAPH picks
# perf's --call-graph mode (fp); PERF_KEEP=PREFIX keeps the data files.
profile_cpu() { # connection...
    command -v perf >/dev/null || { echo "(perf not installed: no profile)"; return 0; }
    local conn perf_pid
    for conn in "$@"; do
        echo "== where Gatehouse's CPU goes on $conn (perf, cpu-clock samples, top symbols)"
        perf record -q -F 499 -e cpu-clock --call-graph "${PERF_CALLGRAPH:-fp}" -p "$gh_pid" -o "$work/perf-$conn.data" -- sleep "$DURATION" 2>/dev/null &
        perf_pid=$!
        tps "$conn" "$GH_PORT" "$token" bench "$conn" verify-full "$ca" >/dev/null
        wait "$perf_pid" || true
        perf report -i "$work/perf-$conn.data" --no-children --sort symbol --stdio 2>/dev/null \
            | grep -E '^ +[0-9.]+%' | head -40 || true
        [ -n "${PERF_KEEP:-}" ] && cp "$work/perf-$conn.data" "$PERF_KEEP-$conn.data"
    done
    return 0
}
