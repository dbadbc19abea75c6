#!/usr/bin/env bash
# Bring up a working demo on this machine: a real local PostgreSQL target
# with sample data, a development OIDC issuer on loopback, and Gatehouse in
# front of the database. Prints the exact psql command to try (with a fresh
# token), then waits; Ctrl-C stops everything.
#
#   DEMO_DIR   where state goes          (default /tmp/gatehouse-demo)
#   DEMO_PORT  Gatehouse's listen port   (default 6432)
#   ADMIN_PORT the admin SSH endpoint     (default 2222)
#   SSH_PORT   Gatehouse's SSH listener   (default 2200)
#   SSHD_PORT  the demo's sshd target     (default 52222)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
DEMO_DIR=${DEMO_DIR:-/tmp/gatehouse-demo}
DEMO_PORT=${DEMO_PORT:-6432}
PG_PORT=${PG_PORT:-55432}
ISSUER_PORT=${ISSUER_PORT:-18080}
ADMIN_PORT=${ADMIN_PORT:-2222}
SSH_PORT=${SSH_PORT:-2200}
SSHD_PORT=${SSHD_PORT:-52222}
SSH_USER=gatehouse-demo
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/gatehouse-target}"

bash scripts/install-deps.sh
echo "building gatehouse (release)..."
cargo build --release -q -p gatehouse -p gatehouse-tests --bins
bin="$CARGO_TARGET_DIR/release"
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR"/{pg,issuer,secrets,operator,sshd,agent}
# The demo operator's SSH key, for the admin endpoint.
ssh-keygen -q -t ed25519 -N '' -C demo-operator -f "$DEMO_DIR/operator/id_ed25519"
operator_key=$(cat "$DEMO_DIR/operator/id_ed25519.pub")
chmod 755 "$DEMO_DIR"
chown postgres:postgres "$DEMO_DIR/pg"
as_pg() { runuser -u postgres -- "$@"; }

