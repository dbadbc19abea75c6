#!/usr/bin/env bash
# SQL policy benchmark, one run on this machine, release build, all TLS:
#  - pgbench -S through Gatehouse with no policy vs a policy of 20 block
#    rules and 5 mask rules (column rules and detectors);
#  - a bulk COPY TO STDOUT of rows with e-mails and card numbers, with the
#    e-mail and card detectors on vs off;
#  - per-statement classification cost (median µs, short and ~10 KB SQL).
# Prints ratios; never pass/fail.
#
#   ROUNDS     interleaved pgbench rounds     (default 3)
#   DURATION   seconds per pgbench run        (default 20)
#   COPY_ROWS  rows of ~1 KiB for the COPY    (default 1000000, ≈1 GB)
#   PROFILE=1  also sample Gatehouse's CPU with perf, one run per side
#              (PERF_KEEP=PREFIX keeps the perf.data files)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-20}
COPY_ROWS=${COPY_ROWS:-1000000}
source bench/lib.sh

{
    config_head plain guarded detect
    connection plain open
    connection guarded guarded
    connection detect detect
    cat <<'TOML'
[policies.open]
recording = "batched"

[policies.detect]
recording = "batched"
[[policies.detect.masks]]
detectors = ["email", "credit_card"]

[policies.guarded]
recording = "batched"
TOML
    # 20 block rules of the kinds a production policy has.
    for kind in drop truncate alter grant revoke create_role alter_role drop_role create_extension copy_program; do
        printf '[[policies.guarded.rules]]\naction = "block"\nstatements = ["%s"]\n' "$kind"
    done
    for fn in pg_read_file pg_read_binary_file pg_ls_dir lo_export lo_import "dblink*" pg_terminate_backend; do
        printf '[[policies.guarded.rules]]\naction = "block"\nfunctions = ["%s"]\n' "$fn"
    done
    printf '[[policies.guarded.rules]]\naction = "block"\nstatements = ["delete", "update"]\nwithout_where = true\n'
    printf '[[policies.guarded.rules]]\naction = "block"\ntables = ["pg_authid", "pg_shadow", "secret_keys"]\n'
    printf '[[policies.guarded.rules]]\naction = "block"\nstatements = ["do"]\n'
    # 5 mask rules: columns and detectors.
    cat <<'TOML'
[[policies.guarded.masks]]
columns = ["email", "customers.ssn"]
strategy = "partial"
[[policies.guarded.masks]]
columns = ["pgbench_accounts.filler"]
strategy = "hash"
[[policies.guarded.masks]]
detectors = ["credit_card", "email"]
[[policies.guarded.masks]]
detectors = ["us_ssn", "iban"]
[[policies.guarded.masks]]
detectors = ["aws_access_key", "jwt", "pem_private_key"]
TOML
} > "$work/gatehouse.toml"
"$bin/gatehouse" check-config --config "$work/gatehouse.toml" >/dev/null
start_gatehouse

compare_tps plain guarded

[ "${PROFILE:-0}" = 1 ] && profile_cpu plain guarded

echo "== COPY TO STDOUT, $COPY_ROWS rows of ~1 KiB with e-mails and card numbers"
copy_sql="\\copy (select g, 'user' || g || '@example.com', '4111 1111 1111 1111', repeat('x', 960) from generate_series(1, $COPY_ROWS) g) to '/dev/null'"
copy_run() { # dbname
    local s e
    s=$(date +%s.%N)
    PGPASSWORD=$token PGSSLMODE=verify-full PGSSLROOTCERT=$ca psql -qX -h 127.0.0.1 -p "$GH_PORT" -U bench -d "$1" -c "$copy_sql" >/dev/null
    e=$(date +%s.%N)
    python3 -c "print($e - $s)"
}
bytes=$(PGPASSWORD=$password psql -qXAt -h 127.0.0.1 -p "$PG_PORT" -U gatehouse -d bench \
    -c "select sum(length(g::text) * 2 + 13 + 19 + 960 + 4) from generate_series(1, $COPY_ROWS) g")
off=$(copy_run plain)
on=$(copy_run detect)
python3 - "$bytes" "$off" "$on" <<'PY'
import sys
b, off, on = map(float, sys.argv[1:])
print(f"detectors off {b/off/1e6:.0f} MB/s   e-mail + card detectors on {b/on/1e6:.0f} MB/s   ratio {off/on:.2f}   ({b/1e9:.2f} GB)")
PY

echo "== classification cost per statement"
cargo run --release -q -p gatehouse-actors --example classify_bench
