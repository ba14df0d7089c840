#!/usr/bin/env bash
# Things the test suite needs from the machine rather than from pip. Idempotent; safe on a fresh machine.
#
# - Debian's chromium at /usr/bin/chromium: the status-page test (pytest -m browser) drives it through
#   playwright's Python package. Playwright's own browser download is not used, so no CDN is needed.
set -euo pipefail

# Arguments choose the parts (chromium, postgresql); none means both.
want() {
    [ "$#" -eq 1 ] && { [ -z "${PARTS:-}" ] || [[ " $PARTS " == *" $1 "* ]]; }
}
PARTS="$*"

CHROMIUM=/usr/bin/chromium

have_chromium() {
    [ -x "$CHROMIUM" ] && "$CHROMIUM" --version >/dev/null 2>&1
}

if ! want chromium; then
    :
elif have_chromium; then
    echo "test-prereqs: chromium present ($("$CHROMIUM" --version 2>/dev/null))"
else
    echo "test-prereqs: installing chromium (Debian package) for the browser test"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            SUDO="sudo"
        else
            echo "test-prereqs: chromium is missing and neither root nor sudo is available;" >&2
            echo "              install it yourself: apt-get install -y chromium" >&2
            exit 1
        fi
    fi
    export DEBIAN_FRONTEND=noninteractive
    # Update only when the package is unknown to the local index (a fresh container has none).
    if ! apt-cache show chromium >/dev/null 2>&1; then
        $SUDO apt-get update -qq
    fi
    $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null \
        || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null; }
    if ! have_chromium; then
        echo "test-prereqs: chromium installation failed; the browser test will fail" >&2
        exit 1
    fi
    echo "test-prereqs: chromium installed ($("$CHROMIUM" --version 2>/dev/null))"
fi

# - PostgreSQL on 127.0.0.1: the outbox store tests run against a real server (tests/integration/pg_fixtures.py
#   creates a fresh database per run and drops it after). GCBRIDGE_TEST_PG_DSN names one (a role that may
#   CREATE DATABASE on 127.0.0.1); otherwise the server on 127.0.0.1:5432 is used when it answers. Where none
#   does, the tests start a throwaway cluster of their own (tests/pg_cluster.py: Debian's initdb/pg_ctl in a
#   temporary directory, 127.0.0.1, a free port) and stop it when the run ends. This script makes sure that
#   can work: it installs Debian's postgresql when its server programs are missing, then starts a throwaway
#   cluster, checks that it answers, and stops and deletes it. GCBRIDGE_TEST_PG_THROWAWAY=1 takes that path
#   (here and in the tests) even where a server answers on 5432.
if want postgresql; then
PG_DSN="${GCBRIDGE_TEST_PG_DSN:-postgresql://postgres@127.0.0.1:5432/postgres}"

pg_answers() {
    command -v pg_isready >/dev/null 2>&1 && pg_isready -q -d "$PG_DSN" -t 5
}

pg_bin() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1
}

# Start a cluster in a temporary directory on a free port, ask it, stop it, delete it (also on failure).
pg_throwaway_check() {
    local bin dir port as=()
    bin="$(pg_bin)"
    dir="$(mktemp -d /tmp/gcbridge-pg-check.XXXXXX)"
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    if [ "$(id -u)" -eq 0 ]; then  # initdb refuses root: the cluster runs as Debian's postgres user
        chown postgres "$dir"
        as=(runuser -u postgres --)
    fi
    # shellcheck disable=SC2064 # expand now: the trap must stop this cluster even if the variables change
    trap "${as[*]} $bin/pg_ctl -D $dir/data -m immediate stop >/dev/null 2>&1 || true; rm -rf $dir; trap - RETURN" RETURN
    "${as[@]}" "$bin/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --no-sync >/dev/null || return 1
    "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -w -t 60 -l "$dir/server.log" \
        -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir" start >/dev/null || return 1
    "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -t 10 || return 1
    "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -w -m fast stop >/dev/null || return 1
    echo "test-prereqs: a throwaway PostgreSQL cluster in $dir started on 127.0.0.1:$port, answered and was stopped"
}

if [ -z "${GCBRIDGE_TEST_PG_THROWAWAY:-}" ] && pg_answers; then
    echo "test-prereqs: PostgreSQL answers at ${PG_DSN%%\?*}"
elif [ -n "${GCBRIDGE_TEST_PG_DSN:-}" ]; then
    echo "test-prereqs: GCBRIDGE_TEST_PG_DSN is set but nothing answers there; start that server" >&2
    exit 1
else
    if [ -z "$(pg_bin)" ] || [ ! -x "$(pg_bin)/initdb" ]; then
        SUDO=""
        if [ "$(id -u)" -ne 0 ]; then
            if command -v sudo >/dev/null 2>&1; then
                SUDO="sudo"
            else
                echo "test-prereqs: no PostgreSQL on 127.0.0.1:5432, its server programs are not installed, and" >&2
                echo "              neither root nor sudo is available: apt-get install -y postgresql, or set" >&2
                echo "              GCBRIDGE_TEST_PG_DSN=postgresql://USER@127.0.0.1:PORT/postgres" >&2
                exit 1
            fi
        fi
        echo "test-prereqs: installing PostgreSQL (Debian package) for the outbox store tests"
        export DEBIAN_FRONTEND=noninteractive
        if ! apt-cache show postgresql >/dev/null 2>&1; then
            $SUDO apt-get update -qq
        fi
        $SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null \
            || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null; }
    fi
    if ! pg_throwaway_check; then
        echo "test-prereqs: a throwaway PostgreSQL cluster did not start; the PostgreSQL tests will fail" >&2
        exit 1
    fi
    echo "test-prereqs: no server on 127.0.0.1:5432: the tests start a throwaway cluster and stop it after the run"
fi
fi
