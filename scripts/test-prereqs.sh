#!/usr/bin/env bash
# Things the test suite needs from the machine rather than from pip. Idempotent; safe on a fresh machine.
set -euo pipefail
# (the service issue adds headless chromium for the status-page browser test here)
exit 0
