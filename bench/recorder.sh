#!/usr/bin/env bash
# Recorder benchmark, one run on this machine, release build:
#  - the Recorder alone (actors/examples/recorder_bench.rs): events/s, raw
#    MB/s, compression, commits and events per commit, strict round trips,
#    storage per hour of a busy shell, and the disk's fdatasync and redb
#    commit floors;
#  - pgbench -S through Gatehouse (all TLS), strict recording against
#    batched, in interleaved rounds.
# Prints figures and ratios; never pass/fail.
#
#   PHASE_SECONDS  seconds per recorder phase          (default 3)
#   SESSIONS       simulated sessions per phase        (default 8)
#   PGBENCH        0 skips the run through Gatehouse   (default 1)
#   ROUNDS         interleaved pgbench rounds          (default 3)
#   DURATION       seconds per pgbench run             (default 10)
#   CLIENTS        pgbench clients                     (default 8)
#   PROFILE=1      also sample Gatehouse's CPU with perf, one run per mode
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/gatehouse-target}"

echo "== the Recorder alone"
cargo run --release -q -p gatehouse-actors --example recorder_bench
[ "${PGBENCH:-1}" = 1 ] || exit 0

source bench/lib.sh
{
    config_head batched strict
    connection batched batched
    connection strict strict
    printf '[policies.batched]\nrecording = "batched"\n[policies.strict]\nrecording = "strict"\n'
} > "$work/gatehouse.toml"
start_gatehouse

compare_tps batched strict
[ "${PROFILE:-0}" = 1 ] && profile_cpu batched strict
exit 0
