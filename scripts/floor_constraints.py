"""Print pip constraints that pin each dependency to the lowest version pyproject.toml allows.

    python scripts/floor_constraints.py [--extra-packages NAME ...] > floors.txt

Every ``name>=X`` of ``[project] dependencies`` becomes ``name==X``; so does each entry of the ``dev`` extra
named with ``--extra-packages`` (the test runners the floor check installs beside the package).
A dependency without a ``>=`` floor is an error: a floor that nobody states cannot be checked.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
_FLOOR = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*>=\s*([0-9][^,;\s]*)\s*(?:,.*)?$")


def floors(requirements: list[str]) -> dict[str, str]:
    """``{name: floor}`` for requirements written ``name>=floor`` (bounds after a comma are left out)."""
    found = {}
    for requirement in requirements:
        match = _FLOOR.match(requirement.split(";")[0])
        if match is None:
            raise SystemExit(f"pyproject.toml: no '>=' floor in {requirement!r}")
        found[match.group(1).lower()] = match.group(3)
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--extra-packages", nargs="*", default=[], help="dev extras to pin too, by name")
    args = ap.parse_args()
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    pinned = floors(project["dependencies"])
    dev = floors(project["optional-dependencies"]["dev"])
    for name in args.extra_packages:
        if name.lower() not in dev:
            raise SystemExit(f"pyproject.toml: {name!r} is not a dev extra")
        pinned[name.lower()] = dev[name.lower()]
    sys.stdout.write("".join(f"{name}=={version}\n" for name, version in sorted(pinned.items())))


if __name__ == "__main__":
    main()
