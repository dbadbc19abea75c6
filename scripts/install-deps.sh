#!/usr/bin/env bash
# Install what Gatehouse's tests, demo and benchmarks need on a Debian
# machine: PostgreSQL 15 (server binaries, psql, pgbench), OpenSSL (the test
# issuer's keys), the OpenSSH clients (ssh, scp, sftp, ssh-keygen: the admin
# endpoint's tests), asciinema (plays exported .cast files) and PgBouncer
# (benchmark baseline). Idempotent; root only.
set -euo pipefail

need=()
for bin in /usr/lib/postgresql/15/bin/initdb /usr/lib/postgresql/15/bin/pg_ctl; do
    [ -x "$bin" ] || need+=(postgresql-15)
done
command -v psql >/dev/null || need+=(postgresql-client-15)
command -v pgbench >/dev/null || need+=(postgresql-contrib)
command -v openssl >/dev/null || need+=(openssl)
command -v runuser >/dev/null || need+=(util-linux)
for bin in ssh scp sftp ssh-keygen; do
    command -v "$bin" >/dev/null || { need+=(openssh-client); break; }
done
command -v asciinema >/dev/null || need+=(asciinema)
if [ "${WITH_BENCH:-0}" = 1 ]; then
    command -v pgbouncer >/dev/null || need+=(pgbouncer)
fi

if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The Debian package starts a cluster of its own on 5432; the tests make
# throwaway clusters and never use it, so it is left alone.
id postgres >/dev/null 2>&1 || { echo "the postgres user is missing" >&2; exit 1; }
