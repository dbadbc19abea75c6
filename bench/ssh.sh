#!/usr/bin/env bash
# SSH benchmark, one run on this machine, release build: OpenSSH's sshd as
# the target, reached directly and through Gatehouse (certificate login
# from `gatehouse login`, batched recording, no command rules), rounds
# interleaved. Prints figures and ratios; never pass/fail.
#  - throughput: `ssh HOST 'head -c SIZE /dev/zero' > /dev/null`, MB/s;
#  - echo round trip: one line through `cat` on an open session, repeated,
#    median and p99 (the difference is what the gateway adds);
#  - shell line round trip: in an interactive shell (`ssh -tt`), a typed
#    `echo` line to its output, median and p99, directly, through
#    Gatehouse, and through Gatehouse under command rules (where Enter is
#    held until the line on the screen is judged);
#  - connection setup: `ssh HOST true`, start to exit (key exchange, login
#    and, through Gatehouse, the login to the target);
#  - resident memory of the gateway per idle session, with IDLE sessions
#    open at once (each an exec of `sleep`).
#
#   ROUNDS    interleaved throughput rounds             (default 3)
#   SIZE_MB   bytes per throughput run, MiB             (default 1024)
#   ECHOES    echo round trips per side                 (default 500)
#   SETUPS    connection setups per side                (default 10)
#   IDLE      idle sessions for the memory figure       (default 200)
#   GATEHOUSE the gateway binary (default: the release build), e.g. an
#             older build to compare its CPU per GiB with
#   PERF      if set, a file: `perf record -g` of the gateway during the
#             throughput rounds goes there (then `perf report -i FILE`)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
SIZE_MB=${SIZE_MB:-1024}
ECHOES=${ECHOES:-500}
SETUPS=${SETUPS:-10}
IDLE=${IDLE:-200}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/gatehouse-target}"

bash scripts/install-deps.sh
cargo build --release -q -p gatehouse -p gatehouse-tests --bins
bin="$CARGO_TARGET_DIR/release"
USER_NAME=gatehouse-bench

