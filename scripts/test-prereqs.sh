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