cleanup() {
    echo; echo "stopping demo..."
    [ -n "${gh_pid:-}" ] && kill -TERM "$gh_pid" 2>/dev/null && wait "$gh_pid" 2>/dev/null || true
    [ -n "${iss_pid:-}" ] && kill "$iss_pid" 2>/dev/null || true
    [ -n "${sshd_pid:-}" ] && kill "$sshd_pid" 2>/dev/null || true
    as_pg "$pgbin/pg_ctl" -D "$DEMO_DIR/pg/data" -m fast stop >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM

# The target: a throwaway cluster with SCRAM and a sample table.
password=$(openssl rand -hex 16)
as_pg "$pgbin/initdb" -D "$DEMO_DIR/pg/data" -U postgres --auth-local=trust \
    --auth-host=scram-sha-256 >/dev/null
as_pg "$pgbin/pg_ctl" -D "$DEMO_DIR/pg/data" -l "$DEMO_DIR/pg/log" -w \
    -o "-p $PG_PORT -k $DEMO_DIR/pg -c listen_addresses=127.0.0.1" start >/dev/null
as_pg psql -q -h "$DEMO_DIR/pg" -p "$PG_PORT" -U postgres -d postgres <<SQL
CREATE ROLE gatehouse LOGIN PASSWORD '$password';
CREATE DATABASE "orders-db" OWNER gatehouse;
SQL
PGPASSWORD=$password psql -q -h 127.0.0.1 -p "$PG_PORT" -U gatehouse -d orders-db <<'SQL'
CREATE TABLE customers (id serial PRIMARY KEY, name text, email text, note text);
INSERT INTO customers (name, email, note) VALUES
  ('Ada', 'ada@example.com', 'paid with 4111 1111 1111 1111'),
  ('Grace', 'grace@example.com', 'prefers invoices'),
  ('Linus', 'linus@example.com', 'card 5500-0000-0000-0004 on file');
SQL
printf '%s\n' "$password" > "$DEMO_DIR/secrets/orders-db.password"
chmod 600 "$DEMO_DIR/secrets/orders-db.password"

# The SSH target: a local sshd on loopback that lets one demo user in with
# the key only Gatehouse holds.
id "$SSH_USER" >/dev/null 2>&1 || useradd -m -s /bin/bash "$SSH_USER"
usermod -p '*' "$SSH_USER"   # not locked: sshd without PAM refuses '!'
mkdir -p /run/sshd
ssh-keygen -q -t ed25519 -N '' -C demo-sshd -f "$DEMO_DIR/sshd/host_ed25519"
ssh-keygen -q -t ed25519 -N '' -C gatehouse-demo -f "$DEMO_DIR/secrets/web-1.key"
cp "$DEMO_DIR/secrets/web-1.key.pub" "$DEMO_DIR/sshd/authorized_keys"
chmod 644 "$DEMO_DIR/sshd/authorized_keys"
cat > "$DEMO_DIR/sshd/sshd_config" <<CONF
Port $SSHD_PORT
ListenAddress 127.0.0.1
HostKey $DEMO_DIR/sshd/host_ed25519
PidFile $DEMO_DIR/sshd/sshd.pid
AuthorizedKeysFile $DEMO_DIR/sshd/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowUsers $SSH_USER
AcceptEnv LANG LC_*
Subsystem sftp internal-sftp
PrintMotd no
CONF
/usr/sbin/sshd -D -e -f "$DEMO_DIR/sshd/sshd_config" > "$DEMO_DIR/sshd/log" 2>&1 &
sshd_pid=$!
echo "Hello from the demo host; card 4111 1111 1111 1111 on file" > "/home/$SSH_USER/notes.txt"
chown "$SSH_USER:" "/home/$SSH_USER/notes.txt"

# A development identity provider (never for production).
"$bin/gatehouse-dev-issuer" serve --dir "$DEMO_DIR/issuer" --port "$ISSUER_PORT" \
    > "$DEMO_DIR/issuer.log" 2>&1 &
iss_pid=$!
issuer="http://127.0.0.1:$ISSUER_PORT"
wait_port() {
    for _ in $(seq 100); do
        (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}
wait_port "$ISSUER_PORT" || { cat "$DEMO_DIR/issuer.log"; exit 1; }

cat > "$DEMO_DIR/gatehouse.toml" <<TOML
[appliance]
name = "demo"
data_dir = "data"

[listen]
postgres = "127.0.0.1:$DEMO_PORT"
ssh = "127.0.0.1:$SSH_PORT"
admin_ssh = "127.0.0.1:$ADMIN_PORT"

[[operators]]
name = "demo"
public_key = "$operator_key"
approver = true

[auth.oidc]
issuer = "$issuer"
audience = "gatehouse"
groups_claim = "groups"
algorithms = ["RS256", "ES256"]

[[roles]]
name = "deployers"
groups = ["ci-deploy"]
connections = ["orders-db", "web-1"]

[[connections]]
name = "orders-db"
kind = "postgres"
address = "127.0.0.1:$PG_PORT"
database = "orders-db"
user = "gatehouse"
password_file = "secrets/orders-db.password"
tls = "disable"
policy = "default"

[[connections]]
name = "web-1"
kind = "ssh"
address = "127.0.0.1:$SSHD_PORT"
user = "$SSH_USER"
private_key_file = "secrets/web-1.key"
host_key = "$(cat "$DEMO_DIR/sshd/host_ed25519.pub")"
policy = "shell"

[policies.shell]
recording = "batched"

[[policies.shell.rules]]
name = "no-wipe"
action = "block"
commands = ["rm -rf *", "shutdown*", "reboot*"]
message = "destructive commands go through change control"

[[policies.shell.rules]]
name = "restarts"
action = "approve"
commands = ["sudo *"]
timeout = "2m"

[[policies.shell.masks]]
detectors = ["credit_card"]

[policies.default]
recording = "batched"

[[policies.default.rules]]
name = "no-ddl"
action = "block"
statements = ["drop", "truncate", "alter"]
message = "schema changes go through migrations"

[[policies.default.rules]]
name = "deletes-need-approval"
action = "approve"
statements = ["delete"]
timeout = "2m"

[[policies.default.masks]]
columns = ["customers.email"]
strategy = "partial"

[[policies.default.masks]]
detectors = ["credit_card"]
TOML

"$bin/gatehouse" check-config --config "$DEMO_DIR/gatehouse.toml"
"$bin/gatehouse" serve --config "$DEMO_DIR/gatehouse.toml" > "$DEMO_DIR/gatehouse.log" 2>&1 &
gh_pid=$!
wait_port "$DEMO_PORT" || { cat "$DEMO_DIR/gatehouse.log"; exit 1; }
wait_port "$ADMIN_PORT" || { cat "$DEMO_DIR/gatehouse.log"; exit 1; }
wait_port "$SSH_PORT" || { cat "$DEMO_DIR/gatehouse.log"; exit 1; }
# The agent pins the gateway's SSH host key, and logs in with its token
# as the password through SSH_ASKPASS (a short dev token fits OpenSSH's
# 1,023-byte prompt).
echo "[127.0.0.1]:$SSH_PORT $(ssh-keygen -y -f "$DEMO_DIR/data/ssh-host.key")" \
    > "$DEMO_DIR/agent/known_hosts"
# Pin the endpoint's host key (created on first start) for the demo's ssh.
echo "[127.0.0.1]:$ADMIN_PORT $(ssh-keygen -y -f "$DEMO_DIR/data/admin-ssh-host.key")" \
    > "$DEMO_DIR/operator/known_hosts"

ssh_opts="-i $DEMO_DIR/operator/id_ed25519 -o UserKnownHostsFile=$DEMO_DIR/operator/known_hosts"
ssh="ssh -p $ADMIN_PORT $ssh_opts demo@127.0.0.1"
token=$("$bin/gatehouse-dev-issuer" mint --dir "$DEMO_DIR/issuer" --issuer "$issuer" \
    --sub ci-runner-7 --groups ci-deploy --ttl 3600)
printf '%s' "$token" > "$DEMO_DIR/agent/token"
chmod 600 "$DEMO_DIR/agent/token"
printf '#!/bin/sh\ncat %s\n' "$DEMO_DIR/agent/token" > "$DEMO_DIR/agent/askpass"
chmod 700 "$DEMO_DIR/agent/askpass"
agent_env="SSH_ASKPASS=$DEMO_DIR/agent/askpass SSH_ASKPASS_REQUIRE=force"
agent_opts="-o UserKnownHostsFile=$DEMO_DIR/agent/known_hosts -o PreferredAuthentications=password -o PubkeyAuthentication=no"
cat <<MSG

Gatehouse is running in front of PostgreSQL (log: $DEMO_DIR/gatehouse.log).
Try it — the password is an OIDC token for ci-runner-7, valid for an hour:

  PGPASSWORD='$token' psql "host=127.0.0.1 port=$DEMO_PORT dbname=orders-db user=ci-runner-7 sslmode=verify-full sslrootcert=$DEMO_DIR/data/tls/ca.crt" -c 'select * from customers'

Policy in this demo: e-mails are partly masked and card numbers redacted
(the table itself is unchanged), DROP/TRUNCATE/ALTER are blocked, and a
DELETE waits for an operator. Try, with the same psql command:

  -c 'drop table customers'                      # ERROR 42501
  -c 'delete from customers where id = 3'        # waits; in another terminal
                                                 # open the operator console:
  ssh -t -p $ADMIN_PORT $ssh_opts demo@127.0.0.1      # 2, then a to approve (? for keys)
  $ssh approvals approve <ID>                    # or without the console

And in front of an SSH host (a local sshd; the agent's password is the
same token, fed by SSH_ASKPASS):

  $agent_env ssh -p $SSH_PORT $agent_opts web-1@127.0.0.1 'cat notes.txt'     # the card is masked
  $agent_env ssh -p $SSH_PORT $agent_opts web-1@127.0.0.1 'rm -rf /tmp/x'     # blocked, exit 126
  $agent_env ssh -p $SSH_PORT $agent_opts web-1@127.0.0.1 'sudo -n true'      # waits for: $ssh approvals approve <ID>
  $agent_env scp -P $SSH_PORT $agent_opts web-1@127.0.0.1:notes.txt .
  $agent_env sftp -P $SSH_PORT $agent_opts web-1@127.0.0.1

(This demo's shell policy has command rules, so interactive shells are
refused until interactive lines are checked; run commands as above.)

Then see what was recorded, as the operator on the admin SSH endpoint
(the same commands work locally as $bin/gatehouse ... --config $DEMO_DIR/gatehouse.toml):

  $ssh recordings list
  $ssh recordings export <ID> --format asciicast > session.cast   # asciinema play session.cast
  $ssh recordings export --since 1d --format archive > today.tar.zst
  scp -P $ADMIN_PORT $ssh_opts -r demo@127.0.0.1:/recordings .

A fresh token:  $bin/gatehouse-dev-issuer mint --dir $DEMO_DIR/issuer --issuer $issuer --sub ci-runner-7 --groups ci-deploy
Press Ctrl-C to stop.
MSG
wait "$gh_pid"
