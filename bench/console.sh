#!/usr/bin/env bash
# What the operator console costs and how fast it opens.
#
# 1. pgbench -S through Gatehouse with no console, and with two consoles
#    (`gatehouse console`, in tmux) open on the Sessions screen, rounds
#    interleaved: the consoles' subscription must not cost sessions.
# 2. A console opened on a store with RECORDINGS recordings (default
#    100,000, written by the real recorder beforehand): time until its
#    first screen is drawn, and until the Recordings screen shows its
#    first page.
#
# ROUNDS, DURATION, CLIENTS, RECORDINGS adjust it. Release build.
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-20}
RECORDINGS=${RECORDINGS:-100000}
source bench/lib.sh
cargo build --release -q -p gatehouse-actors --example fill_store
command -v tmux >/dev/null || { echo "tmux is needed (scripts/install-deps.sh)"; exit 1; }

{
    config_head db
    connection db bench
    echo '[policies.bench]'
} > "$work/gatehouse.toml"

echo "== filling the store with $RECORDINGS recordings"
"$CARGO_TARGET_DIR/release/examples/fill_store" "$work/data" "$RECORDINGS"
start_gatehouse

tmux_sock="$work/tmux.sock"
tm() { tmux -S "$tmux_sock" "$@"; }
open_console() { # name
    tm new-session -d -s "$1" -x 80 -y 24 \
        "exec env TERM=xterm $bin/gatehouse console --config $work/gatehouse.toml"
}
now_ms() { date +%s%3N; }
wait_screen() { # name needle; prints ms waited
    local t0 t
    t0=$(now_ms)
    for _ in $(seq 1000); do
        if tm capture-pane -p -t "$1" 2>/dev/null | grep -qF -- "$2"; then
            t=$(now_ms)
            echo $((t - t0))
            return 0
        fi
        sleep 0.01
    done
    echo "never saw '$2' on $1" >&2
    tm capture-pane -p -t "$1" >&2 || true
    return 1
}
close_consoles() { tm kill-server 2>/dev/null || true; }
trap 'close_consoles; cleanup' EXIT

echo "== a console on a store of $RECORDINGS recordings (3 openings)"
for i in 1 2 3; do
    t0=$(now_ms)
    open_console first
    wait_screen first "1 Sessions" >/dev/null
    t1=$(now_ms)
    tm send-keys -t first 3
    wait_screen first " shown, " >/dev/null
    t2=$(now_ms)
    printf "opening %d: first screen %d ms (process start to frame), recordings page %d ms after pressing 3\n" \
        "$i" $((t1 - t0)) $((t2 - t1))
    close_consoles
done

echo "== pgbench -S -c ${CLIENTS:-8} -j 2 -T $DURATION through Gatehouse, no console vs two consoles on Sessions, $ROUNDS interleaved rounds, all TLS"
sa=0
sb=0
for r in $(seq "$ROUNDS"); do
    x=$(tps none "$GH_PORT" "$token" bench db verify-full "$ca")
    open_console c1
    open_console c2
    wait_screen c1 "1 Sessions" >/dev/null
    wait_screen c2 "1 Sessions" >/dev/null
    y=$(tps consoles "$GH_PORT" "$token" bench db verify-full "$ca")
    # The consoles were live throughout: they show the pgbench sessions.
    tm capture-pane -p -t c1 | grep -q "bench" || echo "warning: console 1 did not show the sessions" >&2
    close_consoles
    printf "round %d: no console %.0f  two consoles %.0f tps\n" "$r" "$x" "$y"
    sa=$(python3 -c "print($sa + $x)")
    sb=$(python3 -c "print($sb + $y)")
done
python3 -c "
a, b = $sa / $ROUNDS, $sb / $ROUNDS
print(f'mean tps: no console {a:.0f}  two consoles {b:.0f}  ratio {b/a:.3f}')"
