#!/usr/bin/env bash
# Driver compatibility: a PostgreSQL driver's own integration test suite,
# run once directly against PostgreSQL and once through Gatehouse (no
# rules, batched recording, the same database role), in one run on this
# machine. Prints passed/failed for each run, the share of the tests that
# pass directly which also pass through Gatehouse, and every test that
# differs. Not part of the quick test command; nothing is pass/fail.
#
# The suite is pg8000's (pure Python; its source distribution carries its
# tests). Its sources and test dependencies are downloaded from PyPI into
# a temporary directory and removed afterwards; nothing is committed.
#
#   PG8000_VERSION  the pg8000 release whose suite runs   (default 1.31.6)
#   TLS=1           also run both passes with every connection on TLS
#   TEST_TIMEOUT    seconds before one test counts as hung (default 60)
#   PROFILE         gatehouse build profile, debug | release (default debug)
#   KEEP_LOGS=DIR   keep each pass's pytest log and JUnit XML (and the
#                   gateway's log) in DIR
set -euo pipefail
cd "$(dirname "$0")/.."
PG8000_VERSION=${PG8000_VERSION:-1.31.6}
TEST_TIMEOUT=${TEST_TIMEOUT:-60}
BUILD_PROFILE=${PROFILE:-debug}
source bench/lib.sh

# The suite and what it needs, pinned, outside the repository.
py="$work/py"
pip_quiet() { python3 -m pip -q --disable-pip-version-check "$@" 2>&1 | grep -v -e '^WARNING: Running pip as' -e '^$' || true; }
pip_quiet install --target "$py" "pg8000==$PG8000_VERSION" "scramp==1.5.0" "python-dateutil==2.9.0.post0" \
    "pytz==2025.2" "pytest==8.4.2" "pytest-mock==3.15.1" "pytest-benchmark==5.1.0" "pytest-timeout==2.4.0"
pip_quiet download --no-binary :all: --no-deps "pg8000==$PG8000_VERSION" -d "$work/sdist"
tar xzf "$work/sdist/pg8000-$PG8000_VERSION.tar.gz" -C "$work"
suite="$work/pg8000-$PG8000_VERSION"

# What the suite expects of its server: the role `postgres` with a
# password, the hstore extension, prepared transactions, TLS.
as_pg psql -qX -h "$work/pg" -p "$PG_PORT" -U postgres -d postgres \
    -c "ALTER ROLE postgres PASSWORD '$password'" -c "CREATE EXTENSION hstore" \
    -c "ALTER SYSTEM SET max_prepared_transactions = 10"
as_pg "$pgbin/pg_ctl" -D "$work/pg/data" -l "$work/pg/log" -w restart >/dev/null

# The suite connects as `postgres` without a database name, so PostgreSQL
# (and Gatehouse) take the user name: the connection is called `postgres`
# and leads to the database `postgres` as the role `postgres`. Its SCRAM
# tests use a database of their own, named like their connection.
suite_connection() { # name
    connection "$1" default | sed -e "s/^database = .*/database = \"$1\"/" -e 's/^user = .*/user = "postgres"/'
}
{
    config_head postgres pg8000_scram_sha_256
    suite_connection postgres
    suite_connection pg8000_scram_sha_256
    printf '[policies.default]\nrecording = "batched"\n'
} > "$work/gatehouse.toml"
# pg8000 connects in plaintext unless a test asks for TLS: allow that on
# this loopback listener.
sed -i 's/^\[listen\]$/[listen]\npostgres_plaintext = true/' "$work/gatehouse.toml"
start_gatehouse

# One pass of the suite; JUnit XML in $work/$1.xml.
run_suite() { # name port password [tls]
    local plugin=""
    [ "${4:-0}" = 1 ] && plugin="-p compat_tls"
    (cd "$suite/test" && PYTHONPATH="$py:$work/plugins" PGHOST=127.0.0.1 PGPORT="$2" PGPASSWORD="$3" \
        SSL_CERT_FILE="$5" timeout 3600 python3 -m pytest -q -p no:cacheprovider $plugin \
        --timeout "$TEST_TIMEOUT" --benchmark-disable --junitxml "$work/$1.xml" . >"$work/$1.log" 2>&1) || true
    tail -1 "$work/$1.log"
    [ -z "${KEEP_LOGS:-}" ] || cp "$work/$1.log" "$work/$1.xml" "$KEEP_LOGS/"
}

# TLS=1: a plugin that gives every connection the suite opens a TLS context
# trusting the server's CA (a test that sets its own context keeps it).
mkdir -p "$work/plugins"
cat > "$work/plugins/compat_tls.py" <<'PY'
import ssl
import pg8000.core

_init = pg8000.core.CoreConnection.__init__

def _tls_init(self, *args, **kwargs):
    if kwargs.get("ssl_context") is None:
        kwargs["ssl_context"] = ssl.create_default_context()
    _init(self, *args, **kwargs)

pg8000.core.CoreConnection.__init__ = _tls_init
PY

passes=("direct $PG_PORT $password 0 $work/pg/data/server.crt" "through $GH_PORT $token 0 $ca")
if [ "${TLS:-0}" = 1 ]; then
    passes+=("direct-tls $PG_PORT $password 1 $work/pg/data/server.crt" "through-tls $GH_PORT $token 1 $ca")
fi
for p in "${passes[@]}"; do
    # shellcheck disable=SC2086
    set -- $p
    echo "== pg8000 $PG8000_VERSION suite, $1"
    run_suite "$@"
done

python3 - "$work" "${TLS:-0}" <<'PY'
import sys, xml.etree.ElementTree as ET
work, tls = sys.argv[1], sys.argv[2] == "1"

def results(name):
    out = {}
    for case in ET.parse(f"{work}/{name}.xml").iter("testcase"):
        key = f"{case.get('classname')}::{case.get('name')}"
        bad = [c for c in case if c.tag in ("failure", "error")]
        skipped = any(c.tag == "skipped" for c in case)
        msg = bad[0].get("message", "") if bad else ""
        out[key] = ("skipped" if skipped else "failed" if bad else "passed", msg)
    return out

pairs = [("direct", "through")] + ([("direct-tls", "through-tls")] if tls else [])
for direct_name, through_name in pairs:
    d, g = results(direct_name), results(through_name)
    for name, r in ((direct_name, d), (through_name, g)):
        n = lambda s: sum(1 for v in r.values() if v[0] == s)
        print(f"{name:14} passed {n('passed'):4}  failed {n('failed'):4}  skipped {n('skipped'):3}")
    ok_direct = [k for k, v in d.items() if v[0] == "passed"]
    both = [k for k in ok_direct if g.get(k, ("missing",))[0] == "passed"]
    print(f"{through_name}: {len(both)} of {len(ok_direct)} tests that pass directly pass through Gatehouse"
          f" = {100 * len(both) / max(1, len(ok_direct)):.2f}%")
    for k in sorted(set(ok_direct) - set(both)):
        print(f"  only direct: {k}: {g.get(k, ('missing', ''))[1][:200]}")
    for k in sorted(k for k, v in g.items() if v[0] == "passed" and d.get(k, ("",))[0] != "passed"):
        print(f"  only through Gatehouse: {k}")
PY
[ -z "${KEEP_LOGS:-}" ] || cp "$work/gatehouse.log" "$KEEP_LOGS/"
