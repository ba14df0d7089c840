#!/usr/bin/env bash
# The reliability check: run a test suite RUNS times in a row, each as a background job of this
# non-interactive shell (so it starts with SIGINT ignored, as `make test &` from a script does), optionally
# with PARALLEL copies at once (two suites competing for the CPU shake out timing assumptions). A test that
# fails in any run is a bug to find, never a timeout to raise. See docs/testing.md.
#
#   scripts/test-repeat.sh [RUNS] [PARALLEL] [pytest arguments...]
#   e.g. scripts/test-repeat.sh 5 1                     # the whole suite, five times in a row
#        scripts/test-repeat.sh 3 2 tests/integration   # two integration suites at once, three rounds
#
# Logs go to $TEST_REPEAT_LOGS (default: a new temporary directory); the summary lists every failed test
# with the run it failed in. Exit status: 0 when every run passed.
set -uo pipefail
cd "$(dirname "$0")/.."

RUNS=${1:-5}
PARALLEL=${2:-1}
shift $(( $# >= 2 ? 2 : $# ))
if ! [[ "$RUNS" =~ ^[1-9][0-9]*$ && "$PARALLEL" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 [RUNS] [PARALLEL] [pytest arguments...] (RUNS and PARALLEL are positive integers)" >&2
    exit 2
fi
PYTEST=${PYTEST:-.venv/bin/pytest}
LOGS=${TEST_REPEAT_LOGS:-$(mktemp -d -t gcbridge-test-repeat-XXXXXX)}
mkdir -p "$LOGS"

failed_runs=0
for round in $(seq 1 "$RUNS"); do
    pids=()
    for copy in $(seq 1 "$PARALLEL"); do
        log="$LOGS/round$round-copy$copy.log"
        # A background job: SIGINT ignored, like a user's `make test &` in a script.
        "$PYTEST" -q -p no:cacheprovider "$@" >"$log" 2>&1 &
        pids+=("$!")
    done
    for i in "${!pids[@]}"; do
        copy=$((i + 1))
        log="$LOGS/round$round-copy$copy.log"
        if wait "${pids[$i]}"; then
            echo "round $round copy $copy: passed ($(tail -n 1 "$log"))"
        else
            failed_runs=$((failed_runs + 1))
            echo "round $round copy $copy: FAILED ($(tail -n 1 "$log")); log: $log"
            grep -E '^(FAILED|ERROR) ' "$log" | sed 's/^/    /'
        fi
    done
done

total=$((RUNS * PARALLEL))
echo "test-repeat: $((total - failed_runs)) of $total runs passed; logs in $LOGS"
[ "$failed_runs" -eq 0 ]
