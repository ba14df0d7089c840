"""Where no C compiler was available, the client runs its Python intake: the client's delivery,
de-duplication, gap and rotation tests must pass on that path too (the rest of the suite runs the compiled
one)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_client_tests_pass_with_the_python_intake() -> None:
    env = {**os.environ, "GCBRIDGE_PURE_PYTHON": "1"}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/integration/test_client_basic.py",
            "tests/integration/test_client_rotation.py",
            "tests/unit/test_intake.py::test_the_compiled_twin_is_built_and_chosen",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=580,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_without_a_c_compiler_the_package_still_builds_without_the_extension(tmp_path: Path) -> None:
    env = {**os.environ, "CC": "/bin/false"}  # every compile fails
    run = subprocess.run(  # noqa: S603 - pip, on this repository
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        env=env,
        capture_output=True,
        text=True,
        timeout=580,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (wheel,) = tmp_path.glob("gcbridge-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    assert "gcbridge/genesys/_intake_py.py" in names
    assert "gcbridge/genesys/_intake_c.pyi" in names
    assert not [n for n in names if n.endswith((".so", ".pyd"))]
