#!/usr/bin/env bash
# Install what Gatehouse's tests, demo and benchmarks need on a Debian
# machine: PostgreSQL 15 (server binaries, psql, pgbench), OpenSSL (the test
# issuer's keys and CAs), the OpenSSH clients (ssh, scp, sftp, ssh-keygen:
# the admin endpoint's tests), OpenSSH's server (the SSH gateway's test
# target), tmux (drives interactive shells in tests), curl (HTTPS checks
# against the test issuer and the API), asciinema (plays exported .cast
# files), PgBouncer (benchmark baseline), Python with pinned psycopg
# releases (their binary wheels bundle libpq 17 and 18, the drivers agents
# run), and for the appliance image the tools image/build.sh assembles it
# with (cpio, zstd, kmod's depmod, dosfstools, mtools,
# syslinux, sfdisk, qemu-img) and its boot test uses (xorriso for CD seeds,
# e2fsprogs' debugfs, QEMU and OVMF unpacked by image/fetch-qemu.sh).
# With WITH_FUZZ=1, also cargo-fuzz. Idempotent; root only.
set -euo pipefail

need=()
for bin in /usr/lib/postgresql/15/bin/initdb /usr/lib/postgresql/15/bin/pg_ctl; do
    [ -x "$bin" ] || need+=(postgresql-15)
done
command -v psql >/dev/null || need+=(postgresql-client-15)
command -v pgbench >/dev/null || need+=(postgresql-contrib)
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl ca-certificates)
command -v runuser >/dev/null || need+=(util-linux)
for bin in ssh scp sftp ssh-keygen; do
    command -v "$bin" >/dev/null || { need+=(openssh-client); break; }
done
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
[ -x /usr/lib/openssh/sftp-server ] || need+=(openssh-sftp-server)
command -v tmux >/dev/null || need+=(tmux)
command -v asciinema >/dev/null || need+=(asciinema)
# The appliance image: build tools and what its boot test drives.
while read -r bin pkg; do
    command -v "$bin" >/dev/null || [ -x "/sbin/$bin" ] || [ -x "/usr/sbin/$bin" ] || need+=("$pkg")
done <<'TOOLS'
cpio cpio
zstd zstd
depmod kmod
mkfs.vfat dosfstools
mcopy mtools
syslinux syslinux
sfdisk fdisk
qemu-img qemu-utils
xorriso xorriso
debugfs e2fsprogs
ssh-keyscan openssh-client
TOOLS
[ -f /usr/lib/syslinux/modules/bios/ldlinux.c32 ] || need+=(syslinux-common)
command -v python3 >/dev/null || need+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
if [ "${WITH_BENCH:-0}" = 1 ]; then
    command -v pgbouncer >/dev/null || need+=(pgbouncer)
fi

if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# QEMU and OVMF for the image's boot test, unpacked, never installed.
bash "$(dirname "$0")/../image/fetch-qemu.sh"
# psycopg releases the end-to-end tests drive, each in a directory of its
# own (tests/src/clients.rs, PYTHON_LIBS_ROOT): 3.2.13 bundles libpq 17.6,
# 3.3.4 libpq 18.0. Pinned so a new wheel cannot change what is tested.
for version in 3.2.13 3.3.4; do
    dir=/opt/gatehouse-tests/python/psycopg-$version
    [ -d "$dir/psycopg" ] && continue
    python3 -m pip install --quiet --disable-pip-version-check --no-cache-dir \
        --target "$dir" "psycopg==$version" "psycopg-binary==$version" 2>&1 \
        | grep -v '^WARNING: Running pip as' || true
    [ -d "$dir/psycopg" ] || { echo "psycopg $version did not install" >&2; exit 1; }
done

# The fuzzers (bash fuzz/run.sh): cargo-fuzz from crates.io. Tests do not
# need it (they replay the fuzz corpus on stable), so only on request; it
# runs on the machine's own toolchain (no nightly needed without a
# sanitizer).
if [ "${WITH_FUZZ:-0}" = 1 ] && ! command -v cargo-fuzz >/dev/null; then
    cargo install --locked cargo-fuzz
fi

# The Debian package starts a cluster of its own on 5432; the tests make
# throwaway clusters and never use it, so it is left alone.
id postgres >/dev/null 2>&1 || { echo "the postgres user is missing" >&2; exit 1; }
