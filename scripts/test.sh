#!/usr/bin/env bash
# The test command: build everything, then run unit, property and
# end-to-end tests. End-to-end tests start real PostgreSQL clusters, a
# loopback OIDC issuer and the built gatehouse binary, all on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --bins
cargo test --workspace --no-fail-fast "$@"
