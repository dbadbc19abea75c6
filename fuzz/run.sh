#!/usr/bin/env bash
# Fuzz every target for SECONDS each (default 60) and print executions and
# coverage per target:
#
#   bash fuzz/run.sh [SECONDS] [TARGET...]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). Uses the nightly toolchain
# when one is installed, else the default one (coverage instrumentation
# needs no nightly feature; only AddressSanitizer does, and the targets are
# safe Rust, so it is off unless FUZZ_SANITIZER=address).
#
# Each run starts from the committed seeds in fuzz/corpus/TARGET and writes
# what it finds to $FUZZ_WORK (default /var/tmp/gatehouse-fuzz), never to
# the repository: new inputs to $FUZZ_WORK/corpus/TARGET, crashes to
# $FUZZ_WORK/artifacts/TARGET. A crash makes the script exit 1 once every
# target has run. To keep what a long run found, minimise it into the
# committed corpus:
#   cargo fuzz cmin --features libfuzzer -O -a -s none TARGET fuzz/corpus/TARGET
# after copying $FUZZ_WORK/corpus/TARGET/* into it.
#
# Every input runs under a memory limit (-rss_limit_mb, -malloc_limit_mb)
# and a time limit (-timeout), so unbounded allocation and hangs are
# findings too. FUZZ_JOBS=N runs N targets at once (default 1);
# FUZZ_WORKERS=N runs N fuzzer processes per target sharing its corpus
# (default 1; executions add up, coverage is the best worker's).
# FUZZ_RUNS=N stops each process after N executions (default: time only).
# Nice it on a shared machine; never pause it (SIGSTOP): libFuzzer counts
# the pause against the input it was running and reports a timeout.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
work="${FUZZ_WORK:-/var/tmp/gatehouse-fuzz}"
sanitizer="${FUZZ_SANITIZER:-none}"
toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    toolchain=(+nightly)
fi
command -v cargo-fuzz >/dev/null || {
    echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2
    exit 2
}
# FUZZ_FEATURES=libfuzzer leaves out the appliance targets (oidc_header,
# config_load) and the appliance's dependencies from the build.
flags=(--no-default-features --features "${FUZZ_FEATURES:-libfuzzer,appliance}" -O -a -s "$sanitizer")
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
    flags+=(--target-dir "$CARGO_TARGET_DIR")
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo "${toolchain[@]}" fuzz list)
    if [ "${FUZZ_FEATURES:-}" = libfuzzer ]; then
        mapfile -t targets < <(printf '%s\n' "${targets[@]}" | grep -vx 'oidc_header\|config_load')
    fi
fi

# Longest input per target: frames and SQL need room for real messages;
# the structure-aware targets need only their decisions.
max_len() {
    case "$1" in
        pg_frames | pg_target) echo 8192 ;;
        sql_text) echo 8192 ;;
        *) echo 4096 ;;
    esac
}

cargo "${toolchain[@]}" fuzz build "${flags[@]}" >&2

workers="${FUZZ_WORKERS:-1}"
runs=()
[ -n "${FUZZ_RUNS:-}" ] && runs=(-runs="$FUZZ_RUNS")

run_one() {
    local t="$1" w
    mkdir -p "$work/corpus/$t" "$work/artifacts/$t" "$work/logs"
    rm -f "$work/logs/$t".*log
    # Input files are never written into fuzz/corpus: the first corpus
    # directory receives new inputs (and, with several workers, each
    # picks up the others' from it: -reload).
    for w in $(seq 1 "$workers"); do
        cargo "${toolchain[@]}" fuzz run "${flags[@]}" "$t" "$work/corpus/$t" "fuzz/corpus/$t" -- \
            -max_total_time="$seconds" "${runs[@]}" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 \
            -max_len="$(max_len "$t")" -print_final_stats=1 -reload=1 -artifact_prefix="$work/artifacts/$t/" \
            >"$work/logs/$t.$w.log" 2>&1 &
    done
    wait || true
}

jobs_max="${FUZZ_JOBS:-1}"
for t in "${targets[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n || true; done
    run_one "$t" &
done
wait

printf '%-12s %14s %8s %8s %8s %9s\n' target executions exec/s cov features crashes
failed=0
sum_stat() { # NAME LOG...: the stat's value summed over the logs
    local name=$1
    shift
    grep -ho "stat::$name: *[0-9]*" "$@" | awk '{ s += $2; n++ } END { if (n) print s; else print "?" }'
}
for t in "${targets[@]}"; do
    logs=("$work/logs/$t".*.log)
    execs=$(sum_stat number_of_executed_units "${logs[@]}")
    rate=$(sum_stat average_exec_per_sec "${logs[@]}")
    cov=0 ft=0
    for log in "${logs[@]}"; do
        last=$(grep -E '^#[0-9]+' "$log" | tail -1)
        c=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
        f=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
        [ "${c:-0}" -gt "$cov" ] && cov=$c
        [ "${f:-0}" -gt "$ft" ] && ft=$f
    done
    crashes=$(find "$work/artifacts/$t" -type f | wc -l)
    printf '%-12s %14s %8s %8s %8s %9s\n' "$t" "$execs" "$rate" "$cov" "$ft" "$crashes"
    unfinished=$(grep -L 'Done [0-9]* runs' "${logs[@]}" || true)
    if [ "$crashes" -gt 0 ] || [ -n "$unfinished" ]; then
        failed=1
        echo "  $t: see $work/artifacts/$t${unfinished:+ and }$(echo $unfinished)" >&2
    fi
done
exit "$failed"
