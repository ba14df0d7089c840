#!/usr/bin/env bash
# Runs the unit and integration tests once more, in a second venv holding the lowest version of every
# dependency that pyproject.toml allows (its ">=" floors, pinned by scripts/floor_constraints.py): a floor
# that lacks an API the code calls fails here instead of on a user's machine. The package is installed as a
# wheel, as a user gets it. Takes a few minutes; CI runs it once (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${FLOORS_VENV:-.venv-floors}
# what the unit and integration tests need besides the package (the SDK fidelity tests use the last two)
TEST_PACKAGES=(pytest pytest-asyncio pytest-timeout hypothesis purecloudplatformclientv2 pysnc)

# a fresh venv each time: a package left by an earlier run (a pin since raised) must not mask a failure
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$PYTHON" scripts/floor_constraints.py --extra-packages "${TEST_PACKAGES[@]}" >"$VENV/floors.txt"
echo "test-floors: installing the floors:" $(cat "$VENV/floors.txt")
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet -c "$VENV/floors.txt" . "${TEST_PACKAGES[@]}"
"$VENV/bin/pip" check
# every pin took (pip would also take a higher version that some other requirement asks for)
"$VENV/bin/python" - "$VENV/floors.txt" <<'PY'
import sys
from importlib.metadata import version
from packaging.version import Version
wrong = []
for line in open(sys.argv[1]):
    name, floor = line.strip().split("==")
    if Version(version(name)) != Version(floor):
        wrong.append(f"{name} {version(name)} (floor {floor})")
if wrong:
    sys.exit("test-floors: not at the floor: " + ", ".join(wrong))
PY
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/unit tests/integration
