#!/usr/bin/env bash
# The test command: build everything, then run unit, property and
# end-to-end tests. End-to-end tests start real PostgreSQL clusters, a
# loopback OIDC issuer and the built gatehouse binary, all on 127.0.0.1;
# the image's boot test boots the appliance image (built here by
# image/build.sh) in QEMU, whose guest reaches only what the test forwards.
set -euo pipefail
cd "$(dirname "$0")/.."
# What the tests need (sshd, PostgreSQL, tmux, QEMU...): a fresh machine
# runs this command as it is. Quick when everything is there.
bash scripts/install-deps.sh
cargo build --workspace --bins
bash image/build.sh
cargo test --workspace --no-fail-fast "$@"
