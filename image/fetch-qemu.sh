#!/usr/bin/env bash
# Unpack QEMU (qemu-system-x86) and OVMF (UEFI firmware) from Debian's
# packages into a tool folder, for the image's boot test. Debian's
# qemu-system-x86 cannot be installed next to the newer qemu-utils some
# machines carry, so it is never installed: its package and the libraries
# this machine lacks are fetched with `apt-get download` and unpacked with
# `dpkg -x`. Idempotent; the boot test finds the folder through
# GATEHOUSE_QEMU_DIR (default /var/tmp/gatehouse-qemu).
set -euo pipefail
dir=${GATEHOUSE_QEMU_DIR:-/var/tmp/gatehouse-qemu}
bin=$dir/usr/bin/qemu-system-x86_64
libs=$dir/usr/lib/x86_64-linux-gnu:$dir/lib/x86_64-linux-gnu

if [ -x "$bin" ] && [ -f "$dir/usr/share/OVMF/OVMF_CODE_4M.fd" ] &&
    LD_LIBRARY_PATH=$libs "$bin" --version >/dev/null 2>&1; then
    exit 0
fi

echo "unpacking QEMU and OVMF into $dir"
debs=$(mktemp -d)
trap 'rm -rf "$debs"' EXIT
# QEMU with its firmware and data, OVMF, and the libraries installing
# would bring because this machine lacks them (those present are used as
# they are).
core="qemu-system-x86 qemu-system-common qemu-system-data seabios ipxe-qemu ovmf"
plan() {
    apt-get install -s --no-install-recommends qemu-system-x86 ovmf 2>/dev/null |
        awk '/^Inst / { print $2 }'
}
apt-cache policy qemu-system-x86 | grep -q 'Candidate: [0-9]' || apt-get update -qq
packages=$(printf '%s\n' $core $(plan) | sort -u)
# shellcheck disable=SC2086 # one word per package
(cd "$debs" && apt-get download -q $packages >/dev/null 2>&1)
rm -rf "$dir"
mkdir -p "$dir"
for deb in "$debs"/*.deb; do
    dpkg -x "$deb" "$dir"
done
LD_LIBRARY_PATH=$libs "$bin" --version | head -n 1
