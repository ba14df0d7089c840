#!/usr/bin/env bash
# Things the test suite needs from the machine rather than from pip. Idempotent; safe on a fresh machine.
#
# - Debian's chromium at /usr/bin/chromium: the status-page test (pytest -m browser) drives it through
#   playwright's Python package. Playwright's own browser download is not used, so no CDN is needed.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

have_chromium() {
    [ -x "$CHROMIUM" ] && "$CHROMIUM" --version >/dev/null 2>&1
}

if have_chromium; then
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
#   creates a fresh database per run and drops it after). They use GCBRIDGE_TEST_PG_DSN, by default
#   postgresql://postgres@127.0.0.1:5432/postgres (a role that may CREATE DATABASE). Where nothing answers there,
#   Debian's postgresql is installed and its cluster started. Without a server those tests fail, not skip.
PG_DSN="${GCBRIDGE_TEST_PG_DSN:-postgresql://postgres@127.0.0.1:5432/postgres}"

pg_answers() {
    command -v pg_isready >/dev/null 2>&1 && pg_isready -q -d "$PG_DSN" -t 5
}

if pg_answers; then
    echo "test-prereqs: PostgreSQL answers at ${PG_DSN%%\?*}"
elif [ -n "${GCBRIDGE_TEST_PG_DSN:-}" ]; then
    echo "test-prereqs: GCBRIDGE_TEST_PG_DSN is set but nothing answers there; start that server" >&2
    exit 1
else
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            SUDO="sudo"
        else
            echo "test-prereqs: PostgreSQL is not running on 127.0.0.1:5432 and neither root nor sudo is available;" >&2
            echo "              install and start it yourself (apt-get install -y postgresql), or set" >&2
            echo "              GCBRIDGE_TEST_PG_DSN=postgresql://USER@127.0.0.1:PORT/postgres" >&2
            exit 1
        fi
    fi
    if ! command -v pg_ctlcluster >/dev/null 2>&1; then
        echo "test-prereqs: installing PostgreSQL (Debian package) for the outbox store tests"
        export DEBIAN_FRONTEND=noninteractive
        if ! apt-cache show postgresql >/dev/null 2>&1; then
            $SUDO apt-get update -qq
        fi
        $SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null \
            || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null; }
    fi
    version="$(ls /etc/postgresql | sort -V | tail -1)"
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    # the tests log in as postgres over TCP without a password: trust it, on the loopback address only
    hba="/etc/postgresql/$version/main/pg_hba.conf"
    if ! $SUDO grep -q "^host all postgres 127.0.0.1/32 trust" "$hba"; then
        $SUDO sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba"
        $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    fi
    for _ in $(seq 1 30); do
        pg_answers && break
        sleep 1
    done
    if ! pg_answers; then
        echo "test-prereqs: PostgreSQL did not start; the outbox store tests will fail" >&2
        exit 1
    fi
    echo "test-prereqs: PostgreSQL $version started on 127.0.0.1:5432"
fi