work=$(mktemp -d /tmp/gatehouse-ssh-bench.XXXXXX)
chmod 755 "$work"
mkdir -p "$work"/{sshd,issuer,secrets,agent,direct}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
SSHD_PORT=$(free_port); SSH_PORT=$(free_port); API_PORT=$(free_port); ISS_PORT=$(free_port)
idle_pids=()
stop_idle() {
    for p in "${idle_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    idle_pids=()
}
cleanup() {
    stop_idle
    [ -n "${gh_pid:-}" ] && kill "$gh_pid" 2>/dev/null || true
    [ -n "${iss_pid:-}" ] && kill "$iss_pid" 2>/dev/null || true
    [ -n "${sshd_pid:-}" ] && kill "$sshd_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# The target: a throwaway sshd as root on loopback, a user whose password
# field is `*` (sshd without PAM refuses a locked `!`), two client keys:
# the gateway's and the direct baseline's.
id "$USER_NAME" >/dev/null 2>&1 || useradd -m -s /bin/bash "$USER_NAME"
usermod -p '*' "$USER_NAME"
mkdir -p /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$work/sshd/host_ed25519"
ssh-keygen -q -t ed25519 -N '' -f "$work/secrets/target.key"
ssh-keygen -q -t ed25519 -N '' -f "$work/direct/id_ed25519"
cat "$work/secrets/target.key.pub" "$work/direct/id_ed25519.pub" > "$work/sshd/authorized_keys"
chmod 644 "$work/sshd/authorized_keys"
cat > "$work/sshd/sshd_config" <<CONF
Port $SSHD_PORT
ListenAddress 127.0.0.1
HostKey $work/sshd/host_ed25519
PidFile none
AuthorizedKeysFile $work/sshd/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowUsers $USER_NAME
MaxStartups $((IDLE + 50))
MaxSessions 10
PrintMotd no
LogLevel ERROR
CONF
/usr/sbin/sshd -D -e -f "$work/sshd/sshd_config" 2> "$work/sshd.log" &
sshd_pid=$!
wait_port "$SSHD_PORT" || { cat "$work/sshd.log"; exit 1; }
echo "[127.0.0.1]:$SSHD_PORT $(cat "$work/sshd/host_ed25519.pub")" > "$work/direct/known_hosts"

"$bin/gatehouse-dev-issuer" serve --dir "$work/issuer" --port "$ISS_PORT" > "$work/issuer.log" 2>&1 &
iss_pid=$!
wait_port "$ISS_PORT"

cat > "$work/gatehouse.toml" <<TOML
[appliance]
name = "bench"
data_dir = "data"
[listen]
ssh = "127.0.0.1:$SSH_PORT"
api = "127.0.0.1:$API_PORT"
[auth.oidc]
issuer = "http://127.0.0.1:$ISS_PORT"
audience = "gatehouse"
algorithms = ["RS256"]
[limits]
max_sessions = $((IDLE + 100))
[[roles]]
name = "bench"
groups = ["bench"]
connections = ["target", "ruled"]
[[connections]]
name = "target"
kind = "ssh"
address = "127.0.0.1:$SSHD_PORT"
user = "$USER_NAME"
private_key_file = "secrets/target.key"
host_key = "$(cat "$work/sshd/host_ed25519.pub")"
policy = "default"
[[connections]]
name = "ruled"
kind = "ssh"
address = "127.0.0.1:$SSHD_PORT"
user = "$USER_NAME"
private_key_file = "secrets/target.key"
host_key = "$(cat "$work/sshd/host_ed25519.pub")"
policy = "ruled"
[policies.default]
recording = "batched"
[policies.ruled]
recording = "batched"
[[policies.ruled.rules]]
name = "no-wipe"
action = "block"
commands = ["rm -rf /*", "shutdown*", "reboot*", "mkfs*", "dd if=*"]
TOML
(cd "$work" && exec "${GATEHOUSE:-$bin/gatehouse}" serve --config gatehouse.toml) > "$work/gatehouse.log" 2>&1 &
gh_pid=$!
wait_port "$SSH_PORT" || { cat "$work/gatehouse.log"; exit 1; }
wait_port "$API_PORT" || { cat "$work/gatehouse.log"; exit 1; }

# The agent logs in the way a CI job does.
"$bin/gatehouse-dev-issuer" mint --dir "$work/issuer" --issuer "http://127.0.0.1:$ISS_PORT" \
    --sub bench --groups bench --ttl 7200 > "$work/agent/token"
"$bin/gatehouse" login --api "https://127.0.0.1:$API_PORT" --token-file "$work/agent/token" \
    --ca-file "$work/data/tls/ca.crt" --dir "$work/agent" > /dev/null

common=(-F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -o LogLevel=ERROR)
direct=(ssh "${common[@]}" -i "$work/direct/id_ed25519" -o UserKnownHostsFile="$work/direct/known_hosts"
    -p "$SSHD_PORT" "$USER_NAME@127.0.0.1")
through=(ssh "${common[@]}" -i "$work/agent/id_ed25519" -o UserKnownHostsFile="$work/agent/known_hosts"
    -p "$SSH_PORT" "target@127.0.0.1")
"${direct[@]}" true
"${through[@]}" true

echo "== memory: $IDLE idle sessions through Gatehouse (measured first, on a fresh gateway)"
rss() { awk '/^VmRSS/ {print $2}' "/proc/$gh_pid/status"; }
before=$(rss)
for i in $(seq "$IDLE"); do
    "${through[@]}" "sleep 3600" < /dev/null > /dev/null 2>&1 &
    idle_pids+=($!)
    # sshd's MaxStartups and the gateway's login pace: a few at a time.
    [ $((i % 10)) = 0 ] && sleep 1
done
for _ in $(seq 120); do
    open=$(ss -Htn state established "( sport = :$SSH_PORT )" | wc -l)
    [ "$open" -ge "$IDLE" ] && break
    sleep 1
done
sleep 3
after=$(rss)
echo "established agent connections: $open of $IDLE"
python3 -c "print(f'gateway RSS: {$before / 1024:.1f} MiB before, {$after / 1024:.1f} MiB with $open sessions: {($after - $before) / max($open, 1):.0f} KiB per idle session')"
stop_idle
sleep 2

now() { date +%s.%N; }
# The gateway's CPU time so far, user + system, in clock ticks.
cpu() { awk '{ print $14 + $15 }' "/proc/$gh_pid/stat"; }
echo "== throughput: head -c ${SIZE_MB}MiB /dev/zero > /dev/null, $ROUNDS interleaved rounds"
sd=0 st=0 ticks=0
if [ -n "${PERF:-}" ]; then
    perf record -q -g -o "$PERF" -p "$gh_pid" > /dev/null 2>&1 &
    perf_pid=$!
fi
for r in $(seq "$ROUNDS"); do
    t0=$(now); "${direct[@]}" "head -c $((SIZE_MB * 1048576)) /dev/zero" > /dev/null; t1=$(now)
    c0=$(cpu)
    "${through[@]}" "head -c $((SIZE_MB * 1048576)) /dev/zero" > /dev/null; t2=$(now)
    ticks=$((ticks + $(cpu) - c0))
    read -r d t < <(python3 -c "print($SIZE_MB * 1.048576 / ($t1 - $t0), $SIZE_MB * 1.048576 / ($t2 - $t1))")
    printf 'round %d: direct %.0f MB/s  Gatehouse %.0f MB/s\n' "$r" "$d" "$t"
    sd=$(python3 -c "print($sd + $d)"); st=$(python3 -c "print($st + $t)")
done
python3 -c "d, t = $sd / $ROUNDS, $st / $ROUNDS; print(f'mean: direct {d:.0f} MB/s  Gatehouse {t:.0f} MB/s  ratio {t/d:.2f}')"
python3 -c "print(f'gateway CPU (user + system) per GiB relayed: {$ticks / $(getconf CLK_TCK) / ($ROUNDS * $SIZE_MB / 1024):.2f} s')"
if [ -n "${perf_pid:-}" ]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi

echo "== echo round trip: one line through cat on an open session, $ECHOES times each"
cat > "$work/echo.py" <<'PY'
import subprocess, sys, time
n = int(sys.argv[1])
p = subprocess.Popen(sys.argv[2:] + ["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
line = b"x" * 32 + b"\n"
for _ in range(20):  # warm up
    p.stdin.write(line); p.stdout.readline()
times = []
for _ in range(n):
    t = time.perf_counter(); p.stdin.write(line); p.stdout.readline(); times.append(time.perf_counter() - t)
p.stdin.close(); p.wait()
times.sort()
print(f"{times[len(times) // 2] * 1e3:.3f} {times[int(len(times) * 0.99)] * 1e3:.3f}")
PY
read -r dm dp < <(python3 "$work/echo.py" "$ECHOES" "${direct[@]}")
read -r tm tp < <(python3 "$work/echo.py" "$ECHOES" "${through[@]}")
printf 'direct    median %s ms  p99 %s ms\nGatehouse median %s ms  p99 %s ms\n' "$dm" "$dp" "$tm" "$tp"
python3 -c "print(f'added: median {($tm - $dm):.3f} ms  p99 {($tp - $dp):.3f} ms')"

echo "== shell line round trip: ssh -tt HOST, a typed echo line to its output, $((ECHOES / 5)) times each"
cat > "$work/line.py" <<'PY'
import os, pty, select, sys, time
n = int(sys.argv[1])
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:] + ["-tt"])
def until(needle, limit=20.0):
    buf, end = b"", time.time() + limit
    while needle not in buf:
        r, _, _ = select.select([fd], [], [], max(0.0, end - time.time()))
        if not r:
            sys.exit(f"timed out waiting for {needle!r}: {buf[-200:]!r}")
        buf += os.read(fd, 65536)
os.write(fd, b"PS1='$ '; stty -echoctl\r")
until(b"$ ")
times = []
for i in range(n + 5):
    want = str(100000 + i).encode()
    t = time.perf_counter()
    os.write(fd, b"echo $((100000+%d))\r" % i)
    until(want + b"\r\n")
    if i >= 5:
        times.append(time.perf_counter() - t)
os.write(fd, b"exit\r")
times.sort()
print(f"{times[len(times) // 2] * 1e3:.3f} {times[int(len(times) * 0.99)] * 1e3:.3f}")
PY
ruled=("${through[@]}")
ruled[-1]="ruled@127.0.0.1"
read -r ldm ldp < <(python3 "$work/line.py" "$((ECHOES / 5))" "${direct[@]}")
read -r ltm ltp < <(python3 "$work/line.py" "$((ECHOES / 5))" "${through[@]}")
read -r lrm lrp < <(python3 "$work/line.py" "$((ECHOES / 5))" "${ruled[@]}")
printf 'direct                       median %s ms  p99 %s ms\n' "$ldm" "$ldp"
printf 'Gatehouse                    median %s ms  p99 %s ms\n' "$ltm" "$ltp"
printf 'Gatehouse, command rules     median %s ms  p99 %s ms\n' "$lrm" "$lrp"
python3 -c "print(f'added by the line judgement: median {($lrm - $ltm):.3f} ms  p99 {($lrp - $ltp):.3f} ms')"

echo "== connection setup: ssh HOST true, $SETUPS times each, interleaved"
setups_d=() setups_t=()
for _ in $(seq "$SETUPS"); do
    t0=$(now); "${direct[@]}" true; t1=$(now); "${through[@]}" true; t2=$(now)
    setups_d+=("$(python3 -c "print($t1 - $t0)")"); setups_t+=("$(python3 -c "print($t2 - $t1)")")
done
python3 - "${setups_d[*]}" "${setups_t[*]}" <<'PY'
import statistics, sys
d = [float(x) for x in sys.argv[1].split()]
t = [float(x) for x in sys.argv[2].split()]
print(f"median: direct {statistics.median(d) * 1e3:.0f} ms  Gatehouse {statistics.median(t) * 1e3:.0f} ms")
PY

